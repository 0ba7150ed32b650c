import Foundation

/// The subset of Go's `text/template` (plus Sprig/Helm functions) that the lab charts use, as Helm evaluates it:
/// actions `{{ pipeline }}` with `{{-`/`-}}` whitespace trimming and `{{/* comments */}}`; `if`/`else if`/`else`,
/// `with`/`else`, `range` (over lists and maps, optionally `$i, $v :=`), `end`, `define` (in any template file,
/// `_helpers.tpl` included), `template`, variables `$` and `$name` (`:=` at the start of an action); field chains
/// on `.`, `$` and variables; string, number, `true`/`false`/`nil` literals; parenthesised pipelines.
/// Functions: `toYaml`, `nindent`, `indent`, `default`, `quote`, `include`, `eq`, `ne`, `not`, `and`, `or`,
/// `empty`, `required`, `trunc`, `trimSuffix`, `printf` (`%s %d %v %q`), `dict`, `list`, `index`. Anything else is refused with Go's
/// parse error wording (`function "x" not defined`). Missing values render as nothing (Helm replaces
/// `<no value>` with the empty string).
struct HelmTemplate {
    struct Failure: Error, Equatable { var text: String }

    indirect enum Node {
        case text(String)
        case action(Pipeline, assign: String?)
        case branch(kind: String, Pipeline, then: [Node], otherwise: [Node])
        case range(Pipeline, key: String?, value: String?, body: [Node], otherwise: [Node])
        case call(name: String, Pipeline?)
    }

    indirect enum Operand {
        case field(base: String, path: [String])  // base "." or "$" or "$name"
        case literal(Any?)
        case function(String)
        case sub(Pipeline)
    }

    struct Command { var operands: [Operand] }
    struct Pipeline { var commands: [Command] }

    /// The parsed templates of a chart: every file's top-level nodes and the `define`d templates.
    var files: [String: [Node]] = [:]
    var defines: [String: [Node]] = [:]
    var chartName: String

    init(chartName: String, sources: [(String, String)]) throws(Failure) {
        self.chartName = chartName
        for (name, text) in sources {
            var parser = Parser(text: text, file: "\(chartName)/templates/\(name)")
            let (nodes, defs) = try parser.parseAll()
            files[name] = nodes
            for (k, v) in defs { defines[k] = v }
        }
    }

    static let functions: Set<String> = [
        "toYaml", "nindent", "indent", "default", "quote", "include", "eq", "ne", "not", "and", "or", "empty",
        "required", "trunc", "trimSuffix", "printf", "dict", "index", "list", "randAlphaNum", "b64enc",
    ]

    /// Renders one file with the root object (`.Values`, `.Release`, `.Chart`).
    func render(file: String, root: [String: Any]) throws(Failure) -> String {
        guard let nodes = files[file] else { throw Failure(text: "Error: template: no template \"\(file)\"") }
        var ev = Evaluator(template: self, root: root, file: "\(chartName)/templates/\(file)")
        return try ev.run(nodes, dot: root, vars: [:]).replacingOccurrences(of: "<no value>", with: "")
    }

    // MARK: - lexing and parsing

    struct Parser {
        let chars: [Character]
        var pos = 0
        let file: String
        var line = 1

        init(text: String, file: String) {
            chars = Array(text)
            self.file = file
        }

        enum Item {
            case text(String)
            case action([Token], line: Int)
        }

        enum Token: Equatable {
            case word(String)  // identifiers, keywords, fields, variables
            case string(String)
            case number(Double, isInt: Bool)
            case pipe, open, close, assign, declare, comma
        }

        func fail(_ msg: String, line: Int) -> Failure {
            Failure(text: "Error: parse error at (\(file):\(line)): \(msg)")
        }

