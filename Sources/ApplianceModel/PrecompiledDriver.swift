/// The GPU Operator's precompiled driver containers (profile `gpuStack.mode: operator-precompiled`): one image
/// per driver branch, kernel and OS, `nvcr.io/nvidia/driver:<branch>-<kernel>-<os><version>` (for example
/// `535-5.15.0-1043-nvidia-ubuntu22.04`), which the operator picks from the node's running kernel; and the
/// operand images that install and check it (the driver manager, the container toolkit, and DCGM, whose
/// `dcgmi` the install's GPU validation runs, at the GPU Operator chart's default tags, v26.3.3). An air-gapped node pulls only what the bundle seeded, so a node whose kernel has no
/// image in the bundle would never get a driver.
public enum PrecompiledDriver {
    public static let repository = "nvcr.io/nvidia/driver"
    public static let operandImages = [
        "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.11.0", "nvcr.io/nvidia/k8s/container-toolkit:v1.19.1",
        "nvcr.io/nvidia/cloud-native/dcgm:4.5.2-1-ubuntu22.04",
    ]

    /// Where the driver container puts its root filesystem on the host (the GPU Operator's driver root):
    /// the driver's tools are there, not on the host.
    public static let driverRoot = "/run/nvidia/driver"

    /// `pgrep -f` pattern of the driver container's fabric manager (`nv-fabricmanager -c ...`, at any path);
    /// its 16-character name is longer than the 15 `pgrep -x` compares.
    public static let fabricManagerProcess = "^[^ ]*nv-fabricmanager( |$)"

    /// The tag the operator looks for on a node.
    public static func tag(branch: Int, kernel: String, osID: String, osVersion: String) -> String {
        "\(branch)-\(kernel)-\(osID)\(osVersion)"
    }

    /// The tags of the precompiled driver images among image references.
    public static func tags(in references: [String]) -> [String] {
        references.compactMap { ref in
            guard ref.hasPrefix(repository + ":") else { return nil }
            let tag = ref.dropFirst(repository.count + 1).split(separator: "@").first.map(String.init) ?? ""
            return tag.isEmpty ? nil : tag
        }.sorted()
    }

    /// The tags of `branch` among `tags` (`535-…`).
    public static func tags(_ tags: [String], branch: Int) -> [String] { tags.filter { $0.hasPrefix("\(branch)-") } }
}
