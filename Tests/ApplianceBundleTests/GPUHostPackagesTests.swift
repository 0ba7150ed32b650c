import Testing

@testable import ApplianceBundle

@Suite("host GPU stack packages: parts and version pins (issue 13)")
struct GPUHostPackagesTests {
    @Test func partsByVendorNames() {
        #expect(GPUHostPackages.part(ofPackage: "nvidia-driver") == .driver)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-driver-535-server") == .driver)
        #expect(GPUHostPackages.part(ofPackage: "cuda-drivers-550") == .driver)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-open-580") == .driver)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-fabricmanager-550") == .fabricManager)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-fabricmanager") == .fabricManager)
        #expect(GPUHostPackages.part(ofPackage: "libnvidia-nscq-535") == .fabricManager)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-container-toolkit") == .containerToolkit)
        #expect(GPUHostPackages.part(ofPackage: "libnvidia-container1") == .containerToolkit)
        #expect(GPUHostPackages.part(ofPackage: "nvidia-smi-tools") == nil)
        #expect(GPUHostPackages.part(ofPackage: "containerd") == nil)
        #expect(GPUHostPackages.isFabricManagerDaemon("nvidia-fabricmanager-550"))
        #expect(!GPUHostPackages.isFabricManagerDaemon("libnvidia-nscq-550"))
    }

    @Test func upstreamVersions() {
        #expect(GPUHostPackages.upstreamVersion("535.161.08-1") == "535.161.08")
        #expect(GPUHostPackages.upstreamVersion("1:535.161.08-0ubuntu2.22.04.1") == "535.161.08")
        #expect(GPUHostPackages.upstreamVersion("535.161.08") == "535.161.08")
    }

    @Test func fabricManagerMustEqualTheDriver() {
        let ok: [GPUHostPackages.Package] = [
            .init(name: "cuda-drivers-550", version: "550.163.01-1", artifact: "cuda-drivers"),
            .init(name: "nvidia-fabricmanager-550", version: "550.163.01-1", artifact: "fabricmanager"),
            .init(name: "nvidia-container-toolkit", version: "1.19.1-1", artifact: "container-toolkit"),
        ]
        #expect(GPUHostPackages.pinProblems(ok).isEmpty)
        var skew = ok
        skew[1].version = "550.144.03-1"
        let p = GPUHostPackages.pinProblems(skew)
        #expect(p.count == 1)
        #expect(p.first?.contains("550.144.03") == true && p.first?.contains("550.163.01") == true, "\(p)")
        #expect(p.first?.contains("must be exactly the driver's version") == true)
        // The lab's stand-ins carry no Debian revision; the pin compares upstream versions.
        let lab: [GPUHostPackages.Package] = [
            .init(name: "nvidia-driver", version: "535.161.08", artifact: "nvidia-driver"),
            .init(name: "nvidia-fabricmanager", version: "535.161.08-1", artifact: "nvidia-fabricmanager"),
        ]
        #expect(GPUHostPackages.pinProblems(lab).isEmpty)
        #expect(GPUHostPackages.driverVersion(lab) == "535.161.08")
    }

    @Test func deniedAndOrphanedAreRefused() {
        let denied = GPUHostPackages.pinProblems(
            [.init(name: "nvidia-driver-570", version: "570.124.06-1", artifact: "d")],
            deniedDriverVersions: ["570.124.06"])
        #expect(
            denied == [
                "NVIDIA driver 570.124.06 (nvidia-driver-570 570.124.06-1, artifact 'd') is on the profile's deny list (deniedDriverVersions)"
            ])
        let orphan = GPUHostPackages.pinProblems([
            .init(name: "nvidia-fabricmanager", version: "535.161.08", artifact: "f")
        ])
        #expect(orphan.first?.contains("has no NVIDIA driver package") == true)
        let two = GPUHostPackages.pinProblems([
            .init(name: "nvidia-driver", version: "535.161.08", artifact: "a"),
            .init(name: "cuda-drivers-550", version: "550.163.01-1", artifact: "b"),
        ])
        #expect(two.first?.contains("more than one NVIDIA driver version") == true)
    }
}
