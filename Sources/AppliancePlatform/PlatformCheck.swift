import ApplianceModel
import Foundation

/// The gate before the platform is deployed (and what preflight and `install --dry-run` report): the
/// capacity and quota check of the rendered releases, and the site certificate check.
public struct PlatformCheckResult: Sendable, Equatable {
    public var findings: [CapacityFinding]
    /// Why the site certificate is refused (empty: fit, or the site has no `spec.tls`).
    public var certificateProblems: [String]
    public var certificateFile: String?

    public var passed: Bool { findings.isEmpty && certificateProblems.isEmpty }

    /// One line per problem: the capacity findings (`CODE: ...; remedy: ...`), then `TLS: ...` lines.
    public var lines: [String] {
        findings.map(\.description) + certificateProblems.map { "TLS: \($0)" }
    }

    /// The refusal to throw when the check did not pass.
    public var error: PlatformError? {
        if !findings.isEmpty {
            let tls = certificateProblems.map {
                CapacityFinding(
                    code: "TLS", message: "the site certificate: \($0)",
                    remedy:
                        "issue a certificate for the domain and *.domain from the site CA, valid for at least 30 days")
            }
            return .capacity(findings + tls)
        }
        if !certificateProblems.isEmpty {
            return .certificate(file: certificateFile ?? "(spec.tls)", problems: certificateProblems)
        }
        return nil
    }
}

public enum PlatformCheck {
    /// Renders the releases from profile + site and checks them; throws only when the site cannot carry the
    /// platform at all (no `spec.platform`, domain or NFS export). `allocatable`: what the kubelets of nodes
    /// that are up report, by node name; the others are sized from the profile's role requirements.
    public static func run(
        site: SiteInventory, profile: HardwareProfile, now: Date = Date(),
        allocatable: [String: CapacityCheck.Allocatable] = [:]
    ) throws(PlatformError) -> PlatformCheckResult {
        let config = try PlatformConfiguration.resolve(site: site, profile: profile)
        let findings = CapacityCheck.check(
            site: site, profile: profile, configuration: config, releases: PlatformValues.releases(config),
            allocatable: allocatable)
        var tlsProblems: [String] = []
        if let tls = site.tls {
            tlsProblems = SiteCertificateCheck.problems(
                certificateFile: tls.certificateFile, keyFile: tls.keyFile, caFile: tls.caFile, domain: config.domain,
                now: now)
        }
        return PlatformCheckResult(
            findings: findings, certificateProblems: tlsProblems, certificateFile: site.tls?.certificateFile)
    }
}
