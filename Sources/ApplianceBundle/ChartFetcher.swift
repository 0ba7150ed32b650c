import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import Yams

/// Fetches a chart archive from a Helm repository: `index.yaml` names the archive's URL and its sha256
/// digest; the archive is downloaded into the cache, checked against that digest (and the lock's, when
/// locked) and its Chart.yaml against the name and version asked for.
struct ChartFetcher {
    var cacheDirectory: String
    var caFile: String?

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
}
