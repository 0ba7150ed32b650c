import Foundation

/// The KAI Scheduler model and the Job controller, run by the controller loop (`reconcile()`).
extension APIServerStandin {
    static let crds = KResource.all.first { $0.plural == "customresourcedefinitions" } ?? KResource.jobs

    func listIfServed(_ r: KResource) throws -> [KObject] {
        if let crd = r.customResourceDefinition, try get(Self.crds, nil, crd) == nil { return [] }
        return try list(r)
    }

    /// Applies `KAISchedulerModel.plan` to the stored objects.
    func kaiSchedule() throws {
        let pods = try list(Self.pods)
        guard pods.contains(where: { K.spec($0)["schedulerName"] as? String == KAISchedulerModel.schedulerName })
        else { return }
        // KAI's components need their CRDs (the chart installs them first); without them nothing is scheduled.
        for r in [KResource.queues, KResource.podgroups] {
            guard let crd = r.customResourceDefinition, try get(Self.crds, nil, crd) != nil else { return }
        }
        let snapshot = KAISchedulerModel.Snapshot(
            nodes: try list(Self.nodes), pods: pods, queues: try listIfServed(KResource.queues),
            podGroups: try listIfServed(KResource.podgroups), jobs: try list(KResource.jobs),
            deployments: try list(Self.deployments, namespace: KAISchedulerModel.namespace))
        for action in KAISchedulerModel.plan(snapshot) {
            switch action {
            case .createPodGroup(let pg):
                _ = try create(KResource.podgroups, pg, namespace: K.namespace(pg))
            case .annotatePodGroup(let ns, let pod, let group):
                try update(Self.pods, ns, pod) {
                    K.set(&$0, ["metadata", "annotations", KAISchedulerModel.podGroupAnnotation], group)
                }
            case .createReservationPod(let pod):
                if try get(KResource.namespaces, nil, KAISchedulerModel.reservationNamespace) == nil {
                    _ = try create(
                        KResource.namespaces,
                        ["metadata": ["name": KAISchedulerModel.reservationNamespace]], namespace: nil)
                }
                _ = try create(Self.pods, pod, namespace: KAISchedulerModel.reservationNamespace)
            case .createConfigMap(let cm):
                _ = try create(KResource.configmaps, cm, namespace: K.namespace(cm))
            case .deleteReservationPod(let name):
                try delete(Self.pods, KAISchedulerModel.reservationNamespace, name)
            case .bind(let ns, let pod, let node, let labels, let annotations):
                try update(Self.pods, ns, pod) { o in
                    for (k, v) in labels { K.set(&o, ["metadata", "labels", k], v) }
                    for (k, v) in annotations { K.set(&o, ["metadata", "annotations", k], v) }
                    K.set(&o, ["spec", "nodeName"], node)
                    K.set(
                        &o, ["status", "conditions"],
                        [["type": "PodScheduled", "status": "True", "lastTransitionTime": K.timestamp()]])
                }
                try event(
                    ns: ns, pod: pod, type: "Normal", reason: "Scheduled",
                    message: "Successfully assigned \(ns)/\(pod) to \(node)")
            case .unschedulable(let ns, let pod, let message):
                guard let (current, _) = try get(Self.pods, ns, pod) else { continue }
                let cond = (K.status(current)["conditions"] as? [KObject] ?? []).first {
                    $0["type"] as? String == "PodScheduled"
                }
                if cond?["message"] as? String == message { continue }
                try update(Self.pods, ns, pod) { o in
                    K.set(
                        &o, ["status", "conditions"],
                        [
                            [
                                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": message, "lastTransitionTime": K.timestamp(),
                            ]
                        ])
                }
                try event(ns: ns, pod: pod, type: "Warning", reason: "Unschedulable", message: message)
            }
        }
    }

    /// A `v1` Event about a pod from the KAI scheduler (what `kubectl describe pod` and `get events` show).
    func event(ns: String, pod: String, type: String, reason: String, message: String) throws {
        let uid = try get(Self.pods, ns, pod).flatMap { K.meta($0.0)["uid"] as? String } ?? ""
        let now = K.timestamp()
        let ev: KObject = [
            "metadata": ["name": "\(pod).\(Self.suffix())\(Self.suffix())", "namespace": ns],
            "involvedObject": ["kind": "Pod", "namespace": ns, "name": pod, "uid": uid, "apiVersion": "v1"],
            "reason": reason, "message": message, "type": type,
            "source": ["component": KAISchedulerModel.schedulerName],
            "reportingComponent": KAISchedulerModel.schedulerName,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        ]
        _ = try create(KResource.events, ev, namespace: ns)
    }

