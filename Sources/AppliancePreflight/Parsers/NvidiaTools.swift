import Foundation

/// `nvidia-smi topo -m`: the GPU x GPU connection matrix plus CPU/NUMA affinity. Tab- or space-separated,
/// with or without ANSI underline, with `mlx5_N` or `NICn` columns.
public struct NvidiaTopology: Sendable, Equatable {
    /// Column names in order (`GPU0`..., `mlx5_0`/`NIC0`...).
    public var devices: [String]
    /// Connection between two devices (`X`, `NV12`, `SYS`, `PXB`...).
    public var links: [String: [String: String]]
    public var cpuAffinity: [String: String]
    public var numaAffinity: [String: String]

    public var gpus: [String] { devices.filter { $0.hasPrefix("GPU") } }

    public func link(_ a: String, _ b: String) -> String? { links[a]?[b] }

    /// All GPU-to-GPU connections (off the diagonal).
    public var gpuPairs: [(String, String, String)] {
        var out: [(String, String, String)] = []
        for a in gpus { for b in gpus where a != b { if let l = link(a, b) { out.append((a, b, l)) } } }
        return out
    }

    public static func parse(_ text: String) throws(ParseError) -> NvidiaTopology {
        let lines = text.split(separator: "\n").map { Field.stripANSI(String($0)) }
        guard
            let headerAt = lines.firstIndex(where: { ($0.hasPrefix("\t") || $0.hasPrefix(" ")) && $0.contains("GPU0") })
        else { throw ParseError("nvidia-smi topo -m", "no header row with GPU0") }
        // Header cells: split on tabs if present, else on blanks, then re-join "CPU Affinity" and friends.
        func cells(_ s: String) -> [String] {
            if s.contains("\t") {
                return s.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            }
            var out: [String] = []
            for tok in s.split(separator: " ").map(String.init) {
                if tok == "Affinity" || tok == "ID" || (tok == "NUMA" && out.last == "GPU") {
                    out[out.count - 1] += " " + tok
                } else {
                    out.append(tok)
                }
            }
            return out
        }
        let header = cells(lines[headerAt])
        let devices = header.filter { !$0.isEmpty && !$0.contains("Affinity") && $0 != "GPU NUMA ID" }
        var topo = NvidiaTopology(devices: devices, links: [:], cpuAffinity: [:], numaAffinity: [:])
        for line in lines[(headerAt + 1)...] {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("Legend") { if !topo.links.isEmpty { break } else { continue } }
            var row =
                line.contains("\t")
                ? line.split(separator: "\t", omittingEmptySubsequences: false).map {
                    $0.trimmingCharacters(in: .whitespaces)
                }
                : trimmed.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard let name = row.first, devices.contains(name) else { continue }
            row.removeFirst()
            var map: [String: String] = [:]
            for (i, d) in devices.enumerated() where i < row.count { map[d] = row[i] }
            topo.links[name] = map
            if row.count > devices.count { topo.cpuAffinity[name] = row[devices.count] }
            if row.count > devices.count + 1 { topo.numaAffinity[name] = row[devices.count + 1] }
        }
        guard !topo.links.isEmpty else { throw ParseError("nvidia-smi topo -m", "no device rows") }
        return topo
    }
}

/// `nvidia-smi nvlink -s` (`--status`): per GPU, each link's speed or `<inactive>`.
public struct NvidiaNVLinkStatus: Sendable, Equatable {
    public struct GPU: Sendable, Equatable {
        public var index: Int
        public var name: String
        public var uuid: String?
        /// Link number -> GB/s; nil for an inactive link.
        public var links: [Int: Double?]
        public var activeLinks: Int { links.values.filter { $0 != nil }.count }
        public var inactiveLinks: [Int] { links.filter { $0.value == nil }.map(\.key).sorted() }
        public var minimumSpeed: Double? { links.values.compactMap { $0 }.min() }
    }
    public var gpus: [GPU]

