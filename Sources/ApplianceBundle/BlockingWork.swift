import Foundation

/// Runs blocking work (C library calls, file I/O) on dedicated threads, never on Swift's cooperative pool.
public enum BlockingWork {
    /// Runs `body` on a new thread and returns its result to the awaiting task.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let thread = Thread {
                do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `body(worker)` on `workers` threads at once (the caller's thread is one of them) and waits for all.
    static func parallel(workers: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let n = max(1, workers)
        let done = NSCondition()
        nonisolated(unsafe) var remaining = n - 1  // guarded by `done`
        for w in 1..<n {
            let t = Thread {
                body(w)
                done.lock()
                remaining -= 1
                done.signal()
                done.unlock()
            }
            t.stackSize = 1 << 20
            t.start()
        }
        body(0)
        done.lock()
        while remaining > 0 { done.wait() }
        done.unlock()
    }

    /// Lowers the calling thread's scheduling priority to nice 10 (on Linux, nice values are per thread),
    /// for background work that must leave the CPU to the work it runs beside. Call it on a thread of
    /// `run`, which ends with the work. Best effort: a refusal leaves the priority as it was.
    public static func lowerThreadPriority() {
        #if os(Linux)
            // The thread's id: /proc/thread-self links to "PID/task/TID".
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"),
                let tid = link.split(separator: "/").last.flatMap({ id_t($0) })
            else { return }
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), tid, 10)
        #endif
    }

    /// How many hashing threads to use by default: one per core.
    public static var defaultWorkers: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }
}

/// A lock-protected value shared by worker threads.
public final class Locked<Value>: @unchecked Sendable {  // every access goes through `lock`
    private var value: Value
    private let lock = NSLock()
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
