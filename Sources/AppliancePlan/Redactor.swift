import Foundation

/// Scrubs secrets from text before it reaches the journal, events or logs.
///
/// Two layers: exact values registered at run time (join tokens, certificate keys, registry
/// passwords: anything the plan's code learns) and patterns for secrets in command lines and config
/// (`--token X`, `--certificate-key X`, `password: X`, kubeadm bootstrap tokens). Thread-safe.
public final class Redactor: @unchecked Sendable {
    // @unchecked: `secrets` is only read and written under `lock`.
    public static let mask = "***"

    private let lock = NSLock()
    private var secrets: [String] = []

    private static let patterns: [NSRegularExpression] = {
        let flags =
            #"--(?:token|discovery-token|tls-bootstrap-token|certificate-key|password|passwd|secret|api-key)(?:=|\s+)"#
        let keys = #"(?i)\b(?:password|passwd|secret|token|certificate[-_]?key|api[-_]?key|client[-_]?secret)"#
        let sources = [
            // Command-line flags whose value is a secret: --token X, --token=X, --certificate-key "X" ...
            "(\(flags)\")([^\"]*)", "(\(flags)')([^']*)", #"("# + flags + #")([^\s"']\S*)"#,
            // key: value, key=value, "key": "value" for secret-looking keys (quotes are kept).
            "(\(keys)\"?\\s*[:=]\\s*\")([^\"]*)", "(\(keys)'?\\s*[:=]\\s*')([^']*)",
            "(\(keys)[\"']?\\s*[:=]\\s*)([^\\s\"',;}]+)",
            // kubeadm bootstrap tokens wherever they appear.
            #"()\b[a-z0-9]{6}\.[a-z0-9]{16}\b"#,
            // PEM private keys.
            #"()-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"#,
        ]
        return sources.map { source in
            guard let regex = try? NSRegularExpression(pattern: source) else {
                preconditionFailure("invalid redaction pattern \(source)")
            }
            return regex
        }
    }()

    public init(secrets: [String] = []) {
        for s in secrets { register(secret: s) }
    }

    /// Registers a value that must never be written anywhere. Values shorter than 4 characters are
    /// ignored (they would mask ordinary words); register the whole secret, not fragments.
    public func register(secret: String) {
        let trimmed = secret.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.count >= 4 else { return }
        lock.withLock {
            if !secrets.contains(trimmed) {
                secrets.append(trimmed)
                secrets.sort { $0.count > $1.count }  // longest first, so overlapping secrets vanish whole
            }
        }
    }

    /// The text with every registered secret and every secret-looking pattern replaced by `***`.
    public func redact(_ text: String) -> String {
        if text.isEmpty { return text }
        var out = text
        for s in lock.withLock({ secrets }) where out.contains(s) {
            out = out.replacingOccurrences(of: s, with: Self.mask)
        }
        for regex in Self.patterns {
            let range = NSRange(out.startIndex..., in: out)
            out = regex.stringByReplacingMatches(in: out, range: range, withTemplate: "$1\(Self.mask)")
        }
        return out
    }

    public func redact(_ text: String?) -> String? { text.map { redact($0) } }
}
