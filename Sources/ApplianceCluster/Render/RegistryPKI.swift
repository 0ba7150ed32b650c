import ApplianceModel
import Crypto
import Foundation
import SwiftASN1
import X509

/// The private registry's PKI, issued in memory (P-256 ECDSA, SHA-256 signatures) and handed out as PEM:
/// a CA the installer keeps in the admin host's state directory, and a server certificate for the registry
/// node(s) whose SANs name every registry node by name and address (and `localhost`, for seeding on the node).
///
/// Pure: no file I/O; the caller stores the CA (key 0600) and ships the server certificate and key with
/// `RegistryConfig`. A site that brings its own registry certificate (`spec.registry.certificate/key/ca`)
/// skips the issuing, and `check(serverCertificatePEM:keyPEM:caPEM:names:)` verifies what it brought.
public enum RegistryPKI {
    /// `@unchecked Sendable`: `P256.Signing.PrivateKey` is an immutable value (its BoringSSL key is never
    /// mutated after creation; signing only reads it), which swift-crypto 3.12 does not yet declare Sendable.
    public struct Authority: @unchecked Sendable {
        public let certificate: Certificate
        public let privateKey: P256.Signing.PrivateKey

        public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
        /// Secret: the CA's private key (PKCS#8 PEM). Store with mode 0600; never log.
        public var privateKeyPEM: String { privateKey.pemRepresentation }
    }

    /// `@unchecked Sendable`: as `Authority`.
    public struct ServerCertificate: @unchecked Sendable {
        public let certificate: Certificate
        public let privateKey: P256.Signing.PrivateKey
        public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
        /// Secret: the server's private key (PKCS#8 PEM).
        public var privateKeyPEM: String { privateKey.pemRepresentation }
    }

    public static let caValidity: TimeInterval = 10 * 365 * 86400
    public static let serverValidity: TimeInterval = 5 * 365 * 86400

