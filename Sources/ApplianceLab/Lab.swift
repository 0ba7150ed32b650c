import ApplianceModel
import Foundation
import Logging

/// The lab: `up`, `status`, `fault`, `down`. Synchronous and blocking (it runs and waits for host
/// programs); per-node work runs on plain threads in parallel.
public struct Lab: Sendable {
    public var config: LabConfig
    public var logger: Logger

    public init(config: LabConfig, logger: Logger) {
        self.config = config
        self.logger = logger
    }

    public struct UpOptions: Sendable {
        public var profile: String
        public var nodes: Int
        public var controlPlanes: Int
        /// Dedicated system nodes (the platform's services) after the control planes; 0: the control planes
        /// carry the system role.
        public var systemNodes: Int
        public var linkRate: String?
        public var adminLinkRate: String?
        public var adminNamespace: Bool
        public var diskSizeMiB: Int
        public var mirror: String?
        public var readyTimeout: TimeInterval

        public init(
            profile: String = "lab", nodes: Int = 3, controlPlanes: Int = 1, systemNodes: Int = 0,
            linkRate: String? = nil,
            adminLinkRate: String? = nil, adminNamespace: Bool = false, diskSizeMiB: Int = 4096, mirror: String? = nil,
            readyTimeout: TimeInterval = 90
        ) {
            self.profile = profile
            self.nodes = nodes
            self.controlPlanes = controlPlanes
            self.systemNodes = systemNodes
            self.linkRate = linkRate
            self.adminLinkRate = adminLinkRate
            self.adminNamespace = adminNamespace
            self.diskSizeMiB = diskSizeMiB
            self.mirror = mirror
            self.readyTimeout = readyTimeout
        }
    }

    public struct UpReport: Sendable {
        public var state: LabState
        public var rootfsBuilt: Bool
        public var rootfsSeconds: Double
        /// From the start of the node phase (rootfs ready) to every node accepting an SSH login.
        public var nodesReadySeconds: Double
    }

    // MARK: checks

    public static func requireRoot() throws(LabError) {
        if geteuid() != 0 { throw .notRoot }
    }

    static func requireTools(_ tools: [String]) throws(LabError) {
        for t in tools where HostCommand.which(t) == nil {
            throw .missingTool(tool: t, package: HostCommand.packageHint(t))
        }
    }

    /// Network namespaces and nspawn must work here; probed with throwaway objects.
    static func probeHost() throws(LabError) {
        // Unique per call: two probes of one process (parallel test suites) must not collide.
        let probe = "ap-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let r = try HostCommand.run("ip", ["netns", "add", probe], check: false)
        if r.status != 0 { throw .namespacesUnavailable(detail: r.combined) }
        _ = try? HostCommand.run("ip", ["netns", "delete", probe], check: false)
        let v = try HostCommand.run("systemd-nspawn", ["--version"], check: false)
        if v.status != 0 { throw .nspawnUnavailable(detail: v.combined) }
    }

    public func loadState() throws(LabError) -> LabState {
        guard let s = try LabState.load(config.statePath) else { throw .notRunning(directory: config.directory) }
        return s
    }

    // MARK: up

