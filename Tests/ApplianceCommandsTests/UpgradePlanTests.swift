import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import ApplianceSSH
import Foundation
import Logging
import Testing

@testable import ApplianceOperations

/// The whole upgrade plan of a site with a platform (issue 14), built from a small signed bundle that carries
/// the lab charts: control planes drained one at a time, workers after them, the platform releases after the
/// last node and before the record. Builds the plan only: no node is contacted.
@Suite struct UpgradePlanTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A signed bundle of the lab's platform charts (pinned versions), Kubernetes 1.35.
    static func bundle(in dir: String) throws -> VerifiedBundle {
        let charts = [
            "kube-prometheus-stack", "gpu-operator", "kai-scheduler", "cloudnative-pg", "cluster",
            "csi-driver-nfs", "seaweedfs", "kubernetes-ingress",
        ]
        let artifacts = charts.map {
            "        - {name: \($0)-chart, kind: chart, roles: [control-plane], source: {chart: \(repository.path)/bundles/lab/charts/\($0)}}"
        }
        let spec = """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: appliance-lab}
            spec:
              version: 2026.12.0-lab
              upgradeFrom: [2026.11.0-lab]
              kubernetes: {version: v1.35.0}
              components:
                - name: platform
                  version: "1"
                  artifacts:
            \(artifacts.joined(separator: "\n"))

            """
        try spec.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let key = try Ed25519Key.generate()
        _ = try BundleBuilder(
            spec: try BundleSpec.load(path: dir + "/spec.yaml"), signingKey: key, debCacheDirectory: dir
        ).build(output: dir + "/b.tar")
        return try BundleArchive.open(dir + "/b.tar").verify(trusted: [key], allowUnsigned: false)
    }

    /// Two control planes, a system node, two GPU workers, with the platform of `UpgradePlatformTests`.
    static func site() -> SiteInventory {
        var s = UpgradePlatformTests.site()
        s.hosts.insert(SiteInventory.Host(name: "cp-2", address: "10.0.0.12", roles: [.controlPlane]), at: 1)
        return s
    }

    func plan(deployed: [String: InstallPlan.ReleaseStatus]?, in dir: String, only: [String] = []) async throws
        -> Plan
    {
        let site = Self.site()
        let profile = try ProfileCatalog(directory: Self.repository.appendingPathComponent("profiles").path)
            .load("balanced-4xa100")
        let verified = try Self.bundle(in: dir)
        let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        let pool = SSHPool(policy: HostKeyPolicy(), logger: logger)
        let session = OperationSession(
            site: site, pool: pool, stateDirectory: URL(fileURLWithPath: dir), logger: logger)
        let nodes = try session.stagingNodes(only: UpgradeOperation.stagingSelection(only, site: site))
        let context = InstallContext.make(
            session: session, profile: profile, bundle: verified, store: "/var/lib/appliance/store", waivers: [])
        var inputs = UpgradePlan.Inputs(
            context: context, options: UpgradeOptions(fromVersion: "2026.11.0-lab"),
            hosts: only.isEmpty ? site.hosts : site.hosts.filter { only.contains($0.name) },
            stager: Stager(bundle: verified, nodes: nodes, pool: pool, logger: logger), stagingNodes: nodes,
            io: OperationIO(logger: logger, output: { _ in }))
        inputs.deployedReleases = deployed
        return try UpgradePlan.make(inputs)
    }

    /// The release statuses as the install of the same charts and values left them, `object-store` at an
    /// older chart.
    func deployed(_ manifest: BundleManifest) throws -> [String: InstallPlan.ReleaseStatus] {
        let profile = try ProfileCatalog(directory: Self.repository.appendingPathComponent("profiles").path)
            .load("balanced-4xa100")
        let releases = PlatformValues.releases(try PlatformConfiguration.resolve(site: Self.site(), profile: profile))
        var out: [String: InstallPlan.ReleaseStatus] = [:]
        for r in releases {
            let chart = try #require(InstallPlan.chartArtifact(manifest, r.chart))
            out[r.name] = .init(
                status: "deployed", chartVersion: r.chart.version,
                description: InstallPlan.valuesDigestPrefix + InstallPlan.valuesDigest(r, chart: chart))
        }
        out["object-store"]?.chartVersion = "4.43.0"
        return out
    }

    /// Whether `step` waits (directly or not) for `on`.
    func waits(_ plan: Plan, _ step: String, for on: String) -> Bool {
        var seen: Set<String> = []
        var stack = plan[step]?.dependencies ?? []
        while let d = stack.popLast() {
            if d == on { return true }
            if seen.insert(d).inserted { stack += plan[d]?.dependencies ?? [] }
        }
        return false
    }

    @Test func controlPlanesAreDrainedOneAtATimeAndUncordonedAfterTheirHealthGate() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-plan-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try await plan(deployed: nil, in: dir)

        for n in ["cp-1", "cp-2"] {
            let chain = [
                UpgradePlan.etcdHealth(n), LifecycleSteps.marks(n), LifecycleSteps.drain(n),
                UpgradePlan.kubeadmUpgrade(n), UpgradePlan.packages(n), UpgradePlan.kubeletRestart(n),
                UpgradePlan.health(n), LifecycleSteps.uncordon(n),
            ]
            for (before, after) in zip(chain, chain.dropFirst()) {
                #expect(plan[after]?.dependencies == [before], "\(after) right after \(before)")
            }
            #expect(plan[LifecycleSteps.drain(n)]?.target == .node(n))
        }
        // One control plane at a time: the second's etcd check after the first is back in service.
        #expect(plan[UpgradePlan.etcdHealth("cp-2")]?.dependencies.contains(LifecycleSteps.uncordon("cp-1")) == true)
        // The workers after the last control plane; the simulation covers every node it drains.
        #expect(waits(plan, LifecycleSteps.marks("gpu-1"), for: LifecycleSteps.uncordon("cp-2")))
        #expect(plan[UpgradePlan.simulationStep]?.summary.hasPrefix("drain simulation of 5 node(s)") == true)
        #expect(waits(plan, LifecycleSteps.drain("cp-1"), for: UpgradePlan.simulationStep))
    }

    /// `--node cp-1 --node cp-2`: the registry's node (sys-1) is staged too, so it can seed the images the
    /// control planes pull; nothing else of sys-1 is in the plan, and no record or prune for a partial run.
    @Test func anUpgradeOfTheControlPlanesOnlyStagesAndSeedsTheRegistryNode() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-plan-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(Self.site().registryHosts.map(\.name) == ["sys-1"])
        #expect(UpgradeOperation.stagingSelection(["cp-1", "cp-2"], site: Self.site()) == ["cp-1", "cp-2", "sys-1"])
        #expect(UpgradeOperation.stagingSelection(["sys-1"], site: Self.site()) == ["sys-1"])
        #expect(UpgradeOperation.stagingSelection([], site: Self.site()) == [])

        let plan = try await plan(deployed: nil, in: dir, only: ["cp-1", "cp-2"])
        let names = Set(plan.steps.map(\.name))
        #expect(names.contains(StagingPlan.stepName(node: "sys-1")))
        #expect(waits(plan, UpgradePlan.etcdHealth("cp-1"), for: "seed/sys-1"))
        #expect(!names.contains(LifecycleSteps.drain("sys-1")) && !names.contains(LifecycleSteps.drain("gpu-1")))
        #expect(!names.contains(InstallPlan.recordStep))
        #expect(plan[UpgradePlan.simulationStep]?.summary.hasPrefix("drain simulation of 2 node(s)") == true)
    }

    @Test func thePlatformReleasesComeAfterTheLastNodeAndBeforeTheRecord() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-plan-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let unknown = try await plan(deployed: nil, in: dir)
        let manifest = try BundleArchive.open(dir + "/b.tar").manifest()
        let plan = try await plan(deployed: try deployed(manifest), in: dir)

        let releases = plan.steps.map(\.name).filter { $0.hasPrefix("platform/") }
        #expect(releases.count == 8, "\(releases)")
        let check = try #require(plan[InstallPlan.platformCheckStep])
        // After the last batch of workers (--max-unavailable 1: sys-1, gpu-1, then gpu-2).
        #expect(check.dependencies == [LifecycleSteps.uncordon("gpu-2")])
        for r in releases { #expect(plan[r]?.dependencies.first == InstallPlan.platformCheckStep, "\(r)") }
        #expect(plan["platform/gpu-operator"]?.dependencies.contains("platform/kube-prometheus-stack") == true)
        #expect(plan["platform/platform-db"]?.dependencies.contains("platform/cloudnative-pg") == true)
        let record = try #require(plan[InstallPlan.recordStep])
        #expect(
            Set(releases + [InstallPlan.platformCheckStep, InstallPlan.platformQueuesStep]).isSubset(
                of: record.dependencies))
        #expect(waits(plan, "prune/gpu-1", for: "platform/object-store"))

        // What the plan says: the release at an older chart is upgraded, the others are left alone.
        let store = try #require(plan["platform/object-store"])
        #expect(
            store.summary.hasPrefix("chart seaweedfs 4.43.0 → 4.44.0: helm upgrade --install object-store"),
            "\(store.summary)")
        for r in releases where r != "platform/object-store" {
            #expect(
                plan[r]?.summary.contains("same values): left alone, no helm upgrade") == true,
                "\(plan[r]?.summary ?? r)")
        }
        // Without the deployed state (a dry run that cannot connect) no release is called unchanged.
        for r in releases {
            #expect(unknown[r]?.summary.contains("when its chart or values changed") == true, "\(r)")
        }
    }
}
