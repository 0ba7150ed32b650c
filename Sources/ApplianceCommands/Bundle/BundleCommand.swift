import ArgumentParser

struct BundleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Build, sign, verify, inspect and compare offline bundles.",
        subcommands: [
            BundleKeygen.self, BundleBuild.self, BundleVerify.self, BundleInspect.self, BundleDiffCommand.self,
            BundleExtract.self, BundleSBOMCommand.self,
        ]
    )
}

/// `--trust` and `--allow-unsigned`, shared by every command that reads a bundle.
struct TrustOptions: ParsableArguments {
    @Option(name: .customLong("trust"), help: "A trusted public key (PEM). Repeat for several.")
    var trustedKeys: [String] = []

    @Flag(help: "Accept a bundle without a signature. Only for bundles you built yourself.")
    var allowUnsigned = false
}
