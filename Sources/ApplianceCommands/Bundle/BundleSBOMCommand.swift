import ApplianceBundle
import ApplianceModel
import ArgumentParser
import Foundation

/// `bundle sbom BUNDLE.tar`: the bundle's CycloneDX bill of materials, printed after full verification.
struct BundleSBOMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sbom",
        abstract: "Print a bundle's bill of materials (CycloneDX JSON or a table), after verifying the bundle.",
        discussion: "The SBOM is an artifact of the signed manifest, so the signature covers it.")

    enum SBOMFormat: String, ExpressibleByArgument, CaseIterable {
        case cyclonedxJSON = "cyclonedx-json"
        case table
    }

    @OptionGroup var global: GlobalOptions
    @OptionGroup var trust: TrustOptions

    @Argument(help: "The bundle (.tar).")
    var bundle: String

    @Option(help: "cyclonedx-json (the document as stored) or table.")
    var format: SBOMFormat = .cyclonedxJSON

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle sbom")
        let verified = try await verifyBundle(
            bundle, trust: trust, workers: BlockingWork.defaultWorkers, ctx: ctx)
        guard
            let entry = verified.manifest.allArtifacts.first(where: {
                $0.component.name == BundleSBOM.component && $0.artifact.name == BundleSBOM.artifact
            })
        else {
            throw BundleError.notABundle(
                path: bundle, reason: "it carries no bill of materials (built before SBOMs were added)")
        }
        let archive = verified.archive
        let data = try await BlockingWork.run { () throws -> Data in
            var out = Data()
            try archive.streamBlob(entry.artifact.sha256) { chunk in out.append(contentsOf: chunk) }
            return out
        }
        switch format {
        case .cyclonedxJSON:
            ctx.output.write(String(decoding: data, as: UTF8.self))
        case .table:
            guard let doc = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let comps = doc["components"] as? [[String: Any]]
            else {
                throw BundleError.notABundle(path: bundle, reason: "its SBOM is not CycloneDX JSON")
            }
            let rows = comps.map { c -> [String] in
                let hash = ((c["hashes"] as? [[String: Any]])?.first?["content"] as? String).map {
                    String($0.prefix(12))
                }
                let licence = ((c["licenses"] as? [[String: Any]])?.first?["expression"] as? String) ?? ""
                return [
                    c["group"] as? String ?? "", c["name"] as? String ?? "", c["version"] as? String ?? "",
                    c["type"] as? String ?? "", hash ?? "", licence, c["purl"] as? String ?? "",
                ]
            }
            ctx.output.print(Format.table(["COMPONENT", "NAME", "VERSION", "TYPE", "SHA256", "LICENCE", "PURL"], rows))
        }
    }
}
