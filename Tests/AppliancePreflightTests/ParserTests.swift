import Foundation
import Testing

@testable import AppliancePreflight

@Suite("Parsers against real captures")
struct ParserTests {
    @Test func xmlV12A100() throws {
        let r = try NvidiaSMIXML.parse(try Fixture.text("nvidia-smi-q-x_a100-sxm4-80gb_mig.xml"))
        #expect(r.driverVersion == "535.54.03")
        #expect(r.attachedGPUs == 4)
        #expect(r.gpus.count == 1)  // count <gpu>, not attached_gpus
        let g = try #require(r.gpus.first)
        #expect(g.name == "NVIDIA A100-SXM4-80GB")
        #expect(g.memoryTotalMiB == 81920)
        #expect(g.pciDeviceID == "20b2")
        #expect(g.eccModeCurrent == "Enabled")
        #expect(g.migModeCurrent == "Enabled")
        #expect(g.pcieWidthCurrent == 16 && g.pcieGenMax == 4)
        #expect(g.powerLimitW == 500)
        #expect(g.activeHardwareClockEvents == [])
        #expect(g.fabricState == nil)  // A100 prints N/A
    }

    @Test func xmlV11A100Passthrough() throws {
        let r = try NvidiaSMIXML.parse(try Fixture.text("nvidia-smi-q-x_a100-sxm4-40gb_mig_passthrough.xml"))
        let g = try #require(r.gpus.first)
        #expect(g.name == "NVIDIA A100-SXM4-40GB")
        #expect(g.memoryTotalMiB == 40960)
        #expect(g.powerLimitW == 400)  // v11 <power_readings><power_limit>
        #expect(g.activeHardwareClockEvents == [])  // v11 clocks_throttle_reasons
    }

    @Test func textH100() throws {
        let r = try NvidiaSMIText.parse(try Fixture.text("nvidia-smi-q_h100-80gb-hbm3_sxm5_single-vm"))
        #expect(r.driverVersion == "590.48.01")
        #expect(r.cudaVersion == "13.1")
        let g = try #require(r.gpus.first)
        #expect(r.gpus.count == 1)
        #expect(g.name == "NVIDIA H100 80GB HBM3")
        #expect(g.persistenceMode == "Enabled")
        #expect(g.memoryTotalMiB == 81559)
        #expect(g.eccModeCurrent == "Enabled")
        #expect(g.eccVolatileUncorrected == 0)
        #expect(g.pcieGenCurrent == 5 && g.pcieWidthCurrent == 16)
        #expect(g.fabricState == "Completed")
        #expect(g.activeHardwareClockEvents == [])
    }

    @Test func textH800EccDisabled() throws {
        let r = try NvidiaSMIText.parse(try Fixture.text("nvidia-smi-q_h800-hgx8_gpu0_ecc-disabled"))
        let g = try #require(r.gpus.first)
        #expect(g.name?.contains("H800") == true)
        #expect(g.eccModeCurrent == "Disabled")
    }

    @Test(arguments: ["nvidia-h100-80gb-hbm3", "nvidia-h100-mig", "nvidia-h200"])
    func csvAllFields(_ name: String) throws {
        let rows = try NvidiaSMIQueryCSV.parse(try Fixture.text("nvidia-smi-query-gpu-all-fields_\(name).csv"))
        #expect(rows.count == 1)
        let g = try #require(rows.first)
        #expect(g.name?.hasPrefix("NVIDIA H") == true)
        #expect((g.memoryTotalMiB ?? 0) > 80000)
        #expect(g.driverVersion == "590.48.01")
        #expect(g.retiredPagesPending == nil)  // [N/A] on Hopper
        #expect(g.activeHardwareClockEvents != nil)
    }

    @Test func csvDerived() throws {
        let rows = try NvidiaSMIQueryCSV.parse(try Fixture.text("nvidia-smi-query-gpu_requested-fields_DERIVED.csv"))
        #expect(rows.map(\.name) == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", "NVIDIA H200"])
        #expect(rows.map(\.migModeCurrent) == ["Disabled", "Enabled", "Disabled"])
        #expect(rows[2].memoryTotalMiB == 143771)
        #expect(rows[0].powerLimitW == 700)
    }

    @Test func topoHGXA100() throws {
        let t = try NvidiaTopology.parse(try Fixture.text("nvidia-smi-topo-m_hgx-a100-8gpu_2x-epyc-7763_1nic"))
        #expect(t.gpus.count == 8)
        #expect(t.gpuPairs.count == 56)
        #expect(t.gpuPairs.allSatisfy { $0.2 == "NV12" })
        #expect(t.link("GPU2", "mlx5_0") == "PXB")
        #expect(t.numaAffinity["GPU4"] == "7")
        #expect(t.cpuAffinity["GPU0"] == "48-63")
    }

