import Foundation

/// The `dcgmi` stand-in: `dcgmi diag -r 1|2|3` (also `--run`, `short|medium|long`) and `dcgmi discovery -l`.
/// Prints the table of DCGM 3.3 as in the real captures. Exit status: 0 when every test passes, 1 when any
/// fails (real dcgmi returns a non-zero DCGM status whose exact value is not captured here).
public struct DCGMI: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    static let version = "3.3.8"
    static let noHostEngine =
        "Error: unable to establish a connection to the specified host: localhost\nError: Unable to connect to host engine. Host engine connection invalid/disconnected.\n"

    public func run(_ args: [String]) -> ToolOutput {
        guard let inv = try? GPUInventory.load(context: context) else {
            return .fail(1, stderr: "dcgmi (lab stand-in): no hardware declaration at \(context.hardwarePath)")
        }
        guard case .loaded = inv.driver else { return ToolOutput(stdout: Self.noHostEngine, exitCode: 1) }
        switch args.first {
        case "diag": return diag(Array(args.dropFirst()), inv)
        case "discovery":
            var o = "\(inv.gpus.count) GPU\(inv.gpus.count == 1 ? "" : "s") found.\n"
            for g in inv.gpus {
                o += "GPU \(g.index): \(g.name)  Device Information: PCI Bus ID: \(g.busID)  Device UUID: \(g.uuid)\n"
            }
            return .ok(o)
        default:
            return .fail(1, stderr: "Usage: dcgmi subsystem\n  subsystems: diag, discovery (lab stand-in)")
        }
    }

    struct Row {
        var name: String
        var value: String
    }
    enum Line {
        case section(String, closed: Bool)
        case row(Row)
    }

    func diag(_ args: [String], _ inv: GPUInventory) -> ToolOutput {
        var level = 1
        var i = 0
        while i < args.count {
            let a = args[i]
            if a == "-r" || a == "--run" {
                i += 1
                guard i < args.count else { return .fail(1, stderr: "Error: -r requires a value") }
                switch args[i] {
                case "1", "short": level = 1
                case "2", "medium": level = 2
                case "3", "long": level = 3
                case "4", "xlong": level = 4
                default:
                    return .fail(1, stderr: "Error: Invalid run level '\(args[i])'. Please use 1, 2, 3, or 4.")
                }
            } else if a == "-p" || a == "--parameters" || a == "-g" || a == "--group" || a == "-i" {
                i += 1
            }
            i += 1
        }
        var failed = false
        var lines: [Line] = [.section("Metadata", closed: false)]
        lines.append(.row(Row(name: "DCGM Version", value: Self.version)))
        lines.append(.row(Row(name: "Driver Version Detected", value: inv.driverVersion)))
        lines.append(
            .row(Row(name: "GPU Device IDs Detected", value: inv.gpus.map(\.pciDeviceID).joined(separator: ","))))
        lines.append(.section("Deployment", closed: false))
        lines.append(.row(Row(name: "Denylist", value: "Pass")))
        if inv.lost.isEmpty {
            lines.append(.row(Row(name: "NVML Library", value: "Pass")))
        } else {
            failed = true
            lines.append(.row(Row(name: "NVML Library", value: "Fail")))
            for l in inv.lost {
                lines.append(
                    .row(
                        Row(
                            name: "Warning",
                            value:
                                "GPU \(l.index) is lost: GPU has fallen off the bus (Xid 79). Check DCGM and system logs for errors. Reset GPU. Rerun diagnostics."
                        )))
            }
        }
        lines.append(.row(Row(name: "CUDA Main Library", value: "Pass")))
        lines.append(.row(Row(name: "Permissions and OS Blocks", value: "Pass")))
        lines.append(.row(Row(name: "Persistence Mode", value: "Pass")))
        let off = inv.gpus.filter { !$0.persistenceMode }
        if !off.isEmpty {
            var info = off.map {
                "Persistence mode for GPU \($0.index) is disabled. Enable persistence mode by running \"nvidia-smi -i <gpuId> -pm 1 \" as root."
            }.joined(separator: ",")
            if info.count > 511 { info = String(info.prefix(511)) }
            lines.append(.row(Row(name: "Info", value: info)))
        }
        lines.append(.row(Row(name: "Environment Variables", value: "Pass")))
        let ecc = inv.gpus.filter(\.remappedRowsPending)
        lines.append(.row(Row(name: "Page Retirement/Row Remap", value: ecc.isEmpty ? "Pass" : "Fail")))
        for g in ecc {
            failed = true
            lines.append(
                .row(
                    Row(
                        name: "Warning",
                        value:
                            "GPU \(g.index) has uncorrectable memory errors and row remappings are pending. Drain the GPU and reset it or reboot the node to resolve this issue."
                    )))
        }
        lines.append(.row(Row(name: "Graphics Processes", value: "Pass")))
        lines.append(.row(Row(name: "Inforom", value: "Pass")))

        if level >= 2 {
            let fabricDown = inv.hasNVSwitch && !inv.fabricManagerRunning
            let linkDown = inv.gpus.filter { $0.nvlinks.contains(false) }
            lines.append(.section("Integration", closed: true))
            if fabricDown {
                lines.append(.row(Row(name: "PCIe", value: "Skip - All")))
            } else if linkDown.isEmpty {
                lines.append(.row(Row(name: "PCIe", value: "Pass - All")))
            } else {
                failed = true
                let bad = Set(linkDown.map(\.index))
                let good = inv.gpus.map(\.index).filter { !bad.contains($0) }
                if !good.isEmpty {
                    lines.append(
                        .row(
                            Row(
                                name: "PCIe",
                                value:
                                    "Pass - GPU\(good.count > 1 ? "s" : ""): \(good.map(String.init).joined(separator: ", "))"
                            )))
                }
                lines.append(
                    .row(
                        Row(
                            name: good.isEmpty ? "PCIe" : "",
                            value:
                                "Fail - GPU\(bad.count > 1 ? "s" : ""): \(bad.sorted().map(String.init).joined(separator: ", "))"
                        )))
                for g in linkDown {
                    for (l, up) in g.nvlinks.enumerated() where !up {
                        lines.append(
                            .row(
                                Row(
                                    name: "Warning",
                                    value:
                                        "GPU \(g.index)'s NvLink link \(l) is currently down Check DCGM and system logs for errors. Reset GPU. Restart DCGM. Rerun diagnostics."
                                )))
                    }
                }
            }
            lines.append(.section("Hardware", closed: true))
            if fabricDown {
                failed = true
                lines.append(.row(Row(name: "GPU Memory", value: "Fail - All")))
                for g in inv.gpus {
                    lines.append(
                        .row(
                            Row(
                                name: "Warning",
                                value:
                                    "GPU \(g.index) Error using CUDA API cuInit Check DCGM and system logs for errors. Reset GPU. Restart DCGM. Rerun diagnostics. Unable to initialize CUDA library: 'system not yet initialized'. . Please check if a CUDA sample program can be run successfully on this host. Refer to https://github.com/nvidia/cuda-samples"
                            )))
                }
            } else {
                lines.append(.row(Row(name: "GPU Memory", value: "Pass - All")))
            }
            lines.append(.section("Stress", closed: true))
            if level >= 3 {
                let v = fabricDown ? "Skip - All" : "Pass - All"
                if !fabricDown {
                    lines.append(.row(Row(name: "Targeted Stress", value: v)))
                    lines.append(.row(Row(name: "Targeted Power", value: v)))
                }
                lines.append(.row(Row(name: "Memory Bandwidth", value: v)))
                lines.append(.row(Row(name: "EUD Test", value: "Skip - All")))
            }
        }
        return ToolOutput(stdout: render(lines), exitCode: failed ? 1 : 0)
    }

    func render(_ lines: [Line]) -> String {
        func pad(_ s: String, _ n: Int, _ c: Character = " ") -> String {
            s.count >= n ? s : s + String(repeating: c, count: n - s.count)
        }
        let dashes2 = String(repeating: "-", count: 48)
        var o = "Successfully ran diagnostic for group.\n"
        o += "+---------------------------+------------------------------------------------+\n"
        o += "| Diagnostic                | Result                                         |\n"
        o += "+===========================+================================================+\n"
        for l in lines {
            switch l {
            case .section(let name, let closed):
                let left = pad("-----  \(name)  ", 27, "-")
                o += closed ? "+\(left)+\(dashes2)+\n" : "|\(left)+\(dashes2)|\n"
            case .row(let r):
                var chunks: [String] = []
                var rest = Substring(r.value)
                repeat {
                    chunks.append(String(rest.prefix(45)))
                    rest = rest.dropFirst(45)
                } while !rest.isEmpty
                for (n, c) in chunks.enumerated() {
                    o += "| " + pad(n == 0 ? r.name : "", 26) + "| " + pad(c, 47) + "|\n"
                }
            }
        }
        o += "+---------------------------+------------------------------------------------+\n"
        return o
    }
}
