import Foundation

/// Removes secrets from a stream of text as it passes, line by line: nothing is held whole in memory.
///
/// What it removes: PEM private keys (the block between BEGIN and END, across lines or inside one line),
/// kubeadm bootstrap tokens, kubeadm certificate keys, values of secret-looking keys in YAML, JSON and
/// `key=value` text (passwords, secrets, tokens, kubeconfig `token`/`client-key-data`, docker `auth`), the
/// `data`/`stringData` values of Kubernetes Secrets (keys kept), bearer tokens, htpasswd hashes, `--token X`
/// style flags, and whatever the site's patterns match.
///
/// Memory: one line at a time (a line longer than `maxLine` is cut there and handled in pieces), plus, for a
/// `data:` block whose object's `kind` is not yet known (kubectl prints `kind` after `data`), the lines until
/// the kind is known, at most `maxPending` bytes (beyond that the block is treated as a Secret's).
///
/// Not thread-safe: one redactor per file, used by one task.
public final class StreamRedactor {
    public let rules: RedactionRules
    /// Replacements made so far.
    public private(set) var count = 0
    private let sink: (String) throws -> Void
    private let maxLine: Int
    private let maxPending: Int

    private var partial: [UInt8] = []
    private var inPrivateKey = false
    /// The indentation of a `key: |` block scalar whose lines are a secret's.
    private var scalarBlockIndent: Int?
    /// `kind` of the object whose keys sit at this indentation.
    private var kinds: [Int: String] = [:]

    private enum DataMode { case redact, pending }
    /// A `data:`/`stringData:` block open at this key indentation.
    private var dataBlock: (indent: Int, mode: DataMode)?
    /// Lines held while the kind of the object of a `data:` block is unknown (the flag: inside the block).
    private var pending: [(line: String, inBlock: Bool)] = []
    private var pendingBytes = 0
    private var pendingIndent: Int?

    public init(
        rules: RedactionRules, maxLine: Int = 1 << 20, maxPending: Int = 8 << 20,
        sink: @escaping (String) throws -> Void
    ) {
        self.rules = rules
        self.sink = sink
        self.maxLine = maxLine
        self.maxPending = maxPending
    }

    /// Redacts a whole string (tests, short texts); returns the result.
    public static func redact(_ text: String, rules: RedactionRules) throws -> (text: String, count: Int) {
        var out = ""
        let r = StreamRedactor(rules: rules) { out += $0 }
        try r.feed(Array(text.utf8))
        try r.finish()
        return (out, r.count)
    }

