import Foundation
import Logging
import Testing

@testable import AppliancePlan

extension Tag {
    @Tag static var realProcess: Self
}

/// A seeded generator (SplitMix64): the same seed gives the same plan on every machine.
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let url: URL
    init(_ label: String = "plan") {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    var path: String { url.path }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Thread-safe record of what step closures did, with a global sequence number so tests can
/// compare orders without trusting clocks.
final class Recorder: @unchecked Sendable {
    // @unchecked: all state is guarded by `lock`.
    enum Kind: Equatable { case check, start, end, fail, undo }
    struct Entry {
        var seq: Int
        var step: String
        var kind: Kind
    }
    private let lock = NSLock()
    private var entries: [Entry] = []
    private var seq = 0

    @discardableResult
    func note(_ step: String, _ kind: Kind) -> Int {
        lock.withLock {
            seq += 1
            entries.append(Entry(seq: seq, step: step, kind: kind))
            return seq
        }
    }

    var all: [Entry] { lock.withLock { entries } }

    func seqs(_ step: String, _ kind: Kind) -> [Int] { all.filter { $0.step == step && $0.kind == kind }.map(\.seq) }
    func count(_ step: String, _ kind: Kind) -> Int { seqs(step, kind).count }
}

/// Runs an executor to completion while draining its events.
func runCollecting(_ executor: PlanExecutor, _ request: OperationRequest) async throws -> (
    OperationOutcome, [PlanEvent]
) {
    async let events: [PlanEvent] = {
        var collected: [PlanEvent] = []
        for await e in executor.events { collected.append(e) }
        return collected
    }()
    let outcome = try await executor.run(request)
    return (outcome, await events)
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Tests keep the executor's log lines out of the test output.
let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
