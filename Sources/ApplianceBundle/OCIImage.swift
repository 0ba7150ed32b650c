import ApplianceModel
import Foundation

// Container images in bundles (issue 15). An image is stored as its own OCI blobs: the image manifest is
// the artifact's blob, and its config and layers are further blobs listed under the artifact's `image:`
// field, each under its upstream sha256 digest. See README.md, "Images".

/// One blob of an image (its config or a layer), as the image manifest names it.
public struct ImageBlob: Sendable, Equatable, Hashable {
    public var digest: SHA256Digest
    public var size: Int64
    public var mediaType: String

    public init(digest: SHA256Digest, size: Int64, mediaType: String) {
        self.digest = digest
        self.size = size
        self.mediaType = mediaType
    }
}

/// The `image:` field of an image artifact in the bundle manifest. The artifact's own `sha256`/`size` are the
/// image manifest's digest and size.
public struct ImageDescriptor: Sendable, Equatable {
    /// The upstream reference, e.g. `registry.k8s.io/pause:3.10.1` (a tag, a digest, or both).
    public var reference: String
    /// `os/architecture[/variant]`, e.g. `linux/amd64`.
    public var platform: String
    /// The image manifest's media type (OCI image manifest or Docker schema 2).
    public var mediaType: String
    /// The config blob first, then the layers in manifest order.
    public var blobs: [ImageBlob]

    public init(reference: String, platform: String, mediaType: String, blobs: [ImageBlob]) {
        self.reference = reference
        self.platform = platform
        self.mediaType = mediaType
        self.blobs = blobs
    }
}

/// An image of a bundle, for consumers that seed a registry from staged blobs (`BundleManifest.images`).
public struct BundleImage: Sendable, Equatable {
    public var component: String
    public var artifact: String
    public var roles: [String]
    /// The upstream reference, e.g. `registry.k8s.io/kube-apiserver:v1.34.3`.
    public var reference: String
    public var platform: String
    public var manifestDigest: SHA256Digest
    public var manifestMediaType: String
    public var manifestSize: Int64
    /// Config then layers; each is also a bundle blob (and, after staging, `STORE/sha256/<hex>`).
    public var blobs: [ImageBlob]

    /// Every blob digest of the image, the manifest first.
    public var allDigests: [SHA256Digest] { [manifestDigest] + blobs.map(\.digest) }
}

extension BundleManifest {
    /// Every image artifact, in manifest order.
    public var images: [BundleImage] {
        allArtifacts.compactMap { c, a in
            guard let i = a.image else { return nil }
            return BundleImage(
                component: c.name, artifact: a.name, roles: a.roles, reference: i.reference, platform: i.platform,
                manifestDigest: a.sha256, manifestMediaType: i.mediaType, manifestSize: a.size, blobs: i.blobs)
        }
    }
}

extension BundleManifest.Artifact {
    /// Every bundle blob this artifact needs: its own, then (for an image) its config and layers.
    public var allBlobs: [(digest: SHA256Digest, size: Int64)] {
        [(sha256, size)] + (image?.blobs.map { ($0.digest, $0.size) } ?? [])
    }
}

// MARK: - Manifest YAML for images

extension ImageDescriptor {
    var yamlTree: YAMLTree {
        .map([
            ("reference", .string(reference)), ("platform", .string(platform)), ("mediaType", .string(mediaType)),
            (
                "blobs",
                .list(
                    blobs.map {
                        .map([
                            ("digest", .string("sha256:" + $0.digest.hex)), ("size", .int(Int($0.size))),
                            ("mediaType", .string($0.mediaType)),
                        ])
                    })
            ),
        ])
    }

    static func decode(_ v: YAMLValue) -> ImageDescriptor? {
        let r = v.reader
        guard let m = v.mapping(allowing: ["reference", "platform", "mediaType", "blobs"]),
            let refValue = m.require("reference"), let ref = refValue.nonEmptyString(),
            let platform = m.require("platform")?.nonEmptyString(),
            let mediaType = m.require("mediaType")?.nonEmptyString()
        else { return nil }
        if case .failure(let e) = ImageReference.parse(ref) { r.error(e.description, at: refValue) }
        var blobs: [ImageBlob] = []
        for bv in m.require("blobs")?.sequence() ?? [] {
            guard let bm = bv.mapping(allowing: ["digest", "size", "mediaType"]),
                let dv = bm.require("digest"), let dtext = dv.string(),
                let size = bm.require("size")?.int(in: 0...Int.max),
                let mt = bm.require("mediaType")?.nonEmptyString()
            else { continue }
            guard let d = SHA256Digest(prefixed: dtext) else {
                r.error("\(dv.displayPath) must be sha256: and 64 lower-case hex digits", at: dv)
                continue
            }
            blobs.append(ImageBlob(digest: d, size: Int64(size), mediaType: mt))
        }
        return ImageDescriptor(reference: ref, platform: platform, mediaType: mediaType, blobs: blobs)
    }
}

