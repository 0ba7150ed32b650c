import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("the host GPU stack and its validation gate on lab nodes (issue 13)", .tags(.lab), .serialized)
    struct LabGPUStackTests {
        /// `kubectl get node NAME -o json` on the first control plane.
        static func node(_ ssh: LabSSH, _ cp1: String, _ name: String) throws -> [String: Any] {
            let r = try ssh.run(
                address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get node \(name) -o json")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        }

        static func cordonReason(_ node: [String: Any]) -> String? {
            ((node["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["appliance.dev/cordon-reason"]
        }

        static func unschedulable(_ node: [String: Any]) -> Bool {
            (node["spec"] as? [String: Any])?["unschedulable"] as? Bool ?? false
        }

        static func allocatableGPUs(_ node: [String: Any]) -> String? {
            ((node["status"] as? [String: Any])?["allocatable"] as? [String: Any])?["nvidia.com/gpu"] as? String
        }

        @Test(
            "1 control plane + 2 HGX A100 workers (hpc-8xa100): driver, fabric manager, persistence, toolkit and containerd's nvidia runtime installed and validated; each GPU fault is caught by install with its own message, the node cordoned with the reason, exit 9; a healed node is uncordoned",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func gpuStackAndFaults() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-g1-\(getpid())").path
            let config = try LabConfig(id: "g1", subnet: "10.77.180", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "hpc-8xa100", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            let install = [
                "install", "-i", config.sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey,
                "--waive", "cluster.control-plane=lab test: one control plane",
            ]
            let cp1 = try state.node("cp-1").address
            let gpu1 = try state.node("gpu-1").address
            let gpu2 = try state.node("gpu-2").address

            // The plan has the GPU stack in the real server order, and the gate after the node's role.
            let plan = try cli.run(install + ["--dry-run"])
            #expect(plan.status == 0, "\(plan.combined.suffix(3000))")
            let order = [
                "runtime/gpu-1", "gpu-driver/gpu-1", "gpu-fabricmanager/gpu-1", "gpu-persistence/gpu-1",
                "gpu-toolkit/gpu-1", "join/gpu-1", "roles/gpu-1", "gpu-validate/gpu-1",
            ]
            // Each step's own line (`├─ NAME  summary`), in plan order.
            let lines = plan.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            let positions = order.map { name in lines.firstIndex { $0.contains("─ \(name) ") } }
            #expect(!positions.contains(nil), "\(plan.stdout)")
            #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "\(positions) \(plan.stdout)")
            #expect(!plan.stdout.contains("gpu-driver/cp-1"))

            let first = try cli.run(install)
            #expect(first.status == 0, "\(first.combined.suffix(6000))")
            for (name, address) in [("gpu-1", gpu1), ("gpu-2", gpu2)] {
                let n = try Self.node(ssh, cp1, name)
                #expect(Self.allocatableGPUs(n) == "8", "\(name): \(n["status"] ?? "")")
                #expect(!Self.unschedulable(n) && Self.cordonReason(n) == nil)
                let fm = try ssh.run(
                    address: address,
                    "systemctl is-enabled nvidia-fabricmanager; systemctl is-active nvidia-fabricmanager")
                #expect(
                    fm.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "enabled\nactive", "\(fm.combined)")
                let pm = try ssh.run(address: address, "nvidia-smi --query-gpu=persistence_mode --format=csv,noheader")
                #expect(Set(pm.stdout.split(separator: "\n")) == ["Enabled"], "\(pm.stdout)")
                // containerd got the nvidia runtime from the (stand-in) nvidia-ctk, through its drop-in.
                let rt = try ssh.run(
                    address: address,
                    "grep -c 'conf.d/\\*.toml' /etc/containerd/config.toml; containerd config dump | grep -c 'BinaryName = \"/usr/bin/nvidia-container-runtime\"'; dpkg-query -W -f='${Version}' nvidia-driver nvidia-fabricmanager"
                )
                #expect(rt.stdout.hasPrefix("1\n1\n535.161.08535.161.08"), "\(rt.combined)")
            }
            let shown = try cli.run(["plan", "show", "-i", config.sitePath])
            #expect(shown.stdout.contains("gpu-validate/gpu-2"), "\(shown.stdout)")

            // Faults, two at a time (one per GPU node), each caught with its own words; install exits 9.
            func run(_ faults: [(String, LabFaultKind, String?)]) throws -> HostCommand.Result {
                for n in ["gpu-1", "gpu-2"] { _ = try lab.fault(node: n, kind: .gpuHealthy) }
                for (n, kind, arg) in faults { _ = try lab.fault(node: n, kind: kind, argument: arg) }
                return try cli.run(install)
            }
            func caught(_ r: HostCommand.Result, _ node: String, _ words: [String]) throws {
                #expect(r.status == 9, "\(r.combined.suffix(4000))")
                let line = r.stderr.split(separator: "\n").last { $0.contains("\(node): ") }.map(String.init) ?? ""
                for w in words { #expect(line.contains(w), "\(node): '\(w)' not in: \(r.stderr.suffix(4000))") }
                let n = try Self.node(ssh, cp1, node)
                #expect(Self.unschedulable(n), "\(node) is not cordoned")
                let reason = Self.cordonReason(n) ?? ""
                #expect(words.allSatisfy { reason.contains($0) }, "\(node) cordon reason: \(reason)")
            }
            let a = try run([("gpu-1", .gpuMissing, "3"), ("gpu-2", .nvlinkDown, "2:5")])
            try caught(a, "gpu-1", ["GPU 3 (00000000:5D:00.0)", "fell off the bus"])
            try caught(a, "gpu-2", ["GPU 2 (00000000:4C:00.0)", "NVLink 5 inactive"])

            let b = try run([("gpu-1", .eccErrors, "1"), ("gpu-2", .fabricManagerStopped, nil)])
            try caught(b, "gpu-1", ["GPU 1 (00000000:3B:00.0)", "uncorrectable ECC", "Page Retirement/Row Remap"])
            try caught(b, "gpu-2", ["nvidia-fabricmanager does not stay running", "fabricmanager-stopped"])

            let c = try run([("gpu-1", .driverMismatch, "550.90.07")])
            try caught(c, "gpu-1", ["Driver/library version mismatch"])
            // gpu-2 is healthy again: the fabric manager runs, the gate passes and the node is uncordoned.
            let healed = try Self.node(ssh, cp1, "gpu-2")
            #expect(!Self.unschedulable(healed) && Self.cordonReason(healed) == nil, "\(healed["metadata"] ?? "")")
            // The failure summary names gpu-1 alone (progress lines above it name every node).
            let summary = c.stderr.components(separatedBy: "error: ").last ?? ""
            #expect(summary.contains("gpu-1:") && !summary.contains("gpu-2:"), "\(summary)")
        }
    }
}
