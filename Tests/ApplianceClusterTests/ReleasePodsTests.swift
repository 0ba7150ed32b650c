import Foundation
import Testing

@testable import ApplianceCluster

/// Which pods belong to a Helm release: install's wait and `status` read them the same way.
@Suite struct ReleasePodsTests {
    static func workload(_ name: String, release: String?, ns: String = "monitoring") -> [String: Any] {
        var meta: [String: Any] = ["name": name, "namespace": ns]
        if let release { meta["annotations"] = ["meta.helm.sh/release-name": release] }
        return ["metadata": meta]
    }

    static func pod(
        _ name: String, ns: String = "monitoring", owner: (String, String)?, labels: [String: String] = [:],
        ready: Bool = true, phase: String = "Running", waiting: String? = nil
    ) -> [String: Any] {
        var meta: [String: Any] = ["name": name, "namespace": ns, "labels": labels]
        if let owner { meta["ownerReferences"] = [["kind": owner.0, "name": owner.1, "controller": true]] }
        var status: [String: Any] = [
            "phase": phase, "conditions": [["type": "Ready", "status": ready ? "True" : "False"]],
        ]
        if let waiting {
            status["containerStatuses"] = [
                [
                    "name": "main", "ready": false,
                    "state": ["waiting": ["reason": waiting, "message": "no such image"]],
                ]
            ]
        }
        return ["metadata": meta, "status": status]
    }

    @Test func helmOwnedWorkloadsAndLabelledOperatorPodsCountOthersDoNot() {
        let pods: [[String: Any]] = [
            // The Deployment's pod, through its ReplicaSet.
            Self.pod("grafana-7d9f-abcde", owner: ("ReplicaSet", "kps-grafana-7d9f"), ready: true),
            // The DaemonSet's pod, not Ready with why.
            Self.pod(
                "node-exporter-x1", owner: ("DaemonSet", "kps-node-exporter"), ready: false, waiting: "ImagePullBackOff"
            ),
            // The StatefulSet the operator made for the release (no Helm annotation) but labelled with it.
            Self.pod(
                "prometheus-kps-0", owner: ("StatefulSet", "prometheus-kps"),
                labels: ["app.kubernetes.io/instance": "kps"]),
            // Another release's pod in the same namespace, a finished Job pod, and a bare pod.
            Self.pod("other-1-abcde", owner: ("ReplicaSet", "other-1"), ready: true),
            Self.pod(
                "kps-admission-patch-x", owner: ("Job", "kps-admission-patch"), labels: ["release": "kps"],
                phase: "Succeeded"),
            Self.pod("debug", owner: nil),
            // The same names in another namespace do not count.
            Self.pod("grafana-7d9f-zzzzz", ns: "elsewhere", owner: ("ReplicaSet", "kps-grafana-7d9f")),
        ]
        let found = ReleasePods.of(
            release: "kps", namespace: "monitoring",
            deployments: [Self.workload("kps-grafana", release: "kps"), Self.workload("other", release: "other")],
            daemonSets: [Self.workload("kps-node-exporter", release: "kps")], statefulSets: [], pods: pods)
        #expect(found.ready == 2)
        #expect(found.total == 3)
        #expect(found.notReady.map(\.pod) == ["node-exporter-x1"])
        #expect(found.notReady.first?.reason.contains("ImagePullBackOff") == true, "\(found.notReady)")
    }

    @Test func aDeploymentWhoseNameStartsAnotherOnesDoesNotTakeItsPods() {
        // `gpu-operator` (release a) and `gpu-operator-nfd-master` (release b): the latter's pods are b's only.
        let pods = [
            Self.pod(
                "gpu-operator-nfd-master-c964k-abcde", ns: "gpu", owner: ("ReplicaSet", "gpu-operator-nfd-master-c964k")
            )
        ]
        let workloads = [
            Self.workload("gpu-operator", release: "a", ns: "gpu"),
            Self.workload("gpu-operator-nfd-master", release: "b", ns: "gpu"),
        ]
        let a = ReleasePods.of(
            release: "a", namespace: "gpu", deployments: workloads, daemonSets: [], statefulSets: [], pods: pods)
        let b = ReleasePods.of(
            release: "b", namespace: "gpu", deployments: workloads, daemonSets: [], statefulSets: [], pods: pods)
        #expect(a.total == 0)
        #expect(b.total == 1)
    }