extension SHA256Digest {
    /// Parses `sha256:<64 hex>`.
    public init?(prefixed text: String) {
        guard text.hasPrefix("sha256:") else { return nil }
        self.init(hex: String(text.dropFirst(7)))
    }

    /// `sha256:<hex>`, as OCI writes digests.
    public var prefixed: String { "sha256:" + hex }
}

// MARK: - References and platforms

/// An image reference `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`, as the distribution reference grammar
/// defines it. Bundles name the registry explicitly (no implicit `docker.io`): mirrors are keyed by it.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: SHA256Digest?

    public init(registry: String, repository: String, tag: String?, digest: SHA256Digest?) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    public var description: String {
        var s = "\(registry)/\(repository)"
        if let tag { s += ":\(tag)" }
        if let digest { s += "@\(digest.prefixed)" }
        return s
    }

    /// The host answering the Distribution API (Docker Hub's API lives on `registry-1.docker.io`).
    public var apiHost: String { registry == "docker.io" ? "registry-1.docker.io" : registry }

    /// What to ask the registry for: the digest when pinned, otherwise the tag.
    public var manifestReference: String { digest?.prefixed ?? tag ?? "latest" }

    public static func parse(_ text: String) -> Result<ImageReference, ReferenceError> {
        func fail(_ why: String) -> Result<ImageReference, ReferenceError> {
            .failure(ReferenceError(text: text, reason: why))
        }
        var rest = Substring(text)
        var digest: SHA256Digest?
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            guard let parsed = SHA256Digest(prefixed: d) else {
                return fail("the digest must be sha256:<64 hex digits>")
            }
            digest = parsed
            rest = rest[..<at]
        }
        guard let slash = rest.firstIndex(of: "/") else {
            return fail("name the registry explicitly (for example docker.io/library/\(rest))")
        }
        let registry = String(rest[..<slash])
        guard registry.contains(".") || registry.contains(":") || registry == "localhost" else {
            return fail(
                "'\(registry)' is not a registry host; name the registry explicitly (for example docker.io/\(rest))")
        }
        guard registry.range(of: #"^[A-Za-z0-9.-]+(:[0-9]+)?$"#, options: .regularExpression) != nil else {
            return fail("'\(registry)' is not a valid registry host")
        }
        var path = rest[rest.index(after: slash)...]
        var tag: String?
        if let colon = path.lastIndex(of: ":") {
            tag = String(path[path.index(after: colon)...])
            path = path[..<colon]
        }
        if let tag, tag.range(of: #"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"#, options: .regularExpression) == nil {
            return fail("'\(tag)' is not a valid tag")
        }
        let component = #"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"#
        guard !path.isEmpty,
            String(path).range(of: "^\(component)(/\(component))*$", options: .regularExpression) != nil
        else {
            return fail("'\(path)' is not a valid repository (lower-case letters, digits, and . _ - / between them)")
        }
        if tag == nil && digest == nil { return fail("pin a tag or a digest (for example :v1.0 or @sha256:...)") }
        return .success(ImageReference(registry: registry, repository: String(path), tag: tag, digest: digest))
    }

    public struct ReferenceError: Error, Sendable, Equatable, CustomStringConvertible {
        public var text: String
        public var reason: String
        public var description: String { "image reference '\(text)': \(reason)" }
    }
}

/// `os/architecture[/variant]`.
public struct ImagePlatform: Sendable, Hashable, CustomStringConvertible {
    public var os: String
    public var architecture: String
    public var variant: String?

    public static let linuxAMD64 = ImagePlatform(os: "linux", architecture: "amd64", variant: nil)

    public init(os: String, architecture: String, variant: String?) {
        self.os = os
        self.architecture = architecture
        self.variant = variant
    }

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && !$0.contains(" ") }) else {
            return nil
        }
        self.init(os: parts[0], architecture: parts[1], variant: parts.count == 3 ? parts[2] : nil)
    }

    public var description: String { [os, architecture, variant].compactMap { $0 }.joined(separator: "/") }
}

