import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

/// The KAI model, the Job controller and the kubelet's Job pod model together, in a stand-in cluster of real
/// processes on loopback (real etcd, API server stand-in, kubelets): what the GPU smoke tests (a)–(d) rely on.
/// The lab test `LabSmokeTests` (lab q1) runs the product's runner against the same model in nspawn nodes.
@Suite("KAI model in a stand-in cluster", .serialized)
struct KAIClusterTests {
    static let queues = """
        apiVersion: scheduling.run.ai/v2
        kind: Queue
        metadata: {name: smoke}
        spec: {resources: {gpu: {quota: 0, limit: -1, overQuotaWeight: 1}}}
        ---
        apiVersion: scheduling.run.ai/v2
        kind: Queue
        metadata: {name: smoke-gpu}
        spec: {parentQueue: smoke, resources: {gpu: {quota: 0, limit: -1, overQuotaWeight: 1}}}
        ---
        apiVersion: scheduling.run.ai/v2
        kind: Queue
        metadata: {name: smoke-limited}
        spec: {parentQueue: smoke, resources: {gpu: {quota: 0, limit: 1, overQuotaWeight: 1}}}
        """

    static func job(_ name: String, queue: String, pods: Int, minMember: Int?, fraction: Bool) -> String {
        let annotations = minMember.map { "\n  annotations: {kai.scheduler/batch-min-member: \"\($0)\"}" } ?? ""
        let podAnnotations = fraction ? "\n      annotations: {gpu-fraction: \"0.5\"}" : ""
        let resources = fraction ? "{}" : "{limits: {nvidia.com/gpu: \"1\"}}"
        return """
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: \(name)
              namespace: default\(annotations)
            spec:
              parallelism: \(pods)
              completions: \(pods)
              backoffLimit: 0
              template:
                metadata:
                  labels: {kai.scheduler/queue: \(queue)}\(podAnnotations)
                spec:
                  schedulerName: kai-scheduler
                  restartPolicy: Never
                  containers:
                  - name: nvidia-smi
                    image: registry.local/nvcr.io/nvidia/cuda:12.9.1-base-ubuntu24.04
                    command: [nvidia-smi, -L]
                    resources: \(resources)
            """
    }

