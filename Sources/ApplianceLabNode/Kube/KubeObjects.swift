import Foundation

/// Kubernetes objects are kept as JSON dictionaries (what the apiserver stores and kubectl prints); these
/// helpers read and write the few fields the stand-ins act on.
public typealias KObject = [String: Any]

public enum K {
    public static func meta(_ o: KObject) -> KObject { o["metadata"] as? KObject ?? [:] }
    public static func name(_ o: KObject) -> String { meta(o)["name"] as? String ?? "" }
    public static func namespace(_ o: KObject) -> String { meta(o)["namespace"] as? String ?? "" }
    public static func labels(_ o: KObject) -> [String: String] { meta(o)["labels"] as? [String: String] ?? [:] }
    public static func annotations(_ o: KObject) -> [String: String] {
        meta(o)["annotations"] as? [String: String] ?? [:]
    }
    public static func spec(_ o: KObject) -> KObject { o["spec"] as? KObject ?? [:] }
    /// A Secret's value for `key`: `data` (base64) first, else `stringData` (the lab's API server stores a written
    /// `stringData` as it came, without folding it into `data`).
    public static func secretValue(_ secret: KObject, _ key: String) -> Data? {
        ((secret["data"] as? [String: String])?[key]).flatMap { Data(base64Encoded: $0) }
            ?? ((secret["stringData"] as? [String: String])?[key]).map { Data($0.utf8) }
    }
    public static func status(_ o: KObject) -> KObject { o["status"] as? KObject ?? [:] }

    public static func get(_ o: Any?, _ path: String) -> Any? {
        var cur = o
        for p in path.split(separator: ".") {
            if let i = Int(p), let a = cur as? [Any] {
                cur = i < a.count ? a[i] : nil
            } else {
                cur = (cur as? KObject)?[String(p)]
            }
        }
        return cur
    }

    public static func set(_ o: inout KObject, _ path: [String], _ value: Any?) {
        guard let first = path.first else { return }
        if path.count == 1 {
            o[first] = value
            return
        }
        var child = o[first] as? KObject ?? [:]
        set(&child, Array(path.dropFirst()), value)
        o[first] = child
    }

    /// RFC 7386 JSON merge patch.
    public static func mergePatch(_ target: Any?, _ patch: Any) -> Any? {
        guard let p = patch as? KObject else { return patch is NSNull ? nil : patch }
        var t = target as? KObject ?? [:]
        for (k, v) in p {
            if v is NSNull { t.removeValue(forKey: k) } else { t[k] = mergePatch(t[k], v) }
        }
        return t
    }

    public static func json(_ o: Any, pretty: Bool = false) -> Data {
        var opts: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { opts.insert(.prettyPrinted) }
        return (try? JSONSerialization.data(withJSONObject: o, options: opts)) ?? Data("{}".utf8)
    }

    public static func parse(_ d: Data) -> KObject? { (try? JSONSerialization.jsonObject(with: d)) as? KObject }

    public static func timestamp(_ d: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    public static func date(_ s: String?) -> Date? {
        guard let s else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s)
    }

    public static func uid() -> String { UUID().uuidString.lowercased() }

    /// Matches a label selector: `{"matchLabels": {...}, "matchExpressions": [...]}`.
    public static func matches(selector: KObject?, labels: [String: String]) -> Bool {
        guard let selector else { return false }
        for (k, v) in selector["matchLabels"] as? [String: String] ?? [:] where labels[k] != v { return false }
        for e in selector["matchExpressions"] as? [KObject] ?? [] {
            let key = e["key"] as? String ?? ""
            let values = e["values"] as? [String] ?? []
            switch e["operator"] as? String ?? "" {
            case "In": if !values.contains(labels[key] ?? "\u{0}") { return false }
            case "NotIn": if let l = labels[key], values.contains(l) { return false }
            case "Exists": if labels[key] == nil { return false }
            case "DoesNotExist": if labels[key] != nil { return false }
            default: return false
            }
        }
        return true
    }

    /// `key=value,key2!=v,key3` label selector strings (kubectl -l).
    public static func matches(selectorString: String, labels: [String: String]) -> Bool {
        for term in selectorString.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
        where !term.isEmpty {
            if let r = term.range(of: "!=") {
                if labels[String(term[..<r.lowerBound])] == String(term[r.upperBound...]) { return false }
            } else if let r = term.range(of: "==") ?? term.range(of: "=") {
                if labels[String(term[..<r.lowerBound])] != String(term[r.upperBound...]) { return false }
            } else if term.hasPrefix("!") {
                if labels[String(term.dropFirst())] != nil { return false }
            } else if labels[term] == nil {
                return false
            }
        }
        return true
    }

