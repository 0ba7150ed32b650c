import Foundation

/// A hardware + deployment profile (`profiles/NAME.yaml`): what each node role must have, which OS releases
/// and kernels are supported, how the GPU stack is installed, Kubernetes settings, the platform control plane's
/// sizing and the default scheduler queues. Preflight checks nodes against it; the lab builds nodes from it.
public struct HardwareProfile: Sendable, Equatable, Codable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "Profile"

    public var name: String
    public var summary: String
    public var os: OSSupport
    public var gpuStack: GPUStack
    public var kubernetes: KubernetesSettings
    /// Requirements per role; a role missing here cannot be used with this profile.
    public var roles: [NodeRole: RoleRequirements]
    public var controlPlane: ControlPlaneSizing
    public var queues: [SchedulerQueue]
    public var sourcePath: String?

    public init(
        name: String, summary: String, os: OSSupport, gpuStack: GPUStack, kubernetes: KubernetesSettings,
        roles: [NodeRole: RoleRequirements], controlPlane: ControlPlaneSizing, queues: [SchedulerQueue],
        sourcePath: String? = nil
    ) {
        self.name = name
        self.summary = summary
        self.os = os
        self.gpuStack = gpuStack
        self.kubernetes = kubernetes
        self.roles = roles
        self.controlPlane = controlPlane
        self.queues = queues
        self.sourcePath = sourcePath
    }

    public func requirements(for role: NodeRole) -> RoleRequirements? { roles[role] }

    /// The combined requirements of a node with several roles: the largest minimum of each, and the GPU
    /// expectations of the gpu-worker role if it has it.
    public func requirements(for roles: [NodeRole]) -> RoleRequirements? {
        let reqs = roles.compactMap { self.roles[$0] }
        guard var merged = reqs.first else { return nil }
        for r in reqs.dropFirst() {
            merged.cpus = max(merged.cpus, r.cpus)
            merged.memoryGiB = max(merged.memoryGiB, r.memoryGiB)
            merged.diskGiB = max(merged.diskGiB, r.diskGiB)
            merged.stagingHeadroomGiB = max(merged.stagingHeadroomGiB, r.stagingHeadroomGiB)
            if merged.gpu == nil { merged.gpu = r.gpu }
            if merged.nics.isEmpty { merged.nics = r.nics }
            if merged.cpuModelContains == nil { merged.cpuModelContains = r.cpuModelContains }
        }
        return merged
    }

    public struct OSSupport: Sendable, Equatable, Codable {
        public var releases: [OSRelease]
        public init(releases: [OSRelease]) { self.releases = releases }

        /// The release entry for an `/etc/os-release` ID and VERSION_ID, if supported.
        public func release(id: String, version: String) -> OSRelease? {
            releases.first { $0.id == id && $0.version == version }
        }
    }

    public struct OSRelease: Sendable, Equatable, Codable {
        /// `/etc/os-release` ID (`ubuntu`, `debian`).
        public var id: String
        /// `/etc/os-release` VERSION_ID (`22.04`, `12`).
        public var version: String
        /// Supported kernel release prefixes (`5.15`, `6.8`); empty means any.
        public var kernels: [String]
        /// `supported` (pass) or `deprecated` (warn).
        public var status: String
        public init(id: String, version: String, kernels: [String], status: String = "supported") {
            self.id = id
            self.version = version
            self.kernels = kernels
            self.status = status
        }

        public func supportsKernel(_ release: String) -> Bool {
            kernels.isEmpty
                || kernels.contains { release == $0 || release.hasPrefix($0 + ".") || release.hasPrefix($0 + "-") }
        }
    }

    public enum GPUStackMode: String, Sendable, Equatable, Codable, CaseIterable {
        /// NVIDIA GPU Operator deploying precompiled driver containers (no host driver).
        case operatorPrecompiled = "operator-precompiled"
        /// Host driver + NVIDIA container toolkit (+ fabric manager), GPU Operator with driver.enabled=false.
        case hostDriver = "host-driver"
    }

    public struct GPUStack: Sendable, Equatable, Codable {
        public var mode: GPUStackMode
        /// Driver versions this profile is released with (`535.161.08`); the first is the default.
        public var driverVersions: [String]
        /// Driver versions known to be broken.
        public var deniedDriverVersions: [String]
        public var operatorVersion: String
        /// `none`, `single` or `mixed` (GPU Operator MIG strategy).
        public var migStrategy: String
        public init(
            mode: GPUStackMode, driverVersions: [String], deniedDriverVersions: [String] = [],
            operatorVersion: String, migStrategy: String = "none"
        ) {
            self.mode = mode
            self.driverVersions = driverVersions
            self.deniedDriverVersions = deniedDriverVersions
            self.operatorVersion = operatorVersion
            self.migStrategy = migStrategy
        }

        /// The driver branch (major version) of the default driver, e.g. 535.
        public var driverBranch: Int? { driverVersions.first.flatMap { Int($0.split(separator: ".").first ?? "") } }
    }

    public struct KubernetesSettings: Sendable, Equatable, Codable {
        public var version: String
        public var podCIDR: String
        public var serviceCIDR: String
        public var cni: String
        public var containerRuntime: String
        public var cgroupDriver: String
        /// The cluster's DNS domain (kubeadm `networking.dnsDomain`, kubelet `clusterDomain`).
        public var dnsDomain: String
        /// How node roles are spelled as labels.
        public var roleLabels: RoleLabelStyle
        public init(
            version: String, podCIDR: String, serviceCIDR: String, cni: String, containerRuntime: String = "containerd",
            cgroupDriver: String = "systemd", dnsDomain: String = "cluster.local",
            roleLabels: RoleLabelStyle = .standard
        ) {
            self.dnsDomain = dnsDomain
            self.roleLabels = roleLabels
            self.version = version
            self.podCIDR = podCIDR
            self.serviceCIDR = serviceCIDR
            self.cni = cni
            self.containerRuntime = containerRuntime
            self.cgroupDriver = cgroupDriver
        }
    }

    public struct RoleRequirements: Sendable, Equatable, Codable {
        public var cpus: Int
        public var memoryGiB: Int
        /// Total disk the node needs.
        public var diskGiB: Int
        /// Free space needed for staging beyond the bundle's size.
        public var stagingHeadroomGiB: Int
        /// A substring the CPU model must contain (`AMD EPYC 7`), if the profile names one.
        public var cpuModelContains: String?
        public var gpu: GPURequirement?
        public var nics: [NICRequirement]
        public init(
            cpus: Int, memoryGiB: Int, diskGiB: Int, stagingHeadroomGiB: Int = 20, cpuModelContains: String? = nil,
            gpu: GPURequirement? = nil, nics: [NICRequirement] = []
        ) {
            self.cpus = cpus
            self.memoryGiB = memoryGiB
            self.diskGiB = diskGiB
            self.stagingHeadroomGiB = stagingHeadroomGiB
            self.cpuModelContains = cpuModelContains
            self.gpu = gpu
            self.nics = nics
        }
    }

    public struct GPURequirement: Sendable, Equatable, Codable {
        /// Accepted `nvidia-smi --query-gpu=name` values; the first is the declared one.
        public var models: [String]
        /// Accepted GPU counts per node (`[4, 8]` for cost-4xpcie: 4 double-width or 8 single-width).
        public var counts: [Int]
        /// Minimum framebuffer per GPU in MiB.
        public var memoryMiB: Int
        /// Accepted lower-case PCI device ids (`20b2`).
        public var pciDeviceIDs: [String]
        /// NVLink links expected per GPU (0: none expected).
        public var nvlinksPerGPU: Int
        public var nvlinkSpeedGBps: Double
        /// NVSwitch chips expected on the baseboard (0: none).
        public var nvswitches: Int
        public var nvswitchPciDeviceID: String?
        /// Whether nvidia-fabricmanager must run (NVSwitch systems).
        public var fabricManager: Bool
        /// `required` (ECC off fails) or `recommended` (ECC off warns).
        public var ecc: String
        public init(
            models: [String], counts: [Int], memoryMiB: Int, pciDeviceIDs: [String], nvlinksPerGPU: Int = 0,
            nvlinkSpeedGBps: Double = 0, nvswitches: Int = 0, nvswitchPciDeviceID: String? = nil,
            fabricManager: Bool = false, ecc: String = "required"
        ) {
            self.models = models
            self.counts = counts
            self.memoryMiB = memoryMiB
            self.pciDeviceIDs = pciDeviceIDs
            self.nvlinksPerGPU = nvlinksPerGPU
            self.nvlinkSpeedGBps = nvlinkSpeedGBps
            self.nvswitches = nvswitches
            self.nvswitchPciDeviceID = nvswitchPciDeviceID
            self.fabricManager = fabricManager
            self.ecc = ecc
        }

        public var model: String { models.first ?? "" }
        public var count: Int { counts.first ?? 0 }
    }

    public struct NICRequirement: Sendable, Equatable, Codable {
        /// `ethernet` or `infiniband`.
        public var kind: String
        public var count: Int
        public var minRateGbps: Int
        /// Expected `ibstat` CA type (`MT4123` for ConnectX-6), if any.
        public var model: String?
        public init(kind: String, count: Int, minRateGbps: Int, model: String? = nil) {
            self.kind = kind
            self.count = count
            self.minRateGbps = minRateGbps
            self.model = model
        }
    }

    public struct ControlPlaneSizing: Sendable, Equatable, Codable {
        /// Kubernetes control-plane nodes (3 for etcd quorum in production).
        public var nodes: Int
        public var components: [PlatformComponent]
        public init(nodes: Int, components: [PlatformComponent]) {
            self.nodes = nodes
            self.components = components
        }
    }

    public struct PlatformComponent: Sendable, Equatable, Codable {
        public var name: String
        /// Kubernetes quantities (`500m`, `2`).
        public var cpuRequest: String
        public var cpuLimit: String
        /// Kubernetes quantities (`1Gi`).
        public var memoryRequest: String
        public var memoryLimit: String
        public var replicas: Int
        /// Persistent volume size in GiB (0: none).
        public var volumeGiB: Int
        public init(
            name: String, cpuRequest: String, cpuLimit: String, memoryRequest: String, memoryLimit: String,
            replicas: Int = 1, volumeGiB: Int = 0
        ) {
            self.name = name
            self.cpuRequest = cpuRequest
            self.cpuLimit = cpuLimit
            self.memoryRequest = memoryRequest
            self.memoryLimit = memoryLimit
            self.replicas = replicas
            self.volumeGiB = volumeGiB
        }
    }

    public struct SchedulerQueue: Sendable, Equatable, Codable {
        public var name: String
        public var gpuQuota: Int
        /// Whether the queue may borrow idle GPUs beyond its quota.
        public var overQuota: Bool
        public var priority: Int
        public init(name: String, gpuQuota: Int, overQuota: Bool, priority: Int) {
            self.name = name
            self.gpuQuota = gpuQuota
            self.overQuota = overQuota
            self.priority = priority
        }
    }
}

