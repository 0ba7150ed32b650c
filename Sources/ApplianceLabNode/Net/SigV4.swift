import Crypto
import Foundation

/// AWS Signature Version 4 as an S3 server checks it (header-based, `Authorization: AWS4-HMAC-SHA256 ...`), after
/// the AWS "Signature Version 4 signing process" and S3's "Authenticating Requests (AWS Signature Version 4)":
/// canonical request → string to sign → HMAC chain of the secret key, date, region, service.
public enum SigV4 {
    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let emptyPayloadHash = hex(SHA256.hash(data: Data()))
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let streamingPayload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"

    /// The parts of an `Authorization` header.
    public struct Authorization: Sendable, Equatable {
        public var accessKey: String
        /// `YYYYMMDD/region/service/aws4_request`.
        public var scope: String
        public var date: String
        public var region: String
        public var service: String
        public var signedHeaders: [String]
        public var signature: String
    }

    /// Parses `AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=a;b, Signature=hex`;
    /// nil when it is not that shape.
    public static func parse(_ header: String) -> Authorization? {
        guard header.hasPrefix(algorithm + " ") else { return nil }
        var fields: [String: String] = [:]
        for part in header.dropFirst(algorithm.count + 1).split(separator: ",") {
            let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        guard let credential = fields["Credential"], let signed = fields["SignedHeaders"],
            let signature = fields["Signature"]
        else { return nil }
        let c = credential.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard c.count == 5, c[4] == "aws4_request", !c[0].isEmpty else { return nil }
        return Authorization(
            accessKey: c[0], scope: c[1...].joined(separator: "/"), date: c[1], region: c[2], service: c[3],
            signedHeaders: signed.split(separator: ";").map(String.init), signature: signature)
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters (and '/' when `slash` is false), as
    /// SigV4 requires.
    public static func encode(_ s: String, keepSlash: Bool = false) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(UnicodeScalar(b))
            if (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39) || "-_.~".contains(c)
                || (keepSlash && c == "/")
            {
                out.append(c)
            } else {
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// The canonical URI of a raw request path: each segment decoded then encoded once (S3 does not normalise or
    /// double-encode).
    public static func canonicalURI(_ rawPath: String) -> String {
        let decoded = rawPath.removingPercentEncoding ?? rawPath
        return encode(decoded.isEmpty ? "/" : decoded, keepSlash: true)
    }

    /// The canonical query string of a raw query: each name and value decoded then encoded, sorted by name then
    /// value, `name=value` joined by '&' (a name without '=' gets an empty value).
    public static func canonicalQuery(_ rawQuery: String) -> String {
        var pairs: [(String, String)] = []
        for part in rawQuery.split(separator: "&") {
            let kv = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(kv[0]).removingPercentEncoding ?? String(kv[0])
            let value = kv.count == 2 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
            pairs.append((encode(name), encode(value)))
        }
        pairs.sort { a, b in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// The canonical request: method, URI, query, the signed headers (lowercase name, trimmed value with inner
    /// runs of spaces made one), the signed header list and the payload hash.
    public static func canonicalRequest(
        method: String, rawPath: String, rawQuery: String, headers: [String: String], signedHeaders: [String],
        payloadHash: String
    ) -> String {
        let canonicalHeaders = signedHeaders.map { name -> String in
            let value = (headers[name] ?? "").trimmingCharacters(in: .whitespaces)
                .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            return "\(name):\(value)\n"
        }
        .joined()
        return [
            method, canonicalURI(rawPath), canonicalQuery(rawQuery), canonicalHeaders,
            signedHeaders.joined(separator: ";"), payloadHash,
        ].joined(separator: "\n")
    }

    public static func stringToSign(amzDate: String, scope: String, canonicalRequest: String) -> String {
        [algorithm, amzDate, scope, hex(SHA256.hash(data: Data(canonicalRequest.utf8)))].joined(separator: "\n")
    }

    /// HMAC-SHA256 chain: `AWS4` + secret → date → region → service → `aws4_request`.
    public static func signingKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + secret).utf8))
        for part in [date, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    public static func signature(key: SymmetricKey, _ stringToSign: String) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
    }

    /// The string a chunk of an `aws-chunked` body is signed over (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), chained on
    /// the previous chunk's signature (the header's for the first).
    public static func chunkStringToSign(amzDate: String, scope: String, previous: String, chunk: Data) -> String {
        [
            "AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope, previous, emptyPayloadHash,
            hex(SHA256.hash(data: chunk)),
        ].joined(separator: "\n")
    }

    /// Constant-time comparison of two hex signatures.
    public static func same(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in x.indices { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    public static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        digest.map { String(format: "%02x", $0) }.joined()
    }
}
