import ApplianceModel
import Foundation
import Testing

@testable import ApplianceLab

@Suite("lab pieces that need no root")
struct LabUnitTests {
    @Test func mirrorFromDeb822AndOneLineSources() throws {
        let deb822 = """
            Types: deb
            URIs: http://mirror.example/debian-security
            Suites: bookworm-security
            Components: main

            Types: deb-src deb
            URIs: http://mirror.example/debian
            Suites: bookworm bookworm-updates
            Components: main contrib
            """
        #expect(RootfsCache.mirror(in: deb822, deb822: true, suite: "bookworm") == "http://mirror.example/debian")
        #expect(RootfsCache.mirror(in: deb822, deb822: true, suite: "trixie") == nil)
        let list = """
            # deb http://commented.example/debian bookworm main
            deb [signed-by=/usr/share/keyrings/x.gpg arch=amd64] http://one.example/debian bookworm main non-free
            """
        #expect(RootfsCache.mirror(in: list, deb822: false, suite: "bookworm") == "http://one.example/debian")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apt-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir + "/sources.list.d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "Types: deb\nURIs: http://ignored.example/x\nSuites: bookworm\nComponents: main\n".write(
            toFile: dir + "/sources.list.d/other.sources.disabled", atomically: true, encoding: .utf8)
        #expect(throws: LabError.self) { try RootfsCache.configuredMirror(suite: "bookworm", aptDirectory: dir) }
        try deb822.write(toFile: dir + "/sources.list.d/debian.sources", atomically: true, encoding: .utf8)
        #expect(
            try RootfsCache.configuredMirror(suite: "bookworm", aptDirectory: dir) == "http://mirror.example/debian")
    }

    @Test func ratesParseAndBadOnesAreRefused() throws {
        #expect(try LabNetwork.bitsPerSecond("100mbit") == 100_000_000)
        #expect(try LabNetwork.bitsPerSecond("1gbit") == 1_000_000_000)
        #expect(try LabNetwork.bitsPerSecond("1.5mbit") == 1_500_000)
        #expect(try LabNetwork.bitsPerSecond("10mbps") == 80_000_000)
        for bad in ["", "fast", "-1mbit", "0mbit"] {
            #expect(throws: LabError.self) { try LabNetwork.bitsPerSecond(bad) }
        }
    }

    @Test func everyLastingFaultHasACounterpart() {
        let lasting = LabFaultKind.allCases.filter(\.isLasting)
        #expect(
            Set(lasting) == [
                .powerOff, .partition, .slowLink, .packetLoss, .diskFull, .stopService, .killService, .gpuMissing,
                .nvlinkDown, .eccErrors, .fabricManagerStopped, .driverMismatch,
            ])
        #expect(LabFaultKind.gpuHealthy.undoes == LabFaultKind.gpuFaults)
        #expect(!LabFaultKind.dropSSH.isLasting)
        for kind in LabFaultKind.allCases where !kind.undoes.isEmpty { #expect(!kind.isLasting) }
    }

    @Test func configRefusesIdsAndSubnetsThatCouldEscape() {
        #expect(throws: LabError.self) { try LabConfig(id: "Lab-1") }
        #expect(throws: LabError.self) { try LabConfig(id: "averylongid") }
        #expect(throws: LabError.self) { try LabConfig(subnet: "8.8.8") }
        #expect(throws: LabError.self) { try LabConfig(subnet: "10.77") }
        #expect((try? LabConfig(id: "t1", subnet: "192.168.77"))?.nodeAddress(3) == "192.168.77.13")
    }

    @Test func namesRolesAndHardwareFollowTheProfile() throws {
        let p = try LabProfile.named("hpc-8xa100")
        #expect(Lab.nodeNames(profile: p, count: 5, controlPlanes: 2) == ["cp-1", "cp-2", "gpu-1", "gpu-2", "gpu-3"])
        #expect(p.roles(index: 0, count: 5, controlPlanes: 2) == [.controlPlane, .system])
        #expect(p.roles(index: 2, count: 5, controlPlanes: 2) == [.gpuWorker])
        #expect(p.roles(index: 0, count: 1, controlPlanes: 1) == [.controlPlane, .system, .gpuWorker])
        // A dedicated system node: the control plane keeps only its own role; the system node is a server
        // (no GPUs), the workers GPU servers.
        #expect(
            Lab.nodeNames(profile: p, count: 4, controlPlanes: 1, systemNodes: 1) == [
                "cp-1", "sys-1", "gpu-1", "gpu-2",
            ])
        #expect(p.roles(index: 0, count: 4, controlPlanes: 1, systemNodes: 1) == [.controlPlane])
        #expect(p.roles(index: 1, count: 4, controlPlanes: 1, systemNodes: 1) == [.system])
        #expect(p.roles(index: 2, count: 4, controlPlanes: 1, systemNodes: 1) == [.gpuWorker])
        #expect(p.declaration(node: "sys-1", roles: [.system]).gpus == nil)
        #expect(p.declaration(node: "gpu-1", roles: [.gpuWorker]).gpus != nil)
        let worker = p.declaration(node: "gpu-1", roles: [.gpuWorker])
        #expect(
            worker.gpus?.model == "NVIDIA A100-SXM4-80GB" && worker.gpus?.count == 8 && worker.gpus?.nvswitches == 6)
        #expect(p.declaration(node: "cp-1", roles: [.controlPlane, .system]).gpus == nil)
        #expect(throws: LabError.self) { try LabProfile.named("no-such-profile") }
    }

    @Test func theLabSiteFileLoadsWithTheProductsOwnReader() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("labsite-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try LabConfig(id: "u", subnet: "10.77.9", directory: dir)
        let lab = Lab(config: config, logger: .init(label: "test"))
        let state = LabState(
            id: "u", subnet: "10.77.9", profile: "lab", phase: .running, createdAt: Date(), rootfs: "/x",
            adminNamespace: nil, adminAddress: config.adminAddress, linkRate: nil, adminLinkRate: nil, diskSizeMiB: 64,
            nodes: [
                .init(
                    name: "cp-1", index: 1, address: "10.77.9.11", roles: [.controlPlane, .system],
                    hostKeyFingerprint: "SHA256:abc", pid: nil, faults: []),
                .init(
                    name: "gpu-1", index: 2, address: "10.77.9.12", roles: [.gpuWorker],
                    hostKeyFingerprint: "SHA256:def", pid: nil, faults: []),
            ])
        try lab.write(lab.siteInventory(state).yaml(), to: config.sitePath)
        let site = try SiteInventory.load(path: config.sitePath)
        #expect(site.hosts.map(\.name) == ["cp-1", "gpu-1"])
        #expect(site.host(named: "gpu-1")?.hostKeyFingerprints == ["SHA256:def"])
        #expect(site.ssh.identityFile == config.keyPath && site.ssh.knownHostsFile == config.knownHostsPath)
    }

    @Test func gpuFaultArgumentsAreCheckedBeforeTheNodeIsTouched() throws {
        #expect(try Lab.nodeFaultArguments(.nvlinkDown, "2:5") == ["nvlink-down", "2", "5"])
        #expect(try Lab.nodeFaultArguments(.eccErrors, "1") == ["ecc-uncorrectable", "1", "1"])
        #expect(try Lab.nodeFaultArguments(.eccErrors, "1:7") == ["ecc-uncorrectable", "1", "7"])
        #expect(try Lab.nodeFaultArguments(.gpuMissing, "3") == ["gpu-missing", "3"])
        #expect(try Lab.nodeFaultArguments(.driverMismatch, "535.104.05") == ["driver-mismatch", "535.104.05"])
        for (kind, bad) in [
            (LabFaultKind.nvlinkDown, "2"), (.nvlinkDown, "a:1"), (.gpuMissing, "-1"), (.gpuMissing, "x"),
            (.eccErrors, "1:0"), (.eccErrors, "1:2:3"), (.driverMismatch, "535; rm -rf /"),
        ] {
            #expect(throws: LabError.self, "\(kind.rawValue) \(bad)") { try Lab.nodeFaultArguments(kind, bad) }
        }
    }
}
