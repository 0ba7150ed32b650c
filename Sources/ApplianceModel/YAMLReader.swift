import Foundation
import Yams

/// Reads YAML into checked values while collecting every problem with its `file:line:column`.
///
/// Usage: `let (reader, root) = try YAMLReader.load(path:subject:)`, walk `root` with the accessors below
/// (each reports what is wrong and returns nil), then `try reader.finish()` to throw all problems at once.
/// Not thread-safe: one reader is used by one decoding pass on one thread.
public final class YAMLReader {
    public let file: String
    public let subject: String
    public private(set) var diagnostics: [Diagnostic] = []

    init(file: String, subject: String) {
        self.file = file
        self.subject = subject
    }

    /// Parses `text`; a syntax error is thrown at once with its position.
    public static func parse(text: String, file: String, subject: String) throws(DiagnosticsError) -> (
        YAMLReader, YAMLValue
    ) {
        let reader = YAMLReader(file: file, subject: subject)
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw DiagnosticsError(
                    subject: subject,
                    diagnostics: [Diagnostic("the file is empty", at: SourceLocation(file: file, line: 1, column: 1))])
            }
            return (reader, YAMLValue(node: node, path: "", reader: reader))
        } catch let error as DiagnosticsError {
            throw error
        } catch let error as YamlError {
            throw DiagnosticsError(subject: subject, diagnostics: [reader.diagnostic(for: error)])
        } catch {
            throw DiagnosticsError(subject: subject, diagnostics: [Diagnostic("\(error)", at: nil)])
        }
    }

    /// Reads and parses a file.
    public static func load(path: String, subject: String) throws(DiagnosticsError) -> (YAMLReader, YAMLValue) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw DiagnosticsError(
                subject: subject,
                diagnostics: [Diagnostic("cannot read \(path): \(error.localizedDescription)", at: nil)])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DiagnosticsError(
                subject: subject, diagnostics: [Diagnostic("\(path) is not UTF-8 text", at: nil)])
        }
        return try parse(text: text, file: path, subject: subject)
    }

    /// Records a problem at `value`'s position.
    public func error(_ message: String, at value: YAMLValue?) {
        diagnostics.append(Diagnostic(message, at: value.flatMap { location(of: $0.node) }))
    }

    /// Records a problem at a known location.
    public func error(_ message: String, location: SourceLocation?) {
        diagnostics.append(Diagnostic(message, at: location))
    }

    /// Throws every problem recorded so far, if any.
    public func finish() throws(DiagnosticsError) {
        if !diagnostics.isEmpty {
            throw DiagnosticsError(subject: subject, diagnostics: diagnostics.sorted(by: Self.ordered))
        }
    }

    func location(of node: Node) -> SourceLocation? {
        node.mark.map { SourceLocation(file: file, line: $0.line, column: $0.column) }
    }

    private static func ordered(_ a: Diagnostic, _ b: Diagnostic) -> Bool {
        switch (a.location, b.location) {
        case let (l?, r?): (l.line, l.column) < (r.line, r.column)
        case (nil, _?): true
        default: false
        }
    }

    private func diagnostic(for error: YamlError) -> Diagnostic {
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
            let .composer(context, problem, mark, _):
            let text = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return Diagnostic(
                "YAML syntax error: \(text)", at: SourceLocation(file: file, line: mark.line, column: mark.column))
        case let .duplicatedKeysInMapping(duplicates, context):
            let keys = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            return Diagnostic(
                "duplicate key \(keys) in a mapping",
                at: SourceLocation(file: file, line: context.mark.line, column: context.mark.column))
        default:
            return Diagnostic("YAML error: \(error)", at: nil)
        }
    }
}

/// A node of a YAML document, with its dotted path (`spec.hosts[2].name`) for messages.
public struct YAMLValue {
    let node: Node
    public let path: String
    public let reader: YAMLReader

    public var location: SourceLocation? { reader.location(of: node) }

    /// The path to show in messages; the document root is "the document".
    public var displayPath: String { path.isEmpty ? "the document" : "'\(path)'" }

    func child(_ node: Node, key: String) -> YAMLValue {
        YAMLValue(node: node, path: path.isEmpty ? key : "\(path).\(key)", reader: reader)
    }

    var isNull: Bool {
        if case .scalar(let s) = node, s.style == .plain, ["", "~", "null", "Null", "NULL"].contains(s.string) {
            return true
        }
        return false
    }