    /// A new CA, `CN=<cluster> appliance registry CA`, valid from a minute before `now` (clock skew between
    /// the admin host and the nodes) for ten years.
    public static func issueAuthority(clusterName: String, now: Date) throws(RenderError) -> Authority {
        let key = P256.Signing.PrivateKey()
        do {
            let name = try DistinguishedName {
                OrganizationName("appliance")
                CommonName("\(clusterName) appliance registry CA")
            }
            let publicKey = Certificate.PublicKey(key.publicKey)
            let cert = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now - 60, notValidAfter: now + caValidity, issuer: name, subject: name,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: publicKey)
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
            return Authority(certificate: cert, privateKey: key)
        } catch {
            throw RenderError("cannot issue the registry CA: \(error)")
        }
    }

    /// Reads back a CA kept in the state directory; refuses a key that does not belong to the certificate
    /// or a certificate that is no CA.
    public static func readAuthority(certificatePEM: String, privateKeyPEM: String) throws(RenderError) -> Authority {
        let cert: Certificate
        let key: P256.Signing.PrivateKey
        do {
            cert = try Certificate(pemEncoded: certificatePEM)
        } catch {
            throw RenderError("the registry CA certificate is not a PEM certificate: \(error)")
        }
        do {
            key = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        } catch {
            // Never echo the key's text.
            throw RenderError("the registry CA key is not a PEM P-256 private key")
        }
        guard cert.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw RenderError("the registry CA key does not belong to the CA certificate")
        }
        guard let constraints = try? cert.extensions.basicConstraints, case .isCertificateAuthority = constraints else {
            throw RenderError("the registry CA certificate is not a CA (basicConstraints CA:TRUE missing)")
        }
        return Authority(certificate: cert, privateKey: key)
    }

    /// The SANs of the registry certificate: each registry node's name and address, then `localhost` and
    /// `127.0.0.1`.
    public static func subjectAlternativeNames(site: SiteInventory) -> [String] {
        var out: [String] = []
        for h in site.registryHosts {
            for n in [h.name, h.address] where !out.contains(n) { out.append(n) }
        }
        for n in ["localhost", "127.0.0.1"] where !out.contains(n) { out.append(n) }
        return out
    }

    /// A server certificate for `names` (DNS names and IPv4 addresses), signed by `authority`.
    public static func issueServerCertificate(
        names: [String], authority: Authority, now: Date
    ) throws(RenderError) -> ServerCertificate {
        guard let first = names.first else { throw RenderError("a registry certificate needs at least one name") }
        let key = P256.Signing.PrivateKey()
        do {
            let subject = try DistinguishedName {
                OrganizationName("appliance")
                CommonName(first)
            }
            let sans: [GeneralName] = names.map { n in
                if let a = IPv4Address(n) {
                    let v = a.value
                    return .ipAddress(
                        ASN1OctetString(contentBytes: [
                            UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255),
                        ]))
                }
                return .dnsName(n)
            }
            let publicKey = Certificate.PublicKey(key.publicKey)
            let caSKI = try authority.certificate.extensions.subjectKeyIdentifier?.keyIdentifier
            let notAfter = min(now + serverValidity, authority.certificate.notValidAfter)
            let cert = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now - 60, notValidAfter: notAfter, issuer: authority.certificate.subject,
                subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage([.serverAuth])
                    SubjectAlternativeNames(sans)
                    SubjectKeyIdentifier(hash: publicKey)
                    if let caSKI { AuthorityKeyIdentifier(keyIdentifier: caSKI) }
                },
                issuerPrivateKey: Certificate.PrivateKey(authority.privateKey))
            return ServerCertificate(certificate: cert, privateKey: key)
        } catch {
            throw RenderError("cannot issue the registry certificate: \(error)")
        }
    }

    /// Checks a server certificate (the site's or one issued earlier) before it is shipped: the key is
    /// its key, the CA signed it, it is valid at `now` for at least `margin`, and it names every one of
    /// `names`. Returns the problems, empty when it is fit.
    public static func check(
        serverCertificatePEM: String, keyPEM: String?, caPEM: String, names: [String], now: Date,
        margin: TimeInterval = 30 * 86400
    ) -> [String] {
        var problems: [String] = []
        guard let cert = try? Certificate(pemEncoded: serverCertificatePEM) else {
            return ["the registry certificate is not a PEM certificate"]
        }
        guard let ca = try? Certificate(pemEncoded: caPEM) else { return ["the registry CA is not a PEM certificate"] }
        if let keyPEM {
            // A site's key may be any type; compare through the certificate's public key when it is P-256.
            if let k = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM) {
                if cert.publicKey != Certificate.PublicKey(k.publicKey) {
                    problems.append("the registry key does not belong to the registry certificate")
                }
            } else if (try? Certificate.PrivateKey(pemEncoded: keyPEM)).map({ cert.publicKey != $0.publicKey }) ?? true
            {
                problems.append("the registry key does not belong to the registry certificate")
            }
        }
        if cert.issuer != ca.subject || !ca.publicKey.isValidSignature(cert.signature, for: cert) {
            problems.append("the registry certificate is not signed by the given CA")
        }
        if cert.notValidBefore > now || cert.notValidAfter < now + margin {
            problems.append(
                "the registry certificate is not valid from now for at least \(Int(margin / 86400)) days (until \(cert.notValidAfter))"
            )
        }
        let sans = (try? cert.extensions.subjectAlternativeNames) ?? nil
        for n in names {
            let present =
                sans?.contains { g in
                    switch g {
                    case .dnsName(let d): return d.lowercased() == n.lowercased()
                    case .ipAddress(let o):
                        guard let a = IPv4Address(n) else { return false }
                        let v = a.value
                        return Array(o.bytes) == [
                            UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255),
                        ]
                    default: return false
                    }
                } ?? false
            if !present { problems.append("the registry certificate does not name \(n) (subjectAltName)") }
        }
        return problems
    }

    /// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo (DER): kubeadm's `caCertHashes` form, for the
    /// cluster CA read from `/etc/kubernetes/pki/ca.crt`.
    public static func spkiHash(certificatePEM: String) throws(RenderError) -> String {
        do {
            let cert = try Certificate(pemEncoded: certificatePEM)
            var serializer = DER.Serializer()
            try serializer.serialize(cert.publicKey)
            let digest = SHA256.hash(data: serializer.serializedBytes)
            return "sha256:" + digest.map { String(format: "%02x", $0) }.joined()
        } catch {
            throw RenderError("cannot read the CA certificate's public key: \(error)")
        }
    }
}
