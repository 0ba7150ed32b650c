/// An OCI image reference (`registry.k8s.io/pause:3.10`, `calico/node:v3.29.1`, `nginx@sha256:...`), normalised
/// the way containerd and Docker resolve it.
///
/// Normalisation: a first path component without `.` or `:` and not `localhost` is not a registry, so the
/// registry is `docker.io`; a single-component Docker Hub name gets `library/`; `index.docker.io` and
/// `registry-1.docker.io` are `docker.io`. Docker Hub's API host is `registry-1.docker.io` (what containerd's
/// `hosts.toml` names as the server of the `docker.io` namespace).
///
/// The private registry holds every image under its full normalised name (`registry.k8s.io/pause`,
/// `docker.io/library/busybox`), so images of two upstreams with the same path never collide; containerd's
/// `hosts.toml` for each upstream sends pulls to the mirror under that prefix (`override_path`). The
/// seeding step pushes to `mirrorRepository`.
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    /// The namespace as containerd keys it: `docker.io`, `registry.k8s.io`, `myreg.example:5000`.
    public var registry: String
    /// The repository path within the registry: `library/nginx`, `pause`, `coredns/coredns`.
    public var repository: String
    public var tag: String?
    /// `sha256:<hex>` when the reference pins a digest.
    public var digest: String?

    public static let dockerHub = "docker.io"

    public init(registry: String, repository: String, tag: String? = nil, digest: String? = nil) {
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
    }

    /// Parses and normalises a reference; nil when it is not one.
    public init?(_ text: String) {
        var rest = Substring(text)
        guard !rest.isEmpty, !rest.contains(where: { $0.isWhitespace }) else { return nil }
        var digest: String?
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            let parts = d.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, parts[1].count >= 32, parts[1].allSatisfy(\.isHexDigit) else {
                return nil
            }
            digest = d
            rest = rest[..<at]
        }
        var tag: String?
        if let colon = rest.lastIndex(of: ":"), !rest[rest.index(after: colon)...].contains("/") {
            let t = String(rest[rest.index(after: colon)...])
            guard Self.isTag(t) else { return nil }
            tag = t
            rest = rest[..<colon]
        }
        var components = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !components.isEmpty, components.allSatisfy({ !$0.isEmpty }) else { return nil }
        var registry = Self.dockerHub
        if components.count > 1,
            let first = components.first, first.contains(".") || first.contains(":") || first == "localhost"
        {
            registry = first.lowercased()
            components.removeFirst()
        }
        if registry == "index.docker.io" || registry == "registry-1.docker.io" { registry = Self.dockerHub }
        if registry == Self.dockerHub && components.count == 1 { components.insert("library", at: 0) }
        guard components.allSatisfy(Self.isPathComponent) else { return nil }
        self.registry = registry
        self.repository = components.joined(separator: "/")
        self.tag = digest == nil && tag == nil ? "latest" : tag
        self.digest = digest
    }

    /// The full normalised reference (`docker.io/library/nginx:latest`).
    public var description: String {
        "\(registry)/\(repository)" + (tag.map { ":\($0)" } ?? "") + (digest.map { "@\($0)" } ?? "")
    }

    /// The upstream host containerd contacts for this namespace (`registry-1.docker.io` for Docker Hub).
    public var upstreamServer: String { Self.upstreamServer(for: registry) }

    public static func upstreamServer(for registry: String) -> String {
        registry == dockerHub ? "registry-1.docker.io" : registry
    }

    /// The first path component under which the private registry keeps this upstream's images
    /// (`registry.k8s.io`; a port becomes `_port`, as `:` is not allowed in repository names).
    public static func mirrorPrefix(for registry: String) -> String {
        registry.replacingOccurrences(of: ":", with: "_")
    }

    /// The repository in the private registry: `<mirrorPrefix>/<repository>`.
    public var mirrorRepository: String { "\(Self.mirrorPrefix(for: registry))/\(repository)" }

    /// The distinct upstream registries of a list of references, in first-seen order; unparsable
    /// references are returned separately so the caller can refuse them.
    public static func registries(of references: [String]) -> (registries: [String], invalid: [String]) {
        var seen: [String] = []
        var invalid: [String] = []
        for r in references {
            guard let ref = ImageReference(r) else {
                invalid.append(r)
                continue
            }
            if !seen.contains(ref.registry) { seen.append(ref.registry) }
        }
        return (seen, invalid)
    }

    static func isTag(_ t: String) -> Bool {
        guard let f = t.first, (1...128).contains(t.count), f.isASCII, f.isLetter || f.isNumber || f == "_" else {
            return false
        }
        return t.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (distribution's path component).
    static func isPathComponent(_ c: String) -> Bool {
        guard let f = c.first, let l = c.last, f.isASCII, l.isASCII else { return false }
        let alnum: (Character) -> Bool = { $0.isASCII && ($0.isLowercase || $0.isNumber) }
        guard alnum(f), alnum(l) else { return false }
        let chars = Array(c)
        var i = 0
        while i < chars.count {
            let ch = chars[i]
            if alnum(ch) {
                i += 1
                continue
            }
            // A separator: ".", "_", "__" or one or more "-", followed by an alphanumeric.
            var j = i
            if ch == "." {
                j += 1
            } else if ch == "_" {
                j += 1
                if j < chars.count && chars[j] == "_" { j += 1 }
            } else if ch == "-" {
                while j < chars.count && chars[j] == "-" { j += 1 }
            } else {
                return false
            }
            guard j < chars.count, alnum(chars[j]) else { return false }
            i = j
        }
        return true
    }
}
