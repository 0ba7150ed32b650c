import ApplianceModel

/// The hardware a lab pretends to have: what each node's `HardwareDeclaration` says, by role.
///
/// Built in, named like the product's deployment profiles; GPU values come from the real captures in
/// `shared/fixtures/gpu` (A100 SXM4 80GB: device 20b2, 12 NVLinks at 25 GB/s, 6 NVSwitches; H100 SXM5:
/// device 2330, 18 links at 26.562 GB/s, 4 NVSwitches).
public struct LabProfile: Sendable, Equatable {
    public var name: String
    public var summary: String
    /// Control-plane and system nodes.
    public var controlPlane: Machine
    /// Every other node.
    public var worker: Machine

    public struct Machine: Sendable, Equatable {
        public var cpu: HardwareDeclaration.CPU
        public var memoryGiB: Int
        public var disks: [HardwareDeclaration.Disk]
        public var gpus: HardwareDeclaration.GPUs?
        public var nics: [HardwareDeclaration.NIC]
    }

    /// Roles of node `index` (0-based) in a lab of `count` nodes: `controlPlanes` control planes first, then
    /// `systemNodes` dedicated system nodes, then workers. Without dedicated system nodes the control planes
    /// carry the system role (and, in a lab of control planes only, the worker role too).
    public func roles(index: Int, count: Int, controlPlanes: Int, systemNodes: Int = 0) -> [NodeRole] {
        if index < controlPlanes {
            if systemNodes > 0 { return [.controlPlane] }
            return count == controlPlanes ? [.controlPlane, .system, workerRole] : [.controlPlane, .system]
        }
        if index < controlPlanes + systemNodes { return [.system] }
        return [workerRole]
    }

    public var workerRole: NodeRole { worker.gpus == nil ? .cpuWorker : .gpuWorker }

    public func declaration(node: String, roles: [NodeRole]) -> HardwareDeclaration {
        let server = roles.contains(.controlPlane) || roles.contains(.system)
        let m = server && !roles.contains(workerRole) ? controlPlane : worker
        return HardwareDeclaration(
            node: node, profile: name, roles: roles, cpu: m.cpu, memoryGiB: m.memoryGiB, disks: m.disks,
            gpus: m.gpus, nics: m.nics)
    }

    public static func named(_ name: String) throws(LabError) -> LabProfile {
        guard let p = all.first(where: { $0.name == name }) else {
            throw .unknownProfile(name, known: all.map(\.name))
        }
        return p
    }

    // MARK: built-in profiles

    static let epyc7763 = HardwareDeclaration.CPU(
        model: "AMD EPYC 7763 64-Core Processor", sockets: 2, coresPerSocket: 64, threadsPerCore: 2)
    static let xeon8480 = HardwareDeclaration.CPU(
        model: "Intel(R) Xeon(R) Platinum 8480+", sockets: 2, coresPerSocket: 56, threadsPerCore: 2)
    static let xeon6338 = HardwareDeclaration.CPU(
        model: "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", sockets: 1, coresPerSocket: 32, threadsPerCore: 2)

    static let systemNode = Machine(
        cpu: xeon6338, memoryGiB: 256,
        disks: [.init(name: "nvme0n1", sizeGB: 960), .init(name: "nvme1n1", sizeGB: 3840)], gpus: nil,
        nics: [.init(name: "eth0", kind: "ethernet", rateGbps: 25)])

    static func gpuNode(
        cpu: HardwareDeclaration.CPU, memoryGiB: Int, gpus: HardwareDeclaration.GPUs, ib: Int, ibRate: Int
    )
        -> Machine
    {
        Machine(
            cpu: cpu, memoryGiB: memoryGiB,
            disks: [.init(name: "nvme0n1", sizeGB: 1920)] + (1...4).map { .init(name: "nvme\($0)n1", sizeGB: 3840) },
            gpus: gpus,
            nics: [.init(name: "eth0", kind: "ethernet", rateGbps: 100)]
                + (0..<ib).map { .init(name: "ibp\($0)s0", kind: "infiniband", rateGbps: ibRate) })
    }

    static let a100sxm = HardwareDeclaration.GPUs(
        model: "NVIDIA A100-SXM4-80GB", count: 8, memoryMiB: 81920, pciDeviceID: "20b2", nvlinksPerGPU: 12,
        nvlinkSpeedGBps: 25, nvswitches: 6, driverVersion: "535.54.03", cudaVersion: "12.2",
        vbiosVersion: "92.00.36.00.02", powerLimitWatts: 400, pcieGeneration: 4, pcieWidth: 16)
    static let h100sxm = HardwareDeclaration.GPUs(
        model: "NVIDIA H100 80GB HBM3", count: 8, memoryMiB: 81559, pciDeviceID: "2330", nvlinksPerGPU: 18,
        nvlinkSpeedGBps: 26.562, nvswitches: 4, driverVersion: "590.48.01", cudaVersion: "13.1",
        vbiosVersion: "96.00.A5.00.01", powerLimitWatts: 700, pcieGeneration: 5, pcieWidth: 16)
    static let a100pcie = HardwareDeclaration.GPUs(
        model: "NVIDIA A100-PCIE-40GB", count: 4, memoryMiB: 40960, pciDeviceID: "20f1", nvlinksPerGPU: 0,
        nvlinkSpeedGBps: 0, nvswitches: 0, driverVersion: "535.54.03", cudaVersion: "12.2",
        vbiosVersion: "92.00.25.00.08", powerLimitWatts: 250, pcieGeneration: 4, pcieWidth: 16)

    public static let all: [LabProfile] = [
        LabProfile(
            name: "hpc-8xa100", summary: "HGX A100 80GB: 8 SXM4 GPUs, NVSwitch, 4x HDR InfiniBand",
            controlPlane: systemNode, worker: gpuNode(cpu: epyc7763, memoryGiB: 2048, gpus: a100sxm, ib: 4, ibRate: 200)
        ),
        LabProfile(
            name: "hpc-8xh100", summary: "HGX H100: 8 SXM5 GPUs, NVSwitch, 8x NDR InfiniBand",
            controlPlane: systemNode, worker: gpuNode(cpu: xeon8480, memoryGiB: 2048, gpus: h100sxm, ib: 8, ibRate: 400)
        ),
        LabProfile(
            name: "balanced-4xa100", summary: "4 A100 SXM4 80GB per node, NVLink, 2x HDR InfiniBand",
            controlPlane: systemNode,
            worker: gpuNode(
                cpu: epyc7763, memoryGiB: 1024,
                gpus: {
                    var g = a100sxm; g.count = 4; g.nvlinksPerGPU = 4; g.nvswitches = 0; return g
                }(), ib: 2, ibRate: 200)),
        LabProfile(
            name: "cost-4xpcie", summary: "4 A100 PCIe 40GB per node, no NVLink, Ethernet only",
            controlPlane: systemNode, worker: gpuNode(cpu: xeon6338, memoryGiB: 512, gpus: a100pcie, ib: 0, ibRate: 0)),
        LabProfile(
            name: "lab", summary: "small: 2 A100 PCIe 40GB per worker, Ethernet only",
            controlPlane: systemNode,
            worker: gpuNode(
                cpu: xeon6338, memoryGiB: 256,
                gpus: {
                    var g = a100pcie; g.count = 2; return g
                }(), ib: 0, ibRate: 0)),
    ]
}
