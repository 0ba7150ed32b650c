import ApplianceModel
import ApplianceOperations
import AppliancePreflight
import ApplianceSSH
import ArgumentParser
import Foundation

/// `appliance preflight`: diagnostics on every node before anything is changed.
struct PreflightCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Check every node against a profile (read-only). Exit 0 all pass, 3 any failure, 4 warnings only.",
        discussion: "Waive a finding with --waive 'ID[@NODE]=reason'; waivers are shown in every format.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json, junit, html }

    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("i"), .long], help: "The site file.") var inventory: String?
    @Option(name: .long, help: "Profile name (default: the site's).") var profile: String?
    @Flag(name: .long, help: "Check this machine only, as one node, without SSH.") var local = false
    @Option(name: .long, help: "Roles of the local node (with --local).") var role: [NodeRole] = [.controlPlane]
    @Option(name: .long, help: "table, json, junit or html.") var format: Format = .table
    @Option(name: [.short, .long], help: "Write the report here instead of stdout.") var output: String?
    @Option(name: .long, help: "Per-node collector timeout in seconds.") var timeout: Int = 60
    @Option(name: .long, help: "Bundle size in GiB, for the staging-space check.") var bundleSize: Double = 0
    @Flag(name: .long, help: "Also run `dcgmi diag -r 1` on GPU workers (about a minute).") var dcgm = false
    @Option(name: .long, help: "Waive a finding: ID[@NODE]=reason (repeatable).") var waive: [String] = []
    @Flag(name: .long, help: "Show passing checks with their observed values in the table.") var all = false
    @Flag(help: "Accept and record the host keys of hosts not yet in known_hosts.") var trustNewHosts = false

    func validate() throws {
        if !local && inventory == nil {
            throw ValidationError("give a site file with -i, or --local to check this machine")
        }
        for w in waive where Waiver.parse(w) == nil { throw ValidationError("--waive '\(w)' must be ID[@NODE]=reason") }
    }

    func run() async throws {
        let ctx = CommandContext.make(global, command: "preflight")
        let site = try inventory.map { try SiteInventory.load(path: $0) }
        guard let profileName = profile ?? site?.profile else {
            throw ValidationError("no profile: pass --profile or set spec.profile in the site file")
        }
        let prof = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(profileName)
        let dir = ResourceLocator.preflightDirectory()
        let catalog = try CheckCatalog.load(directory: dir + "/checks")
        let waivers = waive.compactMap(Waiver.parse)
        for w in waivers where catalog.check(w.checkID) == nil {
            throw ValidationError("--waive names unknown check '\(w.checkID)'")
        }
        let runner = PreflightRunner(
            catalog: catalog, profile: prof, site: site, collectorScript: try PreflightRunner.collector(in: dir),
            timeout: .seconds(timeout), parallelism: site?.ssh.parallelism ?? 32, bundleGiB: bundleSize, runDCGM: dcgm,
            waivers: waivers)
        let nodes: [PreflightNode]
        var pool: SSHPool?
        if local {
            let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
            nodes = [PreflightNode(name: host, address: "127.0.0.1", roles: role, shell: LocalNodeShell())]
        } else {
            guard let inventory else { return }
            let session = try OperationSession.open(
                sitePath: inventory, trustNewHosts: trustNewHosts, logger: ctx.logger)
            pool = session.pool
            nodes = session.site.hosts.map {
                PreflightNode(
                    name: $0.name, address: $0.address, roles: $0.roles,
                    shell: SSHNodeShell(pool: session.pool, endpoint: session.endpoint(for: $0)))
            }
        }
        ctx.logger.notice("preflight: checking \(nodes.count) node(s) against \(prof.name)")
        let report = await runner.run(nodes: nodes)
        await pool?.closeAll()
        let text: String
        switch format {
        case .table:
            text = TableReport.render(
                report, color: output == nil && ctx.useColor && isatty(STDOUT_FILENO) == 1, verbose: all)
        case .json: text = String(decoding: try report.json(), as: UTF8.self) + "\n"
        case .junit: text = JUnitReport.render(report)
        case .html: text = HTMLReport.render(report)
        }
        if let output {
            try Data(text.utf8).write(to: URL(fileURLWithPath: output))
            ctx.logger.notice("preflight: report written to \(output)")
        } else {
            ctx.output.print(text.hasSuffix("\n") ? String(text.dropLast()) : text)
        }
        // Sites with spec.platform: the platform's capacity, quota and certificate check (on stderr).
        let platform = site.flatMap { PlatformReport.lines(site: $0, profile: prof) }
        for line in platform?.lines ?? [] { ctx.logger.notice("\(line)") }
        let status = report.exitStatus
        if status != .success { throw PreflightVerdictError(status: status, summary: report.summary) }
        if let error = platform?.error { throw error }
    }
}

/// Not a crash: carries the documented exit code of a preflight that found problems.
struct PreflightVerdictError: ApplianceFailure {
    var status: ExitStatus
    var summary: PreflightReport.Summary
    var message: String {
        "preflight: \(summary.fail) failed, \(summary.warn) warnings, \(summary.unknown) could not be read"
    }
    var hint: String? {
        status == .preflightFailed
            ? "fix the failures or waive them with --waive 'ID[@NODE]=reason'"
            : "review the warnings; they do not block install"
    }
    var exitStatus: ExitStatus { status }
}

extension NodeRole: ExpressibleByArgument {}
