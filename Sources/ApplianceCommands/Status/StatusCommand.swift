import ApplianceModel
import ApplianceOperations
import AppliancePlan
import ArgumentParser
import Foundation

/// `appliance status`: the cluster's health in one report, read-only.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "The cluster's health: nodes, GPUs, control plane and etcd, registry, platform releases.",
        discussion: """
            Read-only. Per node: roles, Ready, kubelet version and unit, scheduling (cordoned or tainted, with the
            reason `appliance node drain` or the GPU gate recorded), GPUs (declared by the profile, nvidia.com/gpu
            allocatable, healthy) and the fabric manager on NVSwitch profiles. The control plane: the API endpoint
            and /readyz?verbose, each control plane's own API server, etcd members and quorum (etcdctl with
            kubeadm's healthcheck certificate). The private registry's /v2/ over TLS with the installer's CA. Each
            Helm release: chart, version, status, pods Ready. The installed bundle, and the last operation of this
            admin host's journal. Everything is read through the first control plane that answers, plus one SSH
            probe per node; what does not answer is a line of the report.
            --format json prints the schema appliance.dev/status/v1 (README, "appliance status").
            --watch repeats every --interval seconds: redrawn in place on a terminal, one report after another
            otherwise (with --format json: one compact JSON document per line); Ctrl-C ends it.
            Exit codes: 0 healthy; 11 something is not healthy (each problem is a line under PROBLEMS); 5 a node
            or the API did not answer; 1 the site file cannot be read; 2 usage. With --watch, the code of the
            last report.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var site: SiteOptions

    @Option(help: "text or json.")
    var format: OutputFormat = .text

    @Flag(help: "Repeat the report every --interval seconds until Ctrl-C.")
    var watch = false

    @Option(help: "Seconds between reports with --watch.")
    var interval: Double = 5

    @Option(help: "Seconds each remote read may take before it counts as not answering.")
    var timeout: Int = 20

    func validate() throws {
        if interval < 1 { throw ValidationError("--interval must be at least 1 second") }
        if timeout < 5 || timeout > 600 { throw ValidationError("--timeout must be between 5 and 600 seconds") }
    }

    func run() async throws {
        let ctx = CommandContext.make(global, command: "status")
        let session = try ctx.session(site)
        let stdoutTTY = isatty(STDOUT_FILENO) == 1
        let (format, interval, timeout, watch) = (format, interval, timeout, watch)
        let output = ctx.output
        let code: Int32 = try await session.closing {
            guard watch else {
                let report = await ClusterStatus.gather(session: session, commandTimeoutSeconds: timeout)
                output.print(format == .json ? try StatusRenderer.json(report) : StatusRenderer.text(report))
                return report.exitCode
            }
            return try await SignalInterruption.cancellingOnSignals {
                var last: Int32 = ExitStatus.success.rawValue
                while !Task.isCancelled {
                    let report = await ClusterStatus.gather(session: session, commandTimeoutSeconds: timeout)
                    if Task.isCancelled { break }
                    last = report.exitCode
                    let body =
                        format == .json ? try StatusRenderer.json(report, compact: true) : StatusRenderer.text(report)
                    if stdoutTTY && format == .text {
                        // Home, clear the screen, then the report: redrawn in place.
                        output.print(
                            "\u{1B}[H\u{1B}[2J" + body + "\n\n(every \(Self.seconds(interval)); Ctrl-C to stop)")
                    } else {
                        output.print(format == .json ? body : body + "\n")
                    }
                    try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
                }
                return last
            }
        }
        if code != 0 { throw StatusNotHealthy(code: code) }
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : String(format: "%.1fs", s)
    }
}

/// The report is printed; the exit code says it is not healthy (no `error:` line: the report has them).
struct StatusNotHealthy: ApplianceFailure {
    var code: Int32
    var message: String {
        code == ExitStatus.unreachable.rawValue
            ? "the cluster is not healthy: something did not answer (see PROBLEMS)"
            : "the cluster is not healthy (see PROBLEMS)"
    }
    var exitStatus: ExitStatus { ExitStatus(rawValue: code) ?? .unhealthy }
}
