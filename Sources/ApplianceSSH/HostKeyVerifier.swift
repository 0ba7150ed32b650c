internal import CLibSSH2
import Foundation

/// OpenSSH-style fingerprints: `SHA256:` + base64 of the SHA-256 of the key blob, without padding.
public enum HostKeyFingerprint {
    /// The fingerprint of a raw public key blob (as in known_hosts, base64-decoded).
    public static func sha256(ofKeyBlob blob: [UInt8]) -> String {
        format(digest: SHA256.hash(blob))
    }

    static func format(digest: [UInt8]) -> String {
        var b64 = Data(digest).base64EncodedString()
        while b64.hasSuffix("=") { b64.removeLast() }
        return "SHA256:" + b64
    }

    /// Normalises a pin: `SHA256:` prefix, no padding.
    static func normalize(_ pin: String) -> String {
        var p = pin.trimmingCharacters(in: .whitespaces)
        if !p.hasPrefix("SHA256:") { p = "SHA256:" + p }
        while p.hasSuffix("=") { p.removeLast() }
        return p
    }
}

/// A host's public key as known_hosts and `*.pub` files write it.
public struct HostPublicKey: Sendable, Hashable {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, ...
    public var type: String
    public var base64: String

    /// `TYPE BASE64`, for a known_hosts line after the host pattern.
    public var line: String { "\(type) \(base64)" }
}

/// Checks the server's host key after the key exchange and before authentication.
/// Runs on a `SessionLoop` thread (it calls libssh2 on that loop's session).
enum HostKeyVerifier {
    /// Serialises known_hosts updates within this process; `flock` serialises them across processes.
    private static let fileLock = NSLock()

    /// Returns the verified key as a known_hosts-style `TYPE BASE64` pair (when its type is known).
    @discardableResult
    static func verify(session: SessionHandle, endpoint: SSHEndpoint, policy: HostKeyPolicy) throws(SSHError)
        -> HostPublicKey?
    {
        let host = endpoint.displayName
        var keyLength = 0
        var keyType: Int32 = 0
        guard let keyPointer = libssh2_session_hostkey(session.raw, &keyLength, &keyType), keyLength > 0 else {
            throw .libssh2(host: host, step: "reading the host key", code: -10, message: "server sent no host key")
        }
        let blob = [UInt8](UnsafeRawBufferPointer(start: keyPointer, count: keyLength))
        let presented: String
        if let hash = libssh2_hostkey_hash(session.raw, cssh2_hostkey_hash_sha256()) {
            presented = HostKeyFingerprint.format(
                digest: [UInt8](UnsafeRawBufferPointer(start: hash, count: 32)))
        } else {
            presented = HostKeyFingerprint.sha256(ofKeyBlob: blob)
        }

        let verifiedKey = KnownHosts.keyTypeName(keyType).map {
            HostPublicKey(type: $0, base64: Data(blob).base64EncodedString())
        }
        let pins = (policy.pinnedFingerprints + (policy.pinnedByHost[endpoint.host] ?? []))
            .map(HostKeyFingerprint.normalize)
        if pins.contains(presented) { return verifiedKey }

        var expected: [String] = pins
        if let path = policy.knownHostsFile {
            switch try KnownHosts.check(path: path, session: session, endpoint: endpoint, key: blob, keyType: keyType) {
            case .match:
                return verifiedKey
            case .mismatch(let recorded):
                expected += recorded
            case .notFound:
                break
            }
        }
        if !expected.isEmpty {
            throw .hostKeyChanged(host: host, expected: expected, presented: presented)
        }
        if policy.trustNewHosts, let path = policy.knownHostsFile {
            try KnownHosts.append(path: path, endpoint: endpoint, key: blob, keyType: keyType, lock: fileLock)
            return verifiedKey
        }
        throw .hostKeyUnknown(host: host, fingerprint: presented)
    }
}

/// known_hosts reading (through libssh2's matcher, line by line so one unsupported line does not hide
/// the others) and appending.
enum KnownHosts {
    enum Check {
        case match
        /// Entries for this host with a key of the same type but different bytes (their fingerprints).
        case mismatch([String])
        case notFound
    }

