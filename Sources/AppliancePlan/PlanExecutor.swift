import Foundation
import Logging

/// What to run: a new operation, or the continuation of one in the journal.
public enum OperationRequest: Sendable {
    case start(kind: String, cluster: String, bundleDigest: String? = nil)
    /// Continue an operation: steps journaled `done` are trusted and not repeated; every other step
    /// (including those in flight when the last run stopped) runs `check` before anything is applied.
    case resume(operation: String)
}

/// The result of `run` or `rollback`.
public struct OperationOutcome: Sendable {
    public var operation: OperationRecord
    /// Final state of every step of the plan (`planned` for steps never reached).
    public var steps: [String: StepState]
    /// Why steps failed or were skipped.
    public var errors: [String: PlanError]
    /// Steps whose `apply` (or, for a rollback, `undo`) ran in this call.
    public var applied: [String]

    public var succeeded: Bool { operation.state == .succeeded || operation.state == .rolledBack }

    /// 0 succeeded, 130 interrupted (Ctrl-C), 1 otherwise.
    public var exitStatus: Int32 {
        switch operation.state {
        case .succeeded, .rolledBack: return 0
        case .interrupted: return 130
        default: return 1
        }
    }
}

/// Runs a plan: bounded parallelism, one step at a time per node unless `concurrentOnNode`, retries,
/// timeouts, the plan's failure policy, journal transitions and events.
///
/// Structured concurrency only: every step runs in a child task of one task group; cancelling the
/// task that calls `run` (Ctrl-C, see `SignalInterruption`) stops launching steps, cancels the steps in
/// flight (those that still finish are `done`, the others `interrupted`) and returns an `interrupted`
/// outcome. One executor serves one `run` or `rollback`: `events` finishes when that call returns.
public final class PlanExecutor: Sendable {
    public let plan: Plan
    public let journal: Journal
    public let redactor: Redactor
    /// Single consumer. Finished when `run`/`rollback` returns.
    public let events: AsyncStream<PlanEvent>

    private let continuation: AsyncStream<PlanEvent>.Continuation
    private let mirror: (any JournalMirror)?
    private let logger: Logger

    public init(plan: Plan, journal: Journal, mirror: (any JournalMirror)? = nil, logger: Logger? = nil) {
        self.plan = plan
        self.journal = journal
        self.redactor = journal.redactor
        self.mirror = mirror
        self.logger = logger ?? Logger(label: "appliance.plan")
        (events, continuation) = AsyncStream.makeStream(of: PlanEvent.self, bufferingPolicy: .unbounded)
    }

    // MARK: Run

