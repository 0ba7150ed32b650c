import ApplianceModel
import Foundation

/// Finds `profiles/`, `preflight/` and `schemas/`: `$APPLIANCE_HOME`, then the repository the executable was
/// built in (walking up from the binary), then the current directory's repository, then `/usr/share/appliance`.
public enum ResourceLocator {
    public static func home(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let h = environment["APPLIANCE_HOME"], !h.isEmpty { return h }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
            .deletingLastPathComponent().path
        for start in [exe, FileManager.default.currentDirectoryPath] {
            var dir = start
            for _ in 0..<8 {
                if FileManager.default.fileExists(atPath: dir + "/preflight/checks")
                    && FileManager.default.fileExists(atPath: dir + "/profiles")
                {
                    return dir
                }
                let parent = (dir as NSString).deletingLastPathComponent
                if parent == dir { break }
                dir = parent
            }
        }
        return FileManager.default.fileExists(atPath: "/usr/share/appliance/profiles") ? "/usr/share/appliance" : nil
    }

    public static func profilesDirectory() -> String { (home() ?? "/usr/share/appliance") + "/profiles" }
    public static func preflightDirectory() -> String { (home() ?? "/usr/share/appliance") + "/preflight" }
}

/// A node to check.
public struct PreflightNode: Sendable {
    public var name: String
    public var address: String
    public var roles: [NodeRole]
    public var shell: any NodeShell
    public init(name: String, address: String, roles: [NodeRole], shell: any NodeShell) {
        self.name = name
        self.address = address
        self.roles = roles
        self.shell = shell
    }
}

/// Runs the collector on every node in parallel (bounded), then analyses against the profile.
public struct PreflightRunner: Sendable {
    public var catalog: CheckCatalog
    public var profile: HardwareProfile
    public var site: SiteInventory?
    public var collectorScript: String
    public var timeout: Duration
    public var parallelism: Int
    public var bundleGiB: Double
    /// The image references of the bundle to install, for the checks that compare a node with it.
    public var bundleImages: [String]?
    public var runDCGM: Bool
    public var waivers: [Waiver]

    public init(
        catalog: CheckCatalog, profile: HardwareProfile, site: SiteInventory?, collectorScript: String,
        timeout: Duration = .seconds(60), parallelism: Int = 32, bundleGiB: Double = 0,
        bundleImages: [String]? = nil, runDCGM: Bool = false, waivers: [Waiver] = []
    ) {
        self.catalog = catalog
        self.profile = profile
        self.site = site
        self.collectorScript = collectorScript
        self.timeout = timeout
        self.parallelism = max(1, parallelism)
        self.bundleGiB = bundleGiB
        self.bundleImages = bundleImages
        self.runDCGM = runDCGM
        self.waivers = waivers
    }

    /// Loads `collect.sh` from a preflight directory.
    public static func collector(in directory: String) throws -> String {
        try String(contentsOfFile: directory + "/collect.sh", encoding: .utf8)
    }

    /// The script for one node: parameters as shell variables, then the collector.
    public func script(for node: PreflightNode, all: [PreflightNode]) -> String {
        func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        var names = all.map(\.name).filter { $0 != node.name }
        if let n = site?.network {
            names.append("appliance-preflight.\(n.domain)")
            let apiHost = String(n.apiEndpoint.split(separator: ":").first ?? "")
            if !HardwareProfile.isIPv4(apiHost) { names.append(apiHost) }
        }
        var vars: [(String, String)] = [
            ("PF_PEERS", all.filter { $0.name != node.name }.map(\.address).joined(separator: " ")),
            ("PF_DNS_NAMES", names.joined(separator: " ")),
            ("PF_STAGING_DIR", "/var/lib/appliance"),
            ("PF_DCGM", runDCGM ? "1" : "0"),
            ("PF_CMD_TIMEOUT", String(max(1, Int(timeout.seconds / 3)))),
        ]
        if let st = site?.storage { vars += [("PF_NFS_SERVER", st.nfsServer), ("PF_NFS_PATH", st.nfsPath)] }
        return vars.map { "\($0.0)=\(q($0.1)); export \($0.0)" }.joined(separator: "\n") + "\n" + collectorScript
    }