    public func up(_ o: UpOptions) throws(LabError) -> UpReport {
        try Self.requireRoot()
        let profile = try LabProfile.named(o.profile)
        guard (1...200).contains(o.nodes) else { throw .invalidArgument("--nodes must be between 1 and 200") }
        guard (1...o.nodes).contains(o.controlPlanes) else {
            throw .invalidArgument("--control-planes must be between 1 and the number of nodes (\(o.nodes))")
        }
        guard o.systemNodes >= 0, o.controlPlanes + o.systemNodes <= o.nodes else {
            throw .invalidArgument(
                "--system-nodes must be between 0 and the nodes left after the control planes (\(o.nodes - o.controlPlanes))"
            )
        }
        for rate in [o.linkRate, o.adminLinkRate].compactMap({ $0 }) { _ = try LabNetwork.bitsPerSecond(rate) }
        try Self.requireTools(["ip", "tc", "nft", "mount", "unshare", "nsenter", "systemd-nspawn", "ssh", "ssh-keygen"])
        try Self.probeHost()
        try refuseIfRunning()

        let cache = RootfsCache(cacheDirectory: config.cacheDirectory, mirror: o.mirror)
        let rootfs = try cache.ensure(logger: logger)
        if rootfs.built {
            logger.notice("lab rootfs built in \(String(format: "%.1f", rootfs.seconds)) s: \(rootfs.path)")
        }

        let started = Date()
        // The lab directory is the lock: mkdir is atomic, so of two concurrent `up`s one fails here.
        do {
            try FileManager.default.createDirectory(
                atPath: (config.directory as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        } catch { throw .io(path: config.directory, detail: "\(error)") }
        if mkdir(config.directory, 0o700) != 0 {
            throw .alreadyRunning(directory: config.directory, detail: "its directory exists")
        }
        var state = LabState(
            id: config.id, subnet: config.subnet, profile: profile.name, phase: .starting, createdAt: Date(),
            rootfs: rootfs.path, adminNamespace: o.adminNamespace ? config.adminNamespace : nil,
            adminAddress: config.adminAddress, linkRate: o.linkRate, adminLinkRate: o.adminLinkRate,
            diskSizeMiB: o.diskSizeMiB, nodes: [])
        let names = Self.nodeNames(
            profile: profile, count: o.nodes, controlPlanes: o.controlPlanes, systemNodes: o.systemNodes)
        for (i, name) in names.enumerated() {
            state.nodes.append(
                .init(
                    name: name, index: i + 1, address: config.nodeAddress(i + 1),
                    roles: profile.roles(
                        index: i, count: o.nodes, controlPlanes: o.controlPlanes, systemNodes: o.systemNodes),
                    hostKeyFingerprint: "", pid: nil, faults: []))
        }
        try state.save(config.statePath)

        // Keys: the lab's login key, one host key per node, pinned in known_hosts and the site file.
        do {
            try FileManager.default.createDirectory(
                atPath: "\(config.directory)/ssh", withIntermediateDirectories: true)
        } catch { throw .io(path: "\(config.directory)/ssh", detail: "\(error)") }
        try LabKeys.generate(path: config.keyPath, comment: "appliance-lab-\(config.id)")
        let authorizedKey = try LabKeys.publicKeyLine(config.keyPath + ".pub")
        var knownHosts = ""
        for i in state.nodes.indices {
            let n = state.nodes[i]
            let keyDir = "\(config.nodeDirectory(n.name))/keys"
            do { try FileManager.default.createDirectory(atPath: keyDir, withIntermediateDirectories: true) } catch {
                throw .io(path: keyDir, detail: "\(error)")
            }
            try LabKeys.generate(path: "\(keyDir)/ssh_host_ed25519_key", comment: "root@\(n.name)")
            state.nodes[i].hostKeyFingerprint = try LabKeys.fingerprint(publicKey: "\(keyDir)/ssh_host_ed25519_key.pub")
            knownHosts += "\(n.address) \(try LabKeys.publicKeyLine("\(keyDir)/ssh_host_ed25519_key.pub"))\n"
        }
        try write(knownHosts, to: config.knownHostsPath)
        try state.save(config.statePath)

        // Network, then each node's files, then boot everything at once.
        try LabServerParity.loadHostModules()
        let net = LabNetwork(config: config)
        try net.createFabric(adminNamespace: state.adminNamespace, adminRate: o.adminLinkRate)
        let hosts =
            "127.0.0.1 localhost\n::1 localhost\n"
            + state.nodes.map { "\($0.address) \($0.name)" }.joined(separator: "\n") + "\n"
        for n in state.nodes {
            try net.createNode(n, rate: o.linkRate)
            try LabNode(config: config, node: n).prepare(
                rootfs: rootfs.path, hosts: hosts, authorizedKey: authorizedKey,
                hardware: profile.declaration(node: n.name, roles: n.roles), diskSizeMiB: o.diskSizeMiB)
        }
        for i in state.nodes.indices {
            state.nodes[i].pid = try LabNode(config: config, node: state.nodes[i]).boot()
            try state.save(config.statePath)
        }
        try waitUntilReady(state, nodes: state.nodes, timeout: o.readyTimeout)
        state.phase = .running
        try state.save(config.statePath)
        try write(siteInventory(state).yaml(), to: config.sitePath)
        let seconds = Date().timeIntervalSince(started)
        logger.debug("lab up: \(state.nodes.count) nodes SSH-ready in \(String(format: "%.1f", seconds)) s")
        return UpReport(
            state: state, rootfsBuilt: rootfs.built, rootfsSeconds: rootfs.seconds, nodesReadySeconds: seconds)
    }

    func refuseIfRunning() throws(LabError) {
        if let s = try? LabState.load(config.statePath) {
            throw .alreadyRunning(
                directory: config.directory,
                detail:
                    "\(s.nodes.count) nodes, \(s.phase == .starting ? "interrupted while starting" : "up since \(s.createdAt)")"
            )
        }
        if FileManager.default.fileExists(atPath: config.directory) {
            throw .alreadyRunning(
                directory: config.directory, detail: "left from an interrupted `lab up` or `lab down`")
        }
        let mine = LabNetwork.namespaces().filter { $0 == config.labNamespace || $0.hasPrefix(config.prefix + "-") }
        if !mine.isEmpty {
            throw .alreadyRunning(
                directory: config.directory, detail: "its namespaces exist: \(mine.joined(separator: ", "))")
        }
        let addrs = (try? HostCommand.run("ip", ["-o", "-4", "addr", "show"], check: false).stdout) ?? ""
        if let line = addrs.split(separator: "\n").first(where: { $0.contains(" \(config.subnet).") }) {
            throw .subnetInUse(
                subnet: config.subnet, detail: line.split(separator: " ").prefix(4).joined(separator: " "))
        }
    }

    /// cp-1.., then sys-1.. for dedicated system nodes, then gpu-1.. (or cpu-1..) for workers.
    static func nodeNames(profile: LabProfile, count: Int, controlPlanes: Int, systemNodes: Int = 0) -> [String] {
        let worker = profile.workerRole == .gpuWorker ? "gpu" : "cpu"
        return (0..<count).map {
            if $0 < controlPlanes { return "cp-\($0 + 1)" }
            if $0 < controlPlanes + systemNodes { return "sys-\($0 - controlPlanes + 1)" }
            return "\(worker)-\($0 - controlPlanes - systemNodes + 1)"
        }
    }

    public func ssh(_ state: LabState) -> LabSSH { LabSSH(config: config, adminNamespace: state.adminNamespace) }

    /// Waits until every node accepts a login with the lab key and shows its pinned host key.
    func waitUntilReady(_ state: LabState, nodes: [LabState.Node], timeout: TimeInterval) throws(LabError) {
        let ssh = ssh(state)
        let deadline = Date().addingTimeInterval(timeout)
        let failures = Parallel.map(nodes) { node -> String? in
            var last = ""
            while Date() < deadline {
                if let pid = node.pid, !ProcessTable.isAlive(pid) {
                    return "\(node.name): systemd-nspawn exited; see \(config.consoleLog(node.name))"
                }
                let r = try? ssh.run(address: node.address, "true", check: false, connectTimeout: 2)
                if r?.status == 0 { return nil }
                last = r?.combined ?? ""
                usleep(150_000)
            }
            return "\(node.name): \(last.isEmpty ? "no answer" : last)"
        }.compactMap { $0 }
        if let first = failures.first {
            throw .nodeNotReady(
                node: first.split(separator: ":").first.map(String.init) ?? "?", seconds: Int(timeout),
                detail: failures.joined(separator: "; "))
        }
    }

    public func siteInventory(_ state: LabState) -> SiteInventory {
        let endpoint = apiEndpoint(state)
        var site = SiteInventory(
            name: "lab-\(state.id)", profile: state.profile,
            ssh: .init(
                user: "root", port: 22, identityFile: config.keyPath, knownHostsFile: config.knownHostsPath,
                connectTimeoutSeconds: 5, parallelism: 32),
            hosts: state.nodes.map {
                .init(name: $0.name, address: $0.address, roles: $0.roles, hostKeyFingerprints: [$0.hostKeyFingerprint])
            },
            network: .init(
                domain: "lab-\(state.id).internal", apiEndpoint: endpoint.hostPort, endpoint: endpoint,
                podCIDR: LabConfig.podCIDR, serviceCIDR: LabConfig.serviceCIDR, nodeCIDR: "\(config.subnet).0/24"))
        site.preflight = .init(waivers: Self.preflightWaivers())
        return site
    }

    /// What a container node cannot have of a real server's profile, waived in the lab's site file with the
    /// reason, so that preflight and install show them as waived instead of hiding them (issue 11).
    static func preflightWaivers() -> [SiteInventory.PreflightWaiver] {
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        let gib = Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30)
        return [
            .init(
                check: "hw.cpu",
                reason:
                    "lab node: a container sharing this machine's \(cpus) CPUs, not a server with the profile's CPU count"
            ),
            .init(
                check: "hw.memory",
                reason:
                    "lab node: a container sharing this machine's \(String(format: "%.1f", gib)) GiB of memory, not a server with the profile's"
            ),
            .init(
                check: "hw.disk",
                reason: "lab node: its root is an overlay on this machine's disk, not a server's system disk"),
            .init(
                check: "os.release",
                reason: "lab node: runs the lab's Debian 12 rootfs, whatever OS releases the profile lists"),
            .init(
                check: "dns.wildcard",
                reason:
                    "lab: no DNS server runs in the lab, so the platform's wildcard name under spec.network.domain does not resolve on its nodes"
            ),
        ]
    }

    /// The API endpoint the site names: the first control plane's address with one, the lab's free virtual IP
    /// (`LabConfig.virtualIP`, for keepalived) with several.
    func apiEndpoint(_ state: LabState) -> SiteInventory.APIEndpoint {
        let cps = state.nodes.filter { $0.roles.contains(.controlPlane) }
        if cps.count > 1 { return .init(address: config.virtualIP, mode: .virtualIP) }
        return .init(
            address: cps.first?.address ?? state.nodes.first?.address ?? config.nodeAddress(1), mode: .loadBalancer)
    }

    func write(_ text: String, to path: String) throws(LabError) {
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw .io(path: path, detail: "\(error)")
        }
    }

