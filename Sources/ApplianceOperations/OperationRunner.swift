import ApplianceCluster
import ApplianceModel
import AppliancePlan
import ApplianceSSH
import Foundation

/// Runs a plan with the cluster lock held (this admin host's and the cluster-side one), events rendered
/// (TTY / plain / NDJSON), Ctrl-C handled.
///
/// A lock left by a process of this admin host that died (SIGKILL, a crashed laptop) is taken over at once:
/// the free flock proves the holder dead. Its operation is marked interrupted and the run goes on; only a
/// lock that another admin host holds, or whose holder is alive, is refused (exit 10).
///
/// Ctrl-C (SIGINT or SIGTERM): nothing new starts, the steps in flight finish or stop and are journaled
/// `interrupted`, the journal's final state is mirrored, the locks are released, and the command exits 130.
/// A second Ctrl-C exits 130 at once (the journal stays consistent; the locks are then left stale and the
/// next run takes them over).
public enum OperationRunner {
    public static func run(
        _ plan: Plan, request: OperationRequest, session: OperationSession, io: OperationIO,
        journalMirrorDirectory: String = NodeJournalMirror.defaultDirectory,
        lockDirectory: String = NodeClusterLock.defaultDirectory,
        whileLocked: @Sendable (OperationOutcome) async -> Void = { _ in }
    ) async throws -> OperationOutcome {
        var resuming: String?
        if case .resume(let id) = request { resuming = id }
        let lock = try ClusterLock.acquire(
            stateDirectory: session.stateDirectory, cluster: session.site.name, operation: resuming)
        defer { lock.release() }
        if let dead = lock.tookOverFrom {
            let steps = try session.markAbandoned(dead.operation)
            let marked = steps != nil ? "; its operation is marked interrupted" : ""
            session.logger.notice("took over the cluster lock left by \(dead), which is no longer running\(marked)")
        }
        var deadOwners: [String] = []
        if let dead = lock.tookOverFrom { deadOwners.append(CommandOwner.mark(host: dead.host, pid: dead.pid)) }
        let nodeLock = try await acquireNodeLock(
            session: session, directory: lockDirectory, operation: resuming, deadOwners: &deadOwners)
        // What the dead run started on the nodes ends (or is killed) before anything new starts there.
        for owner in Set(deadOwners).sorted() { await LeftoverCommands.settle(owner: owner, session: session) }
        do {
            let outcome = try await runLocked(
                plan, request: request, session: session, io: io, journalMirrorDirectory: journalMirrorDirectory,
                lock: lock, nodeLock: nodeLock)
            await whileLocked(outcome)
            await releaseNodeLock(nodeLock, session: session)
            return outcome
        } catch {
            await releaseNodeLock(nodeLock, session: session)
            throw error
        }
    }

    /// Takes the cluster-side lock on the first control-plane node. Refused (exit 10) when another admin
    /// host holds it. When that node cannot be reached (or answers with an error), the operation goes on
    /// under this admin host's lock alone, with a warning: staging must still work while nodes are down.
    private static func acquireNodeLock(
        session: OperationSession, directory: String, operation: String?, deadOwners: inout [String]
    ) async throws -> NodeClusterLock? {
        guard let nodeLock = session.nodeLock(directory: directory) else { return nil }
        let holder = NodeLockHolder(
            admin: try session.adminID(), host: ClusterLock.currentHostName(), pid: getpid(), operation: operation,
            startedAt: Date(), token: UUID().uuidString.lowercased())
        do {
            if case .tookOverOwn(let previous) = try await nodeLock.acquire(holder) {
                deadOwners.append(CommandOwner.mark(host: previous.host, pid: previous.pid))
                session.logger.notice(
                    "took over this admin host's cluster lock on \(nodeLock.node), left by \(previous), which is no longer running"
                )
            }
            return nodeLock
        } catch let error as NodeLockError {
            switch error {
            case .held, .stale: throw error
            case .io:
                session.logger.warning(
                    "\(error.message); going on with this admin host's lock only (another admin host is not kept out)")
                return nil
            }
        } catch {
            session.logger.warning(
                "cannot reach \(nodeLock.node) to take the cluster lock there (\(error)); going on with this admin host's lock only (another admin host is not kept out)"
            )
            return nil
        }
    }

