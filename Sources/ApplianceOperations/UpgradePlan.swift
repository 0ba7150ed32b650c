import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import ApplianceSSH
import Foundation

/// The rolling upgrade as one plan (DESIGN.md section 8, issue 14):
///
/// drain simulation of every node to be drained (one table; `--drain-policy fail` stops on any blocker
/// before anything changed) → staging of what the nodes lack → the new images seeded on the registry nodes →
/// control planes one at a time (etcd: every member healthy; the reason on the node, cordon + drain; the new
/// kubeadm; `kubeadm upgrade apply` on the first, `kubeadm upgrade node` on the others; the node's packages at
/// the new versions; kubelet restarted; health gate; uncordon) → workers in batches of `--max-unavailable` (the reason on the node, cordon + drain, packages
/// and `kubeadm upgrade node`, the host GPU stack when the bundle changes it, kubelet restarted, health gate
/// with install's GPU validation, uncordon) → the new version recorded where install records it → the
/// previous bundle's blobs no longer needed removed from every store.
///
/// Every step checks the node's real state first (package versions, static pod manifests, the Node's kubelet
/// version and cordon), so a re-run on an upgraded cluster changes nothing and `plan resume` converges.
enum UpgradePlan {
    static let simulationStep = "upgrade-drain-simulation"
    static func etcdHealth(_ n: String) -> String { "etcd-health/\(n)" }
    static func kubeadmUpgrade(_ n: String) -> String { "kubeadm-upgrade/\(n)" }
    static func packages(_ n: String) -> String { "upgrade-packages/\(n)" }
    static func kubeletRestart(_ n: String) -> String { "kubelet-restart/\(n)" }
    static func health(_ n: String) -> String { "health/\(n)" }
    static func prune(_ n: String) -> String { "prune/\(n)" }

    struct Inputs: Sendable {
        var context: InstallContext
        var options: UpgradeOptions
        /// The hosts this run upgrades (all, or `--node`), in the site's order.
        var hosts: [SiteInventory.Host]
        var stager: Stager
        var stagingNodes: [StagingNode]
        var io: OperationIO
        /// The platform releases as deployed before the upgrade (`helm status`); nil when not read.
        var deployedReleases: [String: InstallPlan.ReleaseStatus]? = nil
    }

    /// "v1.35.0": the version every upgraded kubelet reports.
    static func target(_ c: InstallContext) -> String { UpgradeCheck.withV(c.manifest.kubernetesVersion) }

