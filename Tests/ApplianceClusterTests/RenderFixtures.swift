import ApplianceModel
import Foundation
import Testing

@testable import ApplianceCluster

/// Sites, a profile and bundle facts the renderer tests share, plus parsers that check rendered text with
/// real tools.
enum RenderFixtures {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    static func profile(_ name: String = "hpc-8xa100") throws -> HardwareProfile {
        try HardwareProfile.load(path: repoRoot.appendingPathComponent("profiles/\(name).yaml").path)
    }

    static let bundle = BundleFacts(
        kubernetesVersion: "1.34.3",
        imageReferences: [
            "registry.k8s.io/pause:3.10.1", "registry.k8s.io/coredns/coredns:v1.12.1",
            "quay.io/tigera/operator:v1.36.2",
            "docker.io/calico/node:v3.29.1", "nginx:1.27", "nvcr.io/nvidia/gpu-operator:v24.9.2",
        ])

    // Fake secrets of the right shapes (never real ones).
    static let token = "abcdef.0123456789abcdef"
    static let certificateKey = String(repeating: "0123456789abcdef", count: 4)
    static let caHash = "sha256:" + String(repeating: "ab", count: 32)

    static func host(_ name: String, _ address: String, _ roles: [NodeRole]) -> SiteInventory.Host {
        SiteInventory.Host(name: name, address: address, roles: roles)
    }

    /// Three control planes behind a virtual IP, a system node, a GPU and a CPU worker, OIDC, dedicated
    /// system nodes.
    static func haSite() -> SiteInventory {
        var site = SiteInventory(
            name: "dc1", profile: "hpc-8xa100", ssh: .init(),
            hosts: [
                host("cp-1", "10.0.0.11", [.controlPlane]), host("cp-2", "10.0.0.12", [.controlPlane]),
                host("cp-3", "10.0.0.13", [.controlPlane]), host("sys-1", "10.0.0.21", [.system]),
                host("gpu-1", "10.0.0.31", [.gpuWorker]), host("cpu-1", "10.0.0.41", [.cpuWorker]),
            ])
        site.network = SiteInventory.NetworkSettings(
            domain: "ml.example.internal", apiEndpoint: "10.0.0.100:8443",
            endpoint: SiteInventory.APIEndpoint(
                address: "10.0.0.100", mode: .virtualIP, name: "api.ml.example.internal", interface: "eth0",
                unicast: true),
            nodeCIDR: "10.0.0.0/24")
        site.auth = SiteInventory.AuthSettings(
            oidc: SiteInventory.OIDCSettings(
                issuerURL: "https://id.ml.example.internal/auth/realms/runai", clientID: "runai",
                usernameClaim: "email", groupsClaim: "groups", usernamePrefix: "-", caFile: "/admin/oidc-ca.crt"))
        site.registry = SiteInventory.RegistrySettings(mode: "in-cluster")
        site.roles.dedicatedSystemNodes = true
        return site
    }

    /// One control plane (no network section: the endpoint is its address) and two workers.
    static func singleSite() -> SiteInventory {
        SiteInventory(
            name: "lab", profile: "lab", ssh: .init(),
            hosts: [
                host("cp-1", "10.0.0.11", [.controlPlane]), host("gpu-1", "10.0.0.31", [.gpuWorker]),
                host("cpu-1", "10.0.0.41", [.cpuWorker]),
            ])
    }

    /// Parses TOML with Python's `tomllib` (the TOML 1.0 parser of Python ≥ 3.11) and returns it as JSON
    /// objects; nil (with the reason printed) where no such Python exists.
    static func parseTOML(_ text: String) throws -> [String: Any]? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [
            "python3", "-c",
            "import sys, json\ntry:\n import tomllib\nexcept ImportError:\n sys.exit(77)\nprint(json.dumps(tomllib.loads(sys.stdin.read())))",
        ]
        let input = Pipe()
        let output = Pipe()
        let errors = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = errors
        do {
            try p.run()
        } catch {
            print("skipping the TOML parse: no python3 (\(error))")
            return nil
        }
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus == 77 || p.terminationStatus == 127 {
            print("skipping the TOML parse: python3 has no tomllib")
            return nil
        }
        guard p.terminationStatus == 0 else {
            Issue.record("TOML does not parse: \(String(decoding: err, as: UTF8.self))\n\(text)")
            return [:]
        }
        return try JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    /// A structural TOML check that needs no tool: every line is blank, a comment, a `[table]` header or a
    /// `key = value` pair, and no table header repeats.
    static func checkTOMLStructure(_ text: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        var tables: Set<String> = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                #expect(line.hasSuffix("]"), "line \(i + 1): \(line)", sourceLocation: sourceLocation)
                #expect(tables.insert(line).inserted, "table \(line) repeats", sourceLocation: sourceLocation)
                continue
            }
            let parts = line.split(separator: "=", maxSplits: 1)
            #expect(
                parts.count == 2 && !parts[0].trimmingCharacters(in: .whitespaces).isEmpty, "line \(i + 1): \(line)",
                sourceLocation: sourceLocation)
        }
    }

    /// The value at a dotted path of nested dictionaries (keys given as a list, since keys contain dots).
    static func value(_ tree: Any?, _ keys: [String]) -> Any? {
        var cur = tree
        for k in keys {
            guard let d = cur as? [String: Any] else { return nil }
            cur = d[k]
        }
        return cur
    }

    /// Runs a command with arguments; returns its status and output together.
    static func run(_ tool: String, _ args: [String], cwd: String? = nil) throws -> (Int32, String)? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [tool] + args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        do {
            try p.run()
        } catch {
            return nil
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        if p.terminationStatus == 127 { return nil }
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
