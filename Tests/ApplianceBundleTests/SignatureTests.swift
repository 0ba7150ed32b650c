import Foundation
import Testing

@testable import ApplianceBundle

@Suite struct SignatureTests {
    @Test func keyRoundTripsThroughPEM() throws {
        let key = try Ed25519Key.generate()
        let priv = try Ed25519Key.parse(pem: try key.privateKeyPEM(), path: "k")
        let pub = try Ed25519Key.parse(pem: try key.publicKeyPEM(), path: "p")
        #expect(priv.hasPrivateKey)
        #expect(!pub.hasPrivateKey)
        #expect(try pub.fingerprint() == key.fingerprint())
        #expect(try key.fingerprint().hasPrefix("SHA256:"))
        let msg = Data("manifest bytes".utf8)
        let sig = try priv.sign(msg)
        #expect(sig.count == 64)
        #expect(pub.verify(signature: sig, message: msg))
        #expect(!pub.verify(signature: sig, message: Data("manifest byteS".utf8)))
    }

    @Test func rejectsNonPEMAndPublicKeySigning() throws {
        #expect(throws: BundleError.self) { try Ed25519Key.parse(pem: Data("garbage".utf8), path: "x") }
        let pub = try Ed25519Key.parse(pem: try Ed25519Key.generate().publicKeyPEM(), path: "p")
        #expect(throws: BundleError.self) { try pub.sign(Data()) }
    }

    @Test func signedBundleVerifiesWithItsKey() throws {
        let s = try SampleBundle()
        let path = try s.build()
        let v = try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        #expect(v.signer == .trustedKey(fingerprint: try s.key.fingerprint()))
        // The two files and the bill of materials (issue 15), which the signature covers like any artifact.
        #expect(v.manifest.allArtifacts.count == 3)
        let sbom = try #require(v.manifest.allArtifacts.first { $0.component.name == BundleSBOM.component })
        #expect(v.bytesVerified == 300_006 + sbom.artifact.size)
    }

    @Test func untrustedKeyIsRefusedNamingBothKeys() throws {
        let s = try SampleBundle()
        let path = try s.build()
        let other = try Ed25519Key.generate()
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [other], allowUnsigned: false)
        }
        guard case .signatureUntrusted(_, let signedBy, let trusted) = error else {
            Issue.record("wrong error \(String(describing: error))")
            return
        }
        #expect(signedBy == (try s.key.fingerprint()))
        #expect(trusted == [try other.fingerprint()])
        #expect(error?.exitStatus == .verification)
    }

    @Test func unsignedBundleNeedsExplicitFlag() throws {
        let s = try SampleBundle()
        let path = try s.build(signed: false)
        #expect(throws: BundleError.signatureMissing(path: path)) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
        let v = try BundleArchive.open(path).verify(trusted: [], allowUnsigned: true)
        #expect(v.signer == .unsignedAllowed)
    }

    @Test func flippedManifestByteBreaksTheSignature() throws {
        let s = try SampleBundle()
        let path = try s.build()
        // Same length, so the tar stays well-formed: only the signed bytes differ.
        try patch(path, replacing: Data("version: 1.1.0".utf8), with: Data("version: 9.1.0".utf8))
        let error = #expect(throws: BundleError.self) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
        guard case .signatureInvalid = error else {
            Issue.record("expected signatureInvalid, got \(String(describing: error))")
            return
        }
    }

    @Test func malformedSignatureFileIsRefused() throws {
        let s = try SampleBundle()
        let path = try s.build()
        try patch(path, replacing: Data("algorithm: ed25519".utf8), with: Data("algorithm: ed25518".utf8))
        #expect(throws: BundleError.signatureInvalid(path: path, reason: "manifest.yaml.sig is malformed")) {
            try BundleArchive.open(path).verify(trusted: [s.key], allowUnsigned: false)
        }
    }
}