    /// `started` is called once the operation is in the journal (with its id), before any step runs.
    public func run(
        _ request: OperationRequest, started: @Sendable (OperationRecord) async -> Void = { _ in }
    ) async throws -> OperationOutcome {
        defer { continuation.finish() }
        let operation: OperationRecord
        var trustedDone = Set<String>()
        switch request {
        case .start(let kind, let cluster, let digest):
            operation = try await offPool { [journal] in
                try journal.beginOperation(kind: kind, cluster: cluster, bundleDigest: digest)
            }
            try await journal.record(
                plan.steps.map {
                    StepTransition(operation: operation.id, step: $0.name, node: $0.target.node, state: .planned)
                })
        case .resume(let id):
            guard var record = try await offPool({ [journal] in try journal.operation(id) }) else {
                throw PlanError.operationNotFound(id)
            }
            guard record.state.isResumable else {
                throw PlanError.operationNotResumable(id: id, state: record.state.rawValue)
            }
            let latest = try await offPool { [journal] in try journal.latestStates(operation: id) }
            let unknown = latest.keys.filter { plan[$0] == nil }
            if !unknown.isEmpty { throw PlanError.resumeMismatch(operation: id, unknownSteps: unknown) }
            var transitions: [StepTransition] = []
            for step in plan.steps {
                switch latest[step.name]?.state {
                case .done?:
                    trustedDone.insert(step.name)
                case .running?:
                    transitions.append(
                        StepTransition(
                            operation: id, step: step.name, node: step.target.node, state: .interrupted,
                            attempt: latest[step.name]?.attempt ?? 0,
                            error: "in flight when the previous run stopped; checked again on resume"))
                case nil:
                    transitions.append(
                        StepTransition(operation: id, step: step.name, node: step.target.node, state: .planned))
                default:
                    break
                }
            }
            try await journal.record(transitions)
            try await journal.setOperationState(id, .running)
            record.state = .running
            record.finishedAt = nil
            operation = record
        }
        await started(operation)
        await mirrorJournal(operation.id)
        logger.info("operation started", metadata: ["operation": "\(operation.id)", "kind": "\(operation.kind)"])

        for step in plan.steps {
            emit(.stepPlanned, operation.id, step, state: StepState.planned.rawValue)
        }
        for step in plan.steps where trustedDone.contains(step.name) {
            emit(.stepFinished, operation.id, step, message: "done in an earlier run", state: StepState.done.rawValue)
        }

        var outcome = await schedule(operation: operation, trustedDone: trustedDone)

        let final: OperationState
        if Task.isCancelled || outcome.steps.values.contains(.interrupted) {
            final = .interrupted
        } else if outcome.steps.values.allSatisfy({ $0 == .done }) {
            final = .succeeded
        } else {
            final = .failed
        }
        let finishedAt = Date()
        try await journal.setOperationState(operation.id, final, time: finishedAt)
        await mirrorJournal(operation.id)
        outcome.operation.state = final
        outcome.operation.finishedAt = finishedAt
        continuation.yield(
            PlanEvent(
                kind: .operationFinished, operation: operation.id, message: summary(outcome), state: final.rawValue))
        logger.info("operation finished", metadata: ["operation": "\(operation.id)", "state": "\(final.rawValue)"])
        return outcome
    }

    private enum Phase { case pending, running, done, failed, skipped, interrupted }

    private struct StepResult: Sendable {
        enum Kind: Sendable { case done(applied: Bool), failed(PlanError), interrupted }
        var index: Int
        var kind: Kind
    }

    private func schedule(operation: OperationRecord, trustedDone: Set<String>) async -> OperationOutcome {
        let steps = plan.steps
        var phase = steps.map { trustedDone.contains($0.name) ? Phase.done : .pending }
        var errors: [String: PlanError] = [:]
        var applied: [String] = []
        var exclusiveOn: [StepTarget: Int] = [:]
        var sharedOn: [StepTarget: Int] = [:]
        var inFlight = 0
        var stopAfter: String?  // the first failed step under .stopAll

        let depIndices = steps.map { s in Set(s.dependencies.compactMap { plan.index[$0] }) }

        // Marks the pending transitive dependents of a failed step skipped.
        func skipDependents(of failed: Int) async {
            var frontier = [failed]
            var toSkip: [Int] = []
            while let current = frontier.popLast() {
                for (j, deps) in depIndices.enumerated() where deps.contains(current) && phase[j] == .pending {
                    phase[j] = .skipped
                    toSkip.append(j)
                    frontier.append(j)
                }
            }
            for j in toSkip.sorted() {
                let step = steps[j]
                let reason = steps[failed].name
                errors[step.name] = .dependencyFailed(step: step.name, node: step.target.node, dependency: reason)
                await skip(step, operation: operation.id, reason: "dependency '\(reason)' did not complete")
            }
        }

        await withTaskGroup(of: StepResult.self) { group in
            while true {
                if stopAfter == nil && !Task.isCancelled {
                    for (i, step) in steps.enumerated() where inFlight < plan.maxParallelism && phase[i] == .pending {
                        guard depIndices[i].allSatisfy({ phase[$0] == .done }) else { continue }
                        let target = step.target
                        if exclusiveOn[target, default: 0] > 0 { continue }
                        if !step.concurrentOnNode && sharedOn[target, default: 0] > 0 { continue }
                        if step.concurrentOnNode {
                            sharedOn[target, default: 0] += 1
                        } else {
                            exclusiveOn[target, default: 0] += 1
                        }
                        phase[i] = .running
                        inFlight += 1
                        group.addTask { await self.runStep(index: i, operation: operation.id) }
                    }
                }
                if inFlight == 0 { break }
                guard let result = await group.next() else { break }
                inFlight -= 1
                let step = steps[result.index]
                if step.concurrentOnNode {
                    sharedOn[step.target, default: 1] -= 1
                } else {
                    exclusiveOn[step.target, default: 1] -= 1
                }
                switch result.kind {
                case .done(let didApply):
                    phase[result.index] = .done
                    if didApply { applied.append(step.name) }
                case .interrupted:
                    phase[result.index] = .interrupted
                    errors[step.name] = .stepInterrupted(step: step.name, node: step.target.node)
                case .failed(let error):
                    phase[result.index] = .failed
                    errors[step.name] = error
                    switch plan.failurePolicy {
                    case .stopAll:
                        if stopAfter == nil { stopAfter = step.name }
                    case .continueOtherNodes:
                        await skipDependents(of: result.index)
                    }
                }
            }
        }

        // What never started: after a stopAll failure it is skipped; after Ctrl-C it stays planned so a
        // resume picks it up.
        if let failed = stopAfter, !Task.isCancelled {
            for (i, step) in steps.enumerated() where phase[i] == .pending {
                phase[i] = .skipped
                errors[step.name] = .stoppedAfterFailure(step: step.name, node: step.target.node, failedStep: failed)
                await skip(step, operation: operation.id, reason: "not started because '\(failed)' failed")
            }
        }

        var states: [String: StepState] = [:]
        for (i, step) in steps.enumerated() {
            switch phase[i] {
            case .pending, .running: states[step.name] = .planned
            case .done: states[step.name] = .done
            case .failed: states[step.name] = .failed
            case .skipped: states[step.name] = .skipped
            case .interrupted: states[step.name] = .interrupted
            }
        }
        return OperationOutcome(operation: operation, steps: states, errors: errors, applied: applied)
    }

