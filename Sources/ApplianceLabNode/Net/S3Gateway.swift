import Crypto
import Foundation

/// The lab's stand-in for SeaweedFS's S3 gateway (`weed filer -s3 -s3.port=8333 -s3.config=FILE`), which cannot run
/// here (SeaweedFS is not packaged for Debian 12). It speaks the S3 REST API over plain HTTP, path-style
/// (`/BUCKET/KEY`), for what clients of an object store do first: list, create, head and delete buckets (with
/// `?location`), put, get, head and delete objects, list objects (v1 and `list-type=2`, `prefix`, `max-keys`).
/// Requests are authenticated as SeaweedFS does with identities from its S3 config JSON
/// (`{"identities":[{"name","credentials":[{"accessKey","secretKey"}],"actions":[...]}]}`): AWS Signature V4 in the
/// `Authorization` header, checked over the canonical request (a payload hash from `x-amz-content-sha256`; without
/// that header the empty payload's, as SeaweedFS and MinIO take it; a hex hash must match the body; an
/// `aws-chunked` streaming body has each chunk's signature checked), the request time within 15 minutes, and the
/// identity's actions (`Admin` everything, `Read` get/head, `List` listings, `Write` put/delete objects; buckets
/// are made and removed by `Admin`). With no identities every request is allowed, as SeaweedFS without a config.
/// Errors are S3's XML `<Error>` with S3's codes. Objects live under `root` on the node's disk (data and a small
/// metadata file each, written by rename). Not modelled: virtual-host addressing, multipart uploads, copy,
/// versioning, ACLs and policies, presigned URLs, SigV2, TLS.
public final class S3Gateway: @unchecked Sendable {
    // @unchecked: `root` and `identities` are immutable; the store's files are changed under `lock`.
    public struct Identity: Sendable, Equatable {
        public var name: String
        public var accessKey: String
        public var secretKey: String
        public var actions: Set<String>

        public init(name: String, accessKey: String, secretKey: String, actions: Set<String>) {
            self.name = name
            self.accessKey = accessKey
            self.secretKey = secretKey
            self.actions = actions
        }
    }

    public struct ConfigError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The identities of a SeaweedFS S3 config file (one identity per credential).
    public static func identities(config: Data) throws(ConfigError) -> [Identity] {
        guard let root = try? JSONSerialization.jsonObject(with: config) as? [String: Any] else {
            throw ConfigError(description: "the S3 config is not a JSON object")
        }
        var out: [Identity] = []
        for i in root["identities"] as? [[String: Any]] ?? [] {
            let name = i["name"] as? String ?? ""
            let actions = Set(i["actions"] as? [String] ?? [])
            for c in i["credentials"] as? [[String: Any]] ?? [] {
                guard let ak = c["accessKey"] as? String, let sk = c["secretKey"] as? String, !ak.isEmpty else {
                    throw ConfigError(description: "identity \(name): a credential without accessKey or secretKey")
                }
                out.append(Identity(name: name, accessKey: ak, secretKey: sk, actions: actions))
            }
        }
        return out
    }

    public let root: String
    public let identities: [Identity]
    private let lock = NSLock()
    static let xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

    public init(root: String, identities: [Identity]) throws {
        self.root = root
        self.identities = identities
        try FileManager.default.createDirectory(atPath: root + "/buckets", withIntermediateDirectories: true)
    }

    /// Serves on `host:port` until the returned server is stopped; `log` gets one line per request (method, URI
    /// without its query, status, peer, user agent), never a header or a key.
    public func serve(host: String, port: Int, log: (@Sendable (String) -> Void)? = nil) throws -> HTTPServer {
        try HTTPServer(
            host: host, port: port,
            log: log.map { write in
                { @Sendable r in
                    let path = r.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? r.uri
                    write(
                        "\(Self.iso(Date())) s3: \(r.method) \(path) \(r.status) from \(r.remoteAddress) (\(r.userAgent))"
                    )
                }
            }
        ) { [self] in respond($0) }
    }

    // MARK: requests

    enum Action: String { case admin = "Admin", read = "Read", list = "List", write = "Write" }

