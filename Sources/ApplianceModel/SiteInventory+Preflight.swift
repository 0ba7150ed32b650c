import Foundation

// Issue 11: `spec.preflight.waivers` of the site file. Each waiver names a check id, optionally one node, and
// the reason it is accepted there; install and preflight show waived checks instead of hiding them.
extension SiteInventory {
    public struct PreflightWaiver: Sendable, Equatable {
        /// The check's stable id (`hw.cpu`, `os.release`...).
        public var check: String
        /// The host it applies to; nil: every host.
        public var node: String?
        /// Why it is accepted, shown wherever the waived check is reported.
        public var reason: String
        public var location: SourceLocation?

        public init(check: String, node: String? = nil, reason: String, location: SourceLocation? = nil) {
            self.check = check
            self.node = node
            self.reason = reason
            self.location = location
        }

        public static func == (a: Self, b: Self) -> Bool {
            a.check == b.check && a.node == b.node && a.reason == b.reason
        }
    }

    /// `preflight: {waivers: [{check, node?, reason}]}`; every problem reported at its position.
    static func decodePreflight(_ v: YAMLValue, hosts: [Host]) -> [PreflightWaiver] {
        let r = v.reader
        guard let m = v.mapping(allowing: ["waivers"]) else { return [] }
        var out: [PreflightWaiver] = []
        for item in m["waivers"]?.sequence() ?? [] {
            guard let w = item.mapping(allowing: ["check", "node", "reason"]) else { continue }
            let checkValue = w.require("check")
            let check = checkValue?.nonEmptyString()
            if let check, let checkValue,
                check.range(of: #"^[a-z0-9-]+\.[a-z0-9.-]+$"#, options: .regularExpression) == nil
            {
                r.error("'\(check)' is not a check id (like hw.cpu or os.release)", at: checkValue)
            }
            let reason = w.require("reason")?.nonEmptyString()
            let nodeValue = w["node"]
            let node = nodeValue?.nonEmptyString()
            if let node, let nodeValue, !hosts.isEmpty, !hosts.contains(where: { $0.name == node }) {
                r.error("waiver for '\(node)', which is not a host of this site", at: nodeValue)
            }
            if let check, let reason {
                out.append(PreflightWaiver(check: check, node: node, reason: reason, location: item.location))
            }
        }
        return out
    }

    func preflightTree() -> [(String, YAMLTree)] {
        guard !preflightWaivers.isEmpty else { return [] }
        let list: [YAMLTree] = preflightWaivers.map { w in
            var p: [(String, YAMLTree)] = [("check", .string(w.check))]
            if let n = w.node { p.append(("node", .string(n))) }
            p.append(("reason", .string(w.reason)))
            return .map(p)
        }
        return [("preflight", .map([("waivers", .list(list))]))]
    }
}
