import ApplianceBundle
import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

/// The lab's upgrade bundle (`bundles/lab-upgrade.yaml`: Kubernetes 1.35, a new driver and fabric manager),
/// built once per test process with its own key.
struct UpgradeLabBundle: Sendable {
    let path: String
    let publicKey: String
    /// A bundle that names the installed version but skips a Kubernetes minor (1.34 → 1.36), signed by the
    /// same key: small (one file), since it must be refused before its contents matter.
    let skipping: String

    /// Both lab bundles, signed by one key. `APPLIANCE_LAB_BUNDLES=DIR` names a folder that already holds
    /// `lab.tar`, `upgrade.tar` (`appliance lab bundle -f bundles/lab[-upgrade].yaml`, same static labnode)
    /// and `keys/appliance-signing.key|pub`: the bundles are then not built again under the lab lock.
    static let built: Result<(current: FullLabBundle, upgrade: UpgradeLabBundle), StandInSetupFailure> = {
        do {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-upgrade-bundle-\(getpid())")
                .path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let given = ProcessInfo.processInfo.environment["APPLIANCE_LAB_BUNDLES"].flatMap { $0.isEmpty ? nil : $0 }
            let key: Ed25519Key
            let pub: String
            let current: FullLabBundle
            let upgrade: String
            if let given {
                key = try Ed25519Key.load(path: given + "/keys/appliance-signing.key")
                pub = given + "/keys/appliance-signing.pub"
                current = FullLabBundle(path: given + "/lab.tar", publicKey: pub)
                upgrade = given + "/upgrade.tar"
            } else {
                key = try Ed25519Key.generate()
                pub = dir + "/lab.pub"
                try key.publicKeyPEM().write(to: URL(fileURLWithPath: pub))
                for (spec, out) in [("lab.yaml", "lab.tar"), ("lab-upgrade.yaml", "upgrade.tar")] {
                    _ = try LabBundle(
                        specPath: packageRoot + "/bundles/" + spec, labnode: try staticLabnode.get(),
                        debCacheDirectory: StateDirectory.path() + "/cache/debs", logger: Logger(label: "lab-test")
                    ).build(output: dir + "/" + out, signingKey: key)
                }
                current = FullLabBundle(path: dir + "/lab.tar", publicKey: pub)
                upgrade = dir + "/upgrade.tar"
            }

            try "skipping\n".write(toFile: dir + "/note.txt", atomically: true, encoding: .utf8)
            try """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: appliance-lab}
            spec:
              version: 2027.01.0-lab
              upgradeFrom: [2026.11.0-lab]
              kubernetes: {version: v1.36.0}
              components:
                - name: notes
                  version: "1"
                  artifacts:
                    - {name: note, kind: file, roles: [all], source: {file: note.txt}}

            """.write(toFile: dir + "/skip.yaml", atomically: true, encoding: .utf8)
            _ = try BundleBuilder(
                spec: try BundleSpec.load(path: dir + "/skip.yaml"), signingKey: key,
                debCacheDirectory: StateDirectory.path() + "/cache/debs", logger: Logger(label: "lab-test")
            ).build(output: dir + "/skip.tar")
            return .success(
                (current, UpgradeLabBundle(path: upgrade, publicKey: pub, skipping: dir + "/skip.tar")))
        } catch { return .failure(.init(description: "\(error)")) }
    }()
}

/// What the sampler saw while the upgrade ran: the most workers cordoned at once, and the most control planes
/// down (NotReady, or the API not answering through them) at once.
final class AvailabilitySampler: @unchecked Sendable {
    // @unchecked: every field is read and written under `lock`.
    private let lock = NSLock()
    private var stop = false
    private var last: Date?
    private(set) var samples = 0
    private(set) var maxCordonedWorkers = 0
    private(set) var maxControlPlanesDown = 0
    private(set) var cordonedSeen: Set<String> = []
    /// The longest time between two samples (or from the start to the first), in seconds.
    private(set) var longestGap = 0.0

