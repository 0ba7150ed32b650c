import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

/// Analyzers against the real HGX A100 captures, then faulty variants derived from them in the test.
@Suite("Analyzers on captures and faulty variants")
struct AnalyzerTests {
    func verdicts(_ sections: [String: CollectedSection], profile: HardwareProfile? = nil) throws -> [String:
        CheckStatus]
    {
        let catalog = try Fixture.catalog()
        let prof = try profile ?? Fixture.profile("hpc-8xa100").pinning("535.54.03")
        let facts = NodeFacts(sections: sections, sentAt: 1, receivedAt: 2)
        var out: [String: CheckStatus] = [:]
        for c in catalog.checks
        where c.scope == .node && (c.id.hasPrefix("gpu.") || c.id.hasPrefix("health.") || c.id.hasPrefix("net.ib")) {
            let ctx = NodeContext(
                node: "gpu-01", address: "10.0.0.1", roles: [.gpuWorker], facts: facts, profile: prof, site: nil,
                check: c, bundleGiB: 0)
            let analyzer = try #require(Analyzers.node[c.id])
            let verdict = analyzer(ctx)
            out[c.id] = verdict.status(severity: c.severity).0
        }
        return out
    }

    @Test func healthyHGXA100Passes() throws {
        let v = try verdicts(try Fixture.hgxA100Sections())
        for id in [
            "gpu.pci-count", "gpu.smi", "gpu.count", "gpu.model", "gpu.memory", "gpu.driver", "gpu.nvswitch-count",
            "gpu.fabricmanager", "gpu.fabricmanager-version", "gpu.nvlink", "gpu.nvlink-speed", "gpu.topology",
            "health.ecc-mode", "health.ecc-uncorrected", "health.pcie-width", "health.clock-events", "health.mig",
            "gpu.persistence", "health.xid", "net.ib-ports",
        ] {
            #expect(v[id] == .pass, "\(id) is \(v[id].map { $0.rawValue } ?? "missing")")
        }
        #expect(v["gpu.fabric-state"] == .skip)  // A100 reports N/A
        #expect(v["net.ib-rate"] == .warn)  // the capture is HDR100, the profile wants HDR 200
    }

