import Foundation
import Yams

/// The four patch types of the Kubernetes API, by request Content-Type, with their semantics:
/// JSON merge patch (RFC 7386), strategic merge patch (lists with a merge key merge by that key, others are
/// replaced; `$patch`, `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList` directives), JSON patch
/// (RFC 6902) and server-side apply (here: the applied configuration merged strategically onto the live object;
/// field ownership is not tracked).
enum PatchType: Equatable {
    case merge, strategic, json, apply

    init?(contentType: String) {
        let base = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        switch base {
        case "application/merge-patch+json": self = .merge
        case "application/strategic-merge-patch+json": self = .strategic
        case "application/json-patch+json": self = .json
        case "application/apply-patch+yaml", "application/apply-patch+cbor": self = .apply
        // Older stand-in clients sent merge patches as plain JSON.
        case "application/json", "": self = .merge
        default: return nil
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func decode(_ body: Data) throws -> Any {
        if self == .apply {
            let text = String(decoding: body, as: UTF8.self)
            if let o = try? JSONSerialization.jsonObject(with: body) { return o }
            guard let y = try Yams.load(yaml: text) else { throw Failure(description: "empty apply configuration") }
            // Round-trip through JSON so numbers and maps have the JSON types the rest of the server uses.
            return try JSONSerialization.jsonObject(with: JSONSerialization.data(withJSONObject: y))
        }
        return try JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed])
    }

    func apply(_ patch: Any, to o: KObject) throws -> KObject {
        switch self {
        case .merge:
            guard let r = K.mergePatch(o, patch) as? KObject else {
                throw Failure(description: "patch is not an object")
            }
            return r
        case .strategic, .apply:
            guard patch is KObject else { throw Failure(description: "patch is not an object") }
            guard let r = StrategicMerge.merge(o, patch) as? KObject else {
                throw Failure(description: "patch removed the object")
            }
            return r
        case .json:
            guard let ops = patch as? [Any] else {
                throw Failure(description: "json patch is not a list of operations")
            }
            return try JSONPatch.apply(ops, to: o)
        }
    }
}

enum StrategicMerge {
    /// The merge key of a list field (Kubernetes' `patchMergeKey`); fields absent here are replaced whole.
    static func mergeKey(_ field: String, _ elements: [Any]) -> String? {
        switch field {
        case "conditions", "addresses": return "type"
        case "containers", "initContainers", "ephemeralContainers", "env", "volumes", "imagePullSecrets",
            "containerStatuses", "initContainerStatuses":
            return "name"
        case "volumeMounts": return "mountPath"
        case "volumeDevices": return "devicePath"
        case "ownerReferences": return "uid"
        case "hostAliases": return "ip"
        case "topologySpreadConstraints": return "topologyKey"
        case "ports":
            // Container ports merge by containerPort, Service ports by port.
            return elements.contains { ($0 as? KObject)?["containerPort"] != nil } ? "containerPort" : "port"
        default: return nil
        }
    }

    static let primitiveMergeLists: Set<String> = ["finalizers"]

    static func merge(_ target: Any?, _ patch: Any) -> Any? {
        guard let p = patch as? KObject else { return patch is NSNull ? nil : patch }
        switch p["$patch"] as? String {
        case "replace":
            var q = p
            q.removeValue(forKey: "$patch")
            return q
        case "delete": return nil
        default: break
        }
        var t = target as? KObject ?? [:]
        for (k, v) in p {
            if k == "$patch" || k == "$retainKeys" || k.hasPrefix("$setElementOrder/") { continue }
            if k.hasPrefix("$deleteFromPrimitiveList/") {
                let field = String(k.dropFirst("$deleteFromPrimitiveList/".count))
                let remove = (v as? [Any] ?? []).map { "\($0)" }
                t[field] = (t[field] as? [Any] ?? []).filter { !remove.contains("\($0)") }
                continue
            }
            if v is NSNull {
                t.removeValue(forKey: k)
            } else if let list = v as? [Any] {
                if let key = mergeKey(k, list + (t[k] as? [Any] ?? [])), list.allSatisfy({ $0 is KObject }) {
                    t[k] = mergeList(t[k] as? [Any] ?? [], list, key: key)
                } else if primitiveMergeLists.contains(k) {
                    var out = t[k] as? [Any] ?? []
                    for e in list where !out.contains(where: { "\($0)" == "\(e)" }) { out.append(e) }
                    t[k] = out
                } else {
                    t[k] = list.map { clean($0) }
                }
            } else if v is KObject {
                t[k] = merge(t[k], v)
            } else {
                t[k] = v
            }
        }
        return t
    }

