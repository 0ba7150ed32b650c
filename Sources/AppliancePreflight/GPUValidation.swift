import ApplianceModel
import Foundation

/// The install's validation gate for one GPU node (issue 13), before the node is handed to the scheduler:
/// `nvidia-smi` reports the profile's GPU count and model and the bundle's driver; on NVSwitch profiles the
/// fabric manager is active (and enabled), the NVLinks are up and, on Hopper and later, the fabric state is
/// complete; no uncorrectable ECC errors or pending row remaps; `dcgmi diag -r LEVEL` passes; the node's
/// `nvidia.com/gpu` allocatable equals the GPU count.
///
/// It reads the node with `script` (the real tools, sections in the collector's format) and decides with
/// preflight's own parsers and analyzers (`NvidiaSMIXML`, `LspciListing`, `NvidiaNVLinkStatus`, `DCGMDiag`,
/// `Analyzers.node`): one reading of the NVIDIA tools in the product. Each finding names the GPU (index and
/// PCI bus id) where one GPU is at fault.
public enum GPUValidation {
    /// One reason the node fails the gate.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        /// nvidia-smi's index; nil when the finding is about the node (driver, fabric manager, allocatable).
        public var gpu: Int?
        /// `00000000:19:00.0`.
        public var busID: String?
        /// The check that found it (a preflight check id, or `gpu.smi`, `gpu.lost`, `gpu.allocatable`).
        public var check: String
        public var reason: String

        public init(gpu: Int? = nil, busID: String? = nil, check: String, reason: String) {
            self.gpu = gpu
            self.busID = busID
            self.check = check
            self.reason = reason
        }