    public func run(nodes: [PreflightNode], siteShell: (any NodeShell)? = LocalNodeShell()) async -> PreflightReport {
        let started = Date()
        var collected: [String: Result<NodeFacts, NodeShellError>] = [:]
        await withTaskGroup(of: (String, Result<NodeFacts, NodeShellError>).self) { group in
            var next = 0
            func add() {
                guard next < nodes.count else { return }
                let node = nodes[next]
                next += 1
                let script = script(for: node, all: nodes)
                let timeout = self.timeout
                group.addTask {
                    let sent = Date().timeIntervalSince1970
                    do {
                        let r = try await node.shell.run(script: script, timeout: timeout)
                        let facts = NodeFacts.parse(r.stdout, sentAt: sent, receivedAt: Date().timeIntervalSince1970)
                        if facts.sections.isEmpty {
                            return (
                                node.name,
                                .failure(
                                    .failed("collector printed no sections (rc \(r.exitCode)): \(r.stderr.prefix(200))")
                                )
                            )
                        }
                        return (node.name, .success(facts))
                    } catch let e as NodeShellError {
                        return (node.name, .failure(e))
                    } catch {
                        return (node.name, .failure(.failed("\(error)")))
                    }
                }
            }
            for _ in 0..<parallelism { add() }
            for await (name, result) in group {
                collected[name] = result
                add()
            }
        }
        var outcomes: [CheckOutcome] = []
        var summaries: [PreflightReport.Node] = []
        for node in nodes {
            let result = collected[node.name] ?? .failure(.failed("not run"))
            switch result {
            case .failure(let e):
                summaries.append(
                    .init(
                        name: node.name, address: node.address, roles: node.roles, reachable: false,
                        error: e.description))
                for check in catalog.checks where check.scope == .node && check.appliesTo(node.roles) {
                    if check.id == "node.reachable" {
                        outcomes.append(
                            CheckOutcome(checkID: check.id, node: node.name, status: .fail, observed: e.description))
                    } else {
                        outcomes.append(
                            CheckOutcome(
                                checkID: check.id, node: node.name, status: .unknown,
                                observed: "not checked: node not collected"))
                    }
                }
            case .success(let facts):
                summaries.append(
                    .init(name: node.name, address: node.address, roles: node.roles, reachable: true, error: nil))
                for check in catalog.checks where check.scope == .node {
                    guard check.appliesTo(node.roles) else { continue }
                    let ctx = NodeContext(
                        node: node.name, address: node.address, roles: node.roles, facts: facts, profile: profile,
                        site: site,
                        check: check, bundleGiB: bundleGiB, bundleImages: bundleImages)
                    let verdict = Analyzers.node[check.id]?(ctx) ?? .unreadable("no analyzer for \(check.id)")
                    let (status, observed) = verdict.status(severity: check.severity)
                    outcomes.append(
                        CheckOutcome(checkID: check.id, node: node.name, status: status, observed: observed))
                }
            }
        }
        let facts = collected.compactMapValues { try? $0.get() }
        outcomes += ClusterAnalyzers.run(catalog: catalog, nodes: nodes, facts: facts, profile: profile, site: site)
        outcomes += await SiteAnalyzers.run(catalog: catalog, site: site, shell: siteShell)
        for i in outcomes.indices {
            outcomes[i].waiver = waivers.first { $0.covers(check: outcomes[i].checkID, node: outcomes[i].node) }
        }
        return PreflightReport(
            profile: profile.name, site: site?.name, startedAt: started, duration: Date().timeIntervalSince(started),
            nodes: summaries, checks: catalog.checks,
            categories: catalog.categories.map { .init(id: $0.id, title: $0.title) },
            outcomes: outcomes, waivers: waivers)
    }
}

