import AppliancePlan
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite(
        "appliance upgrade with each drain policy on 3 control planes + 3 workers (issue 14)", .tags(.lab), .serialized)
    struct LabUpgradePolicyTests {
        /// Two pods anywhere (they tolerate every taint) behind a budget that allows one disruption: a drain
        /// that honours budgets evicts them one at a time, each after its replacement is Ready elsewhere.
        static let web = """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, namespace: default}
            spec:
              replicas: 2
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  tolerations: [{operator: Exists}]
                  containers: [{name: web, image: registry.k8s.io/pause:3.10.1}]
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata: {name: web-pdb, namespace: default}
            spec:
              maxUnavailable: 1
              selector: {matchLabels: {app: web}}
            """
        /// Two pods pinned to one node behind a budget that allows no disruption: only
        /// `--drain-policy disable-eviction` gets them off that node.
        static let pinned = """
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: pinned, namespace: default}
            spec:
              replicas: 2
              selector: {matchLabels: {app: pinned}}
              template:
                metadata: {labels: {app: pinned}}
                spec:
                  nodeSelector: {kubernetes.io/hostname: NODE}
                  tolerations: [{operator: Exists}]
                  containers: [{name: pinned, image: registry.k8s.io/pause:3.10.1}]
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata: {name: pinned-pdb, namespace: default}
            spec:
              minAvailable: 2
              selector: {matchLabels: {app: pinned}}
            """

        /// The issue's topology: 3 control planes (stacked etcd), a system node carrying the platform, and 2 GPU
        /// workers, one with a KAI training job and one with a Deployment whose budget allows no disruption. The
        /// upgrade is refused whole under `--drain-policy fail`, then done in three runs, one per policy: the
        /// control planes with `fail` (nothing blocks there), the system node and the first GPU worker together
        /// with `wait` (`--max-unavailable 2`), the rest with `disable-eviction`. Each run is sampled.
        @Test(
            "3 control planes + a system node + 2 GPU workers with a platform, a KAI training job and two budgets: --drain-policy fail is refused whole with the budget and the GPU job named and nothing changed; then fail upgrades the control planes (no worker cordoned, never more than one control plane down), wait upgrades sys-1 and gpu-1 together (--max-unavailable 2, never more than two workers cordoned), disable-eviction upgrades gpu-2 past its budget and finishes: every node at v1.35.0, Ready, uncordoned; the training job runs again, not failed; the record and status say 2026.12.0-lab",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func eachDrainPolicy() throws {
            let (bundle, upgrade) = try UpgradeLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-v1-\(getpid())").path
            let config = try LabConfig(id: "v1", subnet: "10.77.166", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(
                .init(profile: "lab", nodes: 6, controlPlanes: 3, systemNodes: 1, diskSizeMiB: 1024)
            ).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            try FileManager.default.createDirectory(atPath: cli.state, withIntermediateDirectories: true)
            let site = try LabPlatformTests.platformSite(lab, state, in: dir)
            let sitePath = dir + "/site-platform.yaml"
            try site.yaml().write(toFile: sitePath, atomically: true, encoding: .utf8)
            let installed = try cli.run(
                [
                    "install", "-i", sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey, "--waive",
                    "storage.nfs=lab test: the lab shares its export as a directory, without the NFS protocol",
                ])
            try #require(installed.status == 0, "\(installed.combined.suffix(6000))")

            let names = state.nodes.map(\.name)
            try #require(
                names == ["cp-1", "cp-2", "cp-3", "sys-1", "gpu-1", "gpu-2"], "the lab's nodes: \(names)")
            let controlPlanes = ["cp-1", "cp-2", "cp-3"]
            let workers = ["sys-1", "gpu-1", "gpu-2"]
            let cpAddresses = try controlPlanes.map { try state.node($0).address }
            let cp1 = cpAddresses[0]
            func kubectl(_ args: String, check: Bool = true) throws -> HostCommand.Result {
                try ssh.run(address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf \(args)", check: check)
            }
            func apply(_ yaml: String) throws {
                _ = try ssh.run(
                    address: cp1,
                    "printf '%s' \(quote(yaml)) | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -")
            }
            func nodes() throws -> [[String: Any]] {
                let r = try kubectl("get nodes -o json")
                let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                return list?["items"] as? [[String: Any]] ?? []
            }
            func versions() throws -> [String: String] {
                Dictionary(uniqueKeysWithValues: try nodes().map { (NodeJSON.name($0), NodeJSON.kubeletVersion($0)) })
            }
            func anyCordoned() throws -> [String] { try nodes().filter(NodeJSON.cordoned).map(NodeJSON.name) }
            func waitFor(_ what: String, seconds: Double = 90, _ condition: () throws -> Bool) throws {
                let deadline = Date().addingTimeInterval(seconds)
                while Date() < deadline {
                    if try condition() { return }
                    Thread.sleep(forTimeInterval: 2)
                }
                Issue.record("\(what): not within \(Int(seconds)) s")
            }

            // The workloads: the training job (KAI, team-a, one GPU), `web` (budget allows one disruption) and
            // `pinned` on gpu-2 (budget allows none).
            try apply(LabUpgradeCrashTests.trainingJob)
            try apply(Self.web)
            try apply(Self.pinned.replacingOccurrences(of: "NODE", with: "gpu-2"))
            func trainingPods() throws -> [[String: Any]] {
                let r = try kubectl("get pods -n team-a -l job-name=train -o json")
                return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["items"]
                    as? [[String: Any]] ?? []
            }
            func runningTrainingPod() throws -> (name: String, node: String)? {
                for p in try trainingPods() {
                    let meta = p["metadata"] as? [String: Any] ?? [:]
                    guard (p["status"] as? [String: Any])?["phase"] as? String == "Running",
                        meta["deletionTimestamp"] == nil
                    else { continue }
                    return (
                        meta["name"] as? String ?? "?", (p["spec"] as? [String: Any])?["nodeName"] as? String ?? "?"
                    )
                }
                return nil
            }
            try waitFor("the training job running") { try runningTrainingPod() != nil }
            let podsAtStart = try trainingPods()
            let firstTraining = try #require(try runningTrainingPod(), "the training job never ran: \(podsAtStart)")
            for pdb in ["web-pdb", "pinned-pdb"] {
                try waitFor("\(pdb) with 2 healthy pods") {
                    try kubectl("get pdb \(pdb) -o jsonpath={.status.currentHealthy}", check: false).stdout
                        .trimmingCharacters(in: .whitespacesAndNewlines) == "2"
                }
            }

            let up = ["upgrade", "-i", sitePath, "--bundle", upgrade.path, "--trust", upgrade.publicKey]
            // The dry run shows the drain simulation of every node before its plan, and changes nothing.
            let dry = try cli.run(up + ["--drain-policy", "fail", "--dry-run"])
            #expect(dry.status == 0, "\(dry.combined.suffix(4000))")
            for words in [
                "drain simulation (server-side dry run, through cp-1):", "PodDisruptionBudget pinned-pdb",
                "GPU job (kai-scheduler, 1 GPU)", "the upgrade would stop at its simulation",
            ] + (controlPlanes + workers).map({ "\($0): " }) {
                #expect(dry.stdout.contains(words), "'\(words)' not in the dry run: \(dry.stdout.prefix(6000))")
            }
            // --drain-policy fail over the whole cluster: the simulation table names the budget that allows no
            // disruption and the GPU job; nothing is cordoned or upgraded.
            let refused = try cli.run(up + ["--drain-policy", "fail"])
            #expect(refused.status != 0, "\(refused.combined.suffix(4000))")
            for words in [
                "PodDisruptionBudget pinned-pdb", "team-a/\(firstTraining.name)", "GPU job (kai-scheduler, 1 GPU)",
                "--drain-policy fail",
            ] {
                #expect(refused.combined.contains(words), "'\(words)' not in: \(refused.combined.suffix(4000))")
            }
            let cordonedAfterRefusal = try anyCordoned()
            #expect(cordonedAfterRefusal.isEmpty, "a refused upgrade cordoned \(cordonedAfterRefusal)")
            let afterRefusal = try versions()
            #expect(afterRefusal.values.allSatisfy { $0 == "v1.34.3" }, "\(afterRefusal)")

            /// One run of the upgrade, sampled.
            func sampled(_ args: [String]) throws -> (HostCommand.Result, AvailabilitySampler) {
                let sampler = AvailabilitySampler.start(ssh: ssh, controlPlanes: cpAddresses, workers: Set(workers))
                defer { sampler.finish() }
                return (try cli.run(args), sampler)
            }

            // 1. fail: the control planes, where nothing blocks. One at a time; no worker is touched.
            let (first, s1) = try sampled(
                up + ["--drain-policy", "fail"] + controlPlanes.flatMap { ["--node", $0] })
            #expect(first.status == 0, "\(first.combined.suffix(6000))")
            let afterFirst = try versions()
            for n in controlPlanes { #expect(afterFirst[n] == "v1.35.0", "\(n) at \(afterFirst[n] ?? "?")") }
            for n in workers {
                #expect(afterFirst[n] == "v1.34.3", "\(n) touched by --node cp-*: \(afterFirst[n] ?? "?")")
            }
            let seen1 = s1.summary
            #expect(seen1.samples > 10, "the sampler saw too little: \(seen1)")
            #expect(seen1.controlPlanes <= 1, "more than one control plane down at once: \(seen1)")
            #expect(seen1.workers == 0, "a worker cordoned while the control planes were upgraded: \(seen1)")

            // 2. wait: the system node and the first GPU worker in one batch; every budget honoured (web's pods
            // leave one at a time; the training job is evicted if it runs on gpu-1).
            let (second, s2) = try sampled(
                up + [
                    "--drain-policy", "wait", "--max-unavailable", "2", "--drain-timeout", "120s", "--node", "sys-1",
                    "--node", "gpu-1",
                ])
            #expect(second.status == 0, "\(second.combined.suffix(6000))")
            let afterSecond = try versions()
            for n in ["sys-1", "gpu-1"] { #expect(afterSecond[n] == "v1.35.0", "\(n) at \(afterSecond[n] ?? "?")") }
            #expect(afterSecond["gpu-2"] == "v1.34.3", "gpu-2 touched by --node sys-1 gpu-1: \(afterSecond)")
            let seen2 = s2.summary
            #expect(seen2.samples > 10, "the sampler saw too little: \(seen2)")
            #expect(seen2.workers <= 2, "more than --max-unavailable 2 workers cordoned at once: \(seen2)")
            #expect(seen2.seen == ["sys-1", "gpu-1"], "the sampler saw other workers cordoned: \(seen2)")
            #expect(seen2.controlPlanes == 0, "a control plane went down in a worker batch: \(seen2)")

            // 3. disable-eviction: the rest (gpu-2). Its pinned pods' budget blocks the drain until the timeout,
            // then they are deleted without the eviction API; the run finishes the upgrade.
            let (third, s3) = try sampled(up + ["--drain-policy", "disable-eviction", "--drain-timeout", "15s"])
            #expect(third.status == 0, "\(third.combined.suffix(6000))")
            let gpu2Drain = try journalOutput(cli, kind: "upgrade", step: "drain/gpu-2")
            #expect(
                gpu2Drain.contains("deleting the remaining pods without the eviction API"),
                "gpu-2's drain never bypassed its budget: \(gpu2Drain.suffix(3000))")
            let seen3 = s3.summary
            #expect(seen3.samples > 10, "the sampler saw too little: \(seen3)")
            #expect(seen3.workers <= 1, "more than one worker cordoned at once: \(seen3)")
            #expect(seen3.seen == ["gpu-2"], "the sampler saw other workers cordoned: \(seen3)")
            #expect(seen3.controlPlanes == 0, "a control plane went down after the control planes were done: \(seen3)")

            for n in try nodes() {
                #expect(NodeJSON.kubeletVersion(n) == "v1.35.0", "\(NodeJSON.name(n)) at \(NodeJSON.kubeletVersion(n))")
                #expect(NodeJSON.ready(n) && !NodeJSON.cordoned(n), "\(NodeJSON.name(n)) not Ready or still cordoned")
            }
            let record = try ssh.run(address: cp1, "cat /var/lib/appliance/installed.json")
            #expect(record.stdout.contains("2026.12.0-lab"), "\(record.stdout)")

            // The training job was evicted at least once and runs again; the pinned pods are back on gpu-2.
            try waitFor("the training job running again") { try runningTrainingPod() != nil }
            let job = try kubectl("get job train -n team-a -o jsonpath='{.status.conditions[*].type}'")
            #expect(!job.stdout.contains("Failed"), "the training job failed: \(job.stdout)")
            let lastTraining = try runningTrainingPod()
            let podsAtEnd = try trainingPods()
            #expect(lastTraining != nil && lastTraining?.name != firstTraining.name, "never evicted: \(podsAtEnd)")
            try waitFor("pinned's pods Ready on gpu-2 again") {
                try kubectl("get deployment pinned -o jsonpath={.status.readyReplicas}", check: false).stdout
                    .trimmingCharacters(in: .whitespacesAndNewlines) == "2"
            }

            // status: every node at the new kubelet, the bundle recorded, healthy.
            let status = try cli.run(["status", "-i", sitePath])
            #expect(status.status == 0, "\(status.combined.suffix(6000))")
            #expect(status.stdout.contains("2026.12.0-lab"), "\(status.stdout.suffix(4000))")
            for n in controlPlanes + workers {
                let line = status.stdout.split(separator: "\n").first {
                    $0.split(separator: " ").first.map(String.init) == n
                }
                #expect(line?.contains("v1.35.0") == true, "\(n): \(line.map(String.init) ?? "no line")")
            }
        }
    }
}
