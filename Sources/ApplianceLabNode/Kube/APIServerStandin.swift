import ApplianceModel
import Foundation

/// `kube-apiserver-standin`: a Kubernetes-shaped REST API over plain HTTP on ADDRESS:PORT whose objects live
/// as Kubernetes JSON in the real etcd under `/registry/<plural>/[<namespace>/]<name>`. It also runs the
/// controllers the installer depends on (node lifecycle, scheduler, NoExecute taint eviction, DaemonSet and
/// Deployment pods, PodDisruptionBudget status); with several control-plane nodes, only the holder of an etcd
/// lease-backed lock runs them.
public final class APIServerStandin: @unchecked Sendable {
    // @unchecked: immutable configuration; the etcd client is a value; the controller loop runs on one thread.
    public let etcd: EtcdClient
    public let version: KubeVersion
    public let nodeGraceSeconds: Double
    public let identity: String
    /// The cluster CA, to sign kubelet client certificate requests (nil: requests stay unsigned).
    public let pki: LabPKI?
    /// Where this node sees the lab's NFS exports (`LabPaths.nfsRoot` under the node's state root): the NFS CSI
    /// driver's provisioner model makes and removes volume directories there.
    public let nfsRoot: String
    /// The client certificate the API server presents to kubelets (`--kubelet-client-certificate`/`-key`, for
    /// pod logs; nil: logs cannot be fetched).
    public let kubeletClient: TLSClientIdentity?

    public init(
        etcd: EtcdClient, version: KubeVersion, nodeGraceSeconds: Double = 20, identity: String = UUID().uuidString,
        pki: LabPKI? = nil, nfsRoot: String = LabPaths.nfsRoot, kubeletClient: TLSClientIdentity? = nil
    ) {
        self.pki = pki
        self.kubeletClient = kubeletClient
        self.nfsRoot = nfsRoot
        self.etcd = etcd
        self.version = version
        self.nodeGraceSeconds = nodeGraceSeconds
        self.identity = identity
    }

    // MARK: storage

    static func key(_ r: KResource, _ ns: String?, _ name: String?) -> String {
        var k = "/registry/\(r.plural)/"
        if r.namespaced, let ns { k += ns + "/" }
        if let name { k += name }
        return k
    }

    public func list(_ r: KResource, namespace: String? = nil) throws -> [KObject] {
        try listAt(r, namespace: namespace).items
    }

    /// The objects and the store revision they were read at (the list's resourceVersion).
    public func listAt(_ r: KResource, namespace: String? = nil) throws -> (items: [KObject], revision: Int) {
        let (kvs, revision) = try etcd.rangeAt(Self.key(r, namespace, nil))
        let items: [KObject] = kvs.compactMap { kv in
            guard var o = K.parse(kv.value) else { return nil }
            K.set(&o, ["metadata", "resourceVersion"], "\(kv.modRevision)")
            return o
        }
        return (items, revision)
    }

    public func get(_ r: KResource, _ ns: String?, _ name: String) throws -> (KObject, Int)? {
        guard let kv = try etcd.get(Self.key(r, ns, name)), var o = K.parse(kv.value) else { return nil }
        K.set(&o, ["metadata", "resourceVersion"], "\(kv.modRevision)")
        return (o, kv.modRevision)
    }

    public func put(_ r: KResource, _ o: KObject) throws {
        var o = o
        K.set(&o, ["metadata", "resourceVersion"], nil)
        try etcd.put(Self.key(r, r.namespaced ? K.namespace(o) : nil, K.name(o)), K.json(o))
    }

    /// Read-modify-write with optimistic concurrency; retries on conflicts.
    @discardableResult
    public func update(_ r: KResource, _ ns: String?, _ name: String, _ change: (inout KObject) -> Void) throws
        -> KObject?
    {
        for _ in 0..<10 {
            guard let (o, rev) = try get(r, ns, name) else { return nil }
            var n = o
            change(&n)
            K.set(&n, ["metadata", "resourceVersion"], nil)
            if try etcd.putIf(Self.key(r, ns, name), K.json(n), modRevision: rev) { return n }
        }
        return nil
    }

    public func delete(_ r: KResource, _ ns: String?, _ name: String) throws {
        try etcd.delete(Self.key(r, ns, name))
    }

