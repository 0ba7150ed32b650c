import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePreflight
import ApplianceSSH
import Foundation

/// Everything the install's steps share: the site, profile and verified bundle, a runner per node, and
/// what the steps learn while they run.
struct InstallContext: Sendable {
    let session: OperationSession
    let profile: HardwareProfile
    let bundle: VerifiedBundle
    let facts: BundleFacts
    let store: String
    let waivers: [Waiver]
    let runners: [String: NodeRunner]
    let pki: InstallPKIProvider
    let state: InstallState
    /// `dcgmi diag -r` level of the GPU validation gate (issue 13).
    var dcgmLevel: Int = 1

    var site: SiteInventory { session.site }
    var manifest: BundleManifest { bundle.manifest }
    var firstControlPlane: SiteInventory.Host? { site.controlPlanes.first }

    /// How long a GPU gate in `operator-precompiled` mode waits for the GPU Operator's driver container: the
    /// site's wait for a release's pods.
    var operatorDriverWait: Duration {
        .seconds(site.install.releaseTimeoutSeconds ?? SiteInventory.InstallSettings.defaultReleaseTimeoutSeconds)
    }

    func runner(_ host: SiteInventory.Host) -> NodeRunner {
        runners[host.name]
            ?? NodeRunner(
                name: host.name, address: host.address, pool: session.pool, endpoint: session.endpoint(for: host))
    }

    var kubeadm: Kubeadm? { firstControlPlane.map { Kubeadm(first: runner($0)) } }

    var registryPort: Int { site.registry?.port ?? SiteInventory.RegistrySettings.defaultPort }

    /// The Debian packages the bundle carries for a host's roles.
    func packages(for host: SiteInventory.Host) -> [StagedPackage] {
        StagedPackage.all(in: manifest, for: host.roles)
    }

    /// The images every registry node seeds, from the bundle's image artifacts.
    var seedImages: [SeedImage] { InstallImages.seedList(manifest) }
}

/// What steps learn and the report needs afterwards.
actor InstallState {
    private(set) var preflightFindings: [String] = []
    private(set) var nodes: [KubeNode] = []

    func failPreflight(_ findings: [String]) { preflightFindings = findings }
    func setNodes(_ nodes: [KubeNode]) { self.nodes = nodes }
}

/// The registry PKI, made on first use (a dry run makes none).
actor InstallPKIProvider {
    let pki: InstallPKI
    let cluster: String
    let names: [String]
    private var cached: (ca: String, cert: String, key: String)?

    init(stateDirectory: URL, cluster: String, names: [String]) {
        pki = InstallPKI(stateDirectory: stateDirectory)
        self.cluster = cluster
        self.names = names
    }

    func material() throws -> (ca: String, cert: String, key: String) {
        if let cached { return cached }
        let authority = try pki.authority(cluster: cluster)
        let server = try pki.serverCertificate(names: names, authority: authority)
        let value = (authority.certificatePEM, server.cert, server.key)
        cached = value
        return value
    }
}

/// The install as one plan (DESIGN.md section 8): preflight gate, staging, then per node OS preparation,
/// packages, container runtime; the registry on its nodes, seeded; every node pulling through its mirror;
/// the load balancer for a virtual IP; kubeadm init; control planes joined one at a time; workers joined in
/// parallel; the CNI; every node Ready; roles; the record of what is installed.
enum InstallPlan {
    static let preflightStep = "preflight"
    static let cniStep = "cni"
    static let recordStep = "record"

    static func osPrep(_ n: String) -> String { "os-prep/\(n)" }
    static func packages(_ n: String) -> String { "packages/\(n)" }
    static func runtime(_ n: String) -> String { "runtime/\(n)" }
    static func registry(_ n: String) -> String { "registry/\(n)" }
    static func seed(_ n: String) -> String { "seed/\(n)" }
    static func mirror(_ n: String) -> String { "mirror/\(n)" }
    static func loadBalancer(_ n: String) -> String { "load-balancer/\(n)" }
    static func kubeadmInit(_ n: String) -> String { "kubeadm-init/\(n)" }
    static func joinControlPlane(_ n: String) -> String { "join-control-plane/\(n)" }
    static func join(_ n: String) -> String { "join/\(n)" }
    static func ready(_ n: String) -> String { "ready/\(n)" }
    static func roles(_ n: String) -> String { "roles/\(n)" }

