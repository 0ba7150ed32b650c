import ApplianceBundle
import ApplianceCluster
import ApplianceModel
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
        let session = try ClusterSession.open(site, ctx: ctx)
        let journal = try session.journal()
        guard let op = try journal.latestResumableOperation(cluster: session.site.name) else {
            ctx.output.print("nothing to resume on cluster \(session.site.name)")
            return
        }
        let params = try OperationParameters.load(session.stateDirectory, operation: "latest-\(op.kind)")
        switch op.kind {
        case StagingPlan.kind:
            let (_, _, plan) = try await stagingPlan(params, session: session, ctx: ctx)
            ctx.output.print("resuming \(op.kind) \(op.id)")
            let outcome = try await session.closing {
                try await runOperation(
                    plan, request: .resume(operation: op.id), session: session, format: format, quiet: global.quiet,
                    journalMirrorDirectory: params.journalCopies,
                    ctx: ctx)
            }
            if outcome.operation.state == .interrupted { throw CommandInterrupted(operation: op.id) }
            if !outcome.succeeded {
                let failed = outcome.errors.map {
                    ClusterError.NodeFailure(
                        node: $0.value.node ?? "cluster", reason: $0.value.description, status: .remoteCommandFailed)
                }
                throw NodesFailed(failures: failed, anySucceeded: outcome.steps.values.contains(.done))
            }
            ctx.output.print("operation \(op.id) finished")
        default:
            throw ValidationError("operations of kind '\(op.kind)' cannot be resumed by this version")
        }
    }
}

struct PlanRollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Undo the done steps of the last operation, in reverse order, where they have an undo.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan rollback")
        let session = try ClusterSession.open(site, ctx: ctx)
        let journal = try session.journal()
        guard let op = try journal.operations(cluster: session.site.name, limit: 1).first else {
            ctx.output.print("no operations recorded for cluster \(session.site.name)")
            return
        }
        switch op.kind {
        case StagingPlan.kind:
            // Staging adds verified, content-addressed blobs that later operations use; it has no undo.
            ctx.output.print("operation \(op.id) (\(op.kind)) has no steps to undo: staged blobs are kept")
        default:
            throw ValidationError("operations of kind '\(op.kind)' cannot be rolled back by this version")
        }
    }
}

struct PlanUnlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "Break a stale cluster lock left by a process that died (never a live one unless --force).")

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .customLong("inventory")], help: "The site file.")
    var inventory: String
    @Flag(help: "Break the lock even if its holder looks alive (another admin host).")
    var force = false

    func run() async throws {
        let ctx = CommandContext.make(global, command: "plan unlock")
        let site = try SiteInventory.load(path: inventory)
        if let holder = try ClusterLock.breakStaleLock(
            stateDirectory: clusterStateDirectory(site), cluster: site.name, force: force)
        {
            ctx.output.print("broke the lock held by \(holder)")
        } else {
            ctx.output.print("cluster \(site.name) is not locked")
        }
    }
}
