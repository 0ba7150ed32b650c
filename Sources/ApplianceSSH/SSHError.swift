/// Everything that can go wrong in ApplianceSSH. Every case names the host it concerns.
/// `message` is lower case and says what failed and why; `hint` says what to do next.
public enum SSHError: Error, Sendable, Hashable, CustomStringConvertible {
    /// TCP connect, name resolution or the SSH handshake failed, or the connect timeout passed.
    case unreachable(host: String, reason: String)
    /// An established connection broke (peer closed, network error).
    case connectionLost(host: String, reason: String)
    /// A command or transfer ran longer than its timeout; its channel was closed.
    case timeout(host: String, operation: String, seconds: Double)
    /// The caller's task was cancelled; the channel (or connection attempt) was closed.
    case cancelled(host: String)
    /// The host's key is in no known_hosts entry and matches no pin.
    case hostKeyUnknown(host: String, fingerprint: String)
    /// The host presented a key different from the one recorded or pinned for it.
    case hostKeyChanged(host: String, expected: [String], presented: String)
    /// Recording a new host key in the known_hosts file failed.
    case knownHostsFile(path: String, reason: String)
    case authenticationFailed(host: String, user: String, reason: String)
    /// The server refused or broke a channel (session, exec, direct-tcpip).
    case channel(host: String, step: String, reason: String)
    /// libssh2 reported an error not covered above.
    case libssh2(host: String, step: String, code: Int32, message: String)
    /// A command exited non-zero (thrown by `SSHConnection.check` and transfers).
    case commandFailed(host: String, command: String, exit: ExitResult, stderr: String)
    /// A local file could not be read or written.
    case localFile(path: String, reason: String)
    /// The connection was closed by `close()` (or a pool shut down) before the operation finished.
    case closed(host: String)

    /// Coarse kinds, for exit codes.
    public enum Category: String, Sendable, Hashable {
        case unreachable, authentication, hostKey, remote, cancelled, `internal`
    }

    public var category: Category {
        switch self {
        case .unreachable, .connectionLost: .unreachable
        case .authenticationFailed: .authentication
        case .hostKeyUnknown, .hostKeyChanged, .knownHostsFile: .hostKey
        case .timeout, .channel, .commandFailed: .remote
        case .cancelled, .closed: .cancelled
        case .libssh2, .localFile: .internal
        }
    }

    /// The host this error concerns, when it concerns one.
    public var host: String? {
        switch self {
        case .unreachable(let h, _), .connectionLost(let h, _), .timeout(let h, _, _), .cancelled(let h),
            .hostKeyUnknown(let h, _), .hostKeyChanged(let h, _, _), .authenticationFailed(let h, _, _),
            .channel(let h, _, _), .libssh2(let h, _, _, _), .commandFailed(let h, _, _, _), .closed(let h):
            h
        case .knownHostsFile, .localFile: nil
        }
    }

    public var message: String {
        switch self {
        case .unreachable(let host, let reason):
            "cannot reach \(host): \(reason)"
        case .connectionLost(let host, let reason):
            "connection to \(host) was lost: \(reason)"
        case .timeout(let host, let operation, let seconds):
            "\(operation) on \(host) did not finish within \(Self.format(seconds)) s"
        case .cancelled(let host):
            "operation on \(host) was cancelled"
        case .hostKeyUnknown(let host, let fingerprint):
            "host key of \(host) is not known (presented \(fingerprint))"
        case .hostKeyChanged(let host, let expected, let presented):
            "host key of \(host) has changed: expected \(expected.joined(separator: " or ")), presented \(presented)"
        case .knownHostsFile(let path, let reason):
            "cannot record host key in \(path): \(reason)"
        case .authenticationFailed(let host, let user, let reason):
            "authentication as \(user) on \(host) failed: \(reason)"
        case .channel(let host, let step, let reason):
            "\(step) on \(host) failed: \(reason)"
        case .libssh2(let host, let step, let code, let message):
            "\(step) on \(host) failed: \(message) (libssh2 error \(code))"
        case .commandFailed(let host, let command, let exit, let stderr):
            "command on \(host) failed with \(exit): \(command)"
                + (stderr.isEmpty ? "" : "\n" + Self.tail(stderr))
        case .localFile(let path, let reason):
            "cannot use local file \(path): \(reason)"
        case .closed(let host):
            "connection to \(host) was closed before the operation finished"
        }
    }

    public var hint: String? {
        switch self {
        case .unreachable:
            "check that the node is powered on, the address and port are right, and sshd is running"
        case .connectionLost:
            "check the network and the node; the operation can be retried"
        case .timeout:
            "the node may be overloaded; raise the timeout or inspect the node"
        case .cancelled, .closed:
            nil
        case .hostKeyUnknown:
            "verify the fingerprint out of band, then pin it in the site file or rerun with --trust-new-hosts to record it"
        case .hostKeyChanged:
            "the node was reinstalled or someone is intercepting the connection; if the change is expected, remove the old entry from known_hosts (ssh-keygen -R HOST) or update the pin"
        case .knownHostsFile:
            "check that the directory exists and is writable"
        case .authenticationFailed:
            "check that the public key of the identity file is in the node's authorized_keys (ed25519 keys only; libssh2 1.10 cannot use RSA keys with OpenSSH 9)"
        case .channel:
            "check the node's sshd limits (MaxSessions) and that the command or forward is allowed"
        case .libssh2:
            "this is unexpected; please report it with the log file"
        case .commandFailed:
            "see the command's error output above"
        case .localFile:
            "check that the path exists and is readable or writable"
        }
    }

    public var description: String {
        if let hint { return "\(message)\nhint: \(hint)" }
        return message
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }

    private static func tail(_ text: String) -> String {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(10)
        return lines.joined(separator: "\n")
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