    /// The step that puts a node into the cluster.
    static func membership(_ host: SiteInventory.Host, first: String) -> String {
        host.name == first
            ? kubeadmInit(host.name)
            : host.roles.contains(.controlPlane) ? joinControlPlane(host.name) : join(host.name)
    }

    static func make(_ c: InstallContext, stager: Stager, stagingNodes: [StagingNode]) throws -> Plan {
        guard let cp1 = c.firstControlPlane else {
            throw OperationError.invalid(
                "the site has no control-plane node", hint: "give one host the control-plane role")
        }
        var steps: [Step] = []
        steps.append(preflightGate(c))
        for var s in StagingPlan.steps(stager: stager, nodes: stagingNodes) {
            s.dependencies.append(preflightStep)
            steps.append(s)
        }
        let registryNames = Set(c.site.registryHosts.map(\.name))
        let vip = c.site.effectiveAPIEndpoint?.mode == .virtualIP
        for host in c.site.hosts {
            let n = host.name
            // A node relays the staging stream to the next ones until the transfer ends: nothing on it changes
            // (packages, sysctls, services) before the whole chain is through.
            steps.append(osPrepStep(c, host, after: [StagingPlan.stepName(node: n), StagingPlan.transferStep]))
            steps.append(packagesStep(c, host))
            steps.append(try runtimeStep(c, host))
            steps += try gpuStackSteps(c, host)
            if registryNames.contains(n) {
                steps.append(try registryStep(c, host))
                steps.append(seedStep(c, host))
            }
            if vip && host.roles.contains(.controlPlane) { steps.append(try loadBalancerStep(c, host)) }
        }
        let seeds = c.site.registryHosts.map { seed($0.name) }
        for host in c.site.hosts { steps.append(mirrorStep(c, host, after: [runtime(host.name)] + seeds)) }
        let lbs = vip ? c.site.controlPlanes.map { loadBalancer($0.name) } : []
        steps.append(try initStep(c, cp1, after: [mirror(cp1.name)] + lbs + gpuJoinDependencies(c, cp1)))
        var previous = kubeadmInit(cp1.name)
        for cp in c.site.controlPlanes.dropFirst() {
            steps.append(joinStep(c, cp, after: [mirror(cp.name), previous] + gpuJoinDependencies(c, cp)))
            previous = joinControlPlane(cp.name)
        }
        for host in c.site.hosts where !host.roles.contains(.controlPlane) {
            steps.append(joinStep(c, host, after: [mirror(host.name), previous] + gpuJoinDependencies(c, host)))
        }
        steps.append(cniStep(c, cp1))
        // In operator-precompiled mode the GPU Operator's release installs the driver: the gates follow it.
        let operatorGates = c.profile.gpuStack.mode == .operatorPrecompiled
        var gates: [String] = []
        for host in c.site.hosts {
            steps.append(readyStep(c, host, after: [membership(host, first: cp1.name), cniStep]))
            steps.append(rolesStep(c, host))
            if var gate = gpuValidateStep(c, host) {
                if operatorGates { gate.dependencies.append(platformRelease("gpu-operator")) }
                steps.append(gate)
                gates.append(gate.name)
            }
        }
        // After the GPU gates: the platform check, the platform's releases and queues (issue 13; none without
        // `spec.platform`), before the record; then the smoke tests of what the platform deployed.
        let platform = try platformSteps(c, cp1)
        steps += platform
        steps.append(
            recordStep(
                c, cp1, after: c.site.hosts.map { roles($0.name) } + platform.map(\.name) + (operatorGates ? gates : [])
            ))
        steps += smokeSteps(c, existing: steps)
        return try Plan(
            steps: steps, failurePolicy: .continueOtherNodes, maxParallelism: max(1, c.site.install.parallelism))
    }

    // MARK: steps

    static func preflightGate(_ c: InstallContext) -> Step {
        Step(
            preflightStep, on: .cluster,
            summary: "preflight on every node in install mode (what install sets up does not block)",
            timeout: .seconds(300),
            check: { _ in try await isRecorded(c) },
            apply: { ctx in
                let report = try await runPreflight(c)
                let s = report.summary
                ctx.appendOutput(
                    "preflight: \(s.pass) passed, \(s.info) info (set by install), \(s.warn) warnings, \(s.unknown) unreadable, \(s.fail) failed, \(s.waived) waived"
                )
                for o in report.outcomes where o.effectiveStatus == .warn {
                    c.session.logger.warning("preflight \(o.node): \(o.checkID): \(o.observed)")
                }
                let blocking = report.blockingFindings
                if !blocking.isEmpty {
                    await c.state.failPreflight(blocking)
                    throw ClusterError.node(
                        node: "cluster",
                        reason:
                            "preflight failed on \(Set(report.outcomes.filter { $0.effectiveStatus == .fail }.map(\.node)).count) node(s):\n    "
                            + blocking.joined(separator: "\n    "))
                }
            })
    }

