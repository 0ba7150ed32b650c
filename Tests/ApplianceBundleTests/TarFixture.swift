import Foundation

/// Builds raw tar archives byte by byte, so tests can make entries no honest tool would write
/// (traversal, escaping links, devices, duplicates, lying sizes).
struct TarFixture {
    enum Kind: UInt8 {
        case file = 48  // '0'
        case hardlink = 49  // '1'
        case symlink = 50  // '2'
        case charDevice = 51  // '3'
        case blockDevice = 52  // '4'
        case directory = 53  // '5'
        case fifo = 54  // '6'
    }

    private(set) var bytes = Data()

    mutating func add(
        _ name: String, _ content: Data = Data(), kind: Kind = .file, link: String = "", declaredSize: Int? = nil
    ) {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ off: Int, _ len: Int) {
            for (i, b) in s.utf8.prefix(len).enumerated() { h[off + i] = b }
        }
        func octal(_ v: Int, _ off: Int, _ len: Int) {
            let digits = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, len - 1 - digits.count)) + digits, off, len - 1)
        }
        put(name, 0, 100)
        octal(kind == .directory ? 0o755 : 0o644, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(declaredSize ?? (kind == .file ? content.count : 0), 124, 12)
        octal(0, 136, 12)
        h[156] = kind.rawValue
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        put("root", 265, 32)
        put("root", 297, 32)
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        let chk = String(sum, radix: 8)
        put(String(repeating: "0", count: 6 - chk.count) + chk, 148, 6)
        h[154] = 0
        h[155] = 32
        bytes.append(contentsOf: h)
        if kind == .file {
            bytes.append(content)
            let pad = (512 - content.count % 512) % 512
            bytes.append(Data(count: pad))
        }
    }

    mutating func finish() { bytes.append(Data(count: 1024)) }

    func write(to path: String) throws { try bytes.write(to: URL(fileURLWithPath: path)) }
}

/// A temporary directory removed when the test ends.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "appliance-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
    func file(_ name: String) -> String { path + "/" + name }

    /// Every path below the directory, relative, sorted.
    func listing() -> [String] {
        (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).sorted()
    }
}
