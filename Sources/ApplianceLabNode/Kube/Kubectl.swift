import Foundation
import Yams

/// The `kubectl` stand-in: talks to the apiserver stand-in named by the kubeconfig (`--kubeconfig`,
/// `$KUBECONFIG`, `~/.kube/config`) and prints what kubectl prints for: get, describe (nodes, pods), label,
/// annotate, taint, cordon, uncordon, drain, delete, apply -f, rollout status, wait, version.
public struct Kubectl: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    struct Err: Error { var text: String }

    func client(_ f: Flags) throws -> KubeClient {
        var candidates: [String] = []
        if let k = f.value("kubeconfig") {
            candidates = [k]
        } else if let k = context.environment["KUBECONFIG"], !k.isEmpty {
            candidates = k.split(separator: ":").map(String.init)
        } else {
            candidates = [(context.environment["HOME"] ?? "/root") + "/.kube/config"]
        }
        for c in candidates {
            if let text = context.read(c)
                ?? FileManager.default.contents(atPath: c).map({ String(decoding: $0, as: UTF8.self) }),
                // `--server` (`-s`) overrides the kubeconfig's server, with its credentials, as kubectl does.
                let c = try? KubeClient(kubeconfig: text, server: f.value("server") ?? f.value("s"))
            {
                return c
            }
            if f.value("kubeconfig") != nil { throw Err(text: "error: stat \(c): no such file or directory") }
        }
        throw Err(
            text: "The connection to the server localhost:8080 was refused - did you specify the right host or port?")
    }

    func connectionError(_ e: Error, _ c: KubeClient) -> String {
        if case HTTPError.connect(_, _, let code) = e, code == ECONNREFUSED || code == ETIMEDOUT || code == EHOSTUNREACH
        {
            return "The connection to the server \(c.server) was refused - did you specify the right host or port?"
        }
        if let f = e as? KubeClient.Failure {
            return "Error from server (\(f.reason.isEmpty ? "InternalError" : f.reason)): \(f.message)"
        }
        return "Unable to connect to the server: \(e)"
    }

    /// Global flags that take a value, which kubectl accepts before the verb too.
    static let globalValued: Set<String> = [
        "kubeconfig", "namespace", "n", "context", "cluster", "user", "request-timeout", "server", "s", "token",
        "cache-dir",
    ]

    public func run(_ args: [String]) -> ToolOutput {
        // `kubectl --kubeconfig=F get nodes` and `kubectl -n NS get pods`: flags before the verb are global.
        var globals: [String] = []
        var i = 0
        while i < args.count, args[i].hasPrefix("-"), args[i].count > 1 {
            let name = String(args[i].drop { $0 == "-" })
            globals.append(args[i])
            if !name.contains("="), Self.globalValued.contains(name), i + 1 < args.count {
                globals.append(args[i + 1])
                i += 1
            }
            i += 1
        }
        guard i < args.count else {
            return .fail(1, stderr: "kubectl controls the Kubernetes cluster manager (lab stand-in).")
        }
        let verb = args[i]
        let f = Flags(globals + Array(args[(i + 1)...]))
        if verb == "version" && f.has("client") {
            return .ok(
                "Client Version: \(InstalledVersions.of("kubectl", context: context))\nKustomize Version: v5.7.1\n")
        }
        let c: KubeClient
        do { c = try client(f) } catch let e as Err { return .fail(1, stderr: e.text) } catch {
            return .fail(1, stderr: "\(error)")
        }
        do {
            switch verb {
            case "get": return try get(c, f)
            case "describe": return try describe(c, f)
            case "label", "annotate": return try label(c, f, annotate: verb == "annotate")
            case "taint": return try taint(c, f)
            case "cordon", "uncordon": return try cordon(c, f, on: verb == "cordon")
            case "drain": return try Drain(kubectl: self, client: c, flags: f).run()
            case "delete": return try delete(c, f)
            case "create" where f.value("raw") != nil: return try createRaw(c, f)
            case "apply", "create": return try apply(c, f, create: verb == "create")
            case "rollout": return try rollout(c, f)
            case "wait": return try wait(c, f)
            case "version":
                let v = try c.call("GET", "/version")
                return .ok(
                    "Client Version: \(InstalledVersions.of("kubectl", context: context))\nKustomize Version: v5.7.1\nServer Version: \(v["gitVersion"] as? String ?? "")\n"
                )
            default:
                return .fail(
                    1,
                    stderr:
                        "error: unknown command \"\(verb)\" for \"kubectl\"\n\nDid you mean this?\n\tget\n\nRun 'kubectl --help' for usage."
                )
            }
        } catch let e as Err {
            return .fail(1, stderr: e.text)
        } catch {
            return .fail(1, stderr: connectionError(error, c))
        }
    }

    func namespace(_ f: Flags) -> String { f.value("namespace") ?? f.value("n") ?? "default" }
    func allNamespaces(_ f: Flags) -> Bool { f.has("all-namespaces") || f.has("A") }

    /// "nodes", "nodes/x", "node x y" → (resource, names)
    func targets(_ positional: [String]) throws -> (KResource, [String]) {
        guard let first = positional.first else {
            throw Err(
                text:
                    "error: You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources."
            )
        }
        if first.contains("/") {
            let p = first.split(separator: "/").map(String.init)
            guard let r = KResource.named(p[0]) else {
                throw Err(text: "error: the server doesn't have a resource type \"\(p[0])\"")
            }
            return (r, [p[1]] + positional.dropFirst().compactMap { $0.split(separator: "/").last.map(String.init) })
        }
        guard let r = KResource.named(first) else {
            throw Err(text: "error: the server doesn't have a resource type \"\(first)\"")
        }
        return (r, Array(positional.dropFirst()))
    }

    func ref(_ r: KResource, _ name: String) -> String {
        "\(r.singular)\(r.group.isEmpty ? "" : "." + r.group)/\(name)"
    }

    // MARK: get

    func fetch(_ c: KubeClient, _ r: KResource, _ names: [String], _ f: Flags) throws -> [KObject] {
        let ns: String? = r.namespaced ? (allNamespaces(f) ? nil : namespace(f)) : nil
        if names.isEmpty {
            var q: [String] = []
            if let l = f.value("selector") ?? f.value("l") {
                q.append("labelSelector=" + (l.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? l))
            }
            if let fs = f.value("field-selector") {
                q.append("fieldSelector=" + (fs.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? fs))
            }
            return try c.list(r, ns, query: q.joined(separator: "&")).sorted {
                (K.namespace($0), K.name($0)) < (K.namespace($1), K.name($1))
            }
        }
        var out: [KObject] = []
        var missing: [String] = []
        for n in names {
            if let o = try c.get(r, ns, n) {
                out.append(o)
            } else {
                missing.append("Error from server (NotFound): \(r.plural) \"\(n)\" not found")
            }
        }
        if !missing.isEmpty && out.isEmpty { throw Err(text: missing.joined(separator: "\n")) }
        return out
    }

    func get(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        if let path = f.value("raw") { return try getRaw(c, path, f) }
        if let file = f.value("filename") ?? f.value("f") { return try getFile(c, file, f) }
        let (r, names) = try targets(f.positional)
        let items = try fetch(c, r, names, f)
        let output = f.value("output") ?? f.value("o") ?? ""
        if output == "json" {
            if names.count == 1, let one = items.first {
                return .ok(String(decoding: K.json(one, pretty: true), as: UTF8.self) + "\n")
            }
            return .ok(
                String(
                    decoding: K.json(
                        ["apiVersion": "v1", "kind": "List", "metadata": ["resourceVersion": ""], "items": items],
                        pretty: true), as: UTF8.self) + "\n")
        }
        if output == "yaml" {
            let obj: Any =
                names.count == 1 && items.count == 1
                ? items[0] : ["apiVersion": "v1", "kind": "List", "metadata": ["resourceVersion": ""], "items": items]
            let y = (try? Yams.dump(object: JSONSerialization.jsonObject(with: K.json(obj)))) ?? ""
            return .ok(y)
        }
        if output == "name" { return .ok(items.map { ref(r, K.name($0)) + "\n" }.joined()) }
        if output.hasPrefix("jsonpath=") {
            let tpl = String(output.dropFirst(9)).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            let root: Any =
                names.count == 1 && items.count == 1 ? items[0] : ["apiVersion": "v1", "kind": "List", "items": items]
            return .ok(JSONPath.render(tpl, root))
        }
        if items.isEmpty {
            let ns = r.namespaced && !allNamespaces(f) ? " in \(namespace(f)) namespace" : ""
            return ToolOutput(stderr: "No resources found\(ns).\n")
        }
        return .ok(
            Table.render(
                r, items, wide: output == "wide", withNamespace: allNamespaces(f) && r.namespaced,
                headers: !f.has("no-headers")))
    }

    /// `get -f FILE`: each object the file describes, as its `kind.group/name` (`-o name` and the default; `-o
    /// json` gives a List); each missing one as kubectl words it on stderr, exit 1.
    func getFile(_ c: KubeClient, _ file: String, _ f: Flags) throws -> ToolOutput {
        var found: [(KResource, KObject)] = []
        var missing: [String] = []
        for o in try documents(file) {
            guard let r = KResource.forKind(o["kind"] as? String ?? "") else {
                missing.append(
                    "error: resource mapping not found for name: \"\(K.name(o))\" namespace: \"\(K.namespace(o))\" from \"\(file)\": no matches for kind \"\(o["kind"] as? String ?? "")\" in version \"\(o["apiVersion"] as? String ?? "")\""
                )
                continue
            }
            let ns: String? = r.namespaced ? (K.namespace(o).isEmpty ? namespace(f) : K.namespace(o)) : nil
            if let cur = try c.get(r, ns, K.name(o)) {
                found.append((r, cur))
            } else {
                missing.append(
                    "Error from server (NotFound): \(r.plural)\(r.group.isEmpty ? "" : "." + r.group) \"\(K.name(o))\" not found"
                )
            }
        }
        let output = f.value("output") ?? f.value("o") ?? ""
        let stdout =
            output == "json"
            ? String(
                decoding: K.json(
                    ["apiVersion": "v1", "kind": "List", "metadata": ["resourceVersion": ""], "items": found.map(\.1)],
                    pretty: true), as: UTF8.self) + "\n"
            : found.map { ref($0.0, K.name($0.1)) + "\n" }.joined()
        if missing.isEmpty { return .ok(stdout) }
        return ToolOutput(stdout: stdout, stderr: missing.joined(separator: "\n") + "\n", exitCode: 1)
    }

    /// `get --raw PATH`: the body as the server sent it; a failure as kubectl words it (the Status's reason and
    /// message, or the body of a non-Status answer such as a failing /readyz).
    func getRaw(_ c: KubeClient, _ path: String, _ f: Flags) throws -> ToolOutput {
        guard path.hasPrefix("/") else {
            throw Err(text: "error: --raw must be a relative URL (starting with /), got \"\(path)\"")
        }
        if !f.positional.isEmpty {
            throw Err(text: "error: arguments may not be passed when --raw is specified")
        }
        let r = try c.response("GET", path)
        if (200..<300).contains(r.status) { return .ok(r.text) }
        if let s = K.parse(r.body), s["kind"] as? String == "Status" {
            let reason = s["reason"] as? String ?? ""
            throw Err(
                text:
                    "Error from server (\(reason.isEmpty ? "InternalError" : reason)): \(s["message"] as? String ?? "status \(r.status)")"
            )
        }
        throw Err(
            text:
                "Error from server (InternalError): an error on the server (\"\(r.text)\") has prevented the request from succeeding"
        )
    }

    func describe(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        let (r, names) = try targets(f.positional)
        let items = try fetch(c, r, names, f)
        var out = ""
        for o in items {
            out += "Name:               \(K.name(o))\n"
            if r.namespaced { out += "Namespace:          \(K.namespace(o))\n" }
            let roles = K.labels(o).keys.filter { $0.hasPrefix("node-role.kubernetes.io/") }.map {
                String($0.dropFirst(24))
            }.sorted()
            if r.kind == "Node" {
                out += "Roles:              \(roles.isEmpty ? "<none>" : roles.joined(separator: ","))\n"
            }
            let labels = K.labels(o).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            out +=
                "Labels:             \(labels.first ?? "<none>")\n"
                + labels.dropFirst().map { "                    \($0)\n" }.joined()
            out +=
                "Annotations:        "
                + (K.annotations(o).isEmpty
                    ? "<none>\n"
                    : K.annotations(o).sorted { $0.key < $1.key }.enumerated().map {
                        ($0.offset == 0 ? "" : "                    ") + "\($0.element.key): \($0.element.value)\n"
                    }.joined())
            out += "CreationTimestamp:  \(K.meta(o)["creationTimestamp"] as? String ?? "")\n"
            if r.kind == "Node" {
                let taints = (K.spec(o)["taints"] as? [KObject] ?? []).map {
                    "\($0["key"] as? String ?? "")\(($0["value"] as? String).map { "=" + $0 } ?? ""):\($0["effect"] as? String ?? "")"
                }
                out +=
                    "Taints:             \(taints.first ?? "<none>")\n"
                    + taints.dropFirst().map { "                    \($0)\n" }.joined()
                out += "Unschedulable:      \(K.spec(o)["unschedulable"] as? Bool ?? false)\n"
                out +=
                    "Conditions:\n  Type             Status  LastHeartbeatTime                 LastTransitionTime                Reason                       Message\n  ----             ------  -----------------                 ------------------                ------                       -------\n"
                for cnd in K.status(o)["conditions"] as? [KObject] ?? [] {
                    out +=
                        "  " + (cnd["type"] as? String ?? "").padding(toLength: 17, withPad: " ", startingAt: 0)
                        + (cnd["status"] as? String ?? "").padding(toLength: 8, withPad: " ", startingAt: 0)
                        + (cnd["lastHeartbeatTime"] as? String ?? "").padding(toLength: 34, withPad: " ", startingAt: 0)
                        + (cnd["lastTransitionTime"] as? String ?? "").padding(
                            toLength: 34, withPad: " ", startingAt: 0)
                        + (cnd["reason"] as? String ?? "").padding(toLength: 29, withPad: " ", startingAt: 0)
                        + (cnd["message"] as? String ?? "") + "\n"
                }
                out +=
                    "Addresses:\n"
                    + (K.status(o)["addresses"] as? [KObject] ?? []).map {
                        "  \($0["type"] as? String ?? ""):  \($0["address"] as? String ?? "")\n"
                    }.joined()
                for (title, key) in [("Capacity", "capacity"), ("Allocatable", "allocatable")] {
                    out += "\(title):\n"
                    for (k, v) in (K.status(o)[key] as? KObject ?? [:]).sorted(by: { $0.key < $1.key }) {
                        out += "  " + (k + ":").padding(toLength: 25, withPad: " ", startingAt: 0) + "\(v)\n"
                    }
                }
                let info = K.status(o)["nodeInfo"] as? KObject ?? [:]
                out += "System Info:\n"
                for (label, key) in [
                    ("Machine ID", "machineID"), ("System UUID", "systemUUID"), ("Boot ID", "bootID"),
                    ("Kernel Version", "kernelVersion"), ("OS Image", "osImage"),
                    ("Operating System", "operatingSystem"), ("Architecture", "architecture"),
                    ("Container Runtime Version", "containerRuntimeVersion"), ("Kubelet Version", "kubeletVersion"),
                    ("Kube-Proxy Version", "kubeProxyVersion"),
                ] {
                    out +=
                        "  " + (label + ":").padding(toLength: 27, withPad: " ", startingAt: 0)
                        + "\(info[key] as? String ?? "")\n"
                }
            } else if r.kind == "Pod" {
                out +=
                    "Node:               \(K.spec(o)["nodeName"] as? String ?? "<none>")\nStatus:             \(K.get(o, "status.phase") as? String ?? "")\n"
                if let m = K.get(o, "status.conditions.0.message") as? String {
                    out +=
                        "Events:\n  Type     Reason            Age   From               Message\n  ----     ------            ----  ----               -------\n  Warning  FailedScheduling  1s    default-scheduler  \(m)\n"
                }
            }
            out += "\n"
        }
        return .ok(out)
    }

    // MARK: label / annotate / taint / cordon

    func label(_ c: KubeClient, _ f: Flags, annotate: Bool) throws -> ToolOutput {
        let pos = f.positional
        let (r, names) = try targets(pos.filter { !$0.contains("=") && !$0.hasSuffix("-") })
        let changes = pos.filter { $0.contains("=") || ($0.hasSuffix("-") && $0.count > 1) }
        let ns: String? = r.namespaced ? namespace(f) : nil
        var out = ""
        for n in names {
            guard let o = try c.get(r, ns, n) else {
                throw Err(text: "Error from server (NotFound): \(r.plural) \"\(n)\" not found")
            }
            let current = annotate ? K.annotations(o) : K.labels(o)
            var patch: [String: Any] = [:]
            for ch in changes {
                if ch.hasSuffix("-") && !ch.contains("=") {
                    patch[String(ch.dropLast())] = NSNull()
                } else {
                    let p = ch.split(separator: "=", maxSplits: 1).map(String.init)
                    let v = p.count > 1 ? p[1] : ""
                    if let old = current[p[0]], old != v, !f.has("overwrite") {
                        throw Err(text: "error: '\(p[0])' already has a value (\(old)), and --overwrite is false")
                    }
                    patch[p[0]] = v
                }
            }
            _ = try c.patch(
                r, ns, n, ["metadata": [annotate ? "annotations" : "labels": patch]],
                dryRun: f.value("dry-run") == "server")
            out += "\(ref(r, n)) \(annotate ? "annotated" : "labeled")\n"
        }
        return .ok(out)
    }

    func taint(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        let pos = f.positional
        guard pos.count >= 3, let r = KResource.named(pos[0]), r.kind == "Node" else {
            throw Err(text: "error: at least one taint update is required")
        }
        let name = pos[1]
        guard let node = try c.get(r, nil, name) else {
            throw Err(text: "Error from server (NotFound): nodes \"\(name)\" not found")
        }
        var taints = K.spec(node)["taints"] as? [KObject] ?? []
        var removed = false, added = false
        for spec in pos.dropFirst(2) {
            var s = spec
            let remove = s.hasSuffix("-")
            if remove { s.removeLast() }
            let kv = s.split(separator: ":", maxSplits: 1).map(String.init)
            let kvp = kv[0].split(separator: "=", maxSplits: 1).map(String.init)
            let key = kvp[0]
            let value = kvp.count > 1 ? kvp[1] : nil
            let effect = kv.count > 1 ? kv[1] : nil
            if remove {
                let before = taints.count
                taints.removeAll { $0["key"] as? String == key && (effect == nil || $0["effect"] as? String == effect) }
                if taints.count == before { throw Err(text: "error: taint \"\(s)\" not found") }
                removed = true
            } else {
                guard let effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(effect) else {
                    throw Err(text: "error: invalid taint spec: \(spec), unsupported taint effect \(effect ?? "")")
                }
                if taints.contains(where: { $0["key"] as? String == key && $0["effect"] as? String == effect }) {
                    if !f.has("overwrite") {
                        throw Err(
                            text:
                                "error: node \(name) already has \(key) taint(s) with same effect(s) and --overwrite is false"
                        )
                    }
                    taints.removeAll { $0["key"] as? String == key && $0["effect"] as? String == effect }
                }
                var t: KObject = ["key": key, "effect": effect]
                if let value { t["value"] = value }
                if effect == "NoExecute" { t["timeAdded"] = K.timestamp() }
                taints.append(t)
                added = true
            }
        }
        _ = try c.patch(r, nil, name, ["spec": ["taints": taints]])
        return .ok("node/\(name) \(added && !removed ? "tainted" : removed && !added ? "untainted" : "modified")\n")
    }

    func cordon(_ c: KubeClient, _ f: Flags, on: Bool) throws -> ToolOutput {
        let nodes = KResource.nodes
        var out = ""
        let names = f.positional.isEmpty ? [] : f.positional
        guard !names.isEmpty else { throw Err(text: "error: resource(s) were provided, but no name was specified") }
        let dry = f.value("dry-run") == "server"
        for n in names {
            guard let node = try c.get(nodes, nil, n) else {
                throw Err(text: "Error from server (NotFound): nodes \"\(n)\" not found")
            }
            if (K.spec(node)["unschedulable"] as? Bool ?? false) == on {
                out += "node/\(n) already \(on ? "cordoned" : "uncordoned")\(dry ? " (server dry run)" : "")\n"
                continue
            }
            _ = try c.patch(nodes, nil, n, ["spec": ["unschedulable": on ? true as Any : NSNull() as Any]], dryRun: dry)
            out += "node/\(n) \(on ? "cordoned" : "uncordoned")\(dry ? " (server dry run)" : "")\n"
        }
        return .ok(out)
    }

    // MARK: delete / apply / rollout / wait

    func delete(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        if let file = f.value("filename") ?? f.value("f") {
            var out = ""
            for o in try documents(file) {
                guard let r = KResource.forKind(o["kind"] as? String ?? "") else { continue }
                let ns: String? = r.namespaced ? (K.namespace(o).isEmpty ? namespace(f) : K.namespace(o)) : nil
                if (try? c.delete(r, ns, K.name(o))) != nil {
                    out += "\(r.singular)\(r.group.isEmpty ? "" : "." + r.group) \"\(K.name(o))\" deleted\n"
                }
            }
            return .ok(out)
        }
        let (r, names) = try targets(f.positional)
        let ns: String? = r.namespaced ? namespace(f) : nil
        var out = ""
        for n in names {
            do {
                try c.delete(r, ns, n, dryRun: f.value("dry-run") == "server")
            } catch let e as KubeClient.Failure where e.status == 404 {
                throw Err(
                    text: out.isEmpty
                        ? "Error from server (NotFound): \(r.plural) \"\(n)\" not found"
                        : out + "Error from server (NotFound): \(r.plural) \"\(n)\" not found")
            }
            out += "\(r.singular)\(r.group.isEmpty ? "" : "." + r.group) \"\(n)\" deleted\n"
        }
        return .ok(out)
    }

    func documents(_ file: String) throws -> [KObject] {
        let text: String
        if file == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else if let t = (file.hasPrefix("/") ? context.read(file) : nil)
            ?? FileManager.default.contents(atPath: file).map({ String(decoding: $0, as: UTF8.self) })
        {
            text = t
        } else {
            throw Err(text: "error: the path \"\(file)\" does not exist")
        }
        var out: [KObject] = []
        do {
            for doc in try Yams.load_all(yaml: text) {
                guard let data = try? JSONSerialization.data(withJSONObject: Self.jsonSafe(doc)), var o = K.parse(data)
                else { continue }
                if o["kind"] as? String == "List" { out += o["items"] as? [KObject] ?? []; continue }
                if o["metadata"] == nil { o["metadata"] = [:] as KObject }
                out.append(o)
            }
        } catch {
            throw Err(text: "error: error parsing \(file): \(error)")
        }
        return out
    }

    /// Yams gives Int/Double/Bool/String/[Any]/[String: Any]; JSONSerialization wants the same, minus dates and nulls.
    static func jsonSafe(_ v: Any) -> Any {
        if let d = v as? [String: Any] { return d.mapValues { jsonSafe($0) } }
        if let a = v as? [Any] { return a.map { jsonSafe($0) } }
        if let d = v as? Date { return K.timestamp(d) }
        if v is NSNull { return NSNull() }
        if let s = v as? String { return s }
        if let b = v as? Bool { return b }
        if let i = v as? Int { return i }
        if let x = v as? Double { return x }
        return "\(v)"
    }

    func apply(_ c: KubeClient, _ f: Flags, create: Bool) throws -> ToolOutput {
        guard let file = f.value("filename") ?? f.value("f") else {
            throw Err(text: "error: must specify one of -f and -k")
        }
        var out = ""
        for o in try documents(file) {
            guard let r = KResource.forKind(o["kind"] as? String ?? "") else {
                throw Err(
                    text: out
                        + "error: resource mapping not found for name: \"\(K.name(o))\" namespace: \"\(K.namespace(o))\" from \"\(file)\": no matches for kind \"\(o["kind"] as? String ?? "")\" in version \"\(o["apiVersion"] as? String ?? "")\"\nensure CRDs are installed first"
                )
            }
            let ns: String? = r.namespaced ? (K.namespace(o).isEmpty ? namespace(f) : K.namespace(o)) : nil
            let id = "\(r.singular)\(r.group.isEmpty ? "" : "." + r.group)/\(K.name(o))"
            if create {
                do {
                    _ = try c.create(r, ns, o)
                } catch let e as KubeClient.Failure where e.status == 409 {
                    throw Err(
                        text: out + "Error from server (AlreadyExists): error when creating \"\(file)\": \(e.message)")
                }
                out += "\(id) created\n"
                continue
            }
            let existing = try c.get(r, ns, K.name(o))
            let (_, created) = try c.apply(r, ns, o)
            var same = false
            if let existing, !created {
                same =
                    K.json(K.spec(existing)) == K.json(K.spec(o))
                    && K.json(existing["data"] ?? [:]) == K.json(o["data"] ?? [:])
            }
            out += "\(id) \(created ? "created" : same ? "unchanged" : "configured")\n"
        }
        return .ok(out)
    }

    /// `kubectl create --raw PATH -f FILE`: the file's bytes POSTed as they are; the response body printed;
    /// an error Status as `Error from server (Reason): message`, exit 1.
    func createRaw(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let path = f.value("raw"), let file = f.value("filename") ?? f.value("f") else {
            throw Err(text: "error: --raw and --filename are required together")
        }
        let data: Data
        if file == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else if let d = FileManager.default.contents(atPath: file) {
            data = d
        } else {
            throw Err(text: "error: the path \"\(file)\" does not exist")
        }
        let (status, obj) = try c.raw("POST", path, try JSONSerialization.jsonObject(with: data))
        guard (200..<300).contains(status) else {
            let reason = obj["reason"] as? String ?? ""
            throw Err(
                text:
                    "Error from server (\(reason.isEmpty ? "InternalError" : reason)): \(obj["message"] as? String ?? "status \(status)")"
            )
        }
        return .ok(String(decoding: K.json(obj), as: UTF8.self))
    }

    func timeout(_ f: Flags, default d: Double) -> Double {
        f.value("timeout").flatMap(KubeadmConfigParser.parseDuration) ?? d
    }

    func rollout(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard f.positional.first == "status" else {
            throw Err(text: "error: lab stand-in supports 'rollout status' only")
        }
        let (r, names) = try targets(Array(f.positional.dropFirst()))
        guard let name = names.first else { throw Err(text: "error: required resource not specified") }
        let ns = namespace(f)
        let deadline = Date().addingTimeInterval(timeout(f, default: 600))
        var out = ""
        var last = ""
        while true {
            guard let o = try c.get(r, ns, name) else {
                throw Err(text: "Error from server (NotFound): \(r.plural).\(r.group) \"\(name)\" not found")
            }
            let st = K.status(o)
            if r.kind == "Deployment" {
                let want = K.spec(o)["replicas"] as? Int ?? 1
                let avail = st["availableReplicas"] as? Int ?? 0
                let upd = st["updatedReplicas"] as? Int ?? 0
                if avail >= want && upd >= want
                    && (st["observedGeneration"] as? Int ?? 0) >= (K.meta(o)["generation"] as? Int ?? 1)
                {
                    return .ok(out + "deployment \"\(name)\" successfully rolled out\n")
                }
                let msg =
                    upd < want
                    ? "Waiting for deployment \"\(name)\" rollout to finish: \(upd) out of \(want) new replicas have been updated...\n"
                    : "Waiting for deployment \"\(name)\" rollout to finish: \(avail) of \(want) updated replicas are available...\n"
                if msg != last { out += msg; last = msg }
            } else if r.kind == "DaemonSet" {
                let want = st["desiredNumberScheduled"] as? Int ?? 0
                let ready = st["numberAvailable"] as? Int ?? 0
                if st["observedGeneration"] != nil && ready >= want {
                    return .ok(out + "daemon set \"\(name)\" successfully rolled out\n")
                }
                let msg =
                    "Waiting for daemon set \"\(name)\" rollout to finish: \(ready) of \(want) updated pods are available...\n"
                if msg != last { out += msg; last = msg }
            } else {
                throw Err(text: "error: no status viewer has been implemented for \(r.kind)")
            }
            if Date() > deadline {
                return ToolOutput(stdout: out, stderr: "error: timed out waiting for the condition\n", exitCode: 1)
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
    }

    func wait(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let cond = f.value("for") else { throw Err(text: "error: --for must be specified") }
        let (r, names0) = try targets(f.positional)
        let deadline = Date().addingTimeInterval(timeout(f, default: 30))
        let ns: String? = r.namespaced ? namespace(f) : nil
        var names = names0
        if f.has("all") || names.isEmpty {
            names = try c.list(r, ns, query: (f.value("selector") ?? f.value("l")).map { "labelSelector=\($0)" } ?? "")
                .map(K.name)
        }
        var out = ""
        for n in names {
            while true {
                let o = try c.get(r, ns, n)
                var met = false
                if cond == "delete" {
                    met = o == nil
                } else if cond.hasPrefix("condition="), let o {
                    let p = cond.dropFirst(10).split(separator: "=", maxSplits: 1).map(String.init)
                    met = (K.conditionStatus(o, p[0]) ?? "").lowercased() == (p.count > 1 ? p[1] : "true").lowercased()
                } else if cond.hasPrefix("jsonpath="), let o {
                    let p = cond.dropFirst(9).split(separator: "=", maxSplits: 1).map(String.init)
                    met =
                        JSONPath.render(p[0].trimmingCharacters(in: CharacterSet(charactersIn: "'")), o)
                        == (p.count > 1 ? p[1] : "")
                }
                if met { out += "\(ref(r, n)) condition met\n"; break }
                if Date() > deadline {
                    return ToolOutput(
                        stdout: out, stderr: "error: timed out waiting for the condition on \(r.plural)/\(n)\n",
                        exitCode: 1)
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
        }
        return .ok(out)
    }
}

/// The columns kubectl prints.
enum Table {
    static func render(_ r: KResource, _ items: [KObject], wide: Bool, withNamespace: Bool, headers: Bool) -> String {
        var head: [String]
        var rows: [[String]] = []
        let now = Date()
        func age(_ o: KObject) -> String { K.age(K.meta(o)["creationTimestamp"] as? String, now: now) }
        switch r.kind {
        case "Node":
            head = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
            if wide { head += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"] }
            for o in items {
                var status = K.isReady(node: o) ? "Ready" : "NotReady"
                if K.spec(o)["unschedulable"] as? Bool == true { status += ",SchedulingDisabled" }
                let roles = K.labels(o).keys.filter { $0.hasPrefix("node-role.kubernetes.io/") }.map {
                    String($0.dropFirst(24))
                }.sorted()
                var row = [
                    K.name(o), status, roles.isEmpty ? "<none>" : roles.joined(separator: ","), age(o),
                    K.get(o, "status.nodeInfo.kubeletVersion") as? String ?? "",
                ]
                if wide {
                    let ip =
                        (K.status(o)["addresses"] as? [KObject] ?? []).first { $0["type"] as? String == "InternalIP" }?[
                            "address"] as? String ?? "<none>"
                    row += [
                        ip, "<none>", K.get(o, "status.nodeInfo.osImage") as? String ?? "",
                        K.get(o, "status.nodeInfo.kernelVersion") as? String ?? "",
                        K.get(o, "status.nodeInfo.containerRuntimeVersion") as? String ?? "",
                    ]
                }
                rows.append(row)
            }
        case "Pod":
            head = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
            if wide { head += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] }
            for o in items {
                let cs = K.spec(o)["containers"] as? [KObject] ?? []
                let ready = (K.status(o)["containerStatuses"] as? [KObject] ?? []).filter {
                    $0["ready"] as? Bool == true
                }.count
                var row = [
                    K.name(o), "\(ready)/\(cs.count)", K.get(o, "status.phase") as? String ?? "Pending", "0", age(o),
                ]
                if wide {
                    row += [
                        K.get(o, "status.podIP") as? String ?? "<none>", K.spec(o)["nodeName"] as? String ?? "<none>",
                        "<none>", "<none>",
                    ]
                }
                rows.append(row)
            }
        case "Namespace":
            head = ["NAME", "STATUS", "AGE"]
            rows = items.map { [K.name($0), K.get($0, "status.phase") as? String ?? "Active", age($0)] }
        case "DaemonSet":
            head = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
            rows = items.map { o in
                let s = K.status(o)
                let sel = (K.get(o, "spec.template.spec.nodeSelector") as? [String: String] ?? [:]).map {
                    "\($0.key)=\($0.value)"
                }.sorted().joined(separator: ",")
                return [
                    K.name(o), "\(s["desiredNumberScheduled"] as? Int ?? 0)",
                    "\(s["currentNumberScheduled"] as? Int ?? 0)", "\(s["numberReady"] as? Int ?? 0)",
                    "\(s["updatedNumberScheduled"] as? Int ?? 0)", "\(s["numberAvailable"] as? Int ?? 0)",
                    sel.isEmpty ? "<none>" : sel, age(o),
                ]
            }
        case "Deployment":
            head = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
            rows = items.map { o in
                let s = K.status(o)
                return [
                    K.name(o), "\(s["readyReplicas"] as? Int ?? 0)/\(K.spec(o)["replicas"] as? Int ?? 1)",
                    "\(s["updatedReplicas"] as? Int ?? 0)", "\(s["availableReplicas"] as? Int ?? 0)", age(o),
                ]
            }
        case "PodDisruptionBudget":
            head = ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]
            rows = items.map { o in
                func s(_ v: Any?) -> String { v.map { "\($0)" } ?? "N/A" }
                return [
                    K.name(o), s(K.spec(o)["minAvailable"]), s(K.spec(o)["maxUnavailable"]),
                    "\(K.status(o)["disruptionsAllowed"] as? Int ?? 0)", age(o),
                ]
            }
        case "ConfigMap":
            head = ["NAME", "DATA", "AGE"]
            rows = items.map { [K.name($0), "\(($0["data"] as? KObject ?? [:]).count)", age($0)] }
        default:
            head = ["NAME", "AGE"]
            rows = items.map { [K.name($0), age($0)] }
        }
        if withNamespace {
            head.insert("NAMESPACE", at: 0)
            for i in rows.indices { rows[i].insert(K.namespace(items[i]), at: 0) }
        }
        let all = (headers ? [head] : []) + rows
        var widths = Array(repeating: 0, count: head.count)
        for row in all { for (i, c) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        return all.map { row in
            row.enumerated().map { i, c in
                i == row.count - 1 ? c : c.padding(toLength: widths[i] + 3, withPad: " ", startingAt: 0)
            }.joined()
        }.joined(separator: "\n") + "\n"
    }
}

/// A small subset of kubectl's JSONPath: `{.a.b}`, `{.items[*].metadata.name}`, `{.items[0].x}`, literals.
enum JSONPath {
    static func render(_ template: String, _ root: Any) -> String {
        var out = ""
        var i = template.startIndex
        while i < template.endIndex {
            if template[i] == "{", let close = template[i...].firstIndex(of: "}") {
                let expr = String(template[template.index(after: i)..<close])
                if expr.hasPrefix("\"") {
                    out += expr.trimmingCharacters(in: CharacterSet(charactersIn: "\"")).replacingOccurrences(
                        of: "\\n", with: "\n"
                    ).replacingOccurrences(of: "\\t", with: "\t")
                } else {
                    out += eval(expr, root).map(text).joined(separator: " ")
                }
                i = template.index(after: close)
            } else {
                out.append(template[i])
                i = template.index(after: i)
            }
        }
        return out
    }

    static func text(_ v: Any) -> String {
        if let s = v as? String { return s }
        if let b = v as? Bool { return b ? "true" : "false" }
        if v is KObject || v is [Any] { return String(decoding: K.json(v), as: UTF8.self) }
        return "\(v)"
    }

    /// The path's fields, split at dots that are neither escaped (`kubernetes\.io/hostname`) nor inside brackets.
    static func segments(_ path: String) -> [String] {
        var out: [String] = []
        var cur = ""
        var escaped = false
        var bracket = false
        for ch in path {
            if escaped {
                cur.append(ch)
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else if ch == "." && !bracket {
                if !cur.isEmpty { out.append(cur) }
                cur = ""
            } else {
                if ch == "[" { bracket = true }
                if ch == "]" { bracket = false }
                cur.append(ch)
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func eval(_ expr: String, _ root: Any) -> [Any] {
        var cur: [Any] = [root]
        var e = expr
        if e.hasPrefix("$") { e.removeFirst() }
        for seg in segments(e) {
            var name = seg
            var index: String?
            if let b = name.firstIndex(of: "[") {
                index = String(name[name.index(after: b)..<(name.firstIndex(of: "]") ?? name.endIndex)])
                name = String(name[..<b])
            }
            // `['nvidia.com/gpu']`: a key with dots, as kubectl accepts besides `nvidia\.com/gpu`.
            if let i = index, i.count >= 2, i.first == "'" || i.first == "\"", i.last == i.first {
                let key = String(i.dropFirst().dropLast())
                if !name.isEmpty { cur = cur.compactMap { ($0 as? KObject)?[name] } }
                name = key
                index = nil
            }
            var next: [Any] = []
            for c in cur {
                var v: Any? = c
                if !name.isEmpty { v = (c as? KObject)?[name] }
                guard let vv = v else { continue }
                if let index {
                    guard let arr = vv as? [Any] else { continue }
                    if index == "*" {
                        next += arr
                    } else if let n = Int(index), n < arr.count, n >= 0 {
                        next.append(arr[n])
                    }
                } else {
                    next.append(vv)
                }
            }
            cur = next
        }
        return cur
    }
}
