import Foundation

/// What real clients see of the API server beyond storage: authentication, discovery, OpenAPI, content
/// negotiation (Table, JSON for protobuf-preferring clients), watches and patch types.
extension APIServerStandin {
    /// The whole HTTP surface (what the TLS server calls for each request).
    public func respond(_ req: HTTPRequest) -> HTTPReply {
        do {
            return try serveChecked(req)
        } catch {
            return reply(Self.status(500, "InternalError", "Internal error occurred: \(error)"))
        }
    }

    func reply(_ r: (Int, Data)) -> HTTPReply { .json(r.0, r.1) }

    /// One served request as kube-apiserver's httplog writes it (klog header, then key="value" pairs), with the
    /// protocol the client negotiated (HTTP/2.0 or HTTP/1.1).
    public static func httpLogLine(_ r: HTTPAccessRecord, now: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "MMdd HH:mm:ss.SSSSSS"
        func q(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        let latency = String(format: "%.3fms", r.seconds * 1000)
        return
            "I\(f.string(from: now)) \(getpid()) httplog.go:134] \"HTTP\" verb=\(q(r.method)) URI=\(q(r.uri)) latency=\(q(latency)) userAgent=\(q(r.userAgent)) srcIP=\(q(r.remoteAddress)) resp=\(r.status) protocol=\(q(r.proto))\n"
    }

    static let publicPaths: Set<String> = ["/livez", "/readyz", "/healthz", "/version"]

    /// Who is calling: a verified client certificate's CN, a valid bootstrap token's user, anonymous (nil),
    /// or a refusal (401) for a bearer token that is not valid.
    func authenticate(_ req: HTTPRequest) throws -> (user: String?, refused: Bool) {
        if req.clientCertificateVerified {
            return (req.clientCertificateSubject.isEmpty ? "system:unknown" : req.clientCertificateSubject, false)
        }
        // A certificate the cluster CA did not sign (or expired): the x509 authenticator fails the request.
        if req.clientCertificatePresented { return (nil, true) }
        guard let auth = req.headers["authorization"] else { return (nil, false) }
        let parts = auth.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return (nil, true) }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        let tp = token.split(separator: ".").map(String.init)
        guard tp.count == 2, let (secret, _) = try get(KResource.secrets, "kube-system", "bootstrap-token-\(tp[0])")
        else { return (nil, true) }
        let data = secret["data"] as? [String: String] ?? [:]
        func field(_ k: String) -> String? {
            data[k].flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
        }
        guard field("token-secret") == tp[1], field("usage-bootstrap-authentication") == "true" else {
            return (nil, true)
        }
        if let exp = K.date(field("expiration")), exp < Date() { return (nil, true) }
        return ("system:bootstrap:\(tp[0])", false)
    }

    func serveChecked(_ req: HTTPRequest) throws -> HTTPReply {
        let (user, refused) = try authenticate(req)
        if refused {
            return reply(Self.status(401, "Unauthorized", "Unauthorized"))
        }
        let health =
            Self.publicPaths.contains(req.path) || req.path.hasPrefix("/livez/")
            || req.path.hasPrefix("/readyz/") || req.path.hasPrefix("/healthz/")
        let clusterInfo = req.method == "GET" && req.path == "/api/v1/namespaces/kube-public/configmaps/cluster-info"
        if user == nil && !health && !clusterInfo {
            // Anonymous requests are system:anonymous, whom RBAC (system:public-info-viewer, kubeadm's
            // cluster-info role) lets read only health, version and cluster-info.
            return reply(Self.forbidden(req, user: "system:anonymous"))
        }
        if health {
            if req.path == "/version" { return reply(route(versionOnly: req)) }
            let ok = etcd.healthy()
            let body = ok ? "ok" : "[-]etcd failed: reason withheld\nhealthz check failed"
            return .full(status: ok ? 200 : 500, contentType: "text/plain; charset=utf-8", body: Data(body.utf8))
        }
        if let d = discovery(req.path) { return reply(d) }
        if req.path.hasPrefix("/openapi/") { return reply(openAPI(req)) }
        // Requests whose body is protobuf: client-go ≥ 1.32 encodes DeleteOptions so (ignored: a DELETE's
        // options are not needed here); other protobuf bodies cannot be read.
        let contentType = req.headers["content-type"] ?? ""
        if contentType.hasPrefix("application/vnd.kubernetes.protobuf") && req.method != "DELETE" {
            return reply(
                Self.status(
                    415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
                ))
        }
        if req.method == "GET", let target = Self.logTarget(req.path) {
            return try podLog(namespace: target.namespace, pod: target.pod, query: req.query)
        }
        if req.method == "GET", req.query["watch"] == "1" || req.query["watch"] == "true",
            let target = resolve(req.path), target.name == nil
        {
            return watch(target.resource, namespace: target.namespace, query: req.query)
        }
        let (code, body) = try route(req)
        if code == 200, req.method == "GET", (req.headers["accept"] ?? "").contains("as=Table"),
            let target = resolve(req.path), target.sub == nil, let obj = K.parse(body)
        {
            let items = target.name == nil ? obj["items"] as? [KObject] ?? [] : [obj]
            let rv = (obj["metadata"] as? KObject)?["resourceVersion"] as? String ?? ""
            return .json(200, K.json(Self.table(target.resource, items, resourceVersion: rv)))
        }
        return .json(code, body)
    }