    struct Failure: Error {
        var status: Int
        var code: String
        var message: String
    }

    /// What a request asks for, read from its method, path and query once: the right it needs follows.
    enum Operation {
        case listBuckets, createBucket, deleteBucket, headBucket, bucketLocation, listObjects
        case putObject, getObject, headObject, deleteObject

        init?(method: String, bucket: String, key: String, query: [String: String]) {
            switch (method, bucket.isEmpty, key.isEmpty) {
            case ("GET", true, _): self = .listBuckets
            case ("PUT", false, true): self = .createBucket
            case ("DELETE", false, true): self = .deleteBucket
            case ("HEAD", false, true): self = .headBucket
            case ("GET", false, true): self = query["location"] != nil ? .bucketLocation : .listObjects
            case ("PUT", false, false): self = .putObject
            case ("GET", false, false): self = .getObject
            case ("HEAD", false, false): self = .headObject
            case ("DELETE", false, false): self = .deleteObject
            default: return nil
            }
        }

        var action: Action {
            switch self {
            case .createBucket, .deleteBucket: .admin
            case .listBuckets, .headBucket, .listObjects: .list
            case .bucketLocation, .getObject, .headObject: .read
            case .putObject, .deleteObject: .write
            }
        }
    }

    public func respond(_ r: HTTPRequest, now: Date = Date()) -> HTTPReply {
        let resource = r.path.removingPercentEncoding ?? r.path
        do {
            let parts = resource.dropFirst().split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let bucket = parts.first.map(String.init) ?? ""
            let key = parts.count == 2 ? String(parts[1]) : ""
            guard let operation = Operation(method: r.method, bucket: bucket, key: key, query: r.query) else {
                throw Failure(
                    status: 501, code: "NotImplemented",
                    message: "A header you provided implies functionality that is not implemented")
            }
            var body = r.body
            try authenticate(r, action: operation.action, now: now, body: &body)
            switch operation {
            case .listBuckets: return try listBuckets()
            case .createBucket: return try createBucket(bucket)
            case .deleteBucket: return try deleteBucket(bucket)
            case .headBucket:
                _ = try bucketDirectory(bucket)
                return .headers(status: 200, headers: [("x-amz-bucket-region", "us-east-1")], body: Data())
            case .bucketLocation:
                _ = try bucketDirectory(bucket)
                return xml(200, "<LocationConstraint xmlns=\"\(Self.xmlns)\"></LocationConstraint>")
            case .listObjects: return try listObjects(bucket, dir: try bucketDirectory(bucket), query: r.query)
            case .putObject:
                if r.headers["x-amz-copy-source"] != nil || r.query["uploadId"] != nil || r.query["uploads"] != nil {
                    throw Failure(
                        status: 501, code: "NotImplemented",
                        message: "appliance lab: copies and multipart uploads are not modelled by the S3 gateway")
                }
                return try putObject(bucket, key, body: body, contentType: r.headers["content-type"])
            case .getObject, .headObject: return try getObject(bucket, key, head: operation == .headObject)
            case .deleteObject:
                let dir = try bucketDirectory(bucket)
                lock.withLock {
                    try? FileManager.default.removeItem(atPath: dir + "/objects/" + SigV4.encode(key))
                    try? FileManager.default.removeItem(atPath: dir + "/meta/" + SigV4.encode(key))
                }
                return .headers(status: 204, headers: [], body: Data())
            }
        } catch let f as Failure {
            let text =
                "<Error><Code>\(f.code)</Code><Message>\(escape(f.message))</Message><Resource>\(escape(resource))</Resource><RequestId>\(UUID().uuidString)</RequestId></Error>"
            if r.method == "HEAD" { return .headers(status: f.status, headers: [], body: Data()) }
            return xml(f.status, text)
        } catch {
            return xml(500, "<Error><Code>InternalError</Code><Message>\(escape("\(error)"))</Message></Error>")
        }
    }

