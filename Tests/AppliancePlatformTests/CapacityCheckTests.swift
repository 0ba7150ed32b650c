import ApplianceModel
import Foundation
import Testing

@testable import AppliancePlatform

/// Each capacity and quota rule, refused by a site that breaks it, from a baseline that passes.
@Suite struct CapacityCheckTests {
    /// hpc-8xa100 with two system nodes (4 CPU / 8 GiB each) and two GPU workers (16 GPUs).
    static func findings(
        _ site: SiteInventory = Fixtures.site(systemNodes: 2), profile: HardwareProfile? = nil
    ) throws -> [CapacityFinding] {
        let p = try profile ?? Fixtures.profile("hpc-8xa100")
        let c = try PlatformConfiguration.resolve(site: site, profile: p)
        return CapacityCheck.check(site: site, profile: p, configuration: c, releases: PlatformValues.releases(c))
    }

    static func codes(_ f: [CapacityFinding]) -> [String] { f.map(\.code) }

    @Test func baselinePasses() throws {
        let f = try Self.findings()
        #expect(f.isEmpty, "\(f.map(\.description))")
    }

    @Test func noSystemNode() throws {
        let f = try Self.findings(Fixtures.site(systemNodes: 0))
        #expect(Self.codes(f) == ["CAP-NODES"])
    }

    @Test func cpuAndMemoryOfOneSystemNode() throws {
        let f = try Self.findings(Fixtures.site(systemNodes: 1))
        #expect(Self.codes(f).contains("CAP-CPU"))
        #expect(Self.codes(f).contains("CAP-MEMORY"))
        let cpu = try #require(f.first { $0.code == "CAP-CPU" })
        // Both numbers and a remedy on one line.
        #expect(cpu.description.contains("CPU on system nodes but 1 system node provides"))
        #expect(cpu.description.contains("; remedy: "))
        #expect(!cpu.description.contains("\n"))
    }

    @Test func theKubeletsAllocatableReplacesTheDeclaredSizeWhereTheNodeIsUp() throws {
        let site = Fixtures.site(systemNodes: 1)
        let p = try Fixtures.profile("hpc-8xa100")
        let c = try PlatformConfiguration.resolve(site: site, profile: p)
        let system = try #require(site.hosts(withRole: .system).first).name
        func check(_ allocatable: [String: CapacityCheck.Allocatable]) -> [String] {
            Self.codes(
                CapacityCheck.check(
                    site: site, profile: p, configuration: c, releases: PlatformValues.releases(c),
                    allocatable: allocatable))
        }
        // Declared at the role's minimum (4 CPU / 8 GiB), one system node is too small.
        #expect(check([:]).contains("CAP-CPU"))
        // Its kubelet reports a 56-thread, 256 GiB server: the platform fits.
        let big = try #require(CapacityCheck.Allocatable(cpu: "56", memory: "268330188Ki"))
        #expect(big.milliCPU == 56_000)
        #expect(check([system: big]).isEmpty)
        // A node that reports less than the platform needs is refused on what it reports.
        let small = try #require(CapacityCheck.Allocatable(cpu: "3500m", memory: "16Gi"))
        let f = CapacityCheck.check(
            site: site, profile: p, configuration: c, releases: PlatformValues.releases(c), allocatable: [system: small]
        )
        let cpu = try #require(f.first { $0.code == "CAP-CPU" }, "\(f)")
        // 3.5 CPU less 305m of daemon sets.
        #expect(cpu.message.contains("1 system node provides 3.19 allocatable"), "\(cpu.message)")
        // Quantities that do not parse are not used.
        #expect(CapacityCheck.Allocatable(cpu: "lots", memory: "1Gi") == nil)
        #expect(CapacityCheck.Allocatable(cpu: "4", memory: nil) == nil)
    }

    @Test func aPodLargerThanAnyNode() throws {
        var p = try Fixtures.profile("hpc-8xa100")
        let i = try #require(p.controlPlane.components.firstIndex { $0.name == "metrics" })
        p.controlPlane.components[i].cpuRequest = "6"
        let f = try Self.findings(Fixtures.site(systemNodes: 4), profile: p)
        let pod = try #require(f.first { $0.code == "CAP-POD" }, "\(f)")
        #expect(pod.message.contains("kube-prometheus-stack/prometheus requests 6.01 CPU"))
        #expect(pod.remedy == "use larger system nodes, or lower 'metrics' in the profile's controlPlane.components")
        #expect(Self.codes(f).filter { $0 == "CAP-POD" }.count == 1)
        #expect(!Self.codes(f).contains("CAP-CPU"))
    }

