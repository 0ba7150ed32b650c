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
        var args = [
            "-i", config.keyPath, "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=\(config.knownHostsPath)",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=\(connectTimeout)",
        ]
        if batch { args += ["-o", "BatchMode=yes"] }
        args += ["root@\(address)"] + remote
        let ssh = HostCommand.which("ssh") ?? "/usr/bin/ssh"
        if let ns = adminNamespace {
            return (HostCommand.which("ip") ?? "/usr/sbin/ip", ["netns", "exec", ns, ssh] + args)
        }
        return (ssh, args)
    }

    @discardableResult
    public func run(address: String, _ remote: String, check: Bool = true, connectTimeout: Int = 5) throws(LabError)
        -> HostCommand.Result
    {
        let (program, args) = command(address: address, remote: [remote], connectTimeout: connectTimeout)
        return try HostCommand.run(program, args, check: check, context: "ssh to \(address) failed")
    }
}
