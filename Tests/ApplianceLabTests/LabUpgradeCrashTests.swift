import AppliancePlan
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("appliance upgrade of a platform site killed and resumed on lab nodes (issue 14)", .tags(.lab), .serialized)
    struct LabUpgradeCrashTests {
        /// One pod asking one GPU through KAI, running until it is evicted.
        static let trainingJob = """
            apiVersion: v1
            kind: Namespace
            metadata: {name: team-a}
            ---
            apiVersion: batch/v1
            kind: Job
            metadata: {name: train, namespace: team-a}
            spec:
              backoffLimit: 6
              template:
                metadata:
                  labels: {kai.scheduler/queue: team-a}
                spec:
                  schedulerName: kai-scheduler
                  restartPolicy: Never
                  activeDeadlineSeconds: 3600
                  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
                  containers:
                  - name: train
                    image: registry.k8s.io/pause:3.10.1
                    command: [sleep, "3600"]
                    resources: {limits: {nvidia.com/gpu: "1"}}
            """

        /// One upgrade of a site with a platform (1 control plane, also the system node, + 2 GPU workers), killed
        /// with SIGKILL at five observed points and continued each time with `plan resume`.
        @Test(
            "a platform site from bundle 2026.11.0-lab with a training job of the GPU scheduler running: the upgrade's dry run says which releases it upgrades and which it leaves alone; its drain simulation names the training job a GPU job; SIGKILL between the control plane's kubeadm upgrade and its kubelet restart, mid-drain after the cordon, after a worker's packages, before an uncordon and during the platform release upgrade, each then plan resume: every node at v1.35.0, Ready, uncordoned, without marks; cloudnative-pg upgraded to chart 0.29.1 (revision 2), every other release left at revision 1; no step applied again after done; the training job was evicted and runs again, not failed; the upgrade again changes nothing",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func killedAndResumed() throws {
            let (bundle, upgrade) = try UpgradeLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-u2-\(getpid())").path
            let config = try LabConfig(id: "u2", subnet: "10.77.165", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            try FileManager.default.createDirectory(atPath: cli.state, withIntermediateDirectories: true)
            let site = try LabPlatformTests.platformSite(lab, state, in: dir)
            let sitePath = dir + "/site-platform.yaml"
            try site.yaml().write(toFile: sitePath, atomically: true, encoding: .utf8)
            let installed = try cli.run(
                ["install", "-i", sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey]
                    + LabPlatformTests.platformWaivers)
            try #require(installed.status == 0, "\(installed.combined.suffix(6000))")

            let cp = try #require(state.nodes.map(\.name).first { $0.hasPrefix("cp-") })
            let workers = state.nodes.map(\.name).filter { $0 != cp }.sorted()
            try #require(workers.count == 2, "\(state.nodes.map(\.name))")
            let cpAddress = try state.node(cp).address
            // Two pods on the first worker behind a PodDisruptionBudget that allows no disruption: its drain is
            // blocked until the 15 s drain timeout, then deletes them (--drain-policy disable-eviction), so a kill
            // a few seconds after the drain started lands inside it.
            _ = try ssh.run(
                address: cpAddress,
                "printf '%s' \(quote(LabUpgradeTests.workload.replacingOccurrences(of: "NODE", with: workers[0]))) | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -"
            )

            // A training job of the GPU scheduler in the site's team-a queue: the drain simulation names it a GPU
            // job; each drain evicts its pod, KAI places the replacement on the other GPU worker, and the job is
            // still running, not failed, when the upgrade is done.
            _ = try ssh.run(
                address: cpAddress,
                "printf '%s' \(quote(Self.trainingJob)) | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -")
            func trainingPods() throws -> [[String: Any]] {
                let r = try ssh.run(
                    address: cpAddress,
                    "kubectl --kubeconfig=/etc/kubernetes/admin.conf get pods -n team-a -l job-name=train -o json")
                return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["items"]
                    as? [[String: Any]] ?? []
            }
            func runningTrainingPod() throws -> [String: Any]? {
                try trainingPods().first {
                    ($0["status"] as? [String: Any])?["phase"] as? String == "Running"
                        && ($0["metadata"] as? [String: Any])?["deletionTimestamp"] == nil
                }
            }
            var trainingDeadline = Date().addingTimeInterval(90)
            while try runningTrainingPod() == nil, Date() < trainingDeadline { Thread.sleep(forTimeInterval: 2) }
            let pods = try trainingPods()
            let firstTrainingPod = try #require(try runningTrainingPod(), "the training job never ran: \(pods)")
            let firstTrainingName = (firstTrainingPod["metadata"] as? [String: Any])?["name"] as? String ?? "?"

            let up = [
                "upgrade", "-i", sitePath, "--bundle", upgrade.path, "--trust", upgrade.publicKey,
                "--max-unavailable", "1", "--drain-timeout", "15s", "--drain-policy", "disable-eviction",
            ]
            // The plan names what the new bundle changes in the platform, and what it leaves alone.
            let plan = try cli.run(up + ["--dry-run"])
            #expect(plan.status == 0, "\(plan.combined.suffix(4000))")
            for words in [
                "platform/cloudnative-pg  chart cloudnative-pg 0.29.0 → 0.29.1",
                "platform/platform-db  unchanged (chart cluster 0.8.1, same values): left alone",
                "platform/csi-driver-nfs  unchanged (chart csi-driver-nfs 4.13.4, same values): left alone",
            ] {
                #expect(plan.stdout.contains(words), "'\(words)' not in the plan: \(plan.stdout.suffix(6000))")
            }

            let resume = ["plan", "resume", "-i", sitePath]
            var runs: [KilledRun] = []
            func killedRun(_ args: [String], _ point: String, _ trigger: (KilledRun.Event) -> Duration?) throws {
                let r = try KilledRun.run(cli, args, trigger: trigger)
                runs.append(r)
                #expect(r.killed, "not killed \(point): exit \(r.status)\n\(r.stderr.suffix(3000))")
            }
            func starts(_ step: String, after delay: Duration = .zero) -> (KilledRun.Event) -> Duration? {
                { $0.event == "stepStarted" && $0.step == step ? delay : nil }
            }
            func applies(_ step: String) -> (KilledRun.Event) -> Duration? {
                { $0.event == "stepFinished" && $0.step == step && $0.message == nil ? .zero : nil }
            }
            // 1. Between the control plane's kubeadm upgrade and its packages and kubelet restart.
            try killedRun(up, "after kubeadm upgrade", applies("kubeadm-upgrade/\(cp)"))
            // 2. Mid-drain of the first worker, after its cordon (the drain waits 15 s on the PDB).
            try killedRun(resume, "mid-drain", starts("drain/\(workers[0])", after: .seconds(4)))
            // 3. After the first worker's packages, before its kubelet restart.
            try killedRun(resume, "after packages", applies("upgrade-packages/\(workers[0])"))
            // 4. Before the second worker's uncordon.
            try killedRun(resume, "before uncordon", starts("uncordon/\(workers[1])"))
            // 5. During the platform release upgrade: the new chart's operator is Ready 10 s after its pod
            // starts (readiness probe delay), so `helm upgrade --wait` is still waiting 4 s in.
            try killedRun(resume, "during a release upgrade", starts("platform/cloudnative-pg", after: .seconds(4)))
            let finished = try KilledRun.run(cli, resume)
            runs.append(finished)
            #expect(finished.status == 0, "exit \(finished.status)\n\(finished.stderr.suffix(4000))")

            // The journal: no step ran its apply again after it was journaled done.
            let clusters = try FileManager.default.contentsOfDirectory(atPath: cli.state + "/clusters")
            let cluster = try #require(clusters.first, "no cluster state under \(cli.state)/clusters")
            let journal = try Journal(stateDirectory: URL(fileURLWithPath: cli.state + "/clusters/" + cluster))
            let op = try #require(try journal.operations().first { $0.kind == "upgrade" })
            #expect(op.state == .succeeded, "\(op.state)")
            var done: Set<String> = []
            var appliedAgain: [String] = []
            var interrupted = 0
            for t in try journal.transitions(operation: op.id) {
                switch t.state {
                case .done: done.insert(t.step)
                case .running where done.contains(t.step): appliedAgain.append(t.step)
                case .interrupted: interrupted += 1
                default: break
                }
            }
            #expect(appliedAgain.isEmpty, "applied again after done: \(appliedAgain)")
            // Three kills come right after a step finished (nothing in flight); the mid-drain and mid-release ones
            // leave their step in flight: the journal shows both interrupted, found by the next run's lock.
            let transitions = try journal.transitions(operation: op.id)
            let inFlight = transitions.filter { $0.state == .interrupted }.map(\.step)
            for step in ["drain/\(workers[0])", "platform/cloudnative-pg"] {
                let timings = transitions.filter { $0.step == step }.map {
                    "\($0.state) \($0.time.formatted(.iso8601.time(includingFractionalSeconds: true)))"
                }
                #expect(inFlight.contains(step), "\(step) not left in flight by its kill: \(timings)")
            }
            #expect(interrupted >= 2, "the kills left \(interrupted) interrupted steps")
            // The drain simulation before the first cordon named the training job as a GPU job.
            let simulation = transitions.filter { $0.step == "upgrade-drain-simulation" && $0.state == .done }
                .compactMap(\.outputTail).joined(separator: "\n")
            #expect(
                simulation.split(separator: "\n").contains {
                    $0.contains("team-a/\(firstTrainingName)") && $0.contains("GPU job (kai-scheduler, 1 GPU)")
                }, "the simulation does not name the training job: \(simulation)")
            var appliedIn: [String: Int] = [:]
            for r in runs { for s in Set(r.applied) { appliedIn[s, default: 0] += 1 } }
            #expect(appliedIn.filter { $0.value > 1 }.isEmpty, "\(appliedIn.filter { $0.value > 1 })")

            // The state of an uninterrupted upgrade.
            let nodes = try ssh.run(
                address: cpAddress, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes -o json")
            let items =
                (try JSONSerialization.jsonObject(with: Data(nodes.stdout.utf8)) as? [String: Any])?["items"]
                as? [[String: Any]] ?? []
            #expect(items.count == 3, "\(nodes.stdout.prefix(2000))")
            for n in items {
                let name = NodeJSON.name(n)
                #expect(NodeJSON.kubeletVersion(n) == "v1.35.0", "\(name) at \(NodeJSON.kubeletVersion(n))")
                #expect(NodeJSON.ready(n) && !NodeJSON.cordoned(n), "\(name) not Ready or still cordoned")
                let annotations = (n["metadata"] as? [String: Any])?["annotations"] as? [String: String] ?? [:]
                let marks = ["reason", "by", "at", "method", "operation"].map { "appliance.dev/maintenance-\($0)" }
                #expect(
                    !annotations.keys.contains { marks.contains($0) || $0 == "appliance.dev/cordon-reason" },
                    "\(name) keeps marks: \(annotations)")
            }
            // The training job survived the upgrade: evicted by the drains, not failed, running again.
            trainingDeadline = Date().addingTimeInterval(90)
            while try runningTrainingPod() == nil, Date() < trainingDeadline { Thread.sleep(forTimeInterval: 2) }
            let job = try ssh.run(
                address: cpAddress,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf get job train -n team-a -o jsonpath='{.status.conditions[*].type}'"
            )
            #expect(!job.stdout.contains("Failed"), "the training job failed: \(job.stdout)")
            let lastTrainingPod = try runningTrainingPod()
            let podsAfter = try trainingPods()
            #expect(lastTrainingPod != nil, "no training pod running after the upgrade: \(podsAfter)")
            #expect(
                ((lastTrainingPod?["metadata"] as? [String: Any])?["name"] as? String) != firstTrainingName,
                "the training pod was never evicted")
            let record = try ssh.run(address: cpAddress, "cat /var/lib/appliance/installed.json")
            #expect(record.stdout.contains("2026.12.0-lab"), "\(record.stdout)")
            let listed = try ssh.run(address: cpAddress, "helm list -A -o json --kubeconfig /etc/kubernetes/admin.conf")
            let releases = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
            #expect(releases.count == 8, "\(listed.stdout)")
            for r in releases {
                let name = r["name"] as? String ?? ""
                #expect(r["status"] as? String == "deployed", "\(name): \(r)")
                if name == "cloudnative-pg" {
                    #expect(r["chart"] as? String == "cloudnative-pg-0.29.1", "\(r)")
                    #expect(r["revision"] as? String == "2", "cloudnative-pg upgraded once: \(r)")
                } else {
                    #expect(r["revision"] as? String == "1", "\(name) was not left alone: \(r)")
                }
            }
            let deployment = try ssh.run(
                address: cpAddress,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf get deployment cloudnative-pg -n cnpg-system -o jsonpath='{.metadata.labels.helm\\.sh/chart} {.status.readyReplicas}'"
            )
            #expect(deployment.stdout.hasPrefix("cloudnative-pg-0.29.1 "), "\(deployment.combined)")

            // What the re-run's checks read, for the failure message should it apply anything.
            let before = try ssh.run(
                address: cpAddress,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf get pods -n gpu-operator -o wide; sha256sum /var/lib/appliance/platform/*; kubectl --kubeconfig=/etc/kubernetes/admin.conf get -f /var/lib/appliance/platform/platform-objects.yaml -o name; helm status gpu-operator -n gpu-operator -o json --kubeconfig=/etc/kubernetes/admin.conf | head -c 600; true"
            )
            let again = try KilledRun.run(cli, Array(up.prefix(7)))
            #expect(again.status == 0, "\(again.stderr.suffix(4000))")
            // Only the steps that always run (the simulation, the transfer's check, the GPU gates) apply again.
            let always = ["upgrade-drain-simulation", "transfer", "gpu-gate/", "gpu-validate/"]
            let changed = again.applied.filter { s in
                !always.contains { s == $0 || ($0.hasSuffix("/") && s.hasPrefix($0)) }
            }
            var why: [String] = []
            if !changed.isEmpty,
                let rerun = try journal.operations().first(where: { $0.kind == "upgrade" && $0.id != op.id })
            {
                why = try journal.transitions(operation: rerun.id).filter { changed.contains($0.step) }.map {
                    "\($0.step) \($0.state): \($0.outputTail ?? "") \($0.error ?? "")"
                }
            }
            #expect(
                changed.isEmpty,
                "the upgrade again applied \(changed): \(why.joined(separator: "\n"))\nbefore the re-run:\n\(before.combined)"
            )
        }
    }
}
