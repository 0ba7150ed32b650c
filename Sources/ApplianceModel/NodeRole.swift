/// What a node does in the cluster. Roles become Kubernetes labels and taints at install.
public enum NodeRole: String, Sendable, Codable, CaseIterable, Hashable, Comparable {
    case controlPlane = "control-plane"
    case system
    case gpuWorker = "gpu-worker"
    case cpuWorker = "cpu-worker"

    public static func < (a: NodeRole, b: NodeRole) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }

    public static var names: [String] { allCases.map(\.rawValue) }
}

/// How node roles are spelled as labels (`node-role.kubernetes.io/<name>`): a profile option.
public enum RoleLabelStyle: String, Sendable, Codable, CaseIterable, Equatable {
    /// `node-role.kubernetes.io/system`, `/gpu-worker`, `/cpu-worker` with an empty value (kubeadm's own
    /// `control-plane` label is spelled this way; KAI Scheduler's defaults are `gpu-worker`/`cpu-worker`).
    case standard
    /// The Run:ai appliance guide's `node-role.kubernetes.io/runai-system`, `/runai-gpu-worker`,
    /// `/runai-cpu-worker`, set to `true` as its `kubectl label` commands do.
    case runai
}
