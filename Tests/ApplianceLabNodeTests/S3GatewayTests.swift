import Foundation
import Testing

@testable import ApplianceLabNode

@Suite struct SigV4Tests {
    /// AWS's own example (S3 API reference, "Authenticating Requests: Using the Authorization Header", GET Object):
    /// the signature the documentation gives for these headers and keys.
    @Test func theAWSGetObjectExampleSignsAsDocumented() {
        let headers = [
            "host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
            "x-amz-content-sha256": SigV4.emptyPayloadHash, "x-amz-date": "20130524T000000Z",
        ]
        let canonical = SigV4.canonicalRequest(
            method: "GET", rawPath: "/test.txt", rawQuery: "", headers: headers,
            signedHeaders: ["host", "range", "x-amz-content-sha256", "x-amz-date"],
            payloadHash: SigV4.emptyPayloadHash)
        let key = SigV4.signingKey(
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", date: "20130524", region: "us-east-1", service: "s3")
        let signature = SigV4.signature(
            key: key,
            SigV4.stringToSign(
                amzDate: "20130524T000000Z", scope: "20130524/us-east-1/s3/aws4_request", canonicalRequest: canonical))
        #expect(signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func canonicalQueryAndURI() {
        #expect(SigV4.canonicalQuery("prefix=a%20b&list-type=2&location") == "list-type=2&location=&prefix=a%20b")
        #expect(SigV4.canonicalURI("/bucket/dir/a%20b") == "/bucket/dir/a%20b")
        let auth = SigV4.parse(
            "AWS4-HMAC-SHA256 Credential=AK/20261201/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
        )
        #expect(
            auth?.accessKey == "AK" && auth?.region == "us-east-1" && auth?.signedHeaders == ["host", "x-amz-date"])
        #expect(SigV4.parse("AWS AK:sig") == nil)
    }
}

/// The S3 gateway against the real curl (`--aws-sigv4`, Debian's 7.88): its signatures, an independent
/// implementation, are what the gateway checks.
@Suite(.serialized) struct S3GatewayTests {
    static let config = """
        {"identities":[
          {"name":"anvAdmin","credentials":[{"accessKey":"ADMINKEY","secretKey":"admin-secret-key"}],"actions":["Admin","Read","List","Tagging","Write"]},
          {"name":"anvReadOnly","credentials":[{"accessKey":"READKEY","secretKey":"read-secret-key"}],"actions":["Read","List"]}
        ]}
        """

