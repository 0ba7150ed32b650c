import ApplianceBundle
import ApplianceModel
import ApplianceSSH
import Foundation

/// A Debian package the bundle carries for a node: its blob in the node's store and its control identity.
public struct StagedPackage: Sendable, Equatable {
    public var name: String
    public var version: String
    public var architecture: String
    public var sha256: String

    public init(name: String, version: String, architecture: String, sha256: String) {
        self.name = name
        self.version = version
        self.architecture = architecture
        self.sha256 = sha256
    }

    /// The pool file name, as Debian names packages (`name_version_arch.deb`, the epoch dropped).
    public var poolName: String {
        let v = version.split(separator: ":", maxSplits: 1).last.map(String.init) ?? version
        return "\(name)_\(v)_\(architecture).deb"
    }
}

extension StagedPackage {
    /// The package a bundle's `deb` artifact carries (nil for other kinds, or without package and version).
    public init?(artifact a: BundleManifest.Artifact) {
        guard a.kind == .deb, let name = a.provenance("package"), let version = a.provenance("version") else {
            return nil
        }
        self.init(
            name: name, version: version, architecture: a.provenance("architecture") ?? "all", sha256: a.sha256.hex)
    }

    /// The Debian packages a bundle carries for a node of these roles.
    public static func all(in manifest: BundleManifest, for roles: [NodeRole]) -> [StagedPackage] {
        manifest.allArtifacts.compactMap { $0.artifact.applies(to: roles) ? StagedPackage(artifact: $0.artifact) : nil }
    }
}

/// Packages from the staged store through the node's own package manager: a local apt repository is made
/// from the blobs (pool links + a `Packages` index built with `dpkg-deb -f`, the real control data), and
/// `apt-get` installs from it alone (no other source is consulted: the node may have no network), so apt
/// resolves dependencies and order. The Kubernetes packages are then held, and installed versions checked.
public struct LocalRepository: Sendable {
    /// Where the repository and its source line live: the paths `AptRepository` documents.
    public static let directory = AptRepository.root
    public static let sourceList = AptRepository.sourcesPath
    /// Packages held after install so an unattended upgrade cannot move the cluster's versions.
    public static let heldNames = Set(AptRepository.kubernetesPackages + ["cri-tools", "kubernetes-cni"])

    public let runner: NodeRunner
    public let store: String
    /// What this repository installs and checks.
    public let packages: [StagedPackage]
    /// What the repository holds (every package the bundle carries for the node, so apt can resolve any
    /// dependency); `packages` by default. The GPU stack's steps install their packages from the same
    /// repository as the packages step, each step its own part.
    public let available: [StagedPackage]

