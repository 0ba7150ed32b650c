import Foundation

/// Human table: grouped by category; passing rows are collapsed per check, problems listed per node with
/// the remediation. Waivers are shown with their reason.
public enum TableReport {
    public static func render(_ r: PreflightReport, color: Bool = false, verbose: Bool = false) -> String {
        func paint(_ s: CheckStatus, _ text: String) -> String {
            guard color else { return text }
            let code =
                switch s {
                case .pass: "32"
                case .fail: "31"
                case .warn, .unknown: "33"
                default: "2"
                }
            return "\u{1B}[\(code)m\(text)\u{1B}[0m"
        }
        var out =
            "preflight: profile \(r.profile)\(r.site.map { ", site \($0)" } ?? ""), \(r.nodes.count) nodes, \(String(format: "%.1f", r.duration)) s\n"
        for n in r.nodes where !n.reachable {
            out += "  \(paint(.fail, "UNREACHABLE")) \(n.name) (\(n.address)): \(n.error ?? "")\n"
        }
        let idWidth = min(28, (r.checks.map(\.id.count).max() ?? 10) + 1)
        for cat in r.categories {
            let checks = r.checks.filter { $0.category == cat.id }
            var lines: [String] = []
            for c in checks {
                let os = r.outcomes.filter { $0.checkID == c.id }
                if os.isEmpty { continue }
                let worst = os.map(\.effectiveStatus).max() ?? .pass
                let problems = os.filter { [.fail, .warn, .unknown].contains($0.status) }
                let label = "\(worst.rawValue.uppercased())".padding(toLength: 7, withPad: " ", startingAt: 0)
                if problems.isEmpty {
                    if verbose || worst == .info {
                        let sample = os.first.map { $0.observed } ?? ""
                        lines.append(
                            "  \(paint(worst, label)) \(c.id.padding(toLength: idWidth, withPad: " ", startingAt: 0)) \(os.count) node\(os.count == 1 ? "" : "s"): \(sample)"
                        )
                    } else {
                        lines.append(
                            "  \(paint(worst, label)) \(c.id.padding(toLength: idWidth, withPad: " ", startingAt: 0)) \(c.title)"
                        )
                    }
                    continue
                }
                lines.append(
                    "  \(paint(worst, label)) \(c.id.padding(toLength: idWidth, withPad: " ", startingAt: 0)) \(c.title)"
                )
                for o in problems {
                    let w = o.waiver.map { " [WAIVED: \($0.reason)]" } ?? ""
                    lines.append("          \(paint(o.status, o.status.rawValue)) \(o.node): \(o.observed)\(w)")
                }
                lines.append("          fix: \(c.remediation)")
            }
            if !lines.isEmpty { out += "\n\(cat.title)\n" + lines.joined(separator: "\n") + "\n" }
        }
        let s = r.summary
        out +=
            "\nsummary: \(s.pass) pass, \(s.warn) warn, \(s.fail) fail, \(s.unknown) could not read, \(s.skip) skipped, \(s.info) info, \(s.waived) waived\n"
        for w in r.waivers { out += "waiver: \(w.checkID)\(w.node.map { "@\($0)" } ?? "") - \(w.reason)\n" }
        return out
    }
}

/// JUnit XML: one testsuite per node, one testcase per check; fail -> <failure>, warn/unknown -> <failure
/// type="warning"> (CI systems show them; `--junit-warnings-pass` is not needed), skip/waived -> <skipped>.
public enum JUnitReport {
    public static func render(_ r: PreflightReport) -> String {
        func x(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let byID = Dictionary(r.checks.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let s = r.summary
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out +=
            "<testsuites name=\"appliance preflight (\(x(r.profile)))\" tests=\"\(r.outcomes.count)\" failures=\"\(s.fail + s.warn + s.unknown)\" time=\"\(String(format: "%.3f", r.duration))\">\n"
        for node in r.columns {
            let os = r.outcomes.filter { $0.node == node }
            let f = os.filter { [.fail, .warn, .unknown].contains($0.effectiveStatus) }.count
            let sk = os.filter { $0.effectiveStatus == .skip || $0.waiver != nil }.count
            out += "  <testsuite name=\"\(x(node))\" tests=\"\(os.count)\" failures=\"\(f)\" skipped=\"\(sk)\">\n"
            for o in os {
                let c = byID[o.checkID]
                out +=
                    "    <testcase classname=\"\(x(node)).\(x(c?.category ?? "check"))\" name=\"\(x(o.checkID)): \(x(c?.title ?? ""))\">\n"
                if let w = o.waiver {
                    out += "      <skipped message=\"waived: \(x(w.reason))\"/>\n"
                    out += "      <system-out>\(x(o.status.rawValue)): \(x(o.observed))</system-out>\n"
                } else {
                    switch o.status {
                    case .fail, .warn, .unknown:
                        let type = o.status == .fail ? "fail" : o.status == .warn ? "warning" : "could-not-read"
                        out +=
                            "      <failure type=\"\(type)\" message=\"\(x(o.observed))\">\(x(c?.remediation ?? ""))</failure>\n"
                    case .skip:
                        out += "      <skipped message=\"\(x(o.observed))\"/>\n"
                    case .pass, .info:
                        out += "      <system-out>\(x(o.observed))</system-out>\n"
                    }
                }
                out += "    </testcase>\n"
            }
            out += "  </testsuite>\n"
        }
        out += "</testsuites>\n"
        return out
    }
}
