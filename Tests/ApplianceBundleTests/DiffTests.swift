import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct DiffTests {
    func artifact(_ name: String, _ content: String, size: Int64) -> BundleManifest.Artifact {
        .init(
            name: name, kind: .file, sha256: SHA256Hasher.hash(Data(content.utf8)), size: size, roles: ["all"],
            provenance: [("type", "file")])
    }

    @Test func diffCountsOnlyNewBlobs() {
        let old = BundleManifest(
            name: "b", version: "1.0.0", created: "", upgradeFrom: [], kubernetesVersion: "v1.33.0",
            components: [
                .init(
                    name: "k8s", version: "1.33",
                    artifacts: [artifact("kubeadm", "k-1.33", size: 900), artifact("cni", "cni", size: 100)]),
                .init(name: "old", version: "1", artifacts: [artifact("gone", "gone", size: 50)]),
            ])
        let new = BundleManifest(
            name: "b", version: "1.1.0", created: "", upgradeFrom: ["1.0.0"], kubernetesVersion: "v1.34.0",
            components: [
                .init(
                    name: "k8s", version: "1.34",
                    artifacts: [artifact("kubeadm", "k-1.34", size: 1000), artifact("cni", "cni", size: 100)]),
                .init(name: "gpu", version: "1", artifacts: [artifact("driver", "drv", size: 5000)]),
            ])
        let d = BundleDiff(old: old, new: new)
        #expect(d.added.map(\.artifact) == ["driver"])
        #expect(d.removed.map(\.artifact) == ["gone"])
        #expect(d.changed.map(\.artifact) == ["kubeadm"])
        #expect(d.unchanged == 1)
        #expect(d.bytesToSend == 6000)
        #expect(d.newTotalBytes == 6100)
        #expect(d.upgradeAllowed)
        #expect(!BundleDiff(old: new, new: old).upgradeAllowed)
    }

    @Test func manifestRoundTripsThroughYAML() throws {
        let m = BundleManifest(
            name: "b", version: "1.0", created: "2026-11-22T00:00:00Z", upgradeFrom: ["0.9"],
            kubernetesVersion: "v1.34.3",
            components: [.init(name: "c", version: "1", artifacts: [artifact("a", "x", size: 1)])])
        let parsed = try BundleManifest.parse(Data(m.yaml().utf8), label: "m")
        #expect(parsed == m)
        // Version-like strings stay strings.
        #expect(m.yaml().contains("version: \"1.0\""))
    }
}
