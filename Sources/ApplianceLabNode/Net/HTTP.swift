import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A tiny HTTP/1.1 client and server on POSIX sockets (plain HTTP, `Connection: close`), enough for the lab's
/// apiserver stand-in, its clients, and the etcd v3 JSON gateway. Blocking; every call has a deadline.
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
}

public enum HTTPError: Error, CustomStringConvertible, Sendable {
    case connect(host: String, port: Int, errno: Int32)
    case io(String)
    /// Nothing came back before the read timeout (or the peer reset the connection).
    case noAnswer(String)
    case badResponse

    public var description: String {
        switch self {
        case .connect(let h, let p, let e):
            return "dial tcp \(h):\(p): connect: \(String(cString: strerror(e)))"
        case .io(let s): return s
        case .noAnswer(let hostPort): return "read from \(hostPort): connection reset or timed out"
        case .badResponse: return "malformed HTTP response"
        }
    }
}

enum Sock {
    static func address(_ host: String, _ port: Int) -> sockaddr_in? {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        let h = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, h, &a.sin_addr) == 1 else { return nil }
        return a
    }

    static func setTimeout(_ fd: Int32, seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        var off = 0
        return data.withUnsafeBytes { buf -> Bool in
            guard let base = buf.baseAddress else { return true }
            while off < buf.count {
                let n = send(fd, base + off, buf.count - off, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                off += n
            }
            return true
        }
    }

    static func readAll(_ fd: Int32, until complete: (Data) -> Bool) -> Data {
        var out = Data()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
            if complete(out) { break }
        }
        return out
    }

    /// Splits a raw message into head lines and body once the head is complete and Content-Length bytes follow.
    static func split(_ d: Data) -> (head: [String], body: Data)? {
        guard let r = d.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: d[d.startIndex..<r.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let body = d[r.upperBound...]
        var length: Int?
        for l in head.dropFirst() {
            let p = l.split(separator: ":", maxSplits: 1)
            if p.count == 2, p[0].lowercased() == "content-length" {
                length = Int(p[1].trimmingCharacters(in: .whitespaces))
            }
        }
        if let length {
            guard body.count >= length else { return nil }
            return (head, Data(body.prefix(length)))
        }
        return (head, Data(body))
    }
}

public enum HTTPClient {
    /// One request on a fresh connection. `url` is "http://host:port/path?query".
    public static func request(
        _ method: String, _ url: String, body: Data? = nil, contentType: String = "application/json",
        timeout: Double = 10, connectTimeout: Double? = nil
    ) throws -> HTTPResponse {
        var rest = Substring(url)
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst(7)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst(8)
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let hostPort = rest[..<slash]
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        let hp = hostPort.split(separator: ":")
        let host = String(hp.first ?? "127.0.0.1")
        let port = hp.count > 1 ? Int(hp[1]) ?? 80 : 80
        guard var addr = Sock.address(host, port) else { throw HTTPError.io("bad host \(host)") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPError.io("socket: \(errno)") }
        defer { close(fd) }
        // Linux bounds a blocking connect by SO_SNDTIMEO: a host that is gone costs `connectTimeout`.
        Sock.setTimeout(fd, seconds: connectTimeout ?? timeout)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else { throw HTTPError.connect(host: host, port: port, errno: errno) }
        Sock.setTimeout(fd, seconds: timeout)
        var req =
            "\(method) \(path) HTTP/1.1\r\nHost: \(hostPort)\r\nConnection: close\r\nUser-Agent: appliance-labnode\r\n"
        let b = body ?? Data()
        if body != nil || method == "POST" || method == "PUT" || method == "PATCH" {
            req += "Content-Type: \(contentType)\r\nContent-Length: \(b.count)\r\n"
        }
        req += "\r\n"
        guard Sock.writeAll(fd, Data(req.utf8) + b) else { throw HTTPError.io("write to \(hostPort) failed") }
        let raw = Sock.readAll(fd) { Sock.split($0) != nil && $0.range(of: Data("Content-Length".utf8)) != nil }
        guard let (head, data) = Sock.split(raw),
            let status = head.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else {
            if raw.isEmpty { throw HTTPError.noAnswer(String(hostPort)) }
            throw HTTPError.badResponse
        }
        var headers: [String: String] = [:]
        for l in head.dropFirst() {
            let p = l.split(separator: ":", maxSplits: 1)
            if p.count == 2 { headers[p[0].lowercased()] = p[1].trimmingCharacters(in: .whitespaces) }
        }
        let body = headers["transfer-encoding"]?.lowercased() == "chunked" ? dechunk(data) : data
        return HTTPResponse(status: status, body: body, headers: headers)
    }

    static func dechunk(_ d: Data) -> Data {
        var out = Data()
        var i = d.startIndex
        let crlf = Data("\r\n".utf8)
        while i < d.endIndex, let r = d.range(of: crlf, in: i..<d.endIndex) {
            let sizeText = String(decoding: d[i..<r.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size > 0 else { break }
            let start = r.upperBound
            let end = min(d.endIndex, start + size)
            out.append(d[start..<end])
            i = min(d.endIndex, end + 2)
        }
        return out
    }
}

/// A blocking HTTP server: one thread accepts, one thread per connection runs `handler`.
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: `fd` is set once in init and only read afterwards; `handler` is immutable.
    public let fd: Int32
    let handler: @Sendable (HTTPRequest) -> (Int, Data)

    public init(host: String, port: Int, handler: @escaping @Sendable (HTTPRequest) -> (Int, Data)) throws {
        guard var addr = Sock.address(host, port) else { throw HTTPError.io("bad listen address \(host)") }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw HTTPError.io("socket: \(errno)") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0, listen(s, 128) == 0 else {
            let e = errno
            close(s)
            throw HTTPError.io("listen tcp \(host):\(port): bind: \(String(cString: strerror(e)))")
        }
        fd = s
        self.handler = handler
    }

    public func start() {
        let t = Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 {
                    if errno == EINTR { continue }
                    return
                }
                let conn = Thread { [self] in serve(c) }
                conn.start()
            }
        }
        t.start()
    }

    func serve(_ c: Int32) {
        defer { close(c) }
        Sock.setTimeout(c, seconds: 30)
        let raw = Sock.readAll(c) { Sock.split($0) != nil }
        guard let (head, body) = Sock.split(raw), let first = head.first else { return }
        let parts = first.split(separator: " ")
        guard parts.count >= 2 else { return }
        let target = String(parts[1])
        let q = target.split(separator: "?", maxSplits: 1)
        var query: [String: String] = [:]
        if q.count == 2 {
            for kv in q[1].split(separator: "&") {
                let p = kv.split(separator: "=", maxSplits: 1)
                let k = String(p[0]).removingPercentEncoding ?? String(p[0])
                query[k] =
                    p.count == 2
                    ? (String(p[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            }
        }
        var headers: [String: String] = [:]
        for l in head.dropFirst() {
            let p = l.split(separator: ":", maxSplits: 1)
            if p.count == 2 { headers[p[0].lowercased()] = p[1].trimmingCharacters(in: .whitespaces) }
        }
        let req = HTTPRequest(method: String(parts[0]), path: String(q[0]), query: query, headers: headers, body: body)
        let (status, data) = handler(req)
        let reason =
            [
                200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity",
                429: "Too Many Requests", 400: "Bad Request", 500: "Internal Server Error", 405: "Method Not Allowed",
            ][status] ?? "Status"
        let head2 =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(data.count)\r\nConnection: close\r\n\r\n"
        _ = Sock.writeAll(c, Data(head2.utf8) + data)
    }

    public func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
