import ApplianceLab
import ArgumentParser
import Foundation

struct LabSSHCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Log in to a lab node (or run a command there) with OpenSSH, the lab key and its pinned host key.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var labOptions: LabOptions

    @Argument(help: "Node name (see `appliance lab status`).")
    var node: String

    @Argument(parsing: .captureForPassthrough, help: "Command to run on the node; none for a login shell.")
    var command: [String] = []

    func run() throws {
        let (lab, _) = try labOptions.lab(global, command: "lab ssh")
        let state = try lab.loadState()
        let n = try state.node(node)
        if lab.condition(n) != .running { throw LabError.nodeDown(node: n.name) }
        let remote = command.first == "--" ? Array(command.dropFirst()) : command
        let (program, args) = lab.ssh(state).command(address: n.address, remote: remote, batch: false)
        // Replace this process with ssh so the terminal, signals and the exit status are ssh's own.
        var argv: [UnsafeMutablePointer<CChar>?] = ([program] + args).map { strdup($0) } + [nil]
        execv(program, &argv)
        throw LabError.commandFailed(
            command: program, status: -1, output: String(cString: strerror(errno)), context: "cannot run ssh")
    }
}