    /// The authorizer's 403, worded as kube-apiserver's: a resource request names its verb, resource, group and
    /// scope; any other path names the lower-case HTTP method and the path.
    static func forbidden(_ req: HTTPRequest, user: String) -> (Int, Data) {
        let comps = req.path.split(separator: "/").map(String.init)
        var rest: ArraySlice<String> = []
        var group = ""
        if comps.first == "api", comps.count >= 3 {
            rest = comps.dropFirst(2)
        } else if comps.first == "apis", comps.count >= 4 {
            group = comps[1]
            rest = comps.dropFirst(3)
        } else {
            return status(
                403, "Forbidden",
                "forbidden: User \"\(user)\" cannot \(req.method.lowercased()) path \"\(req.path)\"", details: [:])
        }
        var namespace: String?
        if rest.first == "namespaces", rest.count >= 2 {
            // `namespaces/NS` is the namespace object itself, in its own namespace (as RequestInfo reads it).
            namespace = rest[rest.startIndex + 1]
            if rest.count > 2 { rest = rest.dropFirst(2) }
        }
        let parts = Array(rest)
        let resource = parts[0]
        let name = parts.count >= 2 ? parts[1] : nil
        let sub = parts.count >= 3 ? parts[2] : nil
        let watching = req.query["watch"] == "1" || req.query["watch"] == "true"
        let verb: String
        switch req.method {
        case "GET", "HEAD": verb = name == nil ? (watching ? "watch" : "list") : (watching ? "watch" : "get")
        case "POST": verb = "create"
        case "PUT": verb = "update"
        case "PATCH": verb = "patch"
        case "DELETE": verb = name == nil ? "deletecollection" : "delete"
        default: verb = req.method.lowercased()
        }
        let scope = namespace.map { "in the namespace \"\($0)\"" } ?? "at the cluster scope"
        let full = sub.map { "\(resource)/\($0)" } ?? resource
        var details: KObject = ["kind": resource]
        if let name { details["name"] = name }
        let subject = name.map { "\(resource) \"\($0)\"" } ?? resource
        return status(
            403, "Forbidden",
            "\(subject) is forbidden: User \"\(user)\" cannot \(verb) resource \"\(full)\" in API group \"\(group)\" \(scope)",
            details: details)
    }

    func route(versionOnly req: HTTPRequest) -> (Int, Data) {
        (
            200,
            K.json([
                "major": "\(version.major)", "minor": "\(version.minor)", "gitVersion": version.description,
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2025-12-09T00:00:00Z", "goVersion": "go1.24.11", "compiler": "gc",
                "platform": "linux/amd64", "emulationMajor": "\(version.major)", "emulationMinor": "\(version.minor)",
                "minCompatibilityMajor": "\(version.major)", "minCompatibilityMinor": "\(max(0, version.minor - 1))",
            ])
        )
    }

    struct Target {
        var resource: KResource
        var namespace: String?
        var name: String?
        var sub: String?
    }

