import ApplianceCluster
import ApplianceModel
import AppliancePlan
import Foundation

/// The options of the node lifecycle operations, kept with the operation's parameters for `plan resume`.
public struct LifecycleOptions: Codable, Sendable, Equatable {
    public var node: String
    public var reason: String?
    public var timeoutSeconds: Int
    public var policy: DrainPolicy
    public var method: DrainMethod
    public var force: Bool
    /// Who asked (`user@admin-host`) and when: recorded on the node and in the journal.
    public var requestedBy: String
    public var requestedAt: Date

    public init(
        node: String, reason: String? = nil, timeoutSeconds: Int = 600, policy: DrainPolicy = .wait,
        method: DrainMethod = .drain, force: Bool = false, requestedBy: String = LifecycleOptions.whoAmI(),
        requestedAt: Date = Date()
    ) {
        self.node = node
        self.reason = reason
        self.timeoutSeconds = timeoutSeconds
        self.policy = policy
        self.method = method
        self.force = force
        self.requestedBy = requestedBy
        self.requestedAt = requestedAt
    }

    /// `user@host` of this admin host (`SUDO_USER` when run through sudo).
    public static func whoAmI() -> String {
        let env = ProcessInfo.processInfo.environment
        let user = env["SUDO_USER"] ?? env["USER"] ?? env["LOGNAME"] ?? "unknown"
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }

    public var requestedAtText: String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: requestedAt)
    }
}

/// The node lifecycle's steps that do not need the bundle: drain simulation, maintenance marks, drain (or the
/// Run:ai taint), uncordon and clear, the GPU part of the health gate. Built for one node; the rolling upgrade
/// reuses them per node (simulation for every node first, then drain → ... → gate → uncordon).
enum LifecycleSteps {
    static func simulation(_ n: String) -> String { "drain-simulation/\(n)" }
    static func marks(_ n: String) -> String { "maintenance-reason/\(n)" }
    static func drain(_ n: String) -> String { "drain/\(n)" }
    static func taint(_ n: String) -> String { "drain-taint/\(n)" }
    static func gpuGate(_ n: String) -> String { "gpu-gate/\(n)" }
    static func uncordon(_ n: String) -> String { "uncordon/\(n)" }

    /// The drain simulation: the table printed (and kept in the journal); GPU jobs named; with policy `fail`
    /// any blocker stops here, before anything changed. Done already when the node carries this operation's
    /// mark and is cordoned (a resumed drain does not simulate again).
    static func simulationStep(
        api: ClusterAPI, node: String, options: LifecycleOptions, io: OperationIO, after deps: [String] = []
    ) -> Step {
        Step(
            simulation(node), on: .node(node), after: deps,
            summary:
                "drain simulation: pods to evict, and what blocks them (budgets, GPU jobs, local storage, bare pods), by the API server's dry run",
            timeout: .seconds(300),
            check: { ctx in
                guard let n = try await api.node(node) else { return false }
                return n.annotations[MaintenanceMarks.operation] == ctx.operation
                    && (n.unschedulable || n.taints.contains(MaintenanceMarks.drainTaint))
            },
            apply: { ctx in
                let sim = try await api.drainSimulation(node: node)
                let table = DrainSimulation.table([sim])
                ctx.appendOutput(table)
                io.print(table)
                for row in sim.gpuJobs {
                    io.logger.warning(
                        "\(node): GPU job \(row.pod.id) will be evicted: \(row.blockers.map(\.description).joined(separator: "; "))"
                    )
                }
                if options.method == .taint {
                    let budgets = sim.rows.filter { $0.blockers.contains { $0.kind == "pdb" } }.count
                    io.logger.warning(
                        "\(node): --method taint does not honour PodDisruptionBudgets\(budgets > 0 ? " (\(budgets) pod(s) here are protected by one)" : ""): pods that do not tolerate runai=drain:NoExecute are deleted at once"
                    )
                }
                if options.policy == .fail && !sim.blocked.isEmpty {
                    throw ClusterError.node(
                        node: node,
                        reason:
                            "--drain-policy fail: \(sim.blocked.count) pod(s) would block or be harmed by the drain; nothing was changed:\n    "
                            + sim.blocked.map {
                                "\($0.pod.id): \($0.blockers.map(\.description).joined(separator: "; "))"
                            }
                            .joined(separator: "\n    "))
                }
            })
    }

