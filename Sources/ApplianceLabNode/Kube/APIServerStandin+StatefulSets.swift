import Foundation

extension APIServerStandin {
    static let statefulsets = KResource.forKind("StatefulSet") ?? KResource.deployments

    /// The StatefulSet controller, in outline: pods `NAME-0` … `NAME-(replicas-1)` owned by the StatefulSet,
    /// created in order (the next one only once the previous is Ready, as `OrderedReady`), surplus ordinals
    /// deleted from the top, pods of an older template replaced; status `replicas`/`readyReplicas`/
    /// `availableReplicas`/`currentReplicas`. No volumes are provisioned (claims in `volumeClaimTemplates` are
    /// not created; the lab stores PersistentVolumeClaims without binding them).
    func statefulSetsController() throws {
        let pods = try list(Self.pods)
        for s in try list(Self.statefulsets) {
            let ns = K.namespace(s)
            let name = K.name(s)
            let replicas = K.spec(s)["replicas"] as? Int ?? 1
            let template = K.spec(s)["template"] as? KObject ?? [:]
            let hash = Self.templateHash(template)
            let revision = "\(name)-\(hash)"
            var mine = Self.owned(pods, by: s)
            for p in mine where K.labels(p)["controller-revision-hash"] != revision {
                try delete(Self.pods, ns, K.name(p))
            }
            mine.removeAll { K.labels($0)["controller-revision-hash"] != revision }
            for p in mine {
                let ordinal = Int(K.name(p).dropFirst(name.count + 1)) ?? Int.max
                if ordinal >= replicas { try delete(Self.pods, ns, K.name(p)) }
            }
            mine.removeAll { (Int(K.name($0).dropFirst(name.count + 1)) ?? Int.max) >= replicas }
            for ordinal in 0..<replicas {
                let podName = "\(name)-\(ordinal)"
                if let existing = mine.first(where: { K.name($0) == podName }) {
                    if !Self.podReady(existing) { break }
                    continue
                }
                var pod = Self.podFromTemplate(template, owner: s, ownerKind: "StatefulSet", name: podName, ns: ns)
                K.set(&pod, ["metadata", "labels", "controller-revision-hash"], revision)
                K.set(&pod, ["metadata", "labels", "statefulset.kubernetes.io/pod-name"], podName)
                K.set(&pod, ["spec", "hostname"], podName)
                if let c = try create(Self.pods, pod, namespace: ns) { mine.append(c) }
                break
            }
            let ready = mine.filter(Self.podReady).count
            let st: KObject = [
                "replicas": mine.count, "readyReplicas": ready, "availableReplicas": ready,
                "currentReplicas": mine.count, "updatedReplicas": mine.count, "currentRevision": revision,
                "updateRevision": revision, "observedGeneration": K.meta(s)["generation"] as? Int ?? 1,
            ]
            if K.json(K.status(s)) != K.json(st) {
                try update(Self.statefulsets, ns, name) { $0["status"] = st }
            }
        }
    }
}
