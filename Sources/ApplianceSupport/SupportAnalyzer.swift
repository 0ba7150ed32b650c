import ApplianceCluster
import AppliancePreflight
import Foundation

/// One known problem found in a support bundle.
public struct SupportFinding: Codable, Sendable, Equatable {
    public enum Severity: String, Codable, Sendable, Comparable {
        case error, warning, info
        var rank: Int { self == .error ? 0 : self == .warning ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    /// Where in the bundle the finding was read.
    public struct Evidence: Codable, Sendable, Equatable {
        public var file: String
        /// 1-based, when the evidence is one line.
        public var line: Int?
        public var text: String
        public init(file: String, line: Int?, text: String) {
            self.file = file
            self.line = line
            self.text = text
        }
    }

    /// Stable id (`gpu.xid`, `node.not-ready`...): scripts and runbooks key on it.
    public var id: String
    public var severity: Severity
    /// The node, pod, PDB or member it is about.
    public var subject: String
    public var summary: String
    public var evidence: [Evidence]
    public var remedy: String

    public init(
        id: String, severity: Severity, subject: String, summary: String, evidence: [Evidence], remedy: String
    ) {
        self.id = id
        self.severity = severity
        self.subject = subject
        self.summary = summary
        self.evidence = evidence
        self.remedy = remedy
    }
}

/// The analyzers of `appliance support-bundle analyze`: pure functions of the bundle's contents.
public enum SupportAnalyzer {
    /// Every finding id, with what it means (README and `--help` list them).
    public static let catalog: [(id: String, meaning: String)] = [
        ("node.unreachable", "a node did not answer SSH when the bundle was collected"),
        ("node.not-ready", "a node is NotReady in Kubernetes, with the kubelet's reason"),
        ("node.disk-full", "a filesystem of a node is (nearly) full"),
        ("gpu.xid", "the NVIDIA driver logged an Xid event (79, 48, 63, 64, 94, 95 and other critical codes)"),
        ("gpu.lost", "nvidia-smi reports a GPU lost (fallen off the bus)"),
        ("gpu.fabricmanager-stopped", "the fabric manager is not running on a node with NVSwitches"),
        ("gpu.fabricmanager-version", "the fabric manager's version differs from the driver's"),
        ("k8s.pdb-blocks-drain", "a PodDisruptionBudget allows no disruption: draining its pods' nodes blocks"),
        ("k8s.certificate-expiry", "a control-plane certificate has expired or expires within 30 days"),
        ("k8s.pod-pending-gpu", "a pod is Pending because no node has the GPUs it asks for"),
        ("etcd.member-unhealthy", "an etcd member is unhealthy or not started"),
    ]

    public static func analyze(_ b: SupportBundleContents) -> [SupportFinding] {
        var out: [SupportFinding] = []
        out += unreachable(b)
        out += notReady(b)
        for node in b.manifest.nodes {
            out += xid(b, node.name)
            out += gpuLost(b, node.name)
            out += fabricManager(b, node.name)
            out += disk(b, node.name)
            out += certificates(b, node.name)
        }
        out += pdbs(b)
        out += pendingGPU(b)
        out += etcd(b)
        return out.sorted { ($0.severity, $0.id, $0.subject) < ($1.severity, $1.id, $1.subject) }
    }

    // MARK: helpers

    /// The 1-based line numbers and texts of `text`'s lines for which `match` holds.
    static func lines(_ text: String, _ match: (Substring) -> Bool) -> [(Int, String)] {
        var out: [(Int, String)] = []
        for (i, l) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where match(l) {
            out.append((i + 1, String(l).trimmingCharacters(in: .whitespaces)))
        }
        return out
    }

    static func firstLine(_ text: String?, containing needle: String) -> Int? {
        guard let text else { return nil }
        return lines(text) { $0.contains(needle) }.first?.0
    }

    static func json(_ text: String?) -> [String: Any]? {
        guard let text else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
    }

    static func items(_ text: String?) -> [[String: Any]] { json(text)?["items"] as? [[String: Any]] ?? [] }

    static func ok(_ f: NodeFacts, _ section: String) -> String? {
        guard let s = f[section], s.exitCode == 0 else { return nil }
        return s.output
    }

    static func facts(_ b: SupportBundleContents, _ node: String) -> (path: String, facts: NodeFacts, text: String)? {
        let path = SupportLayout.node(node, "facts.txt")
        guard let t = b[path] else { return nil }
        return (path, NodeFacts.parse(t), t)
    }

