import ApplianceLabNode
import Foundation
import Testing

/// The lab's KAI Scheduler model: queues, limits, fractions, gangs, as a pure function of the cluster's objects.
@Suite("KAI scheduler model")
struct KAISchedulerModelTests {
    static func node(_ name: String, gpus: Int, role: String = "gpu-worker") -> KObject {
        var alloc: KObject = ["cpu": "64", "memory": "512Gi", "pods": "110"]
        if gpus > 0 { alloc["nvidia.com/gpu"] = "\(gpus)" }
        return [
            "metadata": ["name": name, "labels": ["node-role.kubernetes.io/\(role)": ""]] as KObject,
            "spec": [:] as KObject,
            "status": ["allocatable": alloc, "conditions": [["type": "Ready", "status": "True"]]] as KObject,
        ]
    }

    static func queue(_ name: String, parent: String? = nil, quota: Double = 0, limit: Double? = -1) -> KObject {
        var gpu: KObject = ["quota": quota, "overQuotaWeight": 1]
        if let limit { gpu["limit"] = limit }
        var spec: KObject = ["resources": ["gpu": gpu] as KObject]
        if let parent { spec["parentQueue"] = parent }
        return ["metadata": ["name": name] as KObject, "spec": spec]
    }

    static func pod(
        _ name: String, queue: String?, gpus: Int = 0, fraction: String? = nil, owner: KObject? = nil,
        scheduler: String = "kai-scheduler", nodeName: String? = nil, phase: String = "Pending"
    ) -> KObject {
        var meta: KObject = ["name": name, "namespace": "smoke", "uid": "uid-\(name)"]
        if let queue { meta["labels"] = ["kai.scheduler/queue": queue] }
        if let fraction { meta["annotations"] = ["gpu-fraction": fraction] }
        if let owner { meta["ownerReferences"] = [owner] }
        var container: KObject = ["name": "c", "image": "cuda", "command": ["nvidia-smi", "-L"]]
        if gpus > 0 { container["resources"] = ["limits": ["nvidia.com/gpu": "\(gpus)"]] as KObject }
        var spec: KObject = ["schedulerName": scheduler, "containers": [container]]
        if let nodeName { spec["nodeName"] = nodeName }
        return ["metadata": meta, "spec": spec, "status": ["phase": phase] as KObject]
    }

    static func job(_ name: String, minMember: Int) -> KObject {
        [
            "metadata": [
                "name": name, "namespace": "smoke", "uid": "job-\(name)",
                "annotations": ["kai.scheduler/batch-min-member": "\(minMember)"],
                "labels": ["kai.scheduler/queue": "smoke-limited"],
            ] as KObject,
            "spec": ["parallelism": minMember, "completions": minMember] as KObject,
        ]
    }

    static var kai: KObject {
        [
            "metadata": ["name": "kai-scheduler-default", "namespace": "kai-scheduler"] as KObject,
            "status": ["availableReplicas": 1] as KObject,
        ]
    }
    static var nodes: [KObject] {
        [node("cpu-1", gpus: 0, role: "system"), node("gpu-1", gpus: 8), node("gpu-2", gpus: 8)]
    }
    static var queues: [KObject] { [queue("org", quota: 16), queue("team-a", parent: "org", quota: 8, limit: 16)] }

    func plan(_ pods: [KObject], queues: [KObject] = queues, jobs: [KObject] = [], deployed: Bool = true)
        -> [KAISchedulerModel.Action]
    {
        KAISchedulerModel.plan(
            .init(
                nodes: Self.nodes, pods: pods, queues: queues, podGroups: [], jobs: jobs,
                deployments: deployed ? [Self.kai] : []))
    }

    func binds(_ actions: [KAISchedulerModel.Action]) -> [(pod: String, node: String, labels: [String: String])] {
        actions.compactMap {
            if case .bind(_, let p, let n, let l, _) = $0 { return (p, n, l) }
            return nil
        }
    }

    func refusals(_ actions: [KAISchedulerModel.Action]) -> [String: String] {
        var out: [String: String] = [:]
        for a in actions { if case .unschedulable(_, let p, let m) = a { out[p] = m } }
        return out
    }

