import Foundation

/// ed25519 keys made with `ssh-keygen`: the lab's login key and each node's host key, generated before
/// the node boots so the site file and the lab's known_hosts can pin them. (libssh2 1.10 cannot use RSA
/// against OpenSSH 9.2, so ed25519 throughout.)
enum LabKeys {
    /// Writes `path` and `path.pub` (replacing any old pair).
    static func generate(path: String, comment: String) throws(LabError) {
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".pub")
        try HostCommand.run(
            "ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
            context: "cannot generate the ed25519 key \(path)")
    }

    /// `SHA256:...` as `ssh-keygen -lf` prints it.
    static func fingerprint(publicKey path: String) throws(LabError) -> String {
        let out = try HostCommand.run("ssh-keygen", ["-lf", path], context: "cannot read the key \(path)").stdout
        guard let fp = out.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") }) else {
            throw .io(path: path, detail: "ssh-keygen printed no SHA256 fingerprint: \(out)")
        }
        return String(fp)
    }

    /// "ssh-ed25519 AAAA..." without the comment.
    static func publicKeyLine(_ path: String) throws(LabError) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .io(path: path, detail: "cannot read the public key")
        }
        return text.split(separator: " ").prefix(2).joined(separator: " ")
    }
}
