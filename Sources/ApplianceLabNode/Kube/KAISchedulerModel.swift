import Foundation

/// The lab's model of KAI Scheduler v0.16 (the open-source Run:ai scheduler) for pods that name it
/// (`spec.schedulerName: kai-scheduler`): its pod grouper, its scheduler's queue limits, fractions and gangs, and
/// its binder's GPU reservation. A pure function of a snapshot of the cluster's objects to the actions the real
/// components would take; `APIServerStandin.kaiSchedule()` applies them. See the README ("KAI Scheduler model").
public enum KAISchedulerModel {
    public static let schedulerName = "kai-scheduler"
    public static let namespace = "kai-scheduler"
    /// The scheduler shard Deployment the KAI operator creates (`kai-scheduler-default`), or `kai-scheduler`
    /// (a chart that deploys the scheduler directly). Either, available in `namespace`, counts as deployed.
    public static let deploymentNames = ["kai-scheduler-default", "kai-scheduler"]
    public static let queueLabel = "kai.scheduler/queue"
    /// The pod grouper's queue when a workload names none (`podgrouper` default).
    public static let defaultQueue = "default-queue"
    public static let podGroupAnnotation = "pod-group-name"
    public static let batchMinMember = "kai.scheduler/batch-min-member"
    public static let gpuFraction = "gpu-fraction"
    public static let gpuGroupLabel = "runai-gpu-group"
    public static let sharedConfigMapAnnotation = "runai/shared-gpu-configmap"
    public static let receivedResourceType = "received-resource-type"
    public static let reservationNamespace = "kai-resource-reservation"
    public static let reservationIndexAnnotation = "run.ai/reserve_for_gpu_index"
    public static let gpu = "nvidia.com/gpu"

    /// What the model reads.
    public struct Snapshot {
        public var nodes: [KObject]
        public var pods: [KObject]
        public var queues: [KObject]
        public var podGroups: [KObject]
        public var jobs: [KObject]
        public var deployments: [KObject]
        public init(
            nodes: [KObject], pods: [KObject], queues: [KObject], podGroups: [KObject], jobs: [KObject] = [],
            deployments: [KObject]
        ) {
            self.nodes = nodes
            self.pods = pods
            self.queues = queues
            self.podGroups = podGroups
            self.jobs = jobs
            self.deployments = deployments
        }
    }

    /// What the real components would do.
    public enum Action {
        /// The pod grouper: a PodGroup for a workload, and its pods annotated with its name.
        case createPodGroup(KObject)
        case annotatePodGroup(namespace: String, pod: String, group: String)
        /// The binder: the pod bound to the node; labels and annotations set on the pod first (fractions).
        case bind(namespace: String, pod: String, node: String, labels: [String: String], annotations: [String: String])
        /// The binder's reservation pod holding a shared GPU (`kai-resource-reservation`).
        case createReservationPod(KObject)
        /// The GPU-sharing ConfigMap of a fraction pod (`NVIDIA_VISIBLE_DEVICES` = the GPU index).
        case createConfigMap(KObject)
        case deleteReservationPod(name: String)
        /// PodScheduled False, reason Unschedulable, with the message; an `Unschedulable` event.
        case unschedulable(namespace: String, pod: String, message: String)
    }

    public static func isDeployed(_ deployments: [KObject]) -> Bool {
        deployments.contains { d in
            K.namespace(d) == namespace && deploymentNames.contains(K.name(d))
                && ((K.status(d)["availableReplicas"] as? Int ?? 0) >= 1)
        }
    }

    static func isKAI(_ pod: KObject) -> Bool { K.spec(pod)["schedulerName"] as? String == schedulerName }
    static func finished(_ pod: KObject) -> Bool {
        let phase = K.get(pod, "status.phase") as? String
        return phase == "Succeeded" || phase == "Failed"
    }
    static func bound(_ pod: KObject) -> Bool { !(K.spec(pod)["nodeName"] as? String ?? "").isEmpty }

