import Testing

@testable import ApplianceModel

@Suite struct KubernetesNamesTests {
    @Test func aDeploymentOwnsOnlyItsOwnReplicaSetsNotThoseOfALongerNamedOne() {
        #expect(KubernetesNames.isReplicaSet("gpu-operator-7d9fbc", of: "gpu-operator"))
        #expect(!KubernetesNames.isReplicaSet("gpu-operator-node-feature-discovery-master-c964k", of: "gpu-operator"))
        #expect(
            KubernetesNames.isReplicaSet(
                "gpu-operator-node-feature-discovery-master-c964k", of: "gpu-operator-node-feature-discovery-master"))
        #expect(!KubernetesNames.isReplicaSet("gpu-operator-", of: "gpu-operator"))
        #expect(!KubernetesNames.isReplicaSet("gpu-operatorx-7d9fbc", of: "gpu-operator"))
    }
}
