import Foundation
import Testing

@testable import AppliancePlan

#if canImport(Glibc)
    import Glibc
#endif

/// Real-process tests: `plan-crash-harness` is killed at many points and resumed.
@Suite("crash safety with a real process", .tags(.realProcess), .serialized)
struct CrashHarnessTests {
    static let steps = 12
    static let allSteps = Set((0..<steps).map { "s\($0)/node-\($0 % 3)" })

    /// The harness binary next to the test bundle in the build products directory.
    static func harness() throws -> URL {
        var candidates: [URL] = []
        if let override = ProcessInfo.processInfo.environment["PLAN_CRASH_HARNESS"] {
            candidates.append(URL(fileURLWithPath: override))
        }
        for base in [Bundle.main.executableURL, Bundle.main.bundleURL, URL(fileURLWithPath: CommandLine.arguments[0])] {
            if let base {
                candidates.append(base.deletingLastPathComponent().appendingPathComponent("plan-crash-harness"))
            }
        }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug/plan-crash-harness"))
        for c in candidates where FileManager.default.isExecutableFile(atPath: c.path) { return c }
        throw TestFailure("plan-crash-harness not found; looked at \(candidates.map(\.path))")
    }

    struct Run {
        var status: Int32
        var reason: Process.TerminationReason
        var stderr: String
    }

