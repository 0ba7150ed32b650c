import Foundation

/// Reads a file front to back in 1 MiB chunks through one buffer, with the kernel told to read ahead.
enum FileChunks {
    /// Opens `path`, calls `opened` (so callers can emit headers only for files that opened), then `body`
    /// for every chunk; returns the bytes read. A chunk is valid only during `body`.
    @discardableResult
    static func forEach(
        path: String, opened: () throws(BundleError) -> Void = {},
        _ body: (UnsafeRawBufferPointer) throws(BundleError) -> Void
    ) throws(BundleError) -> Int64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        try opened()
        let size = 1 << 20
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { buf.deallocate() }
        var total: Int64 = 0
        while true {
            let n = read(fd, buf.baseAddress, size)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, reason: String(cString: strerror(errno)))
            }
            if n == 0 { return total }
            total += Int64(n)
            try body(UnsafeRawBufferPointer(rebasing: buf[0..<n]))
        }
    }
}
