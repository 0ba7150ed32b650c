import ApplianceSSH
import Foundation

/// A node as the Kubernetes API reports it (the parts install, status and the lifecycle read).
public struct KubeNode: Sendable, Equatable {
    public struct Taint: Sendable, Hashable {
        public var key: String
        public var value: String
        public var effect: String
        public init(key: String, value: String = "", effect: String) {
            self.key = key
            self.value = value
            self.effect = effect
        }
        /// `key=value:Effect` (or `key:Effect`), as kubectl takes it.
        public var argument: String { value.isEmpty ? "\(key):\(effect)" : "\(key)=\(value):\(effect)" }
    }

    public var name: String
    public var ready: Bool
    /// The Ready condition's reason and message when not Ready.
    public var notReadyReason: String?
    public var kubeletVersion: String
    public var labels: [String: String]
    public var annotations: [String: String]
    public var taints: [Taint]
    public var unschedulable: Bool
    public var allocatableGPUs: Int?
    /// `status.allocatable.cpu` and `.memory` as the kubelet reports them (Kubernetes quantities).
    public var allocatableCPU: String?
    public var allocatableMemory: String?
    public var internalIP: String?
}

/// The cluster's API, reached with kubectl on a control-plane node over SSH with the admin kubeconfig that
/// kubeadm wrote there. Works with whichever kubectl the node has: only documented flags and JSON output.
public struct ClusterAPI: Sendable {
    public static let adminKubeconfig = "/etc/kubernetes/admin.conf"
    public let runner: NodeRunner

    public init(runner: NodeRunner) { self.runner = runner }

    /// `kubectl ARGS` with the admin kubeconfig; stdout.
    ///
    /// A read (`get`, `api-resources`, `version`, `logs`) that fails with an error the API server gives
    /// while its etcd elects a leader or while it restarts (a control-plane upgrade does both) is tried
    /// again, up to `readAttempts` times in all with 1, 2, 4 s between: a status or a step's check must not
    /// fail on one such answer. Writes are never repeated here: the caller's step owns their retries.
    @discardableResult
    public func kubectl(
        _ args: [String], stdin: [UInt8]? = nil, label: String? = nil, timeout: Duration = .seconds(120)
    )
        async throws -> String
    {
        let label = label ?? "kubectl \(args.prefix(2).joined(separator: " "))"
        let script = "kubectl --kubeconfig=\(Self.adminKubeconfig) " + args.map(shellQuote).joined(separator: " ")
        let attempts = Self.isRead(args) ? Self.readAttempts : 1
        var attempt = 1
        while true {
            let out = try await runner.output(script, stdin: stdin, label: label, timeout: timeout)
            if out.exit.succeeded { return out.stdoutText }
            guard attempt < attempts, Self.isTransient(out.stderrText) else {
                throw ClusterError.node(node: runner.name, reason: NodeRunner.failure(label, out))
            }
            try await Task.sleep(for: .seconds(1 << (attempt - 1)))
            attempt += 1
        }
    }

    public static let readAttempts = 4

    /// Whether kubectl `args` only read.
    static func isRead(_ args: [String]) -> Bool {
        guard let verb = args.first(where: { !$0.hasPrefix("-") }) else { return false }
        return ["get", "api-resources", "api-versions", "version", "logs"].contains(verb)
    }

    /// Whether kubectl's stderr is an answer that passes on its own: etcd electing a leader or briefly
    /// without one, the API server overloaded, restarting or not yet serving (503, 504, 429).
    static func isTransient(_ stderr: String) -> Bool {
        let markers = [
            "etcdserver: leader changed", "etcdserver: request timed out", "etcdserver: no leader",
            "etcdserver: too many requests", "the server is currently unable to handle the request",
            "the server was unable to return a response in the time allotted",
            "the server has received too many requests", "TLS handshake timeout", "http2: client connection lost",
            "connection reset by peer", "was refused - did you specify the right host or port",
        ]
        return markers.contains { stderr.contains($0) }
    }

