import ApplianceModel
import Foundation

/// An image found in an OCI layout (or in the pull cache): its manifest file and every blob it names, all
/// with checked digests.
struct LocalImage: Sendable {
    var descriptor: ImageDescriptor
    var manifestDigest: SHA256Digest
    var manifestPath: String
    var manifestSize: Int64
    var blobFiles: [ImageBlobFile]
    var provenance: [(String, String)] = []
}

extension OCILayout {
    /// Reads the image of an OCI layout for `platform`: `index.json` names a manifest (or an index, resolved
    /// to the platform); the manifest's config and layers must all be in `blobs/sha256`. Every blob's digest
    /// is checked (by `validate`). The reference is the `org.opencontainers.image.ref.name` annotation, which
    /// must be a full reference (`skopeo copy docker://REF oci:DIR:REF` writes it so).
    static func image(directory: String, platform: ImagePlatform, artifact: String) throws(BundleError) -> LocalImage {
        func fail(_ reason: String) -> BundleError {
            .source(
                artifact: artifact, reason: "\(directory): \(reason)",
                hint: "export the image with `skopeo copy docker://REF oci:DIR:REF`")
        }
        let info = try validate(directory: directory, artifact: artifact)
        guard let ref = info.reference else {
            throw fail("index.json has no org.opencontainers.image.ref.name annotation naming the image")
        }
        if case .failure(let e) = ImageReference.parse(ref) { throw fail(e.description) }
        let blobDir = directory + "/blobs/sha256"
        func read(_ d: SHA256Digest) throws(BundleError) -> Data {
            guard let data = FileManager.default.contents(atPath: "\(blobDir)/\(d.hex)") else {
                throw fail("blob \(d.prefixed) is missing")
            }
            return data
        }
        guard let top = SHA256Digest(prefixed: info.manifestDigest) else {
            throw fail("index.json names an unsupported digest \(info.manifestDigest)")
        }
        var manifestDigest = top
        var doc: OCIDocument
        switch OCIDocument.parse(try read(top), headerType: info.mediaType) {
        case .failure(let why): throw fail("manifest \(top.short): \(why)")
        case .success(let d): doc = d
        }
        if case .index(_, let entries) = doc {
            guard let entry = OCIDocument.select(entries, platform: platform) else {
                throw fail("the image index has no manifest for \(platform)")
            }
            manifestDigest = entry.digest
            switch OCIDocument.parse(try read(entry.digest), headerType: entry.mediaType) {
            case .failure(let why): throw fail("manifest \(entry.digest.short): \(why)")
            case .success(let d): doc = d
            }
        }
        guard case .manifest(let mediaType, let config, let layers) = doc else {
            throw fail("an image index inside an image index is not supported")
        }
        var files: [ImageBlobFile] = []
        for b in [config] + layers {
            let path = "\(blobDir)/\(b.digest.hex)"
            var st = stat()
            guard stat(path, &st) == 0 else { throw fail("blob \(b.digest.prefixed) named by the manifest is missing") }
            guard Int64(st.st_size) == b.size else {
                throw fail("blob \(b.digest.short) has \(st.st_size) bytes, the manifest says \(b.size)")
            }
            files.append(ImageBlobFile(digest: b.digest, path: path, size: b.size))
        }
        let imagePlatform = (try? ImageConfig.platform(of: try read(config.digest))) ?? platform
        let manifestPath = "\(blobDir)/\(manifestDigest.hex)"
        var st = stat()
        _ = stat(manifestPath, &st)
        return LocalImage(
            descriptor: ImageDescriptor(
                reference: ref, platform: imagePlatform.description, mediaType: mediaType, blobs: [config] + layers),
            manifestDigest: manifestDigest, manifestPath: manifestPath, manifestSize: Int64(st.st_size),
            blobFiles: files,
            provenance: ImageConfig.withLicense(
                [("type", "oci-layout"), ("image", ref), ("manifestDigest", manifestDigest.prefixed)],
                configPath: "\(blobDir)/\(config.digest.hex)"))
    }
}

/// The platform fields of an image config blob.
enum ImageConfig {
    private struct Config: Decodable {
        var os: String
        var architecture: String
        var variant: String?
    }

    static func platform(of data: Data) throws -> ImagePlatform {
        let c = try JSONDecoder().decode(Config.self, from: data)
        return ImagePlatform(os: c.os, architecture: c.architecture, variant: c.variant)
    }

    private struct Labels: Decodable {
        struct Inner: Decodable { var Labels: [String: String]? }
        var config: Inner?
    }

    /// The `org.opencontainers.image.licenses` label, where the image declares one.
    static func license(of data: Data) -> String? {
        (try? JSONDecoder().decode(Labels.self, from: data))?.config?.Labels?["org.opencontainers.image.licenses"]
    }

    /// Provenance with the image's declared licence appended, when its config has one.
    static func withLicense(_ prov: [(String, String)], configPath: String) -> [(String, String)] {
        guard let data = FileManager.default.contents(atPath: configPath), let l = license(of: data), !l.isEmpty
        else { return prov }
        return prov + [("license", l)]
    }
}

extension PreparedInput {
    /// An image's manifest as the artifact's blob, its config and layers as further blobs.
    init(_ image: LocalImage) {
        self.init(
            path: image.manifestPath, size: image.manifestSize, provenance: image.provenance, image: image.descriptor,
            imageBlobFiles: image.blobFiles)
    }
}
