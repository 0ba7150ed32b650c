import ApplianceBundle
import ArgumentParser
import Foundation

struct BundleDiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two bundles: artifacts added, removed, changed, and the bytes an upgrade must send.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The bundle installed now.")
    var old: String

    @Argument(help: "The bundle to upgrade to.")
    var new: String

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "bundle diff")
        let (o, n) = (old, new)
        let (om, nm) = try await BlockingWork.run {
            (try BundleArchive.open(o).manifest(), try BundleArchive.open(n).manifest())
        }
        let d = BundleDiff(old: om, new: nm)
        func row(_ c: BundleDiff.Change) -> [String: Any] {
            var r: [String: Any] = ["component": c.component, "artifact": c.artifact]
            if let a = c.old { r["old"] = ["sha256": a.sha256.hex, "size": a.size] }
            if let a = c.new { r["new"] = ["sha256": a.sha256.hex, "size": a.size] }
            if c.new != nil {
                r["bytesToSend"] = c.bytesToSend
                r["blobs"] = c.blobCount
                r["blobsShared"] = c.blobsShared
            }
            if let i = c.new?.image { r["image"] = i.reference }
            return r
        }
        switch format {
        case .json:
            ctx.output.print(
                Format.json([
                    "from": d.fromVersion, "to": d.toVersion, "upgradeAllowed": d.upgradeAllowed,
                    "added": d.added.map(row), "removed": d.removed.map(row), "changed": d.changed.map(row),
                    "unchanged": d.unchanged, "bytesToSend": d.bytesToSend, "newTotalBytes": d.newTotalBytes,
                ]))
        case .text:
            ctx.output.print("\(d.fromVersion) -> \(d.toVersion)")
            if !d.upgradeAllowed {
                ctx.output.print(
                    "  note: \(d.toVersion) does not list \(d.fromVersion) in upgradeFrom; an upgrade will be refused")
            }
            // Images count by layer: only blobs the old bundle lacks are bytes to send.
            func layers(_ c: BundleDiff.Change) -> String {
                guard c.new?.image != nil else { return "" }
                return "  (\(c.blobCount - c.blobsShared) of \(c.blobCount) blobs new)"
            }
            for c in d.added {
                ctx.output.print("  + \(c.component)/\(c.artifact)  \(Format.bytes(c.bytesToSend))\(layers(c))")
            }
            for c in d.removed { ctx.output.print("  - \(c.component)/\(c.artifact)") }
            for c in d.changed {
                ctx.output.print(
                    "  ~ \(c.component)/\(c.artifact)  \(c.old?.sha256.short ?? "") -> \(c.new?.sha256.short ?? "")  \(Format.bytes(c.bytesToSend))\(layers(c))"
                )
            }
            ctx.output.print("  \(d.unchanged) unchanged")
            let pct = d.newTotalBytes > 0 ? Double(d.bytesToSend) * 100 / Double(d.newTotalBytes) : 0
            ctx.output.print(
                "an upgrade sends \(Format.bytes(d.bytesToSend)) of \(Format.bytes(d.newTotalBytes)) per node (\(String(format: "%.1f", pct))%)"
            )
        }
    }
}