    // MARK: nodes

    static func unreachable(_ b: SupportBundleContents) -> [SupportFinding] {
        b.manifest.nodes.filter { !$0.reachable }.map { n in
            let line = firstLine(b[SupportManifest.fileName], containing: "\"name\" : \"\(n.name)\"")
            return SupportFinding(
                id: "node.unreachable", severity: .error, subject: n.name,
                summary: "\(n.name) (\(n.address)) could not be collected: \(n.error ?? "no answer")",
                evidence: [.init(file: SupportManifest.fileName, line: line, text: n.error ?? "reachable: false")],
                remedy:
                    "check the node's power and its link (BMC console, switch port); once it answers SSH, collect a new bundle with --node \(n.name)"
            )
        }
    }

    static func notReady(_ b: SupportBundleContents) -> [SupportFinding] {
        let path = SupportLayout.cluster("nodes.json")
        guard let text = b[path], let nodes = try? ClusterAPI.parseNodes(Data(text.utf8)) else { return [] }
        return nodes.filter { !$0.ready }.map { n in
            var why = n.notReadyReason ?? "no Ready condition"
            var evidence: [SupportFinding.Evidence] = [
                .init(file: path, line: firstLine(text, containing: "\"name\": \"\(n.name)\""), text: "Ready: \(why)")
            ]
            let remedy: String
            if let m = b.manifest.nodes.first(where: { $0.name == n.name }), !m.reachable {
                why += "; the node did not answer SSH either (\(m.error ?? "unreachable")): it is down or cut off"
                remedy = "power the node on or restore its network; the kubelet reports Ready again within a minute"
            } else if let f = facts(b, n.name), let k = f.facts.services["kubelet"], k.active != "active" {
                why += "; kubelet is \(k.active)"
                evidence.append(
                    .init(
                        file: f.path, line: firstLine(f.text, containing: "kubelet active="),
                        text: "kubelet active=\(k.active)"))
                remedy =
                    "start the kubelet (systemctl start kubelet) and read nodes/\(n.name)/journal/kubelet.log for why it stopped"
            } else {
                remedy =
                    "read nodes/\(n.name)/journal/kubelet.log and journal/containerd.log around the time it turned NotReady"
            }
            return SupportFinding(
                id: "node.not-ready", severity: .error, subject: n.name, summary: "\(n.name) is NotReady: \(why)",
                evidence: evidence, remedy: remedy)
        }
    }

    /// `df -Pk` lines: a filesystem at or above 95 % (or with under 512 MiB left) is full; at 90 % nearly.
    static func disk(_ b: SupportBundleContents, _ node: String) -> [SupportFinding] {
        let path = SupportLayout.node(node, "disk.txt")
        guard let text = b[path] else { return [] }
        var out: [SupportFinding] = []
        var seenHeader = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = String(raw)
            if l.hasPrefix("Filesystem") {
                if seenHeader { break }  // the second table is inodes
                seenHeader = true
                continue
            }
            let p = l.split(separator: " ", omittingEmptySubsequences: true)
            guard seenHeader, p.count >= 6, let size = Int(p[1]), let used = Int(p[2]), let avail = Int(p[3]), size > 0
            else { continue }
            let mount = String(p[5])
            if ["/dev", "/run", "/sys", "/proc", "/dev/shm"].contains(mount) || mount.hasPrefix("/run/")
                || mount.hasPrefix("/sys/")
                || mount.hasPrefix("/var/lib/kubelet/pods/") || mount.hasPrefix("/run/containerd/")
            {
                continue
            }
            let percent = Double(used) / Double(used + avail) * 100
            let full = percent >= 95 || (avail < 512 * 1024 && size > 2 * 1024 * 1024)
            guard full || percent >= 90 else { continue }
            out.append(
                SupportFinding(
                    id: "node.disk-full", severity: full ? .error : .warning, subject: "\(node):\(mount)",
                    summary:
                        "\(mount) on \(node) is \(Int(percent.rounded())) % full (\(avail / 1024) MiB left of \(size / 1024) MiB)",
                    evidence: [.init(file: path, line: i + 1, text: l)],
                    remedy:
                        "free space on \(mount): old images (crictl rmi --prune), logs (journalctl --vacuum-size), blobs of bundles no longer installed in the store"
                ))
        }
        return out
    }

    // MARK: GPUs

