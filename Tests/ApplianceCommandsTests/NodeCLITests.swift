import Foundation
import Testing

/// `appliance node ...` before it touches any node: usage refusals and the plans `--dry-run` prints. The hosts
/// are loopback addresses where nothing listens: a command that tried to connect would say so.
@Suite(.serialized) struct NodeCLITests {
    let dir = NSTemporaryDirectory() + "node-cli-" + UUID().uuidString
    let site: String

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        site = dir + "/site.yaml"
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: nodes}
        spec:
          profile: lab
          ssh: {user: root, port: 1, connectTimeoutSeconds: 1}
          hosts:
            - {name: cp-1, address: 127.0.78.1, roles: [control-plane]}
            - {name: gpu-1, address: 127.0.78.20, roles: [gpu-worker]}
          network:
            domain: nodes.internal
            apiEndpoint: 127.0.78.1:6443
            podCIDR: 10.244.0.0/16
            serviceCIDR: 10.96.0.0/12

        """.write(toFile: site, atomically: true, encoding: .utf8)
    }

    @Test func drainDryRunShowsTheSimulationBeforeTheReasonAndTheDrain() async throws {
        let r = try await CLI.run(
            ["node", "drain", "gpu-1", "-i", site, "--reason", "DIMM swap", "--timeout", "90s", "--dry-run"], state: dir
        )
        #expect(r.status == 0, "\(r.stderr)")
        let out = r.stdout
        let sim = try #require(out.range(of: "drain-simulation/gpu-1"), "\(out)")
        let mark = try #require(out.range(of: "maintenance-reason/gpu-1"), "\(out)")
        let drain = try #require(out.range(of: "drain/gpu-1"), "\(out)")
        #expect(sim.lowerBound < mark.lowerBound && mark.lowerBound < drain.lowerBound)
        #expect(out.contains("--timeout=90s"), "\(out)")
        #expect(out.contains("DIMM swap"), "\(out)")
        #expect(!r.stderr.contains("connect"), "it tried to reach a node: \(r.stderr)")

        let taint = try await CLI.run(
            ["node", "drain", "gpu-1", "-i", site, "--reason", "fw", "--method", "taint", "--dry-run"], state: dir)
        #expect(taint.status == 0, "\(taint.stderr)")
        #expect(taint.stdout.contains("drain-taint/gpu-1"), "\(taint.stdout)")
        #expect(taint.stdout.contains("does NOT honour PodDisruptionBudgets"), "\(taint.stdout)")
    }

    @Test func drainRefusesMissingReasonBadDurationAndUnknownNode() async throws {
        let noReason = try await CLI.run(["node", "drain", "gpu-1", "-i", site], state: dir)
        #expect(noReason.status == 2, "\(noReason.stderr)")
        #expect(noReason.stderr.contains("--reason"), "\(noReason.stderr)")
        let blank = try await CLI.run(["node", "drain", "gpu-1", "-i", site, "--reason", " "], state: dir)
        #expect(blank.status == 2, "\(blank.stderr)")
        let badTimeout = try await CLI.run(
            ["node", "drain", "gpu-1", "-i", site, "--reason", "x", "--timeout", "soon"], state: dir)
        #expect(badTimeout.status == 2, "\(badTimeout.stderr)")
        #expect(badTimeout.stderr.contains("cannot read the duration 'soon'"), "\(badTimeout.stderr)")
        let taintPolicy = try await CLI.run(
            [
                "node", "drain", "gpu-1", "-i", site, "--reason", "x", "--method", "taint", "--drain-policy",
                "disable-eviction",
            ], state: dir)
        #expect(taintPolicy.status == 2, "\(taintPolicy.stderr)")
        let unknown = try await CLI.run(
            ["node", "drain", "gpu-9", "-i", site, "--reason", "x", "--dry-run"], state: dir)
        #expect(unknown.status == 1, "\(unknown.stderr)")
        #expect(unknown.stderr.contains("no host named 'gpu-9'"), "\(unknown.stderr)")
        #expect(unknown.stderr.contains("cp-1, gpu-1"), "\(unknown.stderr)")
    }

    @Test func removeDryRunPlansDrainResetDeleteAndRecord() async throws {
        let r = try await CLI.run(["node", "remove", "gpu-1", "-i", site, "--dry-run"], state: dir)
        #expect(r.status == 0, "\(r.stderr)")
        for step in ["drain-simulation/gpu-1", "drain/gpu-1", "reset/gpu-1", "delete-node/gpu-1", "record/gpu-1"] {
            #expect(r.stdout.contains(step), "\(step) missing: \(r.stdout)")
        }
        let forced = try await CLI.run(["node", "remove", "gpu-1", "-i", site, "--force", "--dry-run"], state: dir)
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(!forced.stdout.contains("drain/gpu-1"), "\(forced.stdout)")
        #expect(forced.stdout.contains("reset/gpu-1"), "\(forced.stdout)")
        // The site's first control plane is refused (it holds the install record and the cluster lock).
        let cp = try await CLI.run(["node", "remove", "cp-1", "-i", site, "--dry-run"], state: dir)
        #expect(cp.status == 1, "\(cp.stderr)")
        #expect(cp.stderr.contains("the site's first control plane"), "\(cp.stderr)")
        // Nothing was started: no operation in the journal.
        let history = try await CLI.run(["history", "-i", site], state: dir)
        #expect(history.stdout.contains("no operations recorded"), "\(history.stdout)")
    }

    @Test func rejoinWithoutAnInstallNamesTheMissingBundle() async throws {
        let r = try await CLI.run(["node", "rejoin", "gpu-1", "-i", site, "--dry-run"], state: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("no bundle"), "\(r.stderr)")
        #expect(r.stderr.contains("--bundle"), "\(r.stderr)")
    }
}
