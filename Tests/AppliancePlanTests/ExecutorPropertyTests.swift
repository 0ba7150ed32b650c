import Foundation
import Testing

@testable import AppliancePlan

/// A randomly generated plan and the facts the generator decided (which steps are already done,
/// which fail), so tests can compute what the executor must do.
struct RandomPlanSpec {
    struct StepSpec {
        var name: String
        var target: StepTarget
        var deps: [String]
        var concurrent: Bool
        var alreadyDone: Bool
        var fails: Bool
        var sleepMicroseconds: Int
    }
    var steps: [StepSpec]
    var parallelism: Int

    init(seed: UInt64, failureRate: Double = 0) {
        var rng = SeededRandom(seed: seed)
        let count = Int.random(in: 4...28, using: &rng)
        let nodes = Int.random(in: 1...5, using: &rng)
        parallelism = Int.random(in: 1...5, using: &rng)
        steps = []
        for i in 0..<count {
            let target: StepTarget =
                Int.random(in: 0..<8, using: &rng) == 0 ? .cluster : .node("n\(Int.random(in: 0..<nodes, using: &rng))")
            var deps = Set<String>()
            if i > 0 {
                for _ in 0..<Int.random(in: 0...3, using: &rng) where Double.random(in: 0..<1, using: &rng) < 0.6 {
                    deps.insert(steps[Int.random(in: 0..<i, using: &rng)].name)
                }
            }
            steps.append(
                StepSpec(
                    name: "step-\(i)/\(target)", target: target, deps: deps.sorted(),
                    concurrent: Double.random(in: 0..<1, using: &rng) < 0.25,
                    alreadyDone: Double.random(in: 0..<1, using: &rng) < 0.1,
                    fails: Double.random(in: 0..<1, using: &rng) < failureRate,
                    sleepMicroseconds: Int.random(in: 0...3000, using: &rng)))
        }
    }

    func plan(policy: FailurePolicy, recorder: Recorder) throws -> Plan {
        try Plan(
            steps: steps.map { spec in
                Step(
                    spec.name, on: spec.target, after: spec.deps, concurrentOnNode: spec.concurrent,
                    check: { _ in
                        recorder.note(spec.name, .check)
                        return spec.alreadyDone
                    },
                    apply: { _ in
                        recorder.note(spec.name, .start)
                        try await Task.sleep(for: .microseconds(spec.sleepMicroseconds))
                        if spec.fails {
                            recorder.note(spec.name, .fail)
                            throw TestFailure("injected failure in \(spec.name)")
                        }
                        recorder.note(spec.name, .end)
                    })
            }, failurePolicy: policy, maxParallelism: parallelism)
    }

    /// What continueOtherNodes must produce: in dependency order, a step whose dependencies are all
    /// done runs (done, or failed when injected and not already done), otherwise it is skipped.
    var expectedUnderContinue: [String: StepState] {
        var states: [String: StepState] = [:]
        for s in steps {  // generated in dependency order
            if s.deps.allSatisfy({ states[$0] == .done }) {
                states[s.name] = s.fails && !s.alreadyDone ? .failed : .done
            } else {
                states[s.name] = .skipped
            }
        }
        return states
    }
}

@Suite("executor properties on random plans")
struct ExecutorPropertyTests {
    static let seeds: [UInt64] = Array(1...60)

    /// Interval of each step's apply on the recorder's sequence axis.
    private func intervals(_ recorder: Recorder) -> [String: ClosedRange<Int>] {
        var start: [String: Int] = [:]
        var result: [String: ClosedRange<Int>] = [:]
        for e in recorder.all {
            switch e.kind {
            case .start: start[e.step] = e.seq
            case .end, .fail: if let s = start[e.step] { result[e.step] = s...e.seq }
            default: break
            }
        }
        return result
    }

