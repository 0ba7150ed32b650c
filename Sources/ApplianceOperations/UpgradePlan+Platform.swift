import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import Foundation

/// The platform releases of an upgrade (issue 14), after the last node and before the new version is recorded:
///
/// `platform-check` → one `platform/<release>` step per release, in install's dependency order → the queues.
/// Each release's values are rendered again from profile + site (so keys a new chart takes get their values,
/// never `--reuse-values`) and deployed with the NEW bundle's chart of that name, through install's own release
/// step (`helm upgrade --install`, its waits, its failure naming the pods not Ready and why). A release whose
/// deployed chart version and values digest (values + chart blob) already equal the new ones is left alone: its
/// step only waits for its pods, and the plan says so.
extension UpgradePlan {
    /// One platform release as the upgrade deploys it.
    struct PlatformUpgrade: Sendable, Equatable {
        /// The release with the chart version the new bundle carries.
        var release: PlatformRelease
        var chart: BundleManifest.Artifact
        /// The values digest the release's description will record.
        var digest: String
        /// What `helm status` said before the upgrade; nil when not read (a dry run that cannot connect).
        var deployed: InstallPlan.ReleaseStatus?
        /// The other release steps it waits for.
        var dependencies: [String]

        /// Deployed at the same chart version with the same values and chart blob: nothing to upgrade.
        var unchanged: Bool {
            guard let deployed else { return false }
            return deployed.status == "deployed" && deployed.chartVersion == release.chart.version
                && deployed.description == InstallPlan.valuesDigestPrefix + digest
        }

        /// What the plan (and `--dry-run`) says of it.
        var change: String {
            let chart = "\(release.chart.name) \(release.chart.version)"
            guard let deployed else { return "upgraded to chart \(chart) when its chart or values changed" }
            if unchanged { return "unchanged (chart \(chart), same values): left alone" }
            if deployed.chartVersion.isEmpty { return "not deployed: installed with chart \(chart)" }
            if deployed.chartVersion != release.chart.version {
                return "chart \(release.chart.name) \(deployed.chartVersion) → \(release.chart.version)"
            }
            return "chart \(chart), values re-rendered and changed"
        }
    }

    /// The chart artifact the new bundle carries for a release: the product's pinned version when the bundle
    /// has it, else the bundle's only chart of that name (a newer chart the bundle ships).
    static func upgradeChart(_ manifest: BundleManifest, _ chart: ChartReference) throws -> BundleManifest.Artifact {
        if let pinned = InstallPlan.chartArtifact(manifest, chart) { return pinned }
        let named = manifest.allArtifacts.map(\.artifact).filter {
            $0.kind == .chart && $0.provenance("chart") == chart.name
        }
        guard named.count == 1, let only = named.first else {
            throw OperationError.invalid(
                named.isEmpty
                    ? "the upgrade bundle has no chart \(chart.name)"
                    : "the upgrade bundle has \(named.count) versions of chart \(chart.name) ("
                        + named.compactMap { $0.provenance("version") }.joined(separator: ", ")
                        + ") and none is the pinned \(chart.version)",
                hint: "build the upgrade bundle with one chart artifact of each platform chart")
        }
        return only
    }

    /// The releases in install order with the new bundle's charts, their digests and dependencies, and what
    /// was deployed before (`deployed` keyed by release name; nil: not read).
    static func platformUpgrades(
        manifest: BundleManifest, releases: [PlatformRelease], deployed: [String: InstallPlan.ReleaseStatus]?
    ) throws -> [PlatformUpgrade] {
        try releases.map { r in
            let chart = try upgradeChart(manifest, r.chart)
            var release = r
            if let version = chart.provenance("version") { release.chart.version = version }
            let names = Set(releases.map(\.name))
            return PlatformUpgrade(
                release: release, chart: chart, digest: InstallPlan.valuesDigest(release, chart: chart),
                deployed: deployed.map {
                    $0[r.name] ?? InstallPlan.ReleaseStatus(status: "", chartVersion: "", description: "")
                },
                dependencies: InstallPlan.platformDependencies(r.name).filter {
                    names.contains(String($0.dropFirst("platform/".count)))
                })
        }
    }

    /// The platform's releases as deployed now (`helm status` of each on the first control plane).
    static func deployedReleases(_ api: ClusterAPI, _ releases: [PlatformRelease]) async throws
        -> [String: InstallPlan.ReleaseStatus]
    {
        var out: [String: InstallPlan.ReleaseStatus] = [:]
        for r in releases {
            out[r.name] =
                try await InstallPlan.releaseStatus(api, r)
                ?? InstallPlan.ReleaseStatus(status: "", chartVersion: "", description: "")
        }
        return out
    }

    /// The platform's steps after `previous` (the last node's steps): none without `spec.platform`.
    static func platformSteps(
        _ c: InstallContext, _ cp1: SiteInventory.Host, upgrades: [PlatformUpgrade], config: PlatformConfiguration,
        after previous: [String]
    ) -> [Step] {
        var check = InstallPlan.platformCheck(c, cp1)
        check.dependencies = previous
        var steps = [check]
        for u in upgrades {
            var step = InstallPlan.releaseStep(
                c, cp1, u.release, chart: u.chart, after: [InstallPlan.platformCheckStep] + u.dependencies,
                config: config, leaveAlone: u.unchanged)
            step.summary =
                u.unchanged ? "\(u.change), no helm upgrade; its pods Ready" : "\(u.change): " + step.summary
            steps.append(step)
        }
        let names = Set(upgrades.map(\.release.name))
        steps.append(
            InstallPlan.queuesStep(
                c, cp1, config: config,
                after: ["kai-scheduler", "csi-driver-nfs"].filter { names.contains($0) }.map(
                    InstallPlan.platformRelease)
                    + [InstallPlan.platformCheckStep]))
        return steps
    }
}
