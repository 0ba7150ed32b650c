import ApplianceCluster
import ApplianceModel
import AppliancePlan
import Foundation

/// An operation ready to run: its plan, and what to do around it.
public struct PreparedOperation: Sendable {
    public var parameters: OperationParameters
    public var plan: Plan
    /// Recorded with the operation in the journal (the bundle's version).
    public var bundleVersion: String?
    /// Runs after the plan, still under the locks (cleanup that must not outlive the command).
    public var whileLocked: @Sendable (OperationOutcome) async -> Void
    /// Prints the outcome and throws the failure the command exits with (nil: success).
    public var finish: @Sendable (OperationOutcome) async throws -> Void

    public init(
        parameters: OperationParameters, plan: Plan, bundleVersion: String?,
        whileLocked: @escaping @Sendable (OperationOutcome) async -> Void = { _ in },
        finish: @escaping @Sendable (OperationOutcome) async throws -> Void
    ) {
        self.parameters = parameters
        self.plan = plan
        self.bundleVersion = bundleVersion
        self.whileLocked = whileLocked
        self.finish = finish
    }
}

/// The one place that knows every kind of operation: it builds an operation's plan from its parameters
/// (the same for a new run and for `plan resume`) and runs it under the locks.
public enum Operations {
    /// The kinds `plan resume` can rebuild.
    public static let kinds = [StagingPlan.kind, InstallOperation.kind] + NodeOperations.kinds + UpgradeOperation.kinds

    /// Builds the plan of an operation from its parameters. A dry run connects to no node.
    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, dryRun: Bool = false
    ) async throws -> PreparedOperation {
        switch params.kind {
        case StagingPlan.kind:
            return try await StageOperation.prepare(params, session: session, io: io, connectAhead: !dryRun)
        case InstallOperation.kind:
            return try await InstallOperation.prepare(params, session: session, io: io, connectAhead: !dryRun)
        case let k where NodeOperations.kinds.contains(k):
            return try await NodeOperations.prepare(params, session: session, io: io, connectAhead: !dryRun)
        case UpgradeOperation.kind:
            return try await UpgradeOperation.prepare(params, session: session, io: io, connectAhead: !dryRun)
        case UpgradeOperation.rollbackKind:
            return try await UpgradeOperation.prepareRollback(params, session: session, io: io, connectAhead: !dryRun)
        default: throw OperationError.unknownKind(params.kind)
        }
    }

    /// Runs a new operation: its parameters are saved for `plan resume` first.
    public static func start(_ op: PreparedOperation, session: OperationSession, io: OperationIO) async throws {
        try op.parameters.save(session.stateDirectory)
        let outcome = try await session.closing {
            try await OperationRunner.run(
                op.plan,
                request: .start(kind: op.parameters.kind, cluster: session.site.name, bundleDigest: op.bundleVersion),
                session: session, io: io, journalMirrorDirectory: op.parameters.journalCopies,
                lockDirectory: op.parameters.lockDirectory, whileLocked: op.whileLocked)
        }
        try await op.finish(outcome)
    }

    /// Continues the cluster's last interrupted or failed operation, whatever its kind. Returns false when
    /// there is nothing to resume.
    public static func resume(session: OperationSession, io: OperationIO) async throws -> Bool {
        let journal = try session.journal()
        guard let record = try journal.latestResumableOperation(cluster: session.site.name) else { return false }
        guard kinds.contains(record.kind) else { throw OperationError.unknownKind(record.kind) }
        let params = try OperationParameters.load(session.stateDirectory, kind: record.kind)
        let op = try await prepare(params, session: session, io: io)
        io.print("resuming \(record.kind) \(record.id)")
        let outcome = try await session.closing {
            try await OperationRunner.run(
                op.plan, request: .resume(operation: record.id), session: session, io: io,
                journalMirrorDirectory: params.journalCopies, lockDirectory: params.lockDirectory,
                whileLocked: op.whileLocked)
        }
        try await op.finish(outcome)
        return true
    }

    /// The per-node failures of an outcome: one line per node whose steps failed or were skipped.
    public static func nodeFailures(_ outcome: OperationOutcome, plan: Plan) -> [ClusterError.NodeFailure] {
        // A step skipped because a step of another node failed is that node's failure, not its own: a
        // worker that lost power is one failure, not one per step (or cluster step) waiting on it.
        func root(_ step: String) -> String {
            var current = step
            var seen: Set<String> = [step]
            while case .dependencyFailed(_, _, let d)? = outcome.errors[current], outcome.errors[d] != nil,
                seen.insert(d).inserted
            {
                current = d
            }
            return current
        }
        var own: [String: (step: String, error: PlanError)] = [:]
        var order: [String] = []
        var blocked: [String: [String]] = [:]
        for step in plan.steps {
            guard let error = outcome.errors[step.name] else { continue }
            let cause = root(step.name)
            let node = plan[cause]?.target.node ?? "cluster"
            if cause == step.name {
                if own[node] == nil {
                    own[node] = (step.name, error)
                    order.append(node)
                }
            } else {
                blocked[node, default: []].append(step.name)
            }
        }
        return order.sorted().compactMap { node in
            guard let f = own[node] else { return nil }
            var reason = "\(f.step): \(f.error.description)"
            if let waiting = blocked[node], !waiting.isEmpty {
                let shown = waiting.prefix(6).joined(separator: ", ")
                reason +=
                    "\n    not run because of it: \(shown)\(waiting.count > 6 ? " and \(waiting.count - 6) more" : "")"
            }
            return .init(node: node, reason: reason, status: .remoteCommandFailed)
        }
    }
}

/// Errors of the operations layer itself.
public enum OperationError: ApplianceFailure {
    case unknownKind(String)
    case invalid(String, hint: String?)

    public var message: String {
        switch self {
        case .unknownKind(let k): "operations of kind '\(k)' cannot be resumed by this version"
        case .invalid(let m, _): m
        }
    }
    public var hint: String? {
        switch self {
        case .unknownKind: "start the operation again with the command that began it"
        case .invalid(_, let h): h
        }
    }
    public var exitStatus: ExitStatus { .failure }
}
