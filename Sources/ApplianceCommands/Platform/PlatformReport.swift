import ApplianceModel
import AppliancePlatform

/// The platform check as `preflight` and `install --dry-run` print it, for sites with `spec.platform`.
enum PlatformReport {
    /// nil when the site has no platform section; else the heading and one line per problem (or "fits").
    static func lines(site: SiteInventory, profile: HardwareProfile) -> (lines: [String], error: PlatformError?)? {
        guard site.platform != nil else { return nil }
        // Before the cluster exists the system nodes are sized at the profile's minimum for their roles; install's
        // platform-check sizes them by what their kubelets report, so a larger server can pass there.
        let head =
            "platform check (spec.platform, profile \(profile.name); system nodes at the profile's minimum size, install checks what their kubelets report):"
        do {
            let result = try PlatformCheck.run(site: site, profile: profile)
            if result.passed {
                return (
                    [head, "  ok: the platform fits the system nodes, storage and GPUs; the certificate is fit"], nil
                )
            }
            return ([head] + result.lines.map { "  \($0)" }, result.error)
        } catch {
            return ([head] + error.message.split(separator: "\n").map { "  \($0)" }, error)
        }
    }
}
