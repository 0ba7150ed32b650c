import ApplianceBundle
import ApplianceModel
import AppliancePlatform
import Foundation
import Testing

@testable import ApplianceOperations

/// A site with a platform needs the images its smoke tests run in the bundle: the nodes pull only from the
/// private registry the bundle seeds.
@Suite struct InstallBundleCheckTests {
    static func manifest(images: [String]) -> BundleManifest {
        let artifacts = images.enumerated().map { i, ref in
            BundleManifest.Artifact(
                name: "image-\(i)", kind: .image, sha256: SHA256Digest(bytes: [UInt8](repeating: UInt8(i), count: 32)),
                size: 100, roles: ["control-plane", "system"], provenance: [("type", "oci-layout")],
                image: ImageDescriptor(
                    reference: ref, platform: "linux/amd64", mediaType: "application/vnd.oci.image.manifest.v1+json",
                    blobs: []))
        }
        return BundleManifest(
            name: "b", version: "1", created: "2026-12-01T00:00:00Z", upgradeFrom: [], kubernetesVersion: "v1.34.3",
            components: [.init(name: "images", version: "1", artifacts: artifacts)])
    }

    @Test func theSmokeTestImagesMustBeInTheBundleOfAPlatformSite() {
        let lacking = InstallBundleCheck.smokeImageProblems(Self.manifest(images: ["registry.k8s.io/pause:3.10.1"]))
        #expect(lacking.count == 1)
        for image in SmokeTests.images { #expect(lacking.first?.contains(image) == true, "\(image): \(lacking)") }
        // Compared as normalised references: Docker Hub's short names count.
        let short = SmokeTests.images.map {
            $0.replacingOccurrences(of: "docker.io/library/", with: "").replacingOccurrences(of: "docker.io/", with: "")
        }
        #expect(short.contains("busybox:1.37.0"))
        #expect(InstallBundleCheck.smokeImageProblems(Self.manifest(images: short)).isEmpty)
        // One missing is named alone.
        let one = InstallBundleCheck.smokeImageProblems(Self.manifest(images: Array(SmokeTests.images.dropLast())))
        #expect(
            one == [
                "the bundle lacks the images the platform's smoke tests run: \(SmokeTests.images.last ?? "") (add them to the bundle spec's images)"
            ])
    }
}