    /// `/api/v1/[namespaces/NS/]PLURAL[/NAME[/SUB]]` or `/apis/G/V/...`.
    func resolve(_ path: String) -> Target? {
        let comps = path.split(separator: "/").map(String.init)
        var rest: ArraySlice<String>
        var group = ""
        var version = ""
        if comps.first == "api", comps.count >= 2 {
            version = comps[1]
            rest = comps.dropFirst(2)
        } else if comps.first == "apis", comps.count >= 3 {
            group = comps[1]
            version = comps[2]
            rest = comps.dropFirst(3)
        } else {
            return nil
        }
        var ns: String?
        if rest.first == "namespaces", rest.count >= 3 {
            ns = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        guard let plural = rest.first,
            let r = KResource.all.first(where: { $0.plural == plural && $0.group == group && $0.version == version })
        else { return nil }
        return Target(
            resource: r, namespace: r.namespaced ? ns : nil, name: rest.dropFirst().first, sub: rest.dropFirst(2).first)
    }

    // MARK: discovery (the legacy JSON form, which every kubectl version reads)

    static var groups: [(group: String, version: String)] {
        var seen: [(String, String)] = []
        for r in KResource.all where !r.group.isEmpty && !seen.contains(where: { $0 == (r.group, r.version) }) {
            seen.append((r.group, r.version))
        }
        return seen
    }

    static let allVerbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

    static func resourceList(group: String, version: String) -> KObject {
        var resources: [KObject] = []
        for r in KResource.all where r.group == group && r.version == version {
            var entry: KObject = [
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                "verbs": allVerbs, "storageVersionHash": String(templateHash(["r": r.plural]).prefix(10)),
            ]
            let short = r.shortNames.filter { $0 != r.singular }
            if !short.isEmpty { entry["shortNames"] = short }
            if ["pods", "deployments", "daemonsets", "services", "jobs", "statefulsets"].contains(r.plural) {
                entry["categories"] = ["all"]
            }
            resources.append(entry)
            for sub in r.subresources {
                switch sub {
                case "eviction":
                    resources.append([
                        "name": "\(r.plural)/eviction", "singularName": r.singular, "namespaced": r.namespaced,
                        "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"],
                    ])
                case "binding":
                    resources.append([
                        "name": "\(r.plural)/binding", "singularName": r.singular, "namespaced": r.namespaced,
                        "kind": "Binding", "verbs": ["create"],
                    ])
                case "scale":
                    resources.append([
                        "name": "\(r.plural)/scale", "singularName": r.singular, "namespaced": r.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
                    ])
                default:
                    resources.append([
                        "name": "\(r.plural)/\(sub)", "singularName": r.singular, "namespaced": r.namespaced,
                        "kind": r.kind, "verbs": ["get", "patch", "update"],
                    ])
                }
            }
        }
        return [
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group.isEmpty ? version : "\(group)/\(version)",
            "resources": resources,
        ]
    }

    func discovery(_ path: String) -> (Int, Data)? {
        let p = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        switch p {
        case "/api":
            return (
                200,
                K.json([
                    "kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [["clientCIDR": "0.0.0.0/0", "serverAddress": identity]],
                ])
            )
        case "/apis":
            let groups: [KObject] = Self.groups.map { g in
                let gv: KObject = ["groupVersion": "\(g.group)/\(g.version)", "version": g.version]
                return ["name": g.group, "versions": [gv], "preferredVersion": gv]
            }
            return (200, K.json(["kind": "APIGroupList", "apiVersion": "v1", "groups": groups]))
        case "/api/v1":
            return (200, K.json(Self.resourceList(group: "", version: "v1")))
        default:
            let c = p.split(separator: "/").map(String.init)
            guard c.first == "apis" else { return nil }
            if c.count == 2 {
                guard let g = Self.groups.first(where: { $0.group == c[1] }) else { return nil }
                let gv: KObject = ["groupVersion": "\(g.group)/\(g.version)", "version": g.version]
                return (
                    200,
                    K.json([
                        "kind": "APIGroup", "apiVersion": "v1", "name": g.group, "versions": [gv],
                        "preferredVersion": gv,
                    ])
                )
            }
            if c.count == 3 {
                guard Self.groups.contains(where: { $0 == (c[1], c[2]) }) else {
                    return Self.status(404, "NotFound", "the server could not find the requested resource")
                }
                return (200, K.json(Self.resourceList(group: c[1], version: c[2])))
            }
            return nil
        }
    }

    // MARK: OpenAPI v3 (enough for kubectl's field-validation check; no schemas)

