import ApplianceModel
import Foundation

/// What a per-node analyzer sees.
public struct NodeContext: Sendable {
    public var node: String
    public var address: String
    public var roles: [NodeRole]
    public var facts: NodeFacts
    public var profile: HardwareProfile
    public var site: SiteInventory?
    public var check: CheckDefinition
    /// Size of the bundle to stage, GiB (0 when unknown).
    public var bundleGiB: Double
    /// The image references of the bundle to install (nil when preflight runs without one).
    public var bundleImages: [String]? = nil

    public var requirements: HardwareProfile.RoleRequirements? { profile.requirements(for: roles) }
    public var gpuRequirement: HardwareProfile.GPURequirement? { roles.contains(.gpuWorker) ? requirements?.gpu : nil }
    public func threshold(_ key: String, _ fallback: Double) -> Double {
        check.threshold(key, profile: profile.name, fallback: fallback)
    }

    /// The node's GPUs from `nvidia-smi -q -x`, else the CSV query. Throws `ParseError` for garbled output.
    public func smi() throws(ParseError) -> NvidiaSMIReport? {
        if let s = facts["nvsmi-xml"], s.exitCode == 0, !s.output.isEmpty {
            return try NvidiaSMIXML.parse(s.output)
        }
        if let s = facts["nvsmi-csv"], s.exitCode == 0, !s.output.isEmpty {
            let gpus = try NvidiaSMIQueryCSV.parse(s.output)
            return NvidiaSMIReport(driverVersion: gpus.first?.driverVersion, gpus: gpus)
        }
        return nil
    }
}

public typealias NodeAnalyzer = @Sendable (NodeContext) -> Verdict

