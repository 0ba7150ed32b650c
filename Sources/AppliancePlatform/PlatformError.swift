import ApplianceModel

/// Why the platform's values, objects or checks cannot be produced.
public enum PlatformError: Error, Sendable, ApplianceFailure {
    /// The site lacks what the platform needs.
    case incompleteSite(site: String, problems: [String])
    /// The capacity or quota check refused the site (one finding per line).
    case capacity([CapacityFinding])
    /// The site's TLS certificate is refused.
    case certificate(file: String, problems: [String])

    public var message: String {
        switch self {
        case .incompleteSite(let site, let problems):
            "site '\(site)' cannot carry the platform:\n" + problems.map { "  \($0)" }.joined(separator: "\n")
        case .capacity(let findings):
            "the platform does not fit the site:\n" + findings.map { "  \($0)" }.joined(separator: "\n")
        case .certificate(let file, let problems):
            "the site certificate \(file) is refused:\n" + problems.map { "  \($0)" }.joined(separator: "\n")
        }
    }

    public var hint: String? {
        switch self {
        case .incompleteSite:
            "add spec.platform, spec.network.domain, spec.storage.nfs and spec.tls to the site (schemas/site.schema.json)"
        case .capacity:
            "each line names a remedy; the check runs again with `appliance preflight` or `install --dry-run`"
        case .certificate:
            "issue a certificate for the domain and *.domain from the site CA, valid for at least 30 days"
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .incompleteSite: .failure
        case .capacity, .certificate: .preflightFailed
        }
    }
}