    private func skip(_ step: Step, operation: String, reason: String) async {
        await journalWrite(
            StepTransition(
                operation: operation, step: step.name, node: step.target.node, state: .skipped, error: reason))
        emit(.stepSkipped, operation, step, message: reason, state: StepState.skipped.rawValue)
    }

    private enum AttemptResult: Sendable { case alreadyDone, applied }

    /// One step with its retries. Never throws: failures come back as results.
    private func runStep(index: Int, operation: String) async -> StepResult {
        let step = plan.steps[index]
        let node = step.target.node
        var log = logger
        log[metadataKey: "step"] = "\(step.name)"
        if let node { log[metadataKey: "host"] = "\(node)" }

        var attempt = 0
        while true {
            attempt += 1
            emit(.stepStarted, operation, step, attempt: attempt, state: StepState.running.rawValue)
            let context = StepContext(
                step: step.name, target: step.target, attempt: attempt, operation: operation, redactor: redactor,
                emit: { [continuation] in continuation.yield($0) })
            do {
                // The timeout bounds `check` and `apply` each; the journal write between them is not
                // the step's time.
                let result: AttemptResult
                if try await withTimeout(step.timeout, step: step, { try await step.check(context) }) {
                    result = .alreadyDone
                } else {
                    try await journal.record(
                        StepTransition(
                            operation: operation, step: step.name, node: node, state: .running, attempt: attempt))
                    try await withTimeout(step.timeout, step: step) { try await step.apply(context) }
                    // An apply that returns while the run is being cancelled may have swallowed the
                    // cancellation and stopped half-way (a task group that collects per-node errors does):
                    // it is not trusted as done. It is journaled `interrupted`, so a resume runs its
                    // `check` again before anything is redone.
                    if Task.isCancelled { throw CancellationError() }
                    result = .applied
                }
                await journalWrite(
                    StepTransition(
                        operation: operation, step: step.name, node: node, state: .done, attempt: attempt,
                        outputTail: nonEmpty(context.outputTail)))
                emit(
                    .stepFinished, operation, step, attempt: attempt,
                    message: result == .alreadyDone ? "already done" : nil, state: StepState.done.rawValue)
                return StepResult(index: index, kind: .done(applied: result == .applied))
            } catch {
                let tail = nonEmpty(context.outputTail)
                if Task.isCancelled {
                    await journalWrite(
                        StepTransition(
                            operation: operation, step: step.name, node: node, state: .interrupted, attempt: attempt,
                            outputTail: tail, error: "interrupted"))
                    emit(
                        .stepFailed, operation, step, attempt: attempt, message: "interrupted",
                        state: StepState.interrupted.rawValue)
                    log.notice("step interrupted")
                    return StepResult(index: index, kind: .interrupted)
                }
                let message = redactor.redact(describe(error))
                await journalWrite(
                    StepTransition(
                        operation: operation, step: step.name, node: node, state: .failed, attempt: attempt,
                        outputTail: tail, error: message))
                if attempt < step.retry.attempts {
                    let delay = step.retry.delay(afterAttempt: attempt)
                    emit(
                        .stepFailed, operation, step, attempt: attempt,
                        message: "\(message); retrying (attempt \(attempt + 1) of \(step.retry.attempts))",
                        state: "retrying")
                    log.warning(
                        "step attempt failed, retrying", metadata: ["error": "\(message)", "attempt": "\(attempt)"])
                    do {
                        if delay > .zero { try await Task.sleep(for: delay) }
                        continue
                    } catch {
                        emit(
                            .stepFailed, operation, step, attempt: attempt, message: "interrupted",
                            state: StepState.interrupted.rawValue)
                        await journalWrite(
                            StepTransition(
                                operation: operation, step: step.name, node: node, state: .interrupted,
                                attempt: attempt,
                                error: "interrupted while waiting to retry"))
                        return StepResult(index: index, kind: .interrupted)
                    }
                }
                let planError: PlanError
                if case PlanError.stepTimedOut = error, let e = error as? PlanError {
                    planError =
                        step.retry.attempts > 1
                        ? .stepFailed(step: step.name, node: node, attempts: attempt, message: e.description) : e
                } else {
                    planError = .stepFailed(step: step.name, node: node, attempts: attempt, message: message)
                }
                emit(
                    .stepFailed, operation, step, attempt: attempt, message: planError.description,
                    state: StepState.failed.rawValue)
                log.info("step failed", metadata: ["error": "\(planError.description)"])
                return StepResult(index: index, kind: .failed(planError))
            }
        }
    }

