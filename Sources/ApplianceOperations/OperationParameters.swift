import ApplianceCluster
import Foundation

/// The parameters an operation was started with, kept beside the journal so `plan resume` can rebuild it.
/// Fields added after the first version are optional so older files still load.
public struct OperationParameters: Codable, Sendable {
    public var kind: String
    public var site: String
    public var bundle: String?
    public var trustedKeys: [String]
    public var allowUnsigned: Bool
    public var nodes: [String]
    public var bytesPerSecond: Int64?
    /// The nodes' store (nil: the default).
    public var store: String?
    /// The hardware profile (nil: the site's).
    public var profile: String?
    /// Preflight waivers given on the command line, `ID[@NODE]=reason`.
    public var waivers: [String]?
    /// Accept and record unknown host keys.
    public var trustNewHosts: Bool?
    /// The node lifecycle's options (`node drain|rejoin|add|remove`).
    public var lifecycle: LifecycleOptions?
    /// `dcgmi diag -r` level of install's GPU validation gate (nil: the site's, else 1).
    public var dcgmLevel: Int?
    /// The rolling upgrade's options (`appliance upgrade`).
    public var upgrade: UpgradeOptions?

    public init(
        kind: String, site: String, bundle: String?, trustedKeys: [String], allowUnsigned: Bool, nodes: [String] = [],
        bytesPerSecond: Int64? = nil, store: String? = nil, profile: String? = nil, waivers: [String]? = nil,
        trustNewHosts: Bool? = nil, lifecycle: LifecycleOptions? = nil, dcgmLevel: Int? = nil,
        upgrade: UpgradeOptions? = nil
    ) {
        self.upgrade = upgrade
        self.dcgmLevel = dcgmLevel
        self.kind = kind
        self.site = site
        self.bundle = bundle
        self.trustedKeys = trustedKeys
        self.allowUnsigned = allowUnsigned
        self.nodes = nodes
        self.bytesPerSecond = bytesPerSecond
        self.store = store
        self.profile = profile
        self.waivers = waivers
        self.trustNewHosts = trustNewHosts
        self.lifecycle = lifecycle
    }

    /// The nodes' content-addressed store.
    public var storePath: String { store ?? Stager.defaultStore }

    /// Where the journal is mirrored on the control-plane node: beside the store.
    public var journalCopies: String {
        (storePath as NSString).deletingLastPathComponent + "/journal"
    }

    /// Where the cluster-side lock lives on the control-plane node: beside the store.
    public var lockDirectory: String {
        (storePath as NSString).deletingLastPathComponent + "/lock"
    }

    static func path(_ dir: URL, operation: String) -> URL {
        dir.appendingPathComponent("operations/\(operation).json")
    }

    /// Saved as the latest parameters of this kind of operation, which `plan resume` reads.
    public func save(_ dir: URL) throws {
        let url = Self.path(dir, operation: "latest-\(kind)")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(self).write(to: url, options: .atomic)
    }

    public static func load(_ dir: URL, kind: String) throws -> OperationParameters {
        try JSONDecoder().decode(
            OperationParameters.self, from: Data(contentsOf: path(dir, operation: "latest-\(kind)")))
    }
}
