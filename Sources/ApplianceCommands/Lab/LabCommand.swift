import ApplianceLab
import ArgumentParser

/// `appliance lab ...`: a rehearsal cluster of systemd-nspawn nodes on this machine.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "A multi-node rehearsal cluster on this machine (root; systemd-nspawn nodes on a private bridge).",
        discussion: Format.help(
            """
            The nodes are real Debian systems with systemd and sshd, reached over SSH exactly as servers are.
            `lab up` writes a site file (printed at the end) that every other command takes with -i.
            """),
        subcommands: [
            LabUpCommand.self, LabStatusCommand.self, LabSSHCommand.self, LabFaultCommand.self, LabDownCommand.self,
            LabPackagesCommand.self, LabImagesCommand.self, LabBundleCommand.self,
        ]
    )
}

/// Which lab: one per state directory by default; tests and side-by-side labs pick another id and subnet.
struct LabOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Lab id (1-8 lower-case letters or digits).", visibility: .hidden))
    var labId = "lab"

    @Option(name: .long, help: ArgumentHelp("First three octets of the lab's private /24.", visibility: .hidden))
    var subnet = "10.77.0"

    func config() throws -> LabConfig { try LabConfig(id: labId, subnet: subnet) }

    func lab(_ global: GlobalOptions, command: String) throws -> (Lab, CommandContext) {
        let ctx = CommandContext.make(global, command: command)
        return (Lab(config: try config(), logger: ctx.logger), ctx)
    }
}
