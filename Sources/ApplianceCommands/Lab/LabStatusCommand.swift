import ApplianceLab
import ArgumentParser
import Foundation

struct LabStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the lab's nodes, addresses, state and active faults.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var labOptions: LabOptions

    @Option(help: "Output format.")
    var format: OutputFormat = .text

    func run() throws {
        let (lab, ctx) = try labOptions.lab(global, command: "lab status")
        let state = try lab.loadState()
        if format == .json {
            try Self.printJSON(lab: lab, state: state, ctx: ctx)
        } else {
            Self.printTable(lab: lab, state: state, ctx: ctx)
        }
    }

    static func printTable(lab: Lab, state: LabState, ctx: CommandContext) {
        let admin = state.adminNamespace.map { "namespace \($0)" } ?? "this host"
        ctx.output.print(
            "lab \(state.id): profile \(state.profile), \(state.nodes.count) nodes, \(state.phase.rawValue), admin \(state.adminAddress) (\(admin))"
                + (state.linkRate.map { ", links \($0)" } ?? "")
                + (state.adminLinkRate.map { ", admin uplink \($0)" } ?? ""))
        var rows = [["NODE", "ADDRESS", "ROLES", "STATE", "KUBECTL", "FAULTS"]]
        for n in state.nodes {
            rows.append([
                n.name, n.address, n.roles.map(\.rawValue).joined(separator: ","), lab.condition(n).rawValue,
                lab.kubectlKind(state, n) ?? "-",
                n.faults.isEmpty ? "-" : n.faults.map(\.description).joined(separator: ", "),
            ])
        }
        let widths = (0..<6).map { c in rows.map { $0[c].count }.max() ?? 0 }
        for r in rows {
            ctx.output.print(
                r.enumerated().map { i, v in i == 5 ? v : v.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                    .joined(separator: "  "))
        }
        ctx.output.print("site file: \(lab.config.sitePath)")
        ctx.output.print("ssh: appliance lab ssh NODE [COMMAND]")
    }

    struct JSONStatus: Encodable {
        var lab: LabState
        var siteFile: String
        var identityFile: String
        var knownHosts: String
        var conditions: [String: Lab.NodeCondition]
        /// Per node: "real v1.33.5" or "stand-in v1.34.3" (absent: no kubectl package, or not running).
        var kubectl: [String: String]
    }

    static func printJSON(lab: Lab, state: LabState, ctx: CommandContext) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        let status = JSONStatus(
            lab: state, siteFile: lab.config.sitePath, identityFile: lab.config.keyPath,
            knownHosts: lab.config.knownHostsPath,
            conditions: Dictionary(uniqueKeysWithValues: state.nodes.map { ($0.name, lab.condition($0)) }),
            kubectl: Dictionary(
                uniqueKeysWithValues: state.nodes.compactMap { n in lab.kubectlKind(state, n).map { (n.name, $0) } }))
        ctx.output.print(String(decoding: try e.encode(status), as: UTF8.self))
    }
}
