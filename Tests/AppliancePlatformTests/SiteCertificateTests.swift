import Crypto
import Foundation
import SwiftASN1
import Testing
import X509

@testable import AppliancePlatform

/// The site certificate check: a fit certificate passes; each reason to refuse one is named.
@Suite struct SiteCertificateTests {
    static let domain = "ml.example.internal"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    struct Issued {
        var certificatePEM: String
        var keyPEM: String
        var key: P256.Signing.PrivateKey
        var certificate: Certificate
    }

    static func ca(_ name: String = "site CA") throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let dn = try DistinguishedName { CommonName(name) }
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 86400, notValidAfter: now + 3650 * 86400, issuer: dn, subject: dn,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return Issued(
            certificatePEM: try cert.serializeAsPEM().pemString, keyPEM: key.pemRepresentation, key: key,
            certificate: cert)
    }

    static func leaf(
        names: [String] = [domain, "*.\(domain)"], by issuer: Issued, from: Date = now - 86400,
        until: Date = now + 365 * 86400, isCA: Bool = false
    ) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let cert = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: from, notValidAfter: until, issuer: issuer.certificate.subject,
            subject: try DistinguishedName { CommonName(names.first ?? "leaf") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                if isCA {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                } else {
                    Critical(BasicConstraints.notCertificateAuthority)
                }
                SubjectAlternativeNames(names.map { .dnsName($0) })
            },
            issuerPrivateKey: Certificate.PrivateKey(issuer.key))
        return Issued(
            certificatePEM: try cert.serializeAsPEM().pemString, keyPEM: key.pemRepresentation, key: key,
            certificate: cert)
    }

    static func problems(_ cert: String, key: String, ca: String) -> [String] {
        SiteCertificateCheck.problems(certificatePEM: cert, keyPEM: key, caPEM: ca, domain: domain, now: now)
    }

    @Test func aFitCertificatePasses() throws {
        let ca = try Self.ca()
        let l = try Self.leaf(by: ca)
        #expect(Self.problems(l.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM) == [])
    }

    @Test func aChainThroughAnIntermediatePasses() throws {
        let ca = try Self.ca()
        let mid = try Self.leaf(names: ["intermediate"], by: ca, isCA: true)
        let l = try Self.leaf(by: mid)
        #expect(Self.problems(l.certificatePEM + "\n" + mid.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM) == [])
        // Without the intermediate in the file, it does not chain.
        #expect(
            Self.problems(l.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM) == [
                "the certificate does not chain to the site CA (\(ca.certificate.subject))"
            ])
    }

    @Test func anotherKeyIsRefused() throws {
        let ca = try Self.ca()
        let l = try Self.leaf(by: ca)
        let other = P256.Signing.PrivateKey().pemRepresentation
        #expect(
            Self.problems(l.certificatePEM, key: other, ca: ca.certificatePEM) == [
                "the key does not belong to the certificate"
            ])
    }

    @Test func missingWildcardIsRefused() throws {
        let ca = try Self.ca()
        let l = try Self.leaf(names: [Self.domain], by: ca)
        #expect(
            Self.problems(l.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM) == [
                "the certificate does not name *.\(Self.domain) (subjectAltName has \(Self.domain))"
            ])
    }

    @Test func otherDomainIsRefused() throws {
        let ca = try Self.ca()
        let l = try Self.leaf(names: ["other.example", "*.other.example"], by: ca)
        let p = Self.problems(l.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM)
        #expect(p.count == 2)
        #expect(p.first?.hasPrefix("the certificate does not name \(Self.domain)") ?? false)
    }

    @Test func expiredExpiringAndNotYetValidAreRefused() throws {
        let ca = try Self.ca()
        let expired = try Self.leaf(by: ca, from: Self.now - 400 * 86400, until: Self.now - 86400)
        #expect(
            Self.problems(expired.certificatePEM, key: expired.keyPEM, ca: ca.certificatePEM).first?.hasPrefix(
                "the certificate expired on") ?? false)
        let soon = try Self.leaf(by: ca, until: Self.now + 10 * 86400)
        #expect(
            Self.problems(soon.certificatePEM, key: soon.keyPEM, ca: ca.certificatePEM).first?.hasSuffix(
                "within 30 days") ?? false)
        let future = try Self.leaf(by: ca, from: Self.now + 86400)
        #expect(
            Self.problems(future.certificatePEM, key: future.keyPEM, ca: ca.certificatePEM).first?.hasPrefix(
                "the certificate is not valid yet") ?? false)
    }

    @Test func anotherCAIsRefused() throws {
        let ca = try Self.ca()
        let rogue = try Self.ca("rogue CA")
        let l = try Self.leaf(by: rogue)
        #expect(
            Self.problems(l.certificatePEM, key: l.keyPEM, ca: ca.certificatePEM) == [
                "the certificate does not chain to the site CA (\(ca.certificate.subject))"
            ])
        // Same subject, other key: the signature decides.
        let impostor = try Self.ca("site CA")
        let m = try Self.leaf(by: impostor)
        #expect(Self.problems(m.certificatePEM, key: m.keyPEM, ca: ca.certificatePEM).count == 1)
    }

    @Test func garbageIsRefused() throws {
        let ca = try Self.ca()
        #expect(
            Self.problems("not a certificate", key: "x", ca: ca.certificatePEM).first?.hasPrefix(
                "the certificate file is not a PEM certificate") ?? false)
        let l = try Self.leaf(by: ca)
        #expect(
            Self.problems(l.certificatePEM, key: "garbage", ca: ca.certificatePEM) == [
                "the key file is not a PEM private key"
            ])
    }
}
