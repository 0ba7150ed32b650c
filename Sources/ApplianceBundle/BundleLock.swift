import ApplianceModel
import Foundation

/// `bundle build --lock FILE`: what a build resolved (image tags to digests, Debian packages to exact versions
/// and file digests, the build time), so `--locked` rebuilds the same bytes.
public struct BundleLock: Sendable, Equatable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "BundleLock"

    public var name: String
    public var version: String
    /// The build time recorded in the manifest (RFC 3339, UTC); a locked build reuses it.
    public var created: String
    public var images: [Image]
    public var debs: [Deb]
    public var charts: [Chart] = []

    public struct Chart: Sendable, Equatable {
        public var url: String
        public var name: String
        public var version: String
        public var sha256: SHA256Digest
    }

    public struct Image: Sendable, Equatable {
        public var reference: String
        public var platform: String
        /// What the reference resolved to at lock time (an index or a manifest).
        public var digest: SHA256Digest
        /// The platform's image manifest (what the bundle stores).
        public var manifest: SHA256Digest
    }

    public struct Deb: Sendable, Equatable {
        public var package: String
        public var version: String
        public var architecture: String
        public var sha256: SHA256Digest
    }

    public init(name: String, version: String, created: String, images: [Image], debs: [Deb]) {
        self.name = name
        self.version = version
        self.created = created
        self.images = images
        self.debs = debs
    }

    public func image(reference: String, platform: String) -> Image? {
        images.first { $0.reference == reference && $0.platform == platform }
    }

    public func chart(url: String, name: String, version: String) -> Chart? {
        charts.first { $0.url == url && $0.name == name && $0.version == version }
    }

    public func deb(package: String, architecture: String?) -> Deb? {
        debs.first { $0.package == package && (architecture == nil || $0.architecture == architecture) }
    }

    /// The lock as YAML, sorted, so equal locks give equal bytes.
    public func yaml() -> String {
        YAMLTree.map([
            ("apiVersion", .string(Self.apiVersion)), ("kind", .string(Self.kind)),
            ("metadata", .map([("name", .string(name))])),
            (
                "spec",
                .map([
                    ("version", .string(version)), ("created", .string(created)),
                    (
                        "images",
                        .list(
                            images.sorted { ($0.reference, $0.platform) < ($1.reference, $1.platform) }.map {
                                .map([
                                    ("reference", .string($0.reference)), ("platform", .string($0.platform)),
                                    ("digest", .string($0.digest.prefixed)),
                                    ("manifest", .string($0.manifest.prefixed)),
                                ])
                            })
                    ),
                    (
                        "debs",
                        .list(
                            debs.sorted { ($0.package, $0.architecture) < ($1.package, $1.architecture) }.map {
                                .map([
                                    ("package", .string($0.package)), ("version", .string($0.version)),
                                    ("architecture", .string($0.architecture)), ("sha256", .string($0.sha256.hex)),
                                ])
                            })
                    ),
                    (
                        "charts",
                        .list(
                            charts.sorted { ($0.url, $0.name, $0.version) < ($1.url, $1.name, $1.version) }.map {
                                .map([
                                    ("url", .string($0.url)), ("name", .string($0.name)),
                                    ("version", .string($0.version)), ("sha256", .string($0.sha256.hex)),
                                ])
                            })
                    ),
                ])
            ),
        ]).serialized()
    }

    public static func load(path: String) throws(DiagnosticsError) -> BundleLock {
        let (r, root) = try YAMLReader.load(path: path, subject: "bundle lock file")
        let lock = decode(root)
        try r.finish()
        guard let lock else {
            throw DiagnosticsError(
                subject: "bundle lock file", diagnostics: [Diagnostic("unreadable lock file", at: nil)])
        }
        return lock
    }

    static func decode(_ root: YAMLValue) -> BundleLock? {
        let r = root.reader
        guard let (doc, metadata) = root.resource(apiVersion: apiVersion, kind: kind),
            let name = metadata?.require("name")?.nonEmptyString(),
            let spec = doc.require("spec")?.mapping(allowing: ["version", "created", "images", "debs", "charts"]),
            let version = spec.require("version")?.nonEmptyString(),
            let created = spec.require("created")?.nonEmptyString()
        else { return nil }
        func digest(_ v: YAMLValue?) -> SHA256Digest? {
            guard let v, let text = v.string() else { return nil }
            guard let d = SHA256Digest(hex: text) else {
                r.error("\(v.displayPath) must be a sha256 digest", at: v)
                return nil
            }
            return d
        }
        var images: [Image] = []
        for v in spec["images"]?.sequence() ?? [] {
            guard let m = v.mapping(allowing: ["reference", "platform", "digest", "manifest"]),
                let ref = m.require("reference")?.nonEmptyString(),
                let platform = m.require("platform")?.nonEmptyString(),
                let d = digest(m.require("digest")), let md = digest(m.require("manifest"))
            else { continue }
            images.append(Image(reference: ref, platform: platform, digest: d, manifest: md))
        }
        var debs: [Deb] = []
        for v in spec["debs"]?.sequence() ?? [] {
            guard let m = v.mapping(allowing: ["package", "version", "architecture", "sha256"]),
                let p = m.require("package")?.nonEmptyString(), let ver = m.require("version")?.nonEmptyString(),
                let arch = m.require("architecture")?.nonEmptyString(), let d = digest(m.require("sha256"))
            else { continue }
            debs.append(Deb(package: p, version: ver, architecture: arch, sha256: d))
        }
        var charts: [Chart] = []
        for v in spec["charts"]?.sequence() ?? [] {
            guard let m = v.mapping(allowing: ["url", "name", "version", "sha256"]),
                let u = m.require("url")?.nonEmptyString(), let n = m.require("name")?.nonEmptyString(),
                let ver = m.require("version")?.nonEmptyString(), let d = digest(m.require("sha256"))
            else { continue }
            charts.append(Chart(url: u, name: n, version: ver, sha256: d))
        }
        var lock = BundleLock(name: name, version: version, created: created, images: images, debs: debs)
        lock.charts = charts
        return lock
    }
}
