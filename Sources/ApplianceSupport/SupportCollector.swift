import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import ApplianceSSH
import Foundation
import Logging

/// A node to collect from.
public struct SupportNode: Sendable {
    public var name: String
    public var address: String
    public var roles: [NodeRole]
    public var endpoint: SSHEndpoint
    public init(name: String, address: String, roles: [NodeRole], endpoint: SSHEndpoint) {
        self.name = name
        self.address = address
        self.roles = roles
        self.endpoint = endpoint
    }
}

/// What the admin host contributes: where its logs, journal, site file, profile and installed bundle are.
public struct AdminSources: Sendable {
    public var applianceVersion: String
    /// The per-run log files (`appliance-*.log`).
    public var logsDirectory: String
    /// The cluster's state directory (journal, operation parameters).
    public var stateDirectory: URL
    public var siteFile: String?
    public var profileFile: String?
    /// The bundle the last install used, when its file is still there.
    public var bundleFile: String?
    public init(
        applianceVersion: String, logsDirectory: String, stateDirectory: URL, siteFile: String?, profileFile: String?,
        bundleFile: String?
    ) {
        self.applianceVersion = applianceVersion
        self.logsDirectory = logsDirectory
        self.stateDirectory = stateDirectory
        self.siteFile = siteFile
        self.profileFile = profileFile
        self.bundleFile = bundleFile
    }
}

/// Collects everything `appliance support-bundle` promises into a `SupportStage`, then packs it: the admin host's
/// own files, every node over SSH in parallel (bounded), and the cluster through kubectl on a control plane.
/// A node that cannot be reached is recorded in the index and the rest is still collected.
public struct SupportCollector: Sendable {
    public var site: SiteInventory
    public var nodes: [SupportNode]
    /// The control planes the cluster's state is read through (every one of the site's, whatever `--node` says).
    public var controlPlanes: [SupportNode]
    public var pool: SSHPool
    public var admin: AdminSources
    /// The preflight collector script (`preflight/collect.sh`), run as is for the node facts.
    public var factsScript: String?
    public var since: Date
    public var gpuDiag: Bool
    public var parallelism: Int
    public var logger: Logger
    public var clock: @Sendable () -> Date

    /// The services whose journal is collected (absent units print no entries).
    public static let units = [
        "kubelet", "containerd", "docker-registry", "keepalived", "haproxy", "nvidia-fabricmanager",
    ]

    public init(
        site: SiteInventory, nodes: [SupportNode], controlPlanes: [SupportNode], pool: SSHPool, admin: AdminSources,
        factsScript: String?,
        since: Date, gpuDiag: Bool, parallelism: Int, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.site = site
        self.nodes = nodes
        self.controlPlanes = controlPlanes
        self.pool = pool
        self.admin = admin
        self.factsScript = factsScript
        self.since = since
        self.gpuDiag = gpuDiag
        self.parallelism = max(1, parallelism)
        self.logger = logger
        self.clock = clock
    }

