import Foundation

/// The profiles shipped in a `profiles/` folder, one `NAME.yaml` each.
public struct ProfileCatalog: Sendable {
    public var directory: String
    public var names: [String]

    public init(directory: String) {
        self.directory = directory
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        names = files.filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    public func path(of name: String) -> String { (directory as NSString).appendingPathComponent("\(name).yaml") }

    /// Loads one profile; an unknown name lists the known ones.
    public func load(_ name: String) throws(ProfileError) -> HardwareProfile {
        guard names.contains(name) else { throw ProfileError.unknown(name: name, known: names, directory: directory) }
        do {
            return try HardwareProfile.load(path: path(of: name))
        } catch {
            throw ProfileError.invalid(error)
        }
    }

    public func loadAll() throws(ProfileError) -> [HardwareProfile] {
        var out: [HardwareProfile] = []
        for n in names { out.append(try load(n)) }
        return out
    }
}

public enum ProfileError: Error, Sendable, ApplianceFailure {
    case unknown(name: String, known: [String], directory: String)
    case invalid(DiagnosticsError)

    public var message: String {
        switch self {
        case .unknown(let name, let known, let dir):
            "unknown profile '\(name)'; known profiles: \(known.isEmpty ? "(none in \(dir))" : known.joined(separator: ", "))"
        case .invalid(let e): e.description
        }
    }
    public var hint: String? {
        switch self {
        case .unknown: "run `appliance profile list` to see them with a summary"
        case .invalid: "fix every problem listed; positions are file:line:column"
        }
    }
    public var exitStatus: ExitStatus { self.isUnknown ? .usage : .failure }
    private var isUnknown: Bool { if case .unknown = self { true } else { false } }
}

extension HardwareProfile {
    public static func load(path: String) throws(DiagnosticsError) -> HardwareProfile {
        let (reader, root) = try YAMLReader.load(path: path, subject: "profile")
        let p = decode(root)
        try reader.finish()
        guard var p else {
            throw DiagnosticsError(subject: "profile", diagnostics: [Diagnostic("unreadable profile", at: nil)])
        }
        p.sourcePath = path
        return p
    }

    public static func parse(text: String, file: String) throws(DiagnosticsError) -> HardwareProfile {
        let (reader, root) = try YAMLReader.parse(text: text, file: file, subject: "profile")
        let p = decode(root)
        try reader.finish()
        guard let p else {
            throw DiagnosticsError(subject: "profile", diagnostics: [Diagnostic("unreadable profile", at: nil)])
        }
        return p
    }

