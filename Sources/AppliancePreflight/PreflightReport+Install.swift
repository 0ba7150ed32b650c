import ApplianceModel
import Foundation

extension PreflightReport {
    /// The report as the install gate reads it: a finding about something install sets up itself (checks
    /// marked `install: sets` in the catalogue: IP forwarding and bridge sysctls, swap, the Kubernetes
    /// packages, containerd, /etc/hosts, the hostname) is reported as `info` "set by install" and does not
    /// block. In `host-driver` mode the same holds for the checks marked `install: host-driver` on a node
    /// whose driver is not installed yet (`gpu.smi` does not pass there): install puts the driver in place and
    /// the GPU validation gate checks those afterwards. Everything else (hardware, OS release, kernel, disks,
    /// NICs, PCI GPUs, time, DNS, cross-node checks) gates the install as it is.
    public func forInstall(gpuStackMode: String) -> PreflightReport {
        var copy = self
        let byID = Dictionary(checks.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // No working host driver on the node: nvidia-smi fails, or no kernel module is loaded (a node whose
        // packages outlived its driver, e.g. one removed from the cluster and added again).
        let driverMissing = Set(
            outcomes.filter { ($0.checkID == "gpu.smi" || $0.checkID == "gpu.driver-mode") && $0.status != .pass }
                .map(\.node))
        copy.outcomes = outcomes.map { o in
            guard o.status == .fail || o.status == .warn || o.status == .unknown,
                let treatment = byID[o.checkID]?.install
            else { return o }
            var changed = o
            switch treatment {
            case .sets:
                changed.status = .info
                changed.observed = "set by install (now: \(o.observed))"
            case .hostDriver:
                guard gpuStackMode == "host-driver", driverMissing.contains(o.node) else { return o }
                changed.status = .info
                changed.observed = "driver installed by install, validated by its GPU gate (now: \(o.observed))"
            }
            return changed
        }
        return copy
    }

    /// One line per finding that blocks (failures not waived), for the install's error.
    public var blockingFindings: [String] {
        outcomes.filter { $0.effectiveStatus == .fail }.map { "\($0.node): \($0.checkID): \($0.observed)" }
    }
}