    private func checkSchedulingInvariants(_ spec: RandomPlanSpec, _ recorder: Recorder) {
        let spans = intervals(recorder)
        let byName = Dictionary(uniqueKeysWithValues: spec.steps.map { ($0.name, $0) })
        for s in spec.steps {
            guard let span = spans[s.name] else { continue }
            // Dependencies respected: a step starts only after each dependency's apply finished.
            for d in s.deps {
                if let depSpan = spans[d] {
                    #expect(
                        span.lowerBound > depSpan.upperBound, "\(s.name) started before its dependency \(d) finished")
                }
                // And after the dependency's check at least (already-done dependencies have no apply).
                if let depCheck = recorder.seqs(d, .check).last {
                    #expect(span.lowerBound > depCheck, "\(s.name) started before \(d) was checked")
                }
            }
            // Per-node serialisation: no overlap with another step on the same target unless both are concurrent.
            for other in spec.steps where other.name < s.name && other.target == s.target {
                guard let otherSpan = spans[other.name] else { continue }
                if s.concurrent && other.concurrent { continue }
                #expect(!span.overlaps(otherSpan), "\(s.name) and \(other.name) overlapped on \(s.target)")
            }
            _ = byName
        }
        // Global bound.
        var active = 0
        var peak = 0
        for e in recorder.all {
            if e.kind == .start { active += 1 }
            if e.kind == .end || e.kind == .fail { active -= 1 }
            peak = max(peak, active)
        }
        #expect(peak <= spec.parallelism, "peak \(peak) steps in flight, bound \(spec.parallelism)")
    }

    @Test("dependencies, per-node serialisation and the parallelism bound hold", arguments: seeds)
    func invariants(seed: UInt64) async throws {
        let spec = RandomPlanSpec(seed: seed)
        let recorder = Recorder()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let executor = PlanExecutor(
            plan: try spec.plan(policy: .stopAll, recorder: recorder), journal: journal, logger: quiet)
        let (outcome, events) = try await runCollecting(executor, .start(kind: "test", cluster: "c"))

        #expect(outcome.operation.state == .succeeded)
        #expect(outcome.exitStatus == 0)
        for s in spec.steps {
            #expect(outcome.steps[s.name] == .done)
            #expect(recorder.count(s.name, .check) == 1)
            #expect(
                recorder.count(s.name, .start) == (s.alreadyDone ? 0 : 1), "\(s.name) applied the wrong number of times"
            )
        }
        checkSchedulingInvariants(spec, recorder)
        #expect(Set(outcome.applied) == Set(spec.steps.filter { !$0.alreadyDone }.map(\.name)))
        #expect(events.filter { $0.kind == .stepPlanned }.count == spec.steps.count)
        #expect(events.filter { $0.kind == .stepFinished }.count == spec.steps.count)
        #expect(events.last?.kind == .operationFinished)
        let latest = try journal.latestStates(operation: outcome.operation.id)
        #expect(latest.count == spec.steps.count)
        #expect(latest.values.allSatisfy { $0.state == .done })
    }

    @Test("continueOtherNodes runs what it can and skips exactly the dependents of failures", arguments: seeds)
    func continueOtherNodes(seed: UInt64) async throws {
        let spec = RandomPlanSpec(seed: seed &* 7919, failureRate: 0.15)
        let recorder = Recorder()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let executor = PlanExecutor(
            plan: try spec.plan(policy: .continueOtherNodes, recorder: recorder), journal: journal, logger: quiet)
        let (outcome, events) = try await runCollecting(executor, .start(kind: "test", cluster: "c"))

        let expected = spec.expectedUnderContinue
        #expect(outcome.steps == expected)
        for (name, state) in expected where state == .skipped {
            #expect(recorder.count(name, .check) == 0, "skipped step \(name) was launched")
            guard case .dependencyFailed? = outcome.errors[name] else {
                Issue.record("skipped step \(name) lacks a dependencyFailed error")
                continue
            }
        }
        let anyFailed = expected.values.contains(.failed)
        #expect(outcome.operation.state == (anyFailed ? .failed : .succeeded))
        #expect(events.filter { $0.kind == .stepSkipped }.count == expected.values.filter { $0 == .skipped }.count)
        checkSchedulingInvariants(spec, recorder)
        let latest = try journal.latestStates(operation: outcome.operation.id)
        for (name, state) in expected { #expect(latest[name]?.state == state, "journal state of \(name)") }
    }

    @Test("stopAll launches nothing new after the first failure", arguments: seeds)
    func stopAll(seed: UInt64) async throws {
        let spec = RandomPlanSpec(seed: seed &* 104_729, failureRate: 0.15)
        let recorder = Recorder()
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let executor = PlanExecutor(
            plan: try spec.plan(policy: .stopAll, recorder: recorder), journal: journal, logger: quiet)
        let (outcome, _) = try await runCollecting(executor, .start(kind: "test", cluster: "c"))

        checkSchedulingInvariants(spec, recorder)
        let failures = recorder.all.filter { $0.kind == .fail }
        guard let firstFailure = failures.first else {
            #expect(outcome.operation.state == .succeeded)
            return
        }
        #expect(outcome.operation.state == .failed)
        // Steps launched after the failure can only be those already in flight when it happened
        // (launched before the executor saw it): at most parallelism - 1 of them.
        let launchedAfter = Set(recorder.all.filter { $0.kind == .check && $0.seq > firstFailure.seq }.map(\.step))
        #expect(launchedAfter.count <= spec.parallelism - 1, "launched after the failure: \(launchedAfter.sorted())")
        for s in spec.steps {
            let state = outcome.steps[s.name]
            if recorder.count(s.name, .check) == 0 {
                #expect(
                    state == .skipped,
                    "\(s.name) never ran and should be reported skipped, is \(String(describing: state))")
            } else {
                #expect(state == .done || state == .failed)
            }
        }
        if spec.parallelism == 1 {
            #expect(launchedAfter.isEmpty)
        }
    }
}