    /// Checks the request's SigV4 signature and the identity's right to `action`; decodes an `aws-chunked` body
    /// into `body`.
    func authenticate(_ r: HTTPRequest, action: Action, now: Date, body: inout Data) throws {
        if identities.isEmpty { return }
        guard let header = r.headers["authorization"] else {
            throw Failure(status: 403, code: "AccessDenied", message: "Access Denied.")
        }
        guard let auth = SigV4.parse(header) else {
            throw Failure(
                status: 400, code: "AuthorizationHeaderMalformed",
                message: "The authorization header is malformed; only AWS4-HMAC-SHA256 is supported.")
        }
        guard let identity = identities.first(where: { $0.accessKey == auth.accessKey }) else {
            throw Failure(
                status: 403, code: "InvalidAccessKeyId",
                message: "The access key ID you provided does not exist in our records.")
        }
        guard auth.signedHeaders.contains("host") else {
            throw Failure(
                status: 403, code: "AccessDenied", message: "host must be a signed header (SignedHeaders)")
        }
        let amzDate = r.headers["x-amz-date"] ?? ""
        let format = DateFormatter()
        format.locale = Locale(identifier: "en_US_POSIX")
        format.timeZone = TimeZone(identifier: "UTC")
        format.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        guard let when = format.date(from: amzDate) else {
            throw Failure(
                status: 403, code: "AccessDenied",
                message: "AWS authentication requires a valid Date or x-amz-date header")
        }
        if abs(when.timeIntervalSince(now)) > 15 * 60 {
            throw Failure(
                status: 403, code: "RequestTimeTooSkewed",
                message: "The difference between the request time and the server's time is too large.")
        }
        guard amzDate.hasPrefix(auth.date) else {
            throw Failure(
                status: 400, code: "AuthorizationHeaderMalformed",
                message: "The credential's date \(auth.date) is not the date of x-amz-date \(amzDate).")
        }
        let payload = r.headers["x-amz-content-sha256"] ?? SigV4.emptyPayloadHash
        let canonical = SigV4.canonicalRequest(
            method: r.method, rawPath: r.path, rawQuery: r.rawQuery, headers: r.headers,
            signedHeaders: auth.signedHeaders, payloadHash: payload)
        let key = SigV4.signingKey(
            secret: identity.secretKey, date: auth.date, region: auth.region, service: auth.service)
        let expected = SigV4.signature(
            key: key, SigV4.stringToSign(amzDate: amzDate, scope: auth.scope, canonicalRequest: canonical))
        guard SigV4.same(expected, auth.signature) else {
            throw Failure(
                status: 403, code: "SignatureDoesNotMatch",
                message:
                    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
            )
        }
        if payload == SigV4.streamingPayload {
            body = try Self.decodeChunks(body, key: key, amzDate: amzDate, scope: auth.scope, seed: auth.signature)
        } else if let given = r.headers["x-amz-content-sha256"], given != SigV4.unsignedPayload,
            SigV4.hex(SHA256.hash(data: r.body)) != given
        {
            throw Failure(
                status: 400, code: "XAmzContentSHA256Mismatch",
                message: "The provided 'x-amz-content-sha256' header does not match what was computed.")
        }
        let allowed = identity.actions.contains(Action.admin.rawValue) || identity.actions.contains(action.rawValue)
        if !allowed { throw Failure(status: 403, code: "AccessDenied", message: "Access Denied.") }
    }