    /// operator-precompiled: the GPU Operator picks `driver:<branch>-<kernel>-<os>` from the running kernel, so
    /// the bundle must carry that tag; without a bundle (plain `appliance preflight`) the check is skipped.
    @Test func precompiledDriverImageForTheRunningKernel() throws {
        let catalog = try Fixture.catalog()
        let check = try #require(catalog.check("gpu.precompiled-driver"))
        let h100 = try Fixture.profile("hpc-8xh100")
        #expect(h100.gpuStack.mode == .operatorPrecompiled && h100.gpuStack.driverBranch == 550)
        let facts = NodeFacts(
            sections: [
                "uname": CollectedSection(output: "5.15.0-1043-nvidia #53-Ubuntu SMP x86_64", exitCode: 0),
                "os-release": CollectedSection(output: "ID=ubuntu\nVERSION_ID=\"22.04\"", exitCode: 0),
            ], sentAt: 1, receivedAt: 2)
        func verdict(_ images: [String]?, profile: HardwareProfile? = nil, roles: [NodeRole] = [.gpuWorker]) -> (
            CheckStatus, String
        ) {
            let ctx = NodeContext(
                node: "gpu-1", address: "10.0.0.31", roles: roles, facts: facts, profile: profile ?? h100, site: nil,
                check: check, bundleGiB: 0, bundleImages: images)
            return (Analyzers.node[check.id]!)(ctx).status(severity: check.severity)
        }
        let operands = PrecompiledDriver.operandImages
        let fits = verdict(operands + ["nvcr.io/nvidia/driver:550-5.15.0-1043-nvidia-ubuntu22.04"])
        #expect(fits.0 == .pass, "\(fits)")
        let other = verdict(operands + ["nvcr.io/nvidia/driver:550-5.15.0-1032-nvidia-ubuntu22.04"])
        #expect(other.0 == .fail)
        #expect(
            other.1.contains("no nvcr.io/nvidia/driver:550-5.15.0-1043-nvidia-ubuntu22.04 in the bundle")
                && other.1.contains("it carries 550-5.15.0-1032-nvidia-ubuntu22.04"), "\(other.1)")
        let none = verdict(operands)
        #expect(none.0 == .fail && none.1.contains("no branch 550 driver image"), "\(none.1)")
        #expect(verdict(nil).0 == .skip)
        #expect(verdict([], profile: try Fixture.profile("hpc-8xa100")).0 == .skip)  // host-driver
        #expect(check.appliesTo([.gpuWorker]) && !check.appliesTo([.system]))
    }

    @Test func gpuMissing() throws {
        var s = try Fixture.hgxA100Sections(gpus: 7)
        s["lspci"]!.output = s["lspci"]!.output.split(separator: "\n").dropLast().joined(separator: "\n")
        let v = try verdicts(s)
        #expect(v["gpu.count"] == .fail)
        #expect(v["gpu.pci-count"] == .fail)
    }

    @Test func linkInactive() throws {
        var s = try Fixture.hgxA100Sections()
        s["nvlink-s"]!.output = s["nvlink-s"]!.output.replacingOccurrences(
            of: "GPU 3: NVIDIA A100-SXM4-80GB (UUID: GPU-370ec676-e407-3115-836a-8ebcb3c4f62a)\n  Link 0: 25 GB/s",
            with: "GPU 3: NVIDIA A100-SXM4-80GB (UUID: GPU-370ec676-e407-3115-836a-8ebcb3c4f62a)\n  Link 0: <inactive>")
        s["topo"]!.output = s["topo"]!.output.replacingOccurrences(of: "GPU3    NV12", with: "GPU3    SYS ")
        let v = try verdicts(s)
        #expect(v["gpu.nvlink"] == .fail)
        #expect(v["gpu.topology"] == .fail)
    }

    @Test func eccDisabled() throws {
        var s = try Fixture.hgxA100Sections()
        s["nvsmi-xml"]!.output = s["nvsmi-xml"]!.output.replacingOccurrences(
            of: "<current_ecc>Enabled</current_ecc>", with: "<current_ecc>Disabled</current_ecc>")
        #expect(try verdicts(s)["health.ecc-mode"] == .fail)
        // Only pending differs: a reboot is due, that is a warning.
        var p = try Fixture.hgxA100Sections()
        p["nvsmi-xml"]!.output = p["nvsmi-xml"]!.output.replacingOccurrences(
            of: "<pending_ecc>Enabled</pending_ecc>", with: "<pending_ecc>Disabled</pending_ecc>")
        #expect(try verdicts(p)["health.ecc-mode"] == .warn)
        // The real H800 capture with ECC disabled, through the text parser.
        let h800 = try NvidiaSMIText.parse(try Fixture.text("nvidia-smi-q_h800-hgx8_gpu0_ecc-disabled"))
        #expect(h800.gpus.first?.eccModeCurrent == "Disabled")
    }

    @Test func fabricManagerDown() throws {
        var s = try Fixture.hgxA100Sections()
        s["services"]!.output = "nvidia-fabricmanager active=inactive enabled=disabled"
        #expect(try verdicts(s)["gpu.fabricmanager"] == .fail)
        s["services"]!.output = "nvidia-fabricmanager active=active enabled=disabled"
        #expect(try verdicts(s)["gpu.fabricmanager"] == .warn)
        s["fabricmanager"]!.output = "version=535.54.02"
        #expect(try verdicts(s)["gpu.fabricmanager-version"] == .fail)
    }

    @Test func persistenceOff() throws {
        var s = try Fixture.hgxA100Sections()
        s["services"]!.output = "nvidia-fabricmanager active=active enabled=enabled"
        s["nvsmi-xml"]!.output = s["nvsmi-xml"]!.output.replacingOccurrences(
            of: "<persistence_mode>Enabled</persistence_mode>", with: "<persistence_mode>Disabled</persistence_mode>")
        #expect(try verdicts(s)["gpu.persistence"] == .warn)
    }

    @Test func hopperFabricInProgress() throws {
        let csv = try Fixture.text("nvidia-smi-query-gpu-all-fields_nvidia-h100-80gb-hbm3.csv")
        var gpus = try NvidiaSMIQueryCSV.parse(csv)
        #expect(gpus.first?.fabricState == "Completed")
        gpus[0].fabricState = "In Progress"
        #expect(gpus[0].fabricState != "Completed")
    }

    @Test func garbledOutputSaysCouldNotRead() throws {
        var s = try Fixture.hgxA100Sections()
        s["nvsmi-xml"]!.output = "<nvidia_smi_log><gpu><product_name>NVIDIA A100"  // cut off mid-way
        s["nvlink-s"]!.output = "GPU 0: X (UUID: GPU-1)\n  Link 0: \u{FFFD}\u{FFFD} GB/s"
        s["topo"]!.output = "\u{1B}[4mgarbage"
        let v = try verdicts(s)
        #expect(v["gpu.count"] == .unknown)
        #expect(v["health.ecc-mode"] == .unknown)
        #expect(v["gpu.nvlink"] == .unknown)
        #expect(v["gpu.topology"] == .unknown)
    }

    @Test func mixedDriverVersionsAcrossNodes() async throws {
        let healthy = try Fixture.hgxA100Sections()
        var other = healthy
        other["nvsmi-xml"]!.output = other["nvsmi-xml"]!.output.replacingOccurrences(
            of: "<driver_version>535.54.03</driver_version>", with: "<driver_version>535.161.08</driver_version>")
        let nodes = ["gpu-01", "gpu-02", "gpu-03"].map {
            PreflightNode(name: $0, address: $0, roles: [.gpuWorker], shell: LocalNodeShell())
        }
        let facts = [
            "gpu-01": NodeFacts(sections: healthy), "gpu-02": NodeFacts(sections: healthy),
            "gpu-03": NodeFacts(sections: other),
        ]
        let out = ClusterAnalyzers.run(
            catalog: try Fixture.catalog(), nodes: nodes, facts: facts, profile: try Fixture.profile("hpc-8xa100"),
            site: nil)
        let driver = out.filter { $0.checkID == "cluster.driver" }
        #expect(driver.first { $0.node == "gpu-03" }?.status == .fail)
        #expect(driver.first { $0.node == "gpu-01" }?.status == .warn)
    }

    @Test func catalogueHasAnAnalyzerForEveryCheck() throws {
        let c = try Fixture.catalog()
        #expect(c.checks.count >= 60)
        #expect(Set(c.checks.map(\.id)).count == c.checks.count)
        for check in c.checks where check.scope == .node { #expect(Analyzers.node[check.id] != nil, "\(check.id)") }
        for id in ["gpu.count", "gpu.fabricmanager", "os.swap", "k8s.ports", "tls.chain", "time.skew"] {
            #expect(c.check(id) != nil)
        }
        #expect(c.check("storage.write-latency")?.threshold("maxMs", profile: "lab", fallback: 0) == 200)
        #expect(c.check("storage.write-latency")?.threshold("maxMs", profile: "hpc-8xa100", fallback: 0) == 20)
    }

    @Test func malformedCatalogueIsPositioned() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pf-cat-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "category: x\nchecks:\n  - id: Bad\n    title: t\n    reads: r\n    severity: fatal\n    remediation: r\n"
            .write(toFile: dir + "/x.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try CheckCatalog.load(directory: dir)
            Issue.record("expected errors")
        } catch {
            #expect(error.diagnostics.count == 2)
            #expect(error.description.contains("x.yaml:3:"))
        }
    }
}
