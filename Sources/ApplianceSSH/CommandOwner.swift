import Foundation

/// Who started a remote command: this admin host's name and process id, as `host:pid`. Every command
/// carries it in its environment (`SSHConnection.ownerVariable`), and so do the processes it starts. A
/// run that takes over the lock of a killed one (SIGKILL, a dead laptop) uses the dead holder's mark to
/// find the commands it left running on the nodes: sshd does not end a command whose client is gone.
public enum CommandOwner {
    /// The mark of this process.
    public static let current = mark(host: hostName(), pid: getpid())

    /// The mark of a process of `host` (characters other than letters, digits, `.`, `-` and `_` become `_`,
    /// so the mark is one shell word).
    public static func mark(host: String, pid: Int32) -> String {
        let safe = String(host.map { $0.isASCII && ($0.isLetter || $0.isNumber || ".-_".contains($0)) ? $0 : "_" })
        return "\(safe.isEmpty ? "localhost" : safe):\(pid)"
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
