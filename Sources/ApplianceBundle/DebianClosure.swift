import Foundation
import Logging

// Debian dependency closure for `bundle build` (issue 11): a `deb` source with `closure: true` brings
// every package it needs that the spec's declared base set does not already provide, each as its own
// `deb` artifact. apt itself solves (`apt-get --simulate install` against a throw-away dpkg status that
// holds exactly the base set); nothing here is a hand-written solver.

/// The packages every node already has (e.g. the lab's node rootfs, or a Debian 12 minbase + systemd +
/// openssh-server): a closure never brings these.
public struct DebianBase: Sendable, Equatable {
    /// What this base is, in words (recorded in the provenance of every resolved package).
    public var name: String
    /// Package names, or `NAME=VERSION` for what a node has exactly. The base is closed with apt before it is
    /// used, so a short list of top-level packages is enough; a full `dpkg-query -W` list of a real node with
    /// versions is exact (nodes installed from a point release lack later security updates, and a package
    /// that needs a newer base library then brings that library along).
    public var packages: [String]

    public init(name: String, packages: [String]) {
        self.name = name
        self.packages = packages
    }
}

/// One provenance entry a spec artifact carries into the manifest in addition to what its source says
/// (for resolved packages: `resolvedFrom`, `requiredBy`, `base`).
public struct ProvenanceNote: Sendable, Equatable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// Resolves closures with apt against a throw-away state directory and rewrites the spec so that every
/// resolved package is an artifact of its own (pinned by name and exact version).
public struct DebianClosure: Sendable {
    /// Scratch space for the throw-away apt state (removed by the caller with the rest of the build).
    public var workDirectory: String
    /// Where fetched `.deb` files are kept between builds.
    public var debCacheDirectory: String

    public init(workDirectory: String, debCacheDirectory: String) {
        self.workDirectory = workDirectory
        self.debCacheDirectory = debCacheDirectory
    }

    /// A package apt chose: name, exact version, architecture.
    public struct Package: Sendable, Equatable, Hashable {
        public var name: String
        public var version: String
        public var architecture: String
    }

    /// One root's closure: every package apt would install on a node with the base set, the root included,
    /// sorted by name, and for each the package that pulled it in (nil for the root).
    public struct Resolution: Sendable, Equatable {
        public var root: String
        public var packages: [Package]
        public var requiredBy: [String: String]
    }

