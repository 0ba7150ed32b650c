import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

/// One lab node for the real-process tests: a state root, a loopback address, the env for the stand-ins.
struct TestNode {
    let name: String
    let address: String
    let root: String
    let exe: String

    var env: [String: String] {
        [
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": root, "APPLIANCE_LABNODE_ROOT": root,
            "APPLIANCE_LABNODE_SUPERVISOR": "spawn", "APPLIANCE_LAB_HOSTNAME": name,
            "APPLIANCE_LAB_NODE_ADDRESS": address,
            "APPLIANCE_LAB_NODE_GRACE": "3", "APPLIANCE_LAB_DRAIN_RETRY": "1", "APPLIANCE_LAB_KUBELET_HEARTBEAT": "1",
            "KUBECONFIG": "/etc/kubernetes/admin.conf",
        ]
    }

    init(_ name: String, address: String, base: String, exe: String, hardware: HardwareDeclaration) throws {
        self.name = name
        self.address = address
        self.exe = exe
        root = base + "/" + name
        var hw = hardware
        hw.node = name
        let ctx = LabNodeContext(environment: ["APPLIANCE_LABNODE_ROOT": root])
        try ctx.write(HardwareDeclaration.pathOnNode, String(decoding: try hw.jsonData(), as: UTF8.self))
        if hw.gpus != nil {
            try ctx.write(LabPaths.driverInstalled, "")
            try LabFixture.installNvidiaRuntime(ctx)
        }
    }

    func write(_ path: String, _ text: String) throws {
        try LabNodeContext(environment: ["APPLIANCE_LABNODE_ROOT": root]).write(path, text)
    }