    static func decode(_ root: YAMLValue) -> HardwareProfile? {
        let r = root.reader
        guard
            let (doc, meta) = root.resource(apiVersion: apiVersion, kind: kind, metadataKeys: ["name", "description"])
        else { return nil }
        let name = meta?.require("name")?.nonEmptyString()
        let summary = meta?["description"]?.string() ?? ""
        guard
            let spec = doc.require("spec")?.mapping(allowing: [
                "os", "gpuStack", "kubernetes", "roles", "controlPlane", "queues",
            ])
        else { return nil }

        var releases: [OSRelease] = []
        if let os = spec.require("os")?.mapping(allowing: ["releases"]), let items = os.require("releases")?.sequence()
        {
            for item in items {
                guard let m = item.mapping(allowing: ["id", "version", "kernels", "status"]) else { continue }
                let id = m.require("id")?.nonEmptyString()
                let version = m.require("version")?.nonEmptyString()
                let kernels = m["kernels"]?.stringList() ?? []
                let status = m["status"]?.oneOf(["supported", "deprecated"]) ?? "supported"
                if let id, let version {
                    releases.append(OSRelease(id: id, version: version, kernels: kernels, status: status))
                }
            }
            if items.isEmpty { r.error("'spec.os.releases' must list at least one release", at: os.owner) }
        }

        var stack: GPUStack?
        if let g = spec.require("gpuStack")?.mapping(allowing: [
            "mode", "driverVersions", "deniedDriverVersions", "operatorVersion", "migStrategy",
        ]) {
            let mode = g.require("mode")?.oneOf(GPUStackMode.allCases.map(\.rawValue)).flatMap(
                GPUStackMode.init(rawValue:))
            let drivers = g.require("driverVersions")?.stringList() ?? []
            if let v = g["driverVersions"] {
                for d in drivers where !isDriverVersion(d) {
                    r.error("driver version '\(d)' must look like 535.161.08", at: v)
                }
            }
            let denied = g["deniedDriverVersions"]?.stringList() ?? []
            let op = g.require("operatorVersion")?.nonEmptyString()
            let mig = g["migStrategy"]?.oneOf(["none", "single", "mixed"]) ?? "none"
            if let mode, let op {
                stack = GPUStack(
                    mode: mode, driverVersions: drivers, deniedDriverVersions: denied, operatorVersion: op,
                    migStrategy: mig)
            }
        }

        var k8s: KubernetesSettings?
        if let k = spec.require("kubernetes")?.mapping(allowing: [
            "version", "podCIDR", "serviceCIDR", "cni", "containerRuntime", "cgroupDriver", "dnsDomain", "roleLabels",
        ]) {
            let version = k.require("version")?.nonEmptyString()
            if let v = k["version"], let s = version,
                s.split(separator: ".").count != 3 || s.contains(where: { !$0.isNumber && $0 != "." })
            {
                r.error("'spec.kubernetes.version' must look like 1.34.3, not '\(s)'", at: v)
            }
            let pod = k.require("podCIDR").flatMap { cidr($0) }
            let svc = k.require("serviceCIDR").flatMap { cidr($0) }
            let cni = k["cni"]?.oneOf(["calico", "cilium", "flannel"]) ?? "calico"
            let rt = k["containerRuntime"]?.oneOf(["containerd"]) ?? "containerd"
            let cg = k["cgroupDriver"]?.oneOf(["systemd", "cgroupfs"]) ?? "systemd"
            let dnsDomain = k["dnsDomain"]?.nonEmptyString() ?? "cluster.local"
            if let dv = k["dnsDomain"], !SiteInventory.isDNSName(dnsDomain) {
                r.error("'spec.kubernetes.dnsDomain' must be a DNS name like cluster.local, not '\(dnsDomain)'", at: dv)
            }
            let labels =
                k["roleLabels"]?.oneOf(RoleLabelStyle.allCases.map(\.rawValue)).flatMap { RoleLabelStyle(rawValue: $0) }
                ?? .standard
            if let pod, let svc, SiteInventory.cidrsOverlap(pod, svc) {
                r.error("'spec.kubernetes.podCIDR' \(pod) overlaps 'serviceCIDR' \(svc)", at: k["podCIDR"])
            }
            if let version, let pod, let svc {
                k8s = KubernetesSettings(
                    version: version, podCIDR: pod, serviceCIDR: svc, cni: cni, containerRuntime: rt, cgroupDriver: cg,
                    dnsDomain: dnsDomain, roleLabels: labels)
            }
        }

        var roles: [NodeRole: RoleRequirements] = [:]
        if let rm = spec.require("roles")?.mapping(allowing: NodeRole.names) {
            for key in rm.order {
                guard let role = NodeRole(rawValue: key), let v = rm[key] else { continue }
                if let req = roleRequirements(v) { roles[role] = req }
            }
            if roles[.controlPlane] == nil { r.error("a profile must define the 'control-plane' role", at: rm.owner) }
        }

        var sizing: ControlPlaneSizing?
        if let cp = spec.require("controlPlane")?.mapping(allowing: ["nodes", "components"]) {
            let nodes = cp.require("nodes")?.int(in: 1...7)
            if let n = nodes, n % 2 == 0, let v = cp["nodes"] {
                r.error("'spec.controlPlane.nodes' must be odd for etcd quorum, not \(n)", at: v)
            }
            var comps: [PlatformComponent] = []
            for item in cp.require("components")?.sequence() ?? [] {
                guard
                    let m = item.mapping(allowing: [
                        "name", "cpuRequest", "cpuLimit", "memoryRequest", "memoryLimit", "replicas", "volumeGiB",
                    ])
                else { continue }
                let name = m.require("name")?.nonEmptyString()
                let cr = m.require("cpuRequest").flatMap { quantity($0, memory: false) }
                let cl = m.require("cpuLimit").flatMap { quantity($0, memory: false) }
                let mr = m.require("memoryRequest").flatMap { quantity($0, memory: true) }
                let ml = m.require("memoryLimit").flatMap { quantity($0, memory: true) }
                let replicas = m["replicas"]?.int(in: 1...100) ?? 1
                let vol = m["volumeGiB"]?.int(in: 0...1_000_000) ?? 0
                if let name, let cr, let cl, let mr, let ml {
                    comps.append(
                        PlatformComponent(
                            name: name, cpuRequest: cr, cpuLimit: cl, memoryRequest: mr, memoryLimit: ml,
                            replicas: replicas, volumeGiB: vol))
                }
            }
            if let nodes { sizing = ControlPlaneSizing(nodes: nodes, components: comps) }
        }

        var queues: [SchedulerQueue] = []
        for item in spec["queues"]?.sequence() ?? [] {
            guard let m = item.mapping(allowing: ["name", "gpuQuota", "overQuota", "priority"]) else { continue }
            let n = m.require("name")?.nonEmptyString()
            let q = m.require("gpuQuota")?.int(in: 0...100_000)
            let over = m["overQuota"]?.bool() ?? false
            let pri = m["priority"]?.int(in: 0...1000) ?? 50
            if queues.contains(where: { $0.name == n }) {
                r.error("queue '\(n ?? "")' is defined twice", at: m["name"])
            }
            if let n, let q { queues.append(SchedulerQueue(name: n, gpuQuota: q, overQuota: over, priority: pri)) }
        }

        guard let name, let stack, let k8s, let sizing else { return nil }
        return HardwareProfile(
            name: name, summary: summary, os: OSSupport(releases: releases), gpuStack: stack, kubernetes: k8s,
            roles: roles, controlPlane: sizing, queues: queues)
    }

