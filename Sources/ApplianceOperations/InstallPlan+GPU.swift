import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import AppliancePreflight
import ApplianceSSH
import Foundation

/// The host GPU stack (profile `gpuStack.mode: host-driver`) and its validation gate, on every GPU node:
///
/// `runtime/N` → `gpu-driver/N` → `gpu-fabricmanager/N` (NVSwitch profiles) → `gpu-persistence/N` →
/// `gpu-toolkit/N` → (join) … `ready/N` → `roles/N` → `gpu-validate/N`.
///
/// The order is a real server's: the driver first (everything else talks to its kernel module); on NVSwitch
/// baseboards the fabric manager right after it, enabled and started, because the NVLink fabric must be
/// configured before any CUDA or NVML client initialises the GPUs ("system not yet initialized" otherwise);
/// persistence mode once the fabric is up, so the driver keeps the GPUs initialised between clients (DCGM's
/// Persistence test expects it); then the container toolkit and containerd's `nvidia` runtime, before the
/// node joins, so the one containerd restart this needs happens before the kubelet runs anything there and
/// the node registers with a runtime that can run GPU pods. The gate runs once the node is Ready with its
/// role, because it reads the kubelet's `nvidia.com/gpu` allocatable.
///
/// A failure of any of these steps on a node that is already in the cluster cordons it, with the reason in
/// the annotation `appliance.dev/cordon-reason`; the other nodes carry on, and install exits 9. When the
/// gate passes again later, a node the gate had cordoned is uncordoned.
///
/// The GPU Operator release (device plugin, feature discovery, DCGM exporter, with `driver.enabled=false`
/// and `toolkit.enabled=false`) and the platform's charts belong after the gates, with the platform's
/// steps; `operator-precompiled` profiles get no host stack here (the operator's driver containers are the
/// platform's to deploy).
extension InstallPlan {
    static func gpuDriver(_ n: String) -> String { "gpu-driver/\(n)" }
    static func gpuFabricManager(_ n: String) -> String { "gpu-fabricmanager/\(n)" }
    static func gpuPersistence(_ n: String) -> String { "gpu-persistence/\(n)" }
    static func gpuToolkit(_ n: String) -> String { "gpu-toolkit/\(n)" }
    static func gpuValidate(_ n: String) -> String { "gpu-validate/\(n)" }

    /// The annotation that records why install cordoned a node.
    static let cordonReasonAnnotation = "appliance.dev/cordon-reason"

    /// The steps a node's join waits for (the last host GPU stack step on a GPU node).
    static func gpuJoinDependencies(_ c: InstallContext, _ host: SiteInventory.Host) -> [String] {
        c.hostGPUStack(host) ? [gpuToolkit(host.name)] : []
    }

    /// The host GPU stack steps of one node (none on nodes without GPUs, or in operator mode).
    static func gpuStackSteps(_ c: InstallContext, _ host: SiteInventory.Host) throws -> [Step] {
        guard c.hostGPUStack(host), let want = c.profile.requirements(for: host.roles)?.gpu else { return [] }
        let n = host.name
        let all = c.stagedPackages(for: host)
        func part(_ p: GPUHostPackages.Part) -> [StagedPackage] { all.filter { $0.part == p }.map(\.package) }
        guard let version = InstallBundleCheck.packageVersion(c.manifest, "containerd", roles: host.roles) else {
            throw OperationError.invalid("the bundle has no containerd package for \(n)", hint: nil)
        }
        let config = try ContainerdConfig.configFile(containerdVersion: version, pauseImage: c.facts.pauseImage)
        let stack = GPUHostStack(
            runner: c.runner(host), store: c.store, available: all.map(\.package), driver: part(.driver),
            fabricManager: part(.fabricManager), toolkit: part(.containerToolkit), containerdConfig: config)
        let driverVersion = c.driverVersion(for: host) ?? "?"
        var steps: [Step] = []
        steps.append(
            Step(
                gpuDriver(n), on: .node(n), after: [runtime(n)],
                summary:
                    "NVIDIA driver \(driverVersion) (\(stack.driver.map(\.name).joined(separator: ", "))) from the local repository, loaded",
                timeout: .seconds(1800),
                check: { _ in try await stack.driverInstalled() },
                apply: { _ in try await quarantined(c, host) { try await stack.installDriver() } }))
        var previous = gpuDriver(n)
        if want.fabricManager {
            steps.append(
                Step(
                    gpuFabricManager(n), on: .node(n), after: [previous],
                    summary: "nvidia-fabricmanager \(driverVersion) (the driver's version), enabled and started",
                    timeout: .seconds(600),
                    check: { _ in try await stack.fabricManagerReady() },
                    apply: { _ in try await quarantined(c, host) { try await stack.startFabricManager() } }))
            previous = gpuFabricManager(n)
        }
        let runner = c.runner(host)
        steps.append(
            Step(
                gpuPersistence(n), on: .node(n), after: [previous],
                summary: "persistence mode on every GPU (nvidia-persistenced where installed, else nvidia-smi -pm 1)",
                timeout: .seconds(120),
                check: { _ in try await persistenceEnabled(runner) },
                apply: { _ in try await quarantined(c, host) { try await enablePersistence(runner) } }))
        steps.append(
            Step(
                gpuToolkit(n), on: .node(n), after: [gpuPersistence(n)],
                summary:
                    "NVIDIA container toolkit; nvidia-ctk runtime configure --runtime=containerd (nvidia runtime), containerd restarted if its configuration changed",
                timeout: .seconds(600),
                check: { _ in try await stack.toolkitConfigured() },
                apply: { _ in try await quarantined(c, host) { try await stack.configureToolkit() } }))
        return steps
    }

