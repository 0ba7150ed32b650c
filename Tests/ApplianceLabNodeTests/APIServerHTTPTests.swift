import Foundation
import Testing

@testable import ApplianceLabNode

/// The API server's wire behaviour without etcd: patch semantics, discovery, tables, selectors, and the TLS
/// transport with client certificates (issue 12).
@Suite("API server: patches, discovery, tables, TLS")
struct APIServerHTTPTests {
    // MARK: patches

    @Test func strategicMergeReplacesTaintsAndMergesConditionsByType() throws {
        let node: KObject = [
            "spec": ["taints": [["key": "a", "effect": "NoSchedule"], ["key": "b", "effect": "NoExecute"]]] as KObject,
            "status": [
                "conditions": [["type": "Ready", "status": "True"], ["type": "DiskPressure", "status": "False"]]
            ] as KObject,
        ]
        // kubectl taint sends the whole new list: taints have no merge key.
        let tainted = try PatchType.strategic.apply(
            ["spec": ["taints": [["key": "c", "value": "v", "effect": "NoSchedule"]]]] as KObject, to: node)
        #expect((K.spec(tainted)["taints"] as? [KObject])?.map { $0["key"] as? String } == ["c"])
        // Removing the last taint is a null.
        let cleared = try PatchType.strategic.apply(["spec": ["taints": NSNull()]] as KObject, to: node)
        #expect(K.spec(cleared)["taints"] == nil)
        // Conditions merge by type: one changes, the other stays.
        let cond = try PatchType.strategic.apply(
            ["status": ["conditions": [["type": "Ready", "status": "False"]]]] as KObject, to: node)
        #expect(K.conditionStatus(cond, "Ready") == "False")
        #expect(K.conditionStatus(cond, "DiskPressure") == "False")
        // $patch: delete removes one element by its key; directives never reach the stored object.
        let deleted = try PatchType.strategic.apply(
            [
                "status": ["conditions": [["type": "DiskPressure", "$patch": "delete"]]],
                "$setElementOrder/conditions": [["type": "Ready"]],
            ] as KObject, to: node)
        #expect((K.status(deleted)["conditions"] as? [KObject])?.count == 1)
        #expect(deleted.keys.allSatisfy { !$0.hasPrefix("$") })
        // cordon / uncordon bodies.
        let cordoned = try PatchType.strategic.apply(["spec": ["unschedulable": true]] as KObject, to: node)
        #expect(K.spec(cordoned)["unschedulable"] as? Bool == true)
        let uncordoned = try PatchType.strategic.apply(["spec": ["unschedulable": NSNull()]] as KObject, to: cordoned)
        #expect(K.spec(uncordoned)["unschedulable"] == nil)
    }