    /// The reason, who, when and how, as annotations on the Node (what `status` shows; rejoin clears them).
    static func marksStep(api: ClusterAPI, node: String, options: LifecycleOptions, after deps: [String]) -> Step {
        @Sendable func wanted(_ operation: String) -> [String: String] {
            [
                MaintenanceMarks.reason: options.reason ?? "", MaintenanceMarks.by: options.requestedBy,
                MaintenanceMarks.at: options.requestedAtText, MaintenanceMarks.method: options.method.rawValue,
                MaintenanceMarks.operation: operation,
            ]
        }
        return Step(
            marks(node), on: .node(node), after: deps,
            summary: "record the reason '\(options.reason ?? "")', \(options.requestedBy) and the time on the node",
            timeout: .seconds(60),
            check: { ctx in
                guard let n = try await api.node(node) else {
                    throw ClusterError.node(node: node, reason: "the API server does not list this node")
                }
                return wanted(ctx.operation).allSatisfy { n.annotations[$0.key] == $0.value }
            },
            apply: { ctx in
                guard let n = try await api.node(node) else {
                    throw ClusterError.node(node: node, reason: "the API server does not list this node")
                }
                var args = wanted(ctx.operation).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                // The GPUs it had, so the gate after the rejoin knows how many must come back.
                if let gpus = n.allocatableGPUs { args.append("\(MaintenanceMarks.gpus)=\(gpus)") }
                try await api.annotate(node: node, args)
                ctx.appendOutput(
                    "\(node): maintenance by \(options.requestedBy) at \(options.requestedAtText): \(options.reason ?? "")"
                )
            })
    }

    /// Cordon and drain with the real kubectl (`--ignore-daemonsets --delete-emptydir-data --timeout`), the
    /// policy applied at the timeout. Done when the node is cordoned and nothing but DaemonSet, mirror and
    /// finished pods is left on it.
    static func drainStep(api: ClusterAPI, node: String, options: LifecycleOptions, after deps: [String]) -> Step {
        Step(
            drain(node), on: .node(node), after: deps,
            summary:
                "kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout=\(options.timeoutSeconds)s (at the timeout: \(options.policy.rawValue))",
            timeout: .seconds(Int64(options.timeoutSeconds) * 2 + 300),
            check: { _ in
                guard let n = try await api.node(node), n.unschedulable else { return false }
                return try await api.podsToDrain(node: node).isEmpty
            },
            apply: { ctx in
                let first = try await api.drain(
                    node: node, timeoutSeconds: options.timeoutSeconds, disableEviction: false)
                ctx.appendOutput(String(first.output.suffix(4000)))
                if first.ok { return }
                if options.policy == .disableEviction {
                    ctx.appendOutput(
                        "still blocked after \(options.timeoutSeconds)s: deleting the remaining pods without the eviction API (budgets bypassed, --drain-policy disable-eviction)"
                    )
                    let second = try await api.drain(
                        node: node, timeoutSeconds: options.timeoutSeconds, disableEviction: true)
                    ctx.appendOutput(String(second.output.suffix(4000)))
                    if second.ok { return }
                }
                let sim = try? await api.drainSimulation(node: node)
                let left =
                    sim?.rows.filter { $0.action == .evict }.map {
                        "\($0.pod.id)\($0.blockers.isEmpty ? "" : ": " + $0.blockers.map(\.description).joined(separator: "; "))"
                    } ?? []
                let kubectlSaid = first.output.split(separator: "\n").filter {
                    $0.hasPrefix("error:") || $0.contains("cannot delete")
                }
                .prefix(3).joined(separator: "\n    ")
                throw ClusterError.node(
                    node: node,
                    reason:
                        "drain did not finish within \(options.timeoutSeconds)s (--drain-policy \(options.policy.rawValue)); the node stays cordoned with its reason"
                        + (kubectlSaid.isEmpty ? "" : ":\n    \(kubectlSaid)")
                        + (left.isEmpty ? "" : "\n  pods left:\n    " + left.joined(separator: "\n    ")))
            })
    }