    static func mergeList(_ old: [Any], _ patch: [Any], key: String) -> [Any] {
        var out = old
        for case let e as KObject in patch {
            let id = e[key].map { "\($0)" }
            let index = out.firstIndex { ($0 as? KObject)?[key].map { "\($0)" } == id }
            if e["$patch"] as? String == "delete" {
                if let index { out.remove(at: index) }
            } else if let index {
                out[index] = merge(out[index], e) ?? out[index]
            } else {
                out.append(clean(e))
            }
        }
        return out
    }

    /// Removes directives from a value that is stored as it is.
    static func clean(_ v: Any) -> Any {
        if let o = v as? KObject {
            var c: KObject = [:]
            for (k, x) in o where !k.hasPrefix("$") { c[k] = clean(x) }
            return c
        }
        if let a = v as? [Any] { return a.map(clean) }
        return v
    }
}

/// RFC 6902 JSON patch on the JSON tree.
enum JSONPatch {
    static func pointer(_ p: String) throws -> [String] {
        guard p.isEmpty || p.hasPrefix("/") else {
            throw PatchType.Failure(description: "invalid JSON pointer \"\(p)\"")
        }
        return p.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func get(_ v: Any, _ path: [String]) throws -> Any {
        guard let first = path.first else { return v }
        if let o = v as? KObject, let c = o[first] { return try get(c, Array(path.dropFirst())) }
        if let a = v as? [Any], let i = Int(first), a.indices.contains(i) {
            return try get(a[i], Array(path.dropFirst()))
        }
        throw PatchType.Failure(description: "doc is missing path: /\(path.joined(separator: "/"))")
    }

    /// Sets (`insert`: for lists, inserts) or removes (`value` nil) at the path.
    static func set(_ v: Any, _ path: [String], _ value: Any?, insert: Bool) throws -> Any {
        guard let first = path.first else { return value ?? NSNull() }
        let rest = Array(path.dropFirst())
        if var o = v as? KObject {
            if rest.isEmpty {
                if value == nil, o[first] == nil {
                    throw PatchType.Failure(description: "unable to remove nonexistent key: \(first): missing value")
                }
                o[first] = value
                return o
            }
            guard let c = o[first] else { throw PatchType.Failure(description: "doc is missing path: /\(first)") }
            o[first] = try set(c, rest, value, insert: insert)
            return o
        }
        if var a = v as? [Any] {
            let i = first == "-" ? a.count : Int(first) ?? -1
            if rest.isEmpty {
                if let value {
                    if insert {
                        guard i >= 0 && i <= a.count else {
                            throw PatchType.Failure(description: "index out of range: \(first)")
                        }
                        a.insert(value, at: i)
                    } else {
                        guard a.indices.contains(i) else {
                            throw PatchType.Failure(description: "index out of range: \(first)")
                        }
                        a[i] = value
                    }
                } else {
                    guard a.indices.contains(i) else {
                        throw PatchType.Failure(description: "index out of range: \(first)")
                    }
                    a.remove(at: i)
                }
                return a
            }
            guard a.indices.contains(i) else { throw PatchType.Failure(description: "index out of range: \(first)") }
            a[i] = try set(a[i], rest, value, insert: insert)
            return a
        }
        throw PatchType.Failure(description: "doc is missing path: /\(path.joined(separator: "/"))")
    }

    static func apply(_ ops: [Any], to o: KObject) throws -> KObject {
        var doc: Any = o
        for case let op as KObject in ops {
            let path = try pointer(op["path"] as? String ?? "")
            switch op["op"] as? String ?? "" {
            case "add": doc = try set(doc, path, op["value"] ?? NSNull(), insert: true)
            case "remove": doc = try set(doc, path, nil, insert: false)
            case "replace":
                _ = try get(doc, path)
                doc = try set(doc, path, op["value"] ?? NSNull(), insert: false)
            case "test":
                let have = try get(doc, path)
                if K.json([have]) != K.json([op["value"] ?? NSNull()]) {
                    throw PatchType.Failure(description: "testing value /\(path.joined(separator: "/")) failed")
                }
            case "move", "copy":
                let from = try pointer(op["from"] as? String ?? "")
                let value = try get(doc, from)
                if op["op"] as? String == "move" { doc = try set(doc, from, nil, insert: false) }
                doc = try set(doc, path, value, insert: true)
            default:
                throw PatchType.Failure(description: "Unexpected kind: \(op["op"] as? String ?? "")")
            }
        }
        guard let r = doc as? KObject else { throw PatchType.Failure(description: "patch replaced the object") }
        return r
    }
}

extension APIServerStandin {
    /// The checks of the real API's validation that clients meet most: names, label keys and values, taints.
    static func validate(_ r: KResource, _ o: KObject) -> (Int, Data)? {
        let name = K.name(o)
        var errors: [(String, String)] = []
        let dns1123 = try? NSRegularExpression(
            pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        func matches(_ re: NSRegularExpression?, _ s: String) -> Bool {
            re?.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) != nil
        }
        if name.isEmpty {
            if (K.meta(o)["generateName"] as? String ?? "").isEmpty {
                errors.append(("metadata.name: Required value", "name or generateName is required"))
            }
        } else if name.count > 253 || !matches(dns1123, name) {
            errors.append(
                (
                    "metadata.name: Invalid value: \"\(name)\"",
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                ))
        }
        let labelValue = try? NSRegularExpression(pattern: "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
        for (k, v) in K.labels(o) where v.count > 63 || !matches(labelValue, v) {
            errors.append(
                (
                    "metadata.labels: Invalid value: \"\(v)\"",
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                ))
            _ = k
        }
        if r.plural == "nodes" {
            for (i, t) in (K.spec(o)["taints"] as? [KObject] ?? []).enumerated() {
                let effect = t["effect"] as? String ?? ""
                if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(effect) {
                    errors.append(
                        (
                            "spec.taints[\(i)].effect: Unsupported value: \"\(effect)\"",
                            "supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""
                        ))
                }
            }
        }
        guard !errors.isEmpty else { return nil }
        let text = errors.map { "\($0.0): \($0.1)" }
        let message =
            "\(r.kind) \"\(name)\" is invalid: "
            + (text.count == 1 ? text[0] : "[" + text.joined(separator: ", ") + "]")
        return status(
            422, "Invalid", message,
            details: [
                "name": name, "group": r.group, "kind": r.kind,
                "causes": errors.map {
                    ["reason": "FieldValueInvalid", "message": $0.1, "field": String($0.0.split(separator: ":")[0])]
                },
            ])
    }

    /// A kubelet client certificate request is approved and signed at once (kube-controller-manager's
    /// csrapproving and csrsigning controllers for `kubernetes.io/kube-apiserver-client-kubelet`).
    func signCSR(_ csr: KObject) -> KObject {
        var o = csr
        guard let pki, K.spec(o)["signerName"] as? String == "kubernetes.io/kube-apiserver-client-kubelet",
            let request = (K.spec(o)["request"] as? String).flatMap({ Data(base64Encoded: $0) })
        else { return o }
        do {
            let cert = try pki.signClientCSR(String(decoding: request, as: UTF8.self))
            let now = K.timestamp()
            o["status"] =
                [
                    "certificate": Data(cert.utf8).base64EncodedString(),
                    "conditions": [
                        [
                            "type": "Approved", "status": "True", "reason": "AutoApproved",
                            "message": "Auto approving kubelet client certificate after SubjectAccessReview.",
                            "lastUpdateTime": now, "lastTransitionTime": now,
                        ]
                    ],
                ] as KObject
        } catch {
            o["status"] =
                [
                    "conditions": [
                        ["type": "Failed", "status": "True", "reason": "SignerFailed", "message": "\(error)"]
                    ]
                ] as KObject
        }
        return o
    }
}
