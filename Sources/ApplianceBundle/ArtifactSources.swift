import ApplianceModel
import Foundation

/// An artifact's bytes ready to hash and pack: a file on disk and where it came from.
struct PreparedInput: Sendable {
    var path: String
    var size: Int64
    var provenance: [(String, String)]
    /// An image (issue 15): `path` is its manifest; these are its config and layers, digests already checked.
    var image: ImageDescriptor? = nil
    var imageBlobFiles: [ImageBlobFile] = []
}

/// A verified image blob on disk, packed under its digest.
struct ImageBlobFile: Sendable {
    var digest: SHA256Digest
    var path: String
    var size: Int64
}

/// Turns spec sources into files: packs directories and OCI layouts, packages chart directories,
/// reads `.deb` control data, and fetches Debian packages by name with `apt-get download`.
struct SourcePreparer {
    /// Scratch space for packed artifacts (removed by the builder when done).
    var workDirectory: String
    /// Where fetched `.deb` files are kept between builds.
    var debCacheDirectory: String
    /// Registry images pulled before packing (issue 15), by `component/artifact`.
    var pulledImages: [String: LocalImage] = [:]
    /// Repository charts fetched before packing (issue 15), by `component/artifact`.
    var pulledCharts: [String: String] = [:]

    func prepare(_ a: BundleSpec.Artifact, component: String) throws(BundleError) -> PreparedInput {
        let scratch = "\(workDirectory)/\(component)--\(a.name)"
        switch a.source {
        case .file(let path):
            let size = try regularFileSize(path, artifact: a.name)
            return PreparedInput(path: path, size: size, provenance: [("type", "file"), ("file", basename(path))])
        case .directory(let path):
            try requireDirectory(path, artifact: a.name)
            try DirectoryPacker.pack(directory: path, into: scratch + ".tar")
            return PreparedInput(
                path: scratch + ".tar", size: try regularFileSize(scratch + ".tar", artifact: a.name),
                provenance: [("type", "directory"), ("directory", basename(path)), ("format", "tar")])
        case .debFile(let path):
            let size = try regularFileSize(path, artifact: a.name)
            let control = try DebianPackage.control(of: path, artifact: a.name)
            return PreparedInput(path: path, size: size, provenance: DebianPackage.provenance(control))
        case .debPackage(let name, let version, let arch):
            let path = try DebianPackage.fetch(
                name: name, version: version, architecture: arch, cache: debCacheDirectory, artifact: a.name)
            let control = try DebianPackage.control(of: path, artifact: a.name)
            if let version, control["Version"] != version {
                throw .source(
                    artifact: a.name,
                    reason: "fetched \(name) \(control["Version"] ?? "?") but the spec pins \(version)", hint: nil)
            }
            return PreparedInput(
                path: path, size: try regularFileSize(path, artifact: a.name),
                provenance: DebianPackage.provenance(control))
        case .ociLayout(let path):
            // Stored like a pulled image: its manifest, config and layers as blobs under their own digests.
            let image = try OCILayout.image(directory: path, platform: .linuxAMD64, artifact: a.name)
            return PreparedInput(image)
        case .chartRepository(let url, let name, let version):
            guard let path = pulledCharts["\(component)/\(a.name)"] else {
                throw .source(
                    artifact: a.name, reason: "chart \(name) \(version) from \(url) was not fetched before packing",
                    hint: "build with `appliance bundle build`, which fetches repository charts first")
            }
            return PreparedInput(
                path: path, size: try regularFileSize(path, artifact: a.name),
                provenance: [("type", "chart"), ("chart", name), ("version", version), ("repository", url)])
        case .image(let ref, _):
            guard let image = pulledImages["\(component)/\(a.name)"] else {
                throw .source(
                    artifact: a.name, reason: "image \(ref) was not pulled before packing",
                    hint: "build with `appliance bundle build`, which pulls registry images first")
            }
            return PreparedInput(image)
        case .chart(let path):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw .source(artifact: a.name, reason: "\(path) does not exist", hint: nil)
            }
            if isDir.boolValue {
                let chart = try HelmChart.read(directory: path, artifact: a.name)
                let out = "\(workDirectory)/\(chart.name)-\(chart.version).tgz"
                try DirectoryPacker.pack(directory: path, into: out, prefix: chart.name, gzip: true)
                return PreparedInput(
                    path: out, size: try regularFileSize(out, artifact: a.name),
                    provenance: [("type", "chart"), ("chart", chart.name), ("version", chart.version)])
            }
            let chart = try HelmChart.read(archive: path, artifact: a.name)
            return PreparedInput(
                path: path, size: try regularFileSize(path, artifact: a.name),
                provenance: [("type", "chart"), ("chart", chart.name), ("version", chart.version)])
        }
    }

    private func basename(_ p: String) -> String { (p as NSString).lastPathComponent }

    private func regularFileSize(_ path: String, artifact: String) throws(BundleError) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw .source(artifact: artifact, reason: "\(path): \(String(cString: strerror(errno)))", hint: nil)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw .source(artifact: artifact, reason: "\(path) is not a regular file", hint: nil)
        }
        return Int64(st.st_size)
    }

    private func requireDirectory(_ path: String, artifact: String) throws(BundleError) {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw .source(artifact: artifact, reason: "\(path) is not a directory", hint: nil)
        }
    }
}

