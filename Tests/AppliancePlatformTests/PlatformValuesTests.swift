import ApplianceModel
import Foundation
import Testing
import Yams

@testable import AppliancePlatform

@Suite struct PlatformValuesTests {
    /// The values of every release and the platform objects, per profile, against the golden files.
    @Test(arguments: ["balanced-4xa100", "cost-4xpcie", "hpc-8xa100", "hpc-8xh100", "lab"])
    func goldenValues(profileName: String) throws {
        let profile = try Fixtures.profile(profileName)
        let config = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: profile)
        let releases = PlatformValues.releases(config)
        #expect(
            releases.map(\.name) == [
                "kube-prometheus-stack", "gpu-operator", "kai-scheduler", "cloudnative-pg", "platform-db",
                "csi-driver-nfs", "object-store", "haproxy-ingress",
            ])
        #expect(releases.map(\.chart) == ChartReference.platform)
        for r in releases { Golden.check(r.valuesYAML, "\(profileName)/\(r.valuesFileName)") }
        Golden.check(PlatformObjects.document(PlatformObjects.all(config)), "\(profileName)/platform-objects.yaml")
    }

    @Test func renderingIsDeterministic() throws {
        let profile = try Fixtures.profile("hpc-8xa100")
        let a = try PlatformValues.releases(site: Fixtures.site(), profile: profile).map(\.valuesYAML)
        let b = try PlatformValues.releases(site: Fixtures.site(), profile: profile).map(\.valuesYAML)
        #expect(a == b)
    }

    /// Host-driver mode leaves the driver and toolkit to the host; operator mode uses precompiled drivers.
    @Test func gpuOperatorModes() throws {
        var profile = try Fixtures.profile("hpc-8xa100")
        profile.gpuStack.mode = .hostDriver
        var c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: profile)
        let host = PlatformValues.gpuOperator(c).valuesYAML
        #expect(host.contains("driver:\n  enabled: false"))
        #expect(host.contains("toolkit:\n  enabled: false"))
        c.gpuStackMode = .operatorPrecompiled
        let op = PlatformValues.gpuOperator(c).valuesYAML
        #expect(op.contains("driver:\n  enabled: true\n  usePrecompiled: true\n  version: \"535\""))
        #expect(op.contains("toolkit:\n  enabled: true"))
    }

    /// Every image the values name comes from the private registry: full references start with it, and
    /// split ones (`registry` + `repository`) carry it as their registry.
    @Test func everyImageFromThePrivateRegistry() throws {
        let profile = try Fixtures.profile("hpc-8xa100")
        var c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: profile)
        #expect(c.registry == "10.0.0.21:5000")
        for mode in HardwareProfile.GPUStackMode.allCases {
            c.gpuStackMode = mode
            for r in PlatformValues.releases(c) {
                for problem in imageProblems(r.values, registry: c.registry, path: r.name) {
                    Issue.record("\(problem)")
                }
            }
        }
    }

    func imageProblems(_ t: YAMLTree, registry: String, path: String) -> [String] {
        let upstreams = ["docker.io", "quay.io", "ghcr.io", "nvcr.io", "registry.k8s.io", "gcr.io"]
        var out: [String] = []
        switch t {
        case .map(let pairs):
            let dict = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
            for (k, v) in pairs {
                if ["repository", "imageName", "baseRepo", "registry", "imageRegistry"].contains(k),
                    case .string(let s) = v
                {
                    let splitWithRegistry: Bool
                    if case .string(let reg)? = dict["registry"], reg == registry {
                        splitWithRegistry = true
                    } else {
                        splitWithRegistry = false
                    }
                    if !s.hasPrefix(registry) && !(k == "repository" && splitWithRegistry) {
                        out.append("\(path).\(k) = \(s) is not from \(registry)")
                    }
                    if k == "repository", splitWithRegistry, !upstreams.contains(where: { s.hasPrefix($0 + "/") }) {
                        out.append("\(path).\(k) = \(s) does not keep its upstream name")
                    }
                }
                out += imageProblems(v, registry: registry, path: "\(path).\(k)")
            }
        case .list(let items):
            for (i, v) in items.enumerated() { out += imageProblems(v, registry: registry, path: "\(path)[\(i)]") }
        default: break
        }
        return out
    }

    @Test func systemPlacementAndToleration() throws {
        let profile = try Fixtures.profile("hpc-8xa100")
        let c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: profile)
        #expect(c.placement.labelKey == "node-role.kubernetes.io/system")
        let kai = PlatformValues.kaiScheduler(c).valuesYAML
        #expect(kai.contains("nodeSelector:\n    node-role.kubernetes.io/system: \"\""))
        #expect(kai.contains("- key: node-role.kubernetes.io/system\n    operator: Exists\n    effect: NoSchedule"))
        var runai = profile
        runai.kubernetes.roleLabels = .runai
        let r = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: runai)
        #expect(PlatformValues.kaiScheduler(r).valuesYAML.contains("node-role.kubernetes.io/runai-system: \"true\""))
    }

    @Test func storageSizesFromSiteThenProfileThenDesign() throws {
        let profile = try Fixtures.profile("hpc-8xa100")
        let site = Fixtures.site(storage: SiteInventory.PlatformStorage(postgresqlGiB: 120))
        let c = try PlatformConfiguration.resolve(site: site, profile: profile)
        #expect(c.storage.postgresqlGiB == 120)  // the site's
        #expect(c.storage.prometheusGiB == 500)  // the profile's 'metrics' volume
        var bare = profile
        bare.controlPlane.components = []
        let d = try PlatformConfiguration.resolve(site: site, profile: bare)
        #expect(d.storage.prometheusGiB == 50 && d.storage.objectStoreGiB == 1024 && d.storage.datasetCacheGiB == 500)
        #expect(PlatformValues.postgresCluster(c).valuesYAML.contains("size: 120Gi"))
    }

    @Test func incompleteSiteIsRefused() throws {
        var site = Fixtures.site()
        site.storage = nil
        site.network = nil
        let profile = try Fixtures.profile("lab")
        #expect(throws: PlatformError.self) { try PlatformConfiguration.resolve(site: site, profile: profile) }
        do {
            _ = try PlatformConfiguration.resolve(site: site, profile: profile)
        } catch {
            #expect(error.message.contains("spec.storage.nfs"))
            #expect(error.message.contains("spec.network.domain"))
        }
    }
}