    @Test func containersMergeByNameAndMergePatchReplacesLists() throws {
        let d: KObject = [
            "spec": [
                "template": [
                    "spec": ["containers": [["name": "a", "image": "a:1"], ["name": "b", "image": "b:1"]]] as KObject
                ] as KObject
            ] as KObject
        ]
        let patch: KObject = ["spec": ["template": ["spec": ["containers": [["name": "b", "image": "b:2"]]]]]]
        let smp = try PatchType.strategic.apply(patch, to: d)
        #expect(
            (K.get(smp, "spec.template.spec.containers") as? [KObject])?.map { $0["image"] as? String } == [
                "a:1", "b:2",
            ])
        let merge = try PatchType.merge.apply(patch, to: d)
        #expect((K.get(merge, "spec.template.spec.containers") as? [KObject])?.count == 1)
    }

    @Test func jsonPatchOperationsAndFailures() throws {
        let o: KObject = [
            "metadata": ["name": "x", "labels": ["a": "1"]] as KObject, "spec": ["list": [1, 2]] as KObject,
        ]
        let ops: [Any] = [
            ["op": "add", "path": "/metadata/labels/b~1c", "value": "2"],
            ["op": "replace", "path": "/metadata/labels/a", "value": "9"],
            ["op": "add", "path": "/spec/list/-", "value": 3],
            ["op": "remove", "path": "/spec/list/0"],
            ["op": "test", "path": "/metadata/name", "value": "x"],
            ["op": "copy", "from": "/metadata/name", "path": "/spec/copied"],
        ]
        let r = try PatchType.json.apply(ops, to: o)
        #expect(K.labels(r) == ["a": "9", "b/c": "2"])
        #expect(K.spec(r)["list"] as? [Int] == [2, 3])
        #expect(K.spec(r)["copied"] as? String == "x")
        #expect(throws: PatchType.Failure.self) {
            try PatchType.json.apply([["op": "test", "path": "/metadata/name", "value": "y"]], to: o)
        }
        #expect(throws: PatchType.Failure.self) {
            try PatchType.json.apply([["op": "remove", "path": "/metadata/nope"]], to: o)
        }
        #expect(throws: PatchType.Failure.self) {
            try PatchType.json.apply([["op": "replace", "path": "/spec/list/7", "value": 1]], to: o)
        }
    }

    @Test func applyPatchesAreReadAsYAMLOrJSONAndUnknownTypesRefused() throws {
        #expect(PatchType(contentType: "application/apply-patch+yaml") == .apply)
        #expect(PatchType(contentType: "application/strategic-merge-patch+json; charset=utf-8") == .strategic)
        #expect(PatchType(contentType: "application/vnd.kubernetes.protobuf") == nil)
        let y = try PatchType.apply.decode(Data("metadata:\n  name: x\ndata:\n  k: v\n".utf8)) as? KObject
        #expect(K.name(y ?? [:]) == "x")
        let j = try PatchType.apply.decode(Data(#"{"metadata":{"name":"y"}}"#.utf8)) as? KObject
        #expect(K.name(j ?? [:]) == "y")
    }

    // MARK: validation, discovery, tables, selectors

    @Test func invalidObjectsGet422WithTheRealStatusShape() throws {
        let bad = try #require(
            APIServerStandin.validate(
                KResource.nodes, ["metadata": ["name": "n1"], "spec": ["taints": [["key": "k", "effect": "Bogus"]]]]))
        #expect(bad.0 == 422)
        let status = try #require(K.parse(bad.1))
        #expect(status["kind"] as? String == "Status" && status["reason"] as? String == "Invalid")
        #expect(
            (status["message"] as? String)?.hasPrefix(
                "Node \"n1\" is invalid: spec.taints[0].effect: Unsupported value: \"Bogus\"") == true)
        #expect(APIServerStandin.validate(KResource.configmaps, ["metadata": ["name": "Bad_Name"]])?.0 == 422)
        #expect(APIServerStandin.validate(KResource.configmaps, ["metadata": ["name": "ok.name-1"]]) == nil)
        #expect(APIServerStandin.validate(KResource.csrs, ["metadata": ["generateName": "csr-"]]) == nil)
    }

    @Test func discoveryListsEvictionInPolicyAndEveryGroupItNames() throws {
        let core = APIServerStandin.resourceList(group: "", version: "v1")
        let resources = try #require(core["resources"] as? [KObject])
        let eviction = try #require(resources.first { $0["name"] as? String == "pods/eviction" })
        #expect(eviction["group"] as? String == "policy" && eviction["version"] as? String == "v1")
        #expect(eviction["kind"] as? String == "Eviction")
        let nodes = try #require(resources.first { $0["name"] as? String == "nodes" })
        #expect(nodes["shortNames"] as? [String] == ["no"] && nodes["namespaced"] as? Bool == false)
        #expect((nodes["verbs"] as? [String])?.contains("watch") == true)
        for g in APIServerStandin.groups {
            let list = APIServerStandin.resourceList(group: g.group, version: g.version)
            #expect((list["resources"] as? [KObject])?.isEmpty == false, "\(g) listed but empty")
        }
        #expect(APIServerStandin.groups.contains { $0 == ("apps", "v1") })
    }

    @Test func nodeTablesCarryTheRealColumnsAndStatus() throws {
        let node: KObject = [
            "metadata": [
                "name": "cp-1", "labels": ["node-role.kubernetes.io/control-plane": ""],
                "creationTimestamp": K.timestamp(Date().addingTimeInterval(-7200)),
            ] as KObject,
            "spec": ["unschedulable": true] as KObject,
            "status": [
                "conditions": [["type": "Ready", "status": "True"]],
                "addresses": [["type": "InternalIP", "address": "10.0.0.1"]],
                "nodeInfo": ["kubeletVersion": "v1.34.3", "osImage": "Debian GNU/Linux 12 (bookworm)"],
            ] as KObject,
        ]
        let t = APIServerStandin.table(KResource.nodes, [node], resourceVersion: "42")
        #expect(t["kind"] as? String == "Table" && t["apiVersion"] as? String == "meta.k8s.io/v1")
        let columns = try #require(t["columnDefinitions"] as? [KObject])
        #expect(
            columns.filter { $0["priority"] as? Int == 0 }.map { $0["name"] as? String } == [
                "Name", "Status", "Roles", "Age", "Version",
            ])
        let row = try #require((t["rows"] as? [KObject])?.first)
        let cells = try #require(row["cells"] as? [Any])
        #expect(cells[1] as? String == "Ready,SchedulingDisabled")
        #expect(cells[2] as? String == "control-plane")
        #expect(cells[3] as? String == "120m")  // kubectl's HumanDuration: minutes up to 3 h
        #expect(cells[5] as? String == "10.0.0.1")
        #expect(K.get(row, "object.kind") as? String == "PartialObjectMetadata")
    }

    @Test func fieldAndLabelSelectorsAreTheServers() {
        let pod: KObject = [
            "metadata": ["name": "p", "namespace": "default", "labels": ["app": "web"]] as KObject,
            "spec": ["nodeName": "gpu-1"] as KObject, "status": ["phase": "Running"] as KObject,
        ]
        #expect(APIServerStandin.selected(pod, query: ["fieldSelector": "spec.nodeName=gpu-1"]))
        #expect(!APIServerStandin.selected(pod, query: ["fieldSelector": "spec.nodeName=gpu-2"]))
        #expect(APIServerStandin.selected(pod, query: ["fieldSelector": "status.phase!=Succeeded,metadata.name==p"]))
        #expect(!APIServerStandin.selected(pod, query: ["fieldSelector": "metadata.namespace!=default"]))
        #expect(APIServerStandin.selected(pod, query: ["labelSelector": "app=web"]))
        #expect(!APIServerStandin.selected(pod, query: ["labelSelector": "app!=web"]))
        let node: KObject = ["metadata": ["name": "n"] as KObject, "spec": ["unschedulable": true] as KObject]
        #expect(APIServerStandin.selected(node, query: ["fieldSelector": "spec.unschedulable=true"]))
    }

    // MARK: authentication and authorization

    @Test func anonymousRequestsAreForbiddenInTheAuthorizersWords() {
        func message(_ method: String, _ path: String, _ query: [String: String] = [:]) -> String? {
            let r = APIServerStandin.forbidden(
                HTTPRequest(method: method, path: path, query: query), user: "system:anonymous")
            #expect(r.0 == 403)
            return K.parse(r.1)?["message"] as? String
        }
        #expect(message("GET", "/api") == "forbidden: User \"system:anonymous\" cannot get path \"/api\"")
        #expect(
            message("GET", "/apis/apps/v1") == "forbidden: User \"system:anonymous\" cannot get path \"/apis/apps/v1\"")
        #expect(
            message("GET", "/api/v1/nodes")
                == "nodes is forbidden: User \"system:anonymous\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        )
        #expect(
            message("GET", "/apis/apps/v1/namespaces/x/deployments", ["watch": "1"])
                == "deployments is forbidden: User \"system:anonymous\" cannot watch resource \"deployments\" in API group \"apps\" in the namespace \"x\""
        )
        #expect(
            message("POST", "/api/v1/namespaces/d/pods/p/eviction")
                == "pods \"p\" is forbidden: User \"system:anonymous\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"d\""
        )
        #expect(
            message("GET", "/api/v1/namespaces/kube-system")
                == "namespaces \"kube-system\" is forbidden: User \"system:anonymous\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"kube-system\""
        )
        #expect(
            message("DELETE", "/api/v1/nodes")
                == "nodes is forbidden: User \"system:anonymous\" cannot deletecollection resource \"nodes\" in API group \"\" at the cluster scope"
        )
    }

    @Test func invalidCertificatesGet401AnonymousGets403ProtobufBodiesGet415() throws {
        // No etcd behind it: none of these answers may need storage.
        let api = APIServerStandin(
            etcd: EtcdClient(endpoints: ["http://127.0.0.1:1"]), version: KubeVersion(1, 34, 3))
        func answer(_ req: HTTPRequest) -> (Int, KObject) {
            guard case .full(let status, _, let body) = api.respond(req) else { return (0, [:]) }
            return (status, K.parse(body) ?? [:])
        }
        var stranger = HTTPRequest(method: "GET", path: "/version")
        stranger.clientCertificatePresented = true
        let refused = answer(stranger)
        #expect(refused.0 == 401 && refused.1["reason"] as? String == "Unauthorized")
        #expect(answer(HTTPRequest(method: "GET", path: "/version")).0 == 200)
        let anonymous = answer(HTTPRequest(method: "GET", path: "/api/v1/pods"))
        #expect(anonymous.0 == 403 && anonymous.1["reason"] as? String == "Forbidden")
        #expect(K.get(anonymous.1, "details.kind") as? String == "pods")
        var proto = HTTPRequest(
            method: "POST", path: "/api/v1/namespaces",
            headers: ["content-type": "application/vnd.kubernetes.protobuf"], body: Data([0x6b, 0x38, 0x73, 0x00]))
        proto.clientCertificateVerified = true
        proto.clientCertificatePresented = true
        proto.clientCertificateSubject = "kubernetes-admin"
        let unsupported = answer(proto)
        #expect(unsupported.0 == 415 && unsupported.1["reason"] as? String == "UnsupportedMediaType")
        #expect(unsupported.1["kind"] as? String == "Status" && unsupported.1["code"] as? Int == 415)
    }

    @Test func accessLogLinesNameTheNegotiatedProtocol() {
        let line = APIServerStandin.httpLogLine(
            HTTPAccessRecord(
                method: "GET", uri: "/api/v1/nodes?limit=500", status: 200, proto: "HTTP/2.0",
                userAgent: "kubectl/v1.33.5 (linux/amd64) kubernetes/abc", remoteAddress: "10.0.0.2:41000",
                seconds: 0.0021),
            now: Date(timeIntervalSince1970: 1_700_000_000))
        #expect(line.hasPrefix("I1114 22:13:20.000000 "))
        #expect(
            line.hasSuffix(
                "httplog.go:134] \"HTTP\" verb=\"GET\" URI=\"/api/v1/nodes?limit=500\" latency=\"2.100ms\" userAgent=\"kubectl/v1.33.5 (linux/amd64) kubernetes/abc\" srcIP=\"10.0.0.2:41000\" resp=200 protocol=\"HTTP/2.0\"\n"
            ))
    }

    // MARK: TLS transport

    @Test func httpsWithClientCertificatesKeepAliveAndStreams() throws {
        let fx = try LabFixture(nil, driver: false)
        let pki = LabPKI(context: fx.context)
        _ = try pki.generate(
            nodeName: "n1", address: "127.0.0.1", serviceIP: "10.96.0.1", dnsDomain: "cluster.local", extraSANs: [])
        let ca = try #require(fx.context.read("/etc/kubernetes/pki/ca.crt"))
        let server = try HTTPServer(
            host: "127.0.0.1", port: 0,
            tls: TLSServerIdentity(
                certificatePEM: try #require(fx.context.read("/etc/kubernetes/pki/apiserver.crt")),
                keyPEM: try #require(fx.context.read("/etc/kubernetes/pki/apiserver.key")), clientCAPEM: ca)
        ) { req in
            if req.path == "/stream" {
                return .stream(status: 200, contentType: "application/json") { emit in
                    for i in 0..<3 { _ = emit(Data("{\"n\":\(i)}\n".utf8)) }
                }
            }
            return .json(
                200,
                K.json([
                    "user": req.clientCertificateSubject, "verified": req.clientCertificateVerified,
                    "presented": req.clientCertificatePresented, "proto": req.proto,
                ]))
        }
        defer { server.stop() }
        let url = "https://127.0.0.1:\(server.port)"
        let admin = try pki.clientCertificate(subject: "/O=kubeadm:cluster-admins/CN=kubernetes-admin")
        let identity = TLSClientIdentity(caPEM: ca, certificatePEM: admin.certificatePEM, keyPEM: admin.keyPEM)
        let r = try HTTPClient.request("GET", url + "/who", tls: identity)
        let body = try #require(K.parse(r.body))
        #expect(body["user"] as? String == "kubernetes-admin" && body["verified"] as? Bool == true)
        // Without a client certificate: served, but anonymous.
        let anon = try HTTPClient.request("GET", url + "/who", tls: TLSClientIdentity(caPEM: ca))
        #expect(K.parse(anon.body)?["verified"] as? Bool == false)
        // A chunked stream arrives whole.
        let stream = try HTTPClient.request("GET", url + "/stream", tls: identity)
        #expect(stream.headers["transfer-encoding"] == "chunked")
        #expect(stream.text == "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n")
        // A server that the pinned CA did not sign is refused.
        let other = try #require(
            LabFixture(nil, driver: false) as LabFixture?)
        let otherPKI = LabPKI(context: other.context)
        _ = try otherPKI.generate(
            nodeName: "n2", address: "127.0.0.1", serviceIP: "10.96.0.1", dnsDomain: "cluster.local", extraSANs: [])
        let wrongCA = TLSClientIdentity(caPEM: try #require(other.context.read("/etc/kubernetes/pki/ca.crt")))
        #expect(throws: HTTPError.self) { try HTTPClient.request("GET", url + "/who", tls: wrongCA) }
        // A client certificate from another CA passes the handshake but proves nothing (the API answers 401).
        let stranger = try otherPKI.clientCertificate(subject: "/CN=stranger")
        let strange = try HTTPClient.request(
            "GET", url + "/who",
            tls: TLSClientIdentity(caPEM: ca, certificatePEM: stranger.certificatePEM, keyPEM: stranger.keyPEM))
        let strangeBody = try #require(K.parse(strange.body))
        #expect(strangeBody["presented"] as? Bool == true && strangeBody["verified"] as? Bool == false)
        #expect(strangeBody["user"] as? String == "")
        // The stand-ins' own client offers only http/1.1.
        #expect(body["proto"] as? String == "HTTP/1.1")
        // curl offers h2 and gets HTTP/2 (ALPN), a stream included; with --http1.1 it gets HTTP/1.1.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") {
            let dir = fx.root + "/curl"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try ca.write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
            try admin.certificatePEM.write(toFile: dir + "/a.crt", atomically: true, encoding: .utf8)
            try admin.keyPEM.write(toFile: dir + "/a.key", atomically: true, encoding: .utf8)
            let creds = ["--cacert", dir + "/ca.crt", "--cert", dir + "/a.crt", "--key", dir + "/a.key"]
            let h2 = try APIServerWireTests.curl(creds + ["--http2", "-w", "\n%{http_version}", url + "/who"])
            #expect(h2.out.hasSuffix("\n2") && h2.out.contains("\"proto\":\"HTTP/2.0\""), "\(h2)")
            #expect(h2.out.contains("\"user\":\"kubernetes-admin\"") && h2.out.contains("\"verified\":true"), "\(h2)")
            let h2stream = try APIServerWireTests.curl(creds + ["--http2", url + "/stream"])
            #expect(h2stream.out == "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n", "\(h2stream)")
            let h1 = try APIServerWireTests.curl(creds + ["--http1.1", "-w", "\n%{http_version}", url + "/who"])
            #expect(h1.out.hasSuffix("\n1.1") && h1.out.contains("\"proto\":\"HTTP/1.1\""), "\(h1)")
        }
        // Nothing listening: the connect error kubectl's message is built from.
        let closed = #expect(throws: HTTPError.self) {
            try HTTPClient.request("GET", "https://127.0.0.1:1/x", tls: identity)
        }
        if case .connect(_, _, let code)? = closed {
            #expect(code == ECONNREFUSED)
        } else {
            Issue.record("\(String(describing: closed))")
        }
    }
}
