import Foundation
import Testing

@testable import ApplianceCluster

/// Parsers of what kubeadm and kubectl print, and the install record.
@Suite struct InstallPartsTests {
    @Test func joinCommandIsParsedIntoItsSecrets() throws {
        let out = """
            kubeadm join 10.77.140.100:8443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:\(String(repeating: "ab", count: 32))

            """
        let s = try #require(Kubeadm.parseJoinCommand(out))
        #expect(s.endpoint == "10.77.140.100:8443")
        #expect(s.token == "abcdef.0123456789abcdef")
        #expect(s.caCertHash == "sha256:" + String(repeating: "ab", count: 32))
        #expect(s.certificateKey == nil)
        // The description never shows a value.
        #expect(!s.description.contains("abcdef") && !s.description.contains("sha256"))
        #expect(Kubeadm.parseJoinCommand("error: something went wrong\n") == nil)
        #expect(Kubeadm.parseJoinCommand("kubeadm join 10.0.0.1:6443 --token x\n") == nil)
    }

    @Test func certificateKeyIsTheLineAfterUploadCerts() {
        let key = String(repeating: "0f", count: 32)
        let out = """
            I1130 12:00:00.000000 1 version.go:261] remote version is much newer
            [upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace
            [upload-certs] Using certificate key:
            \(key)

            """
        #expect(Kubeadm.parseCertificateKey(out) == key)
        #expect(Kubeadm.parseCertificateKey("[upload-certs] Using certificate key:\n") == nil)
    }

    @Test func nodesAreReadFromANodeList() throws {
        let json = """
            {"apiVersion":"v1","kind":"List","items":[
              {"metadata":{"name":"cp-1","labels":{"node-role.kubernetes.io/control-plane":""}},
               "spec":{"taints":[{"key":"node-role.kubernetes.io/control-plane","effect":"NoSchedule"}]},
               "status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady"}],
                         "nodeInfo":{"kubeletVersion":"v1.34.3"},
                         "addresses":[{"type":"InternalIP","address":"10.0.0.11"}]}},
              {"metadata":{"name":"gpu-1"},"spec":{"unschedulable":true},
               "status":{"conditions":[{"type":"Ready","status":"Unknown","reason":"NodeStatusUnknown",
                          "message":"Kubelet stopped posting node status."}],
                         "allocatable":{"nvidia.com/gpu":"8"},"nodeInfo":{"kubeletVersion":"v1.34.3"}}}]}
            """
        let nodes = try ClusterAPI.parseNodes(Data(json.utf8))
        #expect(nodes.count == 2)
        #expect(nodes[0].ready && nodes[0].notReadyReason == nil && nodes[0].internalIP == "10.0.0.11")
        #expect(nodes[0].taints == [.init(key: "node-role.kubernetes.io/control-plane", effect: "NoSchedule")])
        #expect(nodes[0].taints[0].argument == "node-role.kubernetes.io/control-plane:NoSchedule")
        #expect(!nodes[1].ready && nodes[1].unschedulable && nodes[1].allocatableGPUs == 8)
        #expect(nodes[1].notReadyReason == "NodeStatusUnknown: Kubelet stopped posting node status.")
        #expect(throws: ClusterError.self) { try ClusterAPI.parseNodes(Data("{}".utf8)) }
    }

    @Test func anInstallRecordMatchesItselfWhateverItsTime() {
        let a = InstallRecord(
            cluster: "lab", bundleName: "appliance-lab", bundleVersion: "2026.11.0", bundleDigest: "ab",
            kubernetesVersion: "v1.34.3", profile: "hpc-8xa100", nodes: [.init(name: "cp-1", roles: ["control-plane"])],
            installedAt: Date(timeIntervalSince1970: 1))
        var b = a
        b.installedAt = Date()
        #expect(a.matches(b))
        b.bundleVersion = "2026.12.0"
        #expect(!a.matches(b))
    }

    @Test func poolNamesDropTheEpoch() {
        let p = StagedPackage(name: "conntrack", version: "1:1.4.7-1+b2", architecture: "amd64", sha256: "ab")
        #expect(p.poolName == "conntrack_1.4.7-1+b2_amd64.deb")
    }
}
