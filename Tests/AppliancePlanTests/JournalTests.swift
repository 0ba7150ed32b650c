import Foundation
import Testing

@testable import AppliancePlan

@Suite("journal, resume, rollback, redaction")
struct JournalTests {
    @Test("transitions are recorded: planned, running, done; already-done steps skip running")
    func transitions() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let plan = try Plan(steps: [
            Step("a", on: .node("n1"), apply: { _ in }),
            Step("b", on: .node("n1"), after: ["a"], check: { _ in true }, apply: { _ in }),
        ])
        let (outcome, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet),
            .start(kind: "install", cluster: "c1", bundleDigest: "sha256:ab"))
        let t = try journal.transitions(operation: outcome.operation.id)
        #expect(t.filter { $0.step == "a" }.map(\.state) == [.planned, .running, .done])
        #expect(t.filter { $0.step == "b" }.map(\.state) == [.planned, .done])
        #expect(t.allSatisfy { $0.node == "n1" })
        let op = try #require(try journal.operation(outcome.operation.id))
        #expect(op.kind == "install" && op.cluster == "c1" && op.bundleDigest == "sha256:ab")
        #expect(op.state == .succeeded && op.finishedAt != nil)
        #expect(try journal.operations(cluster: "c1").map(\.id) == [op.id])
        #expect(try journal.integrityCheck() == "ok")
    }

    @Test("the database uses WAL and synchronous=FULL")
    func pragmas() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try Journal(stateDirectory: dir.url)
        let db = try SQLiteDatabase(path: dir.url.appendingPathComponent(Journal.fileName).path)
        #expect(try db.query("PRAGMA journal_mode").first?.first?.string == "wal")
        #expect(try db.query("PRAGMA user_version").first?.first?.int == 1)
    }

    @Test("resume after a failure: done steps are trusted, failed and in-flight steps are checked again")
    func resume() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let recorder = Recorder()
        let broken = Flag(true)
        let sideEffects = Flag(false)
        func plan() throws -> Plan {
            try Plan(
                steps: [
                    Step("a", on: .node("n1"), apply: { _ in recorder.note("a", .start) }),
                    Step(
                        "b", on: .node("n1"), after: ["a"],
                        apply: { _ in
                            recorder.note("b", .start)
                            if broken.value { throw TestFailure("disk full") }
                        }),
                    Step("c", on: .node("n2"), apply: { _ in recorder.note("c", .start) }),
                    Step(
                        "d", on: .node("n2"), after: ["c"], check: { _ in sideEffects.value },
                        apply: { _ in recorder.note("d", .start) }),
                    Step("e", on: .node("n1"), after: ["b", "d"], apply: { _ in recorder.note("e", .start) }),
                ], failurePolicy: .continueOtherNodes)
        }
        let (first, _) = try await runCollecting(
            PlanExecutor(plan: try plan(), journal: journal, logger: quiet), .start(kind: "install", cluster: "c1"))
        #expect(first.operation.state == .failed)
        #expect(first.steps == ["a": .done, "b": .failed, "c": .done, "d": .done, "e": .skipped])

        // Simulate a crash mid-step on a later run: d was in flight (running) and its effect landed.
        try await journal.record(
            StepTransition(operation: first.operation.id, step: "d", node: "n2", state: .running, attempt: 1))
        sideEffects.value = true
        broken.value = false
        #expect(try journal.latestResumableOperation(cluster: "c1")?.id == first.operation.id)

        let (second, events) = try await runCollecting(
            PlanExecutor(plan: try plan(), journal: journal, logger: quiet), .resume(operation: first.operation.id))
        #expect(second.operation.id == first.operation.id)
        #expect(second.operation.state == .succeeded)
        #expect(second.steps.values.allSatisfy { $0 == .done })
        #expect(recorder.count("a", .start) == 1, "a was done and must not be applied again")
        #expect(recorder.count("c", .start) == 1)
        #expect(recorder.count("b", .start) == 2)
        #expect(recorder.count("d", .start) == 1, "d's check said done on resume; it must not be applied again")
        #expect(recorder.count("e", .start) == 1)
        #expect(second.applied.sorted() == ["b", "e"])
        #expect(
            events.contains { $0.kind == .stepFinished && $0.step == "a" && $0.message == "done in an earlier run" })
        let dTransitions = try journal.transitions(operation: first.operation.id).filter { $0.step == "d" }.map(\.state)
        #expect(dTransitions.suffix(3) == [.running, .interrupted, .done])
        #expect(try journal.operation(first.operation.id)?.state == .succeeded)
    }

    @Test("resume refuses a plan that lacks journaled steps, and finished operations")
    func resumeRefusals() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let plan = try Plan(steps: [
            Step("a", on: .node("n"), apply: { _ in }), Step("b", on: .node("n"), apply: { _ in }),
        ])
        let (done, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "k", cluster: "c"))
        await #expect(throws: PlanError.operationNotResumable(id: done.operation.id, state: "succeeded")) {
            _ = try await PlanExecutor(plan: plan, journal: journal, logger: quiet).run(
                .resume(operation: done.operation.id))
        }
        try await journal.setOperationState(done.operation.id, .interrupted)
        let smaller = try Plan(steps: [Step("a", on: .node("n"), apply: { _ in })])
        await #expect(throws: PlanError.resumeMismatch(operation: done.operation.id, unknownSteps: ["b"])) {
            _ = try await PlanExecutor(plan: smaller, journal: journal, logger: quiet).run(
                .resume(operation: done.operation.id))
        }
        await #expect(throws: PlanError.operationNotFound("nope")) {
            _ = try await PlanExecutor(plan: plan, journal: journal, logger: quiet).run(.resume(operation: "nope"))
        }
    }

    @Test("rollback undoes applied steps in reverse completion order and journals them undone")
    func rollback() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let recorder = Recorder()
        func step(_ name: String, after: [String] = [], done: Bool = false, undo: Bool = true) -> Step {
            var undoAction: Step.Action?
            if undo { undoAction = { @Sendable _ in recorder.note(name, .undo) } }
            return Step(
                name, on: .node("n"), after: after, check: { _ in done }, apply: { _ in recorder.note(name, .end) },
                undo: undoAction)
        }
        let plan = try Plan(
            steps: [
                step("a"), step("b", after: ["a"]), step("c", after: ["b"], undo: false), step("d", after: ["c"]),
                step("pre-existing", done: true),
            ], maxParallelism: 1)
        let (run, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "k", cluster: "c"))
        #expect(run.operation.state == .succeeded)
        let completion = recorder.all.filter { $0.kind == .end }.map(\.step)

        let executor = PlanExecutor(plan: plan, journal: journal, logger: quiet)
        async let events: [PlanEvent] = {
            var all: [PlanEvent] = []
            for await e in executor.events { all.append(e) }
            return all
        }()
        let outcome = try await executor.rollback(operation: run.operation.id)
        let undoOrder = recorder.all.filter { $0.kind == .undo }.map(\.step)
        #expect(undoOrder == completion.reversed().filter { $0 != "c" })
        #expect(undoOrder == ["d", "b", "a"])
        #expect(outcome.operation.state == .rolledBack)
        #expect(outcome.steps["pre-existing"] == .done, "a step this operation did not apply is not undone")
        #expect(outcome.steps["c"] == .done, "a step without undo stays done")
        #expect(await events.contains { $0.kind == .stepSkipped && $0.step == "c" })
        let latest = try journal.latestStates(operation: run.operation.id)
        #expect(["a", "b", "d"].allSatisfy { latest[$0]?.state == .undone })
        #expect(try journal.operation(run.operation.id)?.state == .rolledBack)
    }

    @Test("a failing undo stops the rollback and is reported")
    func rollbackFailure() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let journal = try Journal(stateDirectory: dir.url)
        let plan = try Plan(steps: [
            Step("a", on: .node("n"), apply: { _ in }, undo: { _ in }),
            Step("b", on: .node("n"), after: ["a"], apply: { _ in }, undo: { _ in throw TestFailure("busy") }),
        ])
        let (run, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "k", cluster: "c"))
        let executor = PlanExecutor(plan: plan, journal: journal, logger: quiet)
        async let drained: Void = { for await _ in executor.events {} }()
        let outcome = try await executor.rollback(operation: run.operation.id)
        await drained
        #expect(outcome.operation.state == .rollbackFailed)
        #expect(outcome.exitStatus == 1)
        #expect(outcome.errors["b"] == .undoFailed(step: "b", node: "n", message: "busy"))
        #expect(outcome.steps["a"] == .done, "rollback stops at the first failure")
    }

    @Test("secrets never reach the journal file, its export or the events")
    func redaction() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let redactor = Redactor()
        let journal = try Journal(stateDirectory: dir.url, redactor: redactor)
        let registered = "s3cr3t-registry-pa55word"
        let token = "abcdef.0123456789abcdef"
        let certKey = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        let plan = try Plan(
            steps: [
                Step(
                    "kubeadm-join/gpu-01", on: .node("gpu-01"),
                    apply: { context in
                        context.redactor.register(secret: registered)
                        context.appendOutput(
                            "kubeadm join 10.0.0.1:6443 --token \(token) --certificate-key \(certKey)\n")
                        context.appendOutput("registry login with \(registered)\npassword: hunter2-long\n")
                        throw TestFailure("join failed: --token=\(token) password=\(registered)")
                    })
            ], failurePolicy: .continueOtherNodes)
        let (outcome, events) = try await runCollecting(
            PlanExecutor(plan: plan, journal: journal, logger: quiet), .start(kind: "install", cluster: "c"))
        #expect(outcome.operation.state == .failed)

        let secrets = [registered, token, certKey, "hunter2-long"]
        var stored = ""
        for suffix in ["", "-wal"] {
            let path = dir.url.appendingPathComponent(Journal.fileName + suffix).path
            if let data = FileManager.default.contents(atPath: path) {
                stored += String(decoding: data, as: UTF8.self)
            }
        }
        let exported = String(decoding: try journal.exportJSON(), as: UTF8.self)
        let eventText = events.compactMap(\.message).joined(separator: "\n")
        for secret in secrets {
            #expect(!stored.contains(secret), "journal file holds a secret")
            #expect(!exported.contains(secret), "export holds a secret")
            #expect(!eventText.contains(secret), "events hold a secret")
        }
        let failed = try #require(try journal.transitions(operation: outcome.operation.id).last { $0.state == .failed })
        #expect(failed.outputTail?.contains("--token ***") == true)
        #expect(failed.outputTail?.contains("--certificate-key ***") == true)
        #expect(failed.outputTail?.contains("password: ***") == true)
        #expect(failed.error?.contains("join failed") == true)
    }

    @Test(
        "the redactor scrubs flag values, key-value secrets and registered values",
        arguments: [
            ("kubeadm join --token abc123.0123456789abcdef", "kubeadm join --token ***"),
            ("x --certificate-key=deadbeefcafe y", "x --certificate-key=*** y"),
            ("password: hunter2", "password: ***"),
            (#"{"password": "hunter2"}"#, #"{"password": "***"}"#),
            ("token=zzz9", "token=***"),
            (#"helm --password "a b c" --set x=1"#, #"helm --password "***" --set x=1"#),
            ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "***"),
            ("nothing secret here", "nothing secret here"),
            ("my registered-secret-value!", "my ***!"),
        ])
    func redactor(input: String, expected: String) {
        let r = Redactor(secrets: ["registered-secret-value"])
        #expect(r.redact(input) == expected)
    }

    @Test("export and import round-trip an operation")
    func exportImport() async throws {
        let a = TemporaryDirectory()
        let b = TemporaryDirectory()
        defer {
            a.cleanup()
            b.cleanup()
        }
        let source = try Journal(stateDirectory: a.url)
        let plan = try Plan(steps: [Step("x", on: .node("n"), apply: { context in context.appendOutput("ok\n") })])
        let (run, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: source, logger: quiet), .start(kind: "k", cluster: "c"))
        let mirror = try Journal(stateDirectory: b.url)
        try mirror.importJSON(try source.exportJSON())
        try mirror.importJSON(try source.exportJSON(operation: run.operation.id))  // idempotent
        #expect(try mirror.operation(run.operation.id) == source.operation(run.operation.id))
        #expect(try mirror.transitions(operation: run.operation.id) == source.transitions(operation: run.operation.id))
        #expect(throws: PlanError.self) { try mirror.importJSON(Data("{not json".utf8)) }
    }

    @Test("the executor calls the mirror after transitions and survives its failures")
    func mirror() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let mirror = CountingMirror()
        let plan = try Plan(steps: [
            Step("x", on: .node("n"), apply: { _ in }), Step("y", on: .node("m"), apply: { _ in }),
        ])
        let (outcome, _) = try await runCollecting(
            PlanExecutor(plan: plan, journal: try Journal(stateDirectory: dir.url), mirror: mirror, logger: quiet),
            .start(kind: "k", cluster: "c"))
        #expect(outcome.operation.state == .succeeded)
        #expect(mirror.calls >= 4)
    }
}

final class Flag: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored: Bool
    init(_ value: Bool) { stored = value }
    var value: Bool {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

final class CountingMirror: JournalMirror, @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var count = 0
    var calls: Int { lock.withLock { count } }
    func journalDidChange(_ journal: Journal, operation: String) async throws {
        lock.withLock { count += 1 }
        _ = try journal.exportJSON(operation: operation)
        throw TestFailure("mirror unreachable")
    }
}
