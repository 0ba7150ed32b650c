import ApplianceModel
import Foundation

/// The bundle's bill of materials (issue 15): a CycloneDX 1.5 JSON document listing every artifact (name,
/// version, kind, sha256, provenance, a purl for Debian packages and OCI images, the licence where the source
/// declares one). The builder adds it as the artifact `sbom/sbom.cdx.json`, so the signature covers it.
/// Deterministic: the same artifacts and build time give the same bytes.
public enum BundleSBOM {
    public static let component = "sbom"
    public static let artifact = "sbom.cdx.json"

    /// The CycloneDX JSON for these components (the SBOM's own component excluded).
    public static func document(
        name: String, version: String, created: String, kubernetesVersion: String,
        components: [BundleManifest.Component]
    ) -> Data {
        var list: [[String: Any]] = []
        for c in components where c.name != component {
            for a in c.artifacts { list.append(entry(c, a)) }
        }
        // A stable serial number: a name-based UUID of the content listed.
        let seed = SHA256Hasher.hash(
            Data((name + version + created + list.map { "\($0["bom-ref"] ?? "")" }.joined()).utf8)
                + Data(
                    components.flatMap(\.artifacts).map(\.sha256.hex).joined().utf8)
        ).hex
        let chars = Array(seed)
        let uuid =
            "\(String(chars[0..<8]))-\(String(chars[8..<12]))-5\(String(chars[13..<16]))-a\(String(chars[17..<20]))-\(String(chars[20..<32]))"
        let doc: [String: Any] = [
            "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
            "bomFormat": "CycloneDX", "specVersion": "1.5", "serialNumber": "urn:uuid:\(uuid)", "version": 1,
            "metadata": [
                "timestamp": created,
                "tools": ["components": [["type": "application", "name": "appliance", "group": "appliance.dev"]]],
                "component": [
                    "type": "application", "bom-ref": "bundle", "name": name, "version": version,
                    "properties": [["name": "appliance:kubernetes-version", "value": kubernetesVersion]],
                ] as [String: Any],
            ] as [String: Any],
            "components": list,
            "dependencies": [
                ["ref": "bundle", "dependsOn": list.compactMap { $0["bom-ref"] as? String }] as [String: Any]
            ],
        ]
        let data =
            (try? JSONSerialization.data(
                withJSONObject: doc, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return data + Data("\n".utf8)
    }

    static func entry(_ c: BundleManifest.Component, _ a: BundleManifest.Artifact) -> [String: Any] {
        var e: [String: Any] = [
            "bom-ref": "\(c.name)/\(a.name)", "group": c.name, "name": a.name,
            "hashes": [["alg": "SHA-256", "content": a.sha256.hex]],
        ]
        var props: [[String: String]] = [
            ["name": "appliance:kind", "value": a.kind.rawValue],
            ["name": "appliance:roles", "value": a.roles.joined(separator: ",")],
            ["name": "appliance:size", "value": "\(a.allBlobs.reduce(0) { $0 + $1.size })"],
        ]
        for (k, v) in a.provenance { props.append(["name": "appliance:provenance:\(k)", "value": v]) }
        switch a.kind {
        case .deb:
            e["type"] = "library"
            if let p = a.provenance("package") { e["name"] = p }
            if let v = a.provenance("version") { e["version"] = v }
            if let p = a.provenance("package"), let v = a.provenance("version") {
                let arch = a.provenance("architecture").map { "?arch=\(encode($0))" } ?? ""
                e["purl"] = "pkg:deb/debian/\(encode(p))@\(encode(v))\(arch)"
            }
        case .image:
            e["type"] = "container"
            if let i = a.image, case .success(let r) = ImageReference.parse(i.reference) {
                e["name"] = "\(r.registry)/\(r.repository)"
                e["version"] = r.tag ?? a.sha256.prefixed
                let last = r.repository.split(separator: "/").last.map(String.init) ?? r.repository
                var q = "repository_url=\(encode("\(r.registry)/\(r.repository)"))"
                if let t = r.tag { q += "&tag=\(encode(t))" }
                if let arch = ImagePlatform(i.platform)?.architecture { q += "&arch=\(encode(arch))" }
                e["purl"] = "pkg:oci/\(encode(last))@\(encode(a.sha256.prefixed))?\(q)"
                props.append(["name": "appliance:platform", "value": i.platform])
            }
        case .chart:
            e["type"] = "application"
            if let n = a.provenance("chart") { e["name"] = n }
            if let v = a.provenance("version") { e["version"] = v }
        case .binary:
            e["type"] = "application"
        case .file:
            e["type"] = "file"
        }
        if e["version"] == nil { e["version"] = c.version }
        if let l = a.provenance("license"), !l.isEmpty { e["licenses"] = [["expression": l]] }
        e["properties"] = props
        return e
    }

    /// Percent-encoding for purl segments and qualifier values.
    static func encode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: ".-_~+")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}

extension BundleBuilder {
    /// Writes the SBOM of `components` into `work` and returns its component and blob.
    func sbomComponent(_ components: [BundleManifest.Component], created: String, work: String) throws(BundleError)
        -> (component: BundleManifest.Component, blob: (SHA256Digest, String, Int64))
    {
        if components.contains(where: { $0.name == BundleSBOM.component }) {
            throw .source(
                artifact: BundleSBOM.artifact,
                reason: "the component name '\(BundleSBOM.component)' is reserved for the bill of materials",
                hint: "rename that component in the spec")
        }
        let data = BundleSBOM.document(
            name: spec.name, version: spec.version, created: created, kubernetesVersion: spec.kubernetesVersion,
            components: components)
        let path = work + "/" + BundleSBOM.artifact
        do {
            try data.write(to: URL(fileURLWithPath: path))
        } catch {
            throw .io(path: path, reason: error.localizedDescription)
        }
        let digest = SHA256Hasher.hash(data)
        let artifact = BundleManifest.Artifact(
            name: BundleSBOM.artifact, kind: .file, sha256: digest, size: Int64(data.count), roles: ["all"],
            provenance: [("type", "sbom"), ("format", "cyclonedx-json"), ("specVersion", "1.5")])
        return (
            BundleManifest.Component(name: BundleSBOM.component, version: spec.version, artifacts: [artifact]),
            (digest, path, Int64(data.count))
        )
    }
}
