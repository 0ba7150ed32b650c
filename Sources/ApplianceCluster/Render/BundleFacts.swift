import ApplianceBundle
import ApplianceModel

/// What the renderers need to know about the bundle being installed.
public struct BundleFacts: Sendable, Equatable {
    /// `v1.34.3` (a leading `v` is added when missing).
    public var kubernetesVersion: String
    /// Every image reference the bundle carries, upstream names (`registry.k8s.io/pause:3.10.1`).
    public var imageReferences: [String]
    /// The pause (sandbox) image, upstream name; pulled through the mirror.
    public var pauseImage: String

    public init(kubernetesVersion: String, imageReferences: [String], pauseImage: String? = nil) {
        let v = kubernetesVersion.hasPrefix("v") ? kubernetesVersion : "v" + kubernetesVersion
        self.kubernetesVersion = v
        self.imageReferences = imageReferences
        self.pauseImage =
            pauseImage ?? Self.pauseImage(in: imageReferences) ?? Self.defaultPauseImage(kubernetesVersion: v)
    }

    /// From a verified manifest: its Kubernetes version and the image reference each image artifact recorded
    /// (`provenance image`, from the layout's `org.opencontainers.image.ref.name`).
    public init(manifest: BundleManifest) {
        let refs = manifest.allArtifacts.filter { $0.artifact.kind == .image }.compactMap {
            $0.artifact.provenance("image")
        }
        self.init(kubernetesVersion: manifest.kubernetesVersion, imageReferences: refs)
    }

    /// The `registry.k8s.io/pause` reference among `references`, if any.
    public static func pauseImage(in references: [String]) -> String? {
        references.first {
            ImageReference($0).map { $0.registry == "registry.k8s.io" && $0.repository == "pause" } ?? false
        }
    }

    /// The pause image kubeadm expects for a Kubernetes minor (`kubeadm config images list`), used when the
    /// bundle names none.
    public static func defaultPauseImage(kubernetesVersion: String) -> String {
        let parts = kubernetesVersion.drop { $0 == "v" }.split(separator: ".")
        let minor = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        let tag =
            switch minor {
            case 34...: "3.10.1"
            case 31...33: "3.10"
            case 29...30: "3.9"
            default: "3.9"
            }
        return "registry.k8s.io/pause:\(tag)"
    }

    /// The distinct upstream registries the bundle's images name, in first-seen order.
    public var upstreamRegistries: [String] {
        var regs = ImageReference.registries(of: imageReferences + [pauseImage]).registries
        // kubeadm pulls its control-plane images from registry.k8s.io (the imageRepository) even when the
        // bundle lists them under another spelling; it always needs a mirror entry.
        if !regs.contains("registry.k8s.io") { regs.insert("registry.k8s.io", at: 0) }
        return regs
    }
}
