import ApplianceBundle
import AppliancePlan

/// The staging operation as a plan: a cluster step `transfer` (the chain relay, reporting the bytes this
/// host sends against what it must send) and, per node, a step `stage/<node>` that follows the same transfer
/// with that node's own bytes, rate and ETA, then records the bundle's manifest once every blob the node
/// needs is verified in its store.
///
/// The transfer runs once, whichever of these steps starts first; the others wait for it. On resume a
/// node step whose transfer step is already journaled done starts it again itself (a node that already
/// holds everything needs nothing and is not in the chain).
///
/// Checks make a second run cheap: a node whose store already holds the bundle is not touched again.
public enum StagingPlan {
    public static let kind = "stage"

    /// The step of node `name`.
    public static func stepName(node name: String) -> String { "stage/\(name)" }
    public static let transferStep = "transfer"

    public static func make(stager: Stager, nodes: [StagingNode], maxParallelism: Int) throws -> Plan {
        try Plan(
            steps: steps(stager: stager, nodes: nodes), failurePolicy: .continueOtherNodes,
            maxParallelism: maxParallelism)
    }

    /// The steps alone, for operations that stage as part of a larger plan (install).
    public static func steps(stager: Stager, nodes: [StagingNode]) -> [Step] {
        let version = stager.bundle.manifest.version
        let shared = SharedTransfer(stager: stager)
        var steps: [Step] = []
        steps.append(
            Step(
                transferStep, on: .cluster,
                summary: "send the blobs each node lacks (\(stager.bundle.manifest.blobs.count) blobs in the bundle)",
                check: { _ in false },
                apply: { ctx in
                    ctx.appendOutput("staging \(version) to \(nodes.count) nodes")
                    try await shared.run {
                        let p = stager.progress.withLock { $0 }
                        ctx.reportProgress(bytesDone: p.sent, bytesTotal: p.planned > 0 ? p.planned : nil)
                    }
                    let sent = await stager.bytesSent
                    ctx.appendOutput("sent \(sent) bytes of \(stager.bundle.manifest.totalBlobBytes) in the bundle")
                }))
        for node in nodes {
            steps.append(
                Step(
                    stepName(node: node.name), on: .node(node.name),
                    summary: "receive what \(node.name) lacks, check every blob on it, record bundle \(version)",
                    check: { _ in
                        guard let inv = try? await stager.inventory(node) else { return false }
                        let need = await stager.required(for: node)
                        return inv.staged.contains(version) && need.keys.allSatisfy { inv.have.contains($0) }
                    },
                    apply: { ctx in
                        try await shared.run {
                            guard let p = stager.progress.withLock({ $0.nodes[node.name] }), p.total > 0 else { return }
                            ctx.reportProgress(bytesDone: p.done, bytesTotal: p.total)
                        }
                        if let failure = await stager.failures[node.name] {
                            throw ClusterError.node(node: node.name, reason: failure.reason)
                        }
                        // The manifest is recorded only where this run saw every blob verified on the node.
                        guard await stager.stagedNodes.contains(node.name) else {
                            throw ClusterError.node(node: node.name, reason: "not every blob it needs is in its store")
                        }
                        try await stager.record(node)
                    }))
        }
        return steps
    }
}

/// The one chain transfer of a staging operation, shared by the plan's steps: started by the first
/// caller, awaited by all. Each caller reports progress (its `tick`) about four times a second while it
/// waits. Cancelling any caller (Ctrl-C cancels them all) cancels the transfer.
actor SharedTransfer {
    let stager: Stager
    private var task: Task<Void, Error>?

    init(stager: Stager) { self.stager = stager }

    private func start() -> Task<Void, Error> {
        if let task { return task }
        let stager = self.stager
        let t = Task { _ = try await stager.stage() }
        task = t
        return t
    }

    func run(tick: @escaping @Sendable () -> Void) async throws {
        let t = start()
        try await withTaskCancellationHandler {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        tick()
                        try? await Task.sleep(for: .milliseconds(250))
                    }
                }
                defer { group.cancelAll() }
                try await t.value
                tick()
            }
        } onCancel: {
            t.cancel()
        }
    }
}