    // MARK: Rollback

    /// Undoes, in reverse completion order, the steps of `operation` that this operation applied (their
    /// apply ran) and that are still `done`; each is journaled `undone`. Steps without an undo are
    /// reported skipped and left done. Stops at the first undo that fails (`rollback-failed`).
    public func rollback(operation id: String) async throws -> OperationOutcome {
        defer { continuation.finish() }
        guard var record = try await offPool({ [journal] in try journal.operation(id) }) else {
            throw PlanError.operationNotFound(id)
        }
        let transitions = try await offPool { [journal] in try journal.transitions(operation: id) }
        var latest: [String: (state: StepState, position: Int)] = [:]
        var appliedHere = Set<String>()
        for (position, t) in transitions.enumerated() {
            latest[t.step] = (t.state, position)
            if t.state == .running { appliedHere.insert(t.step) }
        }
        let unknown = latest.keys.filter { plan[$0] == nil }
        if !unknown.isEmpty { throw PlanError.resumeMismatch(operation: id, unknownSteps: unknown) }
        let order = latest.filter { $0.value.state == .done && appliedHere.contains($0.key) }
            .sorted { $0.value.position > $1.value.position }
            .map(\.key)

        var states = latest.mapValues(\.state)
        var errors: [String: PlanError] = [:]
        var undone: [String] = []
        var final = OperationState.rolledBack
        logger.info("rollback started", metadata: ["operation": "\(id)", "steps": "\(order.count)"])
        for name in order {
            guard let step = plan[name] else { continue }
            guard let undo = step.undo else {
                emit(.stepSkipped, id, step, message: "no undo; left in place", state: StepState.done.rawValue)
                continue
            }
            if Task.isCancelled {
                final = .interrupted
                break
            }
            let context = StepContext(
                step: name, target: step.target, attempt: 1, operation: id, redactor: redactor,
                emit: { [continuation] in continuation.yield($0) })
            emit(.stepStarted, id, step, attempt: 1, message: "undo", state: StepState.running.rawValue)
            do {
                try await withTimeout(step.timeout, step: step) { try await undo(context) }
                await journalWrite(
                    StepTransition(
                        operation: id, step: name, node: step.target.node, state: .undone, attempt: 1,
                        outputTail: nonEmpty(context.outputTail)))
                states[name] = .undone
                undone.append(name)
                emit(.stepFinished, id, step, attempt: 1, message: "undone", state: StepState.undone.rawValue)
            } catch {
                let message = redactor.redact(describe(error))
                let interrupted = Task.isCancelled
                await journalWrite(
                    StepTransition(
                        operation: id, step: name, node: step.target.node, state: interrupted ? .interrupted : .failed,
                        attempt: 1, outputTail: nonEmpty(context.outputTail), error: "undo: \(message)"))
                states[name] = interrupted ? .interrupted : .failed
                errors[name] =
                    interrupted
                    ? .stepInterrupted(step: name, node: step.target.node)
                    : .undoFailed(step: name, node: step.target.node, message: message)
                emit(
                    .stepFailed, id, step, attempt: 1, message: errors[name]?.description,
                    state: interrupted ? StepState.interrupted.rawValue : StepState.failed.rawValue)
                final = interrupted ? .interrupted : .rollbackFailed
                break
            }
        }
        let finishedAt = Date()
        try await journal.setOperationState(id, final, time: finishedAt)
        await mirrorJournal(id)
        record.state = final
        record.finishedAt = finishedAt
        var all: [String: StepState] = [:]
        for step in plan.steps { all[step.name] = states[step.name] ?? .planned }
        let outcome = OperationOutcome(operation: record, steps: all, errors: errors, applied: undone)
        continuation.yield(
            PlanEvent(kind: .operationFinished, operation: id, message: summary(outcome), state: final.rawValue))
        return outcome
    }

