import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Reads a file of the kernel's pseudo file systems (/proc, /sys) whole.
///
/// Such files report a size of 0 or of one page, and Foundation's `String(contentsOfFile:)` and
/// `FileManager.contents(atPath:)` stop after the first 4 KiB of them: `/proc/self/mountinfo` on a host
/// with a few dozen mounts loses its last lines that way (the lab once missed a node's tmpfs and could
/// not remove its directory). This reads until end of file.
public enum ProcFile {
    /// The whole file, or nil when it cannot be opened or read.
    public static func data(_ path: String, limit: Int = 64 << 20) -> Data? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }

    /// The whole file as UTF-8 text (invalid bytes repaired), or nil when it cannot be read.
    public static func text(_ path: String) -> String? {
        data(path).map { String(decoding: $0, as: UTF8.self) }
    }
}
