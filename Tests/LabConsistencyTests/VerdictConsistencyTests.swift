import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

/// The same HGX A100 node twice: once as the stand-ins print it (faults injected through the fault files),
/// once from the real captures (faults edited into copies by the test). Preflight's GPU and GPU-health
/// analyzers must reach the same verdict on both.
@Suite("Preflight verdicts agree on stand-in output and on captures")
struct VerdictConsistencyTests {
    /// The captures of an HGX A100 8-GPU node with fabric manager, scaled to 8 GPUs where upstream kept one
    /// (the `-q -x` capture has one `<gpu>`, the `nvlink -s` capture GPU 0). MIG is switched off in the XML,
    /// since the stand-ins do not model it, and the remapped rows are then filled in as a MIG-off A100 prints
    /// them (DTD v12 tags; NVML reports them N/A only while MIG is on).
    struct CapturedNode {
        var gpuBlocks: [String]
        var xmlHead: String
        var xmlTail: String
        var nvlink: [String]
        var sections: [String: CollectedSection]

        init() throws {
            let xml = try Capture.text("nvidia-smi-q-x_a100-sxm4-80gb_mig.xml")
            let start = try #require(xml.range(of: "    <gpu id="))
            let end = try #require(xml.range(of: "</gpu>\n", options: .backwards))
            let gpu = String(xml[start.lowerBound..<end.upperBound])
                .replacingOccurrences(
                    of: "<current_mig>Enabled</current_mig>", with: "<current_mig>Disabled</current_mig>"
                )
                .replacingOccurrences(
                    of: "<pending_mig>Enabled</pending_mig>", with: "<pending_mig>Disabled</pending_mig>"
                )
                .replacingOccurrences(
                    of: "<remapped_rows>N/A</remapped_rows>",
                    with: """
                        <remapped_rows>
                                    <remapped_row_corr>0</remapped_row_corr>
                                    <remapped_row_unc>0</remapped_row_unc>
                                    <remapped_row_pending>No</remapped_row_pending>
                                    <remapped_row_failure>No</remapped_row_failure>
                                </remapped_rows>
                        """)
            gpuBlocks = (0..<8).map {
                gpu.replacingOccurrences(
                    of: "<minor_number>1</minor_number>", with: "<minor_number>\($0)</minor_number>")
            }
            xmlHead = String(xml[..<start.lowerBound]).replacingOccurrences(
                of: "<attached_gpus>4</attached_gpus>", with: "<attached_gpus>8</attached_gpus>")
            xmlTail = String(xml[end.upperBound...])
            let link0 = try Capture.text("nvidia-smi-nvlink-s_a100-sxm4-80gb_p4de_12links")
                .split(separator: "\n").filter { $0.hasPrefix("GPU") || $0.hasPrefix("  Link") }.joined(separator: "\n")
            nvlink = (0..<8).map { link0.replacingOccurrences(of: "GPU 0:", with: "GPU \($0):") }
            let lspci = try Capture.text("lspci-nn-grep-nvidia_hgx-a100-sxm4-80gb_8gpu-6nvswitch")
                .components(separatedBy: "\n\n")[0]
            func s(_ o: String) -> CollectedSection { CollectedSection(output: o, exitCode: 0) }
            sections = [
                "topo": s(try Capture.text("nvidia-smi-topo-m_hgx-a100-8gpu_2x-epyc-7763_1nic")),
                "lspci": s(lspci), "xid": s(""),
                "dcgm": s(try Capture.text("dcgmi-diag-r2_8x-a100-sxm4-80gb_p4de_pass")),
            ]
            render()
        }

        mutating func render() {
            sections["nvsmi-xml"] = CollectedSection(
                output: xmlHead + gpuBlocks.joined() + xmlTail, exitCode: sections["nvsmi-xml"]?.exitCode ?? 0)
            sections["nvlink-s"] = CollectedSection(
                output: nvlink.joined(separator: "\n"), exitCode: sections["nvlink-s"]?.exitCode ?? 0)
        }
    }

    let driver = "535.54.03"

