import ApplianceModel
import Foundation
import Testing

@testable import ApplianceBundle

/// Images stored as their own OCI blobs (issue 15, milestone 1).
@Suite struct ImageTests {
    @Test func ociLayoutIsStoredAsItsOwnBlobsSharedLayersOnce() throws {
        let b = ImageBundle()
        let shared = TestImage.layer(1, size: 40_000)
        let a = TestImage(layers: [shared, TestImage.layer(2, size: 10_000)])
        let c = TestImage(layers: [shared, TestImage.layer(3, size: 20_000)])
        let result = try b.build(
            try b.spec([
                ("api", a, "registry.k8s.io/kube-apiserver:v1.34.3"),
                ("ctl", c, "registry.k8s.io/kube-controller-manager:v1.34.3"),
            ]),
            "b.tar")
        let images = result.manifest.images
        #expect(
            images.map(\.reference) == [
                "registry.k8s.io/kube-apiserver:v1.34.3", "registry.k8s.io/kube-controller-manager:v1.34.3",
            ])
        let api = try #require(images.first)
        #expect(api.manifestDigest == a.manifestDigest)
        #expect(api.manifestMediaType == OCIMediaType.imageManifest)
        #expect(api.platform == "linux/amd64")
        #expect(api.blobs.map(\.digest) == [SHA256Hasher.hash(a.config)] + a.layers.map { SHA256Hasher.hash($0) })
        #expect(api.blobs[1].mediaType == "application/vnd.oci.image.layer.v1.tar")
        // Each blob once in the tar: 2 manifests + 2 configs + 3 distinct layers, and the SBOM.
        let archive = try BundleArchive.open(result.path)
        #expect(archive.blobs.count == 8)
        #expect(Set(archive.blobs.map(\.digest)).count == 8)
        #expect(archive.blobs.contains { $0.digest == SHA256Hasher.hash(shared) })
        // Verify checks every blob and the manifest round-trips with its image fields.
        let verified = try archive.verify(trusted: [], allowUnsigned: true)
        #expect(verified.manifest == result.manifest)
        #expect(verified.bytesVerified == result.manifest.totalBlobBytes)
        let reparsed = try BundleManifest.parse(Data(result.manifest.yaml().utf8), label: "m")
        #expect(reparsed.images == images)
    }

    @Test func verifyNamesTheImageWhoseLayerIsDamaged() throws {
        let b = ImageBundle()
        let img = TestImage(layers: [TestImage.layer(7, size: 5000)])
        let result = try b.build(try b.spec([("pause", img, "registry.k8s.io/pause:3.10.1")]), "b.tar")
        // Flip bytes inside the layer (its first bytes are unique in the tar).
        let needle = img.layers[0].prefix(64)
        var flipped = Data(needle)
        flipped[10] ^= 0xFF
        try patch(result.path, replacing: needle, with: flipped)
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(result.path).verify(trusted: [], allowUnsigned: true)
        }
        #expect(error?.message.contains("artifact 'pause' of component 'images': digest mismatch") == true)
    }

    @Test func aLayerMissingFromTheTarIsNamed() throws {
        let b = ImageBundle()
        let img = TestImage(layers: [TestImage.layer(5, size: 3000)])
        let result = try b.build(try b.spec([("pause", img, "registry.k8s.io/pause:3.10.1")]), "b.tar")
        var m = result.manifest
        m.components[0].artifacts[0].image?.blobs.append(
            ImageBlob(digest: SHA256Hasher.hash(Data("absent".utf8)), size: 6, mediaType: "x"))
        let error = #expect(throws: BundleError.self) { try BundleArchive.open(result.path).checkContents(against: m) }
        #expect(error?.message.contains("artifact 'pause' of component 'images': blob") == true)
        #expect(error?.message.contains("is missing") == true)
    }

    @Test func manifestRefusesAnImageWithoutItsBlobsAndBlobsOnOtherKinds() throws {
        let base = """
            apiVersion: appliance.dev/v1alpha1
            kind: Bundle
            metadata: {name: b}
            version: "1"
            kubernetes: {version: v1.34.3}
            components:
              - name: c
                version: "1"
                artifacts:
                  - name: a
                    kind: KIND
                    sha256: \(String(repeating: "a", count: 64))
                    size: 3
                    roles: [all]
                    provenance: {type: x}

            """
        #expect(throws: DiagnosticsError.self) {
            try BundleManifest.parse(Data(base.replacingOccurrences(of: "KIND", with: "image").utf8), label: "m")
        }
        let withImage =
            base.replacingOccurrences(of: "KIND", with: "file")
                + """
                        image:
                          reference: registry.k8s.io/pause:3.10.1
                          platform: linux/amd64
                          mediaType: application/vnd.oci.image.manifest.v1+json
                          blobs: []

                """
        #expect(throws: DiagnosticsError.self) { try BundleManifest.parse(Data(withImage.utf8), label: "m") }
        #expect(
            (try? BundleManifest.parse(
                Data(withImage.replacingOccurrences(of: "kind: file", with: "kind: image").utf8), label: "m")) != nil)
    }

    @Test func diffCountsOnlyNewLayersOfAChangedImage() throws {
        let b = ImageBundle()
        let base = TestImage.layer(1, size: 100_000)
        let old = TestImage(layers: [base, TestImage.layer(2, size: 1000)])
        let new = TestImage(layers: [base, TestImage.layer(3, size: 2000)])
        let r1 = try b.build(try b.spec([("api", old, "registry.k8s.io/kube-apiserver:v1.34.2")]), "1.tar")
        let r2 = try b.build(
            try b.spec([("api", new, "registry.k8s.io/kube-apiserver:v1.34.3")], version: "1.1.0"), "2.tar")
        let d = BundleDiff(old: r1.manifest, new: r2.manifest)
        let change = try #require(d.changed.first)
        #expect(change.artifact == "api")
        #expect(change.blobCount == 4 && change.blobsShared == 1)
        let expected = Int64(new.manifest.count + new.config.count + 2000)
        #expect(change.bytesToSend == expected)
        // The rest of what an upgrade sends is the new bill of materials.
        let sbom = try #require(d.changed.first { $0.component == BundleSBOM.component })
        #expect(d.changed.count == 2)
        #expect(d.bytesToSend == expected + sbom.bytesToSend)
        #expect(d.newTotalBytes == expected + 100_000 + sbom.bytesToSend)
    }

    @Test func referencesAreParsedStrictly() {
        let ok = try? ImageReference.parse("registry.k8s.io/kube-apiserver:v1.34.3").get()
        #expect(ok?.registry == "registry.k8s.io" && ok?.repository == "kube-apiserver" && ok?.tag == "v1.34.3")
        let pinned = try? ImageReference.parse(
            "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3@sha256:\(String(repeating: "b", count: 64))"
        ).get()
        #expect(pinned?.repository == "nvidia/k8s/dcgm-exporter" && pinned?.digest != nil)
        #expect((try? ImageReference.parse("localhost:5000/a/b:1").get())?.apiHost == "localhost:5000")
        for bad in [
            "nginx:1.27", "library/nginx:1.27", "registry.k8s.io/pause", "registry.k8s.io/Pause:1",
            "registry.k8s.io/pause:bad tag", "registry.k8s.io/pause@sha256:abc", "registry.k8s.io/:1",
        ] {
            #expect(throws: ImageReference.ReferenceError.self, "\(bad)") { try ImageReference.parse(bad).get() }
        }
    }
}
