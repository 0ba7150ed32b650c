import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import Foundation

/// `appliance stage`: the bundle verified, then staged onto every node's store (see `StagingPlan`).
public enum StageOperation {
    /// With `connectAhead`, the logins to the nodes overlap the bundle's verification (nothing is asked of a
    /// node before the locks; a dry run logs in nowhere, so it records no new host key either).
    public static func prepare(
        _ params: OperationParameters, session: OperationSession, io: OperationIO, connectAhead: Bool = true
    ) async throws -> PreparedOperation {
        guard let bundlePath = params.bundle else {
            throw OperationError.invalid("the operation recorded no bundle", hint: nil)
        }
        let targets = try session.stagingNodes(only: params.nodes)
        let connecting = connectAhead ? Stager.connectAhead(targets, pool: session.pool) : nil
        let verifying = ContinuousClock.now
        let stager: Stager
        let blobCheck: Task<VerifiedBundle, Error>?
        if connectAhead {
            // The signature and manifest first (milliseconds); the blobs' digests are checked while the
            // locks are taken, the nodes inventoried, the relay set up and the stream runs (see the Stager).
            let signed = try await BundleVerification.verifySigned(
                bundlePath, trustedKeys: params.trustedKeys, allowUnsigned: params.allowUnsigned)
            let logger = session.logger
            let checking = BundleVerification.checkingBlobs(signed)
            blobCheck = Task {
                let verified = try await checking.value
                logger.info("bundle verified in \(ContinuousClock.now - verifying) (beside staging)")
                return verified
            }
            stager = Stager(
                signed: signed, blobCheck: blobCheck, nodes: targets, pool: session.pool, store: params.storePath,
                bytesPerSecond: params.bytesPerSecond, connecting: connecting, logger: session.logger)
        } else {
            let verified = try await BundleVerification.verify(
                bundlePath, trustedKeys: params.trustedKeys, allowUnsigned: params.allowUnsigned, io: io)
            session.logger.info("bundle verified in \(ContinuousClock.now - verifying)")
            blobCheck = nil
            stager = Stager(
                bundle: verified, nodes: targets, pool: session.pool, store: params.storePath,
                bytesPerSecond: params.bytesPerSecond, connecting: connecting, logger: session.logger)
        }
        let plan = try StagingPlan.make(stager: stager, nodes: targets, maxParallelism: session.site.ssh.parallelism)
        let names = targets.map(\.name)
        return PreparedOperation(
            parameters: params, plan: plan, bundleVersion: stager.bundle.manifest.version,
            whileLocked: removeRelayLeftovers(stager),
            finish: { outcome in
                try await report(outcome, stager: stager, targets: names, blobCheck: blobCheck, io: io)
            })
    }

    static func report(
        _ outcome: OperationOutcome, stager: Stager, targets: [String], blobCheck: Task<VerifiedBundle, Error>? = nil,
        io: OperationIO
    ) async throws {
        let failures = await stager.failures
        let sent = await stager.bytesSent
        let okNodes = targets.filter { outcome.steps[StagingPlan.stepName(node: $0)] == .done }
        io.print(
            "staged \(okNodes.count)/\(targets.count) nodes; sent \(ByteCount.text(sent)) (\(sent) bytes) from this host (operation \(outcome.operation.id))"
        )
        if outcome.operation.state == .interrupted { throw OperationInterrupted(operation: outcome.operation.id) }
        // A bundle whose blobs failed the check is refused as such, whatever the nodes did meanwhile.
        if let blobCheck, case .failure(let e) = await blobCheck.result, !(e is CancellationError) { throw e }
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

    /// After a staging run that did not succeed: a transfer cut short by Ctrl-C could not remove its relay
    /// keys (its cleanup ran cancelled), so they are removed here, outside the cancelled work and still under
    /// the locks, so no temporary key outlives the command.
    static func removeRelayLeftovers(_ stager: Stager) -> @Sendable (OperationOutcome) async -> Void {
        { outcome in
            if !outcome.succeeded { await stager.removeLeftovers() }
        }
    }
}

/// Byte counts for people: 1536 -> "1.5 KiB", 7 -> "7 B".
public enum ByteCount {
    public static func text(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
    }
}
