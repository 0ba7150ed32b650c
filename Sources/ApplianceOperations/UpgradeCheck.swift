import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import Foundation

/// The rolling upgrade's options, kept with the operation's parameters for `plan resume`.
public struct UpgradeOptions: Codable, Sendable, Equatable {
    /// `N` workers or `P%` of the workers upgraded (cordoned) at once.
    public var maxUnavailable: String
    public var drainTimeoutSeconds: Int
    public var drainPolicy: DrainPolicy
    /// The bundle version installed when the upgrade started (whose blobs are pruned at the end, and whose
    /// packages `plan rollback` goes back to); learnt from the install record.
    public var fromVersion: String?
    public var requestedBy: String
    public var requestedAt: Date

    public init(
        maxUnavailable: String = "1", drainTimeoutSeconds: Int = 600, drainPolicy: DrainPolicy = .wait,
        fromVersion: String? = nil, requestedBy: String = LifecycleOptions.whoAmI(), requestedAt: Date = Date()
    ) {
        self.maxUnavailable = maxUnavailable
        self.drainTimeoutSeconds = drainTimeoutSeconds
        self.drainPolicy = drainPolicy
        self.fromVersion = fromVersion
        self.requestedBy = requestedBy
        self.requestedAt = requestedAt
    }

    /// How many of `workers` are upgraded at once: `N`, or `P%` rounded down, at least 1.
    public static func batchSize(_ text: String, workers: Int) throws -> Int {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("%"), let p = Int(t.dropLast()), p > 0, p <= 100 {
            return max(1, workers * p / 100)
        }
        if let n = Int(t), n > 0 { return n }
        throw OperationError.invalid(
            "--max-unavailable '\(text)' must be a positive number of workers or a percentage (1-100%)",
            hint: "for example --max-unavailable 2 or --max-unavailable 25%")
    }
}

/// An upgrade bundle refused before anything changed: the versions and the rule, exit 12.
public struct UpgradeRefused: ApplianceFailure, Equatable {
    public var bundle: String
    public var reason: String

    public var message: String { "refused to upgrade with \(bundle): \(reason); nothing was changed" }
    public var hint: String? {
        "use a bundle made for the installed version (its spec lists it in upgradeFrom), one Kubernetes minor version at a time"
    }
    public var exitStatus: ExitStatus { .upgradeRefused }
}

/// The rules an upgrade bundle must meet against what is installed (DESIGN.md section 8).
public enum UpgradeCheck {
    /// Nil when `target` may upgrade a cluster that runs bundle `installedVersion` with Kubernetes
    /// `installedKubernetes`; the same version is no refusal (a re-run converges). kubeadm upgrades one minor
    /// version at a time and never downgrades.
    public static func refusal(
        bundlePath: String, installedVersion: String, installedKubernetes: String, target: BundleManifest
    ) -> UpgradeRefused? {
        if target.version == installedVersion { return nil }
        let from = target.upgradeFrom
        if !from.contains(installedVersion) {
            return UpgradeRefused(
                bundle: bundlePath,
                reason:
                    "bundle \(target.version) upgrades from \(from.isEmpty ? "no version (its upgradeFrom is empty)" : from.joined(separator: ", ")), but the cluster runs bundle \(installedVersion)"
            )
        }
        guard let have = minorVersion(installedKubernetes), let want = minorVersion(target.kubernetesVersion) else {
            return UpgradeRefused(
                bundle: bundlePath,
                reason:
                    "cannot compare Kubernetes versions '\(installedKubernetes)' (installed) and '\(target.kubernetesVersion)' (bundle)"
            )
        }
        if want.major != have.major || want.minor > have.minor + 1 {
            return UpgradeRefused(
                bundle: bundlePath,
                reason:
                    "bundle \(target.version) has Kubernetes \(target.kubernetesVersion), the cluster runs \(installedKubernetes): that skips \(want.minor - have.minor - 1) minor version(s), and kubeadm upgrades one minor version at a time"
            )
        }
        if (want.minor, want.patch) < (have.minor, have.patch) {
            return UpgradeRefused(
                bundle: bundlePath,
                reason:
                    "bundle \(target.version) has Kubernetes \(target.kubernetesVersion), older than the cluster's \(installedKubernetes): kubeadm does not downgrade"
            )
        }
        return nil
    }

    /// (major, minor, patch) of "v1.34.3" or "1.34.3".
    public static func minorVersion(_ text: String) -> (major: Int, minor: Int, patch: Int)? {
        var t = text.trimmingCharacters(in: .whitespaces)
        if t.hasPrefix("v") { t.removeFirst() }
        let p = t.split(separator: "-").first.map { $0.split(separator: ".").map { Int($0) } } ?? []
        guard p.count == 3, let a = p[0], let b = p[1], let c = p[2] else { return nil }
        return (a, b, c)
    }

    /// "v1.35.0" from "1.35.0" or "v1.35.0".
    public static func withV(_ version: String) -> String { version.hasPrefix("v") ? version : "v" + version }
}
