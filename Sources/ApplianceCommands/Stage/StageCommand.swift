import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import ArgumentParser
import Foundation

struct StageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stage",
        abstract: "Verify a bundle, then stage it onto every node's store over SSH.",
        discussion: """
            Each node is asked what it holds and gets only what it lacks, through a chain: the admin host sends
            each byte once, and nodes pass the stream on to each other with a temporary key removed afterwards.
            Every blob's digest is checked on the node before it becomes visible. A broken transfer resumes
            where it stopped on the next run; a fully staged cluster is left untouched.
            Exit codes: 0 all nodes staged; 9 some failed (one line each); 5/6 when all failed to connect.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @OptionGroup var trust: TrustOptions

    @Option(help: "The bundle (.tar).")
    var bundle: String

    @Option(name: .customLong("node"), help: "Stage only this node (repeat for several).")
    var nodes: [String] = []

    @Option(help: "Cap the admin host's sending rate, e.g. 50MB (bytes/s) or 400mbit.")
    var limitRate: String?

    @Option(help: "The content-addressed store on each node.")
    var store = Stager.defaultStore

    @Option(help: "Progress output: text (a live display on a terminal) or ndjson (one JSON event per line).")
    var format: EventFormat = .text

    @Flag(help: "Print the plan and change nothing.")
    var dryRun = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "stage")
        let session = try ClusterSession.open(site, ctx: ctx)
        let params = OperationParameters(
            kind: StagingPlan.kind, site: site.inventory, bundle: bundle, trustedKeys: trust.trustedKeys,
            allowUnsigned: trust.allowUnsigned, nodes: nodes, bytesPerSecond: try limitRate.map(parseRate),
            store: store)
        let (stager, targets, plan) = try await stagingPlan(params, session: session, ctx: ctx, connectAhead: !dryRun)
        if dryRun {
            ctx.output.print(plan.render())
            return
        }
        try params.save(session.stateDirectory, operation: "latest-\(StagingPlan.kind)")
        let outcome = try await session.closing {
            try await runOperation(
                plan,
                request: .start(
                    kind: StagingPlan.kind, cluster: session.site.name, bundleDigest: stager.bundle.manifest.version),
                session: session, format: format, quiet: global.quiet, journalMirrorDirectory: params.journalCopies,
                lockDirectory: params.lockDirectory, ctx: ctx, whileLocked: removeRelayLeftovers(stager))
        }
        let failures = await stager.failures
        try report(outcome, failures: failures, targets: targets.map(\.name), sent: await stager.bytesSent, ctx: ctx)
    }

    func report(
        _ outcome: OperationOutcome, failures: [String: ClusterError.NodeFailure], targets: [String], sent: Int64,
        ctx: CommandContext
    ) throws {
        let okNodes = targets.filter { outcome.steps[StagingPlan.stepName(node: $0)] == .done }
        if format == .text {
            ctx.output.print(
                "staged \(okNodes.count)/\(targets.count) nodes; sent \(Format.bytes(sent)) (\(sent) bytes) from this host (operation \(outcome.operation.id))"
            )
        }
        if outcome.operation.state == .interrupted { throw CommandInterrupted(operation: outcome.operation.id) }
        var list: [ClusterError.NodeFailure] = []
        for n in targets where !okNodes.contains(n) {
            if let f = failures[n] {
                list.append(f)
            } else if let e = outcome.errors[StagingPlan.stepName(node: n)] ?? outcome.errors[StagingPlan.transferStep]
            {
                list.append(.init(node: n, reason: e.description, status: .remoteCommandFailed))
            } else {
                list.append(.init(node: n, reason: "not staged", status: .remoteCommandFailed))
            }
        }
        if !list.isEmpty {
            throw NodesFailed(failures: list, anySucceeded: !okNodes.isEmpty)
        }
    }
}

/// Verifies the bundle and builds the staging plan from an operation's parameters: the same for a new
/// `stage` and for `plan resume`, so a resumed operation has exactly the steps, nodes, store and rate it started with.
func stagingPlan(
    _ params: OperationParameters, session: ClusterSession, ctx: CommandContext, connectAhead: Bool = true
) async throws -> (Stager, [StagingNode], Plan) {
    guard let bundlePath = params.bundle else { throw ValidationError("the operation recorded no bundle") }
    var trust = TrustOptions()
    trust.trustedKeys = params.trustedKeys
    trust.allowUnsigned = params.allowUnsigned
    let targets = try session.stagingNodes(only: params.nodes)
    // Logins to the nodes overlap the bundle's verification (nothing is asked of a node before the locks;
    // a dry run logs in nowhere, so it records no new host key either).
    let connecting = connectAhead ? Stager.connectAhead(targets, pool: session.pool) : nil
    let verifying = ContinuousClock.now
    let verified = try await verifyBundle(bundlePath, trust: trust, workers: BlockingWork.defaultWorkers, ctx: ctx)
    ctx.logger.info("bundle verified in \(ContinuousClock.now - verifying)")
    let stager = Stager(
        bundle: verified, nodes: targets, pool: session.pool, store: params.store ?? Stager.defaultStore,
        bytesPerSecond: params.bytesPerSecond, connecting: connecting, logger: ctx.logger)
    let plan = try StagingPlan.make(stager: stager, nodes: targets, maxParallelism: session.site.ssh.parallelism)
    return (stager, targets, plan)
}

/// Runs a plan with the cluster lock held (this admin host's and the cluster-side one), events rendered
/// (TTY / plain / NDJSON), Ctrl-C handled.
///
/// Ctrl-C (SIGINT or SIGTERM): nothing new starts, the steps in flight finish or stop and are journaled
/// `interrupted`, the journal's final state is mirrored, the locks are released, and the command exits 130.
/// A second Ctrl-C exits 130 at once (the journal stays consistent; the locks are then left stale).
func runOperation(
    _ plan: Plan, request: OperationRequest, session: ClusterSession, format: EventFormat, quiet: Bool = false,
    journalMirrorDirectory: String = NodeJournalMirror.defaultDirectory,
    lockDirectory: String = NodeClusterLock.defaultDirectory, ctx: CommandContext,
    whileLocked: @Sendable (OperationOutcome) async -> Void = { _ in }
) async throws -> OperationOutcome {
    var resuming: String?
    if case .resume(let id) = request { resuming = id }
    let lock = try ClusterLock.acquire(
        stateDirectory: session.stateDirectory, cluster: session.site.name, operation: resuming)
    defer { lock.release() }
    let nodeLock = try await acquireNodeLock(session: session, directory: lockDirectory, operation: resuming, ctx: ctx)
    do {
        let outcome = try await runLocked(
            plan, request: request, session: session, format: format, quiet: quiet,
            journalMirrorDirectory: journalMirrorDirectory, lock: lock, nodeLock: nodeLock, ctx: ctx)
        await whileLocked(outcome)
        await releaseNodeLock(nodeLock, ctx: ctx)
        return outcome
    } catch {
        await releaseNodeLock(nodeLock, ctx: ctx)
        throw error
    }
}

/// Takes the cluster-side lock on the first control-plane node. Refused (exit 10) when another admin host
/// holds it. When that node cannot be reached (or answers with an error), the operation goes on under this
/// admin host's lock alone, with a warning: staging must still work while nodes are down.
private func acquireNodeLock(
    session: ClusterSession, directory: String, operation: String?, ctx: CommandContext
) async throws -> NodeClusterLock? {
    guard let nodeLock = session.nodeLock(directory: directory) else { return nil }
    let holder = NodeLockHolder(
        admin: try session.adminID(), host: ClusterLock.currentHostName(), pid: getpid(), operation: operation,
        startedAt: Date(), token: UUID().uuidString.lowercased())
    do {
        if case .tookOverOwn(let previous) = try await nodeLock.acquire(holder) {
            ctx.logger.notice(
                "took over this admin host's cluster lock on \(nodeLock.node), left by \(previous), which is no longer running"
            )
        }
        return nodeLock
    } catch let error as NodeLockError {
        switch error {
        case .held, .stale: throw error
        case .io:
            ctx.logger.warning(
                "\(error.message); going on with this admin host's lock only (another admin host is not kept out)")
            return nil
        }
    } catch {
        ctx.logger.warning(
            "cannot reach \(nodeLock.node) to take the cluster lock there (\(error)); going on with this admin host's lock only (another admin host is not kept out)"
        )
        return nil
    }
}

private func releaseNodeLock(_ nodeLock: NodeClusterLock?, ctx: CommandContext) async {
    guard let nodeLock else { return }
    do {
        try await nodeLock.release()
    } catch {
        ctx.logger.warning(
            "could not release the cluster lock on \(nodeLock.node) (\(error)); it goes stale and can be broken with `appliance plan unlock`"
        )
    }
}

private func runLocked(
    _ plan: Plan, request: OperationRequest, session: ClusterSession, format: EventFormat, quiet: Bool,
    journalMirrorDirectory: String, lock: ClusterLock, nodeLock: NodeClusterLock?, ctx: CommandContext
) async throws -> OperationOutcome {
    let journal = try session.journal()
    // The journal is mirrored to the first control-plane node, so another admin host can pull and resume it.
    let mirror = session.site.hosts(withRole: .controlPlane).first.map {
        NodeJournalMirror(pool: session.pool, endpoint: session.endpoint(for: $0), directory: journalMirrorDirectory)
    }
    let executor = PlanExecutor(plan: plan, journal: journal, mirror: mirror, logger: ctx.logger)
    let stderrSink: @Sendable (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
    let consumer: Task<Void, Never>
    switch format {
    case .ndjson:
        let out = ctx.output
        let encoder = NDJSONEventEncoder(sink: { out.write($0) })
        consumer = Task { await encoder.consume(executor.events) }
    case .text where quiet:
        consumer = Task { for await _ in executor.events {} }
    case .text:
        let style = PlanEventRenderer.style(isTTY: ctx.isTerminal)
        let renderer = PlanEventRenderer(style: style, sink: stderrSink)
        consumer = Task { await renderer.consume(executor.events) }
    }
    let logger = ctx.logger
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

/// After a staging run that did not succeed: a transfer cut short by Ctrl-C could not remove its relay keys
/// (its cleanup ran cancelled), so they are removed here, outside the cancelled work and still under the
/// locks, so no temporary key outlives the command.
func removeRelayLeftovers(_ stager: Stager) -> @Sendable (OperationOutcome) async -> Void {
    { outcome in
        if !outcome.succeeded { await stager.removeLeftovers() }
    }
}

enum EventFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, ndjson
}

/// `50MB`, `1.5GB`, `800KB` (bytes per second) or `400mbit`, `1gbit` (bits per second).
func parseRate(_ text: String) throws -> Int64 {
    let t = text.lowercased().trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [
        ("gbit", 1e9 / 8), ("mbit", 1e6 / 8), ("kbit", 1e3 / 8), ("gb", 1_073_741_824), ("mb", 1_048_576),
        ("kb", 1024), ("g", 1_073_741_824), ("m", 1_048_576), ("k", 1024), ("b", 1),
    ]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v > 0 { return Int64(v * factor) }
    }
    if let v = Double(t), v > 0 { return Int64(v) }
    throw ValidationError("cannot read the rate '\(text)'; use for example 50MB (bytes/s) or 400mbit")
}

/// Some nodes failed: one line each, and an exit code that says so.
struct NodesFailed: ApplianceFailure {
    var failures: [ClusterError.NodeFailure]
    var anySucceeded: Bool

    var message: String {
        "\(failures.count) node\(failures.count == 1 ? "" : "s") failed:\n"
            + failures.sorted { $0.node < $1.node }.map { "  \($0.node): \($0.reason)" }.joined(separator: "\n")
    }
    var hint: String? { "fix what is named above and run the same command again: finished work is not repeated" }
    var exitStatus: ExitStatus {
        if anySucceeded { return .partialFailure }
        let kinds = Set(failures.map(\.status))
        return kinds.count == 1 ? (kinds.first ?? .partialFailure) : .partialFailure
    }
}

struct CommandInterrupted: ApplianceFailure {
    var operation: String
    var message: String { "interrupted; operation \(operation) can be resumed" }
    var hint: String? { "run `appliance plan resume -i SITE` or the same command again" }
    var exitStatus: ExitStatus { .interrupted }
}