    @discardableResult
    func run(_ args: String...) throws -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = env
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let od = o.fileHandleForReading.readDataToEndOfFile()
        let ed = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
    }

    /// Stops every daemon this node's stand-ins spawned (by their pid files).
    /// The pids of this node's daemons (from their pid files).
    var daemonPIDs: [pid_t] {
        let dir = root + "/run/appliance-lab"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".pid") }
            .compactMap {
                FileManager.default.contents(atPath: dir + "/" + $0).flatMap {
                    Int32(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }.filter { $0 > 0 }
    }

    /// Stops the given daemons: SIGTERM, up to 10 s to exit (etcd may try to hand over leadership), then SIGKILL.
    static func stop(_ pids: [pid_t]) {
        for p in pids { kill(p, SIGTERM) }
        _ = waitFor(10) { pids.allSatisfy { kill($0, 0) != 0 } }
        for p in pids where kill(p, 0) == 0 { kill(p, SIGKILL) }
    }

    func killDaemon(_ name: String) {
        if let t = FileManager.default.contents(atPath: root + "/run/appliance-lab/\(name).pid"),
            let pid = Int32(String(decoding: t, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        {
            kill(pid, SIGTERM)
        }
    }
}

func waitFor(_ seconds: Double, _ check: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try check() { return true }
        Thread.sleep(forTimeInterval: 0.3)
    }
    return false
}

@Suite("cluster stand-ins against a real etcd", .serialized)
struct ClusterTests {
    @Test(.tags(.realProcess)) func initJoinDrainWithPDBAndNodeFailure() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/etcdctl")
        else {
            print("skipping: etcd-server/etcd-client not installed (scripts/bootstrap installs them)")
            return
        }
        let exe = try #require(LabFixture.executable, "appliance-labnode not built")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent(
            "labcluster-\(UUID().uuidString.prefix(8))"
        ).path
        let net = "127.\(Int.random(in: 100...250)).\(Int.random(in: 1...250))"
        var cpHW = LabFixture.hgxA100()
        cpHW.gpus = nil
        cpHW.roles = [.controlPlane]
        let cp1 = try TestNode("cp-1", address: "\(net).1", base: base, exe: exe, hardware: cpHW)
        let cp2 = try TestNode("cp-2", address: "\(net).2", base: base, exe: exe, hardware: cpHW)
        let gpu = try TestNode("gpu-1", address: "\(net).3", base: base, exe: exe, hardware: LabFixture.hgxA100())
        let late = try TestNode("gpu-2", address: "\(net).4", base: base, exe: exe, hardware: LabFixture.hgxA100())
        let nodes = [cp1, cp2, gpu, late]
        defer {
            TestNode.stop(nodes.flatMap(\.daemonPIDs))
            try? FileManager.default.removeItem(atPath: base)
        }

        // init
        let initRun = try cp1.run("kubeadm", "init", "--pod-network-cidr=192.168.0.0/16", "--upload-certs")
        #expect(initRun.code == 0, "\(initRun.err)")
        #expect(initRun.out.contains("Your Kubernetes control-plane has initialized successfully!"))
        #expect(initRun.out.contains("[certs] Generating \"etcd/ca\" certificate and key"))
        let lines = initRun.out.split(separator: "\n").map(String.init)
        let joinLine = try #require(lines.last { $0.hasPrefix("kubeadm join ") })
        let token = try #require(
            joinLine.split(separator: " ").drop { $0 != "--token" }.dropFirst().first.map(String.init))
        let hashLine = try #require(lines.last { $0.contains("--discovery-token-ca-cert-hash") })
        let hash = try #require(
            hashLine.split(whereSeparator: \.isWhitespace).drop { $0 != "--discovery-token-ca-cert-hash" }.dropFirst()
                .first.map(String.init))
        let keyLine = try #require(lines.first { $0.contains("--certificate-key") })
        let certKey = try #require(keyLine.split(separator: " ").last.map(String.init))
        let admin = try #require(FileManager.default.contents(atPath: cp1.root + "/etc/kubernetes/admin.conf"))
        #expect(String(decoding: admin, as: UTF8.self).contains("certificate-authority-data: "))
        let verify = try cp1.run("nvidia-smi", "-L")  // control plane declares no GPUs: driver absent
        #expect(verify.code == 9)

        // Re-running init is refused by preflight.
        let again = try cp1.run("kubeadm", "init")
        #expect(again.code == 1)
        #expect(again.err.contains("[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]"))

        // worker join
        let endpoint = "\(cp1.address):6443"
        let join = try gpu.run("kubeadm", "join", endpoint, "--token", token, "--discovery-token-ca-cert-hash", hash)
        #expect(join.code == 0, "\(join.err)")
        #expect(join.out.contains("This node has joined the cluster:"))
        let nodesJSON = try cp1.run("kubectl", "get", "nodes", "-o", "json")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(nodesJSON.out.utf8)) as? [String: Any])
        let items = try #require(list["items"] as? [[String: Any]])
        #expect(items.count == 2)
        let gpuNode = try #require(items.first { K.name($0) == "gpu-1" })
        #expect(K.get(gpuNode, "status.capacity.nvidia.com/gpu") == nil)  // dotted key: read directly
        #expect((K.status(gpuNode)["capacity"] as? [String: Any])?["nvidia.com/gpu"] as? String == "8")
        #expect(K.get(gpuNode, "status.nodeInfo.kubeletVersion") as? String == "v1.34.3")
        #expect(K.isReady(node: gpuNode))

        // A wrong CA pin and an expired token are refused with kubeadm's words.
        let pin = try late.run(
            "kubeadm", "join", endpoint, "--token", token, "--discovery-token-ca-cert-hash",
            "sha256:" + String(repeating: "0", count: 64))
        #expect(pin.code == 1)
        #expect(pin.err.contains("cluster CA found in cluster-info ConfigMap is invalid: none of the public keys"))
        let short = try cp1.run("kubeadm", "token", "create", "--ttl", "1s", "--print-join-command")
        #expect(short.code == 0, "\(short.err)")
        let shortToken = try #require(
            short.out.split(separator: " ").drop { $0 != "--token" }.dropFirst().first.map(String.init))
        Thread.sleep(forTimeInterval: 1.5)
        let expired = try late.run(
            "kubeadm", "join", endpoint, "--token", shortToken, "--discovery-token-ca-cert-hash", hash)
        #expect(expired.code == 1)
        #expect(
            expired.err.contains(
                "couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID \"\(shortToken.prefix(6))\""
            ))

        // The certificates uploaded again under a new key, as the real phase prints it; the old key is void.
        let phase = try cp1.run("kubeadm", "init", "phase", "upload-certs", "--upload-certs")
        #expect(phase.code == 0, "\(phase.err)")
        let phaseLines = phase.out.split(separator: "\n").map(String.init)
        let keyIndex = try #require(phaseLines.firstIndex(of: "[upload-certs] Using certificate key:"))
        let newKey = try #require(phaseLines.dropFirst(keyIndex + 1).first)
        #expect(newKey.count == 64 && newKey != certKey)
        #expect(try cp1.run("kubeadm", "init", "phase", "preflight").code == 1)

        // control-plane join adds a real etcd member
        let cpJoin = try cp2.run(
            "kubeadm", "join", endpoint, "--token", token, "--discovery-token-ca-cert-hash", hash, "--control-plane",
            "--certificate-key", newKey)
        #expect(cpJoin.code == 0, "\(cpJoin.err)")
        #expect(cpJoin.out.contains("A new etcd member was added to the local/stacked etcd cluster."))
        let members = try EtcdClient(endpoints: ["http://\(cp1.address):2379"]).memberList()
        #expect(members.count == 2)
        #expect(try cp2.run("kubectl", "get", "nodes").out.contains("cp-2"))

        // A deployment pinned to the GPU node, protected by a PDB.
        let app = """
            apiVersion: v1
            kind: Namespace
            metadata:
              name: ml
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: trainer
              namespace: ml
            spec:
              replicas: 2
              selector:
                matchLabels: {app: trainer}
              template:
                metadata:
                  labels: {app: trainer}
                spec:
                  nodeSelector: {kubernetes.io/hostname: gpu-1}
                  containers:
                  - name: t
                    image: registry.local/trainer:1
                    resources:
                      limits: {nvidia.com/gpu: 4}
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata:
              name: trainer-pdb
              namespace: ml
            spec:
              minAvailable: 2
              selector:
                matchLabels: {app: trainer}
            """
        try Data(app.utf8).write(to: URL(fileURLWithPath: base + "/app.yaml"))
        let applied = try cp1.run("kubectl", "apply", "-f", base + "/app.yaml")
        #expect(
            applied.out
                == "namespace/ml created\ndeployment.apps/trainer created\npoddisruptionbudget.policy/trainer-pdb created\n"
        )
        let rolled = try cp1.run("kubectl", "rollout", "status", "deployment/trainer", "-n", "ml", "--timeout=30s")
        #expect(rolled.out.hasSuffix("deployment \"trainer\" successfully rolled out\n"), "\(rolled)")

        // A third pod asking for GPUs does not fit (8 GPUs, 2 x 4 taken).
        let blocked = try cp1.run("kubectl", "drain", "gpu-1", "--ignore-daemonsets", "--timeout=3s")
        #expect(blocked.code == 1)
        #expect(blocked.out.hasPrefix("node/gpu-1 cordoned\n"))
        #expect(
            blocked.err.contains(
                "(will retry after 1s): Cannot evict pod as it would violate the pod's disruption budget."))
        #expect(blocked.err.contains("global timeout reached: 3s"))
        #expect(try cp1.run("kubectl", "get", "nodes", "gpu-1").out.contains("Ready,SchedulingDisabled"))
        let noDS = try cp1.run("kubectl", "drain", "gpu-1", "--timeout=3s")
        #expect(
            noDS.err.contains(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/kube-proxy-"))

        #expect(try cp1.run("kubectl", "delete", "pdb", "trainer-pdb", "-n", "ml").code == 0)
        let drained = try cp1.run("kubectl", "drain", "gpu-1", "--ignore-daemonsets", "--timeout=10s")
        #expect(drained.code == 0, "\(drained.err)")
        #expect(drained.out.hasSuffix("node/gpu-1 drained\n"))
        let podsAfter = try cp1.run("kubectl", "get", "pods", "-n", "ml", "-o", "jsonpath={.items[*].spec.nodeName}")
        #expect(!podsAfter.out.contains("gpu-1"))

        // helm: a chart archive with a DaemonSet, installed, upgraded, rolled back, uninstalled.
        let chartDir = base + "/chart/gpu-agent"
        try FileManager.default.createDirectory(atPath: chartDir + "/templates", withIntermediateDirectories: true)
        try Data("apiVersion: v2\nname: gpu-agent\nversion: 0.1.0\nappVersion: \"1.0\"\n".utf8).write(
            to: URL(fileURLWithPath: chartDir + "/Chart.yaml"))
        try Data("image:\n  tag: v1\n".utf8).write(to: URL(fileURLWithPath: chartDir + "/values.yaml"))
        try Data(
            """
            apiVersion: apps/v1
            kind: DaemonSet
            metadata:
              name: {{ .Release.Name }}-agent
            spec:
              selector:
                matchLabels: {app: agent}
              template:
                metadata:
                  labels: {app: agent}
                spec:
                  tolerations: [{operator: Exists}]
                  containers:
                  - name: agent
                    image: registry.local/agent:{{ .Values.image.tag }}
            """.utf8
        ).write(to: URL(fileURLWithPath: chartDir + "/templates/ds.yaml"))
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/bin/tar")
        tar.arguments = ["-czf", base + "/gpu-agent-0.1.0.tgz", "-C", base + "/chart", "gpu-agent"]
        try tar.run()
        tar.waitUntilExit()
        let installed = try cp1.run(
            "helm", "upgrade", "--install", "agent", base + "/gpu-agent-0.1.0.tgz", "-n", "gpu-operator",
            "--create-namespace", "--wait", "--timeout", "30s")
        #expect(installed.code == 0, "\(installed.err)")
        #expect(installed.out.hasPrefix("Release \"agent\" does not exist. Installing it now.\nNAME: agent\n"))
        #expect(installed.out.contains("STATUS: deployed\nREVISION: 1\n"))
        let agentPods = try cp1.run(
            "kubectl", "get", "pods", "-n", "gpu-operator", "-o", "jsonpath={.items[*].spec.containers[0].image}")
        #expect(agentPods.out.contains("registry.local/agent:v1"))
        let upgraded = try cp1.run(
            "helm", "upgrade", "--install", "agent", base + "/gpu-agent-0.1.0.tgz", "-n", "gpu-operator", "--set",
            "image.tag=v2")
        #expect(upgraded.out.hasPrefix("Release \"agent\" has been upgraded. Happy Helming!\n"))
        #expect(
            try cp1.run(
                "kubectl", "get", "ds", "agent-agent", "-n", "gpu-operator", "-o",
                "jsonpath={.spec.template.spec.containers[0].image}"
            ).out == "registry.local/agent:v2")
        #expect(try cp1.run("helm", "history", "agent", "-n", "gpu-operator").out.split(separator: "\n").count == 3)
        #expect(
            try cp1.run("helm", "rollback", "agent", "1", "-n", "gpu-operator").out
                == "Rollback was a success! Happy Helming!\n")
        #expect(
            try cp1.run(
                "kubectl", "get", "ds", "agent-agent", "-n", "gpu-operator", "-o",
                "jsonpath={.spec.template.spec.containers[0].image}"
            ).out == "registry.local/agent:v1")
        #expect(try cp1.run("helm", "list", "-A").out.contains("agent"))
        #expect(
            try cp1.run("helm", "uninstall", "agent", "-n", "gpu-operator").out == "release \"agent\" uninstalled\n")
        let gone = try waitFor(10) {
            try cp1.run("kubectl", "get", "pods", "-n", "gpu-operator", "-o", "name").out.isEmpty
        }
        #expect(gone)
        #expect(try cp1.run("helm", "status", "agent", "-n", "gpu-operator").err == "Error: release: not found\n")

        // The kubelet stops: the node goes NotReady after the grace period.
        gpu.killDaemon("kubelet")
        let notReady = try waitFor(20) {
            try cp1.run("kubectl", "get", "nodes", "gpu-1", "--no-headers").out.contains("NotReady")
        }
        #expect(notReady)

        // upgrade: kubeadm's version policy, then a real apply that restarts the apiserver at the new version.
        try cp1.write("/var/lib/appliance-lab/versions/kubeadm", "v1.36.0\n")
        let tooFar = try cp1.run("kubeadm", "upgrade", "apply", "v1.36.0")
        #expect(tooFar.code == 1)
        #expect(
            tooFar.err.contains(
                "Specified version to upgrade to \"v1.36.0\" is too high; kubeadm can upgrade only 1 minor version at a time"
            ))
        let aboveKubeadm = try cp1.run("kubeadm", "upgrade", "apply", "v1.37.0")
        #expect(aboveKubeadm.err.contains("is higher than the kubeadm version \"v1.36.0\""))
        try cp1.write("/var/lib/appliance-lab/versions/kubeadm", "v1.35.1\n")
        let plan = try cp1.run("kubeadm", "upgrade", "plan")
        #expect(plan.out.contains("kubeadm upgrade apply v1.35.1"), "\(plan)")
        let applied2 = try cp1.run("kubeadm", "upgrade", "apply", "v1.35.1")
        #expect(applied2.code == 0, "\(applied2.err)")
        #expect(applied2.out.contains("[upgrade/successful] SUCCESS! Your cluster was upgraded to \"v1.35.1\". Enjoy!"))
        #expect(try cp1.run("kubectl", "version").out.contains("Server Version: v1.35.1"))
        // As kubeadm: the control plane's static pod manifests now run the new version, the old ones backed up.
        let apiserver = try String(
            contentsOfFile: cp1.root + "/etc/kubernetes/manifests/kube-apiserver.yaml", encoding: .utf8)
        #expect(apiserver.contains("image: registry.k8s.io/kube-apiserver:v1.35.1\n"), "\(apiserver)")
        let backups = try FileManager.default.contentsOfDirectory(atPath: cp1.root + "/etc/kubernetes/tmp")
        #expect(backups.contains { $0.hasPrefix("kubeadm-backup-manifests-") }, "\(backups)")
        // `upgrade node` refuses a kubeadm older than the cluster.
        try cp1.write("/var/lib/appliance-lab/versions/kubeadm", "v1.34.3\n")
        let older = try cp1.run("kubeadm", "upgrade", "node")
        #expect(older.code == 1 && older.err.contains("lower than the cluster version v1.35.1"), "\(older)")

        // reset on the worker stops its kubelet and removes its files
        let reset = try gpu.run("kubeadm", "reset", "-f")
        #expect(reset.code == 0)
        #expect(!FileManager.default.fileExists(atPath: gpu.root + "/etc/kubernetes/kubelet.conf"))
    }

    @Test func configValidateCLI() throws {
        let lab = try LabFixture()
        try lab.context.write(
            "/tmp/bad.yaml", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworkin: {}\n")
        let r = Kubeadm(context: lab.context).run(["config", "validate", "--config", "/tmp/bad.yaml"])
        #expect(r.exitCode == 1)
        #expect(
            r.stderr.hasPrefix(
                "error unmarshaling configuration schema.GroupVersionKind{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"ClusterConfiguration\"}: strict decoding error: unknown field \"networkin\""
            ))
        #expect(r.stderr.hasSuffix("To see the stack trace of this error execute with --v=5 or higher\n"))
        let mixed = Kubeadm(context: lab.context).run([
            "init", "--config", "/tmp/bad.yaml", "--pod-network-cidr", "10.0.0.0/16",
        ])
        #expect(mixed.stderr.hasPrefix("can not mix '--config' with arguments [pod-network-cidr]"))
    }

    @Test func kubectlWithoutKubeconfigIsRefusedLikeReal() throws {
        let lab = try LabFixture()
        var env = lab.context.environment
        env["HOME"] = lab.root
        let r = Kubectl(context: LabNodeContext(environment: env)).run(["get", "nodes"])
        #expect(r.exitCode == 1)
        #expect(
            r.stderr
                == "The connection to the server localhost:8080 was refused - did you specify the right host or port?\n"
        )
    }

    /// The unit a booted node's systemd runs: a program under its own name is started by path, a stand-in daemon
    /// with systemd's `@PATH ARGV0` form (found by running the lab tests in nspawn nodes: etcd got its own path
    /// as its first argument and refused to start).
    @Test func unitFilesRunTheRightArgv() throws {
        let lab = try LabFixture()
        var env = lab.context.environment
        env["APPLIANCE_LABNODE_SUPERVISOR"] = "spawn"
        env["APPLIANCE_LAB_NODE_GRACE"] = "6"
        let sup = Supervisor(context: LabNodeContext(environment: env))
        defer {
            sup.stop("lab-a")
            sup.stop("lab-b")
        }
        try sup.start("lab-a", description: "a", executable: "/bin/sleep", argv: ["/bin/sleep", "30"])
        try sup.start("lab-b", description: "b", executable: "/bin/sleep", argv: ["kubelet", "30"])
        func execStart(_ name: String) -> String? {
            lab.context.read(sup.unitPath(name))?.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }.map(
                String.init)
        }
        #expect(execStart("lab-a") == "ExecStart=/bin/sleep 30")
        #expect(execStart("lab-b") == "ExecStart=@/bin/sleep kubelet 30")
        #expect(lab.context.read(sup.unitPath("lab-b"))?.contains("Environment=APPLIANCE_LAB_NODE_GRACE=6\n") == true)
        #expect(sup.isRunning("lab-a") && sup.isRunning("lab-b"))
    }
}