/// The analyzers, by check id. Every catalogue id has one (a test enforces it).
public enum Analyzers {
    public static let node: [String: NodeAnalyzer] = {
        var a: [String: NodeAnalyzer] = [:]
        a["node.reachable"] = { _ in .pass("collector completed") }

        // MARK: OS and kernel
        a["os.release"] = { c in
            let os = c.facts.osRelease
            guard let id = os["ID"], let v = os["VERSION_ID"] else {
                return .unreadable("/etc/os-release has no ID/VERSION_ID")
            }
            let supported = c.profile.os.releases.map { "\($0.id) \($0.version)" }.joined(separator: ", ")
            guard let r = c.profile.os.release(id: id, version: v) else {
                return .problem("\(id) \(v); profile supports \(supported)")
            }
            return r.status == "deprecated"
                ? .warn("\(id) \(v) is deprecated for \(c.profile.name)") : .pass("\(id) \(v)")
        }
        a["os.kernel"] = { c in
            let os = c.facts.osRelease
            guard let k = c.facts.kernel else { return .unreadable("uname -r printed nothing") }
            guard let r = c.profile.os.release(id: os["ID"] ?? "", version: os["VERSION_ID"] ?? "") else {
                return .skip("OS release not supported (see os.release)")
            }
            return r.supportsKernel(k) ? .pass(k) : .problem("\(k); supported: \(r.kernels.joined(separator: ", "))")
        }
        a["os.swap"] = { c in
            guard let s = c.facts["swaps"], s.exitCode == 0 else { return .unreadable("/proc/swaps") }
            let active = s.output.split(separator: "\n").dropFirst().filter {
                !$0.trimmingCharacters(in: .whitespaces).isEmpty
            }
            return active.isEmpty
                ? .pass("off")
                : .problem("on: \(active.map { String($0.split(separator: " ").first ?? "") }.joined(separator: ", "))")
        }
        a["os.cgroup-v2"] = { c in
            guard let t = c.facts.ok("cgroupfs")?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else {
                return .unreadable("stat /sys/fs/cgroup")
            }
            return t == "cgroup2fs" ? .pass("cgroup v2") : .problem("\(t) (cgroup v1)")
        }
        a["os.hostname"] = { c in
            guard let h = c.facts.hostname else { return .unreadable("hostname") }
            if !SiteInventory.isValidNodeName(h) && !SiteInventory.isDNSName(h) {
                return .problem("'\(h)' is not a lower-case DNS name")
            }
            let short = String(h.split(separator: ".").first ?? "")
            return short == c.node ? .pass(h) : .problem("'\(h)', the site file calls it '\(c.node)'")
        }
        a["os.machine-id"] = { c in
            let id = c.facts.keyValues("ids")["machine_id"] ?? ""
            return id.count == 32 ? .pass(id) : .problem(id.isEmpty ? "missing" : "'\(id)'")
        }
        a["kernel.pinned"] = { c in
            guard let k = c.facts.kernel else { return .unreadable("uname -r") }
            let out = c.facts["apt-holds"]?.output ?? ""
            if out.contains("unattended=on") { return .problem("unattended upgrades are on") }
            return out.contains("linux-image-\(k)") || out.contains("linux-image")
                ? .pass("kernel held") : .problem("kernel \(k) not held (apt-mark showhold)")
        }
        a["kernel.headers"] = { c in
            if c.profile.gpuStack.mode == .operatorPrecompiled {
                return .skip("precompiled driver containers need no headers")
            }
            let t = c.facts["kernel-headers"]?.output.trimmingCharacters(in: .whitespacesAndNewlines)
            return t == "present"
                ? .pass("present")
                : t == "absent"
                    ? .problem("no /lib/modules/\(c.facts.kernel ?? "?")/build") : .unreadable("kernel-headers section")
        }
        a["kernel.nouveau"] = { c in
            guard let mods = c.facts.modules else {
                return .skip("kernel without loadable modules (/proc/modules absent)")
            }
            if mods.contains("nouveau") { return .problem("nouveau is loaded") }
            let bl = c.facts["nouveau-blacklist"]?.output ?? ""
            return bl.contains("blacklist nouveau")
                ? .pass("not loaded, blacklisted") : .warn("not loaded, but not blacklisted")
        }
        a["kernel.secure-boot"] = { c in
            guard let s = c.facts["secureboot"] else { return .unreadable("mokutil") }
            if s.missingTool { return .info("mokutil not installed; state unknown") }
            if s.output.contains("SecureBoot disabled") || s.output.contains("not supported") {
                return .pass("disabled")
            }
            if s.output.contains("SecureBoot enabled") {
                return c.profile.gpuStack.mode == .hostDriver
                    ? .problem("enabled; unsigned DKMS modules will not load")
                    : .warn("enabled; needs signed precompiled modules")
            }
            return .unreadable("mokutil said '\(s.output.prefix(60))'")
        }
        a["kernel.iommu"] = { c in
            let groups = Int(c.facts["iommu"]?.output.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
            let cmd = c.facts["cmdline"]?.output ?? ""
            if groups == 0 { return .pass("off") }
            return cmd.contains("iommu=pt")
                ? .pass("pass-through (\(groups) groups)") : .problem("translated mode, \(groups) groups; add iommu=pt")
        }
        a["kernel.hugepages"] = { c in
            let m = c.facts.meminfo
            guard let total = m["HugePages_Total"] else { return .info("not reported") }
            return .info("\(total) x \(m["Hugepagesize"] ?? 0) kB")
        }
        a["kernel.br-netfilter"] = { c in
            guard let mods = c.facts.modules else {
                return c.facts.sysctl["net/bridge/bridge-nf-call-iptables"].map {
                    $0 != "missing" ? .pass("built in") : .problem("not available")
                } ?? .unreadable("/proc/modules")
            }
            return mods.contains("br_netfilter") ? .pass("loaded") : .problem("not loaded")
        }
        a["kernel.overlay"] = { c in
            guard let mods = c.facts.modules else {
                return .skip("kernel without loadable modules; overlay assumed built in")
            }
            return mods.contains("overlay") ? .pass("loaded") : .problem("not loaded")
        }

        // MARK: Kubernetes prerequisites
        a["k8s.ip-forward"] = { c in
            guard let v = c.facts.sysctl["net/ipv4/ip_forward"], v != "missing" else {
                return .unreadable("ip_forward")
            }
            return v == "1" ? .pass("1") : .problem(v)
        }
        a["k8s.bridge-nf"] = { c in
            guard let v = c.facts.sysctl["net/bridge/bridge-nf-call-iptables"] else {
                return .unreadable("sysctl section")
            }
            return v == "1" ? .pass("1") : .problem(v == "missing" ? "br_netfilter not loaded" : v)
        }
        a["k8s.ports"] = { c in
            guard c.facts["listen"]?.exitCode == 0 else { return .unreadable("ss -ltn") }
            var ports = [10250]
            if c.roles.contains(.controlPlane) { ports += [6443, 2379, 2380, 10257, 10259] }
            let busy = ports.filter { c.facts.listeningPorts.contains($0) }
            return busy.isEmpty
                ? .pass("\(ports.map(String.init).joined(separator: ", ")) free")
                : .problem("in use: \(busy.map(String.init).joined(separator: ", "))")
        }
        a["k8s.binaries"] = { c in
            let e = c.facts.executables
            guard !e.isEmpty else { return .unreadable("exec section") }
            let missing = ["ip", "iptables", "mount", "nsenter"].filter { (e[$0] ?? nil) == nil }
            return missing.isEmpty ? .pass("all present") : .problem("missing: \(missing.joined(separator: ", "))")
        }
        a["k8s.optional-binaries"] = { c in
            let e = c.facts.executables
            guard !e.isEmpty else { return .unreadable("exec section") }
            let missing = ["ebtables", "ethtool", "socat", "tc", "touch", "conntrack"].filter { (e[$0] ?? nil) == nil }
            return missing.isEmpty ? .pass("all present") : .problem("missing: \(missing.joined(separator: ", "))")
        }
        a["k8s.cpu-mem"] = { c in
            guard let n = c.facts.cpuCount, let kb = c.facts.meminfo["MemTotal"] else {
                return .unreadable("nproc/MemTotal")
            }
            let mb = kb / 1024
            return n >= 2 && mb >= 1700
                ? .pass("\(n) CPU, \(mb) MB") : .problem("\(n) CPU, \(mb) MB; kubeadm needs 2 CPU and 1700 MB")
        }
        a["k8s.firewall"] = { c in
            let s = c.facts.services
            if s.isEmpty { return .info("systemctl not available") }
            let active = ["firewalld", "ufw"].filter { s[$0]?.active == "active" }
            return active.isEmpty
                ? .pass("no host firewall active") : .problem("\(active.joined(separator: ", ")) active")
        }
        a["k8s.proxy"] = { c in
            let lines = (c.facts["proxy"]?.output ?? "").split(separator: "\n").map(String.init)
            let proxies = lines.filter { !$0.lowercased().hasPrefix("no_proxy") }
            if proxies.isEmpty { return .pass("no proxy") }
            let noProxy = lines.first { $0.lowercased().hasPrefix("no_proxy") } ?? ""
            let needed =
                [c.profile.kubernetes.podCIDR, c.profile.kubernetes.serviceCIDR]
                + (c.site?.network.map { [$0.domain] } ?? [])
            let missing = needed.filter { !noProxy.contains($0) }
            return missing.isEmpty
                ? .pass("proxy set, NO_PROXY complete")
                : .problem("proxy set; NO_PROXY lacks \(missing.joined(separator: ", "))")
        }
        a["k8s.dirs"] = { c in
            let t = (c.facts["kube-dirs"]?.output ?? "").split(separator: "\n").filter { !$0.isEmpty }
            return t.isEmpty ? .pass("fresh") : .problem("found \(t.prefix(4).joined(separator: ", "))")
        }
        a["k8s.cgroup-driver"] = { c in
            let cfg = c.facts["containerd-config"]?.output ?? ""
            let kub = c.facts["kubelet-config"]?.output ?? ""
            if cfg.isEmpty && kub.isEmpty { return .pass("not configured yet (installer writes systemd)") }
            if cfg.contains("SystemdCgroup = false") {
                return .problem("containerd uses cgroupfs (SystemdCgroup = false)")
            }
            if kub.contains("cgroupfs") { return .problem("kubelet uses cgroupfs") }
            return .pass("systemd")
        }
        a["k8s.cri"] = { c in
            let cfg = c.facts["containerd-config"]?.output ?? ""
            if let l = cfg.split(separator: "\n").first(where: { $0.contains("disabled_plugins") }),
                l.contains("\"cri\"")
            {
                return .problem(String(l).trimmingCharacters(in: .whitespaces))
            }
            return .pass(cfg.isEmpty ? "no containerd config yet" : "cri enabled")
        }
        a["k8s.versions"] = { c in
            let kv = c.facts.keyValues("versions")
            let want = c.profile.kubernetes.version.split(separator: ".").prefix(2).joined(separator: ".")
            var found: [String] = []
            for (k, v) in kv.sorted(by: { $0.key < $1.key }) {
                let minor = v.trimmingCharacters(in: CharacterSet(charactersIn: "v")).split(separator: ".").prefix(2)
                    .joined(separator: ".")
                if minor != want { found.append("\(k) \(v)") }
            }
            if kv.isEmpty { return .pass("none installed") }
            return found.isEmpty
                ? .pass(kv.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", "))
                : .problem("\(found.joined(separator: ", ")); profile has \(c.profile.kubernetes.version)")
        }

        // MARK: Hardware
        a["hw.cpu"] = { c in
            guard let req = c.requirements else { return .skip("role not in profile") }
            guard let n = c.facts.cpuCount else { return .unreadable("CPU count") }
            return n >= req.cpus ? .pass("\(n) CPUs (needs \(req.cpus))") : .problem("\(n) CPUs; needs \(req.cpus)")
        }
        a["hw.cpu-model"] = { c in
            guard let want = c.requirements?.cpuModelContains else { return .skip("profile names no CPU model") }
            guard let m = c.facts.cpuModel else { return .unreadable("/proc/cpuinfo") }
            return m.contains(want) ? .pass(m) : .problem("\(m); profile expects \(want)")
        }
        a["hw.memory"] = { c in
            guard let req = c.requirements else { return .skip("role not in profile") }
            guard let kb = c.facts.meminfo["MemTotal"] else { return .unreadable("MemTotal") }
            let gib = Double(kb) / 1_048_576
            let tol = c.threshold("tolerancePercent", 6) / 100
            let s = String(format: "%.1f GiB", gib)
            return gib >= Double(req.memoryGiB) * (1 - tol)
                ? .pass("\(s) (needs \(req.memoryGiB))") : .problem("\(s); needs \(req.memoryGiB) GiB")
        }
        a["hw.disk"] = { c in
            guard let req = c.requirements else { return .skip("role not in profile") }
            guard let root = c.facts.filesystems.first(where: { $0.mount == "/" }) else { return .unreadable("df /") }
            let gib = Double(root.sizeKiB) / 1_048_576
            let tol = c.threshold("tolerancePercent", 10) / 100
            return gib >= Double(req.diskGiB) * (1 - tol)
                ? .pass(String(format: "%.0f GiB", gib))
                : .problem(String(format: "%.0f GiB; needs %d GiB", gib, req.diskGiB))
        }
        a["hw.staging-space"] = { c in
            guard let req = c.requirements else { return .skip("role not in profile") }
            let fs = c.facts.filesystems
            guard
                let target = fs.last(where: { $0.mount != "/" && "/var/lib".hasPrefix($0.mount) }) ?? fs.first(where: {
                    $0.mount == "/"
                }) ?? fs.last
            else {
                return .unreadable("df /var/lib")
            }
            let free = Double(target.availKiB) / 1_048_576
            let need = c.bundleGiB + Double(req.stagingHeadroomGiB)
            let s = String(format: "%.0f GiB free on %@", free, target.mount)
            return free >= need
                ? .pass("\(s) (needs \(Int(need.rounded(.up))))")
                : .problem("\(s); needs \(Int(need.rounded(.up))) GiB (bundle + \(req.stagingHeadroomGiB))")
        }
        a["hw.nic-count"] = { c in
            let want = c.requirements?.nics.filter { $0.kind == "ethernet" }.map(\.count).reduce(0, +) ?? 0
            guard c.facts["links"]?.exitCode == 0 else { return .unreadable("ip -o link") }
            let up = c.facts.physicalLinks.filter(\.up)
            if want == 0 { return .pass("\(up.count) up") }
            return up.count >= want
                ? .pass("\(up.count) up (needs \(want))") : .problem("\(up.count) up; needs \(want)")
        }
        a["hw.ib-count"] = { c in
            let want = c.requirements?.nics.filter { $0.kind == "infiniband" }.map(\.count).reduce(0, +) ?? 0
            if want == 0 { return .skip("profile expects no InfiniBand") }
            guard let s = c.facts["ibstat"], !s.missingTool else {
                return .problem("ibstat not installed; 0 adapters seen, needs \(want)")
            }
            let n = IBStat.parse(s.output).adapters.count
            return n >= want ? .pass("\(n) adapters") : .problem("\(n) adapters; needs \(want)")
        }

        // MARK: GPU inventory and driver
        a["gpu.pci-count"] = { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            guard let s = c.facts["lspci"], !s.missingTool else { return .unreadable("lspci not installed") }
            let n = LspciListing.parse(s.output).nvidiaGPUs.count
            if g.counts.contains(n) { return .pass("\(n) GPUs") }
            return n < g.count
                ? .problem("\(n) GPUs on PCI; profile expects \(g.count)")
                : .warn("\(n) GPUs on PCI; profile expects \(g.count)")
        }
        a["gpu.smi"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            guard let s = c.facts["nvsmi-xml"] else { return .unreadable("no nvidia-smi section") }
            switch s.exitCode {
            case 0: return .pass("rc 0")
            case 127:
                return c.profile.gpuStack.mode == .operatorPrecompiled
                    ? .skip("no host driver (operator installs it)") : .problem("nvidia-smi not installed")
            case 9: return .problem("rc 9: driver not loaded")
            case 12: return .problem("rc 12: NVML not found")
            case 14: return .problem("rc 14: infoROM corrupted")
            case 15: return .problem("rc 15: a GPU fell off the bus")
            case 124: return .problem("nvidia-smi hung (killed after the per-tool timeout)")
            default: return .problem("rc \(s.exitCode): \(s.output.prefix(80))")
            }
        }
        a["gpu.count"] = gpu { c, g, r in
            let n = r.gpus.count
            if g.counts.contains(n) { return .pass("\(n) GPUs") }
            let attached = r.attachedGPUs.map { " (attached_gpus says \($0))" } ?? ""
            return .problem(
                "\(n) GPUs\(attached); profile expects \(g.counts.map(String.init).joined(separator: " or "))")
        }
        a["gpu.model"] = gpu { c, g, r in
            let names = Set(r.gpus.compactMap(\.name))
            if names.isEmpty { return .unreadable("no product names") }
            let wrong = names.filter { !g.models.contains($0) }
            if names.count > 1 && wrong.isEmpty {
                return .warn("mixed models: \(names.sorted().joined(separator: ", "))")
            }
            return wrong.isEmpty
                ? .pass(names.sorted().joined(separator: ", "))
                : .problem(
                    "\(names.sorted().joined(separator: ", ")); profile expects \(g.models.joined(separator: " or "))")
        }
        a["gpu.memory"] = gpu { c, g, r in
            let mems = r.gpus.compactMap(\.memoryTotalMiB)
            guard let lo = mems.min() else { return .unreadable("no memory.total") }
            return lo >= g.memoryMiB ? .pass("\(lo) MiB") : .problem("\(lo) MiB; profile expects \(g.memoryMiB) MiB")
        }
        a["gpu.driver"] = gpu { c, g, r in
            guard let v = r.driverVersion ?? r.gpus.first?.driverVersion else {
                return .unreadable("no driver version")
            }
            let pinned = c.profile.gpuStack.driverVersions
            if pinned.contains(v) { return .pass(v) }
            let branch = v.split(separator: ".").first.map(String.init)
            if pinned.contains(where: { $0.split(separator: ".").first.map(String.init) == branch }) {
                return .warn("\(v): same branch as pinned \(pinned.joined(separator: ", "))")
            }
            return .problem("\(v); profile pins \(pinned.joined(separator: ", "))")
        }
        a["gpu.driver-denylist"] = gpu { c, g, r in
            guard let v = r.driverVersion ?? r.gpus.first?.driverVersion else {
                return .unreadable("no driver version")
            }
            return c.profile.gpuStack.deniedDriverVersions.contains(v) ? .problem("\(v) is denied") : .pass(v)
        }
        a["gpu.cuda"] = gpu { c, g, r in
            guard let v = r.driverVersion, let major = Int(v.split(separator: ".").first ?? "") else {
                return .unreadable("no driver version")
            }
            let need = major >= 580 ? 580 : 525
            return major >= 525
                ? .pass("driver \(v), CUDA \(r.cudaVersion ?? "?")")
                : .problem("driver \(v) < \(need): CUDA 12 images will not run")
        }
        a["gpu.driver-mode"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            let host = c.facts["nvidia-proc"].map { $0.exitCode == 0 && $0.output.contains("NVRM") } ?? false
            switch c.profile.gpuStack.mode {
            case .hostDriver:
                return host ? .pass("host driver loaded") : .problem("no host driver; mode host-driver needs it")
            case .operatorPrecompiled:
                return host
                    ? .problem(
                        "host driver loaded; operator-precompiled mode must not have one (or set driver.enabled=false)")
                    : .pass("no host driver")
            }
        }
        a["gpu.persistence"] = gpu { c, g, r in
            let off = r.gpus.filter { $0.persistenceMode != "Enabled" }
            if c.facts.services["nvidia-persistenced"]?.active == "active" {
                return .pass("nvidia-persistenced active")
            }
            return off.isEmpty
                ? .pass("Enabled on all")
                : .problem("Disabled on GPU \(off.map { String($0.index ?? -1) }.joined(separator: ", "))")
        }
        a["gpu.vbios"] = gpu { c, g, r in
            let v = Set(r.gpus.compactMap(\.vbiosVersion))
            return v.count <= 1 ? .pass(v.first ?? "n/a") : .problem("mixed: \(v.sorted().joined(separator: ", "))")
        }
        a["gpu.nvswitch-count"] = { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            guard let s = c.facts["lspci"], !s.missingTool else { return .unreadable("lspci not installed") }
            let n = LspciListing.parse(s.output).nvswitches.count
            return n == g.nvswitches ? .pass("\(n)") : .problem("\(n) NVSwitches; profile expects \(g.nvswitches)")
        }
        a["gpu.fabricmanager"] = { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            guard g.fabricManager else { return .skip("profile has no NVSwitch") }
            if c.profile.gpuStack.mode == .operatorPrecompiled {
                return .skip("the operator's driver container runs fabric manager")
            }
            guard let s = c.facts.services["nvidia-fabricmanager"] else {
                return .unreadable("systemctl not available")
            }
            if s.active != "active" {
                return .problem("nvidia-fabricmanager is \(s.active.isEmpty ? "absent" : s.active)")
            }
            return s.enabled == "enabled" ? .pass("active, enabled") : .warn("active but not enabled: lost on reboot")
        }
        a["gpu.precompiled-driver"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            guard c.profile.gpuStack.mode == .operatorPrecompiled else {
                return .skip("gpuStack.mode host-driver: the driver is a host package")
            }
            guard let images = c.bundleImages else {
                return .skip("no bundle given; install checks the kernel against the bundle it installs")
            }
            guard let branch = c.profile.gpuStack.driverBranch else {
                return .problem("profile \(c.profile.name) names no driver version")
            }
            guard let kernel = c.facts.kernel else { return .unreadable("uname -r") }
            guard let id = c.facts.osRelease["ID"], let version = c.facts.osRelease["VERSION_ID"] else {
                return .unreadable("/etc/os-release has no ID/VERSION_ID")
            }
            let want = PrecompiledDriver.tag(branch: branch, kernel: kernel, osID: id, osVersion: version)
            let tags = PrecompiledDriver.tags(in: images)
            if tags.contains(want) { return .pass("\(PrecompiledDriver.repository):\(want) in the bundle") }
            let carried = PrecompiledDriver.tags(tags, branch: branch)
            return .problem(
                "no \(PrecompiledDriver.repository):\(want) in the bundle for kernel \(kernel) (\(id) \(version)); it carries \(carried.isEmpty ? "no branch \(branch) driver image" : carried.joined(separator: ", "))"
            )
        }
        a["gpu.fabricmanager-version"] = gpu { c, g, r in
            guard g.fabricManager, c.profile.gpuStack.mode == .hostDriver else {
                return .skip("no host fabric manager expected")
            }
            let fm = c.facts.keyValues("fabricmanager")["version"] ?? "none"
            guard let d = r.driverVersion else { return .unreadable("no driver version") }
            return fm == d ? .pass(fm) : .problem("fabric manager \(fm), driver \(d)")
        }
        a["gpu.fabric-state"] = gpu { c, g, r in
            let states = r.gpus.compactMap { gpu in
                gpu.fabricState.map { (gpu.index ?? -1, $0, gpu.fabricStatus ?? "") }
            }
            if states.isEmpty { return .skip("GPUs report no fabric state (pre-Hopper)") }
            let bad = states.filter { $0.1 != "Completed" || ($0.2 != "" && $0.2 != "Success") }
            return bad.isEmpty
                ? .pass("Completed/Success on \(states.count)")
                : .problem(bad.map { "GPU \($0.0): \($0.1) \($0.2)" }.joined(separator: "; "))
        }
        a["gpu.nvlink"] = { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            guard g.nvlinksPerGPU > 0 else { return .skip("profile expects no NVLink") }
            guard let s = c.facts["nvlink-s"], s.exitCode == 0 else {
                return c.facts["nvlink-s"]?.missingTool == true
                    ? .unreadable("nvidia-smi not installed") : .unreadable("nvidia-smi nvlink -s failed")
            }
            let st: NvidiaNVLinkStatus
            do { st = try NvidiaNVLinkStatus.parse(s.output) } catch { return .unreadable("\(error)") }
            if st.gpus.isEmpty { return .unreadable("no GPUs in nvlink -s output") }
            var bad: [String] = []
            for gpu in st.gpus {
                if !gpu.inactiveLinks.isEmpty {
                    bad.append(
                        "GPU \(gpu.index) link \(gpu.inactiveLinks.map(String.init).joined(separator: ",")) inactive")
                } else if gpu.activeLinks < g.nvlinksPerGPU {
                    bad.append("GPU \(gpu.index) has \(gpu.activeLinks) links")
                }
            }
            return bad.isEmpty
                ? .pass("\(st.gpus.count) GPUs x \(g.nvlinksPerGPU) links active")
                : .problem(bad.joined(separator: "; ") + "; expected \(g.nvlinksPerGPU) per GPU")
        }
        a["gpu.nvlink-speed"] = { c in
            guard let g = c.gpuRequirement, g.nvlinksPerGPU > 0 else { return .skip("profile expects no NVLink") }
            guard let s = c.facts.ok("nvlink-s"), let st = try? NvidiaNVLinkStatus.parse(s), !st.gpus.isEmpty else {
                return .unreadable("nvidia-smi nvlink -s")
            }
            let lo = st.gpus.compactMap(\.minimumSpeed).min() ?? 0
            return lo + 0.01 >= g.nvlinkSpeedGBps
                ? .pass("\(lo) GB/s") : .problem("\(lo) GB/s; expected \(g.nvlinkSpeedGBps)")
        }
        a["gpu.nvlink-errors"] = { c in
            guard let g = c.gpuRequirement, g.nvlinksPerGPU > 0 else { return .skip("profile expects no NVLink") }
            guard let s = c.facts.ok("nvlink-e") else { return .unreadable("nvidia-smi nvlink -e") }
            let errs = NvidiaNVLinkErrors.parse(s).filter { $0.value > 0 }
            return errs.isEmpty
                ? .pass("0 errors")
                : .problem(errs.sorted { $0.key < $1.key }.map { "GPU \($0.key): \($0.value)" }.joined(separator: ", "))
        }
        a["gpu.topology"] = { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            guard let s = c.facts.ok("topo") else {
                return c.facts["topo"]?.missingTool == true
                    ? .unreadable("nvidia-smi not installed") : .unreadable("nvidia-smi topo -m failed")
            }
            let t: NvidiaTopology
            do { t = try NvidiaTopology.parse(s) } catch { return .unreadable("\(error)") }
            if !g.counts.contains(t.gpus.count) { return .problem("\(t.gpus.count) GPU rows; expected \(g.count)") }
            guard g.nvlinksPerGPU > 0 else { return .pass("PCIe topology, \(t.gpus.count) GPUs") }
            let nonNV = t.gpuPairs.filter { !$0.2.hasPrefix("NV") }
            if let p = nonNV.first {
                return .problem("\(p.0)-\(p.1) is \(p.2) (\(nonNV.count / 2) GPU pairs without NVLink)")
            }
            let labels = Set(t.gpuPairs.map(\.2)).sorted()
            return .pass("all GPU pairs \(labels.joined(separator: "/"))")
        }
        a["gpu.numa"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            guard let s = c.facts.ok("topo"), let t = try? NvidiaTopology.parse(s) else {
                return .unreadable("nvidia-smi topo -m")
            }
            let numa = t.gpus.map { t.numaAffinity[$0] ?? "?" }
            return .info("NUMA \(numa.joined(separator: ","))")
        }

        // MARK: GPU health
        a["health.ecc-mode"] = gpu { c, g, r in
            let off = r.gpus.filter { $0.eccModeCurrent == "Disabled" }
            let pending = r.gpus.filter {
                $0.eccModeCurrent != nil && $0.eccModePending != nil && $0.eccModeCurrent != $0.eccModePending
            }
            if !off.isEmpty {
                let msg = "Disabled on GPU \(off.map { String($0.index ?? -1) }.joined(separator: ","))"
                return g.ecc == "required" ? .problem(msg) : .warn(msg)
            }
            if !pending.isEmpty {
                return .warn(
                    "change pending on GPU \(pending.map { String($0.index ?? -1) }.joined(separator: ",")); reboot")
            }
            if r.gpus.allSatisfy({ $0.eccModeCurrent == nil }) { return .unreadable("no ECC mode reported") }
            return .pass("Enabled")
        }
        a["health.ecc-uncorrected"] = gpu { c, g, r in
            let maxAgg = Int(c.threshold("maxAggregate", 4))
            let vol = r.gpus.filter { ($0.eccVolatileUncorrected ?? 0) > 0 }
            let agg = r.gpus.filter { ($0.eccAggregateUncorrected ?? 0) > maxAgg }
            if !vol.isEmpty {
                return .problem(
                    vol.map { "GPU \($0.index ?? -1): \($0.eccVolatileUncorrected ?? 0) volatile" }.joined(
                        separator: ", "))
            }
            if !agg.isEmpty {
                return .problem(
                    agg.map { "GPU \($0.index ?? -1): \($0.eccAggregateUncorrected ?? 0) aggregate" }.joined(
                        separator: ", "))
            }
            return .pass("0 volatile")
        }
        a["health.ecc-corrected"] = gpu { c, g, r in
            let lim = Int(c.threshold("maxCorrected", 10_000_000))
            let hi = r.gpus.filter { ($0.eccAggregateCorrected ?? 0) > lim }
            return hi.isEmpty
                ? .pass("below \(lim)")
                : .problem(hi.map { "GPU \($0.index ?? -1): \($0.eccAggregateCorrected ?? 0)" }.joined(separator: ", "))
        }
        a["health.row-remap"] = gpu { c, g, r in
            let known = r.gpus.filter { $0.remappedRowsPending != nil }
            if known.isEmpty { return .skip("row remapping not reported (pre-Ampere or N/A)") }
            let p = known.filter { $0.remappedRowsPending == true }
            return p.isEmpty
                ? .pass("none pending")
                : .problem("pending on GPU \(p.map { String($0.index ?? -1) }.joined(separator: ","))")
        }
        a["health.row-remap-failure"] = gpu { c, g, r in
            let known = r.gpus.filter { $0.remappedRowsFailure != nil }
            if known.isEmpty { return .skip("row remapping not reported") }
            let f = known.filter { $0.remappedRowsFailure == true }
            return f.isEmpty
                ? .pass("no failure")
                : .problem("failure on GPU \(f.map { String($0.index ?? -1) }.joined(separator: ","))")
        }
        a["health.retired-pages"] = gpu { c, g, r in
            let known = r.gpus.filter { $0.retiredPagesPending != nil }
            if known.isEmpty { return .skip("not reported (Ampere and later use row remapping)") }
            let p = known.filter { $0.retiredPagesPending == true }
            return p.isEmpty
                ? .pass("none pending")
                : .problem("pending on GPU \(p.map { String($0.index ?? -1) }.joined(separator: ","))")
        }
        a["health.pcie-width"] = gpu { c, g, r in
            let bad = r.gpus.filter {
                if let cur = $0.pcieWidthCurrent, let mx = $0.pcieWidthMax { return cur < mx } else { return false }
            }
            if r.gpus.allSatisfy({ $0.pcieWidthCurrent == nil }) { return .unreadable("no link width") }
            return bad.isEmpty
                ? .pass("x\(r.gpus.compactMap(\.pcieWidthCurrent).min() ?? 0)")
                : .problem(
                    bad.map { "GPU \($0.index ?? -1): x\($0.pcieWidthCurrent ?? 0) of x\($0.pcieWidthMax ?? 0)" }
                        .joined(separator: ", "))
        }
        a["health.pcie-gen"] = gpu { c, g, r in
            let atP0 = r.gpus.filter { $0.performanceState == "P0" }
            if atP0.isEmpty { return .skip("no GPU at P0 (idle GPUs train down)") }
            let bad = atP0.filter {
                if let cur = $0.pcieGenCurrent, let mx = $0.pcieGenMax { return cur < mx } else { return false }
            }
            return bad.isEmpty
                ? .pass("gen \(atP0.compactMap(\.pcieGenCurrent).min().map(String.init) ?? "?")")
                : .problem(
                    bad.map { "GPU \($0.index ?? -1): gen \($0.pcieGenCurrent ?? 0) of \($0.pcieGenMax ?? 0)" }.joined(
                        separator: ", "))
        }
        a["health.pcie-replay"] = gpu { c, g, r in
            let bad = r.gpus.filter { ($0.pcieReplays ?? 0) > 0 }
            return bad.isEmpty
                ? .pass("0")
                : .problem(bad.map { "GPU \($0.index ?? -1): \($0.pcieReplays ?? 0)" }.joined(separator: ", "))
        }
        a["health.mig"] = gpu { c, g, r in
            let pending = r.gpus.filter { $0.migModeCurrent != nil && $0.migModeCurrent != $0.migModePending }
            if !pending.isEmpty {
                return .problem(
                    "MIG change pending on GPU \(pending.map { String($0.index ?? -1) }.joined(separator: ",")); reset or reboot"
                )
            }
            let modes = Set(r.gpus.compactMap(\.migModeCurrent))
            if modes.isEmpty { return .skip("MIG not supported") }
            let strategy = c.profile.gpuStack.migStrategy
            if strategy == "none" && modes.contains("Enabled") {
                return .problem("MIG Enabled; profile MIG strategy is none")
            }
            if strategy == "single" && modes.count > 1 {
                return .problem("mixed MIG modes; strategy single needs all equal")
            }
            return .pass("MIG \(modes.sorted().joined(separator: "/"))")
        }
        a["health.clock-events"] = gpu { c, g, r in
            let known = r.gpus.filter { $0.activeHardwareClockEvents != nil }
            if known.isEmpty { return .unreadable("no clock event reasons") }
            let bad = known.filter { !($0.activeHardwareClockEvents ?? []).isEmpty }
            return bad.isEmpty
                ? .pass("no HW slowdown")
                : .problem(
                    bad.map { "GPU \($0.index ?? -1): \(($0.activeHardwareClockEvents ?? []).joined(separator: ","))" }
                        .joined(separator: "; "))
        }
        a["health.temperature"] = gpu { c, g, r in
            let lim = Int(c.threshold("maxCelsius", 75))
            let temps = r.gpus.compactMap(\.temperatureC)
            guard let hi = temps.max() else { return .unreadable("no temperature") }
            return hi < lim ? .pass("max \(hi) C") : .problem("max \(hi) C (limit \(lim))")
        }
        a["health.power-limit"] = gpu { c, g, r in
            let bad = r.gpus.filter {
                if let l = $0.powerLimitW, let d = $0.defaultPowerLimitW { return l + 0.5 < d } else { return false }
            }
            if r.gpus.allSatisfy({ $0.powerLimitW == nil }) { return .skip("power limit not reported") }
            return bad.isEmpty
                ? .pass("\(Int(r.gpus.compactMap(\.powerLimitW).min() ?? 0)) W")
                : .problem(
                    bad.map {
                        "GPU \($0.index ?? -1): \(Int($0.powerLimitW ?? 0)) of \(Int($0.defaultPowerLimitW ?? 0)) W"
                    }.joined(separator: ", "))
        }
        a["health.xid"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            let xids = XidLog.parse(c.facts["xid"]?.output ?? "")
            if xids.isEmpty { return .pass("none since boot") }
            let crit = Set(xids.filter { XidLog.critical.contains($0) }).sorted()
            return crit.isEmpty
                ? .info("Xid \(Set(xids).sorted().map(String.init).joined(separator: ",")) (application-level)")
                : .problem("critical Xid \(crit.map(String.init).joined(separator: ","))")
        }
        a["health.dcgm"] = { c in
            guard c.gpuRequirement != nil else { return .skip("no GPUs expected") }
            guard let s = c.facts["dcgm"] else { return .skip("not run (use --dcgm)") }
            if s.missingTool { return .skip("dcgmi not installed") }
            let d: DCGMDiag
            do { d = try DCGMDiag.parse(s.output) } catch { return .unreadable("\(error)") }
            if !d.failed.isEmpty { return .problem("failed: \(d.failed.joined(separator: ", "))") }
            if !d.warned.isEmpty { return .warn("warnings: \(d.warned.joined(separator: ", "))") }
            return .pass("\(d.results.count) tests pass")
        }

        // MARK: Network, DNS, time
        a["net.mtu"] = { c in
            guard let want = c.site?.network?.mtu else { return .skip("site sets no MTU") }
            guard c.facts["links"]?.exitCode == 0 else { return .unreadable("ip -o link") }
            let nics = c.facts.physicalLinks.filter(\.up)
            let bad = nics.filter { $0.mtu != want }
            return bad.isEmpty
                ? .pass("\(want)")
                : .problem(bad.map { "\($0.name) \($0.mtu)" }.joined(separator: ", ") + "; site MTU \(want)")
        }
        a["net.default-route"] = { c in
            let a = (c.facts["addrs"]?.output ?? "").split(separator: "\n").filter { !$0.contains(" lo ") }
            return a.isEmpty ? .problem("no IPv4 address besides loopback") : .pass("\(a.count) IPv4 addresses")
        }
        a["net.peers"] = { c in
            let lines = (c.facts["peers"]?.output ?? "").split(separator: "\n")
            if lines.isEmpty { return .skip("no other nodes") }
            let bad = lines.filter { $0.hasSuffix(" unreachable") }.map { String($0.split(separator: " ")[0]) }
            return bad.isEmpty
                ? .pass("\(lines.count) peers answer") : .problem("no answer from \(bad.joined(separator: ", "))")
        }
        a["net.ib-ports"] = { c in
            guard let req = c.requirements?.nics.first(where: { $0.kind == "infiniband" }), c.roles.contains(.gpuWorker)
            else { return .skip("profile expects no InfiniBand") }
            _ = req
            guard let s = c.facts["ibstat"], !s.missingTool else { return .unreadable("ibstat not installed") }
            let ports = IBStat.parse(s.output).adapters.flatMap { a in a.ports.map { (a.name, $0) } }
            if ports.isEmpty { return .problem("no InfiniBand ports") }
            let bad = ports.filter { $0.1.state != "Active" || $0.1.physicalState != "LinkUp" }
            return bad.isEmpty
                ? .pass("\(ports.count) ports Active/LinkUp")
                : .problem(
                    bad.map { "\($0.0) port \($0.1.number): \($0.1.state)/\($0.1.physicalState)" }.joined(
                        separator: "; "))
        }
        a["net.ib-rate"] = { c in
            guard let req = c.requirements?.nics.first(where: { $0.kind == "infiniband" }), c.roles.contains(.gpuWorker)
            else { return .skip("profile expects no InfiniBand") }
            guard let s = c.facts["ibstat"], !s.missingTool else { return .unreadable("ibstat not installed") }
            let st = IBStat.parse(s.output)
            if let model = req.model, let a = st.adapters.first(where: { $0.caType != model }) {
                return .problem("\(a.name) is \(a.caType ?? "?"); profile expects \(model)")
            }
            let rates = st.adapters.flatMap { $0.ports.compactMap(\.rateGbps) }
            guard let lo = rates.min() else { return .unreadable("no port rate") }
            return lo >= req.minRateGbps
                ? .pass("\(lo) Gb/s") : .problem("\(lo) Gb/s; profile expects \(req.minRateGbps)")
        }
        a["dns.resolvers"] = { c in
            let ns = (c.facts["resolv"]?.output ?? "").split(separator: "\n").filter { $0.hasPrefix("nameserver") }
            return ns.isEmpty
                ? .problem("no nameserver in /etc/resolv.conf")
                : .pass(ns.map { String($0.dropFirst(11)) }.joined(separator: ", "))
        }
        @Sendable func resolved(_ c: NodeContext, _ name: String) -> String? {
            for l in (c.facts["dns"]?.output ?? "").split(separator: "\n") where l.hasPrefix(name + " ") {
                let rest = l.dropFirst(name.count + 1)
                return rest == "UNRESOLVED" ? nil : String(rest.split(separator: " ").first ?? "")
            }
            return nil
        }
        a["dns.api-endpoint"] = { c in
            guard let api = c.site?.network?.apiEndpoint else { return .skip("site has no network section") }
            let host = String(api.split(separator: ":").first ?? "")
            if HardwareProfile.isIPv4(host) { return .pass("\(host) is an address") }
            return resolved(c, host).map { .pass("\(host) -> \($0)") } ?? .problem("\(host) does not resolve")
        }
        a["dns.wildcard"] = { c in
            guard let d = c.site?.network?.domain else { return .skip("site has no network section") }
            let probe = "appliance-preflight.\(d)"
            return resolved(c, probe).map { .pass("*.\(d) -> \($0)") }
                ?? .problem("\(probe) does not resolve; add *.\(d)")
        }
        a["dns.nodes"] = { c in
            guard let site = c.site, site.hosts.count > 1 else { return .skip("single node") }
            let names = site.hosts.map(\.name).filter { $0 != c.node }
            let bad = names.filter { resolved(c, $0) == nil }
            return bad.isEmpty
                ? .pass("\(names.count) names resolve") : .problem("unresolved: \(bad.joined(separator: ", "))")
        }
        a["time.sync"] = { c in
            let t = c.facts["time"]?.output ?? ""
            if t.contains("NTPSynchronized=yes") || t.contains("Leap status     : Normal") {
                return .pass("synchronised")
            }
            if t.contains("NTPSynchronized=no") { return .problem("not synchronised") }
            return .unreadable("neither timedatectl nor chronyc answered")
        }
        a["time.skew"] = { c in
            guard let t = c.facts.nodeTime, c.facts.sentAt > 0 else { return .unreadable("no node timestamp") }
            // The node read its clock between sentAt and receivedAt; the midpoint is the best estimate.
            let mid = (c.facts.sentAt + c.facts.receivedAt) / 2
            let half = (c.facts.receivedAt - c.facts.sentAt) / 2
            let skewMs = max(0, abs(t - mid) - half) * 1000
            let warnMs = c.threshold("warnMs", 500), failMs = c.threshold("failMs", 60_000)
            let s = String(format: "%.0f ms", skewMs)
            if skewMs >= failMs { return .problem("\(s) (limit \(Int(failMs)) ms)") }
            return skewMs >= warnMs ? .warn("\(s) (warn above \(Int(warnMs)) ms)") : .pass(s)
        }

        // MARK: Storage
        a["storage.nfs"] = { c in
            guard let st = c.site?.storage else { return .skip("site has no NFS storage") }
            guard let s = c.facts["nfs"] else { return .unreadable("nfs section missing") }
            return s.exitCode == 0
                ? .pass("\(st.nfsServer):\(st.nfsPath) mounts")
                : .problem("\(st.nfsServer):\(st.nfsPath): \(s.output.split(separator: "\n").first ?? "mount failed")")
        }
        a["storage.write-latency"] = { c in
            let kv = c.facts.keyValues("write-latency")
            guard let ns = kv["ns"].flatMap(Double.init), let n = kv["writes"].flatMap(Double.init), n > 0,
                c.facts["write-latency"]?.exitCode == 0
            else {
                return .unreadable("dd oflag=dsync")
            }
            let ms = ns / n / 1e6
            let lim = c.threshold("maxMs", 20)
            let s = String(format: "%.2f ms per 4k sync write on %@", ms, kv["dir"] ?? "?")
            return ms <= lim ? .pass(s) : .problem("\(s) (limit \(Int(lim)) ms)")
        }
        return a
    }()

    /// Wraps an analyzer that needs the node's GPU list: skips nodes without expected GPUs, reports a missing
    /// or unreadable nvidia-smi as such, and hands over the parsed report.
    static func gpu(
        _ body: @escaping @Sendable (NodeContext, HardwareProfile.GPURequirement, NvidiaSMIReport) -> Verdict
    ) -> NodeAnalyzer {
        { c in
            guard let g = c.gpuRequirement else { return .skip("no GPUs expected") }
            let report: NvidiaSMIReport?
            do { report = try c.smi() } catch { return .unreadable("\(error)") }
            guard let report else {
                if c.profile.gpuStack.mode == .operatorPrecompiled, c.facts["nvsmi-xml"]?.missingTool == true {
                    return .skip("no host driver (operator installs it; checked after install)")
                }
                return .unreadable("nvidia-smi gave no output (rc \(c.facts["nvsmi-xml"]?.exitCode ?? -1))")
            }
            if report.gpus.isEmpty && c.check.id != "gpu.count" { return .unreadable("nvidia-smi listed no GPUs") }
            return body(c, g, report)
        }
    }
}
