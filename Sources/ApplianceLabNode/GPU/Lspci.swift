import ApplianceModel
import Foundation

/// The `lspci` stand-in for the devices the hardware declaration describes: the GPUs (class 0302, at the bus
/// numbers `nvidia-smi` reports), the NVSwitch bridges (class 0680) and one Mellanox adapter per InfiniBand
/// NIC. `-nn` adds `[class]` and `[vendor:device]` as in the HGX A100 capture; `-d 10de:` filters by vendor.
/// The listing does not need the driver (PCI enumeration does not); a GPU with the `gpu-missing-N` fault is
/// absent, as from every other listing.
public struct Lspci: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    struct Device {
        var slot: String
        var className: String
        var classCode: String
        var vendorName: String
        var vendorID: String
        var deviceName: String
        var deviceID: String
        var revision: String
    }

    /// Marketing names of the pci.ids database for the GPUs and switches the profiles use.
    static let deviceNames: [String: String] = [
        "20b0": "GA100 [A100 SXM4 40GB]", "20b2": "GA100 [A100 SXM4 80GB]", "20b5": "GA100 [A100 PCIe 80GB]",
        "20f1": "GA100 [A100 PCIe 40GB]", "2237": "GA102GL [A10G]", "2330": "GH100 [H100 SXM5 80GB]",
        "2331": "GH100 [H100 PCIe]", "2335": "GH100 [H200 SXM 141GB]", "1af1": "GA100 [A100 NVSwitch]",
        "22a3": "GH100 [H100 NVSwitch]",
    ]

    public func run(_ args: [String]) -> ToolOutput {
        var numeric = false
        var vendorFilter: String?
        var i = 0
        while i < args.count {
            switch args[i] {
            case "-nn": numeric = true
            case "-d":
                i += 1
                guard i < args.count else { return .fail(2, stderr: "lspci: option requires an argument -- 'd'") }
                vendorFilter = args[i].split(separator: ":", omittingEmptySubsequences: false).first.map {
                    $0.lowercased()
                }
            default:
                return .fail(2, stderr: "lspci (lab stand-in): option \(args[i]) is not modelled (use -nn, -d VENDOR:)")
            }
            i += 1
        }
        let hw: HardwareDeclaration
        do {
            hw = try context.loadHardware()
        } catch {
            return .fail(1, stderr: "lspci (lab stand-in): \(error)")
        }
        let missing = Set(
            LabFaults(context: context).active().compactMap { f -> Int? in
                if case .gpuMissing(let g) = f { return g }
                return nil
            })
        var devices = Self.devices(hw, missing: missing)
        if let v = vendorFilter, !v.isEmpty { devices = devices.filter { $0.vendorID == v } }
        let text = devices.sorted { $0.slot < $1.slot }.map { d in
            numeric
                ? "\(d.slot) \(d.className) [\(d.classCode)]: \(d.vendorName) \(d.deviceName) [\(d.vendorID):\(d.deviceID)] (rev \(d.revision))\n"
                : "\(d.slot) \(d.className): \(d.vendorName) \(d.deviceName) (rev \(d.revision))\n"
        }.joined()
        return .ok(text)
    }

    /// The PCI devices a hardware declaration implies.
    static func devices(_ hw: HardwareDeclaration, missing: Set<Int>) -> [Device] {
        var out: [Device] = []
        var used = Set<String>()
        func freeBus(from start: Int) -> String {
            var b = start
            while used.contains(String(format: "%02x", b)) { b += 1 }
            let s = String(format: "%02x", b)
            used.insert(s)
            return s
        }
        if let g = hw.gpus {
            let buses = GPUInventory.pciBusNumbers(count: g.count).map { $0.lowercased() }
            used.formUnion(buses)
            let id = g.pciDeviceID.lowercased()
            for (i, bus) in buses.enumerated() where !missing.contains(i) {
                out.append(
                    Device(
                        slot: "\(bus):00.0", className: "3D controller", classCode: "0302",
                        vendorName: "NVIDIA Corporation", vendorID: "10de",
                        deviceName: deviceNames[id] ?? "Device \(id)", deviceID: id, revision: "a1"))
            }
            // Third-generation NVSwitch on Hopper baseboards, second generation on Ampere.
            let sw = GPUInventory.architecture(model: g.model).reportsFabricState ? "22a3" : "1af1"
            for _ in 0..<max(0, g.nvswitches) {
                out.append(
                    Device(
                        slot: "\(freeBus(from: 0x54)):00.0", className: "Bridge", classCode: "0680",
                        vendorName: "NVIDIA Corporation", vendorID: "10de",
                        deviceName: deviceNames[sw] ?? "Device \(sw)", deviceID: sw, revision: "a1"))
            }
        }
        for nic in hw.nics where nic.kind == "infiniband" {
            out.append(
                Device(
                    slot: "\(freeBus(from: 0x0c)):00.0", className: "Infiniband controller", classCode: "0207",
                    vendorName: "Mellanox Technologies", vendorID: "15b3",
                    deviceName: "MT28908 Family [ConnectX-6]", deviceID: "101b", revision: "00"))
        }
        return out
    }
}
