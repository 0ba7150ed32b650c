import Foundation

/// A pod as a drain sees it: the fields `kubectl drain`'s filters read (controller, mirror annotation,
/// emptyDir volumes, phase) and the ones that make it a GPU job (scheduler, GPU requests).
public struct DrainPod: Sendable, Equatable {
    public var namespace: String
    public var name: String
    public var phase: String
    /// The controller owner reference's kind and name (nil: a bare pod).
    public var controllerKind: String?
    public var controllerName: String?
    /// A static pod's mirror (`kubernetes.io/config.mirror`): the kubelet owns it, drain skips it.
    public var isMirror: Bool
    public var hasEmptyDir: Bool
    public var schedulerName: String
    /// `nvidia.com/gpu` requested by its containers (limits or requests), whole GPUs.
    public var gpus: Int
    /// KAI's fractional GPU annotation (`gpu-fraction`), when set.
    public var gpuFraction: String?
    public var labels: [String: String]
    public var terminating: Bool

    public init(
        namespace: String, name: String, phase: String = "Running", controllerKind: String? = nil,
        controllerName: String? = nil, isMirror: Bool = false, hasEmptyDir: Bool = false,
        schedulerName: String = "default-scheduler", gpus: Int = 0, gpuFraction: String? = nil,
        labels: [String: String] = [:], terminating: Bool = false
    ) {
        self.namespace = namespace
        self.name = name
        self.phase = phase
        self.controllerKind = controllerKind
        self.controllerName = controllerName
        self.isMirror = isMirror
        self.hasEmptyDir = hasEmptyDir
        self.schedulerName = schedulerName
        self.gpus = gpus
        self.gpuFraction = gpuFraction
        self.labels = labels
        self.terminating = terminating
    }

    public var id: String { "\(namespace)/\(name)" }
    public var isTerminal: Bool { phase == "Succeeded" || phase == "Failed" }
    /// A job of the GPU scheduler, or any pod holding GPUs: evicting it stops GPU work.
    public var isGPUJob: Bool { schedulerName == DrainSimulation.gpuScheduler || gpus > 0 || gpuFraction != nil }

    /// The pods of a `PodList` (`kubectl get pods -o json`).
    public static func parseList(_ data: Data) throws -> [DrainPod] {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let items = root["items"] as? [[String: Any]]
        else { throw ClusterError.node(node: "cluster", reason: "kubectl get pods did not print a PodList") }
        return items.compactMap { item in
            guard let meta = item["metadata"] as? [String: Any], let name = meta["name"] as? String else { return nil }
            let spec = item["spec"] as? [String: Any] ?? [:]
            let status = item["status"] as? [String: Any] ?? [:]
            let owners = meta["ownerReferences"] as? [[String: Any]] ?? []
            let controller = owners.first { $0["controller"] as? Bool == true }
            let annotations = meta["annotations"] as? [String: String] ?? [:]
            let volumes = spec["volumes"] as? [[String: Any]] ?? []
            var gpus = 0
            for key in ["containers", "initContainers"] {
                for c in spec[key] as? [[String: Any]] ?? [] {
                    let resources = c["resources"] as? [String: Any] ?? [:]
                    let limits = resources["limits"] as? [String: Any] ?? [:]
                    let requests = resources["requests"] as? [String: Any] ?? [:]
                    let value = limits[gpuResource] ?? requests[gpuResource]
                    gpus += quantity(value)
                }
            }
            return DrainPod(
                namespace: meta["namespace"] as? String ?? "default", name: name,
                phase: status["phase"] as? String ?? "Pending",
                controllerKind: controller?["kind"] as? String, controllerName: controller?["name"] as? String,
                isMirror: annotations["kubernetes.io/config.mirror"] != nil,
                hasEmptyDir: volumes.contains { $0["emptyDir"] != nil },
                schedulerName: spec["schedulerName"] as? String ?? "default-scheduler", gpus: gpus,
                gpuFraction: annotations["gpu-fraction"], labels: meta["labels"] as? [String: String] ?? [:],
                terminating: meta["deletionTimestamp"] != nil)
        }
    }

    static let gpuResource = "nvidia.com/gpu"

    static func quantity(_ v: Any?) -> Int {
        if let i = v as? Int { return i }
        if let s = v as? String { return Int(s) ?? 0 }
        return 0
    }
}