        /// Splits the text into text items and action token lists, applying the trim markers.
        mutating func items() throws(Failure) -> [Item] {
            var out: [Item] = []
            var text = ""
            var trimNext = false
            while pos < chars.count {
                if chars[pos] == "{", pos + 1 < chars.count, chars[pos + 1] == "{" {
                    var start = pos + 2
                    var trimLeft = false
                    if start + 1 < chars.count, chars[start] == "-", chars[start + 1] == " " || chars[start + 1] == "\n"
                    {
                        trimLeft = true
                        start += 1
                    }
                    if trimNext { text = String(text.drop { $0.isWhitespace }) }
                    if trimLeft { while let l = text.last, l.isWhitespace { text.removeLast() } }
                    if !text.isEmpty { out.append(.text(text)) }
                    text = ""
                    let startLine = line
                    // Find the closing braces outside quotes.
                    var i = start
                    var quote: Character?
                    var end = -1
                    while i < chars.count {
                        let c = chars[i]
                        if c == "\n" { line += 1 }
                        if let q = quote {
                            if c == "\\" && q == "\"" {
                                i += 2
                                continue
                            }
                            if c == q { quote = nil }
                        } else if c == "\"" || c == "`" {
                            quote = c
                        } else if c == "}", i + 1 < chars.count, chars[i + 1] == "}" {
                            end = i
                            break
                        }
                        i += 1
                    }
                    guard end >= 0 else { throw fail("unclosed action", line: startLine) }
                    var body = String(chars[start..<end])
                    trimNext = false
                    if body.hasSuffix(" -") || body.hasSuffix("\n-") || body == "-" {
                        trimNext = true
                        body.removeLast()
                    }
                    pos = end + 2
                    let trimmed = body.trimmingCharacters(in: .whitespacesAndNewlines)
                    if trimmed.hasPrefix("/*") {
                        guard trimmed.hasSuffix("*/") else { throw fail("unclosed comment", line: startLine) }
                        continue
                    }
                    out.append(.action(try tokens(trimmed, line: startLine), line: startLine))
                } else {
                    if chars[pos] == "\n" { line += 1 }
                    text.append(chars[pos])
                    pos += 1
                }
            }
            if trimNext { text = String(text.drop { $0.isWhitespace }) }
            if !text.isEmpty { out.append(.text(text)) }
            return out
        }

        func tokens(_ s: String, line: Int) throws(Failure) -> [Token] {
            let c = Array(s)
            var i = 0
            var out: [Token] = []
            while i < c.count {
                let ch = c[i]
                if ch.isWhitespace {
                    i += 1
                } else if ch == "|" {
                    out.append(.pipe)
                    i += 1
                } else if ch == "(" {
                    out.append(.open)
                    i += 1
                } else if ch == ")" {
                    out.append(.close)
                    i += 1
                } else if ch == "," {
                    out.append(.comma)
                    i += 1
                } else if ch == ":" && i + 1 < c.count && c[i + 1] == "=" {
                    out.append(.declare)
                    i += 2
                } else if ch == "=" {
                    out.append(.assign)
                    i += 1
                } else if ch == "\"" {
                    var v = ""
                    i += 1
                    while i < c.count && c[i] != "\"" {
                        if c[i] == "\\" && i + 1 < c.count {
                            i += 1
                            switch c[i] {
                            case "n": v.append("\n")
                            case "t": v.append("\t")
                            default: v.append(c[i])
                            }
                        } else {
                            v.append(c[i])
                        }
                        i += 1
                    }
                    guard i < c.count else { throw fail("unterminated quoted string", line: line) }
                    i += 1
                    out.append(.string(v))
                } else if ch == "`" {
                    var v = ""
                    i += 1
                    while i < c.count && c[i] != "`" {
                        v.append(c[i])
                        i += 1
                    }
                    guard i < c.count else { throw fail("unterminated raw quoted string", line: line) }
                    i += 1
                    out.append(.string(v))
                } else if ch.isNumber || (ch == "-" && i + 1 < c.count && c[i + 1].isNumber) {
                    var v = String(ch)
                    i += 1
                    while i < c.count && (c[i].isNumber || c[i] == ".") {
                        v.append(c[i])
                        i += 1
                    }
                    guard let d = Double(v) else { throw fail("bad number syntax: \"\(v)\"", line: line) }
                    out.append(.number(d, isInt: !v.contains(".")))
                } else {
                    var v = ""
                    while i < c.count, !c[i].isWhitespace, !"|(),".contains(c[i]),
                        !(c[i] == ":" && i + 1 < c.count && c[i + 1] == "=")
                    {
                        v.append(c[i])
                        i += 1
                    }
                    guard !v.isEmpty else { throw fail("unexpected \"\(ch)\" in command", line: line) }
                    out.append(.word(v))
                }
            }
            return out
        }

