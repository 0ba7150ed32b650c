import ApplianceLabNode
import ApplianceModel
import AppliancePreflight
import Foundation
import Testing

/// Issue 7: each stand-in's output goes through the same parser as the real capture of the same hardware,
/// and the parsed structures agree on every field the hardware (and its declared driver) determines.
@Suite("Stand-in output and real captures parse to the same structure")
struct FormatConsistencyTests {
    @Test func queryXMLOfA100() throws {
        let real = try NvidiaSMIXML.parse(try Capture.text("nvidia-smi-q-x_a100-sxm4-80gb_mig.xml"))
        let lab = try LabNode(Captured.a100XML)
        let ours = try NvidiaSMIXML.parse(try lab.ok("nvidia-smi", "-q", "-x"))
        #expect(ours.driverVersion == real.driverVersion)
        #expect(ours.cudaVersion == real.cudaVersion)
        #expect(ours.attachedGPUs == real.attachedGPUs)
        #expect(ours.gpus.count == real.attachedGPUs)  // upstream kept 1 of the 4 <gpu> elements
        let kept = try #require(real.gpus.first)
        let twin = try #require(ours.gpus.first { $0.index == kept.index })
        // MIG is not modelled (README); the capture has it on, and with MIG on NVML reports the remapped rows
        // as N/A. Row remapping is compared on the H100 text capture, which has MIG off.
        func withoutMIG(_ r: GPURecord) -> GPURecord {
            var r = r.hardwareView
            r.migModeCurrent = nil
            r.migModePending = nil
            r.remappedRowsPending = nil
            r.remappedRowsFailure = nil
            r.remappedRowsUncorrectable = nil
            return r
        }
        #expect(withoutMIG(twin) == withoutMIG(kept))
        #expect(kept.migModeCurrent == "Enabled" && twin.migModeCurrent == "Disabled")
        #expect(ours.gpus.allSatisfy { $0.hardwareView == twin.hardwareView })
    }

    @Test func queryTextOfH100() throws {
        let real = try NvidiaSMIText.parse(try Capture.text("nvidia-smi-q_h100-80gb-hbm3_sxm5_single-vm"))
        let lab = try LabNode(Captured.h100VM, fabricManager: true, persistence: true)
        let ours = try NvidiaSMIText.parse(try lab.ok("nvidia-smi", "-q"))
        #expect(ours.driverVersion == real.driverVersion)
        #expect(ours.cudaVersion == real.cudaVersion)
        #expect(ours.attachedGPUs == real.attachedGPUs)
        #expect(ours.gpus.map(\.hardwareView) == real.gpus.map(\.hardwareView))
        // The fields this comparison rests on are really there, not nil on both sides.
        let g = try #require(real.gpus.first)
        #expect(g.fabricState == "Completed" && g.remappedRowsPending == false && g.eccVolatileUncorrected == 0)
    }

    @Test func queryGPUCSVOfH100AndH200() throws {
        for (name, hw) in [
            ("nvidia-smi-query-gpu-all-fields_nvidia-h100-80gb-hbm3.csv", Captured.h100VM),
            ("nvidia-smi-query-gpu-all-fields_nvidia-h200.csv", Captured.h200VM),
        ] {
            let csv = try Capture.text(name)
            let header = try #require(csv.split(separator: "\n").first).split(separator: ",").map {
                String($0.trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
            }
            let lab = try LabNode(hw, fabricManager: true, persistence: true)
            // The stand-in answers the collector's whole query...
            let all = lab.run(
                "nvidia-smi", "--query-gpu=" + NvidiaSMIQueryCSV.fields.joined(separator: ","), "--format=csv")
            #expect(all.exitCode == 0, "\(all.stdout)")
            // ...and is compared on the part of it the capture also asked for.
            let fields = NvidiaSMIQueryCSV.fields.filter(header.contains)
            #expect(fields.count >= 25, "\(name)")
            let ours = try NvidiaSMIQueryCSV.parse(
                try lab.ok("nvidia-smi", "--query-gpu=" + fields.joined(separator: ","), "--format=csv"))
            let real = try NvidiaSMIQueryCSV.parse(csv)
            #expect(ours.map(\.hardwareView) == real.map(\.hardwareView), "\(name)")
        }
    }

    @Test func topologyOfHGXA100() throws {
        let real = try NvidiaTopology.parse(try Capture.text("nvidia-smi-topo-m_hgx-a100-8gpu_2x-epyc-7763_1nic"))
        let lab = try LabNode(Captured.hgxA100, fabricManager: true)
        let ours = try NvidiaTopology.parse(try lab.ok("nvidia-smi", "topo", "-m"))
        #expect(ours.gpus == real.gpus)
        for a in real.gpus {
            for b in real.gpus { #expect(ours.link(a, b) == real.link(a, b), "\(a)-\(b)") }
        }
        // NICs: as many, each behind a PCIe switch shared with the same number of GPUs. Which switch, and the
        // CPU/NUMA affinity, follow the board wiring and the BIOS NUMA setting (NPS4 on the capture), which the
        // declaration does not carry.
        func nics(_ t: NvidiaTopology) -> [String] { t.devices.filter { !$0.hasPrefix("GPU") } }
        #expect(nics(ours).count == nics(real).count)
        func local(_ t: NvidiaTopology) -> [Int] {
            nics(t).map { n in t.gpus.filter { ["PIX", "PXB"].contains(t.link($0, n) ?? "") }.count }
        }
        #expect(local(ours) == local(real))
    }

    @Test func nvlinkStatusOfA100AndH100() throws {
        for (name, hw) in [
            ("nvidia-smi-nvlink-s_a100-sxm4-80gb_p4de_12links", Captured.p4de),
            ("nvidia-smi-nvlink-s_h100-sxm5_18links", Captured.h100VM),
        ] {
            let real = try NvidiaNVLinkStatus.parse(try Capture.text(name))
            let lab = try LabNode(hw, fabricManager: true)
            let ours = try NvidiaNVLinkStatus.parse(try lab.ok("nvidia-smi", "nvlink", "-s"))
            let captured = try #require(real.gpus.first)
            #expect(ours.gpus.count == hw.gpus?.count)
            for g in ours.gpus {
                #expect(g.name == captured.name, "\(name)")
                #expect(g.links == captured.links, "\(name) GPU \(g.index)")
            }
        }
    }

    /// The Metadata rows of a `dcgmi diag` table, which `DCGMDiag` does not keep.
    func dcgmMetadata(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("| ") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            if cells.count == 2, ["Driver Version Detected", "GPU Device IDs Detected"].contains(cells[0]) {
                out[cells[0]] = cells[1]
            }
        }
        return out
    }