    func openAPI(_ req: HTTPRequest) -> (Int, Data) {
        let gvs = [("", "v1")] + Self.groups
        func gvPath(_ g: String, _ v: String) -> String { g.isEmpty ? "api/\(v)" : "apis/\(g)/\(v)" }
        if req.path == "/openapi/v3" || req.path == "/openapi/v3/" {
            var paths: KObject = [:]
            for (g, v) in gvs {
                paths[gvPath(g, v)] = [
                    "serverRelativeURL": "/openapi/v3/\(gvPath(g, v))?hash=\(version.description)-lab"
                ]
            }
            return (200, K.json(["paths": paths]))
        }
        for (g, v) in gvs where req.path == "/openapi/v3/\(gvPath(g, v))" {
            var paths: KObject = [:]
            for r in KResource.all where r.group == g && r.version == v {
                let gvk: KObject = ["group": g, "version": v, "kind": r.kind]
                let params: [KObject] = ["dryRun", "fieldManager", "fieldValidation", "force"].map {
                    [
                        "name": $0, "in": "query", "schema": ["type": $0 == "force" ? "boolean" : "string"],
                        "uniqueItems": true,
                    ]
                }
                let base = "/" + gvPath(g, v) + (r.namespaced ? "/namespaces/{namespace}" : "") + "/\(r.plural)"
                let op: KObject = [
                    "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch", "parameters": params,
                    "operationId": "patch\(r.kind)", "responses": ["200": ["description": "OK"]],
                ]
                paths[base + "/{name}"] = [
                    "patch": op,
                    "parameters": [["name": "name", "in": "path", "required": true, "schema": ["type": "string"]]],
                ]
                paths[base] = [
                    "post": [
                        "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "post", "parameters": params,
                        "operationId": "create\(r.kind)", "responses": ["201": ["description": "Created"]],
                    ] as KObject
                ]
            }
            return (
                200,
                K.json([
                    "openapi": "3.0.0", "info": ["title": "Kubernetes", "version": version.description], "paths": paths,
                    "components": ["schemas": [:] as KObject],
                ])
            )
        }
        return Self.status(404, "NotFound", "the server could not find the requested resource")
    }

    // MARK: selectors

    static func fieldValue(_ o: KObject, _ field: String) -> String {
        let v = K.get(o, field)
        if let s = v as? String { return s }
        if field == "spec.unschedulable" { return (v as? Bool) == true ? "true" : "false" }
        if let n = v as? Int { return "\(n)" }
        return ""
    }

    static func matchesFields(_ o: KObject, _ selector: String) -> Bool {
        for term in selector.split(separator: ",").map(String.init) where !term.isEmpty {
            if let r = term.range(of: "!=") {
                if fieldValue(o, String(term[..<r.lowerBound])) == String(term[r.upperBound...]) { return false }
            } else if let r = term.range(of: "==") ?? term.range(of: "=") {
                if fieldValue(o, String(term[..<r.lowerBound])) != String(term[r.upperBound...]) { return false }
            }
        }
        return true
    }

    static func selected(_ o: KObject, query: [String: String]) -> Bool {
        if let sel = query["labelSelector"], !sel.isEmpty, !K.matches(selectorString: sel, labels: K.labels(o)) {
            return false
        }
        if let fs = query["fieldSelector"], !fs.isEmpty, !matchesFields(o, fs) { return false }
        return true
    }

    // MARK: watch

