import Foundation

/// The compiled patterns every file of a support bundle goes through (see `StreamRedactor`).
///
/// `@unchecked Sendable`: it holds only `NSRegularExpression`s, which are immutable and documented safe to use
/// from several threads at once, and constant strings.
public final class RedactionRules: @unchecked Sendable {
    /// What replaces a secret.
    public static let mask = "<redacted>"

    /// Key names whose values are secrets: a key containing one of these (case-insensitive)...
    static let secretKeyParts = [
        "password", "passwd", "passphrase", "secret", "token", "apikey", "api_key", "api-key", "accesskey",
        "access_key", "access-key", "privatekey", "private_key", "private-key", "credential", "client-key-data",
        "certificatekey", "certificate-key", "certificate_key", "htpasswd",
    ]
    /// ...or exactly one of these (docker config.json `auth`, short forms).
    static let secretKeysExact: Set<String> = ["auth", "pass", "pwd", "key-data"]
    /// ...unless it only names or points at a secret (`secretName`, `passwordFile`, `tokenTTL`, `existingSecretRef`).
    static let referenceSuffixes = [
        "name", "names", "ref", "file", "path", "enabled", "ttl", "type", "kind", "policy", "namespace", "dir",
        "mode", "format", "selector", "seconds", "length", "prefix", "url", "endpoint", "expiry", "expiration",
        "audiences", "audience",
    ]

    let pemInline: NSRegularExpression
    let pemBegin: NSRegularExpression
    let pemEnd: NSRegularExpression
    let yamlKey: NSRegularExpression
    let jsonPair: NSRegularExpression
    let escapedJSONPair: NSRegularExpression
    let freeKeyValue: NSRegularExpression
    let secretFlag: NSRegularExpression
    let bootstrapToken: NSRegularExpression
    let certificateKey: NSRegularExpression
    let bearer: NSRegularExpression
    let htpasswd: NSRegularExpression
    let compactSecretData: NSRegularExpression
    let compactValue: NSRegularExpression
    let compactSecretKind: NSRegularExpression
    let site: [NSRegularExpression]

    /// - Parameter sitePatterns: the site's `spec.supportBundle.redact` (already validated by the site loader;
    ///   an invalid one is refused here too).
    public init(sitePatterns: [String] = []) throws {
        func rx(_ p: String, _ o: NSRegularExpression.Options = []) -> NSRegularExpression {
            // The built-in patterns are constants; a failure is a bug caught by every test.
            guard let r = try? NSRegularExpression(pattern: p, options: o) else {
                preconditionFailure("invalid built-in redaction pattern \(p)")
            }
            return r
        }
        pemInline = rx(#"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----).*?(-----END [A-Z0-9 ]*PRIVATE KEY-----)"#)
        pemBegin = rx(#"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"#)
        pemEnd = rx(#"-----END [A-Z0-9 ]*PRIVATE KEY-----"#)
        // `key: value` at the start of a YAML line (list items too); the key may be quoted (JSON).
        yamlKey = rx(#"^(\s*(?:-\s+)?)("?)([A-Za-z0-9_.\-/]+)("?\s*:)(\s*)(.*)$"#)
        jsonPair = rx(#""([^"\\]{1,200})"(\s*:\s*)"((?:[^"\\]|\\.)*)""#)
        escapedJSONPair = rx(#"\\"([^"\\]{1,200})\\"(\s*:\s*)\\"((?:[^"\\]|\\[^"])*)\\""#)
        freeKeyValue = rx(#"([A-Za-z0-9_.\-]{2,100})(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s"',;}\]]+)"#)
        secretFlag = rx(
            #"(--(?:token|discovery-token|tls-bootstrap-token|certificate-key|password|passwd|secret|api-key|client-secret)(?:=|\s+))("[^"]*"|'[^']*'|[^\s"']+)"#
        )
        bootstrapToken = rx(#"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"#)
        certificateKey = rx(#"(certificate[-_]?key["']?\s*[:=\s]\s*["']?)([0-9a-fA-F]{64})"#, [.caseInsensitive])
        bearer = rx(#"(\bbearer\s+)([A-Za-z0-9\-._~+/]+=*)"#, [.caseInsensitive])
        htpasswd = rx(
            #"^(\s*[^:\s]+:)(\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}|\$apr1\$\S+|\{SHA\}[A-Za-z0-9+/=]+|\$[1256]\$\S+)"#)
        compactSecretKind = rx(#"\\?"kind\\?"\s*:\s*\\?"Secret\\?""#)
        compactSecretData = rx(#"(\\?"(?:data|stringData)\\?"\s*:\s*\{)([^{}]*)(\})"#)
        compactValue = rx(#"(:\s*\\?")((?:[^"\\]|\\[^"])*)(\\?")"#)
        var compiled: [NSRegularExpression] = []
        for p in sitePatterns {
            do {
                compiled.append(try NSRegularExpression(pattern: p))
            } catch {
                throw SupportError.badPattern(pattern: p, reason: "\(error)")
            }
        }
        site = compiled
    }

    /// Whether the value of `key` is a secret.
    static func isSecretKey(_ key: String) -> Bool {
        let k = key.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "\"'-_ "))
        if secretKeysExact.contains(k) { return true }
        guard secretKeyParts.contains(where: { k.contains($0) }) else { return false }
        return !referenceSuffixes.contains { k.hasSuffix($0) }
    }

    /// Values that hold nothing secret: empty, booleans, null, an empty map or list.
    static func isHarmlessValue(_ v: String) -> Bool {
        let t = v.trimmingCharacters(in: CharacterSet(charactersIn: " \t,\"'"))
        return t.isEmpty
            || ["true", "false", "null", "~", "{}", "[]", "{", "[", "none", "<none>", mask].contains(t.lowercased())
            || t == mask
    }
}
