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
            try f.chartSpec(url: "https://127.0.0.1:\(port)/", name: "op", version: version)
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

    /// `oci://` chart sources, as `helm push` stores a chart: an OCI manifest with the Helm config media type
    /// and one chart-content layer, in a real registry (CNCF distribution, TLS and basic auth), pushed with
    /// skopeo from a layout written here.
    @Test func anOCIRegistryChartIsFetchedCheckedAndLocked() async throws {
        guard RegistryTools.missing == nil else {
            print("skipping OCI chart test: \(RegistryTools.missing ?? "")")
            return
        }
        let f = try RegistryFixture()
        let reg = try TestRegistry(
            dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .htpasswd(user: f.user, password: f.password))
        defer { reg.stop() }
        f.credentialHosts = [reg.host]
        let chart = f.dir.file("src/kai")
        try FileManager.default.createDirectory(atPath: chart + "/templates", withIntermediateDirectories: true)
        try "apiVersion: v2\nname: kai\nversion: v0.16.8\nappVersion: v0.16.8\n".write(
            toFile: chart + "/Chart.yaml", atomically: true, encoding: .utf8)
        try "kind: ConfigMap\n".write(toFile: chart + "/templates/cm.yaml", atomically: true, encoding: .utf8)
        let archive = f.dir.file("kai-v0.16.8.tgz")
        try DirectoryPacker.pack(directory: chart, into: archive, prefix: "kai", gzip: true)
        let content = try Data(contentsOf: URL(fileURLWithPath: archive))
        let digest = SHA256Hasher.hash(content)
        let config = Data(#"{"name":"kai","version":"v0.16.8","appVersion":"v0.16.8","apiVersion":"v2"}"#.utf8)
        func push(_ layers: [(Data, String)], configType: String, as repoTag: String) throws {
            let layout = f.dir.file("layouts/\(UUID().uuidString.prefix(6))")
            let blobs = layout + "/blobs/sha256"
            try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
            let layerJSON = layers.map {
                #"{"mediaType":"\#($1)","digest":"sha256:\#(SHA256Hasher.hash($0).hex)","size":\#($0.count)}"#
            }.joined(separator: ",")
            let manifest = Data(
                #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"\#(configType)","digest":"sha256:\#(SHA256Hasher.hash(config).hex)","size":\#(config.count)},"layers":[\#(layerJSON)]}"#
                    .utf8)
            for d in layers.map(\.0) + [config, manifest] {
                try d.write(to: URL(fileURLWithPath: "\(blobs)/\(SHA256Hasher.hash(d).hex)"))
            }
            try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: layout + "/oci-layout"))
            try Data(
                #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\#(SHA256Hasher.hash(manifest).hex)","size":\#(manifest.count)}]}"#
                    .utf8
            ).write(to: URL(fileURLWithPath: layout + "/index.json"))
            try f.push(layout, to: reg, repoTag, creds: true)
        }
        try push(
            [(content, ChartFetcher.helmChartMediaType)], configType: ChartFetcher.helmConfigMediaType,
            as: "charts/kai:v0.16.8")
        // An image pushed where a chart is expected.
        try push(
            [(TestImage.layer(3, size: 1000), "application/vnd.oci.image.layer.v1.tar")],
            configType: "application/vnd.oci.image.config.v1+json", as: "charts/kai:v9.0.0")
        func spec(_ version: String, url: String? = nil) throws -> String {
            try f.chartSpec(url: url ?? "oci://\(reg.host)/charts", name: "kai", version: version)
        }
        let (result, lock) = try await f.build(try spec("v0.16.8"), "c.tar", creds: true)
        let art = try #require(result.manifest.allArtifacts.first { $0.artifact.name == "kai" }?.artifact)
        #expect(art.sha256 == digest)
        #expect(art.provenance("chart") == "kai" && art.provenance("version") == "v0.16.8")
        #expect(art.provenance("repository") == "oci://\(reg.host)/charts")
        #expect(lock.charts.map(\.sha256) == [digest])
        #expect(!f.log.text.contains(f.password), "the registry password reached the log")
        // No credentials: the registry's 401 is refused as such.
        await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("v0.16.8"), "n.tar", creds: false, cache: f.dir.file("cache-n"))
        }
        // A tag that does not exist; an image where the chart should be.
        let missing = await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("v0.17.0"), "m.tar", creds: true, cache: f.dir.file("cache-m"))
        }
        #expect(missing?.message.contains("tag 'v0.17.0'") == true, "\(missing?.message ?? "")")
        let image = await #expect(throws: RegistryError.self) {
            _ = try await f.build(try spec("v9.0.0"), "i.tar", creds: true, cache: f.dir.file("cache-i"))
        }
        #expect(image?.message.contains("is not a Helm chart") == true, "\(image?.message ?? "")")
        f.expectNothingLeft("i.tar", cache: f.dir.file("cache-i"))
        // Locked to another digest than the registry now serves.
        var other = lock
        other.charts[0].sha256 = SHA256Hasher.hash(Data("another".utf8))
        let locked = await #expect(throws: RegistryError.self) {
            _ = try await f.build(
                try spec("v0.16.8"), "l.tar", creds: true, locked: other, cache: f.dir.file("cache-l"))
        }
        #expect(locked?.message.contains("the lock file") == true, "\(locked?.message ?? "")")
        // Not a registry path.
        let bad = await #expect(throws: RegistryError.self) {
            _ = try await f.build(
                try spec("v0.16.8", url: "oci://charts"), "b.tar", creds: true, cache: f.dir.file("cache-b"))
        }
        #expect(bad?.message.contains("not an OCI registry path") == true, "\(bad?.message ?? "")")
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

extension RegistryFixture {
    /// A bundle spec with one `chartRepository:` chart artifact named after the chart.
    func chartSpec(url: String, name: String, version: String) throws -> String {
        let path = dir.file("chart-\(name)-\(version)-\(UUID().uuidString.prefix(4)).yaml")
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: charts}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: platform
              version: "1"
              artifacts:
                - name: \(name)
                  kind: chart
                  source: {chartRepository: {url: "\(url)", name: \(name), version: "\(version)"}}
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