    static func make(_ input: Inputs) throws -> Plan {
        let c = input.context
        guard let cp1 = c.firstControlPlane else {
            throw OperationError.invalid(
                "the site has no control-plane node", hint: "give one host the control-plane role")
        }
        let api = ClusterAPI(runner: c.runner(cp1))
        let controlPlanes = input.hosts.filter { $0.roles.contains(.controlPlane) }
        let workers = input.hosts.filter { !$0.roles.contains(.controlPlane) }
        let batch = try UpgradeOptions.batchSize(input.options.maxUnavailable, workers: max(1, workers.count))
        let version = target(c)

        // Every node is drained before its upgrade: the control planes too (kubeadm's procedure), so the
        // simulation covers them all.
        var steps: [Step] = [
            simulationStep(api: api, workers: (controlPlanes + workers).map(\.name), target: version, input: input)
        ]
        for var s in StagingPlan.steps(stager: input.stager, nodes: input.stagingNodes) {
            s.dependencies.append(simulationStep)
            steps.append(s)
        }
        let staged = { (n: String) in [StagingPlan.stepName(node: n), StagingPlan.transferStep] }
        var seeds: [String] = []
        for host in c.site.registryHosts {
            var seed = InstallPlan.seedStep(c, host)
            seed.dependencies = staged(host.name)
            steps.append(seed)
            seeds.append(seed.name)
        }

        let drainOptions = { (n: String) in
            LifecycleOptions(
                node: n, reason: "upgrade to \(c.manifest.version) (Kubernetes \(version))",
                timeoutSeconds: input.options.drainTimeoutSeconds, policy: input.options.drainPolicy,
                requestedBy: input.options.requestedBy, requestedAt: input.options.requestedAt)
        }

        // Control planes, one at a time: etcd healthy, the reason, cordon + drain (like a worker), kubeadm
        // upgrade, packages, kubelet, health gate, then uncordon.
        var previous: [String] = [simulationStep] + seeds
        for host in controlPlanes {
            let n = host.name
            let o = drainOptions(n)
            steps.append(etcdHealthStep(c, host, api: api, after: previous + staged(n)))
            steps.append(
                whenUpgraded(
                    LifecycleSteps.marksStep(api: api, node: n, options: o, after: [etcdHealth(n)]),
                    api: api, node: n, target: version))
            steps.append(
                whenUpgraded(
                    LifecycleSteps.drainStep(api: api, node: n, options: o, after: [LifecycleSteps.marks(n)]),
                    api: api, node: n, target: version))
            steps.append(kubeadmUpgradeStep(c, host, api: api, after: [LifecycleSteps.drain(n)]))
            steps.append(packagesStep(c, host, after: [kubeadmUpgrade(n)], kubeadmNode: false))
            steps.append(kubeletRestartStep(c, host, api: api, after: [packages(n)]))
            steps.append(healthStep(c, host, api: api, after: [kubeletRestart(n)]))
            steps.append(
                whenUpgraded(
                    LifecycleSteps.uncordonStep(api: api, node: n, after: [health(n)]),
                    api: api, node: n, target: version))
            previous = [LifecycleSteps.uncordon(n)]
        }

        // Workers in batches of --max-unavailable.
        var index = 0
        while index < workers.count {
            let group = workers[index..<min(workers.count, index + batch)]
            index += batch
            var ends: [String] = []
            for host in group {
                let n = host.name
                let o = drainOptions(n)
                steps.append(
                    whenUpgraded(
                        LifecycleSteps.marksStep(api: api, node: n, options: o, after: previous + staged(n)),
                        api: api, node: n, target: version))
                steps.append(
                    whenUpgraded(
                        LifecycleSteps.drainStep(api: api, node: n, options: o, after: [LifecycleSteps.marks(n)]),
                        api: api, node: n, target: version))
                steps.append(packagesStep(c, host, after: [LifecycleSteps.drain(n)], kubeadmNode: true))
                var last = packages(n)
                if c.hostGPUStack(host) {
                    // The host GPU stack at the new bundle's versions (driver, then the fabric manager at the
                    // same version, persistence, toolkit): install's own steps, each a no-op when unchanged.
                    for var s in try InstallPlan.gpuStackSteps(c, host) {
                        if s.name == InstallPlan.gpuDriver(n) { s.dependencies = [packages(n)] }
                        steps.append(s)
                        last = s.name
                    }
                }
                steps.append(kubeletRestartStep(c, host, api: api, after: [last]))
                steps.append(healthStep(c, host, api: api, after: [kubeletRestart(n)]))
                var gateAfter = health(n)
                if var validate = InstallPlan.gpuValidateStep(c, host) {
                    validate.dependencies = [health(n)]
                    steps.append(validate)
                    gateAfter = validate.name
                }
                steps.append(LifecycleSteps.gpuGateStep(api: api, host: host, after: [gateAfter]))
                steps.append(
                    whenUpgraded(
                        LifecycleSteps.uncordonStep(api: api, node: n, after: [LifecycleSteps.gpuGate(n)]),
                        api: api, node: n, target: version))
                ends.append(LifecycleSteps.uncordon(n))
            }
            previous = ends
        }

        // The whole cluster upgraded: the record, then the previous bundle's blobs.
        if Set(input.hosts.map(\.name)) == Set(c.site.hosts.map(\.name)) {
            // Then the platform releases (sites with `spec.platform`), re-rendered for the new bundle's charts.
            var last = previous
            if let config = try platformConfiguration(c) {
                let upgrades = try platformUpgrades(
                    manifest: c.manifest, releases: PlatformValues.releases(config), deployed: input.deployedReleases)
                let platform = platformSteps(c, cp1, upgrades: upgrades, config: config, after: previous)
                steps += platform
                last = platform.map(\.name)
            }
            steps.append(InstallPlan.recordStep(c, cp1, after: last))
            if let from = input.options.fromVersion, from != c.manifest.version {
                for host in c.site.hosts {
                    steps.append(pruneStep(c, host, from: from, after: [InstallPlan.recordStep]))
                }
            }
        }
        return try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: max(2, batch))
    }

    /// The site's platform configuration; nil without `spec.platform`.
    static func platformConfiguration(_ c: InstallContext) throws -> PlatformConfiguration? {
        guard c.site.platform != nil else { return nil }
        do { return try PlatformConfiguration.resolve(site: c.site, profile: c.profile) } catch {
            throw OperationError.invalid(error.message, hint: error.hint)
        }
    }

    // MARK: steps

    /// The node is upgraded and back in service: Ready at the target kubelet version, uncordoned, no marks.
    static func upgraded(_ node: KubeNode?, target: String) -> Bool {
        guard let node else { return false }
        return node.kubeletVersion == target && !node.unschedulable
            && !MaintenanceMarks.all.contains { node.annotations[$0] != nil }
    }

    /// A lifecycle step (reason, drain, uncordon) that is also done once the node is upgraded and back in
    /// service: a re-run after the upgrade neither marks nor drains it again.
    static func whenUpgraded(_ step: Step, api: ClusterAPI, node: String, target: String) -> Step {
        var s = step
        let check = step.check
        s.check = { ctx in
            if upgraded(try await api.node(node), target: target) { return true }
            return try await check(ctx)
        }
        return s
    }

    /// The drain simulation (server-side dry-run evictions: nothing changes) of each of `nodes` not yet
    /// upgraded and back in service, in order.
    static func simulations(api: ClusterAPI, nodes names: [String], target: String) async throws -> [DrainSimulation] {
        let nodes = try await api.nodes()
        var sims: [DrainSimulation] = []
        for n in names where !upgraded(nodes.first { $0.name == n }, target: target) {
            sims.append(try await api.drainSimulation(node: n))
        }
        return sims
    }

    /// The drain simulation of every node this run drains (control planes and workers), as one table, before
    /// the first cordon.
    static func simulationStep(api: ClusterAPI, workers: [String], target: String, input: Inputs) -> Step {
        let io = input.io
        let policy = input.options.drainPolicy
        return Step(
            simulationStep, on: .cluster,
            summary:
                "drain simulation of \(workers.count) node(s) before the first cordon (server-side dry-run evictions)",
            timeout: .seconds(600),
            check: { _ in
                // Nothing left to drain: every worker is upgraded and back in service.
                let nodes = try await api.nodes()
                return workers.allSatisfy { w in upgraded(nodes.first { $0.name == w }, target: target) }
            },
            apply: { ctx in
                let sims = try await simulations(api: api, nodes: workers, target: target)
                let table = DrainSimulation.table(sims)
                ctx.appendOutput(table)
                io.print(table)
                let blocked = sims.flatMap(\.blocked)
                for row in sims.flatMap(\.gpuJobs) {
                    io.logger.warning(
                        "\(row.node): GPU job \(row.pod.id) will be evicted: \(row.blockers.map(\.description).joined(separator: "; "))"
                    )
                }
                if policy == .fail && !blocked.isEmpty {
                    throw ClusterError.node(
                        node: "cluster",
                        reason:
                            "--drain-policy fail: \(blocked.count) pod(s) would block or be harmed by the drains; nothing was changed:\n    "
                            + blocked.map {
                                "\($0.node): \($0.pod.id): \($0.blockers.map(\.description).joined(separator: "; "))"
                            }
                            .joined(separator: "\n    "))
                }
            })
    }

    /// Before a control plane is touched: every etcd member (stacked: one per control plane) healthy, each
    /// control plane's API server answering `/readyz` (which includes its etcd check) on its own address.
    static func etcdHealthStep(_ c: InstallContext, _ host: SiteInventory.Host, api: ClusterAPI, after deps: [String])
        -> Step
    {
        let session = c.session
        let version = target(c)
        let runner = c.runner(host)
        return Step(
            etcdHealth(host.name), on: .node(host.name), after: deps,
            summary: "every etcd member healthy before \(host.name) is upgraded (never a step that could lose quorum)",
            timeout: .seconds(180),
            check: { _ in
                // Already upgraded: its kubelet reports the target version (read through the API first, so a
                // control plane that does not answer is reported by the etcd check below, not by SSH) and its
                // static pods run it.
                guard try await api.node(host.name)?.kubeletVersion == version else { return false }
                return try await manifestsAt(runner, version)
            },
            apply: { ctx in
                var check = try await NodeOperations.quorum(api: api, session: session, removing: "")
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(120)
                while check.healthy.count < check.members.count && clock.now < deadline {
                    try await Task.sleep(for: .seconds(3))
                    check = try await NodeOperations.quorum(api: api, session: session, removing: "")
                }
                let down = check.members.filter { !check.healthy.contains($0) }
                guard down.isEmpty else {
                    throw ClusterError.node(
                        node: host.name,
                        reason:
                            "etcd: \(check.healthy.count) of \(check.members.count) members healthy (\(down.joined(separator: ", ")) not answering); upgrading \(host.name) now could lose quorum, so no control plane is touched until they are back"
                    )
                }
                ctx.appendOutput(
                    "etcd: all \(check.members.count) members healthy (\(check.members.joined(separator: ", ")))")
            })
    }

    /// Whether the node's control-plane static pods run `version` (what `kubeadm upgrade apply|node` writes).
    static func manifestsAt(_ runner: NodeRunner, _ version: String) async throws -> Bool {
        try await runner.succeeds(
            "grep -q 'image: .*/kube-apiserver:\(version)$' /etc/kubernetes/manifests/kube-apiserver.yaml",
            label: "kube-apiserver manifest at \(version)")
    }

    /// The cluster's version as kubeadm records it (ClusterConfiguration in the kubeadm-config ConfigMap).
    static func clusterVersion(_ api: ClusterAPI) async throws -> String? {
        let text = try await api.kubectl(
            ["get", "configmap", "-n", "kube-system", "kubeadm-config", "-o", "jsonpath={.data.ClusterConfiguration}"],
            label: "read kubeadm-config")
        return text.split(separator: "\n").first { $0.hasPrefix("kubernetesVersion:") }.map {
            $0.dropFirst("kubernetesVersion:".count).trimmingCharacters(in: .whitespaces)
        }
    }

    /// The new kubeadm, then `kubeadm upgrade apply vX --yes` on the first control plane to be upgraded (the
    /// cluster's recorded version is older), `kubeadm upgrade node` on the others. Done when the node's
    /// static pod manifests run the target version.
    static func kubeadmUpgradeStep(
        _ c: InstallContext, _ host: SiteInventory.Host, api: ClusterAPI, after deps: [String]
    ) -> Step {
        let runner = c.runner(host)
        let version = target(c)
        let kubeadm = LocalRepository(
            runner: runner, store: c.store, packages: c.packages(for: host).filter { $0.name == "kubeadm" },
            available: c.packages(for: host))
        return Step(
            kubeadmUpgrade(host.name), on: .node(host.name), after: deps,
            summary:
                "kubeadm \(version) from the local repository; kubeadm upgrade apply \(version) (first control plane) or kubeadm upgrade node",
            timeout: .seconds(900),
            check: { _ in try await manifestsAt(runner, version) },
            apply: { ctx in
                try await kubeadm.install()
                let cluster = try await clusterVersion(api)
                var apply = true
                if let have = cluster.flatMap({ UpgradeCheck.minorVersion($0) }),
                    let want = UpgradeCheck.minorVersion(version)
                {
                    apply = (have.minor, have.patch) < (want.minor, want.patch)
                }
                let command = apply ? "kubeadm upgrade apply \(version) --yes" : "kubeadm upgrade node"
                let out = try await runner.output("\(command) 2>&1", label: command, timeout: .seconds(840))
                ctx.appendOutput(String(out.stdoutText.suffix(3000)))
                guard out.exit.succeeded else {
                    let said = out.stdoutText.split(separator: "\n").filter {
                        $0.contains("FATAL") || $0.contains("error") || $0.hasPrefix("\t-")
                    }
                    throw ClusterError.node(
                        node: host.name,
                        reason:
                            "\(command) failed (cluster at \(cluster ?? "?")): \(said.prefix(4).joined(separator: " "))"
                    )
                }
            })
    }

    /// The node's packages at the new bundle's versions (install's local repository; the Kubernetes ones held
    /// again), then on workers `kubeadm upgrade node` (the kubelet configuration).
    static func packagesStep(_ c: InstallContext, _ host: SiteInventory.Host, after deps: [String], kubeadmNode: Bool)
        -> Step
    {
        let runner = c.runner(host)
        let repo = LocalRepository(
            runner: runner, store: c.store, packages: c.basePackages(for: host), available: c.packages(for: host))
        return Step(
            packages(host.name), on: .node(host.name), after: deps,
            summary:
                "\(repo.packages.count) packages at the new bundle's versions (kubeadm, kubelet, kubectl held)\(kubeadmNode ? ", kubeadm upgrade node" : "")",
            timeout: .seconds(1200),
            check: { _ in try await repo.isInstalled() },
            apply: { ctx in
                try await repo.install()
                if kubeadmNode {
                    let out = try await runner.output(
                        "kubeadm upgrade node 2>&1", label: "kubeadm upgrade node", timeout: .seconds(600))
                    ctx.appendOutput(String(out.stdoutText.suffix(2000)))
                    guard out.exit.succeeded else {
                        throw ClusterError.node(
                            node: host.name,
                            reason: "kubeadm upgrade node failed: \(out.stdoutText.suffix(400))")
                    }
                }
            })
    }

    /// `systemctl restart kubelet`. Done when the kubelet runs and the node reports the target version (the
    /// running kubelet's own).
    static func kubeletRestartStep(
        _ c: InstallContext, _ host: SiteInventory.Host, api: ClusterAPI, after deps: [String]
    ) -> Step {
        let runner = c.runner(host)
        let version = target(c)
        return Step(
            kubeletRestart(host.name), on: .node(host.name), after: deps,
            summary: "systemctl daemon-reload; systemctl restart kubelet",
            timeout: .seconds(180),
            check: { _ in
                guard try await runner.succeeds("systemctl is-active -q kubelet", label: "kubelet active") else {
                    return false
                }
                return try await api.node(host.name)?.kubeletVersion == version
            },
            apply: { _ in
                try await runner.run(
                    "systemctl daemon-reload && systemctl restart kubelet || exit 3", label: "restart kubelet")
            })
    }

    /// The health gate: Ready at the new kubelet version (a control plane: its API server answers on its own
    /// address). A worker that fails it is cordoned with the reason, and the upgrade stops.
    static func healthStep(_ c: InstallContext, _ host: SiteInventory.Host, api: ClusterAPI, after deps: [String])
        -> Step
    {
        let version = target(c)
        let controlPlane = host.roles.contains(.controlPlane)
        let server = "https://\(host.address):6443"
        @Sendable func healthy() async throws -> (Bool, String) {
            guard let n = try await api.node(host.name) else { return (false, "the API server does not list it") }
            if !n.ready { return (false, "not Ready: \(n.notReadyReason ?? "?")") }
            if n.kubeletVersion != version { return (false, "its kubelet reports \(n.kubeletVersion), not \(version)") }
            if controlPlane, try await !api.isReady(server: server) {
                return (false, "its API server does not answer /readyz on \(server)")
            }
            return (true, "Ready at \(version)")
        }
        return Step(
            health(host.name), on: .node(host.name), after: deps,
            summary: "health gate: Ready at kubelet \(version)\(controlPlane ? ", its API server /readyz" : "")",
            timeout: .seconds(400),
            check: { _ in try await healthy().0 },
            apply: { ctx in
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(300)
                var state = try await healthy()
                while !state.0 && clock.now < deadline {
                    try await Task.sleep(for: .seconds(3))
                    state = try await healthy()
                }
                guard state.0 else {
                    let reason = "upgrade health gate failed: \(state.1) after 5 minutes"
                    if !controlPlane { try? await InstallPlan.cordon(api, node: host.name, reason: reason) }
                    throw ClusterError.node(
                        node: host.name,
                        reason: reason
                            + (controlPlane
                                ? "" : " (stays cordoned; reason in \(InstallPlan.cordonReasonAnnotation))"))
                }
                ctx.appendOutput("\(host.name): \(state.1)")
            })
    }

    /// The previous bundle's blobs that the new bundle does not carry, removed from the node's store, and its
    /// recorded manifest with them (kept until now for `plan rollback`).
    static func pruneStep(_ c: InstallContext, _ host: SiteInventory.Host, from: String, after deps: [String]) -> Step {
        let runner = c.runner(host)
        let store = c.store
        let keep = Set(c.manifest.allArtifacts.map { $0.artifact.sha256.hex })
        let dir = "\(store)/bundles/\(from)"
        @Sendable func leftovers() async throws -> [String] {
            let out = try await runner.output(
                "cat \(shellQuote(dir + "/manifest.yaml")) 2>/dev/null", label: "read manifest \(from)")
            guard out.exit.succeeded, !out.stdoutText.isEmpty,
                let old = try? BundleManifest.parse(Data(out.stdoutText.utf8), label: dir)
            else { return [] }
            let candidates = Set(old.allArtifacts.map { $0.artifact.sha256.hex }).subtracting(keep).sorted()
            guard !candidates.isEmpty else { return [] }
            let present = try await runner.run(
                "cd \(shellQuote(store + "/sha256")) 2>/dev/null || exit 0; for h in \(candidates.joined(separator: " ")); do [ -e \"$h\" ] && echo \"$h\"; done; true",
                label: "old blobs present")
            return present.split(separator: "\n").map(String.init)
        }
        return Step(
            prune(host.name), on: .node(host.name), after: deps,
            summary: "remove bundle \(from)'s blobs that bundle \(c.manifest.version) does not carry",
            timeout: .seconds(300),
            check: { _ in
                guard try await leftovers().isEmpty else { return false }
                return try await runner.succeeds("[ ! -e \(shellQuote(dir)) ]", label: "old manifest gone")
            },
            apply: { ctx in
                let blobs = try await leftovers()
                try await runner.run(
                    "cd \(shellQuote(store + "/sha256")) && rm -f \(blobs.joined(separator: " ")) && rm -rf \(shellQuote(dir))",
                    label: "prune old blobs")
                ctx.appendOutput("\(host.name): removed \(blobs.count) blob(s) of bundle \(from)")
            })
    }
}
