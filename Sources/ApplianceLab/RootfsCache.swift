import Foundation
import Logging

/// The Debian root file system every node boots (read-only lower layer of each node's overlay), built
/// once with debootstrap and cached under the cache directory, keyed by a hash of what goes into it.
public struct RootfsCache: Sendable {
    /// Packages on top of `--variant=minbase`: systemd as init, sshd, and what the installer, the lab's
    /// faults and the stand-ins use on a node: the real etcd (the cluster state of the kubeadm stand-in's
    /// control planes) and openssl (its PKI); PostgreSQL 15 (the server a CloudNativePG instance pod runs,
    /// `CNPGInstanceModel`, and `psql` for Job pods such as the database smoke test, whose commands the kubelet
    /// stand-in runs on the node). The stand-ins themselves come as lab packages (`LabPackages`).
    public static let packages = [
        "systemd-sysv", "openssh-server", "iproute2", "procps", "iputils-ping", "kmod", "nftables", "etcd-server",
        "etcd-client", "openssl", "postgresql-15", "postgresql-client-15",
    ]
    public static let suite = "bookworm"
    /// Bump when `finish` changes what it writes.
    static let recipeVersion = 3

    public var cacheDirectory: String
    public var mirror: String?

    public init(cacheDirectory: String, mirror: String? = nil) {
        self.cacheDirectory = cacheDirectory
        self.mirror = mirror
    }

    public var key: String {
        let text = "\(Self.recipeVersion)|\(Self.suite)|minbase|\(Self.packages.sorted().joined(separator: ","))"
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a: a cache key, not a security boundary
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return String(hash, radix: 16)
    }

    public var path: String { "\(cacheDirectory)/rootfs-\(key)" }
    public var isCached: Bool { FileManager.default.fileExists(atPath: "\(path)/etc/lab-rootfs") }

    /// Returns the cached rootfs, building it first if needed.
    public func ensure(logger: Logger) throws(LabError) -> (path: String, built: Bool, seconds: Double) {
        if isCached { return (path, false, 0) }
        let started = Date()
        try build(logger: logger)
        return (path, true, Date().timeIntervalSince(started))
    }

