import Crypto
import Foundation
import SwiftASN1
import X509

/// The site's certificate for the platform's domain (`spec.tls`), checked before the ingress serves it:
/// it matches its key, names the domain and `*.domain`, is valid now and for `margin` more, and chains
/// (through any intermediates in the certificate file) to the site CA.
public enum SiteCertificateCheck {
    public static let defaultMargin: TimeInterval = 30 * 86400

    /// The reasons the certificate is refused; empty when it is fit.
    public static func problems(
        certificatePEM: String, keyPEM: String, caPEM: String, domain: String, now: Date,
        margin: TimeInterval = defaultMargin
    ) -> [String] {
        let chain: [Certificate]
        do {
            chain = try PEMDocument.parseMultiple(pemString: certificatePEM).map { try Certificate(pemDocument: $0) }
        } catch {
            return ["the certificate file is not a PEM certificate (\(error))"]
        }
        guard let leaf = chain.first else { return ["the certificate file is not a PEM certificate (it holds none)"] }
        guard let ca = try? Certificate(pemEncoded: caPEM) else { return ["the CA file is not a PEM certificate"] }
        var out: [String] = []
        if let key = try? Certificate.PrivateKey(pemEncoded: keyPEM) {
            if key.publicKey != leaf.publicKey { out.append("the key does not belong to the certificate") }
        } else if let key = try? P256.Signing.PrivateKey(pemRepresentation: keyPEM) {
            if Certificate.PublicKey(key.publicKey) != leaf.publicKey {
                out.append("the key does not belong to the certificate")
            }
        } else {
            out.append("the key file is not a PEM private key")
        }
        let names: [String] =
            ((try? leaf.extensions.subjectAlternativeNames) ?? nil)?.compactMap {
                if case .dnsName(let d) = $0 { return d.lowercased() }
                return nil
            } ?? []
        for want in [domain.lowercased(), "*.\(domain.lowercased())"] where !names.contains(want) {
            out.append(
                "the certificate does not name \(want) (subjectAltName has \(names.isEmpty ? "no DNS names" : names.joined(separator: ", ")))"
            )
        }
        if leaf.notValidBefore > now {
            out.append("the certificate is not valid yet (from \(leaf.notValidBefore))")
        } else if leaf.notValidAfter < now {
            out.append("the certificate expired on \(leaf.notValidAfter)")
        } else if leaf.notValidAfter < now + margin {
            out.append(
                "the certificate expires on \(leaf.notValidAfter), within \(Int(margin / 86400)) days")
        }
        if !chains(leaf, intermediates: Array(chain.dropFirst()), to: ca) {
            out.append("the certificate does not chain to the site CA (\(ca.subject))")
        }
        return out
    }

    /// Reads the three files and checks them; unreadable files are problems too.
    public static func problems(
        certificateFile: String, keyFile: String, caFile: String, domain: String, now: Date,
        margin: TimeInterval = defaultMargin
    ) -> [String] {
        func read(_ p: String) -> String? { try? String(contentsOfFile: p, encoding: .utf8) }
        guard let cert = read(certificateFile) else { return ["cannot read the certificate \(certificateFile)"] }
        guard let key = read(keyFile) else { return ["cannot read the key \(keyFile)"] }
        guard let ca = read(caFile) else { return ["cannot read the CA \(caFile)"] }
        return problems(certificatePEM: cert, keyPEM: key, caPEM: ca, domain: domain, now: now, margin: margin)
    }

    /// Walks issuer links from the leaf through the given intermediates to the CA, checking each signature.
    static func chains(_ leaf: Certificate, intermediates: [Certificate], to ca: Certificate) -> Bool {
        var current = leaf
        var pool = intermediates
        for _ in 0...intermediates.count {
            if current.issuer == ca.subject, ca.publicKey.isValidSignature(current.signature, for: current) {
                return true
            }
            guard
                let i = pool.firstIndex(where: {
                    $0.subject == current.issuer && $0.publicKey.isValidSignature(current.signature, for: current)
                })
            else { return false }
            current = pool.remove(at: i)
        }
        return false
    }
}