    static let xidMeaning: [Int: (String, SupportFinding.Severity, String)] = [
        79: (
            "GPU has fallen off the bus", .error,
            "drain the node and power-cycle it (a reboot may not be enough); if it happens again, check the GPU's seating, riser and cooling, then RMA"
        ),
        48: (
            "double-bit ECC error", .error,
            "drain the node, reset the GPU (nvidia-smi -r) or reboot; check retired pages and row remapping in nvidia-smi -q; RMA if it repeats"
        ),
        63: (
            "ECC page retirement or row remapping recorded", .warning,
            "reset the GPU at the next maintenance window so the remap takes effect; watch for Xid 64"
        ),
        64: (
            "ECC page retirement or row remapping failed", .error,
            "drain the node and reboot; a GPU that cannot remap rows is an RMA candidate"
        ),
        94: (
            "contained ECC error (the application was stopped)", .warning,
            "restart the affected workload; reset the GPU when convenient; watch for Xid 95"
        ),
        95: (
            "uncontained ECC error", .error,
            "drain the node and reset the GPU (or reboot) before running anything on it again"
        ),
    ]

    static func xid(_ b: SupportBundleContents, _ node: String) -> [SupportFinding] {
        let path = SupportLayout.node(node, "kernel-xid.log")
        guard let text = b[path] else { return [] }
        var byCode: [Int: [(Int, String)]] = [:]
        for (n, l) in lines(text, { $0.contains("Xid") }) {
            for code in XidLog.parse(l) { byCode[code, default: []].append((n, l)) }
        }
        return byCode.keys.sorted().compactMap { code in
            let ls = byCode[code] ?? []
            let known = xidMeaning[code]
            let severity: SupportFinding.Severity =
                known?.1 ?? (XidLog.critical.contains(code) ? .error : .info)
            return SupportFinding(
                id: "gpu.xid", severity: severity, subject: "\(node):xid-\(code)",
                summary:
                    "\(node): Xid \(code)\(known.map { " (\($0.0))" } ?? "") logged \(ls.count) time\(ls.count == 1 ? "" : "s")",
                evidence: ls.prefix(5).map { .init(file: path, line: $0.0, text: $0.1) },
                remedy: known?.2
                    ?? (severity == .error
                        ? "drain the node and reset the GPU or reboot; look the code up in NVIDIA's Xid catalog"
                        : "usually an application error; look the code up in NVIDIA's Xid catalog"))
        }
    }

    static func gpuLost(_ b: SupportBundleContents, _ node: String) -> [SupportFinding] {
        let path = SupportLayout.node(node, "nvidia-smi-q.txt")
        guard let text = b[path] else { return [] }
        let lost = lines(text) { $0.contains("GPU is lost") }
        guard !lost.isEmpty else { return [] }
        return [
            SupportFinding(
                id: "gpu.lost", severity: .error, subject: node,
                summary: "\(node): nvidia-smi reports \(lost.count) GPU\(lost.count == 1 ? "" : "s") lost",
                evidence: lost.prefix(5).map { .init(file: path, line: $0.0, text: $0.1) },
                remedy:
                    "drain the node and power-cycle it; a GPU lost again after that needs its slot checked or an RMA")
        ]
    }