    /// The Job controller: creates a Job's pods (`parallelism` at a time, up to `completions`), counts finished
    /// ones, and sets `Complete` (with `SuccessCriteriaMet`) or `Failed` (`BackoffLimitExceeded`); pods of a
    /// deleted Job are deleted (the garbage collector's background propagation).
    func jobsController() throws {
        let jobs = try list(KResource.jobs)
        let pods = try list(Self.pods)
        let uids = Set(jobs.compactMap { K.meta($0)["uid"] as? String })
        for p in pods where K.controller(p)?["kind"] as? String == "Job" {
            if let uid = K.controller(p)?["uid"] as? String, !uids.contains(uid) {
                try delete(Self.pods, K.namespace(p), K.name(p))
            }
        }
        for job in jobs {
            let ns = K.namespace(job), name = K.name(job)
            let uid = K.meta(job)["uid"] as? String ?? ""
            let spec = K.spec(job)
            let completions = spec["completions"] as? Int ?? 1
            let parallelism = spec["parallelism"] as? Int ?? 1
            let backoffLimit = spec["backoffLimit"] as? Int ?? 6
            let mine = pods.filter { K.controller($0)?["uid"] as? String == uid }
            let phase = { (p: KObject) in K.get(p, "status.phase") as? String ?? "Pending" }
            let succeeded = mine.filter { phase($0) == "Succeeded" }.count
            let failed = mine.filter { phase($0) == "Failed" }.count
            var active = mine.count - succeeded - failed
            let conditions = K.status(job)["conditions"] as? [KObject] ?? []
            let done = conditions.contains {
                ["Complete", "Failed"].contains($0["type"] as? String ?? "") && $0["status"] as? String == "True"
            }
            var newConditions = conditions
            let now = K.timestamp()
            if !done {
                if succeeded >= completions {
                    newConditions += [
                        [
                            "type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                            "message": "Reached expected number of succeeded pods", "lastTransitionTime": now,
                        ],
                        [
                            "type": "Complete", "status": "True", "reason": "CompletionsReached",
                            "message": "Reached expected number of succeeded pods", "lastTransitionTime": now,
                        ],
                    ]
                } else if failed > backoffLimit {
                    for p in mine where phase(p) != "Succeeded" && phase(p) != "Failed" {
                        try delete(Self.pods, ns, K.name(p))
                        active -= 1
                    }
                    newConditions += [
                        [
                            "type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit", "lastTransitionTime": now,
                        ],
                        [
                            "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                            "message": "Job has reached the specified backoff limit", "lastTransitionTime": now,
                        ],
                    ]
                } else {
                    let want = min(parallelism, completions - succeeded) - active
                    if want > 0 {
                        for _ in 0..<want {
                            if try create(Self.pods, Self.jobPod(job), namespace: ns) != nil { active += 1 }
                        }
                    }
                }
            }
            var st: KObject = K.status(job)
            st["active"] = active > 0 ? active : nil
            st["succeeded"] = succeeded > 0 ? succeeded : nil
            st["failed"] = failed > 0 ? failed : nil
            st["ready"] = mine.filter(Self.podReady).count
            if st["startTime"] == nil { st["startTime"] = now }
            if !done, newConditions.count != conditions.count {
                st["completionTime"] = succeeded >= completions ? now : nil
            }
            st["conditions"] = newConditions.isEmpty ? nil : newConditions
            if K.json(K.status(job)) != K.json(st) {
                try update(KResource.jobs, ns, name) { $0["status"] = st }
            }
        }
    }

    /// A pod of the Job, with the labels the real controller sets.
    static func jobPod(_ job: KObject) -> KObject {
        let uid = K.meta(job)["uid"] as? String ?? ""
        let name = K.name(job)
        let template = K.spec(job)["template"] as? KObject ?? [:]
        var meta = template["metadata"] as? KObject ?? [:]
        var labels = meta["labels"] as? [String: String] ?? [:]
        labels["batch.kubernetes.io/controller-uid"] = uid
        labels["batch.kubernetes.io/job-name"] = name
        labels["controller-uid"] = uid
        labels["job-name"] = name
        meta["labels"] = labels
        meta["name"] = "\(name)-\(suffix())"
        meta["namespace"] = K.namespace(job)
        meta["ownerReferences"] = [
            [
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": true,
                "blockOwnerDeletion": true,
            ]
        ]
        return ["apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"] as? KObject ?? [:]]
    }
}
