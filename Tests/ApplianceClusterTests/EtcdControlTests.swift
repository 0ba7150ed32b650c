import Testing

@testable import ApplianceCluster

@Suite struct EtcdControlTests {
    /// `etcdctl member list -w simple` of etcd 3.5 (a started member, one added but not started yet, a learner).
    static let list = """
        8e9e05c52164694d, started, cp-1, https://10.0.0.11:2380, https://10.0.0.11:2379, false
        91bc3c398fb3c146, started, cp-2, https://10.0.0.12:2380,https://[fd00::12]:2380, https://10.0.0.12:2379, false
        fd422379fda50e48, unstarted, , https://10.0.0.13:2380, , false
        2f7b1bbd2e9f1c55, started, cp-4, https://10.0.0.14:2380, https://10.0.0.14:2379, true

        """

    @Test func membersParseWithHexIDsAndURLLists() {
        let m = EtcdControl.parseMembers(Self.list)
        #expect(m.map(\.id) == ["8e9e05c52164694d", "91bc3c398fb3c146", "fd422379fda50e48", "2f7b1bbd2e9f1c55"])
        #expect(m[1].peerURLs == ["https://10.0.0.12:2380", "https://[fd00::12]:2380"])
        #expect(m[2].name.isEmpty && m[2].clientURLs.isEmpty)
        #expect(m[3].isLearner && !m[0].isLearner)
        #expect(EtcdControl.parseMembers("Error: context deadline exceeded\n").isEmpty)
    }

    @Test func aNodesMemberIsFoundByNameOrByItsPeerAddress() {
        let m = EtcdControl.parseMembers(Self.list)
        #expect(EtcdControl.member(of: "cp-2", address: nil, in: m)?.id == "91bc3c398fb3c146")
        // Not started yet: no name, its peer URL names the address.
        #expect(EtcdControl.member(of: "cp-3", address: "10.0.0.13", in: m)?.id == "fd422379fda50e48")
        // 10.0.0.1 is not 10.0.0.11.
        #expect(EtcdControl.member(of: "cp-9", address: "10.0.0.1", in: m) == nil)
    }

    @Test func thePreambleUsesKubeadmsClientCertificateAndTheAPIServersEndpoint() {
        let sh = EtcdControl.preamble(node: "cp-1", kubectl: "kubectl", commandTimeout: 7)
        #expect(sh.contains("--etcd-servers"))
        #expect(sh.contains("--command-timeout=7s"))
        #expect(sh.contains("healthcheck-client.crt"))
        #expect(sh.contains("exec 'etcd-cp-1' -- etcdctl"))
    }
}
