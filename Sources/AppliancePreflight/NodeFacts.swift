import Foundation

/// One section of collector output: what a command printed and its exit code (127: tool not installed).
public struct CollectedSection: Sendable, Equatable, Codable {
    public var output: String
    public var exitCode: Int
    public var missingTool: Bool { exitCode == 127 }
    public init(output: String, exitCode: Int) {
        self.output = output
        self.exitCode = exitCode
    }
}

/// Everything a node's collector printed, by section, plus timing for clock-skew measurement.
public struct NodeFacts: Sendable, Equatable {
    public var sections: [String: CollectedSection]
    /// Admin-host clock when the run started and when it returned (seconds since 1970).
    public var sentAt: Double
    public var receivedAt: Double

    public init(sections: [String: CollectedSection], sentAt: Double = 0, receivedAt: Double = 0) {
        self.sections = sections
        self.sentAt = sentAt
        self.receivedAt = receivedAt
    }

    public subscript(_ name: String) -> CollectedSection? { sections[name] }

    /// Splits `@@appliance:begin NAME` ... `@@appliance:end NAME RC` output. Text outside sections and
    /// sections without an end marker (a collector killed mid-way) are dropped.
    public static func parse(_ stdout: String, sentAt: Double = 0, receivedAt: Double = 0) -> NodeFacts {
        var sections: [String: CollectedSection] = [:]
        var current: String?
        var lines: [Substring] = []
        for line in stdout.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("@@appliance:begin ") {
                current = String(line.dropFirst("@@appliance:begin ".count)).trimmingCharacters(in: .whitespaces)
                lines = []
            } else if line.hasPrefix("@@appliance:end "), let name = current {
                let parts = line.split(separator: " ")
                let rc = parts.count >= 3 ? Int(parts[2]) ?? -1 : -1
                var body = lines.joined(separator: "\n")
                if body.hasSuffix("\n") { body.removeLast() }
                sections[name] = CollectedSection(output: body, exitCode: rc)
                current = nil
            } else if current != nil {
                lines.append(line)
            }
        }
        return NodeFacts(sections: sections, sentAt: sentAt, receivedAt: receivedAt)
    }

    // MARK: Derived values (nil when absent or unreadable)

    /// Output of a section that ran successfully.
    func ok(_ name: String) -> String? {
        guard let s = sections[name], s.exitCode == 0 else { return nil }
        return s.output
    }

    var lines: (String) -> [String] {
        { name in (self.sections[name]?.output ?? "").split(separator: "\n").map { String($0) } }
    }

    public var osRelease: [String: String] {
        var out: [String: String] = [:]
        for l in lines("os-release") {
            guard let eq = l.firstIndex(of: "=") else { continue }
            out[String(l[..<eq])] = String(l[l.index(after: eq)...]).trimmingCharacters(
                in: CharacterSet(charactersIn: "\"'"))
        }
        return out
    }

    public var kernel: String? { lines("uname").first?.split(separator: " ").first.map(String.init) }
    public var hostname: String? { let m = lines("meta"); return m.count > 1 ? m[1] : nil }
    public var nodeTime: Double? { lines("meta").first.flatMap { Double($0) } }
    public var cpuCount: Int? { lines("cpu").first.flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }
    public var cpuModel: String? { let l = lines("cpu"); return l.count > 1 ? l[1] : nil }

    public var meminfo: [String: Int] {
        var out: [String: Int] = [:]
        for l in lines("meminfo") {
            let p = l.split(separator: ":")
            if p.count == 2, let v = Int(p[1].trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "") {
                out[String(p[0])] = v
            }
        }
        return out
    }

    /// Mount point -> (size KiB, available KiB), from `df -Pk`.
    public var filesystems: [(mount: String, sizeKiB: Int, availKiB: Int)] {
        lines("disk").dropFirst().compactMap { l in
            let p = l.split(separator: " ", omittingEmptySubsequences: true)
            guard p.count >= 6, let size = Int(p[1]), let avail = Int(p[3]) else { return nil }
            return (String(p[5]), size, avail)
        }
    }

    public var sysctl: [String: String] {
        var out: [String: String] = [:]
        for l in lines("sysctl") {
            if let eq = l.firstIndex(of: "=") { out[String(l[..<eq])] = String(l[l.index(after: eq)...]) }
        }
        return out
    }

    public var modules: Set<String>? { sections["modules"]?.exitCode == 0 ? Set(lines("modules")) : nil }

    public var keyValues: (String) -> [String: String] {
        { name in
            var out: [String: String] = [:]
            for l in self.lines(name) {
                if let eq = l.firstIndex(of: "=") { out[String(l[..<eq])] = String(l[l.index(after: eq)...]) }
            }
            return out
        }
    }

    /// `ip -o link`: name -> (mtu, state, mac).
    public var links: [(name: String, mtu: Int, up: Bool, mac: String?)] {
        lines("links").compactMap { l in
            // 2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc ... state UP ... link/ether aa:bb:.. brd ...
            let p = l.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard p.count > 3, let mi = p.firstIndex(of: "mtu"), mi + 1 < p.count, let mtu = Int(p[mi + 1]) else {
                return nil
            }
            let name =
                p[1].trimmingCharacters(in: CharacterSet(charactersIn: ":")).split(separator: "@").first.map(
                    String.init) ?? p[1]
            let up = p[2].contains("UP") && !p[2].contains("NO-CARRIER")
            let mac = p.firstIndex(of: "link/ether").flatMap { $0 + 1 < p.count ? p[$0 + 1] : nil }
            return (name, mtu, up, mac)
        }
    }

    /// Physical-looking NICs (not lo, veth, bridges, docker, cni, vxlan).
    public var physicalLinks: [(name: String, mtu: Int, up: Bool, mac: String?)] {
        links.filter { l in
            !["lo"].contains(l.name)
                && !["veth", "docker", "cni", "flannel", "cali", "vxlan", "tunl", "virbr", "br-", "kube", "ib"].contains
                { l.name.hasPrefix($0) }
        }
    }

    public var listeningPorts: Set<Int> {
        var out = Set<Int>()
        for l in lines("listen") {
            let p = l.split(separator: " ", omittingEmptySubsequences: true)
            // ss -ltnH: State Recv-Q Send-Q Local:Port Peer:Port
            for f in p where f.contains(":") {
                if let port = f.split(separator: ":").last.flatMap({ Int($0) }) { out.insert(port); break }
            }
        }
        return out
    }

    /// unit -> (active, enabled).
    public var services: [String: (active: String, enabled: String)] {
        var out: [String: (String, String)] = [:]
        for l in lines("services") {
            let p = l.split(separator: " ")
            guard p.count >= 3 else { continue }
            out[String(p[0])] = (String(p[1].dropFirst("active=".count)), String(p[2].dropFirst("enabled=".count)))
        }
        return out
    }

    /// binary -> path or nil.
    public var executables: [String: String?] {
        var out: [String: String?] = [:]
        for l in lines("exec") {
            let p = l.split(separator: " ")
            guard p.count == 2 else { continue }
            out[String(p[0])] = p[1] == "MISSING" ? .some(nil) : String(p[1])
        }
        return out
    }
}