    @Test func podsThatFitInTotalButNotNodeByNode() throws {
        // Three pods of 2.1 CPU and small others: 6.9 CPU in all on two nodes with 3.495 CPU left each
        // (4 CPU less 200m reserved and 305m of daemon sets), but no node holds two of the large ones.
        var p = try Fixtures.profile("hpc-8xa100")
        p.controlPlane.components = [
            .init(name: "metrics", cpuRequest: "2090m", cpuLimit: "3", memoryRequest: "256Mi", memoryLimit: "1Gi"),
            .init(name: "postgresql", cpuRequest: "2100m", cpuLimit: "3", memoryRequest: "256Mi", memoryLimit: "1Gi"),
            .init(
                name: "object-storage", cpuRequest: "2100m", cpuLimit: "3", memoryRequest: "256Mi", memoryLimit: "1Gi"),
        ]
        for name in [
            "grafana", "alertmanager", "prometheus-operator", "kube-state-metrics", "gpu-operator", "nfd-master",
            "cnpg-operator", "object-store-master", "object-store-filer",
        ] {
            p.controlPlane.components.append(
                .init(name: name, cpuRequest: "10m", cpuLimit: "1", memoryRequest: "32Mi", memoryLimit: "64Mi"))
        }
        let f = try Self.findings(Fixtures.site(systemNodes: 2), profile: p)
        #expect(Self.codes(f) == ["CAP-PACK"], "\(f.map(\.description))")
    }

    @Test func volumesBeyondTheClassCapacity() throws {
        var storage = Fixtures.site().platform?.storage ?? .init()
        storage.capacityGiB = 500
        let f = try Self.findings(Fixtures.site(storage: storage, systemNodes: 2))
        let s = try #require(f.first { $0.code == "CAP-STORAGE" })
        #expect(s.message.contains("but 'spec.platform.storage.capacityGiB' declares 500 GiB"))
        #expect(s.message.contains("platform-db/postgresql-1 80 GiB"))
    }

    @Test func volumesBeyondTheSystemNodesDisksWhenNothingIsDeclared() throws {
        var storage = Fixtures.site().platform?.storage ?? .init()
        storage.capacityGiB = nil
        let f = try Self.findings(Fixtures.site(storage: storage, systemNodes: 2))
        let s = try #require(f.first { $0.code == "CAP-STORAGE" })
        #expect(s.message.contains("2 system nodes have 140 GiB of disk"))
    }

    @Test func datasetCacheBeyondTheNFSExport() throws {
        var storage = Fixtures.site().platform?.storage ?? .init()
        storage.nfsExportGiB = 400
        let f = try Self.findings(Fixtures.site(storage: storage, systemNodes: 2))
        #expect(Self.codes(f) == ["CAP-NFS"])
        #expect(
            f.first?.message.contains(
                "asks 500 GiB but the NFS export 10.0.0.5:/export/datasets is declared with 400 GiB") ?? false)
    }

    @Test func topLevelQuotasBeyondTheClusterGPUs() throws {
        let queues = [
            SiteInventory.Queue(name: "a", gpuQuota: 10), SiteInventory.Queue(name: "b", gpuQuota: 8),
        ]
        let f = try Self.findings(Fixtures.site(queues: queues, systemNodes: 2))
        #expect(Self.codes(f) == ["QUOTA-SUM"])
        #expect(
            f.first?.message.contains("sum to 18 (a 10, b 8) but the cluster has 16 GPUs (2 gpu-worker nodes") ?? false)
    }

    @Test func childrenBeyondTheirParent() throws {
        let queues = [
            SiteInventory.Queue(name: "org", gpuQuota: 4),
            SiteInventory.Queue(name: "a", parent: "org", gpuQuota: 3),
            SiteInventory.Queue(name: "b", parent: "org", gpuQuota: 2),
        ]
        let f = try Self.findings(Fixtures.site(queues: queues, systemNodes: 2))
        #expect(Self.codes(f) == ["QUOTA-CHILD"])
        #expect(f.first?.message.contains("summing to 5 (a 3, b 2) but 'org' has gpuQuota 4") ?? false)
    }

    @Test func quotaAboveLimit() throws {
        let queues = [SiteInventory.Queue(name: "a", gpuQuota: 3, gpuLimit: 2)]
        let f = try Self.findings(Fixtures.site(queues: queues, systemNodes: 2))
        #expect(Self.codes(f) == ["QUOTA-LIMIT"])
        #expect(f.first?.message == "queue 'a' has gpuQuota 3 above its gpuLimit 2")
    }
}
