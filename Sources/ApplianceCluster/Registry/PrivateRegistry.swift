import ApplianceSSH
import Foundation

/// An image to seed: where it goes in the private registry and the blobs (in the node's store) it is made of.
public struct SeedImage: Sendable, Equatable {
    /// The repository in the private registry, named after the upstream (`registry.k8s.io/pause`), so a
    /// mirror with `override_path` serves every upstream from one registry without name clashes.
    public var repository: String
    public var tag: String
    /// `sha256:HEX` of the manifest, which is also a blob in the store.
    public var manifestDigest: String
    public var mediaType: String
    /// Config and layer digests (`sha256:HEX`), each a blob in the store.
    public var blobs: [String]

    public init(repository: String, tag: String, manifestDigest: String, mediaType: String, blobs: [String]) {
        self.repository = repository
        self.tag = tag
        self.manifestDigest = manifestDigest
        self.mediaType = mediaType
        self.blobs = blobs
    }
}

/// The private registry on a system node: the real CNCF distribution registry (Debian's `docker-registry`)
/// serving TLS with a certificate from the installer's CA, and its seeding from the blobs already staged on
/// that node through the registry's HTTP API (the OCI distribution push protocol), with every manifest
/// digest checked. The image bytes never cross the admin host's link a second time.
public struct PrivateRegistry: Sendable {
    public static var caPath: String { ContainerdConfig.registryCAPath }

    public let runner: NodeRunner
    /// `host:port` clients use.
    public let endpoint: String
    /// config.yml, TLS certificate and key, unit override.
    public let files: [NodeFile]
    public let store: String

    public init(runner: NodeRunner, endpoint: String, files: [NodeFile], store: String) {
        self.runner = runner
        self.endpoint = endpoint
        self.files = files
        self.store = store
    }

    var curl: String { "curl -sS --max-time 600 --cacert \(Self.caPath)" }

    /// What is not in place (empty: serving).
    public func missing() async throws -> [String] {
        var problems = try await runner.differing(files).map { "\($0.path) differs" }
        if try await !runner.succeeds(
            "\(curl) -f -o /dev/null https://\(endpoint)/v2/", label: "registry answers", timeout: .seconds(30))
        {
            problems.append("the registry does not answer at https://\(endpoint)/v2/")
        }
        return problems
    }

    public func apply() async throws {
        let changed = try await runner.ensure(files)
        try await runner.run(
            """
            mkdir -p \(RegistryConfig.rootDirectory) && chown docker-registry: \(RegistryConfig.rootDirectory) || exit 3
            systemctl daemon-reload
            systemctl enable docker-registry >/dev/null 2>&1 || true
            \(changed.isEmpty ? "systemctl is-active -q docker-registry || systemctl start docker-registry" : "systemctl restart docker-registry") || exit 3
            i=0; until \(curl) -f -o /dev/null https://\(endpoint)/v2/ 2>/dev/null; do
              i=$((i+1)); [ $i -gt 30 ] && { echo 'the registry does not answer on https://\(endpoint)/v2/' >&2; journalctl -u docker-registry -n 5 --no-pager >&2 2>/dev/null; exit 4; }
              sleep 1
            done
            """, label: "start the registry")
    }

    /// The images whose tag is missing or points at another manifest (empty: fully seeded).
    public func unseeded(_ images: [SeedImage]) async throws -> [SeedImage] {
        guard !images.isEmpty else { return [] }
        var script = ""
        for (i, image) in images.enumerated() {
            let url = "https://\(endpoint)/v2/\(image.repository)/manifests/\(image.tag)"
            script += """
                d=$(\(curl) -I -H \(shellQuote("Accept: \(image.mediaType)")) \(shellQuote(url)) | tr -d '\\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
                [ "$d" = \(shellQuote(image.manifestDigest)) ] || echo \(i)

                """
        }
        let out = try await runner.run(script, label: "look for seeded images", timeout: .seconds(300))
        let missing = Set(out.split(separator: "\n").compactMap { Int($0) })
        return images.enumerated().filter { missing.contains($0.offset) }.map(\.element)
    }

    /// Pushes each image from the store: blobs the registry lacks (monolithic uploads, streamed from disk),
    /// then the manifest by tag; the digest the registry answers must be the manifest's.
    public func seed(_ images: [SeedImage]) async throws {
        for image in try await unseeded(images) {
            var lines = ""
            for b in image.blobs { lines += "\(b)\n" }
            try await runner.run(
                """
                reg=https://\(endpoint); repo=\(shellQuote(image.repository)); store=\(shellQuote(store))
                blob() { f="$store/sha256/${1#sha256:}"; [ -f "$f" ] || { echo "blob $1 of $repo is not staged on this node" >&2; exit 4; }; echo "$f"; }
                while read -r d; do
                  f=$(blob "$d") || exit 4
                  code=$(\(curl) -o /dev/null -w '%{http_code}' -I "$reg/v2/$repo/blobs/$d")
                  [ "$code" = 200 ] && continue
                  loc=$(\(curl) -f -X POST -D - -o /dev/null "$reg/v2/$repo/blobs/uploads/" | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')
                  [ -n "$loc" ] || { echo "the registry gave no upload location for $repo" >&2; exit 5; }
                  case "$loc" in http*) ;; *) loc="$reg$loc" ;; esac
                  case "$loc" in *\\?*) sep='&' ;; *) sep='?' ;; esac
                  \(curl) -f -o /dev/null -H 'Content-Type: application/octet-stream' -T "$f" "$loc${sep}digest=$d" \\
                    || { echo "upload of $d to $repo failed" >&2; exit 5; }
                done
                m=$(blob \(shellQuote(image.manifestDigest))) || exit 4
                got=$(\(curl) -f -X PUT -H \(shellQuote("Content-Type: \(image.mediaType)")) -T "$m" -D - -o /dev/null \\
                  "$reg/v2/$repo/manifests/\(image.tag)" | tr -d '\\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
                [ "$got" = \(shellQuote(image.manifestDigest)) ] || { echo "the registry stored $repo:\(image.tag) as '$got', not \(image.manifestDigest)" >&2; exit 6; }
                """, stdin: Array(lines.utf8), label: "push \(image.repository):\(image.tag)", timeout: .seconds(1800))
        }
        let left = try await unseeded(images)
        if !left.isEmpty {
            throw ClusterError.node(
                node: runner.name,
                reason: "not seeded: " + left.map { "\($0.repository):\($0.tag)" }.joined(separator: ", "))
        }
    }
}
