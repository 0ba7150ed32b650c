import ApplianceModel
import AppliancePreflight
import ArgumentParser

struct SiteValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate a site file; every problem is reported at once with file:line:column.",
        discussion: Format.help(
            """
            With a profile (--profile or spec.profile) the site is also checked the way install checks it before
            touching a node: control-plane count (etcd quorum), CIDR overlaps, the API endpoint, duplicates.
            """))

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .long], help: "The site file.") var inventory: String
    @Option(help: "The hardware profile to check the site against (default: the site's spec.profile).")
    var profile: String?

    func run() async throws {
        let ctx = CommandContext.make(global, command: "site validate")
        let site = try SiteInventory.load(path: inventory)
        let name = profile ?? site.profile
        if let name {
            let p = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(name)
            let problems = InstallValidation.validate(site: site, profile: p)
            if !problems.isEmpty { throw DiagnosticsError(subject: "site", diagnostics: problems) }
        }
        ctx.output.print(
            "\(inventory): valid site '\(site.name)', \(site.hosts.count) hosts\(name.map { ", installable with profile \($0)" } ?? "")"
        )
    }
}