/// Checks that compare nodes with each other. Results are reported on every node involved.
public enum ClusterAnalyzers {
    static func run(
        catalog: CheckCatalog, nodes: [PreflightNode], facts: [String: NodeFacts], profile: HardwareProfile,
        site: SiteInventory?
    ) -> [CheckOutcome] {
        var out: [CheckOutcome] = []
        func emit(_ id: String, _ per: [String: Verdict]) {
            guard let check = catalog.check(id) else { return }
            for (node, v) in per.sorted(by: { $0.key < $1.key }) {
                let (s, o) = v.status(severity: check.severity)
                out.append(CheckOutcome(checkID: id, node: node, status: s, observed: o))
            }
        }
        /// Same value expected across `subset`; the majority value passes, others get the problem.
        func consistent(_ id: String, _ subset: [PreflightNode], _ value: (NodeFacts) -> String?) {
            var values: [String: String] = [:]
            var per: [String: Verdict] = [:]
            for n in subset {
                guard let f = facts[n.name] else { continue }
                if let v = value(f) { values[n.name] = v } else { per[n.name] = .unreadable("not reported") }
            }
            let counts = Dictionary(grouping: values.values, by: { $0 }).mapValues(\.count)
            let majority = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }?.key
            for (n, v) in values {
                per[n] =
                    counts.count <= 1
                    ? .pass(v)
                    : v == majority
                        ? .warn("\(v) (others differ: \(counts.keys.sorted().joined(separator: ", ")))")
                        : .problem("\(v); most nodes have \(majority ?? "?")")
            }
            if !per.isEmpty { emit(id, per) }
        }
        /// Values must be unique; duplicates get the problem.
        func unique(_ id: String, _ value: (NodeFacts) -> [String]) {
            var owners: [String: [String]] = [:]
            var per: [String: Verdict] = [:]
            for n in nodes {
                guard let f = facts[n.name] else { continue }
                let vs = value(f).filter { !$0.isEmpty }
                if vs.isEmpty { per[n.name] = .unreadable("not reported") }
                for v in vs { owners[v, default: []].append(n.name) }
                per[n.name] = per[n.name] ?? .pass(vs.joined(separator: ", "))
            }
            for (v, ns) in owners where ns.count > 1 {
                for n in ns { per[n] = .problem("\(v) shared with \(ns.filter { $0 != n }.joined(separator: ", "))") }
            }
            emit(id, per)
        }
        let gpuNodes = nodes.filter { $0.roles.contains(.gpuWorker) }
        consistent("cluster.driver", gpuNodes) { f in
            guard let s = f.ok("nvsmi-xml"), let r = try? NvidiaSMIXML.parse(s) else {
                return f.ok("nvsmi-csv").flatMap { try? NvidiaSMIQueryCSV.parse($0).first?.driverVersion }
            }
            return r.driverVersion
        }
        consistent("cluster.kernel", gpuNodes) { $0.kernel }
        consistent("cluster.os", nodes) { f in f.osRelease["ID"].map { "\($0) \(f.osRelease["VERSION_ID"] ?? "")" } }
        consistent("cluster.gpu-count", gpuNodes) { f in
            guard let s = f.ok("nvsmi-xml"), let r = try? NvidiaSMIXML.parse(s) else { return nil }
            return "\(r.gpus.count) GPUs"
        }
        consistent("cluster.mtu", nodes) { f in f.physicalLinks.filter(\.up).map(\.mtu).max().map { "MTU \($0)" } }
        unique("cluster.hostnames") { [$0.hostname ?? ""] }
        unique("cluster.product-uuid") { [$0.keyValues("ids")["product_uuid"] ?? ""] }
        unique("cluster.machine-id") { [$0.keyValues("ids")["machine_id"] ?? ""] }
        unique("cluster.macs") { f in f.physicalLinks.compactMap(\.mac).filter { $0 != "00:00:00:00:00:00" } }
        if catalog.check("cluster.control-plane") != nil {
            let cps = nodes.filter { $0.roles.contains(.controlPlane) }
            let want = profile.controlPlane.nodes
            let v: Verdict =
                cps.count == want
                ? .pass("\(cps.count)")
                : cps.count % 2 == 0
                    ? .problem("\(cps.count): even count risks etcd quorum; profile expects \(want)")
                    : .problem("\(cps.count); profile expects \(want)")
            emit("cluster.control-plane", Dictionary(uniqueKeysWithValues: cps.map { ($0.name, v) }))
        }
        return out
    }
}

/// Checks of the site's own files (TLS) on the admin host, with openssl. Reported under the node name `site`.
public enum SiteAnalyzers {
    public static let nodeName = "site"

