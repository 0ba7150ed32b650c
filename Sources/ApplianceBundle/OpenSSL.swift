internal import CCrypto
import Foundation

/// Reads and clears OpenSSL's error queue. Call it in the same synchronous frame as the failing call.
func openSSLError(_ what: String) -> BundleError {
    var messages: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buf, buf.count)
        messages.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return .crypto(reason: messages.isEmpty ? "\(what) failed" : "\(what): \(messages.joined(separator: "; "))")
}

/// Incremental SHA-256 through OpenSSL's EVP API (uses the CPU's SHA extensions where present).
///
/// Owns one `EVP_MD_CTX`, freed in deinit. Not thread-safe: one hasher per thread.
public final class SHA256Hasher {
    private let ctx: OpaquePointer

    public init() {
        // Allocation failure of a few bytes is not recoverable in any useful way.
        guard let ctx = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        self.ctx = ctx
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(ctx, base, bytes.count)
    }

    public func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    public func finalize() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return SHA256Digest(bytes: out)
    }

    public static func hash(_ data: Data) -> SHA256Digest {
        let h = SHA256Hasher()
        h.update(data)
        return h.finalize()
    }

    /// Hashes a file with large sequential reads; `progress` gets byte counts as they are hashed.
    public static func hash(file path: String, progress: ((Int) -> Void)? = nil) throws(BundleError) -> (
        SHA256Digest, Int64
    ) {
        let h = SHA256Hasher()
        let total = try FileChunks.forEach(path: path) { chunk in
            h.update(chunk)
            progress?(chunk.count)
        }
        return (h.finalize(), total)
    }
}

/// A SHA-256 digest, printed as 64 lower-case hex digits.
public struct SHA256Digest: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let hex: String

    public init(bytes: [UInt8]) {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        hex = String(decoding: out, as: UTF8.self)
    }

    /// Accepts 64 hex digits, optionally prefixed with `sha256:`.
    public init?(hex text: String) {
        let s = text.hasPrefix("sha256:") ? String(text.dropFirst(7)) : text
        guard s.utf8.count == 64, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            return nil
        }
        hex = s
    }

    public var description: String { "sha256:\(hex)" }
    public var short: String { String(hex.prefix(12)) }
    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool { a.hex < b.hex }
}