/// A PodDisruptionBudget: its selector and the status the disruption controller keeps.
public struct DisruptionBudget: Sendable, Equatable {
    public struct Requirement: Sendable, Equatable {
        public var key: String
        public var op: String
        public var values: [String]
        public init(key: String, op: String, values: [String]) {
            self.key = key
            self.op = op
            self.values = values
        }
    }

    public var namespace: String
    public var name: String
    /// nil: the budget has no selector (it selects nothing for eviction).
    public var matchLabels: [String: String]?
    public var matchExpressions: [Requirement]
    public var disruptionsAllowed: Int
    public var desiredHealthy: Int
    public var currentHealthy: Int

    public init(
        namespace: String, name: String, matchLabels: [String: String]?, matchExpressions: [Requirement] = [],
        disruptionsAllowed: Int, desiredHealthy: Int, currentHealthy: Int
    ) {
        self.namespace = namespace
        self.name = name
        self.matchLabels = matchLabels
        self.matchExpressions = matchExpressions
        self.disruptionsAllowed = disruptionsAllowed
        self.desiredHealthy = desiredHealthy
        self.currentHealthy = currentHealthy
    }

    /// Whether the budget covers `pod` (same namespace, selector matches; an empty selector matches nothing,
    /// as in the eviction handler).
    public func selects(_ pod: DrainPod) -> Bool {
        guard pod.namespace == namespace else { return false }
        guard matchLabels?.isEmpty == false || !matchExpressions.isEmpty else { return false }
        for (k, v) in matchLabels ?? [:] where pod.labels[k] != v { return false }
        for r in matchExpressions {
            let value = pod.labels[r.key]
            switch r.op {
            case "In": if !(value.map { r.values.contains($0) } ?? false) { return false }
            case "NotIn": if let value, r.values.contains(value) { return false }
            case "Exists": if value == nil { return false }
            case "DoesNotExist": if value != nil { return false }
            default: return false
            }
        }
        return true
    }

    /// The budgets of a `PodDisruptionBudgetList` (`kubectl get pdb -A -o json`).
    public static func parseList(_ data: Data) throws -> [DisruptionBudget] {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let items = root["items"] as? [[String: Any]]
        else { throw ClusterError.node(node: "cluster", reason: "kubectl get pdb did not print a list") }
        return items.compactMap { item in
            guard let meta = item["metadata"] as? [String: Any], let name = meta["name"] as? String else { return nil }
            let spec = item["spec"] as? [String: Any] ?? [:]
            let status = item["status"] as? [String: Any] ?? [:]
            let selector = spec["selector"] as? [String: Any]
            let exprs = (selector?["matchExpressions"] as? [[String: Any]] ?? []).compactMap {
                e -> Requirement? in
                guard let k = e["key"] as? String, let op = e["operator"] as? String else { return nil }
                return Requirement(key: k, op: op, values: e["values"] as? [String] ?? [])
            }
            return DisruptionBudget(
                namespace: meta["namespace"] as? String ?? "default", name: name,
                matchLabels: selector.map { $0["matchLabels"] as? [String: String] ?? [:] }, matchExpressions: exprs,
                disruptionsAllowed: DrainPod.quantity(status["disruptionsAllowed"]),
                desiredHealthy: DrainPod.quantity(status["desiredHealthy"]),
                currentHealthy: DrainPod.quantity(status["currentHealthy"]))
        }
    }
}

/// What the API server answered to a server-side dry run of one pod's eviction
/// (`POST .../pods/P/eviction` with `dryRun: [All]`).
public enum EvictionProbe: Sendable, Equatable {
    /// 2xx: the eviction would go through.
    case allowed
    /// 429 TooManyRequests: a PodDisruptionBudget allows no disruption now.
    case blockedByBudget(message: String)
    /// 404: the pod is already gone.
    case gone
    /// Any other answer (500 for a pod with two budgets, 403...), with the server's message.
    case failed(message: String)
    /// Not asked (DaemonSet, mirror and terminal pods are not evicted through the budget).
    case notAsked

    /// Reads what `kubectl create --raw .../eviction -f -` printed and its exit status.
    public static func parse(exitStatus: Int32, output: String) -> EvictionProbe {
        if exitStatus == 0 { return .allowed }
        let text = output.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.contains("(TooManyRequests)") || text.contains("disruption budget") {
            return .blockedByBudget(message: text)
        }
        if text.contains("(NotFound)") { return .gone }
        return .failed(message: text.split(separator: "\n").last.map(String.init) ?? text)
    }
}

