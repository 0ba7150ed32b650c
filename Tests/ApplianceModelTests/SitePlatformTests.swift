import ApplianceModel
import Foundation
import Testing

/// `spec.platform`: queues, storage and the TLS secret name, with positioned errors; sites without it load.
@Suite struct SitePlatformTests {
    static func site(platform: String, extra: String = "") -> String {
        """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: dc1}
        spec:
          hosts:
            - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
            - {name: sys-1, address: 10.0.0.21, roles: [system]}
          network: {domain: ml.example.internal, apiEndpoint: "10.0.0.11:6443"}
          tls: {certificate: tls.crt, key: tls.key, ca: ca.crt}
          storage: {nfs: {server: 10.0.0.5, path: /export/datasets}}
        \(extra)
          platform:
        \(platform)
        """
    }

    static let good = """
            queues:
              - {name: org, gpuQuota: 16}
              - {name: team-a, parent: org, gpuQuota: 10, gpuLimit: 16, overQuotaWeight: 2, priority: 120, namespaces: [team-a]}
              - {name: team-b, parent: org, gpuQuota: 6, namespaces: [team-b, team-b-dev]}
            storage: {storageClass: local-path, capacityGiB: 4000, postgresqlGiB: 100, nfsExportGiB: 2000}
            tlsSecretName: ml-tls
        """

    @Test func loadsThePlatformSection() throws {
        let site = try InstallSiteTests.load(Self.site(platform: Self.good))
        let p = try #require(site.platform)
        #expect(p.queues.map(\.name) == ["org", "team-a", "team-b"])
        let a = p.queues[1]
        #expect(
            a.parent == "org" && a.gpuQuota == 10 && a.gpuLimit == 16 && a.overQuotaWeight == 2 && a.priority == 120)
        #expect(p.queues[0].gpuLimit == -1 && p.queues[0].priority == 100)
        #expect(p.queues[2].namespaces == ["team-b", "team-b-dev"])
        #expect(
            p.storage.storageClass == "local-path" && p.storage.capacityGiB == 4000 && p.storage.postgresqlGiB == 100)
        #expect(p.storage.prometheusGiB == nil && p.storage.datasetStorageClass == "dataset-cache")
        #expect(p.tlsSecretName == "ml-tls")
    }

    @Test func roundTripsThroughYAML() throws {
        let site = try InstallSiteTests.load(Self.site(platform: Self.good))
        let dir = NSTemporaryDirectory() + "site-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["ca.crt", "tls.crt", "tls.key"] {
            try "x".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
        var copy = site
        copy.tls = .init(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key", caFile: dir + "/ca.crt")
        try copy.yaml().write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        let again = try SiteInventory.load(path: dir + "/site.yaml")
        #expect(again.platform == site.platform)
    }

    @Test func sitesWithoutPlatformStillLoad() throws {
        let text = Self.site(platform: "").replacingOccurrences(of: "  platform:\n", with: "")
        let site = try InstallSiteTests.load(text)
        #expect(site.platform == nil)
    }

    @Test func reportsBadQueuesWithPositions() throws {
        let text = Self.site(
            platform: """
                    queues:
                      - {name: org, gpuQuota: 4, namespaces: [org-ns]}
                      - {name: team-a, parent: org, gpuQuota: 2}
                      - {name: team-a, parent: nowhere, gpuQuota: 1}
                      - {name: Bad_Name, gpuQuota: -3, gpuLimit: -2}
                      - {name: loop-a, parent: loop-b, gpuQuota: 0}
                      - {name: loop-b, parent: loop-a, gpuQuota: 0, namespaces: [org-ns]}
                    storage: {capacityGiB: 0, storageClass: "Not A Class"}
                    color: blue
                """)
        let error = #expect(throws: DiagnosticsError.self) { try InstallSiteTests.load(text) }
        let d = error?.diagnostics ?? []
        let m = d.map(\.message)
        #expect(m.contains { $0.contains("queue 'team-a' is defined twice") })
        #expect(m.contains { $0.contains("names parent 'nowhere', which is not in spec.platform.queues") })
        #expect(m.contains { $0.contains("queue name 'Bad_Name' must be a DNS label") })
        #expect(m.contains { $0.contains("queue 'org' has child queues, so namespaces cannot map to it") })
        #expect(m.contains { $0.contains("is in a parent loop") })
        #expect(m.contains { $0.contains("namespace 'org-ns' is mapped to queue 'org' already") })
        #expect(m.contains { $0.contains("storageClass' must be a Kubernetes name") })
        #expect(m.contains { $0.contains("color") })
        #expect(d.allSatisfy { $0.location != nil }, "\(d)")
    }

    @Test func platformNeedsNFSDomainAndTLS() throws {
        let text = """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: dc1}
            spec:
              hosts:
                - {name: cp-1, address: 10.0.0.11, roles: [control-plane]}
              platform: {}
            """
        let error = #expect(throws: DiagnosticsError.self) { try InstallSiteTests.load(text) }
        let m = (error?.diagnostics ?? []).map(\.message)
        #expect(m.contains { $0.contains("needs 'spec.storage.nfs'") })
        #expect(m.contains { $0.contains("needs 'spec.network.domain'") })
        #expect(m.contains { $0.contains("needs 'spec.tls'") })
    }
}

extension SitePlatformTests {
    /// The example in schemas/examples loads once its TLS files exist.
    @Test func theExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let text = try String(
            contentsOf: root.appendingPathComponent("schemas/examples/site-platform.yaml"), encoding: .utf8)
        let dir = NSTemporaryDirectory() + "site-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/tls", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["wildcard.crt", "wildcard.key", "site-ca.crt"] {
            try "x".write(toFile: dir + "/tls/" + f, atomically: true, encoding: .utf8)
        }
        try text.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        let site = try SiteInventory.load(path: dir + "/site.yaml")
        #expect(site.platform?.queues.count == 3)
        #expect(site.platform?.storage.nfsExportGiB == 20000)
    }
}
