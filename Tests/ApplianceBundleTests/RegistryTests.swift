import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceBundle

extension Tag {
    /// Tests that start a real registry (Debian's docker-registry) on loopback.
    @Tag static var registry: Self
}

/// A registry with TLS from a test CA, images pushed into it with skopeo, and bundle specs that pull them.
final class RegistryFixture {
    let dir = TempDir()
    let pki: TestPKI
    let storage: String
    let user = "builder"
    let password = "s3cret-Pa55-\(UUID().uuidString.prefix(8))"
    let log = CapturingLog()
    /// Registry hosts (host:port) the test's credentials are for.
    var credentialHosts: [String] = []

    init() throws {
        pki = try TestPKI(dir: dir.file("pki"))
        storage = dir.file("storage")
    }

    /// Pushes `image` to `registry` as `repo:tag` (a multi-platform layout with `all`).
    func push(_ layoutDir: String, to registry: TestRegistry, _ repoTag: String, creds: Bool, all: Bool = false)
        throws
    {
        // --preserve-digests: skopeo would otherwise compress the layers on the way in.
        var args = ["copy", "-q", "--preserve-digests", "--dest-cert-dir", pki.certDir]
        if creds { args += ["--dest-creds", "\(user):\(password)"] }
        if all { args.append("--all") }
        args += ["oci:\(layoutDir)", "docker://\(registry.host)/\(repoTag)"]
        let (s, out) = try runTool(RegistryTools.skopeo, args, env: ["HOME": dir.path, "PATH": "/usr/bin:/bin"])
        if s != 0 { throw ToolFailed(description: "skopeo \(args.joined(separator: " ")): \(out)") }
    }

    func layout(_ name: String, _ image: TestImage) throws -> String {
        let path = dir.file("layouts/\(name)")
        try image.writeLayout(path, reference: nil)
        return path
    }

    func spec(_ images: [(name: String, ref: String, platform: String?)], version: String = "1.0.0") throws -> String {
        var artifacts = ""
        for i in images {
            artifacts += """
                        - name: \(i.name)
                          kind: image
                          roles: [all]
                          source: {image: {ref: "\(i.ref)"\(i.platform.map { ", platform: \($0)" } ?? "")}}

                """
        }
        let path = dir.file("spec-\(UUID().uuidString.prefix(6)).yaml")
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: pulled}
        spec:
          version: \(version)
          kubernetes: {version: v1.34.3}
          components:
            - name: images
              version: "1"
              artifacts:
        \(artifacts)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func options(creds: Bool, cache: String? = nil) -> RegistryOptions {
        var c = RegistryCredentials()
        if creds { for h in credentialHosts { c.set(host: h, username: user, password: password) } }
        return RegistryOptions(
            caFile: pki.caCert, credentials: c, parallelDownloads: 4, cacheDirectory: cache ?? dir.file("cache"))
    }

    func build(
        _ specPath: String, _ output: String, creds: Bool, locked: BundleLock? = nil, cache: String? = nil
    ) async throws -> (BundleBuilder.Result, BundleLock) {
        let spec = try BundleSpec.load(path: specPath)
        let builder = BundleBuilder(
            spec: spec, signingKey: nil, debCacheDirectory: dir.file("debs"), logger: log.logger)
        return try await builder.build(
            output: dir.file(output), registry: options(creds: creds, cache: cache), locked: locked)
    }

    /// Nothing of a failed build is visible: no output, no partial output, no half blob under its name.
    func expectNothingLeft(_ output: String, cache: String? = nil) {
        #expect(!FileManager.default.fileExists(atPath: dir.file(output)))
        let outs = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        #expect(!outs.contains { $0.contains(".partial") || $0.hasPrefix(".appliance-build") })
        let blobs =
            (try? FileManager.default.contentsOfDirectory(atPath: (cache ?? dir.file("cache")) + "/blobs/sha256")) ?? []
        for b in blobs where !b.contains(".") {
            let (d, _) = (try? SHA256Hasher.hash(file: (cache ?? dir.file("cache")) + "/blobs/sha256/" + b)) ?? (nil, 0)
            #expect(d?.hex == b, "cached blob \(b) does not match its name")
        }
    }
}

@Suite("pulling images from a real registry", .tags(.registry), .serialized)
struct RegistryTests {
    init() throws {
        if let missing = RegistryTools.missing { print("skipping registry tests: \(missing)") }
    }

