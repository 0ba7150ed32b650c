import ApplianceModel
import AppliancePlatform
import Foundation
import Testing

@testable import ApplianceLab
@testable import ApplianceOperations

/// The lab's KAI Scheduler model and the product's GPU smoke tests (a)–(d) in a lab cluster (issue 13): a control
/// plane and an HGX A100 worker whose GPUs the kubelet stand-in advertises (driver, fabric manager, containerd's
/// nvidia runtime), the real KAI CRDs applied, a KAI Deployment made by hand (the charts are another step's),
/// then each smoke test run by the product's `SmokeRunner` through kubectl on the control plane.
extension RealLabSuites {
    @Suite("KAI model and the GPU smoke tests in a lab cluster", .tags(.lab), .serialized)
    struct LabSmokeTests {
        static let crds = "/work/shared/reference/charts/kai-scheduler-v0.16.8/crds"

        @Test func gpuSmokeTestsRunThroughTheKAIModel() async throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            let crdDir = [
                packageRoot + "/../shared/reference/charts/kai-scheduler-v0.16.8/crds", Self.crds,
            ].first { FileManager.default.fileExists(atPath: $0) }
            let crds = try #require(crdDir, "the real KAI CRDs (../shared/reference/charts) are not on this machine")
            let packages = try labPackages()
            let lab = try StandInLab(id: "q1", subnet: "10.77.162", profile: "hpc-8xa100", nodes: 2, controlPlanes: 1)
            defer { lab.down() }
            let all = ["cp-1", "gpu-1"]
            try lab.install(["appliance-labnode", "kubeadm", "kubelet", "kubectl"], on: all, from: packages)
            try lab.install(
                ["nvidia-driver", "nvidia-fabricmanager", "nvidia-container-toolkit"], on: ["gpu-1"], from: packages)
            try lab.ok("gpu-1", "mkdir -p /etc/containerd")
            try lab.write(
                "gpu-1", "/etc/containerd/config.toml",
                """
                version = 2
                [plugins."io.containerd.grpc.v1.cri".containerd]
                  default_runtime_name = "runc"
                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
                  runtime_type = "io.containerd.runc.v2"
                """)
            try lab.ok(
                "gpu-1", "nvidia-ctk runtime configure --runtime=containerd && systemctl start nvidia-fabricmanager")

            let cp = try lab.address("cp-1")
            try lab.write("cp-1", "/root/kubeadm.yaml", kubeadmConfig(address: cp, node: "cp-1"))
            try lab.ok("cp-1", "kubeadm init --config /root/kubeadm.yaml")
            try lab.ok("gpu-1", try lab.ok("cp-1", "kubeadm token create --print-join-command"))
            let k = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"
            #expect(
                try lab.eventually(60) {
                    try lab.run("cp-1", "\(k) get node gpu-1 -o jsonpath='{.status.allocatable.nvidia\\.com/gpu}'")
                        .stdout == "8"
                }, "gpu-1 never advertised its 8 GPUs")

            // Without the CRDs the API serves no Queue, as a real one.
            #expect(try lab.run("cp-1", "\(k) get --raw /apis/scheduling.run.ai/v2/queues").status != 0)
            for file in ["scheduling.run.ai_queues.yaml", "scheduling.run.ai_podgroups.yaml"] {
                let text = try String(contentsOfFile: crds + "/" + file, encoding: .utf8)
                try lab.write("cp-1", "/root/\(file)", text)
                try lab.ok("cp-1", "\(k) apply -f /root/\(file)")
            }
            try lab.ok("cp-1", "\(k) get --raw /apis/scheduling.run.ai/v2/queues")

            // A pod that names kai-scheduler waits while no KAI scheduler runs: the default scheduler leaves it.
            try lab.write(
                "cp-1", "/root/early.yaml",
                """
                apiVersion: v1
                kind: Pod
                metadata: {name: early, namespace: default, labels: {kai.scheduler/queue: nowhere}}
                spec:
                  schedulerName: kai-scheduler
                  containers: [{name: c, image: registry.k8s.io/pause:3.10.1, resources: {limits: {nvidia.com/gpu: "1"}}}]
                """)
            try lab.ok("cp-1", "\(k) apply -f /root/early.yaml")
            try await Task.sleep(for: .seconds(4))
            #expect(try lab.ok("cp-1", "\(k) get pod early -o jsonpath='{.spec.nodeName}|{.status.conditions}'") == "|")