    @Test func dcgmDiagPassAndFabricManagerFailure() throws {
        let cases: [(String, HardwareDeclaration, Bool, Bool, [String])] = [
            (
                "dcgmi-diag-r2_8x-a100-sxm4-80gb_p4de_pass", Captured.p4de, true, true,
                ["diag", "-r", "2", "-p", "pcie.gpu_nvlinks_expected_up=12"]
            ),
            (
                "dcgmi-diag-r3_8x-h100_FAIL_system-not-yet-initialized_nccl-tests-264", Captured.hgxH100, false,
                false, ["diag", "--run", "3", "--fail-early"]
            ),
            ("dcgmi-diag-r1-basic_4x-a10g_pass", Captured.a10g, false, true, ["diag", "-r", "1"]),
        ]
        for (name, hw, fm, persistence, args) in cases {
            let captured = try Capture.text(name)
            let real = try DCGMDiag.parse(captured)
            let lab = try LabNode(hw, fabricManager: fm, persistence: persistence)
            let out = lab.run("dcgmi", args)
            let ours = try DCGMDiag.parse(out.stdout)
            #expect(ours.results.map { "\($0.test): \($0.result)" } == real.results.map { "\($0.test): \($0.result)" })
            #expect(ours.failed == real.failed, "\(name)")
            #expect((out.exitCode == 0) == real.failed.isEmpty, "\(name)")
            #expect(dcgmMetadata(out.stdout) == dcgmMetadata(captured), "\(name)")
            #expect(dcgmMetadata(captured).count == 2)
        }
    }

    @Test func xid79OfALostGPU() throws {
        let real = XidLog.parse(try Capture.text("device-plugin-log_xid79_marks-gpu-unhealthy"))
        let lab = try LabNode(Captured.hgxA100)
        try lab.fault("gpu-missing", "2")
        let ours = XidLog.parse(lab.context.read(LabPaths.kernelLog) ?? "")
        #expect(real == [79])
        #expect(ours == real)
    }

    @Test func lspciOfHGXA100() throws {
        // The first block is `lspci -nn | grep NVIDIA`; the second (after a blank line) is without -nn.
        let block = try Capture.text("lspci-nn-grep-nvidia_hgx-a100-sxm4-80gb_8gpu-6nvswitch")
            .components(separatedBy: "\n\n")[0]
        let real = LspciListing.parse(block)
        let lab = try LabNode(Captured.hgxA100)
        let ours = LspciListing.parse(try lab.ok("lspci", "-nn", "-d", "10de:"))
        func ids(_ d: [LspciListing.Device]) -> [String] {
            d.map { "\($0.classCode) \($0.vendorID):\($0.deviceID) \($0.description)" }
        }
        #expect(real.nvidiaGPUs.count == 8 && real.nvswitches.count == 6)
        #expect(ids(ours.nvidiaGPUs) == ids(real.nvidiaGPUs))
        #expect(ids(ours.nvswitches) == ids(real.nvswitches))
        #expect(ours.devices.count == real.devices.count)
        // The slots are those nvidia-smi reports for the same GPUs.
        let smi = try NvidiaSMIXML.parse(try lab.ok("nvidia-smi", "-q", "-x"))
        #expect(
            ours.nvidiaGPUs.map(\.slot) == smi.gpus.compactMap { $0.busID.map { String($0.dropFirst(9)).lowercased() } }
        )
    }

    /// `preflight/collect.sh` runs `nvidia-smi nvlink -e`; no real capture of it is in the fixtures, so this
    /// checks that the stand-in answers it (exit 0) with counters that preflight's parser finds for every GPU
    /// and link, and that a link that is down is still listed (its counters read 0).
    @Test func nvlinkErrorCountersParse() throws {
        let lab = try LabNode(Captured.hgxA100)
        try lab.fault("nvlink-down", "2", "5")
        let text = try lab.ok("nvidia-smi", "nvlink", "-e")
        let parsed = NvidiaNVLinkErrors.parse(text)
        #expect(parsed == Dictionary(uniqueKeysWithValues: (0..<8).map { ($0, 0) }))
        #expect(text.split(separator: "\n").count == 8 * (1 + 12 * 3))
        #expect(text.contains("\t Link 11: CRC Errors: 0\n"))
        // -s and -e together, or neither, is a usage error as in the real tool.
        #expect(lab.run("nvidia-smi", "nvlink").exitCode == 2)
        #expect(lab.run("nvidia-smi", "nvlink", "-s", "-e").exitCode == 2)
    }
}