    /// `aws-chunked`: `HEXSIZE;chunk-signature=SIG\r\nDATA\r\n` … `0;chunk-signature=SIG\r\n\r\n`, each signature
    /// chained on the previous one.
    static func decodeChunks(_ body: Data, key: SymmetricKey, amzDate: String, scope: String, seed: String) throws
        -> Data
    {
        var out = Data()
        var previous = seed
        var i = body.startIndex
        let bad = Failure(status: 400, code: "IncompleteBody", message: "The aws-chunked body is malformed.")
        while true {
            guard let lineEnd = body[i...].firstRange(of: Data("\r\n".utf8)) else { throw bad }
            let line = String(decoding: body[i..<lineEnd.lowerBound], as: UTF8.self)
            let fields = line.split(separator: ";", maxSplits: 1)
            guard fields.count == 2, let size = Int(fields[0], radix: 16), fields[1].hasPrefix("chunk-signature=")
            else { throw bad }
            let signature = String(fields[1].dropFirst("chunk-signature=".count))
            let start = lineEnd.upperBound
            guard body.distance(from: start, to: body.endIndex) >= size + 2 else { throw bad }
            let end = body.index(start, offsetBy: size)
            let chunk = body[start..<end]
            let expected = SigV4.signature(
                key: key,
                SigV4.chunkStringToSign(amzDate: amzDate, scope: scope, previous: previous, chunk: Data(chunk)))
            guard SigV4.same(expected, signature) else {
                throw Failure(
                    status: 403, code: "SignatureDoesNotMatch",
                    message: "The chunk signature we calculated does not match the signature you provided.")
            }
            previous = signature
            out.append(chunk)
            i = body.index(end, offsetBy: 2)
            if size == 0 { return out }
        }
    }

    // MARK: buckets and objects

    func bucketDirectory(_ bucket: String) throws -> String {
        let dir = root + "/buckets/" + bucket
        var isDir: ObjCBool = false
        guard Self.validBucket(bucket), FileManager.default.fileExists(atPath: dir, isDirectory: &isDir),
            isDir.boolValue
        else {
            throw Failure(status: 404, code: "NoSuchBucket", message: "The specified bucket does not exist")
        }
        return dir
    }

    /// S3's bucket naming rules: 3 to 63 of lowercase letters, digits, '-' and '.', starting and ending with a
    /// letter or digit.
    static func validBucket(_ name: String) -> Bool {
        let chars = Array(name.utf8)
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        guard (3...63).contains(chars.count), let first = chars.first, let last = chars.last, alnum(first), alnum(last)
        else { return false }
        return chars.allSatisfy { alnum($0) || $0 == 0x2D || $0 == 0x2E }
    }

