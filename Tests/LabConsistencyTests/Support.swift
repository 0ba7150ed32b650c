import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

#if canImport(Glibc)
    import Glibc
#endif

/// The repository root and the real captures (`../shared/fixtures/gpu`, or `$APPLIANCE_FIXTURES`).
enum Capture {
    static let repo: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let directory: String = {
        if let d = ProcessInfo.processInfo.environment["APPLIANCE_FIXTURES"] { return d }
        let candidates = [repo + "/../shared/fixtures/gpu", "/work/shared/fixtures/gpu"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }()

    /// A capture without its `# SOURCE:` first line.
    static func text(_ name: String) throws -> String {
        let raw = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
        var lines = raw.split(separator: "\n", omittingEmptySubsequences: false)
        if let first = lines.first, first.hasPrefix("#") { lines.removeFirst() }
        return lines.joined(separator: "\n")
    }
}

/// A lab node's state root in a temporary directory, with a hardware declaration and the driver installed.
/// Tools run in process through `LabNodeDispatcher.runTool`, the same entry the multi-call binary uses.
final class LabNode {
    let root: String
    let context: LabNodeContext
    let hardware: HardwareDeclaration

    init(_ hw: HardwareDeclaration, fabricManager: Bool = false, persistence: Bool = false) throws {
        hardware = hw
        root =
            FileManager.default.temporaryDirectory.appendingPathComponent("labconsistency-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        context = LabNodeContext(
            environment: ["APPLIANCE_LABNODE_ROOT": root, "APPLIANCE_LAB_HOSTNAME": "gpu-01"],
            now: { Date(timeIntervalSince1970: 1_700_000_000) })
        try context.write(HardwareDeclaration.pathOnNode, String(decoding: try hw.jsonData(), as: UTF8.self))
        try context.write(LabPaths.driverInstalled, "")
        if persistence { _ = run("nvidia-smi", "-pm", "1") }
        if fabricManager {
            // The daemon's own start-up path, registered under this (live) process's pid.
            guard case .success = FabricManager(context: context).start(pid: getpid()) else {
                throw LabNodeError.usage("fabric manager stand-in did not start")
            }
        }
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func run(_ tool: String, _ args: String...) -> ToolOutput { run(tool, args) }
    func run(_ tool: String, _ args: [String]) -> ToolOutput {
        LabNodeDispatcher.runTool(tool, args, context: context) ?? ToolOutput(stderr: "no such tool", exitCode: 127)
    }

    /// stdout of a run that must succeed.
    func ok(_ tool: String, _ args: String...) throws -> String {
        let r = run(tool, args)
        try #require(r.exitCode == 0, "\(tool) \(args.joined(separator: " ")) exited \(r.exitCode): \(r.stderr)")
        return r.stdout
    }

    func fault(_ args: String...) throws {
        let r = run("fault", ["set"] + args)
        try #require(r.exitCode == 0, "fault set \(args.joined(separator: " ")): \(r.stdout)\(r.stderr)")
    }

    /// What the preflight collector (`preflight/collect.sh`) records for the GPU sections: the same commands,
    /// stderr and stdout together, the exit status. `dcgm` is the level-`dcgmLevel` table.
    func sections(dcgmLevel: Int = 2) -> [String: CollectedSection] {
        func sec(_ tool: String, _ args: [String]) -> CollectedSection {
            let r = run(tool, args)
            return CollectedSection(output: r.stderr + r.stdout, exitCode: Int(r.exitCode))
        }
        let kernel = context.read(LabPaths.kernelLog) ?? ""
        let xid = kernel.split(separator: "\n").filter { $0.contains("NVRM: Xid") || $0.contains("Xid=") }
        return [
            "nvsmi-xml": sec("nvidia-smi", ["-q", "-x"]),
            "nvsmi-csv": sec(
                "nvidia-smi", ["--query-gpu=" + NvidiaSMIQueryCSV.fields.joined(separator: ","), "--format=csv"]),
            "topo": sec("nvidia-smi", ["topo", "-m"]),
            "nvlink-s": sec("nvidia-smi", ["nvlink", "-s"]),
            "lspci": sec("lspci", ["-nn"]),
            "xid": CollectedSection(output: xid.joined(separator: "\n"), exitCode: 0),
            "dcgm": sec("dcgmi", ["diag", "-r", "\(dcgmLevel)"]),
        ]
    }
}

/// Hardware declarations of the captured machines, field by field from the captures.
enum Captured {
    static func declaration(
        model: String, count: Int, memoryMiB: Int, pciDeviceID: String, links: Int, speed: Double, nvswitches: Int,
        driver: String, cuda: String, vbios: String, watts: Int, pcieGen: Int, sockets: Int = 2, cores: Int = 64,
        infiniband: Int = 1
    ) -> HardwareDeclaration {
        HardwareDeclaration(
            node: "gpu-01", profile: "capture", roles: [.gpuWorker],
            cpu: .init(model: "AMD EPYC 7763", sockets: sockets, coresPerSocket: cores, threadsPerCore: 1),
            memoryGiB: 1024, disks: [.init(name: "nvme0n1", sizeGB: 3840)],
            gpus: .init(
                model: model, count: count, memoryMiB: memoryMiB, pciDeviceID: pciDeviceID, nvlinksPerGPU: links,
                nvlinkSpeedGBps: speed, nvswitches: nvswitches, driverVersion: driver, cudaVersion: cuda,
                vbiosVersion: vbios, powerLimitWatts: watts, pcieGeneration: pcieGen, pcieWidth: 16),
            nics: [.init(name: "eth0", kind: "ethernet", rateGbps: 25)]
                + (0..<infiniband).map { .init(name: "ib\($0)", kind: "infiniband", rateGbps: 200) })
    }

