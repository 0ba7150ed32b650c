import Yams

/// A small YAML value for writing documents with a fixed key order (manifests, site files, reports).
public indirect enum YAMLTree: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case list([YAMLTree])
    case map([(String, YAMLTree)])
    case null

    public static func == (lhs: YAMLTree, rhs: YAMLTree) -> Bool {
        switch (lhs, rhs) {
        case let (.string(a), .string(b)): a == b
        case let (.int(a), .int(b)): a == b
        case let (.bool(a), .bool(b)): a == b
        case let (.list(a), .list(b)): a == b
        case let (.map(a), .map(b)): a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.null, .null): true
        default: false
        }
    }

    var node: Node {
        switch self {
        case .string(let s):
            // Quote anything a YAML reader could take for another type or that has leading/trailing blanks.
            let plain = Node(s)
            let needsQuotes =
                s.isEmpty || Int(s) != nil || Double(s) != nil
                || ["true", "false", "yes", "no", "on", "off", "null", "~"].contains(s.lowercased())
                || s.first == " " || s.last == " "
            return needsQuotes ? Node(s, Tag(.str), .doubleQuoted) : plain
        case .int(let i): return Node(String(i), Tag(.int))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .null: return Node("null", Tag(.null))
        case .list(let items): return Node(items.map(\.node))
        case .map(let pairs): return Node(pairs.map { (Node($0.0), $0.1.node) })
        }
    }

    /// The document as YAML text, deterministic for equal trees.
    public func serialized() -> String {
        (try? Yams.serialize(node: node, indent: 2, width: -1, allowUnicode: true, sortKeys: false)) ?? ""
    }
}