        mutating func parseAll() throws(Failure) -> ([Node], [String: [Node]]) {
            let list = try items()
            var index = 0
            var defines: [String: [Node]] = [:]
            let (nodes, stop) = try parseList(list, &index, &defines)
            if let stop { throw fail("unexpected {{\(stop.word)}}", line: stop.line) }
            return (nodes, defines)
        }

        struct Stop {
            var word: String
            var rest: [Token]
            var line: Int
        }

        /// Parses until `end`/`else` (returned) or the end of input.
        func parseList(_ list: [Item], _ index: inout Int, _ defines: inout [String: [Node]]) throws(Failure)
            -> ([Node], Stop?)
        {
            var nodes: [Node] = []
            while index < list.count {
                let item = list[index]
                index += 1
                switch item {
                case .text(let t): nodes.append(.text(t))
                case .action(let toks, let line):
                    guard case .word(let w)? = toks.first else {
                        nodes.append(.action(try pipeline(toks, line: line), assign: nil))
                        continue
                    }
                    let rest = Array(toks.dropFirst())
                    switch w {
                    case "end", "else": return (nodes, Stop(word: w, rest: rest, line: line))
                    case "if", "with":
                        nodes.append(try branch(w, rest, line: line, list, &index, &defines))
                    case "range":
                        var key: String?
                        var value: String?
                        var expr = rest
                        if let d = rest.firstIndex(of: .declare) {
                            let names = rest[..<d].compactMap { t -> String? in
                                if case .word(let n) = t { return n }
                                return nil
                            }
                            if names.count == 2 {
                                (key, value) = (names[0], names[1])
                            } else if names.count == 1 {
                                value = names[0]
                            }
                            expr = Array(rest[(d + 1)...])
                        }
                        let p = try pipeline(expr, line: line)
                        let (body, stop) = try parseList(list, &index, &defines)
                        var otherwise: [Node] = []
                        if stop?.word == "else" {
                            let (e, s2) = try parseList(list, &index, &defines)
                            guard s2?.word == "end" else { throw fail("missing {{end}} for range", line: line) }
                            otherwise = e
                        } else if stop?.word != "end" {
                            throw fail("unexpected EOF", line: line)
                        }
                        nodes.append(.range(p, key: key, value: value, body: body, otherwise: otherwise))
                    case "define":
                        guard case .string(let name)? = rest.first else {
                            throw fail("define: missing name", line: line)
                        }
                        let (body, stop) = try parseList(list, &index, &defines)
                        guard stop?.word == "end" else { throw fail("unexpected EOF in define", line: line) }
                        defines[name] = body
                    case "template":
                        guard case .string(let name)? = rest.first else {
                            throw fail("template: missing name", line: line)
                        }
                        let arg = rest.count > 1 ? try pipeline(Array(rest.dropFirst()), line: line) : nil
                        nodes.append(.call(name: name, arg))
                    case "block", "break", "continue":
                        throw fail("lab helm stand-in does not support {{\(w)}}", line: line)
                    default:
                        if w.hasPrefix("$"), toks.count > 1, toks[1] == .declare || toks[1] == .assign {
                            nodes.append(.action(try pipeline(Array(toks.dropFirst(2)), line: line), assign: w))
                        } else {
                            nodes.append(.action(try pipeline(toks, line: line), assign: nil))
                        }
                    }
                }
            }
            return (nodes, nil)
        }