    private static func releaseNodeLock(_ nodeLock: NodeClusterLock?, session: OperationSession) async {
        guard let nodeLock else { return }
        do {
            try await nodeLock.release()
        } catch {
            session.logger.warning(
                "could not release the cluster lock on \(nodeLock.node) (\(error)); it goes stale and can be broken with `appliance plan unlock`"
            )
        }
    }

    private static func runLocked(
        _ plan: Plan, request: OperationRequest, session: OperationSession, io: OperationIO,
        journalMirrorDirectory: String, lock: ClusterLock, nodeLock: NodeClusterLock?
    ) async throws -> OperationOutcome {
        let journal = try session.journal()
        // The journal is mirrored to the first control-plane node, so another admin host can pull and resume it.
        let mirror = session.site.hosts(withRole: .controlPlane).first.map {
            NodeJournalMirror(
                pool: session.pool, endpoint: session.endpoint(for: $0), directory: journalMirrorDirectory)
        }
        let logger = session.logger
        let executor = PlanExecutor(plan: plan, journal: journal, mirror: mirror, logger: logger)
        let stderrSink: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
        let consumer: Task<Void, Never>
        switch io.format {
        case .ndjson:
            let out = io.output
            let encoder = NDJSONEventEncoder(sink: { out($0) })
            consumer = Task { await encoder.consume(executor.events) }
        case .text where io.quiet:
            consumer = Task { for await _ in executor.events {} }
        case .text:
            let style = PlanEventRenderer.style(isTTY: io.isTerminal)
            let renderer = PlanEventRenderer(style: style, sink: stderrSink)
            consumer = Task { await renderer.consume(executor.events) }
        }
        let outcome = try await withThrowingTaskGroup(of: OperationOutcome?.self) { group in
            if let nodeLock {
                group.addTask {
                    await nodeLock.keepAlive(
                        lost: {
                            logger.error(
                                "the cluster lock on \(nodeLock.node) was broken while this operation ran; another admin host may be changing the cluster"
                            )
                        },
                        failed: { logger.warning("cluster lock heartbeat on \(nodeLock.node) failed: \($0)") })
                    return nil
                }
            }
            group.addTask {
                try await SignalInterruption.cancellingOnSignals(onSignal: { _ in
                    stderrSink(
                        "\ninterrupted: no new steps start; steps in flight finish or stop and are journaled. Press Ctrl-C again to abort at once.\n"
                    )
                }) {
                    try await executor.run(request) { record in
                        try? lock.update(operation: record.id)
                        do {
                            try await nodeLock?.update(operation: record.id)
                        } catch {
                            logger.warning("could not record the operation in the cluster lock: \(error)")
                        }
                    }
                }
            }
            while let next = try await group.next() {
                if let outcome = next {
                    group.cancelAll()
                    return outcome
                }
            }
            throw CancellationError()
        }
        await consumer.value
        // After Ctrl-C the executor's last mirror push ran in a cancelled task; push the final state from here.
        if outcome.operation.state == .interrupted, let mirror {
            do {
                try await mirror.journalDidChange(journal, operation: outcome.operation.id)
            } catch {
                logger.warning("journal mirror failed: \(error)")
            }
        }
        return outcome
    }
}

/// Some nodes failed: one line each, and an exit code that says so.
public struct NodesFailed: ApplianceFailure {
    public var failures: [ClusterError.NodeFailure]
    public var anySucceeded: Bool

    public init(failures: [ClusterError.NodeFailure], anySucceeded: Bool) {
        self.failures = failures
        self.anySucceeded = anySucceeded
    }

    public var message: String {
        "\(failures.count) node\(failures.count == 1 ? "" : "s") failed:\n"
            + failures.sorted { $0.node < $1.node }.map { "  \($0.node): \($0.reason)" }.joined(separator: "\n")
    }
    public var hint: String? {
        "fix what is named above and run `appliance plan resume -i SITE` (or the same command again): finished work is not repeated"
    }
    public var exitStatus: ExitStatus {
        if anySucceeded { return .partialFailure }
        let kinds = Set(failures.map(\.status))
        return kinds.count == 1 ? (kinds.first ?? .partialFailure) : .partialFailure
    }
}

/// The operator pressed Ctrl-C: the operation is journaled interrupted and can be resumed.
public struct OperationInterrupted: ApplianceFailure {
    public var operation: String
    public init(operation: String) { self.operation = operation }
    public var message: String { "interrupted; operation \(operation) can be resumed" }
    public var hint: String? { "run `appliance plan resume -i SITE` or the same command again" }
    public var exitStatus: ExitStatus { .interrupted }
}