    /// Preflight in install mode on `hosts` (all the site's when nil; `node add` runs it on the new one).
    static func runPreflight(_ c: InstallContext, hosts: [SiteInventory.Host]? = nil) async throws -> PreflightReport {
        let dir = ResourceLocator.preflightDirectory()
        let catalog = try CheckCatalog.load(directory: dir + "/checks")
        let runner = PreflightRunner(
            catalog: catalog, profile: c.profile, site: c.site, collectorScript: try PreflightRunner.collector(in: dir),
            timeout: .seconds(120), parallelism: c.site.ssh.parallelism,
            bundleGiB: Double(c.manifest.totalBlobBytes) / 1_073_741_824,
            bundleImages: c.manifest.images.map(\.reference), runDCGM: false, waivers: c.waivers)
        let nodes = (hosts ?? c.site.hosts).map {
            PreflightNode(
                name: $0.name, address: $0.address, roles: $0.roles,
                shell: SSHNodeShell(pool: c.session.pool, endpoint: c.session.endpoint(for: $0)))
        }
        let report = await runner.run(nodes: nodes).forInstall(gpuStackMode: c.profile.gpuStack.mode.rawValue)
        let url = c.session.stateDirectory.appendingPathComponent(
            hosts.map { "preflight-add-\($0.map(\.name).joined(separator: "-")).json" } ?? "preflight-install.json")
        try? report.json().write(to: url, options: .atomic)
        return report
    }

    static func osPrepStep(_ c: InstallContext, _ host: SiteInventory.Host, after deps: [String]) -> Step {
        let prep = NodePreparation(
            runner: c.runner(host), files: [NodePrepFiles.sysctlFile(), NodePrepFiles.modulesFile()],
            sysctls: NodePrepFiles.sysctls.map { (key: $0.0, value: $0.1) }, modules: NodePrepFiles.modules,
            hostname: host.name, fstab: { NodePrepFiles.disablingSwap(fstab: $0) },
            hosts: { [site = c.site] in NodePrepFiles.withHostsBlock(hosts: $0, site: site) })
        return Step(
            osPrep(host.name), on: .node(host.name), after: deps,
            summary: "swap off (now and in /etc/fstab), sysctls, kernel modules, /etc/hosts, hostname",
            timeout: .seconds(120),
            check: { _ in try await prep.missing().isEmpty },
            apply: { _ in try await prep.apply() })
    }

    static func packagesStep(_ c: InstallContext, _ host: SiteInventory.Host) -> Step {
        let repo = LocalRepository(
            runner: c.runner(host), store: c.store, packages: c.basePackages(for: host),
            available: c.packages(for: host))
        return Step(
            packages(host.name), on: .node(host.name), after: [osPrep(host.name)],
            summary:
                "local apt repository from the staged store, \(repo.packages.count) packages with apt, Kubernetes held",
            timeout: .seconds(1200),
            check: { _ in try await repo.isInstalled() },
            apply: { _ in try await repo.install() })
    }

    static func runtimeStep(_ c: InstallContext, _ host: SiteInventory.Host) throws -> Step {
        guard let version = InstallBundleCheck.packageVersion(c.manifest, "containerd", roles: host.roles) else {
            throw OperationError.invalid("the bundle has no containerd package for \(host.name)", hint: nil)
        }
        let config = try ContainerdConfig.configFile(containerdVersion: version, pauseImage: c.facts.pauseImage)
        let hosts = ContainerdConfig.hostsFiles(bundle: c.facts, site: c.site)
        let runner = c.runner(host)
        let pki = c.pki
        @Sendable func makeRuntime() async throws -> ContainerRuntime {
            let ca = try await pki.material().ca
            return ContainerRuntime(runner: runner, files: [config] + hosts + [RegistryConfig.caFile(pem: ca)])
        }
        return Step(
            runtime(host.name), on: .node(host.name), after: [packages(host.name)],
            summary: "containerd: systemd cgroups, pause image and \(hosts.count) registry mirror(s), the registry CA",
            timeout: .seconds(180),
            check: { _ in try await makeRuntime().missing().isEmpty },
            apply: { _ in try await makeRuntime().apply() })
    }

