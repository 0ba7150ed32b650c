import AppliancePlan
import Foundation
import Logging
import Testing

@testable import ApplianceOperations

/// `plan resume` of an upgrade after `plan rollback` of its node in flight (issue 14), with the plan engine and
/// a journal: the rollback reopens the node's steps, so the resume runs that node's upgrade from its start.
@Suite struct UpgradeResumeTests {
    /// Two workers' package versions and how often each step's apply ran.
    final class Cluster: @unchecked Sendable {
        // @unchecked: every field is read and written under `lock`.
        private let lock = NSLock()
        private var versions: [String: String] = ["w1": "1.34", "w2": "1.34"]
        private var applied: [String: Int] = [:]
        var gpuFault = true

        func version(_ n: String) -> String { lock.withLock { versions[n] ?? "" } }
        func set(_ n: String, _ v: String) { lock.withLock { versions[n] = v } }
        func ran(_ step: String) { lock.withLock { applied[step, default: 0] += 1 } }
        func runs(_ step: String) -> Int { lock.withLock { applied[step] ?? 0 } }
        var faulty: Bool { lock.withLock { gpuFault } }
        func fix() { lock.withLock { gpuFault = false } }
    }

    /// A worker's upgrade in outline, with the real step names: packages (done when at 1.35), then the gate
    /// (fails while the GPU fault lasts, and when the packages are not at 1.35), then uncordon.
    static func plan(_ c: Cluster) throws -> Plan {
        var steps: [Step] = []
        var previous: [String] = []
        for n in ["w1", "w2"] {
            let stage = "stage/\(n)"
            let packages = UpgradePlan.packages(n)
            let gate = LifecycleSteps.gpuGate(n)
            let uncordon = LifecycleSteps.uncordon(n)
            steps.append(
                Step(stage, on: .node(n), check: { _ in true }, apply: { _ in c.ran(stage) }))
            steps.append(
                Step(
                    packages, on: .node(n), after: previous + [stage],
                    check: { _ in c.version(n) == "1.35" },
                    apply: { _ in
                        c.ran(packages)
                        c.set(n, "1.35")
                    }))
            steps.append(
                Step(
                    gate, on: .node(n), after: [packages],
                    apply: { _ in
                        c.ran(gate)
                        if n == "w2" && c.faulty { throw TestError("\(n): GPU validation failed") }
                        if c.version(n) != "1.35" { throw TestError("\(n): kubelet at \(c.version(n)), not 1.35") }
                    }))
            steps.append(Step(uncordon, on: .node(n), after: [gate], apply: { _ in c.ran(uncordon) }))
            previous = [uncordon]
        }
        return try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: 1)
    }

    struct TestError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// The failed upgrade, then the node in flight rolled back (its packages back at 1.34).
    func failedThenRolledBack(reopen: Bool) async throws -> (Journal, Cluster, String, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-resume-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let journal = try Journal(stateDirectory: dir)
        let c = Cluster()
        let first = try await PlanExecutor(plan: try Self.plan(c), journal: journal, logger: Self.quiet)
            .run(.start(kind: UpgradeOperation.kind, cluster: "lab"))
        #expect(first.operation.state == .failed)
        #expect(try UpgradeOperation.nodeInFlight(journal, operation: first.operation.id) == "w2")
        #expect(c.version("w2") == "1.35", "the failed gate came after w2's packages")
        c.set("w2", "1.34")  // what `plan rollback` does to the node in flight
        c.fix()
        if reopen {
            let reopened = try UpgradeOperation.reopen(
                journal, upgrade: first.operation.id, node: "w2", rollback: "rollback-1")
            #expect(Set(reopened) == [UpgradePlan.packages("w2")], "w2's done steps but its staging")
        }
        return (journal, c, first.operation.id, dir)
    }

    @Test func resumeAfterTheRollbackRunsTheNodesUpgradeFromItsStartAndConverges() async throws {
        let (journal, c, id, dir) = try await failedThenRolledBack(reopen: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let latest = try journal.latestStates(operation: id)
        #expect(latest[UpgradePlan.packages("w2")]?.state == .undone)
        #expect(latest[UpgradePlan.packages("w2")]?.error?.contains("rollback-1") == true)
        #expect(latest[UpgradePlan.packages("w1")]?.state == .done, "the other worker's steps stay done")
        #expect(latest["stage/w2"]?.state == .done)

        let resumed = try await PlanExecutor(plan: try Self.plan(c), journal: journal, logger: Self.quiet)
            .run(.resume(operation: id))
        #expect(resumed.operation.state == .succeeded, "\(resumed.errors)")
        #expect(c.version("w2") == "1.35" && c.version("w1") == "1.35")
        #expect(c.runs(UpgradePlan.packages("w2")) == 2, "w2's packages upgraded again after the rollback")
        #expect(c.runs(UpgradePlan.packages("w1")) == 1, "w1 is not touched again")
        #expect(c.runs(LifecycleSteps.uncordon("w1")) == 1)
        #expect(c.runs(LifecycleSteps.uncordon("w2")) == 1)
        #expect(c.runs("stage/w2") == 0, "staging is checked, not repeated")
        #expect(try journal.latestResumableOperation(cluster: "lab") == nil)
    }

    @Test func withoutReopeningTheResumeTrustsTheRolledBackPackagesAndFails() async throws {
        // The behaviour before the fix: the journal still says w2's packages are done, the gate then finds
        // the node at the previous version and the resume cannot converge.
        let (journal, c, id, dir) = try await failedThenRolledBack(reopen: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let resumed = try await PlanExecutor(plan: try Self.plan(c), journal: journal, logger: Self.quiet)
            .run(.resume(operation: id))
        #expect(resumed.operation.state == .failed)
        #expect(c.version("w2") == "1.34")
        #expect(resumed.errors[LifecycleSteps.gpuGate("w2")]?.description.contains("kubelet at 1.34") == true)
    }

    @Test func theRollbackRecordsWhichUpgradeItReopens() throws {
        var o = UpgradeOptions(fromVersion: "2026.11.0-lab")
        o.rollbackOf = "upgrade-20261201-x"
        let data = try JSONEncoder().encode(o)
        #expect(try JSONDecoder().decode(UpgradeOptions.self, from: data).rollbackOf == "upgrade-20261201-x")
        // Parameters saved by the previous version (no rollbackOf) still load.
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["rollbackOf"] = nil
        let old = try JSONSerialization.data(withJSONObject: object)
        #expect(try JSONDecoder().decode(UpgradeOptions.self, from: old).rollbackOf == nil)
    }
}
