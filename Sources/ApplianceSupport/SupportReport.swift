import Foundation

/// The outcome of `appliance support-bundle analyze`, and its renderings (pure: golden-testable).
public struct SupportReport: Codable, Sendable, Equatable {
    public var cluster: String
    public var collectedAt: Date
    public var applianceVersion: String
    public var nodes: Int
    public var unreachableNodes: [String]
    public var files: Int
    public var redactions: Int
    public var collectionFailures: Int
    public var findings: [SupportFinding]

    public init(contents b: SupportBundleContents, findings: [SupportFinding]) {
        cluster = b.manifest.cluster
        collectedAt = b.manifest.createdAt
        applianceVersion = b.manifest.applianceVersion
        nodes = b.manifest.nodes.count
        unreachableNodes = b.manifest.nodes.filter { !$0.reachable }.map(\.name)
        files = b.manifest.files.count
        redactions = b.manifest.redactions
        collectionFailures = b.manifest.failures.count
        self.findings = findings
    }

    public var errors: Int { findings.filter { $0.severity == .error }.count }
    public var warnings: Int { findings.filter { $0.severity == .warning }.count }

    public func json() throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return String(decoding: try e.encode(self), as: UTF8.self)
    }

    public func text() -> String {
        let when = ISO8601DateFormatter().string(from: collectedAt)
        var out =
            "support bundle of \(cluster), collected \(when) by appliance \(applianceVersion): \(nodes) node\(nodes == 1 ? "" : "s")"
        if !unreachableNodes.isEmpty { out += " (\(unreachableNodes.count) unreachable)" }
        out += ", \(files) files, \(redactions) redactions, \(collectionFailures) collection failures\n"
        if findings.isEmpty { return out + "\nno known problem found\n" }
        for f in findings {
            out += "\n\(f.severity.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0))"
            out += "\(f.id)  \(f.subject)\n"
            out += "        \(f.summary)\n"
            for e in f.evidence {
                out += "        evidence: \(e.file)\(e.line.map { ":\($0)" } ?? ""): \(e.text)\n"
            }
            out += "        remedy: \(f.remedy)\n"
        }
        out += "\n\(errors) error\(errors == 1 ? "" : "s"), \(warnings) warning\(warnings == 1 ? "" : "s")\n"
        return out
    }
}
