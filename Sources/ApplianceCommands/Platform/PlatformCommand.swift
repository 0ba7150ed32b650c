import ArgumentParser

struct PlatformCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "platform",
        abstract: "The platform control plane: rendered Helm values, queues, capacity and certificate checks.",
        subcommands: [PlatformValuesCommand.self, PlatformCheckCommand.self]
    )
}
