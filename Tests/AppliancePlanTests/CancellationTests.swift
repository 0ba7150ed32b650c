import Foundation
import Testing

@testable import AppliancePlan

/// Ctrl-C semantics of the executor that the crash tests of `appliance stage` rely on.
@Suite("cancellation")
struct CancellationTests {
    /// A step whose apply swallows cancellation (as a task group collecting per-node errors does) and returns
    /// normally is not journaled done: a resume runs its check again and applies it when the check says so.
    @Test("an apply that returns while the run is cancelled is journaled interrupted, then checked on resume")
    func swallowedCancellationIsNotDone() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let recorder = Recorder()
        let finished = Locked(false)
        func plan() throws -> Plan {
            try Plan(steps: [
                Step(
                    "transfer", on: .cluster,
                    check: { _ in
                        recorder.note("transfer", .check)
                        return finished.value
                    },
                    apply: { _ in
                        // The first apply waits to be cancelled, swallows the cancellation and returns as if all
                        // went well, half-way; a later one completes.
                        recorder.note("transfer", .start)
                        if recorder.count("transfer", .start) == 1 { try? await Task.sleep(for: .seconds(30)) }
                        if !Task.isCancelled { finished.value = true }
                    }),
                Step("record", on: .node("a"), after: ["transfer"], apply: { _ in recorder.note("record", .start) }),
            ])
        }
        let journal = try Journal(stateDirectory: dir.url)
        let executor = PlanExecutor(plan: try plan(), journal: journal, logger: quiet)
        async let drained: Void = { for await _ in executor.events {} }()
        let task = Task { try await executor.run(.start(kind: "t", cluster: "c")) }
        while recorder.count("transfer", .start) == 0 { try await Task.sleep(for: .milliseconds(2)) }
        task.cancel()
        let outcome = try await task.value
        await drained
        #expect(outcome.operation.state == .interrupted)
        #expect(outcome.steps == ["transfer": .interrupted, "record": .planned])
        #expect(try journal.latestStates(operation: outcome.operation.id)["transfer"]?.state == .interrupted)
        #expect(recorder.count("record", .start) == 0)

        // Resume: the interrupted step is checked (not trusted), applied again, and the rest follows.
        let resumed = PlanExecutor(plan: try plan(), journal: journal, logger: quiet)
        let (second, _) = try await runCollecting(resumed, .resume(operation: outcome.operation.id))
        #expect(second.operation.state == .succeeded)
        #expect(second.applied == ["transfer", "record"])
        #expect(recorder.count("transfer", .check) == 2)
        #expect(recorder.count("transfer", .start) == 2)
    }

    /// The `started` hook sees the operation's id before any step runs (the lock records it there).
    @Test("the started hook runs once with the operation id, before the first step")
    func startedHook() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let recorder = Recorder()
        let seen = Locked<[String]>([])
        let plan = try Plan(steps: [Step("one", on: .node("a"), apply: { _ in recorder.note("one", .start) })])
        let executor = PlanExecutor(plan: plan, journal: try Journal(stateDirectory: dir.url), logger: quiet)
        async let drained: Void = { for await _ in executor.events {} }()
        let outcome = try await executor.run(.start(kind: "t", cluster: "c")) { record in
            seen.value.append(record.id)
            recorder.note("started", .end)
        }
        await drained
        #expect(seen.value == [outcome.operation.id])
        #expect(try #require(recorder.seqs("started", .end).first) < (try #require(recorder.seqs("one", .start).first)))
    }
}

/// A value shared between a test and step closures.
final class Locked<T: Sendable>: @unchecked Sendable {
    // @unchecked: `stored` is only touched under `lock`.
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
