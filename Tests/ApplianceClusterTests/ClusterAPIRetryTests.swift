import Testing

@testable import ApplianceCluster

@Suite struct ClusterAPIRetryTests {
    @Test func onlyReadsAreTriedAgain() {
        #expect(ClusterAPI.isRead(["get", "nodes", "-o", "json"]))
        #expect(ClusterAPI.isRead(["--server=https://10.0.0.11:6443", "get", "--raw", "/readyz"]))
        #expect(ClusterAPI.isRead(["logs", "-n", "kube-system", "etcd-cp-1"]))
        for write in [
            ["apply", "-f", "-"], ["label", "node", "gpu-1", "--overwrite", "a=b"], ["delete", "node", "gpu-1"],
            ["create", "token"], ["annotate", "node", "gpu-1", "x=y"], ["cordon", "gpu-1"], [],
        ] {
            #expect(!ClusterAPI.isRead(write), "\(write)")
        }
    }

    /// What kubectl prints for answers that pass on their own, as the API server words them.
    @Test func transientAnswersAreRecognised() {
        for stderr in [
            "Error from server (InternalError): etcd /v3/kv/range: etcdserver: leader changed",
            "Error from server: etcdserver: request timed out",
            "Error from server (ServiceUnavailable): the server is currently unable to handle the request",
            "Error from server (Timeout): the server was unable to return a response in the time allotted, but may still be processing the request (get nodes)",
            "Error from server (TooManyRequests): the server has received too many requests and has asked us to try again later",
            "Unable to connect to the server: net/http: TLS handshake timeout",
            "The connection to the server 10.0.0.10:6443 was refused - did you specify the right host or port?",
        ] {
            #expect(ClusterAPI.isTransient(stderr), "\(stderr)")
        }
        for stderr in [
            "Error from server (NotFound): nodes \"gpu-9\" not found",
            "Error from server (Forbidden): nodes is forbidden: User \"x\" cannot list resource \"nodes\"",
            "error: the server doesn't have a resource type \"nodez\"",
            "bash: kubectl: command not found",
        ] {
            #expect(!ClusterAPI.isTransient(stderr), "\(stderr)")
        }
    }
}