    func compare(
        lab: LabNode, captured: CapturedNode, dcgmLevel: Int = 2, ignoring: Set<String> = [],
        fabricManagerActive: Bool = true, sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws -> [String: CheckStatus] {
        let prof = try profile("hpc-8xa100")
        var ours = lab.sections(dcgmLevel: dcgmLevel)
        // No A100 `--query-gpu` capture: both sides go without it (the XML is preferred when it reads).
        ours["nvsmi-csv"] = nil
        let a = try verdicts(ours, profile: prof, driver: driver, fabricManagerActive: fabricManagerActive)
        let b = try verdicts(captured.sections, profile: prof, driver: driver, fabricManagerActive: fabricManagerActive)
        #expect(a.keys.sorted() == b.keys.sorted(), sourceLocation: sourceLocation)
        let differing = a.keys.sorted().filter { !ignoring.contains($0) && a[$0] != b[$0] }.map {
            "\($0): stand-in \(a[$0]?.rawValue ?? "-"), capture \(b[$0]?.rawValue ?? "-")"
        }
        #expect(differing.isEmpty, "\(differing.joined(separator: "; "))", sourceLocation: sourceLocation)
        return a
    }

    @Test func healthyNode() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true)
        let v = try compare(lab: lab, captured: try CapturedNode())
        for id in [
            "gpu.count", "gpu.model", "gpu.memory", "gpu.nvlink", "gpu.topology", "gpu.pci-count", "health.dcgm",
        ] {
            #expect(v[id] == .pass, "\(id)")
        }
        #expect(v["gpu.fabric-state"] == .skip)  // A100: no fabric state, NVSwitch or not
    }

    @Test func gpuFellOffTheBus() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true)
        try lab.fault("gpu-missing", "2")
        var cap = try CapturedNode()
        // What nvidia-smi does when a GPU is lost: the GPU is left out, a line says so, and it exits 15
        // (NVML_ERROR_GPU_IS_LOST) from every listing command.
        let lost =
            "Unable to determine the device handle for GPU0000:4C:00.0: GPU is lost.  Reboot the system to recover this GPU\n"
        cap.gpuBlocks.remove(at: 2)
        cap.nvlink.remove(at: 2)
        cap.sections["nvsmi-xml"] = CollectedSection(output: "", exitCode: 15)
        cap.sections["nvlink-s"] = CollectedSection(output: "", exitCode: 15)
        cap.render()
        for name in ["nvsmi-xml", "nvlink-s"] {
            let body = cap.sections[name]?.output ?? ""
            cap.sections[name]?.output = lost + body
        }
        let topo = cap.sections["topo"]?.output ?? ""
        cap.sections["topo"] = CollectedSection(output: lost + topo, exitCode: 15)
        var pci = (cap.sections["lspci"]?.output ?? "").split(separator: "\n")
        pci.remove(at: 2)
        cap.sections["lspci"]?.output = pci.joined(separator: "\n")
        cap.sections["xid"]?.output = try Capture.text("device-plugin-log_xid79_marks-gpu-unhealthy")
        // No capture of dcgmi with a lost GPU (the stand-in's wording there is modelled, not captured).
        let v = try compare(lab: lab, captured: cap, ignoring: ["health.dcgm"])
        for id in ["gpu.smi", "gpu.pci-count", "health.xid"] { #expect(v[id] == .fail, "\(id)") }
    }

    @Test func nvlinkInactive() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true)
        try lab.fault("nvlink-down", "3", "0")
        var cap = try CapturedNode()
        cap.nvlink[3] = cap.nvlink[3].replacingOccurrences(of: "Link 0: 25 GB/s", with: "Link 0: <inactive>")
        cap.render()
        // GPU3's row and column lose one bonded link.
        let topo = (cap.sections["topo"]?.output ?? "").split(separator: "\n", omittingEmptySubsequences: false).map {
            line -> String in
            var cells = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            if line.hasPrefix("GPU3 ") {
                cells = cells.map { $0 == "NV12" ? "NV11" : $0 }
            } else if line.hasPrefix("GPU") {
                // Column of GPU3: the fourth NV/X cell of the row.
                var seen = 0
                for i in cells.indices where cells[i] == "X" || cells[i].hasPrefix("NV") {
                    if seen == 3 { cells[i] = "NV11" }
                    seen += 1
                }
            }
            return cells.joined(separator: " ")
        }
        cap.sections["topo"]?.output = topo.joined(separator: "\n")
        let v = try compare(lab: lab, captured: cap, ignoring: ["health.dcgm"])
        #expect(v["gpu.nvlink"] == .fail)
        #expect(v["gpu.topology"] == .pass)  // NV11 is still NVLink
    }

    @Test func uncorrectableECCErrors() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true)
        try lab.fault("ecc-uncorrectable", "5", "3")
        var cap = try CapturedNode()
        cap.gpuBlocks[5] = cap.gpuBlocks[5]
            .replacingOccurrences(
                of: "<dram_uncorrectable>0</dram_uncorrectable>", with: "<dram_uncorrectable>3</dram_uncorrectable>"
            )
            .replacingOccurrences(
                of: "<remapped_row_unc>0</remapped_row_unc>", with: "<remapped_row_unc>3</remapped_row_unc>"
            )
            .replacingOccurrences(
                of: "<remapped_row_pending>No</remapped_row_pending>",
                with: "<remapped_row_pending>Yes</remapped_row_pending>")
        cap.render()
        let v = try compare(lab: lab, captured: cap, ignoring: ["health.dcgm"])
        #expect(v["health.ecc-uncorrected"] == .fail)
        #expect(v["health.row-remap"] == .fail)
    }

    @Test func fabricManagerStopped() throws {
        let lab = try LabNode(Captured.hgxA100)
        try lab.fault("fabricmanager-stopped")
        guard case .failure = FabricManager(context: lab.context).start(pid: getpid()) else {
            Issue.record("fabric manager started despite the fault")
            return
        }
        var cap = try CapturedNode()
        // The real failure of a NVSwitch system without fabric manager (8x H100 capture, level 3).
        cap.sections["dcgm"]?.output = try Capture.text(
            "dcgmi-diag-r3_8x-h100_FAIL_system-not-yet-initialized_nccl-tests-264")
        let v = try compare(lab: lab, captured: cap, dcgmLevel: 3, fabricManagerActive: false)
        #expect(v["health.dcgm"] == .fail)
        #expect(v["gpu.fabricmanager"] == .fail)
        #expect(v["gpu.fabric-state"] == .skip)
    }
}
