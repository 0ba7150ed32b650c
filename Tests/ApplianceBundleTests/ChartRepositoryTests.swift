import ApplianceModel
import Foundation
import Testing

@testable import ApplianceBundle

/// `chartRepository:` sources against a real HTTPS Helm repository layout (index.yaml + archive) served by
/// the tests' Python helper, and the lock file's Debian and chart pins.
@Suite("charts from a Helm repository and lock pins", .tags(.registry), .serialized)
struct ChartRepositoryTests {
    @Test func aRepositoryChartIsFetchedCheckedAndLocked() async throws {
        guard RegistryTools.missing == nil else {
            print("skipping chart repository test: \(RegistryTools.missing ?? "")")
            return
        }
        let f = try RegistryFixture()
        // A chart archive, packed like `helm package`, and an index naming it with its digest.
        let chart = f.dir.file("src/op")
        try FileManager.default.createDirectory(atPath: chart + "/templates", withIntermediateDirectories: true)
        try "apiVersion: v2\nname: op\nversion: 1.2.3\n".write(
            toFile: chart + "/Chart.yaml", atomically: true, encoding: .utf8)
        try "kind: ConfigMap\n".write(toFile: chart + "/templates/cm.yaml", atomically: true, encoding: .utf8)
        let repo = f.dir.file("repo")
        try FileManager.default.createDirectory(atPath: repo + "/archives", withIntermediateDirectories: true)
        try DirectoryPacker.pack(directory: chart, into: repo + "/archives/op-1.2.3.tgz", prefix: "op", gzip: true)
        let (digest, _) = try SHA256Hasher.hash(file: repo + "/archives/op-1.2.3.tgz")
        func index(_ d: String) throws {
            try """
            apiVersion: v1
            entries:
              op:
                - name: op
                  version: 1.2.3
                  digest: \(d)
                  urls: [archives/op-1.2.3.tgz]
                - name: op
                  version: 1.0.0
                  digest: \(String(repeating: "0", count: 64))
                  urls: [archives/op-1.0.0.tgz]
            """.write(toFile: repo + "/index.yaml", atomically: true, encoding: .utf8)
        }
        try index(digest.hex)
        let helpers = try TestHelpers.write(f.dir.path)
        let port = try freeLoopbackPort()
        let server = try TestProcess(
            RegistryTools.python, [helpers, "static", "\(port)", f.pki.serverCert, f.pki.serverKey, repo],
            log: f.dir.file("static.log"))
        defer { server.stop() }
        try server.waitFor("static server ready")
        func spec(_ version: String) throws -> String {
            let path = f.dir.file("chart-\(version).yaml")
            try """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: charts}
            spec:
              version: 1.0.0
              kubernetes: {version: v1.34.3}
              components:
                - name: cni
                  version: "1"
                  artifacts:
                    - name: op
                      kind: chart
                      source: {chartRepository: {url: "https://127.0.0.1:\(port)/", name: op, version: "\(version)"}}
            """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let (result, lock) = try await f.build(try spec("1.2.3"), "c.tar", creds: false)
        let art = try #require(result.manifest.allArtifacts.first { $0.artifact.name == "op" }?.artifact)
        #expect(art.sha256 == digest)
        #expect(art.provenance("repository") == "https://127.0.0.1:\(port)/")
        #expect(lock.charts.map(\.sha256) == [digest])
        // A version the index does not list; an archive that does not match the index's digest.
        let missing = await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("9.9.9"), "m.tar", creds: false)
        }
        #expect(missing?.message.contains("has no version 9.9.9 of 'op'") == true)
        try index(String(repeating: "a", count: 64))
        let bad = await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("1.2.3"), "b.tar", creds: false, cache: f.dir.file("cache-b"))
        }
        #expect(bad?.exitStatus == .verification)
        #expect(bad?.message.contains("the repository index says aaaaaaaaaaaa") == true)
        f.expectNothingLeft("b.tar", cache: f.dir.file("cache-b"))
        // Locked: the index now lists another digest than the lock.
        let locked = await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("1.2.3"), "l.tar", creds: false, locked: lock, cache: f.dir.file("cache-l"))
        }
        #expect(locked?.message.contains("the lock file \(digest.short)") == true)
    }

    @Test func lockedDebsArePinnedAndUnlockedOnesRefused() throws {
        let dir = TempDir()
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: d}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: socat, kind: deb, source: {deb: {package: socat}}}
                - {name: ethtool, kind: deb, source: {deb: {package: ethtool, version: "1:6.1-1"}}}
        """.write(toFile: dir.file("s.yaml"), atomically: true, encoding: .utf8)
        let spec = try BundleSpec.load(path: dir.file("s.yaml"))
        let sha = SHA256Hasher.hash(Data("x".utf8))
        var lock = BundleLock(
            name: "d", version: "1.0.0", created: "2026-11-30T00:00:00Z", images: [],
            debs: [
                .init(package: "socat", version: "1.7.4.4-2", architecture: "amd64", sha256: sha),
                .init(package: "ethtool", version: "1:6.1-1", architecture: "amd64", sha256: sha),
            ])
        let pinned = try BundleBuilder.pinDebs(spec, to: lock)
        let sources = pinned.components[0].artifacts.map(\.source)
        #expect(sources[0] == .debPackage(name: "socat", version: "1.7.4.4-2", architecture: "amd64"))
        // A lock without ethtool; a lock disagreeing with the spec's pin.
        lock.debs.removeLast()
        #expect(throws: RegistryError.self) { try BundleBuilder.pinDebs(spec, to: lock) }
        lock.debs.append(.init(package: "ethtool", version: "1:6.2-1", architecture: "amd64", sha256: sha))
        let e = #expect(throws: RegistryError.self) { try BundleBuilder.pinDebs(spec, to: lock) }
        #expect(e?.message.contains("the spec pins 1:6.1-1 but the lock file 1:6.2-1") == true)
        // The lock round-trips through YAML with its charts.
        lock.charts = [.init(url: "https://x/charts", name: "op", version: "1.2.3", sha256: sha)]
        try lock.yaml().write(toFile: dir.file("l.yaml"), atomically: true, encoding: .utf8)
        let loaded = try BundleLock.load(path: dir.file("l.yaml"))
        #expect(loaded.yaml() == lock.yaml())  // written sorted: equal content, equal bytes
        #expect(loaded.charts == lock.charts && Set(loaded.debs.map(\.package)) == ["socat", "ethtool"])
    }
}
