import Foundation
import Testing

@testable import ApplianceSSH

@Suite struct SSHUnitTests {
    @Test func sha256MatchesKnownVectors() {
        let hex = { (b: [UInt8]) in b.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(hex(SHA256.hash(long)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func fingerprintsAreOpenSSHStyle() {
        let fp = HostKeyFingerprint.sha256(ofKeyBlob: Array("abc".utf8))
        #expect(fp == "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0")
        #expect(HostKeyFingerprint.normalize("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=") == fp)
    }

    @Test func shellQuotingSurvivesQuotes() {
        #expect(shellQuote("a b") == "'a b'")
        #expect(shellQuote("it's") == "'it'\\''s'")
    }

    @Test func knownHostsPatternUsesBracketsForOtherPorts() {
        #expect(KnownHosts.hostPattern(SSHEndpoint(host: "n1")) == "n1")
        #expect(KnownHosts.hostPattern(SSHEndpoint(host: "n1", port: 2222)) == "[n1]:2222")
    }

    @Test func errorsAreLowerCaseWithCategoriesAndHints() {
        let errors: [SSHError] = [
            .unreachable(host: "n1", reason: "connection refused"),
            .hostKeyUnknown(host: "n1", fingerprint: "SHA256:x"),
            .hostKeyChanged(host: "n1", expected: ["SHA256:a"], presented: "SHA256:b"),
            .authenticationFailed(host: "n1", user: "root", reason: "denied"),
            .timeout(host: "n1", operation: "command `sleep`", seconds: 1),
            .libssh2(host: "n1", step: "x", code: -1, message: "y"),
        ]
        #expect(errors.map(\.category) == [.unreachable, .hostKey, .hostKey, .authentication, .remote, .internal])
        for e in errors {
            #expect(e.message.first?.isLowercase == true)
            #expect(e.hint != nil)
            #expect(e.host == "n1")
        }
        let changed = SSHError.hostKeyChanged(host: "n1", expected: ["SHA256:a"], presented: "SHA256:b")
        #expect(changed.message.contains("SHA256:a") && changed.message.contains("SHA256:b"))
        #expect(SSHError.hostKeyUnknown(host: "n1", fingerprint: "f").hint!.contains("trust-new-hosts"))
    }

    @Test func endpointsNestJumpHosts() {
        let bastion = SSHEndpoint(host: "bastion")
        let target = SSHEndpoint(host: "n1", port: 2222, jump: bastion)
        #expect(target.jump == bastion)
        #expect(target.description == "root@n1:2222 via root@bastion:22")
        #expect(target != SSHEndpoint(host: "n1", port: 2222))
    }
}
