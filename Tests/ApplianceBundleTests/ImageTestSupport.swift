import Foundation

@testable import ApplianceBundle

/// Builds real OCI image layouts on disk (layers as gzip-free tars of random bytes, a config, a manifest,
/// `index.json`), so tests can pack them or push them to a registry with skopeo.
struct TestImage {
    var layers: [Data]
    var architecture = "amd64"

    static func layer(_ seed: UInt8, size: Int) -> Data {
        var g = SystemRandomNumberGenerator()
        var words = [UInt64](repeating: 0, count: (size + 7) / 8)
        for i in words.indices { words[i] = g.next() }
        var d = words.withUnsafeBytes { Data($0.prefix(size)) }
        if size > 0 { d[0] = seed }
        return d
    }

    var config: Data {
        let diffIDs = layers.map { "\"sha256:\(SHA256Hasher.hash($0).hex)\"" }.joined(separator: ",")
        return Data(
            """
            {"architecture":"\(architecture)","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[\(diffIDs)]}}
            """.utf8)
    }

    var manifest: Data {
        let layerJSON = layers.map {
            "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:\(SHA256Hasher.hash($0).hex)\",\"size\":\($0.count)}"
        }.joined(separator: ",")
        return Data(
            """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:\(SHA256Hasher.hash(config).hex)","size":\(config.count)},"layers":[\(layerJSON)]}
            """.utf8)
    }

    var manifestDigest: SHA256Digest { SHA256Hasher.hash(manifest) }

    /// Writes the layout; `reference` becomes the ref.name annotation.
    func writeLayout(_ dir: String, reference: String?) throws {
        let blobs = dir + "/blobs/sha256"
        try FileManager.default.createDirectory(atPath: blobs, withIntermediateDirectories: true)
        for d in layers + [config, manifest] {
            try d.write(to: URL(fileURLWithPath: "\(blobs)/\(SHA256Hasher.hash(d).hex)"))
        }
        try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/oci-layout"))
        let ann = reference.map { #","annotations":{"org.opencontainers.image.ref.name":"\#($0)"}"# } ?? ""
        try Data(
            """
            {"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:\(manifestDigest.hex)","size":\(manifest.count)\(ann)}]}
            """.utf8
        ).write(to: URL(fileURLWithPath: dir + "/index.json"))
    }
}

/// A bundle spec with image artifacts from OCI layouts (and optional plain files), in a temp dir.
struct ImageBundle {
    let dir = TempDir()

    /// `images`: artifact name -> (image, reference).
    func spec(_ images: [(String, TestImage, String)], version: String = "1.0.0", extra: String = "") throws -> String {
        var artifacts = ""
        for (name, image, ref) in images {
            try image.writeLayout(dir.file("layouts/\(name)"), reference: ref)
            artifacts += """
                        - name: \(name)
                          kind: image
                          roles: [all]
                          source: {ociLayout: layouts/\(name)}

                """
        }
        let path = dir.file("spec-\(version).yaml")
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: images}
        spec:
          version: \(version)
          upgradeFrom: [1.0.0]
          kubernetes: {version: v1.34.3}
          components:
            - name: images
              version: "1"
              artifacts:
        \(artifacts)\(extra)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func build(_ specPath: String, _ name: String) throws -> BundleBuilder.Result {
        let spec = try BundleSpec.load(path: specPath)
        return try BundleBuilder(
            spec: spec, signingKey: nil, debCacheDirectory: dir.file("debs"),
            created: Date(timeIntervalSince1970: 1_700_000_000)
        ).build(output: dir.file(name))
    }
}