        func branch(
            _ kind: String, _ rest: [Token], line: Int, _ list: [Item], _ index: inout Int,
            _ defines: inout [String: [Node]]
        ) throws(Failure) -> Node {
            let cond = try pipeline(rest, line: line)
            let (then, stop) = try parseList(list, &index, &defines)
            guard let stop else { throw fail("unexpected EOF: missing {{end}} for \(kind)", line: line) }
            if stop.word == "end" { return .branch(kind: kind, cond, then: then, otherwise: []) }
            // else / else if
            if case .word(let w)? = stop.rest.first, w == "if" || w == "with" {
                let nested = try branch(w, Array(stop.rest.dropFirst()), line: stop.line, list, &index, &defines)
                return .branch(kind: kind, cond, then: then, otherwise: [nested])
            }
            let (otherwise, s2) = try parseList(list, &index, &defines)
            guard s2?.word == "end" else { throw fail("unexpected EOF: missing {{end}} for \(kind)", line: line) }
            return .branch(kind: kind, cond, then: then, otherwise: otherwise)
        }

        func pipeline(_ toks: [Token], line: Int) throws(Failure) -> Pipeline {
            var i = 0
            let p = try pipeline(toks, &i, line: line)
            guard i == toks.count else { throw fail("unexpected \")\" in operand", line: line) }
            return p
        }

        func pipeline(_ toks: [Token], _ i: inout Int, line: Int) throws(Failure) -> Pipeline {
            var commands: [Command] = []
            var cur: [Operand] = []
            while i < toks.count {
                let t = toks[i]
                switch t {
                case .close: break
                case .pipe:
                    guard !cur.isEmpty else { throw fail("missing command", line: line) }
                    commands.append(Command(operands: cur))
                    cur = []
                    i += 1
                    continue
                case .open:
                    i += 1
                    let sub = try pipeline(toks, &i, line: line)
                    guard i < toks.count, toks[i] == .close else { throw fail("unclosed left paren", line: line) }
                    i += 1
                    cur.append(.sub(sub))
                    continue
                case .string(let s): cur.append(.literal(s))
                case .number(let d, let isInt): cur.append(.literal(isInt ? Int(d) as Any : d as Any))
                case .word(let w):
                    if w == "true" || w == "false" {
                        cur.append(.literal(w == "true"))
                    } else if w == "nil" {
                        cur.append(.literal(nil))
                    } else if w.hasPrefix(".") || w.hasPrefix("$") {
                        var parts = w.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                        let base: String
                        if w.hasPrefix(".") {
                            base = "."
                            parts.removeFirst()
                        } else {
                            base = parts.removeFirst()
                        }
                        cur.append(.field(base: base, path: parts.filter { !$0.isEmpty }))
                    } else {
                        guard HelmTemplate.functions.contains(w) else {
                            throw fail("function \"\(w)\" not defined", line: line)
                        }
                        cur.append(.function(w))
                    }
                default: throw fail("unexpected \(t) in command", line: line)
                }
                if case .close = t { break }
                i += 1
            }
            if !cur.isEmpty { commands.append(Command(operands: cur)) }
            guard !commands.isEmpty else { throw fail("missing value for command", line: line) }
            return Pipeline(commands: commands)
        }
    }

    // MARK: - evaluation

    struct Evaluator {
        let template: HelmTemplate
        let root: [String: Any]
        let file: String
        var depth = 0

        func fail(_ msg: String) -> Failure {
            Failure(text: "Error: template: \(file): \(msg)")
        }

