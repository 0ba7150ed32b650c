import ApplianceBundle
import Foundation

/// The files of a support bundle that the analyzers read, read with the product's own safe archive reader
/// (every entry checked first: no absolute names, no `..`, no links, no device files; nothing is written to disk).
/// Journals and logs the analyzers do not read are passed over, not loaded.
public struct SupportBundleContents: Sendable {
    public var manifest: SupportManifest
    /// Bundle path -> text, for the files the analyzers read.
    public var files: [String: String]
    /// Every regular file in the bundle.
    public var names: [String]

    public init(manifest: SupportManifest, files: [String: String], names: [String]) {
        self.manifest = manifest
        self.files = files
        self.names = names
    }

    public subscript(_ path: String) -> String? { files[path] }

    /// Whether the analyzers read `path` (the rest is skipped).
    static func wanted(_ path: String) -> Bool {
        if path == SupportManifest.fileName || path.hasPrefix("cluster/") && !path.hasPrefix("cluster/helm-values/") {
            return true
        }
        let parts = path.split(separator: "/")
        guard parts.count == 3, parts[0] == "nodes" else { return false }
        return [
            "facts.txt", "nvidia-smi-q.txt", "nvidia-smi-topo.txt", "kernel-xid.log", "certificates.txt", "disk.txt",
            "dcgmi-diag-r1.txt",
        ].contains(String(parts[2]))
    }

    /// Reads `archive`. Throws `SupportError.unsafeArchive` for an archive the product's rules refuse and
    /// `.notASupportBundle` when it has no readable `manifest.json`.
    public static func read(archive: String, maxFileBytes: Int = 256 << 20) throws(SupportError)
        -> SupportBundleContents
    {
        var files: [String: String] = [:]
        var names: [String] = []
        do {
            try SafeArchive.forEachFile(archive: archive) { f in
                names.append(f.name)
                guard wanted(f.name) else { return }
                let data = try f.readAll(limit: maxFileBytes)
                files[f.name] = String(decoding: data, as: UTF8.self)
            }
        } catch let e as BundleError {
            if case .unsafeEntries = e { throw .unsafeArchive(path: archive, reason: e.description) }
            throw .notASupportBundle(path: archive, reason: e.description)
        } catch {
            throw .notASupportBundle(path: archive, reason: "\(error)")
        }
        guard let m = files[SupportManifest.fileName] else {
            throw .notASupportBundle(path: archive, reason: "it has no \(SupportManifest.fileName)")
        }
        let manifest: SupportManifest
        do {
            manifest = try SupportManifest.decode(Data(m.utf8))
        } catch {
            throw .notASupportBundle(path: archive, reason: "\(SupportManifest.fileName) does not decode: \(error)")
        }
        guard manifest.kind == SupportManifest.kind else {
            throw .notASupportBundle(path: archive, reason: "manifest kind is '\(manifest.kind)'")
        }
        return SupportBundleContents(manifest: manifest, files: files, names: names)
    }
}