    static func registryStep(_ c: InstallContext, _ host: SiteInventory.Host) throws -> Step {
        let endpoint = "\(host.address):\(c.registryPort)"
        let runner = c.runner(host)
        let (pki, port, store) = (c.pki, c.registryPort, c.store)
        @Sendable func makeRegistry() async throws -> PrivateRegistry {
            let m = try await pki.material()
            let files = [
                RegistryConfig.configFile(port: port), RegistryConfig.dropInFile(),
                RegistryConfig.certificateFile(pem: m.cert), RegistryConfig.keyFile(pem: m.key),
            ]
            return PrivateRegistry(runner: runner, endpoint: endpoint, files: files, store: store)
        }
        return Step(
            registry(host.name), on: .node(host.name), after: [runtime(host.name)],
            summary: "private registry (CNCF distribution) on https://\(endpoint) with the installer's CA",
            timeout: .seconds(180),
            check: { _ in try await makeRegistry().missing().isEmpty },
            apply: { _ in try await makeRegistry().apply() })
    }

    static func seedStep(_ c: InstallContext, _ host: SiteInventory.Host) -> Step {
        let registry = PrivateRegistry(
            runner: c.runner(host), endpoint: "\(host.address):\(c.registryPort)", files: [], store: c.store)
        let images = c.seedImages
        return Step(
            seed(host.name), on: .node(host.name), after: [Self.registry(host.name)],
            summary: "push \(images.count) images from the node's own store through the registry API, digests checked",
            timeout: .seconds(3600),
            check: { _ in try await registry.unseeded(images).isEmpty },
            apply: { ctx in
                try await registry.seed(images)
                ctx.appendOutput("\(images.count) images in the registry")
            })
    }

    static func mirrorStep(_ c: InstallContext, _ host: SiteInventory.Host, after deps: [String]) -> Step {
        let runtime = ContainerRuntime(runner: c.runner(host), files: [])
        let image = c.facts.pauseImage
        return Step(
            mirror(host.name), on: .node(host.name), after: deps,
            summary: "containerd pulls \(image) through its mirror configuration (proves TLS, CA and registry)",
            timeout: .seconds(300),
            check: { _ in try await runtime.hasImage(image) },
            apply: { _ in try await runtime.pullThroughMirror(image) })
    }

    static func loadBalancerStep(_ c: InstallContext, _ host: SiteInventory.Host) throws -> Step {
        let runner = c.runner(host)
        let site = c.site
        let fixed = [
            try LoadBalancerConfig.checkScriptFile(site: site), try LoadBalancerConfig.haproxyFile(site: site),
        ]
        @Sendable func files() async throws -> [NodeFile] {
            var interface = site.network?.endpoint?.interface
            if interface == nil {
                let out = try await runner.run(
                    "ip -o -4 addr show | awk -v a=\(shellQuote(host.address)) '{split($4, p, \"/\"); if (p[1] == a) print $2}'",
                    label: "find the interface of \(host.address)")
                interface = out.split(separator: "\n").first.map(String.init)
            }
            guard let interface else {
                throw ClusterError.node(node: host.name, reason: "no interface carries \(host.address)")
            }
            return [try LoadBalancerConfig.keepalivedFile(site: site, node: host, interface: interface)] + fixed
        }
        return Step(
            loadBalancer(host.name), on: .node(host.name), after: [packages(host.name)],
            summary: "keepalived (virtual IP \(site.network?.endpoint?.address ?? "")) and HAProxy to every API server",
            timeout: .seconds(120),
            check: { _ in
                let f = try await files()
                guard try await runner.differing(f).isEmpty else { return false }
                return try await runner.succeeds(
                    "systemctl is-active -q keepalived && systemctl is-active -q haproxy",
                    label: "load balancer running")
            },
            apply: { _ in
                let changed = try await runner.ensure(try await files())
                try await runner.run(
                    """
                    systemctl enable keepalived haproxy >/dev/null 2>&1 || true
                    \(changed.isEmpty ? "systemctl start keepalived haproxy" : "systemctl restart keepalived haproxy") || exit 3
                    """, label: "start keepalived and haproxy")
            })
    }