    /// Collects and writes the bundle to `output`; returns its index.
    public func run(output: String) async throws -> SupportManifest {
        let rules = try RedactionRules(sitePatterns: site.supportBundle.redact.map(\.pattern))
        let stage = try SupportStage(rules: rules)
        defer { stage.remove() }
        let started = clock()
        await collectAdmin(stage)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await collectCluster(stage) }
            var next = 0
            func add() {
                guard next < nodes.count else { return }
                let node = nodes[next]
                next += 1
                group.addTask { await collectNode(node, stage) }
            }
            // The cluster task takes one slot of the bound.
            for _ in 0..<max(1, parallelism - 1) { add() }
            for await _ in group { add() }
        }
        let snap = await stage.snapshot()
        let nodeList = nodes.map { n in
            snap.nodes[n.name]
                ?? .init(
                    name: n.name, address: n.address, roles: n.roles.map(\.rawValue), reachable: false,
                    error: "not collected")
        }
        let manifest = SupportManifest(
            cluster: site.name, applianceVersion: admin.applianceVersion, createdAt: started, since: since,
            gpuDiag: gpuDiag, nodes: nodeList, files: snap.files, failures: snap.failures)
        try await stage.pack(manifest: manifest, output: output)
        return manifest
    }

    // MARK: admin host

    func collectAdmin(_ stage: SupportStage) async {
        let now = clock()
        func local(_ path: String, what: String, _ body: (RedactedFile) throws -> Void) async {
            do {
                let f = try stage.open(path)
                try body(f)
                let (bytes, n) = try f.finish()
                await stage.record(
                    .init(path: path, source: "admin", what: what, collectedAt: now, bytes: bytes, redactions: n))
            } catch {
                await stage.fail(source: "admin", what: what, reason: "\(error)")
            }
        }
        await local(SupportLayout.admin("version.txt"), what: "appliance version") { f in
            var uts = utsname()
            uname(&uts)
            let machine = withUnsafeBytes(of: &uts.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            try f.write("appliance \(admin.applianceVersion)\nadmin host architecture: \(machine)\n")
        }
        // Run logs written in the window.
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: admin.logsDirectory)) ?? []
        for name in logs.sorted() where name.hasPrefix("appliance-") && name.hasSuffix(".log") {
            let path = admin.logsDirectory + "/" + name
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
                let modified = attrs[.modificationDate] as? Date, modified >= since,
                (attrs[.type] as? FileAttributeType) == .typeRegular
            else { continue }
            await local(SupportLayout.admin("logs/" + SupportLayout.component(name)), what: "run log \(name)") {
                try $0.copy(from: path)
            }
        }
        // The journal of recent operations, as JSON.
        let journalPath = admin.stateDirectory.appendingPathComponent(Journal.fileName).path
        if FileManager.default.fileExists(atPath: journalPath) {
            await local(SupportLayout.admin("journal.json"), what: "operation journal (operations in the window)") {
                f in
                try f.write(
                    try Self.exportJournal(stateDirectory: admin.stateDirectory, cluster: site.name, since: since))
            }
        } else {
            await stage.fail(source: "admin", what: "operation journal", reason: "no journal at \(journalPath)")
        }
        if let s = admin.siteFile {
            await local(SupportLayout.admin("site.yaml"), what: "site file \(s)") { try $0.copy(from: s) }
        }
        if let p = admin.profileFile {
            await local(SupportLayout.admin("profile.yaml"), what: "profile \(p)") { try $0.copy(from: p) }
        } else {
            await stage.fail(
                source: "admin", what: "profile", reason: "the site names no profile and no install recorded one")
        }
        if let b = admin.bundleFile {
            do {
                let archive = try BundleArchive.open(b)
                await local(SupportLayout.admin("bundle-manifest.yaml"), what: "manifest of the installed bundle \(b)")
                {
                    try $0.write(Array(archive.manifestData))
                }
            } catch {
                await stage.fail(source: "admin", what: "installed bundle's manifest", reason: "\(b): \(error)")
            }
        } else {
            await stage.fail(
                source: "admin", what: "installed bundle's manifest",
                reason: "no install recorded on this admin host (cluster/installed.json names the bundle)")
        }
    }

    /// The operations of `cluster` that started or ended in the window (at least the latest), with their steps.
    static func exportJournal(stateDirectory: URL, cluster: String, since: Date) throws -> String {
        let journal = try Journal(stateDirectory: stateDirectory)
        let all = try journal.operations(cluster: cluster, limit: 200)
        var chosen = all.filter { $0.startedAt >= since || ($0.finishedAt ?? $0.startedAt) >= since }
        if chosen.isEmpty, let latest = all.max(by: { $0.startedAt < $1.startedAt }) { chosen = [latest] }
        struct Entry: Encodable {
            var operation: OperationRecord
            var steps: [StepTransition]
        }
        let entries = try chosen.map { Entry(operation: $0, steps: try journal.transitions(operation: $0.id)) }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return String(decoding: try e.encode(entries), as: UTF8.self) + "\n"
    }

    // MARK: nodes

    /// Runs `command` on a node, its stdout streamed through redaction into `path`. Returns the exit status, or
    /// throws what the transport threw (the caller decides whether the node is down).
    @discardableResult
    func remote(
        _ node: SupportNode, _ stage: SupportStage, path: String, source: String, what: String, command: String,
        stdin: [UInt8]? = nil, timeout: Duration = .seconds(60), mergeStderr: Bool = false
    ) async throws -> Int {
        let f = try stage.open(path)
        var stderrTail: [UInt8] = []
        let exit: ExitResult
        do {
            // The pool's connection, used directly: its nonisolated exec streams into this task's redactor. The
            // bound on work in flight is the node parallelism (one command at a time per node).
            let conn = try await pool.connection(for: node.endpoint)
            exit = try await conn.exec(
                command, stdin: stdin.map { .bytes($0) } ?? .none, timeout: timeout, label: "support-bundle: \(what)",
                onStdout: { try f.write($0) },
                onStderr: { chunk in
                    if mergeStderr { try f.write(chunk) }
                    stderrTail.append(contentsOf: chunk)
                    if stderrTail.count > 4096 { stderrTail.removeFirst(stderrTail.count - 4096) }
                })
        } catch {
            _ = try? f.finish()
            try? FileManager.default.removeItem(atPath: stage.root + "/" + path)
            throw error
        }
        let (bytes, n) = try f.finish()
        let status = Int(exit.status ?? -1)
        await stage.record(
            .init(
                path: path, source: source, what: what, collectedAt: clock(), bytes: bytes, redactions: n,
                exitStatus: status))
        if status != 0 && status != 127 {
            let tail = String(decoding: stderrTail, as: UTF8.self)
            let reason = try StreamRedactor.redact(tail, rules: stage.rules).text
                .split(separator: "\n").suffix(3).joined(separator: " | ")
            await stage.fail(
                source: source, what: what, reason: "exit \(status)\(reason.isEmpty ? "" : ": " + reason)")
        }
        return status
    }

    /// A POSIX sh snippet that prints `FILE`'s contents after a `==> FILE <==` header, for each that exists.
    static func catFiles(_ globs: [String]) -> String {
        "for f in \(globs.joined(separator: " ")); do [ -f \"$f\" ] || continue; echo \"==> $f <==\"; cat \"$f\"; echo; done; true"
    }

    static func nodeCommands(for node: SupportNode, since: Date, gpuDiag: Bool) -> [(
        file: String, what: String, command: String, timeout: Duration
    )] {
        let epoch = Int(since.timeIntervalSince1970)
        var out: [(file: String, what: String, command: String, timeout: Duration)] = []
        for unit in units {
            out.append(
                (
                    "journal/\(unit).log", "journalctl -u \(unit) in the window",
                    "journalctl -u \(unit) --since @\(epoch) --no-pager -o short-iso 2>&1 || true", .seconds(120)
                ))
        }
        out.append(
            (
                "kernel-xid.log", "kernel log lines with NVIDIA Xid events (journal in the window, kern.log)",
                "{ journalctl -k --since @\(epoch) --no-pager -o short-iso 2>/dev/null; for f in /var/log/kern.log.1 /var/log/kern.log; do [ -r \"$f\" ] && cat \"$f\"; done; } | grep -E 'NVRM: Xid|SXid|Xid=' | tail -n 5000; true",
                .seconds(60)
            ))
        if node.roles.contains(.gpuWorker) {
            let nv = "command -v nvidia-smi >/dev/null 2>&1 || { echo 'nvidia-smi: not installed' >&2; exit 127; }; "
            out.append(("nvidia-smi-q.txt", "nvidia-smi -q", nv + "nvidia-smi -q 2>&1", .seconds(60)))
            out.append(("nvidia-smi-topo.txt", "nvidia-smi topo -m", nv + "nvidia-smi topo -m 2>&1", .seconds(60)))
            if gpuDiag {
                out.append(
                    (
                        "dcgmi-diag-r1.txt", "dcgmi diag -r 1",
                        "command -v dcgmi >/dev/null 2>&1 || { echo 'dcgmi: not installed' >&2; exit 127; }; dcgmi diag -r 1",
                        .seconds(300)
                    ))
            }
        }
        out.append(
            (
                "packages.txt", "package versions of the stack (dpkg) and the binaries' own",
                """
                dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\\n' 2>/dev/null | grep -E '^(kube|containerd|runc|cri-tools|nvidia|libnvidia|cuda|datacenter-gpu-manager|docker-registry|keepalived|haproxy|etcd|helm|appliance)' ; \
                for b in kubelet kubeadm kubectl containerd runc nvidia-smi nv-fabricmanager helm; do command -v $b >/dev/null 2>&1 && echo "# $b: $($b --version 2>&1 | head -1)"; done; true
                """,
                .seconds(60)
            ))
        out.append(
            (
                "config/containerd.txt", "containerd configuration (config.toml, registry hosts)",
                catFiles([
                    "/etc/containerd/config.toml", "/etc/containerd/conf.d/*.toml",
                    "/etc/containerd/certs.d/*/hosts.toml",
                ]),
                .seconds(30)
            ))
        out.append(
            (
                "config/kubelet.txt", "kubelet configuration (config.yaml, flags, kubeconfig)",
                catFiles([
                    "/var/lib/kubelet/config.yaml", "/var/lib/kubelet/kubeadm-flags.env", "/etc/default/kubelet",
                    "/etc/kubernetes/kubelet.conf", "/etc/systemd/system/kubelet.service.d/*.conf",
                ]),
                .seconds(30)
            ))
        out.append(("disk.txt", "disk usage (df -Pk, df -Pi)", "df -Pk 2>&1; echo; df -Pi 2>&1; true", .seconds(30)))
        out.append(
            ("memory.txt", "memory usage (free, /proc/meminfo)", "free -k 2>&1; echo; cat /proc/meminfo", .seconds(30)))
        out.append(
            (
                "store-inventory.txt", "the content-addressed store's inventory",
                "s=\(Stager.defaultStore); [ -d \"$s\" ] || { echo \"no store at $s\"; exit 0; }; du -sk \"$s\" 2>/dev/null; find \"$s\" -maxdepth 4 -type f -printf '%s %p\\n' 2>/dev/null | sort -k2 | head -n 20000",
                .seconds(60)
            ))
        if node.roles.contains(.controlPlane) {
            out.append(
                (
                    "certificates.txt", "control-plane certificate dates and subjects (never keys)",
                    """
                    command -v kubeadm >/dev/null 2>&1 && { echo '$ kubeadm certs check-expiration'; kubeadm certs check-expiration 2>&1; echo; }
                    for f in /etc/kubernetes/pki/*.crt /etc/kubernetes/pki/etcd/*.crt; do [ -f "$f" ] || continue; echo "== $f"; openssl x509 -in "$f" -noout -subject -enddate 2>&1; done; true
                    """,
                    .seconds(60)
                ))
        }
        return out
    }

    func collectNode(_ node: SupportNode, _ stage: SupportStage) async {
        let source = "node/\(node.name)"
        let roles = node.roles.map(\.rawValue)
        // The preflight collector's facts first: the node's first contact tells whether it is up.
        let script =
            "PF_PEERS=''; PF_DNS_NAMES=''; PF_STAGING_DIR=/var/lib/appliance; PF_DCGM=0; PF_CMD_TIMEOUT=10\nexport PF_PEERS PF_DNS_NAMES PF_STAGING_DIR PF_DCGM PF_CMD_TIMEOUT\n"
            + (factsScript ?? "echo '@@appliance:begin meta'; date +%s; hostname; echo '@@appliance:end meta 0'\n")
        do {
            try await remote(
                node, stage, path: SupportLayout.node(node.name, "facts.txt"), source: source,
                what: "preflight collector facts", command: "exec timeout -s KILL 90 sh -s",
                stdin: Array(script.utf8), timeout: .seconds(95))
        } catch let e as SSHError where [.unreachable, .authentication, .hostKey].contains(e.category) {
            logger.warning(
                "support-bundle: \(node.name) not collected: \(e.message)", metadata: ["host": "\(node.name)"])
            await stage.node(
                .init(name: node.name, address: node.address, roles: roles, reachable: false, error: e.message))
            await stage.fail(source: source, what: "every file of this node", reason: "unreachable: \(e.message)")
            return
        } catch {
            await stage.fail(source: source, what: "preflight collector facts", reason: "\(error)")
        }
        await stage.node(.init(name: node.name, address: node.address, roles: roles, reachable: true))
        for c in Self.nodeCommands(for: node, since: since, gpuDiag: gpuDiag) {
            do {
                try await remote(
                    node, stage, path: SupportLayout.node(node.name, c.file), source: source, what: c.what,
                    command: c.command, timeout: c.timeout)
            } catch {
                await stage.fail(source: source, what: c.what, reason: "\(error)")
                if let e = error as? SSHError, e.category == .unreachable {
                    await stage.node(
                        .init(name: node.name, address: node.address, roles: roles, reachable: false, error: e.message))
                    return
                }
            }
        }
    }

    // MARK: cluster

    static func kubectl(_ args: String) -> String {
        "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) \(args)"
    }

    static let clusterCommands: [(file: String, what: String, command: String)] = [
        ("nodes.json", "kubectl get nodes -o json", kubectl("get nodes -o json")),
        ("pods.json", "kubectl get pods -A -o json", kubectl("get pods -A -o json")),
        ("events.json", "kubectl get events -A -o json", kubectl("get events -A -o json")),
        ("pdbs.json", "kubectl get poddisruptionbudgets -A -o json", kubectl("get poddisruptionbudgets -A -o json")),
        ("daemonsets.json", "kubectl get daemonsets -A -o json", kubectl("get daemonsets -A -o json")),
        ("deployments.json", "kubectl get deployments -A -o json", kubectl("get deployments -A -o json")),
        (
            "scheduler-queues.json", "KAI scheduler queues (queues.scheduling.run.ai)",
            kubectl("get queues.scheduling.run.ai -A -o json")
        ),
        ("apiserver-readyz.txt", "the API server's readiness checks", kubectl("get --raw '/readyz?verbose'")),
        (
            "helm-releases.json", "helm list -A -o json",
            "helm list -A -o json --kubeconfig \(ClusterAPI.adminKubeconfig)"
        ),
        ("installed.json", "the install record on the first control plane", "cat \(InstallRecord.path)"),
        (
            "etcd.txt", "etcd member list and endpoint health",
            """
            ep=$(ps -eo args 2>/dev/null | grep -o -E -e '--etcd-servers[= ][^ ]+' | head -1 | sed -E 's/--etcd-servers[= ]//')
            [ -n "$ep" ] || ep=https://127.0.0.1:2379
            set -- --endpoints="$ep"
            p=/etc/kubernetes/pki/etcd
            if [ -f $p/healthcheck-client.crt ]; then set -- "$@" --cacert=$p/ca.crt --cert=$p/healthcheck-client.crt --key=$p/healthcheck-client.key; fi
            if ! command -v etcdctl >/dev/null 2>&1; then echo 'etcdctl: not installed on this control plane' >&2; exit 127; fi
            echo "$ etcdctl member list"; ETCDCTL_API=3 etcdctl "$@" --command-timeout=10s member list -w table 2>&1; a=$?
            echo; echo "$ etcdctl endpoint health --cluster"; ETCDCTL_API=3 etcdctl "$@" --command-timeout=10s endpoint health --cluster 2>&1; b=$?
            echo; echo "$ etcdctl endpoint status --cluster"; ETCDCTL_API=3 etcdctl "$@" --command-timeout=10s endpoint status --cluster -w table 2>&1
            [ $a = 0 ] && [ $b = 0 ]
            """
        ),
    ]

    func collectCluster(_ stage: SupportStage) async {
        let cps = controlPlanes
        guard !cps.isEmpty else {
            await stage.fail(
                source: "cluster", what: "cluster state", reason: "no control-plane node among the nodes collected")
            return
        }
        // The first control plane that answers.
        var through: SupportNode?
        for cp in cps {
            do {
                let status = try await remote(
                    cp, stage, path: SupportLayout.cluster("nodes.json"), source: "cluster",
                    what: "kubectl get nodes -o json (through \(cp.name))", command: Self.clusterCommands[0].command,
                    timeout: .seconds(60))
                if status == 0 {
                    through = cp
                    break
                }
                try? FileManager.default.removeItem(atPath: stage.root + "/" + SupportLayout.cluster("nodes.json"))
                await stage.forget(SupportLayout.cluster("nodes.json"))
            } catch {
                await stage.fail(source: "cluster", what: "kubectl through \(cp.name)", reason: "\(error)")
            }
        }
        guard let cp = through else {
            await stage.fail(
                source: "cluster", what: "cluster state",
                reason: "no control plane answered kubectl (tried \(cps.map(\.name).joined(separator: ", ")))")
            return
        }
        for c in Self.clusterCommands.dropFirst() {
            do {
                try await remote(
                    cp, stage, path: SupportLayout.cluster(c.file), source: "cluster",
                    what: "\(c.what) (through \(cp.name))",
                    command: c.command, timeout: .seconds(90), mergeStderr: c.file == "etcd.txt")
            } catch {
                await stage.fail(source: "cluster", what: c.what, reason: "\(error)")
            }
        }
        // Helm values of every release (names from the release list, kept to safe path components).
        let releases = Self.helmReleases(at: stage.root + "/" + SupportLayout.cluster("helm-releases.json"))
        for r in releases {
            let path = SupportLayout.cluster(
                "helm-values/\(SupportLayout.component(r.namespace))/\(SupportLayout.component(r.name)).yaml")
            do {
                try await remote(
                    cp, stage, path: path, source: "cluster", what: "helm get values \(r.name) -n \(r.namespace) --all",
                    command:
                        "helm get values \(shellQuote(r.name)) -n \(shellQuote(r.namespace)) --all -o yaml --kubeconfig \(ClusterAPI.adminKubeconfig)",
                    timeout: .seconds(60))
            } catch {
                await stage.fail(source: "cluster", what: "helm values of \(r.name)", reason: "\(error)")
            }
        }
    }

    /// `helm list -o json`: `[{"name": ..., "namespace": ...}]`.
    static func helmReleases(at path: String) -> [(name: String, namespace: String)] {
        guard let data = FileManager.default.contents(atPath: path),
            let list = try? JSONSerialization.jsonObject(with: data) as? [[String: Any]]
        else { return [] }
        return list.compactMap { r in
            guard let n = r["name"] as? String, let ns = r["namespace"] as? String else { return nil }
            return (n, ns)
        }
    }
}