    /// Starts the harness; `control` runs while it is alive and may signal it.
    static func runHarness(
        state: URL, work: URL, sleepMilliseconds: Int = 15, extra: [String] = [],
        control: (Process) async throws -> Void = { _ in }
    ) async throws -> Run {
        let process = Process()
        process.executableURL = try harness()
        process.arguments =
            [
                "--state", state.path, "--work", work.path, "--steps", "\(steps)", "--nodes", "3",
                "--sleep-ms", "\(sleepMilliseconds)", "--parallel", "3",
            ] + extra
        let errPipe = Pipe()
        process.standardError = errPipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try await control(process)
        let errData = errPipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus, reason: process.terminationReason,
            stderr: String(decoding: errData, as: UTF8.self))
    }

    static func appliedLines(_ work: URL) -> [String] {
        guard let text = try? String(contentsOf: work.appendingPathComponent("applied.log"), encoding: .utf8) else {
            return []
        }
        return text.split(separator: "\n").map { String($0.dropFirst("applied ".count)) }
    }

    /// The journal opens, passes integrity_check, and (when `complete`) records one succeeded operation
    /// whose steps are all done.
    static func checkJournal(_ state: URL, complete: Bool) throws {
        let journal = try Journal(stateDirectory: state)
        #expect(try journal.integrityCheck() == "ok")
        guard complete else { return }
        // Newest first. One operation, resumed in place; or two when the kill came after the first had
        // already finished, and the second run found everything done.
        let ops = try journal.operations(cluster: "crash")
        #expect(ops.count == 1 || (ops.count == 2 && ops[1].state == .succeeded), "\(ops)")
        let op = try #require(ops.first)
        #expect(op.state == .succeeded)
        let latest = try journal.latestStates(operation: op.id)
        #expect(Set(latest.keys) == allSteps)
        #expect(latest.values.allSatisfy { $0.state == .done })
    }

    @Test("an uninterrupted run applies every step once")
    func baseline() async throws {
        let dir = TemporaryDirectory("crash")
        defer { dir.cleanup() }
        let state = dir.url.appendingPathComponent("state")
        let work = dir.url.appendingPathComponent("work")
        let run = try await Self.runHarness(state: state, work: work)
        #expect(run.status == 0, "\(run.stderr)")
        let applied = Self.appliedLines(work)
        #expect(applied.count == Self.steps)
        #expect(Set(applied) == Self.allSteps)
        try Self.checkJournal(state, complete: true)
    }

    @Test("SIGKILL at 15 random points, then resume: same final state, nothing applied twice")
    func killAndResume() async throws {
        var rng = SeededRandom(seed: 20_261_122)
        // Each kill lands a random few milliseconds after the run has applied a random number of steps
        // (0: right after start-up, before the journal may exist; steps of 60 ms), so the kills spread over the run
        // however long a loaded machine takes to start the process (fixed delays from the start all landed
        // in the start-up once a build shared the machine).
        var killPoints = (0..<15).map { _ in
            (after: Int.random(in: 0..<Self.steps, using: &rng), delay: Int.random(in: 0...25, using: &rng))
        }
        killPoints.sort { ($0.after, $0.delay) < ($1.after, $1.delay) }
        var phasesHit = Set<Int>()
        for (afterSteps, ms) in killPoints {
            let delay = "\(ms) ms after \(afterSteps) steps"
            let dir = TemporaryDirectory("crash")
            defer { dir.cleanup() }
            let state = dir.url.appendingPathComponent("state")
            let work = dir.url.appendingPathComponent("work")

            // Watched from a thread of its own: the suites beside this one can keep the task pool busy for
            // longer than the whole run takes.
            let killed = try await Self.runHarness(state: state, work: work, sleepMilliseconds: 60) { process in
                await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                    Thread {
                        while Self.appliedLines(work).count < afterSteps && process.isRunning { usleep(2000) }
                        usleep(useconds_t(ms * 1000))
                        kill(process.processIdentifier, SIGKILL)
                        done.resume()
                    }.start()
                }
            }
            let before = Self.appliedLines(work)
            phasesHit.insert(before.count)
            #expect(Set(before).count == before.count, "kill \(delay): a step applied twice before the kill")
            if FileManager.default.fileExists(atPath: state.appendingPathComponent(Journal.fileName).path) {
                try Self.checkJournal(state, complete: false)
            }

            let resumed = try await Self.runHarness(state: state, work: work)
            #expect(resumed.status == 0, "resume after kill \(delay) failed: \(resumed.stderr)")
            let after = Self.appliedLines(work)
            #expect(
                after.count == Self.steps, "kill \(delay): applied \(after.count) times for \(Self.steps) steps")
            #expect(Set(after) == Self.allSteps)
            #expect(Array(after.prefix(before.count)) == before)
            try Self.checkJournal(state, complete: true)
            if killed.reason == .uncaughtSignal && !before.isEmpty && before.count < Self.steps {
                // A lock left by a killed holder is taken over at once (the free flock proves it dead).
                #expect(resumed.stderr.contains("took over the lock of pid"), "kill \(delay): \(resumed.stderr)")
            }
        }
        // The kills landed in different phases of the run, not all before or after it.
        #expect(phasesHit.count >= 3, "kill points only hit \(phasesHit.sorted()) applied steps")
    }

    @Test("SIGINT: exit status 130, the journal marks steps interrupted, resume completes")
    func interrupt() async throws {
        let dir = TemporaryDirectory("crash")
        defer { dir.cleanup() }
        let state = dir.url.appendingPathComponent("state")
        let work = dir.url.appendingPathComponent("work")
        // Steps slow enough that a loaded machine cannot finish the run before the signal lands.
        let run = try await Self.runHarness(state: state, work: work, sleepMilliseconds: 1500) { process in
            let deadline = ContinuousClock.now + .seconds(30)
            while Self.appliedLines(work).isEmpty && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            kill(process.processIdentifier, SIGINT)
        }
        #expect(run.reason == .exit)
        #expect(run.status == 130, "\(run.stderr)")
        let journal = try Journal(stateDirectory: state)
        #expect(try journal.integrityCheck() == "ok")
        let op = try #require(try journal.operations(cluster: "crash").first)
        #expect(op.state == .interrupted)
        let transitions = try journal.transitions(operation: op.id)
        #expect(transitions.contains { $0.state == .interrupted })
        #expect(Self.appliedLines(work).count < Self.steps)
        // The lock was released on the way out.
        #expect(try ClusterLock.inspect(stateDirectory: state, cluster: "crash") == nil)

        let resumed = try await Self.runHarness(state: state, work: work)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let applied = Self.appliedLines(work)
        #expect(applied.count == Self.steps)
        #expect(Set(applied) == Self.allSteps)
        try Self.checkJournal(state, complete: true)
    }
}