/// Debian binary packages: reading their control data (ar + control.tar.*, through libarchive) and
/// fetching them by name from the configured mirror with `apt-get download`.
public enum DebianPackage {
    /// The fields of the package's `control` file.
    public static func control(of path: String, artifact: String) throws(BundleError) -> [String: String] {
        let outer = try ArchiveReader(path: path, formats: .anyArchive)
        var sawDebianBinary = false
        while let e = try outer.next() {
            if e.rawName == "debian-binary" {
                sawDebianBinary = true
                try outer.skip()
            } else if e.rawName.hasPrefix("control.tar") {
                let member = try outer.readAll(limit: 16 << 20)
                let inner = try ArchiveReader(data: member, label: "\(path):\(e.rawName)")
                while let ie = try inner.next() {
                    if case .accept("control") = EntryPolicy.normalize(ie.rawName) {
                        return parseControl(String(decoding: try inner.readAll(limit: 1 << 20), as: UTF8.self))
                    }
                    try inner.skip()
                }
                break
            } else {
                try outer.skip()
            }
        }
        throw .source(
            artifact: artifact,
            reason: sawDebianBinary ? "\(path) has no control file" : "\(path) is not a Debian package", hint: nil)
    }

    static func parseControl(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        var last: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.first == " " || line.first == "\t", let key = last {
                out[key, default: ""] += "\n" + line.trimmingCharacters(in: .whitespaces)
            } else if let colon = line.firstIndex(of: ":") {
                let key = String(line[..<colon])
                out[key] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                last = key
            }
        }
        return out
    }

    static func provenance(_ control: [String: String]) -> [(String, String)] {
        [
            ("type", "deb"), ("package", control["Package"] ?? "?"), ("version", control["Version"] ?? "?"),
            ("architecture", control["Architecture"] ?? "?"),
        ]
    }

    /// Fetches `name` (at `version`, if given) into `cache` unless a matching file is already there.
    public static func fetch(
        name: String, version: String?, architecture: String?, cache: String, artifact: String
    ) throws(BundleError) -> String {
        do {
            try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        } catch {
            throw .io(path: cache, reason: error.localizedDescription)
        }
        if let hit = cached(name: name, version: version, architecture: architecture, cache: cache) { return hit }
        var spec = name
        if let architecture { spec += ":\(architecture)" }
        if let version { spec += "=\(version)" }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/apt-get")
        p.arguments = ["download", "-q", spec]
        p.currentDirectoryURL = URL(fileURLWithPath: cache)
        let errPipe = Pipe()
        p.standardError = errPipe
        p.standardOutput = FileHandle.nullDevice
        do {
            try p.run()
        } catch {
            throw .source(
                artifact: artifact, reason: "cannot run apt-get: \(error.localizedDescription)",
                hint: "building from package names needs a Debian or Ubuntu host with apt")
        }
        let err = errPipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            throw .source(
                artifact: artifact, reason: "apt-get download \(spec) failed: \(text)",
                hint: "run `apt-get update`, check the name and version with `apt-cache policy \(name)`")
        }
        guard let hit = cached(name: name, version: version, architecture: architecture, cache: cache) else {
            throw .source(artifact: artifact, reason: "apt-get download \(spec) left no matching file", hint: nil)
        }
        return hit
    }

    private static func cached(name: String, version: String?, architecture: String?, cache: String) -> String? {
        guard let files = try? FileManager.default.contentsOfDirectory(atPath: cache) else { return nil }
        for f in files.sorted().reversed() where f.hasPrefix(name + "_") && f.hasSuffix(".deb") {
            let path = cache + "/" + f
            guard let c = try? control(of: path, artifact: name), c["Package"] == name else { continue }
            if let version, c["Version"] != version { continue }
            if let architecture, c["Architecture"] != architecture { continue }
            return path
        }
        return nil
    }
}