    static func initStep(_ c: InstallContext, _ cp1: SiteInventory.Host, after deps: [String]) throws -> Step {
        guard let kubeadm = c.kubeadm else { throw OperationError.invalid("no control plane", hint: nil) }
        let config = try KubeadmConfig.initFile(site: c.site, profile: c.profile, bundle: c.facts, node: cp1)
        let session = c.session
        return Step(
            kubeadmInit(cp1.name), on: .node(cp1.name), after: deps,
            summary: "kubeadm init (kubeadm.k8s.io/v1beta4, Kubernetes \(c.facts.kubernetesVersion)) --upload-certs",
            timeout: .seconds(900),
            check: { _ in try await kubeadm.isInitialized() },
            apply: { _ in
                try await kubeadm.initialize(config: config)
                try await fetchAdminKubeconfig(kubeadm.first, session: session)
            })
    }

    static func joinStep(_ c: InstallContext, _ host: SiteInventory.Host, after deps: [String]) -> Step {
        let controlPlane = host.roles.contains(.controlPlane)
        let node = c.runner(host)
        let (site, profile) = (c.site, c.profile)
        let kubeadm = c.kubeadm
        return Step(
            controlPlane ? joinControlPlane(host.name) : join(host.name), on: .node(host.name), after: deps,
            summary: controlPlane
                ? "kubeadm join --control-plane with a fresh certificate key; its API server answers before the next"
                : "kubeadm join with a fresh token and the CA pin",
            timeout: .seconds(900),
            check: { _ in
                guard let kubeadm else { return false }
                let listed = Set(try await kubeadm.api.nodes().map(\.name))
                guard try await kubeadm.hasJoined(node, listed: listed) else { return false }
                if controlPlane {
                    return try await ClusterAPI(runner: node).isReady(server: "https://\(host.address):6443")
                }
                return true
            },
            apply: { ctx in
                guard let kubeadm else { return }
                let secrets = try await kubeadm.joinSecrets(controlPlane: controlPlane)
                for v in secrets.values { ctx.redactor.register(secret: v) }
                let config = try KubeadmConfig.joinFile(
                    site: site, profile: profile, node: host, token: secrets.token, caCertHashes: [secrets.caCertHash],
                    certificateKey: secrets.certificateKey)
                try await kubeadm.join(node, config: config)
                if controlPlane {
                    let own = ClusterAPI(runner: node)
                    guard
                        try await kubeadm.waitForReady(
                            own, server: "https://\(host.address):6443", timeout: .seconds(120))
                    else {
                        throw ClusterError.node(
                            node: host.name,
                            reason: "joined, but its API server (and etcd member) does not answer /readyz")
                    }
                }
            })
    }

    static func cniStep(_ c: InstallContext, _ cp1: SiteInventory.Host) -> Step {
        let api = ClusterAPI(runner: c.runner(cp1))
        let artifact = InstallBundleCheck.cniManifest(c.manifest)
        let file = artifact.map { "\(c.store)/sha256/\($0.sha256.hex)" } ?? ""
        let marker = "/var/lib/appliance/installed/cni"
        let digest = artifact?.sha256.hex ?? ""
        return Step(
            cniStep, on: .cluster, after: [kubeadmInit(cp1.name)],
            summary: "apply the CNI manifest \(artifact?.name ?? "") from the bundle",
            timeout: .seconds(300),
            check: { _ in
                try await api.runner.succeeds(
                    "[ \"$(cat \(marker) 2>/dev/null)\" = \(digest) ] && kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) get -f \(shellQuote(file)) -o name >/dev/null",
                    label: "CNI applied")
            },
            apply: { _ in
                try await api.kubectl(["apply", "-f", file], label: "kubectl apply the CNI manifest")
                try await api.runner.run(
                    "mkdir -p \(shellQuote((marker as NSString).deletingLastPathComponent)) && echo \(digest) > \(marker)",
                    label: "record the CNI")
            })
    }

    static func readyStep(_ c: InstallContext, _ host: SiteInventory.Host, after deps: [String]) -> Step {
        let cp1 = c.firstControlPlane.map { c.runner($0) }
        return Step(
            ready(host.name), on: .node(host.name), after: deps,
            summary: "the node is Ready", timeout: .seconds(360),
            check: { _ in
                guard let cp1 else { return false }
                return try await ClusterAPI(runner: cp1).nodes().first { $0.name == host.name }?.ready ?? false
            },
            apply: { _ in
                guard let cp1 else { return }
                let api = ClusterAPI(runner: cp1)
                let out = try await api.runner.output(
                    "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) wait --for=condition=Ready node/\(shellQuote(host.name)) --timeout=300s",
                    label: "kubectl wait Ready", timeout: .seconds(330))
                if !out.exit.succeeded {
                    let node = try await api.nodes().first { $0.name == host.name }
                    throw ClusterError.node(
                        node: host.name,
                        reason:
                            "not Ready after 5 minutes: \(node?.notReadyReason ?? "not registered with the API server")"
                    )
                }
            })
    }

