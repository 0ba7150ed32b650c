import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import AppliancePreflight
import ApplianceSSH
import Foundation

/// `appliance upgrade`: a rolling upgrade of an installed cluster to a new bundle (`UpgradePlan`), and
/// `plan rollback` of the node in flight after a failed one.
///
/// Before any step: the new bundle is verified, and refused (exit 12) when its `upgradeFrom` does not name
/// the installed version or it would skip a Kubernetes minor version (`UpgradeCheck`); the installed version
/// comes from the install record on the first control plane. The nodes' store, trusted keys and waivers are
/// the install's.
public enum UpgradeOperation {
    public static let kind = "upgrade"
    public static let rollbackKind = "upgrade-rollback"
    public static let kinds = [kind, rollbackKind]

    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, connectAhead: Bool
    ) async throws -> PreparedOperation {
        var params = params
        let install = try? OperationParameters.load(session.stateDirectory, kind: InstallOperation.kind)
        if params.store == nil { params.store = install?.store }
        guard var options = params.upgrade else {
            throw OperationError.invalid("the operation recorded no upgrade options", hint: nil)
        }
        guard let bundlePath = params.bundle else {
            throw OperationError.invalid("no bundle", hint: "pass --bundle NEW.tar --trust KEY.pub")
        }
        guard let profileName = params.profile ?? install?.profile ?? session.site.profile else {
            throw OperationError.invalid("no profile: pass --profile or set spec.profile in the site file", hint: nil)
        }
        var profile = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(profileName)
        let verified = try await BundleVerification.verify(
            bundlePath, trustedKeys: params.trustedKeys, allowUnsigned: params.allowUnsigned, io: io)

        // What is installed: the record on the first control plane (a dry run reads it too when it can).
        guard let cp1 = session.site.controlPlanes.first else {
            throw OperationError.invalid(
                "the site has no control-plane node", hint: "give one host the control-plane role")
        }
        let cpRunner = NodeRunner(
            name: cp1.name, address: cp1.address, pool: session.pool, endpoint: session.endpoint(for: cp1))
        let record: InstallRecord?
        do {
            record = try await InstallRecord.read(cpRunner)
        } catch  where !connectAhead {
            record = nil
        }
        if let record {
            // The version the upgrade started from stays the one recorded first (a resume after the record step
            // reads the new version).
            if options.fromVersion == nil { options.fromVersion = record.bundleVersion }
            if let refusal = UpgradeCheck.refusal(
                bundlePath: bundlePath, installedVersion: record.bundleVersion,
                installedKubernetes: record.kubernetesVersion, target: verified.manifest)
            {
                throw refusal
            }
        } else if connectAhead {
            throw OperationError.invalid(
                "\(cp1.name) has no install record (\(InstallRecord.path)): nothing to upgrade",
                hint: "install the cluster first (`appliance install`)")
        } else {
            io.logger.warning(
                "dry run: \(cp1.name) could not be read, so the bundle is not checked against the installed version")
        }
        params.upgrade = options
        // Then the bundle against the profile, as install checks it (after the version rules, which say more):
        // the profile's Kubernetes version is the one installed, which the upgrade moves on from.
        profile.kubernetes.version = verified.manifest.kubernetesVersion
        let problems = InstallBundleCheck.problems(verified.manifest, profile: profile, site: session.site)
        if !problems.isEmpty { throw InstallBundleMismatch(bundle: bundlePath, problems: problems) }

        let hosts = try session.hosts(only: params.nodes)
        let waivers = try InstallOperation.waivers(
            OperationParameters(
                kind: params.kind, site: params.site, bundle: nil, trustedKeys: [], allowUnsigned: false,
                waivers: install?.waivers), site: session.site)
        let stagingPool = await SSHPool(
            policy: session.pool.policy, options: session.pool.options, maxTotal: session.pool.maxTotal,
            logger: session.logger)
        // Staging covers every node of the cluster (the store must hold the new bundle before the record says
        // it is installed), or the --node selection and the registry's nodes.
        let targets = try session.stagingNodes(only: stagingSelection(params.nodes, site: session.site))
        let stager = Stager(
            bundle: verified, nodes: targets, pool: stagingPool, store: params.storePath,
            bytesPerSecond: params.bytesPerSecond,
            connecting: connectAhead ? Stager.connectAhead(targets, pool: stagingPool) : nil, logger: session.logger)
        var context = InstallContext.make(
            session: session, profile: profile, bundle: verified, store: params.storePath, waivers: waivers)
        context.dcgmLevel = params.dcgmLevel ?? session.site.install.dcgmLevel ?? 1
        // The platform releases as deployed now, so the plan can say which the new bundle leaves alone.
        var deployed: [String: InstallPlan.ReleaseStatus]?
        if let config = try UpgradePlan.platformConfiguration(context) {
            do {
                deployed = try await UpgradePlan.deployedReleases(
                    ClusterAPI(runner: cpRunner), PlatformValues.releases(config))
            } catch  where !connectAhead {
                io.logger.warning(
                    "dry run: the platform releases on \(cp1.name) could not be read, so the plan cannot say which are unchanged"
                )
            }
        }
        if !connectAhead, record != nil {
            // The dry run shows what the upgrade's first step would: the drain simulation of every node it would
            // drain (server-side dry-run evictions change nothing), when the cluster can be read.
            let drained =
                hosts.filter { $0.roles.contains(.controlPlane) } + hosts.filter { !$0.roles.contains(.controlPlane) }
            do {
                let sims = try await UpgradePlan.simulations(
                    api: ClusterAPI(runner: cpRunner), nodes: drained.map(\.name), target: UpgradePlan.target(context))
                io.print("drain simulation (server-side dry run, through \(cp1.name)):")
                io.print(DrainSimulation.table(sims))
                let blocked = sims.flatMap(\.blocked)
                if options.drainPolicy == .fail && !blocked.isEmpty {
                    io.print(
                        "--drain-policy fail: the upgrade would stop at its simulation, before the first cordon: \(blocked.count) pod(s) would block or be harmed by the drains"
                    )
                }
                io.print("")
            } catch {
                io.logger.warning(
                    "dry run: the cluster could not be read through \(cp1.name), so no drain simulation is shown: \(error)"
                )
            }
        }
        var inputs = UpgradePlan.Inputs(
            context: context, options: options, hosts: hosts, stager: stager, stagingNodes: targets, io: io)
        inputs.deployedReleases = deployed
        let plan = try UpgradePlan.make(inputs)
        let version = verified.manifest.version
        let k8s = UpgradePlan.target(context)
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: version,
            whileLocked: { outcome in
                if !outcome.succeeded { await stager.removeLeftovers() }
                await stagingPool.closeAll()
            },
            finish: { outcome in
                let id = outcome.operation.id
                if outcome.operation.state == .interrupted { throw OperationInterrupted(operation: id) }
                if outcome.succeeded {
                    let changed = outcome.applied.filter {
                        $0 != StagingPlan.transferStep && $0 != UpgradePlan.simulationStep
                            && !$0.hasPrefix("gpu-gate/") && !$0.hasPrefix("gpu-validate/")
                    }
                    io.print(
                        changed.isEmpty
                            ? "nothing to upgrade: every node runs bundle \(version) (Kubernetes \(k8s)) (operation \(id))"
                            : "upgraded \(hosts.count) node(s) to bundle \(version), Kubernetes \(k8s); \(changed.count) steps applied (operation \(id))"
                    )
                    return
                }
                throw NodesFailed(failures: Operations.nodeFailures(outcome, plan: plan), anySucceeded: false)
            })
    }

    /// The nodes an upgrade of `nodes` (empty: every node) stages: the selection and the registry's nodes,
    /// whose stores hold the new images they seed before any selected node pulls them.
    static func stagingSelection(_ nodes: [String], site: SiteInventory) -> [String] {
        guard !nodes.isEmpty else { return [] }
        return nodes + site.registryHosts.map(\.name).filter { !nodes.contains($0) }
    }

    // MARK: rollback

    /// The node a failed upgrade left in flight: the node of its first failed step (not the cluster).
    public static func nodeInFlight(_ journal: Journal, operation: String) throws -> String? {
        let states = try journal.latestStates(operation: operation)
        return states.values.filter { $0.state == .failed || $0.state == .interrupted }
            .sorted { $0.time < $1.time }.compactMap(\.node).first
    }

    /// The parameters of the rollback of `operation` (a failed or interrupted upgrade): its node in flight.
    public static func rollbackParameters(session: OperationSession, operation: OperationRecord) throws
        -> OperationParameters
    {
        guard operation.state != .succeeded else {
            throw OperationError.invalid(
                "upgrade \(operation.id) succeeded: there is no node in flight to roll back",
                hint: "an upgrade that completed is undone by upgrading to a bundle made for it, not by rollback")
        }
        let upgrade = try OperationParameters.load(session.stateDirectory, kind: kind)
        guard let node = try nodeInFlight(try session.journal(), operation: operation.id), node != "cluster" else {
            throw OperationError.invalid(
                "upgrade \(operation.id) has no failed step on a node: nothing to roll back",
                hint: "`appliance plan show -i SITE` lists its steps; `appliance plan resume` continues it")
        }
        var params = upgrade
        params.kind = rollbackKind
        params.nodes = [node]
        params.upgrade?.rollbackOf = operation.id
        params.lifecycle = LifecycleOptions(node: node, reason: "rollback of upgrade \(operation.id)")
        return params
    }

    /// After a successful rollback of `node`: every step of the upgrade `upgrade` on that node that the journal
    /// says done (but its staging: the blobs are still in its store) is journaled `undone`, naming the
    /// rollback, so a `plan resume` of the upgrade checks and runs them again from the node's first step
    /// instead of trusting work the rollback took back. Returns the steps reopened.
    @discardableResult
    public static func reopen(_ journal: Journal, upgrade: String, node: String, rollback: String) throws -> [String] {
        let latest = try journal.latestStates(operation: upgrade)
        let reopened = latest.values.filter {
            $0.node == node && $0.state == .done && $0.step != StagingPlan.stepName(node: node)
        }
        .sorted { ($0.time, $0.step) < ($1.time, $1.step) }
        try journal.record(
            reopened.map {
                StepTransition(
                    operation: upgrade, step: $0.step, node: node, state: .undone, attempt: $0.attempt,
                    error: "\(node) rolled back to the previous bundle by operation \(rollback); run again on resume")
            })
        return reopened.map(\.step)
    }

    /// `plan rollback` after a failed upgrade: the node in flight's packages back to the previous bundle's
    /// versions (its manifest and blobs are still in the node's store), kubelet restarted, health gate at the
    /// previous kubelet version, uncordon.
    static func prepareRollback(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, connectAhead: Bool
    ) async throws -> PreparedOperation {
        guard let node = params.lifecycle?.node, let host = session.site.host(named: node) else {
            throw OperationError.invalid("the rollback recorded no node", hint: nil)
        }
        guard let from = params.upgrade?.fromVersion else {
            throw OperationError.invalid(
                "the failed upgrade recorded no previous version",
                hint: "run `appliance install` with the previous bundle")
        }
        let runner = NodeRunner(
            name: host.name, address: host.address, pool: session.pool, endpoint: session.endpoint(for: host))
        let store = params.storePath
        let api = ClusterAPI(runner: try NodeOperations.apiRunner(session: session, avoiding: host.name))
        let dir = "\(store)/bundles/\(from)"
        // The previous manifest, as staging recorded it on the node.
        @Sendable func previous() async throws -> BundleManifest {
            let out = try await runner.output(
                "cat \(shellQuote(dir + "/manifest.yaml"))", label: "read manifest \(from)")
            guard out.exit.succeeded else {
                throw ClusterError.node(
                    node: host.name,
                    reason: "the previous bundle \(from) is no longer in the node's store (\(dir)): it was pruned")
            }
            return try BundleManifest.parse(Data(out.stdoutText.utf8), label: dir)
        }
        @Sendable func repository() async throws -> (LocalRepository, String) {
            let m = try await previous()
            let packages = StagedPackage.all(in: m, for: host.roles)
            return (
                LocalRepository(runner: runner, store: store, packages: packages, available: packages),
                UpgradeCheck.withV(m.kubernetesVersion)
            )
        }
        let n = host.name
        var steps: [Step] = []
        steps.append(
            Step(
                "rollback-packages/\(n)", on: .node(n),
                summary: "packages back to bundle \(from)'s versions from the node's store, kubelet restarted",
                timeout: .seconds(1200),
                check: { _ in
                    let (repo, version) = try await repository()
                    guard try await repo.isInstalled() else { return false }
                    return try await api.node(n)?.kubeletVersion == version
                },
                apply: { ctx in
                    let (repo, _) = try await repository()
                    try await repo.install()
                    try await runner.run(
                        "systemctl daemon-reload && systemctl restart kubelet || exit 3", label: "restart kubelet")
                    ctx.appendOutput("\(n): \(repo.packages.count) packages at bundle \(from)'s versions")
                }))
        steps.append(
            Step(
                "rollback-health/\(n)", on: .node(n), after: ["rollback-packages/\(n)"],
                summary: "health gate: Ready at the previous kubelet version",
                timeout: .seconds(360),
                check: { _ in
                    let (_, version) = try await repository()
                    guard let k = try await api.node(n) else { return false }
                    return k.ready && k.kubeletVersion == version
                },
                apply: { ctx in
                    let (_, version) = try await repository()
                    let clock = ContinuousClock()
                    let deadline = clock.now + .seconds(300)
                    var k = try await api.node(n)
                    while !(k?.ready == true && k?.kubeletVersion == version) && clock.now < deadline {
                        try await Task.sleep(for: .seconds(3))
                        k = try await api.node(n)
                    }
                    guard let k, k.ready, k.kubeletVersion == version else {
                        throw ClusterError.node(
                            node: n,
                            reason:
                                "after the rollback: \(k.map { "Ready \($0.ready), kubelet \($0.kubeletVersion)" } ?? "not listed"), wanted Ready at \(version); it stays cordoned"
                        )
                    }
                    ctx.appendOutput("\(n): Ready at \(version)")
                }))
        var uncordon = LifecycleSteps.uncordonStep(api: api, node: n, after: ["rollback-health/\(n)"])
        let uncordonApply = uncordon.apply
        uncordon.summary += ", clear the upgrade's cordon reason"
        uncordon.apply = { ctx in
            try await uncordonApply(ctx)
            if try await api.node(n)?.annotations[InstallPlan.cordonReasonAnnotation] != nil {
                try await api.annotate(node: n, ["\(InstallPlan.cordonReasonAnnotation)-"])
            }
        }
        steps.append(uncordon)
        let plan = try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: 1)
        let upgradeID = params.upgrade?.rollbackOf
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: from,
            finish: { outcome in
                // The node is back at the previous bundle: the failed upgrade's steps on it no longer hold, so
                // `plan resume` of that upgrade runs the node's upgrade again from its start.
                if outcome.succeeded, let upgradeID {
                    let reopened = try reopen(
                        try session.journal(), upgrade: upgradeID, node: n, rollback: outcome.operation.id)
                    if !reopened.isEmpty {
                        io.logger.info(
                            "upgrade \(upgradeID): \(reopened.count) step(s) of \(n) reopened for `plan resume`")
                    }
                }
                try NodeOperations.finishSingleNode(outcome, plan: plan, io: io) {
                    "\(n) rolled back to bundle \(from): packages, kubelet, Ready, uncordoned (operation \(outcome.operation.id)); the rest of the cluster is as the failed upgrade left it"
                }
            })
    }
}
