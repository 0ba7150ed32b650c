import ApplianceModel
import AppliancePlatform
import Foundation
import Testing

@testable import ApplianceOperations

/// The smoke test runner against a scripted kubectl (the lab test `LabSmokeTests` runs it against a cluster), and
/// where install puts the smoke steps.
@Suite struct SmokeRunnerTests {
    /// A kubectl that answers from the state the test sets, and records every call.
    final class FakeKubectl: @unchecked Sendable {
        // @unchecked: guarded by the lock.
        let lock = NSLock()
        var calls: [[String]] = []
        var job: [String: Any] = ["status": [:] as [String: Any]]
        var pods: [[String: Any]] = []
        var nodes: [[String: Any]] = [
            ["metadata": ["name": "gpu-1"], "status": ["allocatable": ["nvidia.com/gpu": "8"]]],
            ["metadata": ["name": "sys-1"], "status": ["allocatable": ["cpu": "8"]]],
        ]
        /// After the Job is applied, how pods and the Job look.
        var onApply: ((FakeKubectl) -> Void)?
        /// Called before each `get pods` answer (pods changing over time).
        var onGetPods: ((FakeKubectl) -> Void)?
        /// Called before each `get job` answer.
        var onGetJob: ((FakeKubectl) -> Void)?
        var deleted = false

        func json(_ o: Any) -> String {
            String(decoding: (try? JSONSerialization.data(withJSONObject: o)) ?? Data(), as: UTF8.self)
        }

        var kubectl: SmokeRunner.Kubectl {
            { args, stdin, _ in
                self.lock.withLock {
                    self.calls.append(args)
                    switch (args.first, args.dropFirst().first) {
                    case ("apply", _):
                        if let stdin, String(decoding: stdin, as: UTF8.self).contains("kind: Job") {
                            self.onApply?(self)
                        }
                        return .init(status: 0, stdout: "", stderr: "")
                    case ("delete", "job"?):
                        self.pods = []
                        self.deleted = true
                        return .init(status: 0, stdout: "", stderr: "")
                    case ("get", "pods"?):
                        self.onGetPods?(self)
                        return .init(status: 0, stdout: self.json(["items": self.pods]), stderr: "")
                    case ("get", "job"?):
                        self.onGetJob?(self)
                        return .init(status: 0, stdout: self.json(self.job), stderr: "")
                    case ("get", "nodes"?):
                        return .init(status: 0, stdout: self.json(["items": self.nodes]), stderr: "")
                    case ("logs", let pod?):
                        return .init(status: 1, stdout: "", stderr: "logs of \(pod) unavailable")
                    default:
                        return .init(status: 0, stdout: "", stderr: "")
                    }
                }
            }
        }
    }

    static func pod(_ name: String, node: String?, phase: String, labels: [String: String] = [:], exit: Int? = nil)
        -> [String: Any]
    {
        var spec: [String: Any] = [:]
        if let node { spec["nodeName"] = node }
        var status: [String: Any] = ["phase": phase]
        if let exit {
            status["containerStatuses"] = [
                ["name": "nvidia-smi", "state": ["terminated": ["exitCode": exit, "message": "GPU is lost"]]]
            ]
        }
        return ["metadata": ["name": name, "labels": labels], "spec": spec, "status": status]
    }

    static func failed(_ f: FakeKubectl) {
        f.job = ["status": ["conditions": [["type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"]]]]
    }

    static func complete(_ f: FakeKubectl) {
        f.job = ["status": ["conditions": [["type": "Complete", "status": "True"]]]]
    }

    static var config: PlatformConfiguration {
        get throws {
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            // The example site names TLS files beside it; the smoke tests read none of them.
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smoke-site-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            try FileManager.default.createDirectory(
                at: dir.appendingPathComponent("tls"), withIntermediateDirectories: true)
            for f in ["wildcard.crt", "wildcard.key", "site-ca.crt"] {
                try Data("unused".utf8).write(to: dir.appendingPathComponent("tls/\(f)"))
            }
            let copy = dir.appendingPathComponent("site.yaml")
            try FileManager.default.copyItem(
                at: root.appendingPathComponent("schemas/examples/site-platform.yaml"), to: copy)
            let site = try SiteInventory.load(path: copy.path)
            let profile = try ProfileCatalog(directory: root.appendingPathComponent("profiles").path).load("hpc-8xa100")
            return try PlatformConfiguration.resolve(site: site, profile: profile)
        }
    }

