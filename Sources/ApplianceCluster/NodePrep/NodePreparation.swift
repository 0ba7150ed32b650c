import ApplianceSSH
import Foundation

/// OS preparation of one node for Kubernetes: swap off now and in `/etc/fstab`, the sysctl and
/// modules-load files applied, `/etc/hosts` entries for every node, the site's hostname. The files come from
/// pure renderers; `/etc/fstab` and `/etc/hosts` are transformed from what the node has (idempotent).
public struct NodePreparation: Sendable {
    public let runner: NodeRunner
    /// Files written as they are (the sysctl and modules-load files).
    public let files: [NodeFile]
    /// The kernel parameters the sysctl file sets, checked live.
    public let sysctls: [(key: String, value: String)]
    /// Kernel modules to load (where the kernel allows it: a container cannot).
    public let modules: [String]
    public let hostname: String
    public let fstab: @Sendable (String) -> String
    public let hosts: @Sendable (String) -> String

    public init(
        runner: NodeRunner, files: [NodeFile], sysctls: [(key: String, value: String)], modules: [String],
        hostname: String, fstab: @escaping @Sendable (String) -> String, hosts: @escaping @Sendable (String) -> String
    ) {
        self.runner = runner
        self.files = files
        self.sysctls = sysctls
        self.modules = modules
        self.hostname = hostname
        self.fstab = fstab
        self.hosts = hosts
    }

    /// What is not prepared yet (empty: done).
    public func missing() async throws -> [String] {
        var probes = "[ \"$(wc -l < /proc/swaps)\" -le 1 ] || echo 'swap is on'\n"
        probes += "[ \"$(hostname)\" = \(shellQuote(hostname)) ] || echo \"hostname is $(hostname)\"\n"
        for s in sysctls {
            let path = "/proc/sys/" + s.key.replacingOccurrences(of: ".", with: "/")
            probes +=
                "[ \"$(cat \(shellQuote(path)) 2>/dev/null)\" = \(shellQuote(s.value)) ] || echo '\(s.key) is not \(s.value)'\n"
        }
        var problems = try await runner.run(probes, label: "os state").split(separator: "\n").map(String.init)
        let current = try await currentFiles()
        problems += try await runner.differing(files + current).map { "\($0.path) differs" }
        return problems
    }

    /// `/etc/fstab` and `/etc/hosts` as they should be, from what the node has now.
    func currentFiles() async throws -> [NodeFile] {
        let out = try await runner.run(
            "cat /etc/fstab 2>/dev/null; echo '\u{1E}'; cat /etc/hosts 2>/dev/null", label: "read fstab and hosts")
        let parts = out.components(separatedBy: "\u{1E}\n")
        let fstabNow = parts.first ?? ""
        let hostsNow = parts.count > 1 ? parts[1] : ""
        return [
            NodeFile(path: "/etc/fstab", mode: 0o644, content: fstab(fstabNow)),
            NodeFile(path: "/etc/hosts", mode: 0o644, content: hosts(hostsNow)),
        ]
    }

    public func apply() async throws {
        try await runner.ensure(files + currentFiles())
        let h = shellQuote(hostname)
        var script = """
            swapoff -a || { echo 'swapoff failed' >&2; exit 3; }
            if [ "$(hostname)" != \(h) ]; then echo \(h) > /etc/hostname && hostname \(h) || exit 4; fi

            """
        for m in modules {
            let q = shellQuote(m)
            script +=
                "[ -d /sys/module/\(q) ] || modprobe \(q) 2>/dev/null || echo \"warning: module \(m) cannot be loaded here (the kernel or a container forbids it)\" >&2\n"
        }
        if let file = files.first(where: { $0.path.hasPrefix("/etc/sysctl.d/") }) {
            script += "sysctl -q -p \(shellQuote(file.path)) || exit 5\n"
        }
        try await runner.run(script, label: "prepare the OS")
        let left = try await missing()
        if !left.isEmpty {
            throw ClusterError.node(
                node: runner.name, reason: "OS preparation incomplete: " + left.joined(separator: "; "))
        }
    }
}
