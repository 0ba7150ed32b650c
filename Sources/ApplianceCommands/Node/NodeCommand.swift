import ApplianceCluster
import ApplianceOperations
import ArgumentParser
import Foundation

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Maintenance of one node: drain with a reason, rejoin, add, remove.",
        discussion: Format.help(
            """
            Each is one resumable operation of the plan engine (journaled, cluster locks held, `--dry-run` shows
            the plan, `--format ndjson` streams events, `appliance plan resume -i SITE` continues it).
            """),
        subcommands: [NodeDrainCommand.self, NodeRejoinCommand.self, NodeAddCommand.self, NodeRemoveCommand.self])
}

/// The options every `node` subcommand shares.
struct NodeRunOptions: ParsableArguments {
    @Option(help: "Progress output: text (a live display on a terminal) or ndjson (one JSON event per line).")
    var format: EventFormat = .text

    @Flag(help: "Print the whole plan and change nothing.")
    var dryRun = false
}

/// Builds, then runs (or shows) one node operation.
func runNodeOperation(
    _ params: OperationParameters, site: SiteOptions, global: GlobalOptions, run: NodeRunOptions, command: String
) async throws {
    let ctx = CommandContext.make(global, command: command)
    let io = ctx.operationIO(format: run.format, quiet: global.quiet)
    let session = try ctx.session(site)
    let op = try await Operations.prepare(params, session: session, io: io, dryRun: run.dryRun)
    if run.dryRun {
        ctx.output.print(run.format == .ndjson ? try op.plan.renderJSON() : op.plan.render())
        await session.pool.closeAll()
        return
    }
    try await Operations.start(op, session: session, io: io)
}

/// `30s`, `10m`, `1h`, `90` (seconds).
func parseDurationSeconds(_ text: String) throws -> Int {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Int)] = [("h", 3600), ("m", 60), ("s", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Int(t.dropLast(suffix.count)), v > 0 { return v * factor }
    }
    if let v = Int(t), v > 0 { return v }
    throw ValidationError("cannot read the duration '\(text)'; use for example 90s, 10m or 1h")
}

extension DrainPolicy: ExpressibleByArgument {}
extension DrainMethod: ExpressibleByArgument {}

struct NodeDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract: "Empty a node for maintenance, with the reason recorded on it (the drain simulation first).",
        discussion: Format.help(
            """
            First the drain simulation: every pod of the node, whether it would be evicted, left (DaemonSet,
            static pods) or blocked, and by what (a PodDisruptionBudget allowing no disruption, by the API
            server's own dry run of the eviction; a GPU job of kai-scheduler or holding GPUs; emptyDir data; a
            bare pod no controller recreates). Then the reason, who and when as annotations on the node
            (`appliance.dev/maintenance-*`, shown by status) and in the journal, then cordon and
            `kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout` on a control plane.
            --drain-policy: wait (default) honours budgets until the timeout, then stops with the node cordoned;
            fail stops before anything changes when the simulation finds any blocker; disable-eviction deletes
            what is still there at the timeout without the eviction API (budgets bypassed).
            --method taint applies the Run:ai guide's `runai=drain:NoExecute` instead: pods are deleted at once,
            PodDisruptionBudgets are NOT honoured.
            `appliance node rejoin NODE` brings the node back and clears the reason.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var runOptions: NodeRunOptions

    @Argument(help: "The node (its name in the site file).")
    var node: String

    @Option(help: "Why the node is drained (recorded on the node and in the journal).")
    var reason: String

    @Option(help: "How long the drain may wait for evictions (e.g. 10m).")
    var timeout: String = "10m"

    @Option(help: "At the timeout, or for blockers: wait, fail or disable-eviction.")
    var drainPolicy: DrainPolicy = .wait

    @Option(
        help: "drain (cordon + evictions, budgets honoured) or taint (runai=drain:NoExecute, budgets NOT honoured).")
    var method: DrainMethod = .drain

    func validate() throws {
        if reason.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--reason must say why the node is drained")
        }
        _ = try parseDurationSeconds(timeout)
        if method == .taint && drainPolicy == .disableEviction {
            throw ValidationError(
                "--drain-policy disable-eviction applies to --method drain only (the taint bypasses the eviction API already)"
            )
        }
    }

    func run() async throws {
        if method == .taint && !runOptions.dryRun {
            FileHandle.standardError.write(
                Data(
                    "warning: --method taint applies runai=drain:NoExecute: pods that do not tolerate it are deleted at once; PodDisruptionBudgets are NOT honoured\n"
                        .utf8))
        }
        let options = LifecycleOptions(
            node: node, reason: reason, timeoutSeconds: try parseDurationSeconds(timeout), policy: drainPolicy,
            method: method)
        let params = OperationParameters(
            kind: NodeOperations.drainKind, site: site.inventory, bundle: nil, trustedKeys: [], allowUnsigned: false,
            nodes: [node], trustNewHosts: site.trustNewHosts, lifecycle: options)
        try await runNodeOperation(params, site: site, global: global, run: runOptions, command: "node drain")
    }
}

/// `--bundle`/`--trust` for rejoin and add: the installed bundle (default: the one this admin host installed).
struct NodeBundleOptions: ParsableArguments {
    @Option(help: "The installed bundle (default: the bundle of this admin host's install).")
    var bundle: String?

    @OptionGroup var trust: TrustOptions

    @Option(help: "The hardware profile (default: the install's).")
    var profile: String?
}

struct NodeRejoinCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rejoin",
        abstract: "Bring a node back into service, whatever state it comes back in.",
        discussion: Format.help(
            """
            Install's own steps for this one node, each checking the node first: staging (only what its
            store lacks), OS preparation, packages, containerd, the registry mirror, then `kubeadm join` with a
            fresh token (a control plane with a fresh certificate key) when it is no longer a member (reset or
            reinstalled), its role labels and taints, the health gate (Ready; on GPU nodes the GPU count it had
            before the drain), uncordon, the Run:ai drain taint removed, the maintenance reason cleared.
            A node that rebooted with its kubelet running only gets the gate and the uncordon.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var runOptions: NodeRunOptions
    @OptionGroup var bundle: NodeBundleOptions

    @Argument(help: "The node (its name in the site file).")
    var node: String

    func run() async throws {
        let params = OperationParameters(
            kind: NodeOperations.rejoinKind, site: site.inventory, bundle: bundle.bundle,
            trustedKeys: bundle.trust.trustedKeys, allowUnsigned: bundle.trust.allowUnsigned, nodes: [node],
            profile: bundle.profile, trustNewHosts: site.trustNewHosts, lifecycle: LifecycleOptions(node: node))
        try await runNodeOperation(params, site: site, global: global, run: runOptions, command: "node rejoin")
    }
}

