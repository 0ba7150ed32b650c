import ApplianceModel
import Foundation

/// What `appliance status` found, section by section, and the problems it shows. Gathered by
/// `ClusterStatus.gather` (over SSH, read-only), judged by `evaluate()` and printed by `StatusRenderer`; all
/// three are separate so the judgement and the output are tested from fixtures.
///
/// The JSON form (`StatusRenderer.json`) is a stable schema, `appliance.dev/status/v1`: fields are only ever
/// added; a field that does not apply is `null` or absent from an optional object; times are RFC 3339 UTC.
public struct StatusReport: Codable, Sendable, Equatable {
    public static let schemaName = "appliance.dev/status/v1"

    public var schema: String = StatusReport.schemaName
    public var cluster: String
    public var collectedAt: Date
    /// Whether nothing below is a problem.
    public var healthy: Bool = false
    /// The exit code of `appliance status` for this report (0, 5 or 11).
    public var exitCode: Int32 = 0
    public var problems: [Problem] = []
    public var installed: Installed?
    public var nodes: [Node] = []
    public var controlPlane: ControlPlane
    public var registry: Registry
    public var platform: Platform
    public var lastOperation: LastOperation?

    public init(
        cluster: String, collectedAt: Date, installed: Installed? = nil, nodes: [Node] = [],
        controlPlane: ControlPlane, registry: Registry, platform: Platform, lastOperation: LastOperation? = nil
    ) {
        self.cluster = cluster
        self.collectedAt = collectedAt
        self.installed = installed
        self.nodes = nodes
        self.controlPlane = controlPlane
        self.registry = registry
        self.platform = platform
        self.lastOperation = lastOperation
    }

    /// One line of the report's problem list.
    public struct Problem: Codable, Sendable, Equatable {
        public enum Kind: String, Codable, Sendable {
            /// Something did not answer (a node over SSH, the API): exit 5.
            case unreachable
            /// It answered, and is not healthy: exit 11.
            case unhealthy
        }
        public var kind: Kind
        /// A node name, `api`, `etcd`, `registry`, `release NAMESPACE/NAME`, `install` or `operation`.
        public var subject: String
        public var message: String
        public init(_ kind: Kind, _ subject: String, _ message: String) {
            self.kind = kind
            self.subject = subject
            self.message = message
        }
    }

    /// The install record (`/var/lib/appliance/installed.json` on the first control plane).
    public struct Installed: Codable, Sendable, Equatable {
        public var bundle: String
        public var version: String
        public var digest: String
        public var kubernetesVersion: String
        public var profile: String
        public var installedAt: Date?
        public init(
            bundle: String, version: String, digest: String, kubernetesVersion: String, profile: String,
            installedAt: Date?
        ) {
            self.bundle = bundle
            self.version = version
            self.digest = digest
            self.kubernetesVersion = kubernetesVersion
            self.profile = profile
            self.installedAt = installedAt
        }
    }

    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var address: String?
        public var roles: [String]
        /// Listed in the site file (false: a Node the API lists that the site does not name).
        public var inSite: Bool
        /// Whether it answered over SSH (nil: not probed).
        public var reachable: Bool?
        public var unreachableReason: String?
        /// Whether the API lists it (nil: the API did not answer).
        public var member: Bool?
        public var ready: Bool?
        public var notReadyReason: String?
        public var kubeletVersion: String?
        /// `systemctl is-active kubelet` on the node (nil: not probed).
        public var kubeletService: String?
        /// `schedulable`, `cordoned` or `tainted` (the Run:ai drain taint `runai=drain:NoExecute`).
        public var scheduling: String?
        public var maintenance: Maintenance?
        /// `appliance.dev/cordon-reason`: why the GPU gate (install) cordoned it.
        public var cordonReason: String?
        public var gpus: GPUs?
        /// `systemctl is-active nvidia-fabricmanager` where the unit exists, else, on a node with the GPU
        /// Operator's driver root, whether that driver container's `nv-fabricmanager` runs (`active` or
        /// `inactive`); nil: neither, or not probed.
        public var fabricManager: String?
        /// Whether the profile wants the fabric manager running on this node (NVSwitch GPU nodes).
        public var fabricManagerRequired: Bool

