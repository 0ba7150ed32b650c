import Foundation
import Testing

/// Issue 15 from the user's side: `bundle build --check` and `bundle sbom`.
@Suite(.serialized) struct BundleReleaseCLITests {
    let dir = NSTemporaryDirectory() + "cli-release-" + UUID().uuidString
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardized.path

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    @Test func checkValidatesTheReleaseSpecWithoutFetchingAndRefusesABadOne() async throws {
        let ok = try await CLI.run(
            ["bundle", "build", "--check", "-f", Self.repoRoot + "/bundles/release-2026.11.yaml"], state: dir)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("ok ("))
        #expect(ok.stdout.contains("nothing was fetched"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/cache/images"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: bad}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: op, kind: chart, source: {chartRepository: {url: "https://example.invalid/charts", name: op, version: "1"}}, images: [quay.io/x/op:1]}
        """.write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await CLI.run(["bundle", "build", "--check", "-f", dir + "/bad.yaml"], state: dir)
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("quay.io/x/op:1, which no image artifact of the bundle provides"))
        #expect(bad.stderr.contains("bad.yaml:11:"))
    }

    @Test func sbomPrintsTheVerifiedBillOfMaterials() async throws {
        _ = try await CLI.run(["bundle", "keygen", "--out", dir + "/keys"], state: dir)
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/motd.txt"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: sb}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: motd, kind: file, source: {file: motd.txt}}
        """.write(toFile: dir + "/s.yaml", atomically: true, encoding: .utf8)
        let build = try await CLI.run(
            [
                "bundle", "build", "-f", dir + "/s.yaml", "-o", dir + "/b.tar", "--key",
                dir + "/keys/appliance-signing.key",
            ],
            state: dir)
        #expect(build.status == 0, "\(build.stderr)")
        let json = try await CLI.run(
            ["bundle", "sbom", dir + "/b.tar", "--trust", dir + "/keys/appliance-signing.pub"], state: dir)
        #expect(json.status == 0, "\(json.stderr)")
        let doc = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(doc?["bomFormat"] as? String == "CycloneDX")
        let table = try await CLI.run(
            ["bundle", "sbom", dir + "/b.tar", "--trust", dir + "/keys/appliance-signing.pub", "--format", "table"],
            state: dir)
        #expect(table.stdout.contains("motd"))
        // Unverifiable: nothing printed, exit 7.
        let untrusted = try await CLI.run(["bundle", "sbom", dir + "/b.tar"], state: dir)
        #expect(untrusted.status == 7)
        #expect(untrusted.stdout.isEmpty)
    }
}
