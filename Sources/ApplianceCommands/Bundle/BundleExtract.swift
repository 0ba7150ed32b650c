import ApplianceBundle
import ArgumentParser
import Foundation

struct BundleExtract: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract",
        abstract: "Verify a bundle, then unpack it into an empty directory.",
        discussion: "Nothing is written outside the directory; a refused bundle leaves nothing behind.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var trust: TrustOptions

    @Argument(help: "The bundle (.tar).")
    var bundle: String

    @Option(help: "An empty or new directory.")
    var to: String

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle extract")
        _ = try await verifyBundle(bundle, trust: trust, workers: BlockingWork.defaultWorkers, ctx: ctx)
        let (b, t) = (bundle, to)
        let names = try await BlockingWork.run { try SafeExtractor.extract(archive: b, to: t) }
        ctx.output.print("extracted \(names.count) entries into \(to)")
    }
}
