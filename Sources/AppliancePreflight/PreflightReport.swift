import ApplianceModel
import Foundation

/// The result of a preflight run. Its JSON form (`json()`) is the stable schema (`schemaVersion` 1):
/// add fields, never rename or remove them.
public struct PreflightReport: Sendable, Codable {
    public static let schemaVersion = 1

    public struct Node: Sendable, Codable, Equatable {
        public var name: String
        public var address: String
        public var roles: [NodeRole]
        public var reachable: Bool
        public var error: String?
    }
    public struct Category: Sendable, Codable, Equatable {
        public var id: String
        public var title: String
    }
    public struct Summary: Sendable, Codable, Equatable {
        public var pass = 0, info = 0, skip = 0, unknown = 0, warn = 0, fail = 0, waived = 0
    }

    public var schemaVersion = PreflightReport.schemaVersion
    public var profile: String
    public var site: String?
    public var startedAt: Date
    public var duration: Double
    public var nodes: [Node]
    public var checks: [CheckDefinition]
    public var categories: [Category]
    public var outcomes: [CheckOutcome]
    public var waivers: [Waiver]

    public init(
        profile: String, site: String?, startedAt: Date, duration: Double, nodes: [Node], checks: [CheckDefinition],
        categories: [Category], outcomes: [CheckOutcome], waivers: [Waiver]
    ) {
        self.profile = profile
        self.site = site
        self.startedAt = startedAt
        self.duration = duration
        self.nodes = nodes
        self.checks = checks
        self.categories = categories
        self.outcomes = outcomes
        self.waivers = waivers
    }

    public var summary: Summary {
        var s = Summary()
        for o in outcomes {
            if o.waiver != nil && o.effectiveStatus != o.status { s.waived += 1; continue }
            switch o.status {
            case .pass: s.pass += 1
            case .info: s.info += 1
            case .skip: s.skip += 1
            case .unknown: s.unknown += 1
            case .warn: s.warn += 1
            case .fail: s.fail += 1
            }
        }
        return s
    }

    /// 0 all pass, 3 any (unwaived) fail, 4 warnings or unreadable results only.
    public var exitStatus: ExitStatus {
        let s = summary
        if s.fail > 0 { return .preflightFailed }
        if s.warn > 0 || s.unknown > 0 { return .preflightWarnings }
        return .success
    }

    /// Node names as columns: the nodes, then `site` if any site-scope outcome exists.
    public var columns: [String] {
        nodes.map(\.name) + (outcomes.contains { $0.node == SiteAnalyzers.nodeName } ? [SiteAnalyzers.nodeName] : [])
    }

    public func outcome(_ check: String, _ node: String) -> CheckOutcome? {
        outcomes.first { $0.checkID == check && $0.node == node }
    }

    public func json() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.dateEncodingStrategy = .iso8601
        return try e.encode(JSONForm(self))
    }

    /// The JSON document: checks keyed by id, results flat (check, node, status, observed, remediation, waiver).
    struct JSONForm: Encodable {
        var schemaVersion: Int
        var profile: String
        var site: String?
        var startedAt: Date
        var durationSeconds: Double
        var exitCode: Int32
        var summary: Summary
        var nodes: [Node]
        var checks: [CheckDefinition]
        var results: [Result]
        var waivers: [Waiver]
        struct Result: Encodable {
            var check: String
            var node: String
            var status: CheckStatus
            var effectiveStatus: CheckStatus
            var observed: String
            var remediation: String?
            var waiver: Waiver?
        }
        init(_ r: PreflightReport) {
            schemaVersion = r.schemaVersion
            profile = r.profile
            site = r.site
            startedAt = r.startedAt
            durationSeconds = (r.duration * 1000).rounded() / 1000
            exitCode = r.exitStatus.rawValue
            summary = r.summary
            nodes = r.nodes
            checks = r.checks
            let rem = Dictionary(r.checks.map { ($0.id, $0.remediation) }, uniquingKeysWith: { a, _ in a })
            results = r.outcomes.map {
                Result(
                    check: $0.checkID, node: $0.node, status: $0.status, effectiveStatus: $0.effectiveStatus,
                    observed: $0.observed,
                    remediation: [.fail, .warn, .unknown].contains($0.status) ? rem[$0.checkID] : nil, waiver: $0.waiver
                )
            }
            waivers = r.waivers
        }
    }
}
