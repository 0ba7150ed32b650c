import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct SBOMTests {
    static let schemaDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "CycloneDX"
    ).path

    /// Validates `json` against the CycloneDX 1.5 schema kept in the tests (Debian's python3-jsonschema).
    static func validate(_ json: Data, in dir: TempDir) throws -> (Bool, String) {
        let doc = dir.file("sbom-\(UUID().uuidString.prefix(6)).json")
        try json.write(to: URL(fileURLWithPath: doc))
        let script = """
            import json, sys, jsonschema
            d = sys.argv[1]
            schema = json.load(open(d + "/bom-1.5.SNAPSHOT.schema.json"))
            resolver = jsonschema.RefResolver(base_uri="file://" + d + "/", referrer=schema)
            v = jsonschema.Draft7Validator(schema, resolver=resolver, format_checker=jsonschema.FormatChecker())
            errors = sorted(v.iter_errors(json.load(open(sys.argv[2]))), key=lambda e: list(e.path))
            for e in errors: print("/".join(map(str, e.path)), e.message[:200])
            sys.exit(1 if errors else 0)
            """
        let (s, out) = try runTool("/usr/bin/python3", ["-c", script, schemaDir, doc])
        return (s == 0, out)
    }

    @Test func everyBundleCarriesASignedCycloneDXSBOMThatValidates() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
            (try? runTool("/usr/bin/python3", ["-c", "import jsonschema"]))?.0 == 0
        else {
            print("skipping SBOM schema validation: python3-jsonschema is missing (run scripts/bootstrap)")
            return
        }
        let b = ImageBundle()
        let img = TestImage(layers: [TestImage.layer(1, size: 2000)])
        try "x".write(toFile: b.dir.file("motd.txt"), atomically: true, encoding: .utf8)
        let extra = """
                    - name: motd
                      kind: file
                      roles: [all]
                      source: {file: motd.txt}

            """
        let result = try b.build(try b.spec([("pause", img, "registry.k8s.io/pause:3.10.1")], extra: extra), "b.tar")
        let entry = try #require(
            result.manifest.allArtifacts.first { $0.component.name == "sbom" && $0.artifact.name == "sbom.cdx.json" })
        var data = Data()
        try BundleArchive.open(result.path).streamBlob(entry.artifact.sha256) { data.append(contentsOf: $0) }
        let (ok, out) = try Self.validate(data, in: b.dir)
        #expect(ok, "the SBOM does not validate: \(out)")
        let doc = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(doc["specVersion"] as? String == "1.5")
        let comps = try #require(doc["components"] as? [[String: Any]])
        let image = try #require(comps.first { $0["type"] as? String == "container" })
        #expect(image["name"] as? String == "registry.k8s.io/pause")
        #expect(image["version"] as? String == "3.10.1")
        #expect(
            image["purl"] as? String
                == "pkg:oci/pause@sha256%3A\(img.manifestDigest.hex)?repository_url=registry.k8s.io%2Fpause&tag=3.10.1&arch=amd64"
        )
        #expect((image["hashes"] as? [[String: Any]])?.first?["content"] as? String == img.manifestDigest.hex)
        #expect(comps.contains { $0["name"] as? String == "motd" && $0["type"] as? String == "file" })
        // The SBOM does not list itself; the deb purl encodes epochs.
        #expect(!comps.contains { $0["group"] as? String == "sbom" })
        let deb = BundleSBOM.entry(
            .init(name: "k", version: "1", artifacts: []),
            .init(
                name: "conntrack", kind: .deb, sha256: SHA256Hasher.hash(Data()), size: 1, roles: ["all"],
                provenance: [
                    ("type", "deb"), ("package", "conntrack"), ("version", "1:1.4.7-1+b2"), ("architecture", "amd64"),
                ]))
        #expect(deb["purl"] as? String == "pkg:deb/debian/conntrack@1%3A1.4.7-1+b2?arch=amd64")
        // The validator is real: a document without bomFormat fails.
        var broken = doc
        broken["bomFormat"] = nil
        let (brokenOK, _) = try Self.validate(try JSONSerialization.data(withJSONObject: broken), in: b.dir)
        #expect(!brokenOK)
        // Same inputs, same SBOM bytes.
        let again = try b.build(try b.spec([("pause", img, "registry.k8s.io/pause:3.10.1")], extra: extra), "c.tar")
        #expect(again.manifest == result.manifest)
    }
}
