import Foundation
import Testing

/// `appliance platform values|check` as a user runs them: files written, findings, exit codes.
@Suite(.serialized) struct PlatformCLITests {
    let dir = NSTemporaryDirectory() + "platform-cli-" + UUID().uuidString
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    init() throws {
        try FileManager.default.createDirectory(atPath: dir + "/tls", withIntermediateDirectories: true)
    }

    /// The example site with a CA and a wildcard certificate made by openssl.
    func exampleSite(sans: String = "DNS:ml.example.internal,DNS:*.ml.example.internal") throws -> String {
        let tls = dir + "/tls"
        func openssl(_ args: [String]) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = args
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "openssl \(args.joined(separator: " "))")
        }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        try openssl(
            ["req", "-x509"] + ec + [
                "-keyout", "\(tls)/ca.key", "-out", "\(tls)/site-ca.crt", "-days", "3650", "-subj", "/CN=site CA",
            ])
        try openssl(
            ["req"] + ec + [
                "-keyout", "\(tls)/wildcard.key", "-out", "\(tls)/w.csr", "-subj", "/CN=ml.example.internal",
            ])
        try "subjectAltName=\(sans)\n".write(toFile: "\(tls)/ext", atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", "\(tls)/w.csr", "-CA", "\(tls)/site-ca.crt", "-CAkey", "\(tls)/ca.key",
            "-CAcreateserial", "-out", "\(tls)/wildcard.crt", "-days", "365", "-extfile", "\(tls)/ext",
        ])
        let text = try String(
            contentsOf: Self.repository.appendingPathComponent("schemas/examples/site-platform.yaml"), encoding: .utf8)
        try text.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        return dir + "/site.yaml"
    }

    @Test func valuesWritesEveryReleaseDeterministically() async throws {
        let site = try exampleSite()
        let a = try await CLI.run(["platform", "values", "-i", site, "-o", dir + "/a"], state: dir + "/state")
        #expect(a.status == 0, "\(a.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/a").sorted()
        #expect(
            files == [
                "cloudnative-pg.values.yaml", "csi-driver-nfs.values.yaml", "gpu-operator.values.yaml",
                "haproxy-ingress.values.yaml", "kai-scheduler.values.yaml", "kube-prometheus-stack.values.yaml",
                "object-store.values.yaml", "platform-db.values.yaml", "platform-objects.yaml",
            ])
        let b = try await CLI.run(["platform", "values", "-i", site, "-o", dir + "/b"], state: dir + "/state")
        #expect(b.status == 0)
        for f in files {
            let x = try Data(contentsOf: URL(fileURLWithPath: dir + "/a/" + f))
            let y = try Data(contentsOf: URL(fileURLWithPath: dir + "/b/" + f))
            #expect(x == y, "\(f) differs between two runs")
        }
        let kai = try String(contentsOfFile: dir + "/a/kai-scheduler.values.yaml", encoding: .utf8)
        #expect(kai.contains("registry: 10.0.0.21:5000/ghcr.io/kai-scheduler/kai-scheduler"))
    }

    @Test func checkPassesAFitSiteAndRefusesABrokenOne() async throws {
        let site = try exampleSite()
        let ok = try await CLI.run(["platform", "check", "-i", site], state: dir + "/state")
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("the platform fits (3 queues, 16 GPUs)"))
        let text = try String(contentsOfFile: site, encoding: .utf8).replacingOccurrences(
            of: "{name: org, gpuQuota: 16}", with: "{name: org, gpuQuota: 20}")
        try text.write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await CLI.run(["platform", "check", "-i", dir + "/bad.yaml"], state: dir + "/state")
        #expect(bad.status == 3)
        #expect(bad.stderr.contains("error: the platform does not fit the site"))
        #expect(bad.stderr.contains("QUOTA-SUM: top-level GPU quotas sum to 20 (org 20) but the cluster has 16 GPUs"))
        #expect(bad.stderr.contains("hint: "))
    }

    @Test func checkRefusesACertificateWithoutTheWildcard() async throws {
        let site = try exampleSite(sans: "DNS:ml.example.internal")
        let r = try await CLI.run(["platform", "check", "-i", site], state: dir + "/state")
        #expect(r.status == 3)
        #expect(r.stderr.contains("the certificate does not name *.ml.example.internal"))
    }

    @Test func refusesSitesWithoutAPlatformAndBadOutput() async throws {
        let ha = Self.repository.appendingPathComponent("schemas/examples/site-ha.yaml").path
        let r = try await CLI.run(["platform", "values", "-i", ha, "-o", dir + "/x"], state: dir + "/state")
        #expect(r.status == 1)
        #expect(r.stderr.contains("error: site 'dc1' cannot carry the platform"))
        #expect(r.stderr.contains("the site has no 'spec.platform' section"))
        let site = try exampleSite()
        try "x".write(toFile: dir + "/file", atomically: true, encoding: .utf8)
        let f = try await CLI.run(["platform", "values", "-i", site, "-o", dir + "/file"], state: dir + "/state")
        #expect(f.status == 2)
        #expect(f.stderr.contains("exists and is not a folder"))
    }
}
