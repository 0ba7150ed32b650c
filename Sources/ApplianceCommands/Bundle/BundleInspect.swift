import ApplianceBundle
import ArgumentParser
import Foundation

struct BundleInspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show what a bundle holds: components, artifacts, kinds, sizes, roles, upgrade path.",
        discussion: "Inspect reads the manifest without checking digests; use `bundle verify` before trusting it.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The bundle (.tar).")
    var bundle: String

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle inspect")
        let path = bundle
        let archive = try await BlockingWork.run { try BundleArchive.open(path) }
        let m = try archive.manifest()
        let sig = archive.signatureData.flatMap(ManifestSignature.decode)
        switch format {
        case .json:
            ctx.output.print(Format.json(manifestJSON(m, signature: sig)))
        case .text:
            ctx.output.print("bundle:      \(m.name) \(m.version)")
            ctx.output.print("created:     \(m.created)")
            ctx.output.print("kubernetes:  \(m.kubernetesVersion)")
            ctx.output.print(
                "upgradeFrom: \(m.upgradeFrom.isEmpty ? "(fresh installs only)" : m.upgradeFrom.joined(separator: ", "))"
            )
            ctx.output.print(
                "signature:   \(sig.map { "key \($0.keyFingerprint) (not checked here; run bundle verify)" } ?? "none")"
            )
            ctx.output.print("size:        \(Format.bytes(m.totalBlobBytes)) in \(m.blobs.count) blobs")
            ctx.output.print("")
            let rows = m.allArtifacts.map { c, a in
                [
                    c.name, a.name, a.kind.rawValue, Format.bytes(a.allBlobs.reduce(0) { $0 + $1.size }),
                    a.roles.joined(separator: ","),
                    a.provenance.filter { $0.0 != "type" }.map { "\($0.0)=\($0.1)" }.joined(separator: " "),
                ]
            }
            ctx.output.print(Format.table(["COMPONENT", "ARTIFACT", "KIND", "SIZE", "ROLES", "SOURCE"], rows))
        }
    }
}

func manifestJSON(_ m: BundleManifest, signature: ManifestSignature?) -> [String: Any] {
    [
        "name": m.name, "version": m.version, "created": m.created, "kubernetes": m.kubernetesVersion,
        "upgradeFrom": m.upgradeFrom, "signatureKey": signature?.keyFingerprint ?? NSNull(),
        "totalBytes": m.totalBlobBytes,
        "components": m.components.map { c in
            [
                "name": c.name, "version": c.version,
                "artifacts": c.artifacts.map { a in
                    [
                        "name": a.name, "kind": a.kind.rawValue, "sha256": a.sha256.hex, "size": a.size,
                        "roles": a.roles,
                        "provenance": Dictionary(a.provenance, uniquingKeysWith: { x, _ in x }),
                    ].merging(
                        a.image.map { i in
                            [
                                "image": [
                                    "reference": i.reference, "platform": i.platform, "mediaType": i.mediaType,
                                    "blobs": i.blobs.map {
                                        ["digest": $0.digest.prefixed, "size": $0.size, "mediaType": $0.mediaType]
                                    },
                                ] as [String: Any]
                            ]
                        } ?? [:], uniquingKeysWith: { x, _ in x }) as [String: Any]
                },
            ] as [String: Any]
        },
    ]
}