    /// The pod's GPU request: whole GPUs from `nvidia.com/gpu`, or the `gpu-fraction` annotation.
    static func gpuRequest(_ pod: KObject) -> (whole: Double, fraction: Double?) {
        if let f = K.annotations(pod)[gpuFraction], let v = Double(f), v > 0, v < 1 { return (0, v) }
        return (APIServerStandin.requests(pod)[gpu] ?? 0, nil)
    }

    static func gpuAmount(_ pod: KObject) -> Double {
        let r = gpuRequest(pod)
        return r.fraction ?? r.whole
    }

    /// One queue's GPU settings. Limit -1: none; a positive limit caps; 0 or unset allows nothing over the quota
    /// (KAI's documented meaning of an unset limit), so the cap is the quota (-1 quota: no cap).
    struct Queue {
        var name: String
        var parent: String?
        var quota: Double
        var limit: Double?
        var cap: Double? {
            if let limit, limit > 0 { return limit }
            if limit == -1 { return nil }
            return quota < 0 ? nil : quota
        }
    }

    static func queues(_ objects: [KObject]) -> [String: Queue] {
        var out: [String: Queue] = [:]
        for q in objects {
            let spec = K.spec(q)
            let gpu = K.get(spec, "resources.gpu") as? KObject ?? [:]
            out[K.name(q)] = Queue(
                name: K.name(q), parent: (spec["parentQueue"] as? String).flatMap { $0.isEmpty ? nil : $0 },
                quota: gpu["quota"].map { K.quantity($0) } ?? 0, limit: gpu["limit"].map { K.quantity($0) })
        }
        return out
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(v)
    }

