import Foundation
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import X509

/// HTTP/1.1 (keep-alive, chunked streams) and, over TLS, HTTP/2 negotiated by ALPN (`h2`, `http/1.1`), with
/// optional client certificates, on SwiftNIO, swift-nio-http2 and swift-nio-ssl: the lab's API server stand-in
/// serves with it, and the stand-ins' clients (and the etcd v3 JSON gateway client) call with it (HTTP/1.1). Client calls block the calling thread (the stand-ins are CLI tools and
/// threads), never an event loop, and every call has a deadline.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var body: Data
    public var headers: [String: String]
    public var text: String { String(decoding: body, as: UTF8.self) }
}

public struct HTTPRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: Data
    /// The peer presented a client certificate that chains to the server's client CA.
    public var clientCertificateVerified: Bool = false
    /// The peer presented a client certificate, valid or not (one that does not chain to the client CA is
    /// accepted in the handshake and refused by the authenticator with 401, as kube-apiserver does).
    public var clientCertificatePresented: Bool = false
    /// The verified client certificate's common name (empty without one).
    public var clientCertificateSubject: String = ""
    /// The protocol the request came over: "HTTP/1.1" or "HTTP/2.0" (as Go's `Request.Proto`).
    public var proto: String = "HTTP/1.1"
    /// The peer's address, "IP:PORT".
    public var remoteAddress: String = ""
    /// The query string as sent (still percent-encoded, duplicates kept), for signatures computed over it.
    public var rawQuery: String = ""

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:],
        body: Data = Data()
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }
}

/// What a server handler answers: a whole body, or a stream of chunks (watches) that ends when `produce`
/// returns or when `emit` reports that the peer is gone.
public enum HTTPReply: Sendable {
    case full(status: Int, contentType: String, body: Data)
    case stream(status: Int, contentType: String, produce: @Sendable (_ emit: @Sendable (Data) -> Bool) -> Void)
    /// A whole reply with headers of its own (an S3 ETag, Last-Modified, x-amz-*); `contentLength`, when given,
    /// replaces the body's length in `Content-Length` (a HEAD answers the length a GET would send, with no body).
    case headers(status: Int, headers: [(String, String)], body: Data, contentLength: Int? = nil)

    public static func json(_ status: Int, _ body: Data) -> HTTPReply {
        .full(status: status, contentType: "application/json", body: body)
    }
}

public enum HTTPError: Error, CustomStringConvertible, Sendable {
    case connect(host: String, port: Int, errno: Int32)
    case io(String)
    /// Nothing came back before the read timeout (or the peer reset the connection).
    case noAnswer(String)
    case badResponse
    /// The TLS handshake failed (unknown authority, wrong name, refused client certificate).
    case tls(hostPort: String, reason: String)
    case badCredentials(String)

    public var description: String {
        switch self {
        case .connect(let h, let p, let e):
            return "dial tcp \(h):\(p): connect: \(String(cString: strerror(e)))"
        case .io(let s): return s
        case .noAnswer(let hostPort): return "read from \(hostPort): connection reset or timed out"
        case .badResponse: return "malformed HTTP response"
        case .tls(let hp, let reason): return "tls: handshake with \(hp) failed: \(reason)"
        case .badCredentials(let s): return s
        }
    }
}

/// PEM material of a TLS client: the CA that must have signed the server (nil: do not verify the server,
/// as kubeadm's token discovery does before it checks the CA pin), and an optional client certificate.
public struct TLSClientIdentity: Sendable, Equatable {
    public var caPEM: String?
    public var certificatePEM: String?
    public var keyPEM: String?

    public init(caPEM: String?, certificatePEM: String? = nil, keyPEM: String? = nil) {
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }

    public static let insecure = TLSClientIdentity(caPEM: nil)

    func sslContext() throws -> NIOSSLContext {
        var c = TLSConfiguration.makeClientConfiguration()
        c.applicationProtocols = ["http/1.1"]
        if let ca = caPEM {
            c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8)))
            c.certificateVerification = .fullVerification
        } else {
            c.certificateVerification = .none
        }
        if let cert = certificatePEM, let key = keyPEM {
            c.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(cert.utf8)).map { .certificate($0) }
            c.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
        }
        return try NIOSSLContext(configuration: c)
    }
}

/// PEM material of a TLS server: its chain and key, and the CA its clients' certificates must chain to (nil:
/// no client certificates asked for).
public struct TLSServerIdentity: Sendable {
    public var certificatePEM: String
    public var keyPEM: String
    public var clientCAPEM: String?

