internal import CCrypto
import Foundation

/// An Ed25519 key held by OpenSSL. Owns one `EVP_PKEY`, freed in deinit.
/// Immutable after creation; OpenSSL allows concurrent use of a key for signing and verifying,
/// which is why this is `@unchecked Sendable`.
public final class Ed25519Key: @unchecked Sendable {
    let pkey: OpaquePointer
    public let hasPrivateKey: Bool

    private init(pkey: OpaquePointer, hasPrivateKey: Bool) {
        self.pkey = pkey
        self.hasPrivateKey = hasPrivateKey
    }

    deinit { EVP_PKEY_free(pkey) }

    /// A new random key pair.
    public static func generate() throws(BundleError) -> Ed25519Key {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nil) else { throw openSSLError("EVP_PKEY_CTX_new_id") }
        defer { EVP_PKEY_CTX_free(ctx) }
        guard EVP_PKEY_keygen_init(ctx) == 1 else { throw openSSLError("EVP_PKEY_keygen_init") }
        var key: OpaquePointer?
        guard EVP_PKEY_keygen(ctx, &key) == 1, let key else { throw openSSLError("EVP_PKEY_keygen") }
        return Ed25519Key(pkey: key, hasPrivateKey: true)
    }

    /// Reads a PEM private key (PKCS#8) or public key (SubjectPublicKeyInfo).
    public static func load(path: String) throws(BundleError) -> Ed25519Key {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw .key(path: path, reason: "cannot read the file")
        }
        return try parse(pem: data, path: path)
    }

    public static func parse(pem: Data, path: String) throws(BundleError) -> Ed25519Key {
        let text = String(decoding: pem, as: UTF8.self)
        let isPrivate = text.contains("PRIVATE KEY-----")
        let key: OpaquePointer? = pem.withUnsafeBytes { raw -> OpaquePointer? in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return nil }
            defer { BIO_free(bio) }
            return isPrivate ? PEM_read_bio_PrivateKey(bio, nil, nil, nil) : PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let key else {
            _ = openSSLError("PEM read")  // clear the queue; the message below is clearer
            throw .key(path: path, reason: "not a PEM \(isPrivate ? "private" : "public") key")
        }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 else {
            EVP_PKEY_free(key)
            throw .key(path: path, reason: "not an Ed25519 key (bundles are signed with Ed25519)")
        }
        return Ed25519Key(pkey: key, hasPrivateKey: isPrivate)
    }

    public func privateKeyPEM() throws(BundleError) -> Data {
        try pem { bio in PEM_write_bio_PrivateKey(bio, pkey, nil, nil, 0, nil, nil) }
    }

    public func publicKeyPEM() throws(BundleError) -> Data {
        try pem { bio in PEM_write_bio_PUBKEY(bio, pkey) }
    }

    private func pem(_ write: (OpaquePointer) -> Int32) throws(BundleError) -> Data {
        guard let bio = BIO_new(BIO_s_mem()) else { throw openSSLError("BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw openSSLError("PEM write") }
        var ptr: UnsafeMutablePointer<CChar>?
        let len = ccrypto_bio_get_mem_data(bio, &ptr)
        guard let ptr, len > 0 else { throw openSSLError("BIO_get_mem_data") }
        return Data(bytes: ptr, count: len)
    }

    /// The 32 raw public key bytes.
    public func rawPublicKey() throws(BundleError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard EVP_PKEY_get_raw_public_key(pkey, &out, &len) == 1 else { throw openSSLError("get raw public key") }
        return Array(out.prefix(len))
    }

    /// `SHA256:<base64>` of the raw public key, the form printed by `bundle keygen` and shown in errors.
    public func fingerprint() throws(BundleError) -> String {
        let digest = SHA256Hasher.hash(Data(try rawPublicKey()))
        let bytes = stride(from: 0, to: 64, by: 2).map { i -> UInt8 in
            let s = digest.hex.utf8.dropFirst(i).prefix(2)
            return UInt8(String(decoding: s, as: UTF8.self), radix: 16) ?? 0
        }
        return "SHA256:" + Data(bytes).base64EncodedString().replacingOccurrences(of: "=", with: "")
    }

    public func sign(_ message: Data) throws(BundleError) -> Data {
        guard hasPrivateKey else { throw .crypto(reason: "signing needs a private key") }
        guard let ctx = EVP_MD_CTX_new() else { throw openSSLError("EVP_MD_CTX_new") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestSignInit(ctx, nil, nil, nil, pkey) == 1 else { throw openSSLError("EVP_DigestSignInit") }
        var sig = [UInt8](repeating: 0, count: 64)
        var sigLen = 64
        let ok = message.withUnsafeBytes { m in
            EVP_DigestSign(ctx, &sig, &sigLen, m.bindMemory(to: UInt8.self).baseAddress, m.count)
        }
        guard ok == 1 else { throw openSSLError("EVP_DigestSign") }
        return Data(sig.prefix(sigLen))
    }

    public func verify(signature: Data, message: Data) -> Bool {
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1 else {
            _ = openSSLError("verify init")
            return false
        }
        let ok = signature.withUnsafeBytes { s in
            message.withUnsafeBytes { m in
                EVP_DigestVerify(
                    ctx, s.bindMemory(to: UInt8.self).baseAddress, s.count, m.bindMemory(to: UInt8.self).baseAddress,
                    m.count)
            }
        }
        if ok != 1 { _ = openSSLError("verify") }
        return ok == 1
    }
}

/// The detached signature file `manifest.yaml.sig`: a small text record naming the key, so a refusal can say
/// which key signed a bundle.
public struct ManifestSignature: Sendable, Equatable {
    public static let header = "appliance-signature-v1"
    public var keyFingerprint: String
    public var signature: Data

    public init(keyFingerprint: String, signature: Data) {
        self.keyFingerprint = keyFingerprint
        self.signature = signature
    }

    public func encoded() -> Data {
        Data(
            """
            \(Self.header)
            algorithm: ed25519
            key: \(keyFingerprint)
            signature: \(signature.base64EncodedString())

            """.utf8)
    }

    public static func decode(_ data: Data) -> ManifestSignature? {
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        guard lines.first == header else { return nil }
        var fields: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard fields["algorithm"] == "ed25519", let key = fields["key"], let sigText = fields["signature"],
            let sig = Data(base64Encoded: sigText), sig.count == 64
        else { return nil }
        return ManifestSignature(keyFingerprint: key, signature: sig)
    }
}
