import ApplianceBundle
import ApplianceModel
import AppliancePlatform
import Foundation
import Testing

@testable import ApplianceOperations

/// The platform releases of an upgrade (issue 14): which are upgraded, in what order, which are left alone.
@Suite struct UpgradePlatformTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A site with a platform: one control plane, one system node, two GPU workers, two queues.
    static func site(prometheusGiB: Int = 50) -> SiteInventory {
        let hosts = [
            SiteInventory.Host(name: "cp-1", address: "10.0.0.11", roles: [.controlPlane]),
            SiteInventory.Host(name: "sys-1", address: "10.0.0.21", roles: [.system]),
            SiteInventory.Host(name: "gpu-1", address: "10.0.0.31", roles: [.gpuWorker]),
            SiteInventory.Host(name: "gpu-2", address: "10.0.0.32", roles: [.gpuWorker]),
        ]
        let queues = [
            SiteInventory.Queue(name: "org", gpuQuota: 4, gpuLimit: -1, overQuotaWeight: 1, priority: 100),
            SiteInventory.Queue(
                name: "team-a", parent: "org", gpuQuota: 4, gpuLimit: 4, overQuotaWeight: 2, priority: 100,
                namespaces: ["team-a"]),
        ]
        let storage = SiteInventory.PlatformStorage(
            storageClass: "local-path", capacityGiB: 100_000, postgresqlGiB: 80, prometheusGiB: prometheusGiB,
            objectStoreGiB: 1024, datasetCacheGiB: 500, nfsExportGiB: 2000)
        return SiteInventory(
            name: "lab", profile: nil, ssh: .init(), hosts: hosts,
            network: .init(domain: "ml.example.internal", apiEndpoint: "10.0.0.11:6443"),
            tls: .init(
                certificateFile: "/nonexistent/tls.crt", keyFile: "/nonexistent/tls.key", caFile: "/nonexistent/ca.crt"),
            storage: .init(nfsServer: "10.0.0.5", nfsPath: "/export/datasets", mountOptions: "nfsvers=4.1,hard"),
            registry: .init(mode: SiteInventory.RegistrySettings.inCluster),
            roles: .init(dedicatedSystemNodes: true),
            platform: .init(queues: queues, storage: storage))
    }

    static func releases(_ site: SiteInventory = site()) throws -> [PlatformRelease] {
        let profile = try ProfileCatalog(directory: repository.appendingPathComponent("profiles").path).load("lab")
        return PlatformValues.releases(try PlatformConfiguration.resolve(site: site, profile: profile))
    }

    static func chart(_ name: String, _ version: String) -> BundleManifest.Artifact {
        BundleManifest.Artifact(
            name: "\(name)-chart", kind: .chart, sha256: SHA256Hasher.hash(Data("\(name) \(version)".utf8)),
            size: 1000, roles: ["control-plane"],
            provenance: [("type", "chart"), ("chart", name), ("version", version)])
    }

    /// A bundle with a chart of every release at the pinned version, but `bumped` (name: version).
    static func manifest(_ version: String, releases: [PlatformRelease], bumped: [String: String] = [:])
        -> BundleManifest
    {
        let charts = releases.map { chart($0.chart.name, bumped[$0.chart.name] ?? $0.chart.version) }
        return BundleManifest(
            name: "appliance-lab", version: version, created: "2026-11-30T00:00:00Z", upgradeFrom: [],
            kubernetesVersion: "v1.35.0", components: [.init(name: "platform", version: "1", artifacts: charts)])
    }

    /// `helm status` of every release as install left it with `manifest`.
    static func deployed(_ manifest: BundleManifest, releases: [PlatformRelease]) throws
        -> [String: InstallPlan.ReleaseStatus]
    {
        var out: [String: InstallPlan.ReleaseStatus] = [:]
        for r in releases {
            let chart = try #require(InstallPlan.chartArtifact(manifest, r.chart))
            out[r.name] = .init(
                status: "deployed", chartVersion: r.chart.version,
                description: InstallPlan.valuesDigestPrefix + InstallPlan.valuesDigest(r, chart: chart))
        }
        return out
    }

    @Test func aBumpedChartIsUpgradedAndTheOthersAreLeftAloneInInstallOrder() throws {
        let releases = try Self.releases()
        let old = Self.manifest("2026.11.0-lab", releases: releases)
        let new = Self.manifest("2026.12.0-lab", releases: releases, bumped: ["cloudnative-pg": "0.29.1"])
        let upgrades = try UpgradePlan.platformUpgrades(
            manifest: new, releases: releases, deployed: try Self.deployed(old, releases: releases))

        #expect(upgrades.map(\.release.name) == releases.map(\.name), "install's order")
        let changed = upgrades.filter { !$0.unchanged }
        #expect(changed.map(\.release.name) == ["cloudnative-pg"])
        let cnpg = try #require(changed.first)
        #expect(cnpg.release.chart.version == "0.29.1", "the new bundle's chart version")
        #expect(cnpg.chart.sha256 == Self.chart("cloudnative-pg", "0.29.1").sha256)
        #expect(cnpg.change == "chart cloudnative-pg 0.29.0 → 0.29.1")
        // Values unchanged, chart unchanged: the database cluster is left alone, though its operator moves on.
        let db = try #require(upgrades.first { $0.release.name == "platform-db" })
        #expect(db.unchanged)
        #expect(db.change.hasPrefix("unchanged (chart cluster 0.8.1, same values): left alone"))
        #expect(db.dependencies == ["platform/cloudnative-pg"])
        let gpu = try #require(upgrades.first { $0.release.name == "gpu-operator" })
        #expect(gpu.dependencies == [InstallPlan.platformRelease(PlatformValues.monitoringRelease)])
        // Each dependency comes earlier in the order.
        for (i, u) in upgrades.enumerated() {
            for d in u.dependencies {
                let j = try #require(upgrades.firstIndex { InstallPlan.platformRelease($0.release.name) == d })
                #expect(j < i, "\(u.release.name) before its dependency \(d)")
            }
        }
    }

    @Test func reRenderedValuesThatChangedUpgradeTheReleaseAtTheSameChart() throws {
        let before = try Self.releases()
        let manifest = Self.manifest("2026.12.0-lab", releases: before)
        let deployed = try Self.deployed(manifest, releases: before)
        // The site now asks for more Prometheus storage: the monitoring release's values change.
        let after = try Self.releases(Self.site(prometheusGiB: 120))
        let upgrades = try UpgradePlan.platformUpgrades(manifest: manifest, releases: after, deployed: deployed)
        let changed = upgrades.filter { !$0.unchanged }.map(\.release.name)
        #expect(changed == [PlatformValues.monitoringRelease])
        let mon = try #require(upgrades.first { $0.release.name == PlatformValues.monitoringRelease })
        #expect(mon.change.contains("values re-rendered and changed"), "\(mon.change)")
    }

    @Test func withoutTheDeployedStateNothingIsCalledUnchangedAndAMissingReleaseIsInstalled() throws {
        let releases = try Self.releases()
        let manifest = Self.manifest("2026.12.0-lab", releases: releases)
        let unknown = try UpgradePlan.platformUpgrades(manifest: manifest, releases: releases, deployed: nil)
        #expect(unknown.allSatisfy { !$0.unchanged })
        #expect(unknown.allSatisfy { $0.change.contains("when its chart or values changed") })

        var deployed = try Self.deployed(manifest, releases: releases)
        deployed["csi-driver-nfs"] = nil
        let upgrades = try UpgradePlan.platformUpgrades(manifest: manifest, releases: releases, deployed: deployed)
        #expect(upgrades.filter { !$0.unchanged }.map(\.release.name) == ["csi-driver-nfs"])
        #expect(upgrades.first { $0.release.name == "csi-driver-nfs" }?.change.hasPrefix("not deployed") == true)
        // A release helm left failed is upgraded again, even at the same chart and values.
        deployed["csi-driver-nfs"] = try Self.deployed(manifest, releases: releases)["csi-driver-nfs"]
        deployed["object-store"]?.status = "failed"
        let again = try UpgradePlan.platformUpgrades(manifest: manifest, releases: releases, deployed: deployed)
        #expect(again.filter { !$0.unchanged }.map(\.release.name) == ["object-store"])
    }

    @Test func theBundlesChartIsChosenByNameAndAmbiguityIsRefused() throws {
        let pinned = ChartReference.cloudnativePG
        var m = Self.manifest("x", releases: [])
        m.components = [.init(name: "p", version: "1", artifacts: [Self.chart("cloudnative-pg", "0.29.1")])]
        #expect(try UpgradePlan.upgradeChart(m, pinned).provenance("version") == "0.29.1")
        m.components[0].artifacts.append(Self.chart("cloudnative-pg", pinned.version))
        #expect(try UpgradePlan.upgradeChart(m, pinned).provenance("version") == pinned.version)
        m.components[0].artifacts = [Self.chart("cloudnative-pg", "0.30.0"), Self.chart("cloudnative-pg", "0.29.1")]
        let error = #expect(throws: OperationError.self) { try UpgradePlan.upgradeChart(m, pinned) }
        #expect(error?.message.contains("2 versions of chart cloudnative-pg (0.30.0, 0.29.1)") == true)
        m.components[0].artifacts = []
        let none = #expect(throws: OperationError.self) { try UpgradePlan.upgradeChart(m, pinned) }
        #expect(none?.message.contains("no chart cloudnative-pg") == true)
    }
}