    /// The value as a mapping whose keys must all be in `keys` (unknown and duplicate keys are reported).
    public func mapping(allowing keys: [String]) -> YAMLMapping? {
        guard case .mapping(let m) = node else {
            reader.error("\(displayPath) must be a mapping", at: self)
            return nil
        }
        var seen: [String: YAMLValue] = [:]
        var order: [String] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                reader.error("keys in \(displayPath) must be plain strings", at: child(k, key: "?"))
                continue
            }
            let key = ks.string
            let keyValue = child(k, key: key)
            if seen[key] != nil {
                reader.error("duplicate key '\(key)' in \(displayPath)", at: keyValue)
                continue
            }
            if !keys.contains(key) {
                let suggestion =
                    keys.min(by: { editDistance($0, key) < editDistance($1, key) })
                    .flatMap { editDistance($0, key) <= 2 ? " (did you mean '\($0)'?)" : nil } ?? ""
                reader.error(
                    "unknown field '\(key)' in \(displayPath)\(suggestion); known fields: \(keys.joined(separator: ", "))",
                    at: keyValue)
                continue
            }
            seen[key] = child(v, key: key)
            order.append(key)
        }
        return YAMLMapping(owner: self, values: seen, order: order)
    }

    /// The value as a mapping with arbitrary string keys (labels, annotations), in document order.
    public func stringMap() -> [(key: String, value: String)]? {
        guard case .mapping(let m) = node else {
            reader.error("\(displayPath) must be a mapping", at: self)
            return nil
        }
        var out: [(String, String)] = []
        for (k, v) in m {
            guard let key = child(k, key: "?").string(), let value = child(v, key: key).string() else { continue }
            out.append((key, value))
        }
        return out
    }

    public func string() -> String? {
        guard case .scalar(let s) = node, !isNull else {
            reader.error("\(displayPath) must be a string", at: self)
            return nil
        }
        return s.string
    }

    /// A string that must not be empty.
    public func nonEmptyString() -> String? {
        guard let s = string() else { return nil }
        if s.trimmingCharacters(in: .whitespaces).isEmpty {
            reader.error("\(displayPath) must not be empty", at: self)
            return nil
        }
        return s
    }

    public func int(in range: ClosedRange<Int>? = nil) -> Int? {
        guard case .scalar(let s) = node, let v = Int(s.string.replacingOccurrences(of: "_", with: "")) else {
            reader.error("\(displayPath) must be an integer", at: self)
            return nil
        }
        if let range, !range.contains(v) {
            reader.error(
                "\(displayPath) must be between \(range.lowerBound) and \(range.upperBound), not \(v)", at: self)
            return nil
        }
        return v
    }

    public func double() -> Double? {
        guard case .scalar(let s) = node, let v = Double(s.string) else {
            reader.error("\(displayPath) must be a number", at: self)
            return nil
        }
        return v
    }

    public func bool() -> Bool? {
        guard case .scalar(let s) = node else {
            reader.error("\(displayPath) must be true or false", at: self)
            return nil
        }
        switch s.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            reader.error("\(displayPath) must be true or false, not '\(s.string)'", at: self)
            return nil
        }
    }

    /// One of a closed set of words; the message lists them.
    public func oneOf(_ choices: [String]) -> String? {
        guard let s = string() else { return nil }
        guard choices.contains(s) else {
            reader.error("\(displayPath) must be one of \(choices.joined(separator: ", ")), not '\(s)'", at: self)
            return nil
        }
        return s
    }

    public func sequence() -> [YAMLValue]? {
        guard case .sequence(let seq) = node else {
            reader.error("\(displayPath) must be a list", at: self)
            return nil
        }
        return seq.enumerated().map { i, n in YAMLValue(node: n, path: "\(path)[\(i)]", reader: reader) }
    }

    /// A list of strings; a single string is accepted as a list of one.
    public func stringList() -> [String]? {
        if case .scalar = node, !isNull { return string().map { [$0] } }
        guard let items = sequence() else { return nil }
        var out: [String] = []
        for item in items {
            if let s = item.string() { out.append(s) }
        }
        return out
    }
}

/// A checked mapping: required and optional fields.
public struct YAMLMapping {
    public let owner: YAMLValue
    let values: [String: YAMLValue]
    public let order: [String]

    public subscript(_ key: String) -> YAMLValue? {
        guard let v = values[key], !v.isNull else { return nil }
        return v
    }

    public func has(_ key: String) -> Bool { self[key] != nil }

    /// A field that must be present; its absence is reported at the mapping.
    public func require(_ key: String) -> YAMLValue? {
        if let v = self[key] { return v }
        owner.reader.error("missing required field '\(key)' in \(owner.displayPath)", at: owner)
        return nil
    }
}

/// Levenshtein distance, for "did you mean" hints on short identifiers.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

extension YAMLValue {
    /// A Kubernetes-style document (`apiVersion`, `kind`, `metadata`, plus `topLevel` fields): checks the
    /// version and kind, reports unknown fields, and returns the document and its metadata mapping.
    public func resource(
        apiVersion: String, kind: String, metadataKeys: [String] = ["name"], topLevel: [String] = ["spec"]
    ) -> (document: YAMLMapping, metadata: YAMLMapping?)? {
        guard let doc = mapping(allowing: ["apiVersion", "kind", "metadata"] + topLevel) else { return nil }
        if let v = doc.require("apiVersion"), let s = v.string(), s != apiVersion {
            reader.error("unsupported apiVersion '\(s)'; this appliance reads \(apiVersion)", at: v)
        }
        if let v = doc.require("kind"), let s = v.string(), s != kind {
            reader.error("kind must be '\(kind)', not '\(s)'", at: v)
        }
        return (doc, doc.require("metadata")?.mapping(allowing: metadataKeys))
    }
}
