import Foundation

/// The `nvidia-smi` stand-in. Exit codes follow the real tool: 0 ok, 2 invalid argument, 6 not found,
/// 9 driver not loaded, 15 GPU fell off the bus, 18 driver/library version mismatch.
public struct NvidiaSMI: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    static let noDriver =
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n"
    static let badArgs = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n\n"

    public func run(_ args: [String]) -> ToolOutput {
        let inv: GPUInventory
        do {
            inv = try GPUInventory.load(context: context)
        } catch {
            return .fail(255, stderr: "nvidia-smi (lab stand-in): \(error)")
        }
        switch inv.driver {
        case .notInstalled:
            return ToolOutput(stdout: Self.noDriver, exitCode: 9)
        case .mismatch(_, let lib):
            return ToolOutput(
                stdout: "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: \(lib)\n",
                exitCode: 18)
        case .loaded:
            break
        }
        if args.first == "topo" { return topo(Array(args.dropFirst()), inv) }
        if args.first == "nvlink" { return nvlink(Array(args.dropFirst()), inv) }

        var query = false, xml = false, list = false
        var select: String?
        var queryGPU: String?
        var format: String?
        var pm: String?
        var i = 0
        while i < args.count {
            let a = args[i]
            func next() -> String? {
                i += 1
                return i < args.count ? args[i] : nil
            }
            switch a {
            case "-q", "--query": query = true
            case "-x", "--xml-format": xml = true
            case "-L", "--list-gpus": list = true
            case "-i", "--id":
                guard let v = next() else { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
                select = v
            case "-pm", "--persistence-mode":
                guard let v = next() else { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
                pm = v
            case "-d", "--display", "-f", "--filename":
                _ = next()
            case "-h", "--help":
                return .ok("NVIDIA System Management Interface -- v\(inv.driverVersion) (lab stand-in)\n")
            case "--version":
                return .ok(
                    "NVIDIA-SMI version  : \(inv.driverVersion)\nNVML version        : \(inv.driverVersion.split(separator: ".").prefix(2).joined(separator: "."))\nDRIVER version      : \(inv.driverVersion)\nCUDA Version        : \(inv.cudaVersion)\n"
                )
            default:
                if a.hasPrefix("--query-gpu=") {
                    queryGPU = String(a.dropFirst(12))
                } else if a.hasPrefix("--format=") {
                    format = String(a.dropFirst(9))
                } else if a.hasPrefix("--id=") || a.hasPrefix("-i=") {
                    select = String(a.split(separator: "=", maxSplits: 1)[1])
                } else {
                    return ToolOutput(stdout: Self.badArgs, exitCode: 2)
                }
            }
            i += 1
        }

        // Which GPUs: all that answer, or the one named by -i (index, bus id or UUID).
        var gpus = inv.gpus
        var lostNotes = inv.lost.map { lostLine($0.busID) }
        if let sel = select {
            if let lost = inv.lost.first(where: { "\($0.index)" == sel || $0.busID.hasSuffix(sel) }) {
                return ToolOutput(stdout: lostLine(lost.busID), exitCode: 15)
            }
            gpus = inv.gpus.filter { "\($0.index)" == sel || $0.uuid == sel || $0.busID.hasSuffix(sel) }
            lostNotes = []
            if gpus.isEmpty { return ToolOutput(stdout: "No devices were found\n", exitCode: 6) }
        }
        if gpus.isEmpty && lostNotes.isEmpty { return ToolOutput(stdout: "No devices were found\n", exitCode: 6) }
        let failCode: Int32 = lostNotes.isEmpty ? 0 : 15
        let notes = lostNotes.joined()

        if let pm {
            guard pm == "0" || pm == "1" || pm == "ENABLED" || pm == "DISABLED" else {
                return ToolOutput(stdout: Self.badArgs, exitCode: 2)
            }
            let on = pm == "1" || pm == "ENABLED"
            var modes = GPUInventory.persistenceModes(context: context)
            var out = ""
            for g in gpus {
                modes[g.index] = on
                out += "\(on ? "Enabled" : "Disabled") persistence mode for GPU \(g.busID).\n"
            }
            do {
                try context.write(
                    LabPaths.persistenceMode,
                    modes.keys.sorted().map { "\($0) \(modes[$0] == true ? "Enabled" : "Disabled")\n" }.joined())
            } catch {
                return .fail(255, stderr: "nvidia-smi (lab stand-in): cannot write state: \(error)")
            }
            return ToolOutput(stdout: notes + out + "All done.\n", exitCode: failCode)
        }
        if let q = queryGPU {
            guard let fs = format, let f = NvidiaSMIQueryGPU.parseFormat(fs) else {
                return ToolOutput(stdout: Self.badArgs, exitCode: 2)
            }
            var r = NvidiaSMIQueryGPU.run(fieldList: q, format: f, inv: inv, gpus: gpus, now: context.now())
            if r.exitCode == 0 {
                r.stderr = notes
                r.exitCode = failCode
            }
            return r
        }
        if list {
            let text = gpus.map { "GPU \($0.index): \($0.name) (UUID: \($0.uuid))\n" }.joined()
            return ToolOutput(stdout: text, stderr: notes, exitCode: failCode)
        }
        if query {
            let body =
                xml
                ? NvidiaSMIQuery.xml(inv, gpus: gpus, now: context.now())
                : NvidiaSMIQuery.text(inv, gpus: gpus, now: context.now())
            return ToolOutput(stdout: body, stderr: notes, exitCode: failCode)
        }
        if xml { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
        return ToolOutput(stdout: table(inv, gpus), stderr: notes, exitCode: failCode)
    }

    func lostLine(_ busID: String) -> String {
        "Unable to determine the device handle for GPU\(busID.dropFirst(4)): GPU is lost.  Reboot the system to recover this GPU\n"
    }

    // MARK: the default table (format of driver 560, as in the 8x H100 capture)

    func table(_ inv: GPUInventory, _ gpus: [LabGPU]) -> String {
        func l(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func r(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        let bar = "+" + String(repeating: "-", count: 89) + "+\n"
        let sep = "+-----------------------------------------+------------------------+----------------------+\n"
        var o = NvidiaSMIQuery.timestamp(context.now()) + "\n" + bar
        let head =
            l(" NVIDIA-SMI \(inv.driverVersion)", 35) + l("Driver Version: \(inv.driverVersion)", 31)
            + "CUDA Version: \(inv.cudaVersion)"
        o += "|" + l(head, 89) + "|\n"
        o += "|-----------------------------------------+------------------------+----------------------+\n"
        o += "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n"
        o += "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n"
        o += "|                                         |                        |               MIG M. |\n"
        o += "|=========================================+========================+======================|\n"
        for g in gpus {
            let ecc = g.eccEnabled ? "\(g.eccUncorrectableVolatile)" : "Off"
            o += "|" + " " + r("\(g.index)", 3) + "  " + l(g.name, 31) + r(g.persistenceMode ? "On" : "Off", 3) + " "
            o += "|" + r(g.busID, 19) + " Off " + "|" + r(ecc, 21) + " |\n"
            o += "|" + " N/A" + r("\(g.temperatureC)C", 6) + r("P0", 6)
            o += r("\(Int(g.powerDrawW))W", 16) + " / " + r("\(g.powerLimitW)W", 5) + " "
            o += "|" + r("\(g.memoryUsedMiB + 1)MiB", 11) + " / " + r("\(g.memoryTotalMiB)MiB", 9) + " "
            o += "|" + r("0%", 8) + r("Default", 13) + " |\n"
            o += "|                                         |                        |" + r("Disabled", 21) + " |\n"
            o += sep
        }
        o += "\n" + bar
        o += "| Processes:                                                                              |\n"
        o += "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |\n"
        o += "|        ID   ID                                                               Usage      |\n"
        o += "|=========================================================================================|\n"
        o += "|  No running processes found                                                             |\n"
        o += bar
        return o
    }

    // MARK: nvlink -s | -e

    func nvlink(_ args: [String], _ inv: GPUInventory) -> ToolOutput {
        var gpus = inv.gpus
        var i = 0
        var status = false
        var errorCounters = false
        while i < args.count {
            switch args[i] {
            case "-s", "--status": status = true
            case "-e", "--errorcounters": errorCounters = true
            case "-i", "--id":
                i += 1
                guard i < args.count else { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
                let sel = args[i]
                gpus = gpus.filter { "\($0.index)" == sel || $0.uuid == sel }
                if gpus.isEmpty { return ToolOutput(stdout: "No devices were found\n", exitCode: 6) }
            default: return ToolOutput(stdout: Self.badArgs, exitCode: 2)
            }
            i += 1
        }
        guard status != errorCounters else { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
        var o = ""
        for g in gpus {
            o += "GPU \(g.index): \(g.name) (UUID: \(g.uuid))\n"
            for (n, up) in g.nvlinks.enumerated() {
                if errorCounters {
                    // The lab models no link-level errors: every counter of every link reads 0.
                    for counter in ["Replay Errors", "Recovery Errors", "CRC Errors"] {
                        o += "\t Link \(n): \(counter): 0\n"
                    }
                } else {
                    o += "\t Link \(n): " + (up ? "\(Self.speed(g.nvlinkSpeedGBps)) GB/s" : "<inactive>") + "\n"
                }
            }
        }
        return ToolOutput(
            stdout: o, stderr: inv.lost.map { lostLine($0.busID) }.joined(), exitCode: inv.lost.isEmpty ? 0 : 15)
    }

    static func speed(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format: "%.3f", v)
    }

    // MARK: topo -m (tab separated, as the driver prints it)

    func topo(_ args: [String], _ inv: GPUInventory) -> ToolOutput {
        guard args == ["-m"] || args == ["--matrix"] else { return ToolOutput(stdout: Self.badArgs, exitCode: 2) }
        let hw = inv.hardware
        let gpus = inv.gpus
        let nics = hw.nics.filter { $0.kind == "infiniband" || $0.rateGbps >= 100 }
        let gpuCount = hw.gpus?.count ?? 0
        let switches = max(1, gpuCount / 2)
        let sockets = max(1, hw.cpu.sockets)
        func socketOf(switch s: Int) -> Int { s * sockets / switches }
        func gpuSwitch(_ g: LabGPU) -> Int { g.index / 2 }
        func nicSwitch(_ j: Int) -> Int { j * switches / max(1, nics.count) }
        func pcie(_ a: Int, _ b: Int) -> String {
            if a == b { return "PXB" }
            return socketOf(switch: a) == socketOf(switch: b) ? "NODE" : "SYS"
        }
        let nvswitch = inv.hasNVSwitch
        func gpuPair(_ a: LabGPU, _ b: LabGPU) -> String {
            if a.index == b.index { return " X " }
            let la = a.nvlinks.filter { $0 }.count, lb = b.nvlinks.filter { $0 }.count
            if nvswitch, min(la, lb) > 0 { return "NV\(min(la, lb))" }
            if !nvswitch, la > 0, a.index / 2 == b.index / 2 { return "NV\(min(la, lb))" }
            return pcie(gpuSwitch(a), gpuSwitch(b))
        }
        let cores = hw.cpu.coresPerSocket
        let total = cores * sockets
        func affinity(_ socket: Int) -> String {
            var s = "\(socket * cores)-\(socket * cores + cores - 1)"
            if hw.cpu.threadsPerCore > 1 { s += ",\(total + socket * cores)-\(total + socket * cores + cores - 1)" }
            return s
        }
        let nicNames = nics.indices.map { "NIC\($0)" }
        var o = "\t" + (gpus.map { "GPU\($0.index)" } + nicNames).joined(separator: "\t")
        o += "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n"
        for a in gpus {
            var row = ["GPU\(a.index)"] + gpus.map { gpuPair(a, $0) }
            row += nics.indices.map { pcie(gpuSwitch(a), nicSwitch($0)) }
            row += [affinity(a.socket), "\(a.socket)", "N/A"]
            o += row.joined(separator: "\t") + "\n"
        }
        for j in nics.indices {
            var row = ["NIC\(j)"] + gpus.map { pcie(nicSwitch(j), gpuSwitch($0)) }
            row += nics.indices.map { k in k == j ? " X " : pcie(nicSwitch(j), nicSwitch(k)) }
            o += row.joined(separator: "\t") + "\n"
        }
        o += """

            Legend:

              X    = Self
              SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
              NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
              PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
              PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
              PIX  = Connection traversing at most a single PCIe bridge
              NV#  = Connection traversing a bonded set of # NVLinks

            """
        if !nics.isEmpty {
            o += "\nNIC Legend:\n\n" + nics.indices.map { "  NIC\($0): mlx5_\($0)\n" }.joined()
        }
        return ToolOutput(
            stdout: o, stderr: inv.lost.map { lostLine($0.busID) }.joined(), exitCode: inv.lost.isEmpty ? 0 : 15)
    }
}