    func createBucket(_ bucket: String) throws -> HTTPReply {
        guard Self.validBucket(bucket) else {
            throw Failure(status: 400, code: "InvalidBucketName", message: "The specified bucket is not valid.")
        }
        let dir = root + "/buckets/" + bucket
        try lock.withLock {
            if FileManager.default.fileExists(atPath: dir) {
                throw Failure(
                    status: 409, code: "BucketAlreadyOwnedByYou",
                    message: "Your previous request to create the named bucket succeeded and you already own it.")
            }
            for sub in ["objects", "meta"] {
                try FileManager.default.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true)
            }
        }
        return .headers(status: 200, headers: [("Location", "/" + bucket)], body: Data())
    }

    func deleteBucket(_ bucket: String) throws -> HTTPReply {
        let dir = try bucketDirectory(bucket)
        try lock.withLock {
            let objects = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/objects")) ?? []
            if !objects.filter({ !$0.hasPrefix(".") }).isEmpty {
                throw Failure(
                    status: 409, code: "BucketNotEmpty", message: "The bucket you tried to delete is not empty")
            }
            try FileManager.default.removeItem(atPath: dir)
        }
        return .headers(status: 204, headers: [], body: Data())
    }

    struct Meta: Codable {
        var etag: String
        var contentType: String
        var size: Int
        var modified: Date
    }

    func putObject(_ bucket: String, _ key: String, body: Data, contentType: String?) throws -> HTTPReply {
        let dir = try bucketDirectory(bucket)
        guard key.utf8.count <= 1024 else {
            throw Failure(status: 400, code: "KeyTooLongError", message: "Your key is too long")
        }
        let name = SigV4.encode(key)
        let etag = SigV4.hex(Insecure.MD5.hash(data: body))
        let meta = Meta(
            etag: etag, contentType: contentType ?? "binary/octet-stream", size: body.count, modified: Date())
        let encoded = try JSONEncoder().encode(meta)
        try lock.withLock {
            try body.write(to: URL(fileURLWithPath: dir + "/objects/" + name), options: .atomic)
            try encoded.write(to: URL(fileURLWithPath: dir + "/meta/" + name), options: .atomic)
        }
        return .headers(status: 200, headers: [("ETag", "\"\(etag)\"")], body: Data())
    }

    func meta(_ dir: String, _ name: String) -> Meta? {
        (try? Data(contentsOf: URL(fileURLWithPath: dir + "/meta/" + name))).flatMap {
            try? JSONDecoder().decode(Meta.self, from: $0)
        }
    }

    func getObject(_ bucket: String, _ key: String, head: Bool) throws -> HTTPReply {
        let dir = try bucketDirectory(bucket)
        let name = SigV4.encode(key)
        let found: (Data, Meta)? = lock.withLock {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: dir + "/objects/" + name)),
                let m = meta(dir, name)
            else { return nil }
            return (data, m)
        }
        guard let (data, m) = found else {
            throw Failure(status: 404, code: "NoSuchKey", message: "The specified key does not exist.")
        }
        let headers = [
            ("ETag", "\"\(m.etag)\""), ("Last-Modified", HTTPText.date(m.modified)), ("Content-Type", m.contentType),
            ("Accept-Ranges", "bytes"),
        ]
        return .headers(status: 200, headers: headers, body: head ? Data() : data, contentLength: data.count)
    }

    func listBuckets() throws -> HTTPReply {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/buckets")) ?? []).filter(
            Self.validBucket
        )
        .sorted()
        let buckets = names.map { name -> String in
            let created =
                (try? FileManager.default.attributesOfItem(atPath: root + "/buckets/" + name))?[.creationDate]
                as? Date ?? Date()
            return "<Bucket><Name>\(name)</Name><CreationDate>\(Self.iso(created))</CreationDate></Bucket>"
        }
        return xml(
            200,
            "<ListAllMyBucketsResult xmlns=\"\(Self.xmlns)\"><Owner><ID>admin</ID><DisplayName>admin</DisplayName></Owner><Buckets>\(buckets.joined())</Buckets></ListAllMyBucketsResult>"
        )
    }

    func listObjects(_ bucket: String, dir: String, query: [String: String]) throws -> HTTPReply {
        let prefix = query["prefix"] ?? ""
        let maxKeys = min(1000, max(0, Int(query["max-keys"] ?? "") ?? 1000))
        let v2 = query["list-type"] == "2"
        let after = v2 ? (query["continuation-token"] ?? query["start-after"] ?? "") : (query["marker"] ?? "")
        let keys = lock.withLock {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/objects")) ?? []).compactMap {
                $0.removingPercentEncoding
            }
        }
        .filter { $0.hasPrefix(prefix) && $0 > after }.sorted()
        let page = Array(keys.prefix(maxKeys))
        let truncated = keys.count > page.count
        let contents = page.compactMap { key -> String? in
            guard let m = meta(dir, SigV4.encode(key)) else { return nil }
            return
                "<Contents><Key>\(escape(key))</Key><LastModified>\(Self.iso(m.modified))</LastModified><ETag>&quot;\(m.etag)&quot;</ETag><Size>\(m.size)</Size><StorageClass>STANDARD</StorageClass></Contents>"
        }
        var fields = "<Name>\(bucket)</Name><Prefix>\(escape(prefix))</Prefix><MaxKeys>\(maxKeys)</MaxKeys>"
        if v2 {
            fields += "<KeyCount>\(page.count)</KeyCount>"
            if truncated, let last = page.last {
                fields += "<NextContinuationToken>\(escape(last))</NextContinuationToken>"
            }
        } else {
            fields += "<Marker>\(escape(after))</Marker>"
        }
        fields += "<IsTruncated>\(truncated)</IsTruncated>"
        return xml(200, "<ListBucketResult xmlns=\"\(Self.xmlns)\">\(fields)\(contents.joined())</ListBucketResult>")
    }

    // MARK: text

    func xml(_ status: Int, _ text: String) -> HTTPReply {
        .full(
            status: status, contentType: "application/xml",
            body: Data(("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + text).utf8))
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// `2026-12-01T14:30:38.123Z`, as S3 listings write times.
    static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }
}