    @Test func nothingHappensWhileTheSchedulerIsNotDeployed() {
        #expect(plan([Self.pod("a", queue: "team-a", gpus: 1)], deployed: false).isEmpty)
        var unavailable = Self.kai
        unavailable["status"] = ["availableReplicas": 0]
        #expect(!KAISchedulerModel.isDeployed([unavailable]))
    }

    @Test func aGPUPodInALeafQueueLandsOnAGPUNode() throws {
        let actions = plan([Self.pod("a", queue: "team-a", gpus: 1)])
        let b = try #require(binds(actions).first)
        #expect(b.node.hasPrefix("gpu-"))
        #expect(
            actions.contains {
                if case .createPodGroup(let pg) = $0 {
                    return K.spec(pg)["queue"] as? String == "team-a" && K.spec(pg)["minMember"] as? Int == 1
                }
                return false
            })
    }

    @Test func aMissingOrNonLeafQueueLeavesThePodPending() {
        let missing = plan([Self.pod("a", queue: "nope", gpus: 1)])
        #expect(binds(missing).isEmpty)
        #expect(refusals(missing)["a"] == "Queue 'nope' does not exist")
        let parent = plan([Self.pod("b", queue: "org", gpus: 1)])
        #expect(binds(parent).isEmpty)
        #expect(refusals(parent)["b"]?.contains("is not a leaf queue") == true)
        let unlabelled = plan([Self.pod("c", queue: nil, gpus: 1)])
        #expect(refusals(unlabelled)["c"] == "Queue 'default-queue' does not exist")
    }

    @Test func theQueueLimitCountsPodsAlreadyBound() {
        let queues = [Self.queue("org", quota: 16), Self.queue("team-a", parent: "org", quota: 1, limit: 2)]
        let running = Self.pod("r", queue: "team-a", gpus: 2, nodeName: "gpu-1", phase: "Running")
        var annotated = running
        K.set(&annotated, ["metadata", "annotations", "pod-group-name"], "pg-r")
        let actions = plan([annotated, Self.pod("a", queue: "team-a", gpus: 1)], queues: queues)
        #expect(binds(actions).isEmpty)
        #expect(
            refusals(actions)["a"]
                == "team-a quota has reached the allowable limit of GPUs. Limit is 2 GPUs, currently 2 GPUs allocated and workload requested 1 GPUs"
        )
        // A finished pod no longer counts.
        K.set(&annotated, ["status", "phase"], "Succeeded")
        #expect(binds(plan([annotated, Self.pod("a", queue: "team-a", gpus: 1)], queues: queues)).count == 1)
    }

    @Test func aParentLimitAppliesToItsChildren() {
        let queues = [Self.queue("org", quota: 1, limit: 1), Self.queue("team-a", parent: "org", quota: 1, limit: 8)]
        let actions = plan([Self.pod("a", queue: "team-a", gpus: 2)], queues: queues)
        #expect(binds(actions).isEmpty)
        #expect(refusals(actions)["a"]?.hasPrefix("parent queue 'org' quota has reached the allowable limit") == true)
    }

    @Test func twoHalfGPUPodsShareOneGPUOnOneNode() throws {
        let actions = plan([
            Self.pod("h1", queue: "team-a", fraction: "0.5"), Self.pod("h2", queue: "team-a", fraction: "0.5"),
            Self.pod("h3", queue: "team-a", fraction: "0.5"),
        ])
        let b = binds(actions)
        #expect(b.count == 3)
        let g1 = try #require(b.first { $0.pod == "h1" }), g2 = try #require(b.first { $0.pod == "h2" })
        let g3 = try #require(b.first { $0.pod == "h3" })
        #expect(g1.node == g2.node)
        #expect(g1.labels["runai-gpu-group"] == g2.labels["runai-gpu-group"])
        #expect(g3.labels["runai-gpu-group"] != g1.labels["runai-gpu-group"])
        let reservations = actions.compactMap { a -> KObject? in
            if case .createReservationPod(let p) = a { return p }
            return nil
        }
        #expect(reservations.count == 2)
        let indices = reservations.compactMap { K.annotations($0)["run.ai/reserve_for_gpu_index"] }
        // Two reservations on the same node take different GPUs; each holds a whole GPU.
        if Set(reservations.compactMap { K.spec($0)["nodeName"] as? String }).count == 1 {
            #expect(Set(indices).count == 2)
        }
        #expect(
            reservations.allSatisfy {
                K.get($0, "spec.containers.0.resources.limits") as? [String: String] == ["nvidia.com/gpu": "1"]
            })
        let devices = actions.compactMap { a -> String? in
            if case .createConfigMap(let cm) = a, K.name(cm) == "h1-shared-gpu" || K.name(cm) == "h2-shared-gpu" {
                return (cm["data"] as? [String: String])?["NVIDIA_VISIBLE_DEVICES"]
            }
            return nil
        }
        #expect(devices.count == 2 && Set(devices).count == 1)
    }

    @Test func aFractionDoesNotFitWhereEveryGPUIsTaken() {
        let full1 = Self.pod("w1", queue: "team-a", gpus: 8, nodeName: "gpu-1", phase: "Running")
        let full2 = Self.pod("w2", queue: "team-a", gpus: 8, nodeName: "gpu-2", phase: "Running")
        let actions = plan(
            [full1, full2, Self.pod("h", queue: "team-a", fraction: "0.5")],
            queues: [Self.queue("team-a", quota: 32, limit: -1)])
        #expect(binds(actions).isEmpty)
        #expect(refusals(actions)["h"]?.contains("Insufficient nvidia.com/gpu") == true)
    }

    @Test func aGangStartsTogetherOrNotAtAll() {
        let owner = { (job: String) -> KObject in
            ["apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": "job-\(job)", "controller": true]
        }
        let two = [
            Self.pod("g-1", queue: "smoke-limited", gpus: 1, owner: owner("g")),
            Self.pod("g-2", queue: "smoke-limited", gpus: 1, owner: owner("g")),
        ]
        let roomy = plan(
            two, queues: [Self.queue("smoke-limited", quota: 0, limit: 2)], jobs: [Self.job("g", minMember: 2)])
        #expect(binds(roomy).count == 2)
        let tight = plan(
            two, queues: [Self.queue("smoke-limited", quota: 0, limit: 1)], jobs: [Self.job("g", minMember: 2)])
        #expect(binds(tight).isEmpty)
        let r = refusals(tight)
        #expect(r.count == 2)
        #expect(r["g-1"]?.contains("minimum of 2 pods") == true)
        #expect(
            r["g-1"]?.contains("smoke-limited quota has reached the allowable limit of GPUs. Limit is 1 GPUs") == true)
        // Without the gang annotation the same Job runs one pod.
        let single = plan(
            two, queues: [Self.queue("smoke-limited", quota: 0, limit: 1)], jobs: [Self.job("g", minMember: 1)])
        #expect(binds(single).count == 1)
    }

    @Test func theDefaultSchedulersPodsAreNotKAIs() {
        #expect(plan([Self.pod("d", queue: "team-a", gpus: 1, scheduler: "default-scheduler")]).isEmpty)
    }

    @Test func aReservationWithoutLiveFractionPodsIsRemoved() {
        var res = KObject()
        res["metadata"] =
            [
                "name": "gpu-reservation-gpu-1-abc", "namespace": "kai-resource-reservation",
                "labels": ["runai-gpu-group": "abc"], "annotations": ["run.ai/reserve_for_gpu_index": "0"],
            ] as KObject
        res["spec"] = ["nodeName": "gpu-1", "schedulerName": "kai-scheduler"] as KObject
        var done = Self.pod("h", queue: "team-a", fraction: "0.5", nodeName: "gpu-1", phase: "Succeeded")
        K.set(&done, ["metadata", "labels", "runai-gpu-group"], "abc")
        let actions = plan([res, done])
        #expect(
            actions.contains {
                if case .deleteReservationPod(let n) = $0 { return n == "gpu-reservation-gpu-1-abc" }
                return false
            })
    }
}
