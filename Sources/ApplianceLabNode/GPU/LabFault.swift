import ApplianceModel
import Foundation

/// A fault injected into a lab node. Each fault is one file in `LabPaths.faultsDir` whose name encodes it:
///
/// | file name                 | effect                                                                          |
/// |---------------------------|---------------------------------------------------------------------------------|
/// | `gpu-missing-N`           | GPU N (physical index) fell off the bus: absent from listings, exit 15, Xid 79  |
/// | `nvlink-down-G-L`         | NVLink L of GPU G is `<inactive>`; topo NV# drops by one for that GPU           |
/// | `ecc-uncorrectable-N`     | GPU N has uncorrectable volatile ECC errors (file content: count, default 1)    |
/// | `driver-mismatch-VERSION` | kernel module is VERSION, user space differs: NVML "Driver/library version mismatch" |
/// | `fabricmanager-stopped`   | fabric manager refuses to start (`nv-fabricmanager` exits 1)                    |
///
/// The file content is free text except for `ecc-uncorrectable-N` (a decimal count).
public enum LabFault: Hashable, Sendable, CustomStringConvertible {
    case gpuMissing(gpu: Int)
    case nvlinkDown(gpu: Int, link: Int)
    case eccUncorrectable(gpu: Int, count: Int)
    case driverMismatch(kernelVersion: String)
    case fabricManagerStopped

    public var fileName: String {
        switch self {
        case .gpuMissing(let g): return "gpu-missing-\(g)"
        case .nvlinkDown(let g, let l): return "nvlink-down-\(g)-\(l)"
        case .eccUncorrectable(let g, _): return "ecc-uncorrectable-\(g)"
        case .driverMismatch(let v): return "driver-mismatch-\(v)"
        case .fabricManagerStopped: return "fabricmanager-stopped"
        }
    }

    public var description: String { fileName }

    /// Parses a fault file name (and its content, for counts). Unknown names give nil.
    public init?(fileName: String, content: String = "") {
        func ints(_ rest: Substring) -> [Int]? {
            let parts = rest.split(separator: "-", omittingEmptySubsequences: false)
            let v = parts.compactMap { Int($0) }
            return v.count == parts.count ? v : nil
        }
        if fileName.hasPrefix("gpu-missing-"), let v = ints(fileName.dropFirst(12)), v.count == 1 {
            self = .gpuMissing(gpu: v[0])
        } else if fileName.hasPrefix("nvlink-down-"), let v = ints(fileName.dropFirst(12)), v.count == 2 {
            self = .nvlinkDown(gpu: v[0], link: v[1])
        } else if fileName.hasPrefix("ecc-uncorrectable-"), let v = ints(fileName.dropFirst(18)), v.count == 1 {
            let n = Int(content.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 1
            self = .eccUncorrectable(gpu: v[0], count: max(1, n))
        } else if fileName.hasPrefix("driver-mismatch-"), fileName.count > 16 {
            self = .driverMismatch(kernelVersion: String(fileName.dropFirst(16)))
        } else if fileName == "fabricmanager-stopped" {
            self = .fabricManagerStopped
        } else {
            return nil
        }
    }

    /// Parses the CLI form used by `appliance-labnode fault set|clear KIND ARGS...`.
    public init?(kind: String, args: [String]) {
        let n = args.compactMap { Int($0) }
        switch (kind, args.count) {
        case ("gpu-missing", 1) where n.count == 1: self = .gpuMissing(gpu: n[0])
        case ("nvlink-down", 2) where n.count == 2: self = .nvlinkDown(gpu: n[0], link: n[1])
        case ("ecc-uncorrectable", 1) where n.count == 1: self = .eccUncorrectable(gpu: n[0], count: 1)
        case ("ecc-uncorrectable", 2) where n.count == 2: self = .eccUncorrectable(gpu: n[0], count: max(1, n[1]))
        case ("driver-mismatch", 1): self = .driverMismatch(kernelVersion: args[0])
        case ("fabricmanager-stopped", 0): self = .fabricManagerStopped
        default: return nil
        }
    }
}

/// Reads, injects and clears faults under a context's state root.
public struct LabFaults: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public func active() -> [LabFault] {
        context.list(LabPaths.faultsDir).compactMap { name in
            LabFault(fileName: name, content: context.read(LabPaths.faultsDir + "/" + name) ?? "")
        }
    }

    /// Writes the fault file; a missing GPU also appends the kernel's Xid 79 line to the lab kernel log.
    public func inject(_ fault: LabFault, hardware: HardwareDeclaration) throws {
        let gpus = hardware.gpus?.count ?? 0
        let links = hardware.gpus?.nvlinksPerGPU ?? 0
        switch fault {
        case .gpuMissing(let g), .eccUncorrectable(let g, _), .nvlinkDown(let g, _):
            guard (0..<gpus).contains(g) else {
                throw LabNodeError.usage("this node has no GPU \(g) (it declares \(gpus) GPUs)")
            }
            if case .nvlinkDown(_, let l) = fault, !(0..<links).contains(l) {
                throw LabNodeError.usage(
                    links == 0
                        ? "the GPUs of this node have no NVLink" : "GPU \(g) has no NVLink \(l) (links 0-\(links - 1))")
            }
        case .driverMismatch, .fabricManagerStopped:
            guard gpus > 0 else { throw LabNodeError.usage("this node declares no GPUs") }
        }
        var content = ""
        if case .eccUncorrectable(_, let c) = fault { content = "\(c)\n" }
        try context.write(LabPaths.faultsDir + "/" + fault.fileName, content)
        if case .gpuMissing(let g) = fault {
            let bus = GPUInventory.pciBusNumbers(count: gpus)
            try context.append(LabPaths.kernelLog, kernelLogLine(xid79Bus: bus[g]))
        }
    }

    public func clear(_ fault: LabFault) {
        context.remove(LabPaths.faultsDir + "/" + fault.fileName)
    }

    public func clearAll() {
        for name in context.list(LabPaths.faultsDir) { context.remove(LabPaths.faultsDir + "/" + name) }
    }

    /// `Nov 22 17:01:02 node kernel: [ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 79, pid=0, GPU has fallen off the bus.`
    func kernelLogLine(xid79Bus bus: String) -> String {
        let now = context.now()
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "MMM d HH:mm:ss"
        var stamp = f.string(from: now)
        // syslog pads single-digit days with a space: "Nov  2".
        let parts = stamp.split(separator: " ")
        if parts.count == 3, parts[1].count == 1 { stamp = "\(parts[0])  \(parts[1]) \(parts[2])" }
        let uptime = ProcessInfo.processInfo.systemUptime
        let up = String(format: "%12.6f", uptime)
        return
            "\(stamp) \(context.hostname) kernel: [\(up)] NVRM: Xid (PCI:0000:\(bus.lowercased()):00): 79, pid=0, GPU has fallen off the bus.\n"
    }
}