    @Test(.tags(.realProcess)) func gpuPodsFractionsAndGangsThroughTheModel() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else {
            print("skipping: etcd-server not installed (scripts/bootstrap installs it)")
            return
        }
        let exe = try #require(LabFixture.executable, "appliance-labnode not built")
        let base = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kaicluster-\(UUID().uuidString.prefix(8))"
        ).path
        let net = "127.\(Int.random(in: 100...250)).\(Int.random(in: 1...250))"
        var cpHW = LabFixture.hgxA100()
        cpHW.gpus = nil
        cpHW.roles = [.controlPlane]
        let cp = try TestNode("cp-1", address: "\(net).1", base: base, exe: exe, hardware: cpHW)
        let gpu = try TestNode("gpu-1", address: "\(net).3", base: base, exe: exe, hardware: LabFixture.hgxA100())
        defer {
            TestNode.stop([cp, gpu].flatMap(\.daemonPIDs))
            try? FileManager.default.removeItem(atPath: base)
        }
        let initRun = try cp.run("kubeadm", "init", "--pod-network-cidr=192.168.0.0/16")
        try #require(initRun.code == 0, "\(initRun.err)")
        let joinLine = try #require(
            initRun.out.split(separator: "\n").map(String.init).last { $0.hasPrefix("kubeadm join ") })
        let words = joinLine.split(whereSeparator: \.isWhitespace).map(String.init)
        let token = try #require(words.drop { $0 != "--token" }.dropFirst().first)
        let hashLine = try #require(
            initRun.out.split(separator: "\n").map(String.init).last { $0.contains("--discovery-token-ca-cert-hash") })
        let hash = try #require(
            hashLine.split(whereSeparator: \.isWhitespace).drop { $0 != "--discovery-token-ca-cert-hash" }.dropFirst()
                .first
                .map(String.init))
        let join = try gpu.run(
            "kubeadm", "join", "\(cp.address):6443", "--token", token, "--discovery-token-ca-cert-hash", hash)
        try #require(join.code == 0, "\(join.err)")
        func kubectl(_ args: String...) throws -> String {
            let r = try cp.run(arguments: ["kubectl"] + args)
            #expect(r.code == 0, "kubectl \(args.joined(separator: " ")): \(r.err)")
            return r.out
        }
        func apply(_ name: String, _ yaml: String) throws {
            try cp.write("/root/\(name).yaml", yaml)
            _ = try kubectl("apply", "-f", cp.root + "/root/\(name).yaml")
        }
        func object(_ args: String...) throws -> KObject {
            let r = try cp.run(arguments: ["kubectl"] + args + ["-o", "json"])
            return K.parse(Data(r.out.utf8)) ?? [:]
        }
        func pods(_ job: String) throws -> [KObject] {
            try object("get", "pods", "-l", "job-name=\(job)")["items"] as? [KObject] ?? []
        }
        func complete(_ job: String) throws -> Bool {
            (K.status(try object("get", "job", job))["conditions"] as? [KObject] ?? []).contains {
                $0["type"] as? String == "Complete" && $0["status"] as? String == "True"
            }
        }
        #expect(
            try waitFor(30) {
                try cp.run("kubectl", "get", "node", "gpu-1", "-o", "jsonpath={.status.allocatable.nvidia\\.com/gpu}")
                    .out == "8"
            })

        // KAI's CRDs (names only: the stand-in does not validate against their schemas).
        for plural in ["queues", "podgroups"] {
            try apply(
                "crd-\(plural)",
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: \(plural).scheduling.run.ai}"
            )
        }
        try apply("queues", Self.queues)
        try apply("gpu", Self.job("smoke-gpu", queue: "smoke-gpu", pods: 1, minMember: nil, fraction: false))
        Thread.sleep(forTimeInterval: 3)
        // Not deployed yet: nothing binds it, and the default scheduler leaves it alone.
        let waiting = try pods("smoke-gpu")
        #expect(waiting.count == 1)
        #expect(
            waiting.allSatisfy {
                (K.spec($0)["nodeName"] as? String ?? "").isEmpty && K.status($0)["conditions"] == nil
            })

        try apply(
            "kai",
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
                spec: {containers: [{name: scheduler, image: registry.local/kai-scheduler:v0.16.8}]}
            """)
        try apply("fraction", Self.job("smoke-gpu-fraction", queue: "smoke-gpu", pods: 2, minMember: 2, fraction: true))
        try apply("gang", Self.job("smoke-gang", queue: "smoke-gpu", pods: 2, minMember: 2, fraction: false))
        try apply("limit", Self.job("smoke-gang-limit", queue: "smoke-limited", pods: 2, minMember: 2, fraction: false))
        try apply("lost", Self.job("smoke-lost", queue: "nowhere", pods: 1, minMember: nil, fraction: false))

        #expect(
            try waitFor(40) { try complete("smoke-gpu") && complete("smoke-gpu-fraction") && complete("smoke-gang") })
        // (a) on the GPU node, having listed its GPUs.
        let single = try pods("smoke-gpu")
        #expect(single.map { K.spec($0)["nodeName"] as? String } == ["gpu-1"])
        #expect(
            (K.get(single.first, "status.containerStatuses.0.state.terminated.message") as? String)?.contains(
                "GPU 7: NVIDIA A100-SXM4-80GB") == true)
        // (b) one GPU group on one node; the GPU index in each pod's sharing ConfigMap; the binder's reservation
        // pod is gone once both finished.
        let shared = try pods("smoke-gpu-fraction")
        #expect(shared.count == 2)
        #expect(Set(shared.map { K.labels($0)["runai-gpu-group"] ?? "" }).count == 1)
        #expect(shared.allSatisfy { !(K.labels($0)["runai-gpu-group"] ?? "").isEmpty })
        #expect(Set(shared.map { K.spec($0)["nodeName"] as? String ?? "" }) == ["gpu-1"])
        let indices = try shared.map { p -> String in
            let cm = try object("get", "configmap", K.annotations(p)["runai/shared-gpu-configmap"] ?? "-")
            return (cm["data"] as? [String: String])?["NVIDIA_VISIBLE_DEVICES"] ?? ""
        }
        #expect(Set(indices).count == 1 && !(indices.first ?? "").isEmpty, "\(indices)")
        #expect(
            try waitFor(10) {
                (try object("get", "pods", "-n", "kai-resource-reservation")["items"] as? [KObject] ?? []).isEmpty
            })
        // (c) both gang pods ran.
        #expect(try pods("smoke-gang").map { K.get($0, "status.phase") as? String } == ["Succeeded", "Succeeded"])
        // (d) the gang that its queue's limit cannot hold: no pod bound, both Unschedulable with KAI's reason.
        let held = try pods("smoke-gang-limit")
        #expect(held.count == 2)
        for p in held {
            #expect((K.spec(p)["nodeName"] as? String ?? "").isEmpty)
            #expect(K.get(p, "status.conditions.0.reason") as? String == "Unschedulable")
            let message = K.get(p, "status.conditions.0.message") as? String ?? ""
            #expect(message.hasPrefix("Not enough resources to start the pod group's minimum of 2 pods"), "\(message)")
            #expect(message.contains("smoke-limited quota has reached the allowable limit of GPUs. Limit is 1 GPUs"))
        }
        // A queue that does not exist.
        #expect(
            try kubectl(
                "get", "pods", "-l", "job-name=smoke-lost", "-o", "jsonpath={.items[0].status.conditions[0].message}")
                == "Queue 'nowhere' does not exist")
        #expect(try kubectl("get", "events").contains("smoke-gang-limit"))
        // Deleting the Job deletes its pods.
        _ = try kubectl("delete", "job", "smoke-gang-limit")
        #expect(
            try waitFor(10) {
                try cp.run("kubectl", "get", "pods", "-l", "job-name=smoke-gang-limit", "-o", "name").out.isEmpty
            })
    }
}

extension TestNode {
    /// `run` with an argument array.
    func run(arguments: [String]) throws -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = arguments
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
}
