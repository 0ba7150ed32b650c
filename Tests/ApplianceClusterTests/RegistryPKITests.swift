import ApplianceModel
import Crypto
import Foundation
import Testing
import X509

@testable import ApplianceCluster

@Suite struct RegistryPKITests {
    typealias F = RenderFixtures
    let now = Date(timeIntervalSince1970: 1_796_000_000)

    @Test func issuesACAAndAServerCertificateThatParseBack() throws {
        let site = F.haSite()
        let ca = try RegistryPKI.issueAuthority(clusterName: site.name, now: now)
        #expect(ca.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
        #expect(ca.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let back = try RegistryPKI.readAuthority(certificatePEM: ca.certificatePEM, privateKeyPEM: ca.privateKeyPEM)
        #expect(back.certificate == ca.certificate)
        #expect(back.certificate.subject.description.contains("dc1 appliance registry CA"))

        let names = RegistryPKI.subjectAlternativeNames(site: site)
        #expect(names == ["sys-1", "10.0.0.21", "localhost", "127.0.0.1"])
        let server = try RegistryPKI.issueServerCertificate(names: names, authority: ca, now: now)
        let parsed = try Certificate(pemEncoded: server.certificatePEM)
        #expect(parsed.issuer == ca.certificate.subject)
        #expect(parsed.publicKey == Certificate.PublicKey(server.privateKey.publicKey))
        #expect(ca.certificate.publicKey.isValidSignature(parsed.signature, for: parsed))
        let sans = try #require(try parsed.extensions.subjectAlternativeNames)
        #expect(sans.contains(.dnsName("sys-1")) && sans.contains(.dnsName("localhost")))
        #expect(parsed.notValidAfter <= ca.certificate.notValidAfter)
        #expect(
            RegistryPKI.check(
                serverCertificatePEM: server.certificatePEM, keyPEM: server.privateKeyPEM, caPEM: ca.certificatePEM,
                names: names, now: now
            ).isEmpty)
    }

    @Test func checkFindsEveryProblemOfABroughtCertificate() throws {
        let ca = try RegistryPKI.issueAuthority(clusterName: "a", now: now)
        let other = try RegistryPKI.issueAuthority(clusterName: "b", now: now)
        let server = try RegistryPKI.issueServerCertificate(names: ["reg-1", "10.0.0.5"], authority: ca, now: now)
        let wrongKey = try RegistryPKI.issueServerCertificate(names: ["x"], authority: ca, now: now).privateKeyPEM
        let problems = RegistryPKI.check(
            serverCertificatePEM: server.certificatePEM, keyPEM: wrongKey, caPEM: other.certificatePEM,
            names: ["reg-1", "10.0.0.5", "10.0.0.6"], now: now + 6 * 365 * 86400)
        #expect(problems.contains("the registry key does not belong to the registry certificate"))
        #expect(problems.contains("the registry certificate is not signed by the given CA"))
        #expect(problems.contains { $0.hasPrefix("the registry certificate is not valid from now") })
        #expect(problems.contains("the registry certificate does not name 10.0.0.6 (subjectAltName)"))
        #expect(!problems.contains { $0.contains("10.0.0.5") || $0.contains("reg-1") })
    }

    @Test func readAuthorityRefusesAMismatchedKeyWithoutQuotingIt() throws {
        let a = try RegistryPKI.issueAuthority(clusterName: "a", now: now)
        let b = try RegistryPKI.issueAuthority(clusterName: "b", now: now)
        #expect(throws: RenderError("the registry CA key does not belong to the CA certificate")) {
            try RegistryPKI.readAuthority(certificatePEM: a.certificatePEM, privateKeyPEM: b.privateKeyPEM)
        }
        do {
            _ = try RegistryPKI.readAuthority(certificatePEM: a.certificatePEM, privateKeyPEM: "garbage-key-text")
            Issue.record("expected a refusal")
        } catch {
            #expect(!error.message.contains("garbage-key-text"))
        }
        let server = try RegistryPKI.issueServerCertificate(names: ["x"], authority: a, now: now)
        #expect(throws: RenderError.self) {
            try RegistryPKI.readAuthority(certificatePEM: server.certificatePEM, privateKeyPEM: server.privateKeyPEM)
        }
    }

    @Test func spkiHashIsKubeadmsCACertHash() throws {
        let ca = try RegistryPKI.issueAuthority(clusterName: "a", now: now)
        let hash = try RegistryPKI.spkiHash(certificatePEM: ca.certificatePEM)
        #expect(KubeadmConfig.isCACertHash(hash))
        // The same as kubeadm's documented pipeline (openssl pkey for an EC key), where openssl exists.
        let dir = NSTemporaryDirectory() + "spki-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ca.certificatePEM.write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        guard
            let (rc, out) = try F.run(
                "sh",
                [
                    "-c",
                    "openssl x509 -pubkey -noout -in \(dir)/ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256 -hex",
                ])
        else { return }
        #expect(rc == 0)
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(String(hash.dropFirst(7))))
    }

    /// `openssl verify` accepts the chain for the SSL server purpose and each SAN (where openssl exists).
    @Test func opensslVerifiesTheServerCertificate() throws {
        let ca = try RegistryPKI.issueAuthority(clusterName: "dc1", now: Date())
        let server = try RegistryPKI.issueServerCertificate(names: ["sys-1", "10.0.0.21"], authority: ca, now: Date())
        let dir = NSTemporaryDirectory() + "pki-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ca.certificatePEM.write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
        try server.certificatePEM.write(toFile: dir + "/server.crt", atomically: true, encoding: .utf8)
        try server.privateKeyPEM.write(toFile: dir + "/server.key", atomically: true, encoding: .utf8)
        guard
            let (rc, out) = try F.run(
                "openssl",
                [
                    "verify", "-CAfile", dir + "/ca.crt", "-purpose", "sslserver", "-verify_hostname", "sys-1",
                    dir + "/server.crt",
                ])
        else {
            print("openssl is not installed here: the verification is skipped")
            return
        }
        #expect(rc == 0, "\(out)")
        if let (rc2, out2) = try F.run(
            "openssl", ["verify", "-CAfile", dir + "/ca.crt", "-verify_ip", "10.0.0.21", dir + "/server.crt"])
        {
            #expect(rc2 == 0, "\(out2)")
        }
        if let (rc3, _) = try F.run(
            "openssl", ["verify", "-CAfile", dir + "/ca.crt", "-verify_hostname", "other", dir + "/server.crt"])
        {
            #expect(rc3 != 0)
        }
        // The key is the certificate's key (openssl's own check).
        if let (rc4, out4) = try F.run(
            "sh",
            ["-c", "openssl x509 -noout -pubkey -in \(dir)/server.crt; openssl pkey -pubout -in \(dir)/server.key"])
        {
            let keys = out4.components(separatedBy: "-----END PUBLIC KEY-----")
            #expect(
                rc4 == 0 && keys.count == 3
                    && keys[0].trimmingCharacters(in: .whitespacesAndNewlines)
                        == keys[1].trimmingCharacters(in: .whitespacesAndNewlines)
            )
        }
    }
}