    /// Whether the API answers `/readyz` (through `server` when given, e.g. one control plane's own address).
    public func isReady(server: String? = nil) async throws -> Bool {
        var args = ["--kubeconfig=\(Self.adminKubeconfig)", "get", "--raw", "/readyz", "--request-timeout=10s"]
        if let server { args.insert("--server=\(server)", at: 1) }
        let out = try await runner.output(
            "[ -f \(Self.adminKubeconfig) ] && kubectl " + args.map(shellQuote).joined(separator: " "),
            label: "kubectl get --raw /readyz", timeout: .seconds(30))
        return out.exit.succeeded && out.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines) == "ok"
    }

    public func nodes() async throws -> [KubeNode] {
        let text = try await kubectl(["get", "nodes", "-o", "json"], label: "kubectl get nodes")
        return try Self.parseNodes(Data(text.utf8))
    }

    /// `kubectl label node NODE --overwrite ARGS` (`key=value` sets, `key-` removes).
    public func label(node: String, _ args: [String]) async throws {
        guard !args.isEmpty else { return }
        try await kubectl(["label", "node", node, "--overwrite"] + args, label: "kubectl label node \(node)")
    }

    /// `kubectl taint node NODE --overwrite ARGS` (`key=value:Effect` adds, `key:Effect-` removes).
    public func taint(node: String, _ args: [String]) async throws {
        guard !args.isEmpty else { return }
        try await kubectl(["taint", "node", node, "--overwrite"] + args, label: "kubectl taint node \(node)")
    }

    public static func parseNodes(_ data: Data) throws -> [KubeNode] {
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let items = root["items"] as? [[String: Any]]
        else { throw ClusterError.node(node: "cluster", reason: "kubectl get nodes did not print a NodeList") }
        return items.compactMap { item in
            guard let meta = item["metadata"] as? [String: Any], let name = meta["name"] as? String else { return nil }
            let spec = item["spec"] as? [String: Any] ?? [:]
            let status = item["status"] as? [String: Any] ?? [:]
            let conditions = status["conditions"] as? [[String: Any]] ?? []
            let ready = conditions.first { $0["type"] as? String == "Ready" }
            let isReady = ready?["status"] as? String == "True"
            var reason: String?
            if !isReady {
                let r = ready?["reason"] as? String ?? "no Ready condition yet"
                let m = ready?["message"] as? String
                reason = m.map { "\(r): \($0)" } ?? r
            }
            let info = status["nodeInfo"] as? [String: Any] ?? [:]
            let taints = (spec["taints"] as? [[String: Any]] ?? []).compactMap { t -> KubeNode.Taint? in
                guard let k = t["key"] as? String, let e = t["effect"] as? String else { return nil }
                return KubeNode.Taint(key: k, value: t["value"] as? String ?? "", effect: e)
            }
            let alloc = status["allocatable"] as? [String: Any] ?? [:]
            let addresses = status["addresses"] as? [[String: Any]] ?? []
            return KubeNode(
                name: name, ready: isReady, notReadyReason: reason,
                kubeletVersion: info["kubeletVersion"] as? String ?? "",
                labels: meta["labels"] as? [String: String] ?? [:],
                annotations: meta["annotations"] as? [String: String] ?? [:], taints: taints,
                unschedulable: spec["unschedulable"] as? Bool ?? false,
                allocatableGPUs: (alloc["nvidia.com/gpu"] as? String).flatMap { Int($0) },
                allocatableCPU: alloc["cpu"] as? String, allocatableMemory: alloc["memory"] as? String,
                internalIP: addresses.first { $0["type"] as? String == "InternalIP" }?["address"] as? String)
        }
    }

    /// Why a pod (a `PodList` item as JSON) is not Ready; nil when it is. The first waiting or terminated
    /// container with its reason and message, else the failing condition's reason and message, else the phase.
    public static func whyNotReady(pod: [String: Any]) -> String? {
        let status = pod["status"] as? [String: Any] ?? [:]
        let conditions = status["conditions"] as? [[String: Any]] ?? []
        if conditions.contains(where: { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }) {
            return nil
        }
        for cs in status["containerStatuses"] as? [[String: Any]] ?? [] {
            let state = cs["state"] as? [String: Any] ?? [:]
            if let s = (state["waiting"] ?? state["terminated"]) as? [String: Any], let reason = s["reason"] as? String
            {
                let message = (s["message"] as? String).map { ": \($0)" } ?? ""
                return "container \(cs["name"] as? String ?? "?"): \(reason)\(message)"
            }
        }
        if let failed = conditions.first(where: { $0["status"] as? String == "False" && $0["message"] != nil }) {
            let reason = failed["reason"] as? String ?? (failed["type"] as? String ?? "")
            return "\(reason): \(failed["message"] as? String ?? "")"
        }
        return "phase \(status["phase"] as? String ?? "Pending")"
    }

}
