import Foundation

/// `nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]`.
enum NvidiaSMIQueryGPU {
    struct Field: Sendable {
        var unit: String?
        var value: @Sendable (LabGPU, GPUInventory, Date) -> String
    }

    static let aliases: [String: String] = [
        "gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id", "gpu_serial": "serial",
        "clocks.gr": "clocks.current.graphics", "clocks.sm": "clocks.current.sm",
        "clocks.mem": "clocks.current.memory", "clocks_throttle_reasons.active": "clocks_event_reasons.active",
        "clocks_throttle_reasons.supported": "clocks_event_reasons.supported", "pstate": "pstate",
        "persistence_mode": "persistence_mode", "ecc.mode.current": "ecc.mode.current",
    ]

    static let na = "[N/A]"

    static let fields: [String: Field] = {
        func f(_ unit: String? = nil, _ v: @escaping @Sendable (LabGPU, GPUInventory, Date) -> String) -> Field {
            Field(unit: unit, value: v)
        }
        let eccTotal: @Sendable (LabGPU, Int) -> String = { g, n in g.eccEnabled ? "\(n)" : na }
        var t: [String: Field] = [
            "timestamp": f { _, _, d in
                let df = DateFormatter()
                df.locale = Locale(identifier: "en_US_POSIX")
                df.timeZone = TimeZone(identifier: "UTC")
                df.dateFormat = "yyyy/MM/dd HH:mm:ss.SSS"
                return df.string(from: d)
            },
            "driver_version": f { _, inv, _ in inv.driverVersion },
            "count": f { _, inv, _ in "\(inv.gpus.count)" },
            "name": f { g, _, _ in g.name },
            "serial": f { g, _, _ in g.serial },
            "uuid": f { g, _, _ in g.uuid },
            "pci.bus_id": f { g, _, _ in g.busID },
            "pci.domain": f { _, _, _ in "0x0000" },
            "pci.bus": f { g, _, _ in "0x" + g.pciBus },
            "pci.device": f { _, _, _ in "0x00" },
            "pci.device_id": f { g, _, _ in "0x" + g.pciDeviceID.uppercased() + "10DE" },
            "pci.sub_device_id": f { _, _, _ in "0x16C110DE" },
            "pcie.link.gen.current": f { g, _, _ in "\(g.pcieGeneration)" },
            "pcie.link.gen.gpucurrent": f { g, _, _ in "\(g.pcieGeneration)" },
            "pcie.link.gen.max": f { g, _, _ in "\(g.pcieGeneration)" },
            "pcie.link.gen.gpumax": f { g, _, _ in "\(g.pcieGeneration)" },
            "pcie.link.width.current": f { g, _, _ in "\(g.pcieWidth)" },
            "pcie.link.width.max": f { g, _, _ in "\(g.pcieWidth)" },
            "index": f { g, _, _ in "\(g.index)" },
            "display_mode": f { _, _, _ in "Disabled" },
            "display_active": f { _, _, _ in "Disabled" },
            "persistence_mode": f { g, _, _ in g.persistenceMode ? "Enabled" : "Disabled" },
            "accounting.mode": f { _, _, _ in "Disabled" },
            "vbios_version": f { g, _, _ in g.vbiosVersion },
            "inforom.img": f { _, _, _ in "G520.0200.00.05" },
            "fan.speed": f("%") { _, _, _ in na },
            "pstate": f { _, _, _ in "P0" },
            "clocks_event_reasons.supported": f { _, _, _ in "0x00000000000001FF" },
            "clocks_event_reasons.active": f { _, _, _ in "0x0000000000000001" },
            "clocks_event_reasons.gpu_idle": f { _, _, _ in "Active" },
            "memory.total": f("MiB") { g, _, _ in "\(g.memoryTotalMiB) MiB" },
            "memory.reserved": f("MiB") { g, _, _ in "\(g.memoryReservedMiB) MiB" },
            "memory.used": f("MiB") { g, _, _ in "\(g.memoryUsedMiB) MiB" },
            "memory.free": f("MiB") { g, _, _ in "\(g.memoryFreeMiB) MiB" },
            "compute_mode": f { _, _, _ in "Default" },
            "compute_cap": f { g, _, _ in g.computeCapability },
            "utilization.gpu": f("%") { _, _, _ in "0 %" },
            "utilization.memory": f("%") { _, _, _ in "0 %" },
            "ecc.mode.current": f { g, _, _ in g.eccEnabled ? "Enabled" : "Disabled" },
            "ecc.mode.pending": f { g, _, _ in g.eccEnabled ? "Enabled" : "Disabled" },
            "ecc.errors.corrected.volatile.total": f { g, _, _ in eccTotal(g, 0) },
            "ecc.errors.corrected.aggregate.total": f { g, _, _ in eccTotal(g, 0) },
            "ecc.errors.uncorrected.volatile.total": f { g, _, _ in eccTotal(g, g.eccUncorrectableVolatile) },
            "ecc.errors.uncorrected.volatile.dram": f { g, _, _ in eccTotal(g, g.eccUncorrectableVolatile) },
            "ecc.errors.uncorrected.volatile.device_memory": f { g, _, _ in eccTotal(g, g.eccUncorrectableVolatile) },
            "ecc.errors.uncorrected.aggregate.total": f { g, _, _ in eccTotal(g, g.eccUncorrectableAggregate) },
            "ecc.errors.uncorrected.aggregate.dram": f { g, _, _ in eccTotal(g, g.eccUncorrectableAggregate) },
            "retired_pages.single_bit_ecc.count": f { _, _, _ in na },
            "retired_pages.double_bit.count": f { _, _, _ in na },
            "retired_pages.pending": f { _, _, _ in na },
            "remapped_rows.correctable": f { _, _, _ in "0" },
            "remapped_rows.uncorrectable": f { g, _, _ in "\(g.eccUncorrectableAggregate)" },
            "remapped_rows.pending": f { g, _, _ in g.remappedRowsPending ? "Yes" : "No" },
            "remapped_rows.failure": f { _, _, _ in "No" },
            "temperature.gpu": f { g, _, _ in "\(g.temperatureC)" },
            "temperature.memory": f { g, _, _ in "\(g.memoryTemperatureC)" },
            "power.draw": f("W") { g, _, _ in NvidiaSMIQuery.watts(g.powerDrawW) },
            "power.draw.average": f("W") { g, _, _ in NvidiaSMIQuery.watts(g.powerDrawW) },
            "power.draw.instant": f("W") { g, _, _ in NvidiaSMIQuery.watts(g.powerDrawW - 0.23) },
            "power.limit": f("W") { g, _, _ in NvidiaSMIQuery.watts(Double(g.powerLimitW)) },
            "enforced.power.limit": f("W") { g, _, _ in NvidiaSMIQuery.watts(Double(g.powerLimitW)) },
            "power.default_limit": f("W") { g, _, _ in NvidiaSMIQuery.watts(Double(g.powerLimitW)) },
            "power.min_limit": f("W") { g, _, _ in NvidiaSMIQuery.watts(Double(g.powerLimitW) * 2 / 7) },
            "power.max_limit": f("W") { g, _, _ in NvidiaSMIQuery.watts(Double(g.powerLimitW)) },
            "clocks.current.graphics": f("MHz") { g, _, _ in "\(g.graphicsClockMHz) MHz" },
            "clocks.current.sm": f("MHz") { g, _, _ in "\(g.graphicsClockMHz) MHz" },
            "clocks.current.memory": f("MHz") { g, _, _ in "\(g.memoryClockMHz) MHz" },
            "clocks.max.graphics": f("MHz") { g, _, _ in "\(g.maxGraphicsClockMHz) MHz" },
            "clocks.max.sm": f("MHz") { g, _, _ in "\(g.maxGraphicsClockMHz) MHz" },
            "clocks.max.memory": f("MHz") { g, _, _ in "\(g.memoryClockMHz) MHz" },
            "mig.mode.current": f { _, _, _ in "Disabled" },
            "mig.mode.pending": f { _, _, _ in "Disabled" },
            "fabric.state": f { g, _, _ in g.fabricState },
            "fabric.status": f { g, _, _ in g.fabricStatus },
        ]
        for n in [
            "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "hw_thermal_slowdown",
            "hw_power_brake_slowdown", "sw_thermal_slowdown", "sync_boost",
        ] {
            t["clocks_event_reasons." + n] = f { _, _, _ in "Not Active" }
        }
        return t
    }()

