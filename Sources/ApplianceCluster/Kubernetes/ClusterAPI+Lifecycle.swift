import ApplianceSSH
import Foundation

/// The annotations a maintenance drain records on its Node (what `status` shows), cleared by rejoin.
public enum MaintenanceMarks {
    public static let reason = "appliance.dev/maintenance-reason"
    public static let by = "appliance.dev/maintenance-by"
    public static let at = "appliance.dev/maintenance-at"
    public static let method = "appliance.dev/maintenance-method"
    public static let operation = "appliance.dev/maintenance-operation"
    /// GPUs allocatable when the node was drained (the gate after the rejoin wants them back).
    public static let gpus = "appliance.dev/maintenance-gpus"
    public static let all = [reason, by, at, method, operation]

    /// The Run:ai guide's maintenance taint.
    public static let drainTaint = KubeNode.Taint(key: "runai", value: "drain", effect: "NoExecute")
}

/// The queries and changes of the node lifecycle (drain, rejoin, remove), with kubectl on a control plane.
extension ClusterAPI {
    static let section = "----appliance-section----"

    /// The drain simulation of `node`: its pods and the cluster's budgets, then the API server's own dry run
    /// of each eviction (`POST .../eviction` with `dryRun: [All]` through `kubectl create --raw`). Changes
    /// nothing. Two round trips to the control plane.
    public func drainSimulation(node: String) async throws -> DrainSimulation {
        let kc = "kubectl --kubeconfig=\(Self.adminKubeconfig)"
        let text = try await runner.run(
            """
            \(kc) get pods -A --field-selector \(shellQuote("spec.nodeName=\(node)")) -o json || exit 3
            echo \(Self.section)
            \(kc) get poddisruptionbudgets -A -o json || exit 3
            """, label: "list the pods of \(node) and the disruption budgets")
        let parts = text.components(separatedBy: Self.section + "\n")
        guard parts.count == 2 else {
            throw ClusterError.node(node: runner.name, reason: "unexpected output listing pods and budgets")
        }
        let pods = try DrainPod.parseList(Data(parts[0].utf8))
        let budgets = try DisruptionBudget.parseList(Data(parts[1].utf8))
        let probes = try await evictionDryRun(DrainSimulation.podsToProbe(pods))
        return DrainSimulation.decide(node: node, pods: pods, budgets: budgets, probes: probes)
    }

    /// One server-side dry-run eviction per pod, in one script.
    func evictionDryRun(_ pods: [DrainPod]) async throws -> [String: EvictionProbe] {
        guard !pods.isEmpty else { return [:] }
        var script = ""
        for (i, p) in pods.enumerated() {
            let body: [String: Any] = [
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": ["name": p.name, "namespace": p.namespace], "deleteOptions": ["dryRun": ["All"]],
            ]
            let json = String(
                decoding: try JSONSerialization.data(withJSONObject: body, options: .sortedKeys), as: UTF8.self)
            let path = "/api/v1/namespaces/\(p.namespace)/pods/\(p.name)/eviction"
            script += """
                echo \(Self.section) \(i)
                printf '%s' \(shellQuote(json)) | kubectl --kubeconfig=\(Self.adminKubeconfig) create --raw \(shellQuote(path)) -f - 2>&1
                echo "rc=$?"

                """
        }
        let out = try await runner.run(
            script, label: "server-side dry run of \(pods.count) evictions", timeout: .seconds(300))
        var probes: [String: EvictionProbe] = [:]
        for chunk in out.components(separatedBy: Self.section + " ").dropFirst() {
            var lines = chunk.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            guard let first = lines.first, let i = Int(first.trimmingCharacters(in: .whitespaces)), i < pods.count
            else { continue }
            lines.removeFirst()
            while lines.last == "" { lines.removeLast() }
            guard let rcLine = lines.last, rcLine.hasPrefix("rc="), let rc = Int32(rcLine.dropFirst(3)) else {
                continue
            }
            probes[pods[i].id] = EvictionProbe.parse(exitStatus: rc, output: lines.dropLast().joined(separator: "\n"))
        }
        return probes
    }