// MARK: - OCI manifests and indexes

/// The media types of image manifests and indexes this bundle understands.
public enum OCIMediaType {
    public static let imageManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let imageIndex = "application/vnd.oci.image.index.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

    static let manifests = [imageManifest, dockerManifest]
    static let indexes = [imageIndex, dockerManifestList]
    /// What a client sends in `Accept` when fetching a manifest.
    static let accept = [imageIndex, dockerManifestList, imageManifest, dockerManifest]
}

/// A parsed image manifest or index document.
enum OCIDocument {
    case manifest(mediaType: String, config: ImageBlob, layers: [ImageBlob])
    case index(mediaType: String, entries: [IndexEntry])

    struct IndexEntry {
        var digest: SHA256Digest
        var size: Int64
        var mediaType: String
        var platform: ImagePlatform?
    }

    private struct Descriptor: Decodable {
        var mediaType: String?
        var digest: String
        var size: Int64
        var platform: Platform?
    }

    private struct Platform: Decodable {
        var os: String
        var architecture: String
        var variant: String?
    }

    private struct Document: Decodable {
        var schemaVersion: Int?
        var mediaType: String?
        var config: Descriptor?
        var layers: [Descriptor]?
        var manifests: [Descriptor]?
    }

    /// Parses `data`; `headerType` is the Content-Type the registry sent (or the descriptor's media type).
    /// Why a document was refused.
    struct Invalid: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func parse(_ data: Data, headerType: String?) -> Result<OCIDocument, Invalid> {
        let doc: Document
        do {
            doc = try JSONDecoder().decode(Document.self, from: data)
        } catch {
            return .failure(Invalid("not an image manifest or index (invalid JSON: \(error))"))
        }
        guard doc.schemaVersion == 2 else {
            return .failure(Invalid("unsupported manifest schema version \(doc.schemaVersion ?? 0)"))
        }
        let type =
            doc.mediaType
            ?? headerType.flatMap { $0.split(separator: ";").first?.trimmingCharacters(in: .whitespaces) }
        func blob(_ d: Descriptor) -> Result<ImageBlob, Invalid> {
            guard let digest = SHA256Digest(prefixed: d.digest) else {
                return .failure(Invalid("unsupported digest '\(d.digest)'"))
            }
            guard d.size >= 0 else { return .failure(Invalid("negative size for \(d.digest)")) }
            return .success(ImageBlob(digest: digest, size: d.size, mediaType: d.mediaType ?? ""))
        }
        if let manifests = doc.manifests, doc.config == nil {
            var entries: [IndexEntry] = []
            for m in manifests {
                switch blob(m) {
                case .failure(let why): return .failure(why)
                case .success(let b):
                    entries.append(
                        IndexEntry(
                            digest: b.digest, size: b.size, mediaType: b.mediaType,
                            platform: m.platform.map {
                                ImagePlatform(os: $0.os, architecture: $0.architecture, variant: $0.variant)
                            }))
                }
            }
            return .success(.index(mediaType: type ?? OCIMediaType.imageIndex, entries: entries))
        }
        guard let config = doc.config, let layers = doc.layers else {
            return .failure(Invalid("an image manifest needs a config and layers"))
        }
        guard case .success(let c) = blob(config) else { return .failure(Invalid("invalid config descriptor")) }
        var ls: [ImageBlob] = []
        for l in layers {
            switch blob(l) {
            case .failure(let why): return .failure(why)
            case .success(let b): ls.append(b)
            }
        }
        let mt = type ?? OCIMediaType.imageManifest
        guard OCIMediaType.manifests.contains(mt) else {
            return .failure(Invalid("unsupported manifest media type '\(mt)'"))
        }
        return .success(.manifest(mediaType: mt, config: c, layers: ls))
    }

    /// The index entry for `platform`: an exact variant match first, then one without a variant.
    static func select(_ entries: [IndexEntry], platform: ImagePlatform) -> IndexEntry? {
        let candidates = entries.filter {
            $0.platform?.os == platform.os && $0.platform?.architecture == platform.architecture
        }
        if let v = platform.variant { return candidates.first { $0.platform?.variant == v } }
        return candidates.first { $0.platform?.variant == nil } ?? candidates.first
    }
}