    static func rolesStep(_ c: InstallContext, _ host: SiteInventory.Host) -> Step {
        let marks = NodeRoleMarks.forHost(host, site: c.site, profile: c.profile)
        let stale = NodeRoleMarks.staleLabelKeys(host.roles, style: c.profile.kubernetes.roleLabels)
        let cp1 = c.firstControlPlane.map { c.runner($0) }
        @Sendable func missing() async throws -> (labels: [String], taints: [String], remove: [String]) {
            guard let cp1, let node = try await ClusterAPI(runner: cp1).nodes().first(where: { $0.name == host.name })
            else { return (marks.labels.map(\.kubectlArgument), marks.taints.map(\.kubectlArgument), []) }
            let labels = marks.labels.filter { node.labels[$0.key] != $0.value }.map(\.kubectlArgument)
            let have = Set(node.taints.map(\.argument))
            let taints = marks.taints.map(\.kubectlArgument).filter { !have.contains($0) }
            let remove = stale.filter { node.labels[$0] != nil }.map { "\($0)-" }
            return (labels, taints, remove)
        }
        let roleNames = host.roles.map(\.rawValue).joined(separator: ", ")
        return Step(
            roles(host.name), on: .node(host.name), after: [ready(host.name)],
            summary: "labels and taints for \(roleNames)",
            timeout: .seconds(120),
            check: { _ in
                let m = try await missing()
                return m.labels.isEmpty && m.taints.isEmpty && m.remove.isEmpty
            },
            apply: { _ in
                guard let cp1 else { return }
                let api = ClusterAPI(runner: cp1)
                let m = try await missing()
                try await api.label(node: host.name, m.labels + m.remove)
                try await api.taint(node: host.name, m.taints)
            })
    }

    static func recordStep(_ c: InstallContext, _ cp1: SiteInventory.Host, after deps: [String]) -> Step {
        let runner = c.runner(cp1)
        let record = InstallRecord(
            cluster: c.site.name, bundleName: c.manifest.name, bundleVersion: c.manifest.version,
            bundleDigest: SHA256Hasher.hash(c.bundle.archive.manifestData).hex,
            kubernetesVersion: c.facts.kubernetesVersion, profile: c.profile.name,
            nodes: c.site.hosts.map { .init(name: $0.name, roles: $0.roles.map(\.rawValue)) })
        let session = c.session
        return Step(
            recordStep, on: .cluster, after: deps,
            summary: "record bundle \(c.manifest.version) and Kubernetes \(c.facts.kubernetesVersion) as installed",
            timeout: .seconds(60),
            check: { _ in
                guard try await InstallRecord.read(runner)?.matches(record) == true else { return false }
                return FileManager.default.fileExists(atPath: adminKubeconfigPath(session))
            },
            apply: { _ in
                try await fetchAdminKubeconfig(runner, session: session)
                try await record.write(runner)
            })
    }

    // MARK: helpers

    static func isRecorded(_ c: InstallContext) async throws -> Bool {
        guard let cp1 = c.firstControlPlane else { return false }
        let record = try? await InstallRecord.read(c.runner(cp1))
        return record?.bundleVersion == c.manifest.version && record?.cluster == c.site.name
    }

    static func adminKubeconfigPath(_ session: OperationSession) -> String {
        session.stateDirectory.appendingPathComponent("admin.conf").path
    }

    /// Copies the admin kubeconfig to the state directory (0600).
    static func fetchAdminKubeconfig(_ runner: NodeRunner, session: OperationSession) async throws {
        let text = try await runner.run("cat \(ClusterAPI.adminKubeconfig)", label: "read admin.conf")
        let path = adminKubeconfigPath(session)
        let tmp = path + ".new"
        FileManager.default.createFile(atPath: tmp, contents: nil, attributes: [.posixPermissions: 0o600])
        try Data(text.utf8).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else {
            throw ClusterError.io(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
