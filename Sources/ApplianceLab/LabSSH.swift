import Foundation

/// How to reach a lab node with the system OpenSSH client: the lab key, the lab's known_hosts and
/// strict host key checking, so every login proves the pinned host key.
public struct LabSSH: Sendable {
    public var config: LabConfig
    public var adminNamespace: String?

    /// Program and arguments for `ssh root@NODE [command]`.
    public func command(address: String, remote: [String], batch: Bool = true, connectTimeout: Int = 5) -> (
        String, [String]
    ) {
        var args = options(connectTimeout: connectTimeout)
        if batch { args += ["-o", "BatchMode=yes"] }
        args += ["root@\(address)"] + remote
        return wrap(HostCommand.which("ssh") ?? "/usr/bin/ssh", args)
    }

    func options(connectTimeout: Int) -> [String] {
        [
            "-i", config.keyPath, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=\(config.knownHostsPath)",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=\(connectTimeout)",
        ]
    }

    /// Runs a client program in the admin namespace when the lab has one.
    func wrap(_ program: String, _ args: [String]) -> (String, [String]) {
        if let ns = adminNamespace {
            return (HostCommand.which("ip") ?? "/usr/sbin/ip", ["netns", "exec", ns, program] + args)
        }
        return (program, args)
    }

    /// Copies local files into a directory on the node with `scp` (same key and pinned host key).
    public func copy(_ files: [String], address: String, to remoteDirectory: String) throws(LabError) {
        let args =
            options(connectTimeout: 5) + ["-o", "BatchMode=yes", "-q"] + files + ["root@\(address):\(remoteDirectory)/"]
        let (program, full) = wrap(HostCommand.which("scp") ?? "/usr/bin/scp", args)
        try HostCommand.run(program, full, context: "scp to \(address):\(remoteDirectory) failed")
    }

    @discardableResult
    public func run(address: String, _ remote: String, check: Bool = true, connectTimeout: Int = 5) throws(LabError)
        -> HostCommand.Result
    {
        let (program, args) = command(address: address, remote: [remote], connectTimeout: connectTimeout)
        return try HostCommand.run(program, args, check: check, context: "ssh to \(address) failed")
    }
}
