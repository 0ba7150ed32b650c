import Foundation

/// The stand-ins' client of the API server (HTTPS to the host:port of the kubeconfig's server, verifying it
/// against the kubeconfig's CA and presenting its client certificate or bearer token, as client-go does).
public struct KubeClient: Sendable {
    public var server: String  // "10.0.0.1:6443"
    public var tls: TLSClientIdentity
    public var token: String?

    /// `tls` nil: no server verification and no client certificate (anonymous, or `token` only).
    public init(server: String, tls: TLSClientIdentity = .insecure, token: String? = nil) {
        var s = server
        for p in ["https://", "http://"] where s.hasPrefix(p) { s = String(s.dropFirst(p.count)) }
        while s.hasSuffix("/") { s.removeLast() }
        self.server = s
        self.tls = tls
        self.token = token
    }

    /// The client a kubeconfig describes (current context); `server` overrides its server's host:port.
    public init(kubeconfig text: String, server override: String? = nil) throws {
        guard let cred = Kubeconfig.credentials(text) else {
            throw KubeClient.Failure(
                status: 0, message: "invalid configuration: no configuration has been provided", reason: "")
        }
        self.init(
            server: override ?? cred.server,
            tls: TLSClientIdentity(caPEM: cred.caPEM, certificatePEM: cred.certificatePEM, keyPEM: cred.keyPEM),
            token: cred.token)
    }

    public struct Failure: Error, CustomStringConvertible {
        public var status: Int
        public var message: String
        public var reason: String
        public var description: String { message }
    }

    /// The whole answer (status, headers, body bytes), for `kubectl get --raw`.
    public func response(_ method: String, _ path: String, timeout: Double = 10) throws -> HTTPResponse {
        try HTTPClient.request(
            method, "https://\(server)\(path)",
            headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [], timeout: timeout, tls: tls)
    }

    public func raw(_ method: String, _ path: String, _ body: Any? = nil, timeout: Double = 10) throws -> (Int, KObject)
    {
        let data = body.map { K.json($0) }
        let r = try HTTPClient.request(
            method, "https://\(server)\(path)", body: data,
            contentType: method == "PATCH" ? "application/merge-patch+json" : "application/json",
            headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [], timeout: timeout, tls: tls)
        return (r.status, K.parse(r.body) ?? [:])
    }

    @discardableResult
    public func call(_ method: String, _ path: String, _ body: Any? = nil) throws -> KObject {
        let (status, obj) = try raw(method, path, body)
        guard (200..<300).contains(status) else {
            throw Failure(
                status: status, message: obj["message"] as? String ?? "status \(status)",
                reason: obj["reason"] as? String ?? "")
        }
        return obj
    }

    public func get(_ r: KResource, _ ns: String?, _ name: String) throws -> KObject? {
        let (status, obj) = try raw("GET", r.path(namespace: ns, name: name))
        if status == 404 { return nil }
        guard status == 200 else {
            throw Failure(status: status, message: obj["message"] as? String ?? "", reason: "")
        }
        return obj
    }

    public func list(_ r: KResource, _ ns: String?, query: String = "") throws -> [KObject] {
        let obj = try call("GET", r.path(namespace: ns) + (query.isEmpty ? "" : "?" + query))
        return obj["items"] as? [KObject] ?? []
    }

    public func create(_ r: KResource, _ ns: String?, _ o: KObject) throws -> KObject {
        try call("POST", r.path(namespace: ns), o)
    }

    /// Creates, or replaces the existing object's content (keeping nothing but identity).
    public func apply(_ r: KResource, _ ns: String?, _ o: KObject) throws -> (KObject, created: Bool) {
        let name = K.name(o)
        if try get(r, ns, name) != nil {
            var patch = o
            patch.removeValue(forKey: "status")
            return (try call("PATCH", r.path(namespace: ns, name: name), patch), false)
        }
        return (try create(r, ns, o), true)
    }

    public func patch(_ r: KResource, _ ns: String?, _ name: String, _ patch: Any, dryRun: Bool = false) throws
        -> KObject
    {
        try call("PATCH", r.path(namespace: ns, name: name) + (dryRun ? "?dryRun=All" : ""), patch)
    }

    public func delete(_ r: KResource, _ ns: String?, _ name: String, dryRun: Bool = false) throws {
        try call("DELETE", r.path(namespace: ns, name: name) + (dryRun ? "?dryRun=All" : ""))
    }

    public func healthy() -> Bool {
        (try? HTTPClient.request("GET", "https://\(server)/livez", timeout: 3, tls: .insecure).status) == 200
    }
}
