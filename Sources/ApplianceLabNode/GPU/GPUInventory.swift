import ApplianceModel
import Foundation

/// One GPU as the lab's NVIDIA stand-ins report it: derived from the hardware declaration, then changed by
/// the node's state (persistence mode, fabric manager) and faults. Every output format renders from this, so
/// `-L`, `-q`, `-q -x`, `--query-gpu`, `topo -m`, `nvlink -s` and `dcgmi` agree with each other.
public struct LabGPU: Sendable, Equatable {
    /// nvidia-smi index (the physical slot: a GPU that fell off the bus leaves a gap, as real NVML does).
    public var index: Int
    public var name: String
    public var uuid: String
    public var serial: String
    /// "00000000:19:00.0"
    public var busID: String
    /// "19"
    public var pciBus: String
    public var pciDeviceID: String
    public var architecture: String
    public var computeCapability: String
    public var vbiosVersion: String
    public var memoryTotalMiB: Int
    public var memoryReservedMiB: Int
    public var memoryUsedMiB: Int
    public var memoryFreeMiB: Int { memoryTotalMiB - memoryReservedMiB - memoryUsedMiB }
    public var temperatureC: Int
    public var memoryTemperatureC: Int
    public var powerDrawW: Double
    public var powerLimitW: Int
    public var persistenceMode: Bool
    public var eccEnabled: Bool
    public var eccUncorrectableVolatile: Int
    public var eccUncorrectableAggregate: Int
    public var remappedRowsPending: Bool
    /// One entry per NVLink: true when active.
    public var nvlinks: [Bool]
    public var nvlinkSpeedGBps: Double
    /// "Completed", "In Progress" or "N/A" (no NVSwitch, or an architecture before Hopper).
    public var fabricState: String
    public var fabricStatus: String
    public var pcieGeneration: Int
    public var pcieWidth: Int
    public var moduleID: Int
    public var graphicsClockMHz: Int
    public var memoryClockMHz: Int
    public var maxGraphicsClockMHz: Int
    public var socket: Int
}

/// The node's GPU stack state: whether the driver is loaded, which GPUs answer, which were lost.
public struct GPUInventory: Sendable {
    public enum DriverState: Sendable, Equatable {
        case notInstalled
        /// kernel module and user-space library differ (fault `driver-mismatch-VERSION`).
        case mismatch(kernel: String, library: String)
        case loaded(version: String)
    }

    public var hardware: HardwareDeclaration
    public var driver: DriverState
    public var cudaVersion: String
    /// GPUs that answer, in index order.
    public var gpus: [LabGPU]
    /// GPUs that fell off the bus (index, bus id).
    public var lost: [(index: Int, busID: String)]
    public var fabricManagerRunning: Bool
    public var faults: [LabFault]

    public var hasNVSwitch: Bool { (hardware.gpus?.nvswitches ?? 0) > 0 }
    public var driverVersion: String {
        switch driver {
        case .loaded(let v): return v
        case .mismatch(_, let lib): return lib
        case .notInstalled: return ""
        }
    }

    /// Bus numbers as on the 8x H100 HGX capture; more GPUs continue the pattern.
    public static func pciBusNumbers(count: Int) -> [String] {
        let hgx = ["19", "3B", "4C", "5D", "9B", "BB", "CB", "DB"]
        if count <= hgx.count { return Array(hgx.prefix(count)) }
        return (0..<count).map { String(format: "%02X", min(0xFE, 0x10 + $0 * 0x0E)) }
    }

