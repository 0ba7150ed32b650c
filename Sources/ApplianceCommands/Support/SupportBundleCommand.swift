import ApplianceModel
import ApplianceSupport
import ArgumentParser
import Foundation

/// `appliance support-bundle`: one file with what is needed to diagnose a broken cluster, secrets removed.
struct SupportBundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "support-bundle",
        abstract: "Collect a support bundle (secrets removed), or analyze one.",
        subcommands: [SupportBundleCollect.self, SupportBundleAnalyze.self],
        defaultSubcommand: SupportBundleCollect.self)
}

struct SupportBundleCollect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Collect logs, node facts and cluster state into one .tar.gz, with every secret removed.",
        discussion: Format.help(
            """
            Read-only on every node. The admin host's run logs, journal, site file, profile and installed bundle's
            manifest; per node over SSH (in parallel, at most spec.ssh.parallelism at once): the preflight facts,
            service journals, NVIDIA Xid kernel lines, nvidia-smi -q and topo -m, packages, containerd and kubelet
            configuration, disk, memory, the store's inventory; the cluster's nodes, pods, events, PDBs, DaemonSets,
            Deployments, Helm releases and values, scheduler queues and etcd health through a control plane.
            Private keys, bootstrap tokens, certificate keys, passwords, Secret data, bearer tokens, registry
            credentials and spec.supportBundle.redact patterns are removed before anything is written;
            manifest.json lists every file with its redaction count, and what could not be collected and why.
            A node that is down is recorded and the bundle is still written.
            Exit codes: 0 written (even with nodes down: see manifest.json); 1 the bundle could not be written;
            2 usage (a bad --since, an unknown --node).
            """))

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions

    @Option(name: [.short, .long], help: "The bundle to write (default: support-CLUSTER-TIME.tar.gz here).")
    var output: String?

    @Option(help: "The log window: 90m, 24h, 7d.")
    var since = "24h"

    @Option(
        name: .customLong("node"), parsing: .upToNextOption,
        help: "Collect only these nodes (the cluster state is always read).")
    var nodes: [String] = []

    @Flag(help: "Also run `dcgmi diag -r 1` on GPU workers (about a minute each).")
    var gpuDiag = false

    func validate() throws {
        do { _ = try parseSupportDuration(since) } catch {
            throw ValidationError("--since: \(error.message); \(error.hint ?? "")")
        }
    }

    func run() async throws {
        let ctx = CommandContext.make(global, command: "support-bundle")
        let session = try ctx.session(site)
        let out = output ?? SupportBundleOperation.defaultOutput(cluster: session.site.name)
        ctx.logger.notice("collecting a support bundle of \(session.site.name) into \(out)")
        let manifest = try await SupportBundleOperation.run(
            session: session,
            options: .init(
                output: out, since: try parseSupportDuration(since), nodes: nodes, gpuDiag: gpuDiag,
                applianceVersion: ApplianceVersion.current))
        let down = manifest.nodes.filter { !$0.reachable }
        for n in down { ctx.logger.warning("\(n.name): not collected: \(n.error ?? "unreachable")") }
        ctx.output.print(
            "wrote \(out): \(manifest.files.count) files from \(manifest.nodes.count - down.count) of \(manifest.nodes.count) nodes, \(manifest.redactions) redactions, \(manifest.failures.count) collection failures (listed in manifest.json)"
        )
    }
}

struct SupportBundleAnalyze: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "analyze",
        abstract: "Print the known problems a support bundle shows, with evidence and a remedy.",
        discussion: Format.help(
            """
            Reads the bundle with the product's safe archive reader (no absolute names, no links; nothing is
            extracted). It may come from another site. Findings (stable ids):
            \(SupportAnalyzer.catalog.map { "  \($0.id): \($0.meaning)" }.joined(separator: "\n"))
            Exit codes: 0 no finding of error severity (warnings may be printed); 3 at least one error finding;
            1 not a support bundle; 7 the archive breaks the archive safety rules.
            """))

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The support bundle (.tar.gz).")
    var file: String

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "support-bundle analyze")
        let contents = try SupportBundleContents.read(archive: file)
        let report = SupportReport(contents: contents, findings: SupportAnalyzer.analyze(contents))
        ctx.output.print(format == .json ? try report.json() : report.text())
        if report.errors > 0 { throw AnalyzeFindings(errors: report.errors) }
    }
}

/// The bundle shows problems: not a failure of the command, but scripts need the exit code.
struct AnalyzeFindings: ApplianceFailure {
    var errors: Int
    var message: String { "the support bundle shows \(errors) problem\(errors == 1 ? "" : "s") of error severity" }
    var exitStatus: ExitStatus { .preflightFailed }
}