    /// curl (`APIServerWireTests.curl`) with the credentials in a config file (never on its command line).
    func curl(_ args: [String], user: String, in dir: String) throws -> APIServerWireTests.Curl {
        let cfg = dir + "/curlrc"
        try "user = \"\(user)\"\n".write(toFile: cfg, atomically: true, encoding: .utf8)
        return try APIServerWireTests.curl(["-K", cfg, "--aws-sigv4", "aws:amz:us-east-1:s3"] + args)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/curl"), "curl is not installed"))
    func bucketsAndObjectsThroughTheRealCurl() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("s3gw-\(UUID())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gateway = try S3Gateway(
            root: dir + "/store", identities: try S3Gateway.identities(config: Data(Self.config.utf8)))
        #expect(gateway.identities.map(\.name) == ["anvAdmin", "anvReadOnly"])
        let server = try gateway.serve(host: "127.0.0.1", port: 0)
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        let admin = "ADMINKEY:admin-secret-key"
        let code = ["-o", "/dev/null", "-w", "%{http_code}"]

        #expect(try curl(code + ["-X", "PUT", base + "/smoke-bucket"], user: admin, in: dir).out == "200")
        let again = try curl(["-X", "PUT", base + "/smoke-bucket"], user: admin, in: dir)
        #expect(again.out.contains("<Code>BucketAlreadyOwnedByYou</Code>"), "\(again)")
        let object = dir + "/object"
        try "appliance smoke\n".write(toFile: object, atomically: true, encoding: .utf8)
        let put = try curl(
            ["-D", "-", "-o", "/dev/null", "-T", object, base + "/smoke-bucket/dir/object"], user: admin, in: dir)
        #expect(put.out.contains("HTTP/1.1 100 Continue") && put.out.contains("HTTP/1.1 200 OK"), "\(put)")
        // The ETag is the MD5 of the bytes, as S3's for a single-part upload.
        #expect(put.out.lowercased().contains("etag: \"dee6a2354a52b11d9f5e3061d1eb2bec\""), "\(put.out)")
        let get = try curl(["--fail-with-body", base + "/smoke-bucket/dir/object"], user: admin, in: dir)
        #expect(get.status == 0 && get.out == "appliance smoke\n", "\(get)")
        let head = try curl(["-I", base + "/smoke-bucket/dir/object"], user: admin, in: dir)
        #expect(head.out.contains("Content-Length: 16"), "\(head)")
        let list = try curl([base + "/smoke-bucket?list-type=2&prefix=dir%2F"], user: admin, in: dir)
        #expect(list.out.contains("<Key>dir/object</Key>") && list.out.contains("<KeyCount>1</KeyCount>"), "\(list)")
        let buckets = try curl([base + "/"], user: admin, in: dir)
        #expect(buckets.out.contains("<Name>smoke-bucket</Name>"), "\(buckets)")

        // Refusals, with S3's codes: a wrong secret, an unknown key, no signature, a read-only identity writing,
        // a bucket that is not empty, a key that is not there.
        let wrong = try curl([base + "/smoke-bucket/dir/object"], user: "ADMINKEY:not-the-secret", in: dir)
        #expect(wrong.out.contains("<Code>SignatureDoesNotMatch</Code>"), "\(wrong)")
        let unknown = try curl([base + "/smoke-bucket/dir/object"], user: "NOKEY:x", in: dir)
        #expect(unknown.out.contains("<Code>InvalidAccessKeyId</Code>"), "\(unknown)")
        let denied = try APIServerWireTests.curl([base + "/smoke-bucket/dir/object"])
        #expect(denied.out.contains("<Code>AccessDenied</Code>"), "\(denied)")
        let readOnlyGet = try curl([base + "/smoke-bucket/dir/object"], user: "READKEY:read-secret-key", in: dir)
        #expect(readOnlyGet.out == "appliance smoke\n", "\(readOnlyGet)")
        let readOnlyPut = try curl(
            ["-T", object, base + "/smoke-bucket/other"], user: "READKEY:read-secret-key", in: dir)
        #expect(readOnlyPut.out.contains("<Code>AccessDenied</Code>"), "\(readOnlyPut)")
        let notEmpty = try curl(["-X", "DELETE", base + "/smoke-bucket"], user: admin, in: dir)
        #expect(notEmpty.out.contains("<Code>BucketNotEmpty</Code>"), "\(notEmpty)")

        #expect(
            try curl(code + ["-X", "DELETE", base + "/smoke-bucket/dir/object"], user: admin, in: dir).out == "204")
        let gone = try curl(["--fail-with-body", base + "/smoke-bucket/dir/object"], user: admin, in: dir)
        #expect(gone.status == 22 && gone.out.contains("<Code>NoSuchKey</Code>"), "\(gone)")
        #expect(try curl(code + ["-X", "DELETE", base + "/smoke-bucket"], user: admin, in: dir).out == "204")
        let noBucket = try curl([base + "/smoke-bucket?list-type=2"], user: admin, in: dir)
        #expect(noBucket.out.contains("<Code>NoSuchBucket</Code>"), "\(noBucket)")
    }

    /// A body hash in `x-amz-content-sha256` must be the body's; an `aws-chunked` body's chunk signatures are
    /// checked and the chunks joined.
    @Test func payloadHashesAndChunkedBodies() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("s3gw-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let identity = S3Gateway.Identity(name: "a", accessKey: "AK", secretKey: "SK", actions: ["Admin"])
        let gateway = try S3Gateway(root: dir, identities: [identity])
        let now = Date()
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let amzDate = f.string(from: now)
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/us-east-1/s3/aws4_request"
        let key = SigV4.signingKey(secret: "SK", date: day, region: "us-east-1", service: "s3")
        func signed(_ method: String, _ path: String, body: Data, payload: String, extra: [String: String] = [:])
            -> HTTPRequest
        {
            var headers = ["host": "gw:8333", "x-amz-date": amzDate, "x-amz-content-sha256": payload]
            headers.merge(extra) { $1 }
            let names = headers.keys.sorted()
            let canonical = SigV4.canonicalRequest(
                method: method, rawPath: path, rawQuery: "", headers: headers, signedHeaders: names,
                payloadHash: payload)
            let signature = SigV4.signature(
                key: key, SigV4.stringToSign(amzDate: amzDate, scope: scope, canonicalRequest: canonical))
            headers["authorization"] =
                "AWS4-HMAC-SHA256 Credential=AK/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
            return HTTPRequest(method: method, path: path, headers: headers, body: body)
        }
        func status(_ reply: HTTPReply) -> (Int, String) {
            switch reply {
            case .full(let s, _, let b): (s, String(decoding: b, as: UTF8.self))
            case .headers(let s, _, let b, _): (s, String(decoding: b, as: UTF8.self))
            case .stream(let s, _, _): (s, "")
            }
        }
        #expect(status(gateway.respond(signed("PUT", "/b-1", body: Data(), payload: SigV4.emptyPayloadHash))).0 == 200)
        let body = Data("hello".utf8)
        let lying = signed("PUT", "/b-1/k", body: body, payload: SigV4.emptyPayloadHash)
        #expect(status(gateway.respond(lying)).1.contains("XAmzContentSHA256Mismatch"))

        // Two chunks and the final empty one, each signed on the previous signature.
        var request = signed(
            "PUT", "/b-1/chunked", body: Data(), payload: SigV4.streamingPayload,
            extra: ["content-encoding": "aws-chunked", "x-amz-decoded-content-length": "10"])
        var previous = SigV4.parse(request.headers["authorization"]!)!.signature
        var wire = Data()
        for chunk in [Data("hello".utf8), Data("world".utf8), Data()] {
            let sig = SigV4.signature(
                key: key, SigV4.chunkStringToSign(amzDate: amzDate, scope: scope, previous: previous, chunk: chunk))
            wire.append(Data("\(String(chunk.count, radix: 16));chunk-signature=\(sig)\r\n".utf8))
            wire.append(chunk)
            wire.append(Data("\r\n".utf8))
            previous = sig
        }
        request.body = wire
        #expect(status(gateway.respond(request)).0 == 200)
        let get = signed("GET", "/b-1/chunked", body: Data(), payload: SigV4.emptyPayloadHash)
        #expect(status(gateway.respond(get)) == (200, "helloworld"))
        // A chunk altered on the way is refused.
        var tampered = request
        tampered.body = wire
        tampered.body[tampered.body.firstRange(of: Data("world".utf8))!.lowerBound] = UInt8(ascii: "W")
        #expect(status(gateway.respond(tampered)).1.contains("SignatureDoesNotMatch"))
        // A request signed 20 minutes ago is too old.
        let old = f.string(from: now.addingTimeInterval(-1200))
        var stale = get
        stale.headers["x-amz-date"] = old
        #expect(status(gateway.respond(stale)).1.contains("RequestTimeTooSkewed"))
    }
}