    public init(runner: NodeRunner, store: String, packages: [StagedPackage], available: [StagedPackage]? = nil) {
        self.runner = runner
        self.store = store
        self.packages = packages.sorted { ($0.name, $0.version) < ($1.name, $1.version) }
        self.available = (available ?? packages).sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    var aptOptions: String {
        "-o Dir::Etc::SourceList=\(Self.sourceList) -o Dir::Etc::SourceParts=/dev/null -o APT::Get::List-Cleanup=0 -o DPkg::Lock::Timeout=300"
    }

    var held: [StagedPackage] { packages.filter { Self.heldNames.contains($0.name) } }

    /// Done when every package is installed at the bundle's version and the Kubernetes ones are held.
    public func isInstalled() async throws -> Bool { try await mismatches().isEmpty }

    /// `name: installed X, bundle has Y` for each package not at the bundle's version, and unheld ones.
    public func mismatches() async throws -> [String] {
        guard !packages.isEmpty else { return [] }
        let names = packages.map { shellQuote($0.name) }.joined(separator: " ")
        let out = try await runner.run(
            """
            for p in \(names); do
              printf '%s %s\\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}/${Version}' "$p" 2>/dev/null || echo absent/)"
            done
            echo held $(apt-mark showhold 2>/dev/null)
            """, label: "package versions")
        var installed: [String: String] = [:]
        var holds = Set<String>()
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.first == "held" {
                holds = Set(f.dropFirst().map(String.init))
            } else if f.count == 2 {
                let sv = f[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
                installed[String(f[0])] = sv.first == "installed" && sv.count == 2 ? String(sv[1]) : nil
            }
        }
        var problems: [String] = []
        for p in packages where installed[p.name] != p.version {
            problems.append("\(p.name): installed \(installed[p.name] ?? "none"), bundle has \(p.version)")
        }
        for p in held where !holds.contains(p.name) { problems.append("\(p.name): not held") }
        return problems
    }

    /// Builds the repository from the store, installs every package at its version with apt, holds the
    /// Kubernetes packages, then checks the installed versions against the bundle.
    public func install() async throws {
        guard !packages.isEmpty else { return }
        var entries = ""
        for p in available {
            entries += "\(p.sha256) \(shellQuote(p.poolName)) \(shellQuote(p.name))\n"
        }
        let wanted = packages.map { shellQuote("\($0.name)=\($0.version)") }.joined(separator: " ")
        let holds = held.map { shellQuote($0.name) }.joined(separator: " ")
        try await runner.run(
            """
            store=\(shellQuote(store)); repo=\(Self.directory)
            mkdir -p "$repo" || exit 3
            # The index is rebuilt only when the repository's contents change (the GPU steps reuse it).
            want=$(printf '%s' \(shellQuote(entries)) | sha256sum | cut -d' ' -f1)
            if [ "$(cat "$repo/.contents" 2>/dev/null)" = "$want" ] && [ -f "$repo/Packages" ] && [ -f \(Self.sourceList) ]; then
              rebuild=0
            else
              rebuild=1
            fi
            if [ $rebuild = 1 ]; then
            new=$(mktemp -d "$repo/.new.XXXXXX") || exit 3
            trap 'rm -rf "$new"' EXIT
            mkdir "$new/pool"
            while read -r hex file name; do
              blob="$store/sha256/$hex"
              [ -f "$blob" ] || { echo "package $name is not staged on this node (blob $hex missing): run appliance stage" >&2; exit 4; }
              ln -s "$blob" "$new/pool/$file"
              dpkg-deb -f "$blob" >> "$new/Packages" || { echo "$name: not a Debian package" >&2; exit 4; }
              printf 'Filename: ./pool/%s\\nSize: %s\\nSHA256: %s\\n\\n' "$file" "$(stat -L -c %s "$blob")" "$hex" >> "$new/Packages"
            done
            rm -rf "$repo/pool" "$repo/Packages"
            mv "$new/pool" "$repo/pool" && mv "$new/Packages" "$repo/Packages" || exit 3
            printf '%s' \(shellQuote(AptRepository.sourcesFile().content)) > \(Self.sourceList).new \
              && mv \(Self.sourceList).new \(Self.sourceList) || exit 3
            echo "$want" > "$repo/.contents"
            rm -rf "$new"; trap - EXIT
            fi
            export DEBIAN_FRONTEND=noninteractive
            apt-get \(aptOptions) update -q >/dev/null || { echo "apt-get update of the local repository failed" >&2; exit 5; }
            \(holds.isEmpty ? "" : "apt-mark unhold \(holds) >/dev/null 2>&1 || true")
            apt-get \(aptOptions) install -y -q --no-install-recommends --allow-downgrades --allow-change-held-packages \\
              -o Dpkg::Options::=--force-confold \(wanted) || exit 6
            \(holds.isEmpty ? "" : "apt-mark hold \(holds) >/dev/null || exit 7")
            """, stdin: Array(entries.utf8), label: "install packages with apt", timeout: .seconds(1200))
        let problems = try await mismatches()
        if !problems.isEmpty {
            throw ClusterError.node(
                node: runner.name, reason: "packages not at the bundle's versions: " + problems.joined(separator: "; "))
        }
    }
}
