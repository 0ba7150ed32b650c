import ArgumentParser

struct ProfileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "List and show hardware + deployment profiles.",
        subcommands: [ProfileListCommand.self, ProfileShowCommand.self]
    )
}
