import ApplianceBundle
import Foundation

/// One piece of a blob to send: bytes `[offset, size)` of blob `digest`, read from the bundle file.
public struct BlobPiece: Sendable, Equatable {
    public var digest: SHA256Digest
    public var offset: Int64
    public var size: Int64
    /// Where the blob's bytes start in the bundle file.
    public var fileOffset: Int64

    /// The tar member name nodes extract it as: `<hex>.<offset>`.
    public var memberName: String { "\(digest.hex).\(offset)" }
    public var length: Int64 { size - offset }
}

/// Produces a tar stream (ustar headers, data read by `pread` from the bundle, padding, end marker) of
/// pieces, chunk by chunk, for the relay on the first node. Memory: one chunk buffer.
/// Not thread-safe: one reader drains it. Owns the bundle file descriptor.
public final class PieceStream: @unchecked Sendable {  // used by one reader at a time (the SSH input pump)
    private let fd: Int32
    private let pieces: [BlobPiece]
    private var index = 0
    private var inPiece: Int64 = -1  // -1: header not yet sent
    private var trailerSent = false
    private let chunk: Int
    private let onBytes: (@Sendable (BlobPiece, Int64) -> Void)?
    /// Total bytes the stream will produce (headers, data, padding, end marker).
    public let totalBytes: Int64

    public init(
        bundlePath: String, pieces: [BlobPiece], chunkSize: Int = 1 << 20,
        onBytes: (@Sendable (BlobPiece, Int64) -> Void)? = nil
    ) throws {
        fd = open(bundlePath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ClusterError.io(path: bundlePath, reason: String(cString: strerror(errno))) }
        self.pieces = pieces
        self.chunk = chunkSize
        self.onBytes = onBytes
        totalBytes = pieces.reduce(Int64(1024)) { $0 + 512 + ($1.length + 511) / 512 * 512 }
    }

    deinit { close(fd) }

    /// The next chunk, or nil at the end.
    public func next() throws -> [UInt8]? {
        while index < pieces.count {
            let p = pieces[index]
            if inPiece < 0 {
                inPiece = 0
                return Self.header(name: p.memberName, size: p.length)
            }
            if inPiece < p.length {
                let n = Int(min(Int64(chunk), p.length - inPiece))
                var buf = [UInt8](repeating: 0, count: n)
                let got = buf.withUnsafeMutableBytes {
                    pread(fd, $0.baseAddress, n, off_t(p.fileOffset + p.offset + inPiece))
                }
                guard got == n else {
                    throw ClusterError.io(path: "bundle", reason: "short read of blob \(p.digest.short)")
                }
                inPiece += Int64(n)
                onBytes?(p, Int64(n))
                return buf
            }
            index += 1
            inPiece = -1
            let pad = Int((512 - p.length % 512) % 512)
            if pad > 0 { return [UInt8](repeating: 0, count: pad) }
        }
        if !trailerSent {
            trailerSent = true
            return [UInt8](repeating: 0, count: 1024)
        }
        return nil
    }

    static func header(name: String, size: Int64) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ off: Int) { for (i, b) in s.utf8.enumerated() { h[off + i] = b } }
        func octal(_ v: Int64, _ off: Int, _ width: Int) {
            let digits = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, width - 1 - digits.count)) + digits, off)
        }
        put(name, 0)
        octal(0o600, 100, 8)
        octal(0, 108, 8)
        octal(0, 116, 8)
        octal(size, 124, 12)
        octal(0, 136, 12)
        h[156] = UInt8(ascii: "0")
        put("ustar", 257)
        put("00", 263)
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        octal(Int64(sum), 148, 7)
        h[155] = 32
        return h
    }
}