        public init(
            name: String, address: String? = nil, roles: [String], inSite: Bool = true, reachable: Bool? = nil,
            unreachableReason: String? = nil, member: Bool? = nil, ready: Bool? = nil, notReadyReason: String? = nil,
            kubeletVersion: String? = nil, kubeletService: String? = nil, scheduling: String? = nil,
            maintenance: Maintenance? = nil, cordonReason: String? = nil, gpus: GPUs? = nil,
            fabricManager: String? = nil, fabricManagerRequired: Bool = false
        ) {
            self.name = name
            self.address = address
            self.roles = roles
            self.inSite = inSite
            self.reachable = reachable
            self.unreachableReason = unreachableReason
            self.member = member
            self.ready = ready
            self.notReadyReason = notReadyReason
            self.kubeletVersion = kubeletVersion
            self.kubeletService = kubeletService
            self.scheduling = scheduling
            self.maintenance = maintenance
            self.cordonReason = cordonReason
            self.gpus = gpus
            self.fabricManager = fabricManager
            self.fabricManagerRequired = fabricManagerRequired
        }
    }

    /// What `appliance node drain` recorded on the node (`appliance.dev/maintenance-*`).
    public struct Maintenance: Codable, Sendable, Equatable {
        public var reason: String
        public var by: String?
        public var at: String?
        public var method: String?
        public var operation: String?
        /// GPUs allocatable when it was drained.
        public var gpus: Int?
        public init(
            reason: String, by: String? = nil, at: String? = nil, method: String? = nil, operation: String? = nil,
            gpus: Int? = nil
        ) {
            self.reason = reason
            self.by = by
            self.at = at
            self.method = method
            self.operation = operation
            self.gpus = gpus
        }

        /// ` (by WHO at WHEN)`, or empty when neither was recorded.
        public var recordedBy: String {
            let parts = [by.map { "by \($0)" }, at.map { "at \($0)" }].compactMap { $0 }
            return parts.isEmpty ? "" : " (\(parts.joined(separator: " ")))"
        }
    }

    public struct GPUs: Codable, Sendable, Equatable {
        /// What the profile declares for the node's roles.
        public var declared: Int
        public var model: String?
        /// The node's `nvidia.com/gpu` allocatable (nil: the API did not say).
        public var allocatable: Int?
        /// All declared GPUs allocatable and no GPU gate cordon.
        public var healthy: Bool
        public init(declared: Int, model: String?, allocatable: Int?, healthy: Bool) {
            self.declared = declared
            self.model = model
            self.allocatable = allocatable
            self.healthy = healthy
        }
    }

    public struct ControlPlane: Codable, Sendable, Equatable {
        /// The API endpoint clients use (the site's, else the only control plane's address).
        public var endpoint: String?
        /// The control plane the report was read through (kubectl with its admin kubeconfig).
        public var through: String?
        /// `/readyz` through the admin kubeconfig's endpoint (nil: not asked).
        public var apiReady: Bool?
        /// Why the API could not be read (every control plane tried).
        public var apiError: String?
        /// The checks `/readyz?verbose` lists as failed (`[-]NAME failed`).
        public var failedChecks: [String]
        public var servers: [Server]
        public var etcd: Etcd
        public init(
            endpoint: String?, through: String? = nil, apiReady: Bool? = nil, apiError: String? = nil,
            failedChecks: [String] = [], servers: [Server] = [], etcd: Etcd = Etcd()
        ) {
            self.endpoint = endpoint
            self.through = through
            self.apiReady = apiReady
            self.apiError = apiError
            self.failedChecks = failedChecks
            self.servers = servers
            self.etcd = etcd
        }
    }

    /// One control plane's own API server (`https://ADDRESS:6443/readyz`, which includes its local etcd).
    public struct Server: Codable, Sendable, Equatable {
        public var node: String
        public var url: String
        public var ready: Bool
        public var detail: String?
        public init(node: String, url: String, ready: Bool, detail: String? = nil) {
            self.node = node
            self.url = url
            self.ready = ready
            self.detail = detail
        }
    }

    public struct Etcd: Codable, Sendable, Equatable {
        /// `etcdctl` (member list and endpoint health), `apiserver` (each control plane's `/readyz`, when
        /// etcdctl could not be used), or nil when neither could be read.
        public var source: String?
        public var members: [EtcdMember]
        /// Why etcdctl could not be used.
        public var error: String?
        public init(source: String? = nil, members: [EtcdMember] = [], error: String? = nil) {
            self.source = source
            self.members = members
            self.error = error
        }
        /// Set by `evaluated()` (in the JSON): healthy voting members, the quorum of the voting members, and
        /// whether the healthy ones reach it; nil when no member could be read.
        public var healthyMembers: Int?
        public var quorum: Int?
        public var quorate: Bool?

        public var healthyCount: Int { members.filter { $0.healthy && !$0.learner }.count }
        public var voting: Int { members.filter { !$0.learner }.count }
        public var hasQuorum: Bool { !members.isEmpty && healthyCount >= voting / 2 + 1 }
    }

    public struct EtcdMember: Codable, Sendable, Equatable {
        public var name: String
        public var endpoint: String?
        public var healthy: Bool
        public var learner: Bool
        public var error: String?
        public init(name: String, endpoint: String?, healthy: Bool, learner: Bool = false, error: String? = nil) {
            self.name = name
            self.endpoint = endpoint
            self.healthy = healthy
            self.learner = learner
            self.error = error
        }
    }

    public struct Registry: Codable, Sendable, Equatable {
        /// `in-cluster` or `existing`.
        public var mode: String
        public var endpoints: [RegistryEndpoint]
        public init(mode: String, endpoints: [RegistryEndpoint] = []) {
            self.mode = mode
            self.endpoints = endpoints
        }
    }

    public struct RegistryEndpoint: Codable, Sendable, Equatable {
        public var node: String?
        /// `https://HOST:PORT/v2/`.
        public var url: String
        /// nil: not asked (the control plane did not answer).
        public var answering: Bool?
        /// The HTTP status, or why there was none.
        public var detail: String?
        public init(node: String?, url: String, answering: Bool?, detail: String? = nil) {
            self.node = node
            self.url = url
            self.answering = answering
            self.detail = detail
        }
    }

    public struct Platform: Codable, Sendable, Equatable {
        /// nil: the releases could not be listed (`error` says why).
        public var releases: [Release]?
        public var error: String?
        public init(releases: [Release]? = nil, error: String? = nil) {
            self.releases = releases
            self.error = error
        }
    }

    public struct Release: Codable, Sendable, Equatable {
        public var name: String
        public var namespace: String
        public var chart: String
        public var version: String
        public var appVersion: String?
        public var revision: Int?
        /// Helm's status: deployed, failed, pending-install, ...
        public var status: String
        public var podsReady: Int
        public var podsTotal: Int
        /// `NAMESPACE/POD: why` for each pod that is not Ready.
        public var notReady: [String]
        public init(
            name: String, namespace: String, chart: String, version: String, appVersion: String? = nil,
            revision: Int? = nil, status: String, podsReady: Int = 0, podsTotal: Int = 0, notReady: [String] = []
        ) {
            self.name = name
            self.namespace = namespace
            self.chart = chart
            self.version = version
            self.appVersion = appVersion
            self.revision = revision
            self.status = status
            self.podsReady = podsReady
            self.podsTotal = podsTotal
            self.notReady = notReady
        }
    }

    /// The latest operation in this admin host's journal.
    public struct LastOperation: Codable, Sendable, Equatable {
        public var id: String
        public var kind: String
        public var state: String
        public var startedAt: Date
        public var finishedAt: Date?
        /// Steps whose latest state is failed, with their error.
        public var failedSteps: [String]
        public init(
            id: String, kind: String, state: String, startedAt: Date, finishedAt: Date?, failedSteps: [String] = []
        ) {
            self.id = id
            self.kind = kind
            self.state = state
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.failedSteps = failedSteps
        }
    }
}

