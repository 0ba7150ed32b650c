import ApplianceCluster
import ApplianceOperations
import ArgumentParser
import Foundation

struct StageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stage",
        abstract: "Verify a bundle and stage it onto every node's store over SSH.",
        discussion: Format.help(
            """
            Each node is asked what it holds and gets only what it lacks, through a chain: the admin host sends
            each byte once, and nodes pass the stream on to each other with a temporary key removed afterwards.
            The bundle's signature is checked first; every blob's digest is then checked on this host while the
            nodes are asked and the stream runs, and again on each node before the blob becomes visible there.
            The bundle is recorded on a node only once both checks passed. A broken transfer resumes where it
            stopped on the next run; a fully staged cluster is left untouched.
            Exit codes: 0 all nodes staged; 9 some failed (one line each); 5/6 when all failed to connect; 7 the
            bundle fails verification (nothing it sent is kept).
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var trust: TrustOptions

    @Option(help: "The bundle (.tar).")
    var bundle: String

    @Option(name: .customLong("node"), help: "Stage only this node (repeat for several).")
    var nodes: [String] = []

    @Option(help: "Cap the admin host's sending rate, e.g. 50MB (bytes/s) or 400mbit.")
    var limitRate: String?

    @Option(help: "The content-addressed store on each node.")
    var store = Stager.defaultStore

    @Option(help: "Progress output: text (a live display on a terminal) or ndjson (one JSON event per line).")
    var format: EventFormat = .text

    @Flag(help: "Print the plan and change nothing.")
    var dryRun = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "stage")
        let io = ctx.operationIO(format: format, quiet: global.quiet)
        let session = try ctx.session(site)
        let params = OperationParameters(
            kind: StagingPlan.kind, site: site.inventory, bundle: bundle, trustedKeys: trust.trustedKeys,
            allowUnsigned: trust.allowUnsigned, nodes: nodes, bytesPerSecond: try limitRate.map(parseRate),
            store: store, trustNewHosts: site.trustNewHosts)
        let op = try await Operations.prepare(params, session: session, io: io, dryRun: dryRun)
        if dryRun {
            ctx.output.print(op.plan.render())
            await session.pool.closeAll()
            return
        }
        try await Operations.start(op, session: session, io: io)
    }
}
