import ApplianceLabNode
import ApplianceModel
import Foundation

/// A temporary lab node state root with a hardware declaration; removed by `cleanup()`.
final class LabFixture {
    let root: String
    let context: LabNodeContext

    static func hgxA100(gpus: Int = 8, nvswitches: Int = 6) -> HardwareDeclaration {
        HardwareDeclaration(
            node: "gpu-1", profile: "hpc-8xa100", roles: [.gpuWorker],
            cpu: .init(model: "AMD EPYC 7763", sockets: 2, coresPerSocket: 64, threadsPerCore: 2), memoryGiB: 1024,
            disks: [.init(name: "nvme0n1", sizeGB: 3840)],
            gpus: .init(
                model: "NVIDIA A100-SXM4-80GB", count: gpus, memoryMiB: 81920, pciDeviceID: "20b2", nvlinksPerGPU: 12,
                nvlinkSpeedGBps: 25, nvswitches: nvswitches, driverVersion: "535.104.12", cudaVersion: "12.2",
                vbiosVersion: "92.00.36.00.02", powerLimitWatts: 400, pcieGeneration: 4, pcieWidth: 16),
            nics: [
                .init(name: "eth0", kind: "ethernet", rateGbps: 25),
                .init(name: "ib0", kind: "infiniband", rateGbps: 200),
                .init(name: "ib1", kind: "infiniband", rateGbps: 200),
            ])
    }

    /// HGX H100: Hopper GPUs report a fabric state (A100 prints N/A, NVSwitch or not).
    static func hgxH100() -> HardwareDeclaration {
        var hw = hgxA100(gpus: 8, nvswitches: 4)
        hw.gpus?.model = "NVIDIA H100 80GB HBM3"
        hw.gpus?.memoryMiB = 81559
        hw.gpus?.pciDeviceID = "2330"
        hw.gpus?.nvlinksPerGPU = 18
        hw.gpus?.nvlinkSpeedGBps = 26.562
        hw.gpus?.powerLimitWatts = 700
        hw.gpus?.pcieGeneration = 5
        return hw
    }

    static func h100PCIe() -> HardwareDeclaration {
        var hw = hgxA100(gpus: 2, nvswitches: 0)
        hw.gpus?.model = "NVIDIA H100 PCIe"
        hw.gpus?.memoryMiB = 81559
        hw.gpus?.pciDeviceID = "2331"
        hw.gpus?.nvlinksPerGPU = 0
        hw.gpus?.driverVersion = "550.54.15"
        return hw
    }

    init(_ hw: HardwareDeclaration? = LabFixture.hgxA100(), driver: Bool = true) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("labnode-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        context = LabNodeContext(
            environment: ["APPLIANCE_LABNODE_ROOT": root, "APPLIANCE_LAB_HOSTNAME": "gpu-1"],
            now: { Date(timeIntervalSince1970: 1_700_000_000) })
        if let hw {
            try context.write(HardwareDeclaration.pathOnNode, String(decoding: try hw.jsonData(), as: UTF8.self))
        }
        if driver { try context.write(LabPaths.driverInstalled, "") }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// A containerd 1.6 config as the installer renders it (config version 2, runc with systemd cgroups).
    static let containerdConfig = """
        # Written by appliance install; a re-run rewrites it, so edit the site file instead.
        version = 2

        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "registry.k8s.io/pause:3.10.1"

        [plugins."io.containerd.grpc.v1.cri".containerd]
          default_runtime_name = "runc"
          snapshotter = "overlayfs"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true

        [plugins."io.containerd.grpc.v1.cri".registry]
          config_path = "/etc/containerd/certs.d"

        """

    /// What the container toolkit leaves on a node: its runtime binary, and containerd's configuration as
    /// `nvidia-ctk runtime configure --runtime=containerd` edits it.
    static func installNvidiaRuntime(_ ctx: LabNodeContext) throws {
        try ctx.write("/etc/containerd/config.toml", containerdConfig)
        try ctx.write(DevicePluginModel.runtimeBinary, "#!/bin/sh\n")
        try FileManager.default.setAttributes(
            [.posixPermissions: 0o755], ofItemAtPath: ctx.path(DevicePluginModel.runtimeBinary))
        let r = NvidiaCTK(context: ctx).run(["runtime", "configure", "--runtime=containerd", "--set-as-default"])
        guard r.exitCode == 0 else { throw LabNodeError.usage("nvidia-ctk failed: \(r.stderr)") }
    }

    func smi(_ args: String...) -> ToolOutput { NvidiaSMI(context: context).run(args) }
    func dcgmi(_ args: String...) -> ToolOutput { DCGMI(context: context).run(args) }
    func fault(_ args: String...) -> ToolOutput {
        LabNodeDispatcher.runTool("fault", args, context: context) ?? ToolOutput(exitCode: 127)
    }

    /// Path of the built `appliance-labnode` next to the test bundle.
    static var executable: String? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let p = dir.appendingPathComponent("appliance-labnode").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/appliance-labnode").path
        return FileManager.default.isExecutableFile(atPath: fallback) ? fallback : nil
    }
}

/// Reads a fixture from ../shared/fixtures/gpu, stripping the `# SOURCE:` line.
func gpuFixture(_ name: String) -> String? {
    let candidates = [
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
                "shared/fixtures/gpu/\(name)"),
        URL(fileURLWithPath: "/work/shared/fixtures/gpu/\(name)"),
    ]
    for c in candidates {
        if let d = FileManager.default.contents(atPath: c.path) {
            let s = String(decoding: d, as: UTF8.self)
            return s.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).dropFirst().joined()
        }
    }
    return nil
}