    @Test func tlsAndBasicAuthPullSharedLayersOnceAndNeverLogTheSecret() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(
            dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .htpasswd(user: f.user, password: f.password))
        defer { reg.stop() }
        f.credentialHosts = [reg.host]
        let shared = TestImage.layer(1, size: 300_000)
        let a = TestImage(layers: [shared, TestImage.layer(2, size: 50_000)])
        let b = TestImage(layers: [shared, TestImage.layer(3, size: 70_000)])
        try f.push(try f.layout("a", a), to: reg, "k8s/kube-apiserver:v1.34.3", creds: true)
        try f.push(try f.layout("b", b), to: reg, "k8s/kube-scheduler:v1.34.3", creds: true)
        let spec = try f.spec([
            ("api", "\(reg.host)/k8s/kube-apiserver:v1.34.3", nil),
            ("sched", "\(reg.host)/k8s/kube-scheduler:v1.34.3", nil),
        ])
        let (result, lock) = try await f.build(spec, "b.tar", creds: true)
        let images = result.manifest.images
        #expect(images.map(\.manifestDigest) == [a.manifestDigest, b.manifestDigest])
        #expect(images[0].blobs.map(\.digest) == [SHA256Hasher.hash(a.config)] + a.layers.map { SHA256Hasher.hash($0) })
        #expect(result.manifest.allArtifacts[0].artifact.provenance("type") == "registry")
        // 2 manifests, 2 configs, 3 distinct layers, the SBOM.
        let archive = try BundleArchive.open(result.path)
        #expect(archive.blobs.count == 8)
        _ = try archive.verify(trusted: [], allowUnsigned: true)
        #expect(lock.images.map(\.manifest).sorted() == [a.manifestDigest, b.manifestDigest].sorted())

