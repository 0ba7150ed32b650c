import ApplianceModel
import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct SpecCheckTests {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardized.path

    @Test func theReleaseSpecPassesTheCheck() throws {
        let spec = try BundleSpec.load(path: Self.repoRoot + "/bundles/release-2026.11.yaml")
        let findings = SpecCheck.run(spec)
        #expect(findings.filter { $0.severity == .error }.isEmpty, "\(findings)")
        #expect(spec.kubernetesVersion == "v1.34.3")
        let refs = spec.registryImages.map(\.reference)
        for want in [
            "registry.k8s.io/kube-apiserver:v1.34.3", "registry.k8s.io/pause:3.10.1",
            "quay.io/tigera/operator:v1.38.13",
        ] {
            #expect(refs.contains(want))
        }
        let debs = spec.components.flatMap(\.artifacts).compactMap { a -> String? in
            if case .debPackage(let n, _, _) = a.source { return n }
            return nil
        }
        for want in [
            "kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni", "containerd", "runc", "keepalived",
            "haproxy",
        ] {
            #expect(debs.contains(want))
        }
    }

    @Test func chartImagesMustBeCoveredAndValuesImagesAreWarnedAbout() throws {
        let dir = TempDir()
        let chart = dir.file("charts/op")
        try FileManager.default.createDirectory(atPath: chart + "/templates", withIntermediateDirectories: true)
        try "apiVersion: v2\nname: op\nversion: 1.0.0\nappVersion: v2.0.0\n".write(
            toFile: chart + "/Chart.yaml", atomically: true, encoding: .utf8)
        try """
        operator:
          image: tigera/operator
          version: v1.38.13
          registry: quay.io
        agent:
          image:
            repository: nvcr.io/nvidia/agent
            tag: ""
        sidecar:
          image:
            repository: busybox
            tag: "1.36"
        """.write(toFile: chart + "/values.yaml", atomically: true, encoding: .utf8)
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: c}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: cni
              version: "1"
              artifacts:
                - name: op
                  kind: chart
                  source: {chart: charts/op}
                  images: [quay.io/tigera/operator:v1.38.13, quay.io/calico/node:v3.30.7]
                - {name: operator, kind: image, source: {image: {ref: quay.io/tigera/operator:v1.38.13}}}
                - {name: agent, kind: image, source: {image: {ref: nvcr.io/nvidia/agent:v1.0.0}}}
                - {name: motd, kind: file, source: {file: missing.txt}}
                - {name: tool, kind: deb, source: {deb: {package: socat}}}
        """.write(toFile: dir.file("spec.yaml"), atomically: true, encoding: .utf8)
        let findings = SpecCheck.run(try BundleSpec.load(path: dir.file("spec.yaml")))
        let errors = findings.filter { $0.severity == .error }.map(\.message)
        let warnings = findings.filter { $0.severity == .warning }.map(\.message)
        #expect(errors.count == 2, "\(errors)")
        #expect(errors.contains { $0.contains("quay.io/calico/node:v3.30.7, which no image artifact") })
        #expect(errors.contains { $0.contains("missing.txt does not exist") })
        // agent: tag empty -> appVersion v2.0.0, the bundle has v1.0.0; busybox: Docker Hub, absent.
        #expect(
            warnings.contains {
                $0.contains(
                    "agent.image.repository names nvcr.io/nvidia/agent:v2.0.0, the bundle has nvcr.io/nvidia/agent only at v1.0.0"
                )
            })
        #expect(warnings.contains { $0.contains("docker.io/library/busybox:1.36, which the bundle lacks") })
        #expect(warnings.contains { $0.contains("socat has no pinned version") })
        #expect(!warnings.contains { $0.contains("tigera/operator") })
    }

    @Test func malformedImageSourcesAreRefusedWithPositions() throws {
        let dir = TempDir()
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: c}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: a, kind: image, source: {image: {ref: "pause:3.10"}}}
                - {name: b, kind: image, source: {image: {ref: registry.k8s.io/pause:3.10, platform: amd64}}}
                - {name: c, kind: file, source: {image: {ref: registry.k8s.io/pause:3.10}}}
                - {name: d, kind: chart, source: {chartRepository: {url: "http://x/charts", name: x, version: "1"}}}
                - {name: e, kind: file, source: {file: f}, images: [registry.k8s.io/pause:3.10]}
        """.write(toFile: dir.file("spec.yaml"), atomically: true, encoding: .utf8)
        let error = #expect(throws: DiagnosticsError.self) { try BundleSpec.load(path: dir.file("spec.yaml")) }
        let text = error?.description ?? ""
        #expect(text.contains("spec.yaml:11:"))
        #expect(text.contains("name the registry explicitly"))
        #expect(text.contains("must be os/architecture"))
        #expect(text.contains("a 'image' source gives kind image, not 'file'"))
        #expect(text.contains("must be an https:// URL"))
        #expect(text.contains("only a chart artifact may list 'images'"))
    }
}
