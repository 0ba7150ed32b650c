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

    @Test func aCommandTheNodeLacksIsNotFound() throws {
        let f = try LabFixture()
        let out = JobPodModel(context: f.context).run(
            Self.pod(command: ["appliance-no-such-tool", "$(DB_URI)"]), visibleDevices: nil)
        #expect(out.exitCode == 127)
        #expect(out.message.contains("executable file not found in $PATH"))
        #expect(out.message.contains("has no model for appliance-no-such-tool"))
    }

    /// A shell script runs for real: its environment is the pod's only (`$(VAR)` expanded in args), its hostname
    /// the pod's, its volume bind-mounted at the mount path, its `/etc/hosts` the pod's; its output is the log,
    /// its exit code the outcome; the node's own `/etc/hosts` and the mount path are untouched afterwards.
    @Test(.tags(.realProcess), .enabled(if: getuid() == 0, "needs root (unshare, mount)"))
    func aShellScriptRunsForRealWithEnvMountsAndHosts() throws {
        let f = try LabFixture()
        let volume = f.root + "/volume"
        try FileManager.default.createDirectory(atPath: volume, withIntermediateDirectories: true)
        let target = FileManager.default.temporaryDirectory.appendingPathComponent("jobpod-\(getpid())/data").path
        let script = """
            set -e
            echo "host=$(hostname) secret=$SECRET arg=$1 home=$HOME"
            test -z "${LEAK:-}"
            echo written > "$TARGET/file"
            grep -q 'db-rw.platform-db' /etc/hosts && echo "hosts ok"
            """
        var rt = JobPodModel.Runtime()
        rt.environment = [("SECRET", "s3cr3t"), ("TARGET", target), ("ARG", "expanded")]
        rt.mounts = [(volume, target, false)]
        rt.hosts = "127.0.0.1 localhost\n10.1.2.3 db-rw.platform-db\n"
        setenv("LEAK", "from-the-kubelet", 1)
        var pod = Self.pod(command: ["/bin/sh", "-c", script, "sh", "$(ARG)"])
        K.set(&pod, ["metadata", "name"], "smoke-pod-x1")
        let out = JobPodModel(context: f.context).run(pod, visibleDevices: nil, runtime: rt)
        #expect(out.exitCode == 0, "\(out.log)")
        #expect(out.log.contains("host=smoke-pod-x1 secret=s3cr3t arg=expanded home=/root"), "\(out.log)")
        #expect(out.log.contains("hosts ok"), "\(out.log)")
        #expect(try String(contentsOfFile: volume + "/file", encoding: .utf8) == "written\n")
        #expect(!FileManager.default.fileExists(atPath: target), "the mount path is removed with the pod")
        #expect(!(try String(contentsOfFile: "/etc/hosts", encoding: .utf8)).contains("db-rw.platform-db"))

        let failing = JobPodModel(context: f.context).run(
            Self.pod(command: ["/bin/sh", "-c", "echo to the log; exit 3"]), visibleDevices: nil)
        #expect(failing.exitCode == 3)
        #expect(failing.log == "to the log\n")

        var slow = JobPodModel.Runtime()
        slow.deadlineSeconds = 1
        let killed = JobPodModel(context: f.context).run(
            Self.pod(command: ["/bin/sh", "-c", "sleep 30"]), visibleDevices: nil, runtime: slow)
        #expect(killed.exitCode == 137)
        #expect(killed.message.contains("killed at the deadline"))
    }
}
