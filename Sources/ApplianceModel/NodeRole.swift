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
