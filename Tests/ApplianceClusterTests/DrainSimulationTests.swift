import Foundation
import Testing

@testable import ApplianceCluster

@Suite("drain simulation decisions (issue 14)")
struct DrainSimulationTests {
    static let podList = """
        {"kind":"PodList","apiVersion":"v1","items":[
          {"metadata":{"name":"web-1","namespace":"shop","labels":{"app":"web"},
            "ownerReferences":[{"kind":"ReplicaSet","name":"web-7d9","controller":true}]},
           "spec":{"nodeName":"w-1","containers":[{"name":"c"}]},"status":{"phase":"Running"}},
          {"metadata":{"name":"debug","namespace":"default"},
           "spec":{"nodeName":"w-1","containers":[{"name":"c"}]},"status":{"phase":"Running"}},
          {"metadata":{"name":"fluent-x","namespace":"kube-system",
            "ownerReferences":[{"kind":"DaemonSet","name":"fluent","controller":true}]},
           "spec":{"nodeName":"w-1"},"status":{"phase":"Running"}},
          {"metadata":{"name":"etcd-w-1","namespace":"kube-system","annotations":{"kubernetes.io/config.mirror":"abc"}},
           "spec":{"nodeName":"w-1"},"status":{"phase":"Running"}},
          {"metadata":{"name":"train-0","namespace":"research","labels":{"kai.scheduler/queue":"team-a"},
            "ownerReferences":[{"kind":"Job","name":"train","controller":true}]},
           "spec":{"nodeName":"w-1","schedulerName":"kai-scheduler",
             "containers":[{"name":"t","resources":{"limits":{"nvidia.com/gpu":"2"}}}]},
           "status":{"phase":"Running"}},
          {"metadata":{"name":"cache-0","namespace":"shop",
            "ownerReferences":[{"kind":"StatefulSet","name":"cache","controller":true}]},
           "spec":{"nodeName":"w-1","volumes":[{"name":"scratch","emptyDir":{}}]},"status":{"phase":"Running"}},
          {"metadata":{"name":"done-1","namespace":"default"},
           "spec":{"nodeName":"w-1"},"status":{"phase":"Succeeded"}}
        ]}
        """

    static let budgets = """
        {"kind":"PodDisruptionBudgetList","items":[
          {"metadata":{"name":"web-pdb","namespace":"shop"},"spec":{"minAvailable":2,"selector":{"matchLabels":{"app":"web"}}},
           "status":{"disruptionsAllowed":0,"desiredHealthy":2,"currentHealthy":2,"expectedPods":2}},
          {"metadata":{"name":"other","namespace":"default"},"spec":{"selector":{"matchLabels":{"app":"web"}}},
           "status":{"disruptionsAllowed":1,"desiredHealthy":1,"currentHealthy":2}}
        ]}
        """

    func simulation(probes: [String: EvictionProbe]) throws -> DrainSimulation {
        let pods = try DrainPod.parseList(Data(Self.podList.utf8))
        let budgets = try DisruptionBudget.parseList(Data(Self.budgets.utf8))
        return DrainSimulation.decide(node: "w-1", pods: pods, budgets: budgets, probes: probes)
    }

    func row(_ s: DrainSimulation, _ id: String) throws -> DrainSimulation.Row {
        try #require(s.rows.first { $0.pod.id == id }, "no row for \(id)")
    }

