import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

/// Preflight as the install gate reads it: what install sets up itself is reported, not blocking.
@Suite struct InstallModeTests {
    func report(_ outcomes: [CheckOutcome], catalog: CheckCatalog) -> PreflightReport {
        PreflightReport(
            profile: "hpc-8xa100", site: "lab", startedAt: Date(), duration: 1,
            nodes: [.init(name: "gpu-1", address: "10.0.0.2", roles: [.gpuWorker], reachable: true, error: nil)],
            checks: catalog.checks, categories: [], outcomes: outcomes, waivers: [])
    }

    @Test func theCatalogueMarksWhatInstallSetsUp() throws {
        let catalog = try Fixture.catalog()
        for id in ["k8s.ip-forward", "k8s.bridge-nf", "k8s.binaries", "os.swap", "dns.nodes"] {
            #expect(catalog.check(id)?.install == .sets, "\(id)")
        }
        for id in ["gpu.smi", "gpu.fabricmanager", "gpu.count"] {
            #expect(catalog.check(id)?.install == .hostDriver, "\(id)")
        }
        // Hardware, OS release, kernel, disks, PCI GPUs and time gate the install as they are.
        for id in ["hw.cpu", "hw.memory", "hw.disk", "os.release", "os.kernel", "gpu.pci-count", "time.sync"] {
            #expect(catalog.check(id)?.install == nil, "\(id)")
        }
    }

    @Test func aBareNodeFailsOnlyOnWhatInstallCannotFix() throws {
        let catalog = try Fixture.catalog()
        let bare = report(
            [
                CheckOutcome(checkID: "k8s.ip-forward", node: "gpu-1", status: .fail, observed: "0"),
                CheckOutcome(checkID: "k8s.binaries", node: "gpu-1", status: .fail, observed: "missing: iptables"),
                CheckOutcome(checkID: "gpu.smi", node: "gpu-1", status: .fail, observed: "nvidia-smi: not found"),
                CheckOutcome(checkID: "gpu.count", node: "gpu-1", status: .unknown, observed: "could not read"),
                CheckOutcome(checkID: "hw.memory", node: "gpu-1", status: .fail, observed: "16 GiB, needs 1024"),
            ], catalog: catalog)
        #expect(bare.summary.fail == 4 && bare.summary.unknown == 1)
        let gate = bare.forInstall(gpuStackMode: "host-driver")
        #expect(gate.summary.fail == 1)
        #expect(gate.blockingFindings == ["gpu-1: hw.memory: 16 GiB, needs 1024"])
        #expect(gate.outcome("k8s.ip-forward", "gpu-1")?.status == .info)
        #expect(gate.outcome("k8s.ip-forward", "gpu-1")?.observed == "set by install (now: 0)")
        #expect(gate.outcome("gpu.count", "gpu-1")?.status == .info)
        // In operator mode the driver comes from the GPU Operator: a missing nvidia-smi is not install's to fix.
        let operatorMode = bare.forInstall(gpuStackMode: "operator")
        #expect(operatorMode.outcome("gpu.smi", "gpu-1")?.status == .fail)
    }

    @Test func aDriverThatIsPresentIsJudgedAsItIs() throws {
        let catalog = try Fixture.catalog()
        // nvidia-smi runs, so the driver is there: ECC errors are real findings, not something install fixes.
        let r = report(
            [
                CheckOutcome(checkID: "gpu.smi", node: "gpu-1", status: .pass, observed: "535.161.08"),
                CheckOutcome(checkID: "health.ecc-uncorrected", node: "gpu-1", status: .fail, observed: "GPU 3: 2"),
            ], catalog: catalog
        ).forInstall(gpuStackMode: "host-driver")
        #expect(r.outcome("health.ecc-uncorrected", "gpu-1")?.status == .fail)
    }
}