    /// The Run:ai guide's maintenance: `kubectl taint nodes N runai=drain:NoExecute` (budgets not honoured),
    /// then wait until the pods that do not tolerate it are gone (up to the timeout).
    static func taintStep(api: ClusterAPI, node: String, options: LifecycleOptions, after deps: [String]) -> Step {
        let taint = MaintenanceMarks.drainTaint
        return Step(
            self.taint(node), on: .node(node), after: deps,
            summary:
                "kubectl taint nodes \(node) \(taint.argument) (does NOT honour PodDisruptionBudgets), then wait for the pods to leave",
            timeout: .seconds(Int64(options.timeoutSeconds) + 120),
            check: { _ in
                guard let n = try await api.node(node), n.taints.contains(taint) else { return false }
                return try await api.podsToDrain(node: node).isEmpty
            },
            apply: { ctx in
                try await api.taint(node: node, [taint.argument])
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(options.timeoutSeconds)
                var left = try await api.podsToDrain(node: node)
                while !left.isEmpty && clock.now < deadline {
                    try await Task.sleep(for: .seconds(2))
                    left = try await api.podsToDrain(node: node)
                }
                if !left.isEmpty {
                    throw ClusterError.node(
                        node: node,
                        reason:
                            "tainted \(taint.argument), but after \(options.timeoutSeconds)s these pods are still there (they tolerate the taint): \(left.map(\.id).joined(separator: ", "))"
                    )
                }
                ctx.appendOutput("\(node): tainted \(taint.argument); no pods left but DaemonSet and static pods")
            })
    }

    /// The GPU part of the health gate: a node that had GPUs allocatable when it was drained must have as
    /// many again. The deeper validation (fabric manager, `dcgmi diag -r 1`) of the GPU stack plugs in here
    /// (`gpuValidation`): it gets the node and its runner and throws what fails.
    static func gpuGateStep(
        api: ClusterAPI, host: SiteInventory.Host, after deps: [String],
        gpuValidation: (@Sendable (SiteInventory.Host) async throws -> String?)? = nil
    ) -> Step {
        let node = host.name
        return Step(
            gpuGate(node), on: .node(node), after: deps,
            summary: "GPU health gate: the node's nvidia.com/gpu allocatable back to what it had before the drain",
            timeout: .seconds(360),
            check: { _ in false },
            apply: { ctx in
                guard let n = try await api.node(node) else {
                    throw ClusterError.node(node: node, reason: "the API server does not list this node")
                }
                let before = n.annotations[MaintenanceMarks.gpus].flatMap { Int($0) }
                if let before, before > 0 {
                    let clock = ContinuousClock()
                    let deadline = clock.now + .seconds(300)
                    var now = n.allocatableGPUs ?? 0
                    while now < before && clock.now < deadline {
                        try await Task.sleep(for: .seconds(3))
                        now = try await api.node(node)?.allocatableGPUs ?? 0
                    }
                    guard now >= before else {
                        throw ClusterError.node(
                            node: node,
                            reason:
                                "\(now) of its \(before) GPUs are allocatable after the rejoin; the node stays cordoned"
                        )
                    }
                    ctx.appendOutput("\(node): \(now) GPUs allocatable, as before the drain")
                } else {
                    ctx.appendOutput(
                        "\(node): no GPU count recorded before (no GPU stack, or not drained by appliance): nothing to compare"
                    )
                }
                if let gpuValidation, let note = try await gpuValidation(host) { ctx.appendOutput(note) }
            })
    }

    /// Uncordon, remove the Run:ai drain taint, clear the maintenance marks (saying what they were).
    static func uncordonStep(api: ClusterAPI, node: String, after deps: [String]) -> Step {
        let taint = MaintenanceMarks.drainTaint
        return Step(
            uncordon(node), on: .node(node), after: deps,
            summary: "uncordon, remove \(taint.argument) if present, clear the maintenance reason",
            timeout: .seconds(120),
            check: { _ in
                guard let n = try await api.node(node) else { return false }
                return !n.unschedulable && !n.taints.contains(taint)
                    && !MaintenanceMarks.all.contains { n.annotations[$0] != nil }
            },
            apply: { ctx in
                guard let n = try await api.node(node) else {
                    throw ClusterError.node(node: node, reason: "the API server does not list this node")
                }
                if n.unschedulable { try await api.cordon(node: node, false) }
                if n.taints.contains(taint) { try await api.taint(node: node, ["\(taint.key):\(taint.effect)-"]) }
                let present = (MaintenanceMarks.all + [MaintenanceMarks.gpus]).filter { n.annotations[$0] != nil }
                try await api.annotate(node: node, present.map { "\($0)-" })
                if let reason = n.annotations[MaintenanceMarks.reason] {
                    ctx.appendOutput(
                        "\(node): cleared maintenance '\(reason)' (by \(n.annotations[MaintenanceMarks.by] ?? "?") at \(n.annotations[MaintenanceMarks.at] ?? "?"))"
                    )
                }
            })
    }
}
