import ApplianceLab
import ArgumentParser

struct LabDownCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down",
        abstract: "Stop the lab and remove every process, mount, namespace, link and file it made.",
        discussion:
            "Also cleans up after an interrupted `lab up`. Running it with no lab is fine. The cached rootfs stays.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var labOptions: LabOptions

    func run() throws {
        let (lab, ctx) = try labOptions.lab(global, command: "lab down")
        let r = try lab.down()
        if r.isEmpty {
            ctx.output.print("no lab to take down")
        } else {
            ctx.output.print(
                "lab down: stopped \(r.stopped) nodes, unmounted \(r.unmounted), deleted \(r.namespaces) namespaces and \(r.links) links"
                    + (r.removedDirectory ? ", removed \(lab.config.directory)" : ""))
        }
    }
}