    /// The spec with every `closure: true` artifact followed by the packages it needs. A package several
    /// roots need becomes one artifact (in the component of the first), with the union of their roles and
    /// every root in `resolvedFrom`. A package the spec already lists by name is not added again.
    public func expand(_ spec: BundleSpec) throws(BundleError) -> BundleSpec {
        let roots = spec.components.flatMap { c in c.artifacts.filter(\.closure).map { (c.name, $0) } }
        guard !roots.isEmpty else { return spec }
        guard let base = spec.debianBase else {
            throw .source(
                artifact: roots[0].1.name,
                reason: "'closure: true' needs 'spec.debianBase' (the packages every node has)",
                hint: "declare the base set, e.g. the node rootfs's `dpkg-query -W -f '${Package}\\n'`")
        }
        let state = try AptState(directory: workDirectory + "/apt-closure", base: base)
        var listed = Set<String>()
        for c in spec.components {
            for a in c.artifacts {
                if case .debPackage(let name, _, _) = a.source { listed.insert(name) }
            }
        }
        // package name -> (component index, artifact) of what the closure adds
        var added: [String: (component: Int, artifact: BundleSpec.Artifact, roots: [String])] = [:]
        var order: [String: [String]] = [:]  // root artifact name -> names it added, in order
        for (cname, a) in roots {
            guard case .debPackage(let name, let version, let arch) = a.source else {
                throw .source(artifact: a.name, reason: "'closure' applies to 'deb' sources only", hint: nil)
            }
            let r = try state.resolve(name: name, version: version, architecture: arch, artifact: a.name)
            let ci = spec.components.firstIndex { $0.name == cname } ?? 0
            for p in r.packages where p.name != name && !listed.contains(p.name) {
                if var existing = added[p.name] {
                    existing.roots.append(a.name)
                    for role in a.roles where !existing.artifact.roles.contains(role) {
                        existing.artifact.roles.append(role)
                    }
                    existing.artifact.os = Self.unionOS(existing.artifact.os, a.os)
                    existing.artifact.notes = [
                        ProvenanceNote("resolvedFrom", existing.roots.joined(separator: ", ")),
                        ProvenanceNote(
                            "requiredBy", existing.artifact.notes.first { $0.key == "requiredBy" }?.value ?? ""),
                        ProvenanceNote("base", base.name),
                    ]
                    added[p.name] = existing
                    continue
                }
                let dep = BundleSpec.Artifact(
                    name: p.name, kind: .deb, roles: a.roles,
                    source: .debPackage(name: p.name, version: p.version, architecture: p.architecture),
                    location: a.location, os: a.os, closure: false,
                    notes: [
                        ProvenanceNote("resolvedFrom", a.name),
                        ProvenanceNote("requiredBy", r.requiredBy[p.name] ?? name),
                        ProvenanceNote("base", base.name),
                    ])
                added[p.name] = (ci, dep, [a.name])
                order[a.name, default: []].append(p.name)
            }
        }
        var out = spec
        for ci in out.components.indices {
            var artifacts: [BundleSpec.Artifact] = []
            for var a in out.components[ci].artifacts {
                if a.closure {
                    let n = order[a.name]?.count ?? 0
                    a.notes.append(ProvenanceNote("closure", "\(n) package\(n == 1 ? "" : "s") beyond base"))
                    a.notes.append(ProvenanceNote("base", base.name))
                }
                artifacts.append(a)
                for dep in order[a.name] ?? [] {
                    guard let entry = added[dep], entry.component == ci else { continue }
                    if artifacts.contains(where: { $0.name == dep })
                        || out.components[ci].artifacts.contains(where: { $0.name == dep })
                    {
                        throw .source(
                            artifact: a.name,
                            reason:
                                "its dependency \(dep) would be added as an artifact, but '\(dep)' already names another artifact in '\(out.components[ci].name)'",
                            hint: "rename that artifact")
                    }
                    artifacts.append(entry.artifact)
                }
            }
            out.components[ci].artifacts = artifacts
        }
        return out
    }