        // Without credentials: an authentication failure, exit code 6, no secret in the message.
        let noCreds = try f.spec([("api", "\(reg.host)/k8s/kube-apiserver:v1.34.3", nil)])
        let cache2 = f.dir.file("cache2")
        let error = await #expect(throws: RegistryError.self) {
            _ = try await f.build(noCreds, "c.tar", creds: false, cache: cache2)
        }
        #expect(error?.exitStatus == .authentication)
        #expect(error?.message.contains("none are configured") == true)
        f.expectNothingLeft("c.tar", cache: cache2)
        // The password never reaches a log line or a message; its base64 form neither.
        let b64 = Data("\(f.user):\(f.password)".utf8).base64EncodedString()
        for text in [f.log.text, error?.message ?? "", error?.hint ?? "", "\(String(describing: error))"] {
            #expect(!text.contains(f.password))
            #expect(!text.contains(b64))
        }
        #expect(
            "\(RegistryCredentials.Basic(username: "u", password: Secret(f.password)))".contains(f.password) == false)
    }

    @Test func wrongPasswordIsRefusedClearly() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(
            dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .htpasswd(user: f.user, password: f.password))
        defer { reg.stop() }
        try f.push(try f.layout("a", TestImage(layers: [TestImage.layer(1, size: 1000)])), to: reg, "a:1", creds: true)
        var opts = f.options(creds: false)
        opts.credentials.set(host: reg.host, username: f.user, password: "wrong-\(f.password)")
        let builder = BundleBuilder(
            spec: try BundleSpec.load(path: try f.spec([("a", "\(reg.host)/a:1", nil)])), signingKey: nil,
            debCacheDirectory: f.dir.file("debs"), logger: f.log.logger)
        let error = await #expect(throws: RegistryError.self) {
            _ = try await builder.build(output: f.dir.file("w.tar"), registry: opts)
        }
        #expect(error?.message.contains("the configured credentials were refused") == true)
        #expect(error?.message.contains(f.password) == false)
        #expect(!f.log.text.contains(f.password))
    }

    @Test func tokenAuthenticationFlow() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let helpers = try TestHelpers.write(f.dir.path)
        let tokenPort = try freeLoopbackPort()
        let served = f.dir.file("tokens.txt")
        let tokenServer = try TestProcess(
            RegistryTools.python,
            [
                helpers, "token", "\(tokenPort)", f.pki.serverCert, f.pki.serverKey, f.pki.tokenCert, f.pki.tokenKey,
                f.user, f.password, served,
            ], log: f.dir.file("token.log"))
        defer { tokenServer.stop() }
        try tokenServer.waitFor("token endpoint ready")
        let reg = try TestRegistry(
            dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .token(realm: "https://127.0.0.1:\(tokenPort)/token")
        )
        defer { reg.stop() }
        f.credentialHosts = [reg.host]
        let img = TestImage(layers: [TestImage.layer(4, size: 200_000)])
        try f.push(try f.layout("t", img), to: reg, "calico/node:v3.30.7", creds: true)
        let spec = try f.spec([("node", "\(reg.host)/calico/node:v3.30.7", "linux/amd64")])
        let (result, _) = try await f.build(spec, "t.tar", creds: true)
        #expect(result.manifest.images.first?.manifestDigest == img.manifestDigest)
        // Tokens were issued to us and appear nowhere in our logs.
        let tokens = (try String(contentsOfFile: served, encoding: .utf8)).split(separator: "\n").map(String.init)
        #expect(tokens.count >= 2)
        for t in tokens { #expect(!f.log.text.contains(t)) }
        #expect(!f.log.text.contains(f.password))
        // Without credentials the token endpoint refuses: a clear authentication error.
        let error = await #expect(throws: RegistryError.self) {
            _ = try await f.build(spec, "t2.tar", creds: false, cache: f.dir.file("cache-t2"))
        }
        #expect(error?.exitStatus == .authentication)
        #expect(error?.message.contains("token endpoint") == true)
    }

    @Test func multiPlatformIndexResolvesToTheRequestedPlatform() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .none)
        defer { reg.stop() }
        let amd = TestImage(layers: [TestImage.layer(5, size: 20_000)])
        var arm = TestImage(layers: [TestImage.layer(6, size: 30_000)])
        arm.architecture = "arm64"
        let layout = f.dir.file("layouts/multi")
        let indexDigest = try writeMultiPlatformLayout(layout, [amd, arm])
        try f.push(layout, to: reg, "pause:3.10.1", creds: false, all: true)
        let spec = try f.spec([
            ("amd", "\(reg.host)/pause:3.10.1", "linux/amd64"), ("arm", "\(reg.host)/pause:3.10.1", "linux/arm64"),
        ])
        let (result, lock) = try await f.build(spec, "m.tar", creds: false)
        #expect(result.manifest.images.map(\.manifestDigest) == [amd.manifestDigest, arm.manifestDigest])
        #expect(result.manifest.images.map(\.platform) == ["linux/amd64", "linux/arm64"])
        #expect(lock.images.allSatisfy { $0.digest == indexDigest })
        let none = try f.spec([("s390x", "\(reg.host)/pause:3.10.1", "linux/s390x")])
        let error = await #expect(throws: RegistryError.self) { _ = try await f.build(none, "n.tar", creds: false) }
        #expect(error?.message.contains("no manifest for linux/s390x") == true)
        #expect(error?.message.contains("linux/arm64") == true)
    }

    @Test func aBlobCutMidTransferIsResumedWithARangeRequest() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .none)
        defer { reg.stop() }
        let size = 6 << 20
        let img = TestImage(layers: [TestImage.layer(7, size: size)])
        try f.push(try f.layout("big", img), to: reg, "big:1", creds: false)
        let helpers = try TestHelpers.write(f.dir.path)
        let proxyPort = try freeLoopbackPort()
        let stats = f.dir.file("proxy-bytes")
        // The first connection carrying more than 3 MiB from the registry is cut there.
        let proxy = try TestProcess(
            RegistryTools.python, [helpers, "proxy", "\(proxyPort)", "\(reg.port)", "\(3 << 20)", "1", stats],
            log: f.dir.file("proxy.log"))
        defer { proxy.stop() }
        try proxy.waitFor("proxy ready")
        let spec = try f.spec([("big", "127.0.0.1:\(proxyPort)/big:1", nil)])
        let (result, _) = try await f.build(spec, "big.tar", creds: false)
        #expect(result.manifest.images.first?.blobs.last?.digest == SHA256Hasher.hash(img.layers[0]))
        _ = try BundleArchive.open(result.path).verify(trusted: [], allowUnsigned: true)
        // Resumed, not restarted: the second request asked for the bytes after those kept (bytes still in
        // flight when the connection was reset are lost, so the offset is somewhat below the cut), and the
        // proxy carried less than a whole layer after the cut.
        let offsets = f.log.text.split(separator: "\n").filter { $0.contains("resuming blob") }.compactMap {
            line -> Int? in
            guard let r = line.range(of: "from byte ") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
        #expect(offsets.contains { $0 > 0 && $0 < size }, "\(offsets)")
        let carried = Int(try String(contentsOfFile: stats, encoding: .utf8)) ?? 0
        #expect(carried - (3 << 20) < size, "the proxy carried \(carried) bytes for a \(size)-byte layer")
    }

    @Test func aRegistryServingWrongBytesIsRefusedAndNamed() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .none)
        defer { reg.stop() }
        let img = TestImage(layers: [TestImage.layer(8, size: 100_000)])
        try f.push(try f.layout("bad", img), to: reg, "bad:1", creds: false)
        let layer = SHA256Hasher.hash(img.layers[0])
        let data = "\(f.storage)/docker/registry/v2/blobs/sha256/\(layer.hex.prefix(2))/\(layer.hex)/data"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: data))
        bytes[5000] ^= 0x5A
        try bytes.write(to: URL(fileURLWithPath: data))
        let spec = try f.spec([("bad", "\(reg.host)/bad:1", nil)])
        let error = await #expect(throws: RegistryError.self) { _ = try await f.build(spec, "bad.tar", creds: false) }
        #expect(error?.exitStatus == .verification)
        #expect(error?.message.contains(layer.prefixed) == true)
        #expect(error?.message.contains("\(reg.host)/bad:1") == true)
        f.expectNothingLeft("bad.tar")
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("cache/blobs/sha256/\(layer.hex)")))
    }

    @Test func aMissingTagIsAClearError() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .none)
        defer { reg.stop() }
        try f.push(try f.layout("x", TestImage(layers: [TestImage.layer(9, size: 1000)])), to: reg, "x:1", creds: false)
        let spec = try f.spec([("x", "\(reg.host)/x:nope", nil)])
        let error = await #expect(throws: RegistryError.self) { _ = try await f.build(spec, "x.tar", creds: false) }
        #expect(error?.message.contains("has no manifest for tag 'nope' in x") == true)
        f.expectNothingLeft("x.tar")
    }

    @Test func aLockedRebuildIsByteIdenticalAndFailsWhenTheDigestIsGone() async throws {
        guard RegistryTools.missing == nil else { return }
        let f = try RegistryFixture()
        let reg = try TestRegistry(dir: f.dir.path, storage: f.storage, pki: f.pki, auth: .none)
        defer { reg.stop() }
        let v1 = TestImage(layers: [TestImage.layer(10, size: 50_000)])
        try f.push(try f.layout("v1", v1), to: reg, "etcd:3.6", creds: false)
        let spec = try f.spec([("etcd", "\(reg.host)/etcd:3.6", nil)])
        let (first, lock) = try await f.build(spec, "1.tar", creds: false)
        let lockPath = f.dir.file("bundle.lock")
        try lock.yaml().write(toFile: lockPath, atomically: true, encoding: .utf8)
        let reloaded = try BundleLock.load(path: lockPath)
        #expect(reloaded == lock)
        // The tag moves on; the locked build still takes the locked digest, from an empty cache.
        let v2 = TestImage(layers: [TestImage.layer(11, size: 50_000)])
        try f.push(try f.layout("v2", v2), to: reg, "etcd:3.6", creds: false)
        try await Task.sleep(for: .seconds(1.1))  // a different wall-clock second, which the lock must override
        let (second, _) = try await f.build(spec, "2.tar", creds: false, locked: reloaded, cache: f.dir.file("cache-2"))
        let a = try Data(contentsOf: URL(fileURLWithPath: first.path))
        let b = try Data(contentsOf: URL(fileURLWithPath: second.path))
        #expect(a == b, "a locked rebuild must be byte-identical")
        // Unlocked, the moved tag gives the new image.
        let (third, _) = try await f.build(spec, "3.tar", creds: false)
        #expect(third.manifest.images.first?.manifestDigest == v2.manifestDigest)
        // The locked digest deleted from the registry: a clear lock error.
        let (s, out) = try runTool(
            RegistryTools.skopeo,
            ["delete", "--cert-dir", f.pki.certDir, "docker://\(reg.host)/etcd@\(v1.manifestDigest.prefixed)"],
            env: ["HOME": f.dir.path, "PATH": "/usr/bin:/bin"])
        try #require(s == 0, "\(out)")
        let error = await #expect(throws: RegistryError.self) {
            _ = try await f.build(spec, "4.tar", creds: false, locked: reloaded, cache: f.dir.file("cache-4"))
        }
        #expect(error?.message.contains("no longer has the locked digest \(v1.manifestDigest.prefixed)") == true)
        f.expectNothingLeft("4.tar", cache: f.dir.file("cache-4"))
    }
}

/// Writes an OCI layout whose index.json names an image index of `images` (one per architecture); returns
/// the image index's digest.
func writeMultiPlatformLayout(_ dir: String, _ images: [TestImage]) throws -> SHA256Digest {
    let blobs = dir + "/blobs/sha256"
    try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
    var entries: [String] = []
    for img in images {
        for d in img.layers + [img.config, img.manifest] {
            try d.write(to: URL(fileURLWithPath: "\(blobs)/\(SHA256Hasher.hash(d).hex)"))
        }
        entries.append(
            #"{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(img.manifestDigest.prefixed)","size":\#(img.manifest.count),"platform":{"architecture":"\#(img.architecture)","os":"linux"}}"#
        )
    }
    let index = Data(
        #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\#(entries.joined(separator: ","))]}"#
            .utf8)
    let digest = SHA256Hasher.hash(index)
    try index.write(to: URL(fileURLWithPath: "\(blobs)/\(digest.hex)"))
    try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/oci-layout"))
    try Data(
        #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"\#(digest.prefixed)","size":\#(index.count)}]}"#
            .utf8
    ).write(to: URL(fileURLWithPath: dir + "/index.json"))
    return digest
}
