import ApplianceModel

/// A Kubernetes node label.
public struct NodeLabel: Sendable, Hashable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
    /// `key=value` as `kubectl label node N key=value --overwrite` takes it.
    public var kubectlArgument: String { "\(key)=\(value)" }
}

/// A Kubernetes node taint.
public struct NodeTaint: Sendable, Hashable {
    public enum Effect: String, Sendable, Hashable {
        case noSchedule = "NoSchedule", preferNoSchedule = "PreferNoSchedule", noExecute = "NoExecute"
    }
    public var key: String
    public var value: String
    public var effect: Effect
    public init(key: String, value: String = "", effect: Effect) {
        self.key = key
        self.value = value
        self.effect = effect
    }
    /// `key[=value]:Effect` as `kubectl taint node N ... --overwrite` takes it.
    public var kubectlArgument: String {
        value.isEmpty ? "\(key):\(effect.rawValue)" : "\(key)=\(value):\(effect.rawValue)"
    }
}

/// The labels and taints a node carries for its roles, as data: the install step applies them with
/// `kubectl label/taint --overwrite` after the node joins, and a rejoin re-applies the same set.
///
/// - `control-plane`: kubeadm's own label (`node-role.kubernetes.io/control-plane=""`) and its
///   `NoSchedule` taint, kept (also listed so a rejoin can check them).
/// - `system`, `gpu-worker`, `cpu-worker`: `node-role.kubernetes.io/<role>` = "" in the standard spelling,
///   `node-role.kubernetes.io/runai-<role>` = "true" in the Run:ai guide's (profile `roleLabels: runai`).
/// - system nodes get `<system label key>:NoSchedule` when the site asks for dedicated system nodes.
public struct NodeRoleMarks: Sendable, Equatable {
    public var labels: [NodeLabel]
    public var taints: [NodeTaint]

    public static let controlPlaneKey = "node-role.kubernetes.io/control-plane"

    public init(labels: [NodeLabel], taints: [NodeTaint]) {
        self.labels = labels
        self.taints = taints
    }

    /// The label key of a role in a spelling.
    public static func labelKey(_ role: NodeRole, style: RoleLabelStyle) -> String {
        RoleLabelStyle.labelKey(role, style: style)
    }

    public static func labelValue(_ role: NodeRole, style: RoleLabelStyle) -> String {
        RoleLabelStyle.labelValue(role, style: style)
    }

    public static func forNode(_ roles: [NodeRole], style: RoleLabelStyle, dedicatedSystemNodes: Bool) -> NodeRoleMarks
    {
        let ordered = roles.sorted()
        let labels = ordered.map { NodeLabel(key: labelKey($0, style: style), value: labelValue($0, style: style)) }
        var taints: [NodeTaint] = []
        if ordered.contains(.controlPlane) { taints.append(NodeTaint(key: controlPlaneKey, effect: .noSchedule)) }
        if dedicatedSystemNodes && ordered.contains(.system) {
            taints.append(NodeTaint(key: labelKey(.system, style: style), effect: .noSchedule))
        }
        return NodeRoleMarks(labels: labels, taints: taints)
    }

    public static func forHost(_ host: SiteInventory.Host, site: SiteInventory, profile: HardwareProfile)
        -> NodeRoleMarks
    {
        forNode(host.roles, style: profile.kubernetes.roleLabels, dedicatedSystemNodes: site.roles.dedicatedSystemNodes)
    }

    /// The labels a role spelling no longer wants (the other spelling's keys), for `kubectl label KEY-` when
    /// a profile's option changes; never the control-plane label.
    public static func staleLabelKeys(_ roles: [NodeRole], style: RoleLabelStyle) -> [String] {
        let other: RoleLabelStyle = style == .standard ? .runai : .standard
        return roles.sorted().filter { $0 != .controlPlane }.map { labelKey($0, style: other) }
    }
}
