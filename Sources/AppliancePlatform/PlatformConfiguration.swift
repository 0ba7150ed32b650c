import ApplianceModel
import Foundation

/// Everything the platform's renderers read, resolved once from profile + site: where images come from,
/// where the platform runs, the domain and TLS secret, the NFS export, storage sizes, queues and the
/// resource requests of every workload.
public struct PlatformConfiguration: Sendable, Equatable {
    /// `host:port` of the private registry that holds every image under its full upstream name.
    public var registry: String
    public var domain: String
    public var tlsSecretName: String
    public var nfsServer: String
    public var nfsPath: String
    public var nfsMountOptions: [String]
    public var placement: Placement
    public var storage: Storage
    public var queues: [SiteInventory.Queue]
    /// Requests (and limits) per workload name; see `WorkloadSizing`.
    public var sizing: [String: Resources]
    public var gpuStackMode: HardwareProfile.GPUStackMode
    /// The default driver's branch (`535`), for precompiled driver images.
    public var driverBranch: Int?
    public var migStrategy: String
    /// PostgreSQL instances (CloudNativePG).
    public var postgresqlInstances: Int
    /// Object store volume servers.
    public var objectStoreReplicas: Int

    /// The system role's node selector and toleration.
    public struct Placement: Sendable, Equatable {
        public var labelKey: String
        public var labelValue: String
        /// Whether system nodes carry the `NoSchedule` taint (`spec.roles.dedicatedSystemNodes`); the platform
        /// tolerates it either way.
        public var tainted: Bool
        /// Whether a system node is also a control plane: the platform then tolerates kubeadm's
        /// `node-role.kubernetes.io/control-plane:NoSchedule` taint too, or it could not run there.
        public var onControlPlanes: Bool = false
    }

    /// Volume sizes in GiB and their classes (nil class: the cluster's default StorageClass).
    public struct Storage: Sendable, Equatable {
        public var storageClass: String?
        public var postgresqlGiB: Int
        public var prometheusGiB: Int
        public var objectStoreGiB: Int
        public var datasetCacheGiB: Int
        public var datasetStorageClass: String
        /// Declared capacity behind `storageClass` (nil: derived from the system nodes' disks).
        public var capacityGiB: Int?
        public var nfsExportGiB: Int?
    }

    public struct Resources: Sendable, Equatable {
        public var cpuRequest: String
        public var memoryRequest: String
        public var cpuLimit: String?
        public var memoryLimit: String?
        public init(cpuRequest: String, memoryRequest: String, cpuLimit: String? = nil, memoryLimit: String? = nil) {
            self.cpuRequest = cpuRequest
            self.memoryRequest = memoryRequest
            self.cpuLimit = cpuLimit
            self.memoryLimit = memoryLimit
        }
        public var milliCPU: Int { Quantity.milliCPU(cpuRequest) ?? 0 }
        public var memoryBytes: Int { Quantity.bytes(memoryRequest) ?? 0 }
    }

    /// Design defaults (DESIGN.md section 8, from the cnvrg.io sizing): used when neither the site nor the
    /// profile gives a size.
    public enum DefaultSize {
        public static let postgresqlGiB = 80
        public static let prometheusGiB = 50
        public static let objectStoreGiB = 1024
        public static let datasetCacheGiB = 500
    }

    /// Resolves the configuration; the problems that make rendering impossible are thrown together.
    public static func resolve(site: SiteInventory, profile: HardwareProfile) throws(PlatformError)
        -> PlatformConfiguration
    {
        var missing: [String] = []
        let platform = site.platform ?? SiteInventory.PlatformSettings()
        if site.platform == nil { missing.append("the site has no 'spec.platform' section") }
        let domain = site.network?.domain
        if domain == nil { missing.append("'spec.network.domain' is not set (the ingress serves it and *.domain)") }
        let nfs = site.storage
        if nfs == nil { missing.append("'spec.storage.nfs' is not set (the dataset cache's NFS export)") }
        let registry = registryEndpoint(site: site)
        if registry == nil {
            missing.append("the site has no registry node: no system node, no control plane and no existing registry")
        }
        guard missing.isEmpty, let domain, let nfs, let registry else {
            throw PlatformError.incompleteSite(site: site.name, problems: missing)
        }
        let style = profile.kubernetes.roleLabels
        let placement = Placement(
            labelKey: RoleLabelStyle.labelKey(.system, style: style),
            labelValue: RoleLabelStyle.labelValue(.system, style: style),
            tainted: site.roles.dedicatedSystemNodes,
            onControlPlanes: site.hosts.contains { $0.roles.contains(.system) && $0.roles.contains(.controlPlane) })
        let component = { (name: String) in profile.controlPlane.components.first { $0.name == name } }
        let s = platform.storage
        let storage = Storage(
            storageClass: s.storageClass,
            postgresqlGiB: s.postgresqlGiB ?? positive(component("postgresql")?.volumeGiB) ?? DefaultSize.postgresqlGiB,
            prometheusGiB: s.prometheusGiB ?? positive(component("metrics")?.volumeGiB) ?? DefaultSize.prometheusGiB,
            objectStoreGiB: s.objectStoreGiB ?? positive(component("object-storage")?.volumeGiB)
                ?? DefaultSize.objectStoreGiB,
            datasetCacheGiB: s.datasetCacheGiB ?? positive(component("dataset-cache")?.volumeGiB)
                ?? DefaultSize.datasetCacheGiB,
            datasetStorageClass: s.datasetStorageClass, capacityGiB: s.capacityGiB, nfsExportGiB: s.nfsExportGiB)
        let queues =
            platform.queues.isEmpty
            ? profile.queues.map {
                SiteInventory.Queue(
                    name: $0.name, gpuQuota: $0.gpuQuota,
                    gpuLimit: $0.overQuota ? SiteInventory.Queue.noLimit : $0.gpuQuota,
                    overQuotaWeight: 1, priority: $0.priority)
            } : platform.queues
        let options = (nfs.mountOptions ?? "nfsvers=4.1").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
        return PlatformConfiguration(
            registry: registry, domain: domain, tlsSecretName: platform.tlsSecretName, nfsServer: nfs.nfsServer,
            nfsPath: nfs.nfsPath, nfsMountOptions: options, placement: placement, storage: storage, queues: queues,
            sizing: WorkloadSizing.resolve(profile: profile), gpuStackMode: profile.gpuStack.mode,
            driverBranch: profile.gpuStack.driverBranch, migStrategy: profile.gpuStack.migStrategy,
            postgresqlInstances: component("postgresql")?.replicas ?? 1,
            objectStoreReplicas: component("object-storage")?.replicas ?? 1)
    }

    /// The registry images are pulled from: an existing registry's endpoint, else the first node of the
    /// installer's registry at its port (every node trusts its CA).
    public static func registryEndpoint(site: SiteInventory) -> String? {
        if let r = site.registry, r.mode == SiteInventory.RegistrySettings.existing { return r.endpoint }
        guard let host = site.registryHosts.first else { return nil }
        return "\(host.address):\(site.registry?.port ?? SiteInventory.RegistrySettings.defaultPort)"
    }

    private static func positive(_ v: Int?) -> Int? { v.flatMap { $0 > 0 ? $0 : nil } }

    /// The resources of one workload (the defaults table always has every name the renderers use).
    public func resources(_ name: String) -> Resources {
        sizing[name] ?? Resources(cpuRequest: "100m", memoryRequest: "128Mi")
    }
}
