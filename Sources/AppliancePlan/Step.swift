import Foundation

/// Where a step acts: on one node (steps on a node are serialised) or on the cluster as a whole
/// (API calls from the admin host; cluster steps are serialised among themselves, like a node).
public enum StepTarget: Sendable, Hashable, CustomStringConvertible {
    case node(String)
    case cluster

    /// The node name, or nil for the cluster.
    public var node: String? {
        if case .node(let n) = self { return n }
        return nil
    }

    /// The name shown in renderings and used as the serialisation key.
    public var description: String { node ?? "cluster" }
}

/// How often a step is tried and how long to wait between tries.
public struct RetryPolicy: Sendable, Hashable {
    public enum Backoff: Sendable, Hashable {
        case none
        case constant(Duration)
        /// initial, initial*multiplier, ... capped at `maximum`.
        case exponential(initial: Duration, multiplier: Double, maximum: Duration)
    }

    /// Total attempts, at least 1.
    public var attempts: Int
    public var backoff: Backoff

    public init(attempts: Int = 1, backoff: Backoff = .none) {
        self.attempts = max(1, attempts)
        self.backoff = backoff
    }

    public static let once = RetryPolicy()

    /// The pause after failed attempt number `attempt` (1-based).
    public func delay(afterAttempt attempt: Int) -> Duration {
        switch backoff {
        case .none:
            return .zero
        case .constant(let d):
            return d
        case .exponential(let initial, let multiplier, let maximum):
            let factor = pow(max(1, multiplier), Double(max(0, attempt - 1)))
            let scaled = initial * factor
            return scaled > maximum ? maximum : scaled
        }
    }
}

/// A unit of work in a plan. `check` answers "already done?" cheaply and without side effects;
/// `apply` makes it so and must be safe to run again after a crash part-way (the executor always
/// runs `check` first); `undo` reverses `apply` where that makes sense.
///
/// Closures must honour task cancellation: the executor cancels them on timeout and on Ctrl-C and
/// waits for them to return.
public struct Step: Sendable {
    public typealias Check = @Sendable (StepContext) async throws -> Bool
    public typealias Action = @Sendable (StepContext) async throws -> Void

    /// Unique in the plan and stable across runs (resume matches on it), e.g. `stage/gpu-01`.
    public var name: String
    public var target: StepTarget
    public var dependencies: [String]
    /// One line for the dry run.
    public var summary: String
    /// When true, this step may overlap other `concurrentOnNode` steps on the same node.
    public var concurrentOnNode: Bool
    /// Per attempt, for `check` and for `apply` each.
    public var timeout: Duration?
    public var retry: RetryPolicy
    public var check: Check
    public var apply: Action
    public var undo: Action?

    public init(
        _ name: String,
        on target: StepTarget,
        after dependencies: [String] = [],
        summary: String = "",
        concurrentOnNode: Bool = false,
        timeout: Duration? = nil,
        retry: RetryPolicy = .once,
        check: @escaping Check = { _ in false },
        apply: @escaping Action,
        undo: Action? = nil
    ) {
        self.name = name
        self.target = target
        self.dependencies = dependencies
        self.summary = summary
        self.concurrentOnNode = concurrentOnNode
        self.timeout = timeout
        self.retry = retry
        self.check = check
        self.apply = apply
        self.undo = undo
    }
}

/// Handed to a step's closures: who it is, and where to report progress and output.
/// Thread-safe: a step may report from child tasks.
public final class StepContext: @unchecked Sendable {
    // @unchecked: the mutable state (output tail, progress throttle) is guarded by `lock`.
    public let step: String
    public let target: StepTarget
    public let attempt: Int
    public let operation: String
    public let redactor: Redactor

    private let emit: @Sendable (PlanEvent) -> Void
    private let lock = NSLock()
    private var tail = OutputTail(limit: OutputTail.defaultLimit)
    private var lastProgress: ContinuousClock.Instant?
    private var lastBytes: Int64 = -1

    init(
        step: String, target: StepTarget, attempt: Int, operation: String, redactor: Redactor,
        emit: @escaping @Sendable (PlanEvent) -> Void
    ) {
        self.step = step
        self.target = target
        self.attempt = attempt
        self.operation = operation
        self.redactor = redactor
        self.emit = emit
    }

    public var node: String? { target.node }

    /// Reports bytes done so far (and the total when known). Events are throttled to about ten a
    /// second per step; the first, and the one reaching the total, always go out.
    public func reportProgress(bytesDone: Int64, bytesTotal: Int64?) {
        let now = ContinuousClock.now
        let send: Bool = lock.withLock {
            let final = bytesTotal.map { bytesDone >= $0 } ?? false
            if bytesDone == lastBytes { return false }
            if let last = lastProgress, !final, now - last < .milliseconds(100) { return false }
            lastProgress = now
            lastBytes = bytesDone
            return true
        }
        guard send else { return }
        emit(
            PlanEvent(
                kind: .stepProgress, operation: operation, step: step, node: node, attempt: attempt,
                bytesDone: bytesDone, bytesTotal: bytesTotal))
    }

    /// Appends command output; the last few KiB are kept (redacted) for the journal and failures.
    public func appendOutput(_ text: String) {
        lock.withLock { tail.append(text) }
    }

    /// The redacted tail of the output so far.
    public var outputTail: String {
        let raw = lock.withLock { tail.text }
        return redactor.redact(raw)
    }
}

/// The last `limit` bytes of a text, cut on a character boundary.
struct OutputTail: Sendable {
    static let defaultLimit = 4096
    let limit: Int
    private(set) var text = ""

    init(limit: Int) { self.limit = limit }

    mutating func append(_ more: String) {
        text += more
        text = Self.bounded(text, limit: limit)
    }

    static func bounded(_ s: String, limit: Int) -> String {
        guard s.utf8.count > limit else { return s }
        var start = s.utf8.index(s.utf8.endIndex, offsetBy: -limit)
        while start < s.utf8.endIndex, start.samePosition(in: s.unicodeScalars) == nil {
            start = s.utf8.index(after: start)
        }
        return String(s.unicodeScalars[start...])
    }
}
