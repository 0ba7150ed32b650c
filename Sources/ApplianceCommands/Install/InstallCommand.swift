import ApplianceModel
import ApplianceOperations
import AppliancePreflight
import ArgumentParser
import Foundation

struct InstallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Install Kubernetes on the site's nodes from a verified bundle: every node Ready with its role.",
        discussion: Format.help(
            """
            One resumable operation: the bundle verified and checked against the profile, the site validated, a
            preflight gate (what install sets up itself does not block), staging, then per node OS preparation,
            packages through apt from a local repository made of the staged store, containerd, the private
            registry seeded on its nodes, kubeadm init, control planes joined one at a time, workers in parallel,
            the CNI, roles; on GPU nodes of host-driver profiles the NVIDIA driver, fabric manager, persistence
            mode and container toolkit before the join, and a validation gate once the node is Ready (a node that
            fails it is cordoned with the reason in appliance.dev/cordon-reason). Every step checks the node
            first: running it again changes nothing.
            Exit codes: 0 installed; 3 preflight failed (nothing changed); 7 bundle refused; 9 some workers
            failed, the rest is installed (`appliance plan resume` finishes them); 10 locked; 130 interrupted.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var trust: TrustOptions

    @Option(help: "The hardware profile (default: the site's spec.profile).")
    var profile: String?

    @Option(help: "The install bundle (.tar).")
    var bundle: String

    @Option(name: .customLong("waive"), help: "Waive a preflight finding: ID[@NODE]=reason (repeatable).")
    var waivers: [String] = []

    @Option(help: "Progress output: text (a live display on a terminal) or ndjson (one JSON event per line).")
    var format: EventFormat = .text

    @Option(help: "Level of `dcgmi diag -r` in the GPU validation gate, 1-4 (default: spec.install.dcgmLevel, else 1).")
    var dcgmLevel: Int?

    @Flag(help: "Print the whole plan (every step per node, in order) and change nothing.")
    var dryRun = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "install")
        let io = ctx.operationIO(format: format, quiet: global.quiet)
        let session = try ctx.session(site)
        let params = OperationParameters(
            kind: InstallOperation.kind, site: site.inventory, bundle: bundle, trustedKeys: trust.trustedKeys,
            allowUnsigned: trust.allowUnsigned, profile: profile, waivers: waivers, trustNewHosts: site.trustNewHosts,
            dcgmLevel: dcgmLevel)
        let op = try await Operations.prepare(params, session: session, io: io, dryRun: dryRun)
        if dryRun {
            ctx.output.print(format == .ndjson ? try op.plan.renderJSON() : op.plan.render())
            if format == .text { try printPlatformCheck(ctx, session.site) }
            await session.pool.closeAll()
            return
        }
        try await Operations.start(op, session: session, io: io)
    }
}

extension InstallCommand {
    /// Issue 13's hook: with `spec.platform`, the dry run also prints the platform's capacity, quota and
    /// certificate check, after the plan and clearly apart from it.
    func printPlatformCheck(_ ctx: CommandContext, _ site: SiteInventory) throws {
        guard site.platform != nil, let name = profile ?? site.profile else { return }
        let prof = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(name)
        guard let report = PlatformReport.lines(site: site, profile: prof) else { return }
        ctx.output.print("")
        for line in report.lines { ctx.output.print(line) }
    }
}
