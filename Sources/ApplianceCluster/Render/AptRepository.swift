/// The local apt repository made on each node from the `.deb` blobs staged there, so `apt-get install`
/// resolves dependencies itself: a flat repository (`Packages` index beside the files) read through
/// `deb [trusted=yes] file:/var/lib/appliance/repo ./`. Trust comes from the bundle's signature and the
/// digests staging checked, not from a Release file.
public enum AptRepository {
    public static let root = "/var/lib/appliance/repo"
    public static let packagesPath = root + "/Packages"
    public static let sourcesPath = "/etc/apt/sources.list.d/appliance.list"
    /// The packages held after install so no `apt-get upgrade` moves Kubernetes (upgrade unholds them).
    public static let kubernetesPackages = ["kubeadm", "kubelet", "kubectl"]

    /// One package of the index: the fields of its `DEBIAN/control` (as `dpkg-deb -f` or the control file
    /// gives them: the value after `Name:`, continuation lines kept with their leading blank), its file
    /// name relative to `root` and the file's size and digests.
    public struct Entry: Sendable, Equatable {
        public var fields: [ControlField]
        public var filename: String
        public var size: Int64
        public var sha256: String
        public var md5: String?
        public var sha1: String?
        public init(
            fields: [ControlField], filename: String, size: Int64, sha256: String, md5: String? = nil,
            sha1: String? = nil
        ) {
            self.fields = fields
            self.filename = filename
            self.size = size
            self.sha256 = sha256
            self.md5 = md5
            self.sha1 = sha1
        }

        public func field(_ name: String) -> String? {
            fields.first { $0.name.lowercased() == name.lowercased() }?.value
        }
        public var package: String { field("Package") ?? "" }
        public var version: String { field("Version") ?? "" }
    }

    public struct ControlField: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Field order of a `Packages` stanza, as dpkg 1.21 (`Dpkg::Control::FieldsCore`, `CTRL_INDEX_PKG`)
    /// writes it in `dpkg-scanpackages`; fields not listed follow in byte order of their names.
    public static let fieldOrder: [String] = [
        "Package", "Package-Type", "Source", "Version", "Kernel-Version", "Built-For-Profiles", "Auto-Built-Package",
        "Architecture", "Subarchitecture", "Installer-Menu-Item", "Build-Essential", "Essential", "Protected",
        "Origin", "Bugs", "Maintainer", "Installed-Size", "Pre-Depends", "Depends", "Recommends", "Suggests",
        "Enhances", "Conflicts", "Breaks", "Replaces", "Provides", "Built-Using", "Static-Built-Using", "Filename",
        "Size", "MD5sum", "SHA1", "SHA256", "Section", "Priority", "Multi-Arch", "Homepage", "Description", "Tag",
        "Task",
    ]

    /// Parses a control file (`DEBIAN/control`) into fields, in order; continuation lines are kept verbatim.
    public static func parseControl(_ text: String) -> [ControlField] {
        var out: [ControlField] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { continue }
            if line.first == " " || line.first == "\t" {
                if !out.isEmpty { out[out.count - 1].value += "\n" + line }
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" }
            out.append(ControlField(name, String(value)))
        }
        return out
    }

    /// One stanza, without the separating blank line.
    public static func stanza(_ e: Entry) -> String {
        let generated: Set<String> = ["filename", "size", "md5sum", "sha1", "sha256"]
        var fields = e.fields.filter { !generated.contains($0.name.lowercased()) }
        fields.append(ControlField("Filename", e.filename))
        fields.append(ControlField("Size", String(e.size)))
        if let m = e.md5 { fields.append(ControlField("MD5sum", m)) }
        if let s = e.sha1 { fields.append(ControlField("SHA1", s)) }
        fields.append(ControlField("SHA256", e.sha256))
        let rank = Dictionary(uniqueKeysWithValues: fieldOrder.enumerated().map { ($1.lowercased(), $0) })
        let ordered = fields.enumerated().sorted { a, b in
            switch (rank[a.element.name.lowercased()], rank[b.element.name.lowercased()]) {
            case let (x?, y?): x < y
            case (_?, nil): true
            case (nil, _?): false
            case (nil, nil): Array(a.element.name.utf8).lexicographicallyPrecedes(Array(b.element.name.utf8))
            }
        }.map(\.element)
        var s = ""
        for f in ordered {
            let lines = f.value.split(separator: "\n", omittingEmptySubsequences: false)
            let first = lines.first.map { $0.trimmingTrailingBlanks() } ?? ""
            s += f.name + ":" + (first.isEmpty ? "" : " " + first) + "\n"
            // As dpkg parses a continuation line (one leading blank off; a line of dots loses one dot) and
            // writes it back (" ." before an empty or all-dots line, " " before any other).
            for l in lines.dropFirst() {
                var t = String(l.trimmingTrailingBlanks().dropFirst())
                if !t.isEmpty && t.allSatisfy({ $0 == "." }) { t = String(t.dropFirst()) }
                s += (t.isEmpty || t.allSatisfy { $0 == "." }) ? " ." + t + "\n" : " " + t + "\n"
            }
        }
        return s
    }

    /// The `Packages` index: stanzas sorted by package name, then version (byte order, as
    /// `dpkg-scanpackages` sorts), each followed by a blank line.
    public static func packagesFile(_ entries: [Entry]) -> NodeFile {
        let sorted = entries.sorted {
            $0.package == $1.package
                ? Array($0.version.utf8).lexicographicallyPrecedes(Array($1.version.utf8))
                : Array($0.package.utf8).lexicographicallyPrecedes(Array($1.package.utf8))
        }
        return NodeFile(path: packagesPath, mode: 0o644, content: sorted.map { stanza($0) + "\n" }.joined())
    }

    /// `/etc/apt/sources.list.d/appliance.list`.
    public static func sourcesFile() -> NodeFile {
        NodeFile(
            path: sourcesPath, mode: 0o644,
            content: RenderText.header("#", ["The bundle's packages, staged and verified on this node."])
                + "deb [trusted=yes] file:\(root) ./\n")
    }

    /// The names to `apt-mark hold` after install: the Kubernetes packages among those installed.
    public static func holdList(installed: [String]) -> [String] {
        kubernetesPackages.filter { installed.contains($0) }
    }
}

extension Substring {
    func trimmingTrailingBlanks() -> String {
        var s = self
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}
