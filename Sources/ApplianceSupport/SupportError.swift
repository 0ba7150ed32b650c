import ApplianceModel
import Foundation

/// Why a support bundle could not be made or read.
public enum SupportError: Error, Sendable, Equatable {
    /// A redaction pattern does not compile.
    case badPattern(pattern: String, reason: String)
    /// `--since` is not a duration.
    case badDuration(String)
    /// Writing the bundle (or its staging files) failed.
    case io(path: String, reason: String)
    /// The archive is not a support bundle (no manifest.json, or one that does not decode).
    case notASupportBundle(path: String, reason: String)
    /// The archive breaks the product's archive rules (absolute names, links, ...).
    case unsafeArchive(path: String, reason: String)
}

extension SupportError: ApplianceFailure {
    public var message: String {
        switch self {
        case let .badPattern(p, reason): "redaction pattern '\(p)' does not compile: \(reason)"
        case let .badDuration(s): "cannot read the duration '\(s)'"
        case let .io(path, reason): "\(path): \(reason)"
        case let .notASupportBundle(path, reason): "\(path) is not an appliance support bundle: \(reason)"
        case let .unsafeArchive(path, reason): "refusing to read \(path): \(reason)"
        }
    }

    public var hint: String? {
        switch self {
        case .badPattern: "fix spec.supportBundle.redact in the site file (ICU regular expressions)"
        case .badDuration: "use a number and a unit: 90m, 24h, 7d"
        case .io: "check the output directory exists and has room"
        case .notASupportBundle: "pass a file written by `appliance support-bundle`"
        case .unsafeArchive: "this file was not written by `appliance support-bundle`; do not extract it"
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .badPattern, .badDuration: .usage
        case .io, .notASupportBundle: .failure
        case .unsafeArchive: .verification
        }
    }
}

/// `90s`, `30m`, `24h`, `7d` (and plain seconds) as seconds.
public func parseSupportDuration(_ text: String) throws(SupportError) -> TimeInterval {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v > 0, v.isFinite { return v * factor }
    }
    if let v = Double(t), v > 0, v.isFinite { return v }
    throw .badDuration(text)
}
