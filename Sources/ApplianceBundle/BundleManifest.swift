import ApplianceModel
import Foundation

/// What an artifact is, which decides how nodes install it.
public enum ArtifactKind: String, Sendable, CaseIterable, Codable {
    case deb, binary, image, chart, file
}

/// `manifest.yaml`: the signed description of a bundle. The manifest's exact bytes are what is signed.
public struct BundleManifest: Sendable, Equatable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "Bundle"
    /// Role names an artifact may carry: the node roles, or `all`.
    public static let roleNames = ["all"] + NodeRole.names

    public var name: String
    public var version: String
    public var created: String
    public var upgradeFrom: [String]
    public var kubernetesVersion: String
    public var components: [Component]

    public init(
        name: String, version: String, created: String, upgradeFrom: [String], kubernetesVersion: String,
        components: [Component]
    ) {
        self.name = name
        self.version = version
        self.created = created
        self.upgradeFrom = upgradeFrom
        self.kubernetesVersion = kubernetesVersion
        self.components = components
    }

    public struct Component: Sendable, Equatable {
        public var name: String
        public var version: String
        public var artifacts: [Artifact]
        public init(name: String, version: String, artifacts: [Artifact]) {
            self.name = name
            self.version = version
            self.artifacts = artifacts
        }
    }

    public struct Artifact: Sendable, Equatable {
        public var name: String
        public var kind: ArtifactKind
        public var sha256: SHA256Digest
        public var size: Int64
        public var roles: [String]
        /// Where it came from: `type` (file, directory, deb, oci-layout, chart) and further fields in order.
        public var provenance: [(String, String)]
        /// For `kind: image`: the image's reference, platform and further blobs; `sha256`/`size` are then the
        /// image manifest's (see OCIImage.swift).
        public var image: ImageDescriptor?
        /// Issue 11: the OS releases (`ID-VERSION_ID`, e.g. `debian-12`) this artifact is for; empty: every OS.
        public var os: [String]

        public init(
            name: String, kind: ArtifactKind, sha256: SHA256Digest, size: Int64, roles: [String],
            provenance: [(String, String)], image: ImageDescriptor? = nil, os: [String] = []
        ) {
            self.os = os
            self.name = name
            self.kind = kind
            self.sha256 = sha256
            self.size = size
            self.roles = roles
            self.provenance = provenance
            self.image = image
        }

        public static func == (a: Artifact, b: Artifact) -> Bool {
            a.name == b.name && a.kind == b.kind && a.sha256 == b.sha256 && a.size == b.size && a.roles == b.roles
                && a.provenance.elementsEqual(b.provenance, by: { $0.0 == $1.0 && $0.1 == $1.1 }) && a.image == b.image
                && a.os == b.os
        }

        public func provenance(_ key: String) -> String? { provenance.first { $0.0 == key }?.1 }

        /// Whether a node with these roles needs this artifact.
        public func applies(to nodeRoles: [NodeRole]) -> Bool {
            roles.contains("all") || nodeRoles.contains { roles.contains($0.rawValue) }
        }

        /// Issue 11: whether a node with these roles and this OS (`ID-VERSION_ID`, e.g. `debian-12`) needs this
        /// artifact. An artifact for named OS releases goes only to nodes of those releases; a node whose OS is
        /// not known (nil) gets whatever its roles need.
        public func applies(to nodeRoles: [NodeRole], os nodeOS: String?) -> Bool {
            guard applies(to: nodeRoles) else { return false }
            guard let nodeOS, !os.isEmpty else { return true }
            return os.contains(nodeOS)
        }
    }

    /// Every artifact with its component, in manifest order.
    public var allArtifacts: [(component: Component, artifact: Artifact)] {
        components.flatMap { c in c.artifacts.map { (c, $0) } }
    }

    /// Distinct blobs and their sizes (two artifacts, or two images' layers, may share one blob).
    public var blobs: [SHA256Digest: Int64] {
        var out: [SHA256Digest: Int64] = [:]
        for (_, a) in allArtifacts {
            for b in a.allBlobs { out[b.digest] = b.size }
        }
        return out
    }

    public var totalBlobBytes: Int64 { blobs.values.reduce(0, +) }
}

extension BundleManifest {
    /// The manifest as YAML. Deterministic: equal manifests give equal bytes.
    public func yaml() -> String {
        let comps: [YAMLTree] = components.map { c in
            .map([
                ("name", .string(c.name)), ("version", .string(c.version)),
                (
                    "artifacts",
                    .list(
                        c.artifacts.map { a in
                            .map(
                                [
                                    ("name", .string(a.name)), ("kind", .string(a.kind.rawValue)),
                                    ("sha256", .string(a.sha256.hex)), ("size", .int(Int(a.size))),
                                    ("roles", .list(a.roles.map { .string($0) })),
                                    ("provenance", .map(a.provenance.map { ($0.0, .string($0.1)) })),
                                ] + (a.image.map { [("image", $0.yamlTree)] } ?? [])
                                    + (a.os.isEmpty ? [] : [("os", .list(a.os.map { .string($0) }))]))
                        })
                ),
            ])
        }
        return YAMLTree.map([
            ("apiVersion", .string(Self.apiVersion)), ("kind", .string(Self.kind)),
            ("metadata", .map([("name", .string(name))])),
            ("version", .string(version)), ("created", .string(created)),
            ("upgradeFrom", .list(upgradeFrom.map { .string($0) })),
            ("kubernetes", .map([("version", .string(kubernetesVersion))])),
            ("components", .list(comps)),
        ]).serialized()
    }

