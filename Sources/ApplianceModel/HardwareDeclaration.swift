import Foundation

/// What a lab node pretends to be: written by `appliance lab up` from the profile to
/// `/etc/appliance/lab/hardware.json` on each node, and read by the lab stand-ins (`nvidia-smi`, `dcgmi`,
/// the kubelet's capacity) and by lab faults. Real nodes never have this file.
public struct HardwareDeclaration: Codable, Sendable, Equatable {
    public static let pathOnNode = "/etc/appliance/lab/hardware.json"

    public var node: String
    public var profile: String
    public var roles: [NodeRole]
    public var cpu: CPU
    public var memoryGiB: Int
    public var disks: [Disk]
    public var gpus: GPUs?
    public var nics: [NIC]

    public init(
        node: String, profile: String, roles: [NodeRole], cpu: CPU, memoryGiB: Int, disks: [Disk], gpus: GPUs?,
        nics: [NIC]
    ) {
        self.node = node
        self.profile = profile
        self.roles = roles
        self.cpu = cpu
        self.memoryGiB = memoryGiB
        self.disks = disks
        self.gpus = gpus
        self.nics = nics
    }

    public struct CPU: Codable, Sendable, Equatable {
        public var model: String
        public var sockets: Int
        public var coresPerSocket: Int
        public var threadsPerCore: Int
        public init(model: String, sockets: Int, coresPerSocket: Int, threadsPerCore: Int) {
            self.model = model
            self.sockets = sockets
            self.coresPerSocket = coresPerSocket
            self.threadsPerCore = threadsPerCore
        }
    }

    public struct Disk: Codable, Sendable, Equatable {
        public var name: String
        public var sizeGB: Int
        public var rotational: Bool
        public init(name: String, sizeGB: Int, rotational: Bool = false) {
            self.name = name
            self.sizeGB = sizeGB
            self.rotational = rotational
        }
    }

    public struct GPUs: Codable, Sendable, Equatable {
        /// As `nvidia-smi --query-gpu=name` prints it, e.g. "NVIDIA A100-SXM4-80GB".
        public var model: String
        public var count: Int
        public var memoryMiB: Int
        /// PCI device id, lower-case hex without 0x, e.g. "20b2".
        public var pciDeviceID: String
        /// NVLink links per GPU (0 for PCIe cards without bridges).
        public var nvlinksPerGPU: Int
        /// NVLink per-link speed in GB/s as `nvidia-smi nvlink -s` prints it.
        public var nvlinkSpeedGBps: Double
        /// NVSwitch chips on the baseboard (0 when none); with NVSwitch, fabric manager is required.
        public var nvswitches: Int
        public var driverVersion: String
        public var cudaVersion: String
        public var vbiosVersion: String
        public var powerLimitWatts: Int
        public var pcieGeneration: Int
        public var pcieWidth: Int
        public init(
            model: String, count: Int, memoryMiB: Int, pciDeviceID: String, nvlinksPerGPU: Int,
            nvlinkSpeedGBps: Double, nvswitches: Int, driverVersion: String, cudaVersion: String,
            vbiosVersion: String, powerLimitWatts: Int, pcieGeneration: Int, pcieWidth: Int
        ) {
            self.model = model
            self.count = count
            self.memoryMiB = memoryMiB
            self.pciDeviceID = pciDeviceID
            self.nvlinksPerGPU = nvlinksPerGPU
            self.nvlinkSpeedGBps = nvlinkSpeedGBps
            self.nvswitches = nvswitches
            self.driverVersion = driverVersion
            self.cudaVersion = cudaVersion
            self.vbiosVersion = vbiosVersion
            self.powerLimitWatts = powerLimitWatts
            self.pcieGeneration = pcieGeneration
            self.pcieWidth = pcieWidth
        }
    }

    public struct NIC: Codable, Sendable, Equatable {
        public var name: String
        /// "ethernet" or "infiniband".
        public var kind: String
        public var rateGbps: Int
        public init(name: String, kind: String, rateGbps: Int) {
            self.name = name
            self.kind = kind
            self.rateGbps = rateGbps
        }
    }

    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }

    public static func decode(_ data: Data) throws -> HardwareDeclaration {
        try JSONDecoder().decode(HardwareDeclaration.self, from: data)
    }
}
