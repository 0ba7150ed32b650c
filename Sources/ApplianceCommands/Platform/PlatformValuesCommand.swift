import ApplianceModel
import AppliancePlatform
import AppliancePreflight
import ArgumentParser
import Foundation

/// Loads the site and its profile for the platform commands.
enum PlatformInputs {
    static func load(inventory: String, profile: String?) throws -> (SiteInventory, HardwareProfile) {
        let site = try SiteInventory.load(path: inventory)
        guard let name = profile ?? site.profile else {
            throw ValidationError("the site names no profile (spec.profile); pass --profile NAME")
        }
        let p = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(name)
        return (site, p)
    }
}

struct PlatformValuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "values",
        abstract: "Write the values files of every platform release, as install will pass them to Helm.",
        discussion: Format.help(
            """
            Writes one <release>.values.yaml per Helm release (in install order) and platform-objects.yaml (the
            dataset cache's StorageClass and claim, the scheduler's Queues, the namespaces mapped to leaf queues),
            rendered from the profile and the site's spec.platform, spec.network.domain, spec.tls, spec.storage.nfs
            and spec.registry. Files are deterministic: the same inputs give the same bytes. The capacity and
            quota check runs too; its findings are printed on stderr (`appliance platform check` fails on them).
            """))

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .long], help: "The site file.") var inventory: String
    @Option(help: "The hardware profile (default: the site's spec.profile).") var profile: String?
    @Option(name: [.customShort("o"), .long], help: "The folder to write the values files into (created if missing).")
    var output: String

    func run() async throws {
        let ctx = CommandContext.make(global, command: "platform values")
        let (site, prof) = try PlatformInputs.load(inventory: inventory, profile: profile)
        let config = try PlatformConfiguration.resolve(site: site, profile: prof)
        let releases = PlatformValues.releases(config)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: output, isDirectory: &isDir), !isDir.boolValue {
            throw ValidationError("'\(output)' exists and is not a folder")
        }
        do {
            try fm.createDirectory(atPath: output, withIntermediateDirectories: true)
            for r in releases {
                let path = (output as NSString).appendingPathComponent(r.valuesFileName)
                try Data(r.valuesYAML.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
                ctx.output.print(
                    "\(path): \(r.name) (chart \(r.chart.name) \(r.chart.version), namespace \(r.namespace))")
            }
            let objects = (output as NSString).appendingPathComponent("platform-objects.yaml")
            try Data(PlatformObjects.document(PlatformObjects.all(config)).utf8).write(
                to: URL(fileURLWithPath: objects), options: .atomic)
            ctx.output.print(
                "\(objects): \(config.queues.count) queues, dataset cache \(config.storage.datasetCacheGiB) GiB")
        } catch {
            throw ValidationError("cannot write into \(output): \(error.localizedDescription)")
        }
        for f in CapacityCheck.check(site: site, profile: prof, configuration: config, releases: releases) {
            ctx.logger.warning("\(f.description)")
        }
    }
}

struct PlatformCheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that the platform fits the site (capacity, quotas) and that the site certificate is fit.",
        discussion: Format.help(
            """
            The checks install runs before deploying the platform: CAP-NODES, CAP-CPU, CAP-MEMORY, CAP-POD, CAP-PACK,
            CAP-STORAGE, CAP-NFS, QUOTA-SUM, QUOTA-CHILD, QUOTA-LIMIT (one line each with both numbers and a
            remedy), and the certificate of spec.tls (key, domain and *.domain, valid for 30 days, chains to the CA).
            Exit 3 when one fails.
            """))

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .long], help: "The site file.") var inventory: String
    @Option(help: "The hardware profile (default: the site's spec.profile).") var profile: String?

    func run() async throws {
        let ctx = CommandContext.make(global, command: "platform check")
        let (site, prof) = try PlatformInputs.load(inventory: inventory, profile: profile)
        let result = try PlatformCheck.run(site: site, profile: prof)
        if let error = result.error { throw error }
        let config = try PlatformConfiguration.resolve(site: site, profile: prof)
        ctx.output.print(
            "\(inventory): the platform fits (\(config.queues.count) queues, \(CapacityCheck.clusterGPUs(site: site, profile: prof)) GPUs); the certificate covers \(config.domain) and *.\(config.domain)"
        )
    }
}
