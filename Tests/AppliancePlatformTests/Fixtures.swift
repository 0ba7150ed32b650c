import ApplianceModel
import Foundation

/// Sites and profiles for the platform tests.
enum Fixtures {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let profiles = ProfileCatalog(directory: repository.appendingPathComponent("profiles").path)
    /// The real upstream charts (`../shared/reference/charts/`), next to the repository or under /work/shared.
    static var chartsDirectory: URL? {
        let candidates = [
            repository.deletingLastPathComponent().appendingPathComponent("shared/reference/charts"),
            URL(fileURLWithPath: "/work/shared/reference/charts"),
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0.path) }
    }

    static func profile(_ name: String) throws -> HardwareProfile { try profiles.load(name) }

    /// A lab-like site: one control plane, one system node, two GPU workers, the installer's registry on the
    /// system node, an NFS export, a domain and TLS, and two teams under one organisation queue.
    static func site(
        queues: [SiteInventory.Queue]? = nil, storage: SiteInventory.PlatformStorage? = nil,
        systemNodes: Int = 1, gpuWorkers: Int = 2, dedicated: Bool = true
    ) -> SiteInventory {
        var hosts = [SiteInventory.Host(name: "cp-1", address: "10.0.0.11", roles: [.controlPlane])]
        for i in 0..<systemNodes {
            hosts.append(SiteInventory.Host(name: "sys-\(i + 1)", address: "10.0.0.2\(i + 1)", roles: [.system]))
        }
        for i in 0..<gpuWorkers {
            hosts.append(SiteInventory.Host(name: "gpu-\(i + 1)", address: "10.0.0.3\(i + 1)", roles: [.gpuWorker]))
        }
        let q =
            queues ?? [
                SiteInventory.Queue(name: "org", gpuQuota: 4, gpuLimit: -1, overQuotaWeight: 1, priority: 100),
                SiteInventory.Queue(
                    name: "team-a", parent: "org", gpuQuota: 3, gpuLimit: 4, overQuotaWeight: 2, priority: 100,
                    namespaces: ["team-a"]),
                SiteInventory.Queue(
                    name: "team-b", parent: "org", gpuQuota: 1, gpuLimit: 4, overQuotaWeight: 1, priority: 50,
                    namespaces: ["team-b", "team-b-dev"]),
            ]
        let s =
            storage
            ?? SiteInventory.PlatformStorage(
                storageClass: "local-path", capacityGiB: 100_000, postgresqlGiB: 80, prometheusGiB: 50,
                objectStoreGiB: 1024, datasetCacheGiB: 500, nfsExportGiB: 2000)
        return SiteInventory(
            name: "lab", profile: nil, ssh: .init(), hosts: hosts,
            network: .init(domain: "ml.example.internal", apiEndpoint: "10.0.0.11:6443"),
            tls: .init(
                certificateFile: "/nonexistent/tls.crt", keyFile: "/nonexistent/tls.key", caFile: "/nonexistent/ca.crt"),
            storage: .init(nfsServer: "10.0.0.5", nfsPath: "/export/datasets", mountOptions: "nfsvers=4.1,hard"),
            registry: .init(mode: SiteInventory.RegistrySettings.inCluster),
            roles: .init(dedicatedSystemNodes: dedicated),
            platform: .init(queues: q, storage: s))
    }
}
