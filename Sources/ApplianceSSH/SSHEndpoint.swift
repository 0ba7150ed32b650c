/// Where and how to log in to one node.
public struct SSHEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Host name or address.
    public var host: String
    public var port: Int
    public var user: String
    /// An ed25519 private key file (OpenSSH format). Its `.pub` sibling is used when present.
    public var identityFile: String?
    /// Also try the keys of the ssh-agent at `SSH_AUTH_SOCK`, when that variable is set.
    public var useAgent: Bool
    /// Wrap every command in `sudo -n -- sh -c '…'` (ignored for `root`). Needs passwordless sudo.
    public var sudo: Bool
    /// A bastion to reach this endpoint through (a `direct-tcpip` channel). The target's host key is
    /// still verified against the policy, with the target's own name and port.
    public var jump: SSHEndpoint? {
        get { jumpStorage.first }
        set { jumpStorage = newValue.map { [$0] } ?? [] }
    }
    // An array gives the indirection a recursive struct needs.
    private var jumpStorage: [SSHEndpoint] = []

    public init(
        host: String, port: Int = 22, user: String = "root", identityFile: String? = nil,
        useAgent: Bool = false, sudo: Bool = false, jump: SSHEndpoint? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.identityFile = identityFile
        self.useAgent = useAgent
        self.sudo = sudo
        self.jump = jump
    }

    /// `user@host:port`, plus ` via …` for a jump host.
    public var description: String {
        let base = "\(user)@\(host):\(port)"
        if let jump { return base + " via " + jump.description }
        return base
    }

    /// `host` or `host:port`: the name used in error messages.
    var displayName: String { port == 22 ? host : "\(host):\(port)" }
}

/// How host keys are checked. The check happens after the key exchange and before any credential is sent.
///
/// - A key matching `pinnedFingerprints` or an entry of `knownHostsFile` is accepted.
/// - A host that has an entry (or pins) with a *different* key is always refused: `hostKeyChanged`.
/// - An unknown host is refused (`hostKeyUnknown`) unless `trustNewHosts` is set; then its key is
///   appended to `knownHostsFile` (which must be set) and accepted.
public struct HostKeyPolicy: Sendable, Hashable {
    /// An OpenSSH `known_hosts` file (plain or hashed names, `[host]:port` for other ports).
    public var knownHostsFile: String?
    /// OpenSSH-style `SHA256:<base64 without padding>` fingerprints accepted for every host of this policy.
    public var pinnedFingerprints: [String]
    /// Fingerprints pinned for one host only (by `SSHEndpoint.host`), as a site file pins them per node.
    public var pinnedByHost: [String: [String]]
    /// Record the keys of unknown hosts instead of refusing them.
    public var trustNewHosts: Bool

    public init(
        knownHostsFile: String? = nil, pinnedFingerprints: [String] = [], pinnedByHost: [String: [String]] = [:],
        trustNewHosts: Bool = false
    ) {
        self.knownHostsFile = knownHostsFile
        self.pinnedFingerprints = pinnedFingerprints
        self.pinnedByHost = pinnedByHost
        self.trustNewHosts = trustNewHosts
    }
}

/// Connection tuning. The defaults suit a LAN of servers.
public struct SSHOptions: Sendable, Hashable {
    /// Limit for TCP connect, key exchange and authentication together.
    public var connectTimeout: Duration
    /// Interval of SSH keepalive messages (and TCP keepalive probes) on idle connections; `nil` turns them off.
    public var keepaliveInterval: Duration?
    /// Channels (commands, transfers, forwards) open at once on one connection; further commands wait.
    /// OpenSSH's default `MaxSessions` is 10.
    public var maxChannels: Int
    /// Bytes of command output buffered per command before reading pauses (flow control reaches the node).
    public var outputBufferBytes: Int

    public init(
        connectTimeout: Duration = .seconds(15), keepaliveInterval: Duration? = .seconds(15),
        maxChannels: Int = 8, outputBufferBytes: Int = 4 << 20
    ) {
        self.connectTimeout = connectTimeout
        self.keepaliveInterval = keepaliveInterval
        self.maxChannels = max(1, maxChannels)
        self.outputBufferBytes = max(64 << 10, outputBufferBytes)
    }
}

/// What a remote command reads on stdin.
public enum SSHInput: Sendable {
    /// Nothing: stdin is closed at once.
    case none
    case bytes([UInt8])
    /// A local file, from `offset` to its end.
    case file(path: String, offset: UInt64 = 0)
    /// Chunks produced by the caller; the stream's end closes stdin, its error fails the command.
    case stream(AsyncThrowingStream<[UInt8], any Error>)
}

/// How a remote command ended.
public struct ExitResult: Sendable, Hashable, CustomStringConvertible {
    /// The exit status, or `nil` when the command was killed by a signal.
    public var status: Int32?
    /// The signal name without `SIG` (`TERM`, `KILL`), when the command was killed by one.
    public var signal: String?

    public init(status: Int32?, signal: String?) {
        self.status = status
        self.signal = signal
    }

    public var succeeded: Bool { status == 0 && signal == nil }

    public var description: String {
        if let signal { return "killed by signal \(signal)" }
        return "exit status \(status.map(String.init) ?? "unknown")"
    }
}

/// The collected output of `SSHConnection.run`.
public struct CommandOutput: Sendable, Hashable {
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var exit: ExitResult
    /// Output beyond the limit was read and dropped.
    public var stdoutTruncated: Bool
    public var stderrTruncated: Bool

    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}