    /// Whether the pod's tolerations tolerate the taint.
    public static func tolerates(_ tolerations: [KObject], _ taint: KObject) -> Bool {
        let key = taint["key"] as? String ?? ""
        let value = taint["value"] as? String ?? ""
        let effect = taint["effect"] as? String ?? ""
        for t in tolerations {
            let te = t["effect"] as? String ?? ""
            if !te.isEmpty && te != effect { continue }
            let tk = t["key"] as? String ?? ""
            let op = t["operator"] as? String ?? "Equal"
            if op == "Exists" {
                if tk.isEmpty || tk == key { return true }
            } else if tk == key && (t["value"] as? String ?? "") == value {
                return true
            }
        }
        return false
    }

    /// Quantities: "4", "500m", "16Gi", "1024Ki" → base units (cores or bytes); milli-precision.
    public static func quantity(_ v: Any?) -> Double {
        if let n = v as? Double { return n }
        if let n = v as? Int { return Double(n) }
        guard let s = v as? String, !s.isEmpty else { return 0 }
        let suffixes: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776), ("m", 0.001),
            ("k", 1000),
            ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1e12),
        ]
        for (suf, mul) in suffixes where s.hasSuffix(suf) {
            return (Double(s.dropLast(suf.count)) ?? 0) * mul
        }
        return Double(s) ?? 0
    }

    public static func age(_ created: String?, now: Date = Date()) -> String {
        guard let d = date(created) else { return "<unknown>" }
        let s = max(0, Int(now.timeIntervalSince(d)))
        if s < 120 { return "\(s)s" }
        if s < 600 { return "\(s / 60)m\(s % 60 == 0 ? "" : "\(s % 60)s")" }
        if s < 3 * 3600 { return "\(s / 60)m" }
        if s < 48 * 3600 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }

    public static func isReady(node: KObject) -> Bool {
        conditionStatus(node, "Ready") == "True"
    }

    public static func conditionStatus(_ o: KObject, _ type: String) -> String? {
        (status(o)["conditions"] as? [KObject] ?? []).first { $0["type"] as? String == type }?["status"] as? String
    }

    public static func controller(_ pod: KObject) -> KObject? {
        (meta(pod)["ownerReferences"] as? [KObject] ?? []).first { $0["controller"] as? Bool == true }
    }
}

/// Resource kinds the apiserver stand-in serves.
public struct KResource: Sendable {
    public var plural: String
    public var kind: String
    public var group: String  // "" for core
    public var version: String
    public var namespaced: Bool
    public var shortNames: [String]

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    public var singular: String { kind.lowercased() }

    public static let nodes = all[0], namespaces = all[1], pods = all[2], configmaps = all[3], secrets = all[4]
    public static let daemonsets = all[6], deployments = all[7], pdbs = all[8], jobs = all[9], leases = all[10]

