import ApplianceLabNode
import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

/// Install's GPU validation gate (issue 13) decided from the stand-ins' output under each lab fault, and
/// from the real captures: each fault is caught with its own finding, naming the GPU by index and bus id.
@Suite("GPU validation gate: stand-in output and captures")
struct GPUValidationTests {
    let driver = "535.54.03"

    /// What the gate's script reads, from a lab node's stand-ins (fabric manager unit state as given).
    func sections(_ lab: LabNode, fabricManager: String = "active=active enabled=enabled", dcgmLevel: Int = 1)
        -> [String: CollectedSection]
    {
        var s = lab.sections(dcgmLevel: dcgmLevel)
        s["nvsmi-csv"] = nil
        s["topo"] = nil
        s["xid"] = nil
        s["services"] = CollectedSection(output: "nvidia-fabricmanager \(fabricManager)", exitCode: 0)
        s["fabricmanager"] = CollectedSection(output: "version=\(driver)", exitCode: 0)
        return s
    }

    func evaluate(
        _ sections: [String: CollectedSection], allocatable: Int? = 8, driverVersion: String? = nil,
        profileName: String = "hpc-8xa100"
    ) throws -> GPUValidation.Result {
        let catalog = try CheckCatalog.load(directory: Capture.repo + "/preflight/checks")
        return GPUValidation.evaluate(
            facts: NodeFacts(sections: sections), node: "gpu-01", roles: [.gpuWorker],
            profile: try profile(profileName), catalog: catalog, driverVersion: driverVersion ?? driver, dcgmLevel: 1,
            allocatable: allocatable)
    }

