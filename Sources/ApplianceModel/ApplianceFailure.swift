/// The documented exit codes of `appliance`. README.md lists them; scripts depend on them.
public enum ExitStatus: Int32, Sendable, CaseIterable {
    case success = 0
    /// The operation failed for a reason not covered below (bad input file, I/O error).
    case failure = 1
    /// Command-line usage error.
    case usage = 2
    /// Preflight found at least one failing check.
    case preflightFailed = 3
    /// Preflight found warnings but no failure.
    case preflightWarnings = 4
    /// A node could not be reached.
    case unreachable = 5
    /// Authentication or host-key verification failed.
    case authentication = 6
    /// A bundle, signature or digest did not verify.
    case verification = 7
    /// A command on a node exited non-zero.
    case remoteCommandFailed = 8
    /// Some nodes failed and the others completed.
    case partialFailure = 9
    /// Another operation holds the cluster lock.
    case locked = 10
    /// `status`: the cluster answered, and something in it is not healthy (each problem is a line of the report).
    case unhealthy = 11
    /// An upgrade bundle that cannot upgrade the installed cluster (not in `upgradeFrom`, or a skipped
    /// Kubernetes minor version); nothing was changed.
    case upgradeRefused = 12
    /// Internal error: a bug in appliance.
    case `internal` = 70
    /// Interrupted by the operator (SIGINT); the operation can be resumed.
    case interrupted = 130

    public var summary: String {
        switch self {
        case .success: "success"
        case .failure: "the operation failed"
        case .usage: "usage error"
        case .preflightFailed: "preflight: at least one check failed"
        case .preflightWarnings: "preflight: warnings only"
        case .unreachable: "a node could not be reached"
        case .authentication: "authentication or host key verification failed"
        case .verification: "bundle verification failed (signature, digest or archive safety)"
        case .remoteCommandFailed: "a command on a node failed"
        case .partialFailure: "some nodes failed, the others completed"
        case .locked: "another operation holds the cluster lock"
        case .unhealthy: "status: the cluster is not healthy (the report names each problem)"
        case .upgradeRefused: "the bundle cannot upgrade the installed cluster (upgradeFrom or Kubernetes skew)"
        case .internal: "internal error (a bug: please report it with the log file)"
        case .interrupted: "interrupted; resume with `appliance plan resume`"
        }
    }
}

/// An error that knows how to present itself to the operator: what failed, what to do, and the exit code.
/// Every module's error type conforms (directly, or in ApplianceCommands for modules that do not import this one).
public protocol ApplianceFailure: Error, CustomStringConvertible {
    /// One or more lines, lower case, saying what failed and why.
    var message: String { get }
    /// What to do next, if there is something useful to say.
    var hint: String? { get }
    var exitStatus: ExitStatus { get }
}

extension ApplianceFailure {
    public var description: String { message }
    public var hint: String? { nil }
}

extension DiagnosticsError: ApplianceFailure {
    public var message: String { description }
    public var hint: String? { "fix every problem listed; positions are file:line:column" }
    public var exitStatus: ExitStatus { .failure }
}