    // MARK: status

    public enum NodeCondition: String, Sendable, Codable { case running, off, exited }

    public func condition(_ node: LabState.Node) -> NodeCondition {
        guard let pid = node.pid else { return .off }
        return ProcessTable.isAlive(pid) ? .running : .exited
    }

    /// Which kubectl a running node has: "real v1.33.5", "stand-in v1.34.3", or nil (none installed, or the
    /// node is not reachable). Reads what the lab's kubectl package's postinst wrote.
    public func kubectlKind(_ state: LabState, _ node: LabState.Node) -> String? {
        guard condition(node) == .running,
            let r = try? ssh(state).run(
                address: node.address,
                "cat /var/lib/appliance-lab/kubectl-kind /var/lib/appliance-lab/versions/kubectl 2>/dev/null",
                check: false, connectTimeout: 2),
            r.status == 0
        else { return nil }
        let words = r.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
        guard words.count == 2 else { return nil }
        return "\(words[0]) \(words[1])"
    }

    // MARK: down

    public struct DownReport: Sendable {
        public var stopped: Int = 0
        public var unmounted: Int = 0
        public var namespaces: Int = 0
        public var links: Int = 0
        public var removedDirectory = false
        public var isEmpty: Bool { stopped + unmounted + namespaces + links == 0 && !removedDirectory }
    }

