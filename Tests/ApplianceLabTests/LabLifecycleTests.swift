import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("node drain, rejoin, remove and add on lab nodes (issue 14)", .tags(.lab), .serialized)
    struct LabLifecycleTests {
        static let workload = """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, namespace: default}
            spec:
              replicas: 2
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  nodeSelector: {kubernetes.io/hostname: NODE}
                  containers: [{name: web, image: registry.k8s.io/pause:3.10.1}]
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata: {name: web-pdb, namespace: default}
            spec:
              minAvailable: 2
              selector: {matchLabels: {app: web}}
            ---
            apiVersion: v1
            kind: Pod
            metadata: {name: debug-shell, namespace: default}
            spec:
              nodeName: NODE
              containers: [{name: sh, image: registry.k8s.io/pause:3.10.1}]
            """

        @Test(
            "1 control plane + 2 workers: the simulation names the PDB and the bare pod, --drain-policy fail refuses, a drain records its reason and rejoin clears it; a reset worker rejoins; a worker is removed and added back; removing the only control plane is refused with the quorum arithmetic",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func maintenance() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-m1-\(getpid())").path
            let config = try LabConfig(id: "m1", subnet: "10.77.190", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            let site = config.sitePath
            let installed = try cli.run(["install", "-i", site, "--bundle", bundle.path, "--trust", bundle.publicKey])
            try #require(installed.status == 0, "\(installed.combined.suffix(6000))")

            let names = state.nodes.map(\.name)
            let cp = try #require(names.first { $0.hasPrefix("cp-") })
            let workers = names.filter { $0 != cp }
            try #require(workers.count == 2)
            let (w1, w2) = (workers[0], workers[1])
            let cpAddress = try state.node(cp).address
            func kubectl(_ args: String, check: Bool = true) throws -> HostCommand.Result {
                try ssh.run(address: cpAddress, "kubectl --kubeconfig=/etc/kubernetes/admin.conf \(args)", check: check)
            }
            func node(_ name: String) throws -> [String: Any] {
                let r = try kubectl("get node \(name) -o json")
                return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            }
            func annotations(_ name: String) throws -> [String: String] {
                (try node(name)["metadata"] as? [String: Any])?["annotations"] as? [String: String] ?? [:]
            }
            func cordoned(_ name: String) throws -> Bool {
                (try node(name)["spec"] as? [String: Any])?["unschedulable"] as? Bool ?? false
            }

            // A Deployment whose budget allows no disruption, and a bare pod, both on w1.
            let manifest = Self.workload.replacingOccurrences(of: "NODE", with: w1)
            _ = try ssh.run(
                address: cpAddress,
                "printf '%s' \(quote(manifest)) | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -")
            var ready = false
            for _ in 0..<30 where !ready {
                let r = try kubectl("get pdb web-pdb -o jsonpath={.status.currentHealthy}", check: false)
                ready = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2"
                if !ready { sleep(1) }
            }
            #expect(ready, "the web pods never became healthy")

            // --drain-policy fail: the simulation lists the blockers and nothing changes.
            let refused = try cli.run([
                "node", "drain", w1, "-i", site, "--reason", "DIMM swap", "--drain-policy", "fail",
            ])
            #expect(refused.status != 0)
            #expect(refused.combined.contains("PodDisruptionBudget web-pdb"), "\(refused.combined.suffix(4000))")
            #expect(refused.combined.contains("default/debug-shell"), "\(refused.combined.suffix(4000))")
            #expect(refused.combined.contains("bare pod"), "\(refused.combined.suffix(4000))")
            #expect(try !cordoned(w1))
            #expect(try annotations(w1)["appliance.dev/maintenance-reason"] == nil)

            // The drain with its reason; at the timeout the budget is bypassed (disable-eviction).
            let drained = try cli.run([
                "node", "drain", w1, "-i", site, "--reason", "DIMM swap", "--timeout", "15s", "--drain-policy",
                "disable-eviction",
            ])
            #expect(drained.status == 0, "\(drained.combined.suffix(6000))")
            #expect(try cordoned(w1))
            let marks = try annotations(w1)
            #expect(marks["appliance.dev/maintenance-reason"] == "DIMM swap")
            #expect(marks["appliance.dev/maintenance-by"]?.contains("@") == true)
            #expect(marks["appliance.dev/maintenance-at"] != nil)
            let left = try kubectl("get pods -A --field-selector spec.nodeName=\(w1) -o name")
            #expect(!left.stdout.contains("debug-shell") && !left.stdout.contains("pod/web-"), "\(left.stdout)")
            let history = try cli.run(["history", "-i", site])
            #expect(history.combined.contains("node-drain"), "\(history.combined)")

            // Rejoin: uncordoned, the reason cleared.
            let back = try cli.run(["node", "rejoin", w1, "-i", site])
            #expect(back.status == 0, "\(back.combined.suffix(6000))")
            #expect(try !cordoned(w1))
            #expect(try annotations(w1)["appliance.dev/maintenance-reason"] == nil)

            // A worker reset by hand rejoins with a fresh token.
            let w2Address = try state.node(w2).address
            _ = try ssh.run(address: w2Address, "kubeadm reset -f")
            let rejoined = try cli.run(["node", "rejoin", w2, "-i", site])
            #expect(rejoined.status == 0, "\(rejoined.combined.suffix(6000))")
            #expect(try ssh.run(address: w2Address, "test -f /etc/kubernetes/kubelet.conf", check: false).status == 0)
            let w2Ready = try kubectl("wait --for=condition=Ready node/\(w2) --timeout=60s", check: false)
            #expect(w2Ready.status == 0, "\(w2Ready.combined)")

            // Remove it, then add it back.
            let removed = try cli.run(["node", "remove", w2, "-i", site])
            #expect(removed.status == 0, "\(removed.combined.suffix(6000))")
            #expect(try kubectl("get node \(w2)", check: false).status != 0)
            #expect(try ssh.run(address: w2Address, "test -f /etc/kubernetes/kubelet.conf", check: false).status != 0)
            let added = try cli.run(["node", "add", w2, "-i", site])
            #expect(added.status == 0, "\(added.combined.suffix(6000))")
            let labels = (try node(w2)["metadata"] as? [String: Any])?["labels"] as? [String: String] ?? [:]
            for role in try state.node(w2).roles {
                #expect(labels["node-role.kubernetes.io/\(role.rawValue)"] != nil, "\(labels)")
            }

            // The only control plane: refused, with the arithmetic.
            let quorum = try cli.run(["node", "remove", cp, "-i", site])
            #expect(quorum.status != 0)
            #expect(quorum.combined.contains("only control plane"), "\(quorum.combined)")
            #expect(quorum.combined.contains("quorum"), "\(quorum.combined)")
            #expect(try kubectl("get node \(cp)", check: false).status == 0)
        }
    }
}
