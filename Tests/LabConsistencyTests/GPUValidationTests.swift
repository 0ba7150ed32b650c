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

    @Test func lostGPULinesAreRead() {
        let text =
            "Unable to determine the device handle for GPU0000:BB:00.0: GPU is lost.  Reboot the system to recover this GPU\n<?xml version=\"1.0\" ?>"
        #expect(GPUValidation.lostBusIDs(text) == ["00000000:BB:00.0"])
    }
}
