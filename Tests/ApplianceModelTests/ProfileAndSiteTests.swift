import Foundation
import Testing

@testable import ApplianceModel

@Suite("Profiles and site sections")
struct ProfileAndSiteTests {
    static let repo: String = {
        var u = URL(fileURLWithPath: #filePath); for _ in 0..<3 { u.deleteLastPathComponent() }; return u.path
    }()

    @Test func shippedProfilesLoad() throws {
        let catalog = ProfileCatalog(directory: Self.repo + "/profiles")
        #expect(catalog.names == ["balanced-4xa100", "cost-4xpcie", "hpc-8xa100", "hpc-8xh100", "lab", "lab-operator"])
        let all = try catalog.loadAll()
        for p in all { #expect(p.roles[.controlPlane] != nil) }
        let a100 = try catalog.load("hpc-8xa100")
        #expect(a100.roles[.gpuWorker]?.gpu?.nvswitches == 6)
        #expect(a100.controlPlane.nodes == 3)
        #expect(a100.roles[.controlPlane] == .init(cpus: 4, memoryGiB: 4, diskGiB: 100))
        #expect(a100.roles[.system]?.memoryGiB == 8 && a100.roles[.system]?.diskGiB == 120)
        #expect(a100.controlPlane.components.contains { $0.name == "postgresql" && $0.volumeGiB > 0 })
        #expect(!a100.queues.isEmpty)
    }

    @Test func unknownProfileListsKnownOnes() {
        #expect {
            try ProfileCatalog(directory: Self.repo + "/profiles").load("hpc-9xb200")
        } throws: { e in (e as? ProfileError)?.message.contains("hpc-8xa100") == true }
    }

    @Test func labDeclarationComesFromTheProfile() throws {
        let lab = try ProfileCatalog(directory: Self.repo + "/profiles").load("lab")
        #expect(lab.os.release(id: "debian", version: "12") != nil)
        let gpu = lab.labDeclaration(node: "gpu-01", roles: [.gpuWorker])
        #expect(gpu.gpus?.model == "NVIDIA A100-PCIE-40GB" && gpu.gpus?.count == 2)
        #expect(lab.labDeclaration(node: "cpu-01", roles: [.cpuWorker]).gpus == nil)
    }

    @Test func malformedProfileIsPositioned() {
        let text =
            "apiVersion: appliance.dev/v1alpha1\nkind: Profile\nmetadata: {name: x}\nspec:\n  os: {releases: []}\n  gpuStack: {mode: magic, driverVersions: [535], operatorVersion: v1}\n  kubernetes: {version: '1.34', podCIDR: 10.0.0.0/33, serviceCIDR: 10.96.0.0/12}\n  roles: {system: {cpus: 0, memoryGiB: 1, diskGiB: 1}}\n  controlPlane: {nodes: 2, components: [{name: a, cpuRequest: lots, cpuLimit: '1', memoryRequest: 1GB, memoryLimit: 1Gi}]}\n"
        do {
            _ = try HardwareProfile.parse(text: text, file: "p.yaml")
            Issue.record("expected errors")
        } catch {
            let d = error.description
            for s in ["p.yaml:6:", "p.yaml:7:", "p.yaml:8:", "p.yaml:9:", "control-plane", "odd", "memory quantity"] {
                #expect(d.contains(s), "\(s)")
            }
        }
    }

    @Test func siteSectionsAndErrorsAtOnce() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("site-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for f in ["tls.crt", "tls.key", "ca.crt"] {
            try "x".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
        let good = """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: lab-a}
            spec:
              profile: lab
              hosts:
                - {name: cp-01, address: 10.0.0.10, roles: [control-plane]}
              network: {domain: ml.example.internal, apiEndpoint: 10.0.0.100, podCIDR: 10.244.0.0/16, serviceCIDR: 10.96.0.0/12, mtu: 9000}
              tls: {certificate: tls.crt, key: tls.key, ca: ca.crt}
              storage: {nfs: {server: nfs.example.internal, path: /export/datasets}}
              registry: {mode: in-cluster}
            """
        try good.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        let site = try SiteInventory.load(path: dir + "/site.yaml")
        #expect(site.network?.mtu == 9000)
        #expect(site.tls?.caFile == dir + "/ca.crt")
        #expect(site.storage?.nfsPath == "/export/datasets")
        #expect(site.registry?.mode == "in-cluster")
        let roundTrip = dir + "/rt.yaml"
        try site.yaml().write(toFile: roundTrip, atomically: true, encoding: .utf8)
        #expect(try SiteInventory.load(path: roundTrip).network == site.network)

        let bad = good.replacingOccurrences(of: "podCIDR: 10.244.0.0/16", with: "podCIDR: 10.96.0.0/16")
            .replacingOccurrences(of: "mtu: 9000", with: "mtu: 99999").replacingOccurrences(
                of: "ca: ca.crt", with: "ca: missing.crt"
            )
            .replacingOccurrences(of: "mode: in-cluster", with: "mode: existing")
        try bad.write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try SiteInventory.load(path: dir + "/bad.yaml")
            Issue.record("expected errors")
        } catch {
            #expect(error.diagnostics.count == 4)
            #expect(error.diagnostics.allSatisfy { $0.location != nil })
            #expect(error.description.contains("bad.yaml:8:"))
        }
    }
}
