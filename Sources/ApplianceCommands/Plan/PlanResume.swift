import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import ApplianceOperations
import AppliancePlan
import ArgumentParser
import Foundation

struct PlanResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract:
            "Continue the last interrupted or failed operation: steps in flight are re-checked, done steps are not repeated."
    )

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @Option(help: "Progress output: text or ndjson.")
    var format: EventFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan resume")
        let session = try ctx.session(site)
        let io = ctx.operationIO(format: format, quiet: global.quiet)
        if try await !Operations.resume(session: session, io: io) {
            ctx.output.print("nothing to resume on cluster \(session.site.name)")
        }
    }
}

struct PlanRollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Undo the done steps of the last operation, in reverse order, where they have an undo.",
        discussion: """
            After a failed `appliance upgrade`: the node in flight (the node of its first failed step) goes back to
            the previous bundle's packages, still in its store, kubelet restarted, health gate at the previous
            kubelet version, uncordoned and its cordon reason cleared (one operation, kind upgrade-rollback). Then
            fix the cause and run the upgrade again.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan rollback")
        let session = try ctx.session(site)
        let journal = try session.journal()
        guard let op = try journal.operations(cluster: session.site.name, limit: 1).first else {
            ctx.output.print("no operations recorded for cluster \(session.site.name)")
            return
        }
        switch op.kind {
        case StagingPlan.kind:
            // Staging adds verified, content-addressed blobs that later operations use; it has no undo.
            ctx.output.print("operation \(op.id) (\(op.kind)) has no steps to undo: staged blobs are kept")
        case UpgradeOperation.kind:
            // The node in flight of a failed upgrade: back to the previous bundle's packages (issue 14).
            let io = ctx.operationIO(format: .text, quiet: global.quiet)
            let params = try UpgradeOperation.rollbackParameters(session: session, operation: op)
            let prepared = try await Operations.prepare(params, session: session, io: io)
            try await Operations.start(prepared, session: session, io: io)
        default:
            throw ValidationError("operations of kind '\(op.kind)' cannot be rolled back by this version")
        }
    }
}

struct PlanUnlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract:
            "Break a stale cluster lock left by a process or admin host that died (never a live one unless --force).",
        discussion: """
            Breaks this admin host's lock when its holder is no longer running, and the cluster-side lock on the
            first control-plane node when it is this admin host's own or stale (not refreshed for 2 minutes).
            --force also breaks a cluster-side lock that another admin host still refreshes: only when that host
            is known to be gone. A live process on this admin host is never broken.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions
    @Flag(help: "Break the lock even if its holder looks alive (another admin host).")
    var force = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan unlock")
        let session = try ctx.session(site)
        let name = session.site.name
        if let holder = try ClusterLock.breakStaleLock(
            stateDirectory: session.stateDirectory, cluster: name, force: force)
        {
            ctx.output.print("broke this admin host's lock held by \(holder)")
            try markAbandoned(holder.operation, session: session, ctx: ctx)
        } else {
            ctx.output.print("cluster \(name) is not locked on this admin host")
        }
        let params = Operations.kinds.lazy.compactMap {
            try? OperationParameters.load(session.stateDirectory, kind: $0)
        }.first
        guard let nodeLock = session.nodeLock(directory: params?.lockDirectory ?? NodeClusterLock.defaultDirectory)
        else { return }
        let admin = try session.adminID()
        do {
            let broken = try await session.closing { try await nodeLock.breakLock(admin: admin, force: force) }
            if let broken {
                ctx.output.print("broke the cluster lock on \(nodeLock.node) held by \(broken)")
                if broken.admin == admin { try markAbandoned(broken.operation, session: session, ctx: ctx) }
            } else {
                ctx.output.print("cluster \(name) is not locked on \(nodeLock.node)")
            }
        } catch let error as NodeLockError {
            throw error
        } catch {
            ctx.logger.warning(
                "cannot reach \(nodeLock.node) to break the cluster lock there (\(error)); only this admin host's lock was checked"
            )
        }
    }
}

/// The operation of a broken lock died with its process: the journal records it interrupted.
private func markAbandoned(_ operation: String?, session: OperationSession, ctx: CommandContext) throws {
    guard let operation, let steps = try session.markAbandoned(operation) else { return }
    ctx.output.print(
        "operation \(operation) marked interrupted"
            + (steps.isEmpty ? "" : " (in flight: \(steps.joined(separator: ", ")))")
            + "; `appliance plan resume` continues it")
}
