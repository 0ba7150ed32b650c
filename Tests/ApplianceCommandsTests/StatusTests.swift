import ApplianceModel
import Foundation
import Testing

@testable import ApplianceOperations

/// `appliance status`: the parsers of what the control-plane script prints, the judgement (problems and exit
/// code) and the two renderers, from fixture inputs.
@Suite("appliance status: parsers, evaluation, renderers")
struct StatusTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    /// Compares with `Golden/NAME`; `UPDATE_GOLDEN=1` rewrites it.
    static func check(_ text: String, _ name: String) throws {
        let url = golden.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try Data((text + "\n").utf8).write(to: url)
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(text + "\n" == expected, "\(name) differs; rerun with UPDATE_GOLDEN=1 to see the new output")
    }

    static let t0 = Date(timeIntervalSince1970: 1_795_000_000)

    /// A healthy 1 control plane + 1 system + 2 GPU worker cluster of hpc-8xa100.
    static func healthy() -> StatusReport {
        let gpus = StatusReport.GPUs(declared: 8, model: "NVIDIA A100-SXM4-80GB", allocatable: 8, healthy: true)
        func node(_ name: String, _ ip: String, _ roles: [String], gpu: Bool) -> StatusReport.Node {
            StatusReport.Node(
                name: name, address: ip, roles: roles, reachable: true, member: true, ready: true,
                kubeletVersion: "v1.34.3", kubeletService: "active", scheduling: "schedulable",
                gpus: gpu ? gpus : nil, fabricManager: gpu ? "active" : nil, fabricManagerRequired: gpu)
        }
        return StatusReport(
            cluster: "lab-t1", collectedAt: t0,
            installed: .init(
                bundle: "appliance-lab", version: "2026.11.0", digest: String(repeating: "ab", count: 32),
                kubernetesVersion: "1.34.3", profile: "hpc-8xa100", installedAt: t0.addingTimeInterval(-600)),
            nodes: [
                node("cp-1", "10.77.163.11", ["control-plane"], gpu: false),
                node("sys-1", "10.77.163.12", ["system"], gpu: false),
                node("gpu-1", "10.77.163.13", ["gpu-worker"], gpu: true),
                node("gpu-2", "10.77.163.14", ["gpu-worker"], gpu: true),
            ],
            controlPlane: .init(
                endpoint: "https://10.77.163.11:6443", through: "cp-1", apiReady: true,
                servers: [.init(node: "cp-1", url: "https://10.77.163.11:6443", ready: true)],
                etcd: .init(
                    source: "etcdctl",
                    members: [.init(name: "cp-1", endpoint: "http://10.77.163.11:2379", healthy: true)])),
            registry: .init(
                mode: "in-cluster",
                endpoints: [
                    .init(node: "sys-1", url: "https://10.77.163.12:5000/v2/", answering: true, detail: "HTTP 200")
                ]),
            platform: .init(releases: [
                .init(
                    name: "kai-scheduler", namespace: "kai-scheduler", chart: "kai-scheduler", version: "v0.9.3",
                    appVersion: "v0.9.3", revision: 1, status: "deployed", podsReady: 2, podsTotal: 2)
            ]),
            lastOperation: .init(
                id: "op-install", kind: "install", state: "succeeded", startedAt: t0.addingTimeInterval(-900),
                finishedAt: t0.addingTimeInterval(-600))
        ).evaluated()
    }

    /// The same cluster with gpu-1 drained for a DIMM swap, gpu-2's kubelet stopped (NotReady, 6 GPUs left),
    /// a failed release pod, and sys-1 not answering over SSH.
    static func unhealthy() -> StatusReport {
        var r = healthy()
        r.nodes[2].scheduling = "cordoned"
        r.nodes[2].maintenance = .init(
            reason: "DIMM swap", by: "root@admin", at: "2026-11-30T19:00:00Z", method: "drain", operation: "op-drain",
            gpus: 8)
        r.nodes[3].ready = false
        r.nodes[3].notReadyReason = "NodeStatusUnknown: Kubelet stopped posting node status."
        r.nodes[3].kubeletService = "inactive"
        r.nodes[3].gpus?.allocatable = 6
        r.nodes[3].gpus?.healthy = false
        r.nodes[1].reachable = false
        r.nodes[1].unreachableReason = "cannot connect to 10.77.163.12:22: connection timed out"
        r.nodes[1].kubeletService = nil
        r.platform.releases?[0].podsReady = 1
        r.platform.releases?[0].notReady = ["kai-scheduler-0: CrashLoopBackOff"]
        r.lastOperation = .init(
            id: "op-drain", kind: "node-drain", state: "succeeded", startedAt: t0.addingTimeInterval(-120),
            finishedAt: t0.addingTimeInterval(-60))
        return r.evaluated()
    }

    @Test("a healthy cluster: no problem, exit 0; text and JSON golden")
    func healthyReport() throws {
        let r = Self.healthy()
        #expect(r.healthy)
        #expect(r.exitCode == 0)
        #expect(r.problems.isEmpty)
        try Self.check(StatusRenderer.text(r), "status-healthy.txt")
        try Self.check(try StatusRenderer.json(r), "status-healthy.json")
    }

    @Test(
        "drained, NotReady, a kubelet stopped, GPUs missing, a pod not Ready, a node unreachable: one line each, exit 5"
    )
    func unhealthyReport() throws {
        let r = Self.unhealthy()
        #expect(!r.healthy)
        #expect(r.exitCode == ExitStatus.unreachable.rawValue)
        let lines = r.problems.map { "\($0.subject): \($0.message)" }
        #expect(
            lines.contains(
                "gpu-1: drained for maintenance: DIMM swap (by root@admin at 2026-11-30T19:00:00Z); `appliance node rejoin gpu-1` brings it back"
            ), "\(lines)")
        #expect(lines.contains("gpu-2: kubelet is inactive"), "\(lines)")
        #expect(lines.contains("gpu-2: 6 of 8 GPUs allocatable (nvidia.com/gpu)"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("gpu-2: NotReady: NodeStatusUnknown") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("sys-1: not reachable over SSH") }, "\(lines)")
        #expect(
            lines.contains("release kai-scheduler/kai-scheduler: 1 of 2 pods Ready: kai-scheduler-0: CrashLoopBackOff"))
        try Self.check(StatusRenderer.text(r), "status-unhealthy.txt")
        try Self.check(try StatusRenderer.json(r), "status-unhealthy.json")
        // The JSON is the documented schema and round-trips.
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let back = try decoder.decode(StatusReport.self, from: Data(try StatusRenderer.json(r).utf8))
        #expect(back == r)
        #expect(back.schema == "appliance.dev/status/v1")
    }

    @Test("only a drain: exit 11 (unhealthy, everything answered)")
    func drainedOnly() {
        var r = Self.healthy()
        r.nodes[2].scheduling = "cordoned"
        r.nodes[2].maintenance = .init(reason: "DIMM swap")
        r = r.evaluated()
        #expect(r.exitCode == ExitStatus.unhealthy.rawValue)
        #expect(
            r.problems.map(\.message) == [
                "drained for maintenance: DIMM swap; `appliance node rejoin gpu-1` brings it back"
            ])
    }

    @Test("the API unreachable: one line, exit 5, nothing claimed about etcd or the install record")
    func apiDown() {
        var r = Self.healthy()
        r.controlPlane = .init(
            endpoint: "https://10.77.163.11:6443",
            apiError: "the API did not answer through any control plane (cp-1: cannot connect)")
        r.installed = nil
        r.platform = .init()
        for i in r.nodes.indices {
            r.nodes[i].member = nil
            r.nodes[i].ready = nil
            r.nodes[i].scheduling = nil
        }
        r = r.evaluated()
        #expect(r.exitCode == ExitStatus.unreachable.rawValue)
        #expect(r.problems.map(\.subject) == ["api"], "\(r.problems)")
        #expect(StatusRenderer.text(r).contains("api https://10.77.163.11:6443: NOT REACHABLE"))
    }

    @Test("etcd: a member down keeps quorum with 3, loses it with 2 of 3 down; the GPU gate's cordon is named")
    func etcdAndGate() {
        var r = Self.healthy()
        r.controlPlane.etcd.members = [
            .init(name: "cp-1", endpoint: "http://a:2379", healthy: true),
            .init(name: "cp-2", endpoint: "http://b:2379", healthy: false, error: "context deadline exceeded"),
            .init(name: "cp-3", endpoint: "http://c:2379", healthy: true),
        ]
        r.nodes[3].scheduling = "cordoned"
        r.nodes[3].cordonReason = "gpu-validate: GPU 3 (00000000:47:00.0) fell off the bus"
        var e = r.evaluated()
        #expect(e.controlPlane.etcd.hasQuorum)
        #expect(e.problems.map(\.message).contains("member cp-2 http://b:2379 is unhealthy: context deadline exceeded"))
        #expect(
            e.problems.map(\.message).contains(
                "cordoned by the GPU gate: gpu-validate: GPU 3 (00000000:47:00.0) fell off the bus"))
        r.controlPlane.etcd.members[2].healthy = false
        e = r.evaluated()
        #expect(!e.controlPlane.etcd.hasQuorum)
        #expect(e.problems.map(\.message).contains("no quorum: 1 of 3 voting members healthy, quorum 2"))
        #expect(StatusRenderer.text(e).contains("NO QUORUM"))
    }

    @Test("no Helm releases is said so, and is healthy")
    func noReleases() {
        var r = Self.healthy()
        r.platform = .init(releases: [])
        r = r.evaluated()
        #expect(r.healthy)
        #expect(StatusRenderer.text(r).contains("no platform releases installed"))
    }

    @Test("a failed last operation is a problem naming its failed steps")
    func failedOperation() {
        var r = Self.healthy()
        r.lastOperation = .init(
            id: "op-9", kind: "install", state: "failed", startedAt: Self.t0, finishedAt: Self.t0,
            failedSteps: ["gpu-validate/gpu-2: 7 of 8 GPUs"])
        r = r.evaluated()
        #expect(r.exitCode == ExitStatus.unhealthy.rawValue)
        #expect(r.problems.first?.message.contains("install op-9, failed (gpu-validate/gpu-2: 7 of 8 GPUs)") == true)
    }

    // MARK: parsers

    @Test("sections of the control-plane script, with their exit status and stderr")
    func sections() {
        let m = StatusParsers.marker
        let text = """
            \(m) nodes 0
            {"items": []}

            \(m) nodes stderr

            \(m) helm 127

            \(m) helm stderr
            helm: not installed

            """
        let s = StatusParsers.sections(text)
        #expect(s["nodes"]?.status == 0)
        #expect(s["nodes"]?.stdout.contains("\"items\"") == true)
        #expect(s["helm"]?.status == 127)
        #expect(s["helm"]?.reason == "helm: not installed")
    }

    @Test("/readyz?verbose: the failed checks by name")
    func readyz() {
        let text = """
            [+]ping ok
            [+]log ok
            [-]etcd failed: reason withheld
            [+]poststarthook/start-apiserver-admission-initializer ok
            [-]etcd-readiness failed: reason withheld
            readyz check failed
            """
        #expect(StatusParsers.failedReadyzChecks(text) == ["etcd", "etcd-readiness"])
        #expect(StatusParsers.failedReadyzChecks("ok").isEmpty)
    }

    @Test("etcdctl member list and endpoint health (-w json): health by client URL; an unstarted member")
    func etcd() throws {
        let members = """
            {"header":{"cluster_id":17237436991929493444,"member_id":9372538179322589801,"raft_term":2},
             "members":[{"ID":9372538179322589801,"name":"cp-1","peerURLs":["http://10.77.163.11:2380"],"clientURLs":["http://10.77.163.11:2379"]},
                        {"ID":10501334649042878790,"name":"cp-2","peerURLs":["http://10.77.163.12:2380"],"clientURLs":["http://10.77.163.12:2379"]},
                        {"ID":18249187646912138824,"peerURLs":["http://10.77.163.13:2380"],"isLearner":true}]}
            """
        let health = """
            [{"endpoint":"http://10.77.163.11:2379","health":true,"took":"1.9ms"},
             {"endpoint":"http://10.77.163.12:2379","health":false,"took":"5.0s","error":"context deadline exceeded"}]
            """
        let list = try StatusParsers.etcdMembers(memberList: members, health: health)
        #expect(list.map(\.name) == ["", "cp-1", "cp-2"])
        #expect(list[1].healthy && list[1].endpoint == "http://10.77.163.11:2379")
        #expect(!list[2].healthy && list[2].error == "context deadline exceeded")
        #expect(list[0].learner && list[0].error == "not started (no client URL)")
        #expect(throws: StatusParseError.self) { try StatusParsers.etcdMembers(memberList: "Error: x", health: "") }
    }

    @Test("helm list -A -o json, chart names split from versions, pods by release label")
    func helm() throws {
        let list = """
            [{"name":"monitoring","namespace":"monitoring","revision":"2","updated":"2026-11-30 19:00:00 +0000 UTC","status":"deployed","chart":"kube-prometheus-stack-77.0.1","app_version":"v0.85.0"},
             {"name":"gpu-operator","namespace":"gpu-operator","revision":"1","status":"failed","chart":"gpu-operator-v25.3.0","app_version":"v25.3.0"}]
            """
        let pods = """
            {"items":[
              {"metadata":{"name":"prom-0","namespace":"monitoring","labels":{"app.kubernetes.io/instance":"monitoring"}},
               "status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}},
              {"metadata":{"name":"graf-1","namespace":"monitoring","labels":{"release":"monitoring"}},
               "status":{"phase":"Running","conditions":[{"type":"Ready","status":"False"}],
                         "containerStatuses":[{"name":"g","state":{"waiting":{"reason":"ImagePullBackOff"}}}]}},
              {"metadata":{"name":"job-x","namespace":"monitoring","labels":{"release":"monitoring"}},"status":{"phase":"Succeeded"}},
              {"metadata":{"name":"other","namespace":"default","labels":{"app.kubernetes.io/instance":"monitoring"}},
               "status":{"phase":"Pending"}}
            ]}
            """
        var releases = try StatusParsers.helmReleases(list)
        releases = try StatusParsers.attachPods(releases, podList: pods)
        #expect(releases.map(\.name) == ["gpu-operator", "monitoring"])
        #expect(
            releases[0].chart == "gpu-operator" && releases[0].version == "v25.3.0" && releases[0].status == "failed")
        #expect(releases[1].chart == "kube-prometheus-stack" && releases[1].version == "77.0.1")
        #expect(releases[1].revision == 2)
        #expect(releases[1].podsReady == 1 && releases[1].podsTotal == 2)
        #expect(releases[1].notReady == ["graf-1: container g: ImagePullBackOff"])
        #expect(try StatusParsers.helmReleases("[]").isEmpty)
        #expect(throws: StatusParseError.self) { try StatusParsers.helmReleases("NAME NAMESPACE REVISION") }
    }

    @Test("the control-plane script reads everything under timeout, in parallel, never a literal --etcd-servers=")
    func script() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("status-site-\(getpid()).yaml").path
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: t}
        spec:
          ssh: {user: root}
          hosts:
            - {name: cp-1, address: 10.0.0.1, roles: [control-plane]}
            - {name: sys-1, address: 10.0.0.2, roles: [system]}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let site = try SiteInventory.load(path: path)
        let s = ClusterStatus.script(site: site, node: "cp-1", timeout: 20)
        for name in [
            "install", "nodes", "readyz", "pods", "helm", "server-0", "etcd-members", "etcd-health", "registry-0",
        ] {
            #expect(s.contains("read1 \(name) "), "\(name) missing")
        }
        #expect(s.contains("https://10.0.0.2:5000/v2/"))
        #expect(s.contains("timeout 20 sh -c"))
        #expect(!s.contains("--etcd-servers="))
    }
}
