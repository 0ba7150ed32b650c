import ApplianceModel
import Foundation

/// `bundles/<name>.yaml`: what goes into a bundle. Paths are relative to the spec file.
public struct BundleSpec: Sendable, Equatable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "BundleSpec"

    public var name: String
    public var version: String
    public var upgradeFrom: [String]
    public var kubernetesVersion: String
    public var components: [Component]
    /// The folder relative paths are resolved against.
    public var baseDirectory: String
    /// Packages every node already has; `closure: true` artifacts bring what they need beyond it.
    public var debianBase: DebianBase? = nil

    public struct Component: Sendable, Equatable {
        public var name: String
        public var version: String
        public var artifacts: [Artifact]
    }

    public struct Artifact: Sendable, Equatable {
        public var name: String
        public var kind: ArtifactKind
        public var roles: [String]
        public var source: Source
        public var location: SourceLocation?
        // Issue 15: for a chart, the images it needs (each must be an image artifact of the bundle).
        public var images: [String] = []
        // Issue 11 (OS selection and Debian closure):
        /// OS releases (`ID-VERSION_ID` of `/etc/os-release`, e.g. `debian-12`) this artifact is for; empty: all.
        public var os: [String] = []
        /// Bring the package's dependency closure (beyond `spec.debianBase`) as artifacts of their own.
        public var closure: Bool = false
        /// Provenance added to what the source records (resolved packages: `resolvedFrom`, `requiredBy`).
        public var notes: [ProvenanceNote] = []
    }

    /// Where an artifact's bytes come from.
    public enum Source: Sendable, Equatable {
        /// A local file, taken as is.
        case file(String)
        /// A local directory, packed as a deterministic tar.
        case directory(String)
        /// A Debian package fetched by name (and version) with the system's package tools.
        case debPackage(name: String, version: String?, architecture: String?)
        /// A local `.deb` file.
        case debFile(String)
        /// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/`), checked and packed as a tar.
        case ociLayout(String)
        /// A Helm chart archive (`.tgz`) or chart directory (packaged like `helm package`).
        case chart(String)
        /// Issue 15: an image pulled from a registry (`REGISTRY/REPO:TAG` or `@sha256:...`), resolved to a platform.
        case image(reference: String, platform: String)
        /// Issue 15: a chart from a Helm repository (`index.yaml`), checked against the digest the index lists.
        case chartRepository(url: String, name: String, version: String)

        var typeName: String {
            switch self {
            case .file: "file"
            case .directory: "directory"
            case .debPackage: "deb"
            case .debFile: "debFile"
            case .ociLayout: "ociLayout"
            case .chart: "chart"
            case .image: "image"
            case .chartRepository: "chartRepository"
            }
        }

        /// The artifact kinds a source may produce.
        var allowedKinds: [ArtifactKind] {
            switch self {
            case .file: [.file, .binary]
            case .directory: [.file]
            case .debPackage, .debFile: [.deb]
            case .ociLayout: [.image]
            case .chart: [.chart]
            case .image: [.image]
            case .chartRepository: [.chart]
            }
        }
    }

    public static func load(path: String) throws(DiagnosticsError) -> BundleSpec {
        let (reader, root) = try YAMLReader.load(path: path, subject: "bundle spec")
        let base = (path as NSString).deletingLastPathComponent
        let spec = decode(root, baseDirectory: base.isEmpty ? "." : base)
        try reader.finish()
        guard let spec else {
            throw DiagnosticsError(subject: "bundle spec", diagnostics: [Diagnostic("unreadable spec", at: nil)])
        }
        return spec
    }

    static func decode(_ root: YAMLValue, baseDirectory: String) -> BundleSpec? {
        let r = root.reader
        guard let (doc, metadata) = root.resource(apiVersion: apiVersion, kind: kind) else { return nil }
        let name = metadata?.require("name")?.nonEmptyString()
        guard
            let spec = doc.require("spec")?.mapping(allowing: [
                "version", "upgradeFrom", "kubernetes", "components", "debianBase",
            ])
        else { return nil }
        let version = spec.require("version")?.nonEmptyString()
        let upgradeFrom = spec["upgradeFrom"]?.stringList() ?? []
        let k8sValue = spec.require("kubernetes")?.mapping(allowing: ["version"])?.require("version")
        let k8s = k8sValue?.nonEmptyString()
        if let k8s, let k8sValue, k8s.range(of: #"^v\d+\.\d+\.\d+$"#, options: .regularExpression) == nil {
            r.error("'spec.kubernetes.version' must look like v1.34.3, not '\(k8s)'", at: k8sValue)
        }
        var components: [Component] = []
        var componentNames = Set<String>()
        let compValues = spec.require("components")?.sequence() ?? []
        if compValues.isEmpty, spec.has("components") {
            r.error("a bundle needs at least one component", at: spec["components"])
        }
        for cv in compValues {
            guard let cm = cv.mapping(allowing: ["name", "version", "artifacts", "os"]) else { continue }
            let componentOS = cm["os"].map { decodeOS($0) } ?? []
            let cnameValue = cm.require("name")
            guard let cname = cnameValue?.nonEmptyString() else { continue }
            if !componentNames.insert(cname).inserted {
                r.error("component '\(cname)' is defined twice", at: cnameValue)
            }
            let cversion = cm.require("version")?.nonEmptyString() ?? ""
            var artifacts: [Artifact] = []
            var names = Set<String>()
            for av in cm.require("artifacts")?.sequence() ?? [] {
                guard let am = av.mapping(allowing: ["name", "kind", "roles", "source", "images", "os"]) else {
                    continue
                }
                let nameValue = am.require("name")
                let aname = nameValue?.nonEmptyString()
                if let aname, !names.insert(aname).inserted {
                    r.error("artifact '\(aname)' is defined twice in component '\(cname)'", at: nameValue)
                }
                let kind = am.require("kind")?.oneOf(ArtifactKind.allCases.map(\.rawValue)).flatMap(
                    ArtifactKind.init(rawValue:))
                var roles = ["all"]
                if let rv = am["roles"], let list = rv.stringList() {
                    for role in list where !BundleManifest.roleNames.contains(role) {
                        r.error(
                            "unknown role '\(role)'; roles are \(BundleManifest.roleNames.joined(separator: ", "))",
                            at: rv)
                    }
                    if list.isEmpty { r.error("an artifact needs at least one role (or 'all')", at: rv) }
                    roles = list
                }
                let sourceValue = am.require("source")
                let source = sourceValue.flatMap { decodeSource($0, base: baseDirectory) }
                if let source, let kind, let sourceValue, !source.allowedKinds.contains(kind) {
                    r.error(
                        "a '\(source.typeName)' source gives kind \(source.allowedKinds.map(\.rawValue).joined(separator: " or ")), not '\(kind.rawValue)'",
                        at: sourceValue)
                }
                let chartImages = decodeChartImages(am, kind: kind)
                if let aname, let kind, let source {
                    artifacts.append(
                        Artifact(
                            name: aname, kind: kind, roles: roles, source: source, location: av.location,
                            images: chartImages,
                            os: am["os"].map { decodeOS($0) } ?? componentOS,
                            closure: sourceValue.map { decodeClosure($0) } ?? false))
                }
            }
            components.append(Component(name: cname, version: cversion, artifacts: artifacts))
        }
        let base = spec["debianBase"].flatMap { decodeBase($0, base: baseDirectory) }
        guard let name, let version, let k8s else { return nil }
        return BundleSpec(
            name: name, version: version, upgradeFrom: upgradeFrom, kubernetesVersion: k8s, components: components,
            baseDirectory: baseDirectory, debianBase: base)
    }

    // MARK: issue 11: OS selection and Debian closure

    /// `os: [debian-12, ubuntu-22.04]`: `ID-VERSION_ID` as in `/etc/os-release`.
    static func decodeOS(_ v: YAMLValue) -> [String] {
        let list = v.stringList() ?? []
        for os in list where os.range(of: #"^[a-z0-9][a-z0-9._]*-[0-9][0-9a-z.]*$"#, options: .regularExpression) == nil
        {
            v.reader.error(
                "'\(os)' is not an OS release; write ID-VERSION_ID of /etc/os-release, e.g. debian-12", at: v)
        }
        if list.isEmpty { v.reader.error("'os' needs at least one release (leave it out for every OS)", at: v) }
        return list
    }

    /// `closure: true` inside a `deb` source.
    static func decodeClosure(_ source: YAMLValue) -> Bool {
        guard let m = source.mapping(allowing: sourceKeys),
            let d = m["deb"]?.mapping(allowing: ["package", "version", "architecture", "closure"]), let c = d["closure"]
        else { return false }
        return c.bool() ?? false
    }

    /// `debianBase: {name, packages: [...], packagesFile: FILE}`: names, or `NAME=VERSION` to pin what a node
    /// has exactly; in the file one package a line, `NAME` or `NAME VERSION`, `#` comments.
    static func decodeBase(_ v: YAMLValue, base: String) -> DebianBase? {
        guard let m = v.mapping(allowing: ["name", "packages", "packagesFile"]) else { return nil }
        var packages = m["packages"]?.stringList() ?? []
        if let fileValue = m["packagesFile"], let rel = fileValue.nonEmptyString() {
            let path = rel.hasPrefix("/") ? rel : (base as NSString).appendingPathComponent(rel)
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                packages += text.split(separator: "\n").map {
                    $0.split(separator: "#", omittingEmptySubsequences: false).first ?? ""
                }
                .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                // `NAME VERSION` (as `dpkg-query -W` prints) pins the version apt must take
                .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: "=") }
            } else {
                v.reader.error("cannot read the base package list \(path)", at: fileValue)
            }
        }
        if packages.isEmpty { v.reader.error("'spec.debianBase' needs 'packages' or 'packagesFile'", at: v) }
        return DebianBase(name: m["name"]?.nonEmptyString() ?? "declared base", packages: packages)
    }

    /// The kinds of source an artifact may name (exactly one).
    static let sourceKeys = ["file", "directory", "deb", "debFile", "ociLayout", "chart", "image", "chartRepository"]

    private static func decodeSource(_ v: YAMLValue, base: String) -> Source? {
        let keys = sourceKeys
        guard let m = v.mapping(allowing: keys) else { return nil }
        guard m.order.count == 1, let key = m.order.first else {
            v.reader.error("\(v.displayPath) must have exactly one of \(keys.joined(separator: ", "))", at: v)
            return nil
        }
        func path() -> String? {
            m[key]?.nonEmptyString().map { $0.hasPrefix("/") ? $0 : ((base as NSString).appendingPathComponent($0)) }
        }
        switch key {
        case "file": return path().map(Source.file)
        case "directory": return path().map(Source.directory)
        case "debFile": return path().map(Source.debFile)
        case "ociLayout": return path().map(Source.ociLayout)
        case "chart": return path().map(Source.chart)
        case "deb":
            guard let d = m["deb"]?.mapping(allowing: ["package", "version", "architecture", "closure"]),
                let pkg = d.require("package")?.nonEmptyString()
            else { return nil }
            return .debPackage(
                name: pkg, version: d["version"]?.nonEmptyString(), architecture: d["architecture"]?.nonEmptyString())
        case "image": return decodeImageSource(m["image"])
        case "chartRepository": return decodeChartRepository(m["chartRepository"])
        default: return nil
        }
    }
}