    /// The telegraf A100 `-q -x` machine: 4x A100-SXM4-80GB (attached_gpus 4), driver 535.54.03 / CUDA 12.2,
    /// VBIOS 92.00.36.00.02, 500 W, PCIe gen 4 x16, no NVSwitch (fabric N/A).
    static let a100XML = declaration(
        model: "NVIDIA A100-SXM4-80GB", count: 4, memoryMiB: 81920, pciDeviceID: "20b2", links: 12, speed: 25,
        nvswitches: 0, driver: "535.54.03", cuda: "12.2", vbios: "92.00.36.00.02", watts: 500, pcieGen: 4)

    /// HGX A100 8-GPU with 6 NVSwitches (lspci and topo captures), with the XML capture's GPU and driver.
    static let hgxA100 = declaration(
        model: "NVIDIA A100-SXM4-80GB", count: 8, memoryMiB: 81920, pciDeviceID: "20b2", links: 12, speed: 25,
        nvswitches: 6, driver: "535.54.03", cuda: "12.2", vbios: "92.00.36.00.02", watts: 500, pcieGen: 4)

    /// p4de.24xlarge (nvlink -s and dcgmi diag -r 2 captures): 8x A100 80GB, driver 535.104.12, NVSwitch.
    static let p4de = declaration(
        model: "NVIDIA A100-SXM4-80GB", count: 8, memoryMiB: 81920, pciDeviceID: "20b2", links: 12, speed: 25,
        nvswitches: 6, driver: "535.104.12", cuda: "12.2", vbios: "92.00.36.00.02", watts: 400, pcieGen: 4)

    /// The exporter's H100 SXM5 VM (`-q`, `--query-gpu`, `nvlink -s` captures): one H100 80GB HBM3 of an HGX
    /// board (18 links at 26.562 GB/s, fabric Completed/Success), driver 590.48.01 / CUDA 13.1.
    static let h100VM = declaration(
        model: "NVIDIA H100 80GB HBM3", count: 1, memoryMiB: 81559, pciDeviceID: "2330", links: 18, speed: 26.562,
        nvswitches: 4, driver: "590.48.01", cuda: "13.1", vbios: "96.00.A5.00.01", watts: 700, pcieGen: 5)

