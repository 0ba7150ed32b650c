import ApplianceModel
import AppliancePlan
import ArgumentParser
import Foundation

struct PlanShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "The current or last operation as a tree of steps with their states.")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .customLong("inventory")], help: "The site file.")
    var inventory: String
    @Option(help: "An operation id (default: the latest).")
    var operation: String?
    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan show")
        let site = try SiteInventory.load(path: inventory)
        let journal = try Journal(stateDirectory: clusterStateDirectory(site))
        guard
            let op = try operation.flatMap({ try journal.operation($0) })
                ?? journal.operations(cluster: site.name, limit: 1).first
        else {
            ctx.output.print("no operations recorded for cluster \(site.name)")
            return
        }
        let states = try journal.latestStates(operation: op.id)
        switch format {
        case .json:
            ctx.output.print(String(decoding: try journal.exportJSON(operation: op.id), as: UTF8.self))
        case .text:
            ctx.output.print("\(op.kind) \(op.id) on \(op.cluster): \(op.state.rawValue), started \(op.startedAt)")
            let byNode = Dictionary(grouping: states.values, by: { $0.node ?? "cluster" })
            for node in byNode.keys.sorted() {
                ctx.output.print("  \(node)")
                for t in (byNode[node] ?? []).sorted(by: { $0.time < $1.time }) {
                    var line = "    \(t.state.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) \(t.step)"
                    if t.attempt > 1 { line += " (attempt \(t.attempt))" }
                    if let e = t.error { line += ": \(e)" }
                    ctx.output.print(line)
                }
            }
        }
    }
}

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Operations run on this cluster from this admin host, newest first.")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .customLong("inventory")], help: "The site file.")
    var inventory: String
    @Option(help: "How many to show.")
    var limit = 20

    func run() async throws {
        let ctx = CommandContext.make(global, command: "history")
        let site = try SiteInventory.load(path: inventory)
        let journal = try Journal(stateDirectory: clusterStateDirectory(site))
        let ops = try journal.operations(cluster: site.name, limit: limit)
        if ops.isEmpty {
            ctx.output.print("no operations recorded for cluster \(site.name)")
            return
        }
        let fmt = ISO8601DateFormatter()
        ctx.output.print(
            Format.table(
                ["OPERATION", "KIND", "STATE", "STARTED", "FINISHED", "BUNDLE"],
                ops.map {
                    [
                        $0.id, $0.kind, $0.state.rawValue, fmt.string(from: $0.startedAt),
                        $0.finishedAt.map { fmt.string(from: $0) } ?? "-", $0.bundleDigest ?? "-",
                    ]
                }))
    }
}

func clusterStateDirectory(_ site: SiteInventory) -> URL {
    URL(fileURLWithPath: StateDirectory.path()).appendingPathComponent("clusters/\(site.name)")
}
