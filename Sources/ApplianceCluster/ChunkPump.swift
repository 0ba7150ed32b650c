import Foundation

/// Reads chunks from a blocking producer on its own thread, a bounded number ahead, and hands them to an
/// async consumer: file reads never run on Swift's cooperative pool, and memory stays at `depth` chunks.
public final class ChunkPump: @unchecked Sendable {  // all shared state is behind `cond`
    private let cond = NSCondition()
    private var queue: [[UInt8]] = []
    private var finished = false
    private var failure: Error?
    private var cancelled = false
    private var waiter: CheckedContinuation<Void, Never>?
    private let depth: Int

    public init(depth: Int = 8, producer: @escaping @Sendable () throws -> [UInt8]?) {
        self.depth = max(1, depth)
        let thread = Thread { [self] in
            while true {
                cond.lock()
                while queue.count >= self.depth && !cancelled { cond.wait() }
                let stop = cancelled
                cond.unlock()
                if stop { return }
                let item: [UInt8]?
                do { item = try producer() } catch {
                    finish(error: error)
                    return
                }
                cond.lock()
                if let item { queue.append(item) } else { finished = true }
                let w = waiter
                waiter = nil
                cond.unlock()
                w?.resume()
                if item == nil { return }
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func finish(error: Error) {
        cond.lock()
        failure = error
        finished = true
        let w = waiter
        waiter = nil
        cond.unlock()
        w?.resume()
    }

    private enum Take {
        case chunk([UInt8])
        case end
        case failed(Error)
        case empty
    }

    private func take() -> Take {
        cond.lock()
        defer { cond.unlock() }
        if !queue.isEmpty {
            let c = queue.removeFirst()
            cond.signal()
            return .chunk(c)
        }
        if finished { return failure.map(Take.failed) ?? .end }
        return .empty
    }

    /// Registers `c` to be resumed when a chunk or the end arrives (at once if one already has).
    private func park(_ c: CheckedContinuation<Void, Never>) {
        cond.lock()
        if !queue.isEmpty || finished {
            cond.unlock()
            c.resume()
        } else {
            waiter = c
            cond.unlock()
        }
    }

    /// The next chunk, or nil at the end.
    public func next() async throws -> [UInt8]? {
        while true {
            switch take() {
            case .chunk(let c): return c
            case .end: return nil
            case .failed(let e): throw e
            case .empty: await withCheckedContinuation { park($0) }
            }
        }
    }

    /// Stops the producer thread (the consumer went away).
    public func cancel() {
        cond.lock()
        cancelled = true
        cond.signal()
        cond.unlock()
    }

    /// An async stream over the pump, paced to at most `bytesPerSecond` when given.
    public func stream(bytesPerSecond: Int64? = nil) -> AsyncThrowingStream<[UInt8], any Error> {
        let pacer = bytesPerSecond.map { Pacer(rate: $0) }
        return AsyncThrowingStream { [self] in
            guard let chunk = try await next() else { return nil }
            if let pacer { try await pacer.wait(for: chunk.count) }
            return chunk
        }
    }
}

/// A token bucket: `wait(for:)` sleeps so that the long-run rate stays at `rate` bytes per second.
actor Pacer {
    let rate: Double
    private var start: ContinuousClock.Instant?
    private var sent: Double = 0

    init(rate: Int64) { self.rate = Double(max(1, rate)) }

    func wait(for bytes: Int) async throws {
        let now = ContinuousClock.now
        let t0 = start ?? now
        start = t0
        sent += Double(bytes)
        let due = t0 + .seconds(sent / rate)
        if due > now { try await Task.sleep(until: due, clock: .continuous) }
    }
}