    public static func parse(_ text: String) throws(ParseError) -> NvidiaNVLinkStatus {
        var gpus: [GPU] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("GPU "), let colon = line.firstIndex(of: ":"),
                let idx = Int(line[line.index(line.startIndex, offsetBy: 4)..<colon])
            {
                var name = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                var uuid: String?
                if let u = name.range(of: " (UUID: ") {
                    uuid = String(name[u.upperBound...].dropLast())
                    name = String(name[..<u.lowerBound])
                }
                gpus.append(GPU(index: idx, name: name, uuid: uuid, links: [:]))
            } else if line.hasPrefix("Link "), !gpus.isEmpty, let colon = line.firstIndex(of: ":"),
                let n = Int(line[line.index(line.startIndex, offsetBy: 5)..<colon])
            {
                let v = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if v.lowercased().contains("inactive") || v.lowercased().contains("disabled") {
                    gpus[gpus.count - 1].links[n] = .some(nil)
                } else if let speed = Field.double(v) {
                    gpus[gpus.count - 1].links[n] = speed
                } else {
                    throw ParseError(
                        "nvidia-smi nvlink -s", "link \(n) of GPU \(gpus[gpus.count - 1].index) reads '\(v)'")
                }
            }
        }
        return NvidiaNVLinkStatus(gpus: gpus)
    }
}

/// `nvidia-smi nvlink -e`: error counters; only the sum per GPU matters for preflight.
public enum NvidiaNVLinkErrors {
    /// GPU index -> sum of replay/recovery/CRC counters.
    public static func parse(_ text: String) -> [Int: Int] {
        var out: [Int: Int] = [:]
        var current: Int?
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("GPU "), let colon = line.firstIndex(of: ":") {
                current = Int(line[line.index(line.startIndex, offsetBy: 4)..<colon])
                if let c = current { out[c] = out[c] ?? 0 }
            } else if let c = current, let colon = line.lastIndex(of: ":"),
                line.lowercased().contains("replay") || line.lowercased().contains("recovery")
                    || line.lowercased().contains("crc")
            {
                out[c, default: 0] += Field.int(String(line[line.index(after: colon)...])) ?? 0
            }
        }
        return out
    }
}

/// `lspci -nn`: NVIDIA GPUs (class 0300/0302), NVSwitches (0680), Mellanox NICs (vendor 15b3).
public struct LspciListing: Sendable, Equatable {
    public struct Device: Sendable, Equatable {
        public var slot: String
        public var classCode: String
        public var description: String
        public var vendorID: String
        public var deviceID: String
    }
    public var devices: [Device]

    public var nvidiaGPUs: [Device] {
        devices.filter { $0.vendorID == "10de" && ["0300", "0302"].contains($0.classCode) }
    }
    public var nvswitches: [Device] { devices.filter { $0.vendorID == "10de" && $0.classCode == "0680" } }
    public var mellanox: [Device] { devices.filter { $0.vendorID == "15b3" } }

    public static func parse(_ text: String) -> LspciListing {
        var out: [Device] = []
        for raw in text.split(separator: "\n") {
            let line = String(raw)
            // 10:00.0 3D controller [0302]: NVIDIA Corporation GA100 [A100 SXM4 80GB] [10de:20b2] (rev a1)
            guard let sp = line.firstIndex(of: " "), line[..<sp].contains(":"), line[..<sp].contains("."),
                let cOpen = line.range(of: " ["),
                let cClose = line.range(of: "]: ", range: cOpen.upperBound..<line.endIndex)
            else { continue }
            let cls = String(line[cOpen.upperBound..<cClose.lowerBound])
            let rest = line[cClose.upperBound...]
            // The last [vvvv:dddd] is the id pair.
            var vendor = "", device = ""
            var search = rest.startIndex..<rest.endIndex
            while let open = rest.range(of: "[", range: search),
                let close = rest.range(of: "]", range: open.upperBound..<rest.endIndex)
            {
                let inner = rest[open.upperBound..<close.lowerBound]
                let parts = inner.split(separator: ":")
                if parts.count == 2, parts.allSatisfy({ $0.count == 4 && $0.allSatisfy(\.isHexDigit) }) {
                    vendor = parts[0].lowercased()
                    device = parts[1].lowercased()
                }
                search = close.upperBound..<rest.endIndex
            }
            guard !vendor.isEmpty, cls.count == 4 else { continue }
            out.append(
                Device(
                    slot: String(line[..<sp]), classCode: cls, description: String(rest), vendorID: vendor,
                    deviceID: device))
        }
        return LspciListing(devices: out)
    }
}

/// `dcgmi diag` table output (and `-j` JSON): test name -> result.
public struct DCGMDiag: Sendable, Equatable {
    public var version: String?
    /// In order; result is `Pass`, `Fail`, `Warn`, `Skip` (first word of the cell).
    public var results: [(test: String, result: String)]

    public static func == (a: DCGMDiag, b: DCGMDiag) -> Bool {
        a.version == b.version && a.results.map(\.test) == b.results.map(\.test)
            && a.results.map(\.result) == b.results.map(\.result)
    }

    public var failed: [String] { results.filter { $0.result == "Fail" }.map(\.test) }
    public var warned: [String] { results.filter { $0.result == "Warn" }.map(\.test) }