    static func keyTypeName(_ type: Int32) -> String? {
        switch type {
        case 1: "ssh-rsa"
        case 2: "ssh-dss"
        case 3: "ecdsa-sha2-nistp256"
        case 4: "ecdsa-sha2-nistp384"
        case 5: "ecdsa-sha2-nistp521"
        case 6: "ssh-ed25519"
        default: nil
        }
    }

    /// The known_hosts name of an endpoint: `host`, or `[host]:port` for ports other than 22.
    static func hostPattern(_ endpoint: SSHEndpoint) -> String {
        endpoint.port == 22 ? endpoint.host : "[\(endpoint.host)]:\(endpoint.port)"
    }

    static func check(path: String, session: SessionHandle, endpoint: SSHEndpoint, key: [UInt8], keyType: Int32)
        throws(SSHError) -> Check
    {
        guard FileManager.default.fileExists(atPath: path) else { return .notFound }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .knownHostsFile(path: path, reason: "cannot be read")
        }
        guard let hosts = libssh2_knownhost_init(session.raw) else {
            throw .libssh2(host: endpoint.displayName, step: "known hosts", code: -6, message: "out of memory")
        }
        defer { libssh2_knownhost_free(hosts) }
        for line in text.split(whereSeparator: \.isNewline) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix("@") { continue }
            let bytes = Array(trimmed.utf8)
            // Lines libssh2 cannot parse (key types it does not know) are skipped, not fatal.
            _ = bytes.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) {
                    libssh2_knownhost_readline(hosts, $0.baseAddress, $0.count, LIBSSH2_KNOWNHOST_FILE_OPENSSH)
                }
            }
        }
        // First compare entries of the presented key type; if there are none, entries of other types
        // for this host still mean "known host, different key" (a changed key, as OpenSSH treats it).
        for keyBits in [cssh2_knownhost_key_bits(keyType), 0] {
            var found: UnsafeMutablePointer<libssh2_knownhost>?
            let rc = key.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) {
                    cssh2_knownhost_checkp(
                        hosts, endpoint.host, endpoint.port == 22 ? -1 : Int32(endpoint.port), $0.baseAddress, $0.count,
                        keyBits, &found)
                }
            }
            if rc == cssh2_knownhost_check_match() { return .match }
            if rc == cssh2_knownhost_check_mismatch() {
                var recorded: [String] = []
                if let k = found?.pointee.key, let blob = Data(base64Encoded: String(cString: k)) {
                    recorded.append(HostKeyFingerprint.sha256(ofKeyBlob: [UInt8](blob)))
                }
                return .mismatch(recorded.isEmpty ? ["(unreadable entry)"] : recorded)
            }
        }
        return .notFound
    }

    /// Appends `[host]:port type base64` atomically: the new content is written to a temporary file
    /// in the same directory and renamed over the old one, under an in-process lock and an `flock`.
    static func append(path: String, endpoint: SSHEndpoint, key: [UInt8], keyType: Int32, lock: NSLock) throws(SSHError)
    {
        guard let typeName = keyTypeName(keyType) else {
            throw .knownHostsFile(path: path, reason: "unsupported host key type \(keyType)")
        }
        let line = "\(hostPattern(endpoint)) \(typeName) \(Data(key).base64EncodedString())\n"
        lock.lock()
        defer { lock.unlock() }
        let directory = (path as NSString).deletingLastPathComponent
        do {
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
        } catch {
            throw .knownHostsFile(path: path, reason: "\(error)")
        }
        let lockFD = open(path + ".lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        defer {
            if lockFD >= 0 {
                flock(lockFD, LOCK_UN)
                close(lockFD)
            }
        }
        var existing = (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
        if let last = existing.last, last != UInt8(ascii: "\n") { existing.append(UInt8(ascii: "\n")) }
        existing.append(contentsOf: Array(line.utf8))
        let temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0 ... .max))"
        let fd = open(temporary, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .knownHostsFile(path: path, reason: Socket.errnoText()) }
        let written = existing.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == existing.count, synced, rename(temporary, path) == 0 else {
            let reason = Socket.errnoText()
            unlink(temporary)
            throw .knownHostsFile(path: path, reason: reason)
        }
    }
}
