import Foundation

/// What the GPU Operator's device plugin (NVIDIA k8s-device-plugin) would make the kubelet advertise as
/// `nvidia.com/gpu`. The lab runs no containers, so the kubelet stand-in plays the plugin:
///
/// - the plugin's pod runs with the `nvidia` runtime and loads NVML through it: with no `nvidia` runtime in
///   containerd's configuration (`/etc/containerd/config.toml` and the files it imports), or no
///   `/usr/bin/nvidia-container-runtime`, it cannot start ("Incompatible strategy detected auto"), and without
///   a working driver (not installed, or a kernel module/library version mismatch) NVML does not initialise:
///   no `nvidia.com/gpu` at all;
/// - otherwise it advertises the GPUs NVML enumerates (a GPU that fell off the bus is not among them), less
///   those it marked unhealthy: a GPU with uncorrectable ECC errors pending row remapping (on real hardware
///   the driver reports it as a critical Xid, 94/95, and the plugin's health check marks the device unhealthy,
///   as in the Xid 79 capture `device-plugin-log_xid79_marks-gpu-unhealthy`). Capacity and allocatable both
///   show that number, as in the capture of an 8-GPU node advertising 7.
public struct DevicePluginModel: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public static let runtimeBinary = "/usr/bin/nvidia-container-runtime"
    public static let containerdConfig = "/etc/containerd/config.toml"

    /// The count the kubelet advertises; nil when the plugin would not run.
    public func advertisedGPUs() -> Int? {
        guard let inv = try? GPUInventory.load(context: context), case .loaded = inv.driver, !inv.gpus.isEmpty,
            nvidiaRuntimeConfigured()
        else { return nil }
        return inv.gpus.filter { $0.eccUncorrectableVolatile == 0 && !$0.remappedRowsPending }.count
    }

    /// Whether containerd's configuration (the top-level file and what it imports) defines an `nvidia` runtime
    /// whose binary exists (the host package's `/usr/bin/nvidia-container-runtime`, or the GPU Operator's
    /// toolkit container's under `/usr/local/nvidia/toolkit`).
    public func nvidiaRuntimeConfigured() -> Bool {
        guard let top = context.read(Self.containerdConfig) else { return false }
        var files = [top]
        for pattern in Self.imports(top) {
            let dir = (pattern as NSString).deletingLastPathComponent
            let glob = (pattern as NSString).lastPathComponent
            let suffix = glob.hasPrefix("*") ? String(glob.dropFirst()) : nil
            for name in context.list(dir).sorted() where suffix.map({ name.hasSuffix($0) }) ?? (name == glob) {
                if let t = context.read(dir + "/" + name) { files.append(t) }
            }
        }
        return files.contains { text in
            let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            guard
                let table = lines.firstIndex(where: {
                    $0.hasPrefix("[") && $0.hasSuffix(".containerd.runtimes.nvidia.options]")
                })
            else { return false }
            let body = lines[(table + 1)...].prefix { !$0.hasPrefix("[") }
            guard let line = body.first(where: { $0.hasPrefix("BinaryName") }), let eq = line.firstIndex(of: "=")
            else { return false }
            let binary = line[line.index(after: eq)...].trimmingCharacters(in: CharacterSet(charactersIn: " \"'"))
            return !binary.isEmpty && FileManager.default.isExecutableFile(atPath: context.path(binary))
        }
    }

    /// The `imports = [...]` entries of a containerd config.
    static func imports(_ text: String) -> [String] {
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("[") { break }
            guard t.hasPrefix("imports"), let open = t.firstIndex(of: "["), let close = t.lastIndex(of: "]") else {
                continue
            }
            return t[t.index(after: open)..<close].split(separator: ",").map {
                $0.trimmingCharacters(in: CharacterSet(charactersIn: " \"'"))
            }.filter { !$0.isEmpty }
        }
        return []
    }
}
