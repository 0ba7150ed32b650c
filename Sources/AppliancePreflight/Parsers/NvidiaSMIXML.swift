import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// `nvidia-smi -q -x`. Handles DTD v11 (510: `clocks_throttle_reasons`, `power_readings/power_limit`) and v12
/// (535+: `clocks_event_reasons`, `gpu_power_readings/current_power_limit`). GPUs are counted as `<gpu>`
/// elements, never from `<attached_gpus>`.
public enum NvidiaSMIXML {
    /// FoundationXML (libxml2 underneath) is not safe to use from several threads at once; parses take turns.
    private static let lock = NSLock()

    public static func parse(_ text: String) throws(ParseError) -> NvidiaSMIReport {
        // libxml2 recovers from a truncated document; a collector cut off mid-output must not pass as data.
        guard text.contains("</nvidia_smi_log>") else {
            throw ParseError("nvidia-smi -q -x", "output ends before </nvidia_smi_log> (truncated or not XML)")
        }
        lock.lock()
        defer { lock.unlock() }
        return try parseLocked(text)
    }

    private static func parseLocked(_ text: String) throws(ParseError) -> NvidiaSMIReport {
        // The DOCTYPE names a DTD file that is not there; drop it so nothing tries to load it.
        let cleaned = text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("<!DOCTYPE") }.joined(separator: "\n")
        let doc: XMLDocument
        do {
            doc = try XMLDocument(data: Data(cleaned.utf8), options: [])
        } catch {
            throw ParseError("nvidia-smi -q -x", "not well-formed XML (\(error.localizedDescription))")
        }
        guard let root = doc.rootElement(), root.name == "nvidia_smi_log" else {
            throw ParseError("nvidia-smi -q -x", "no <nvidia_smi_log> element")
        }
        var report = NvidiaSMIReport()
        report.driverVersion = Field.clean(root.child("driver_version")?.stringValue)
        report.cudaVersion = Field.clean(root.child("cuda_version")?.stringValue)
        report.attachedGPUs = Field.int(root.child("attached_gpus")?.stringValue)
        for (i, g) in root.children(named: "gpu").enumerated() {
            var r = GPURecord()
            r.index = Field.int(g.child("minor_number")?.stringValue) ?? i
            r.name = Field.clean(g.child("product_name")?.stringValue)
            r.uuid = Field.clean(g.child("uuid")?.stringValue)
            r.busID = g.attribute(forName: "id")?.stringValue ?? Field.clean(g.path("pci", "pci_bus_id"))
            r.pciDeviceID = Field.pciDevice(g.path("pci", "pci_device_id"))
            r.memoryTotalMiB = Field.int(g.path("fb_memory_usage", "total"))
            r.driverVersion = report.driverVersion
            r.vbiosVersion = Field.clean(g.child("vbios_version")?.stringValue)
            r.persistenceMode = Field.clean(g.child("persistence_mode")?.stringValue)
            r.eccModeCurrent = Field.clean(g.path("ecc_mode", "current_ecc"))
            r.eccModePending = Field.clean(g.path("ecc_mode", "pending_ecc"))
            r.eccVolatileUncorrected = sum(
                g, "volatile",
                ["sram_uncorrectable", "dram_uncorrectable", "sram_uncorrectable_parity", "sram_uncorrectable_secded"],
                legacy: "double_bit")
            r.eccAggregateUncorrected = sum(
                g, "aggregate",
                ["sram_uncorrectable", "dram_uncorrectable", "sram_uncorrectable_parity", "sram_uncorrectable_secded"],
                legacy: "double_bit")
            r.eccAggregateCorrected = sum(
                g, "aggregate", ["sram_correctable", "dram_correctable"], legacy: "single_bit")
            if let rr = g.child("remapped_rows"), rr.childCount > 0 {
                r.remappedRowsPending = Field.yesNo(rr.child("remapped_row_pending")?.stringValue)
                r.remappedRowsFailure = Field.yesNo(rr.child("remapped_row_failure_occurred")?.stringValue)
                r.remappedRowsUncorrectable = Field.int(rr.child("remapped_row_unc")?.stringValue)
            }
            r.retiredPagesPending = Field.yesNo(g.path("retired_pages", "pending_retirement"))
            r.pcieGenCurrent = Field.int(g.path("pci", "pci_gpu_link_info", "pcie_gen", "current_link_gen"))
            r.pcieGenMax = Field.int(g.path("pci", "pci_gpu_link_info", "pcie_gen", "max_link_gen"))
            r.pcieWidthCurrent = Field.int(g.path("pci", "pci_gpu_link_info", "link_widths", "current_link_width"))
            r.pcieWidthMax = Field.int(g.path("pci", "pci_gpu_link_info", "link_widths", "max_link_width"))
            r.pcieReplays = Field.int(g.path("pci", "replay_counter"))
            r.migModeCurrent = Field.clean(g.path("mig_mode", "current_mig"))
            r.migModePending = Field.clean(g.path("mig_mode", "pending_mig"))
            r.performanceState = Field.clean(g.child("performance_state")?.stringValue)
            if let reasons = g.child("clocks_event_reasons") ?? g.child("clocks_throttle_reasons") {
                var active: [String] = []
                for e in reasons.elementChildren {
                    let n = (e.name ?? "").replacingOccurrences(of: "clocks_event_reason_", with: "")
                        .replacingOccurrences(of: "clocks_throttle_reason_", with: "")
                    if Field.hardwareClockEvents.contains(n), Field.clean(e.stringValue) == "Active" {
                        active.append(n)
                    }
                }
                r.activeHardwareClockEvents = active
            }
            r.temperatureC = Field.int(g.path("temperature", "gpu_temp"))
            let power = g.child("gpu_power_readings") ?? g.child("power_readings")
            r.powerLimitW = Field.double(
                power?.child("current_power_limit")?.stringValue ?? power?.child("power_limit")?.stringValue)
            r.defaultPowerLimitW = Field.double(power?.child("default_power_limit")?.stringValue)
            r.fabricState = Field.clean(g.path("fabric", "state"))
            r.fabricStatus = Field.clean(g.path("fabric", "status"))
            report.gpus.append(r)
        }
        return report
    }

    /// Sums the named counters under `ecc_errors/<scope>`; nil when none is a number.
    private static func sum(_ g: XMLElement, _ scope: String, _ names: [String], legacy: String) -> Int? {
        guard let s = g.child("ecc_errors")?.child(scope) else { return nil }
        var total: Int?
        for n in names {
            if let v = Field.int(s.child(n)?.stringValue) { total = (total ?? 0) + v }
        }
        if total == nil, let l = s.child(legacy), let v = Field.int(l.child("total")?.stringValue) { total = v }
        return total
    }
}

extension XMLElement {
    var elementChildren: [XMLElement] { (children ?? []).compactMap { $0 as? XMLElement } }
    func child(_ name: String) -> XMLElement? { elementChildren.first { $0.name == name } }
    func children(named name: String) -> [XMLElement] { elementChildren.filter { $0.name == name } }
    func path(_ names: String...) -> String? {
        var e: XMLElement? = self
        for n in names { e = e?.child(n) }
        return e?.stringValue
    }
}
