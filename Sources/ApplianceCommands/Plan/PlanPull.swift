import ApplianceCluster
import ApplianceModel
import ApplianceOperations
import ArgumentParser
import Foundation

struct PlanPull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Copy the cluster's journal from its first control-plane node to this admin host.",
        discussion: Format.help(
            """
            Every operation's journal is mirrored to the first control-plane node. On another admin host, pull it,
            then `plan show` and `plan resume` work there as on the host that started the operation.
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions

    @Option(help: "Where the journal copies are on the node.")
    var directory = NodeJournalMirror.defaultDirectory

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan pull")
        let session = try ctx.session(site)
        guard let cp = session.site.hosts(withRole: .controlPlane).first else {
            throw ClusterError.noNodes(reason: "the site has no control-plane node to pull the journal from")
        }
        let copies = try await session.closing {
            try await NodeJournalMirror.fetch(
                pool: session.pool, endpoint: session.endpoint(for: cp), directory: directory)
        }
        let journal = try session.journal()
        for data in copies { try journal.importJSON(data) }
        ctx.output.print("pulled \(copies.count) operation journal(s) from \(cp.name)")
    }
}
