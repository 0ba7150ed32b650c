import ApplianceSSH
import Foundation

/// What is installed on a cluster, recorded on its first control-plane node
/// (`/var/lib/appliance/installed.json`): the bundle, the Kubernetes version, the profile and the nodes with
/// their roles. Upgrade and status read it.
public struct InstallRecord: Codable, Sendable, Equatable {
    public static let path = "/var/lib/appliance/installed.json"

    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var roles: [String]
        public init(name: String, roles: [String]) {
            self.name = name
            self.roles = roles
        }
    }

    public var cluster: String
    public var bundleName: String
    public var bundleVersion: String
    /// SHA-256 of the bundle's signed manifest.
    public var bundleDigest: String
    public var kubernetesVersion: String
    public var profile: String
    public var nodes: [Node]
    public var installedAt: Date?

    public init(
        cluster: String, bundleName: String, bundleVersion: String, bundleDigest: String, kubernetesVersion: String,
        profile: String, nodes: [Node], installedAt: Date? = nil
    ) {
        self.cluster = cluster
        self.bundleName = bundleName
        self.bundleVersion = bundleVersion
        self.bundleDigest = bundleDigest
        self.kubernetesVersion = kubernetesVersion
        self.profile = profile
        self.nodes = nodes
        self.installedAt = installedAt
    }

    /// The same installation (the time it was recorded aside).
    public func matches(_ other: InstallRecord) -> Bool {
        var a = self
        var b = other
        a.installedAt = nil
        b.installedAt = nil
        return a == b
    }

    public static func read(_ runner: NodeRunner) async throws -> InstallRecord? {
        let out = try await runner.output(
            "[ -f \(path) ] && cat \(path)", label: "read the install record", timeout: .seconds(30))
        guard out.exit.succeeded, !out.stdout.isEmpty else { return nil }
        return decode(Data(out.stdout))
    }

    /// The record as `write` stores it; nil when the text is not one.
    public static func decode(_ data: Data) -> InstallRecord? {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(InstallRecord.self, from: data)
    }

    public func write(_ runner: NodeRunner) async throws {
        var copy = self
        copy.installedAt = installedAt ?? Date()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let data = try encoder.encode(copy) + Data("\n".utf8)
        try await runner.run(
            "mkdir -p \(shellQuote((Self.path as NSString).deletingLastPathComponent)) && cat > \(Self.path).new && mv \(Self.path).new \(Self.path)",
            stdin: Array(data), label: "write the install record")
    }
}