    struct Format {
        var header = true
        var units = true
    }

    static func parseFormat(_ s: String) -> Format? {
        var f = Format()
        var sawCSV = false
        for p in s.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch p {
            case "csv": sawCSV = true
            case "noheader": f.header = false
            case "nounits": f.units = false
            default: return nil
            }
        }
        return sawCSV ? f : nil
    }

    static func run(fieldList: String, format: Format, inv: GPUInventory, gpus: [LabGPU], now: Date) -> ToolOutput {
        var names: [String] = []
        var specs: [Field] = []
        for raw in fieldList.split(separator: ",", omittingEmptySubsequences: false) {
            let name = raw.trimmingCharacters(in: .whitespaces)
            let canonical = aliases[name] ?? name
            guard let spec = fields[canonical] else {
                return ToolOutput(stdout: "Field \"\(name)\" is not a valid field to query.\n\n", exitCode: 2)
            }
            names.append(canonical)
            specs.append(spec)
        }
        var out = ""
        if format.header {
            out +=
                zip(names, specs).map { n, s in
                    if let u = s.unit, format.units { return "\(n) [\(u)]" }
                    return n
                }.joined(separator: ", ") + "\n"
        }
        for g in gpus {
            out +=
                specs.map { s -> String in
                    let v = s.value(g, inv, now)
                    if !format.units, let u = s.unit, v.hasSuffix(" " + u) { return String(v.dropLast(u.count + 1)) }
                    return v
                }.joined(separator: ", ") + "\n"
        }
        return .ok(out)
    }
}