    func build(logger: Logger) throws(LabError) {
        guard HostCommand.which("debootstrap") != nil else {
            throw .missingTool(tool: "debootstrap", package: "debootstrap")
        }
        let mirror: String
        if let m = self.mirror { mirror = m } else { mirror = try Self.configuredMirror(suite: Self.suite) }
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true) } catch {
            throw .io(path: cacheDirectory, detail: "\(error)")
        }
        let temp = "\(path).building-\(getpid())"
        let log = "\(path).log"
        try? fm.removeItem(atPath: temp)
        logger.notice("building the lab rootfs (once; about a minute): debootstrap \(Self.suite) from \(mirror)")
        let result = try HostCommand.run(
            "debootstrap",
            ["--variant=minbase", "--include=\(Self.packages.joined(separator: ","))", Self.suite, temp, mirror],
            check: false)
        try? result.combined.write(toFile: log, atomically: true, encoding: .utf8)
        if result.status != 0 {
            try? fm.removeItem(atPath: temp)
            let text = result.combined
            let unreachable = [
                "Failed getting release file", "Couldn't download", "Temporary failure resolving", "Could not resolve",
                "Connection refused", "Unable to connect", "No route to host", "Connection timed out",
            ]
            if unreachable.contains(where: { text.contains($0) }) {
                throw .mirrorUnreachable(
                    mirror: mirror,
                    detail: text.split(separator: "\n").last(where: { $0.hasPrefix("E:") || $0.hasPrefix("W:") })
                        .map(String.init) ?? "debootstrap could not download from it")
            }
            throw .rootfsBuildFailed(detail: "debootstrap exited with status \(result.status)", log: log)
        }
        try finish(temp)
        if fm.fileExists(atPath: "\(path)/etc/lab-rootfs") {
            try? fm.removeItem(atPath: temp)  // built concurrently by someone else
            return
        }
        try? fm.removeItem(atPath: path)
        do { try fm.moveItem(atPath: temp, toPath: path) } catch { throw .io(path: path, detail: "\(error)") }
    }

    /// Removes partial trees that interrupted builds left, for builds whose process is gone.
    func sweepAbandonedBuilds() {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: cacheDirectory)) ?? []
        for name in names where name.hasPrefix("rootfs-") {
            let parts = name.split(separator: "-")
            guard name.contains(".building-"), let pid = parts.last.flatMap({ Int32($0) }),
                !ProcessTable.isAlive(pid)
            else { continue }
            try? fm.removeItem(atPath: "\(cacheDirectory)/\(name)")
        }
    }

    /// Makes the fresh rootfs a lab node template: no host keys of its own (each node gets its own,
    /// generated before boot so they can be pinned), sshd for key-only root logins, quiet boot.
    func finish(_ root: String) throws(LabError) {
        let fm = FileManager.default
        if let names = try? fm.contentsOfDirectory(atPath: "\(root)/etc/ssh") {
            for name in names where name.hasPrefix("ssh_host_") {
                try? fm.removeItem(atPath: "\(root)/etc/ssh/\(name)")
            }
        }
        let files: [(String, String)] = [
            (
                "etc/ssh/sshd_config.d/lab.conf",
                """
                # Written by appliance lab: key-only root logins with the node's own ed25519 host key.
                HostKey /etc/ssh/ssh_host_ed25519_key
                PermitRootLogin prohibit-password
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                StrictModes no
                UseDNS no
                MaxStartups 100:30:200
                MaxSessions 64

                """
            ),
            ("etc/lab-rootfs", "key \(key)\npackages \(Self.packages.joined(separator: " "))\n"),
            ("etc/machine-id", ""),
        ]
        for (rel, text) in files {
            let p = "\(root)/\(rel)"
            do {
                try fm.createDirectory(
                    atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try text.write(toFile: p, atomically: false, encoding: .utf8)
            } catch { throw .io(path: p, detail: "\(error)") }
        }
        // Units a container does not need; masking them shortens boot.
        for unit in [
            "console-getty.service", "getty@tty1.service", "apt-daily.timer", "apt-daily-upgrade.timer",
            "e2scrub_all.timer", "fstrim.timer", "systemd-timesyncd.service", "nftables.service",
            // Debian's own etcd on localhost: kubeadm starts the control plane's etcd as its own unit.
            "etcd.service",
            // Debian's default PostgreSQL cluster: the kubelet runs CloudNativePG instances with their own data.
            "postgresql.service", "postgresql@15-main.service",
        ] {
            let link = "\(root)/etc/systemd/system/\(unit)"
            try? fm.removeItem(atPath: link)
            try? fm.createSymbolicLink(atPath: link, withDestinationPath: "/dev/null")
        }
        // Debian's etcd package leaves its default member's data dir; kubeadm owns /var/lib/etcd.
        if let names = try? fm.contentsOfDirectory(atPath: "\(root)/var/lib/etcd") {
            for name in names { try? fm.removeItem(atPath: "\(root)/var/lib/etcd/\(name)") }
        }
        // The default cluster the package made (its port would be a CNPG instance's).
        try? fm.removeItem(atPath: "\(root)/etc/postgresql/15/main")
        try? fm.removeItem(atPath: "\(root)/var/lib/postgresql/15/main")
        try? fm.removeItem(atPath: "\(root)/var/cache/apt/archives")
        try? fm.createDirectory(atPath: "\(root)/var/cache/apt/archives/partial", withIntermediateDirectories: true)
    }

    /// The Debian mirror apt is configured with (deb822 `.sources` or one-line `.list` entries) that
    /// serves `suite`; the lab uses no other host.
    public static func configuredMirror(suite: String, aptDirectory: String = "/etc/apt") throws(LabError) -> String {
        var files = ["\(aptDirectory)/sources.list"]
        let dir = "\(aptDirectory)/sources.list.d"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        files += names.sorted().filter { $0.hasSuffix(".list") || $0.hasSuffix(".sources") }.map { "\(dir)/\($0)" }
        for file in files {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { continue }
            if let m = mirror(in: text, deb822: file.hasSuffix(".sources"), suite: suite) { return m }
        }
        throw .noMirror(detail: "no `deb` entry for \(suite) main in \(aptDirectory)/sources.list(.d)")
    }

    static func mirror(in text: String, deb822: Bool, suite: String) -> String? {
        if deb822 {
            for stanza in text.components(separatedBy: "\n\n") {
                var fields: [String: String] = [:]
                for line in stanza.split(separator: "\n") where !line.hasPrefix("#") {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                        in: .whitespaces)
                }
                let types = fields["types"]?.split(separator: " ") ?? []
                let suites = fields["suites"]?.split(separator: " ") ?? []
                let components = fields["components"]?.split(separator: " ") ?? []
                if fields["enabled"]?.lowercased() == "no" { continue }
                if types.contains("deb"), suites.contains(Substring(suite)), components.contains("main"),
                    let uri = fields["uris"]?.split(separator: " ").first
                {
                    return String(uri)
                }
            }
            return nil
        }
        for line in text.split(separator: "\n") {
            var words = line.split(separator: " ").map(String.init)
            guard words.first == "deb" else { continue }
            words.removeFirst()
            if words.first?.hasPrefix("[") == true { words = Array(words.drop { !$0.hasSuffix("]") }.dropFirst()) }
            if words.count >= 3, words[1] == suite, words[2...].contains("main") { return words[0] }
        }
        return nil
    }
}
