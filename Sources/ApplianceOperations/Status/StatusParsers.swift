import ApplianceCluster
import Foundation

/// Pure readers of what the status script prints on a control plane (kubectl, etcdctl, helm, curl).
public enum StatusParsers {
    /// One command's result in the script's output.
    public struct Section: Sendable, Equatable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var succeeded: Bool { status == 0 }
        /// The last lines of stderr (or stdout), for a one-line reason.
        public var reason: String {
            let text = stderr.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? stdout : stderr
            let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            let tail = lines.suffix(2).joined(separator: " / ")
            if status == 124 { return "timed out" + (tail.isEmpty ? "" : " (\(tail))") }
            return tail.isEmpty ? "exit status \(status)" : String(tail.prefix(300))
        }
    }

    public static let marker = "----appliance-status----"

    /// `MARKER NAME RC` then stdout, `MARKER NAME stderr` then stderr, for each section.
    public static func sections(_ text: String) -> [String: Section] {
        var result: [String: Section] = [:]
        var current: (name: String, status: Int32)?
        var inStderr = false
        var out: [Substring] = []
        var err: [Substring] = []
        func flush() {
            if let c = current {
                result[c.name] = Section(
                    status: c.status, stdout: out.joined(separator: "\n"), stderr: err.joined(separator: "\n"))
            }
            out = []
            err = []
        }
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix(marker + " ") {
                let parts = line.dropFirst(marker.count + 1).split(separator: " ")
                guard parts.count == 2 else { continue }
                if parts[1] == "stderr", current?.name == String(parts[0]) {
                    inStderr = true
                    continue
                }
                flush()
                current = (String(parts[0]), Int32(parts[1]) ?? -1)
                inStderr = false
                continue
            }
            if inStderr { err.append(line) } else { out.append(line) }
        }
        flush()
        return result
    }

    /// The names of the checks `/readyz?verbose` reports failed (`[-]etcd failed: reason withheld`).
    public static func failedReadyzChecks(_ text: String) -> [String] {
        text.split(separator: "\n").compactMap { line in
            let l = line.trimmingCharacters(in: .whitespaces)
            guard l.hasPrefix("[-]") else { return nil }
            return String(l.dropFirst(3).prefix { $0 != " " })
        }
    }

    /// `etcdctl member list -w json` and `etcdctl endpoint health --cluster -w json`: each member with the
    /// health of its client URL (a member whose endpoint is missing from the health list is unhealthy).
    public static func etcdMembers(memberList: String, health: String) throws -> [StatusReport.EtcdMember] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(memberList.utf8)) as? [String: Any],
            let members = root["members"] as? [[String: Any]]
        else { throw StatusParseError("etcdctl member list did not print a member list") }
        let checks = (try? JSONSerialization.jsonObject(with: Data(health.utf8)) as? [[String: Any]]) ?? []
        var byEndpoint: [String: (Bool, String?)] = [:]
        for c in checks {
            guard let ep = c["endpoint"] as? String else { continue }
            let err = (c["error"] as? String).flatMap { $0.isEmpty ? nil : $0 }
            byEndpoint[ep] = (c["health"] as? Bool ?? false, err)
        }
        return members.map { m in
            let urls = m["clientURLs"] as? [String] ?? []
            let found = urls.compactMap { byEndpoint[$0] }.first
            let learner = m["isLearner"] as? Bool ?? false
            return StatusReport.EtcdMember(
                name: m["name"] as? String ?? "", endpoint: urls.first,
                healthy: found?.0 ?? false, learner: learner,
                error: found == nil
                    ? (urls.isEmpty ? "not started (no client URL)" : "no health answer") : found?.1)
        }.sorted { $0.name < $1.name }
    }

    /// `helm list -A -o json`: `[{name, namespace, revision, status, chart: "NAME-VERSION", app_version}]`.
    public static func helmReleases(_ json: String) throws -> [StatusReport.Release] {
        let trimmed = json.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.isEmpty { return [] }
        guard let list = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [[String: Any]] else {
            throw StatusParseError("helm list -o json did not print a JSON list")
        }
        return list.compactMap { r in
            guard let name = r["name"] as? String, let ns = r["namespace"] as? String else { return nil }
            let (chart, version) = splitChart(r["chart"] as? String ?? "")
            let revision = (r["revision"] as? String).flatMap { Int($0) } ?? (r["revision"] as? Int)
            return StatusReport.Release(
                name: name, namespace: ns, chart: chart, version: version,
                appVersion: (r["app_version"] as? String).flatMap { $0.isEmpty ? nil : $0 }, revision: revision,
                status: r["status"] as? String ?? "unknown")
        }.sorted { ($0.namespace, $0.name) < ($1.namespace, $1.name) }
    }

    /// `kube-prometheus-stack-77.0.1` -> (`kube-prometheus-stack`, `77.0.1`); `gpu-operator-v25.3.0` ->
    /// (`gpu-operator`, `v25.3.0`): the version starts after the last `-` followed by a digit or `v` + digit.
    public static func splitChart(_ text: String) -> (String, String) {
        let chars = Array(text)
        var i = chars.count - 1
        while i > 0 {
            if chars[i] == "-", i + 1 < chars.count {
                let next = chars[i + 1]
                let afterV = i + 2 < chars.count ? chars[i + 2] : " "
                if next.isNumber || (next == "v" && afterV.isNumber) {
                    return (String(chars[..<i]), String(chars[(i + 1)...]))
                }
            }
            i -= 1
        }
        return (text, "")
    }

    /// The pods of each release (`ReleasePods`: those of the workloads Helm annotated with the release, and
    /// those labelled with it), finished pods left out, with why each one that is not Ready is not. The lists
    /// are `kubectl get ... -A -o json` of pods, deployments, daemonsets and statefulsets, and of each of
    /// `ReleasePods.ownerResources`; a workload list that could not be read leaves only the labelled pods.
    public static func attachPods(
        _ releases: [StatusReport.Release], podList: String, deploymentList: String = "", daemonSetList: String = "",
        statefulSetList: String = "", ownerLists: [String] = []
    ) throws -> [StatusReport.Release] {
        guard let root = try? JSONSerialization.jsonObject(with: Data(podList.utf8)) as? [String: Any],
            let pods = root["items"] as? [[String: Any]]
        else { throw StatusParseError("kubectl get pods did not print a PodList") }
        let deployments = ReleasePods.items(deploymentList)
        let daemonSets = ReleasePods.items(daemonSetList)
        let statefulSets = ReleasePods.items(statefulSetList)
        let owners = ownerLists.flatMap(ReleasePods.items)
        return releases.map { r in
            var r = r
            let found = ReleasePods.of(
                release: r.name, namespace: r.namespace, deployments: deployments, daemonSets: daemonSets,
                statefulSets: statefulSets, owners: owners, pods: pods)
            r.podsReady = found.ready
            r.podsTotal = found.total
            r.notReady = found.notReady.map { "\($0.pod): \($0.reason)" }
            return r
        }
    }
}

public struct StatusParseError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
