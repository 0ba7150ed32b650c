import ApplianceModel
import AppliancePreflight
import ArgumentParser

struct SiteValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate a site file; every problem is reported at once with file:line:column.")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .long], help: "The site file.") var inventory: String

    func run() async throws {
        let ctx = CommandContext.make(global, command: "site validate")
        let site = try SiteInventory.load(path: inventory)
        if let p = site.profile {
            _ = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(p)
        }
        ctx.output.print(
            "\(inventory): valid site '\(site.name)', \(site.hosts.count) hosts\(site.profile.map { ", profile \($0)" } ?? "")"
        )
    }
}