            // The KAI scheduler "deployed": its Deployment available in kai-scheduler.
            try lab.write(
                "cp-1", "/root/kai.yaml",
                """
                apiVersion: v1
                kind: Namespace
                metadata: {name: kai-scheduler}
                ---
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: kai-scheduler-default, namespace: kai-scheduler}
                spec:
                  replicas: 1
                  selector: {matchLabels: {app: kai-scheduler}}
                  template:
                    metadata: {labels: {app: kai-scheduler}}
                    spec: {containers: [{name: scheduler, image: registry.k8s.io/pause:3.10.1}]}
                """)
            try lab.ok("cp-1", "\(k) apply -f /root/kai.yaml")
            // Now the early pod is refused for its missing queue, with an event like the real one.
            #expect(
                try lab.eventually(30) {
                    try lab.run("cp-1", "\(k) get pod early -o jsonpath='{.status.conditions[0].message}'").stdout
                        == "Queue 'nowhere' does not exist"
                })
            #expect(try lab.ok("cp-1", "\(k) get events -n default").contains("early"))
            #expect(try lab.ok("cp-1", "\(k) get pod early -o jsonpath='{.spec.nodeName}'").isEmpty)
            try lab.ok("cp-1", "\(k) delete pod early")

            // The product's GPU smoke tests, through the product's runner.
            // The example site names TLS files beside it; the smoke tests read none of them.
            let siteDir = FileManager.default.temporaryDirectory.appendingPathComponent("q1-site-\(getpid())")
            defer { try? FileManager.default.removeItem(at: siteDir) }
            try FileManager.default.createDirectory(
                at: siteDir.appendingPathComponent("tls"), withIntermediateDirectories: true)
            for f in ["wildcard.crt", "wildcard.key", "site-ca.crt"] {
                try Data("unused".utf8).write(to: siteDir.appendingPathComponent("tls/\(f)"))
            }
            try? FileManager.default.removeItem(at: siteDir.appendingPathComponent("site.yaml"))
            try FileManager.default.copyItem(
                atPath: packageRoot + "/schemas/examples/site-platform.yaml",
                toPath: siteDir.appendingPathComponent("site.yaml").path)
            let site = try SiteInventory.load(path: siteDir.appendingPathComponent("site.yaml").path)
            let profile = try ProfileCatalog(directory: packageRoot + "/profiles").load("hpc-8xa100")
            let config = try PlatformConfiguration.resolve(site: site, profile: profile)
            let evidence = FileManager.default.temporaryDirectory.appendingPathComponent("q1-smoke-\(getpid())")
            defer { try? FileManager.default.removeItem(at: evidence) }
            let counter = Counter()
            let runner = SmokeRunner(
                kubectl: { args, stdin, _ in
                    var args = args
                    if let stdin, let i = args.firstIndex(of: "-") {
                        let path = "/root/smoke-stdin-\(counter.next()).yaml"
                        try lab.write("cp-1", path, String(decoding: stdin, as: UTF8.self))
                        args[i] = path
                    }
                    let r = try lab.run("cp-1", "\(k) " + args.map(quote).joined(separator: " "))
                    return .init(status: r.status, stdout: r.stdout, stderr: r.stderr)
                }, evidenceDirectory: evidence, pollInterval: .seconds(1))
            let tests = SmokeTests.all(config).filter { $0.release == "kai-scheduler" }
            #expect(tests.map(\.name) == ["gpu", "gpu-fraction", "gang", "gang-limit"])
            for test in tests {
                do {
                    let line = try await runner.run(test)
                    print("smoke \(test.name): \(line)")
                    switch test.name {
                    case "gpu": #expect(line.contains("on gpu-1"))
                    case "gpu-fraction": #expect(line.contains("2 pods on gpu-1 in GPU group"))
                    case "gang": #expect(line.contains("2 pods bound together"))
                    default:
                        #expect(
                            line.contains(
                                "appliance-smoke-limited quota has reached the allowable limit of GPUs. Limit is 1 GPUs"
                            ))
                    }
                } catch {
                    Issue.record("smoke test \(test.name): \(error)")
                }
            }
            // Everything the tests made is gone: Jobs, pods, the binder's reservation pods, the smoke queues.
            #expect(
                try lab.eventually(30) {
                    try lab.run("cp-1", "\(k) get pods -A -o name").stdout.split(separator: "\n").allSatisfy {
                        !$0.contains("smoke") && !$0.contains("reservation")
                    }
                })
            #expect(try lab.ok("cp-1", "\(k) get queues.scheduling.run.ai -o name").isEmpty)

            // (g) The NFS smoke test on the lab host's export: the NFS CSI model provisions a directory per claim
            // on the export and binds a PV; the kubelet runs the Job's script for real with the volume mounted.
            let export = lab.lab.config.nfsExportDirectory + "/export/datasets"
            try FileManager.default.createDirectory(atPath: export, withIntermediateDirectories: true)
            let server = lab.lab.config.adminAddress
            try lab.write(
                "cp-1", "/root/nfs.yaml",
                """
                apiVersion: storage.k8s.io/v1
                kind: StorageClass
                metadata: {name: \(config.storage.datasetStorageClass)}
                provisioner: nfs.csi.k8s.io
                parameters: {server: "\(server)", share: /export/datasets}
                reclaimPolicy: Delete
                ---
                apiVersion: storage.k8s.io/v1
                kind: StorageClass
                metadata: {name: not-exported}
                provisioner: nfs.csi.k8s.io
                parameters: {server: "\(server)", share: /no/such/export}
                ---
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: csi-nfs-controller, namespace: kube-system}
                spec:
                  replicas: 1
                  selector: {matchLabels: {app: csi-nfs-controller}}
                  template:
                    metadata: {labels: {app: csi-nfs-controller}}
                    spec:
                      containers: [{name: nfs, image: registry.k8s.io/sig-storage/nfsplugin:v4.13.4}]
                """)
            try lab.ok("cp-1", "\(k) apply -f /root/nfs.yaml")
            let nfsTest = try #require(SmokeTests.all(config).first { $0.name == "nfs" })
            do {
                let line = try await runner.run(nfsTest)
                print("smoke nfs: \(line)")
            } catch {
                Issue.record("smoke test nfs: \(error)")
            }
            // A probe claim and Job: what the pod writes is on the host's export, in the claim's directory.
            try lab.write(
                "cp-1", "/root/probe.yaml",
                """
                apiVersion: v1
                kind: PersistentVolumeClaim
                metadata: {name: probe, namespace: default}
                spec:
                  accessModes: [ReadWriteMany]
                  storageClassName: \(config.storage.datasetStorageClass)
                  resources: {requests: {storage: 1Gi}}
                ---
                apiVersion: batch/v1
                kind: Job
                metadata: {name: probe, namespace: default}
                spec:
                  backoffLimit: 0
                  template:
                    spec:
                      restartPolicy: Never
                      containers:
                      - name: write
                        image: busybox
                        command: [/bin/sh, -c, 'hostname > /data/probe; echo "$GREETING" >> /data/probe']
                        env: [{name: GREETING, value: hello-nfs}]
                        volumeMounts: [{name: data, mountPath: /data}]
                      volumes: [{name: data, persistentVolumeClaim: {claimName: probe}}]
                ---
                apiVersion: v1
                kind: PersistentVolumeClaim
                metadata: {name: lost, namespace: default}
                spec:
                  accessModes: [ReadWriteMany]
                  storageClassName: not-exported
                  resources: {requests: {storage: 1Gi}}
                """)
            try lab.ok("cp-1", "\(k) apply -f /root/probe.yaml")
            #expect(
                try lab.eventually(60) {
                    try lab.run("cp-1", "\(k) get job probe -o jsonpath='{.status.succeeded}'").stdout == "1"
                }, "the probe Job did not succeed")
            let pv = try lab.ok("cp-1", "\(k) get pvc probe -o jsonpath='{.spec.volumeName}'")
            #expect(pv.hasPrefix("pvc-"), "\(pv)")
            let written = (try? String(contentsOfFile: export + "/\(pv)/probe", encoding: .utf8)) ?? ""
            #expect(written.hasPrefix("probe-") && written.hasSuffix("\nhello-nfs\n"), "\(written)")
            #expect(try lab.ok("cp-1", "\(k) get pv \(pv) -o jsonpath='{.spec.csi.volumeAttributes.server}'") == server)
            #expect(try lab.ok("cp-1", "\(k) get pvc lost -o jsonpath='{.status.phase}'") != "Bound")
            #expect(
                try lab.eventually(20) {
                    try lab.run("cp-1", "\(k) get events -n default -o json").stdout.contains("ProvisioningFailed")
                })
            // Deleting the claim deletes its volume and its directory (reclaim policy Delete).
            try lab.ok("cp-1", "\(k) delete job probe && \(k) delete pvc probe lost")
            #expect(
                try lab.eventually(30) { !FileManager.default.fileExists(atPath: export + "/\(pv)") },
                "\(pv)'s directory was not removed")
            #expect(try lab.run("cp-1", "\(k) get pv \(pv)").status != 0)

            // (e) The database smoke test against the CNPG model: the clusters CRD, an
            // operator Deployment, a Cluster as the lab `cluster` chart renders it, pinned to cp-1; the kubelet of
            // cp-1 runs a real PostgreSQL 15 and the Job's psql on gpu-1 connects through the -rw name.
            // The CRD by name only (the real one, 460 KB, is the lab chart's; the stand-in does not validate
            // against CRD schemas).
            try lab.write(
                "cp-1", "/root/cnpg-crd.yaml",
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: clusters.postgresql.cnpg.io}\n"
            )
            try lab.write(
                "cp-1", "/root/cnpg.yaml",
                """
                apiVersion: v1
                kind: Namespace
                metadata: {name: cnpg-system}
                ---
                apiVersion: v1
                kind: Namespace
                metadata: {name: platform-db}
                ---
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: cloudnative-pg, namespace: cnpg-system, labels: {app.kubernetes.io/name: cloudnative-pg}}
                spec:
                  replicas: 1
                  selector: {matchLabels: {app.kubernetes.io/name: cloudnative-pg}}
                  template:
                    metadata: {labels: {app.kubernetes.io/name: cloudnative-pg}}
                    spec:
                      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
                      containers: [{name: manager, image: ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0}]
                ---
                apiVersion: postgresql.cnpg.io/v1
                kind: Cluster
                metadata: {name: platform-db-cluster, namespace: platform-db}
                spec:
                  instances: 1
                  imageName: ghcr.io/cloudnative-pg/postgresql:16
                  affinity:
                    nodeSelector: {kubernetes.io/hostname: cp-1}
                    tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
                  bootstrap: {initdb: {database: app, owner: app}}
                """)
            try lab.ok("cp-1", "\(k) apply -f /root/cnpg-crd.yaml && \(k) apply -f /root/cnpg.yaml")
            #expect(
                try lab.eventually(120) {
                    try lab.run(
                        "cp-1", "\(k) get cluster platform-db-cluster -n platform-db -o jsonpath='{.status.phase}'"
                    ).stdout == "Cluster in healthy state"
                }, "the Cluster never became healthy")
            #expect(
                try lab.ok("cp-1", "\(k) get pod platform-db-cluster-1 -n platform-db -o jsonpath='{.spec.nodeName}'")
                    == "cp-1")
            let database = try #require(SmokeTests.all(config).first { $0.name == "database" })
            do {
                let line = try await runner.run(database)
                print("smoke database: \(line)")
            } catch {
                Issue.record("smoke test database: \(error)")
            }
            // The instance's log through the API server and cp-1's kubelet.
            let serverLog = try lab.run("cp-1", "\(k) logs -n platform-db platform-db-cluster-1")
            #expect(
                serverLog.status == 0 && serverLog.stdout.contains("database system is ready to accept connections"),
                "\(serverLog.stdout.suffix(2000)) \(serverLog.stderr)")

            // A failing test names the pod and why, and keeps its evidence: the GPU test on a node where GPU 0 fell
            // off the bus (nvidia-smi -L exits 15 in the container).
            try lab.lab.fault(node: "gpu-1", kind: .gpuMissing, argument: "0")
            defer { try? lab.lab.fault(node: "gpu-1", kind: .gpuHealthy) }
            var gpu = try #require(tests.first)
            gpu.timeoutSeconds = 60
            do {
                _ = try await runner.run(gpu)
                Issue.record("the GPU smoke test passed on a node whose driver does not answer")
            } catch let failure as SmokeRunner.Failure {
                let text = failure.description
                #expect(text.hasPrefix("smoke test gpu failed: pod smoke-gpu-"), "\(text)")
                #expect(text.contains("exited 15") && text.contains("GPU is lost"), "\(text)")
                let kept = try #require(failure.evidence)
                #expect(FileManager.default.fileExists(atPath: kept + "/pods.json"))
                #expect(FileManager.default.fileExists(atPath: kept + "/events.txt"))
                // The failed pod's log, read through `kubectl logs` (the API server and gpu-1's kubelet).
                let logs = ((try? FileManager.default.contentsOfDirectory(atPath: kept)) ?? []).filter {
                    $0.hasSuffix(".log")
                }
                let log = logs.first.flatMap { try? String(contentsOfFile: kept + "/" + $0, encoding: .utf8) } ?? ""
                #expect(log.contains("GPU is lost") && !log.contains("[stderr]"), "\(logs): \(log)")
            }
        }
    }
}

/// A counter shared by the kubectl closure (one file per stdin).
final class Counter: @unchecked Sendable {
    // @unchecked: the value is guarded by the lock.
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.withLock {
            value += 1; return value
        }
    }
}
