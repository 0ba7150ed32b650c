import ApplianceModel
import Foundation
import Yams

/// `bundle build --check`: validates a loaded spec without fetching anything. Errors: a local source that is
/// missing or of the wrong type, a chart image (`images:`) that no image artifact provides. Warnings: an
/// image a chart's `values.yaml` names that the bundle lacks, the same image twice, a Debian package
/// without a pinned version. (References, platforms and the spec's shape are checked when it loads.)
public enum SpecCheck {
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public enum Severity: String, Sendable { case error, warning }
        public var severity: Severity
        public var message: String
        public var location: SourceLocation?
        public var description: String { Diagnostic(message, at: location).description }
    }

    public static func run(_ spec: BundleSpec) -> [Finding] {
        var out: [Finding] = []
        func add(_ s: Finding.Severity, _ a: BundleSpec.Artifact, _ m: String) {
            out.append(Finding(severity: s, message: "artifact '\(a.name)': \(m)", location: a.location))
        }
        // Images the bundle provides, by full reference (tag, no digest) and by repository.
        var provided: [String: String] = [:]  // registry/repo:tag -> artifact
        var repositories: [String: [String]] = [:]  // registry/repo -> tags
        var seen: [String: String] = [:]
        for c in spec.components {
            for a in c.artifacts {
                var ref: String?
                var platform = ImagePlatform.linuxAMD64.description
                switch a.source {
                case .image(let r, let p):
                    ref = r
                    platform = p
                case .ociLayout(let path):
                    if let info = try? OCILayout.validateShallow(directory: path) { ref = info }
                default: break
                }
                guard let ref, case .success(let parsed) = ImageReference.parse(ref) else { continue }
                let key = "\(parsed) \(platform)"
                if let other = seen[key] { add(.warning, a, "image \(ref) (\(platform)) is also artifact '\(other)'") }
                seen[key] = a.name
                let repo = repoKey(parsed)
                provided["\(repo):\(parsed.tag ?? "")"] = a.name
                repositories[repo, default: []].append(parsed.tag ?? parsed.digest?.prefixed ?? "")
            }
        }
        for c in spec.components {
            for a in c.artifacts {
                checkLocal(a, add: add)
                if case .debPackage(let name, nil, _) = a.source {
                    add(
                        .warning, a, "package \(name) has no pinned version (a --lock file pins what the build fetched)"
                    )
                }
                var chartPath: String?
                switch a.source {
                case .chart(let p): chartPath = p
                case .chartRepository: chartPath = nil
                default: continue
                }
                for ref in a.images {
                    guard case .success(let parsed) = ImageReference.parse(ref) else { continue }
                    if provided["\(repoKey(parsed)):\(parsed.tag ?? "")"] == nil {
                        add(.error, a, "the chart needs image \(ref), which no image artifact of the bundle provides")
                    }
                }
                let listed = Set(
                    a.images.compactMap { try? ImageReference.parse($0).get() }.map {
                        "\(repoKey($0)):\($0.tag ?? "")"
                    })
                guard let chartPath, let found = chartValues(chartPath) else { continue }
                let (values, appVersion) = found
                for (keyPath, ref) in imagesIn(values: values, appVersion: appVersion) {
                    let repo = repoKey(ref)
                    let full = "\(repo):\(ref.tag ?? "")"
                    if provided[full] != nil || listed.contains(full) { continue }
                    if let tags = repositories[repo] {
                        add(
                            .warning, a,
                            "values.yaml \(keyPath) names \(ref), the bundle has \(repo) only at \(tags.joined(separator: ", "))"
                        )
                    } else {
                        add(.warning, a, "values.yaml \(keyPath) names image \(ref), which the bundle lacks")
                    }
                }
            }
        }
        return out
    }

    static func repoKey(_ r: ImageReference) -> String {
        let host = r.registry == "registry-1.docker.io" || r.registry == "index.docker.io" ? "docker.io" : r.registry
        return "\(host)/\(r.repository)"
    }

    private static func checkLocal(
        _ a: BundleSpec.Artifact, add: (Finding.Severity, BundleSpec.Artifact, String) -> Void
    ) {
        func exists(_ p: String, directory: Bool) {
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: p, isDirectory: &isDir) {
                add(.error, a, "\(p) does not exist")
            } else if isDir.boolValue != directory {
                add(.error, a, "\(p) is \(isDir.boolValue ? "a directory" : "not a directory")")
            }
        }
        switch a.source {
        case .file(let p), .debFile(let p): exists(p, directory: false)
        case .directory(let p): exists(p, directory: true)
        case .ociLayout(let p):
            exists(p, directory: true)
            if FileManager.default.fileExists(atPath: p), (try? OCILayout.validateShallow(directory: p)) == nil {
                add(.error, a, "\(p) is not an OCI image layout naming a full image reference")
            }
        case .chart(let p):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                add(.error, a, "\(p) does not exist")
                return
            }
            if isDir.boolValue, !FileManager.default.fileExists(atPath: p + "/Chart.yaml") {
                add(.error, a, "\(p) has no Chart.yaml")
            }
        case .debPackage, .image, .chartRepository: break
        }
    }

    /// The chart's `values.yaml` (directory or archive) and its `appVersion`.
    static func chartValues(_ path: String) -> (Any, String?)? {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return nil }
        var valuesText: String?
        var chartText: String?
        if isDir.boolValue {
            valuesText = try? String(contentsOfFile: path + "/values.yaml", encoding: .utf8)
            chartText = try? String(contentsOfFile: path + "/Chart.yaml", encoding: .utf8)
        } else if let reader = try? ArchiveReader(path: path, formats: .anyArchive) {
            var policy = EntryPolicy()
            while let e = try? reader.next() {
                guard case .accept(let name) = policy.check(e, archiveSize: nil) else { break }
                let parts = name.split(separator: "/")
                if parts.count == 2, parts[1] == "values.yaml" || parts[1] == "Chart.yaml",
                    let data = try? reader.readAll(limit: 8 << 20)
                {
                    if parts[1] == "values.yaml" {
                        valuesText = String(decoding: data, as: UTF8.self)
                    } else {
                        chartText = String(decoding: data, as: UTF8.self)
                    }
                } else if (try? reader.skip()) == nil {
                    break
                }
            }
        }
        guard let valuesText, let values = try? Yams.load(yaml: valuesText) else { return nil }
        let chart = chartText.flatMap { try? Yams.load(yaml: $0) } as? [String: Any]
        return (values, chart?["appVersion"].map { "\($0)" })
    }

    /// Image references a values tree names, with their key paths: `image: REF`, `image: NAME` with sibling
    /// `registry`/`tag`/`version`, and `repository:` with sibling `registry`/`tag` (an empty tag falls back
    /// to the chart's appVersion, as charts do). Implicit Docker Hub names are expanded.
    static func imagesIn(values: Any, appVersion: String?) -> [(String, ImageReference)] {
        var out: [(String, ImageReference)] = []
        func str(_ v: Any?) -> String? {
            guard let v, !(v is [String: Any]), !(v is [Any]) else { return nil }
            let s = "\(v)".trimmingCharacters(in: .whitespaces)
            return s.isEmpty ? nil : s
        }
        func make(_ name: String, registry: String?, tag: String?) -> ImageReference? {
            var n = name
            if let registry, !n.hasPrefix(registry + "/") { n = "\(registry)/\(n)" }
            let first = n.split(separator: "/").first.map(String.init) ?? ""
            if !(first.contains(".") || first.contains(":") || first == "localhost") {
                n = n.contains("/") ? "docker.io/\(n)" : "docker.io/library/\(n)"
            }
            let last = n.split(separator: "/").last ?? ""
            if !last.contains(":") && !n.contains("@") {
                guard let t = tag ?? appVersion else { return nil }
                n += ":\(t)"
            }
            return try? ImageReference.parse(n).get()
        }
        func walk(_ v: Any, _ path: String) {
            if let d = v as? [String: Any] {
                let registry = str(d["registry"])
                let tag = str(d["tag"]) ?? str(d["version"])
                if let image = str(d["image"]), image.contains("/") || d["tag"] != nil || d["registry"] != nil,
                    let r = make(image, registry: registry, tag: tag)
                {
                    out.append(("\(path).image", r))
                } else if let repo = str(d["repository"]), let r = make(repo, registry: registry, tag: tag) {
                    out.append(("\(path).repository", r))
                }
                for (k, child) in d.sorted(by: { $0.key < $1.key }) { walk(child, path.isEmpty ? k : "\(path).\(k)") }
            } else if let l = v as? [Any] {
                for (i, child) in l.enumerated() { walk(child, "\(path)[\(i)]") }
            }
        }
        walk(values, "")
        return out
    }
}

extension OCILayout {
    /// The full reference an OCI layout names, without hashing its blobs (for `--check`).
    static func validateShallow(directory: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: directory + "/index.json"),
            let index = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let first = (index["manifests"] as? [[String: Any]])?.first,
            let ref = (first["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"]
        else { throw CocoaError(.fileReadCorruptFile) }
        _ = try ImageReference.parse(ref).get()
        return ref
    }
}