    public static let all: [KResource] = [
        .init(plural: "nodes", kind: "Node", group: "", version: "v1", namespaced: false, shortNames: ["no", "node"]),
        .init(
            plural: "namespaces", kind: "Namespace", group: "", version: "v1", namespaced: false,
            shortNames: ["ns", "namespace"]),
        .init(plural: "pods", kind: "Pod", group: "", version: "v1", namespaced: true, shortNames: ["po", "pod"]),
        .init(
            plural: "configmaps", kind: "ConfigMap", group: "", version: "v1", namespaced: true,
            shortNames: ["cm", "configmap"]),
        .init(plural: "secrets", kind: "Secret", group: "", version: "v1", namespaced: true, shortNames: ["secret"]),
        .init(
            plural: "services", kind: "Service", group: "", version: "v1", namespaced: true,
            shortNames: ["svc", "service"]),
        .init(
            plural: "daemonsets", kind: "DaemonSet", group: "apps", version: "v1", namespaced: true,
            shortNames: ["ds", "daemonset"]),
        .init(
            plural: "deployments", kind: "Deployment", group: "apps", version: "v1", namespaced: true,
            shortNames: ["deploy", "deployment"]),
        .init(
            plural: "poddisruptionbudgets", kind: "PodDisruptionBudget", group: "policy", version: "v1",
            namespaced: true, shortNames: ["pdb", "poddisruptionbudget"]),
        .init(plural: "jobs", kind: "Job", group: "batch", version: "v1", namespaced: true, shortNames: ["job"]),
        .init(
            plural: "leases", kind: "Lease", group: "coordination.k8s.io", version: "v1", namespaced: true,
            shortNames: ["lease"]),
        // Stored and served, no controller: what CNI and operator manifests create.
        .init(
            plural: "serviceaccounts", kind: "ServiceAccount", group: "", version: "v1", namespaced: true,
            shortNames: ["sa", "serviceaccount"]),
        .init(
            plural: "clusterroles", kind: "ClusterRole", group: "rbac.authorization.k8s.io", version: "v1",
            namespaced: false, shortNames: ["clusterrole"]),
        .init(
            plural: "clusterrolebindings", kind: "ClusterRoleBinding", group: "rbac.authorization.k8s.io",
            version: "v1", namespaced: false, shortNames: ["clusterrolebinding"]),
        .init(
            plural: "roles", kind: "Role", group: "rbac.authorization.k8s.io", version: "v1", namespaced: true,
            shortNames: ["role"]),
        .init(
            plural: "rolebindings", kind: "RoleBinding", group: "rbac.authorization.k8s.io", version: "v1",
            namespaced: true, shortNames: ["rolebinding"]),
        csrs,
        .init(
            plural: "customresourcedefinitions", kind: "CustomResourceDefinition", group: "apiextensions.k8s.io",
            version: "v1", namespaced: false, shortNames: ["crd", "crds", "customresourcedefinition"]),
        .init(
            plural: "statefulsets", kind: "StatefulSet", group: "apps", version: "v1", namespaced: true,
            shortNames: ["sts", "statefulset"]),
        .init(
            plural: "events", kind: "Event", group: "", version: "v1", namespaced: true, shortNames: ["ev", "event"]),
        // Stored and served, no controller: what the platform's charts and objects create (issue 13).
        .init(
            plural: "storageclasses", kind: "StorageClass", group: "storage.k8s.io", version: "v1",
            namespaced: false, shortNames: ["sc", "storageclass"]),
        .init(
            plural: "persistentvolumeclaims", kind: "PersistentVolumeClaim", group: "", version: "v1",
            namespaced: true, shortNames: ["pvc", "persistentvolumeclaim"]),
        .init(
            plural: "ingressclasses", kind: "IngressClass", group: "networking.k8s.io", version: "v1",
            namespaced: false, shortNames: ["ingressclass"]),
        .init(
            plural: "ingresses", kind: "Ingress", group: "networking.k8s.io", version: "v1", namespaced: true,
            shortNames: ["ing", "ingress"]),
        .init(
            plural: "persistentvolumes", kind: "PersistentVolume", group: "", version: "v1", namespaced: false,
            shortNames: ["pv", "persistentvolume"]),
        .init(
            plural: "csidrivers", kind: "CSIDriver", group: "storage.k8s.io", version: "v1", namespaced: false,
            shortNames: ["csidriver"]),
        // KAI Scheduler's custom resources: served only while their CRD is stored (`APIServerStandin.route`).
        queues, podgroups,
        // CloudNativePG's Cluster: served only while its CRD is stored.
        clusters,
    ]

    public static let events = all.first { $0.plural == "events" } ?? jobs
    public static let services = all.first { $0.plural == "services" } ?? jobs
    public static let persistentvolumes = all.first { $0.plural == "persistentvolumes" } ?? jobs
    public static let persistentvolumeclaims = all.first { $0.plural == "persistentvolumeclaims" } ?? jobs
    public static let storageclasses = all.first { $0.plural == "storageclasses" } ?? jobs
    public static let queues = KResource(
        plural: "queues", kind: "Queue", group: "scheduling.run.ai", version: "v2", namespaced: false,
        shortNames: ["queue"])
    public static let podgroups = KResource(
        plural: "podgroups", kind: "PodGroup", group: "scheduling.run.ai", version: "v2alpha2", namespaced: true,
        shortNames: ["pg", "podgroup"])

    public static let clusters = KResource(
        plural: "clusters", kind: "Cluster", group: "postgresql.cnpg.io", version: "v1", namespaced: true,
        shortNames: ["cluster"])

    /// The CRD that must be stored for the API to serve this resource (nil: built in).
    public var customResourceDefinition: String? {
        group == "scheduling.run.ai" || group == "postgresql.cnpg.io" ? "\(plural).\(group)" : nil
    }

    public static let csrs = KResource(
        plural: "certificatesigningrequests", kind: "CertificateSigningRequest", group: "certificates.k8s.io",
        version: "v1", namespaced: false, shortNames: ["csr", "certificatesigningrequest"])

    /// The subresources the API serves for this resource (discovery lists them).
    public var subresources: [String] {
        switch plural {
        case "pods": return ["status", "eviction", "binding"]
        case "nodes", "namespaces", "daemonsets", "poddisruptionbudgets", "jobs", "statefulsets": return ["status"]
        case "deployments": return ["status", "scale"]
        case "certificatesigningrequests": return ["status", "approval"]
        default: return []
        }
    }

    public static func named(_ s: String) -> KResource? {
        let n = s.lowercased().split(separator: ".").first.map(String.init) ?? s
        return all.first { $0.plural == n || $0.shortNames.contains(n) || $0.kind.lowercased() == n }
    }

    public static func forKind(_ kind: String) -> KResource? { all.first { $0.kind == kind } }

    public func path(namespace: String?, name: String? = nil) -> String {
        var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let ns = namespace { p += "/namespaces/\(ns)" }
        p += "/\(plural)"
        if let name { p += "/\(name)" }
        return p
    }
}
