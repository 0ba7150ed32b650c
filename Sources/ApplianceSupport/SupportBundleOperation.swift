import ApplianceModel
import ApplianceOperations
import AppliancePreflight
import Foundation

/// `appliance support-bundle`: builds the collector from an operation session (site, SSH pool, state directory)
/// and runs it. Read-only on every node; takes no cluster lock (a support bundle is made while something is
/// broken, perhaps while an operation holds the lock).
public enum SupportBundleOperation {
    public struct Options: Sendable {
        public var output: String
        public var since: TimeInterval
        public var nodes: [String]
        public var gpuDiag: Bool
        public var applianceVersion: String
        public init(output: String, since: TimeInterval, nodes: [String], gpuDiag: Bool, applianceVersion: String) {
            self.output = output
            self.since = since
            self.nodes = nodes
            self.gpuDiag = gpuDiag
            self.applianceVersion = applianceVersion
        }
    }

    /// The default output name: `support-CLUSTER-YYYYMMDDTHHMMSSZ.tar.gz` in the current directory.
    public static func defaultOutput(cluster: String, at date: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "support-\(SupportLayout.component(cluster))-\(f.string(from: date)).tar.gz"
    }

    public static func run(session: OperationSession, options: Options) async throws -> SupportManifest {
        let site = session.site
        let hosts = try session.hosts(only: options.nodes)
        func node(_ h: SiteInventory.Host) -> SupportNode {
            SupportNode(name: h.name, address: h.address, roles: h.roles, endpoint: session.endpoint(for: h))
        }
        let install = try? OperationParameters.load(session.stateDirectory, kind: InstallOperation.kind)
        let profileName = site.profile ?? install?.profile
        let profileFile = profileName.map { ResourceLocator.profilesDirectory() + "/\($0).yaml" }
            .flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        let bundleFile = install?.bundle.flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        let factsScript = try? PreflightRunner.collector(in: ResourceLocator.preflightDirectory())
        let admin = AdminSources(
            applianceVersion: options.applianceVersion, logsDirectory: StateDirectory.path() + "/logs",
            stateDirectory: session.stateDirectory, siteFile: site.sourcePath, profileFile: profileFile,
            bundleFile: bundleFile)
        let collector = SupportCollector(
            site: site, nodes: hosts.map(node), controlPlanes: site.hosts(withRole: .controlPlane).map(node),
            pool: session.pool, admin: admin, factsScript: factsScript,
            since: Date().addingTimeInterval(-options.since), gpuDiag: options.gpuDiag,
            parallelism: site.ssh.parallelism, logger: session.logger)
        return try await session.closing { try await collector.run(output: options.output) }
    }
}