    func record(cordoned: [String], controlPlanesDown: Int) {
        lock.withLock {
            samples += 1
            maxCordonedWorkers = max(maxCordonedWorkers, cordoned.count)
            maxControlPlanesDown = max(maxControlPlanesDown, controlPlanesDown)
            cordonedSeen.formUnion(cordoned)
            let now = Date()
            longestGap = max(longestGap, now.timeIntervalSince(last ?? now))
            last = now
        }
    }
    var stopped: Bool { lock.withLock { stop } }
    func finish() { lock.withLock { stop = true } }
    var summary: (samples: Int, workers: Int, controlPlanes: Int, seen: Set<String>, longestGap: Int) {
        lock.withLock { (samples, maxCordonedWorkers, maxControlPlanesDown, cordonedSeen, Int(longestGap.rounded())) }
    }

    /// Samples the nodes every 0.5 s on a thread until `finish()`: through the first control plane (of
    /// `controlPlanes`, addresses in order) whose API answers; when none answers, every control plane counts
    /// as down. Each sample is bounded (kubectl 5 s on the node, the whole ssh 10 s here, killed past that)
    /// and runs on this thread alone, so a hung login or a busy machine shows as a gap, never as silence.
    static func start(ssh: LabSSH, controlPlanes: [String], workers: Set<String>) -> AvailabilitySampler {
        let sampler = AvailabilitySampler()
        sampler.lock.withLock { sampler.last = Date() }
        let thread = Thread {
            while !sampler.stopped {
                var items: [[String: Any]]?
                for address in controlPlanes where items == nil {
                    let (program, args) = ssh.command(
                        address: address,
                        remote: [
                            "kubectl --kubeconfig=/etc/kubernetes/admin.conf get nodes -o json --request-timeout=5s"
                        ])
                    if let out = boundedOutput(["-s", "KILL", "10", program] + args),
                        let list = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
                    {
                        items = list["items"] as? [[String: Any]]
                    }
                }
                if let items {
                    let cordoned = items.filter { workers.contains(NodeJSON.name($0)) && NodeJSON.cordoned($0) }
                        .map(NodeJSON.name)
                    let down = items.filter { !workers.contains(NodeJSON.name($0)) && !NodeJSON.ready($0) }.count
                    sampler.record(cordoned: cordoned, controlPlanesDown: down)
                } else {
                    sampler.record(cordoned: [], controlPlanesDown: controlPlanes.count)
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        thread.start()
        return sampler
    }

    /// stdout of `timeout ARGS` when it exits 0; stderr is discarded and nothing else runs on another thread.
    private static func boundedOutput(_ args: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }
}

/// Fields of a Node object as `kubectl get nodes -o json` prints it.
enum NodeJSON {
    @Sendable static func name(_ n: [String: Any]) -> String {
        (n["metadata"] as? [String: Any])?["name"] as? String ?? ""
    }
    @Sendable static func kubeletVersion(_ n: [String: Any]) -> String {
        ((n["status"] as? [String: Any])?["nodeInfo"] as? [String: Any])?["kubeletVersion"] as? String ?? ""
    }
    @Sendable static func cordoned(_ n: [String: Any]) -> Bool {
        (n["spec"] as? [String: Any])?["unschedulable"] as? Bool ?? false
    }
    @Sendable static func ready(_ n: [String: Any]) -> Bool {
        let conds = (n["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
        return conds.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }
    }
}

extension RealLabSuites {
    @Suite("appliance upgrade on lab nodes (issue 14)", .tags(.lab), .serialized)
    struct LabUpgradeTests {
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
            """

        @Test(
            "1 control plane + 2 GPU workers from bundle 2026.11.0-lab (Kubernetes 1.34): a bundle skipping a minor is refused (exit 12); --drain-policy fail lists the PDB and changes nothing; a worker failing its GPU gate stays cordoned and stops the upgrade, plan rollback puts it back on 1.34 uncordoned; plan resume then upgrades it again and the upgrade to 2026.12.0-lab completes with never more than one worker cordoned; every node at kubelet v1.35.0, the record says the new version, the old blobs are pruned; a re-run changes nothing",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func rollingUpgrade() throws {
            let (bundle, upgrade) = try UpgradeLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-u1-\(getpid())").path
            let config = try LabConfig(id: "u1", subnet: "10.77.164", directory: dir + "/lab")
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
            let cpAddress = try state.node(cp).address
            func kubectl(_ args: String, check: Bool = true) throws -> HostCommand.Result {
                try ssh.run(address: cpAddress, "kubectl --kubeconfig=/etc/kubernetes/admin.conf \(args)", check: check)
            }
            func nodes() throws -> [[String: Any]] {
                let r = try kubectl("get nodes -o json")
                let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                return list?["items"] as? [[String: Any]] ?? []
            }
            let (name, kubelet, cordoned, ready) = (
                NodeJSON.name, NodeJSON.kubeletVersion, NodeJSON.cordoned, NodeJSON.ready
            )

            // A Deployment whose budget allows no disruption, on the first worker.
            let w1 = workers[0]
            _ = try ssh.run(
                address: cpAddress,
                "printf '%s' \(quote(Self.workload.replacingOccurrences(of: "NODE", with: w1))) | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -"
            )
            var healthy = false
            for _ in 0..<30 where !healthy {
                let r = try kubectl("get pdb web-pdb -o jsonpath={.status.currentHealthy}", check: false)
                healthy = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "2"
                if !healthy { sleep(1) }
            }
            #expect(healthy, "the web pods never became healthy")

            // A bundle that skips Kubernetes 1.35: refused with both versions, exit 12, nothing changed.
            let skip = try cli.run([
                "upgrade", "-i", site, "--bundle", upgrade.skipping, "--trust", upgrade.publicKey,
            ])
            #expect(skip.status == 12, "\(skip.combined.suffix(4000))")
            #expect(skip.combined.contains("v1.36.0") && skip.combined.contains("v1.34.3"), "\(skip.combined)")
            #expect(skip.combined.contains("one minor version at a time"), "\(skip.combined)")

            let up = ["upgrade", "-i", site, "--bundle", upgrade.path, "--trust", upgrade.publicKey]
            // --drain-policy fail: the simulation table names the budget; nothing is cordoned or upgraded.
            let refused = try cli.run(up + ["--drain-policy", "fail"])
            #expect(refused.status != 0, "\(refused.combined.suffix(4000))")
            #expect(refused.combined.contains("PodDisruptionBudget web-pdb"), "\(refused.combined.suffix(4000))")
            #expect(refused.combined.contains("--drain-policy fail"), "\(refused.combined.suffix(4000))")
            for n in try nodes() {
                #expect(!cordoned(n), "\(name(n)) cordoned by a refused upgrade")
                #expect(kubelet(n) == "v1.34.3", "\(name(n)) changed by a refused upgrade: \(kubelet(n))")
            }

            // The upgrade, sampled: at most one worker cordoned, at most one control plane down at once.
            let workerSet = Set(workers)
            let sampler = AvailabilitySampler.start(ssh: ssh, controlPlanes: [cpAddress], workers: workerSet)
            defer { sampler.finish() }
            let rolling =
                up + ["--max-unavailable", "1", "--drain-timeout", "15s", "--drain-policy", "disable-eviction"]
            // The last worker's GPUs report ECC errors: its gate fails after its packages are upgraded, it stays
            // cordoned with the reason, and the upgrade stops there.
            let last = try #require(workers.last)
            let lastAddress = try state.node(last).address
            _ = try lab.fault(node: last, kind: .eccErrors, argument: "0")
            let failed = try cli.run(rolling)
            #expect(failed.status != 0, "\(failed.combined.suffix(6000))")
            #expect(failed.combined.contains(last), "\(failed.combined.suffix(4000))")
            let stopped = try #require(try nodes().first { name($0) == last })
            #expect(cordoned(stopped), "\(last) not cordoned after its failed gate")
            #expect(kubelet(stopped) == "v1.35.0", "\(last) at \(kubelet(stopped))")
            let reason =
                ((stopped["metadata"] as? [String: Any])?["annotations"] as? [String: String])?[
                    "appliance.dev/cordon-reason"] ?? ""
            #expect(reason.contains("GPU validation failed"), "\(reason)")
            let unchanged = try ssh.run(address: cpAddress, "cat /var/lib/appliance/installed.json")
            #expect(unchanged.stdout.contains("2026.11.0-lab"), "the record moved on: \(unchanged.stdout)")

            // The node in flight rolled back: the previous packages from its store, Ready at v1.34.3, uncordoned.
            _ = try lab.fault(node: last, kind: .gpuHealthy)
            let rollback = try cli.run(["plan", "rollback", "-i", site])
            #expect(rollback.status == 0, "\(rollback.combined.suffix(6000))")
            #expect(rollback.stdout.contains("\(last) rolled back to bundle 2026.11.0-lab"), "\(rollback.stdout)")
            let back = try #require(try nodes().first { name($0) == last })
            #expect(kubelet(back) == "v1.34.3" && !cordoned(back), "\(last) at \(kubelet(back))")
            let pkg = try ssh.run(address: lastAddress, "dpkg-query -W -f='${Version}' kubelet nvidia-driver")
            #expect(pkg.stdout.hasPrefix("1.34.3") && pkg.stdout.contains("535.161.08"), "\(pkg.stdout)")

            // Fixed: `plan resume` of the failed upgrade upgrades the rolled-back node again from its start and
            // finishes (the rollback reopened that node's steps).
            let done = try cli.run(["plan", "resume", "-i", site])
            sampler.finish()
            #expect(done.status == 0, "\(done.combined.suffix(8000))")
            #expect(done.stdout.contains("upgraded 3 node(s) to bundle 2026.12.0-lab"), "\(done.stdout)")
            let seen = sampler.summary
            #expect(seen.samples > 10, "the sampler saw too little: \(seen)")
            #expect(seen.workers <= 1, "more than --max-unavailable workers cordoned at once: \(seen)")
            #expect(seen.controlPlanes <= 1, "more than one control plane down at once: \(seen)")
            #expect(seen.seen == workerSet, "the sampler never saw every worker cordoned: \(seen)")

            for n in try nodes() {
                #expect(kubelet(n) == "v1.35.0", "\(name(n)) at \(kubelet(n))")
                #expect(ready(n) && !cordoned(n), "\(name(n)) not Ready or still cordoned")
            }
            let manifest = try ssh.run(address: cpAddress, "cat /etc/kubernetes/manifests/kube-apiserver.yaml")
            #expect(manifest.stdout.contains("kube-apiserver:v1.35.0"), "\(manifest.stdout)")
            let record = try ssh.run(address: cpAddress, "cat /var/lib/appliance/installed.json")
            #expect(record.stdout.contains("2026.12.0-lab"), "\(record.stdout)")
            #expect(record.stdout.contains("1.35.0"), "\(record.stdout)")
            for n in state.nodes {
                let old = try ssh.run(
                    address: n.address, "test -e /var/lib/appliance/store/bundles/2026.11.0-lab", check: false)
                #expect(old.status != 0, "\(n.name) still holds the previous bundle's manifest")
                let ver = try ssh.run(address: n.address, "dpkg-query -W -f='${Version}' kubelet")
                #expect(ver.stdout.hasPrefix("1.35.0"), "\(n.name): kubelet package \(ver.stdout)")
            }

            // Again: nothing to do.
            let again = try cli.run(up)
            #expect(again.status == 0, "\(again.combined.suffix(6000))")
            #expect(again.stdout.contains("nothing to upgrade"), "\(again.stdout)")
        }
    }
}