    func runner(_ f: FakeKubectl, _ dir: URL) -> SmokeRunner {
        SmokeRunner(kubectl: f.kubectl, evidenceDirectory: dir, pollInterval: .milliseconds(10))
    }

    func tempDir() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("smoke-runner-\(UUID().uuidString)")
    }

    @Test func aGPUPodOnAGPUNodePassesAndEverythingIsDeleted() async throws {
        let f = FakeKubectl()
        f.onApply = { f in
            f.pods = [Self.pod("smoke-gpu-abcde", node: "gpu-1", phase: "Succeeded")]
            Self.complete(f)
        }
        let line = try await runner(f, tempDir()).run(SmokeTests.gpu(try Self.config))
        #expect(line.contains("smoke-gpu-abcde on gpu-1"))
        #expect(f.deleted)
        #expect(
            f.calls.contains { $0.starts(with: ["delete", "queues.scheduling.run.ai", "appliance-smoke-limited"]) })
        #expect(f.calls.contains { $0.first == "apply" })
    }

    @Test func aPodOnANodeWithoutGPUsFails() async throws {
        let f = FakeKubectl()
        f.onApply = { f in
            f.pods = [Self.pod("smoke-gpu-abcde", node: "sys-1", phase: "Succeeded")]
            Self.complete(f)
        }
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let e = await #expect(throws: SmokeRunner.Failure.self) {
            try await runner(f, dir).run(SmokeTests.gpu(try Self.config))
        }
        #expect(e?.description.hasPrefix("smoke test gpu failed: pod smoke-gpu-abcde: ran on sys-1") == true)
    }

    @Test func aFailedJobNamesThePodAndWhyAndKeepsEvidence() async throws {
        let f = FakeKubectl()
        f.onApply = { f in
            f.pods = [Self.pod("smoke-gpu-abcde", node: "gpu-1", phase: "Failed", exit: 15)]
            Self.failed(f)
        }
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let e = await #expect(throws: SmokeRunner.Failure.self) {
            try await runner(f, dir).run(SmokeTests.gpu(try Self.config))
        }
        let text = e?.description ?? ""
        #expect(text.contains("pod smoke-gpu-abcde"), "\(text)")
        #expect(text.contains("container nvidia-smi exited 15: GPU is lost"), "\(text)")
        #expect(text.contains("kept in \(dir.path)"), "\(text)")
        for file in ["pods.json", "job.json", "events.txt", "smoke-gpu-abcde.log"] {
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "\(file)")
        }
        let log = try String(contentsOf: dir.appendingPathComponent("smoke-gpu-abcde.log"), encoding: .utf8)
        #expect(log.contains("logs of smoke-gpu-abcde unavailable") && log.contains("exited 15"))
        #expect(f.deleted)
    }

    /// The pod ends, and the Job controller marks the Job Failed, between two polls' reads: the failure still
    /// carries the container's exit code and message (the Job is read before its pods).
    @Test func aPodThatFailsJustBeforeTheJobIsReadIsNamedWithItsExitCode() async throws {
        let f = FakeKubectl()
        f.onApply = { f in f.pods = [Self.pod("smoke-gpu-abcde", node: "gpu-1", phase: "Running")] }
        var gets = 0
        f.onGetJob = { f in
            gets += 1
            guard gets == 2 else { return }
            f.pods = [Self.pod("smoke-gpu-abcde", node: "gpu-1", phase: "Failed", exit: 15)]
            Self.failed(f)
        }
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let e = await #expect(throws: SmokeRunner.Failure.self) {
            try await runner(f, dir).run(SmokeTests.gpu(try Self.config))
        }
        #expect(
            e?.description.contains("container nvidia-smi exited 15: GPU is lost") == true, "\(String(describing: e))")
    }

    @Test func twoFractionsMustShareOneGPUGroup() async throws {
        let f = FakeKubectl()
        f.onApply = { f in
            f.pods = [
                Self.pod("a", node: "gpu-1", phase: "Succeeded", labels: ["runai-gpu-group": "g1"]),
                Self.pod("b", node: "gpu-1", phase: "Succeeded", labels: ["runai-gpu-group": "g2"]),
            ]
            Self.complete(f)
        }
        let e = await #expect(throws: SmokeRunner.Failure.self) {
            try await runner(f, tempDir()).run(SmokeTests.gpuFraction(try Self.config))
        }
        #expect(e?.description.contains("did not share one GPU: GPU groups [\"g1\", \"g2\"]") == true)
        f.onApply = { f in
            f.pods = [
                Self.pod("a", node: "gpu-1", phase: "Succeeded", labels: ["runai-gpu-group": "g1"]),
                Self.pod("b", node: "gpu-1", phase: "Succeeded", labels: ["runai-gpu-group": "g1"]),
            ]
            Self.complete(f)
        }
        let line = try await runner(f, tempDir()).run(SmokeTests.gpuFraction(try Self.config))
        #expect(line.contains("2 pods on gpu-1 in GPU group g1"))
    }

    @Test func aGangSeenPartlyBoundDidNotStartTogether() async throws {
        let f = FakeKubectl()
        var polls = 0
        f.onApply = { f in
            polls = 0
            f.deleted = false
        }
        f.onGetPods = { f in
            polls += 1
            guard !f.deleted else { return }
            if polls < 4 {
                f.pods = [
                    Self.pod("g-1", node: "gpu-1", phase: "Running"), Self.pod("g-2", node: nil, phase: "Pending"),
                ]
            } else {
                f.pods = [
                    Self.pod("g-1", node: "gpu-1", phase: "Succeeded"),
                    Self.pod("g-2", node: "gpu-1", phase: "Succeeded"),
                ]
                Self.complete(f)
            }
        }
        let e = await #expect(throws: SmokeRunner.Failure.self) {
            try await runner(f, tempDir()).run(SmokeTests.gang(try Self.config))
        }
        #expect(
            e?.description.contains("pod g-1: started before the rest of its gang") == true, "\(String(describing: e))")
    }

    @Test func aGangThatStartsIsRefusedWhenItsQueueAdmitsOneGPU() async throws {
        var test = SmokeTests.gangLimit(try Self.config)
        test.expectation = .staysPending(seconds: 0)
        let f = FakeKubectl()
        f.onApply = { f in
            f.pods = [Self.pod("g-1", node: "gpu-1", phase: "Running"), Self.pod("g-2", node: nil, phase: "Pending")]
        }
        let e = await #expect(throws: SmokeRunner.Failure.self) { try await runner(f, tempDir()).run(test) }
        #expect(
            e?.description.contains("pod g-1: was bound to gpu-1 although its queue appliance-smoke-limited") == true)
        // Held back: both Pending with the scheduler's condition.
        f.onApply = { f in
            let cond: [String: Any] = [
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "limit reached",
            ]
            f.pods = ["g-1", "g-2"].map {
                var p = Self.pod($0, node: nil, phase: "Pending")
                p["status"] = ["phase": "Pending", "conditions": [cond]]
                return p
            }
        }
        let line = try await runner(f, tempDir()).run(test)
        #expect(line.contains("2 pods pending for 0s (limit reached)"))
    }

    @Test func theStepsFollowThePlatformAndRunOnlyForDeployedReleases() throws {
        let tests = SmokeTests.all(try Self.config)
        #expect(InstallPlan.smokeOrder(tests, existing: ["record", "roles/cp-1"]).isEmpty)
        let existing = [
            "gpu-validate/gpu-1", "record", "platform-check", "platform/kai-scheduler", "platform/platform-db",
            "platform-queues",
        ]
        let order = InstallPlan.smokeOrder(tests, existing: existing)
        #expect(order.map(\.test.name) == ["gpu", "gpu-fraction", "gang", "gang-limit", "database"])
        #expect(
            order[0].after == [
                "platform-check", "platform/kai-scheduler", "platform/platform-db", "platform-queues",
                "gpu-validate/gpu-1",
            ])
        #expect(order[1].after.last == "smoke/gpu")
        #expect(
            order[4].after == [
                "platform-check", "platform/kai-scheduler", "platform/platform-db", "platform-queues",
                "smoke/gang-limit",
            ])
    }
}
