import ApplianceBundle
import ApplianceModel
import ArgumentParser
import Foundation

struct BundleBuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "build", abstract: "Assemble and sign a bundle from a spec.",
        discussion: """
            Sources in the spec: local files and directories, .deb files, Debian packages by name and version
            (fetched with apt-get download and cached), OCI image layouts, Helm chart archives or directories.
            The output is written under a temporary name and renamed when complete.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .customShort("f"), help: "The bundle spec (bundles/NAME.yaml).")
    var spec: String

    @Option(name: .shortAndLong, help: "Where to write the bundle (.tar).")
    var output: String

    @Option(help: "Private key to sign with (from `bundle keygen`).")
    var key: String?

    @Flag(help: "Build without a signature (verifying it then needs --allow-unsigned).")
    var unsigned = false

    func validate() throws {
        if key == nil && !unsigned {
            throw ValidationError("pass --key KEY to sign the bundle, or --unsigned to build without a signature")
        }
    }

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle build")
        let parsed = try BundleSpec.load(path: spec)
        let signingKey = try key.map { try Ed25519Key.load(path: $0) }
        if let signingKey, !signingKey.hasPrivateKey {
            throw BundleError.key(path: key ?? "", reason: "this is a public key; signing needs the private key")
        }
        let cache = StateDirectory.path() + "/cache/debs"
        let builder = BundleBuilder(spec: parsed, signingKey: signingKey, debCacheDirectory: cache, logger: ctx.logger)
        let out = output
        let start = Date()
        let result = try await BlockingWork.run { try builder.build(output: out) }
        let m = result.manifest
        ctx.output.print(
            "built \(result.path): \(m.name) \(m.version), \(m.components.count) components, "
                + "\(m.allArtifacts.count) artifacts, \(Format.bytes(result.bytes)) in \(Format.seconds(Date().timeIntervalSince(start)))"
        )
        ctx.output.print(result.signedBy.map { "signed by \($0)" } ?? "unsigned")
    }
}
