import Foundation

/// `manifest.json`, the index of a support bundle: what was collected, from where, when, with how many
/// redactions, and what could not be collected and why.
public struct SupportManifest: Codable, Sendable, Equatable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "SupportBundle"
    public static let fileName = "manifest.json"

    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var address: String
        public var roles: [String]
        public var reachable: Bool
        /// Why the node could not be collected (down, refused, authentication).
        public var error: String?
        public init(name: String, address: String, roles: [String], reachable: Bool, error: String? = nil) {
            self.name = name
            self.address = address
            self.roles = roles
            self.reachable = reachable
            self.error = error
        }
    }

    public struct File: Codable, Sendable, Equatable {
        /// Path inside the bundle.
        public var path: String
        /// `admin`, `node/NAME` or `cluster` (through NAME).
        public var source: String
        /// What it is, in words, or the command that printed it.
        public var what: String
        public var collectedAt: Date
        public var bytes: Int64
        public var redactions: Int
        /// The command's exit status when it was a command (non-zero output is kept: it is evidence).
        public var exitStatus: Int?
        public init(
            path: String, source: String, what: String, collectedAt: Date, bytes: Int64, redactions: Int,
            exitStatus: Int? = nil
        ) {
            self.path = path
            self.source = source
            self.what = what
            self.collectedAt = collectedAt
            self.bytes = bytes
            self.redactions = redactions
            self.exitStatus = exitStatus
        }
    }

    public struct Failure: Codable, Sendable, Equatable {
        public var source: String
        public var what: String
        public var reason: String
        public init(source: String, what: String, reason: String) {
            self.source = source
            self.what = what
            self.reason = reason
        }
    }

    public var apiVersion = Self.apiVersion
    public var kind = Self.kind
    public var cluster: String
    public var applianceVersion: String
    public var createdAt: Date
    /// The start of the log window (`--since`).
    public var since: Date
    public var gpuDiag: Bool
    public var nodes: [Node]
    public var files: [File]
    public var failures: [Failure]
    /// Total replacements made by redaction, all files.
    public var redactions: Int { files.reduce(0) { $0 + $1.redactions } }

    public init(
        cluster: String, applianceVersion: String, createdAt: Date, since: Date, gpuDiag: Bool, nodes: [Node],
        files: [File], failures: [Failure]
    ) {
        self.cluster = cluster
        self.applianceVersion = applianceVersion
        self.createdAt = createdAt
        self.since = since
        self.gpuDiag = gpuDiag
        self.nodes = nodes
        self.files = files
        self.failures = failures
    }

    enum CodingKeys: String, CodingKey {
        case apiVersion, kind, cluster, applianceVersion, createdAt, since, gpuDiag, nodes, files, failures
    }

    public func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return try e.encode(self) + Data("\n".utf8)
    }

    public static func decode(_ data: Data) throws -> SupportManifest {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return try d.decode(SupportManifest.self, from: data)
    }
}

/// The bundle's layout: every collected thing has one predictable path.
public enum SupportLayout {
    public static func admin(_ name: String) -> String { "admin/\(name)" }
    public static func node(_ node: String, _ name: String) -> String { "nodes/\(node)/\(name)" }
    public static func cluster(_ name: String) -> String { "cluster/\(name)" }

    /// A name safe as one path component (node names are DNS labels already; release names are checked).
    public static func component(_ s: String) -> String {
        let cleaned = String(s.map { $0.isLetter || $0.isNumber || "-_.".contains($0) ? $0 : "_" })
        return cleaned.isEmpty || cleaned == "." || cleaned == ".." ? "_" : cleaned
    }
}