    public func feed(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try feed($0) }
    }

    public func feed(_ bytes: UnsafeRawBufferPointer) throws {
        var start = 0
        for i in 0..<bytes.count where bytes[i] == 0x0A {
            partial.append(contentsOf: bytes[start...i])
            try emitPartial(hasNewline: true)
            start = i + 1
        }
        if start < bytes.count { partial.append(contentsOf: bytes[start..<bytes.count]) }
        while partial.count > maxLine {
            let head = Array(partial.prefix(maxLine))
            partial.removeFirst(maxLine)
            try process(String(decoding: head, as: UTF8.self), newline: false)
        }
    }

    /// Flushes the last line and whatever is still held.
    public func finish() throws {
        if !partial.isEmpty { try emitPartial(hasNewline: false) }
        if !pending.isEmpty { try decidePending(secret: false) }
    }

    private func emitPartial(hasNewline: Bool) throws {
        var bytes = partial
        partial.removeAll(keepingCapacity: true)
        if hasNewline { bytes.removeLast() }
        var text = String(decoding: bytes, as: UTF8.self)
        var crlf = false
        if text.hasSuffix("\r") {
            text.removeLast()
            crlf = true
        }
        try process(text + (crlf ? "\r" : ""), newline: hasNewline, stripCR: crlf)
    }

    private func process(_ raw: String, newline: Bool, stripCR: Bool = false) throws {
        let line = stripCR ? String(raw.dropLast()) : raw
        let end = (stripCR ? "\r" : "") + (newline ? "\n" : "")
        let structural = structure(line)
        for (text, inBlock) in structural {
            try route(text, inBlock: inBlock, end: end)
        }
    }

    // MARK: structure (PEM blocks, Secret data blocks, block scalars)

    /// Applies the line-spanning rules; returns the line (possibly cut) and whether it lies inside a Secret's
    /// `data` block whose fate is not decided yet.
    private func structure(_ line: String) -> [(String, Bool)] {
        // Inside a private key: drop everything up to its END line.
        if inPrivateKey {
            guard let end = firstMatch(rules.pemEnd, line) else { return [] }
            inPrivateKey = false
            return [(String(line[end.lowerBound...]), false)]
        }
        var line = line
        line = replace(rules.pemInline, in: line) { m in m[1] + RedactionRules.mask + m[2] }
        // A BEGIN with no END after it on this line opens a block (inline pairs were replaced above).
        if let begin = lastMatch(rules.pemBegin, line),
            firstMatch(rules.pemEnd, String(line[begin.upperBound...])) == nil
        {
            inPrivateKey = true
            count += 1
            return [(String(line[..<begin.upperBound]) + RedactionRules.mask, false)]
        }
        return [(line, false)]
    }

    /// Sends a line through the YAML/JSON structure rules, then the pattern rules, then out.
    private func route(_ line: String, inBlock: Bool, end: String) throws {
        let indent = line.prefix { $0 == " " }.count
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        let key = yamlKey(line)
        let keyIndent = key.map { $0.keyIndent } ?? indent

        // A block scalar of a secret key: every deeper line is the secret.
        if let s = scalarBlockIndent {
            if trimmed.isEmpty || indent > s {
                if !trimmed.isEmpty { count += 1 }
                try out(trimmed.isEmpty ? line : String(repeating: " ", count: indent) + RedactionRules.mask, end)
                return
            }
            scalarBlockIndent = nil
        }

        // Objects end when a line comes back left of their keys (or a new list item or document starts).
        if trimmed == "---" || trimmed == "..." {
            kinds = [:]
        } else if !trimmed.isEmpty {
            let isItem = trimmed.hasPrefix("- ")
            kinds = kinds.filter { $0.key < keyIndent || ($0.key == keyIndent && !isItem) }
        }

        // Held lines of an undecided data block.
        if let p = pendingIndent {
            let closes =
                trimmed == "---" || (!trimmed.isEmpty && (indent < p || (keyIndent == p && trimmed.hasPrefix("- "))))
            if closes {
                try decidePending(secret: false)
            } else if let k = key, k.name == "kind", k.keyIndent == p {
                let isSecret = Self.unquote(k.value) == "Secret"
                pending.append((line + end, false))
                try decidePending(secret: isSecret)
                kinds[p] = Self.unquote(k.value)
                return
            } else {
                let inside = dataBlock.map { !trimmed.isEmpty && indent > $0.indent } ?? false
                if let d = dataBlock, !inside, !trimmed.isEmpty, indent <= d.indent { dataBlock = nil }
                pending.append((line + end, inside))
                pendingBytes += line.utf8.count
                if pendingBytes > maxPending { try decidePending(secret: true) }
                return
            }
        }

        // An open Secret data block: values go.
        if let d = dataBlock, d.mode == .redact {
            if !trimmed.isEmpty && indent > d.indent {
                try out(redactDataLine(line), end)
                return
            }
            if !trimmed.isEmpty { dataBlock = nil }
        }

        if let k = key {
            if k.name == "kind" { kinds[k.keyIndent] = Self.unquote(k.value) }
            if k.name == "data" || k.name == "stringData" {
                let v = k.value.trimmingCharacters(in: .whitespaces)
                if v.isEmpty || v == "{" {
                    switch kinds[k.keyIndent] {
                    case "Secret":
                        dataBlock = (k.keyIndent, .redact)
                    case .some:
                        break
                    case nil:
                        dataBlock = (k.keyIndent, .pending)
                        pendingIndent = k.keyIndent
                        pending = [(line + end, false)]
                        pendingBytes = line.utf8.count
                        return
                    }
                }
            }
        }
        try out(patterns(line), end)
    }

    /// Releases the held lines: the data block's values masked when the object is a Secret.
    private func decidePending(secret: Bool) throws {
        let held = pending
        pending = []
        pendingBytes = 0
        pendingIndent = nil
        if dataBlock?.mode == .pending { dataBlock = nil }
        for (text, inBlock) in held {
            var body = text
            var end = ""
            while let last = body.last, last == "\n" || last == "\r" {
                end = String(last) + end
                body.removeLast()
            }
            try out(secret && inBlock ? redactDataLine(body) : patterns(body), end)
        }
    }

    /// `key: value` inside a Secret's data: the key stays, the value goes; any other line goes whole.
    private func redactDataLine(_ line: String) -> String {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if ["}", "},", "{", "]", "],"].contains(trimmed) { return line }
        count += 1
        if let k = yamlKey(line) {
            let comma = k.value.hasSuffix(",") ? "," : ""
            let v = k.value.trimmingCharacters(in: .whitespaces)
            if v.isEmpty || v == "{" || v == "|" || v == ">" { return line }
            return k.prefix + (v.hasPrefix("\"") ? "\"\(RedactionRules.mask)\"" : RedactionRules.mask) + comma
        }
        let indent = line.prefix { $0 == " " }.count
        return String(repeating: " ", count: indent) + RedactionRules.mask
    }

    // MARK: line patterns

    /// Every rule that works within one line.
    func patterns(_ input: String) -> String {
        var line = input
        // A Secret printed as compact JSON (kubectl's last-applied-configuration annotation, `-o json` of one
        // object on a line): its data values go, keys stay.
        if line.contains("Secret"), firstMatch(rules.compactSecretKind, line) != nil {
            line = replace(rules.compactSecretData, in: line, counting: false) { m in
                let body = self.replace(self.rules.compactValue, in: m[2]) { v in v[1] + RedactionRules.mask + v[3] }
                return m[1] + body + m[3]
            }
        }
        // `key: value` at the start of a YAML line.
        if let k = yamlKey(line), RedactionRules.isSecretKey(k.name) {
            let v = k.value.trimmingCharacters(in: .whitespaces)
            if v == "|" || v == ">" || v.hasPrefix("|") && v.count <= 3 || v.hasPrefix(">") && v.count <= 3 {
                scalarBlockIndent = k.keyIndent
            } else if !RedactionRules.isHarmlessValue(v) && !v.hasPrefix("{") && !v.hasPrefix("[") {
                count += 1
                let quoted = v.hasPrefix("\"")
                let comma = v.hasSuffix(",") ? "," : ""
                line = k.prefix + (quoted ? "\"\(RedactionRules.mask)\"" : RedactionRules.mask) + comma
            }
        }
        if line.contains("\"") {
            line = replace(rules.jsonPair, in: line, counting: false) { m in
                guard RedactionRules.isSecretKey(m[1]), !RedactionRules.isHarmlessValue(m[3]) else { return m[0] }
                self.count += 1
                return "\"\(m[1])\"\(m[2])\"\(RedactionRules.mask)\""
            }
            if line.contains("\\\"") {
                line = replace(rules.escapedJSONPair, in: line, counting: false) { m in
                    guard RedactionRules.isSecretKey(m[1]), !RedactionRules.isHarmlessValue(m[3]) else { return m[0] }
                    self.count += 1
                    return "\\\"\(m[1])\\\"\(m[2])\\\"\(RedactionRules.mask)\\\""
                }
            }
        }
        if line.contains("--") {
            line = replace(rules.secretFlag, in: line) { m in m[1] + RedactionRules.mask }
        }
        if line.contains("=") || line.contains(":") {
            line = replace(rules.freeKeyValue, in: line, counting: false) { m in
                guard RedactionRules.isSecretKey(m[1]), !RedactionRules.isHarmlessValue(m[3]),
                    !m[3].hasPrefix("<redacted")
                else { return m[0] }
                self.count += 1
                return m[1] + m[2] + RedactionRules.mask
            }
        }
        line = replace(rules.bootstrapToken, in: line) { _ in RedactionRules.mask }
        line = replace(rules.certificateKey, in: line) { m in m[1] + RedactionRules.mask }
        line = replace(rules.bearer, in: line) { m in m[1] + RedactionRules.mask }
        if line.contains(":$") || line.contains(":{SHA}") {
            line = replace(rules.htpasswd, in: line) { m in m[1] + RedactionRules.mask }
        }
        for r in rules.site {
            line = replace(r, in: line) { _ in RedactionRules.mask }
        }
        return line
    }

    private func out(_ text: String, _ end: String) throws { try sink(text + end) }

    // MARK: helpers

    struct KeyLine {
        /// Everything before the value (indentation, dash, key, colon, spaces).
        var prefix: String
        var name: String
        var value: String
        var keyIndent: Int
    }

    func yamlKey(_ line: String) -> KeyLine? {
        guard line.contains(":") else { return nil }
        let ns = line as NSString
        guard let m = rules.yamlKey.firstMatch(in: line, range: NSRange(location: 0, length: ns.length)) else {
            return nil
        }
        func g(_ i: Int) -> String {
            let r = m.range(at: i)
            return r.location == NSNotFound ? "" : ns.substring(with: r)
        }
        let lead = g(1)
        let prefix = lead + g(2) + g(3) + g(4) + g(5)
        // `http://x` and `10:30` are not keys: a key's colon is followed by a space or the end.
        let value = g(6)
        if !g(5).isEmpty || value.isEmpty {
            return KeyLine(prefix: prefix, name: g(3), value: value, keyIndent: lead.count)
        }
        return nil
    }

    static func unquote(_ s: String) -> String {
        s.trimmingCharacters(in: CharacterSet(charactersIn: " \t\",'"))
    }

    private func lastMatch(_ r: NSRegularExpression, _ s: String) -> Range<String.Index>? {
        guard let m = r.matches(in: s, range: NSRange(s.startIndex..., in: s)).last else { return nil }
        return Range(m.range, in: s)
    }

    private func firstMatch(_ r: NSRegularExpression, _ s: String) -> Range<String.Index>? {
        guard let m = r.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) else { return nil }
        return Range(m.range, in: s)
    }

    /// Replaces every match of `r` by what `with` makes of its groups (group 0 first); counts each
    /// replacement unless `counting` is false (the closure counts itself then).
    func replace(
        _ r: NSRegularExpression, in s: String, counting: Bool = true, with: ([String]) -> String
    ) -> String {
        let ns = s as NSString
        let matches = r.matches(in: s, range: NSRange(location: 0, length: ns.length))
        guard !matches.isEmpty else { return s }
        var out = ""
        var last = 0
        for m in matches {
            out += ns.substring(with: NSRange(location: last, length: m.range.location - last))
            var groups: [String] = []
            for i in 0..<m.numberOfRanges {
                let gr = m.range(at: i)
                groups.append(gr.location == NSNotFound ? "" : ns.substring(with: gr))
            }
            let replacement = with(groups)
            if counting && replacement != groups[0] { count += 1 }
            out += replacement
            last = m.range.location + m.range.length
        }
        out += ns.substring(from: last)
        return out
    }
}
