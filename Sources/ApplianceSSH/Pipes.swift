/// Carries one command's output from its loop thread to the task awaiting it, bounded in bytes.
///
/// When `capacity` bytes are waiting, the loop stops reading the channel; the SSH window then fills
/// and the remote command blocks on write. Draining below half the capacity wakes the loop.
/// stdout and stderr share this one queue in arrival order, so a consumer can never deadlock by
/// waiting on one stream while the other is full.
// @unchecked Sendable: all mutable state is in `state` (a lock); continuations are resumed outside it.
final class OutputPipe: @unchecked Sendable {
    enum Event: Sendable {
        case stdout([UInt8])
        case stderr([UInt8])
        var count: Int {
            switch self {
            case .stdout(let b), .stderr(let b): b.count
            }
        }
    }

    enum Next: Sendable {
        case event(Event)
        case end(Result<ExitResult, SSHError>)
    }

    private struct State {
        var events: [Event] = []
        var head = 0
        var buffered = 0
        var end: Result<ExitResult, SSHError>?
        var waiter: CheckedContinuation<Next, Never>?
        var producerStalled = false
    }

    let capacity: Int
    private let state = Locked(State())
    private let wakeProducer: @Sendable () -> Void

    init(capacity: Int, wakeProducer: @escaping @Sendable () -> Void) {
        self.capacity = capacity
        self.wakeProducer = wakeProducer
    }

    // MARK: loop thread

    /// Whether the loop may read more output; a `false` answer arranges a wake-up once there is room.
    func hasSpace() -> Bool {
        state.withLock { s in
            if s.buffered < capacity { return true }
            s.producerStalled = true
            return false
        }
    }

    func push(_ event: Event) {
        let waiter: CheckedContinuation<Next, Never>? = state.withLock { s in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.events.append(event)
            s.buffered += event.count
            return nil
        }
        waiter?.resume(returning: .event(event))
    }

    func finish(_ result: Result<ExitResult, SSHError>) {
        let waiter: CheckedContinuation<Next, Never>? = state.withLock { s in
            guard s.end == nil else { return nil }
            s.end = result
            let w = s.waiter
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: .end(result))
    }

    // MARK: consumer task

    func next() async -> Next {
        var needWake = false
        let next: Next = await withCheckedContinuation { (c: CheckedContinuation<Next, Never>) in
            let immediate: Next? = state.withLock { s in
                if s.head < s.events.count {
                    let e = s.events[s.head]
                    s.head += 1
                    s.buffered -= e.count
                    if s.head >= 64 && s.head * 2 >= s.events.count {
                        s.events.removeFirst(s.head)
                        s.head = 0
                    }
                    if s.producerStalled && s.buffered <= capacity / 2 {
                        s.producerStalled = false
                        needWake = true
                    }
                    return .event(e)
                }
                if let end = s.end { return .end(end) }
                if s.producerStalled {
                    s.producerStalled = false
                    needWake = true
                }
                s.waiter = c
                return nil
            }
            if let immediate { c.resume(returning: immediate) }
        }
        if needWake { wakeProducer() }
        return next
    }
}

/// Carries stdin chunks from a producer task to a loop thread, bounded in bytes.
// @unchecked Sendable: all mutable state is in `state` (a lock); continuations are resumed outside it.
final class InputPipe: @unchecked Sendable {
    enum Take {
        case chunk([UInt8])
        case empty
        case end
        case failed(String)
    }

    private struct State {
        var chunks: [[UInt8]] = []
        var buffered = 0
        var finished = false
        var failure: String?
        var abandoned = false
        /// Resumed with `nil` ("try again") when space frees, with `false` when abandoned.
        var spaceWaiter: CheckedContinuation<Bool?, Never>?
    }

    let capacity: Int
    private let state = Locked(State())
    private let wakeConsumer: @Sendable () -> Void

    init(capacity: Int = 4 << 20, wakeConsumer: @escaping @Sendable () -> Void) {
        self.capacity = capacity
        self.wakeConsumer = wakeConsumer
    }

    // MARK: producer task

    /// Queues a chunk, waiting while the pipe is full. Returns false once the command has ended.
    func write(_ chunk: [UInt8]) async -> Bool {
        if chunk.isEmpty { return true }
        while true {
            let accepted: Bool? = await withCheckedContinuation { (c: CheckedContinuation<Bool?, Never>) in
                let answer: Bool?? = state.withLock { s in
                    if s.abandoned { return .some(false) }
                    if s.buffered < capacity {
                        s.chunks.append(chunk)
                        s.buffered += chunk.count
                        return .some(true)
                    }
                    s.spaceWaiter = c
                    return .none
                }
                if let answer { c.resume(returning: answer) }
            }
            if let accepted {
                if accepted { wakeConsumer() }
                return accepted
            }
        }
    }

    func finish(failure: String? = nil) {
        state.withLock { s in
            s.finished = true
            s.failure = failure
        }
        wakeConsumer()
    }

    // MARK: loop thread

    func take() -> Take {
        let (take, waiter): (Take, CheckedContinuation<Bool?, Never>?) = state.withLock { s in
            if !s.chunks.isEmpty {
                let c = s.chunks.removeFirst()
                s.buffered -= c.count
                let w = s.spaceWaiter
                s.spaceWaiter = nil
                return (.chunk(c), w)
            }
            if let f = s.failure { return (.failed(f), nil) }
            return (s.finished ? .end : .empty, nil)
        }
        waiter?.resume(returning: nil)
        return take
    }

    /// The command ended: wake and refuse the producer from now on.
    func abandon() {
        let waiter: CheckedContinuation<Bool?, Never>? = state.withLock { s in
            s.abandoned = true
            s.chunks = []
            let w = s.spaceWaiter
            s.spaceWaiter = nil
            return w
        }
        waiter?.resume(returning: false)
    }
}
