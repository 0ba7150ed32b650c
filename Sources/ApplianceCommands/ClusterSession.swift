import ApplianceCluster
import ApplianceModel
import AppliancePlan
import ApplianceSSH
import Foundation

/// What commands that change a cluster share: the site, its SSH pool, the cluster's state directory
/// (journal, lock, operation parameters).
struct ClusterSession: Sendable {
    let site: SiteInventory
    let pool: SSHPool
    let stateDirectory: URL

    static func open(_ options: SiteOptions, ctx: CommandContext) throws -> ClusterSession {
        try open(sitePath: options.inventory, trustNewHosts: options.trustNewHosts, ctx: ctx)
    }

    static func open(sitePath: String, trustNewHosts: Bool, ctx: CommandContext) throws -> ClusterSession {
        let site = try SiteInventory.load(path: sitePath)
        let policy = HostKeyPolicy(
            knownHostsFile: site.ssh.knownHostsFile,
            pinnedFingerprints: [],
            pinnedByHost: Dictionary(
                site.hosts.filter { !$0.hostKeyFingerprints.isEmpty }.map { ($0.address, $0.hostKeyFingerprints) },
                uniquingKeysWith: { a, b in a + b }),
            trustNewHosts: trustNewHosts)
        if trustNewHosts && site.ssh.knownHostsFile == nil {
            throw ClusterError.noNodes(
                reason: "--trust-new-hosts needs 'spec.ssh.knownHosts' in the site file, to record the keys in")
        }
        let sshOptions = SSHOptions(connectTimeout: .seconds(site.ssh.connectTimeoutSeconds))
        let pool = SSHPool(
            policy: policy, options: sshOptions, maxTotal: max(8, site.ssh.parallelism * 2), logger: ctx.logger)
        let dir = URL(fileURLWithPath: StateDirectory.path()).appendingPathComponent("clusters/\(site.name)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return ClusterSession(site: site, pool: pool, stateDirectory: dir)
    }

    func endpoint(for host: SiteInventory.Host) -> SSHEndpoint {
        var jump: SSHEndpoint?
        if let j = site.ssh.jumpHost {
            jump = SSHEndpoint(
                host: j.address, port: j.port, user: j.user ?? site.ssh.user, identityFile: site.ssh.identityFile,
                useAgent: site.ssh.useAgent)
        }
        return SSHEndpoint(
            host: host.address, port: site.port(for: host), user: site.user(for: host),
            identityFile: site.ssh.identityFile, useAgent: site.ssh.useAgent, sudo: site.ssh.sudo, jump: jump)
    }

    func stagingNodes(only names: [String]) throws -> [StagingNode] {
        let hosts =
            names.isEmpty
            ? site.hosts
            : try names.map { n in
                guard let h = site.host(named: n) else {
                    throw ClusterError.noNodes(
                        reason:
                            "no host named '\(n)' in \(site.sourcePath ?? "the site"); hosts: \(site.hosts.map(\.name).joined(separator: ", "))"
                    )
                }
                return h
            }
        return hosts.map { StagingNode(name: $0.name, endpoint: endpoint(for: $0), roles: $0.roles) }
    }

    func journal() throws -> Journal { try Journal(stateDirectory: stateDirectory) }

    /// This admin host's identity in cluster-side locks (see `adminIdentity`).
    func adminID() throws -> String { try adminIdentity(stateDirectory) }

    /// The cluster-side lock on the first control-plane node, or nil when the site has none.
    func nodeLock(directory: String) -> NodeClusterLock? {
        guard let cp = site.hosts(withRole: .controlPlane).first else { return nil }
        return NodeClusterLock(
            pool: pool, endpoint: endpoint(for: cp), node: cp.name, cluster: site.name, directory: directory)
    }

    /// Runs `body`, then closes every SSH connection whether it succeeded or threw: no session thread
    /// outlives the command.
    func closing<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            await pool.closeAll()
            return value
        } catch {
            await pool.closeAll()
            throw error
        }
    }
}

/// The parameters an operation was started with, kept beside the journal so `plan resume` can rebuild it.
struct OperationParameters: Codable {
    var kind: String
    var site: String
    var bundle: String?
    var trustedKeys: [String]
    var allowUnsigned: Bool
    var nodes: [String]
    var bytesPerSecond: Int64?
    /// The nodes' store (nil: the default).
    var store: String?

    /// Where the journal is mirrored on the control-plane node: beside the store.
    var journalCopies: String {
        ((store ?? Stager.defaultStore) as NSString).deletingLastPathComponent + "/journal"
    }

    /// Where the cluster-side lock lives on the control-plane node: beside the store.
    var lockDirectory: String {
        ((store ?? Stager.defaultStore) as NSString).deletingLastPathComponent + "/lock"
    }

    static func path(_ dir: URL, operation: String) -> URL {
        dir.appendingPathComponent("operations/\(operation).json")
    }

    func save(_ dir: URL, operation: String) throws {
        let url = Self.path(dir, operation: operation)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(self).write(to: url, options: .atomic)
    }

    static func load(_ dir: URL, operation: String) throws -> OperationParameters {
        try JSONDecoder().decode(OperationParameters.self, from: Data(contentsOf: path(dir, operation: operation)))
    }
}

/// A random id made once per cluster state directory (`admin-id`): it names this admin host in the
/// cluster-side lock, so two admin hosts with the same host name are still told apart.
func adminIdentity(_ stateDirectory: URL) throws -> String {
    let url = stateDirectory.appendingPathComponent("admin-id")
    if let text = try? String(contentsOf: url, encoding: .utf8) {
        let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if !id.isEmpty { return id }
    }
    try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
    let id = UUID().uuidString.lowercased()
    try Data((id + "\n").utf8).write(to: url, options: .atomic)
    return id
}
