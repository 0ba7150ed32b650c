import Foundation
import Yams

/// The `helm` stand-in: `upgrade --install`, `install`, `status`, `list`, `history`, `rollback`, `uninstall`
/// over chart archives (.tgz unpacked with `tar`) or chart directories. Releases are Secrets
/// `sh.helm.release.v1.NAME.vN` (owner=helm labels, as real helm); the rendered manifests are applied to the
/// apiserver stand-in, so Deployments and DaemonSets become pods. Templates: only `{{ .Values.x.y }}`,
/// `{{ .Release.Name }}`, `{{ .Release.Namespace }}`, `{{ .Chart.Name }}`, `{{ .Chart.Version }}`,
/// `{{ .Chart.AppVersion }}`, optionally piped to `quote`; anything else is refused.
public struct Helm: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    struct Fail: Error { var text: String }

    /// `helm version [--short]`: the version the lab's helm package recorded (its postinst writes
    /// /var/lib/appliance-lab/versions/helm), v3.19.0 without one. Needs no cluster.
    func version(_ args: [String]) -> ToolOutput {
        let v =
            context.read("/var/lib/appliance-lab/versions/helm")?.trimmingCharacters(in: .whitespacesAndNewlines)
            ?? "v3.19.0"
        if args.contains("--short") { return .ok("\(v)+glabstandin\n") }
        return .ok(
            "version.BuildInfo{Version:\"\(v)\", GitCommit:\"lab-standin\", GitTreeState:\"clean\", GoVersion:\"go1.24.0\"}\n"
        )
    }

    public func run(_ args: [String]) -> ToolOutput {
        guard let verb = args.first else { return .fail(1, stderr: "Error: lab stand-in: missing command") }
        if verb == "version" { return version(Array(args.dropFirst())) }
        let f = Flags(Array(args.dropFirst()))
        let client: KubeClient
        do { client = try Kubectl(context: context).client(f) } catch let e as Kubectl.Err {
            return .fail(1, stderr: "Error: Kubernetes cluster unreachable: \(e.text)")
        } catch { return .fail(1, stderr: "Error: \(error)") }
        do {
            switch verb {
            case "upgrade", "install": return try install(client, f, upgrade: verb == "upgrade")
            case "status": return try status(client, f)
            case "list", "ls": return try list(client, f)
            case "history", "hist": return try history(client, f)
            case "rollback": return try rollback(client, f)
            case "uninstall", "delete", "un": return try uninstall(client, f)
            default: return .fail(1, stderr: "Error: unknown command \"\(verb)\" for \"helm\"")
            }
        } catch let e as Fail {
            return .fail(1, stderr: e.text)
        } catch let e as KubeClient.Failure {
            return .fail(1, stderr: "Error: \(e.message)")
        } catch {
            return .fail(1, stderr: "Error: Kubernetes cluster unreachable: \(error)")
        }
    }

    func ns(_ f: Flags) -> String { f.value("namespace") ?? f.value("n") ?? "default" }
    static let secrets = KResource.secrets

    struct Release {
        var name: String
        var namespace: String
        var version: Int
        var status: String
        var chart: String
        var chartVersion: String
        var appVersion: String
        var updated: String
        var description: String
        var manifests: [KObject]
        var values: KObject
        var chartPath: String

        var json: KObject {
            [
                "name": name, "namespace": namespace, "version": version,
                "info": ["status": status, "last_deployed": updated, "description": description],
                "chart": [
                    "metadata": ["name": chart, "version": chartVersion, "appVersion": appVersion], "path": chartPath,
                ], "manifest": manifests, "config": values,
            ]
        }

        init?(_ s: KObject) {
            guard let b = (s["data"] as? [String: String])?["release"], let d = Data(base64Encoded: b),
                let o = K.parse(d)
            else { return nil }
            name = o["name"] as? String ?? ""
            namespace = o["namespace"] as? String ?? ""
            version = o["version"] as? Int ?? 0
            status = K.get(o, "info.status") as? String ?? ""
            updated = K.get(o, "info.last_deployed") as? String ?? ""
            description = K.get(o, "info.description") as? String ?? ""
            chart = K.get(o, "chart.metadata.name") as? String ?? ""
            chartVersion = K.get(o, "chart.metadata.version") as? String ?? ""
            appVersion = K.get(o, "chart.metadata.appVersion") as? String ?? ""
            chartPath = K.get(o, "chart.path") as? String ?? ""
            manifests = o["manifest"] as? [KObject] ?? []
            values = o["config"] as? KObject ?? [:]
        }

        init(
            name: String, namespace: String, version: Int, status: String, chart: String, chartVersion: String,
            appVersion: String, updated: String, description: String, manifests: [KObject], values: KObject,
            chartPath: String
        ) {
            (
                self.name, self.namespace, self.version, self.status, self.chart, self.chartVersion, self.appVersion,
                self.updated, self.description, self.manifests, self.values, self.chartPath
            ) = (
                name, namespace, version, status, chart, chartVersion, appVersion, updated, description, manifests,
                values, chartPath
            )
        }
    }

    func releases(_ c: KubeClient, _ ns: String?, name: String? = nil) throws -> [Release] {
        var q = "labelSelector=owner%3Dhelm"
        if let name { q += "%2Cname%3D\(name)" }
        return try c.list(Self.secrets, ns, query: q).compactMap(Release.init).sorted { $0.version < $1.version }
    }

    func save(_ c: KubeClient, _ r: Release) throws {
        let secret: KObject = [
            "apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": [
                "name": "sh.helm.release.v1.\(r.name).v\(r.version)", "namespace": r.namespace,
                "labels": ["owner": "helm", "name": r.name, "status": r.status, "version": "\(r.version)"],
            ],
            "data": ["release": K.json(r.json).base64EncodedString()],
        ]
        _ = try c.apply(Self.secrets, r.namespace, secret)
    }

    // MARK: charts

    struct Chart {
        var name: String
        var version: String
        var appVersion: String
        var values: KObject
        var templates: [(String, String)]
        /// `crds/*.yaml`: applied as they are (not templated) before the templates, on install only, as helm 3.
        var crds: [(String, String)] = []
    }

    func loadChart(_ path: String) throws -> Chart {
        var dir = path
        let fm = FileManager.default
        let real = path.hasPrefix("/") && fm.fileExists(atPath: context.path(path)) ? context.path(path) : path
        guard fm.fileExists(atPath: real) else { throw Fail(text: "Error: path \"\(path)\" not found") }
        var unpacked: String?
        defer { if let unpacked { try? fm.removeItem(atPath: unpacked) } }
        var isDir: ObjCBool = false
        _ = fm.fileExists(atPath: real, isDirectory: &isDir)
        if !isDir.boolValue {
            let tmp = fm.temporaryDirectory.appendingPathComponent("helm-\(UUID().uuidString)").path
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            let r = Supervisor.run("/bin/tar", ["-xzf", real, "-C", tmp])
            guard r.status == 0 else {
                throw Fail(
                    text:
                        "Error: file '\(path)' does not appear to be a gzipped archive; got 'application/octet-stream'")
            }
            unpacked = tmp
            let top = (try? fm.contentsOfDirectory(atPath: tmp))?.first ?? ""
            dir = tmp + "/" + top
        } else {
            dir = real
        }
        guard let chartYAML = fm.contents(atPath: dir + "/Chart.yaml"),
            let meta = (try? Yams.load(yaml: String(decoding: chartYAML, as: UTF8.self))) as? [String: Any]
        else {
            throw Fail(text: "Error: Chart.yaml file is missing")
        }
        let values =
            (fm.contents(atPath: dir + "/values.yaml").flatMap {
                try? Yams.load(yaml: String(decoding: $0, as: UTF8.self))
            }).map { Kubectl.jsonSafe($0) } as? KObject ?? [:]
        var templates: [(String, String)] = []
        for t in ((try? fm.contentsOfDirectory(atPath: dir + "/templates")) ?? []).sorted()
        where t.hasSuffix(".yaml") || t.hasSuffix(".yml") || t.hasSuffix(".tpl") {
            templates.append(
                (t, String(decoding: fm.contents(atPath: dir + "/templates/" + t) ?? Data(), as: UTF8.self)))
        }
        var crds: [(String, String)] = []
        for t in ((try? fm.contentsOfDirectory(atPath: dir + "/crds")) ?? []).sorted()
        where t.hasSuffix(".yaml") || t.hasSuffix(".yml") {
            crds.append((t, String(decoding: fm.contents(atPath: dir + "/crds/" + t) ?? Data(), as: UTF8.self)))
        }
        guard meta["apiVersion"] as? String == "v2" || meta["apiVersion"] as? String == "v1" else {
            throw Fail(text: "Error: validation: chart.metadata.apiVersion is required")
        }
        guard let chartName = meta["name"] as? String, !chartName.isEmpty else {
            throw Fail(text: "Error: validation: chart.metadata.name is required")
        }
        guard meta["version"] != nil else { throw Fail(text: "Error: validation: chart.metadata.version is required") }
        return Chart(
            name: chartName, version: "\(meta["version"] ?? "")",
            appVersion: "\(meta["appVersion"] ?? "")", values: values, templates: templates, crds: crds)
    }

    func render(_ chart: Chart, release: String, namespace: String, values: KObject, upgrade: Bool = false) throws
        -> [KObject]
    {
        let engine: HelmTemplate
        do { engine = try HelmTemplate(chartName: chart.name, sources: chart.templates) } catch {
            throw Fail(text: error.text)
        }
        let root: [String: Any] = [
            "Values": values,
            "Release": [
                "Name": release, "Namespace": namespace, "Service": "Helm", "IsInstall": !upgrade,
                "IsUpgrade": upgrade,
            ],
            "Chart": ["Name": chart.name, "Version": chart.version, "AppVersion": chart.appVersion],
        ]
        var docs: [KObject] = []
        // Files whose names start with `_` hold only `define`s (helm renders no manifest from them).
        for (file, _) in chart.templates
        where !file.hasPrefix("_") && (file.hasSuffix(".yaml") || file.hasSuffix(".yml")) {
            let out: String
            do { out = try engine.render(file: file, root: root) } catch { throw Fail(text: error.text) }
            let loaded: [Any]
            do { loaded = Array(try Yams.load_all(yaml: out)) } catch {
                throw Fail(text: "Error: YAML parse error on \(chart.name)/templates/\(file): \(error)")
            }
            for d in loaded {
                if let data = try? JSONSerialization.data(withJSONObject: Kubectl.jsonSafe(d)), let o = K.parse(data),
                    o["kind"] != nil
                {
                    docs.append(o)
                }
            }
        }
        return docs
    }

    func mergedValues(_ chart: Chart, _ f: Flags) throws -> KObject {
        var v = chart.values
        for file in f.all("values") + f.all("f") {
            guard
                let t = context.read(file)
                    ?? FileManager.default.contents(atPath: file).map({ String(decoding: $0, as: UTF8.self) })
            else {
                throw Fail(text: "Error: open \(file): no such file or directory")
            }
            if let y = try? Yams.load(yaml: t), let o = Kubectl.jsonSafe(y) as? KObject {
                v = K.mergePatch(v, o) as? KObject ?? v
            }
        }
        for s in f.all("set") {
            for kv in s.split(separator: ",") {
                let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
                guard p.count == 2 else {
                    throw Fail(text: "Error: failed parsing --set data: key \"\(kv)\" has no value")
                }
                let val: Any
                if let i = Int(p[1]) {
                    val = i
                } else if p[1] == "true" || p[1] == "false" {
                    val = p[1] == "true"
                } else {
                    val = p[1]
                }
                K.set(&v, p[0].split(separator: ".").map(String.init), val)
            }
        }
        return v
    }

    // MARK: commands

    /// Helm 3 installs a chart's `crds/` once, before its templates, and never upgrades or deletes them.
    func installCRDs(_ c: KubeClient, _ chart: Chart) throws {
        for (file, text) in chart.crds {
            let loaded: [Any]
            do { loaded = Array(try Yams.load_all(yaml: text)) } catch {
                throw Fail(text: "Error: failed to install CRD crds/\(file): \(error)")
            }
            for d in loaded {
                guard let data = try? JSONSerialization.data(withJSONObject: Kubectl.jsonSafe(d)),
                    let o = K.parse(data), o["kind"] as? String == "CustomResourceDefinition"
                else { continue }
                let crds = KResource.forKind("CustomResourceDefinition") ?? Self.secrets
                if try c.get(crds, nil, K.name(o)) == nil { _ = try c.create(crds, nil, o) }
            }
        }
    }

    func deployedBlock(_ r: Release) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "EEE MMM d HH:mm:ss yyyy"
        let d = K.date(r.updated).map { f.string(from: $0) } ?? r.updated
        return
            "NAME: \(r.name)\nLAST DEPLOYED: \(d)\nNAMESPACE: \(r.namespace)\nSTATUS: \(r.status)\nREVISION: \(r.version)\nTEST SUITE: None\n"
    }

    /// The events of a hook object (`helm.sh/hook: pre-install,pre-upgrade`); empty for a release manifest.
    static func hookEvents(_ o: KObject) -> Set<String> {
        guard let hook = K.annotations(o)["helm.sh/hook"] else { return [] }
        return Set(hook.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
    }

    func applyManifests(_ c: KubeClient, _ docs: [KObject], ns: String, previous: [KObject], release: String) throws {
        for o in docs {
            guard let r = KResource.forKind(o["kind"] as? String ?? "") else {
                throw Fail(
                    text:
                        "Error: unable to build kubernetes objects from release manifest: resource mapping not found for name: \"\(K.name(o))\" namespace: \"\" from \"\": no matches for kind \"\(o["kind"] as? String ?? "")\" in version \"\(o["apiVersion"] as? String ?? "")\"\nensure CRDs are installed first"
                )
            }
            var obj = o
            var m = K.meta(obj)
            m["labels"] = (m["labels"] as? [String: String] ?? [:]).merging(["app.kubernetes.io/managed-by": "Helm"]) {
                a, _ in a
            }
            m["annotations"] = (m["annotations"] as? [String: String] ?? [:]).merging([
                "meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns,
            ]) { a, _ in a }
            obj["metadata"] = m
            _ = try c.apply(r, r.namespaced ? (K.namespace(o).isEmpty ? ns : K.namespace(o)) : nil, obj)
        }
        // Objects of the previous revision that are gone now are deleted.
        for o in previous
        where !docs.contains(where: { K.name($0) == K.name(o) && $0["kind"] as? String == o["kind"] as? String }) {
            if let r = KResource.forKind(o["kind"] as? String ?? "") {
                try? c.delete(r, r.namespaced ? (K.namespace(o).isEmpty ? ns : K.namespace(o)) : nil, K.name(o))
            }
        }
    }

    func waitReady(_ c: KubeClient, _ docs: [KObject], ns: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var ok = true
            for o in docs {
                guard let r = KResource.forKind(o["kind"] as? String ?? ""),
                    r.kind == "Deployment" || r.kind == "DaemonSet" || r.kind == "StatefulSet"
                else { continue }
                guard let cur = try? c.get(r, K.namespace(o).isEmpty ? ns : K.namespace(o), K.name(o)) else {
                    ok = false; break
                }
                let st = K.status(cur)
                // As helm's wait: the controller has seen the current spec (an upgrade's new template), so the
                // replicas counted are the new ones, not the old template's still-Ready pods.
                if (st["observedGeneration"] as? Int ?? 0) < (K.meta(cur)["generation"] as? Int ?? 1) {
                    ok = false
                }
                if r.kind == "Deployment",
                    (st["availableReplicas"] as? Int ?? 0) < (K.spec(cur)["replicas"] as? Int ?? 1)
                {
                    ok = false
                }
                if r.kind == "StatefulSet",
                    (st["readyReplicas"] as? Int ?? 0) < (K.spec(cur)["replicas"] as? Int ?? 1)
                {
                    ok = false
                }
                if r.kind == "DaemonSet",
                    st["observedGeneration"] == nil
                        || (st["numberAvailable"] as? Int ?? 0) < (st["desiredNumberScheduled"] as? Int ?? 0)
                {
                    ok = false
                }
            }
            if ok { return true }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return false
    }

    func install(_ c: KubeClient, _ f: Flags, upgrade: Bool) throws -> ToolOutput {
        guard f.positional.count >= 2 else {
            throw Fail(text: "Error: \"helm \(upgrade ? "upgrade" : "install")\" requires 2 arguments")
        }
        let name = f.positional[0], chartPath = f.positional[1], ns = ns(f)
        let history = try releases(c, ns, name: name)
        if let last = history.last, last.status.hasPrefix("pending-") {
            // As helm 3: a release whose last operation never finished (its helm was killed) is locked.
            throw Fail(
                text:
                    "Error: \(upgrade ? "UPGRADE" : "INSTALLATION") FAILED: another operation (install/upgrade/rollback) is in progress"
            )
        }
        let deployed = history.last { $0.status == "deployed" }
        if upgrade && history.isEmpty && !f.has("install") {
            throw Fail(text: "Error: UPGRADE FAILED: \"\(name)\" has no deployed releases")
        }
        if !upgrade && !history.isEmpty {
            throw Fail(text: "Error: INSTALLATION FAILED: cannot re-use a name that is still in use")
        }
        if try c.get(KResource.namespaces, nil, ns) == nil {
            guard f.has("create-namespace") else {
                throw Fail(
                    text:
                        "Error: \(history.isEmpty ? "INSTALLATION" : "UPGRADE") FAILED: create: failed to create: namespaces \"\(ns)\" not found"
                )
            }
            _ = try c.create(
                KResource.namespaces, nil, ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": ns]])
        }
        let chart = try loadChart(chartPath)
        let values = try mergedValues(chart, f)
        if history.isEmpty { try installCRDs(c, chart) }
        // Hooks (`helm.sh/hook`) are not part of the release: only those of this event are applied, pre-* before the
        // manifests and post-* after, and nothing deletes them later (a chart's generated credentials made by a
        // pre-install hook outlive every upgrade, as with Helm).
        let rendered = try render(chart, release: name, namespace: ns, values: values, upgrade: !history.isEmpty)
        let event = history.isEmpty ? "install" : "upgrade"
        let docs = rendered.filter { Self.hookEvents($0).isEmpty }
        let preHooks = rendered.filter { Self.hookEvents($0).contains("pre-\(event)") }
        let postHooks = rendered.filter { Self.hookEvents($0).contains("post-\(event)") }
        let version = (history.last?.version ?? 0) + 1
        var rel = Release(
            name: name, namespace: ns, version: version, status: "pending-\(history.isEmpty ? "install" : "upgrade")",
            chart: chart.name, chartVersion: chart.version, appVersion: chart.appVersion,
            updated: K.timestamp(context.now()),
            description: f.value("description") ?? (history.isEmpty ? "Install complete" : "Upgrade complete"),
            manifests: docs, values: values, chartPath: chartPath)
        try save(c, rel)
        var out = history.isEmpty && upgrade ? "Release \"\(name)\" does not exist. Installing it now.\n" : ""
        try applyManifests(c, preHooks, ns: ns, previous: [], release: name)
        try applyManifests(c, docs, ns: ns, previous: deployed?.manifests ?? [], release: name)
        try applyManifests(c, postHooks, ns: ns, previous: [], release: name)
        if f.has("wait") || f.has("atomic") {
            let t = f.value("timeout").flatMap(KubeadmConfigParser.parseDuration) ?? 300
            if !waitReady(c, docs, ns: ns, timeout: t) {
                rel.status = "failed"
                rel.description = "Release \"\(name)\" failed: context deadline exceeded"
                try save(c, rel)
                return .fail(
                    1,
                    stderr: "Error: \(history.isEmpty ? "INSTALLATION" : "UPGRADE") FAILED: context deadline exceeded")
            }
        }
        if var prev = deployed {
            prev.status = "superseded"
            try save(c, prev)
        }
        rel.status = "deployed"
        try save(c, rel)
        if !history.isEmpty { out += "Release \"\(name)\" has been upgraded. Happy Helming!\n" }
        return .ok(out + deployedBlock(rel))
    }

    func status(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let name = f.positional.first, let r = try releases(c, ns(f), name: name).last else {
            throw Fail(text: "Error: release: not found")
        }
        if f.value("output") == "json" || f.value("o") == "json" {
            return .ok(String(decoding: K.json(r.json), as: UTF8.self) + "\n")
        }
        return .ok(deployedBlock(r))
    }

    func list(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        let all = try releases(c, f.has("all-namespaces") || f.has("A") ? nil : ns(f))
        var latest: [String: Release] = [:]
        for r in all where r.status != "uninstalled" { latest["\(r.namespace)/\(r.name)"] = r }
        if f.value("output") == "json" || f.value("o") == "json" {
            // helm's `list -o json`: revision as a string, `updated` in Go's time.Time format, `app_version`.
            let rows: [KObject] = latest.values.sorted(by: { $0.name < $1.name }).map { r in
                [
                    "name": r.name, "namespace": r.namespace, "revision": "\(r.version)",
                    "updated": Self.goTime(r.updated), "status": r.status, "chart": "\(r.chart)-\(r.chartVersion)",
                    "app_version": r.appVersion,
                ]
            }
            return .ok(String(decoding: K.json(rows), as: UTF8.self) + "\n")
        }
        var rows = [["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION"]]
        for r in latest.values.sorted(by: { $0.name < $1.name }) {
            rows.append([
                r.name, r.namespace, "\(r.version)", r.updated, r.status, "\(r.chart)-\(r.chartVersion)", r.appVersion,
            ])
        }
        return .ok(Self.tabular(rows))
    }

    /// Go's `time.Time.String()` of an RFC 3339 time stamp (`2026-11-30 19:03:25.000000000 +0000 UTC`).
    static func goTime(_ stamp: String) -> String {
        guard let d = K.date(stamp) else { return stamp }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSSSSSSSS"
        return f.string(from: d) + " +0000 UTC"
    }

    static func tabular(_ rows: [[String]]) -> String {
        var w = Array(repeating: 0, count: rows.first?.count ?? 0)
        for r in rows { for (i, c) in r.enumerated() { w[i] = max(w[i], c.count) } }
        return rows.map { r in
            r.enumerated().map { i, c in
                i == r.count - 1 ? c : c.padding(toLength: w[i] + 1, withPad: " ", startingAt: 0) + "\t"
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    func history(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let name = f.positional.first else { throw Fail(text: "Error: \"helm history\" requires 1 argument") }
        let h = try releases(c, ns(f), name: name)
        if h.isEmpty { throw Fail(text: "Error: release: not found") }
        var rows = [["REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"]]
        for r in h {
            rows.append([
                "\(r.version)", r.updated, r.status, "\(r.chart)-\(r.chartVersion)", r.appVersion, r.description,
            ])
        }
        return .ok(Self.tabular(rows))
    }

    func rollback(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let name = f.positional.first else {
            throw Fail(text: "Error: \"helm rollback\" requires at least 1 argument")
        }
        let n = ns(f)
        let h = try releases(c, n, name: name)
        guard let cur = h.last else { throw Fail(text: "Error: release: not found") }
        let targetV = f.positional.count > 1 ? Int(f.positional[1]) ?? 0 : cur.version - 1
        guard let target = h.first(where: { $0.version == targetV }) else {
            throw Fail(text: "Error: release: not found")
        }
        try applyManifests(c, target.manifests, ns: n, previous: cur.manifests, release: name)
        var prev = cur
        prev.status = "superseded"
        try save(c, prev)
        var rel = target
        rel.version = cur.version + 1
        rel.status = "deployed"
        rel.updated = K.timestamp(context.now())
        rel.description = "Rollback to \(targetV)"
        try save(c, rel)
        return .ok("Rollback was a success! Happy Helming!\n")
    }

    func uninstall(_ c: KubeClient, _ f: Flags) throws -> ToolOutput {
        guard let name = f.positional.first else {
            throw Fail(text: "Error: \"helm uninstall\" requires at least 1 argument")
        }
        let n = ns(f)
        let h = try releases(c, n, name: name)
        guard let cur = h.last else {
            throw Fail(text: "Error: uninstall: Release not loaded: \(name): release: not found")
        }
        try applyManifests(c, [], ns: n, previous: cur.manifests, release: name)
        for r in h { try? c.delete(Self.secrets, n, "sh.helm.release.v1.\(r.name).v\(r.version)") }
        return .ok("release \"\(name)\" uninstalled\n")
    }
}