extension StatusReport {
    /// The report with its problems, `healthy` and `exitCode` decided from the sections.
    public func evaluated() -> StatusReport {
        var r = self
        if !r.controlPlane.etcd.members.isEmpty {
            r.controlPlane.etcd.healthyMembers = r.controlPlane.etcd.healthyCount
            r.controlPlane.etcd.quorum = r.controlPlane.etcd.voting / 2 + 1
            r.controlPlane.etcd.quorate = r.controlPlane.etcd.hasQuorum
        }
        r.problems = problemsFound()
        r.healthy = r.problems.isEmpty
        r.exitCode = Self.exitStatus(for: r.problems).rawValue
        return r
    }

    /// 0 healthy; 5 when anything did not answer (a node over SSH, the API); 11 when all answered and
    /// something is not healthy.
    public static func exitStatus(for problems: [Problem]) -> ExitStatus {
        if problems.contains(where: { $0.kind == .unreachable }) { return .unreachable }
        return problems.isEmpty ? .success : .unhealthy
    }

    func problemsFound() -> [Problem] {
        var p: [Problem] = []
        let apiUp = controlPlane.apiError == nil
        if let e = controlPlane.apiError { p.append(.init(.unreachable, "api", e)) }
        if apiUp && controlPlane.apiReady == false {
            p.append(.init(.unhealthy, "api", "\(controlPlane.endpoint ?? "the API") does not answer /readyz"))
        }
        if !controlPlane.failedChecks.isEmpty {
            p.append(
                .init(
                    .unhealthy, "api",
                    "/readyz reports failed checks: \(controlPlane.failedChecks.joined(separator: ", "))"))
        }
        for s in controlPlane.servers where !s.ready {
            p.append(
                .init(
                    .unhealthy, s.node,
                    "its API server \(s.url) does not answer /readyz\(s.detail.map { " (\($0))" } ?? "")"))
        }
        let etcd = controlPlane.etcd
        if !etcd.members.isEmpty {
            for m in etcd.members where !m.healthy {
                p.append(
                    .init(
                        .unhealthy, "etcd",
                        "member \(m.name.isEmpty ? "(unnamed)" : m.name)\(m.endpoint.map { " \($0)" } ?? "") is unhealthy\(m.error.map { ": \($0)" } ?? "")"
                    ))
            }
            if !etcd.hasQuorum {
                p.append(
                    .init(
                        .unhealthy, "etcd",
                        "no quorum: \(etcd.healthyCount) of \(etcd.voting) voting members healthy, quorum \(etcd.voting / 2 + 1)"
                    ))
            }
        } else if apiUp {
            p.append(.init(.unhealthy, "etcd", "no etcd member could be read\(etcd.error.map { ": \($0)" } ?? "")"))
        }
        if apiUp && installed == nil {
            p.append(
                .init(
                    .unhealthy, "install",
                    "no install record on the first control plane: install has not finished on this cluster"))
        }
        for n in nodes { p += nodeProblems(n, apiUp: apiUp) }
        for e in registry.endpoints where e.answering == false {
            p.append(.init(.unhealthy, "registry", "\(e.url) does not answer\(e.detail.map { ": \($0)" } ?? "")"))
        }
        if apiUp, let e = platform.error { p.append(.init(.unhealthy, "platform", e)) }
        for r in platform.releases ?? [] {
            let subject = "release \(r.namespace)/\(r.name)"
            if r.status != "deployed" { p.append(.init(.unhealthy, subject, "helm status \(r.status)")) }
            if r.podsReady < r.podsTotal {
                p.append(
                    .init(
                        .unhealthy, subject,
                        "\(r.podsReady) of \(r.podsTotal) pods Ready: \(r.notReady.joined(separator: "; "))"))
            }
        }
        if let op = lastOperation, ["failed", "interrupted", "rollback-failed"].contains(op.state) {
            p.append(
                .init(
                    .unhealthy, "operation",
                    "the last operation, \(op.kind) \(op.id), \(op.state)\(op.failedSteps.isEmpty ? "" : " (\(op.failedSteps.joined(separator: "; ")))"); `appliance plan show` has its steps, `appliance plan resume` continues it"
                ))
        }
        return p
    }

