// plan-crash-harness: runs a small plan whose steps leave side-effect markers, so tests can kill it
// at arbitrary points and check that resume converges without applying anything twice.
//
//   plan-crash-harness --state DIR --work DIR [--steps N] [--nodes K] [--sleep-ms M] [--parallel P]
//
//
// Each step `s<i>/node-<k>` sleeps M ms, then appends "applied <name>\n" to DIR/applied.log in one
// O_APPEND write (the marker). `check` says done when the log holds that line. The plan is the same
// on every run (no randomness). If the journal holds a resumable operation, it is resumed; otherwise
// a new one starts. Exit status: the outcome's (0 ok, 1 failed, 130 interrupted), 2 usage, 3 lock.
import AppliancePlan
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

struct Options {
    var state = ""
    var work = ""
    var steps = 12
    var nodes = 3
    var sleepMilliseconds = 15
    var parallel = 3
}

func parse(_ args: [String]) -> Options? {
    var o = Options()
    var i = 0
    func value() -> String? {
        i += 1
        return i < args.count ? args[i] : nil
    }
    while i < args.count {
        switch args[i] {
        case "--state": guard let v = value() else { return nil }; o.state = v
        case "--work": guard let v = value() else { return nil }; o.work = v
        case "--steps": guard let v = value().flatMap(Int.init) else { return nil }; o.steps = v
        case "--nodes": guard let v = value().flatMap(Int.init) else { return nil }; o.nodes = max(1, v)
        case "--sleep-ms": guard let v = value().flatMap(Int.init) else { return nil }; o.sleepMilliseconds = v
        case "--parallel": guard let v = value().flatMap(Int.init) else { return nil }; o.parallel = v
        default: return nil
        }
        i += 1
    }
    return o.state.isEmpty || o.work.isEmpty ? nil : o
}

func stepName(_ i: Int, nodes: Int) -> String { "s\(i)/node-\(i % nodes)" }

/// Chains per node (s_i after s_{i-nodes}) plus a cross-node edge every third step.
func buildPlan(_ o: Options, log: String) throws -> Plan {
    var steps: [Step] = []
    for i in 0..<o.steps {
        let name = stepName(i, nodes: o.nodes)
        var deps: [String] = []
        if i >= o.nodes { deps.append(stepName(i - o.nodes, nodes: o.nodes)) }
        if i % 3 == 2 && i >= 1 { deps.append(stepName(i - 1, nodes: o.nodes)) }
        let sleep = o.sleepMilliseconds
        steps.append(
            Step(
                name, on: .node("node-\(i % o.nodes)"), after: Array(Set(deps)).sorted(),
                check: { _ in markerExists(log: log, step: name) },
                apply: { context in
                    try await Task.sleep(for: .milliseconds(sleep))
                    try appendMarker(log: log, step: name)
                    context.appendOutput("applied \(name)\n")
                    try await Task.sleep(for: .milliseconds(sleep / 3))
                }))
    }
    return try Plan(steps: steps, failurePolicy: .stopAll, maxParallelism: o.parallel)
}

func markerExists(log: String, step: String) -> Bool {
    guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return false }
    return text.split(separator: "\n").contains { $0 == "applied \(step)" }
}

struct MarkerError: Error, CustomStringConvertible {
    var description: String
}

func appendMarker(log: String, step: String) throws {
    let fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw MarkerError(description: "open \(log): errno \(errno)") }
    defer { close(fd) }
    let line = Array("applied \(step)\n".utf8)
    let n = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard n == line.count else { throw MarkerError(description: "write \(log): errno \(errno)") }
    fsync(fd)
}

func fail(_ message: String, status: Int32) -> Never {
    FileHandle.standardError.write(Data("plan-crash-harness: \(message)\n".utf8))
    exit(status)
}

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

guard let options = parse(Array(CommandLine.arguments.dropFirst())) else {
    fail(
        "usage: --state DIR --work DIR [--steps N] [--nodes K] [--sleep-ms M] [--parallel P]",
        status: 2)
}
let stateDirectory = URL(fileURLWithPath: options.state)
let cluster = "crash"
try? FileManager.default.createDirectory(atPath: options.work, withIntermediateDirectories: true)
let log = options.work + "/applied.log"

let clusterLock: ClusterLock
do {
    clusterLock = try ClusterLock.acquire(stateDirectory: stateDirectory, cluster: cluster)
    if let holder = clusterLock.tookOverFrom {
        FileHandle.standardError.write(Data("plan-crash-harness: took over the lock of \(holder)\n".utf8))
    }
} catch {
    fail("\(error)", status: 3)
}

do {
    let journal = try Journal(stateDirectory: stateDirectory)
    let plan = try buildPlan(options, log: log)
    let request: OperationRequest
    if let previous = try journal.latestResumableOperation(cluster: cluster, kind: "crash-test") {
        request = .resume(operation: previous.id)
    } else {
        request = .start(kind: "crash-test", cluster: cluster)
    }
    let executor = PlanExecutor(plan: plan, journal: journal)
    let outcome = try await SignalInterruption.cancellingOnSignals([SIGINT]) {
        try await withThrowingTaskGroup(of: OperationOutcome?.self) { group in
            group.addTask {
                let renderer = PlanEventRenderer(style: .plain) { FileHandle.standardError.write(Data($0.utf8)) }
                await renderer.consume(executor.events)
                return nil
            }
            group.addTask { try await executor.run(request) }
            var result: OperationOutcome?
            for try await r in group where r != nil { result = r }
            guard let result else { throw CancellationError() }
            return result
        }
    }
    try clusterLock.update(operation: outcome.operation.id)
    print("\(outcome.operation.id) \(outcome.operation.state.rawValue)")
    clusterLock.release()
    exit(outcome.exitStatus)
} catch {
    clusterLock.release()
    fail("\(error)", status: 1)
}
