import Foundation
import Testing

@testable import AppliancePlan

@Suite("plan validation and dry run")
struct PlanTests {
    private func step(_ name: String, _ target: StepTarget = .node("n"), after: [String] = []) -> Step {
        Step(name, on: target, after: after, apply: { _ in })
    }

    @Test("duplicate names, unknown dependencies and cycles are refused")
    func validation() {
        #expect(throws: PlanError.duplicateStep("a")) { try Plan(steps: [step("a"), step("a")]) }
        #expect(throws: PlanError.unknownDependency(step: "a", dependency: "zz")) {
            try Plan(steps: [step("a", after: ["zz"])])
        }
        #expect(throws: PlanError.dependencyCycle(["a", "c", "b", "a"])) {
            try Plan(steps: [step("a", after: ["c"]), step("b", after: ["a"]), step("c", after: ["b"])])
        }
        #expect(throws: PlanError.self) { try Plan(steps: [step("a", after: ["a"])]) }
        #expect(throws: PlanError.self) { try Plan(steps: [step("")]) }
    }

    @Test("errors carry step, node and a hint")
    func errorContext() {
        let e = PlanError.stepFailed(step: "kubeadm-join/gpu-01", node: "gpu-01", attempts: 2, message: "exit 1")
        #expect(e.description == "step 'kubeadm-join/gpu-01' on gpu-01 failed after 2 attempts: exit 1")
        #expect(e.step == "kubeadm-join/gpu-01" && e.node == "gpu-01")
        #expect(e.hint != nil)
        let lock = PlanError.lockHeld(
            cluster: "prod", holder: LockHolder(pid: 42, host: "admin-1", operation: "install-x", startedAt: Date()),
            path: "/s/locks/prod.lock")
        #expect(lock.description.contains("pid 42 on admin-1"))
        #expect(lock.description.contains("install-x"))
    }

    @Test("topological order follows dependencies and keeps plan order otherwise")
    func order() throws {
        let plan = try Plan(steps: [step("c", after: ["b"]), step("a"), step("b", after: ["a"]), step("d")])
        #expect(plan.topologicalOrder == ["a", "b", "c", "d"])
        #expect(plan.dependents(of: "a") == ["b", "c"])
    }

    @Test("render groups steps by node with dependencies; nothing executes")
    func render() throws {
        let ran = Flag(false)
        let plan = try Plan(
            steps: [
                Step("stage/gpu-01", on: .node("gpu-01"), summary: "send 3 blobs", apply: { _ in ran.value = true }),
                Step(
                    "kubeadm-join/gpu-01", on: .node("gpu-01"), after: ["stage/gpu-01", "kubeadm-init/cp-01"],
                    timeout: .seconds(300), retry: RetryPolicy(attempts: 3), apply: { _ in ran.value = true },
                    undo: { _ in }),
                Step("kubeadm-init/cp-01", on: .node("cp-01"), apply: { _ in ran.value = true }),
                Step("helm/platform", on: .cluster, after: ["kubeadm-join/gpu-01"], apply: { _ in ran.value = true }),
            ], failurePolicy: .continueOtherNodes, maxParallelism: 4)
        let text = plan.render()
        #expect(
            text == """
                plan: 4 steps on 2 nodes and the cluster, at most 4 at once, on failure: continue other nodes
                cluster
                └─ helm/platform
                      after: kubeadm-join/gpu-01
                cp-01
                └─ kubeadm-init/cp-01
                gpu-01
                ├─ stage/gpu-01  send 3 blobs
                └─ kubeadm-join/gpu-01  [timeout 5 min 0 s, 3 attempts, undo]
                      after: stage/gpu-01, kubeadm-init/cp-01

                """)
        let json = try plan.renderJSON()
        let decoded = try JSONDecoder().decode(Plan.Description.self, from: Data(json.utf8))
        #expect(decoded == plan.planDescription)
        #expect(
            decoded.steps.map(\.name) == ["stage/gpu-01", "kubeadm-join/gpu-01", "kubeadm-init/cp-01", "helm/platform"])
        #expect(decoded.steps[1].attempts == 3 && decoded.steps[1].hasUndo && decoded.steps[1].timeoutSeconds == 300)
        #expect(decoded.steps[3].node == nil)
        #expect(!ran.value)
    }
}

@Suite("cluster lock")
struct ClusterLockTests {
    @Test("a second holder is refused with a message naming the first")
    func exclusive() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let lock = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod", operation: "install-1")
        do {
            _ = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod")
            Issue.record("second acquire succeeded")
        } catch let PlanError.lockHeld(cluster, holder, _) {
            #expect(cluster == "prod")
            #expect(holder.pid == getpid())
            #expect(holder.operation == "install-1")
            #expect(holder.host == ClusterLock.currentHost())
        }
        #expect(try ClusterLock.inspect(stateDirectory: dir.url, cluster: "prod")?.isStale == false)
        #expect(throws: PlanError.self) { try ClusterLock.breakStaleLock(stateDirectory: dir.url, cluster: "prod") }
        // Another cluster is independent.
        let other = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "lab")
        other.release()
        lock.release()
        let again = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod")
        try again.update(operation: "upgrade-2")
        #expect(try ClusterLock.inspect(stateDirectory: dir.url, cluster: "prod")?.holder.operation == "upgrade-2")
        again.release()
        #expect(try ClusterLock.inspect(stateDirectory: dir.url, cluster: "prod") == nil)
    }

    @Test("a lock left by a dead process of this host is taken over at once, naming the dead holder")
    func stale() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // A real process that takes the lock and dies without releasing it.
        let lock = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod", operation: "op-dead")
        let path = lock.path
        let content = try #require(FileManager.default.contents(atPath: path))
        lock.release()
        let deadPid = try deadProcessID()
        var text = String(decoding: content, as: UTF8.self)
        text = text.replacingOccurrences(of: "\"pid\":\(getpid())", with: "\"pid\":\(deadPid)")
        #expect(text.contains("\"pid\":\(deadPid)"))
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))

        #expect(try ClusterLock.inspect(stateDirectory: dir.url, cluster: "prod")?.isStale == true)
        let taken = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod")
        #expect(taken.tookOverFrom?.pid == deadPid)
        #expect(taken.tookOverFrom?.operation == "op-dead")
        #expect(taken.holder.pid == getpid())
        // While it is held (flock), nobody else takes it.
        #expect(throws: PlanError.self) { try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod") }
        taken.release()
        let fresh = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod")
        #expect(fresh.tookOverFrom == nil)
        fresh.release()

        // A holder named on another host (a shared state directory) is not taken over.
        let foreign = try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod", operation: "op-x")
        let foreignContent = try #require(FileManager.default.contents(atPath: path))
        foreign.release()
        let other = String(decoding: foreignContent, as: UTF8.self).replacingOccurrences(
            of: "\"host\":\"\(ClusterLock.currentHostName())\"", with: "\"host\":\"laptop-7\"")
        #expect(other.contains("laptop-7"))
        try Data(other.utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: PlanError.self) { try ClusterLock.acquire(stateDirectory: dir.url, cluster: "prod") }
        let broken = try ClusterLock.breakStaleLock(stateDirectory: dir.url, cluster: "prod", force: true)
        #expect(broken?.host == "laptop-7")
    }

    private func deadProcessID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }
}