    public init(certificatePEM: String, keyPEM: String, clientCAPEM: String?) {
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
        self.clientCAPEM = clientCAPEM
    }

    func sslContext() throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8)).map {
            NIOSSLCertificateSource.certificate($0)
        }
        var c = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain,
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)))
        // HTTP/2 first, as kube-apiserver offers it; clients that offer only http/1.1 (or no ALPN) get HTTP/1.1.
        c.applicationProtocols = ["h2", "http/1.1"]
        if let ca = clientCAPEM {
            c.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8)))
            // A client may come without a certificate (anonymous, or a bearer token). Certificates are asked for
            // but checked by `ClientCertificateCheck`, not in the handshake: kube-apiserver (Go's
            // RequestClientCert) answers a certificate its CA did not sign with 401, not with a TLS alert.
            c.certificateVerification = .optionalVerification
        }
        return try NIOSSLContext(configuration: c)
    }

    func clientRoots() throws -> [Certificate] {
        guard let ca = clientCAPEM else { return [] }
        return try NIOSSLCertificate.fromPEMBytes(Array(ca.utf8)).map {
            try Certificate(derEncoded: try $0.toDERBytes())
        }
    }
}

/// What one connection's client certificate proved: checked once per connection (in the TLS handshake's
/// verification callback), read by every request on it, HTTP/1.1 or any HTTP/2 stream.
final class ClientCertificateCheck: @unchecked Sendable {
    // @unchecked: every field is read and written under `lock`.
    private let lock = NSLock()
    private var presented = false
    private var commonName: String?

    /// (presented a certificate, its CN when it chains to the client CA and is valid now).
    var result: (presented: Bool, verifiedCommonName: String?) {
        lock.withLock { (presented, commonName) }
    }

    /// The handshake's custom verification: the chain must lead to one of `roots` (see `chains`); the handshake
    /// itself always proceeds. Synchronous on the event loop (no Swift concurrency task: a busy cooperative pool
    /// must not stall handshakes).
    func verify(_ chain: [NIOSSLCertificate], roots: [Certificate], promise: EventLoopPromise<NIOSSLVerificationResult>)
    {
        defer { promise.succeed(.certificateVerified) }
        guard let leaf = chain.first else { return }
        lock.withLock { presented = true }
        let parsed = chain.compactMap { c in (try? c.toDERBytes()).flatMap { try? Certificate(derEncoded: $0) } }
        guard parsed.count == chain.count, Self.chains(parsed, to: roots, at: Date()) else { return }
        let cn = RequestHandler.commonName(leaf)
        lock.withLock { commonName = cn }
    }

    /// Whether `chain` (leaf first, then any intermediates in any order) leads to one of `roots`: each link's
    /// issuer is the next one's subject and its signature verifies with the next one's key (swift-certificates),
    /// every certificate on the path is within its validity period, intermediates are CAs, and a leaf that names
    /// extended key usages names clientAuth (as Go's x509 authenticator asks).
    static func chains(_ chain: [Certificate], to roots: [Certificate], at now: Date) -> Bool {
        guard var current = chain.first else { return false }
        if let eku = try? current.extensions.extendedKeyUsage, !eku.contains(.clientAuth) { return false }
        var pool = Array(chain.dropFirst())
        func within(_ c: Certificate) -> Bool { c.notValidBefore <= now && now <= c.notValidAfter }
        func signs(_ issuer: Certificate, _ c: Certificate) -> Bool {
            issuer.subject == c.issuer && issuer.publicKey.isValidSignature(c.signature, for: c)
        }
        for _ in 0..<8 {
            guard within(current) else { return false }
            if let root = roots.first(where: { signs($0, current) }) { return within(root) }
            guard
                let next = pool.firstIndex(where: {
                    if case .isCertificateAuthority = try? $0.extensions.basicConstraints { return signs($0, current) }
                    return false
                })
            else { return false }
            current = pool.remove(at: next)
        }
        return false
    }
}

/// One served request, for an access log (kube-apiserver's httplog line).
public struct HTTPAccessRecord: Sendable {
    public var method: String
    public var uri: String
    public var status: Int
    public var proto: String
    public var userAgent: String
    public var remoteAddress: String
    public var seconds: Double
}

