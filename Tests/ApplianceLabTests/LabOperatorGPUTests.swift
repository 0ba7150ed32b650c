import ApplianceModel
import AppliancePlan
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite(
        "the GPU Operator's precompiled driver containers and their validation gate on lab nodes (issue 13)",
        .tags(.lab), .serialized)
    struct LabOperatorGPUTests {
        typealias GPU = LabGPUStackTests

        @Test(
            "lab-operator profile on HGX H100 lab nodes (1 control plane + 2 GPU workers) with spec.platform: no host GPU package, the GPU Operator's driver, toolkit and DCGM containers give the driver root, the fabric manager and dcgmi; the gate validates each GPU node after the operator's release; a lost GPU and a dead fabric manager are each caught with their words, the node cordoned, exit 9",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func operatorGPUStack() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-k1-\(getpid())").path
            let config = try LabConfig(id: "k1", subnet: "10.77.172", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "hpc-8xh100", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            var site = try LabPlatformTests.platformSite(lab, state, in: dir)
            site.profile = "lab-operator"
            site.install.releaseTimeoutSeconds = 120
            let sitePath = dir + "/site-operator.yaml"
            try site.yaml().write(toFile: sitePath, atomically: true, encoding: .utf8)
            let install =
                ["install", "-i", sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey]
                + LabPlatformTests.platformWaivers
            let cp1 = try state.node("cp-1").address
            let kubectl = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"

            // No host GPU stack in the plan; each gate after the GPU Operator's release.
            let plan = try cli.run(install + ["--dry-run"])
            #expect(plan.status == 0, "\(plan.combined.suffix(3000))")
            let lines = plan.stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            func position(_ step: String) -> Int? { lines.firstIndex { $0.contains("─ \(step) ") } }
            #expect(!plan.stdout.contains("gpu-driver/") && !plan.stdout.contains("gpu-toolkit/"), "\(plan.stdout)")
            for n in ["gpu-1", "gpu-2"] {
                let gate = try #require(position("gpu-validate/\(n)"), "\(plan.stdout.suffix(4000))")
                let release = try #require(position("platform/gpu-operator"))
                #expect(release < gate, "\(plan.stdout.suffix(4000))")
            }

            let first = try cli.run(install)
            #expect(first.status == 0, "\(first.combined.suffix(6000))")
            for name in ["gpu-1", "gpu-2"] {
                let address = try state.node(name).address
                let n = try GPU.node(ssh, cp1, name)
                #expect(GPU.allocatableGPUs(n) == "8", "\(name): \(n["status"] ?? "")")
                #expect(!GPU.unschedulable(n) && GPU.cordonReason(n) == nil)
                // The gate ran after the driver came and passed; the journal keeps what it validated.
                #expect(try journalStates(cli, kind: "install", step: "gpu-validate/\(name)").last == .done)
                let validated = try journalOutput(cli, kind: "install", step: "gpu-validate/\(name)")
                #expect(
                    validated.contains(
                        "GPU stack validated: 8x NVIDIA H100 80GB HBM3, driver 590.48.01, fabric manager active, 18 NVLinks per GPU, dcgmi diag -r 1 passed, nvidia.com/gpu 8"
                    ), "\(validated)")
                // The host has no NVIDIA tool or package; the driver root, the fabric manager process, the host
                // engine's namespace and containerd's runtime are the operator's containers'.
                let host = try ssh.run(
                    address: address,
                    """
                    command -v nvidia-smi dcgmi nv-fabricmanager; echo "tools=$?"
                    dpkg-query -W -f='${Package} ${Status}\\n' nvidia-driver nvidia-fabricmanager nvidia-container-toolkit 2>/dev/null | grep -c 'install ok installed'
                    chroot /run/nvidia/driver nvidia-smi -L | grep -c '^GPU '
                    chroot /run/nvidia/driver nv-fabricmanager --version
                    pgrep -f '^[^ ]*nv-fabricmanager( |$)' >/dev/null && echo fabricmanager=running
                    nsenter -t "$(pgrep -o -x nv-hostengine)" -m -n dcgmi discovery -l | grep -c 'NVIDIA H100'
                    containerd config dump | grep -c 'BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"'
                    """)
                let out = host.stdout.split(separator: "\n").map(String.init)
                #expect(
                    out == [
                        "tools=1", "0", "8", "Fabric Manager version is : 590.48.01", "fabricmanager=running", "8", "1",
                    ], "\(name): \(host.combined)")
            }
            // The operands run on the GPU nodes only, as the operator's DaemonSets, Ready.
            let listed = try ssh.run(address: cp1, "\(kubectl) get pods -n gpu-operator -o json").stdout
            let items =
                (LabPlatformTests.json(listed) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            for ds in ["nvidia-driver-daemonset", "nvidia-container-toolkit-daemonset", "nvidia-dcgm"] {
                let mine = items.filter {
                    ((($0["metadata"] as? [String: Any])?["name"] as? String) ?? "").hasPrefix(ds + "-")
                }
                let nodes = Set(mine.compactMap { ($0["spec"] as? [String: Any])?["nodeName"] as? String })
                #expect(mine.count == 2 && nodes == ["gpu-1", "gpu-2"], "\(ds): \(listed.prefix(3000))")
                for p in mine {
                    let conditions = (p["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
                    #expect(
                        conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" },
                        "\(ds): \(p["status"] ?? "")")
                }
            }

            // `status` sees the driver container's fabric manager on each GPU node, and is healthy.
            func fabricManagers() throws -> (status: Int32, states: [String: String]) {
                let r = try cli.run(["status", "-i", sitePath, "--format", "json"])
                let nodes = (LabPlatformTests.json(r.stdout) as? [String: Any])?["nodes"] as? [[String: Any]] ?? []
                var states: [String: String] = [:]
                for n in nodes { states[n["name"] as? String ?? ""] = n["fabricManager"] as? String }
                return (r.status, states)
            }
            let healthy = try fabricManagers()
            #expect(healthy.status == 0 && healthy.states == ["gpu-1": "active", "gpu-2": "active"], "\(healthy)")

            // A GPU off the bus on gpu-1 and a fabric manager that died on gpu-2: each caught by the gate.
            _ = try lab.fault(node: "gpu-1", kind: .gpuMissing, argument: "3")
            _ = try lab.fault(node: "gpu-2", kind: .fabricManagerStopped)
            let faulted = try cli.run(install)
            #expect(faulted.status == 9, "\(faulted.combined.suffix(4000))")
            for (node, words) in [
                ("gpu-1", ["GPU 3 (", "fell off the bus"]),
                ("gpu-2", ["nv-fabricmanager is not running in the GPU Operator's driver container", "fabric state"]),
            ] {
                let line =
                    faulted.stderr.split(separator: "\n").last { $0.contains("\(node): ") }.map(String.init) ?? ""
                for w in words { #expect(line.contains(w), "\(node): '\(w)' not in: \(faulted.stderr.suffix(4000))") }
                let n = try GPU.node(ssh, cp1, node)
                #expect(GPU.unschedulable(n), "\(node) is not cordoned")
                let reason = GPU.cordonReason(n) ?? ""
                #expect(words.allSatisfy { reason.contains($0) }, "\(node) cordon reason: \(reason)")
            }
            let unhealthy = try fabricManagers()
            #expect(unhealthy.status != 0 && unhealthy.states["gpu-2"] == "inactive", "\(unhealthy)")
        }
    }
}