    static func fabricManager(_ b: SupportBundleContents, _ node: String) -> [SupportFinding] {
        guard let f = facts(b, node) else { return [] }
        let switches = ok(f.facts, "lspci").map { LspciListing.parse($0).nvswitches.count } ?? 0
        guard switches > 0 else { return [] }
        var out: [SupportFinding] = []
        let fm = f.facts.services["nvidia-fabricmanager"]
        if fm?.active != "active" {
            let state = fm.map { $0.active.isEmpty ? "absent" : $0.active } ?? "not reported"
            var evidence: [SupportFinding.Evidence] = [
                .init(
                    file: f.path, line: firstLine(f.text, containing: "nvidia-fabricmanager active="),
                    text: "nvidia-fabricmanager active=\(fm?.active ?? "?") enabled=\(fm?.enabled ?? "?")"),
                .init(
                    file: f.path, line: firstLine(f.text, containing: "@@appliance:begin lspci"),
                    text: "\(switches) NVSwitch bridges (lspci class 0680)"),
            ]
            let journal = SupportLayout.node(node, "journal/nvidia-fabricmanager.log")
            if b.names.contains(journal) {
                evidence.append(.init(file: journal, line: nil, text: "the fabric manager's journal"))
            }
            out.append(
                SupportFinding(
                    id: "gpu.fabricmanager-stopped", severity: .error, subject: node,
                    summary:
                        "\(node) has \(switches) NVSwitches but nvidia-fabricmanager is \(state): CUDA fails with 'system not yet initialized'",
                    evidence: evidence,
                    remedy:
                        "systemctl enable --now nvidia-fabricmanager on \(node); if it refuses to start, read its journal (a version mismatch with the driver is the usual cause)"
                ))
        }
        let fmVersion = f.facts.keyValues("fabricmanager")["version"]
        let qPath = SupportLayout.node(node, "nvidia-smi-q.txt")
        var driver: String?
        var driverEvidence: SupportFinding.Evidence?
        if let q = b[qPath], let r = try? NvidiaSMIText.parse(q), let d = r.driverVersion {
            driver = d
            driverEvidence = .init(
                file: qPath, line: firstLine(q, containing: "Driver Version"), text: "Driver Version: \(d)")
        } else if let x = ok(f.facts, "nvsmi-xml"), let r = try? NvidiaSMIXML.parse(x), let d = r.driverVersion {
            driver = d
            driverEvidence = .init(
                file: f.path, line: firstLine(f.text, containing: "<driver_version>"), text: "driver_version \(d)")
        }
        if let fmVersion, fmVersion != "none", let driver, fmVersion != driver, let driverEvidence {
            out.append(
                SupportFinding(
                    id: "gpu.fabricmanager-version", severity: .error, subject: node,
                    summary:
                        "\(node): fabric manager \(fmVersion) but driver \(driver); the fabric manager refuses to run",
                    evidence: [
                        driverEvidence,
                        .init(
                            file: f.path, line: firstLine(f.text, containing: "version=\(fmVersion)"),
                            text: "fabric manager version=\(fmVersion)"),
                    ],
                    remedy:
                        "install the nvidia-fabricmanager package of exactly the driver's version (\(driver)) from the bundle"
                ))
        }
        return out
    }

    // MARK: cluster

    static func matches(_ selector: [String: Any]?, _ labels: [String: String]) -> Bool {
        guard let selector else { return false }
        let ml = selector["matchLabels"] as? [String: String] ?? [:]
        for (k, v) in ml where labels[k] != v { return false }
        for e in selector["matchExpressions"] as? [[String: Any]] ?? [] {
            guard let k = e["key"] as? String, let op = e["operator"] as? String else { return false }
            let values = e["values"] as? [String] ?? []
            switch op {
            case "In": if !(labels[k].map { values.contains($0) } ?? false) { return false }
            case "NotIn": if labels[k].map({ values.contains($0) }) ?? false { return false }
            case "Exists": if labels[k] == nil { return false }
            case "DoesNotExist": if labels[k] != nil { return false }
            default: return false
            }
        }
        return !ml.isEmpty || !(selector["matchExpressions"] as? [[String: Any]] ?? []).isEmpty
    }