    static func run(catalog: CheckCatalog, site: SiteInventory?, shell: (any NodeShell)?) async -> [CheckOutcome] {
        let checks = catalog.checks.filter { $0.scope == .site }
        guard !checks.isEmpty else { return [] }
        func all(_ v: Verdict) -> [CheckOutcome] {
            checks.map { c in
                let (s, o) = v.status(severity: c.severity);
                return CheckOutcome(checkID: c.id, node: nodeName, status: s, observed: o)
            }
        }
        guard let tls = site?.tls, let domain = site?.network?.domain else {
            return all(.skip("site has no tls/network section"))
        }
        guard let shell else { return all(.unreadable("no local shell")) }
        func q(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let days = Int(catalog.check("tls.expiry")?.threshold("minDays", profile: "", fallback: 30) ?? 30)
        let script = """
            C=\(q(tls.certificateFile)); K=\(q(tls.keyFile)); A=\(q(tls.caFile))
            command -v openssl >/dev/null 2>&1 || { echo "@@appliance:begin chain"; echo "openssl: not found"; echo "@@appliance:end chain 127"; exit 0; }
            echo "@@appliance:begin chain"; openssl verify -CAfile "$A" -untrusted "$C" "$C" 2>&1; echo "@@appliance:end chain $?"
            echo "@@appliance:begin san"; openssl x509 -in "$C" -noout -ext subjectAltName 2>&1; echo "@@appliance:end san $?"
            echo "@@appliance:begin key"; a=$(openssl x509 -in "$C" -noout -pubkey 2>/dev/null | openssl sha256); b=$(openssl pkey -in "$K" -pubout 2>/dev/null | openssl sha256); [ -n "$a" ] && [ "$a" = "$b" ]; echo "@@appliance:end key $?"
            echo "@@appliance:begin expiry"; openssl x509 -in "$C" -noout -enddate 2>&1; openssl x509 -in "$C" -noout -checkend \(days * 86400) >/dev/null 2>&1; echo "@@appliance:end expiry $?"
            echo "@@appliance:begin ca"; openssl x509 -in "$A" -noout -ext basicConstraints 2>&1; echo "@@appliance:end ca $?"
            """
        let facts: NodeFacts
        do {
            let r = try await shell.run(script: script, timeout: .seconds(20))
            facts = NodeFacts.parse(r.stdout)
        } catch {
            return all(.unreadable("\(error)"))
        }
        var out: [CheckOutcome] = []
        for c in checks {
            let v: Verdict
            switch c.id {
            case "tls.chain":
                guard let s = facts["chain"] else { v = .unreadable("openssl verify"); break }
                v =
                    s.missingTool
                    ? .unreadable("openssl not installed")
                    : s.exitCode == 0
                        ? .pass("chains to \((tls.caFile as NSString).lastPathComponent)")
                        : .problem(s.output.split(separator: "\n").last.map(String.init) ?? "does not verify")
            case "tls.wildcard":
                guard let s = facts["san"], s.exitCode == 0 else { v = .unreadable("subjectAltName"); break }
                v =
                    s.output.contains("DNS:*.\(domain)")
                    ? .pass("DNS:*.\(domain)")
                    : .problem(
                        "no DNS:*.\(domain) in \(s.output.split(separator: "\n").dropFirst().joined().trimmingCharacters(in: .whitespaces))"
                    )
            case "tls.key-match":
                guard let s = facts["key"] else { v = .unreadable("openssl pkey"); break }
                v = s.exitCode == 0 ? .pass("key matches") : .problem("key does not match the certificate")
            case "tls.expiry":
                guard let s = facts["expiry"] else { v = .unreadable("openssl x509 -enddate"); break }
                let end =
                    s.output.split(separator: "\n").first.map {
                        String($0).replacingOccurrences(of: "notAfter=", with: "")
                    } ?? "?"
                v = s.exitCode == 0 ? .pass("valid until \(end)") : .problem("expires within \(days) days (\(end))")
            case "tls.ca-file":
                guard let s = facts["ca"], s.exitCode == 0 else {
                    v = .problem("CA file has no basicConstraints"); break
                }
                v = s.output.contains("CA:TRUE") ? .pass("CA:TRUE") : .problem("not a CA certificate")
            default: v = .unreadable("no analyzer for \(c.id)")
            }
            let (s, o) = v.status(severity: c.severity)
            out.append(CheckOutcome(checkID: c.id, node: nodeName, status: s, observed: o))
        }
        return out
    }
}