    /// The pods of `node` a drain must still move (not DaemonSet, mirror or terminal pods).
    public func podsToDrain(node: String) async throws -> [DrainPod] {
        let text = try await kubectl(
            ["get", "pods", "-A", "--field-selector", "spec.nodeName=\(node)", "-o", "json"],
            label: "list the pods of \(node)")
        return DrainSimulation.podsToProbe(try DrainPod.parseList(Data(text.utf8)))
    }

    /// `kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=Ns [--force --disable-eviction]`.
    /// Returns kubectl's exit success and its output (stdout and stderr).
    public func drain(node: String, timeoutSeconds: Int, disableEviction: Bool) async throws -> (
        ok: Bool, output: String
    ) {
        var args = ["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=\(timeoutSeconds)s"]
        if disableEviction { args += ["--force", "--disable-eviction"] }
        let out = try await runner.output(
            "kubectl --kubeconfig=\(Self.adminKubeconfig) " + args.map(shellQuote).joined(separator: " ") + " 2>&1",
            label: "kubectl drain \(node)", timeout: .seconds(Int64(timeoutSeconds) + 120))
        return (out.exit.succeeded, out.stdoutText)
    }

    public func cordon(node: String, _ on: Bool) async throws {
        try await kubectl([on ? "cordon" : "uncordon", node], label: "kubectl \(on ? "cordon" : "uncordon") \(node)")
    }

    /// `kubectl annotate node NODE --overwrite ARGS` (`key=value` sets, `key-` removes).
    public func annotate(node: String, _ args: [String]) async throws {
        guard !args.isEmpty else { return }
        try await kubectl(["annotate", "node", node, "--overwrite"] + args, label: "kubectl annotate node \(node)")
    }

    public func node(_ name: String) async throws -> KubeNode? {
        try await nodes().first { $0.name == name }
    }

    /// `kubectl delete node NODE` (a node already gone is fine).
    public func deleteNode(_ name: String) async throws {
        try await kubectl(["delete", "node", name, "--ignore-not-found"], label: "kubectl delete node \(name)")
    }
}

/// The etcd quorum arithmetic of removing one control plane (stacked etcd: one member per control plane).
public struct QuorumCheck: Sendable, Equatable {
    public var members: [String]
    public var healthy: [String]
    public var removing: String

    public init(members: [String], healthy: [String], removing: String) {
        self.members = members
        self.healthy = healthy
        self.removing = removing
    }

    public static func quorum(_ n: Int) -> Int { n / 2 + 1 }

    public var membersAfter: Int { members.filter { $0 != removing }.count }
    public var healthyAfter: Int { healthy.filter { $0 != removing }.count }

    /// nil when the removal keeps quorum, else why not, with the numbers.
    public var refusal: String? {
        let n = members.count
        let h = healthy.count
        let arithmetic =
            "\(n) member\(n == 1 ? "" : "s") (\(h) healthy), quorum \(Self.quorum(n)); after removing \(removing): \(membersAfter) member\(membersAfter == 1 ? "" : "s") (\(healthyAfter) healthy), quorum \(membersAfter == 0 ? "-" : String(Self.quorum(membersAfter)))"
        if !members.contains(removing) { return nil }
        if membersAfter == 0 {
            return
                "\(removing) is the cluster's only control plane: removing it leaves no etcd member at all (\(arithmetic))"
        }
        if h < Self.quorum(n) {
            return "etcd has no quorum now, so no member can be removed (\(arithmetic))"
        }
        if healthyAfter < Self.quorum(membersAfter) {
            return "removing \(removing) would leave etcd without quorum (\(arithmetic))"
        }
        return nil
    }

    public var summary: String {
        "etcd: \(members.count) members (\(healthy.count) healthy), quorum \(Self.quorum(members.count)); after: \(membersAfter) members (\(healthyAfter) healthy), quorum \(Self.quorum(max(1, membersAfter)))"
    }
}
