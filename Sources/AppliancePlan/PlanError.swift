import Foundation

/// Every error the plan engine reports. Each case carries the context an operator needs (step, node,
/// operation, path); `description` says what failed and why, `hint` says what to do next.
public enum PlanError: Error, Sendable, Equatable, CustomStringConvertible {
    // Building a plan.
    case duplicateStep(String)
    case unknownDependency(step: String, dependency: String)
    case dependencyCycle([String])
    case invalidStep(step: String, reason: String)

    // Running a plan.
    case stepFailed(step: String, node: String?, attempts: Int, message: String)
    case stepTimedOut(step: String, node: String?, after: Duration)
    case stepInterrupted(step: String, node: String?)
    case dependencyFailed(step: String, node: String?, dependency: String)
    case stoppedAfterFailure(step: String, node: String?, failedStep: String)

    // Journal, resume, rollback.
    case journal(path: String, operation: String, code: Int32, message: String)
    case operationNotFound(String)
    case operationNotResumable(id: String, state: String)
    case resumeMismatch(operation: String, unknownSteps: [String])
    case undoFailed(step: String, node: String?, message: String)
    case invalidJournalExport(String)

    // Cluster lock.
    case lockHeld(cluster: String, holder: LockHolder, path: String)
    case lockIO(path: String, operation: String, errno: Int32)

    /// What failed and why, in lower case.
    public var description: String {
        switch self {
        case .duplicateStep(let s):
            return "the plan declares step '\(s)' twice"
        case .unknownDependency(let s, let d):
            return "step '\(s)' depends on '\(d)', which is not in the plan"
        case .dependencyCycle(let path):
            return "the plan's dependencies form a cycle: \(path.joined(separator: " -> "))"
        case .invalidStep(let s, let reason):
            return "step '\(s)' is invalid: \(reason)"
        case .stepFailed(let s, let n, let attempts, let m):
            return "step '\(s)'\(Self.on(n)) failed after \(attempts) attempt\(attempts == 1 ? "" : "s"): \(m)"
        case .stepTimedOut(let s, let n, let d):
            return "step '\(s)'\(Self.on(n)) timed out after \(Self.format(d))"
        case .stepInterrupted(let s, let n):
            return "step '\(s)'\(Self.on(n)) was interrupted"
        case .dependencyFailed(let s, let n, let d):
            return "step '\(s)'\(Self.on(n)) was skipped because '\(d)' did not complete"
        case .stoppedAfterFailure(let s, let n, let f):
            return "step '\(s)'\(Self.on(n)) was not started because '\(f)' failed"
        case .journal(let p, let op, let code, let m):
            return "journal \(p): \(op) failed (sqlite code \(code)): \(m)"
        case .operationNotFound(let id):
            return "no operation '\(id)' in the journal"
        case .operationNotResumable(let id, let state):
            return "operation '\(id)' is \(state) and cannot be resumed"
        case .resumeMismatch(let op, let unknown):
            return "the journal of operation '\(op)' names steps the rebuilt plan lacks: "
                + unknown.sorted().joined(separator: ", ")
        case .undoFailed(let s, let n, let m):
            return "undo of step '\(s)'\(Self.on(n)) failed: \(m)"
        case .invalidJournalExport(let m):
            return "the journal export cannot be read: \(m)"
        case .lockHeld(let c, let h, let p):
            return "cluster '\(c)' is locked by \(h) (lock file \(p))"
        case .lockIO(let p, let op, let e):
            return "lock file \(p): \(op) failed: \(String(cString: strerror(e)))"
        }
    }

    /// What to do next.
    public var hint: String? {
        switch self {
        case .duplicateStep, .unknownDependency, .dependencyCycle, .invalidStep:
            return "this is a bug in the code that builds the plan; report it with the output of --dry-run"
        case .stepFailed:
            return "fix the cause on the node, then resume the operation; steps already done are not repeated"
        case .stepTimedOut:
            return "check that the node is reachable and not overloaded, then resume the operation"
        case .stepInterrupted:
            return "resume the operation; steps that were in flight are checked again before anything is redone"
        case .dependencyFailed, .stoppedAfterFailure:
            return "resolve the failed step first, then resume the operation"
        case .journal:
            return "check free space and permissions of the state directory"
        case .operationNotFound:
            return "list operations with the history command"
        case .operationNotResumable:
            return "start a new operation instead"
        case .resumeMismatch:
            return "resume with the same bundle and inventory the operation was started with"
        case .undoFailed:
            return "repair the step by hand, then run the rollback again; steps already undone are not repeated"
        case .invalidJournalExport:
            return "the mirrored journal may be truncated; export it again from the admin host"
        case .lockHeld:
            return
                "wait for that operation to finish; two operations on one cluster at once are refused (`appliance plan unlock -i SITE --force` breaks a lock of another host that is gone for good)"
        case .lockIO:
            return "check permissions of the state directory"
        }
    }

    /// The step the error is about, if any.
    public var step: String? {
        switch self {
        case .duplicateStep(let s), .unknownDependency(let s, _), .invalidStep(let s, _),
            .stepFailed(let s, _, _, _), .stepTimedOut(let s, _, _), .stepInterrupted(let s, _),
            .dependencyFailed(let s, _, _), .stoppedAfterFailure(let s, _, _), .undoFailed(let s, _, _):
            return s
        default:
            return nil
        }
    }

    /// The node the error is about, if any.
    public var node: String? {
        switch self {
        case .stepFailed(_, let n, _, _), .stepTimedOut(_, let n, _), .stepInterrupted(_, let n),
            .dependencyFailed(_, let n, _), .stoppedAfterFailure(_, let n, _), .undoFailed(_, let n, _):
            return n
        default:
            return nil
        }
    }

    private static func on(_ node: String?) -> String { node.map { " on \($0)" } ?? "" }

    static func format(_ d: Duration) -> String {
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 120 { return String(format: "%.1f s", seconds) }
        return "\(Int(seconds / 60)) min \(Int(seconds) % 60) s"
    }
}
