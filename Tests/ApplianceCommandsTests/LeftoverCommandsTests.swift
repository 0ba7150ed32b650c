import ApplianceSSH
import Foundation
import Testing

@testable import ApplianceOperations

/// The wait for what a killed run left running, run here with `sh` against real processes. The waits are
/// awaited (termination handlers), never blocking a thread of the shared cooperative pool, which the
/// timing-sensitive suites running beside this one need.
@Suite struct LeftoverCommandsTests {
    /// Runs `p` and returns once it has exited, with the time it exited (taken in the termination handler:
    /// this task may resume later when the suites beside it keep the pool's threads busy).
    @discardableResult
    func finished(_ p: Process) async throws -> Date {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Date, any Error>) in
            p.terminationHandler = { _ in c.resume(returning: Date()) }
            do { try p.run() } catch { c.resume(throwing: error) }
        }
    }

    /// Starts `sh -c body` in the background with the owner mark of a (pretend) dead admin process; the
    /// task ends when it exits.
    func startMarked(_ owner: String, _ body: String) -> (Process, Task<Void, any Error>) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", body]
        p.environment = ["PATH": "/usr/bin:/bin", SSHConnection.ownerVariable: owner]
        return (p, Task { try await finished(p) })
    }

    func settle(_ owner: String, limit: Int) async throws -> (LeftoverCommands.Report?, TimeInterval) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("settle-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", LeftoverCommands.script(owner: owner, limitSeconds: limit)]
        p.standardOutput = try FileHandle(forWritingTo: out)
        let t0 = Date()
        let ended = try await finished(p)
        let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        return (LeftoverCommands.parse(text), ended.timeIntervalSince(t0))
    }

    @Test func waitsUntilTheDeadRunsCommandsEndAndNamesThem() async throws {
        let owner = CommandOwner.mark(host: "admin-\(UUID().uuidString.prefix(8))", pid: 4242)
        let (_, leftover) = startMarked(owner, "sleep 3; sleep 1")
        let (other, otherDone) = startMarked("someone-else:1", "exec sleep 300")
        try await Task.sleep(for: .milliseconds(200))
        let (report, took) = try await settle(owner, limit: 60)
        try await leftover.value
        let r = try #require(report)
        #expect(!r.killed)
        #expect(r.programs.contains("sleep"), "\(r.programs)")
        #expect(r.waitedSeconds >= 3 && took >= 4 && took < 15, "\(r), \(took) s")
        #expect(other.isRunning, "another owner's command was touched")
        kill(other.processIdentifier, SIGKILL)
        try await otherDone.value
    }

    @Test func killsWhatRunsPastTheLimit() async throws {
        let owner = CommandOwner.mark(host: "admin-\(UUID().uuidString.prefix(8))", pid: 4243)
        let (_, leftover) = startMarked(owner, "sleep 30")
        try await Task.sleep(for: .milliseconds(200))
        let (report, took) = try await settle(owner, limit: 2)
        try await leftover.value
        let r = try #require(report)
        #expect(r.killed && r.programs.contains("sleep"), "\(r)")
        #expect(took < 15)
    }

    @Test func nothingLeftIsNoReportAfterAShortQuietSpell() async throws {
        let (report, took) = try await settle(CommandOwner.mark(host: "nobody", pid: 1), limit: 60)
        #expect(report == nil)
        #expect(took >= 2 && took < 15)
    }

    @Test func theMarkIsOneShellWord() {
        #expect(CommandOwner.mark(host: "admin laptop;rm", pid: 7) == "admin_laptop_rm:7")
        #expect(CommandOwner.mark(host: "", pid: 7) == "localhost:7")
    }
}
