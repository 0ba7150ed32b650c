import ApplianceBundle
import ApplianceLab
import ApplianceModel
import ArgumentParser
import Foundation

struct LabBundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Build the signed lab bundle (bundles/lab.yaml) from scratch.",
        discussion: Format.help(
            """
            Makes the lab images (`lab images`) and the stand-in packages (`lab packages`) under \
            <spec folder>/lab/generated/, then runs `bundle build` on the spec: Debian packages by name and \
            version with their dependency closure against the lab node's base set, the stand-ins, the images and \
            the CNI manifest. `scripts/lab-bundle` does this on a fresh machine (bootstrap, build, key).
            """))

    @OptionGroup var global: GlobalOptions

    @Option(name: .shortAndLong, help: "Where to write the bundle (.tar).")
    var out: String

    @Option(help: "Private key to sign with (from `bundle keygen`).")
    var key: String

    @Option(name: .customShort("f"), help: "The lab bundle spec.")
    var spec = "bundles/lab.yaml"

    @Option(
        help: "The appliance-labnode executable, linked with --static-swift-stdlib (default: next to this program).")
    var labnode: String?

    func run() throws {
        let ctx = CommandContext.make(global, command: "lab bundle")
        let signingKey = try Ed25519Key.load(path: key)
        if !signingKey.hasPrivateKey {
            throw BundleError.key(path: key, reason: "this is a public key; signing needs the private key")
        }
        let binary =
            labnode
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("appliance-labnode").path
        let report = try LabBundle(
            specPath: spec, labnode: binary, debCacheDirectory: StateDirectory.path() + "/cache/debs",
            logger: ctx.logger
        ).build(output: out, signingKey: signingKey)
        let m = report.result.manifest
        ctx.output.print(
            "built \(report.result.path): \(m.name) \(m.version), \(m.components.count) components, "
                + "\(m.allArtifacts.count) artifacts, \(Format.bytes(report.result.bytes))")
        ctx.output.print(
            "took \(Format.seconds(report.totalSeconds)): images \(Format.seconds(report.imagesSeconds)), "
                + "stand-in packages \(Format.seconds(report.packagesSeconds)), "
                + "bundle build \(Format.seconds(report.buildSeconds))")
        ctx.output.print(report.result.signedBy.map { "signed by \($0)" } ?? "unsigned")
    }
}
