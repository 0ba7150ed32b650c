import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOSSL
import Yams

/// Fetches a chart archive from a Helm repository: `index.yaml` names the archive's URL and its sha256
/// digest; the archive is downloaded into the cache, checked against that digest (and the lock's, when
/// locked) and its Chart.yaml against the name and version asked for.
///
/// A repository URL `oci://HOST/PATH` is an OCI registry, as `helm push` and `helm pull oci://` use one
/// (charts such as KAI Scheduler's are published only there): the chart is the artifact `HOST/PATH/NAME`
/// tagged with its version (`+` written `_`, as Helm does), whose manifest has the Helm config media type
/// and one chart-content layer; that layer is the archive, its digest the one the manifest names, fetched
/// with the same registry client (authentication, digest checks, resumed transfers) as images.
struct ChartFetcher {
    var cacheDirectory: String
    var caFile: String?
    var credentials = RegistryCredentials()
    var logger = Logger(label: "appliance.bundle.charts")

    static let helmConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
    static let helmChartMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

    struct Fetched: Sendable {
        var path: String
        var digest: SHA256Digest
    }

    func fetch(url repo: String, name: String, version: String, locked: SHA256Digest?, artifact: String) async throws
        -> Fetched
    {
        let dir = cacheDirectory + "/charts"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw RegistryError.io(path: dir, reason: error.localizedDescription)
        }
        if let locked {
            let cached = "\(dir)/\(locked.hex).tgz"
            if let (d, _) = try? SHA256Hasher.hash(file: cached), d == locked {
                return Fetched(path: cached, digest: d)
            }
        }
        if repo.hasPrefix("oci://") {
            return try await fetchOCI(dir: dir, repo: repo, name: name, version: version, locked: locked)
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.additionalTrustRoots = [.file(caFile)] }
        var config = HTTPClient.Configuration()
        config.tlsConfiguration = tls
        config.redirectConfiguration = .follow(max: 5, allowCycles: false)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        do {
            let result = try await fetch(client, dir: dir, repo: repo, name: name, version: version, locked: locked)
            try? await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func get(_ client: HTTPClient, _ url: String, limit: Int, what: String) async throws -> Data {
        let resp: HTTPClientResponse
        do {
            resp = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(120))
        } catch {
            throw RegistryError.transport(image: what, reason: "\(url): \(error)")
        }
        guard resp.status.code == 200 else {
            _ = try? await resp.body.collect(upTo: 64 << 10)
            if resp.status.code == 404 { throw RegistryError.notFound(image: what, reason: "\(url): HTTP 404") }
            throw RegistryError.unexpected(image: what, reason: "\(url): HTTP \(resp.status.code)")
        }
        do {
            return Data(try await resp.body.collect(upTo: limit).readableBytesView)
        } catch {
            throw RegistryError.transport(image: what, reason: "\(url): \(error)")
        }
    }

