import ApplianceBundle
import AppliancePlan

/// The staging operation as a plan: one cluster-wide transfer step, then per node a record step that
/// writes the bundle's manifest once every blob the node needs is in its store.
///
/// Checks make a second run cheap: a node whose store already holds the bundle is not touched again.
public enum StagingPlan {
    public static let kind = "stage"

    public static func make(stager: Stager, nodes: [StagingNode], maxParallelism: Int) throws -> Plan {
        let version = stager.bundle.manifest.version
        var steps: [Step] = []
        steps.append(
            Step(
                "transfer", on: .cluster,
                summary: "send the blobs each node lacks (\(stager.bundle.manifest.blobs.count) blobs in the bundle)",
                check: { _ in false },
                apply: { ctx in
                    let total = stager.bundle.manifest.totalBlobBytes
                    ctx.appendOutput("staging \(version) to \(nodes.count) nodes")
                    try await stager.stage(progress: { done in ctx.reportProgress(bytesDone: done, bytesTotal: nil) })
                    let sent = await stager.bytesSent
                    ctx.appendOutput("sent \(sent) bytes of \(total) in the bundle")
                }))
        for node in nodes {
            steps.append(
                Step(
                    "record/\(node.name)", on: .node(node.name), after: ["transfer"],
                    summary: "check every blob on \(node.name) and record bundle \(version)",
                    check: { _ in
                        guard let inv = try? await stager.inventory(node) else { return false }
                        let need = await stager.required(for: node)
                        return inv.staged.contains(version) && need.keys.allSatisfy { inv.have.contains($0) }
                    },
                    apply: { _ in
                        if let failure = await stager.failures[node.name] {
                            throw ClusterError.node(node: node.name, reason: failure.reason)
                        }
                        try await stager.record(node)
                    }))
        }
        return try Plan(steps: steps, failurePolicy: .continueOtherNodes, maxParallelism: maxParallelism)
    }
}