    /// Removes every process, mount, namespace, link and file of the lab (but not the rootfs cache).
    /// Works from whatever is there, state file or not; running it again finds nothing and succeeds.
    public func down() throws(LabError) -> DownReport {
        try Self.requireRoot()
        var report = DownReport()
        let state = try? LabState.load(config.statePath)
        // 1. Containers: by recorded pid and by machine name, so a half-recorded `up` is found too.
        var pids = Set(ProcessTable.nspawnProcesses(machinePrefix: config.prefix + "-").map(\.pid))
        for n in state?.nodes ?? [] {
            if let pid = n.pid, let e = ProcessTable.entry(pid), e.arguments.first?.hasSuffix("systemd-nspawn") == true
            {
                pids.insert(pid)
            }
        }
        // boot scripts caught before their `exec systemd-nspawn`
        let nodesDir = config.directory + "/nodes/"
        let scripts = ProcessTable.all().filter { e in
            e.arguments.contains { $0.hasPrefix(nodesDir) && $0.hasSuffix("/boot.sh") }
        }
        for s in scripts { kill(s.pid, SIGTERM) }
        let left = ProcessTable.terminate(Array(pids), timeout: 60)
        report.stopped = pids.count - left.count
        if let pid = left.first {
            throw .stopTimedOut(
                node: ProcessTable.entry(pid)?.arguments.drop { $0 != "-M" }.dropFirst().first ?? "?", pid: pid)
        }
        // 2. Mounts under the lab directory (the per-node tmpfs), deepest first.
        for mount in Self.mounts(under: config.directory).sorted(by: { $0.count > $1.count }) {
            let r = try HostCommand.run("umount", [mount], check: false)
            if r.status != 0 { try HostCommand.run("umount", ["-l", mount], context: "cannot unmount \(mount)") }
            report.unmounted += 1
        }
        // 3. Namespaces (their veths and the bridge go with them), then the admin link if it was in the host.
        for ns in LabNetwork.namespaces() where ns == config.labNamespace || ns.hasPrefix(config.prefix + "-") {
            try HostCommand.run("ip", ["netns", "delete", ns], context: "cannot delete the network namespace \(ns)")
            report.namespaces += 1
        }
        // Deleting the lab namespace destroys the veth pair asynchronously: the admin end can vanish between
        // the check and the delete, which is success too.
        if LabNetwork.linkExists(config.adminLink) {
            let r = try HostCommand.run("ip", ["link", "delete", config.adminLink], check: false)
            if r.status != 0 && LabNetwork.linkExists(config.adminLink) {
                throw .commandFailed(
                    command: "ip link delete \(config.adminLink)", status: r.status, output: r.combined,
                    context: "cannot delete the link \(config.adminLink)")
            }
            report.links += 1
        }
        // 4. The nodes' cgroups (empty now), deepest first: cgroup directories go with rmdir only.
        for dir in Self.cgroupDirectories(config) {
            if rmdir(dir) != 0 && errno != ENOENT {
                throw .io(path: dir, detail: "cannot remove the cgroup: \(String(cString: strerror(errno)))")
            }
        }
        // 5. Files, and partial trees of interrupted rootfs builds (the finished cache stays).
        RootfsCache(cacheDirectory: config.cacheDirectory).sweepAbandonedBuilds()
        if FileManager.default.fileExists(atPath: config.directory) {
            do { try FileManager.default.removeItem(atPath: config.directory) } catch {
                throw .io(path: config.directory, detail: "cannot remove the lab directory: \(error)")
            }
            report.removedDirectory = true
        }
        return report
    }