/// Why a pod blocks (or would be harmed by) a drain.
public enum DrainBlocker: Sendable, Equatable, CustomStringConvertible {
    /// A PodDisruptionBudget allows no disruption: the eviction API refuses (429) until it does.
    case disruptionBudget(name: String, desiredHealthy: Int, currentHealthy: Int)
    /// Eviction refused for another reason (the server's words).
    case evictionRefused(String)
    /// A job of the GPU scheduler, or a pod holding GPUs: evicting it stops GPU work.
    case gpuJob(String)
    /// emptyDir volumes: their data is lost when the pod is evicted.
    case localStorage
    /// No controller recreates the pod: `kubectl drain` refuses it without `--force`, and it is gone for good.
    case noController

    public var description: String {
        switch self {
        case let .disruptionBudget(name, desired, current):
            "PodDisruptionBudget \(name) (needs \(desired) healthy, has \(current): no disruption allowed)"
        case .evictionRefused(let m): "eviction refused: \(m)"
        case .gpuJob(let what): "GPU job (\(what))"
        case .localStorage: "local storage (emptyDir data is lost)"
        case .noController: "bare pod (no controller recreates it)"
        }
    }

    /// Short name for tables and JSON.
    public var kind: String {
        switch self {
        case .disruptionBudget: "pdb"
        case .evictionRefused: "eviction"
        case .gpuJob: "gpu-job"
        case .localStorage: "local-storage"
        case .noController: "no-controller"
        }
    }

    /// Blocks `kubectl drain` itself (as opposed to a harm the operator must know about).
    public var blocksEviction: Bool {
        switch self {
        case .disruptionBudget, .evictionRefused, .noController: true
        case .gpuJob, .localStorage: false
        }
    }
}

/// What a drain of one node would do, pod by pod: decided from the node's pods, the cluster's budgets and
/// the API server's own dry run of each eviction. Pure: the queries that feed it live in `ClusterAPI`.
/// Shared by `node drain` and the rolling upgrade (one table for every node it will drain).
public struct DrainSimulation: Sendable, Equatable {
    public static let gpuScheduler = "kai-scheduler"

    public enum Action: String, Sendable, Equatable {
        /// Evicted through the eviction API (or deleted when terminal).
        case evict
        /// A DaemonSet pod: `--ignore-daemonsets` leaves it (its controller would put it back).
        case ignore
        /// A static pod's mirror: the kubelet owns it.
        case skip
    }

    public struct Row: Sendable, Equatable {
        public var node: String
        public var pod: DrainPod
        public var action: Action
        public var blockers: [DrainBlocker]
        public var note: String?
    }

    public var node: String
    public var rows: [Row]

    /// The decision, pod by pod, in `kubectl drain`'s filter order (mirror, terminal, DaemonSet, then
    /// emptyDir and controller), with the blockers a drain would meet.
    public static func decide(
        node: String, pods: [DrainPod], budgets: [DisruptionBudget], probes: [String: EvictionProbe]
    ) -> DrainSimulation {
        var rows: [Row] = []
        for pod in pods.sorted(by: { $0.id < $1.id }) {
            if pod.isMirror {
                rows.append(Row(node: node, pod: pod, action: .skip, blockers: [], note: "static pod"))
                continue
            }
            if pod.isTerminal {
                rows.append(Row(node: node, pod: pod, action: .evict, blockers: [], note: pod.phase.lowercased()))
                continue
            }
            if pod.controllerKind == "DaemonSet" {
                rows.append(Row(node: node, pod: pod, action: .ignore, blockers: [], note: "DaemonSet"))
                continue
            }
            var blockers: [DrainBlocker] = []
            switch probes[pod.id] ?? .notAsked {
            case .blockedByBudget(let message):
                if let b = budgets.first(where: { $0.selects(pod) }) {
                    blockers.append(
                        .disruptionBudget(
                            name: b.name, desiredHealthy: b.desiredHealthy, currentHealthy: b.currentHealthy))
                } else {
                    blockers.append(.evictionRefused(message))
                }
            case .failed(let message): blockers.append(.evictionRefused(message))
            case .allowed, .gone, .notAsked: break
            }
            if pod.controllerKind == nil { blockers.append(.noController) }
            if pod.hasEmptyDir { blockers.append(.localStorage) }
            if pod.isGPUJob {
                var what: [String] = []
                if pod.schedulerName == gpuScheduler { what.append(gpuScheduler) }
                if pod.gpus > 0 { what.append("\(pod.gpus) GPU\(pod.gpus == 1 ? "" : "s")") }
                if let f = pod.gpuFraction { what.append("gpu-fraction \(f)") }
                blockers.append(.gpuJob(what.joined(separator: ", ")))
            }
            let note = pod.controllerKind.map { "\($0) \(pod.controllerName ?? "")" }
            rows.append(Row(node: node, pod: pod, action: .evict, blockers: blockers, note: note))
        }
        return DrainSimulation(node: node, rows: rows)
    }