    static func isReady(_ pod: [String: Any]) -> Bool {
        let conditions = (pod["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
        return conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" }
    }

    static func intOrPercent(_ v: Any?, of total: Int, roundUp: Bool) -> Int? {
        if let i = v as? Int { return i }
        if let s = v as? String, s.hasSuffix("%"), let p = Double(s.dropLast()) {
            let x = Double(total) * p / 100
            return Int(roundUp ? x.rounded(.up) : x.rounded(.down))
        }
        if let s = v as? String, let i = Int(s) { return i }
        return nil
    }

    static func pdbs(_ b: SupportBundleContents) -> [SupportFinding] {
        let path = SupportLayout.cluster("pdbs.json")
        guard let text = b[path] else { return [] }
        let pods = items(b[SupportLayout.cluster("pods.json")])
        let cordoned = Set(
            ((try? ClusterAPI.parseNodes(Data((b[SupportLayout.cluster("nodes.json")] ?? "").utf8))) ?? [])
                .filter(\.unschedulable).map(\.name))
        var out: [SupportFinding] = []
        for pdb in items(text) {
            let meta = pdb["metadata"] as? [String: Any] ?? [:]
            let name = meta["name"] as? String ?? "?"
            let ns = meta["namespace"] as? String ?? "default"
            let spec = pdb["spec"] as? [String: Any] ?? [:]
            let selected = pods.filter { p in
                let m = p["metadata"] as? [String: Any] ?? [:]
                let phase = (p["status"] as? [String: Any])?["phase"] as? String
                return m["namespace"] as? String == ns && phase != "Succeeded" && phase != "Failed"
                    && matches(spec["selector"] as? [String: Any], m["labels"] as? [String: String] ?? [:])
            }
            let healthy = selected.filter(isReady).count
            let status = pdb["status"] as? [String: Any] ?? [:]
            let allowed: Int
            if let a = status["disruptionsAllowed"] as? Int {
                allowed = a
            } else if let maxU = intOrPercent(spec["maxUnavailable"], of: selected.count, roundUp: true) {
                allowed = max(0, maxU - (selected.count - healthy))
            } else if let minA = intOrPercent(spec["minAvailable"], of: selected.count, roundUp: true) {
                allowed = max(0, healthy - minA)
            } else {
                continue
            }
            let expected = status["expectedPods"] as? Int ?? selected.count
            guard allowed == 0, expected > 0 else { continue }
            let nodes = Set(selected.compactMap { ($0["spec"] as? [String: Any])?["nodeName"] as? String }).sorted()
            let podNames = selected.compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.sorted()
            let blocked = nodes.filter { cordoned.contains($0) }
            var evidence: [SupportFinding.Evidence] = [
                .init(
                    file: path, line: firstLine(text, containing: "\"name\": \"\(name)\""),
                    text: "\(ns)/\(name): 0 disruptions allowed")
            ]
            for n in blocked {
                evidence.append(
                    .init(
                        file: SupportLayout.cluster("nodes.json"),
                        line: firstLine(b[SupportLayout.cluster("nodes.json")], containing: "\"name\": \"\(n)\""),
                        text: "\(n) is cordoned (unschedulable): a drain is under way"))
            }
            let what =
                blocked.isEmpty
                ? "draining \(nodes.isEmpty ? "any node running them" : nodes.joined(separator: ", ")) would block"
                : "the drain of \(blocked.joined(separator: ", ")) is blocked"
            out.append(
                SupportFinding(
                    id: "k8s.pdb-blocks-drain", severity: blocked.isEmpty ? .warning : .error, subject: "\(ns)/\(name)",
                    summary:
                        "PodDisruptionBudget \(ns)/\(name) allows no disruption (\(healthy) of \(selected.count) pods healthy: \(podNames.prefix(5).joined(separator: ", "))): \(what)",
                    evidence: evidence,
                    remedy:
                        "scale the workload up so the budget allows one disruption, relax the PDB (maxUnavailable 1) for the maintenance, or move the pods first; then drain again"
                ))
        }
        return out
    }

    static func pendingGPU(_ b: SupportBundleContents) -> [SupportFinding] {
        let path = SupportLayout.cluster("pods.json")
        guard let text = b[path] else { return [] }
        var out: [SupportFinding] = []
        for pod in items(text) {
            let meta = pod["metadata"] as? [String: Any] ?? [:]
            let status = pod["status"] as? [String: Any] ?? [:]
            guard status["phase"] as? String == "Pending" else { continue }
            let name = meta["name"] as? String ?? "?"
            let ns = meta["namespace"] as? String ?? "default"
            let conditions = status["conditions"] as? [[String: Any]] ?? []
            let sched = conditions.first {
                $0["type"] as? String == "PodScheduled" && $0["status"] as? String == "False"
            }
            let message = sched?["message"] as? String ?? ""
            let containers = (pod["spec"] as? [String: Any])?["containers"] as? [[String: Any]] ?? []
            let gpus = containers.compactMap { c -> Int? in
                let r = c["resources"] as? [String: Any] ?? [:]
                let v =
                    (r["limits"] as? [String: Any])?["nvidia.com/gpu"]
                    ?? (r["requests"] as? [String: Any])?["nvidia.com/gpu"]
                return (v as? String).flatMap { Int($0) } ?? v as? Int
            }.reduce(0, +)
            guard message.contains("nvidia.com/gpu") || (gpus > 0 && sched?["reason"] as? String == "Unschedulable")
            else { continue }
            var evidence: [SupportFinding.Evidence] = [
                .init(
                    file: path, line: firstLine(text, containing: message.isEmpty ? "\"name\": \"\(name)\"" : message),
                    text: message.isEmpty ? "Unschedulable" : message)
            ]
            let eventsPath = SupportLayout.cluster("events.json")
            if let ev = b[eventsPath] {
                for e in items(ev) {
                    let io = e["involvedObject"] as? [String: Any] ?? [:]
                    if io["name"] as? String == name, e["reason"] as? String == "FailedScheduling",
                        let m = e["message"] as? String
                    {
                        evidence.append(.init(file: eventsPath, line: firstLine(ev, containing: m), text: m))
                        break
                    }
                }
            }
            out.append(
                SupportFinding(
                    id: "k8s.pod-pending-gpu", severity: .warning, subject: "\(ns)/\(name)",
                    summary:
                        "pod \(ns)/\(name) is Pending: no node has the \(gpus > 0 ? "\(gpus) " : "")GPUs it asks for",
                    evidence: evidence,
                    remedy:
                        "check the GPU nodes' allocatable nvidia.com/gpu (a GPU lost to an Xid lowers it), the queue's quota, or ask for fewer GPUs"
                ))
        }
        return out
    }

    /// `notAfter=` lines of openssl and `kubeadm certs check-expiration` rows, against the collection time.
    static func certificates(_ b: SupportBundleContents, _ node: String) -> [SupportFinding] {
        let path = SupportLayout.node(node, "certificates.txt")
        guard let text = b[path] else { return [] }
        let created = b.manifest.createdAt
        let limit = created.addingTimeInterval(30 * 86400)
        let openssl = DateFormatter()
        openssl.locale = Locale(identifier: "en_US_POSIX")
        openssl.timeZone = TimeZone(identifier: "GMT")
        openssl.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        let kubeadm = DateFormatter()
        kubeadm.locale = Locale(identifier: "en_US_POSIX")
        kubeadm.timeZone = TimeZone(identifier: "UTC")
        kubeadm.dateFormat = "MMM d, yyyy HH:mm zzz"
        var out: [SupportFinding] = []
        var current: String?
        var seen: Set<String> = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = String(raw).trimmingCharacters(in: .whitespaces)
            var name: String?
            var date: Date?
            if l.hasPrefix("== ") {
                current = String(l.dropFirst(3))
                continue
            }
            if l.hasPrefix("notAfter=") {
                let v = String(l.dropFirst("notAfter=".count)).replacingOccurrences(of: "  ", with: " ")
                name = current
                date = openssl.date(from: v)
            } else {
                let p = l.split(separator: " ", omittingEmptySubsequences: true)
                // admin.conf   Nov 30, 2027 15:00 UTC   364d   ca   no
                if p.count >= 6, p[2].hasSuffix(","), let d = kubeadm.date(from: p[1...5].joined(separator: " ")) {
                    name = String(p[0])
                    date = d
                }
            }
            guard let name, let date, date < limit, !seen.contains(name) else { continue }
            seen.insert(name)
            let expired = date <= created
            let days = Int((date.timeIntervalSince(created) / 86400).rounded(.down))
            out.append(
                SupportFinding(
                    id: "k8s.certificate-expiry", severity: .error,
                    subject: "\(node):\((name as NSString).lastPathComponent)",
                    summary: expired
                        ? "\(name) on \(node) expired on \(ISO8601DateFormatter().string(from: date))"
                        : "\(name) on \(node) expires in \(days) day\(days == 1 ? "" : "s") (\(ISO8601DateFormatter().string(from: date)))",
                    evidence: [.init(file: path, line: i + 1, text: l)],
                    remedy:
                        "renew on every control plane: kubeadm certs renew all, then restart the control-plane pods (or kubelet) and refresh admin.conf copies"
                ))
        }
        return out
    }

    static func etcd(_ b: SupportBundleContents) -> [SupportFinding] {
        let path = SupportLayout.cluster("etcd.txt")
        guard let text = b[path] else { return [] }
        var out: [SupportFinding] = []
        for (n, l) in lines(text, { $0.contains("is unhealthy") }) {
            let endpoint = l.split(separator: " ").first.map(String.init) ?? "?"
            out.append(
                SupportFinding(
                    id: "etcd.member-unhealthy", severity: .error, subject: endpoint,
                    summary: "etcd member \(endpoint) is unhealthy", evidence: [.init(file: path, line: n, text: l)],
                    remedy:
                        "bring the member's control plane back (power, network, disk); if it is gone for good, remove it (etcdctl member remove) while quorum holds and join a replacement"
                ))
        }
        for (n, l) in lines(text, { $0.contains("unstarted") }) {
            out.append(
                SupportFinding(
                    id: "etcd.member-unhealthy", severity: .error, subject: "unstarted member",
                    summary: "an etcd member was added but never started",
                    evidence: [.init(file: path, line: n, text: l)],
                    remedy: "finish the control plane's join (kubeadm join --control-plane) or remove the member")
            )
        }
        return out
    }
}
