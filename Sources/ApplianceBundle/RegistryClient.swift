import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// A client of the OCI Distribution API (pull side), on async-http-client: HTTPS only, anonymous, basic and
/// bearer-token authentication as the registry asks for it with `WWW-Authenticate`, redirects followed by
/// hand so credentials never go to another host, every manifest and blob checked against its digest as it
/// arrives, and broken blob downloads resumed with a `Range` request.
///
/// Thread-safety: all state is behind `Locked`; one client serves many concurrent pulls.
final class RegistryClient: Sendable {
    let http: HTTPClient
    let credentials: RegistryCredentials
    let logger: Logger
    /// Retries of a broken blob transfer (each resumes where the last one stopped).
    let retries: Int
    private let tokens = Locked<[String: String]>([:])
    private let basicHosts = Locked<Set<String>>([])

    static let maxManifestBytes = 4 << 20

    init(caFile: String?, credentials: RegistryCredentials, retries: Int = 4, logger: Logger) throws(RegistryError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            guard FileManager.default.isReadableFile(atPath: caFile) else {
                throw .io(path: caFile, reason: "cannot read the registry CA file")
            }
            tls.additionalTrustRoots = [.file(caFile)]
        }
        var config = HTTPClient.Configuration()
        config.tlsConfiguration = tls
        config.redirectConfiguration = .disallow
        config.timeout = .init(connect: .seconds(15), read: .seconds(60))
        config.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        self.credentials = credentials
        self.retries = retries
        self.logger = logger
    }

    func shutdown() async {
        try? await http.shutdown()
    }

    // MARK: Manifests

    struct FetchedManifest {
        var data: Data
        var mediaType: String?
        var digest: SHA256Digest
    }

    /// GET `/v2/<repo>/manifests/<reference>`; checks the bytes against the digest asked for (or the
    /// `Docker-Content-Digest` the registry sends for a tag).
    func manifest(_ ref: ImageReference, reference: String, image: String) async throws -> FetchedManifest {
        var headers = HTTPHeaders()
        headers.add(name: "Accept", value: OCIMediaType.accept.joined(separator: ", "))
        let url = "https://\(ref.apiHost)/v2/\(ref.repository)/manifests/\(reference)"
        let resp = try await send(url: url, headers: headers, ref: ref, image: image)
        switch resp.status.code {
        case 200: break
        case 404:
            _ = try? await resp.body.collect(upTo: 64 << 10)
            let what = reference.hasPrefix("sha256:") ? "digest \(reference)" : "tag '\(reference)'"
            throw RegistryError.notFound(
                image: image, reason: "\(ref.apiHost) has no manifest for \(what) in \(ref.repository)")
        default: throw await unexpected(resp, image: image, what: "manifest \(reference)")
        }
        let body: ByteBuffer
        do {
            body = try await resp.body.collect(upTo: Self.maxManifestBytes)
        } catch {
            throw RegistryError.transport(image: image, reason: "reading manifest \(reference): \(describe(error))")
        }
        let data = Data(body.readableBytesView)
        let digest = SHA256Hasher.hash(data)
        if let want = SHA256Digest(prefixed: reference), want != digest {
            throw RegistryError.badContent(
                image: image,
                reason: "the registry served manifest \(reference) with digest \(digest.prefixed); refused")
        }
        if let header = resp.headers.first(name: "Docker-Content-Digest"), let said = SHA256Digest(prefixed: header),
            said != digest
        {
            throw RegistryError.badContent(
                image: image,
                reason:
                    "manifest \(reference): the registry says \(said.prefixed) but the bytes hash to \(digest.prefixed)"
            )
        }
        return FetchedManifest(data: data, mediaType: resp.headers.first(name: "Content-Type"), digest: digest)
    }

    // MARK: Blobs

    /// Downloads blob `digest` of `ref` into `path` (via `path.partial`, renamed only when the digest checks).
    /// A transfer that breaks is resumed from the bytes already received with `Range: bytes=N-`; a registry
    /// that ignores the range (200) is restarted from zero. Wrong content is deleted and refused.
    func blob(
        _ ref: ImageReference, digest: SHA256Digest, size: Int64, to path: String, image: String,
        progress: @Sendable (Int64) -> Void
    ) async throws {
        let partial = path + ".partial"
        var lastError: RegistryError?
        for attempt in 0...retries {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(200 * attempt)) }
            try Task.checkCancellation()
            var have = fileSize(partial) ?? 0
            if have > size {
                truncateFile(partial, 0)
                have = 0
            }
            if attempt > 0 || have > 0 {
                logger.info(
                    "resuming blob \(digest.short) of \(image) from byte \(have) of \(size) (attempt \(attempt + 1))")
            }
            if have == size, size > 0 {
                // A previous run got every byte but stopped before the rename: check and keep.
                if try await finish(partial: partial, path: path, digest: digest, image: image) { return }
                have = 0
            }
            var headers = HTTPHeaders()
            if have > 0 { headers.add(name: "Range", value: "bytes=\(have)-") }
            let url = "https://\(ref.apiHost)/v2/\(ref.repository)/blobs/\(digest.prefixed)"
            let resp: HTTPClientResponse
            do {
                resp = try await send(url: url, headers: headers, ref: ref, image: image)
            } catch let e as RegistryError {
                if case .transport = e, attempt < retries {
                    lastError = e
                    continue
                }
                throw e
            }
            switch resp.status.code {
            case 200:
                if have > 0 {
                    truncateFile(partial, 0)
                    have = 0
                }
            case 206:
                let range = resp.headers.first(name: "Content-Range") ?? ""
                guard range.hasPrefix("bytes \(have)-") else {
                    _ = try? await resp.body.collect(upTo: 0)
                    truncateFile(partial, 0)
                    lastError = .unexpected(image: image, reason: "blob \(digest.short): unexpected range '\(range)'")
                    continue
                }
            case 404:
                throw RegistryError.notFound(
                    image: image, reason: "\(ref.apiHost) has no blob \(digest.prefixed) in \(ref.repository)")
            case 416:
                truncateFile(partial, 0)
                lastError = .unexpected(image: image, reason: "blob \(digest.short): range not satisfiable")
                continue
            default:
                throw await unexpected(resp, image: image, what: "blob \(digest.short)")
            }
            let fd = open(partial, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw RegistryError.io(path: partial, reason: String(cString: strerror(errno))) }
            var received = have
            do {
                defer { close(fd) }
                for try await buffer in resp.body {
                    received += Int64(buffer.readableBytes)
                    guard received <= size else {
                        throw RegistryError.badContent(
                            image: image, reason: "blob \(digest.short): the registry sent more than \(size) bytes")
                    }
                    try buffer.withUnsafeReadableBytes { raw in
                        var off = 0
                        while off < raw.count {
                            let n = write(fd, raw.baseAddress?.advanced(by: off), raw.count - off)
                            if n < 0 {
                                if errno == EINTR { continue }
                                throw RegistryError.io(path: partial, reason: String(cString: strerror(errno)))
                            }
                            off += n
                        }
                    }
                    progress(Int64(buffer.readableBytes))
                }
            } catch let e as RegistryError {
                if case .badContent = e { unlink(partial) }
                throw e
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = .transport(
                    image: image,
                    reason:
                        "blob \(digest.short): the transfer broke after \(received) of \(size) bytes (\(describe(error)))"
                )
                continue
            }
            guard received == size else {
                lastError = .transport(
                    image: image, reason: "blob \(digest.short): the transfer ended after \(received) of \(size) bytes")
                continue
            }
            if try await finish(partial: partial, path: path, digest: digest, image: image) { return }
            throw RegistryError.badContent(
                image: image,
                reason:
                    "the registry served blob \(digest.prefixed) with other content (\(size) bytes); refused and deleted"
            )
        }
        throw lastError ?? .transport(image: image, reason: "blob \(digest.short): gave up")
    }

    /// Hashes the complete partial file; renames it into place when it matches, deletes it when not.
    /// The hashing runs on a `BlockingWork` thread, off the cooperative pool.
    private func finish(partial: String, path: String, digest: SHA256Digest, image: String) async throws -> Bool {
        let (actual, _) = try await BlockingWork.run { try SHA256Hasher.hash(file: partial) }
        guard actual == digest else {
            unlink(partial)
            logger.warning("blob \(digest.short) of \(image) hashed to \(actual.short); deleted")
            return false
        }
        guard rename(partial, path) == 0 else {
            throw RegistryError.io(path: path, reason: String(cString: strerror(errno)))
        }
        return true
    }

    private func fileSize(_ path: String) -> Int64? {
        var st = stat()
        return stat(path, &st) == 0 ? Int64(st.st_size) : nil
    }

    private func truncateFile(_ path: String, _ size: Int64) {
        _ = truncate(path, off_t(size))
    }

    // MARK: Requests, authentication, redirects

    /// Sends a GET, answering one authentication challenge and following up to five redirects by hand
    /// (credentials go only to the registry's own host).
    private func send(url: String, headers: HTTPHeaders, ref: ImageReference, image: String) async throws
        -> HTTPClientResponse
    {
        var current = url
        var triedAuth = false
        for _ in 0..<8 {
            var req = HTTPClientRequest(url: current)
            req.method = .GET
            req.headers = headers
            let sameHost =
                URL(string: current)?.host == URL(string: url)?.host
                && URL(string: current)?.port == URL(string: url)?.port
            if sameHost, let auth = authorization(ref: ref) { req.headers.add(name: "Authorization", value: auth) }
            let resp: HTTPClientResponse
            do {
                resp = try await http.execute(req, deadline: .now() + .hours(6), logger: nil)
            } catch {
                throw RegistryError.transport(image: image, reason: "\(hostOf(current)): \(describe(error))")
            }
            switch resp.status.code {
            case 401 where sameHost:
                _ = try? await resp.body.collect(upTo: 64 << 10)
                if triedAuth {
                    throw RegistryError.authentication(
                        image: image, registry: ref.apiHost,
                        reason: credentials.basic(for: ref.apiHost) == nil
                            ? "it requires credentials and none are configured for it"
                            : "the configured credentials were refused")
                }
                triedAuth = true
                try await authenticate(challenge: resp.headers.first(name: "WWW-Authenticate"), ref: ref, image: image)
            case 301, 302, 303, 307, 308:
                _ = try? await resp.body.collect(upTo: 64 << 10)
                guard let location = resp.headers.first(name: "Location"),
                    let next = URL(string: location, relativeTo: URL(string: current))?.absoluteURL.absoluteString
                else {
                    throw RegistryError.unexpected(image: image, reason: "a redirect without a Location")
                }
                current = next
            default:
                return resp
            }
        }
        throw RegistryError.unexpected(image: image, reason: "too many redirects or authentication rounds")
    }

    private func authorization(ref: ImageReference) -> String? {
        if let token = tokens.withLock({ $0[tokenKey(ref)] }) { return "Bearer \(token)" }
        if basicHosts.withLock({ $0.contains(ref.apiHost) }), let b = credentials.basic(for: ref.apiHost) {
            return "Basic " + Data("\(b.username):\(b.password.value)".utf8).base64EncodedString()
        }
        return nil
    }

    private func tokenKey(_ ref: ImageReference) -> String { "\(ref.apiHost) \(ref.repository)" }

    private func authenticate(challenge: String?, ref: ImageReference, image: String) async throws {
        guard let challenge, let parsed = Self.parseChallenge(challenge) else {
            throw RegistryError.authentication(
                image: image, registry: ref.apiHost,
                reason: "it answered 401 without a usable WWW-Authenticate challenge")
        }
        switch parsed.scheme {
        case "basic":
            guard credentials.basic(for: ref.apiHost) != nil else {
                throw RegistryError.authentication(
                    image: image, registry: ref.apiHost,
                    reason: "it requires credentials and none are configured for it")
            }
            _ = basicHosts.withLock { $0.insert(ref.apiHost) }
        case "bearer":
            let token = try await fetchToken(params: parsed.params, ref: ref, image: image)
            tokens.withLock { $0[tokenKey(ref)] = token }
        default:
            throw RegistryError.authentication(
                image: image, registry: ref.apiHost, reason: "unsupported authentication scheme '\(parsed.scheme)'")
        }
    }

    private struct TokenAnswer: Decodable {
        var token: String?
        var access_token: String?
    }

    /// The token flow of the distribution spec: GET realm?service=...&scope=repository:REPO:pull, with the
    /// host's basic credentials when it has some.
    private func fetchToken(params: [String: String], ref: ImageReference, image: String) async throws -> String {
        guard let realm = params["realm"], var comps = URLComponents(string: realm), comps.scheme == "https" else {
            throw RegistryError.authentication(
                image: image, registry: ref.apiHost, reason: "the token realm is missing or not https")
        }
        var items = comps.queryItems ?? []
        if let service = params["service"] { items.append(URLQueryItem(name: "service", value: service)) }
        items.append(URLQueryItem(name: "scope", value: params["scope"] ?? "repository:\(ref.repository):pull"))
        comps.queryItems = items
        guard let url = comps.url?.absoluteString else {
            throw RegistryError.authentication(image: image, registry: ref.apiHost, reason: "invalid token realm")
        }
        var req = HTTPClientRequest(url: url)
        if let b = credentials.basic(for: ref.apiHost) {
            req.headers.add(
                name: "Authorization",
                value: "Basic " + Data("\(b.username):\(b.password.value)".utf8).base64EncodedString())
        }
        let resp: HTTPClientResponse
        do {
            resp = try await http.execute(req, timeout: .seconds(30))
        } catch {
            throw RegistryError.transport(image: image, reason: "token endpoint \(hostOf(url)): \(describe(error))")
        }
        let body = try? await resp.body.collect(upTo: 1 << 20)
        guard resp.status.code == 200 else {
            throw RegistryError.authentication(
                image: image, registry: ref.apiHost,
                reason: "the token endpoint \(hostOf(url)) answered HTTP \(resp.status.code)"
                    + (credentials.basic(for: ref.apiHost) == nil ? " (no credentials are configured)" : ""))
        }
        guard let body, let answer = try? JSONDecoder().decode(TokenAnswer.self, from: Data(body.readableBytesView)),
            let token = answer.token ?? answer.access_token, !token.isEmpty
        else {
            throw RegistryError.authentication(
                image: image, registry: ref.apiHost, reason: "the token endpoint answered without a token")
        }
        return token
    }

    /// `Bearer realm="...",service="...",scope="..."` -> ("bearer", params).
    static func parseChallenge(_ header: String) -> (scheme: String, params: [String: String])? {
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        let scheme = trimmed.prefix { $0 != " " }
        guard !scheme.isEmpty else { return nil }
        var params: [String: String] = [:]
        var rest = trimmed.dropFirst(scheme.count)[...]
        while true {
            rest = rest.drop { $0 == " " || $0 == "," }
            guard let eq = rest.firstIndex(of: "=") else { break }
            let key = rest[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            rest = rest[rest.index(after: eq)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                var escaped = false
                while let c = rest.first {
                    rest = rest.dropFirst()
                    if escaped {
                        value.append(c)
                        escaped = false
                    } else if c == "\\" {
                        escaped = true
                    } else if c == "\"" {
                        break
                    } else {
                        value.append(c)
                    }
                }
            } else {
                let v = rest.prefix { $0 != "," }
                value = v.trimmingCharacters(in: .whitespaces)
                rest = rest.dropFirst(v.count)
            }
            params[key] = value
        }
        return (scheme.lowercased(), params)
    }

    private func unexpected(_ resp: HTTPClientResponse, image: String, what: String) async -> RegistryError {
        let body = (try? await resp.body.collect(upTo: 64 << 10)).map { String(buffer: $0) } ?? ""
        // The registry's error code (e.g. DENIED, TOOMANYREQUESTS), never the headers.
        let code = body.range(of: #""code"\s*:\s*"[A-Z_]+""#, options: .regularExpression).map { String(body[$0]) }
        if resp.status.code == 403 {
            return .authentication(image: image, registry: "the registry", reason: "HTTP 403 for \(what) \(code ?? "")")
        }
        return .unexpected(image: image, reason: "\(what): HTTP \(resp.status.code)\(code.map { " \($0)" } ?? "")")
    }

    private func hostOf(_ url: String) -> String {
        guard let u = URL(string: url), let h = u.host else { return "?" }
        return u.port.map { "\(h):\($0)" } ?? h
    }

    private func describe(_ error: Error) -> String {
        if let e = error as? HTTPClientError { return "\(e)" }
        if let e = error as? NIOSSLError { return "TLS: \(e)" }
        if let e = error as? BoringSSLError { return "TLS: \(e)" }
        return "\(error)"
    }
}
