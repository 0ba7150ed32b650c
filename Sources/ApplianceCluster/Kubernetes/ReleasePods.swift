import ApplianceModel
import Foundation

/// The pods of one Helm release, as install waits for them and `status` reports them: one reading for both.
///
/// A pod belongs to release R in its namespace when its controlling workload (a Deployment through its
/// ReplicaSet, a DaemonSet, a StatefulSet, or a custom resource of `ownerResources`) carries Helm's
/// `meta.helm.sh/release-name: R` annotation, which Helm puts on every object it creates whatever the chart's
/// labels, or is itself controlled by such an object (an operator's DaemonSet of a Helm-made ClusterPolicy);
/// or when the pod itself is labelled `app.kubernetes.io/instance=R` or `release=R`. That is how the instance
/// pods of a CloudNativePG `Cluster` (owned by the Cluster, which the release made) are counted. Pods that ran
/// to completion (`Succeeded`) are left out.
public struct ReleasePods: Sendable, Equatable {
    public struct NotReady: Sendable, Equatable {
        public var pod: String
        /// `ClusterAPI.whyNotReady`: the container's waiting reason and message, else the failing condition.
        public var reason: String
        /// `pod`, or the kind of an operator's resource (`Cluster`) that is not ready as a whole.
        public var kind = "pod"
    }

    public var ready: Int
    public var notReady: [NotReady]
    public var total: Int { ready + notReady.count }

    /// The custom resources of the platform's operators that own pods or workloads (as `kubectl get` names
    /// them): CloudNativePG's `Cluster` owns its instance pods; the GPU Operator's cluster-scoped
    /// `ClusterPolicy` owns the DaemonSets of its operands. A cluster without the CRD has none of them.
    public static let ownerResources = ["clusters.postgresql.cnpg.io", "clusterpolicies.nvidia.com"]

    /// The arguments are the `items` of a DeploymentList, DaemonSetList, StatefulSetList and PodList, and of
    /// the lists of `ownerResources` (one namespace or all of them: objects of other namespaces are not
    /// counted; cluster-scoped owners count in every namespace).
    public static func of(
        release: String, namespace: String, deployments: [[String: Any]], daemonSets: [[String: Any]],
        statefulSets: [[String: Any]], owners: [[String: Any]] = [], pods: [[String: Any]]
    ) -> ReleasePods {
        func controller(_ meta: [String: Any]) -> (kind: String, name: String)? {
            let refs = meta["ownerReferences"] as? [[String: Any]] ?? []
            guard let ref = refs.first(where: { $0["controller"] as? Bool == true }) ?? refs.first,
                let kind = ref["kind"] as? String, let name = ref["name"] as? String
            else { return nil }
            return (kind, name)
        }
        // "Kind/name" of every object of the release: Helm's own, then the workloads those control.
        var owned = Set<String>()
        let workloads: [(String, [[String: Any]])] = [
            ("Deployment", deployments), ("DaemonSet", daemonSets), ("StatefulSet", statefulSets),
        ]
        let all = workloads + [("", owners)]
        for (defaultKind, items) in all {
            for item in items {
                let meta = item["metadata"] as? [String: Any] ?? [:]
                let annotations = meta["annotations"] as? [String: String] ?? [:]
                guard meta["namespace"] as? String ?? namespace == namespace,
                    annotations["meta.helm.sh/release-name"] == release, let name = meta["name"] as? String
                else { continue }
                owned.insert("\(item["kind"] as? String ?? defaultKind)/\(name)")
            }
        }
        for (kind, items) in workloads {
            for item in items {
                let meta = item["metadata"] as? [String: Any] ?? [:]
                guard meta["namespace"] as? String ?? namespace == namespace, let name = meta["name"] as? String,
                    let c = controller(meta), owned.contains("\(c.kind)/\(c.name)")
                else { continue }
                owned.insert("\(kind)/\(name)")
            }
        }
        let ownedDeployments = owned.filter { $0.hasPrefix("Deployment/") }.map {
            String($0.dropFirst("Deployment/".count))
        }
        var out = ReleasePods(ready: 0, notReady: [])
        for pod in pods {
            let meta = pod["metadata"] as? [String: Any] ?? [:]
            guard let name = meta["name"] as? String, meta["namespace"] as? String ?? namespace == namespace else {
                continue
            }
            let labels = meta["labels"] as? [String: String] ?? [:]
            let byHelm =
                switch controller(meta) {
                case let c? where c.kind == "ReplicaSet":
                    ownedDeployments.contains { KubernetesNames.isReplicaSet(c.name, of: $0) }
                case let c?: owned.contains("\(c.kind)/\(c.name)")
                case nil: false
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

    /// The release's own resources among `owners` that say they have fewer instances ready than they want:
    /// a CloudNativePG `Cluster` (`status.readyInstances` against `spec.instances`) whose operator has not
    /// created every instance pod yet has pods that are all Ready, but too few of them. Each with why.
    public static func unsettledOwners(release: String, namespace: String, owners: [[String: Any]]) -> [NotReady] {
        owners.compactMap { item in
            let meta = item["metadata"] as? [String: Any] ?? [:]
            let annotations = meta["annotations"] as? [String: String] ?? [:]
            guard item["kind"] as? String == "Cluster", meta["namespace"] as? String ?? namespace == namespace,
                annotations["meta.helm.sh/release-name"] == release, let name = meta["name"] as? String
            else { return nil }
            let wanted = (item["spec"] as? [String: Any])?["instances"] as? Int ?? 1
            let status = item["status"] as? [String: Any] ?? [:]
            let ready = status["readyInstances"] as? Int ?? 0
            guard ready < wanted else { return nil }
            let phase = (status["phase"] as? String).map { " (\($0))" } ?? ""
            return NotReady(pod: name, reason: "\(ready) of \(wanted) instances ready\(phase)", kind: "Cluster")
        }
    }

    /// The `items` of a Kubernetes list printed as JSON (empty when it is not one).
    public static func items(_ json: String) -> [[String: Any]] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any] else { return [] }
        return o["items"] as? [[String: Any]] ?? []
    }
}
