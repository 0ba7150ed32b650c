import ApplianceBundle
import ApplianceCluster

/// The bundle's images as the registry nodes seed them: each under its full upstream name in the private
/// registry (`registry.k8s.io/pause`), which is where containerd's mirror configuration (`override_path`)
/// looks for them, from the manifest, config and layer blobs staged on the node.
enum InstallImages {
    static func seedList(_ manifest: BundleManifest) -> [SeedImage] {
        manifest.images.compactMap { image -> SeedImage? in
            guard let ref = ImageReference(image.reference) else { return nil }
            return SeedImage(
                repository: ref.mirrorRepository, tag: ref.tag ?? ref.digest ?? "latest",
                manifestDigest: "sha256:\(image.manifestDigest.hex)", mediaType: image.manifestMediaType,
                blobs: image.blobs.map { "sha256:\($0.digest.hex)" })
        }
    }
}