    public static func load(context: LabNodeContext) throws -> GPUInventory {
        let hw = try context.loadHardware()
        let faults = LabFaults(context: context).active()
        let declared = hw.gpus
        var driver = DriverState.notInstalled
        if declared != nil, let marker = context.read(LabPaths.driverInstalled) {
            let v = marker.trimmingCharacters(in: .whitespacesAndNewlines)
            let lib = v.isEmpty ? (declared?.driverVersion ?? "") : v
            driver = .loaded(version: lib)
            for case .driverMismatch(let k) in faults where k != lib {
                driver = .mismatch(kernel: k, library: lib)
            }
        }
        let fmRunning = context.pidFileIsLive(LabPaths.fabricManagerPID)
        var inv = GPUInventory(
            hardware: hw, driver: driver, cudaVersion: declared?.cudaVersion ?? "", gpus: [], lost: [],
            fabricManagerRunning: fmRunning, faults: faults)
        guard let g = declared, case .loaded(let version) = driver else { return inv }

        let persistence = Self.persistenceModes(context: context)
        let buses = pciBusNumbers(count: g.count)
        let arch = Self.architecture(model: g.model)
        let sockets = max(1, hw.cpu.sockets)
        for i in 0..<g.count {
            let bus = buses[i]
            let busID = "00000000:\(bus):00.0"
            if faults.contains(.gpuMissing(gpu: i)) {
                inv.lost.append((i, busID))
                continue
            }
            var links = Array(repeating: true, count: g.nvlinksPerGPU)
            for case .nvlinkDown(let gg, let l) in faults where gg == i && l >= 0 && l < links.count {
                links[l] = false
            }
            var ecc = 0
            for case .eccUncorrectable(let gg, let c) in faults where gg == i { ecc += c }
            let fabric: (String, String)
            // NVML reports GPU fabric info on Hopper and later only; Ampere prints N/A even on NVSwitch
            // baseboards (the A100 capture), while its CUDA still waits for fabric manager (see DCGMI).
            if g.nvswitches > 0 && arch.reportsFabricState {
                fabric = fmRunning ? ("Completed", "Success") : ("In Progress", "N/A")
            } else {
                fabric = ("N/A", "N/A")
            }
            let seed = "\(hw.node)/\(i)"
            inv.gpus.append(
                LabGPU(
                    index: i, name: g.model, uuid: "GPU-" + Self.uuid(seed: seed),
                    serial: Self.serial(seed: seed), busID: busID, pciBus: bus,
                    pciDeviceID: g.pciDeviceID.lowercased(), architecture: arch.name,
                    computeCapability: arch.computeCapability, vbiosVersion: g.vbiosVersion,
                    memoryTotalMiB: g.memoryMiB, memoryReservedMiB: g.memoryMiB * 6 / 1000, memoryUsedMiB: 0,
                    temperatureC: 31 + (i * 3) % 8, memoryTemperatureC: 40 + (i * 3) % 6,
                    powerDrawW: 69.0 + Double((i * 7) % 5) + 0.85, powerLimitW: g.powerLimitWatts,
                    persistenceMode: persistence[i] ?? false, eccEnabled: true,
                    eccUncorrectableVolatile: ecc, eccUncorrectableAggregate: ecc, remappedRowsPending: ecc > 0,
                    nvlinks: links, nvlinkSpeedGBps: g.nvlinkSpeedGBps, fabricState: fabric.0,
                    fabricStatus: fabric.1, pcieGeneration: g.pcieGeneration, pcieWidth: g.pcieWidth,
                    moduleID: i + 1, graphicsClockMHz: arch.idleClock, memoryClockMHz: arch.memClock,
                    maxGraphicsClockMHz: arch.maxClock, socket: i * sockets / max(1, g.count)))
        }
        _ = version
        return inv
    }

    static func persistenceModes(context: LabNodeContext) -> [Int: Bool] {
        var out: [Int: Bool] = [:]
        for line in (context.read(LabPaths.persistenceMode) ?? "").split(separator: "\n") {
            let p = line.split(separator: " ")
            if p.count == 2, let i = Int(p[0]) { out[i] = p[1] == "Enabled" }
        }
        return out
    }

    struct Architecture {
        var name: String
        var computeCapability: String
        var idleClock: Int
        var memClock: Int
        var maxClock: Int
        /// Whether NVML has GPU fabric info (`Fabric State`) for this architecture: Hopper and later.
        var reportsFabricState: Bool { name == "Hopper" || name == "Blackwell" }
    }

    static func architecture(model: String) -> Architecture {
        let m = model.uppercased()
        if m.contains("H100") || m.contains("H200") || m.contains("H800") || m.contains("H20") || m.contains("GH200") {
            return Architecture(
                name: "Hopper", computeCapability: "9.0", idleClock: 345, memClock: 2619, maxClock: 1980)
        }
        if m.contains("B200") || m.contains("B100") || m.contains("GB200") {
            return Architecture(
                name: "Blackwell", computeCapability: "10.0", idleClock: 345, memClock: 3996, maxClock: 1965)
        }
        if m.contains("L40") || m.contains("L4") || m.contains("RTX 6000 ADA") {
            return Architecture(
                name: "Ada Lovelace", computeCapability: "8.9", idleClock: 210, memClock: 405, maxClock: 2520)
        }
        if m.contains("A10G") || m.contains("A10 ") || m.hasSuffix("A10") || m.contains("A40") {
            return Architecture(name: "Ampere", computeCapability: "8.6", idleClock: 210, memClock: 405, maxClock: 1710)
        }
        return Architecture(name: "Ampere", computeCapability: "8.0", idleClock: 1275, memClock: 1593, maxClock: 1410)
    }

    /// Deterministic per node and slot, so every stand-in and every run print the same UUID.
    static func uuid(seed: String) -> String {
        let a = mix(fnv1a(seed + "#a")), b = mix(fnv1a(seed + "#b"))
        let hex = String(format: "%016llx%016llx", a, b)
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20])
            + "-" + String(c[20..<32])
    }

    static func serial(seed: String) -> String {
        String(format: "165%010llu", mix(fnv1a(seed + "#s")) % 10_000_000_000)
    }

    /// splitmix64 finaliser: spreads the FNV hash over all bits.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return h
    }
}
