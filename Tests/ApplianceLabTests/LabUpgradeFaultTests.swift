import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("appliance upgrade through faults on lab nodes (issue 14)", .tags(.lab), .serialized)
    struct LabUpgradeFaultTests {
        /// 3 control planes (stacked etcd) and 2 GPU workers. A control plane is partitioned while the first
        /// one is upgraded: quorum holds, the upgrade stops at it with it named and touches no other node; once
        /// it is back, `plan resume` goes on. The stop comes from cp-2's etcd check (its API server, asked on its
        /// own address through cp-1, does not answer), before anything on cp-2 changes. A worker loses power while
        /// the other is upgraded: the upgrade stops naming it, the others keep serving; after power-on, `plan
        /// resume` finishes.
        @Test(
            "3 control planes + 2 GPU workers: a control plane partitioned mid-upgrade stops the upgrade at that node with nothing else touched (etcd quorum kept); a worker powered off mid-upgrade stops it with the node named while the rest serve; after each fault is undone plan resume finishes: every node at v1.35.0, none cordoned; removing a control plane is refused while another is cut off (quorum arithmetic shown, nothing changed); once it is back, a dead control plane removed with --force leaves etcd 2 of 2 healthy",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func faultsDuringTheUpgrade() throws {
            let (current, upgrade) = try UpgradeLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-u3-\(getpid())").path
            let config = try LabConfig(id: "u3", subnet: "10.77.191", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 5, controlPlanes: 3, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            try FileManager.default.createDirectory(atPath: cli.state, withIntermediateDirectories: true)
            let site = config.sitePath
            let cp1 = try state.node("cp-1").address

            let installed = try cli.run([
                "install", "-i", site, "--bundle", current.path, "--trust", current.publicKey,
            ])
            try #require(installed.status == 0, "\(installed.combined.suffix(4000))")

            func nodes() throws -> [[String: Any]] {
                let r = try ssh.run(address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes -o json")
                let root = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                return root?["items"] as? [[String: Any]] ?? []
            }
            func waitReady(_ name: String) throws {
                let deadline = Date().addingTimeInterval(120)
                while Date() < deadline {
                    if let n = try? nodes().first(where: { NodeJSON.name($0) == name }), NodeJSON.ready(n) { return }
                    Thread.sleep(forTimeInterval: 2)
                }
                Issue.record("\(name) not Ready 120 s after the fault was undone")
            }
            /// Steps started on `node` after the event at `index` (the fault).
            func touched(_ run: KilledRun, _ node: String, after index: Int) -> [String] {
                run.events.dropFirst(index + 1).filter { $0.event == "stepStarted" && $0.step.hasSuffix("/\(node)") }
                    .map(\.step)
            }

            // 1. cp-2 is cut off the network as soon as cp-1's `kubeadm upgrade apply` is through.
            var partitioned = false
            var seen = 0
            var partitionedAt = Int.max
            let first = try KilledRun.run(
                cli, ["upgrade", "-i", site, "--bundle", upgrade.path, "--trust", upgrade.publicKey]
            ) { e in
                seen += 1
                if !partitioned, e.event == "stepFinished", e.step == "kubeadm-upgrade/cp-1" {
                    partitioned = true
                    partitionedAt = seen - 1
                    _ = try? lab.fault(node: "cp-2", kind: .partition)
                }
                return nil
            }
            #expect(partitioned, "the upgrade never finished kubeadm-upgrade/cp-1: \(first.stderr.suffix(3000))")
            #expect(first.status != 0, "the upgrade went on with cp-2 cut off: \(first.stderr.suffix(3000))")
            #expect(first.stderr.contains("cp-2"), "\(first.stderr.suffix(3000))")
            // The upgrade stops at cp-2's etcd check (its member does not answer on its own address), before any
            // step that changes cp-2, and nothing is started on cp-3 or on a worker.
            let onCP2 = touched(first, "cp-2", after: partitionedAt)
            #expect(onCP2 == ["etcd-health/cp-2"], "\(onCP2)")
            let stop = first.events.last { $0.event == "stepFailed" && $0.step == "etcd-health/cp-2" }
            #expect(
                stop?.message?.contains("cp-2 not answering") == true,
                "the etcd check did not stop the upgrade: \(stop?.message ?? "no failure of etcd-health/cp-2")")
            #expect(
                touched(first, "cp-3", after: partitionedAt).isEmpty, "\(touched(first, "cp-3", after: partitionedAt))")
            #expect(
                touched(first, "gpu-1", after: partitionedAt).isEmpty
                    && touched(first, "gpu-2", after: partitionedAt).isEmpty)
            // The cluster kept its quorum: the API answers through cp-1 with cp-2 gone.
            #expect(try nodes().count == 5)

            // 2. cp-2 is back; the resume goes on. gpu-2 loses power as soon as gpu-1's drain starts.
            _ = try lab.fault(node: "cp-2", kind: .heal)
            try waitReady("cp-2")
            var poweredOff = false
            let second = try KilledRun.run(cli, ["plan", "resume", "-i", site]) { e in
                if !poweredOff, e.event == "stepStarted", e.step == "drain/gpu-1" {
                    poweredOff = true
                    _ = try? lab.fault(node: "gpu-2", kind: .powerOff)
                }
                return nil
            }
            #expect(poweredOff, "the resume never drained gpu-1: \(second.stderr.suffix(3000))")
            #expect(second.status != 0, "the upgrade finished with gpu-2 powered off: \(second.stderr.suffix(3000))")
            #expect(second.stderr.contains("gpu-2"), "\(second.stderr.suffix(3000))")
            // The rest serve: every control plane and gpu-1 Ready at the new version, gpu-1 uncordoned.
            let during = try nodes()
            for name in ["cp-1", "cp-2", "cp-3", "gpu-1"] {
                let n = during.first { NodeJSON.name($0) == name }
                #expect(n.map(NodeJSON.ready) == true, "\(name) not Ready")
                #expect(
                    n.map(NodeJSON.kubeletVersion) == "v1.35.0", "\(name): \(n.map(NodeJSON.kubeletVersion) ?? "-")")
                #expect(n.map(NodeJSON.cordoned) == false, "\(name) left cordoned")
            }

            // 3. gpu-2 is powered on; the resume finishes.
            _ = try lab.fault(node: "gpu-2", kind: .powerOn)
            try waitReady("gpu-2")
            let third = try KilledRun.run(cli, ["plan", "resume", "-i", site])
            #expect(third.status == 0, "exit \(third.status): \(third.stderr.suffix(3000))")
            for n in try nodes() {
                #expect(NodeJSON.kubeletVersion(n) == "v1.35.0", "\(NodeJSON.name(n)): \(NodeJSON.kubeletVersion(n))")
                #expect(!NodeJSON.cordoned(n), "\(NodeJSON.name(n)) left cordoned")
                #expect(NodeJSON.ready(n), "\(NodeJSON.name(n)) not Ready")
            }
            // And a step finished by applying it in one run was not applied again in another.
            var appliedIn: [String: Int] = [:]
            for r in [first, second, third] { for s in Set(r.applied) { appliedIn[s, default: 0] += 1 } }
            #expect(appliedIn.filter { $0.value > 1 }.isEmpty, "\(appliedIn.filter { $0.value > 1 })")

            // 4. Removing a control plane. With cp-2 cut off it is refused with the arithmetic (3 members, 2
            // healthy; after removing cp-3: 2 members, 1 healthy, quorum 2) and nothing changes. Once cp-2 is
            // back, cp-3 dies and is removed with --force: no drain, no reset (it does not answer), its etcd
            // member removed through cp-1, its Node deleted: etcd 2 of 2 healthy.
            _ = try lab.fault(node: "cp-2", kind: .partition)
            let refused = try cli.run(["node", "remove", "cp-3", "-i", site])
            _ = try lab.fault(node: "cp-2", kind: .heal)
            #expect(refused.status != 0, "\(refused.combined.suffix(3000))")
            #expect(
                refused.combined.contains("removing cp-3 would leave etcd without quorum")
                    && refused.combined.contains("after removing cp-3: 2 members (1 healthy), quorum 2"),
                "\(refused.combined.suffix(3000))")
            #expect(try nodes().contains { NodeJSON.name($0) == "cp-3" }, "a refused removal deleted cp-3")
            #expect(
                try ssh.run(address: state.node("cp-3").address, "test -f /etc/kubernetes/kubelet.conf", check: false)
                    .status == 0, "a refused removal reset cp-3")
            try waitReady("cp-2")
            _ = try lab.fault(node: "cp-3", kind: .powerOff)
            let removed = try cli.run(["node", "remove", "cp-3", "-i", site, "--force"])
            #expect(removed.status == 0, "\(removed.combined.suffix(4000))")
            #expect(removed.combined.contains("its etcd member gone"), "\(removed.combined.suffix(2000))")
            #expect(try nodes().map(NodeJSON.name).sorted() == ["cp-1", "cp-2", "gpu-1", "gpu-2"])
            let status = try cli.run(["status", "-i", site])
            #expect(
                status.stdout.contains("etcd: 2 members, 2 healthy, quorum 2: has quorum"),
                "\(status.combined.suffix(4000))")
        }
    }
}
