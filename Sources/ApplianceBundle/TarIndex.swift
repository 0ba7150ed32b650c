import Foundation

/// Where each entry's data lies in an uncompressed tar: lets staging send any byte range of a blob
/// (resuming a broken transfer) straight from the bundle file.
///
/// Reads only 512-byte headers (and pax / GNU long-name records, which it skips over). It is used on
/// archives that `BundleArchive.open` has already accepted; it still refuses anything it cannot place.
public enum TarIndex {
    public struct Location: Sendable, Equatable {
        public var dataOffset: Int64
        public var size: Int64
        public init(dataOffset: Int64, size: Int64) {
            self.dataOffset = dataOffset
            self.size = size
        }
    }

    public static func index(path: String) throws(BundleError) -> [String: Location] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let fileSize = Int64(st.st_size)
        var out: [String: Location] = [:]
        var pos: Int64 = 0
        var header = [UInt8](repeating: 0, count: 512)
        var pendingName: String?
        while pos + 512 <= fileSize {
            let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, off_t(pos)) }
            guard n == 512 else { throw .unreadableArchive(path: path, reason: "short read at \(pos)") }
            if header.allSatisfy({ $0 == 0 }) { break }
            guard let size = octal(header[124..<136]) else {
                throw .unreadableArchive(path: path, reason: "bad size field at offset \(pos)")
            }
            let type = header[156]
            let dataOffset = pos + 512
            let next = dataOffset + (size + 511) / 512 * 512
            guard next <= fileSize else {
                throw .unreadableArchive(path: path, reason: "entry at \(pos) runs past the end")
            }
            switch type {
            case UInt8(ascii: "x"):
                pendingName = try paxPath(fd: fd, offset: dataOffset, size: size, path: path) ?? pendingName
            case UInt8(ascii: "g"):
                break
            case UInt8(ascii: "L"):
                pendingName = try readString(fd: fd, offset: dataOffset, size: size, path: path)
            default:
                let name = pendingName ?? ustarName(header)
                pendingName = nil
                if case .accept(let normalized) = EntryPolicy.normalize(name) {
                    out[normalized] = Location(dataOffset: dataOffset, size: size)
                }
            }
            pos = next
        }
        return out
    }

    private static func ustarName(_ h: [UInt8]) -> String {
        func field(_ r: Range<Int>) -> String {
            String(decoding: h[r].prefix { $0 != 0 }, as: UTF8.self)
        }
        let name = field(0..<100)
        let isUstar = h[257..<262].elementsEqual("ustar".utf8)
        let prefix = isUstar ? field(345..<500) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    private static func octal(_ bytes: ArraySlice<UInt8>) -> Int64? {
        if let first = bytes.first, first & 0x80 != 0 {  // base-256 for large sizes
            var v: Int64 = Int64(first & 0x7F)
            for b in bytes.dropFirst() { v = v << 8 | Int64(b) }
            return v
        }
        let text = String(decoding: bytes.prefix { $0 != 0 && $0 != 32 }.drop { $0 == 32 }, as: UTF8.self)
        return text.isEmpty ? 0 : Int64(text, radix: 8)
    }

    private static func readString(fd: Int32, offset: Int64, size: Int64, path: String) throws(BundleError) -> String {
        guard size < 1 << 20 else { throw .unreadableArchive(path: path, reason: "oversized extended header") }
        var buf = [UInt8](repeating: 0, count: Int(size))
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, Int(size), off_t(offset)) }
        guard n == Int(size) else { throw .unreadableArchive(path: path, reason: "short read at \(offset)") }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// The `path` record of a pax extended header ("LEN path=VALUE\n" records).
    private static func paxPath(fd: Int32, offset: Int64, size: Int64, path: String) throws(BundleError) -> String? {
        let text = try readString(fd: fd, offset: offset, size: size, path: path)
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            let record = line[line.index(after: space)...]
            if record.hasPrefix("path=") { return String(record.dropFirst(5)) }
        }
        return nil
    }
}

extension BundleArchive {
    /// The byte range of every blob in the bundle file, for ranged reads by staging.
    public func blobLocations() throws(BundleError) -> [SHA256Digest: TarIndex.Location] {
        let entries = try TarIndex.index(path: path)
        var out: [SHA256Digest: TarIndex.Location] = [:]
        for b in blobs {
            guard let loc = entries[Self.blobPrefix + b.digest.hex], loc.size == b.size else {
                throw .unreadableArchive(path: path, reason: "cannot locate blob \(b.digest.short) in the archive")
            }
            out[b.digest] = loc
        }
        return out
    }
}