        public var description: String {
            guard let gpu else { return reason }
            return "GPU \(gpu) (\(busID ?? "bus id unknown")): \(reason)"
        }
    }

    public struct Result: Sendable, Equatable {
        public var findings: [Finding]
        /// What passed, for the step's output (`8x NVIDIA A100-SXM4-80GB, driver 535.161.08, ...`).
        public var summary: String
        public var passed: Bool { findings.isEmpty }

        public init(findings: [Finding], summary: String) {
            self.findings = findings
            self.summary = summary
        }
    }

    /// The DCGM diagnostic levels `dcgmi diag -r` accepts.
    public static let dcgmLevels = 1...4

    /// The node-side reading: POSIX sh, read-only, one round trip, `@@appliance:begin/end` sections.
    ///
    /// `driverRoot` (`operator-precompiled` mode: `PrecompiledDriver.driverRoot`): the GPU Operator's driver
    /// container installed the driver, so the host has no NVIDIA tool. `nvidia-smi` runs in the driver root
    /// (`chroot /run/nvidia/driver nvidia-smi`, as the operator's own validator does); the fabric manager is the
    /// `nv-fabricmanager` process that container runs, its version the one it reports (`--version`); and
    /// `dcgmi` runs in the mount and network namespaces of the standalone DCGM host engine (`nv-hostengine`,
    /// the operator's `nvidia-dcgm` pod, whose image carries `dcgmi`), which it reaches on localhost.
    public static func script(dcgmLevel: Int, driverRoot: String? = nil) -> String {
        let common = """
            LC_ALL=C; export LC_ALL
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export PATH
            have() { command -v "$1" >/dev/null 2>&1; }
            tmo() { if have timeout; then timeout 600 "$@"; else "$@"; fi; }
            sec() { n=$1; shift; echo "@@appliance:begin $n"; "$@" 2>&1 </dev/null; rc=$?; echo; echo "@@appliance:end $n $rc"; }
            missing() { echo "@@appliance:begin $1"; echo "$2"; echo "@@appliance:end $1 127"; }
            tool() { n=$1; t=$2; shift 2
              if have "$t"; then sec "$n" tmo "$t" "$@"; else missing "$n" "$t: not found"; fi; }
            """
        guard let root = driverRoot else {
            return common + "\n" + """
                tool nvsmi-xml nvidia-smi -q -x
                tool nvlink-s nvidia-smi nvlink -s
                tool lspci lspci -nn
                fm() {
                  a=$(systemctl is-active nvidia-fabricmanager 2>/dev/null); e=$(systemctl is-enabled nvidia-fabricmanager 2>/dev/null)
                  echo "nvidia-fabricmanager active=${a:-unknown} enabled=${e:-unknown}"
                }
                sec services fm
                sec fabricmanager sh -c 'v=$(dpkg-query -W -f="\\${Version}\\n" "nvidia-fabricmanager*" 2>/dev/null | grep -o -E "^([0-9]+:)?[0-9]+\\.[0-9]+(\\.[0-9]+)?" | sed "s/^[0-9]*://" | head -1); echo "version=${v:-none}"'
                tool dcgm dcgmi diag -r \(dcgmLevel)
                """
        }
        return common + "\n" + """
            DR='\(root)'
            inroot() { [ -d "$DR" ] && chroot "$DR" sh -c "command -v $1" >/dev/null 2>&1; }
            droot() { n=$1; t=$2; shift 2
              if inroot "$t"; then sec "$n" tmo chroot "$DR" "$t" "$@"; else missing "$n" "$t: not found in the driver root $DR"; fi; }
            droot nvsmi-xml nvidia-smi -q -x
            droot nvlink-s nvidia-smi nvlink -s
            tool lspci lspci -nn
            fm() {
              if pgrep -f '\(PrecompiledDriver.fabricManagerProcess)' >/dev/null 2>&1; then a=active; else a=inactive; fi
              echo "nvidia-fabricmanager active=$a enabled=driver-container"
            }
            sec services fm
            fmv() { v=; if inroot nv-fabricmanager; then v=$(chroot "$DR" nv-fabricmanager --version 2>/dev/null | sed -n 's/.*[Vv]ersion is *: *//p' | head -1); fi; echo "version=${v:-none}"; }
            sec fabricmanager fmv
            he=$(pgrep -o -x nv-hostengine 2>/dev/null)
            if [ -n "$he" ] && have nsenter; then sec dcgm tmo nsenter -t "$he" -m -n dcgmi diag -r \(dcgmLevel)
            else missing dcgm "nv-hostengine: not running"; fi
            """
    }

    /// The driver root is ready: the driver container has put `nvidia-smi` there (exit 0), else exit 1.
    public static func driverRootReady(_ root: String) -> String {
        "[ -d '\(root)' ] && chroot '\(root)' sh -c 'command -v nvidia-smi' >/dev/null 2>&1"
    }

    /// The lost GPUs nvidia-smi names on stderr (`Unable to determine the device handle for GPU0000:BB:00.0:
    /// GPU is lost`), as `00000000:BB:00.0` bus ids.
    static func lostBusIDs(_ text: String) -> [String] {
        var out: [String] = []
        for line in text.split(separator: "\n") where line.contains("device handle for GPU") {
            guard let r = line.range(of: "device handle for GPU") else { continue }
            let id = line[r.upperBound...].split(separator: " ").first ?? ""
            // "0000:BB:00.0:" -> domain 0000, bus BB, device 00.0
            let parts = id.trimmingCharacters(in: CharacterSet(charactersIn: ":")).split(separator: ":")
            guard parts.count == 3 else { continue }
            out.append("0000" + parts[0] + ":" + parts[1].uppercased() + ":" + parts[2])
        }
        return out
    }

    /// `19:00.0` (lspci) or `00000000:19:00.0` (nvidia-smi) -> `19:00.0`, lower case.
    static func shortBus(_ id: String) -> String {
        let p = id.split(separator: ":")
        return (p.count >= 2 ? p.suffix(2).joined(separator: ":") : id).lowercased()
    }

    /// Decides the gate from what `script` printed on the node, the node's allocatable `nvidia.com/gpu` (nil:
    /// the node does not advertise it) and the driver version the bundle installs (nil in `operator-precompiled`
    /// mode: the precompiled image's tag names only the branch, so the driver must be of the profile's branch).
    public static func evaluate(
        facts raw: NodeFacts, node: String, roles: [NodeRole], profile: HardwareProfile, catalog: CheckCatalog,
        driverVersion: String?, dcgmLevel: Int, allocatable: Int?
    ) -> Result {
        guard let want = profile.requirements(for: roles)?.gpu, roles.contains(.gpuWorker) else {
            return Result(findings: [], summary: "no GPUs expected")
        }
        var findings: [Finding] = []
        var facts = raw
        let operatorMode = profile.gpuStack.mode == .operatorPrecompiled
        // PCI (no driver needed): the slots of the node's GPUs, in nvidia-smi's enumeration order.
        let pciGPUs = LspciListing.parse(facts["lspci"]?.output ?? "").nvidiaGPUs.map { shortBus($0.slot) }.sorted()
        func index(ofBus bus: String) -> Int? { pciGPUs.firstIndex(of: shortBus(bus)) }

        // nvidia-smi itself: a lost GPU (exit 15) leaves the others readable; anything else stops the reading.
        let smi = facts["nvsmi-xml"] ?? CollectedSection(output: "no nvidia-smi section", exitCode: -1)
        var lost: [String] = []
        if smi.exitCode == 15 {
            lost = lostBusIDs(smi.output).sorted()
            // stdout and stderr share the section: the XML is what lies between its first and last lines.
            if let start = smi.output.range(of: "<?xml"),
                let end = smi.output.range(of: "</nvidia_smi_log>", options: .backwards),
                start.lowerBound < end.lowerBound
            {
                facts.sections["nvsmi-xml"] = CollectedSection(
                    output: String(smi.output[start.lowerBound..<end.upperBound]), exitCode: 0)
            }
        } else if smi.exitCode != 0 {
            let first = smi.output.split(separator: "\n").first.map(String.init) ?? ""
            let reason: String
            switch smi.exitCode {
            case 127 where operatorMode:
                reason =
                    "the GPU Operator's driver container has not installed the driver: no nvidia-smi in \(PrecompiledDriver.driverRoot)"
            case 127: reason = "nvidia-smi is not installed (the driver package did not install it)"
            case 9: reason = "the NVIDIA driver is not loaded (nvidia-smi exit 9): \(first)"
            case 18:
                let lib =
                    smi.output.split(separator: "\n").first { $0.hasPrefix("NVML library version") }.map {
                        String($0.split(separator: ":").last ?? "").trimmingCharacters(in: .whitespaces)
                    } ?? "?"
                reason =
                    "driver/library version mismatch (nvidia-smi exit 18): the loaded kernel module is not the NVML library's version \(lib); reboot or reload the nvidia module"
            default: reason = "nvidia-smi failed (exit \(smi.exitCode)): \(first)"
            }
            return Result(findings: [Finding(check: "gpu.smi", reason: reason)], summary: "")
        }

        /// A lost GPU keeps its nvidia-smi index (NVML enumerated it at load): the gaps in the listed indices,
        /// in bus order; lspci's order where lspci still lists it.
        func lostFindings(_ listed: [GPURecord]) -> [Finding] {
            let have = Set(listed.compactMap(\.index))
            var gaps = (0..<(listed.count + lost.count)).filter { !have.contains($0) }
            return lost.map { bus in
                let i = index(ofBus: bus) ?? (gaps.isEmpty ? nil : gaps.removeFirst())
                return Finding(
                    gpu: i, busID: bus, check: "gpu.lost",
                    reason:
                        "fell off the bus (nvidia-smi: GPU is lost, exit 15; Xid 79): the driver no longer sees it; reboot, reseat or RMA"
                )
            }
        }

        func context(_ id: String) -> NodeContext? {
            guard let def = catalog.check(id) else { return nil }
            return NodeContext(
                node: node, address: "", roles: roles, facts: facts, profile: profile, site: nil, check: def,
                bundleGiB: 0)
        }
        func verdict(_ id: String) -> Verdict? {
            guard let c = context(id), let analyzer = Analyzers.node[id] else { return nil }
            return analyzer(c)
        }
        func failed(_ id: String) -> String? {
            switch verdict(id) {
            case .problem(let m)?, .unreadable(let m)?: return m
            default: return nil
            }
        }
        let report: NvidiaSMIReport
        do {
            guard let r = try context("gpu.count")?.smi() else {
                return Result(
                    findings: lostFindings([]) + [
                        Finding(check: "gpu.smi", reason: "nvidia-smi -q -x printed no report")
                    ],
                    summary: "")
            }
            report = r
        } catch {
            return Result(findings: lostFindings([]) + [Finding(check: "gpu.smi", reason: "\(error)")], summary: "")
        }
        findings += lostFindings(report.gpus)
        let byIndex = Dictionary(
            report.gpus.compactMap { g in g.index.map { ($0, g) } }, uniquingKeysWith: { a, _ in a })
        func bus(_ i: Int) -> String? { byIndex[i]?.busID }

        // Count: the analyzer decides; lost GPUs were named above, GPUs on PCI that nvidia-smi does not list too.
        if let m = failed("gpu.count") {
            let listed = Set(report.gpus.compactMap(\.busID).map(shortBus))
            let missing = pciGPUs.filter { !listed.contains($0) && !lost.map(shortBus).contains($0) }
            for b in missing {
                findings.append(
                    Finding(
                        gpu: index(ofBus: b), busID: "00000000:" + b.uppercased(), check: "gpu.count",
                        reason: "on PCI but not listed by nvidia-smi"))
            }
            findings.append(Finding(check: "gpu.count", reason: "nvidia-smi lists \(m)"))
        }
        if failed("gpu.model") != nil {
            for g in report.gpus where !want.models.contains(g.name ?? "") {
                findings.append(
                    Finding(
                        gpu: g.index, busID: g.busID, check: "gpu.model",
                        reason:
                            "is \(g.name ?? "unnamed"); profile \(profile.name) expects \(want.models.joined(separator: " or "))"
                    ))
            }
        }
        let loaded = report.driverVersion ?? report.gpus.first?.driverVersion ?? "unknown"
        if let driverVersion, loaded != driverVersion {
            findings.append(
                Finding(
                    check: "gpu.driver",
                    reason: "nvidia-smi reports driver \(loaded); the bundle installs \(driverVersion)"))
        } else if driverVersion == nil, let branch = profile.gpuStack.driverBranch,
            Int(loaded.split(separator: ".").first ?? "") != branch
        {
            findings.append(
                Finding(
                    check: "gpu.driver",
                    reason:
                        "nvidia-smi reports driver \(loaded); profile \(profile.name) wants branch \(branch) (the precompiled driver image)"
                ))
        }
        if let m = failed("gpu.driver-denylist") {
            findings.append(Finding(check: "gpu.driver-denylist", reason: "driver \(m) by profile \(profile.name)"))
        }
        if want.fabricManager && operatorMode {
            // The driver container runs nv-fabricmanager itself; preflight's host checks skip this mode.
            if facts.services["nvidia-fabricmanager"]?.active != "active" {
                findings.append(
                    Finding(
                        check: "gpu.fabricmanager",
                        reason:
                            "nv-fabricmanager is not running in the GPU Operator's driver container; NVSwitch systems need it running before any CUDA work"
                    ))
            } else if let fm = facts.keyValues("fabricmanager")["version"], fm != loaded {
                findings.append(
                    Finding(
                        check: "gpu.fabricmanager-version",
                        reason: "fabric manager \(fm), driver \(loaded): must be the driver's version"))
            }
        }
        if want.fabricManager {
            if let m = failed("gpu.fabricmanager") {
                findings.append(
                    Finding(
                        check: "gpu.fabricmanager",
                        reason: "\(m); NVSwitch systems need it running before any CUDA work"))
            }
            if let m = failed("gpu.fabricmanager-version") {
                findings.append(
                    Finding(check: "gpu.fabricmanager-version", reason: "\(m): must be the driver's version"))
            }
            if failed("gpu.fabric-state") != nil {
                for g in report.gpus {
                    if let s = g.fabricState, s != "Completed" || (g.fabricStatus ?? "Success") != "Success" {
                        findings.append(
                            Finding(
                                gpu: g.index, busID: g.busID, check: "gpu.fabric-state",
                                reason:
                                    "fabric state \(s)\(g.fabricStatus.map { "/\($0)" } ?? ""), not Completed/Success"))
                    }
                }
            }
        }
        if want.nvlinksPerGPU > 0, let m = failed("gpu.nvlink") {
            if let text = facts["nvlink-s"]?.output, let st = try? NvidiaNVLinkStatus.parse(text), !st.gpus.isEmpty {
                for g in st.gpus where !g.inactiveLinks.isEmpty || g.activeLinks < want.nvlinksPerGPU {
                    let links = g.inactiveLinks.map(String.init).joined(separator: ",")
                    findings.append(
                        Finding(
                            gpu: g.index, busID: bus(g.index), check: "gpu.nvlink",
                            reason: g.inactiveLinks.isEmpty
                                ? "\(g.activeLinks) NVLinks active; the profile expects \(want.nvlinksPerGPU)"
                                : "NVLink \(links) inactive (\(g.activeLinks) of \(want.nvlinksPerGPU) active)"))
                }
            } else {
                findings.append(Finding(check: "gpu.nvlink", reason: m))
            }
        }
        let eccFailed = failed("health.ecc-uncorrected") != nil
        let remapFailed = failed("health.row-remap") != nil
        if eccFailed || remapFailed {
            for g in report.gpus where (g.eccVolatileUncorrected ?? 0) > 0 || g.remappedRowsPending == true {
                var parts: [String] = []
                if let v = g.eccVolatileUncorrected, v > 0 {
                    parts.append("\(v) uncorrectable ECC error(s) (volatile)")
                }
                if g.remappedRowsPending == true { parts.append("row remapping pending (reset the GPU)") }
                findings.append(
                    Finding(
                        gpu: g.index, busID: g.busID, check: "health.ecc-uncorrected",
                        reason: parts.joined(separator: ", ")))
            }
        }
        if let d = facts["dcgm"] {
            if d.missingTool && operatorMode {
                findings.append(
                    Finding(
                        check: "health.dcgm",
                        reason:
                            "no nv-hostengine runs on the node (the GPU Operator's nvidia-dcgm pod): cannot run the DCGM diagnostic"
                    ))
            } else if d.missingTool {
                findings.append(
                    Finding(check: "health.dcgm", reason: "dcgmi is not installed: cannot run the DCGM diagnostic"))
            } else if let m = failed("health.dcgm") {
                findings.append(Finding(check: "health.dcgm", reason: "dcgmi diag -r \(dcgmLevel) \(m)"))
            } else if d.exitCode != 0 {
                let first = d.output.split(separator: "\n").first.map(String.init) ?? ""
                findings.append(
                    Finding(
                        check: "health.dcgm", reason: "dcgmi diag -r \(dcgmLevel) failed (exit \(d.exitCode)): \(first)"
                    ))
            }
        }
        let expected = want.counts.first ?? want.count
        if allocatable != expected {
            findings.append(
                Finding(
                    check: "gpu.allocatable",
                    reason:
                        "the node's allocatable nvidia.com/gpu is \(allocatable.map(String.init) ?? "absent"); the profile declares \(expected) GPUs"
                ))
        }
        var summary =
            "\(report.gpus.count)x \(Set(report.gpus.compactMap(\.name)).sorted().joined(separator: "/")), driver \(loaded)"
        if want.fabricManager { summary += ", fabric manager active" }
        if want.nvlinksPerGPU > 0 { summary += ", \(want.nvlinksPerGPU) NVLinks per GPU" }
        summary += ", dcgmi diag -r \(dcgmLevel) passed, nvidia.com/gpu \(allocatable.map(String.init) ?? "absent")"
        return Result(findings: findings, summary: summary)
    }
}