    /// `gpu-validate/N`: the gate (`GPUValidation`), after the node is Ready with its role.
    ///
    /// In `operator-precompiled` mode the GPU Operator's driver container installs the driver, so the gate
    /// first waits (up to `operatorDriverWait`) for it to fill the driver root, then for the device plugin to
    /// advertise `nvidia.com/gpu`, and reads the tools where that container and the DCGM pod put them. A
    /// driver that never comes is the gate's failure, with the driver pod's state on the node. Install puts the
    /// gate after the GPU Operator's release in this mode (`platformSteps`); the cordon on failure is the same.
    static func gpuValidateStep(_ c: InstallContext, _ host: SiteInventory.Host) -> Step? {
        guard c.gpuGated(host) else { return nil }
        let level = c.dcgmLevel
        let runner = c.runner(host)
        let cp1 = c.firstControlPlane.map { c.runner($0) }
        let (profile, name, hostRoles) = (c.profile, host.name, host.roles)
        let operatorMode = profile.gpuStack.mode == .operatorPrecompiled
        let driverVersion: String? = operatorMode ? nil : (c.driverVersion(for: host) ?? "?")
        let driverRoot = operatorMode ? PrecompiledDriver.driverRoot : nil
        let wait = c.operatorDriverWait
        @Sendable func validate() async throws -> (GPUValidation.Result, KubeNode?) {
            let catalog = try CheckCatalog.load(directory: ResourceLocator.preflightDirectory() + "/checks")
            if let driverRoot, let cp1 {
                if let why = try await waitForOperatorDriver(
                    runner: runner, api: ClusterAPI(runner: cp1), node: name, root: driverRoot, wait: wait)
                {
                    let node = try await ClusterAPI(runner: cp1).nodes().first { $0.name == name }
                    return (
                        GPUValidation.Result(findings: [.init(check: "gpu.driver", reason: why)], summary: ""), node
                    )
                }
            }
            let out = try await runner.output(
                GPUValidation.script(dcgmLevel: level, driverRoot: driverRoot),
                label: "read the GPU stack (nvidia-smi, dcgmi diag -r \(level))",
                timeout: .seconds(1800))
            var node: KubeNode?
            if let cp1 { node = try await ClusterAPI(runner: cp1).nodes().first { $0.name == name } }
            let result = GPUValidation.evaluate(
                facts: NodeFacts.parse(out.stdoutText), node: name, roles: hostRoles, profile: profile,
                catalog: catalog, driverVersion: driverVersion, dcgmLevel: level, allocatable: node?.allocatableGPUs)
            return (result, node)
        }
        // The reading the check just made, for the apply of the same attempt: `nvidia-smi`, `dcgmi diag` (minutes
        // at levels 3 and 4) and, in operator mode, the wait for the driver run once per attempt, not twice.
        let checked = LastReading<(GPUValidation.Result, KubeNode?)>()
        return Step(
            gpuValidate(name), on: .node(name), after: [roles(name)],
            summary: (operatorMode
                ? "GPU validation of the GPU Operator's driver container (\(PrecompiledDriver.driverRoot)): "
                : "GPU validation: ")
                + "nvidia-smi count/model/driver, fabric manager and NVLinks, ECC, dcgmi diag -r \(level), nvidia.com/gpu allocatable; a failure cordons the node",
            timeout: .seconds(1800),
            check: { ctx in
                let (result, node) = try await validate()
                await checked.keep((result, node))
                let valid = result.passed && node?.annotations[InstallPlan.cordonReasonAnnotation] == nil
                // What was validated stays in the journal when nothing is left to do, too.
                if valid { ctx.appendOutput("GPU stack validated: \(result.summary)") }
                return valid
            },
            apply: { ctx in
                let reading: (GPUValidation.Result, KubeNode?)
                if let kept = await checked.take() { reading = kept } else { reading = try await validate() }
                let (result, node) = reading
                guard let cp1 else { return }
                let api = ClusterAPI(runner: cp1)
                if !result.passed {
                    let reason = "GPU validation failed: " + result.findings.map(\.description).joined(separator: "; ")
                    try await cordon(api, node: name, reason: reason)
                    throw ClusterError.node(
                        node: name,
                        reason: reason + " (cordoned; reason in \(cordonReasonAnnotation))")
                }
                ctx.appendOutput("GPU stack validated: \(result.summary)")
                if node?.annotations[InstallPlan.cordonReasonAnnotation] != nil {
                    try await api.kubectl(["uncordon", name], label: "kubectl uncordon \(name)")
                    try await api.kubectl(
                        ["annotate", "node", name, "\(cordonReasonAnnotation)-"], label: "kubectl annotate node \(name)"
                    )
                    ctx.appendOutput("\(name) uncordoned (it had been cordoned by a failed GPU validation)")
                }
            })
    }

