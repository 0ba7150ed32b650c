import Foundation

/// `nvidia-smi -q` (human text: indented `Key : Value` lines). Handles both "Clocks Throttle Reasons" (525) and
/// "Clocks Event Reasons" (550+), and lines before the header (shell prompts, comments) are ignored.
public enum NvidiaSMIText {
    /// A line of the indented tree.
    struct Node {
        var key: String
        var value: String?
        var indent: Int
        var children: [Node] = []

        func child(_ k: String) -> Node? { children.first { $0.key == k } }
        func path(_ keys: String...) -> String? {
            var n: Node? = self
            for k in keys { n = n?.child(k) }
            return n?.value
        }
        /// The first descendant with this key, depth first.
        func find(_ k: String) -> Node? {
            for c in children {
                if c.key == k { return c }
                if let f = c.find(k) { return f }
            }
            return nil
        }
    }

    public static func parse(_ text: String) throws(ParseError) -> NvidiaSMIReport {
        var report = NvidiaSMIReport()
        var gpus: [Node] = []
        var stack: [Node] = []  // open nodes, innermost last

        func closeTo(_ indent: Int) {
            while let last = stack.last, last.indent >= indent {
                stack.removeLast()
                if stack.isEmpty {
                    gpus.append(last)
                } else {
                    stack[stack.count - 1].children.append(last)
                }
            }
        }

        var sawHeader = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw).replacingOccurrences(of: "\t", with: "    ")
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            let indent = line.prefix { $0 == " " }.count
            let body = line.trimmingCharacters(in: .whitespaces)
            var key = body
            var value: String?
            if let colon = body.range(of: " : ")
                ?? (body.hasSuffix(" :") ? body.range(of: " :", options: .backwards) : nil)
            {
                key = body[..<colon.lowerBound].trimmingCharacters(in: .whitespaces)
                value = body[colon.upperBound...].trimmingCharacters(in: .whitespaces)
            }
            if indent == 0 {
                closeTo(0)
                if key == "Driver Version" {
                    report.driverVersion = Field.clean(value); sawHeader = true
                } else if key == "CUDA Version" {
                    report.cudaVersion = Field.clean(value)
                } else if key == "Attached GPUs" {
                    report.attachedGPUs = Field.int(value); sawHeader = true
                } else if value == nil, key.hasPrefix("GPU "), key.contains(":") {
                    stack.append(Node(key: key, value: String(key.dropFirst(4)), indent: 0))
                }
                continue
            }
            guard !stack.isEmpty else { continue }
            closeTo(indent)
            stack.append(Node(key: key, value: value, indent: indent))
        }
        closeTo(0)
        guard sawHeader || !gpus.isEmpty else {
            throw ParseError("nvidia-smi -q", "no 'Driver Version' or 'GPU' section found")
        }
        for (i, g) in gpus.enumerated() {
            report.gpus.append(record(g, index: i, driver: report.driverVersion))
        }
        return report
    }

    static func record(_ g: Node, index: Int, driver: String?) -> GPURecord {
        var r = GPURecord()
        r.index = Field.int(g.child("Minor Number")?.value) ?? index
        r.name = Field.clean(g.child("Product Name")?.value)
        r.uuid = Field.clean(g.child("GPU UUID")?.value)
        r.busID = g.value
        r.pciDeviceID = Field.pciDevice(g.path("PCI", "Device Id"))
        r.memoryTotalMiB = Field.int(g.path("FB Memory Usage", "Total"))
        r.driverVersion = driver
        r.vbiosVersion = Field.clean(g.child("VBIOS Version")?.value)
        r.persistenceMode = Field.clean(g.child("Persistence Mode")?.value)
        let ecc = g.child("ECC Mode") ?? g.child("Ecc Mode")  // 525 prints "Ecc Mode"
        r.eccModeCurrent = Field.clean(ecc?.child("Current")?.value)
        r.eccModePending = Field.clean(ecc?.child("Pending")?.value)
        if let errors = g.child("ECC Errors") {
            func total(_ scope: String, correctable: Bool) -> Int? {
                guard let s = errors.child(scope) else { return nil }
                var t: Int?
                for c in s.children {
                    let k = c.key.lowercased()
                    let matches =
                        correctable
                        ? (k.hasSuffix(" correctable") && !k.contains("uncorrectable")) : k.contains("uncorrectable")
                    if matches, let v = Field.int(c.value) { t = (t ?? 0) + v }
                    // Older drivers: "Single Bit"/"Double Bit" sections with a "Total".
                    if c.key == (correctable ? "Single Bit" : "Double Bit"), let v = Field.int(c.child("Total")?.value)
                    {
                        t = (t ?? 0) + v
                    }
                }
                return t
            }
            r.eccVolatileUncorrected = total("Volatile", correctable: false)
            r.eccAggregateUncorrected = total("Aggregate", correctable: false)
            r.eccAggregateCorrected = total("Aggregate", correctable: true)
        }
        if let rr = g.child("Remapped Rows") {
            r.remappedRowsPending = Field.yesNo(rr.child("Pending")?.value)
            r.remappedRowsFailure = Field.yesNo(rr.child("Remapping Failure Occurred")?.value)
            r.remappedRowsUncorrectable = Field.int(rr.child("Uncorrectable Error")?.value)
        }
        r.retiredPagesPending = Field.yesNo(
            g.child("Retired Pages")?.child("Pending Page Blacklist")?.value
                ?? g.child("Retired Pages")?.child("Pending")?.value)
        if let link = g.find("GPU Link Info") {
            r.pcieGenCurrent = Field.int(link.child("PCIe Generation")?.child("Current")?.value)
            r.pcieGenMax = Field.int(link.child("PCIe Generation")?.child("Max")?.value)
            r.pcieWidthCurrent = Field.int(link.child("Link Width")?.child("Current")?.value)
            r.pcieWidthMax = Field.int(link.child("Link Width")?.child("Max")?.value)
        }
        r.pcieReplays = Field.int(g.child("PCI")?.child("Replays Since Reset")?.value)
        r.migModeCurrent = Field.clean(g.path("MIG Mode", "Current"))
        r.migModePending = Field.clean(g.path("MIG Mode", "Pending"))
        r.performanceState = Field.clean(g.child("Performance State")?.value)
        if let reasons = g.child("Clocks Event Reasons") ?? g.child("Clocks Throttle Reasons")
            ?? g.child("Clocks Throttle Reasons")
        {
            var active: [String] = []
            func visit(_ n: Node) {
                let k = n.key.lowercased().replacingOccurrences(of: " ", with: "_")
                if Field.hardwareClockEvents.contains(k), Field.clean(n.value) == "Active" { active.append(k) }
                n.children.forEach(visit)
            }
            reasons.children.forEach(visit)
            r.activeHardwareClockEvents = active
        }
        r.temperatureC = Field.int(g.path("Temperature", "GPU Current Temp"))
        let power = g.child("GPU Power Readings") ?? g.child("Power Readings")
        r.powerLimitW = Field.double(power?.child("Current Power Limit")?.value ?? power?.child("Power Limit")?.value)
        r.defaultPowerLimitW = Field.double(power?.child("Default Power Limit")?.value)
        r.fabricState = Field.clean(g.path("Fabric", "State"))
        r.fabricStatus = Field.clean(g.path("Fabric", "Status"))
        return r
    }
}