    // MARK: Helpers

    private func emit(
        _ kind: PlanEvent.Kind, _ operation: String, _ step: Step, attempt: Int? = nil, message: String? = nil,
        state: String? = nil
    ) {
        continuation.yield(
            PlanEvent(
                kind: kind, operation: operation, step: step.name, node: step.target.node, attempt: attempt,
                message: redactor.redact(message), state: state))
    }

    /// Journal writes from the executor: a failure is logged and the operation goes on (the step's own
    /// outcome is already decided); the mirror is told after each write.
    private func journalWrite(_ transition: StepTransition) async {
        do {
            try await journal.record(transition)
        } catch {
            logger.error("journal write failed", metadata: ["error": "\(error)", "step": "\(transition.step)"])
        }
        await mirrorJournal(transition.operation)
    }

    private func mirrorJournal(_ operation: String) async {
        guard let mirror else { return }
        do {
            try await mirror.journalDidChange(journal, operation: operation)
        } catch {
            logger.warning("journal mirror failed", metadata: ["error": "\(redactor.redact(describe(error)))"])
        }
    }

    private func summary(_ outcome: OperationOutcome) -> String {
        var counts: [StepState: Int] = [:]
        for s in outcome.steps.values { counts[s, default: 0] += 1 }
        return StepState.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }.joined(separator: ", ")
    }
}

func nonEmpty(_ s: String) -> String? { s.isEmpty ? nil : s }

/// Runs blocking work (the journal's synchronous API, which waits on SQLite and fsync) on a dispatch
/// thread instead of Swift's cooperative pool.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

func describe(_ error: any Error) -> String {
    if let e = error as? PlanError { return e.description }
    if let e = error as? LocalizedError, let d = e.errorDescription { return d }
    return String(describing: error)
}

/// Runs `body`, cancelling it and throwing `stepTimedOut` when `timeout` passes first. Waits for `body`
/// to return after cancelling it (structured), so bodies must honour cancellation.
func withTimeout<T: Sendable>(
    _ timeout: Duration?, step: Step, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    guard let timeout else { return try await body() }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next() else { throw CancellationError() }
        if let value = first { return value }
        if Task.isCancelled { throw CancellationError() }
        throw PlanError.stepTimedOut(step: step.name, node: step.target.node, after: timeout)
    }
}