    /// The exporter's H200 VM (`--query-gpu` capture): 143771 MiB, device 2335, VBIOS 96.00.A5.00.03.
    static let h200VM = declaration(
        model: "NVIDIA H200", count: 1, memoryMiB: 143_771, pciDeviceID: "2335", links: 18, speed: 26.562,
        nvswitches: 4, driver: "590.48.01", cuda: "13.1", vbios: "96.00.A5.00.03", watts: 700, pcieGen: 5)

    /// nccl-tests#264: 8x H100 80GB HBM3 (2330), driver 560.35.03, NVSwitch, fabric manager not running.
    static let hgxH100 = declaration(
        model: "NVIDIA H100 80GB HBM3", count: 8, memoryMiB: 81559, pciDeviceID: "2330", links: 18, speed: 26.562,
        nvswitches: 4, driver: "560.35.03", cuda: "12.6", vbios: "96.00.89.00.01", watts: 700, pcieGen: 5)

    /// The A10G `dcgmi diag -r 1` machine: 4x A10G (2237), driver 570.195.03, PCIe, no NVLink.
    static let a10g = declaration(
        model: "NVIDIA A10G", count: 4, memoryMiB: 23028, pciDeviceID: "2237", links: 0, speed: 0, nvswitches: 0,
        driver: "570.195.03", cuda: "12.8", vbios: "94.02.75.00.01", watts: 300, pcieGen: 4)
}

extension GPURecord {
    /// The fields a machine's hardware (and its declared driver) determines. Cleared, with the reason:
    /// `index` (which slot a capture kept), `uuid` (synthetic in the lab, masked in captures), `busID` (board
    /// wiring, not in the declaration), `temperatureC` (ambient), `pcieReplays` (the link's error history).
    var hardwareView: GPURecord {
        var r = self
        r.index = nil
        r.uuid = nil
        r.busID = nil
        r.temperatureC = nil
        r.pcieReplays = nil
        return r
    }
}

/// Preflight verdicts of the GPU and GPU-health checks for one node's sections.
func verdicts(
    _ sections: [String: CollectedSection], profile: HardwareProfile, driver: String, fabricManagerActive: Bool = true
) throws -> [String: CheckStatus] {
    let catalog = try CheckCatalog.load(directory: Capture.repo + "/preflight/checks")
    var prof = profile
    prof.gpuStack.driverVersions.insert(driver, at: 0)
    var all = sections
    // Not GPU-tool output: the same on both sides (fabric manager's unit state, at the driver's version).
    let fm = fabricManagerActive ? "active=active enabled=enabled" : "active=failed enabled=enabled"
    all["services"] = CollectedSection(
        output: "nvidia-fabricmanager \(fm)\nnvidia-persistenced active=active enabled=enabled", exitCode: 0)
    all["fabricmanager"] = CollectedSection(output: "version=\(driver)", exitCode: 0)
    all["nvidia-proc"] = CollectedSection(
        output: "NVRM version: NVIDIA UNIX x86_64 Kernel Module  \(driver)", exitCode: 0)
    let facts = NodeFacts(sections: all, sentAt: 1, receivedAt: 2)
    var out: [String: CheckStatus] = [:]
    for c in catalog.checks where c.scope == .node && (c.id.hasPrefix("gpu.") || c.id.hasPrefix("health.")) {
        let ctx = NodeContext(
            node: "gpu-01", address: "10.0.0.1", roles: [.gpuWorker], facts: facts, profile: prof, site: nil, check: c,
            bundleGiB: 0)
        let analyzer = try #require(Analyzers.node[c.id])
        out[c.id] = analyzer(ctx).status(severity: c.severity).0
    }
    return out
}

func profile(_ name: String) throws -> HardwareProfile {
    try ProfileCatalog(directory: Capture.repo + "/profiles").load(name)
}
