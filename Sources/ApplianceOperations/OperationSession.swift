import ApplianceCluster
import ApplianceModel
import AppliancePlan
import ApplianceSSH
import Foundation
import Logging

/// What every operation on a cluster shares: the site, its SSH pool, the cluster's state directory
/// (journal, lock, operation parameters) and the run's logger.
public struct OperationSession: Sendable {
    public let site: SiteInventory
    public let pool: SSHPool
    public let stateDirectory: URL
    public let logger: Logger

    public init(site: SiteInventory, pool: SSHPool, stateDirectory: URL, logger: Logger) {
        self.site = site
        self.pool = pool
        self.stateDirectory = stateDirectory
        self.logger = logger
    }

    /// Loads the site file and prepares (but does not open) the connections to its hosts.
    public static func open(sitePath: String, trustNewHosts: Bool, logger: Logger) throws -> OperationSession {
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
            policy: policy, options: sshOptions, maxTotal: max(8, site.ssh.parallelism * 2), logger: logger)
        let dir = URL(fileURLWithPath: StateDirectory.path()).appendingPathComponent("clusters/\(site.name)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return OperationSession(site: site, pool: pool, stateDirectory: dir, logger: logger)
    }

    public func endpoint(for host: SiteInventory.Host) -> SSHEndpoint {
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

    /// The site's hosts named in `names` (all when empty), refusing a name the site does not have.
    public func hosts(only names: [String]) throws -> [SiteInventory.Host] {
        guard !names.isEmpty else { return site.hosts }
        return try names.map { n in
            guard let h = site.host(named: n) else {
                throw ClusterError.noNodes(
                    reason:
                        "no host named '\(n)' in \(site.sourcePath ?? "the site"); hosts: \(site.hosts.map(\.name).joined(separator: ", "))"
                )
            }
            return h
        }
    }

    public func stagingNodes(only names: [String]) throws -> [StagingNode] {
        try hosts(only: names).map { StagingNode(name: $0.name, endpoint: endpoint(for: $0), roles: $0.roles) }
    }

    public func journal() throws -> Journal { try Journal(stateDirectory: stateDirectory) }

    /// This admin host's identity in cluster-side locks (see `adminIdentity`).
    public func adminID() throws -> String { try adminIdentity(stateDirectory) }

    /// The cluster-side lock on the first control-plane node, or nil when the site has none.
    public func nodeLock(directory: String) -> NodeClusterLock? {
        guard let cp = site.hosts(withRole: .controlPlane).first else { return nil }
        return NodeClusterLock(
            pool: pool, endpoint: endpoint(for: cp), node: cp.name, cluster: site.name, directory: directory)
    }

    /// Runs `body`, then closes every SSH connection whether it succeeded or threw: no session thread
    /// outlives the command.
    public func closing<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            await pool.closeAll()
            return value
        } catch {
            await pool.closeAll()
            throw error
        }
    }

    /// The operation of a lock whose holder died is recorded interrupted (not running forever), with the
    /// steps it had in flight, which a resume checks again. Returns those steps, or nil when there was
    /// nothing to mark.
    @discardableResult
    public func markAbandoned(_ operation: String?) throws -> [String]? {
        guard let operation else { return nil }
        let journal = try journal()
        guard try journal.operation(operation)?.state == .running else { return nil }
        return try journal.markAbandoned(operation: operation)
    }
}

/// A random id made once per cluster state directory (`admin-id`): it names this admin host in the
/// cluster-side lock, so two admin hosts with the same host name are still told apart.
public func adminIdentity(_ stateDirectory: URL) throws -> String {
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
