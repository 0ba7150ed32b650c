import Foundation
import Testing

@testable import ApplianceModel

@Suite struct SiteInventoryTests {
    func load(_ text: String) throws -> SiteInventory {
        let dir = NSTemporaryDirectory() + "site-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        return try SiteInventory.load(path: dir + "/site.yaml")
    }

    let good = """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: dc1}
        spec:
          profile: hpc-8xa100
          ssh: {user: ops, identityFile: keys/id_ed25519, sudo: true}
          hosts:
            - {name: cp-01, address: 10.0.0.1, roles: [control-plane]}
            - {name: gpu-01, address: 10.0.0.11, port: 2222, roles: [gpu-worker]}
        """

    @Test func loadsAndResolvesRelativePaths() throws {
        let site = try load(good)
        #expect(site.hosts.map(\.name) == ["cp-01", "gpu-01"])
        #expect(site.ssh.sudo)
        #expect(site.ssh.identityFile?.hasSuffix("/keys/id_ed25519") == true)
        #expect(site.ssh.identityFile?.hasPrefix("/") == true)
        #expect(site.port(for: site.hosts[1]) == 2222)
        #expect(site.user(for: site.hosts[0]) == "ops")
    }

    @Test func roundTripsThroughYAML() throws {
        let site = try load(good)
        var again = try load(site.yaml())
        again.sourcePath = site.sourcePath
        #expect(
            again.hosts
                == site.hosts.map { h in
                    var h = h
                    h.location = again.hosts.first { $0.name == h.name }?.location
                    return h
                })
        #expect(again.ssh == site.ssh)
    }

    @Test func reportsEveryHostProblem() throws {
        let text = """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: dc1}
            spec:
              hosts:
                - {name: GPU_01, address: 10.0.0.1, roles: [gpu-worker]}
                - {name: gpu-02, address: 10.0.0.1, roles: [gpu-workers]}
                - {name: gpu-02, roles: [cpu-worker]}
            """
        let error = #expect(throws: DiagnosticsError.self) { try load(text) }
        let messages = error?.diagnostics.map(\.message) ?? []
        #expect(messages.contains { $0.contains("must be a DNS label") })
        #expect(messages.contains { $0.contains("address 10.0.0.1:22 is used by two hosts") })
        #expect(messages.contains { $0.contains("must be one of control-plane, system, gpu-worker, cpu-worker") })
        #expect(messages.contains { $0.contains("'gpu-02' is used twice") })
        #expect(messages.contains { $0.contains("missing required field 'address'") })
        #expect(messages.contains { $0.contains("no host has the role 'control-plane'") })
        #expect(error?.diagnostics.allSatisfy { $0.location != nil } == true)
    }
}