        mutating func run(_ nodes: [Node], dot: Any?, vars: [String: Any?]) throws(Failure) -> String {
            var out = ""
            var vars = vars
            for n in nodes {
                switch n {
                case .text(let t): out += t
                case .action(let p, let assign):
                    let v = try eval(p, dot: dot, vars: vars)
                    if let assign { vars[assign] = v } else { out += Self.text(v) }
                case .branch(let kind, let p, let then, let otherwise):
                    let v = try eval(p, dot: dot, vars: vars)
                    if Self.truthy(v) {
                        out += try run(then, dot: kind == "with" ? v : dot, vars: vars)
                    } else {
                        out += try run(otherwise, dot: dot, vars: vars)
                    }
                case .range(let p, let key, let value, let body, let otherwise):
                    let v = try eval(p, dot: dot, vars: vars)
                    var pairs: [(Any, Any?)] = []
                    if let a = v as? [Any] {
                        pairs = a.enumerated().map { ($0.offset, $0.element) }
                    } else if let m = v as? [String: Any] {
                        pairs = m.keys.sorted().map { ($0, m[$0]) }
                    } else if let n = v as? Int {
                        pairs = (0..<max(0, n)).map { ($0, $0) }
                    } else if v != nil {
                        throw fail("range can't iterate over \(Self.text(v))")
                    }
                    if pairs.isEmpty {
                        out += try run(otherwise, dot: dot, vars: vars)
                    }
                    for (k, e) in pairs {
                        var inner = vars
                        if let key { inner[key] = k }
                        if let value { inner[value] = e }
                        out += try run(body, dot: e, vars: inner)
                    }
                case .call(let name, let p):
                    let arg = try p.map { (p) throws(Failure) in try eval(p, dot: dot, vars: vars) } ?? nil
                    out += try include(name, arg)
                }
            }
            return out
        }

        mutating func include(_ name: String, _ dot: Any?) throws(Failure) -> String {
            guard let body = template.defines[name] else { throw fail("no template \"\(name)\" associated") }
            guard depth < 100 else { throw fail("exceeded max template depth (100)") }
            depth += 1
            defer { depth -= 1 }
            return try run(body, dot: dot, vars: [:])
        }

        mutating func eval(_ p: Pipeline, dot: Any?, vars: [String: Any?]) throws(Failure) -> Any? {
            var value: Any??
            for c in p.commands {
                value = .some(try command(c, piped: value, dot: dot, vars: vars))
            }
            return value ?? nil
        }

        mutating func operand(_ o: Operand, dot: Any?, vars: [String: Any?]) throws(Failure) -> Any? {
            switch o {
            case .literal(let v): return v
            case .sub(let p): return try eval(p, dot: dot, vars: vars)
            case .function(let f): return try call(f, [])
            case .field(let base, let path):
                var cur: Any?
                if base == "." {
                    cur = dot
                } else if base == "$" {
                    cur = root
                } else {
                    guard let v = vars[base] else { throw fail("undefined variable \"\(base)\"") }
                    cur = v
                }
                if cur is NSNull { cur = nil }
                for key in path {
                    if let m = cur as? [String: Any] {
                        cur = m[key]
                        if cur is NSNull { cur = nil }
                    } else if cur == nil {
                        return nil
                    } else {
                        throw fail("can't evaluate field \(key) in type \(Self.typeName(cur))")
                    }
                }
                return cur
            }
        }

        mutating func command(_ c: Command, piped: Any??, dot: Any?, vars: [String: Any?]) throws(Failure) -> Any? {
            guard let first = c.operands.first else { return nil }
            if case .function(let f) = first {
                var args: [Any?] = []
                for o in c.operands.dropFirst() { args.append(try operand(o, dot: dot, vars: vars)) }
                if let piped { args.append(piped) }
                return try call(f, args)
            }
            guard c.operands.count == 1, piped == nil else {
                throw fail("can't give argument to non-function \(c.operands.count)")
            }
            return try operand(first, dot: dot, vars: vars)
        }