    /// `?watch=1`: a chunked stream of `{"type":…,"object":…}` events, from the list's resourceVersion (or,
    /// without one, starting with ADDED for everything that exists), until `timeoutSeconds` or the client leaves.
    func watch(_ r: KResource, namespace: String?, query: [String: String]) -> HTTPReply {
        let since = Int(query["resourceVersion"] ?? "") ?? 0
        let seconds = min(Double(query["timeoutSeconds"] ?? "") ?? 1800, 1800)
        let bookmarks = query["allowWatchBookmarks"] == "true"
        return .stream(status: 200, contentType: "application/json") { [self] emit in
            let deadline = Date().addingTimeInterval(seconds)
            var seen: [String: (rev: Int, obj: KObject)] = [:]
            var first = true
            var lastRevision = since
            var lastBookmark = Date()
            func send(_ type: String, _ o: KObject) -> Bool {
                var line = K.json(["type": type, "object": o])
                line.append(0x0a)
                return emit(line)
            }
            while Date() < deadline {
                guard let (items, revision) = try? listAt(r, namespace: namespace) else {
                    if !emit(Data()) { return }
                    Thread.sleep(forTimeInterval: 0.5)
                    continue
                }
                var now: [String: (rev: Int, obj: KObject)] = [:]
                for o in items where Self.selected(o, query: query) {
                    let rv = Int(K.meta(o)["resourceVersion"] as? String ?? "") ?? 0
                    now[K.namespace(o) + "/" + K.name(o)] = (rv, o)
                }
                for (k, cur) in now.sorted(by: { $0.value.rev < $1.value.rev }) {
                    if let old = seen[k] {
                        if old.rev != cur.rev, !send("MODIFIED", cur.obj) { return }
                    } else if !first || since == 0 || cur.rev > since {
                        if !send("ADDED", cur.obj) { return }
                    }
                }
                for (k, old) in seen where now[k] == nil {
                    var o = old.obj
                    K.set(&o, ["metadata", "resourceVersion"], "\(revision)")
                    if !send("DELETED", o) { return }
                }
                seen = now
                first = false
                lastRevision = max(lastRevision, revision)
                if bookmarks, Date().timeIntervalSince(lastBookmark) > 30 {
                    lastBookmark = Date()
                    let bm: KObject = [
                        "kind": r.kind, "apiVersion": r.apiVersion,
                        "metadata": ["resourceVersion": "\(lastRevision)"],
                    ]
                    if !send("BOOKMARK", bm) { return }
                }
                if !emit(Data()) { return }
                Thread.sleep(forTimeInterval: 0.25)
            }
        }
    }

    // MARK: tables (what `kubectl get` prints; columns as kube-apiserver's printers)

    static func column(_ name: String, _ type: String = "string", format: String = "", priority: Int = 0) -> KObject {
        ["name": name, "type": type, "format": format, "description": name, "priority": priority]
    }