enum HTTPText {
    static func date(_ d: Date = Date()) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: d)
    }

    static func reason(_ status: Int) -> String {
        [
            200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable", 409: "Conflict", 411: "Length Required",
            415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable", 504: "Gateway Timeout",
        ][status] ?? "Status"
    }

    static func query(_ q: Substring) -> [String: String] {
        var query: [String: String] = [:]
        for kv in q.split(separator: "&") {
            let p = kv.split(separator: "=", maxSplits: 1)
            guard let first = p.first else { continue }
            let k = String(first).removingPercentEncoding ?? String(first)
            query[k] =
                p.count == 2
                ? (String(p[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
        }
        return query
    }
}

// MARK: client

public enum HTTPClient {
    /// One request on a fresh connection. `url` is "http[s]://host:port/path?query"; `https` needs `tls`.
    public static func request(
        _ method: String, _ url: String, body: Data? = nil, contentType: String = "application/json",
        headers extra: [(String, String)] = [], timeout: Double = 10, connectTimeout: Double? = nil,
        tls: TLSClientIdentity? = nil
    ) throws -> HTTPResponse {
        var rest = Substring(url)
        var secure = false
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst(8)
            secure = true
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = String(rest[..<slash])
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let hp = hostPort.split(separator: ":")
        let host = String(hp.first ?? "127.0.0.1") == "localhost" ? "127.0.0.1" : String(hp.first ?? "127.0.0.1")
        let port = hp.count > 1 ? Int(hp[1]) ?? (secure ? 443 : 80) : (secure ? 443 : 80)
        let ssl: NIOSSLContext?
        if secure {
            do { ssl = try (tls ?? .insecure).sslContext() } catch {
                throw HTTPError.badCredentials("invalid TLS credentials for \(hostPort): \(error)")
            }
        } else {
            ssl = nil
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: HTTPResponse.self)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(Int64((connectTimeout ?? timeout) * 1000)))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ops = channel.pipeline.syncOperations
                    if let ssl {
                        // No SNI for an IP; the certificate is checked against the connected address.
                        let isIP = host.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" }
                        try ops.addHandler(NIOSSLClientHandler(context: ssl, serverHostname: isIP ? nil : host))
                    }
                    try ops.addHTTPClientHandlers()
                    try ops.addHandler(ResponseCollector(promise: promise))
                }
            }
        let channel: Channel
        do {
            channel = try bootstrap.connect(host: host, port: port).wait()
        } catch {
            let e = Self.connectError(error, host: host, port: port)
            promise.fail(e)  // never left pending (NIO traps on leaked promises)
            throw e
        }
        let deadline = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            promise.fail(HTTPError.noAnswer(hostPort))
            channel.close(promise: nil)
        }
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: hostPort)
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "User-Agent", value: "appliance-labnode")
        for (k, v) in extra { head.headers.add(name: k, value: v) }
        let b = body ?? Data()
        if body != nil || method == "POST" || method == "PUT" || method == "PATCH" {
            head.headers.add(name: "Content-Type", value: contentType)
            head.headers.add(name: "Content-Length", value: "\(b.count)")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !b.isEmpty {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: b))), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            return try promise.futureResult.wait()
        } catch let e as HTTPError {
            throw e
        } catch let e as NIOSSLError {
            throw HTTPError.tls(hostPort: hostPort, reason: "\(e)")
        } catch let e as BoringSSLError {
            throw HTTPError.tls(hostPort: hostPort, reason: "\(e)")
        } catch {
            throw HTTPError.noAnswer(hostPort)
        }
    }

    static func connectError(_ error: Error, host: String, port: Int) -> Error {
        if let e = error as? NIOConnectionError {
            for c in e.connectionErrors {
                if let io = c.error as? IOError {
                    return HTTPError.connect(host: host, port: port, errno: io.errnoCode)
                }
            }
            if e.dnsAAAAError != nil || e.dnsAError != nil {
                return HTTPError.io("dial tcp: lookup \(host): no such host")
            }
        }
        if let io = error as? IOError { return HTTPError.connect(host: host, port: port, errno: io.errnoCode) }
        if let ce = error as? ChannelError, case .connectTimeout = ce {
            return HTTPError.connect(host: host, port: port, errno: ETIMEDOUT)
        }
        return HTTPError.io("dial tcp \(host):\(port): \(error)")
    }

    /// Whether anything accepts TCP connections on host:port.
    public static func listening(host: String, port: Int, timeout: Double = 1) -> Bool {
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
        guard let ch = try? bootstrap.connect(host: host, port: port).wait() else { return false }
        ch.close(promise: nil)
        return true
    }
}