    public func create(_ r: KResource, _ o: KObject, namespace: String?) throws -> KObject? {
        var o = o
        o["apiVersion"] = r.apiVersion
        o["kind"] = r.kind
        var m = K.meta(o)
        if (m["name"] as? String ?? "").isEmpty, let g = m["generateName"] as? String {
            m["name"] = g + String(UUID().uuidString.lowercased().prefix(5))
        }
        if r.namespaced { m["namespace"] = namespace ?? (m["namespace"] as? String) ?? "default" }
        m["uid"] = K.uid()
        m["creationTimestamp"] = K.timestamp()
        if m["generation"] == nil, r.kind == "Deployment" || r.kind == "DaemonSet" || r.kind == "StatefulSet" {
            m["generation"] = 1
        }
        o["metadata"] = m
        if r.kind == "Pod" { Self.defaultPod(&o) }
        Self.defaultWorkload(r, &o)
        if r.kind == "Namespace" { o["status"] = ["phase": "Active"] }
        let key = Self.key(r, r.namespaced ? K.namespace(o) : nil, K.name(o))
        guard try etcd.putIf(key, K.json(o), modRevision: 0) else { return nil }
        return o
    }

    /// The API's defaults for DaemonSets and Deployments (`kubectl rollout status` needs the update strategy).
    static func defaultWorkload(_ r: KResource, _ o: inout KObject) {
        var spec = K.spec(o)
        switch r.kind {
        case "DaemonSet":
            if spec["updateStrategy"] == nil {
                spec["updateStrategy"] =
                    ["type": "RollingUpdate", "rollingUpdate": ["maxUnavailable": 1, "maxSurge": 0] as KObject]
                    as KObject
            }
            if spec["revisionHistoryLimit"] == nil { spec["revisionHistoryLimit"] = 10 }
        case "Deployment":
            if spec["replicas"] == nil { spec["replicas"] = 1 }
            if spec["strategy"] == nil {
                spec["strategy"] =
                    [
                        "type": "RollingUpdate",
                        "rollingUpdate": ["maxUnavailable": "25%", "maxSurge": "25%"] as KObject,
                    ]
                    as KObject
            }
            if spec["revisionHistoryLimit"] == nil { spec["revisionHistoryLimit"] = 10 }
            if spec["progressDeadlineSeconds"] == nil { spec["progressDeadlineSeconds"] = 600 }
        case "Job":
            // The Job strategy: unless `manualSelector`, the selector is the Job's uid, and the template's pods
            // carry it and the Job's name (what `kubectl logs job/NAME` finds its pods by).
            guard spec["manualSelector"] as? Bool != true, let uid = K.meta(o)["uid"] as? String else { return }
            let labels = [
                "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": K.name(o),
                "controller-uid": uid, "job-name": K.name(o),
            ]
            spec["selector"] = ["matchLabels": ["batch.kubernetes.io/controller-uid": uid]] as KObject
            var template = spec["template"] as? KObject ?? [:]
            var meta = template["metadata"] as? KObject ?? [:]
            meta["labels"] = (meta["labels"] as? [String: String] ?? [:]).merging(labels) { _, new in new }
            template["metadata"] = meta
            spec["template"] = template
            if spec["backoffLimit"] == nil { spec["backoffLimit"] = 6 }
        default: return
        }
        o["spec"] = spec
    }

