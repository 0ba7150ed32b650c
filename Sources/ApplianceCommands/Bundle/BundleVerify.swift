import ApplianceBundle
import ApplianceOperations
import ArgumentParser
import Foundation
import Logging

struct BundleVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check a bundle's safety, signature and every blob digest.",
        discussion: "Exit code 7 when anything does not verify; the message names the artifact.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var trust: TrustOptions

    @Argument(help: "The bundle (.tar).")
    var bundle: String

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    @Option(help: "Hashing threads (default: one per core).")
    var workers: Int = BlockingWork.defaultWorkers

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle verify")
        let verified = try await verifyBundle(bundle, trust: trust, workers: workers, ctx: ctx)
        let m = verified.manifest
        switch format {
        case .json:
            var signer: [String: Any] = ["signed": false]
            if case .trustedKey(let fp) = verified.signer { signer = ["signed": true, "key": fp] }
            ctx.output.print(
                Format.json([
                    "bundle": bundle, "name": m.name, "version": m.version, "verified": true, "signature": signer,
                    "artifacts": m.allArtifacts.count, "bytesVerified": verified.bytesVerified,
                ]))
        case .text:
            let who: String
            switch verified.signer {
            case .trustedKey(let fp): who = "signed by trusted key \(fp)"
            case .unsignedAllowed: who = "UNSIGNED (accepted because of --allow-unsigned)"
            }
            ctx.output.print("verified \(bundle): \(m.name) \(m.version)")
            ctx.output.print("  \(who)")
            ctx.output.print(
                "  \(m.allArtifacts.count) artifacts in \(m.components.count) components, \(Format.bytes(verified.bytesVerified)) hashed"
            )
        }
    }
}

/// Opens and fully verifies a bundle off the cooperative pool, with a progress line on a TTY.
func verifyBundle(_ path: String, trust: TrustOptions, workers: Int, ctx: CommandContext) async throws -> VerifiedBundle
{
    try await BundleVerification.verify(
        path, trustedKeys: trust.trustedKeys, allowUnsigned: trust.allowUnsigned, workers: workers,
        io: ctx.operationIO(quiet: ctx.logger.logLevel.isQuiet))
}

extension Logger.Level {
    var isQuiet: Bool { self >= .error }
}
