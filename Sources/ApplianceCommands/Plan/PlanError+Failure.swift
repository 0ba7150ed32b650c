import ApplianceModel
import AppliancePlan

/// The plan engine's errors reach the user with their documented exit codes (the engine itself knows
/// nothing of exit codes): a held or stale lock is 10, an interrupted step 130.
extension PlanError: ApplianceFailure {
    public var message: String { description }

    public var exitStatus: ExitStatus {
        switch self {
        case .lockHeld: .locked
        case .stepInterrupted: .interrupted
        case .duplicateStep, .unknownDependency, .dependencyCycle, .invalidStep: .internal
        case .stepFailed, .stepTimedOut, .dependencyFailed, .stoppedAfterFailure, .undoFailed: .remoteCommandFailed
        case .journal, .operationNotFound, .operationNotResumable, .resumeMismatch, .invalidJournalExport, .lockIO:
            .failure
        }
    }
}