    public static func plan(_ s: Snapshot) -> [Action] {
        guard isDeployed(s.deployments) else { return [] }
        var actions: [Action] = []
        var pods = s.pods
        var groups = s.podGroups

        // The pod grouper: one PodGroup per top owner (a Job, else the pod), queue from the owner's label, else
        // the pod's; minMember from the Job's batch-min-member annotation (default 1).
        let jobsByUID = Dictionary(
            s.jobs.map { (K.meta($0)["uid"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        for i in pods.indices where isKAI(pods[i]) && !finished(pods[i]) && K.namespace(pods[i]) != reservationNamespace
        {
            let pod = pods[i]
            if K.annotations(pod)[podGroupAnnotation] != nil { continue }
            let owner = K.controller(pod)
            let job = owner?["kind"] as? String == "Job" ? jobsByUID[owner?["uid"] as? String ?? ""] : nil
            let top = job ?? pod
            let uid = K.meta(top)["uid"] as? String ?? ""
            let name = "pg-\(K.name(top))-\(uid)"
            let queue = K.labels(top)[queueLabel] ?? K.labels(pod)[queueLabel] ?? defaultQueue
            let minMember = job.flatMap { K.annotations($0)[batchMinMember] }.flatMap { Int($0) } ?? 1
            let ns = K.namespace(pod)
            if !groups.contains(where: { K.name($0) == name && K.namespace($0) == ns }) {
                let pg: KObject = [
                    "apiVersion": "scheduling.run.ai/v2alpha2", "kind": "PodGroup",
                    "metadata": [
                        "name": name, "namespace": ns,
                        "ownerReferences": [
                            [
                                "apiVersion": job == nil ? "v1" : "batch/v1", "kind": job == nil ? "Pod" : "Job",
                                "name": K.name(top), "uid": uid,
                            ]
                        ],
                    ] as KObject,
                    "spec": ["minMember": minMember, "queue": queue, "priorityClassName": "train"] as KObject,
                ]
                groups.append(pg)
                actions.append(.createPodGroup(pg))
            }
            actions.append(.annotatePodGroup(namespace: ns, pod: K.name(pod), group: name))
            var meta = K.meta(pod)
            var ann = meta["annotations"] as? [String: String] ?? [:]
            ann[podGroupAnnotation] = name
            meta["annotations"] = ann
            pods[i]["metadata"] = meta
        }

        let queues = queues(s.queues)
        let parents = Set(queues.values.compactMap(\.parent))
        // GPUs allocated per queue (the leaf's pods; parents add their children's).
        var allocated: [String: Double] = [:]
        func charge(_ queue: String, _ amount: Double) {
            var q: String? = queue
            var seen: Set<String> = []
            while let name = q, !seen.contains(name) {
                seen.insert(name)
                allocated[name, default: 0] += amount
                q = queues[name]?.parent
            }
        }
        func groupQueue(_ pod: KObject) -> String {
            let gname = K.annotations(pod)[podGroupAnnotation] ?? ""
            let pg = groups.first { K.name($0) == gname && K.namespace($0) == K.namespace(pod) }
            return pg.flatMap { K.spec($0)["queue"] as? String } ?? K.labels(pod)[queueLabel] ?? defaultQueue
        }
        for p in pods where isKAI(p) && bound(p) && !finished(p) && K.namespace(p) != reservationNamespace {
            charge(groupQueue(p), gpuAmount(p))
        }

        // Node usage as the default scheduler counts it (reservation pods hold their whole GPU), and the shared
        // GPUs: group → (node, index, fractions in use).
        let apiserverUsage = usage(pods)
        var used = apiserverUsage
        struct Shared {
            var node: String
            var index: Int
            var inUse: Double
        }
        var shared: [String: Shared] = [:]
        var reservedIndices: [String: Set<Int>] = [:]
        for p in pods where K.namespace(p) == reservationNamespace && bound(p) {
            guard let g = K.labels(p)[gpuGroupLabel], let node = K.spec(p)["nodeName"] as? String else { continue }
            let idx = Int(K.annotations(p)[reservationIndexAnnotation] ?? "") ?? 0
            shared[g] = Shared(node: node, index: idx, inUse: 0)
            reservedIndices[node, default: []].insert(idx)
        }
        var liveGroups: Set<String> = []
        for p in pods where K.namespace(p) != reservationNamespace && !finished(p) {
            guard let g = K.labels(p)[gpuGroupLabel] else { continue }
            liveGroups.insert(g)
            if bound(p) { shared[g]?.inUse += gpuRequest(p).fraction ?? 0 }
        }
        // The binder's sync: a reservation pod whose fraction pods are all gone is deleted.
        for p in pods where K.namespace(p) == reservationNamespace {
            if let g = K.labels(p)[gpuGroupLabel], !liveGroups.contains(g) {
                actions.append(.deleteReservationPod(name: K.name(p)))
                if let node = K.spec(p)["nodeName"] as? String {
                    used[node]?[gpu, default: 0] -= 1
                    if let idx = Int(K.annotations(p)[reservationIndexAnnotation] ?? "") {
                        reservedIndices[node]?.remove(idx)
                    }
                }
                shared[g] = nil
            }
        }

        // Pending KAI pods by pod group, in creation order of the group.
        let pending = pods.filter {
            isKAI($0) && !bound($0) && !finished($0) && K.namespace($0) != reservationNamespace
                && K.annotations($0)[podGroupAnnotation] != nil
        }
        var order: [(ns: String, group: String)] = []
        for p in pending {
            let key = (K.namespace(p), K.annotations(p)[podGroupAnnotation] ?? "")
            if !order.contains(where: { $0 == key }) { order.append(key) }
        }
        let nodes = s.nodes
        for (ns, gname) in order {
            let members = pods.filter {
                K.namespace($0) == ns && K.annotations($0)[podGroupAnnotation] == gname && !finished($0)
            }
            let waiting = members.filter { !bound($0) }
            let running = members.count - waiting.count
            let pg = groups.first { K.name($0) == gname && K.namespace($0) == ns }
            let minMember = (pg.flatMap { K.spec($0)["minMember"] as? Int }) ?? 1
            let queueName = pg.flatMap { K.spec($0)["queue"] as? String } ?? defaultQueue
            func refuse(_ message: String) {
                for p in waiting { actions.append(.unschedulable(namespace: ns, pod: K.name(p), message: message)) }
            }
            guard let queue = queues[queueName] else {
                refuse("Queue '\(queueName)' does not exist")
                continue
            }
            if parents.contains(queueName) {
                refuse("Queue '\(queueName)' is not a leaf queue; jobs can only be submitted to leaf queues")
                continue
            }
            if let parent = queue.parent, queues[parent] == nil {
                refuse("Queue '\(queueName)' has parent queue '\(parent)', which does not exist")
                continue
            }
            if running + waiting.count < minMember {
                refuse(
                    "Not enough pods for the pod group: \(running + waiting.count) exist, its minMember is \(minMember)"
                )
                continue
            }
            // Try to place every waiting pod on a trial copy; keep the placements only if the group reaches
            // minMember (all or none).
            var trialUsed = used
            var trialShared = shared
            var trialReserved = reservedIndices
            var trialAllocated = allocated
            var placements: [Action] = []
            var extra: [Action] = []
            var placed = 0
            var firstFailure: String?
            for pod in waiting {
                let amount = gpuAmount(pod)
                // Queue limits: the leaf, then each parent.
                var limitFailure: String?
                var q: String? = queueName
                var seen: Set<String> = []
                while let name = q, let info = queues[name], !seen.contains(name) {
                    seen.insert(name)
                    if let cap = info.cap, trialAllocated[name, default: 0] + amount > cap + 1e-9 {
                        let prefix = name == queueName ? name : "parent queue '\(name)'"
                        limitFailure =
                            "\(prefix) quota has reached the allowable limit of GPUs. Limit is \(format(cap)) GPUs, currently \(format(trialAllocated[name, default: 0])) GPUs allocated and workload requested \(format(amount)) GPUs"
                        break
                    }
                    q = info.parent
                }
                if let limitFailure {
                    firstFailure = firstFailure ?? limitFailure
                    continue
                }
                var reasons: [String: Int] = [:]
                var chosen: (node: String, fraction: (group: String, index: Int, new: Bool)?)?
                let fraction = gpuRequest(pod).fraction
                // Fractions first share a GPU already reserved (KAI bin-packs fractions).
                if let f = fraction {
                    for (g, sh) in trialShared.sorted(by: { $0.key < $1.key }) where sh.inUse + f <= 1 + 1e-9 {
                        guard let node = nodes.first(where: { K.name($0) == sh.node }),
                            APIServerStandin.unfit(pod, node: node, used: trialUsed[sh.node] ?? [:]) == nil
                        else { continue }
                        chosen = (sh.node, (g, sh.index, false))
                        break
                    }
                }
                if chosen == nil {
                    var best: (String, Double)?
                    for node in nodes {
                        let n = K.name(node)
                        // A new shared GPU takes a whole one on the node.
                        var probe = pod
                        if fraction != nil {
                            K.set(
                                &probe, ["spec", "containers"],
                                [["name": "probe", "resources": ["limits": [gpu: "1"]]]] as [KObject])
                        }
                        if let why = APIServerStandin.unfit(probe, node: node, used: trialUsed[n] ?? [:]) {
                            reasons[why, default: 0] += 1
                            continue
                        }
                        let load = trialUsed[n]?["pods"] ?? 0
                        if load < (best?.1 ?? .infinity) { best = (n, load) }
                    }
                    if let (n, _) = best {
                        if fraction != nil {
                            let allocatable = Int(
                                K.quantity(
                                    (nodes.first { K.name($0) == n }).flatMap {
                                        K.get($0, "status.allocatable") as? KObject
                                    }?[
                                        gpu]))
                            let taken = trialReserved[n] ?? []
                            let index = (0..<max(allocatable, 1)).first { !taken.contains($0) } ?? 0
                            let group = "\(K.uid())"
                            chosen = (n, (group, index, true))
                        } else {
                            chosen = (n, nil)
                        }
                    }
                }
                guard let (node, frac) = chosen else {
                    let detail = reasons.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(
                        separator: ", ")
                    firstFailure =
                        firstFailure
                        ?? "0/\(nodes.count) nodes are available: \(detail.isEmpty ? "no nodes" : detail)."
                    continue
                }
                placed += 1
                var u = trialUsed[node] ?? [:]
                for (k, v) in APIServerStandin.requests(pod) { u[k, default: 0] += v }
                u["pods", default: 0] += 1
                var q2: String? = queueName
                var seen2: Set<String> = []
                while let name = q2, !seen2.contains(name) {
                    seen2.insert(name)
                    trialAllocated[name, default: 0] += amount
                    q2 = queues[name]?.parent
                }
                if let (group, index, new) = frac {
                    let cm = "\(K.name(pod))-shared-gpu"
                    if new {
                        u[gpu, default: 0] += 1
                        u["pods", default: 0] += 1
                        trialShared[group] = Shared(node: node, index: index, inUse: 0)
                        trialReserved[node, default: []].insert(index)
                        extra.append(.createReservationPod(reservationPod(node: node, group: group, index: index)))
                    }
                    trialShared[group]?.inUse += fraction ?? 0
                    extra.append(
                        .createConfigMap([
                            "apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": [
                                "name": cm, "namespace": ns,
                                "ownerReferences": [
                                    [
                                        "apiVersion": "v1", "kind": "Pod", "name": K.name(pod),
                                        "uid": K.meta(pod)["uid"] as? String ?? "",
                                    ]
                                ],
                            ] as KObject,
                            "data": ["NVIDIA_VISIBLE_DEVICES": "\(index)"],
                        ]))
                    placements.append(
                        .bind(
                            namespace: ns, pod: K.name(pod), node: node, labels: [gpuGroupLabel: group],
                            annotations: [sharedConfigMapAnnotation: cm, receivedResourceType: "Fraction"]))
                } else {
                    placements.append(.bind(namespace: ns, pod: K.name(pod), node: node, labels: [:], annotations: [:]))
                }
                trialUsed[node] = u
            }
            if running + placed >= minMember && placed > 0 {
                actions += extra + placements
                used = trialUsed
                shared = trialShared
                reservedIndices = trialReserved
                allocated = trialAllocated
                // Pods of the group that could not be placed beyond minMember wait.
                if placed < waiting.count, let firstFailure {
                    let bound = Set(
                        placements.compactMap { a -> String? in
                            if case .bind(_, let p, _, _, _) = a { return p }
                            return nil
                        })
                    for p in waiting where !bound.contains(K.name(p)) {
                        actions.append(.unschedulable(namespace: ns, pod: K.name(p), message: firstFailure))
                    }
                }
            } else {
                let why = firstFailure ?? "no node fits"
                let message =
                    minMember > 1
                    ? "Not enough resources to start the pod group's minimum of \(minMember) pods (\(running + placed) could run): \(why)"
                    : why
                refuse(message)
            }
        }
        return actions
    }

    static func usage(_ pods: [KObject]) -> [String: [String: Double]] {
        var out: [String: [String: Double]] = [:]
        for p in pods {
            guard let n = K.spec(p)["nodeName"] as? String, !n.isEmpty, !finished(p) else { continue }
            for (k, v) in APIServerStandin.requests(p) { out[n, default: [:]][k, default: 0] += v }
            out[n, default: [:]]["pods", default: 0] += 1
        }
        return out
    }

    /// The binder's reservation pod: bound to the node, holding one whole GPU for the group, the GPU index in
    /// `run.ai/reserve_for_gpu_index` (the real one learns it from the device plugin's allocation).
    static func reservationPod(node: String, group: String, index: Int) -> KObject {
        [
            "apiVersion": "v1", "kind": "Pod",
            "metadata": [
                "name": "gpu-reservation-\(node)-\(group.prefix(8))", "namespace": reservationNamespace,
                "labels": ["app": "kai-resource-reservation", gpuGroupLabel: group],
                "annotations": [reservationIndexAnnotation: "\(index)"],
            ] as KObject,
            "spec": [
                "nodeName": node, "schedulerName": schedulerName, "restartPolicy": "Always",
                "containers": [
                    [
                        "name": "resource-reservation",
                        "image": "ghcr.io/kai-scheduler/kai-scheduler/resource-reservation",
                        "resources": ["limits": [gpu: "1"], "requests": [gpu: "1"]] as KObject,
                    ] as KObject
                ],
            ] as KObject,
        ]
    }
}
