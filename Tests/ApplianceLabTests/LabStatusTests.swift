import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("appliance status on lab nodes (issue 13)", .tags(.lab), .serialized)
    struct LabStatusTests {
        @Test(
            "installed: healthy, exit 0; a worker drained with a reason: its line, exit 11; its kubelet stopped: named; powered off: not reachable, exit 5",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func statusOfAnInstalledCluster() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-t1-\(getpid())").path
            let config = try LabConfig(id: "t1", subnet: "10.77.163", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 2, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            let site = config.sitePath
            let installed = try cli.run(["install", "-i", site, "--bundle", bundle.path, "--trust", bundle.publicKey])
            try #require(installed.status == 0, "\(installed.combined.suffix(6000))")
            let worker = try #require(state.nodes.map(\.name).first { !$0.hasPrefix("cp-") })
            let cp = try #require(state.nodes.map(\.name).first { $0.hasPrefix("cp-") })

            // Healthy: exit 0, every section read.
            let healthy = try cli.run(["status", "-i", site])
            #expect(healthy.status == 0, "\(healthy.combined)")
            #expect(healthy.stdout.contains("status: healthy"), "\(healthy.stdout)")
            #expect(healthy.stdout.contains("installed: appliance-lab "), "\(healthy.stdout)")
            #expect(healthy.stdout.contains("etcd: 1 member, 1 healthy, quorum 1: has quorum (from etcdctl)"))
            #expect(healthy.stdout.contains(":5000/v2/ on "), "\(healthy.stdout)")
            #expect(healthy.stdout.contains("answering over TLS (installer's CA) (HTTP 200)"), "\(healthy.stdout)")
            #expect(
                healthy.stdout.contains("api https://\(try state.node(cp).address):6443: ready"), "\(healthy.stdout)")
            #expect(healthy.stdout.contains("  install "), "\(healthy.stdout)")
            let json = try cli.run(["status", "-i", site, "--format", "json"])
            #expect(json.status == 0)
            let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect(doc["schema"] as? String == "appliance.dev/status/v1")
            #expect(doc["healthy"] as? Bool == true)
            let nodes = try #require(doc["nodes"] as? [[String: Any]])
            #expect(nodes.count == 2)
            for n in nodes {
                #expect(n["ready"] as? Bool == true && n["kubeletService"] as? String == "active", "\(n)")
                #expect((n["kubeletVersion"] as? String)?.hasPrefix("v1.") == true, "\(n)")
            }

            // Drained with a reason: the node's line and exit 11.
            let drained = try cli.run([
                "node", "drain", worker, "-i", site, "--reason", "DIMM swap", "--timeout", "20s", "--drain-policy",
                "disable-eviction",
            ])
            try #require(drained.status == 0, "\(drained.combined.suffix(4000))")
            let afterDrain = try cli.run(["status", "-i", site])
            #expect(afterDrain.status == 11, "\(afterDrain.combined)")
            #expect(afterDrain.stdout.contains("cordoned: DIMM swap"), "\(afterDrain.stdout)")
            #expect(
                afterDrain.stdout.contains("\(worker): drained for maintenance: DIMM swap (by "), "\(afterDrain.stdout)"
            )
            #expect(afterDrain.stdout.contains("node-drain "), "\(afterDrain.stdout)")

            // Its kubelet stopped: named at once from the node itself.
            _ = try ssh.run(address: try state.node(worker).address, "systemctl stop kubelet")
            let stopped = try cli.run(["status", "-i", site])
            #expect(stopped.status == 11, "\(stopped.combined)")
            #expect(stopped.stdout.contains("\(worker): kubelet is inactive"), "\(stopped.stdout)")

            // Powered off: a line, exit 5, in bounded time.
            _ = try lab.fault(node: worker, kind: .powerOff)
            let started = Date()
            let off = try cli.run(["status", "-i", site, "--timeout", "10"])
            #expect(Date().timeIntervalSince(started) < 90)
            #expect(off.status == 5, "\(off.combined)")
            #expect(off.stdout.contains("\(worker): not reachable over SSH"), "\(off.stdout)")
        }
    }
}
