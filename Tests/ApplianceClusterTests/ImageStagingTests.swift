import ApplianceBundle
import ApplianceModel
import ApplianceSSH
import ApplianceTestSupport
import Foundation
import Logging
import Testing

@testable import ApplianceCluster

/// Issue 15: an image is staged as its own blobs (manifest, config, every layer) to the nodes its roles name.
@Suite(.serialized, .tags(.sshd), .enabled(if: TestSSHServer.available))
struct ImageStagingTests {
    /// An OCI layout with one image of two layers; returns the blobs' digests (manifest, config, layers).
    static func layout(_ dir: String, ref: String, layerSizes: [Int]) throws -> [SHA256Digest] {
        let blobs = dir + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        func put(_ d: Data) throws -> SHA256Digest {
            let digest = SHA256Hasher.hash(d)
            try d.write(to: URL(fileURLWithPath: "\(blobs)/\(digest.hex)"))
            return digest
        }
        var layers: [(SHA256Digest, Int)] = []
        for size in layerSizes {
            var g = SystemRandomNumberGenerator()
            let words = (0..<(size + 7) / 8).map { _ in g.next() as UInt64 }
            let data = words.withUnsafeBytes { Data($0.prefix(size)) }
            layers.append((try put(data), size))
        }
        let config = Data(#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#.utf8)
        let configDigest = try put(config)
        let layerJSON = layers.map {
            #"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"\#($0.0.prefixed)","size":\#($0.1)}"#
        }.joined(separator: ",")
        let manifest = Data(
            #"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(configDigest.prefixed)","size":\#(config.count)},"layers":[\#(layerJSON)]}"#
                .utf8)
        let manifestDigest = try put(manifest)
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/oci-layout"))
        try Data(
            #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(manifestDigest.prefixed)","size":\#(manifest.count),"annotations":{"org.opencontainers.image.ref.name":"\#(ref)"}}]}"#
                .utf8
        ).write(to: URL(fileURLWithPath: dir + "/index.json"))
        return [manifestDigest, configDigest] + layers.map(\.0)
    }

    @Test func aNodeGetsEveryBlobOfTheImagesItsRolesNeedAndNoOthers() async throws {
        let dir = NSTemporaryDirectory() + "image-staging-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pause = try Self.layout(dir + "/pause", ref: "registry.k8s.io/pause:3.10.1", layerSizes: [300_000, 20_000])
        let api = try Self.layout(
            dir + "/api", ref: "registry.k8s.io/kube-apiserver:v1.34.3", layerSizes: [1 << 20, 50_000])
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: image-staging}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: k8s
              version: "1"
              artifacts:
                - {name: pause, kind: image, roles: [all], source: {ociLayout: pause}}
                - {name: api, kind: image, roles: [control-plane], source: {ociLayout: api}}
        """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let key = try Ed25519Key.generate()
        _ = try BundleBuilder(
            spec: try BundleSpec.load(path: dir + "/spec.yaml"), signingKey: key, debCacheDirectory: dir
        ).build(output: dir + "/b.tar")
        let verified = try BundleArchive.open(dir + "/b.tar").verify(trusted: [key], allowUnsigned: false)
        let sbom = try #require(verified.manifest.allArtifacts.first { $0.component.name == BundleSBOM.component })

        var servers: [TestSSHServer] = []
        defer { for s in servers { s.stop() } }
        for _ in 0..<2 { servers.append(try TestSSHServer()) }
        let pool = SSHPool(
            policy: HostKeyPolicy(pinnedByHost: ["127.0.0.1": servers.map(\.hostKeyFingerprint)]),
            options: SSHOptions(connectTimeout: .seconds(5)))
        let roles: [[NodeRole]] = [[.controlPlane], [.gpuWorker]]
        let nodes = servers.enumerated().map { i, s in
            StagingNode(
                name: "node-\(i + 1)", endpoint: s.endpoint(), roles: roles[i], store: s.directory + "/store",
                authorizedKeysFile: s.directory + "/authorized_keys")
        }
        let stager = Stager(bundle: verified, nodes: nodes, pool: pool, logger: Logger(label: "test"))
        let staged = try await stager.stage()
        await pool.closeAll()
        #expect(Set(staged) == Set(nodes.map(\.name)))
        func store(_ i: Int) throws -> Set<SHA256Digest> {
            Set(
                try FileManager.default.contentsOfDirectory(atPath: servers[i].directory + "/store/sha256")
                    .compactMap { SHA256Digest(hex: $0) })
        }
        // The control plane: both images, every blob of each; the GPU worker: pause only.
        #expect(try store(0) == Set(pause + api + [sbom.artifact.sha256]))
        #expect(try store(1) == Set(pause + [sbom.artifact.sha256]))
        #expect(await stager.required(for: nodes[1]).keys.sorted() == (pause + [sbom.artifact.sha256]).sorted())
    }
}