/// Collects one response; fails the promise if the connection ends first. Lives on one event loop.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<HTTPResponse>
    // Only touched on the channel's event loop.
    private var head: HTTPResponseHead?
    private var body = Data()

    init(promise: EventLoopPromise<HTTPResponse>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body(let b): body.append(contentsOf: b.readableBytesView)
        case .end:
            guard let head else {
                promise.fail(HTTPError.badResponse)
                return
            }
            var headers: [String: String] = [:]
            for (k, v) in head.headers { headers[k.lowercased()] = v }
            promise.succeed(HTTPResponse(status: Int(head.status.code), body: body, headers: headers))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(HTTPError.noAnswer("\(context.remoteAddress.map { "\($0)" } ?? "peer")"))
        context.fireChannelInactive()
    }
}

// MARK: server

/// An HTTP server with optional TLS: over TLS it negotiates HTTP/2 or HTTP/1.1 by ALPN (HTTP/2 streams, among
/// them watches, each carry one request); without TLS it speaks HTTP/1.1 (keep-alive, pipelining-safe). Each
/// request runs `handler` on a thread of its own, off the event loops, because handlers block (etcd calls,
/// watch streams). `log` gets one record per finished request.
public final class HTTPServer: Sendable {
    let channel: Channel
    public let port: Int

    public init(
        host: String, port: Int, tls: TLSServerIdentity? = nil,
        log: (@Sendable (HTTPAccessRecord) -> Void)? = nil,
        handler: @escaping @Sendable (HTTPRequest) -> HTTPReply
    ) throws {
        let ssl: NIOSSLContext?
        let roots: [Certificate]
        do {
            ssl = try tls?.sslContext()
            roots = try tls?.clientRoots() ?? []
        } catch {
            throw HTTPError.badCredentials("invalid serving certificate or key: \(error)")
        }
        let askCertificates = tls?.clientCAPEM != nil
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                guard let ssl else {
                    return channel.eventLoop.makeCompletedFuture {
                        let ops = channel.pipeline.syncOperations
                        try ops.configureHTTPServerPipeline(withErrorHandling: true)
                        try ops.addHandler(RequestHandler(handler: handler, peer: nil, log: log))
                    }
                }
                let peer = ClientCertificateCheck()
                do {
                    let tlsHandler =
                        askCertificates
                        ? NIOSSLServerHandler(
                            context: ssl,
                            customVerificationCallback: { chain, promise in
                                peer.verify(chain, roots: roots, promise: promise)
                            }) : NIOSSLServerHandler(context: ssl)
                    try channel.pipeline.syncOperations.addHandler(tlsHandler)
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                // ALPN: "h2" gets an HTTP/2 connection whose streams are each given the HTTP/1-shaped request
                // parts (HTTP2FramePayloadToHTTP1ServerCodec); anything else gets the HTTP/1.1 pipeline.
                return channel.configureCommonHTTPServerPipeline { requestChannel in
                    requestChannel.eventLoop.makeCompletedFuture {
                        try requestChannel.pipeline.syncOperations.addHandler(
                            RequestHandler(handler: handler, peer: peer, log: log))
                    }
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            throw HTTPError.io("listen tcp \(host):\(port): bind: \(error)")
        }
        self.port = channel.localAddress?.port ?? port
    }

    /// Kept for the callers of the former socket server: binding already serves.
    public func start() {}

    public func stop() {
        try? channel.close().wait()
    }
}

/// Reads one request (an HTTP/1.1 connection's next request, or an HTTP/2 stream's only one) and answers it
/// from a worker thread. Lives on one event loop.
final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let handler: @Sendable (HTTPRequest) -> HTTPReply
    let peer: ClientCertificateCheck?
    let log: (@Sendable (HTTPAccessRecord) -> Void)?
    // Only touched on the channel's event loop.
    private var head: HTTPRequestHead?
    private var body = Data()