/// `nvidia-smi --query-gpu=... --format=csv` (with header; units in header and cells are tolerated, `[N/A]` is nil).
public enum NvidiaSMIQueryCSV {
    /// The fields the collector asks for, in order.
    public static let fields = [
        "index", "name", "uuid", "pci.bus_id", "pci.device_id", "memory.total", "driver_version", "vbios_version",
        "persistence_mode", "ecc.mode.current", "ecc.mode.pending", "ecc.errors.uncorrected.volatile.total",
        "ecc.errors.uncorrected.aggregate.total", "ecc.errors.corrected.aggregate.total", "retired_pages.pending",
        "pcie.link.gen.current", "pcie.link.gen.max", "pcie.link.width.current", "pcie.link.width.max",
        "mig.mode.current", "mig.mode.pending", "pstate", "clocks_event_reasons.hw_slowdown",
        "clocks_event_reasons.hw_thermal_slowdown", "clocks_event_reasons.hw_power_brake_slowdown", "temperature.gpu",
        "power.limit", "power.default_limit", "fabric.state", "fabric.status",
    ]

    public static func parse(_ text: String) throws(ParseError) -> [GPURecord] {
        let lines = text.split(separator: "\n").map { String($0).trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard
            let headerIndex = lines.firstIndex(where: {
                $0.hasPrefix("index") || $0.hasPrefix("timestamp") || $0.contains("name,") || $0.contains("name, ")
            })
        else { throw ParseError("nvidia-smi --query-gpu", "no CSV header") }
        let header = lines[headerIndex].split(separator: ",", omittingEmptySubsequences: false).map {
            // "memory.total [MiB]" -> "memory.total"
            String($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        }
        var out: [GPURecord] = []
        for line in lines[(headerIndex + 1)...] {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard cells.count == header.count else {
                throw ParseError("nvidia-smi --query-gpu", "a row has \(cells.count) cells, the header \(header.count)")
            }
            var row: [String: String] = [:]
            for (h, c) in zip(header, cells) { row[h] = c }
            var r = GPURecord()
            r.index = Field.int(row["index"])
            r.name = Field.clean(row["name"])
            r.uuid = Field.clean(row["uuid"])
            r.busID = Field.clean(row["pci.bus_id"])
            r.pciDeviceID = Field.pciDevice(row["pci.device_id"])
            r.memoryTotalMiB = Field.int(row["memory.total"])
            r.driverVersion = Field.clean(row["driver_version"])
            r.vbiosVersion = Field.clean(row["vbios_version"])
            r.persistenceMode = Field.clean(row["persistence_mode"])
            r.eccModeCurrent = Field.clean(row["ecc.mode.current"])
            r.eccModePending = Field.clean(row["ecc.mode.pending"])
            r.eccVolatileUncorrected = Field.int(row["ecc.errors.uncorrected.volatile.total"])
            r.eccAggregateUncorrected = Field.int(row["ecc.errors.uncorrected.aggregate.total"])
            r.eccAggregateCorrected = Field.int(row["ecc.errors.corrected.aggregate.total"])
            r.retiredPagesPending = Field.yesNo(row["retired_pages.pending"])
            r.pcieGenCurrent = Field.int(row["pcie.link.gen.current"])
            r.pcieGenMax = Field.int(row["pcie.link.gen.max"])
            r.pcieWidthCurrent = Field.int(row["pcie.link.width.current"])
            r.pcieWidthMax = Field.int(row["pcie.link.width.max"])
            r.migModeCurrent = Field.clean(row["mig.mode.current"])
            r.migModePending = Field.clean(row["mig.mode.pending"])
            r.performanceState = Field.clean(row["pstate"])
            var active: [String] = []
            var anyClock = false
            for e in Field.hardwareClockEvents {
                let v = row["clocks_event_reasons.\(e)"] ?? row["clocks_throttle_reasons.\(e)"]
                if v != nil { anyClock = true }
                if Field.clean(v) == "Active" { active.append(e) }
            }
            r.activeHardwareClockEvents = anyClock ? active : nil
            r.temperatureC = Field.int(row["temperature.gpu"])
            r.powerLimitW = Field.double(row["power.limit"])
            r.defaultPowerLimitW = Field.double(row["power.default_limit"])
            r.fabricState = Field.clean(row["fabric.state"])
            r.fabricStatus = Field.clean(row["fabric.status"])
            out.append(r)
        }
        return out
    }
}
