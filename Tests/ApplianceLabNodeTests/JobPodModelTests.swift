import ApplianceLabNode
import Foundation
import Testing

/// How the kubelet stand-in ends a Job's pod: `nvidia-smi` really run against the node's GPU stand-in, only for
/// pods given GPUs; every other command refused as not modelled.
@Suite("Job pod model")
struct JobPodModelTests {
    static func pod(command: [String], gpus: Int = 0, fraction: Bool = false) -> KObject {
        var c: KObject = ["name": "c", "image": "registry/cuda:12", "command": command]
        if gpus > 0 { c["resources"] = ["limits": ["nvidia.com/gpu": "\(gpus)"]] as KObject }
        var meta: KObject = ["name": "p", "namespace": "smoke"]
        if fraction { meta["annotations"] = ["gpu-fraction": "0.5"] }
        return ["metadata": meta, "spec": ["containers": [c]] as KObject]
    }

    @Test func aGPUPodListsTheNodesGPUs() throws {
        let f = try LabFixture()
        let out = JobPodModel(context: f.context).run(
            Self.pod(command: ["nvidia-smi", "-L"], gpus: 1), visibleDevices: nil)
        #expect(out.exitCode == 0)
        #expect(out.message.split(separator: "\n").filter { $0.hasPrefix("GPU ") }.count == 8)
        #expect(out.message.contains("NVIDIA A100-SXM4-80GB"))
    }

    @Test func aFractionSeesOnlyItsGPU() throws {
        let f = try LabFixture()
        let out = JobPodModel(context: f.context).run(
            Self.pod(command: ["nvidia-smi", "-L"], fraction: true), visibleDevices: "3")
        #expect(out.exitCode == 0, "\(out.message)")
        let lines = out.message.split(separator: "\n").filter { $0.hasPrefix("GPU ") }
        #expect(lines.count == 1 && lines[0].hasPrefix("GPU 3:"), "\(out.message)")
        // A fraction the binder never placed has no device.
        let unplaced = JobPodModel(context: f.context).run(
            Self.pod(command: ["nvidia-smi", "-L"], fraction: true), visibleDevices: nil)
        #expect(unplaced.exitCode == 127)
    }

    @Test func aPodWithoutGPUsHasNoNvidiaSMI() throws {
        let f = try LabFixture()
        let out = JobPodModel(context: f.context).run(Self.pod(command: ["nvidia-smi", "-L"]), visibleDevices: nil)
        #expect(out.exitCode == 127 && out.message.contains("nvidia-smi: not found"))
    }

    @Test func theNodesGPUFaultsReachThePod() throws {
        let f = try LabFixture()
        try f.context.write(LabPaths.faultsDir + "/gpu-missing-2", "")
        let out = JobPodModel(context: f.context).run(
            Self.pod(command: ["nvidia-smi", "-L"], gpus: 8), visibleDevices: nil)
        #expect(out.exitCode == 15, "\(out.message)")
        #expect(out.message.contains("GPU is lost"))
        // Without the driver, nvidia-smi fails as on the node.
        let bare = try LabFixture(driver: false)
        let none = JobPodModel(context: bare.context).run(
            Self.pod(command: ["nvidia-smi", "-L"], gpus: 1), visibleDevices: nil)
        #expect(none.exitCode != 0)
    }

    @Test func otherCommandsAreNotModelled() throws {
        let f = try LabFixture()
        let out = JobPodModel(context: f.context).run(
            Self.pod(command: ["psql", "$(DB_URI)", "-tAc", "SELECT 1"]), visibleDevices: nil)
        #expect(out.exitCode == 1)
        #expect(out.message.contains("has no model for psql"))
    }
}