    private static func roleRequirements(_ v: YAMLValue) -> RoleRequirements? {
        let r = v.reader
        guard
            let m = v.mapping(allowing: [
                "cpus", "memoryGiB", "diskGiB", "stagingHeadroomGiB", "cpuModelContains", "gpu", "nics",
            ])
        else { return nil }
        let cpus = m.require("cpus")?.int(in: 1...4096)
        let mem = m.require("memoryGiB")?.int(in: 1...65536)
        let disk = m.require("diskGiB")?.int(in: 1...1_000_000)
        let head = m["stagingHeadroomGiB"]?.int(in: 0...100_000) ?? 20
        let cpuModel = m["cpuModelContains"]?.nonEmptyString()
        var gpu: GPURequirement?
        if let g = m["gpu"]?.mapping(allowing: [
            "models", "counts", "memoryMiB", "pciDeviceIDs", "nvlinksPerGPU", "nvlinkSpeedGBps", "nvswitches",
            "nvswitchPciDeviceID", "fabricManager", "ecc",
        ]) {
            let models = g.require("models")?.stringList() ?? []
            var counts: [Int] = []
            if let cv = g.require("counts") {
                if let seq = cv.sequence() { counts = seq.compactMap { $0.int(in: 1...64) } }
            }
            let memMiB = g.require("memoryMiB")?.int(in: 1...10_000_000)
            let ids = (g.require("pciDeviceIDs")?.stringList() ?? []).map { $0.lowercased() }
            if let iv = g["pciDeviceIDs"] {
                for id in ids where id.count != 4 || !id.allSatisfy(\.isHexDigit) {
                    r.error("PCI device id '\(id)' must be 4 hex digits like 20b2", at: iv)
                }
            }
            let links = g["nvlinksPerGPU"]?.int(in: 0...64) ?? 0
            let speed = g["nvlinkSpeedGBps"]?.double() ?? 0
            let sw = g["nvswitches"]?.int(in: 0...64) ?? 0
            let swID = g["nvswitchPciDeviceID"]?.nonEmptyString()?.lowercased()
            let fm = g["fabricManager"]?.bool() ?? (sw > 0)
            if sw > 0 && !fm { r.error("a profile with NVSwitches needs fabricManager: true", at: g["fabricManager"]) }
            let ecc = g["ecc"]?.oneOf(["required", "recommended"]) ?? "required"
            if models.isEmpty { r.error("'gpu.models' must name at least one model", at: g.owner) }
            if let memMiB, !counts.isEmpty {
                gpu = GPURequirement(
                    models: models, counts: counts, memoryMiB: memMiB, pciDeviceIDs: ids, nvlinksPerGPU: links,
                    nvlinkSpeedGBps: speed, nvswitches: sw, nvswitchPciDeviceID: swID, fabricManager: fm, ecc: ecc)
            }
        }
        var nics: [NICRequirement] = []
        for item in m["nics"]?.sequence() ?? [] {
            guard let n = item.mapping(allowing: ["kind", "count", "minRateGbps", "model"]) else { continue }
            let kind = n.require("kind")?.oneOf(["ethernet", "infiniband"])
            let count = n.require("count")?.int(in: 1...64)
            let rate = n.require("minRateGbps")?.int(in: 1...3200)
            if let kind, let count, let rate {
                nics.append(
                    NICRequirement(kind: kind, count: count, minRateGbps: rate, model: n["model"]?.nonEmptyString()))
            }
        }
        guard let cpus, let mem, let disk else { return nil }
        return RoleRequirements(
            cpus: cpus, memoryGiB: mem, diskGiB: disk, stagingHeadroomGiB: head, cpuModelContains: cpuModel, gpu: gpu,
            nics: nics)
    }

