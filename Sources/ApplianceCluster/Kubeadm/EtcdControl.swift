import ApplianceSSH
import Foundation

/// etcdctl against the stacked etcd of a kubeadm cluster, run on a control plane over SSH: the member list
/// and the removal of a member that `kubeadm reset` left behind (kubeadm only warns when it cannot remove the
/// node's member: "[reset] Failed to remove etcd member ... please manually remove this etcd member using
/// etcdctl"; a dead control plane cannot be reset at all).
public enum EtcdControl {
    /// POSIX sh that defines `e` (etcdctl, or the etcdctl of the node's etcd static pod through `kubectl exec`
    /// where the node has none) and sets `"$@"` to the flags every call takes: the endpoint of the local API
    /// server's etcd (its `--etcd-servers`, else `https://127.0.0.1:2379`) and the client certificate kubeadm's
    /// own etcd client uses (`etcd/healthcheck-client`), when the node has it.
    public static func preamble(node: String, kubectl: String, commandTimeout: Int) -> String {
        """
        ep=$(ps -eo args 2>/dev/null | grep -o -E -e '--etcd-servers[= ][^ ]+' | head -1 | sed -E 's/--etcd-servers[= ]//')
        [ -n "$ep" ] || ep=https://127.0.0.1:2379
        p=/etc/kubernetes/pki/etcd
        set -- --endpoints="$ep" --dial-timeout=3s --command-timeout=\(commandTimeout)s
        [ -f $p/healthcheck-client.crt ] && set -- "$@" --cacert=$p/ca.crt --cert=$p/healthcheck-client.crt --key=$p/healthcheck-client.key
        if command -v etcdctl >/dev/null 2>&1; then e() { ETCDCTL_API=3 etcdctl "$@"; }
        else e() { \(kubectl) -n kube-system exec \(shellQuote("etcd-\(node)")) -- etcdctl "$@"; }; fi
        """
    }

    public struct Member: Sendable, Equatable {
        /// Hexadecimal, as `etcdctl member remove` takes it.
        public var id: String
        public var name: String
        public var peerURLs: [String]
        public var clientURLs: [String]
        public var isLearner: Bool
    }

    /// `etcdctl member list -w simple`: `ID, STATUS, NAME, PEER URLS, CLIENT URLS, IS LEARNER` per line (URL
    /// lists joined with a bare comma). The JSON form is not used: it prints the 64-bit IDs as numbers.
    public static func parseMembers(_ text: String) -> [Member] {
        text.split(separator: "\n").compactMap { line in
            let f = line.components(separatedBy: ", ").map { $0.trimmingCharacters(in: .whitespaces) }
            guard f.count >= 5, !f[0].isEmpty, f[0].allSatisfy(\.isHexDigit) else { return nil }
            func urls(_ s: String) -> [String] { s.split(separator: ",").map(String.init) }
            return Member(
                id: f[0], name: f[2], peerURLs: urls(f[3]), clientURLs: urls(f[4]),
                isLearner: f.count > 5 && f[5] == "true")
        }
    }

    /// The member of `node`: kubeadm names it after the node; a member not started yet has no name, so its
    /// peer URL on the node's address counts too.
    public static func member(of node: String, address: String?, in members: [Member]) -> Member? {
        members.first { m in
            m.name == node || address.map { a in m.peerURLs.contains { $0.contains("//\(a):") } } == true
        }
    }

    static let kubectl = "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) --request-timeout=20s"

    /// The members, as the control plane behind `runner` reads them.
    public static func members(on runner: NodeRunner) async throws -> [Member] {
        let out = try await runner.run(
            preamble(node: runner.name, kubectl: kubectl, commandTimeout: 15)
                + "\ne \"$@\" -w simple member list", label: "etcdctl member list", timeout: .seconds(60))
        return parseMembers(out)
    }

    /// `etcdctl member remove ID` through the control plane behind `runner`.
    public static func remove(_ member: Member, on runner: NodeRunner) async throws {
        guard member.id.allSatisfy(\.isHexDigit) else {
            throw ClusterError.node(node: runner.name, reason: "not an etcd member ID: \(member.id)")
        }
        try await runner.run(
            preamble(node: runner.name, kubectl: kubectl, commandTimeout: 15)
                + "\ne \"$@\" member remove \(member.id)", label: "etcdctl member remove \(member.id)",
            timeout: .seconds(60))
    }
}
