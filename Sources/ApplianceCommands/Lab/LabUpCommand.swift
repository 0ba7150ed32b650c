import ApplianceLab
import ArgumentParser
import Foundation

struct LabUpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start a lab: N booted nodes on a private bridge, SSH-ready, with a site file for them.",
        discussion: """
            The first run builds the node rootfs with debootstrap from the configured Debian mirror (about a
            minute) and caches it; later runs start 8 nodes in seconds. Profiles: \
            \(LabProfile.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; ")).
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var labOptions: LabOptions

    @Option(help: "Hardware profile the nodes declare (roles, CPUs, memory, disks, GPUs, NICs).")
    var profile = "lab"

    @Option(help: "Number of nodes.")
    var nodes = 3

    @Option(help: "How many of them are control-plane nodes.")
    var controlPlanes = 1

    @Option(
        help:
            "How many of them are dedicated system nodes (the platform's services), after the control planes; 0: the control planes carry the system role."
    )
    var systemNodes = 0

    @Option(help: "Limit every node's link to this rate, e.g. 1gbit, 100mbit.")
    var link: String?

    @Option(help: "Limit the admin side's uplink to the lab, e.g. 1gbit.")
    var adminLink: String?

    @Flag(help: "Put the admin side in its own network namespace (run the CLI there with `ip netns exec`).")
    var adminNamespace = false

    @Option(help: "Size of each node's /var/lib/appliance in MiB (a tmpfs: only what is written uses memory).")
    var diskSize = 4096

    @Option(help: "Debian mirror for the first rootfs build (default: the one apt is configured with).")
    var mirror: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .text

    func run() throws {
        let (lab, ctx) = try labOptions.lab(global, command: "lab up")
        let report = try lab.up(
            .init(
                profile: profile, nodes: nodes, controlPlanes: controlPlanes, systemNodes: systemNodes, linkRate: link,
                adminLinkRate: adminLink,
                adminNamespace: adminNamespace, diskSizeMiB: diskSize, mirror: mirror))
        if format == .json {
            try LabStatusCommand.printJSON(lab: lab, state: report.state, ctx: ctx)
            return
        }
        if report.rootfsBuilt {
            ctx.output.print("rootfs built in \(String(format: "%.1f", report.rootfsSeconds)) s (cached for next time)")
        }
        ctx.output.print(
            "lab up: \(report.state.nodes.count) nodes SSH-ready in \(String(format: "%.1f", report.nodesReadySeconds)) s"
        )
        LabStatusCommand.printTable(lab: lab, state: report.state, ctx: ctx)
        if let ns = report.state.adminNamespace {
            ctx.output.print("admin side: namespace \(ns); run the CLI there: ip netns exec \(ns) appliance ...")
        }
    }
}
