import Foundation

/// etcd v3 through its HTTP/JSON gateway (`/v3/kv/range|put|deleterange`, `/v3/kv/txn`,
/// `/v3/cluster/member/add|list`); keys and values are base64 in the JSON, as the gateway wants.
public struct EtcdClient: Sendable {
    public var endpoints: [String]

    public init(endpoints: [String]) { self.endpoints = endpoints }

    public struct KV: Sendable {
        public var key: String
        public var value: Data
        public var modRevision: Int
    }

    func call(_ path: String, _ body: [String: Any]) throws -> [String: Any] {
        let data = try JSONSerialization.data(withJSONObject: body)
        var lastError: Error = HTTPError.io("no etcd endpoints")
        var timedOut = false
        for e in endpoints {
            do {
                // A member without quorum holds a request until etcd's own timeout; a member that is gone does
                // not answer at all. Both must fail well inside a client's 10 s, as the real API server does.
                let r = try HTTPClient.request("POST", e + path, body: data, timeout: 4, connectTimeout: 1)
                let obj = (try? JSONSerialization.jsonObject(with: r.body)) as? [String: Any] ?? [:]
                if r.status != 200 {
                    lastError = HTTPError.io("etcd \(path): \(obj["message"] ?? obj["error"] ?? r.status)")
                    continue
                }
                return obj
            } catch HTTPError.noAnswer {
                timedOut = true
            } catch {
                lastError = error
            }
        }
        // What kube-apiserver reports when etcd has lost quorum.
        if timedOut { throw HTTPError.io("etcdserver: request timed out") }
        throw lastError
    }

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    /// The key just after every key with this prefix.
    static func prefixEnd(_ s: String) -> String {
        var b = Array(s.utf8)
        while let last = b.last {
            if last < 0xff {
                b[b.count - 1] = last + 1
                return String(decoding: b, as: UTF8.self)
            }
            b.removeLast()
        }
        return "\0"
    }

    public func get(_ key: String) throws -> KV? {
        try range(key, prefix: false).first
    }

    public func range(_ key: String, prefix: Bool = true) throws -> [KV] {
        try rangeAt(key, prefix: prefix).kvs
    }

    /// The keys and the store's revision when they were read (a list's resourceVersion).
    public func rangeAt(_ key: String, prefix: Bool = true) throws -> (kvs: [KV], revision: Int) {
        var body: [String: Any] = ["key": Self.b64(key)]
        if prefix { body["range_end"] = Self.b64(Self.prefixEnd(key)) }
        let r = try call("/v3/kv/range", body)
        let revision = Int((r["header"] as? [String: Any])?["revision"] as? String ?? "") ?? 0
        let kvs: [KV] = ((r["kvs"] as? [[String: Any]]) ?? []).compactMap { kv in
            guard let k = (kv["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else { return nil }
            let v = (kv["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            let rev = Int(kv["mod_revision"] as? String ?? "") ?? 0
            return KV(key: String(decoding: k, as: UTF8.self), value: v, modRevision: rev)
        }
        return (kvs, revision)
    }

    public func put(_ key: String, _ value: Data) throws {
        _ = try call("/v3/kv/put", ["key": Self.b64(key), "value": value.base64EncodedString()])
    }

    /// Puts only if the key's mod revision is still `modRevision` (0: key must not exist). Returns success.
    public func putIf(_ key: String, _ value: Data, modRevision: Int) throws -> Bool {
        let compare: [String: Any] =
            modRevision == 0
            ? ["key": Self.b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"]
            : ["key": Self.b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": "\(modRevision)"]
        let r = try call(
            "/v3/kv/txn",
            [
                "compare": [compare],
                "success": [["request_put": ["key": Self.b64(key), "value": value.base64EncodedString()]]],
            ])
        return (r["succeeded"] as? Bool) ?? false
    }

    public func delete(_ key: String) throws {
        _ = try call("/v3/kv/deleterange", ["key": Self.b64(key)])
    }

    public func memberList() throws -> [[String: Any]] {
        (try call("/v3/cluster/member/list", [:])["members"] as? [[String: Any]]) ?? []
    }

    public func memberAdd(peerURL: String) throws -> [[String: Any]] {
        (try call("/v3/cluster/member/add", ["peerURLs": [peerURL]])["members"] as? [[String: Any]]) ?? []
    }

    public func healthy() -> Bool {
        (try? call("/v3/maintenance/status", [:])) != nil
    }
}