    /// The lab's cgroup directories in every hierarchy, children before parents.
    static func cgroupDirectories(_ config: LabConfig) -> [String] {
        var dirs: [String] = []
        for h in LabConfig.cgroupHierarchies where FileManager.default.fileExists(atPath: "\(h)/cgroup.procs") {
            let root = "\(h)/\(config.cgroupParent)"
            guard FileManager.default.fileExists(atPath: root) else { continue }
            let sub = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
            dirs +=
                sub.map { "\(root)/\($0)" }.filter { path in
                    var isDir: ObjCBool = false
                    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
                } + [root]
        }
        return dirs.sorted { $0.split(separator: "/").count > $1.split(separator: "/").count }
    }

    /// Mount points at or below `directory`, from this process's mount table.
    static func mounts(under directory: String) -> [String] {
        guard let text = ProcFile.text("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = unescapeMountPath(String(fields[4]))
            return point == directory || point.hasPrefix(directory + "/") ? point : nil
        }
    }

    static func unescapeMountPath(_ s: String) -> String {
        s.replacingOccurrences(of: "\\040", with: " ").replacingOccurrences(of: "\\011", with: "\t")
            .replacingOccurrences(of: "\\012", with: "\n").replacingOccurrences(of: "\\134", with: "\\")
    }
}

/// Runs blocking work for each element on its own thread and returns the results in order. For a
/// handful of nodes that mostly wait on processes; not for CPU-bound work.
enum Parallel {
    static func map<T: Sendable, R: Sendable>(_ items: [T], _ body: @escaping @Sendable (T) -> R) -> [R] {
        let results = ResultsBox<R>(count: items.count)
        let group = DispatchGroup()
        for (i, item) in items.enumerated() {
            group.enter()
            let thread = Thread {
                results.set(i, body(item))
                group.leave()
            }
            thread.start()
        }
        group.wait()
        return results.values()
    }
}

/// Slots written once each by worker threads under a lock.
private final class ResultsBox<R>: @unchecked Sendable {  // every access holds `lock`
    private var slots: [R?]
    private let lock = NSLock()
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: R) {
        lock.lock()
        slots[i] = value
        lock.unlock()
    }
    func values() -> [R] {
        lock.lock()
        defer { lock.unlock() }
        return slots.compactMap { $0 }
    }
}