struct NodeAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Add a host newly listed in the site file: preflight, staging, preparation, join, roles, gate.",
        discussion: Format.help(
            """
            As install does it for one node: preflight of that host in install mode, staging, OS preparation,
            packages, containerd, the registry mirror, join (a control plane with a fresh certificate key),
            roles, health gate; then the install record lists it.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var runOptions: NodeRunOptions
    @OptionGroup var bundle: NodeBundleOptions

    @Argument(help: "The new host (its name in the site file).")
    var node: String

    @Option(name: .customLong("waive"), help: "Waive a preflight finding: ID[@NODE]=reason (repeatable).")
    var waivers: [String] = []

    func run() async throws {
        let params = OperationParameters(
            kind: NodeOperations.addKind, site: site.inventory, bundle: bundle.bundle,
            trustedKeys: bundle.trust.trustedKeys, allowUnsigned: bundle.trust.allowUnsigned, nodes: [node],
            profile: bundle.profile, waivers: waivers, trustNewHosts: site.trustNewHosts,
            lifecycle: LifecycleOptions(node: node))
        try await runNodeOperation(params, site: site, global: global, run: runOptions, command: "node add")
    }
}

struct NodeRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Take a node out of the cluster: drain, kubeadm reset on it, its Node deleted.",
        discussion: Format.help(
            """
            A control plane's etcd member leaves with its `kubeadm reset` (run while the API answers); when
            reset could not remove it, or the node is dead, it is removed with etcdctl through another control
            plane. The removal is refused when it would leave etcd without quorum, with the arithmetic shown.
            The site file is not edited: remove the host from it yourself. --force is for a node that is already
            dead: no drain, its reset skipped when it does not answer, its etcd member (a control plane's)
            removed, its Node deleted.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var runOptions: NodeRunOptions

    @Argument(help: "The node (its name in the site file).")
    var node: String

    @Flag(help: "The node is dead: do not drain it, go on when it does not answer.")
    var force = false

    @Option(help: "How long the drain may wait for evictions (e.g. 10m).")
    var timeout: String = "10m"

    @Option(help: "At the drain's timeout, or for blockers: wait, fail or disable-eviction.")
    var drainPolicy: DrainPolicy = .wait

    func validate() throws { _ = try parseDurationSeconds(timeout) }

    func run() async throws {
        let options = LifecycleOptions(
            node: node, reason: "remove", timeoutSeconds: try parseDurationSeconds(timeout), policy: drainPolicy,
            force: force)
        let params = OperationParameters(
            kind: NodeOperations.removeKind, site: site.inventory, bundle: nil, trustedKeys: [], allowUnsigned: false,
            nodes: [node], trustNewHosts: site.trustNewHosts, lifecycle: options)
        try await runNodeOperation(params, site: site, global: global, run: runOptions, command: "node remove")
    }
}
