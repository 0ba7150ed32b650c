import ApplianceModel
import Foundation
import Testing

@testable import AppliancePreflight

enum Fixture {
    /// The repository root (…/wt-preflight), from this file's path.
    static let repo: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `../shared/fixtures/gpu/` next to the repository, or `$APPLIANCE_FIXTURES`.
    static let directory: String = {
        if let d = ProcessInfo.processInfo.environment["APPLIANCE_FIXTURES"] { return d }
        let candidates = [repo + "/../shared/fixtures/gpu", "/work/shared/fixtures/gpu"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }()

    /// A capture with its `# SOURCE:`/`# DERIVED` first line stripped.
    static func text(_ name: String) throws -> String {
        let raw = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
        var lines = raw.split(separator: "\n", omittingEmptySubsequences: false)
        if let first = lines.first, first.hasPrefix("#") { lines.removeFirst() }
        return lines.joined(separator: "\n")
    }

    static func catalog() throws -> CheckCatalog { try CheckCatalog.load(directory: repo + "/preflight/checks") }
    static func profile(_ name: String) throws -> HardwareProfile {
        try ProfileCatalog(directory: repo + "/profiles").load(name)
    }
    static func collector() throws -> String { try PreflightRunner.collector(in: repo + "/preflight") }

    /// An HGX A100 node as the real captures show it, scaled to 8 GPUs where a capture shows fewer
    /// (the telegraf XML has one <gpu>, the AWS nvlink capture one GPU).
    static func hgxA100Sections(gpus: Int = 8) throws -> [String: CollectedSection] {
        let xml = try text("nvidia-smi-q-x_a100-sxm4-80gb_mig.xml")
        let start = try #require(xml.range(of: "<gpu id="))
        let end = try #require(xml.range(of: "</gpu>", options: .backwards))
        let gpu = String(xml[start.lowerBound..<end.upperBound])
            .replacingOccurrences(
                of: "<persistence_mode>Disabled</persistence_mode>",
                with: "<persistence_mode>Enabled</persistence_mode>"
            )
            .replacingOccurrences(of: "<current_mig>Enabled</current_mig>", with: "<current_mig>Disabled</current_mig>")
            .replacingOccurrences(of: "<pending_mig>Enabled</pending_mig>", with: "<pending_mig>Disabled</pending_mig>")
        let many = (0..<gpus).map { i in
            gpu.replacingOccurrences(of: "<minor_number>0</minor_number>", with: "<minor_number>\(i)</minor_number>")
        }
        .joined(separator: "\n")
        let scaledXML = String(xml[..<start.lowerBound]) + many + String(xml[end.upperBound...])
        let nvlink0 = try text("nvidia-smi-nvlink-s_a100-sxm4-80gb_p4de_12links")
            .split(separator: "\n").filter { $0.hasPrefix("GPU") || $0.hasPrefix("  Link") }.joined(separator: "\n")
        let nvlink = (0..<8).map { nvlink0.replacingOccurrences(of: "GPU 0:", with: "GPU \($0):") }.joined(
            separator: "\n")
        let lspci = try text("lspci-nn-grep-nvidia_hgx-a100-sxm4-80gb_8gpu-6nvswitch")
            .split(separator: "\n").prefix(15).joined(separator: "\n")
        func s(_ o: String, _ rc: Int = 0) -> CollectedSection { CollectedSection(output: o, exitCode: rc) }
        return [
            "nvsmi-xml": s(scaledXML), "nvlink-s": s(nvlink), "nvlink-e": s(""), "lspci": s(lspci),
            "topo": s(try text("nvidia-smi-topo-m_hgx-a100-8gpu_2x-epyc-7763_1nic")),
            "ibstat": s(try text("ibv_devinfo_ibstat_lspci_connectx6_mt4123")),
            "services": s(
                "nvidia-fabricmanager active=active enabled=enabled\nnvidia-persistenced active=active enabled=enabled"),
            "fabricmanager": s("version=535.54.03"),
            "nvidia-proc": s("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.54.03"),
            "xid": s(""),
        ]
    }
}

extension HardwareProfile {
    /// The hpc-8xa100 profile with the capture's driver pinned (the telegraf capture runs 535.54.03).
    func pinning(_ driver: String) -> HardwareProfile {
        var p = self
        p.gpuStack.driverVersions.insert(driver, at: 0)
        return p
    }
}