    init(
        handler: @escaping @Sendable (HTTPRequest) -> HTTPReply, peer: ClientCertificateCheck?,
        log: (@Sendable (HTTPAccessRecord) -> Void)?
    ) {
        self.handler = handler
        self.peer = peer
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = Data()
            // `Expect: 100-continue` (curl's uploads): the interim response lets the client send its body now.
            if h.version.major == 1, h.version.minor >= 1,
                h.headers["expect"].contains(where: { $0.lowercased() == "100-continue" })
            {
                context.writeAndFlush(
                    Self.wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: .continue))),
                    promise: nil)
            }
        case .body(let b): body.append(contentsOf: b.readableBytesView)
        case .end:
            guard let head else { return }
            let target = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
            var headers: [String: String] = [:]
            for (k, v) in head.headers {
                let key = k.lowercased()
                headers[key] = headers[key].map { $0 + "," + v } ?? v
            }
            var req = HTTPRequest(
                method: head.method.rawValue, path: String(target.first ?? "/"),
                query: target.count == 2 ? HTTPText.query(target[1]) : [:], headers: headers, body: body)
            if let peer {
                let (presented, cn) = peer.result
                req.clientCertificatePresented = presented
                req.clientCertificateVerified = cn != nil
                req.clientCertificateSubject = cn ?? ""
            }
            let http2 = head.version.major == 2
            req.proto = http2 ? "HTTP/2.0" : "HTTP/1.1"
            // An HTTP/2 stream's channel has the connection as its parent, which knows the peer.
            let remote = context.channel.parent?.remoteAddress ?? context.channel.remoteAddress
            req.remoteAddress = remote.map { "\($0.ipAddress ?? ""):\($0.port ?? 0)" } ?? ""
            req.rawQuery = target.count == 2 ? String(target[1]) : ""
            let keepAlive = http2 || head.isKeepAlive
            let version = head.version
            let channel = context.channel
            let handler = self.handler
            let log = self.log
            let request = req
            let worker = Thread {
                let started = Date()
                let reply = handler(request)
                let status = Self.respond(reply, channel: channel, keepAlive: keepAlive, version: version)
                log?(
                    HTTPAccessRecord(
                        method: request.method, uri: head.uri, status: status, proto: request.proto,
                        userAgent: request.headers["user-agent"] ?? "", remoteAddress: request.remoteAddress,
                        seconds: Date().timeIntervalSince(started)))
            }
            worker.stackSize = 1 << 20
            worker.start()
        }
    }

    static func commonName(_ cert: NIOSSLCertificate) -> String {
        let d = cert.description
        guard let r = d.range(of: ";common_name=") else { return "" }
        return String(d[r.upperBound...].prefix { $0 != ";" && $0 != ">" })
    }

    /// Writes the reply; returns its status. HTTP/2 carries no connection headers (`Connection`,
    /// `Transfer-Encoding`): a stream's DATA frames are the chunks.
    @discardableResult
    static func respond(_ reply: HTTPReply, channel: Channel, keepAlive: Bool, version: HTTPVersion) -> Int {
        let http2 = version.major == 2
        var head = HTTPResponseHead(version: version, status: .ok)
        head.headers.add(name: "Cache-Control", value: "no-cache, private")
        head.headers.add(name: "Date", value: HTTPText.date())
        if !keepAlive && !http2 { head.headers.add(name: "Connection", value: "close") }
        let code: Int
        switch reply {
        case .full(let status, let contentType, let body):
            code = status
            head.status = HTTPResponseStatus(statusCode: status, reasonPhrase: HTTPText.reason(status))
            head.headers.add(name: "Content-Type", value: contentType)
            head.headers.add(name: "Content-Length", value: "\(body.count)")
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        case .headers(let status, let headers, let body, let contentLength):
            code = status
            head.status = HTTPResponseStatus(statusCode: status, reasonPhrase: HTTPText.reason(status))
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            head.headers.add(name: "Content-Length", value: "\(contentLength ?? body.count)")
            channel.write(HTTPServerResponsePart.head(head), promise: nil)
            if !body.isEmpty {
                channel.write(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
            }
        case .stream(let status, let contentType, let produce):
            code = status
            head.status = HTTPResponseStatus(statusCode: status, reasonPhrase: HTTPText.reason(status))
            head.headers.add(name: "Content-Type", value: contentType)
            if !http2 { head.headers.add(name: "Transfer-Encoding", value: "chunked") }
            channel.writeAndFlush(HTTPServerResponsePart.head(head), promise: nil)
            produce { chunk in
                // An empty chunk asks only whether the peer is still there (an empty write would end the stream).
                guard channel.isActive else { return false }
                if chunk.isEmpty { return true }
                let f = channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: chunk))))
                return (try? f.wait()) != nil
            }
        }
        let end = channel.writeAndFlush(HTTPServerResponsePart.end(nil))
        if !keepAlive { end.whenComplete { _ in channel.close(promise: nil) } }
        return code
    }
}
