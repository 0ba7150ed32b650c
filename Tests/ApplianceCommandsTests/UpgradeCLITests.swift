import Foundation
import Testing

/// `appliance upgrade` before it touches any node: usage refusals. The host is a loopback address where
/// nothing listens.
@Suite(.serialized) struct UpgradeCLITests {
    let dir = NSTemporaryDirectory() + "upgrade-cli-" + UUID().uuidString
    let site: String

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        site = dir + "/site.yaml"
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: upgrades}
        spec:
          profile: lab
          ssh: {user: root, port: 1, connectTimeoutSeconds: 1}
          hosts:
            - {name: cp-1, address: 127.0.79.1, roles: [control-plane]}
            - {name: gpu-1, address: 127.0.79.20, roles: [gpu-worker]}
          network:
            domain: upgrades.internal
            apiEndpoint: 127.0.79.1:6443
            podCIDR: 10.244.0.0/16
            serviceCIDR: 10.96.0.0/12

        """.write(toFile: site, atomically: true, encoding: .utf8)
    }

    @Test func badMaxUnavailableDrainTimeoutOrPolicyAreUsageErrors() async throws {
        let base = ["upgrade", "-i", site, "--bundle", dir + "/none.tar", "--trust", dir + "/none.pub"]
        let zero = try await CLI.run(base + ["--max-unavailable", "0"], state: dir)
        #expect(zero.status == 2, "\(zero.stderr)")
        #expect(zero.stderr.contains("--max-unavailable '0'"), "\(zero.stderr)")
        let percent = try await CLI.run(base + ["--max-unavailable", "150%"], state: dir)
        #expect(percent.status == 2, "\(percent.stderr)")
        let timeout = try await CLI.run(base + ["--drain-timeout", "later"], state: dir)
        #expect(timeout.status == 2, "\(timeout.stderr)")
        #expect(timeout.stderr.contains("cannot read the duration 'later'"), "\(timeout.stderr)")
        let policy = try await CLI.run(base + ["--drain-policy", "force"], state: dir)
        #expect(policy.status == 2, "\(policy.stderr)")
        let noBundle = try await CLI.run(["upgrade", "-i", site], state: dir)
        #expect(noBundle.status == 2, "\(noBundle.stderr)")
        #expect(noBundle.stderr.contains("--bundle"), "\(noBundle.stderr)")
    }

    @Test func aMissingBundleIsRefusedBeforeAnyNodeIsContacted() async throws {
        let r = try await CLI.run(
            ["upgrade", "-i", site, "--bundle", dir + "/none.tar", "--trust", dir + "/none.pub", "--dry-run"],
            state: dir)
        #expect(r.status != 0)
        #expect(r.stderr.contains("none.tar") || r.stderr.contains("none.pub"), "\(r.stderr)")
        #expect(!r.stderr.contains("127.0.79.1"), "it tried to reach a node: \(r.stderr)")
    }
}