    static func isDriverVersion(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return (2...3).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }

    /// A Kubernetes quantity: CPU `500m`/`2`/`0.5`, memory `512Mi`/`4Gi`.
    static func quantity(_ v: YAMLValue, memory: Bool) -> String? {
        guard let s = v.string() else { return nil }
        let ok: Bool
        if memory {
            let units = ["Ki", "Mi", "Gi", "Ti"]
            ok = units.contains { s.hasSuffix($0) && Int(s.dropLast(2)) != nil }
        } else {
            ok = (s.hasSuffix("m") && Int(s.dropLast()) != nil) || Double(s) != nil
        }
        if !ok {
            v.reader.error(
                "\(v.displayPath) must be a Kubernetes \(memory ? "memory quantity like 512Mi or 4Gi" : "CPU quantity like 500m or 2"), not '\(s)'",
                at: v)
            return nil
        }
        return s
    }

    /// An IPv4 CIDR `a.b.c.d/n`.
    static func cidr(_ v: YAMLValue) -> String? {
        guard let s = v.string() else { return nil }
        if !isIPv4CIDR(s) {
            v.reader.error("\(v.displayPath) must be an IPv4 CIDR like 10.96.0.0/12, not '\(s)'", at: v)
            return nil
        }
        return s
    }

    public static func isIPv4CIDR(_ s: String) -> Bool {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let bits = Int(parts[1]), (0...32).contains(bits) else { return false }
        return isIPv4(String(parts[0]))
    }

    public static func isIPv4(_ s: String) -> Bool {
        let o = s.split(separator: ".", omittingEmptySubsequences: false)
        return o.count == 4
            && o.allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isNumber) && (Int($0) ?? 999) <= 255 }
    }
}
