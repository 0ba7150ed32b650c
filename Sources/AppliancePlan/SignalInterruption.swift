import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Turns Ctrl-C into structured cancellation.
public enum SignalInterruption {
    /// Runs `body`; the first of `signals` cancels it (graceful: the executor stops launching steps,
    /// steps in flight finish or are marked interrupted, the journal is updated, and `body` returns its
    /// interrupted outcome, whose `exitStatus` is 130). A second signal exits at once with status 130;
    /// the journal stays consistent because every transition is its own committed transaction.
    ///
    /// Signal dispositions are restored when `body` returns. Uses a dispatch signal source; no
    /// detached tasks.
    public static func cancellingOnSignals<T: Sendable>(
        _ signals: [Int32] = [SIGINT, SIGTERM],
        onSignal: @escaping @Sendable (Int32) -> Void = { _ in },
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        let counter = SignalCounter()
        var sources: [any DispatchSourceSignal] = []
        for s in signals {
            signal(s, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: s, queue: .global())
            source.setEventHandler {
                if counter.increment() > 1 { _exit(130) }
                onSignal(s)
                continuation.yield(s)
            }
            source.resume()
            sources.append(source)
        }
        defer {
            for source in sources { source.cancel() }
            for s in signals { signal(s, SIG_DFL) }
            continuation.finish()
        }

        return try await withThrowingTaskGroup(of: SignalRaceEvent<T>.self) { group in
            group.addTask { .finished(try await body()) }
            group.addTask {
                for await _ in stream { return .signalled }
                return .watcherEnded
            }
            while let event = try await group.next() {
                switch event {
                case .finished(let value):
                    group.cancelAll()
                    return value
                case .signalled:
                    // Cancels the body; its interrupted outcome arrives as `.finished`.
                    group.cancelAll()
                case .watcherEnded:
                    continue
                }
            }
            throw CancellationError()
        }
    }
}

private enum SignalRaceEvent<T: Sendable>: Sendable {
    case finished(T)
    case signalled
    case watcherEnded
}

private final class SignalCounter: @unchecked Sendable {
    // @unchecked: `count` is guarded by `lock`.
    private let lock = NSLock()
    private var count = 0
    func increment() -> Int {
        lock.withLock {
            count += 1; return count
        }
    }
}
