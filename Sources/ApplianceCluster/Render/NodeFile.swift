import Crypto
import Foundation

/// A file the installer writes on a node: where, with which mode and owner, and its text.
///
/// Renderers are pure: they build a `NodeFile` from model values and never touch a disk or a node. The
/// step that ships it compares the node's copy (digest) first and writes only when it differs.
public struct NodeFile: Sendable, Equatable {
    /// Absolute path on the node.
    public var path: String
    /// Permission bits (`0o644`, `0o600` for anything holding a secret or a key).
    public var mode: Int
    public var owner: String
    public var content: String
    /// True when `content` holds a secret (a join token, a certificate key, a private key, a VRRP
    /// password): it must never be logged, journaled or shown, only written.
    public var containsSecret: Bool

    public init(path: String, mode: Int, owner: String = "root:root", content: String, containsSecret: Bool = false) {
        self.path = path
        self.mode = mode
        self.owner = owner
        self.content = content
        self.containsSecret = containsSecret
    }

    /// `sha256sum` of the content, for the ship step's check against the node's copy.
    public var sha256: String { SHA256.hash(data: Data(content.utf8)).map { String(format: "%02x", $0) }.joined() }

    /// The mode as `ls`/`install -m` write it (`0644`).
    public var octalMode: String {
        let s = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }
}

/// Text helpers shared by the renderers.
enum RenderText {
    /// A TOML basic string: quotes, backslashes and control characters escaped.
    static func toml(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out += String(format: "\\u%04X", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// A TOML array of basic strings.
    static func tomlArray(_ items: [String]) -> String { "[" + items.map(toml).joined(separator: ", ") + "]" }

    /// The header every generated file starts with, in the file's comment syntax.
    static func header(_ comment: String, _ lines: [String]) -> String {
        (["Written by appliance install; a re-run rewrites it, so edit the site file instead."] + lines)
            .map { "\(comment) \($0)" }.joined(separator: "\n") + "\n"
    }
}