        mutating func call(_ f: String, _ a: [Any?]) throws(Failure) -> Any? {
            func need(_ n: Int) throws(Failure) {
                guard a.count == n else { throw fail("wrong number of args for \(f): want \(n) got \(a.count)") }
            }
            switch f {
            case "toYaml":
                try need(1)
                return Self.yaml(a[0]).trimmingCharacters(in: CharacterSet(charactersIn: "\n"))
            case "indent", "nindent":
                try need(2)
                guard let n = a[0] as? Int else { throw fail("\(f): the width is not a number") }
                let pad = String(repeating: " ", count: n)
                let s = Self.text(a[1])
                let body = s.split(separator: "\n", omittingEmptySubsequences: false).map { pad + $0 }.joined(
                    separator: "\n")
                return f == "nindent" ? "\n" + body : body
            case "default":
                try need(2)
                return Self.truthy(a[1]) ? a[1] : a[0]
            case "quote":
                return a.compactMap { $0 }.map { Self.quoted(Self.text($0)) }.joined(separator: " ")
            case "include":
                try need(2)
                guard let name = a[0] as? String else { throw fail("include: the name is not a string") }
                return try include(name, a[1])
            case "eq", "ne":
                try need(2)
                let same = Self.text(a[0]) == Self.text(a[1]) && Self.typeName(a[0]) == Self.typeName(a[1])
                return f == "eq" ? same : !same
            case "not":
                try need(1)
                return !Self.truthy(a[0])
            case "and":
                for v in a where !Self.truthy(v) { return v }
                return a.last ?? nil
            case "or":
                for v in a where Self.truthy(v) { return v }
                return a.last ?? nil
            case "empty":
                try need(1)
                return !Self.truthy(a[0])
            case "required":
                try need(2)
                guard Self.truthy(a[1]) else { throw fail("error calling required: \(Self.text(a[0]))") }
                return a[1]
            case "trunc":
                try need(2)
                guard let n = a[0] as? Int else { throw fail("trunc: the length is not a number") }
                return String(Self.text(a[1]).prefix(n))
            case "randAlphaNum":
                try need(1)
                guard let n = a[0] as? Int, n >= 0 else { throw fail("randAlphaNum: the length is not a number") }
                let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
                var rng = SystemRandomNumberGenerator()
                return String((0..<n).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] })
            case "b64enc":
                try need(1)
                return Data(Self.text(a[0]).utf8).base64EncodedString()
            case "trimSuffix":
                try need(2)
                let s = Self.text(a[1])
                let suffix = Self.text(a[0])
                return s.hasSuffix(suffix) && !suffix.isEmpty ? String(s.dropLast(suffix.count)) : s
            case "index":
                guard var cur = a.first else { throw fail("wrong number of args for index: want at least 1 got 0") }
                for k in a.dropFirst() {
                    if let m = cur as? [String: Any] {
                        cur = m[Self.text(k)]
                    } else if let l = cur as? [Any], let i = k as? Int {
                        guard i >= 0 && i < l.count else {
                            throw fail("error calling index: index out of range: \(i)")
                        }
                        cur = l[i]
                    } else if cur == nil {
                        return nil
                    } else {
                        throw fail("error calling index: cannot index slice/array with type \(Self.typeName(k))")
                    }
                }
                return cur
            case "list":
                return a.map { $0 ?? NSNull() } as [Any]
            case "dict":
                guard a.count % 2 == 0 else { throw fail("error calling dict: invalid dictionary call") }
                var m: [String: Any] = [:]
                for i in stride(from: 0, to: a.count, by: 2) {
                    m[Self.text(a[i])] = a[i + 1] ?? NSNull()
                }
                return m
            case "printf":
                guard let format = a.first as? String else { throw fail("printf: the format is not a string") }
                var args = Array(a.dropFirst())
                var out = ""
                var it = Array(format)
                var i = 0
                while i < it.count {
                    if it[i] == "%", i + 1 < it.count {
                        let verb = it[i + 1]
                        i += 2
                        if verb == "%" {
                            out.append("%")
                            continue
                        }
                        let v = args.isEmpty ? nil : args.removeFirst()
                        out += verb == "q" ? Self.quoted(Self.text(v)) : Self.text(v)
                        continue
                    }
                    out.append(it[i])
                    i += 1
                }
                it = []
                return out
            default:
                throw fail("function \"\(f)\" not defined")
            }
        }

        static func typeName(_ v: Any?) -> String {
            switch v {
            case nil: return "nil"
            case is String: return "string"
            case is Bool: return "bool"
            case is Int: return "int"
            case is Double: return "float64"
            case is [Any]: return "[]interface {}"
            default: return "map[string]interface {}"
            }
        }

        static func truthy(_ v: Any?) -> Bool {
            switch v {
            case nil: return false
            case let b as Bool: return b
            case let s as String: return !s.isEmpty
            case let i as Int: return i != 0
            case let d as Double: return d != 0
            case let a as [Any]: return !a.isEmpty
            case let m as [String: Any]: return !m.isEmpty
            case is NSNull: return false
            default: return true
            }
        }

        /// Go's default formatting of a value in a template (`map[a:b]` for maps, `[a b]` for lists).
        static func text(_ v: Any?) -> String {
            switch v {
            case nil: return "<no value>"
            case is NSNull: return "<no value>"
            case let s as String: return s
            case let b as Bool: return b ? "true" : "false"
            case let i as Int: return String(i)
            case let d as Double: return d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : String(d)
            case let a as [Any]: return "[" + a.map { text($0) }.joined(separator: " ") + "]"
            case let m as [String: Any]:
                return "map[" + m.keys.sorted().map { "\($0):\(text(m[$0]))" }.joined(separator: " ") + "]"
            case let other?: return "\(other)"
            }
        }

        /// Go's `strconv.Quote` for the characters charts quote.
        static func quoted(_ s: String) -> String {
            var out = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.unicodeScalars.append(c)
                }
            }
            return out + "\""
        }

        /// `toYaml`: block YAML with sorted keys (as Go's yaml of a map), strings quoted where YAML would read
        /// them as something else.
        static func yaml(_ v: Any?) -> String {
            var out = ""
            emit(v, indent: 0, into: &out, inList: false)
            return out
        }

        static func scalar(_ v: Any?) -> String {
            switch v {
            case nil, is NSNull: return "null"
            case let s as String:
                let plain =
                    !s.isEmpty && s.range(of: "^[A-Za-z_/][A-Za-z0-9_./-]*$", options: .regularExpression) != nil
                    && !["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"].contains(s.lowercased())
                if plain { return s }
                if let d = try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed]) {
                    return String(decoding: d, as: UTF8.self)
                }
                return quoted(s)
            default: return text(v)
            }
        }

        static func emit(_ v: Any?, indent: Int, into out: inout String, inList: Bool) {
            let pad = String(repeating: " ", count: indent)
            if let m = v as? [String: Any] {
                if m.isEmpty {
                    out += "{}\n"
                    return
                }
                var first = true
                for k in m.keys.sorted() {
                    let prefix = first && inList ? "" : pad
                    first = false
                    let child = m[k] ?? nil
                    if let cm = child as? [String: Any], !cm.isEmpty {
                        out += "\(prefix)\(scalar(k)):\n"
                        emit(cm, indent: indent + 2, into: &out, inList: false)
                    } else if let ca = child as? [Any], !ca.isEmpty {
                        out += "\(prefix)\(scalar(k)):\n"
                        emit(ca, indent: indent, into: &out, inList: false)
                    } else {
                        out += "\(prefix)\(scalar(k)): "
                        emit(child, indent: indent + 2, into: &out, inList: false)
                    }
                }
            } else if let a = v as? [Any] {
                if a.isEmpty {
                    out += "[]\n"
                    return
                }
                for e in a {
                    out += "\(pad)- "
                    if let em = e as? [String: Any], !em.isEmpty {
                        emit(em, indent: indent + 2, into: &out, inList: true)
                    } else if let ea = e as? [Any], !ea.isEmpty {
                        out += "\n"
                        emit(ea, indent: indent + 2, into: &out, inList: false)
                    } else {
                        emit(e, indent: indent + 2, into: &out, inList: false)
                    }
                }
            } else if let s = v as? String, s.contains("\n") {
                out += s.hasSuffix("\n") ? "|\n" : "|-\n"
                let body = s.hasSuffix("\n") ? String(s.dropLast()) : s
                for l in body.split(separator: "\n", omittingEmptySubsequences: false) {
                    out += pad + l + "\n"
                }
            } else {
                out += scalar(v) + "\n"
            }
        }
    }
}