    public static func parse(_ text: String) throws(ParseError) -> DCGMDiag {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasPrefix("{"), let json = try? JSONSerialization.jsonObject(with: Data(t.utf8)) as? [String: Any] {
            return parseJSON(json)
        }
        var out = DCGMDiag(version: nil, results: [])
        var lastTest: String?
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard line.hasPrefix("|"), !line.hasPrefix("|-----"), !line.hasPrefix("|===") else { continue }
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            guard cells.count >= 3 else { continue }
            let name = cells[1], value = cells[2]
            if name == "Diagnostic" { continue }
            if name == "DCGM Version" { out.version = value; continue }
            if name.isEmpty {
                // A wrapped continuation line of the previous cell.
                _ = lastTest
                continue
            }
            let first = value.split(separator: " ").first.map(String.init) ?? ""
            if ["Pass", "Fail", "Warn", "Skip"].contains(first) {
                out.results.append((name, first))
                lastTest = name
            }
        }
        guard !out.results.isEmpty else { throw ParseError("dcgmi diag", "no test results in the table") }
        return out
    }

    static func parseJSON(_ json: [String: Any]) -> DCGMDiag {
        var out = DCGMDiag(version: json["version"] as? String, results: [])
        let categories = (json["DCGM GPU Diagnostic"] as? [String: Any])?["test_categories"] as? [[String: Any]] ?? []
        for c in categories {
            for t in c["tests"] as? [[String: Any]] ?? [] {
                let name = t["name"] as? String ?? "?"
                let results = t["results"] as? [[String: Any]] ?? []
                let statuses = results.compactMap { $0["status"] as? String }
                let r =
                    statuses.contains("Fail")
                    ? "Fail"
                    : statuses.contains("Warn")
                        ? "Warn" : statuses.allSatisfy({ $0 == "Skip" }) && !statuses.isEmpty ? "Skip" : "Pass"
                out.results.append((name, r))
            }
        }
        return out
    }
}

/// `ibstat`: channel adapters and their ports.
public struct IBStat: Sendable, Equatable {
    public struct Port: Sendable, Equatable {
        public var number: Int
        public var state: String
        public var physicalState: String
        public var rateGbps: Int?
        public var linkLayer: String?
    }
    public struct Adapter: Sendable, Equatable {
        public var name: String
        public var caType: String?
        public var firmware: String?
        public var ports: [Port]
    }
    public var adapters: [Adapter]

    public static func parse(_ text: String) -> IBStat {
        var adapters: [Adapter] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("CA '"), line.hasSuffix("'") {
                adapters.append(Adapter(name: String(line.dropFirst(4).dropLast()), ports: []))
                continue
            }
            guard !adapters.isEmpty, let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            var a = adapters[adapters.count - 1]
            if key == "CA type" {
                a.caType = value
            } else if key == "Firmware version" {
                a.firmware = value
            } else if key.hasPrefix("Port "), value.isEmpty, let n = Int(key.dropFirst(5)) {
                a.ports.append(Port(number: n, state: "", physicalState: "", rateGbps: nil, linkLayer: nil))
            } else if !a.ports.isEmpty {
                var p = a.ports[a.ports.count - 1]
                switch key {
                case "State": p.state = value
                case "Physical state": p.physicalState = value
                case "Rate": p.rateGbps = Field.int(value)
                case "Link layer": p.linkLayer = value
                default: break
                }
                a.ports[a.ports.count - 1] = p
            }
            adapters[adapters.count - 1] = a
        }
        return IBStat(adapters: adapters)
    }
}

/// Kernel log lines `NVRM: Xid (PCI:0000:3b:00): 79, pid=..., GPU has fallen off the bus.` and device-plugin
/// `XidCriticalError: Xid=79` lines.
public enum XidLog {
    /// Xid codes that mean reset, reboot or RMA (from the AWS health-check table).
    public static let critical: Set<Int> = [48, 54, 64, 74, 79, 95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158]

    public static func parse(_ text: String) -> [Int] {
        var out: [Int] = []
        for raw in text.split(separator: "\n") {
            let line = String(raw)
            if let r = line.range(of: "Xid=") {
                if let v = Field.int(String(line[r.upperBound...])) { out.append(v) }
            } else if let r = line.range(of: "NVRM: Xid ("),
                let close = line.range(of: "): ", range: r.upperBound..<line.endIndex)
            {
                if let v = Field.int(String(line[close.upperBound...])) { out.append(v) }
            }
        }
        return out
    }
}