    @Test("each pod gets kubectl drain's verdict and the blockers a drain would meet")
    func decisions() throws {
        let blocked = EvictionProbe.blockedByBudget(
            message:
                "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."
        )
        let s = try simulation(probes: [
            "shop/web-1": blocked, "default/debug": .allowed, "research/train-0": .allowed, "shop/cache-0": .allowed,
        ])
        #expect(try row(s, "kube-system/fluent-x").action == .ignore)
        #expect(try row(s, "kube-system/etcd-w-1").action == .skip)
        #expect(try row(s, "default/done-1").action == .evict)
        #expect(try row(s, "default/done-1").blockers.isEmpty)
        #expect(
            try row(s, "shop/web-1").blockers
                == [.disruptionBudget(name: "web-pdb", desiredHealthy: 2, currentHealthy: 2)])
        #expect(try row(s, "default/debug").blockers == [.noController])
        #expect(try row(s, "shop/cache-0").blockers == [.localStorage])
        #expect(try row(s, "research/train-0").blockers == [.gpuJob("kai-scheduler, 2 GPUs")])
        #expect(s.blocked.count == 4)
        #expect(Set(s.evictionBlocked.map(\.pod.id)) == ["shop/web-1", "default/debug"])
        #expect(s.gpuJobs.map(\.pod.id) == ["research/train-0"])
    }

    @Test("a pod whose budget allows a disruption is not blocked; the server's answer decides, not the budget list")
    func serverDecides() throws {
        let s = try simulation(probes: ["shop/web-1": .allowed])
        #expect(try row(s, "shop/web-1").blockers.isEmpty)
        let refused = try simulation(probes: [
            "shop/web-1": .failed(
                message:
                    "Error from server (InternalError): This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
            )
        ])
        let blockers = try row(refused, "shop/web-1").blockers
        #expect(blockers.count == 1)
        #expect(blockers.first?.kind == "eviction")
        #expect(blockers.first?.blocksEviction == true)
    }

    @Test("only pods a drain evicts are asked about; DaemonSet, mirror and finished pods are not")
    func probedPods() throws {
        let pods = try DrainPod.parseList(Data(Self.podList.utf8))
        #expect(
            DrainSimulation.podsToProbe(pods).map(\.id) == [
                "default/debug", "research/train-0", "shop/cache-0", "shop/web-1",
            ])
    }

    @Test("budget selectors: labels and expressions, same namespace only, an empty selector matches nothing")
    func selectors() {
        let pod = DrainPod(namespace: "a", name: "p", labels: ["app": "web", "tier": "front"])
        let b = { (labels: [String: String]?, exprs: [DisruptionBudget.Requirement]) in
            DisruptionBudget(
                namespace: "a", name: "b", matchLabels: labels, matchExpressions: exprs, disruptionsAllowed: 0,
                desiredHealthy: 1, currentHealthy: 1)
        }
        #expect(b(["app": "web"], []).selects(pod))
        #expect(!b(["app": "db"], []).selects(pod))
        #expect(!b([:], []).selects(pod))
        #expect(!b(nil, []).selects(pod))
        #expect(b(nil, [.init(key: "tier", op: "In", values: ["front", "back"])]).selects(pod))
        #expect(!b(nil, [.init(key: "tier", op: "NotIn", values: ["front"])]).selects(pod))
        #expect(b(nil, [.init(key: "zone", op: "DoesNotExist", values: [])]).selects(pod))
        var other = pod
        other.namespace = "b"
        #expect(!b(["app": "web"], []).selects(other))
    }

    @Test("kubectl create --raw answers read as probes")
    func probeParsing() {
        #expect(EvictionProbe.parse(exitStatus: 0, output: "{\"kind\":\"Status\",\"status\":\"Success\"}") == .allowed)
        if case .blockedByBudget = EvictionProbe.parse(
            exitStatus: 1,
            output:
                "Error from server (TooManyRequests): Cannot evict pod as it would violate the pod's disruption budget."
        ) {
        } else {
            Issue.record("429 not read as a budget block")
        }
        #expect(
            EvictionProbe.parse(exitStatus: 1, output: "Error from server (NotFound): pods \"x\" not found") == .gone)
        #expect(
            EvictionProbe.parse(exitStatus: 1, output: "Error from server (Forbidden): no")
                == .failed(message: "Error from server (Forbidden): no"))
    }

    @Test("one table for several nodes, with a summary line each")
    func table() throws {
        let s = try simulation(probes: [
            "shop/web-1": .blockedByBudget(message: "429"), "default/debug": .allowed,
        ])
        let empty = DrainSimulation(node: "w-2", rows: [])
        let text = DrainSimulation.table([s, empty])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("NODE") == true)
        #expect(
            lines.contains {
                $0.contains("shop/web-1") && $0.contains("PodDisruptionBudget web-pdb (needs 2 healthy, has 2")
            })
        #expect(lines.contains { $0.contains("kube-system/fluent-x") && $0.contains("ignore (DaemonSet)") })
        #expect(lines.contains { $0.hasPrefix("w-2") && $0.contains("no pods") })
        #expect(
            text.contains(
                "w-1: 5 to evict, 4 blocked (1 gpu-job, 1 local-storage, 1 no-controller, 1 pdb), 1 GPU job, 2 left in place"
            ))
        #expect(text.contains("w-2: 0 to evict, 0 blocked, 0 GPU jobs, 0 left in place"))
    }

    @Test("etcd quorum arithmetic of a control-plane removal")
    func quorum() {
        #expect(
            QuorumCheck(members: ["cp-1"], healthy: ["cp-1"], removing: "cp-1").refusal?.contains("only control plane")
                == true)
        #expect(
            QuorumCheck(members: ["cp-1", "cp-2", "cp-3"], healthy: ["cp-1", "cp-2", "cp-3"], removing: "cp-3").refusal
                == nil)
        // One member already down: removing a healthy one leaves 1 healthy of 2, quorum 2.
        let broken = QuorumCheck(members: ["cp-1", "cp-2", "cp-3"], healthy: ["cp-1", "cp-2"], removing: "cp-2")
        #expect(broken.refusal?.contains("would leave etcd without quorum") == true)
        #expect(
            broken.refusal?.contains(
                "3 members (2 healthy), quorum 2; after removing cp-2: 2 members (1 healthy), quorum 2") == true)
        // Removing the dead one is what restores health.
        #expect(
            QuorumCheck(members: ["cp-1", "cp-2", "cp-3"], healthy: ["cp-1", "cp-2"], removing: "cp-3").refusal == nil)
        #expect(
            QuorumCheck(members: ["cp-1", "cp-2", "cp-3"], healthy: ["cp-1"], removing: "cp-3").refusal?.contains(
                "no quorum now") == true)
    }
}