extension HardwareProfile {
    /// What a lab node of this profile declares (`/etc/appliance/lab/hardware.json`): the role's minimums, and
    /// stand-in GPUs from the gpu-worker requirement. Preflight against the same profile passes for it.
    public func labDeclaration(node: String, roles nodeRoles: [NodeRole]) -> HardwareDeclaration {
        let req = requirements(for: nodeRoles)
        var gpus: HardwareDeclaration.GPUs?
        if let g = req?.gpu, nodeRoles.contains(.gpuWorker) {
            let branch = gpuStack.driverVersions.first ?? "535.161.08"
            let major = Int(branch.split(separator: ".").first ?? "") ?? 535
            gpus = HardwareDeclaration.GPUs(
                model: g.model, count: g.count, memoryMiB: g.memoryMiB, pciDeviceID: g.pciDeviceIDs.first ?? "",
                nvlinksPerGPU: g.nvlinksPerGPU, nvlinkSpeedGBps: g.nvlinkSpeedGBps, nvswitches: g.nvswitches,
                driverVersion: branch, cudaVersion: major >= 580 ? "13.0" : "12.2",
                vbiosVersion: "92.00.68.00.01", powerLimitWatts: g.model.contains("H100") ? 700 : 400,
                pcieGeneration: g.model.contains("H100") ? 5 : 4, pcieWidth: 16)
        }
        return HardwareDeclaration(
            node: node, profile: name, roles: nodeRoles,
            cpu: .init(
                model: req?.cpuModelContains ?? "QEMU Virtual CPU", sockets: 1, coresPerSocket: req?.cpus ?? 1,
                threadsPerCore: 1),
            memoryGiB: req?.memoryGiB ?? 1,
            disks: [.init(name: "vda", sizeGB: req?.diskGiB ?? 10)], gpus: gpus,
            nics: (req?.nics ?? []).enumerated().map {
                .init(
                    name: $1.kind == "infiniband" ? "mlx5_\($0)" : "eth\($0)", kind: $1.kind, rateGbps: $1.minRateGbps)
            })
    }
}
