import ApplianceModel
import Foundation
import Testing

@testable import ApplianceSupport

@Suite("support bundle redaction (streaming)")
struct RedactionTests {
    let rules: RedactionRules

    init() throws { rules = try RedactionRules(sitePatterns: ["ACME-[0-9]{6}"]) }

    /// Redacts `text` fed in pieces of `chunk` bytes (1: every byte boundary is a chunk boundary).
    func redact(_ text: String, chunk: Int = 1 << 20) throws -> (String, Int) {
        var out = ""
        let r = StreamRedactor(rules: rules) { out += $0 }
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            try r.feed(Array(bytes[i..<min(bytes.count, i + chunk)]))
            i += chunk
        }
        try r.finish()
        return (out, r.count)
    }

    @Test("a PEM private key split across lines and chunks goes; its BEGIN/END lines and neighbours stay")
    func pemAcrossChunks() throws {
        let text = """
            cert: ok-neighbour
            -----BEGIN RSA PRIVATE KEY-----
            MIIEpAIBAAKCAQEAsecretlinenumberone
            c2VjcmV0bGluZW51bWJlcnR3bw==
            -----END RSA PRIVATE KEY-----
            after: still-here
            -----BEGIN CERTIFICATE-----
            MIIBpublicCertificateBody
            -----END CERTIFICATE-----

            """
        for chunk in [1, 7, 4096] {
            let (out, n) = try redact(text, chunk: chunk)
            #expect(!out.contains("secretlinenumberone"), "chunk \(chunk): \(out)")
            #expect(!out.contains("c2VjcmV0bGluZW51bWJlcnR3bw"))
            #expect(out.contains("-----BEGIN RSA PRIVATE KEY-----<redacted>"))
            #expect(out.contains("-----END RSA PRIVATE KEY-----"))
            #expect(out.contains("cert: ok-neighbour") && out.contains("after: still-here"))
            #expect(out.contains("MIIBpublicCertificateBody"), "certificates are not secrets")
            #expect(n == 1)
        }
    }

    @Test("a private key inside one line (JSON string with \\n escapes) goes")
    func pemInline() throws {
        let (out, n) = try redact(
            #"{"tls.key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANsecretinline\n-----END PRIVATE KEY-----\n", "tls.crt": "keep"}"#
                + "\n")
        #expect(!out.contains("secretinline"))
        #expect(out.contains("\"tls.crt\": \"keep\""))
        #expect(n >= 1)
    }

    @Test("bootstrap tokens, certificate keys, bearer tokens and --token flags go wherever they are")
    func tokens() throws {
        let certKey = String(repeating: "a1b2c3d4", count: 8)
        let text = """
            Nov 30 kubeadm[42]: kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234
            certificateKey: \(certKey)
            I1130 uploaded with --certificate-key=\(certKey) ok
            curl -H "Authorization: Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6.payload.sig" https://x
            plain line with node gpu-1 and pod web-0

            """
        let (out, n) = try redact(text, chunk: 5)
        #expect(!out.contains("abcdef.0123456789abcdef"))
        #expect(!out.contains("0123456789abcdef"))
        #expect(!out.contains(certKey))
        #expect(!out.contains("eyJhbGciOiJSUzI1NiIsImtpZCI6"))
        #expect(out.contains("--discovery-token-ca-cert-hash sha256:1234"), "the CA hash is public: \(out)")
        #expect(out.contains("plain line with node gpu-1 and pod web-0"))
        #expect(n >= 4)
    }

    @Test("a Secret's data and stringData values go and its keys stay, in JSON where kind comes after data")
    func secretJSON() throws {
        let text = """
            {
                "apiVersion": "v1",
                "items": [
                    {
                        "apiVersion": "v1",
                        "data": {
                            "password": "aHVudGVyMg==",
                            "username": "YWRtaW4="
                        },
                        "kind": "Secret",
                        "metadata": {
                            "name": "db-credentials",
                            "namespace": "platform"
                        },
                        "type": "Opaque"
                    },
                    {
                        "apiVersion": "v1",
                        "data": {
                            "feature": "enabled-value-kept"
                        },
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": "settings"
                        }
                    }
                ],
                "kind": "List"
            }

            """
        let (out, _) = try redact(text, chunk: 3)
        #expect(!out.contains("aHVudGVyMg=="))
        #expect(!out.contains("YWRtaW4="), "every data value of a Secret goes, whatever its key")
        #expect(out.contains("\"password\": \"<redacted>\""), "\(out)")
        #expect(out.contains("\"username\": \"<redacted>\""))
        #expect(out.contains("\"name\": \"db-credentials\""))
        #expect(out.contains("enabled-value-kept"), "a ConfigMap's data is kept")
        #expect(try JSONSerialization.jsonObject(with: Data(out.utf8)) is [String: Any], "still JSON")
    }

    @Test("a Secret in YAML (kind first or last), its last-applied annotation, and a ConfigMap beside it")
    func secretYAML() throws {
        let text = """
            apiVersion: v1
            kind: Secret
            metadata:
              name: registry
              annotations:
                kubectl.kubernetes.io/last-applied-configuration: |
                  {"apiVersion":"v1","kind":"Secret","stringData":{"htpasswd":"admin:s3cr3tLastApplied"},"metadata":{"name":"registry"}}
            stringData:
              config: |
                multi-line-secret-one
                multi-line-secret-two
              user: visible-key-hidden-value
            type: Opaque
            ---
            apiVersion: v1
            data:
              token: dG9rZW5ieXRlcw==
            kind: Secret
            metadata:
              name: later-kind
            ---
            apiVersion: v1
            kind: ConfigMap
            data:
              motd: welcome-kept

            """
        let (out, _) = try redact(text, chunk: 11)
        for secret in [
            "s3cr3tLastApplied", "multi-line-secret-one", "multi-line-secret-two", "visible-key-hidden-value",
            "dG9rZW5ieXRlcw==",
        ] {
            #expect(!out.contains(secret), "\(secret) leaked:\n\(out)")
        }
        #expect(out.contains("  user: <redacted>"))
        #expect(out.contains("  token: <redacted>"))
        #expect(out.contains("name: later-kind"))
        #expect(out.contains("motd: welcome-kept"))
    }

    @Test("kubeconfig tokens and client keys, values-file passwords, docker auths and htpasswd hashes")
    func keyNames() throws {
        let text = """
            users:
            - name: admin
              user:
                client-certificate-data: UFVCTElDLUNFUlQ=
                client-key-data: S0VZLURBVEEtU0VDUkVU
                token: kubeconfigtokenvalue123
            postgresql:
              auth:
                password: "values-password-1"
                existingSecret: pg-secret-name
                secretName: kept-reference
              adminPassword: adminpw2
              replicas: 3
            {"auths":{"registry.local:5000":{"auth":"dXNlcjpkb2NrZXJwYXNz","username":"u","password":"dockerpass"}}}
            admin:$2y$05$abcdefghijklmnopqrstuuJ3G8x7q9V1oK2mN4bP6cR8tW0yZ1aBc
            ACME-123456 is a site-specific customer number; ACME-12 is not

            """
        let (out, n) = try redact(text, chunk: 9)
        for secret in [
            "S0VZLURBVEEtU0VDUkVU", "kubeconfigtokenvalue123", "values-password-1", "adminpw2",
            "dXNlcjpkb2NrZXJwYXNz", "dockerpass", "abcdefghijklmnopqrstuuJ3G8x7q9V1oK2mN4bP6cR8tW0yZ1aBc",
            "ACME-123456",
        ] {
            #expect(!out.contains(secret), "\(secret) leaked:\n\(out)")
        }
        #expect(out.contains("client-certificate-data: UFVCTElDLUNFUlQ="), "the certificate is public")
        #expect(out.contains("secretName: kept-reference"), "a reference to a Secret is not a secret")
        #expect(out.contains("replicas: 3"))
        #expect(out.contains("\"username\":\"u\""))
        #expect(out.contains("admin:<redacted>"))
        #expect(out.contains("ACME-12 is not"))
        #expect(n >= 9)
    }

    @Test("a password in a log line goes; the rest of the line stays")
    func logLine() throws {
        let (out, _) = try redact(
            "2026-11-30T10:00:00Z registry[7]: level=info msg=\"login\" password=logpass99 user=ops\n")
        #expect(!out.contains("logpass99"))
        #expect(out.contains("msg=\"login\"") && out.contains("user=ops"))
    }

    @Test("a line longer than the line limit is handled in pieces, and memory stays bounded")
    func longLine() throws {
        var out = ""
        let r = StreamRedactor(rules: rules, maxLine: 1024) { out += $0 }
        let long = String(repeating: "x", count: 5000) + " password=inlongline\n"
        try r.feed(Array(long.utf8))
        try r.finish()
        #expect(out.utf8.count >= 5000)
        #expect(!out.contains("inlongline"))
    }

    @Test("a site pattern that is not a regular expression is refused with its position")
    func badSitePattern() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("support-site-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("site.yaml").path
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata:
          name: s
        spec:
          hosts:
            - {name: cp-1, address: 10.0.0.1, roles: [control-plane]}
          supportBundle:
            redact:
              - "ACME-[0-9]{6}"
              - "unclosed(group"
              - "a*"

        """.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try SiteInventory.load(path: path)
            Issue.record("a bad pattern was accepted")
        } catch {
            let text = error.description
            #expect(text.contains("site.yaml:11:"), "\(text)")
            #expect(text.contains("unclosed(group"))
            #expect(text.contains("site.yaml:12:") && text.contains("matches the empty string"), "\(text)")
        }
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata:
          name: s
        spec:
          hosts:
            - {name: cp-1, address: 10.0.0.1, roles: [control-plane]}
          supportBundle:
            redact: ["ACME-[0-9]{6}"]

        """.write(toFile: path, atomically: true, encoding: .utf8)
        let site = try SiteInventory.load(path: path)
        #expect(site.supportBundle.redact.map(\.pattern) == ["ACME-[0-9]{6}"])
        #expect(site.yaml().contains("ACME-[0-9]{6}"))
    }
}
