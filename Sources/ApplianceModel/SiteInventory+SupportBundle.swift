import Foundation

extension SiteInventory {
    /// `spec.supportBundle`: what `appliance support-bundle` removes besides the secrets it always removes.
    public struct SupportBundleSettings: Sendable, Equatable {
        /// One site-defined pattern: an ICU regular expression (NSRegularExpression syntax); every match is
        /// replaced before anything is written.
        public struct RedactPattern: Sendable, Equatable {
            public var pattern: String
            @EqualityIgnored public var location: SourceLocation? = nil
            public init(pattern: String, location: SourceLocation? = nil) {
                self.pattern = pattern
                self.location = location
            }
        }

        public var redact: [RedactPattern]
        public init(redact: [RedactPattern] = []) { self.redact = redact }
    }

    static func decodeSupportBundle(_ v: YAMLValue) -> SupportBundleSettings {
        let r = v.reader
        guard let m = v.mapping(allowing: ["redact"]) else { return SupportBundleSettings() }
        var patterns: [SupportBundleSettings.RedactPattern] = []
        for item in m["redact"]?.sequence() ?? [] {
            guard let p = item.nonEmptyString() else { continue }
            do {
                let regex = try NSRegularExpression(pattern: p)
                // A pattern that matches the empty string would "redact" between every two bytes.
                if regex.firstMatch(in: "", range: NSRange(location: 0, length: 0)) != nil {
                    r.error(
                        "redaction pattern '\(p)' matches the empty string; it must match at least one character",
                        at: item)
                    continue
                }
            } catch {
                r.error(
                    "redaction pattern '\(p)' is not a valid regular expression (ICU syntax): \(Self.regexProblem(error))",
                    at: item)
                continue
            }
            patterns.append(.init(pattern: p, location: item.location))
        }
        return SupportBundleSettings(redact: patterns)
    }

    private static func regexProblem(_ error: any Error) -> String {
        let ns = error as NSError
        if let detail = ns.userInfo["NSInvalidValue"] { return "\(detail)" }
        return ns.localizedDescription
    }

    func supportBundleTrees() -> [(String, YAMLTree)] {
        guard !supportBundle.redact.isEmpty else { return [] }
        return [("supportBundle", .map([("redact", .list(supportBundle.redact.map { .string($0.pattern) }))]))]
    }
}
