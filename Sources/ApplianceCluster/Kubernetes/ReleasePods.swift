import ApplianceModel
import Foundation

/// The pods of one Helm release, as install waits for them and `status` reports them: one reading for both.
///
/// A pod belongs to release R in its namespace when its controlling workload (a Deployment through its
/// ReplicaSet, a DaemonSet, a StatefulSet) carries Helm's `meta.helm.sh/release-name: R` annotation, which Helm
/// puts on every object it creates whatever the chart's labels; or when the pod itself is labelled
/// `app.kubernetes.io/instance=R` or `release=R` (pods that an operator of the release created, which Helm
/// never saw). Pods that ran to completion (`Succeeded`) are left out.
public struct ReleasePods: Sendable, Equatable {
    public struct NotReady: Sendable, Equatable {
        public var pod: String
        /// `ClusterAPI.whyNotReady`: the container's waiting reason and message, else the failing condition.
        public var reason: String
    }

    public var ready: Int
    public var notReady: [NotReady]
    public var total: Int { ready + notReady.count }

    /// The arguments are the `items` of a DeploymentList, DaemonSetList, StatefulSetList and PodList (one
    /// namespace or all of them: objects of other namespaces are not counted).
    public static func of(
        release: String, namespace: String, deployments: [[String: Any]], daemonSets: [[String: Any]],
        statefulSets: [[String: Any]], pods: [[String: Any]]
    ) -> ReleasePods {
        func helmOwned(_ items: [[String: Any]]) -> Set<String> {
            Set(
                items.compactMap { item in
                    let meta = item["metadata"] as? [String: Any] ?? [:]
                    let annotations = meta["annotations"] as? [String: String] ?? [:]
                    guard meta["namespace"] as? String ?? namespace == namespace,
                        annotations["meta.helm.sh/release-name"] == release
                    else { return nil }
                    return meta["name"] as? String
                })
        }
        let ownedDeployments = helmOwned(deployments)
        let ownedDaemonSets = helmOwned(daemonSets)
        let ownedStatefulSets = helmOwned(statefulSets)
        var out = ReleasePods(ready: 0, notReady: [])
        for pod in pods {
            let meta = pod["metadata"] as? [String: Any] ?? [:]
            guard let name = meta["name"] as? String, meta["namespace"] as? String ?? namespace == namespace else {
                continue
            }
            let labels = meta["labels"] as? [String: String] ?? [:]
            let refs = meta["ownerReferences"] as? [[String: Any]] ?? []
            let ref = refs.first(where: { $0["controller"] as? Bool == true }) ?? refs.first
            let kind = ref?["kind"] as? String ?? ""
            let owner = ref?["name"] as? String ?? ""
            let byHelm =
                switch kind {
                case "ReplicaSet": ownedDeployments.contains { KubernetesNames.isReplicaSet(owner, of: $0) }
                case "DaemonSet": ownedDaemonSets.contains(owner)
                case "StatefulSet": ownedStatefulSets.contains(owner)
                default: false
                }
            let byLabel = labels["app.kubernetes.io/instance"] == release || labels["release"] == release
            guard byHelm || byLabel else { continue }
            let status = pod["status"] as? [String: Any] ?? [:]
            if status["phase"] as? String == "Succeeded" { continue }
            if let why = ClusterAPI.whyNotReady(pod: pod) {
                out.notReady.append(NotReady(pod: name, reason: why))
            } else {
                out.ready += 1
            }
        }
        out.notReady.sort { $0.pod < $1.pod }
        return out
    }

    /// The `items` of a Kubernetes list printed as JSON (empty when it is not one).
    public static func items(_ json: String) -> [[String: Any]] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return [] }
        return o["items"] as? [[String: Any]] ?? []
    }
}
