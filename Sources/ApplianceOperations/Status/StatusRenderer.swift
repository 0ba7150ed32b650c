import Foundation

/// `appliance status` output: pure functions of an evaluated `StatusReport` (golden-tested).
public enum StatusRenderer {
    /// The JSON schema `appliance.dev/status/v1` (see `StatusReport`); `compact` for one report per line
    /// (`--watch --format json`).
    public static func json(_ report: StatusReport, compact: Bool = false) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting =
            compact
            ? [.sortedKeys, .withoutEscapingSlashes]
            : [
                .prettyPrinted, .sortedKeys, .withoutEscapingSlashes,
            ]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    static func time(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    /// The human report: a header, then nodes, control plane, registry, platform releases, last operation and
    /// the problems, each a line.
    public static func text(_ r: StatusReport) -> String {
        var lines: [String] = []
        lines.append("cluster \(r.cluster) at \(time(r.collectedAt))")
        if let i = r.installed {
            lines.append(
                "installed: \(i.bundle) \(i.version) (Kubernetes \(i.kubernetesVersion), profile \(i.profile)\(i.installedAt.map { ", \(time($0))" } ?? ""))"
            )
        } else {
            lines.append("installed: no install record")
        }
        lines.append(
            r.healthy
                ? "status: healthy"
                : "status: NOT HEALTHY, \(r.problems.count) problem\(r.problems.count == 1 ? "" : "s") (exit \(r.exitCode))"
        )

        lines.append("")
        lines.append("NODES")
        let rows = r.nodes.map { n -> [String] in
            [
                n.name + (n.inSite ? "" : " (not in site)"),
                n.roles.isEmpty ? "-" : n.roles.joined(separator: ","),
                readyText(n),
                n.kubeletVersion.flatMap { $0.isEmpty ? nil : $0 } ?? "-",
                schedulingText(n),
                gpuText(n),
                fabricText(n),
            ]
        }
        lines.append(
            indent(table(["NAME", "ROLES", "READY", "KUBELET", "SCHEDULING", "GPUS", "FABRIC-MANAGER"], rows)))
        for n in r.nodes {
            if let m = n.maintenance {
                var extra: [String] = []
                if let method = m.method { extra.append("method \(method)") }
                if let op = m.operation { extra.append("operation \(op)") }
                if let g = m.gpus { extra.append("\(g) GPUs before") }
                lines.append(
                    "  \(n.name): maintenance: \(m.reason)\(m.recordedBy)\(extra.isEmpty ? "" : "; \(extra.joined(separator: ", "))")"
                )
            }
            if let c = n.cordonReason { lines.append("  \(n.name): cordoned by the GPU gate: \(c)") }
            if n.reachable == false {
                lines.append("  \(n.name): not reachable over SSH: \(n.unreachableReason ?? "no answer")")
            }
        }

        lines.append("")
        lines.append("CONTROL PLANE")
        let cp = r.controlPlane
        if let e = cp.apiError {
            lines.append("  api \(cp.endpoint ?? "-"): NOT REACHABLE: \(e)")
        } else {
            let ready = cp.apiReady == true ? "ready" : "NOT READY"
            let failed = cp.failedChecks.isEmpty ? "" : " (failed: \(cp.failedChecks.joined(separator: ", ")))"
            lines.append(
                "  api \(cp.endpoint ?? "-"): \(ready)\(failed)\(cp.through.map { ", read through \($0)" } ?? "")")
        }
        for s in cp.servers {
            lines.append(
                "  \(s.node) \(s.url): \(s.ready ? "ready" : "NOT READY")\(s.detail.map { " (\($0))" } ?? "")")
        }
        let etcd = cp.etcd
        if etcd.members.isEmpty {
            lines.append("  etcd: unknown\(etcd.error.map { ": \($0)" } ?? "")")
        } else {
            let learners = etcd.members.count - etcd.voting
            lines.append(
                "  etcd: \(etcd.members.count) member\(etcd.members.count == 1 ? "" : "s")\(learners > 0 ? " (\(learners) learner\(learners == 1 ? "" : "s"))" : ""), \(etcd.healthyCount) healthy, quorum \(etcd.voting / 2 + 1): \(etcd.hasQuorum ? "has quorum" : "NO QUORUM") (from \(etcd.source ?? "?"))"
            )
            for m in etcd.members {
                let state = m.healthy ? "healthy" : "UNHEALTHY"
                lines.append(
                    "    \(m.name.isEmpty ? "(unnamed)" : m.name) \(m.endpoint ?? "-"): \(state)\(m.learner ? " (learner)" : "")\(m.error.map { m.healthy ? "" : ": \($0)" } ?? "")"
                )
            }
            if let e = etcd.error { lines.append("    (etcdctl: \(e))") }
        }

        lines.append("")
        lines.append("REGISTRY (\(r.registry.mode))")
        if r.registry.endpoints.isEmpty { lines.append("  none") }
        for e in r.registry.endpoints {
            let state: String
            switch e.answering {
            case true?: state = "answering over TLS (installer's CA)"
            case false?: state = "NOT ANSWERING"
            case nil: state = "not checked"
            }
            lines.append(
                "  \(e.url)\(e.node.map { " on \($0)" } ?? ""): \(state)\(e.detail.map { " (\($0))" } ?? "")")
        }

        lines.append("")
        lines.append("PLATFORM RELEASES")
        if let releases = r.platform.releases {
            if releases.isEmpty {
                lines.append("  no platform releases installed")
            } else {
                lines.append(
                    indent(
                        table(
                            ["NAMESPACE/NAME", "CHART", "VERSION", "STATUS", "PODS READY"],
                            releases.map {
                                [
                                    "\($0.namespace)/\($0.name)", $0.chart, $0.version.isEmpty ? "-" : $0.version,
                                    $0.status, "\($0.podsReady)/\($0.podsTotal)",
                                ]
                            })))
                for rel in releases {
                    for p in rel.notReady { lines.append("  \(rel.namespace)/\(rel.name): not Ready: \(p)") }
                }
            }
        } else {
            lines.append("  unknown\(r.platform.error.map { ": \($0)" } ?? "")")
        }

        lines.append("")
        lines.append("LAST OPERATION")
        if let op = r.lastOperation {
            lines.append(
                "  \(op.kind) \(op.id): \(op.state), started \(time(op.startedAt))\(op.finishedAt.map { ", finished \(time($0))" } ?? "")"
            )
            for s in op.failedSteps { lines.append("    failed: \(s)") }
        } else {
            lines.append("  none recorded on this admin host")
        }

        if !r.problems.isEmpty {
            lines.append("")
            lines.append("PROBLEMS")
            for p in r.problems { lines.append("  \(p.subject): \(p.message)") }
        }
        return lines.joined(separator: "\n")
    }

    static func readyText(_ n: StatusReport.Node) -> String {
        if n.member == false { return "not a member" }
        switch n.ready {
        case true?: return n.kubeletService.map { $0 == "active" ? "Ready" : "Ready (kubelet \($0))" } ?? "Ready"
        case false?: return "NotReady"
        case nil: return "?"
        }
    }

    static func schedulingText(_ n: StatusReport.Node) -> String {
        guard let s = n.scheduling else { return "?" }
        if s == "schedulable" { return s }
        if let m = n.maintenance { return "\(s): \(m.reason)" }
        if n.cordonReason != nil { return "\(s): GPU gate" }
        return s
    }

    static func gpuText(_ n: StatusReport.Node) -> String {
        guard let g = n.gpus else { return "-" }
        return "\(g.allocatable.map(String.init) ?? "?")/\(g.declared) \(g.healthy ? "healthy" : "UNHEALTHY")"
    }

    static func fabricText(_ n: StatusReport.Node) -> String {
        if let f = n.fabricManager { return f }
        return n.fabricManagerRequired ? "?" : "-"
    }

    static func indent(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { "  " + $0 }.joined(separator: "\n")
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = (0..<header.count).map { c in all.map { $0.indices.contains(c) ? $0[c].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
