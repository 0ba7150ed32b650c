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

extension RoleLabelStyle {
    /// The label key of a role in a spelling (kubeadm's own key for the control plane).
    public static func labelKey(_ role: NodeRole, style: RoleLabelStyle) -> String {
        switch (role, style) {
        case (.controlPlane, _): "node-role.kubernetes.io/control-plane"
        case (_, .standard): "node-role.kubernetes.io/\(role.rawValue)"
        case (_, .runai): "node-role.kubernetes.io/runai-\(role.rawValue)"
        }
    }

    /// The label value: empty in the standard spelling (and for the control plane), `true` in Run:ai's.
    public static func labelValue(_ role: NodeRole, style: RoleLabelStyle) -> String {
        role == .controlPlane || style == .standard ? "" : "true"
    }
}