    /// The pods whose eviction a server dry run must be asked about.
    public static func podsToProbe(_ pods: [DrainPod]) -> [DrainPod] {
        pods.filter { !$0.isMirror && !$0.isTerminal && $0.controllerKind != "DaemonSet" }
            .sorted { $0.id < $1.id }
    }

    /// Rows with at least one blocker.
    public var blocked: [Row] { rows.filter { !$0.blockers.isEmpty } }
    public var evicted: [Row] { rows.filter { $0.action == .evict } }
    public var gpuJobs: [Row] { rows.filter { $0.pod.isGPUJob && $0.action == .evict } }
    /// Rows whose blockers stop `kubectl drain` (PDB, refused eviction, bare pod).
    public var evictionBlocked: [Row] { rows.filter { $0.blockers.contains(where: \.blocksEviction) } }

    /// One table for one or more nodes: NODE, POD, ACTION, BLOCKED BY; then a summary line per node.
    public static func table(_ simulations: [DrainSimulation]) -> String {
        var lines = [["NODE", "POD", "ACTION", "BLOCKED BY"]]
        for s in simulations {
            if s.rows.isEmpty { lines.append([s.node, "-", "-", "no pods"]) }
            for r in s.rows {
                let action =
                    switch r.action {
                    case .evict: r.pod.isTerminal ? "delete (\(r.note ?? ""))" : "evict"
                    case .ignore: "ignore (\(r.note ?? ""))"
                    case .skip: "skip (\(r.note ?? ""))"
                    }
                let by = r.blockers.isEmpty ? "-" : r.blockers.map(\.description).joined(separator: "; ")
                lines.append([r.node, r.pod.id, action, by])
            }
        }
        let widths = (0..<3).map { i in lines.map { $0[i].count }.max() ?? 0 }
        var out = lines.map { row in
            (0..<3).map { row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                + "  " + row[3]
        }
        for s in simulations {
            out.append(s.summary)
        }
        return out.joined(separator: "\n")
    }

    /// `NODE: N to evict, B blocked (…), G GPU jobs, I ignored`.
    public var summary: String {
        let kinds = Dictionary(grouping: blocked.flatMap(\.blockers), by: \.kind).map { "\($0.value.count) \($0.key)" }
            .sorted()
        let ignored = rows.filter { $0.action != .evict }.count
        return
            "\(node): \(evicted.count) to evict, \(blocked.count) blocked\(kinds.isEmpty ? "" : " (\(kinds.joined(separator: ", ")))"), \(gpuJobs.count) GPU job\(gpuJobs.count == 1 ? "" : "s"), \(ignored) left in place"
    }
}

/// What a drain does when it is still blocked at its timeout (shared by `node drain` and `upgrade`).
public enum DrainPolicy: String, Sendable, Codable, CaseIterable {
    /// Honour every budget until the timeout; then stop, the node stays cordoned with its reason.
    case wait
    /// Any blocker in the simulation stops before the cordon: nothing changes.
    case fail
    /// Honour budgets until the timeout, then delete what is left without the eviction API (budgets are
    /// bypassed; kubespray's fallback), bare pods included.
    case disableEviction = "disable-eviction"
}

/// How a node is emptied.
public enum DrainMethod: String, Sendable, Codable, CaseIterable {
    /// `kubectl drain`: cordon, then evictions through the eviction API (budgets honoured).
    case drain
    /// The Run:ai guide's `kubectl taint nodes N runai=drain:NoExecute`: pods that do not tolerate it are
    /// deleted at once, budgets NOT honoured.
    case taint
}
