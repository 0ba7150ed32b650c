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

    /// The release spec carries what a platform site's install looks for: a chart of every platform release
    /// at the version the product pins (install finds it by name and version), every image a chart lists as
    /// an image artifact the registry nodes receive, and the smoke tests' images.
    @Test func theReleaseSpecCarriesEveryPlatformChartAndTheSmokeTestImages() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
            .standardized.path
        let spec = try BundleSpec.load(path: root + "/bundles/release-2026.11.yaml")
        let artifacts = spec.components.flatMap(\.artifacts)
        let charts = artifacts.compactMap { a -> (String, String)? in
            if case .chartRepository(_, let name, let version) = a.source { return (name, version) }
            return nil
        }
        for chart in ChartReference.platform {
            #expect(
                charts.contains { $0 == (chart.name, chart.version) },
                "no chart \(chart.name) \(chart.version) in the release spec: \(charts)")
        }
        func normal(_ ref: String) -> String { (try? ImageReference.parse(ref).get())?.description ?? ref }
        let images = Set(spec.registryImages.map { normal($0.reference) })
        for ref in SmokeTests.images { #expect(images.contains(normal(ref)), "\(ref) not in the release spec") }
        for a in artifacts where a.kind == .image {
            #expect(
                Set(a.roles).isSuperset(of: ["control-plane", "system"]), "\(a.name) not staged to the registry nodes")
        }
    }

    /// operator-precompiled profiles: the GPU Operator's driver manager and toolkit images and a precompiled
    /// driver image of the profile's branch, else refused with what is missing and the tags carried.
    @Test func anOperatorPrecompiledSiteNeedsTheDriverContainersImages() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
            .standardized.path
        let profile = try ProfileCatalog(directory: root + "/profiles").load("hpc-8xh100")
        let site = SiteInventory(
            name: "s", profile: nil, ssh: .init(),
            hosts: [
                .init(name: "cp-1", address: "10.0.0.11", roles: [.controlPlane]),
                .init(name: "gpu-1", address: "10.0.0.31", roles: [.gpuWorker]),
            ])
        let driver = "nvcr.io/nvidia/driver:550-5.15.0-1043-nvidia-ubuntu22.04"
        let ok = InstallBundleCheck.gpuStackProblems(
            Self.manifest(images: PrecompiledDriver.operandImages + [driver]), profile: profile, site: site)
        #expect(ok.isEmpty, "\(ok)")
        let bare = InstallBundleCheck.gpuStackProblems(Self.manifest(images: []), profile: profile, site: site)
        #expect(bare.count == 1)
        for words in PrecompiledDriver.operandImages + [
            "nvcr.io/nvidia/driver:550-<kernel>-<os>", "driver branch 550 of profile hpc-8xh100", "tags: none",
        ] {
            #expect(bare.first?.contains(words) == true, "'\(words)' not in \(bare)")
        }
        let otherBranch = InstallBundleCheck.gpuStackProblems(
            Self.manifest(
                images: PrecompiledDriver.operandImages + ["nvcr.io/nvidia/driver:580-5.15.0-1043-nvidia-ubuntu22.04"]),
            profile: profile, site: site)
        #expect(otherBranch.first?.contains("tags: 580-5.15.0-1043-nvidia-ubuntu22.04") == true, "\(otherBranch)")
        // No GPU node, nothing asked.
        var cpuOnly = site
        cpuOnly.hosts.removeLast()
        #expect(InstallBundleCheck.gpuStackProblems(Self.manifest(images: []), profile: profile, site: cpuOnly).isEmpty)
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