    @Test(arguments: ["nvidia-smi-topo-m_dgx-a100-8gpu-10nic_NV12", "nvidia-smi-topo-m_h800-hgx8_NV8_4nic"])
    func topoOthers(_ name: String) throws {
        let t = try NvidiaTopology.parse(try Fixture.text(name))
        #expect(t.gpus.count == 8)
        #expect(t.gpuPairs.allSatisfy { $0.2.hasPrefix("NV") })
    }

    @Test func topoSingleGPUWithANSI() throws {
        let t = try NvidiaTopology.parse(try Fixture.text("nvidia-smi-topo-m_h100_single-gpu-vm"))
        #expect(t.gpus == ["GPU0"])
        #expect(t.numaAffinity["GPU0"] == "0")
    }

    @Test func nvlinkStatus() throws {
        let a = try NvidiaNVLinkStatus.parse(try Fixture.text("nvidia-smi-nvlink-s_a100-sxm4-80gb_p4de_12links"))
        #expect(a.gpus.first?.activeLinks == 12)
        #expect(a.gpus.first?.minimumSpeed == 25)
        let h = try NvidiaNVLinkStatus.parse(try Fixture.text("nvidia-smi-nvlink-s_h100-sxm5_18links"))
        #expect(h.gpus.first?.activeLinks == 18)
        #expect(h.gpus.first?.minimumSpeed == 26.562)
        let h8 = try NvidiaNVLinkStatus.parse(try Fixture.text("nvidia-smi-nvlink-s_h800-hgx8_8links"))
        #expect(h8.gpus.allSatisfy { $0.activeLinks == 8 })
        #expect(h8.gpus.first?.uuid == "GPU-34bf77d1-c686-6821-79a8-32d326c5039c")
    }

    @Test func lspci() throws {
        let l = LspciListing.parse(try Fixture.text("lspci-nn-grep-nvidia_hgx-a100-sxm4-80gb_8gpu-6nvswitch"))
        #expect(l.nvidiaGPUs.count == 8)
        #expect(l.nvidiaGPUs.allSatisfy { $0.deviceID == "20b2" })
        #expect(l.nvswitches.count == 6)
        #expect(l.nvswitches.first?.deviceID == "1af1")
    }

    @Test func dcgm() throws {
        let pass = try DCGMDiag.parse(try Fixture.text("dcgmi-diag-r2_8x-a100-sxm4-80gb_p4de_pass"))
        #expect(pass.version == "3.3.3")
        #expect(pass.failed.isEmpty)
        #expect(pass.results.contains { $0.test == "Persistence Mode" && $0.result == "Pass" })
        let fail = try DCGMDiag.parse(
            try Fixture.text("dcgmi-diag-r3_8x-h100_FAIL_system-not-yet-initialized_nccl-tests-264"))
        #expect(!fail.failed.isEmpty)
        _ = try DCGMDiag.parse(try Fixture.text("dcgmi-diag-r1-basic_4x-a10g_pass"))
    }

    @Test func ibstat() throws {
        let s = IBStat.parse(try Fixture.text("ibv_devinfo_ibstat_lspci_connectx6_mt4123"))
        let a = try #require(s.adapters.first)
        #expect(a.name == "mlx5_0" && a.caType == "MT4123")
        #expect(
            a.ports.first?.state == "Active" && a.ports.first?.physicalState == "LinkUp"
                && a.ports.first?.rateGbps == 100)
    }

    @Test func xid() throws {
        #expect(XidLog.parse(try Fixture.text("device-plugin-log_xid79_marks-gpu-unhealthy")) == [79])
        #expect(XidLog.parse("[  12.3] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, DBE") == [48])
    }

    @Test func garbledInputThrowsNotCrashes() {
        #expect(throws: ParseError.self) { try NvidiaSMIXML.parse("<nvidia_smi_log><gpu>unterminated") }
        #expect(throws: ParseError.self) { try NvidiaSMIXML.parse("\u{0}\u{1}binary garbage") }
        #expect(throws: ParseError.self) { try NvidiaSMIText.parse("Segmentation fault") }
        #expect(throws: ParseError.self) { try NvidiaTopology.parse("random words\nno matrix") }
        #expect(throws: ParseError.self) { try NvidiaNVLinkStatus.parse("GPU 0: X (UUID: GPU-1)\n Link 0: ??? GB/s") }
        #expect(throws: ParseError.self) { try NvidiaSMIQueryCSV.parse("index, name\n0, a, b, c") }
    }
}
