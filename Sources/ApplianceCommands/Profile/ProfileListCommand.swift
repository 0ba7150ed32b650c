import ApplianceModel
import AppliancePreflight
import ArgumentParser
import Foundation

struct ProfileListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the profiles this appliance ships.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "text or json") var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "profile list")
        let profiles = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).loadAll()
        switch format {
        case .json:
            let rows = profiles.map { ["name": $0.name, "description": $0.summary] }
            let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
            ctx.output.print(String(decoding: data, as: UTF8.self))
        case .text:
            let w = (profiles.map(\.name.count).max() ?? 4) + 2
            for p in profiles { ctx.output.print(p.name.padding(toLength: w, withPad: " ", startingAt: 0) + p.summary) }
        }
    }
}
