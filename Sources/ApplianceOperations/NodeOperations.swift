import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePreflight
import ApplianceSSH
import Foundation

/// `appliance node drain|rejoin|add|remove`: the maintenance operations on one node, each one plan of the
/// engine (journaled, locked, resumable, dry-run, NDJSON events).
///
/// - drain: simulation → reason recorded on the node → cordon + `kubectl drain` (or the Run:ai taint).
/// - rejoin: staging (what the node's store lacks), OS prep, packages, runtime, registry mirror, join with
///   a fresh token (a control plane with a fresh certificate key) when it is not a member, roles, health
///   gate, uncordon, the reason cleared. Every step is install's own, built for that one node.
/// - add: preflight of the new host, then as rejoin, and the install record lists it.
/// - remove: drain, `kubeadm reset` on the node (its etcd member leaves with it), the Node deleted, the
///   install record updated; a control plane whose removal would break etcd quorum is refused.
public enum NodeOperations {
    public static let drainKind = "node-drain"
    public static let rejoinKind = "node-rejoin"
    public static let addKind = "node-add"
    public static let removeKind = "node-remove"
    public static let kinds = [drainKind, rejoinKind, addKind, removeKind]

    static let preflightStepPrefix = "preflight/"
    static func reset(_ n: String) -> String { "reset/\(n)" }
    static func deleteNode(_ n: String) -> String { "delete-node/\(n)" }
    static func etcdMember(_ n: String) -> String { "etcd-member/\(n)" }
    static func record(_ n: String) -> String { "record/\(n)" }

    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, connectAhead: Bool
    ) async throws -> PreparedOperation {
        // The nodes' store (and with it the journal copy and the cluster-side lock beside it) is the install's.
        var params = params
        if params.store == nil {
            params.store = (try? OperationParameters.load(session.stateDirectory, kind: InstallOperation.kind))?.store
        }
        guard let options = params.lifecycle else {
            throw OperationError.invalid("the operation recorded no node options", hint: nil)
        }
        guard let host = session.site.host(named: options.node) else {
            throw OperationError.invalid(
                "no host named '\(options.node)' in \(session.site.sourcePath ?? "the site"); hosts: \(session.site.hosts.map(\.name).joined(separator: ", "))",
                hint: params.kind == addKind ? "list the new host in the site file first" : nil)
        }
        switch params.kind {
        case drainKind: return try drain(params, options, host: host, session: session, io: io)
        case rejoinKind, addKind:
            return try await join(params, options, host: host, session: session, io: io, connectAhead: connectAhead)
        case removeKind:
            return try await remove(params, options, host: host, session: session, io: io, connectAhead: connectAhead)
        default: throw OperationError.unknownKind(params.kind)
        }
    }

    /// kubectl on the first control plane that is not `node` (the node being changed may go away).
    static func apiRunner(session: OperationSession, avoiding node: String) throws -> NodeRunner {
        guard let cp = session.site.controlPlanes.first(where: { $0.name != node }) ?? session.site.controlPlanes.first
        else {
            throw OperationError.invalid(
                "the site has no control-plane node", hint: "give one host the control-plane role")
        }
        return NodeRunner(name: cp.name, address: cp.address, pool: session.pool, endpoint: session.endpoint(for: cp))
    }

    // MARK: drain

    static func drain(
        _ params: OperationParameters, _ o: LifecycleOptions, host: SiteInventory.Host, session: OperationSession,
        io: OperationIO
    ) throws -> PreparedOperation {
        let api = ClusterAPI(runner: try apiRunner(session: session, avoiding: host.name))
        let n = host.name
        var steps = [LifecycleSteps.simulationStep(api: api, node: n, options: o, io: io)]
        steps.append(LifecycleSteps.marksStep(api: api, node: n, options: o, after: [LifecycleSteps.simulation(n)]))
        switch o.method {
        case .drain:
            steps.append(LifecycleSteps.drainStep(api: api, node: n, options: o, after: [LifecycleSteps.marks(n)]))
        case .taint:
            steps.append(LifecycleSteps.taintStep(api: api, node: n, options: o, after: [LifecycleSteps.marks(n)]))
        }
        let plan = try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: 1)
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: nil,
            finish: { outcome in
                try finishSingleNode(outcome, plan: plan, io: io) {
                    "\(n) drained (\(o.method == .taint ? "tainted \(MaintenanceMarks.drainTaint.argument)" : "cordoned, evicted")): reason '\(o.reason ?? "")' recorded by \(o.requestedBy) at \(o.requestedAtText) (operation \(outcome.operation.id)); `appliance node rejoin \(n)` brings it back"
                }
            })
    }

    // MARK: rejoin and add

    static func join(
        _ params: OperationParameters, _ o: LifecycleOptions, host: SiteInventory.Host, session: OperationSession,
        io: OperationIO, connectAhead: Bool
    ) async throws -> PreparedOperation {
        let adding = params.kind == addKind
        let install = try? OperationParameters.load(session.stateDirectory, kind: InstallOperation.kind)
        guard let bundlePath = params.bundle ?? install?.bundle else {
            throw OperationError.invalid(
                "no bundle: this admin host has no record of the install's bundle",
                hint: "pass --bundle B.tar --trust KEY.pub (the installed bundle)")
        }
        let keys = params.bundle != nil ? params.trustedKeys : (install?.trustedKeys ?? [])
        let unsigned = params.bundle != nil ? params.allowUnsigned : (install?.allowUnsigned ?? false)
        guard let profileName = params.profile ?? install?.profile ?? session.site.profile else {
            throw OperationError.invalid("no profile: pass --profile or set spec.profile in the site file", hint: nil)
        }
        let profile = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(profileName)
        let verified = try await BundleVerification.verify(
            bundlePath, trustedKeys: keys, allowUnsigned: unsigned, io: io)
        // The install's store and command-line waivers, unless given again.
        var effective = params
        effective.store = params.store ?? install?.store
        effective.waivers = (params.waivers ?? []) + (install?.waivers ?? [])
        let waivers = try InstallOperation.waivers(effective, site: session.site)
        let stagingPool = await SSHPool(
            policy: session.pool.policy, options: session.pool.options, maxTotal: session.pool.maxTotal,
            logger: session.logger)
        let target = try session.stagingNodes(only: [host.name])
        let stager = Stager(
            bundle: verified, nodes: target, pool: stagingPool, store: effective.storePath,
            bytesPerSecond: params.bytesPerSecond,
            connecting: connectAhead ? Stager.connectAhead(target, pool: stagingPool) : nil, logger: session.logger)
        let c = InstallContext.make(
            session: session, profile: profile, bundle: verified, store: effective.storePath, waivers: waivers)
        if connectAhead, let cp1 = c.firstControlPlane, let record = try? await InstallRecord.read(c.runner(cp1)) {
            let digest = SHA256Hasher.hash(verified.archive.manifestData).hex
            if record.bundleDigest != digest {
                throw OperationError.invalid(
                    "\(bundlePath) is bundle \(verified.manifest.version), but the cluster runs \(record.bundleName) \(record.bundleVersion)",
                    hint: "pass --bundle with the installed bundle (an upgrade changes versions, not a rejoin)")
            }
        }
        let api = ClusterAPI(runner: try apiRunner(session: session, avoiding: host.name))
        let plan = try joinPlan(c, host: host, adding: adding, stager: stager, stagingNodes: target, api: api)
        let n = host.name
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: verified.manifest.version,
            whileLocked: { outcome in
                if !outcome.succeeded { await stager.removeLeftovers() }
                await stagingPool.closeAll()
            },
            finish: { outcome in
                try finishSingleNode(outcome, plan: plan, io: io) {
                    let changed = outcome.applied.filter {
                        $0 != StagingPlan.transferStep && $0 != LifecycleSteps.gpuGate(n)
                    }
                    return changed.isEmpty
                        ? "\(n): nothing to change: a Ready member with its roles, uncordoned (operation \(outcome.operation.id))"
                        : "\(n) \(adding ? "added" : "rejoined"): Ready with its roles, uncordoned; \(changed.count) steps applied (operation \(outcome.operation.id))"
                }
            })
    }

    /// Install's own steps for one node (`InstallPlan`'s builders), then the gate and uncordon.
    static func joinPlan(
        _ c: InstallContext, host: SiteInventory.Host, adding: Bool, stager: Stager, stagingNodes: [StagingNode],
        api: ClusterAPI
    ) throws -> Plan {
        let n = host.name
        var steps: [Step] = []
        var first: [String] = []
        if adding {
            steps.append(preflightStep(c, host))
            first = [preflightStepPrefix + n]
        }
        for var s in StagingPlan.steps(stager: stager, nodes: stagingNodes) {
            s.dependencies += first
            steps.append(s)
        }
        steps.append(
            InstallPlan.osPrepStep(c, host, after: [StagingPlan.stepName(node: n), StagingPlan.transferStep]))
        steps.append(InstallPlan.packagesStep(c, host))
        steps.append(try InstallPlan.runtimeStep(c, host))
        // A GPU node gets its host GPU stack again where it lacks it (each step checks first: a rebooted node
        // changes nothing, a reinstalled one gets the driver, fabric manager, persistence and toolkit back).
        steps += try InstallPlan.gpuStackSteps(c, host)
        var mirrorAfter = [InstallPlan.runtime(n)]
        if c.site.registryHosts.contains(where: { $0.name == n }) {
            steps.append(try InstallPlan.registryStep(c, host))
            steps.append(InstallPlan.seedStep(c, host))
            mirrorAfter.append(InstallPlan.seed(n))
        }
        var joinAfter = [InstallPlan.mirror(n)] + InstallPlan.gpuJoinDependencies(c, host)
        if c.site.effectiveAPIEndpoint?.mode == .virtualIP && host.roles.contains(.controlPlane) {
            steps.append(try InstallPlan.loadBalancerStep(c, host))
            joinAfter.append(InstallPlan.loadBalancer(n))
        }
        steps.append(InstallPlan.mirrorStep(c, host, after: mirrorAfter))
        steps.append(rejoinStep(c, host, api: api, after: joinAfter))
        let membership = host.roles.contains(.controlPlane) ? InstallPlan.joinControlPlane(n) : InstallPlan.join(n)
        steps.append(InstallPlan.readyStep(c, host, after: [membership]))
        steps.append(InstallPlan.rolesStep(c, host))
        // The GPU validation install runs (count, model, driver, fabric manager and NVLinks, ECC, dcgmi diag,
        // allocatable): a repaired node that still has a fault stays cordoned with the finding as its reason.
        var gateAfter = InstallPlan.roles(n)
        if let validate = InstallPlan.gpuValidateStep(c, host) {
            steps.append(validate)
            gateAfter = validate.name
        }
        steps.append(LifecycleSteps.gpuGateStep(api: api, host: host, after: [gateAfter]))
        steps.append(LifecycleSteps.uncordonStep(api: api, node: n, after: [LifecycleSteps.gpuGate(n)]))
        if adding {
            steps.append(recordStep(c, node: host, adding: true, after: [LifecycleSteps.uncordon(n)]))
        }
        return try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: 2)
    }

    /// Install's join step for the node; before it joins, a Node object left by the node's earlier life (it
    /// was reset or reinstalled: listed, but no kubelet kubeconfig on the node) is deleted, as kubeadm
    /// refuses to join a name that a Ready Node already has.
    static func rejoinStep(_ c: InstallContext, _ host: SiteInventory.Host, api: ClusterAPI, after deps: [String])
        -> Step
    {
        var step = InstallPlan.joinStep(c, host, after: deps)
        let joinApply = step.apply
        let runner = c.runner(host)
        step.summary += " (a stale Node object of the node's earlier life deleted first)"
        step.apply = { ctx in
            let listed = try await api.node(host.name) != nil
            let configured = try await runner.succeeds("[ -f \(Kubeadm.kubeletConf) ]", label: "look for kubelet.conf")
            if listed && !configured {
                try await api.deleteNode(host.name)
                ctx.appendOutput("\(host.name): deleted the Node object of its earlier life before joining again")
            }
            try await joinApply(ctx)
        }
        return step
    }

    /// Preflight of the one new host, in install mode (what install sets up does not block).
    static func preflightStep(_ c: InstallContext, _ host: SiteInventory.Host) -> Step {
        Step(
            preflightStepPrefix + host.name, on: .node(host.name),
            summary: "preflight of \(host.name) in install mode (what install sets up does not block)",
            timeout: .seconds(300),
            check: { _ in
                // A host that already joined passed this before.
                try await c.runner(host).succeeds("[ -f \(Kubeadm.kubeletConf) ]", label: "look for kubelet.conf")
            },
            apply: { ctx in
                let report = try await InstallPlan.runPreflight(c, hosts: [host])
                let s = report.summary
                ctx.appendOutput(
                    "preflight: \(s.pass) passed, \(s.info) info (set by install), \(s.warn) warnings, \(s.fail) failed, \(s.waived) waived"
                )
                let blocking = report.blockingFindings
                if !blocking.isEmpty {
                    throw ClusterError.node(
                        node: host.name, reason: "preflight failed:\n    " + blocking.joined(separator: "\n    "))
                }
            })
    }

    /// The install record on the first control plane lists the node (add) or no longer does (remove).
    static func recordStep(
        _ c: InstallContext?, node host: SiteInventory.Host, adding: Bool, after deps: [String],
        runner: NodeRunner? = nil
    ) -> Step {
        let cp = runner ?? c.flatMap { ctx in ctx.firstControlPlane.map { ctx.runner($0) } }
        return Step(
            record(host.name), on: .cluster, after: deps,
            summary: adding
                ? "the install record lists \(host.name)" : "the install record no longer lists \(host.name)",
            timeout: .seconds(60),
            check: { _ in
                guard let cp, let r = try await InstallRecord.read(cp) else { return true }
                return r.nodes.contains { $0.name == host.name } == adding
            },
            apply: { _ in
                guard let cp, var r = try await InstallRecord.read(cp) else { return }
                r.nodes.removeAll { $0.name == host.name }
                if adding { r.nodes.append(.init(name: host.name, roles: host.roles.map(\.rawValue))) }
                try await r.write(cp)
            })
    }

    // MARK: remove

    static func remove(
        _ params: OperationParameters, _ o: LifecycleOptions, host: SiteInventory.Host, session: OperationSession,
        io: OperationIO, connectAhead: Bool
    ) async throws -> PreparedOperation {
        let n = host.name
        let controlPlane = host.roles.contains(.controlPlane)
        let runner = try apiRunner(session: session, avoiding: n)
        let api = ClusterAPI(runner: runner)
        if controlPlane && connectAhead {
            let check = try await quorum(api: api, session: session, removing: n)
            if let refusal = check.refusal {
                throw OperationError.invalid(
                    "refused: \(refusal)",
                    hint: "add a control plane first (`appliance node add`), or bring the unhealthy ones back")
            }
            io.print(check.summary)
        }
        if controlPlane && session.site.controlPlanes.first?.name == n {
            throw OperationError.invalid(
                "\(n) is the site's first control plane: it holds the install record, the journal copy and the cluster lock",
                hint: "list another control plane first in the site file, then remove \(n)")
        }
        let target = session.site.host(named: n)
        let node = NodeRunner(
            name: n, address: host.address, pool: session.pool, endpoint: session.endpoint(for: host))
        var steps: [Step] = []
        var after: [String] = []
        if !o.force {
            steps.append(LifecycleSteps.simulationStep(api: api, node: n, options: o, io: io))
            var drainStep = LifecycleSteps.drainStep(
                api: api, node: n, options: o, after: [LifecycleSteps.simulation(n)])
            let check = drainStep.check
            // A node no longer listed (deleted by an earlier run of this removal) has nothing to drain.
            drainStep.check = { ctx in
                if try await api.node(n) == nil { return true }
                return try await check(ctx)
            }
            steps.append(drainStep)
            after = [LifecycleSteps.drain(n)]
            // Same for the simulation: nothing to simulate on a node the cluster no longer lists.
            let simCheck = steps[0].check
            steps[0].check = { ctx in
                if try await api.node(n) == nil { return true }
                return try await simCheck(ctx)
            }
        }
        steps.append(resetStep(node: node, force: o.force, controlPlane: controlPlane, after: after))
        if controlPlane {
            steps.append(etcdMemberStep(node: n, address: host.address, through: runner, after: [reset(n)]))
        }
        steps.append(
            Step(
                deleteNode(n), on: .cluster, after: [controlPlane ? etcdMember(n) : reset(n)],
                summary: "kubectl delete node \(n)", timeout: .seconds(120),
                check: { _ in try await api.node(n) == nil },
                apply: { _ in try await api.deleteNode(n) }))
        if let target {
            steps.append(
                recordStep(nil, node: target, adding: false, after: [deleteNode(n)], runner: cpRunner(session)))
        }
        let plan = try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: 1)
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: nil,
            finish: { outcome in
                try finishSingleNode(outcome, plan: plan, io: io) {
                    "\(n) removed: \(o.force ? "not drained (--force), reset if it answered" : "drained, reset"), its Node deleted\(controlPlane ? ", its etcd member gone" : ""); the site file still lists it (operation \(outcome.operation.id))"
                }
            })
    }

    static func cpRunner(_ session: OperationSession) -> NodeRunner? {
        session.site.controlPlanes.first.map {
            NodeRunner(name: $0.name, address: $0.address, pool: session.pool, endpoint: session.endpoint(for: $0))
        }
    }

    /// The control planes the API lists (stacked etcd: one member each) and which answer `/readyz` on their
    /// own address (their API server and its local etcd member).
    static func quorum(api: ClusterAPI, session: OperationSession, removing: String) async throws -> QuorumCheck {
        let nodes = try await api.nodes()
        let members = nodes.filter { $0.labels[NodeRoleMarks.controlPlaneKey] != nil }.map(\.name).sorted()
        var healthy: [String] = []
        for name in members {
            let address = session.site.host(named: name)?.address ?? nodes.first { $0.name == name }?.internalIP
            guard let address else { continue }
            if (try? await api.isReady(server: "https://\(address):6443")) == true { healthy.append(name) }
        }
        return QuorumCheck(members: members, healthy: healthy, removing: removing)
    }

    /// The control plane's etcd member is gone, read through another control plane. `kubeadm reset` removes
    /// it, but only warns when it cannot (and a dead control plane removed with `--force` is never reset): then
    /// it is removed here with etcdctl, so etcd does not keep counting a member that will never answer.
    static func etcdMemberStep(node n: String, address: String, through runner: NodeRunner, after deps: [String])
        -> Step
    {
        Step(
            etcdMember(n), on: .cluster, after: deps,
            summary: "etcd member of \(n) gone (removed through \(runner.name) if kubeadm reset left it)",
            timeout: .seconds(180),
            check: { _ in
                EtcdControl.member(of: n, address: address, in: try await EtcdControl.members(on: runner)) == nil
            },
            apply: { ctx in
                let members = try await EtcdControl.members(on: runner)
                guard let m = EtcdControl.member(of: n, address: address, in: members) else { return }
                try await EtcdControl.remove(m, on: runner)
                ctx.appendOutput(
                    "kubeadm reset left the etcd member \(m.id) (\(m.name.isEmpty ? n : m.name)): removed through \(runner.name); \(members.count - 1) member\(members.count == 2 ? "" : "s") left"
                )
            })
    }

    /// `kubeadm reset -f` on the node (on a control plane its etcd member leaves the cluster first, while the
    /// API answers), then what reset leaves: CNI configuration and state, the kubelet stopped. Done when the
    /// node holds no kubelet kubeconfig and no static pod manifests. With `--force` an unreachable node counts
    /// as done (it is dead; its Node is deleted next).
    static func resetStep(node: NodeRunner, force: Bool, controlPlane: Bool, after deps: [String]) -> Step {
        let probe = "[ ! -e \(Kubeadm.kubeletConf) ] && [ -z \"$(ls -A /etc/kubernetes/manifests 2>/dev/null)\" ]"
        return Step(
            reset(node.name), on: .node(node.name), after: deps,
            summary:
                "kubeadm reset -f\(controlPlane ? " (its etcd member removed)" : ""), CNI configuration removed, kubelet stopped",
            timeout: .seconds(300),
            check: { _ in
                do {
                    return try await node.succeeds(probe, label: "look for kubeadm state")
                } catch  where force {
                    return true
                }
            },
            apply: { ctx in
                do {
                    let out = try await node.run(
                        """
                        kubeadm reset -f 2>&1 || exit 3
                        systemctl stop kubelet >/dev/null 2>&1 || true
                        rm -rf /etc/cni/net.d /var/lib/cni /etc/kubernetes/tmp /root/.kube/config
                        for l in cni0 flannel.1; do ip link delete "$l" >/dev/null 2>&1 || true; done
                        """, label: "kubeadm reset", timeout: .seconds(240))
                    ctx.appendOutput(
                        out.split(separator: "\n").filter { $0.contains("[reset]") }.joined(separator: "\n"))
                } catch  where force {
                    ctx.appendOutput("\(node.name) did not answer (\(error)); --force: going on without its reset")
                }
            })
    }

    // MARK: outcome

    static func finishSingleNode(
        _ outcome: OperationOutcome, plan: Plan, io: OperationIO, success: () -> String
    ) throws {
        if outcome.operation.state == .interrupted { throw OperationInterrupted(operation: outcome.operation.id) }
        if outcome.succeeded {
            io.print(success())
            return
        }
        throw NodesFailed(failures: Operations.nodeFailures(outcome, plan: plan), anySucceeded: false)
    }
}

extension InstallContext {
    /// The context install's step builders take, for operations on nodes of an installed cluster.
    static func make(
        session: OperationSession, profile: HardwareProfile, bundle: VerifiedBundle, store: String,
        waivers: [Waiver]
    ) -> InstallContext {
        let site = session.site
        let runners = Dictionary(
            uniqueKeysWithValues: site.hosts.map {
                (
                    $0.name,
                    NodeRunner(
                        name: $0.name, address: $0.address, pool: session.pool, endpoint: session.endpoint(for: $0))
                )
            })
        return InstallContext(
            session: session, profile: profile, bundle: bundle, facts: BundleFacts(manifest: bundle.manifest),
            store: store, waivers: waivers, runners: runners,
            pki: InstallPKIProvider(
                stateDirectory: session.stateDirectory, cluster: site.name,
                names: RegistryPKI.subjectAlternativeNames(site: site)),
            state: InstallState())
    }
}
