import ApplianceCluster
import ApplianceOperations
import ArgumentParser
import Foundation

struct UpgradeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract:
            "Rolling upgrade of an installed cluster to a new bundle: control planes one at a time, workers in batches.",
        discussion: """
            One resumable operation. Refused before anything changes (exit 12) when the bundle's upgradeFrom does not
            name the installed version (the install record on the first control plane) or it would skip a Kubernetes
            minor version. Then: the drain simulation of every worker to be drained, as one table (--drain-policy
            fail stops on any blocker here, before anything changed); staging of what the nodes' stores lack; the new
            images seeded in the private registry; control planes one at a time, each only when every etcd member is
            healthy (the new kubeadm, `kubeadm upgrade apply vX` on the first and `kubeadm upgrade node` on the
            others, packages, kubelet restart, health gate); workers in batches of --max-unavailable (the reason
            recorded on the node, cordon and drain, packages and `kubeadm upgrade node`, the host GPU stack when the
            bundle changes it, kubelet restart, health gate with install's GPU validation, uncordon). A node that
            fails its gate stays cordoned with the reason (appliance.dev/cordon-reason) and the upgrade stops:
            `appliance plan resume` continues after a fix, `appliance plan rollback` puts the node in flight back on
            the previous bundle's packages. At the end the new version is recorded where install records it and
            the previous bundle's blobs no node needs are removed from the stores.
            Exit codes: 0 upgraded (or nothing to do); 7 bundle not verified or not for the profile; 8/9 a node
            failed; 10 locked; 12 upgrade refused (upgradeFrom or Kubernetes skew); 130 interrupted.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var trust: TrustOptions

    @Option(help: "The upgrade bundle (.tar).")
    var bundle: String

    @Option(help: "The hardware profile (default: the install's, else the site's).")
    var profile: String?

    @Option(help: "Workers upgraded (cordoned) at once: N or P% of the workers (default 1).")
    var maxUnavailable = "1"

    @Option(help: "How long each drain may wait for evictions (e.g. 10m).")
    var drainTimeout = "10m"

    @Option(
        help: "At the drain timeout, or for blockers: wait, fail (stop before anything changed) or disable-eviction.")
    var drainPolicy: DrainPolicy = .wait

    @Option(name: .customLong("node"), help: "Upgrade only this node (repeatable).")
    var nodes: [String] = []

    @Option(help: "Progress output: text (a live display on a terminal) or ndjson (one JSON event per line).")
    var format: EventFormat = .text

    @Flag(help: "Print the whole plan (every step per node, in order) and change nothing.")
    var dryRun = false

    func run() async throws {
        let timeout = try parseDurationSeconds(drainTimeout)
        do {
            _ = try UpgradeOptions.batchSize(maxUnavailable, workers: 1)
        } catch let e as OperationError {
            throw ValidationError(e.message)
        }
        let ctx = CommandContext.make(global, command: "upgrade")
        let io = ctx.operationIO(format: format, quiet: global.quiet)
        let session = try ctx.session(site)
        let params = OperationParameters(
            kind: UpgradeOperation.kind, site: site.inventory, bundle: bundle, trustedKeys: trust.trustedKeys,
            allowUnsigned: trust.allowUnsigned, nodes: nodes, profile: profile, trustNewHosts: site.trustNewHosts,
            upgrade: UpgradeOptions(
                maxUnavailable: maxUnavailable, drainTimeoutSeconds: timeout, drainPolicy: drainPolicy))
        let op = try await Operations.prepare(params, session: session, io: io, dryRun: dryRun)
        if dryRun {
            ctx.output.print(format == .ndjson ? try op.plan.renderJSON() : op.plan.render())
            await session.pool.closeAll()
            return
        }
        try await Operations.start(op, session: session, io: io)
    }
}