    /// CloudNativePG's instance pods are the Cluster's (which the release made), not a workload's; the GPU
    /// Operator's operand pods are a DaemonSet's that the release's cluster-scoped ClusterPolicy controls.
    @Test func podsOfAnOperatorsCustomResourceCountForTheReleaseThatMadeIt() {
        func resource(_ kind: String, _ name: String, ns: String?, release: String?, owner: (String, String)? = nil)
            -> [String: Any]
        {
            var meta: [String: Any] = ["name": name]
            if let ns { meta["namespace"] = ns }
            if let release { meta["annotations"] = ["meta.helm.sh/release-name": release] }
            if let owner { meta["ownerReferences"] = [["kind": owner.0, "name": owner.1, "controller": true]] }
            return ["kind": kind, "metadata": meta]
        }
        let db = ReleasePods.of(
            release: "platform-db", namespace: "platform-db", deployments: [], daemonSets: [], statefulSets: [],
            owners: [
                resource("Cluster", "platform-db-cluster", ns: "platform-db", release: "platform-db"),
                resource("Cluster", "scratch", ns: "platform-db", release: nil),
            ],
            pods: [
                Self.pod("platform-db-cluster-1", ns: "platform-db", owner: ("Cluster", "platform-db-cluster")),
                Self.pod(
                    "platform-db-cluster-2", ns: "platform-db", owner: ("Cluster", "platform-db-cluster"), ready: false),
                Self.pod("scratch-1", ns: "platform-db", owner: ("Cluster", "scratch")),
                // A Job of the same name is not the Cluster.
                Self.pod("platform-db-cluster-x", ns: "platform-db", owner: ("Job", "platform-db-cluster")),
            ])
        #expect(db.ready == 1)
        #expect(db.notReady.map(\.pod) == ["platform-db-cluster-2"])

        let gpu = ReleasePods.of(
            release: "gpu-operator", namespace: "gpu-operator", deployments: [],
            daemonSets: [
                resource(
                    "DaemonSet", "nvidia-device-plugin-daemonset", ns: "gpu-operator", release: nil,
                    owner: ("ClusterPolicy", "cluster-policy"))
            ], statefulSets: [],
            owners: [resource("ClusterPolicy", "cluster-policy", ns: nil, release: "gpu-operator")],
            pods: [
                Self.pod(
                    "nvidia-device-plugin-daemonset-abcde", ns: "gpu-operator",
                    owner: ("DaemonSet", "nvidia-device-plugin-daemonset"))
            ])
        #expect(gpu.ready == 1)
    }

    /// A Cluster whose operator has not made every instance yet: its pods may all be Ready, but too few.
    @Test func aDatabaseClusterWithTooFewReadyInstancesIsNotSettled() {
        func cluster(_ name: String, release: String?, instances: Int, ready: Int?) -> [String: Any] {
            var meta: [String: Any] = ["name": name, "namespace": "platform-db"]
            if let release { meta["annotations"] = ["meta.helm.sh/release-name": release] }
            var status: [String: Any] = ["phase": "Setting up primary"]
            if let ready { status["readyInstances"] = ready }
            return ["kind": "Cluster", "metadata": meta, "spec": ["instances": instances], "status": status]
        }
        let owners = [
            cluster("platform-db-cluster", release: "platform-db", instances: 2, ready: 1),
            cluster("fresh", release: "platform-db", instances: 1, ready: nil),
            cluster("settled", release: "platform-db", instances: 1, ready: 1),
            cluster("other", release: "another", instances: 3, ready: 0),
        ]
        let unsettled = ReleasePods.unsettledOwners(release: "platform-db", namespace: "platform-db", owners: owners)
        #expect(unsettled.map(\.pod) == ["platform-db-cluster", "fresh"])
        #expect(unsettled.allSatisfy { $0.kind == "Cluster" })
        #expect(unsettled.first?.reason == "1 of 2 instances ready (Setting up primary)")
        #expect(unsettled.last?.reason == "0 of 1 instances ready (Setting up primary)")
    }

    @Test func aReleaseWithoutPodsHasNone() {
        let found = ReleasePods.of(
            release: "kai", namespace: "kai-scheduler", deployments: [], daemonSets: [], statefulSets: [], pods: [])
        #expect(found == ReleasePods(ready: 0, notReady: []))
        #expect(ReleasePods.items("not json").isEmpty)
    }
}
