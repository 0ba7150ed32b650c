import ApplianceModel
import Foundation

/// One check of the catalogue (`preflight/checks/*.yaml`).
public struct CheckDefinition: Sendable, Equatable, Codable {
    public enum Severity: String, Sendable, Codable, CaseIterable { case fail, warn, info }
    /// `node`: per node from its collector; `cluster`: across nodes; `site`: from the site's files on the admin host.
    public enum Scope: String, Sendable, Codable, CaseIterable { case node, cluster, site }

    public var id: String
    public var category: String
    public var title: String
    public var reads: String
    public var severity: Severity
    public var scope: Scope
    /// Roles the check applies to; empty means every role.
    public var roles: [NodeRole]
    /// Threshold values: `default` then per profile name.
    public var thresholds: [String: [String: Double]]
    public var remediation: String
    public var source: String
    /// What `appliance install` does about this check (nil: nothing, the check gates the install as it is).
    public var install: InstallTreatment? = nil

    /// How a check counts when preflight gates an install.
    public enum InstallTreatment: String, Sendable, Codable, CaseIterable {
        /// Install sets this up itself (sysctls, swap, packages, containerd, /etc/hosts): not a blocker.
        case sets
        /// Install puts the NVIDIA driver stack in place in `host-driver` mode; until the driver is there the
        /// check cannot pass, and the GPU validation gate checks it after install.
        case hostDriver = "host-driver"
    }

    public func appliesTo(_ nodeRoles: [NodeRole]) -> Bool {
        roles.isEmpty || roles.contains { nodeRoles.contains($0) }
    }

    /// The threshold for a profile: its own value, else the default, else `fallback`.
    public func threshold(_ key: String, profile: String, fallback: Double) -> Double {
        thresholds[profile]?[key] ?? thresholds["default"]?[key] ?? fallback
    }
}

/// The whole catalogue, in file then document order.
public struct CheckCatalog: Sendable {
    public var checks: [CheckDefinition]
    /// Category id -> human title.
    public var categories: [(id: String, title: String)]

    public init(checks: [CheckDefinition], categories: [(id: String, title: String)]) {
        self.checks = checks
        self.categories = categories
    }

    public func check(_ id: String) -> CheckDefinition? { checks.first { $0.id == id } }

    public func categoryTitle(_ id: String) -> String { categories.first { $0.id == id }?.title ?? id }

    /// Loads every `*.yaml` in `directory`, reporting all problems at once (positions included).
    public static func load(directory: String) throws(DiagnosticsError) -> CheckCatalog {
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0.hasSuffix(".yaml")
        }.sorted()
        guard !files.isEmpty else {
            throw DiagnosticsError(
                subject: "check catalogue", diagnostics: [Diagnostic("no *.yaml files in \(directory)", at: nil)])
        }
        var checks: [CheckDefinition] = []
        var categories: [(String, String)] = []
        var diagnostics: [Diagnostic] = []
        var seen: [String: SourceLocation?] = [:]
        for f in files {
            let path = (directory as NSString).appendingPathComponent(f)
            do {
                let (reader, root) = try YAMLReader.load(path: path, subject: "check catalogue")
                if let doc = root.mapping(allowing: ["category", "title", "checks"]) {
                    let cat = doc.require("category")?.nonEmptyString() ?? f
                    categories.append((cat, doc["title"]?.string() ?? cat))
                    for item in doc.require("checks")?.sequence() ?? [] {
                        guard
                            let m = item.mapping(allowing: [
                                "id", "title", "reads", "severity", "scope", "roles", "thresholds", "remediation",
                                "source", "install",
                            ])
                        else { continue }
                        let idValue = m.require("id")
                        let id = idValue?.nonEmptyString()
                        if let id, let idValue {
                            if id.split(separator: ".").count < 2 || id != id.lowercased() {
                                reader.error("check id '\(id)' must be lower-case 'area.name'", at: idValue)
                            }
                            if seen[id] != nil { reader.error("check id '\(id)' is defined twice", at: idValue) }
                            seen[id] = idValue.location
                        }
                        let title = m.require("title")?.nonEmptyString()
                        let reads = m.require("reads")?.nonEmptyString()
                        let sev = m.require("severity")?.oneOf(CheckDefinition.Severity.allCases.map(\.rawValue))
                            .flatMap(CheckDefinition.Severity.init(rawValue:))
                        let scope =
                            m["scope"]?.oneOf(CheckDefinition.Scope.allCases.map(\.rawValue))
                            .flatMap(CheckDefinition.Scope.init(rawValue:)) ?? .node
                        var roles: [NodeRole] = []
                        for rv in m["roles"]?.sequence() ?? [] {
                            if let s = rv.oneOf(NodeRole.names), let r = NodeRole(rawValue: s) { roles.append(r) }
                        }
                        var thresholds: [String: [String: Double]] = [:]
                        for (profile, sub) in m["thresholds"]?.entries() ?? [] {
                            var values: [String: Double] = [:]
                            for (k, v) in sub.entries() ?? [] { if let d = v.double() { values[k] = d } }
                            thresholds[profile] = values
                        }
                        let rem = m.require("remediation")?.nonEmptyString()
                        let src = m["source"]?.string() ?? ""
                        let install = m["install"]?.oneOf(CheckDefinition.InstallTreatment.allCases.map(\.rawValue))
                            .flatMap(CheckDefinition.InstallTreatment.init(rawValue:))
                        if let id, let title, let reads, let sev, let rem {
                            checks.append(
                                CheckDefinition(
                                    id: id, category: cat, title: title, reads: reads, severity: sev, scope: scope,
                                    roles: roles, thresholds: thresholds, remediation: rem, source: src,
                                    install: install))
                        }
                    }
                }
                diagnostics += reader.diagnostics
            } catch {
                diagnostics += error.diagnostics
            }
        }
        if !diagnostics.isEmpty { throw DiagnosticsError(subject: "check catalogue", diagnostics: diagnostics) }
        // Reading order for people: access, host, Kubernetes, hardware, GPUs, network, storage, TLS, cross-node.
        let order = ["node", "os", "k8s", "hw", "gpu", "health", "net", "storage", "tls", "cluster"]
        let rank = { (id: String) in order.firstIndex(of: id) ?? order.count }
        categories.sort { rank($0.0) < rank($1.0) }
        checks.sort { rank($0.category) < rank($1.category) }
        return CheckCatalog(checks: checks, categories: categories)
    }
}