    private func fetch(
        _ client: HTTPClient, dir: String, repo: String, name: String, version: String, locked: SHA256Digest?
    ) async throws -> Fetched {
        let what = "chart \(name) \(version)"
        let base = repo.hasSuffix("/") ? repo : repo + "/"
        let indexData = try await get(client, base + "index.yaml", limit: 64 << 20, what: what)
        guard let index = try? Yams.load(yaml: String(decoding: indexData, as: UTF8.self)) as? [String: Any],
            let entries = (index["entries"] as? [String: Any])?[name] as? [[String: Any]]
        else {
            throw RegistryError.notFound(image: what, reason: "\(base)index.yaml lists no chart '\(name)'")
        }
        guard let entry = entries.first(where: { "\($0["version"] ?? "")" == version }) else {
            throw RegistryError.notFound(
                image: what, reason: "\(base)index.yaml has no version \(version) of '\(name)'")
        }
        guard let urlText = (entry["urls"] as? [Any])?.first.map({ "\($0)" }),
            let url = URL(string: urlText, relativeTo: URL(string: base))?.absoluteURL.absoluteString,
            let listed = (entry["digest"] as? String).flatMap({ SHA256Digest(hex: $0) })
        else {
            throw RegistryError.badContent(image: what, reason: "the index entry has no archive URL or sha256 digest")
        }
        if let locked, locked != listed {
            throw RegistryError.lock(
                image: what, reason: "the repository now lists digest \(listed.short), the lock file \(locked.short)")
        }
        let data = try await get(client, url, limit: 256 << 20, what: what)
        let digest = SHA256Hasher.hash(data)
        guard digest == listed else {
            throw RegistryError.badContent(
                image: what, reason: "\(url) hashes to \(digest.short), the repository index says \(listed.short)")
        }
        let path = "\(dir)/\(digest.hex).tgz"
        let tmp = path + ".partial-\(getpid())"
        do {
            try data.write(to: URL(fileURLWithPath: tmp))
        } catch {
            throw RegistryError.io(path: tmp, reason: error.localizedDescription)
        }
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw RegistryError.io(path: path, reason: String(cString: strerror(errno)))
        }
        let info = try HelmChart.read(archive: path, artifact: name)
        guard info.name == name, info.version == version else {
            throw RegistryError.badContent(
                image: what, reason: "the archive holds chart \(info.name) \(info.version)")
        }
        return Fetched(path: path, digest: digest)
    }

    /// The chart `NAME:VERSION` under `oci://HOST/PATH`.
    private func fetchOCI(dir: String, repo: String, name: String, version: String, locked: SHA256Digest?)
        async throws -> Fetched
    {
        let what = "chart \(name) \(version)"
        var base = String(repo.dropFirst("oci://".count))
        while base.hasSuffix("/") { base.removeLast() }
        let tag = version.replacingOccurrences(of: "+", with: "_")
        let host = base.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        guard case .success(let ref) = ImageReference.parse("\(base)/\(name):\(tag)"), ref.registry == host else {
            throw RegistryError.notFound(
                image: what, reason: "\(repo) is not an OCI registry path (oci://HOST/PATH) for chart '\(name)'")
        }
        let client = try RegistryClient(caFile: caFile, credentials: credentials, logger: logger)
        do {
            let result = try await fetchOCI(
                client, dir: dir, ref: ref, what: what, name: name, version: version, locked: locked)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    private func fetchOCI(
        _ client: RegistryClient, dir: String, ref: ImageReference, what: String, name: String, version: String,
        locked: SHA256Digest?
    ) async throws -> Fetched {
        let fetched = try await client.manifest(ref, reference: ref.manifestReference, image: what)
        let layers: [ImageBlob]
        switch OCIDocument.parse(fetched.data, headerType: fetched.mediaType) {
        case .failure(let why): throw RegistryError.badContent(image: what, reason: "\(ref): \(why.description)")
        case .success(.index):
            throw RegistryError.badContent(image: what, reason: "\(ref) is an image index, not a Helm chart")
        case .success(.manifest(_, let config, let l)):
            guard config.mediaType == Self.helmConfigMediaType else {
                throw RegistryError.badContent(
                    image: what,
                    reason:
                        "\(ref) is not a Helm chart (its config is \(config.mediaType.isEmpty ? "untyped" : config.mediaType), not \(Self.helmConfigMediaType))"
                )
            }
            layers = l
        }
        let charts = layers.filter { $0.mediaType == Self.helmChartMediaType }
        guard charts.count == 1, let layer = charts.first else {
            throw RegistryError.badContent(
                image: what,
                reason: "\(ref) has \(charts.count) chart layers (\(Self.helmChartMediaType)); a Helm chart has one")
        }
        if let locked, locked != layer.digest {
            throw RegistryError.lock(
                image: what,
                reason: "the registry now serves chart digest \(layer.digest.short), the lock file \(locked.short)")
        }
        let path = "\(dir)/\(layer.digest.hex).tgz"
        if (try? SHA256Hasher.hash(file: path))?.0 != layer.digest {
            try await client.blob(
                ref, digest: layer.digest, size: layer.size, to: path, image: what, progress: { _ in })
        }
        let info = try HelmChart.read(archive: path, artifact: name)
        guard info.name == name, info.version == version else {
            throw RegistryError.badContent(image: what, reason: "the archive holds chart \(info.name) \(info.version)")
        }
        return Fetched(path: path, digest: layer.digest)
    }
}
