import Yams

extension YAMLValue {
    /// A mapping with arbitrary string keys (thresholds per profile, labels), values unchecked, in document order.
    /// Non-string and duplicate keys are reported.
    public func entries() -> [(key: String, value: YAMLValue)]? {
        guard case .mapping(let m) = node else {
            reader.error("\(displayPath) must be a mapping", at: self)
            return nil
        }
        var out: [(key: String, value: YAMLValue)] = []
        for (k, v) in m {
            guard case .scalar(let ks) = k else {
                reader.error("keys in \(displayPath) must be plain strings", at: child(k, key: "?"))
                continue
            }
            if out.contains(where: { $0.key == ks.string }) {
                reader.error("duplicate key '\(ks.string)' in \(displayPath)", at: child(k, key: ks.string))
                continue
            }
            out.append((ks.string, child(v, key: ks.string)))
        }
        return out
    }
}
