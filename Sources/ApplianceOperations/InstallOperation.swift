import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePreflight
import ApplianceSSH
import Foundation

/// `appliance install`: from bare nodes to a running Kubernetes cluster, every node Ready with its role.
///
/// Before any step: the bundle is verified and must be an install bundle for the profile (its Kubernetes
/// version, the packages each node's roles need), and the site is validated against the profile (control
/// plane count, CIDRs, API endpoint, duplicates) with positioned errors. Then one plan (`InstallPlan`) runs
/// under the cluster locks; every step checks the node first, so running install again on an installed
/// cluster changes nothing and says so, and `plan resume` converges after a crash.
public enum InstallOperation {
    public static let kind = "install"

    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, connectAhead: Bool = true
    ) async throws -> PreparedOperation {
        let site = session.site
        guard let profileName = params.profile ?? site.profile else {
            throw OperationError.invalid(
                "no profile: pass --profile or set spec.profile in the site file", hint: "`appliance profile list`")
        }
        let profile = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(profileName)
        let diagnostics = InstallValidation.validate(site: site, profile: profile)
        if !diagnostics.isEmpty { throw DiagnosticsError(subject: "site", diagnostics: diagnostics) }
        let waivers = try waivers(params, site: site)
        guard let bundlePath = params.bundle else {
            throw OperationError.invalid("the operation recorded no bundle", hint: nil)
        }
        let verified = try await BundleVerification.verify(
            bundlePath, trustedKeys: params.trustedKeys, allowUnsigned: params.allowUnsigned, io: io)
        let problems = InstallBundleCheck.problems(verified.manifest, profile: profile, site: site)
        if !problems.isEmpty {
            throw InstallBundleMismatch(bundle: bundlePath, problems: problems)
        }
        let targets = try session.stagingNodes(only: [])
        // Staging gets connections of its own: the chain's long-lived streams never share an SSH session with
        // the preflight gate's commands that ran before it on the same nodes.
        let stagingPool = await SSHPool(
            policy: session.pool.policy, options: session.pool.options, maxTotal: session.pool.maxTotal,
            logger: session.logger)
        let stager = Stager(
            bundle: verified, nodes: targets, pool: stagingPool, store: params.storePath,
            bytesPerSecond: params.bytesPerSecond,
            connecting: connectAhead ? Stager.connectAhead(targets, pool: stagingPool) : nil, logger: session.logger)
        let runners = Dictionary(
            uniqueKeysWithValues: site.hosts.map {
                (
                    $0.name,
                    NodeRunner(
                        name: $0.name, address: $0.address, pool: session.pool, endpoint: session.endpoint(for: $0))
                )
            })
        let state = InstallState()
        let context = InstallContext(
            session: session, profile: profile, bundle: verified, facts: BundleFacts(manifest: verified.manifest),
            store: params.storePath, waivers: waivers, runners: runners,
            pki: InstallPKIProvider(
                stateDirectory: session.stateDirectory, cluster: site.name,
                names: RegistryPKI.subjectAlternativeNames(site: site)),
            state: state, dcgmLevel: params.dcgmLevel ?? site.install.dcgmLevel ?? 1)
        guard GPUValidation.dcgmLevels.contains(context.dcgmLevel) else {
            throw OperationError.invalid(
                "DCGM diagnostic level \(context.dcgmLevel) does not exist", hint: "use --dcgm-level 1, 2, 3 or 4")
        }
        if profile.gpuStack.mode == .operatorPrecompiled, site.platform == nil,
            site.hosts.contains(where: { $0.roles.contains(.gpuWorker) })
        {
            session.logger.warning(
                "GPU stack: profile \(profile.name) uses gpuStack.mode operator-precompiled, where the platform's GPU Operator release installs the driver; this site has no spec.platform, so its GPU nodes get no driver and no GPU validation"
            )
        }
        let plan = try InstallPlan.make(context, stager: stager, stagingNodes: targets)
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: verified.manifest.version,
            whileLocked: { outcome in
                if !outcome.succeeded { await stager.removeLeftovers() }
                await stagingPool.closeAll()
                if let cp1 = context.firstControlPlane,
                    let nodes = try? await ClusterAPI(runner: context.runner(cp1)).nodes()
                {
                    await state.setNodes(nodes)
                }
            },
            finish: { outcome in try await report(outcome, plan: plan, context: context, io: io) })
    }

    /// Waivers from the command line (`ID[@NODE]=reason`) and from the site file, each with its reason.
    static func waivers(_ params: OperationParameters, site: SiteInventory) throws -> [Waiver] {
        var out: [Waiver] = []
        for text in params.waivers ?? [] {
            guard let w = Waiver.parse(text) else {
                throw OperationError.invalid("--waive '\(text)' must be ID[@NODE]=reason", hint: nil)
            }
            out.append(w)
        }
        out += site.preflight.waivers.map { Waiver(checkID: $0.check, node: $0.node, reason: $0.reason) }
        let catalog = try CheckCatalog.load(directory: ResourceLocator.preflightDirectory() + "/checks")
        for w in out where catalog.check(w.checkID) == nil {
            throw OperationError.invalid(
                "a waiver names the unknown check '\(w.checkID)'", hint: "`appliance preflight` lists the check ids")
        }
        return out
    }

    static func report(
        _ outcome: OperationOutcome, plan: Plan, context c: InstallContext, io: OperationIO
    ) async throws {
        let id = outcome.operation.id
        if outcome.operation.state == .interrupted { throw OperationInterrupted(operation: id) }
        let findings = await c.state.preflightFindings
        if !findings.isEmpty { throw PreflightGateFailed(findings: findings, operation: id) }
        let nodes = await c.state.nodes
        if outcome.succeeded {
            // The gate, the chain transfer and the smoke tests always run: a transfer with nothing to send
            // changes nothing (the nodes' own stage steps say whether anything arrived), and a smoke test
            // checks the running platform again and removes what it made.
            let changed = outcome.applied.filter {
                $0 != InstallPlan.preflightStep && $0 != StagingPlan.transferStep && !InstallPlan.isSmokeStep($0)
            }
            let smoked = outcome.applied.filter(InstallPlan.isSmokeStep).count
            if changed.isEmpty {
                let smoke = smoked > 0 ? ", \(smoked) smoke tests passed" : ""
                io.print(
                    "install: nothing to change: \(c.site.name) already runs bundle \(c.manifest.version) (Kubernetes \(c.facts.kubernetesVersion)) on \(c.site.hosts.count) nodes, every step checked on the nodes\(smoke) (operation \(id))"
                )
            } else {
                io.print(
                    "installed \(c.manifest.name) \(c.manifest.version) (Kubernetes \(c.facts.kubernetesVersion)) on \(c.site.hosts.count) nodes: \(changed.count) steps applied (operation \(id))"
                )
            }
            io.print(nodeTable(nodes, site: c.site))
            io.print("admin kubeconfig: \(InstallPlan.adminKubeconfigPath(c.session))")
            return
        }
        let failures = Operations.nodeFailures(outcome, plan: plan)
        // `failures` names the node that caused each failure (a cluster step that only waited on a failed worker
        // is listed under that worker), so a failed worker alone leaves the rest installed (exit 9).
        let controlPlaneFailed = failures.contains { f in
            f.node == "cluster" || c.site.host(named: f.node)?.roles.contains(.controlPlane) == true
        }
        throw NodesFailed(failures: failures, anySucceeded: !controlPlaneFailed && !outcome.applied.isEmpty)
    }

    static func nodeTable(_ nodes: [KubeNode], site: SiteInventory) -> String {
        var rows = [["NODE", "ROLES", "READY", "KUBELET"]]
        for host in site.hosts {
            let n = nodes.first { $0.name == host.name }
            rows.append([
                host.name, host.roles.map(\.rawValue).joined(separator: ","),
                n.map { $0.ready ? "Ready" : "NotReady" } ?? "-", n?.kubeletVersion ?? "-",
            ])
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { r in
            r.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n")
    }
}

/// The bundle does not fit the profile or the site's roles.
public struct InstallBundleMismatch: ApplianceFailure {
    public var bundle: String
    public var problems: [String]
    public var message: String {
        "\(bundle) is not an install bundle for this site and profile:\n"
            + problems.map { "  \($0)" }.joined(separator: "\n")
    }
    public var hint: String? { "use the bundle built for this profile, or pick the profile the bundle was built for" }
    public var exitStatus: ExitStatus { .verification }
}

/// Preflight found failures install cannot fix: nothing was changed.
public struct PreflightGateFailed: ApplianceFailure {
    public var findings: [String]
    public var operation: String
    public var message: String {
        "preflight failed; install changed nothing:\n" + findings.map { "  \($0)" }.joined(separator: "\n")
    }
    public var hint: String? {
        "fix them, or waive one with --waive 'ID[@NODE]=reason' (or spec.preflight.waivers), then `appliance plan resume -i SITE`"
    }
    public var exitStatus: ExitStatus { .preflightFailed }
}