    /// Parses manifest bytes; every problem is reported with its position in `label`.
    public static func parse(_ data: Data, label: String) throws(DiagnosticsError) -> BundleManifest {
        guard let text = String(data: data, encoding: .utf8) else {
            throw DiagnosticsError(subject: "bundle manifest", diagnostics: [Diagnostic("not UTF-8 text", at: nil)])
        }
        let (r, root) = try YAMLReader.parse(text: text, file: label, subject: "bundle manifest")
        let m = decode(root)
        try r.finish()
        guard let m else {
            throw DiagnosticsError(
                subject: "bundle manifest", diagnostics: [Diagnostic("unreadable manifest", at: nil)])
        }
        return m
    }

    static func decode(_ root: YAMLValue) -> BundleManifest? {
        let r = root.reader
        guard
            let (doc, metadata) = root.resource(
                apiVersion: apiVersion, kind: kind,
                topLevel: ["version", "created", "upgradeFrom", "kubernetes", "components"])
        else { return nil }
        let name = metadata?.require("name")?.nonEmptyString()
        let version = doc.require("version")?.nonEmptyString()
        let created = doc["created"]?.string() ?? ""
        let upgradeFrom = doc["upgradeFrom"]?.stringList() ?? []
        let k8s = doc.require("kubernetes")?.mapping(allowing: ["version"])?.require("version")?.nonEmptyString()
        var components: [Component] = []
        var seenBlobs: [SHA256Digest: Int64] = [:]
        for cv in doc.require("components")?.sequence() ?? [] {
            guard let cm = cv.mapping(allowing: ["name", "version", "artifacts"]),
                let cname = cm.require("name")?.nonEmptyString()
            else { continue }
            var artifacts: [Artifact] = []
            var names = Set<String>()
            for av in cm.require("artifacts")?.sequence() ?? [] {
                guard
                    let am = av.mapping(allowing: [
                        "name", "kind", "sha256", "size", "roles", "provenance", "image", "os",
                    ]),
                    let aname = am.require("name")?.nonEmptyString(),
                    let kind = am.require("kind")?.oneOf(ArtifactKind.allCases.map(\.rawValue)).flatMap(
                        ArtifactKind.init(rawValue:)),
                    let shaValue = am.require("sha256"), let shaText = shaValue.string(),
                    let size = am.require("size")?.int(in: 0...Int.max)
                else { continue }
                guard let sha = SHA256Digest(hex: shaText) else {
                    r.error("\(shaValue.displayPath) must be 64 lower-case hex digits", at: shaValue)
                    continue
                }
                if !names.insert(aname).inserted {
                    r.error("artifact '\(aname)' is listed twice in '\(cname)'", at: av)
                }
                if let other = seenBlobs[sha], other != Int64(size) {
                    r.error("blob \(sha.short) is listed with two different sizes", at: av)
                }
                seenBlobs[sha] = Int64(size)
                // Images (issue 15): config and layers listed under `image:`.
                let image = am["image"].flatMap(ImageDescriptor.decode)
                if (kind == .image) != (am["image"] != nil) {
                    r.error(
                        kind == .image
                            ? "image artifact '\(aname)' has no 'image' field (reference, platform, blobs)"
                            : "only an image artifact may have an 'image' field", at: av)
                }
                for b in image?.blobs ?? [] {
                    if let other = seenBlobs[b.digest], other != b.size {
                        r.error("blob \(b.digest.short) is listed with two different sizes", at: av)
                    }
                    seenBlobs[b.digest] = b.size
                }
                let roles =
                    am["roles"].flatMap { rv -> [String]? in
                        let list = rv.stringList() ?? []
                        for role in list where !roleNames.contains(role) {
                            r.error("unknown role '\(role)'; roles are \(roleNames.joined(separator: ", "))", at: rv)
                        }
                        return list
                    } ?? ["all"]
                let prov = am["provenance"]?.stringMap() ?? []
                artifacts.append(
                    Artifact(
                        name: aname, kind: kind, sha256: sha, size: Int64(size), roles: roles,
                        provenance: prov.map { ($0.key, $0.value) }, image: image,
                        os: am["os"]?.stringList() ?? []))
            }
            components.append(Component(name: cname, version: cm["version"]?.string() ?? "", artifacts: artifacts))
        }
        guard let name, let version, let k8s else { return nil }
        return BundleManifest(
            name: name, version: version, created: created, upgradeFrom: upgradeFrom, kubernetesVersion: k8s,
            components: components)
    }
}