/// OCI image layouts (image-spec `image-layout.md`): checked before packing so a bundle never carries a
/// layout whose blobs do not match their own digests.
enum OCILayout {
    struct Info {
        var reference: String?
        var manifestDigest: String
        var mediaType: String?
    }

    static func validate(directory: String, artifact: String) throws(BundleError) -> Info {
        func fail(_ reason: String) -> BundleError {
            .source(
                artifact: artifact, reason: "\(directory): \(reason)",
                hint: "export the image with `skopeo copy ... oci:DIR`")
        }
        guard let layoutData = FileManager.default.contents(atPath: directory + "/oci-layout"),
            let layout = try? JSONSerialization.jsonObject(with: layoutData) as? [String: Any],
            layout["imageLayoutVersion"] as? String != nil
        else { throw fail("missing or invalid oci-layout file") }
        guard let indexData = FileManager.default.contents(atPath: directory + "/index.json"),
            let index = try? JSONSerialization.jsonObject(with: indexData) as? [String: Any],
            let manifests = index["manifests"] as? [[String: Any]], let first = manifests.first,
            let digest = first["digest"] as? String
        else { throw fail("missing or invalid index.json (needs at least one manifest)") }
        let blobDir = directory + "/blobs/sha256"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: blobDir)) ?? []
        for name in names {
            guard let expected = SHA256Digest(hex: name) else {
                throw fail("blobs/sha256/\(name) is not named by a digest")
            }
            let (actual, _) = try SHA256Hasher.hash(file: blobDir + "/" + name)
            if actual != expected {
                throw fail("blobs/sha256/\(name) does not match its digest (computed \(actual.hex))")
            }
        }
        for m in manifests {
            guard let d = m["digest"] as? String, let dg = SHA256Digest(hex: d), names.contains(dg.hex) else {
                throw fail("index.json names a manifest blob that is missing")
            }
        }
        let annotations = first["annotations"] as? [String: String]
        return Info(
            reference: annotations?["org.opencontainers.image.ref.name"], manifestDigest: digest,
            mediaType: first["mediaType"] as? String)
    }
}

/// Helm charts: name and version from `Chart.yaml`, in a directory or a chart archive.
enum HelmChart {
    struct Info {
        var name: String
        var version: String
    }

    static func read(directory: String, artifact: String) throws(BundleError) -> Info {
        guard let data = FileManager.default.contents(atPath: directory + "/Chart.yaml") else {
            throw .source(artifact: artifact, reason: "\(directory) has no Chart.yaml", hint: nil)
        }
        return try parse(data, label: directory + "/Chart.yaml", artifact: artifact)
    }

    static func read(archive: String, artifact: String) throws(BundleError) -> Info {
        let reader = try ArchiveReader(path: archive, formats: .anyArchive)
        var policy = EntryPolicy()
        while let e = try reader.next() {
            guard case .accept(let name) = policy.check(e, archiveSize: nil) else {
                throw .unsafeEntries(path: archive, entries: [.init(name: e.rawName, reason: "unsafe entry in chart")])
            }
            let parts = name.split(separator: "/")
            if parts.count == 2, parts[1] == "Chart.yaml" {
                return try parse(try reader.readAll(limit: 1 << 20), label: "\(archive):\(name)", artifact: artifact)
            }
            try reader.skip()
        }
        throw .source(artifact: artifact, reason: "\(archive) is not a Helm chart (no CHART/Chart.yaml)", hint: nil)
    }

    private static func parse(_ data: Data, label: String, artifact: String) throws(BundleError) -> Info {
        do {
            let (r, root) = try YAMLReader.parse(
                text: String(decoding: data, as: UTF8.self), file: label, subject: "Chart.yaml")
            let keys = [
                "apiVersion", "name", "version", "appVersion", "description", "type", "kubeVersion", "keywords",
                "home", "sources", "dependencies", "maintainers", "icon", "deprecated", "annotations",
            ]
            let m = root.mapping(allowing: keys)
            let name = m?.require("name")?.nonEmptyString()
            let version = m?.require("version")?.nonEmptyString()
            try r.finish()
            guard let name, let version else { throw DiagnosticsError(subject: "Chart.yaml", diagnostics: []) }
            return Info(name: name, version: version)
        } catch {
            throw .source(artifact: artifact, reason: "\(label): invalid Chart.yaml: \(error)", hint: nil)
        }
    }
}