    func nodeProblems(_ n: Node, apiUp: Bool) -> [Problem] {
        var p: [Problem] = []
        if n.reachable == false {
            p.append(.init(.unreachable, n.name, "not reachable over SSH: \(n.unreachableReason ?? "no answer")"))
        }
        if apiUp && n.member == false {
            p.append(.init(.unhealthy, n.name, "not a member of the cluster (the API lists no Node of that name)"))
        }
        if n.ready == false {
            p.append(.init(.unhealthy, n.name, "NotReady\(n.notReadyReason.map { ": \($0)" } ?? "")"))
        }
        if let k = n.kubeletService, k != "active" { p.append(.init(.unhealthy, n.name, "kubelet is \(k)")) }
        if let s = n.scheduling, s != "schedulable" {
            if let m = n.maintenance {
                let how = s == "tainted" ? "tainted runai=drain:NoExecute" : "drained"
                p.append(
                    .init(
                        .unhealthy, n.name,
                        "\(how) for maintenance: \(m.reason)\(m.recordedBy); `appliance node rejoin \(n.name)` brings it back"
                    ))
            } else if let c = n.cordonReason {
                p.append(.init(.unhealthy, n.name, "cordoned by the GPU gate: \(c)"))
            } else {
                p.append(.init(.unhealthy, n.name, "\(s) with no reason recorded"))
            }
        }
        if let g = n.gpus, let a = g.allocatable, a < g.declared {
            p.append(.init(.unhealthy, n.name, "\(a) of \(g.declared) GPUs allocatable (nvidia.com/gpu)"))
        } else if let g = n.gpus, g.allocatable == nil, n.member == true {
            p.append(
                .init(.unhealthy, n.name, "no nvidia.com/gpu allocatable (the profile declares \(g.declared) GPUs)"))
        }
        if n.fabricManagerRequired, n.reachable == true, n.fabricManager != "active" {
            p.append(.init(.unhealthy, n.name, "nvidia-fabricmanager is \(n.fabricManager ?? "not installed")"))
        }
        return p
    }
}
