import ApplianceBundle
import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("appliance support-bundle on an installed lab cluster with faults (issue 16)", .tags(.lab), .serialized)
    struct LabSupportBundleTests {
        @Test(
            "a GPU lost, the fabric manager stopped, a drain blocked by a PDB, a node powered off: the bundle is written and its analysis names each",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func faultsAreReported() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-s1-\(getpid())").path
            let config = try LabConfig(id: "s1", subnet: "10.77.170", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            // 1 control plane and 2 HGX A100 workers (NVSwitches, fabric manager from the bundle).
            let state = try lab.up(.init(profile: "hpc-8xa100", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            let installed = try cli.run([
                "install", "-i", config.sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey,
                "--waive", "cluster.control-plane=lab: one control plane",
            ])
            try #require(installed.status == 0, "\(installed.combined.suffix(4000))")
            let cp = try #require(state.nodes.first { $0.roles.contains(.controlPlane) })
            let workers = state.nodes.filter { $0.roles.contains(.gpuWorker) && !$0.roles.contains(.controlPlane) }
            try #require(workers.count == 2)
            let (sick, off) = (workers[0].name, workers[1].name)

            // Faults: GPU 3 of the first worker falls off the bus (Xid 79), its fabric manager stops.
            _ = try lab.fault(node: sick, kind: .gpuMissing, argument: "3")
            _ = try lab.fault(node: sick, kind: .fabricManagerStopped)
            // A Deployment whose PDB allows no disruption; the stand-in has no ReplicaSet controller, so its pod
            // is created as the controller would, bound to the first worker. Then a drain of that worker blocks.
            let kubectl = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
            let objects = """
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: web, namespace: default}
                spec:
                  replicas: 1
                  selector: {matchLabels: {app: web}}
                  template:
                    metadata: {labels: {app: web}}
                    spec: {containers: [{name: web, image: registry.k8s.io/pause:3.10.1}]}
                ---
                apiVersion: v1
                kind: Pod
                metadata: {name: web-0, namespace: default, labels: {app: web}}
                spec:
                  nodeName: \(sick)
                  containers: [{name: web, image: registry.k8s.io/pause:3.10.1}]
                ---
                apiVersion: policy/v1
                kind: PodDisruptionBudget
                metadata: {name: web, namespace: default}
                spec:
                  maxUnavailable: 0
                  selector: {matchLabels: {app: web}}
                """
            let applied = try ssh.run(
                address: cp.address, "cat > /tmp/web.yaml <<'EOF'\n\(objects)\nEOF\n\(kubectl) apply -f /tmp/web.yaml",
                check: false)
            try #require(applied.status == 0, "\(applied.stdout)\(applied.stderr)")
            let drain = try ssh.run(
                address: cp.address, "\(kubectl) drain \(sick) --ignore-daemonsets --timeout=8s", check: false)
            #expect(drain.status != 0, "the drain should be blocked by the PDB: \(drain.stdout)\(drain.stderr)")
            // The second worker loses power.
            _ = try lab.fault(node: off, kind: .powerOff)

            let out = dir + "/support.tar.gz"
            let collected = try cli.run(["support-bundle", "-i", config.sitePath, "-o", out, "--since", "2h"])
            #expect(collected.status == 0, "\(collected.combined.suffix(4000))")
            #expect(FileManager.default.fileExists(atPath: out))

            let analysis = try cli.run(["support-bundle", "analyze", out, "--format", "json"])
            #expect(analysis.status == 3, "error findings exit 3: \(analysis.combined.suffix(3000))")
            let report = try #require(
                try JSONSerialization.jsonObject(with: Data(analysis.stdout.utf8)) as? [String: Any],
                "\(analysis.stdout)")
            let findings = report["findings"] as? [[String: Any]] ?? []
            func has(_ id: String, _ subject: String) -> Bool {
                findings.contains { $0["id"] as? String == id && ($0["subject"] as? String ?? "").hasPrefix(subject) }
            }
            let listed = findings.map { "\($0["id"] ?? "") \($0["subject"] ?? "")" }
            #expect(has("gpu.xid", "\(sick):xid-79"), "\(listed)")
            #expect(has("gpu.lost", sick), "\(listed)")
            #expect(has("gpu.fabricmanager-stopped", sick), "\(listed)")
            #expect(has("k8s.pdb-blocks-drain", "default/web"), "\(listed)")
            #expect(has("node.unreachable", off), "\(listed)")
            #expect(!has("node.unreachable", sick) && !has("gpu.fabricmanager-stopped", off))

            // The text rendering names the same problems with evidence and remedies.
            let text = try cli.run(["support-bundle", "analyze", out])
            #expect(text.stdout.contains("evidence: nodes/\(sick)/kernel-xid.log:"), "\(text.stdout)")
            #expect(text.stdout.contains("remedy:"))
        }
    }
}