@Suite("executor behaviour")
struct ExecutorBehaviourTests {
    private func journal(_ dir: TemporaryDirectory) throws -> Journal { try Journal(stateDirectory: dir.url) }

    @Test("a step is retried until it succeeds within its attempts", arguments: [1, 2, 3])
    func retries(failuresBeforeSuccess: Int) async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let recorder = Recorder()
        let plan = try Plan(steps: [
            Step(
                "flaky", on: .node("a"), retry: RetryPolicy(attempts: 3, backoff: .constant(.milliseconds(1))),
                apply: { context in
                    recorder.note("flaky", .start)
                    if context.attempt <= failuresBeforeSuccess {
                        throw TestFailure("attempt \(context.attempt) fails")
                    }
                })
        ])
        let journal = try journal(dir)
        let (outcome, events) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "t", cluster: "c"))
        let expectSuccess = failuresBeforeSuccess < 3
        #expect(outcome.steps["flaky"] == (expectSuccess ? .done : .failed))
        #expect(recorder.count("flaky", .start) == min(failuresBeforeSuccess + 1, 3))
        let failedAttempts = try journal.transitions(operation: outcome.operation.id).filter { $0.state == .failed }
        #expect(failedAttempts.map(\.attempt) == Array(1...min(failuresBeforeSuccess, 3)))
        #expect(events.filter { $0.state == "retrying" }.count == min(failuresBeforeSuccess, 2))
        if !expectSuccess {
            guard case .stepFailed(_, _, let attempts, _)? = outcome.errors["flaky"] else {
                Issue.record("expected stepFailed, got \(String(describing: outcome.errors["flaky"]))")
                return
            }
            #expect(attempts == 3)
        }
    }

    @Test("exponential backoff grows and is capped")
    func backoff() {
        let policy = RetryPolicy(
            attempts: 5, backoff: .exponential(initial: .milliseconds(100), multiplier: 2, maximum: .milliseconds(300)))
        #expect(policy.delay(afterAttempt: 1) == .milliseconds(100))
        #expect(policy.delay(afterAttempt: 2) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 3) == .milliseconds(300))
    }

    @Test("a step that overruns its timeout is cancelled and fails; a retry can still succeed")
    func timeouts() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let cancelled = Recorder()
        let plan = try Plan(
            steps: [
                Step(
                    "hangs", on: .node("a"), timeout: .seconds(2),
                    apply: { _ in
                        do { try await Task.sleep(for: .seconds(300)) } catch {
                            cancelled.note("hangs", .fail)
                            throw error
                        }
                    }),
                Step(
                    "slow-then-fast", on: .node("b"), timeout: .seconds(2), retry: RetryPolicy(attempts: 2),
                    apply: { context in
                        if context.attempt == 1 { try await Task.sleep(for: .seconds(300)) }
                    }),
                Step("after-hang", on: .node("a"), after: ["hangs"], apply: { _ in }),
            ], failurePolicy: .continueOtherNodes)
        let clock = ContinuousClock()
        let start = clock.now
        let (outcome, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: try journal(dir), logger: quiet), .start(kind: "t", cluster: "c"))
        // Far below the 300 s the steps would sleep: on a loaded 2-core CI machine every other suite shares the
        // two threads of the task pool, and the 2 s timeouts have been seen to end after 62 s there.
        #expect(clock.now - start < .seconds(200), "the timed-out step was not cancelled")
        #expect(cancelled.count("hangs", .fail) == 1)
        guard case .stepTimedOut(let step, let node, _)? = outcome.errors["hangs"] else {
            Issue.record("expected stepTimedOut, got \(String(describing: outcome.errors["hangs"]))")
            return
        }
        #expect(step == "hangs" && node == "a")
        #expect(outcome.steps["slow-then-fast"] == .done)
        #expect(outcome.steps["after-hang"] == .skipped)
    }

    @Test("cancelling the run marks steps in flight interrupted, leaves the rest planned, exit status 130")
    func cancellation() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let recorder = Recorder()
        let plan = try Plan(steps: [
            Step("first", on: .node("a"), apply: { _ in recorder.note("first", .end) }),
            Step(
                "long", on: .node("a"), after: ["first"],
                apply: { _ in
                    recorder.note("long", .start)
                    try await Task.sleep(for: .seconds(30))
                }),
            Step("later", on: .node("a"), after: ["long"], apply: { _ in recorder.note("later", .start) }),
        ])
        let journal = try journal(dir)
        let executor = PlanExecutor(plan: plan, journal: journal, logger: quiet)
        // Events are drained here, outside the task that is cancelled.
        async let collected: [PlanEvent] = {
            var all: [PlanEvent] = []
            for await e in executor.events { all.append(e) }
            return all
        }()
        let task = Task { try await executor.run(.start(kind: "t", cluster: "c")) }
        while recorder.count("long", .start) == 0 { try await Task.sleep(for: .milliseconds(2)) }
        task.cancel()
        let outcome = try await task.value
        let events = await collected
        #expect(outcome.operation.state == .interrupted)
        #expect(outcome.exitStatus == 130)
        #expect(outcome.steps == ["first": .done, "long": .interrupted, "later": .planned])
        #expect(recorder.count("later", .start) == 0)
        #expect(events.contains { $0.kind == .stepFailed && $0.state == "interrupted" && $0.step == "long" })
        let latest = try journal.latestStates(operation: outcome.operation.id)
        #expect(latest["long"]?.state == .interrupted)
        #expect(latest["later"]?.state == .planned)
        #expect(try journal.operation(outcome.operation.id)?.state == .interrupted)
    }

    @Test("progress and output reach the events and the journal")
    func progressAndOutput() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let plan = try Plan(steps: [
            Step(
                "stage/a", on: .node("a"),
                apply: { context in
                    context.reportProgress(bytesDone: 0, bytesTotal: 1000)
                    context.appendOutput(String(repeating: "x", count: 10_000))
                    context.appendOutput("tail-end\n")
                    context.reportProgress(bytesDone: 1000, bytesTotal: 1000)
                })
        ])
        let journal = try journal(dir)
        let (outcome, events) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "t", cluster: "c"))
        let progress = events.filter { $0.kind == .stepProgress }
        #expect(progress.first?.bytesDone == 0)
        #expect(progress.last?.bytesDone == 1000)
        #expect(progress.last?.bytesTotal == 1000)
        let done = try #require(try journal.latestStates(operation: outcome.operation.id)["stage/a"])
        let tail = try #require(done.outputTail)
        #expect(tail.utf8.count <= Journal.outputTailLimit)
        #expect(tail.hasSuffix("tail-end\n"))
    }
}
