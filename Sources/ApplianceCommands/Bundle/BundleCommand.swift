import ArgumentParser

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Build, sign, verify, inspect and compare offline bundles.",
        subcommands: []
    )
}
