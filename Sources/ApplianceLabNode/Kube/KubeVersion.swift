import Foundation

/// A Kubernetes version "v1.34.3".
public struct KubeVersion: Comparable, Sendable, CustomStringConvertible, Hashable {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    public init?(_ text: String) {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasPrefix("v") { t.removeFirst() }
        if let dash = t.firstIndex(where: { $0 == "-" || $0 == "+" }) { t = String(t[..<dash]) }
        let p = t.split(separator: ".").map { Int($0) }
        guard p.count == 3, let a = p[0], let b = p[1], let c = p[2] else { return nil }
        self.init(a, b, c)
    }

    public var description: String { "v\(major).\(minor).\(patch)" }
    public var bare: String { "\(major).\(minor).\(patch)" }

    public static func < (a: KubeVersion, b: KubeVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// The version of the v1.34.3 capture; what a lab node has unless its packages say otherwise.
    public static let labDefault = KubeVersion(1, 34, 3)
}

/// Installed versions of the Kubernetes packages on a node. The lab's kubeadm/kubelet/kubectl packages write
/// `/var/lib/appliance-lab/versions/{kubeadm,kubelet,kubectl}` (content: "v1.34.3"); upgrading a package
/// rewrites its file. Missing file: `KubeVersion.labDefault`.
public enum InstalledVersions {
    public static func of(_ tool: String, context: LabNodeContext) -> KubeVersion {
        if let t = context.read("/var/lib/appliance-lab/versions/\(tool)"), let v = KubeVersion(t) { return v }
        return .labDefault
    }
}
