import ApplianceLab
import ArgumentParser

extension LabFaultKind: ExpressibleByArgument {}

struct LabFaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault",
        abstract: "Inject a fault into a lab node, or undo one with its counterpart.",
        discussion: "Kinds:\n"
            + LabFaultKind.allCases.map { k in
                "  \(k.rawValue)\(k.argument.map { " \($0)" } ?? ""): \(k.summary)"
            }.joined(separator: "\n")
            + "\nLasting faults are listed by `appliance lab status` until undone.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var labOptions: LabOptions

    @Argument(help: "Node name.")
    var node: String

    @Argument(help: "Fault kind: \(LabFaultKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var kind: LabFaultKind

    @Argument(help: "Rate, percentage, service name, GPU or GPU:LINK, for the kinds that take one.")
    var value: String?

    func run() throws {
        let (lab, ctx) = try labOptions.lab(global, command: "lab fault")
        ctx.output.print(try lab.fault(node: node, kind: kind, argument: value))
    }
}