    static func table(_ r: KResource, _ items: [KObject], resourceVersion: String) -> KObject {
        let now = Date()
        var columns: [KObject]
        var cells: (KObject) -> [Any]
        func age(_ o: KObject) -> String { K.age(K.meta(o)["creationTimestamp"] as? String, now: now) }
        switch r.plural {
        case "nodes":
            columns = [
                column("Name", format: "name"), column("Status"), column("Roles"), column("Age"), column("Version"),
                column("Internal-IP", priority: 1), column("External-IP", priority: 1), column("OS-Image", priority: 1),
                column("Kernel-Version", priority: 1), column("Container-Runtime", priority: 1),
            ]
            cells = { n in
                var status = K.conditionStatus(n, "Ready").map { $0 == "True" ? "Ready" : "NotReady" } ?? "Unknown"
                if K.spec(n)["unschedulable"] as? Bool == true { status += ",SchedulingDisabled" }
                var roles = K.labels(n).keys.filter { $0.hasPrefix("node-role.kubernetes.io/") }.map {
                    String($0.dropFirst("node-role.kubernetes.io/".count))
                }
                if let r = K.labels(n)["kubernetes.io/role"] { roles.append(r) }
                let addrs = K.status(n)["addresses"] as? [KObject] ?? []
                func addr(_ t: String) -> String {
                    addrs.first { $0["type"] as? String == t }?["address"] as? String ?? "<none>"
                }
                let info = K.status(n)["nodeInfo"] as? KObject ?? [:]
                return [
                    K.name(n), status, roles.isEmpty ? "<none>" : roles.sorted().joined(separator: ","), age(n),
                    info["kubeletVersion"] as? String ?? "", addr("InternalIP"), addr("ExternalIP"),
                    info["osImage"] as? String ?? "<unknown>", info["kernelVersion"] as? String ?? "<unknown>",
                    info["containerRuntimeVersion"] as? String ?? "<unknown>",
                ]
            }
        case "pods":
            columns = [
                column("Name", format: "name"), column("Ready"), column("Status"), column("Restarts", "string"),
                column("Age"), column("IP", priority: 1), column("Node", priority: 1),
                column("Nominated Node", priority: 1), column("Readiness Gates", priority: 1),
            ]
            cells = { p in
                let containers = K.spec(p)["containers"] as? [KObject] ?? []
                let statuses = K.status(p)["containerStatuses"] as? [KObject] ?? []
                let ready = statuses.filter { $0["ready"] as? Bool == true }.count
                var phase = K.status(p)["reason"] as? String ?? K.status(p)["phase"] as? String ?? "Unknown"
                if K.meta(p)["deletionTimestamp"] != nil { phase = "Terminating" }
                let restarts = statuses.reduce(0) { $0 + ($1["restartCount"] as? Int ?? 0) }
                return [
                    K.name(p), "\(ready)/\(containers.count)", phase, "\(restarts)", age(p),
                    K.status(p)["podIP"] as? String ?? "<none>", K.spec(p)["nodeName"] as? String ?? "<none>",
                    "<none>", "<none>",
                ]
            }
        case "namespaces":
            columns = [column("Name", format: "name"), column("Status"), column("Age")]
            cells = { [K.name($0), K.status($0)["phase"] as? String ?? "Active", age($0)] }
        case "deployments":
            columns = [
                column("Name", format: "name"), column("Ready"), column("Up-to-date", "integer"),
                column("Available", "integer"), column("Age"), column("Containers", priority: 1),
                column("Images", priority: 1), column("Selector", priority: 1),
            ]
            cells = { d in
                let st = K.status(d)
                let cs = K.get(d, "spec.template.spec.containers") as? [KObject] ?? []
                let sel = (K.get(d, "spec.selector.matchLabels") as? [String: String] ?? [:]).sorted { $0.key < $1.key }
                    .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                return [
                    K.name(d), "\(st["readyReplicas"] as? Int ?? 0)/\(K.spec(d)["replicas"] as? Int ?? 1)",
                    st["updatedReplicas"] as? Int ?? 0, st["availableReplicas"] as? Int ?? 0, age(d),
                    cs.compactMap { $0["name"] as? String }.joined(separator: ","),
                    cs.compactMap { $0["image"] as? String }.joined(separator: ","), sel,
                ]
            }
        case "daemonsets":
            columns = [
                column("Name", format: "name"), column("Desired", "integer"), column("Current", "integer"),
                column("Ready", "integer"), column("Up-to-date", "integer"), column("Available", "integer"),
                column("Node Selector"), column("Age"),
            ]
            cells = { d in
                let st = K.status(d)
                let sel = (K.get(d, "spec.template.spec.nodeSelector") as? [String: String] ?? [:]).sorted {
                    $0.key < $1.key
                }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
                return [
                    K.name(d), st["desiredNumberScheduled"] as? Int ?? 0, st["currentNumberScheduled"] as? Int ?? 0,
                    st["numberReady"] as? Int ?? 0, st["updatedNumberScheduled"] as? Int ?? 0,
                    st["numberAvailable"] as? Int ?? 0, sel.isEmpty ? "<none>" : sel, age(d),
                ]
            }
        case "configmaps":
            columns = [column("Name", format: "name"), column("Data", "integer"), column("Age")]
            cells = {
                [
                    K.name($0), ($0["data"] as? KObject ?? [:]).count + ($0["binaryData"] as? KObject ?? [:]).count,
                    age($0),
                ]
            }
        case "secrets":
            columns = [column("Name", format: "name"), column("Type"), column("Data", "integer"), column("Age")]
            cells = { [K.name($0), $0["type"] as? String ?? "Opaque", ($0["data"] as? KObject ?? [:]).count, age($0)] }
        case "poddisruptionbudgets":
            columns = [
                column("Name", format: "name"), column("Min Available"), column("Max Unavailable"),
                column("Allowed Disruptions", "integer"), column("Age"),
            ]
            cells = { p in
                func s(_ v: Any?) -> String { v.map { "\($0)" } ?? "N/A" }
                return [
                    K.name(p), s(K.spec(p)["minAvailable"]), s(K.spec(p)["maxUnavailable"]),
                    K.status(p)["disruptionsAllowed"] as? Int ?? 0, age(p),
                ]
            }
        default:
            columns = [column("Name", format: "name"), column("Age")]
            cells = { [K.name($0), age($0)] }
        }
        let rows: [KObject] = items.map { o in
            var meta = K.meta(o)
            meta.removeValue(forKey: "managedFields")
            return [
                "cells": cells(o),
                "object": ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta]
                    as KObject,
            ]
        }
        return [
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": ["resourceVersion": resourceVersion],
            "columnDefinitions": columns, "rows": rows,
        ]
    }
}