    static func defaultPod(_ o: inout KObject) {
        var spec = K.spec(o)
        var tol = spec["tolerations"] as? [KObject] ?? []
        // DefaultTolerationSeconds admission.
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
        where !tol.contains(where: { $0["key"] as? String == key }) {
            tol.append(["key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300])
        }
        spec["tolerations"] = tol
        if spec["restartPolicy"] == nil { spec["restartPolicy"] = "Always" }
        if spec["schedulerName"] == nil { spec["schedulerName"] = "default-scheduler" }
        o["spec"] = spec
        if o["status"] == nil {
            o["status"] = ["phase": "Pending", "qosClass": "BestEffort"]
        }
    }

    // MARK: HTTP

    static func status(_ code: Int, _ reason: String, _ message: String, details: KObject? = nil) -> (Int, Data) {
        var s: KObject = [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Failure", "message": message,
            "reason": reason, "code": code,
        ]
        if let details { s["details"] = details }
        return (code, K.json(s))
    }

    func route(_ req: HTTPRequest) throws -> (Int, Data) {
        let comps = req.path.split(separator: "/").map(String.init)
        switch req.path {
        case "/livez", "/healthz", "/readyz":
            return etcd.healthy()
                ? (200, Data("ok".utf8)) : (500, Data("[-]etcd failed: reason withheld\nhealthz check failed".utf8))
        case "/version":
            return (
                200,
                K.json([
                    "major": "\(version.major)", "minor": "\(version.minor)", "gitVersion": version.description,
                    "gitCommit": "lab-standin", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
                ])
            )
        default: break
        }
        // /api/v1/... or /apis/G/V/...
        var rest: ArraySlice<String>
        var group = ""
        if comps.first == "api", comps.count >= 2 {
            rest = comps.dropFirst(2)
        } else if comps.first == "apis", comps.count >= 3 {
            group = comps[1]
            rest = comps.dropFirst(3)
        } else {
            return Self.status(404, "NotFound", "the server could not find the requested resource")
        }
        var ns: String?
        if rest.first == "namespaces", rest.count >= 3 {
            ns = rest[rest.startIndex + 1]
            rest = rest.dropFirst(2)
        }
        guard let plural = rest.first, let r = KResource.all.first(where: { $0.plural == plural && $0.group == group })
        else {
            return Self.status(404, "NotFound", "the server could not find the requested resource")
        }
        if let crd = r.customResourceDefinition,
            try get(KResource.all.first { $0.plural == "customresourcedefinitions" } ?? r, nil, crd) == nil
        {
            return Self.status(404, "NotFound", "the server could not find the requested resource")
        }
        let name = rest.dropFirst().first
        let sub = rest.dropFirst(2).first
        let dryRun = req.query["dryRun"] == "All"
        let effectiveNS = r.namespaced ? ns : nil
        if r.plural == "namespaces", ns == nil, let n = name { _ = n }

        switch (req.method, name, sub) {
        case ("GET", nil, _):
            let (all, revision) = try listAt(r, namespace: effectiveNS)
            let items = all.filter { Self.selected($0, query: req.query) }
            return (
                200,
                K.json([
                    "kind": r.kind + "List", "apiVersion": r.apiVersion,
                    "metadata": ["resourceVersion": "\(revision)"], "items": items,
                ])
            )
        case ("GET", let n?, nil):
            guard let (o, _) = try get(r, effectiveNS, n) else { return notFound(r, n) }
            return (200, K.json(o))
        case ("POST", nil, _):
            guard var o = K.parse(req.body) else { return Self.status(400, "BadRequest", "invalid JSON body") }
            if r.namespaced, let ns, try get(KResource.namespaces, nil, ns) == nil {
                return Self.status(
                    404, "NotFound", "namespaces \"\(ns)\" not found", details: ["name": ns, "kind": "namespaces"])
            }
            if dryRun {
                o["apiVersion"] = r.apiVersion
                o["kind"] = r.kind
                return (201, K.json(o))
            }
            if let invalid = Self.validate(r, o) { return invalid }
            if r.plural == "certificatesigningrequests" { o = signCSR(o) }
            guard let created = try create(r, o, namespace: effectiveNS) else {
                let n = K.name(o)
                return Self.status(
                    409, "AlreadyExists", "\(r.plural) \"\(n)\" already exists", details: ["name": n, "kind": r.plural])
            }
            return (201, K.json(created))
        case ("PUT", let n?, _):
            guard var o = K.parse(req.body) else { return Self.status(400, "BadRequest", "invalid JSON body") }
            guard let (old, rev) = try get(r, effectiveNS, n) else { return notFound(r, n) }
            if let rv = K.meta(o)["resourceVersion"] as? String, !rv.isEmpty, rv != "\(rev)" {
                return Self.status(
                    409, "Conflict",
                    "Operation cannot be fulfilled on \(r.plural) \"\(n)\": the object has been modified; please apply your changes to the latest version and try again"
                )
            }
            var m = K.meta(o)
            for k in ["uid", "creationTimestamp", "namespace"] { m[k] = K.meta(old)[k] }
            if r.kind == "Deployment" || r.kind == "DaemonSet", K.json(K.spec(o)) != K.json(K.spec(old)) {
                m["generation"] = (K.meta(old)["generation"] as? Int ?? 1) + 1
            }
            o["metadata"] = m
            if dryRun { return (200, K.json(o)) }
            K.set(&o, ["metadata", "resourceVersion"], nil)
            guard try etcd.putIf(Self.key(r, effectiveNS, n), K.json(o), modRevision: rev) else {
                return Self.status(
                    409, "Conflict",
                    "Operation cannot be fulfilled on \(r.plural) \"\(n)\": the object has been modified; please apply your changes to the latest version and try again"
                )
            }
            return (200, K.json(o))
        case ("PATCH", let n?, let s):
            let type = PatchType(contentType: req.headers["content-type"] ?? "")
            guard let type else {
                return Self.status(
                    415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                )
            }
            let patch: Any
            do { patch = try type.decode(req.body) } catch {
                return Self.status(400, "BadRequest", "error decoding patch: \(error)")
            }
            if try get(r, effectiveNS, n) == nil {
                // Server-side apply creates what does not exist.
                guard type == .apply, var o = patch as? KObject else { return notFound(r, n) }
                if r.namespaced, let ns, try get(KResource.namespaces, nil, ns) == nil {
                    return Self.status(
                        404, "NotFound", "namespaces \"\(ns)\" not found", details: ["name": ns, "kind": "namespaces"])
                }
                K.set(&o, ["metadata", "name"], n)
                if let invalid = Self.validate(r, o) { return invalid }
                if dryRun { return (201, K.json(o)) }
                guard let created = try create(r, o, namespace: effectiveNS) else {
                    return Self.status(
                        409, "AlreadyExists", "\(r.plural) \"\(n)\" already exists",
                        details: ["name": n, "kind": r.plural])
                }
                return (201, K.json(created))
            }
            var failure: (Int, Data)?
            func apply(_ o: KObject) -> KObject {
                do {
                    var n = try type.apply(patch, to: o)
                    // Identity is the server's.
                    for k in ["uid", "creationTimestamp", "name", "namespace"] {
                        K.set(&n, ["metadata", k], K.meta(o)[k])
                    }
                    n["apiVersion"] = o["apiVersion"]
                    n["kind"] = o["kind"]
                    return n
                } catch {
                    failure = Self.status(422, "Invalid", "\(error)")
                    return o
                }
            }
            if dryRun {
                guard let (o, _) = try get(r, effectiveNS, n) else { return notFound(r, n) }
                let patched = apply(o)
                return failure ?? (200, K.json(patched))
            }
            // Checked on the current object first, so that a patch that fails or yields an invalid object
            // changes nothing.
            if let (current, _) = try get(r, effectiveNS, n) {
                let trial = apply(current)
                if let failure { return failure }
                if let invalid = Self.validate(r, trial) { return invalid }
            }
            let specPatched = s == nil
            guard
                let updated = try update(
                    r, effectiveNS, n,
                    { o in
                        let before = K.json(K.spec(o))
                        o = apply(o)
                        if specPatched, r.kind == "Deployment" || r.kind == "DaemonSet", K.json(K.spec(o)) != before {
                            K.set(&o, ["metadata", "generation"], (K.meta(o)["generation"] as? Int ?? 1) + 1)
                        }
                    })
            else { return notFound(r, n) }
            return (200, K.json(updated))
        case ("DELETE", let n?, nil):
            guard let (o, _) = try get(r, effectiveNS, n) else { return notFound(r, n) }
            if !dryRun {
                try delete(r, effectiveNS, n)
                if r.plural == "namespaces" {
                    for other in KResource.all where other.namespaced {
                        for item in try list(other, namespace: n) { try delete(other, n, K.name(item)) }
                    }
                }
            }
            return (200, K.json(o))
        case ("POST", let n?, "eviction") where r.plural == "pods":
            // kubectl sends dry-run in the Eviction's deleteOptions, not in the query.
            let options = K.parse(req.body)?["deleteOptions"] as? KObject
            let bodyDryRun = (options?["dryRun"] as? [String] ?? []).contains("All")
            return try evict(ns ?? "default", n, dryRun: dryRun || bodyDryRun)
        default:
            return Self.status(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
    }

    func notFound(_ r: KResource, _ n: String) -> (Int, Data) {
        Self.status(404, "NotFound", "\(r.plural) \"\(n)\" not found", details: ["name": n, "kind": r.plural])
    }

    // MARK: eviction and disruption budgets

    static let pods = KResource.pods
    static let nodes = KResource.nodes
    static let pdbs = KResource.pdbs
    static let leases = KResource.leases
    static let daemonsets = KResource.daemonsets
    static let deployments = KResource.deployments

    static func podReady(_ p: KObject) -> Bool {
        K.get(p, "status.phase") as? String == "Running" && K.conditionStatus(p, "Ready") == "True"
    }

    /// (allowed disruptions, desired healthy, current healthy) for one PDB.
    func budget(_ pdb: KObject, pods: [KObject]) -> (allowed: Int, desired: Int, current: Int, expected: Int) {
        let sel = K.spec(pdb)["selector"] as? KObject
        let matching = pods.filter { K.matches(selector: sel, labels: K.labels($0)) }
        let expected = matching.count
        let healthy = matching.filter(Self.podReady).count
        func resolve(_ v: Any?) -> Int? {
            if let i = v as? Int { return i }
            if let s = v as? String, s.hasSuffix("%"), let pct = Double(s.dropLast()) {
                return Int((pct / 100 * Double(expected)).rounded(.up))
            }
            if let s = v as? String { return Int(s) }
            return nil
        }
        var desired = 0
        if let min = resolve(K.spec(pdb)["minAvailable"]) {
            desired = min
        } else if let maxU = resolve(K.spec(pdb)["maxUnavailable"]) {
            desired = max(0, expected - maxU)
        }
        return (max(0, healthy - desired), desired, healthy, expected)
    }

    func evict(_ ns: String, _ name: String, dryRun: Bool) throws -> (Int, Data) {
        guard let (pod, _) = try get(Self.pods, ns, name) else { return notFound(Self.pods, name) }
        let podsInNS = try list(Self.pods, namespace: ns)
        let pdbs = try list(Self.pdbs, namespace: ns).filter {
            K.matches(selector: K.spec($0)["selector"] as? KObject, labels: K.labels(pod))
        }
        if pdbs.count > 1 {
            return Self.status(
                500, "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
        }
        // canIgnorePDB: a finished, Pending or already terminating pod is deleted without the budget; a pod
        // that is Running but not Ready does not count against it (it is already disrupted).
        let phase = K.get(pod, "status.phase") as? String ?? "Pending"
        let ignorePDB =
            ["Succeeded", "Failed", "Pending"].contains(phase) || K.get(pod, "metadata.deletionTimestamp") != nil
        if let pdb = pdbs.first, !ignorePDB, Self.podReady(pod) {
            let b = budget(pdb, pods: podsInNS)
            if b.allowed <= 0 {
                return Self.status(
                    429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                    details: [
                        "causes": [
                            [
                                "reason": "DisruptionBudget",
                                "message":
                                    "The disruption budget \(K.name(pdb)) needs \(b.desired) healthy pods and has \(b.current) currently",
                            ]
                        ]
                    ])
            }
        }
        if !dryRun { try delete(Self.pods, ns, name) }
        return (201, K.json(["kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Success", "code": 201]))
    }

    // MARK: controllers

    /// Runs the controllers forever on the calling thread (every `interval` seconds), while holding the lock.
    public func runControllers(interval: Double = 1) {
        while true {
            if holdsLeadership() { try? reconcile() }
            Thread.sleep(forTimeInterval: interval)
        }
    }

    func holdsLeadership() -> Bool {
        let key = "/appliance-lab/controller-leader"
        let now = Date().timeIntervalSince1970
        let mine = K.json(["holder": identity, "renewed": now])
        let fetched: EtcdClient.KV?
        do { fetched = try etcd.get(key) } catch { return false }
        if let cur = fetched, let o = K.parse(cur.value) {
            let holder = o["holder"] as? String ?? ""
            let renewed = o["renewed"] as? Double ?? 0
            if holder != identity && now - renewed < 5 { return false }
            return (try? etcd.putIf(key, mine, modRevision: cur.modRevision)) ?? false
        }
        return (try? etcd.putIf(key, mine, modRevision: 0)) ?? false
    }

    public func reconcile() throws {
        try nodeLifecycle()
        try garbageCollect()
        try daemonSets()
        try deploymentsController()
        try statefulSetsController()
        try taintEviction()
        try jobsController()
        try nfsProvisioner()
        try cnpgOperator()
        try schedule()
        try kaiSchedule()
        try pdbStatus()
    }

    func nodeLifecycle() throws {
        let now = Date()
        for node in try list(Self.nodes) {
            let name = K.name(node)
            let lease = try get(Self.leases, "kube-node-lease", name)?.0
            let renew =
                K.date(K.get(lease, "spec.renewTime") as? String) ?? K.date(
                    K.meta(node)["creationTimestamp"] as? String) ?? now
            let stale = now.timeIntervalSince(renew) > nodeGraceSeconds
            let ready = K.conditionStatus(node, "Ready")
            if stale && ready != "Unknown" {
                try update(Self.nodes, nil, name) { o in
                    var conds = K.status(o)["conditions"] as? [KObject] ?? []
                    for i in conds.indices {
                        conds[i]["status"] = "Unknown"
                        conds[i]["reason"] = "NodeStatusUnknown"
                        conds[i]["message"] = "Kubelet stopped posting node status."
                        conds[i]["lastTransitionTime"] = K.timestamp(now)
                    }
                    K.set(&o, ["status", "conditions"], conds)
                    var taints = K.spec(o)["taints"] as? [KObject] ?? []
                    if !taints.contains(where: { $0["key"] as? String == "node.kubernetes.io/unreachable" }) {
                        taints.append([
                            "key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
                            "timeAdded": K.timestamp(now),
                        ])
                        taints.append([
                            "key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                            "timeAdded": K.timestamp(now),
                        ])
                    }
                    K.set(&o, ["spec", "taints"], taints)
                }
            } else if !stale && ready == "True" {
                let taints = K.spec(node)["taints"] as? [KObject] ?? []
                if taints.contains(where: { $0["key"] as? String == "node.kubernetes.io/unreachable" }) {
                    try update(Self.nodes, nil, name) { o in
                        K.set(
                            &o, ["spec", "taints"],
                            taints.filter { $0["key"] as? String != "node.kubernetes.io/unreachable" })
                    }
                }
            }
        }
    }

    /// Pods on nodes with a NoExecute taint they do not tolerate are deleted. Tolerations with
    /// tolerationSeconds count as tolerating (timed eviction is not modelled).
    func taintEviction() throws {
        let nodes = Dictionary(uniqueKeysWithValues: try list(Self.nodes).map { (K.name($0), $0) })
        for pod in try list(Self.pods) {
            guard let nn = K.spec(pod)["nodeName"] as? String, let node = nodes[nn] else { continue }
            let tol = K.spec(pod)["tolerations"] as? [KObject] ?? []
            for t in K.spec(node)["taints"] as? [KObject] ?? [] where t["effect"] as? String == "NoExecute" {
                if !K.tolerates(tol, t) {
                    try delete(Self.pods, K.namespace(pod), K.name(pod))
                    break
                }
            }
        }
    }

    static func requests(_ pod: KObject) -> [String: Double] {
        var out: [String: Double] = [:]
        for c in K.spec(pod)["containers"] as? [KObject] ?? [] {
            let req = K.get(c, "resources.requests") as? KObject ?? K.get(c, "resources.limits") as? KObject ?? [:]
            for (k, v) in req { out[k, default: 0] += K.quantity(v) }
            // extended resources are requested through limits
            for (k, v) in K.get(c, "resources.limits") as? KObject ?? [:] where k.contains("/") && req[k] == nil {
                out[k, default: 0] += K.quantity(v)
            }
        }
        return out
    }

    /// Why the node cannot run the pod (nil: it can), in the scheduler's words.
    static func unfit(_ pod: KObject, node: KObject, used: [String: Double]) -> String? {
        if K.spec(node)["unschedulable"] as? Bool == true,
            !K.tolerates(
                K.spec(pod)["tolerations"] as? [KObject] ?? [],
                ["key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"])
        {
            return "node(s) were unschedulable"
        }
        if !K.isReady(node: node) { return "node(s) had untolerated taint {node.kubernetes.io/not-ready: }" }
        for (k, v) in K.spec(pod)["nodeSelector"] as? [String: String] ?? [:] where K.labels(node)[k] != v {
            return "node(s) didn't match Pod's node affinity/selector"
        }
        if let terms = K.get(
            pod, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms")
            as? [KObject], !terms.isEmpty, !terms.contains(where: { matches($0, labels: K.labels(node)) })
        {
            return "node(s) didn't match Pod's node affinity/selector"
        }
        let tol = K.spec(pod)["tolerations"] as? [KObject] ?? []
        for t in K.spec(node)["taints"] as? [KObject] ?? [] where (t["effect"] as? String) != "PreferNoSchedule" {
            if !K.tolerates(tol, t) {
                return "node(s) had untolerated taint {\(t["key"] as? String ?? ""): \(t["value"] as? String ?? "")}"
            }
        }
        let alloc = K.status(node)["allocatable"] as? KObject ?? [:]
        for (k, v) in requests(pod) where v > 0 {
            let have = K.quantity(alloc[k])
            if used[k, default: 0] + v > have { return "Insufficient \(k)" }
        }
        if Double(used["pods", default: 0]) + 1 > K.quantity(alloc["pods"] ?? "110") { return "Too many pods" }
        return nil
    }

    /// One node selector term of a required node affinity (its `matchExpressions`, all of them).
    static func matches(_ term: KObject, labels: [String: String]) -> Bool {
        for e in term["matchExpressions"] as? [KObject] ?? [] {
            let key = e["key"] as? String ?? ""
            let values = e["values"] as? [String] ?? []
            let have = labels[key]
            switch e["operator"] as? String ?? "" {
            case "In": if !(have.map { values.contains($0) } ?? false) { return false }
            case "NotIn": if let have, values.contains(have) { return false }
            case "Exists": if have == nil { return false }
            case "DoesNotExist": if have != nil { return false }
            default: return false
            }
        }
        return true
    }

    func usage(_ pods: [KObject]) -> [String: [String: Double]] {
        var out: [String: [String: Double]] = [:]
        for p in pods {
            guard let n = K.spec(p)["nodeName"] as? String else { continue }
            let phase = K.get(p, "status.phase") as? String
            if phase == "Succeeded" || phase == "Failed" { continue }
            for (k, v) in Self.requests(p) { out[n, default: [:]][k, default: 0] += v }
            out[n, default: [:]]["pods", default: 0] += 1
        }
        return out
    }

    func schedule() throws {
        let nodes = try list(Self.nodes)
        var pods = try list(Self.pods)
        var used = usage(pods)
        for i in pods.indices {
            let pod = pods[i]
            guard (K.spec(pod)["nodeName"] as? String ?? "").isEmpty else { continue }
            // Only pods that name the default scheduler (others wait for theirs: `kaiSchedule()`).
            guard (K.spec(pod)["schedulerName"] as? String ?? "default-scheduler") == "default-scheduler" else {
                continue
            }
            if let phase = K.get(pod, "status.phase") as? String, phase == "Succeeded" || phase == "Failed" {
                continue
            }
            var reasons: [String: Int] = [:]
            var best: (String, Double)?
            for node in nodes {
                let n = K.name(node)
                if let why = Self.unfit(pod, node: node, used: used[n] ?? [:]) {
                    reasons[why, default: 0] += 1
                    continue
                }
                let load = used[n]?["pods"] ?? 0
                if load < (best?.1 ?? .infinity) { best = (n, load) }
            }
            let ns = K.namespace(pod), name = K.name(pod)
            if let (target, _) = best {
                try update(Self.pods, ns, name) { o in
                    K.set(&o, ["spec", "nodeName"], target)
                    K.set(
                        &o, ["status", "conditions"],
                        [["type": "PodScheduled", "status": "True", "lastTransitionTime": K.timestamp()]])
                }
                for (k, v) in Self.requests(pod) { used[target, default: [:]][k, default: 0] += v }
                used[target, default: [:]]["pods", default: 0] += 1
                K.set(&pods[i], ["spec", "nodeName"], target)
            } else {
                let detail = reasons.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                let msg =
                    "0/\(nodes.count) nodes are available: \(detail). preemption: 0/\(nodes.count) nodes are available: \(nodes.count) Preemption is not helpful for scheduling."
                if K.get(pod, "status.conditions.0.message") as? String != msg {
                    try update(Self.pods, ns, name) { o in
                        K.set(
                            &o, ["status", "conditions"],
                            [
                                [
                                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": msg,
                                    "lastTransitionTime": K.timestamp(),
                                ]
                            ])
                    }
                }
            }
        }
    }

    static func podFromTemplate(_ template: KObject, owner: KObject, ownerKind: String, name: String, ns: String)
        -> KObject
    {
        var meta = template["metadata"] as? KObject ?? [:]
        meta["name"] = name
        meta["namespace"] = ns
        meta["ownerReferences"] = [
            [
                "apiVersion": "apps/v1", "kind": ownerKind,
                "name": ownerKind == "ReplicaSet" ? K.name(owner) + "-" + templateHash(template) : K.name(owner),
                "uid": K.meta(owner)["uid"] as? String ?? "", "controller": true, "blockOwnerDeletion": true,
            ]
        ]
        return ["apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"] as? KObject ?? [:]]
    }

    static func templateHash(_ template: KObject) -> String {
        let d = K.json(template)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in d { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        var s = ""
        for _ in 0..<10 {
            s.append(alphabet[Int(h % UInt64(alphabet.count))])
            h /= UInt64(alphabet.count)
        }
        return s
    }

    static func suffix() -> String {
        let alphabet = Array("bcdfghjklmnpqrstvwxz2456789")
        return String((0..<5).map { _ in alphabet[Int.random(in: 0..<alphabet.count)] })
    }

    static func owned(_ pods: [KObject], by o: KObject) -> [KObject] {
        let uid = K.meta(o)["uid"] as? String
        return pods.filter { K.controller($0)?["uid"] as? String == uid }
    }

    /// Pods whose controlling DaemonSet or Deployment is gone are deleted (the garbage collector).
    func garbageCollect() throws {
        let dsUIDs = Set(try list(Self.daemonsets).compactMap { K.meta($0)["uid"] as? String })
        let deploys = Set(try list(Self.deployments).map { K.namespace($0) + "/" + K.name($0) })
        let stsUIDs = Set(try list(Self.statefulsets).compactMap { K.meta($0)["uid"] as? String })
        for p in try list(Self.pods) {
            guard let owner = K.controller(p) else { continue }
            switch owner["kind"] as? String {
            case "DaemonSet":
                if let uid = owner["uid"] as? String, !dsUIDs.contains(uid) {
                    try delete(Self.pods, K.namespace(p), K.name(p))
                }
            case "StatefulSet":
                if let uid = owner["uid"] as? String, !stsUIDs.contains(uid) {
                    try delete(Self.pods, K.namespace(p), K.name(p))
                }
            case "ReplicaSet":
                let rs = owner["name"] as? String ?? ""
                let deploy = rs.split(separator: "-").dropLast().joined(separator: "-")
                if !deploys.contains(K.namespace(p) + "/" + deploy) { try delete(Self.pods, K.namespace(p), K.name(p)) }
            default: break
            }
        }
    }

    func daemonSets() throws {
        let nodes = try list(Self.nodes)
        let pods = try list(Self.pods)
        for ds in try list(Self.daemonsets) {
            let ns = K.namespace(ds)
            let template = K.spec(ds)["template"] as? KObject ?? [:]
            var tol = K.get(template, "spec.tolerations") as? [KObject] ?? []
            for key in [
                "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/unschedulable",
                "node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/pid-pressure",
            ] {
                tol.append([
                    "key": key, "operator": "Exists",
                    "effect": key.hasSuffix("ready") || key.hasSuffix("unreachable") ? "NoExecute" : "NoSchedule",
                ])
            }
            var mine = Self.owned(pods, by: ds)
            var desired = 0
            for node in nodes {
                let n = K.name(node)
                var eligible = true
                for (k, v) in K.get(template, "spec.nodeSelector") as? [String: String] ?? [:]
                where K.labels(node)[k] != v { eligible = false }
                for t in K.spec(node)["taints"] as? [KObject] ?? []
                where t["effect"] as? String != "PreferNoSchedule" && !K.tolerates(tol, t) {
                    eligible = false
                }
                let existing = mine.filter { K.spec($0)["nodeName"] as? String == n }
                if eligible {
                    desired += 1
                    if existing.isEmpty {
                        var pod = Self.podFromTemplate(
                            template, owner: ds, ownerKind: "DaemonSet", name: K.name(ds) + "-" + Self.suffix(), ns: ns)
                        K.set(&pod, ["spec", "nodeName"], n)
                        K.set(&pod, ["spec", "tolerations"], tol)
                        if let created = try create(Self.pods, pod, namespace: ns) { mine.append(created) }
                    }
                } else {
                    for p in existing { try delete(Self.pods, ns, K.name(p)) }
                    mine.removeAll { K.spec($0)["nodeName"] as? String == n }
                }
            }
            let ready = mine.filter(Self.podReady).count
            let st: KObject = [
                "desiredNumberScheduled": desired, "currentNumberScheduled": mine.count, "numberReady": ready,
                "numberAvailable": ready, "updatedNumberScheduled": mine.count, "numberMisscheduled": 0,
                "observedGeneration": K.meta(ds)["generation"] as? Int ?? 1,
            ]
            if K.json(K.status(ds)) != K.json(st) {
                try update(Self.daemonsets, ns, K.name(ds)) { $0["status"] = st }
            }
        }
    }

    func deploymentsController() throws {
        let pods = try list(Self.pods)
        for d in try list(Self.deployments) {
            let ns = K.namespace(d)
            let replicas = K.spec(d)["replicas"] as? Int ?? 1
            let template = K.spec(d)["template"] as? KObject ?? [:]
            let hash = Self.templateHash(template)
            // Only this Deployment's own ReplicaSets: a bare prefix match took the pods of
            // `gpu-operator-node-feature-discovery-master` for `gpu-operator`'s and deleted them as an old template's.
            var mine = pods.filter {
                K.controller($0)?["kind"] as? String == "ReplicaSet"
                    && KubernetesNames.isReplicaSet(K.controller($0)?["name"] as? String ?? "", of: K.name(d))
                    && K.namespace($0) == ns
            }
            // Rolling update: replace pods of an old template.
            let (current, old) = (
                mine.filter { K.labels($0)["pod-template-hash"] == hash },
                mine.filter { K.labels($0)["pod-template-hash"] != hash }
            )
            for p in old { try delete(Self.pods, ns, K.name(p)) }
            mine = current
            if mine.count < replicas {
                for _ in mine.count..<replicas {
                    var pod = Self.podFromTemplate(
                        template, owner: d, ownerKind: "ReplicaSet", name: "\(K.name(d))-\(hash)-\(Self.suffix())",
                        ns: ns)
                    K.set(&pod, ["metadata", "labels", "pod-template-hash"], hash)
                    if let c = try create(Self.pods, pod, namespace: ns) { mine.append(c) }
                }
            } else if mine.count > replicas {
                for p in mine.suffix(mine.count - replicas) { try delete(Self.pods, ns, K.name(p)) }
                mine = Array(mine.prefix(replicas))
            }
            let ready = mine.filter(Self.podReady).count
            var st: KObject = [
                "replicas": mine.count, "updatedReplicas": mine.count, "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": K.meta(d)["generation"] as? Int ?? 1,
            ]
            if ready < replicas { st["unavailableReplicas"] = replicas - ready }
            st["conditions"] = [
                [
                    "type": "Available", "status": ready >= replicas ? "True" : "False",
                    "reason": ready >= replicas ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                    "message": ready >= replicas
                        ? "Deployment has minimum availability." : "Deployment does not have minimum availability.",
                ]
            ]
            if K.json(K.status(d)) != K.json(st) {
                try update(Self.deployments, ns, K.name(d)) { $0["status"] = st }
            }
        }
    }

    func pdbStatus() throws {
        let pods = try list(Self.pods)
        for pdb in try list(Self.pdbs) {
            let b = budget(pdb, pods: pods.filter { K.namespace($0) == K.namespace(pdb) })
            let st: KObject = [
                "currentHealthy": b.current, "desiredHealthy": b.desired, "disruptionsAllowed": b.allowed,
                "expectedPods": b.expected, "observedGeneration": 1,
            ]
            if K.json(K.status(pdb)) != K.json(st) {
                try update(Self.pdbs, K.namespace(pdb), K.name(pdb)) { $0["status"] = st }
            }
        }
    }
}
