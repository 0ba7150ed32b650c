import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// A node that cannot be reached.
struct UnreachableShell: NodeShell {
    func run(script: String, timeout: Duration) async throws -> NodeShellResult {
        throw NodeShellError.unreachable("connection refused")
    }
}

/// A node whose collector output is replaced (garbled, or a real capture set).
struct CannedShell: NodeShell {
    var stdout: String
    func run(script: String, timeout: Duration) async throws -> NodeShellResult {
        NodeShellResult(stdout: stdout, stderr: "", exitCode: 0)
    }
}

@Suite("Runner, collector and reports", .serialized)
struct RunnerTests {
    func runner(waivers: [Waiver] = [], timeout: Duration = .seconds(30)) throws -> PreflightRunner {
        PreflightRunner(
            catalog: try Fixture.catalog(), profile: try Fixture.profile("lab"), site: nil,
            collectorScript: try Fixture.collector(),
            timeout: timeout, waivers: waivers)
    }

    @Test func collectorRunsForRealHere() async throws {
        let r = try await LocalNodeShell().run(script: try Fixture.collector(), timeout: .seconds(60))
        let facts = NodeFacts.parse(r.stdout)
        #expect(facts["os-release"]?.exitCode == 0)
        #expect(facts.osRelease["ID"] != nil)
        #expect(facts.cpuCount ?? 0 >= 1)
        #expect(facts["nvsmi-xml"] != nil)  // present as a section even where nvidia-smi is missing (127)
        #expect(facts["meta-end"] != nil)  // ran to the end
    }

    @Test func hungCollectorTimesOut() async throws {
        let start = ContinuousClock.now
        await #expect(throws: NodeShellError.timedOut(.milliseconds(500))) {
            _ = try await LocalNodeShell().run(script: "sleep 30 & sleep 30", timeout: .milliseconds(500))
        }
        // Far below the 30 s the command would run: a loaded 2-core machine can take seconds to reap it.
        #expect(ContinuousClock.now - start < .seconds(15))
    }

    @Test func unreachableNodeIsReportedOthersStillChecked() async throws {
        let nodes = [
            PreflightNode(name: "cp-01", address: "127.0.0.1", roles: [.controlPlane], shell: LocalNodeShell()),
            PreflightNode(name: "gpu-01", address: "10.255.0.1", roles: [.gpuWorker], shell: UnreachableShell()),
            PreflightNode(
                name: "gpu-02", address: "10.255.0.2", roles: [.gpuWorker],
                shell: CannedShell(
                    stdout: "\u{0}garbage\n@@appliance:begin nvsmi-xml\n<<<\n@@appliance:end nvsmi-xml 0\n")),
        ]
        let report = try await runner(waivers: [
            Waiver(checkID: "os.swap", node: "cp-01", reason: "lab host keeps swap")
        ]).run(nodes: nodes, siteShell: nil)
        #expect(report.outcome("node.reachable", "gpu-01")?.status == .fail)
        #expect(report.outcome("node.reachable", "cp-01")?.status == .pass)
        #expect(report.outcome("os.release", "cp-01")?.status == .pass)  // Debian 12 meets the lab profile
        #expect(report.outcome("gpu.count", "gpu-02")?.observed.hasPrefix("could not read") == true)
        #expect(report.outcome("os.swap", "cp-01")?.waiver?.reason == "lab host keeps swap")
        #expect(report.exitStatus == .preflightFailed)

        // JSON: stable schema, waiver present.
        let json = try #require(JSONSerialization.jsonObject(with: try report.json()) as? [String: Any])
        #expect(json["schemaVersion"] as? Int == 1)
        #expect(json["exitCode"] as? Int == 3)
        let results = try #require(json["results"] as? [[String: Any]])
        #expect(
            results.contains {
                $0["check"] as? String == "os.swap"
                    && ($0["waiver"] as? [String: Any])?["reason"] as? String == "lab host keeps swap"
            })
        // JUnit: parses as XML, one suite per node, the waiver shown.
        let junit = JUnitReport.render(report)
        let doc = try XMLDocument(data: Data(junit.utf8))
        #expect(doc.rootElement()?.elements(forName: "testsuite").count == 4)  // three nodes and the site column
        #expect(junit.contains("waived: lab host keeps swap"))
        // Table and HTML show it too.
        #expect(TableReport.render(report).contains("lab host keeps swap"))
        #expect(TableReport.render(report).contains("UNREACHABLE gpu-01"))
        #expect(HTMLReport.render(report).contains("lab host keeps swap"))
    }

    @Test func htmlRendersInAHeadlessBrowser() async throws {
        guard
            let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(
                where: FileManager.default.isExecutableFile(atPath:))
        else {
            print("skipping: chromium is not installed (scripts/bootstrap installs it)")
            return
        }
        // A realistic report: this machine, the HGX A100 captures on two nodes (one with a link down), an unreachable one.
        var sections = try Fixture.hgxA100Sections()
        func dump(_ s: [String: CollectedSection]) -> String {
            s.map { "@@appliance:begin \($0.key)\n\($0.value.output)\n@@appliance:end \($0.key) \($0.value.exitCode)" }
                .joined(separator: "\n")
        }
        let local = try await LocalNodeShell().run(script: try Fixture.collector(), timeout: .seconds(60)).stdout
        let good = local + "\n" + dump(sections)
        sections["nvlink-s"]!.output = sections["nvlink-s"]!.output.replacingOccurrences(
            of: "GPU 5: NVIDIA A100-SXM4-80GB (UUID: GPU-370ec676-e407-3115-836a-8ebcb3c4f62a)\n  Link 0: 25 GB/s",
            with: "GPU 5: NVIDIA A100-SXM4-80GB (UUID: GPU-370ec676-e407-3115-836a-8ebcb3c4f62a)\n  Link 0: <inactive>")
        let bad = local + "\n" + dump(sections)
        let nodes = [
            PreflightNode(
                name: "cp-01", address: "10.0.0.10", roles: [.controlPlane], shell: CannedShell(stdout: local)),
            PreflightNode(name: "gpu-01", address: "10.0.0.21", roles: [.gpuWorker], shell: CannedShell(stdout: good)),
            PreflightNode(name: "gpu-02", address: "10.0.0.22", roles: [.gpuWorker], shell: CannedShell(stdout: bad)),
            PreflightNode(name: "gpu-03", address: "10.0.0.23", roles: [.gpuWorker], shell: UnreachableShell()),
        ]
        let r = PreflightRunner(
            catalog: try Fixture.catalog(), profile: try Fixture.profile("hpc-8xa100").pinning("535.54.03"), site: nil,
            collectorScript: "",
            waivers: [Waiver(checkID: "kernel.pinned", node: nil, reason: "kernels pinned by the image pipeline")])
        let report = await r.run(nodes: nodes, siteShell: nil)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pf-html-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let html = dir + "/report.html", png = dir + "/report.png"
        try HTMLReport.render(report).write(toFile: html, atomically: true, encoding: .utf8)
        #expect(!HTMLReport.render(report).contains("http://") && !HTMLReport.render(report).contains("https://"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: chromium)
        p.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--user-data-dir=\(dir)/profile",
            "--screenshot=\(png)", "--window-size=1400,900", "file://\(html)",
        ]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        let data = try Data(contentsOf: URL(fileURLWithPath: png))
        #expect(data.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        #expect(data.count > 30_000)  // a blank page is a few kB
        if let keep = ProcessInfo.processInfo.environment["APPLIANCE_KEEP_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(atPath: png, toPath: keep)
        }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
