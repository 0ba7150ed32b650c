/// Naming rules of Kubernetes controllers that both the product and the lab's stand-ins rely on.
public enum KubernetesNames {
    /// Whether `replicaSet` is one of `deployment`'s ReplicaSets: `<deployment>-<pod-template-hash>`, the hash
    /// being one word without '-'. A bare prefix match would give `gpu-operator` the ReplicaSets (and pods) of
    /// `gpu-operator-node-feature-discovery-master`.
    public static func isReplicaSet(_ replicaSet: String, of deployment: String) -> Bool {
        guard replicaSet.hasPrefix(deployment + "-") else { return false }
        let hash = replicaSet.dropFirst(deployment.count + 1)
        return !hash.isEmpty && !hash.contains("-")
    }
}
