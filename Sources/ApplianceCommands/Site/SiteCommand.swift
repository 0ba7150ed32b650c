import ArgumentParser

struct SiteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "site",
        abstract: "Check site inventory files.",
        subcommands: [SiteValidateCommand.self]
    )
}