    /// Fetches every pinned `deb` package of the spec that the cache lacks with one `apt-get download`
    /// (one call instead of one per package); `DebianPackage.fetch` then finds them in the cache.
    public func prefetch(_ spec: BundleSpec, logger: Logger) throws(BundleError) {
        var wanted: [String] = []
        for c in spec.components {
            for a in c.artifacts {
                guard case .debPackage(let name, let version?, let arch) = a.source else { continue }
                let file = "\(name)_\(version.replacingOccurrences(of: ":", with: "%3a"))_\(arch ?? "amd64").deb"
                let allFile = "\(name)_\(version.replacingOccurrences(of: ":", with: "%3a"))_all.deb"
                if FileManager.default.fileExists(atPath: "\(debCacheDirectory)/\(file)")
                    || FileManager.default.fileExists(atPath: "\(debCacheDirectory)/\(allFile)")
                {
                    continue
                }
                wanted.append(arch.map { "\(name):\($0)=\(version)" } ?? "\(name)=\(version)")
            }
        }
        guard !wanted.isEmpty else { return }
        logger.info("fetching \(wanted.count) Debian packages with apt-get download")
        do {
            try FileManager.default.createDirectory(atPath: debCacheDirectory, withIntermediateDirectories: true)
        } catch { throw .io(path: debCacheDirectory, reason: "\(error)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/apt-get")
        p.arguments = ["download", "-q"] + wanted.sorted()
        p.currentDirectoryURL = URL(fileURLWithPath: debCacheDirectory)
        let pipe = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = pipe
        do { try p.run() } catch {
            throw .source(artifact: "closure", reason: "cannot run apt-get: \(error.localizedDescription)", hint: nil)
        }
        let err = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationStatus != 0 {
            // One package's failure is reported with its artifact name by the per-package fetch that follows.
            logger.warning("apt-get download of the batch failed: \(err.split(separator: "\n").last ?? "")")
        }
    }

    static func unionOS(_ a: [String], _ b: [String]) -> [String] {
        if a.isEmpty || b.isEmpty { return [] }  // empty means every OS
        return a + b.filter { !a.contains($0) }
    }

    /// The apt state a closure is solved in: the host's package lists, an empty dpkg status, then one that
    /// holds exactly the closed base set.
    struct AptState {
        let directory: String
        let base: DebianBase
        /// Exact versions of the closed base set.
        var basePackages: [Package] = []

        init(directory: String, base: DebianBase) throws(BundleError) {
            self.directory = directory
            self.base = base
            let fm = FileManager.default
            try? fm.removeItem(atPath: directory)
            do {
                try fm.createDirectory(atPath: directory + "/cache/archives/partial", withIntermediateDirectories: true)
                try Data().write(to: URL(fileURLWithPath: directory + "/status"))
                try Data().write(to: URL(fileURLWithPath: directory + "/extended_states"))
            } catch { throw .io(path: directory, reason: "\(error)") }
            // 1. Close the base with apt from an empty system, 2. make that the installed set.
            let (status, out) = try apt(
                "apt-get", ["--simulate", "install", "--no-install-recommends"] + base.packages.sorted())
            guard status == 0 else {
                throw .source(
                    artifact: "spec.debianBase",
                    reason: "apt cannot install the base set '\(base.name)': \(Self.problems(out))",
                    hint: "run `apt-get update`; every base package must exist in the configured sources")
            }
            basePackages = Self.installs(out)
            let stanzas = try show(basePackages)
            var text = ""
            for stanza in stanzas {
                var lines = stanza.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                if let i = lines.firstIndex(where: { $0.hasPrefix("Package:") }) {
                    lines.insert("Status: install ok installed", at: i + 1)
                }
                text += lines.joined(separator: "\n") + "\n\n"
            }
            do { try text.write(toFile: directory + "/status", atomically: true, encoding: .utf8) } catch {
                throw .io(path: directory + "/status", reason: "\(error)")
            }
        }

        /// Runs apt with the throw-away state; returns the exit status and stdout+stderr.
        func apt(_ tool: String, _ args: [String]) throws(BundleError) -> (Int32, String) {
            let options = [
                "-o", "Dir::State::status=\(directory)/status",
                "-o", "Dir::State::extended_states=\(directory)/extended_states",
                "-o", "Dir::Cache=\(directory)/cache",
                "-o", "Debug::NoLocking=1",
                "-o", "APT::Get::Show-Versions=1",
                "-q",
            ]
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
            p.arguments = options + args
            var env = ProcessInfo.processInfo.environment
            env["LC_ALL"] = "C"
            p.environment = env
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch {
                throw .source(
                    artifact: "closure", reason: "cannot run \(tool): \(error.localizedDescription)",
                    hint: "resolving Debian dependencies needs a Debian or Ubuntu host with apt")
            }
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }

        /// `apt-cache show NAME=VERSION...`: one control stanza per package, in order.
        func show(_ packages: [Package]) throws(BundleError) -> [String] {
            guard !packages.isEmpty else { return [] }
            let (status, out) = try apt(
                "apt-cache",
                ["show", "--no-all-versions"] + packages.map { "\($0.name):\($0.architecture)=\($0.version)" })
            guard status == 0 else {
                throw .source(artifact: "closure", reason: "apt-cache show failed: \(Self.problems(out))", hint: nil)
            }
            return out.components(separatedBy: "\n\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
                .filter { $0.hasPrefix("Package:") }
        }

        /// Solves `name` (at `version`) on a node holding the base set.
        func resolve(name: String, version: String?, architecture: String?, artifact: String) throws(BundleError)
            -> Resolution
        {
            var spec = name
            if let architecture { spec += ":\(architecture)" }
            if let version { spec += "=\(version)" }
            let (status, out) = try apt("apt-get", ["--simulate", "install", "--no-install-recommends", spec])
            guard status == 0 else {
                throw .source(
                    artifact: artifact, reason: "cannot resolve the dependencies of \(spec): \(Self.problems(out))",
                    hint: "check the name and version with `apt-cache policy \(name)` (after `apt-get update`)")
            }
            let packages = Self.installs(out).sorted { $0.name < $1.name }
            if !packages.contains(where: { $0.name == name }) {
                // apt installs nothing when the root is in the base already: that is a spec error worth naming.
                throw .source(
                    artifact: artifact,
                    reason: "\(name) is already part of the base set '\(base.name)' (apt would install nothing)",
                    hint: "drop 'closure' or the artifact")
            }
            return Resolution(root: name, packages: packages, requiredBy: try parents(root: name, packages: packages))
        }

        /// For each package of a closure, the package of the closure whose Depends or Pre-Depends names it
        /// (directly or through a virtual package it provides), found breadth-first from the root.
        func parents(root: String, packages: [Package]) throws(BundleError) -> [String: String] {
            var deps: [String: [String]] = [:]
            var provides: [String: Set<String>] = [:]
            for stanza in try show(packages) {
                let fields = DebianPackage.parseControl(stanza)
                guard let pkg = fields["Package"] else { continue }
                let depText = [fields["Pre-Depends"], fields["Depends"]].compactMap { $0 }.joined(separator: ",")
                deps[pkg] = Self.dependencyNames(depText)
                provides[pkg] = Set(Self.dependencyNames(fields["Provides"] ?? "") + [pkg])
            }
            let names = packages.map(\.name)
            var parent: [String: String] = [:]
            var queue = [root]
            var seen: Set<String> = [root]
            while !queue.isEmpty {
                let current = queue.removeFirst()
                let wanted = Set(deps[current] ?? [])
                for n in names where !seen.contains(n) && !(provides[n] ?? [n]).isDisjoint(with: wanted) {
                    seen.insert(n)
                    parent[n] = current
                    queue.append(n)
                }
            }
            return parent
        }

        /// Names in a Depends-style field: alternatives split, version constraints and arch qualifiers dropped.
        static func dependencyNames(_ field: String) -> [String] {
            field.split(whereSeparator: { $0 == "," || $0 == "|" }).compactMap { part in
                let name = part.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").first
                    .map { String($0.split(separator: ":").first ?? $0) }
                return name.flatMap { $0.isEmpty ? nil : $0 }
            }
        }

        /// `Inst NAME (VERSION SOURCES [ARCH])` lines of a simulated install.
        static func installs(_ output: String) -> [Package] {
            output.split(separator: "\n").compactMap { line -> Package? in
                guard line.hasPrefix("Inst ") else { return nil }
                let parts = line.split(separator: " ")
                guard parts.count >= 3, let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"),
                    open < close
                else { return nil }
                let inside = line[line.index(after: open)..<close].split(separator: " ")
                guard let version = inside.first else { return nil }
                let arch = inside.last.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) } ?? "amd64"
                return Package(name: String(parts[1]), version: String(version), architecture: arch)
            }
        }

        /// apt's own words: the unmet-dependency lines and `E:` lines.
        static func problems(_ output: String) -> String {
            let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            var picked: [String] = []
            var inUnmet = false
            for l in lines {
                if l.hasPrefix("The following packages have unmet dependencies") {
                    inUnmet = true
                    continue
                }
                if l.hasPrefix("E:") {
                    inUnmet = false
                    if !l.contains("Unable to correct problems") { picked.append(l) }
                    continue
                }
                if inUnmet, !l.isEmpty { picked.append(l) }
            }
            return picked.isEmpty ? (lines.last ?? "apt failed") : picked.joined(separator: "; ")
        }
    }
}