    /// Waits for the GPU Operator's driver container to fill the driver root on the node, then (a bounded
    /// while) for the node to advertise `nvidia.com/gpu`. Returns why the driver is not there when the wait
    /// ends without it, with the state of the node's driver pod; nil when it came.
    static func waitForOperatorDriver(
        runner: NodeRunner, api: ClusterAPI, node: String, root: String, wait: Duration
    ) async throws -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + wait
        while !(try await runner.succeeds(GPUValidation.driverRootReady(root), label: "driver root \(root)")) {
            guard clock.now < deadline else {
                let pod = (try? await operatorDriverPod(api, node: node)) ?? "its state could not be read"
                return
                    "the GPU Operator's driver container did not install the driver in \(root) within \(wait.components.seconds) s (\(pod))"
            }
            try await Task.sleep(for: .seconds(3))
        }
        // The device plugin starts once the driver and the toolkit are ready; the gate names a node that
        // still advertises no GPU.
        let advertised = clock.now + min(wait, .seconds(180))
        while clock.now < advertised, try await api.node(node)?.allocatableGPUs == nil {
            try await Task.sleep(for: .seconds(3))
        }
        return nil
    }

    /// The state of the GPU Operator's driver pod on a node, in words.
    static func operatorDriverPod(_ api: ClusterAPI, node: String) async throws -> String {
        let json = try await api.kubectl(
            [
                "get", "pods", "-n", PlatformValues.gpuOperatorNamespace, "-l", "app=nvidia-driver-daemonset",
                "--field-selector", "spec.nodeName=\(node)", "-o", "json",
            ], label: "kubectl get the driver pod of \(node)")
        guard let pod = ReleasePods.items(json).first else { return "no driver pod on \(node)" }
        let podName = (pod["metadata"] as? [String: Any])?["name"] as? String ?? "?"
        return "pod \(podName): " + (ClusterAPI.whyNotReady(pod: pod) ?? "Ready")
    }

    /// Runs a GPU stack step's change; when it fails on a node already in the cluster, cordons the node with
    /// the reason before the failure is reported.
    static func quarantined(
        _ c: InstallContext, _ host: SiteInventory.Host, _ body: @Sendable () async throws -> Void
    ) async throws {
        do {
            try await body()
        } catch {
            guard let cp1 = c.firstControlPlane else { throw error }
            let api = ClusterAPI(runner: c.runner(cp1))
            var reason = "\(error)"
            if let e = error as? ClusterError {
                if case .node(_, let r) = e { reason = r } else { reason = e.message }
            }
            let registered = (try? await api.nodes())?.contains { $0.name == host.name } ?? false
            if registered {
                try? await cordon(api, node: host.name, reason: "GPU stack: " + reason)
                throw ClusterError.node(
                    node: host.name, reason: reason + " (cordoned; reason in \(cordonReasonAnnotation))")
            }
            throw error
        }
    }

    static func cordon(_ api: ClusterAPI, node: String, reason: String) async throws {
        let value = reason.count > 1000 ? String(reason.prefix(997)) + "..." : reason
        try await api.kubectl(["cordon", node], label: "kubectl cordon \(node)")
        try await api.kubectl(
            ["annotate", "node", node, "--overwrite", "\(cordonReasonAnnotation)=\(value)"],
            label: "kubectl annotate node \(node)")
    }

    /// `nvidia-smi -q -x` on the node, read with preflight's parser: every GPU it lists has persistence mode
    /// on (a GPU lost to the driver is the gate's to name), or `nvidia-persistenced` runs.
    static func persistenceEnabled(_ runner: NodeRunner) async throws -> Bool {
        if try await runner.succeeds("systemctl is-active -q nvidia-persistenced", label: "nvidia-persistenced") {
            return true
        }
        let out = try await runner.output("nvidia-smi -q -x", label: "nvidia-smi -q -x", timeout: .seconds(120))
        guard out.exit.status == 0 || out.exit.status == 15, let start = out.stdoutText.range(of: "<?xml"),
            let report = try? NvidiaSMIXML.parse(String(out.stdoutText[start.lowerBound...])), !report.gpus.isEmpty
        else { return false }
        return report.gpus.allSatisfy { $0.persistenceMode == "Enabled" }
    }

    static func enablePersistence(_ runner: NodeRunner) async throws {
        let out = try await runner.output(
            """
            if systemctl cat nvidia-persistenced >/dev/null 2>&1; then
              systemctl enable --now nvidia-persistenced >/dev/null 2>&1 && exit 0
            fi
            nvidia-smi -pm 1
            """, label: "persistence mode", timeout: .seconds(120))
        if out.exit.status != 0 && out.exit.status != 15 {
            let text = (out.stdoutText + out.stderrText).split(separator: "\n").prefix(2).joined(separator: " ")
            throw ClusterError.node(
                node: runner.name,
                reason: "nvidia-smi -pm 1 failed (exit \(out.exit.status.map(String.init) ?? "?")): \(text)")
        }
    }
}

