import ApplianceModel
import Foundation
import Testing

@testable import ApplianceLabNode

/// The kubelet's model of the GPU Operator's containers (operator-precompiled mode) under a state root: what
/// each does to the node, and what the device plugin then advertises. The driver root's mounts are made only
/// on a real node root (the lab tests check them there).
@Suite("GPU Operator operands in the lab kubelet")
struct GPUOperatorOperandTests {
    func pod(_ container: String) -> KObject {
        ["metadata": ["name": "p", "uid": "u"], "spec": ["containers": [["name": container, "image": "x"]]]]
    }

    @Test func operandsAreKnownByTheOperatorsContainerNames() {
        #expect(GPUOperand.of(pod("nvidia-driver-ctr")) == .driver)
        #expect(GPUOperand.of(pod("nvidia-container-toolkit-ctr")) == .toolkit)
        #expect(GPUOperand.of(pod("nvidia-dcgm-ctr")) == .dcgm)
        #expect(GPUOperand.of(pod("nvidia-dcgm-exporter")) == nil)
    }

    @Test func driverAndToolkitContainersMakeTheDevicePluginAdvertiseTheGPUs() throws {
        let lab = try LabFixture(driver: false)
        let ctx = lab.context
        try ctx.write("/etc/containerd/config.toml", LabFixture.containerdConfig)
        try ctx.write(Kubelet.labnodeBinary, "#!/bin/sh\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: ctx.path(Kubelet.labnodeBinary))
        let kubelet = Kubelet(context: ctx)
        #expect(kubelet.resources()["nvidia.com/gpu"] == nil)
        #expect(NvidiaSMI(context: ctx).run(["-L"]).exitCode == 9)

        try kubelet.installDriver()
        #expect(NvidiaSMI(context: ctx).run(["-L"]).stdout.split(separator: "\n").count == 8)
        // The driver container's tools are in its own directory (the driver root's /usr/local/bin), not on the
        // host's PATH.
        for tool in GPUOperand.driverTools {
            let link = ctx.path(GPUOperand.toolsDirectory + "/driver/bin/" + tool)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == ctx.path(Kubelet.labnodeBinary))
            #expect(!FileManager.default.fileExists(atPath: ctx.path("/usr/bin/" + tool)))
        }
        // No nvidia runtime in containerd yet: the device plugin cannot run.
        #expect(kubelet.resources()["nvidia.com/gpu"] == nil)

        let log = ctx.path("/toolkit.log")
        try kubelet.installToolkit(log: log)
        let dropIn = try #require(ctx.read(GPUOperand.dropIn))
        #expect(dropIn.contains("BinaryName = \"/usr/local/nvidia/toolkit/nvidia-container-runtime\""), "\(dropIn)")
        #expect(
            ctx.read("/etc/containerd/config.toml")?.contains("imports = [\"/etc/containerd/conf.d/*.toml\"]") == true)
        #expect(kubelet.resources()["nvidia.com/gpu"] as? String == "8")
        // Set up again (a kubelet restart): nothing changes.
        let before = ctx.read("/etc/containerd/config.toml")
        try kubelet.installToolkit(log: log)
        #expect(ctx.read("/etc/containerd/config.toml") == before)
    }

    @Test func fabricManagerReportsItsVersion() throws {
        let lab = try LabFixture(driver: false)
        #expect(FabricManager(context: lab.context).versionOutput().exitCode == 1)
        try lab.context.write(LabPaths.driverInstalled, "")
        let out = FabricManager(context: lab.context).versionOutput()
        let declared = try #require(try lab.context.loadHardware().gpus?.driverVersion)
        #expect(out.stdout == "Fabric Manager version is : \(declared)\n")
    }
}