    @Test func healthyStandInNodePasses() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        let r = try evaluate(sections(lab))
        #expect(r.passed, "\(r.findings)")
        #expect(r.summary.contains("8x NVIDIA A100-SXM4-80GB, driver 535.54.03"), "\(r.summary)")
    }

    @Test func healthyCapturedNodePasses() throws {
        var s = try VerdictConsistencyTests.CapturedNode().sections
        s["services"] = CollectedSection(output: "nvidia-fabricmanager active=active enabled=enabled", exitCode: 0)
        s["fabricmanager"] = CollectedSection(output: "version=\(driver)", exitCode: 0)
        let r = try evaluate(s)
        #expect(r.passed, "\(r.findings)")
    }

    @Test func gpuOffTheBusIsNamedByIndexAndBusID() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        try lab.fault("gpu-missing", "3")
        let r = try evaluate(sections(lab), allocatable: 7)
        let lost = try #require(r.findings.first { $0.check == "gpu.lost" })
        #expect(lost.gpu == 3 && lost.busID == "00000000:5D:00.0", "\(lost)")
        #expect(lost.description.hasPrefix("GPU 3 (00000000:5D:00.0): fell off the bus"), "\(lost)")
        #expect(r.findings.contains { $0.check == "gpu.count" })
        #expect(r.findings.contains { $0.check == "gpu.allocatable" && $0.reason.contains("is 7") })
    }

    @Test func nvlinkDownIsNamed() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        try lab.fault("nvlink-down", "2", "5")
        let r = try evaluate(sections(lab))
        #expect(r.findings.map(\.description) == ["GPU 2 (00000000:4C:00.0): NVLink 5 inactive (11 of 12 active)"])
    }

    @Test func uncorrectableECCIsNamedAndFailsDCGM() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        try lab.fault("ecc-uncorrectable", "1", "2")
        let r = try evaluate(sections(lab), allocatable: 7)
        let ecc = try #require(r.findings.first { $0.check == "health.ecc-uncorrected" })
        #expect(
            ecc.description
                == "GPU 1 (00000000:3B:00.0): 2 uncorrectable ECC error(s) (volatile), row remapping pending (reset the GPU)"
        )
        #expect(r.findings.contains { $0.check == "health.dcgm" && $0.reason.contains("Page Retirement/Row Remap") })
    }

    @Test func stoppedFabricManagerIsNamed() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: false, persistence: true)
        let r = try evaluate(sections(lab, fabricManager: "active=failed enabled=enabled"))
        #expect(r.findings.map(\.check) == ["gpu.fabricmanager"], "\(r.findings)")
        #expect(r.findings.first?.description.contains("nvidia-fabricmanager is failed") == true, "\(r.findings)")
    }

    @Test func driverLibraryMismatchStopsTheReading() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        try lab.fault("driver-mismatch", "550.90.07")
        let r = try evaluate(sections(lab))
        #expect(r.findings.count == 1)
        #expect(r.findings.first?.check == "gpu.smi")
        #expect(r.findings.first?.reason.contains("driver/library version mismatch") == true, "\(r.findings)")
        #expect(r.findings.first?.reason.contains("535.54.03") == true, "\(r.findings)")
    }

    @Test func wrongDriverAndDeniedDriverAreNamed() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        let r = try evaluate(sections(lab), driverVersion: "535.161.08")
        #expect(r.findings.map(\.reason) == ["nvidia-smi reports driver 535.54.03; the bundle installs 535.161.08"])
        var denied = try profile("hpc-8xa100")
        denied.gpuStack.deniedDriverVersions = [driver]
        let catalog = try CheckCatalog.load(directory: Capture.repo + "/preflight/checks")
        let d = GPUValidation.evaluate(
            facts: NodeFacts(sections: sections(lab)), node: "gpu-01", roles: [.gpuWorker], profile: denied,
            catalog: catalog, driverVersion: driver, dcgmLevel: 1, allocatable: 8)
        #expect(d.findings.map(\.check) == ["gpu.driver-denylist"], "\(d.findings)")
    }

    @Test func missingAllocatableIsNamed() throws {
        let lab = try LabNode(Captured.hgxA100, fabricManager: true, persistence: true)
        let r = try evaluate(sections(lab), allocatable: nil)
        #expect(
            r.findings.map(\.reason) == ["the node's allocatable nvidia.com/gpu is absent; the profile declares 8 GPUs"]
        )
    }

    /// The real nccl-tests#264 capture: an HGX H100 whose fabric manager was not running fails DCGM with
    /// "system not yet initialized"; the gate reports the failing DCGM test.
    @Test func capturedDCGMFailureIsReported() throws {
        var s = try VerdictConsistencyTests.CapturedNode().sections
        s["services"] = CollectedSection(output: "nvidia-fabricmanager active=active enabled=enabled", exitCode: 0)
        s["fabricmanager"] = CollectedSection(output: "version=\(driver)", exitCode: 0)
        s["dcgm"] = CollectedSection(
            output: try Capture.text("dcgmi-diag-r3_8x-h100_FAIL_system-not-yet-initialized_nccl-tests-264"),
            exitCode: 1)
        let r = try evaluate(s)
        let d = try #require(r.findings.first { $0.check == "health.dcgm" })
        #expect(d.reason.hasPrefix("dcgmi diag -r 1 failed:"), "\(d)")
    }

    // MARK: operator-precompiled mode (hpc-8xh100): the driver container's tools

    /// An HGX H100 in operator mode: the precompiled driver of the profile's branch (550), its fabric manager
    /// as the driver container's process.
    func operatorNode(driver: String = "550.163.01") throws -> LabNode {
        var hw = Captured.hgxH100
        hw.gpus?.driverVersion = driver
        return try LabNode(hw, fabricManager: true, persistence: true)
    }

    func operatorSections(_ lab: LabNode, fabricManager: String = "active", version: String = "550.163.01")
        -> [String: CollectedSection]
    {
        var s = lab.sections(dcgmLevel: 1)
        s["nvsmi-csv"] = nil
        s["topo"] = nil
        s["xid"] = nil
        s["services"] = CollectedSection(
            output: "nvidia-fabricmanager active=\(fabricManager) enabled=driver-container", exitCode: 0)
        s["fabricmanager"] = CollectedSection(output: "version=\(version)", exitCode: 0)
        return s
    }

    func evaluateOperator(_ sections: [String: CollectedSection], allocatable: Int? = 8) throws -> GPUValidation.Result
    {
        let catalog = try CheckCatalog.load(directory: Capture.repo + "/preflight/checks")
        let p = try profile("hpc-8xh100")
        #expect(p.gpuStack.mode == .operatorPrecompiled)
        return GPUValidation.evaluate(
            facts: NodeFacts(sections: sections), node: "gpu-01", roles: [.gpuWorker], profile: p, catalog: catalog,
            driverVersion: nil, dcgmLevel: 1, allocatable: allocatable)
    }

    @Test func operatorModeNodeWithTheBranchDriverPasses() throws {
        let r = try evaluateOperator(operatorSections(try operatorNode()))
        #expect(r.passed, "\(r.findings)")
        #expect(
            r.summary.contains("8x NVIDIA H100 80GB HBM3, driver 550.163.01, fabric manager active"), "\(r.summary)")
    }

    @Test func operatorModeNamesADriverOfAnotherBranch() throws {
        let r = try evaluateOperator(operatorSections(try operatorNode(driver: "570.195.03"), version: "570.195.03"))
        #expect(
            r.findings.map(\.reason) == [
                "nvidia-smi reports driver 570.195.03; profile hpc-8xh100 wants branch 550 (the precompiled driver image)"
            ], "\(r.findings)")
    }

    @Test func operatorModeNamesAFabricManagerThatDoesNotRun() throws {
        let lab = try LabNode(
            {
                var hw = Captured.hgxH100; hw.gpus?.driverVersion = "550.163.01"; return hw
            }(), fabricManager: false,
            persistence: true)
        let r = try evaluateOperator(operatorSections(lab, fabricManager: "inactive"))
        let fm = try #require(r.findings.first { $0.check == "gpu.fabricmanager" })
        #expect(fm.reason.hasPrefix("nv-fabricmanager is not running in the GPU Operator's driver container"), "\(fm)")
        // Hopper without fabric manager: the fabric state is not Completed on any GPU, each named.
        #expect(r.findings.filter { $0.check == "gpu.fabric-state" }.count == 8, "\(r.findings)")
    }

    @Test func operatorModeNamesAFabricManagerOfAnotherVersion() throws {
        let r = try evaluateOperator(operatorSections(try operatorNode(), version: "550.127.05"))
        #expect(
            r.findings.map(\.reason) == ["fabric manager 550.127.05, driver 550.163.01: must be the driver's version"],
            "\(r.findings)")
    }

    @Test func operatorModeWithoutTheDriverRootOrTheHostEngineSaysSo() throws {
        var s = operatorSections(try operatorNode())
        s["nvsmi-xml"] = CollectedSection(
            output: "nvidia-smi: not found in the driver root /run/nvidia/driver", exitCode: 127)
        let r = try evaluateOperator(s)
        #expect(
            r.findings.map(\.reason) == [
                "the GPU Operator's driver container has not installed the driver: no nvidia-smi in /run/nvidia/driver"
            ], "\(r.findings)")
        var d = operatorSections(try operatorNode())
        d["dcgm"] = CollectedSection(output: "nv-hostengine: not running", exitCode: 127)
        let e = try evaluateOperator(d)
        #expect(
            e.findings.map(\.reason) == [
                "no nv-hostengine runs on the node (the GPU Operator's nvidia-dcgm pod): cannot run the DCGM diagnostic"
            ], "\(e.findings)")
    }

    /// The two scripts read the same sections; operator mode reads the tools where the operator put them.
    @Test func operatorScriptReadsTheDriverRootAndTheHostEngine() {
        let host = GPUValidation.script(dcgmLevel: 2)
        let op = GPUValidation.script(dcgmLevel: 2, driverRoot: "/run/nvidia/driver")
        for section in ["nvsmi-xml", "nvlink-s", "lspci", "services", "fabricmanager", "dcgm"] {
            #expect(host.contains(" \(section) ") && op.contains(" \(section) "), "\(section)")
        }
        #expect(op.contains("DR='/run/nvidia/driver'") && op.contains("chroot \"$DR\" \"$t\""))
        #expect(op.contains("nsenter -t \"$he\" -m -n dcgmi diag -r 2"))
        #expect(!host.contains("chroot") && host.contains("tool dcgm dcgmi diag -r 2"))
    }

    @Test func lostGPULinesAreRead() {
        let text =
            "Unable to determine the device handle for GPU0000:BB:00.0: GPU is lost.  Reboot the system to recover this GPU\n<?xml version=\"1.0\" ?>"
        #expect(GPUValidation.lostBusIDs(text) == ["00000000:BB:00.0"])
    }
}