extension InstallContext {
    /// Whether the node gets the GPU validation gate: a GPU worker of a `host-driver` profile (after its host
    /// stack), or of an `operator-precompiled` profile on a site whose platform deploys the GPU Operator.
    func gpuGated(_ host: SiteInventory.Host) -> Bool {
        switch profile.gpuStack.mode {
        case .hostDriver: hostGPUStack(host)
        case .operatorPrecompiled:
            site.platform != nil && host.roles.contains(.gpuWorker) && profile.requirements(for: host.roles)?.gpu != nil
        }
    }

    /// Whether the node gets the host GPU stack: a GPU worker in a `host-driver` profile.
    func hostGPUStack(_ host: SiteInventory.Host) -> Bool {
        profile.gpuStack.mode == .hostDriver && host.roles.contains(.gpuWorker)
            && profile.requirements(for: host.roles)?.gpu != nil
    }

    /// The host GPU stack part of an artifact: its package's, or (a package of a dependency closure) the part
    /// of every root it was resolved from.
    func gpuPart(_ a: BundleManifest.Artifact) -> GPUHostPackages.Part? {
        guard let name = a.provenance("package") else { return nil }
        if let p = GPUHostPackages.part(ofPackage: name) { return p }
        let roots = (a.provenance("resolvedFrom") ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        guard !roots.isEmpty else { return nil }
        let parts = roots.map { root in
            manifest.allArtifacts.first { $0.artifact.name == root }?.artifact.provenance("package").flatMap {
                GPUHostPackages.part(ofPackage: $0)
            }
        }
        guard let first = parts.first ?? nil, parts.allSatisfy({ $0 == first }) else { return nil }
        return first
    }

    /// The node's packages, each with its host GPU stack part (nil: the packages step installs it).
    func stagedPackages(for host: SiteInventory.Host) -> [(package: StagedPackage, part: GPUHostPackages.Part?)] {
        manifest.allArtifacts.compactMap { (_, a) -> (StagedPackage, GPUHostPackages.Part?)? in
            guard a.applies(to: host.roles), let package = StagedPackage(artifact: a) else { return nil }
            return (package, gpuPart(a))
        }
    }

    /// What the packages step installs: everything but the host GPU stack on nodes that get it, and on no
    /// node in `operator-precompiled` mode, where the GPU Operator's containers are the GPU stack (a host
    /// driver would stop its driver container) even when the bundle carries host GPU packages.
    func basePackages(for host: SiteInventory.Host) -> [StagedPackage] {
        let all = stagedPackages(for: host)
        let withoutGPUStack = hostGPUStack(host) || profile.gpuStack.mode == .operatorPrecompiled
        return withoutGPUStack ? all.filter { $0.part == nil }.map(\.package) : all.map(\.package)
    }

    /// The upstream version of the driver the bundle installs on the node.
    func driverVersion(for host: SiteInventory.Host) -> String? {
        GPUHostPackages.driverVersion(
            stagedPackages(for: host).map { .init(name: $0.package.name, version: $0.package.version, artifact: "") })
    }
}

/// One value handed from a step's `check` to its `apply` in the same attempt (taken once).
actor LastReading<Value: Sendable> {
    private var value: Value?
    func keep(_ v: Value) { value = v }
    func take() -> Value? {
        defer { value = nil }
        return value
    }
}
