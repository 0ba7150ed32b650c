import ApplianceModel

/// One capacity or quota problem: a stable code, what was asked and what there is, and what to do.
public struct CapacityFinding: Sendable, Equatable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var remedy: String
    public init(code: String, message: String, remedy: String) {
        self.code = code
        self.message = message
        self.remedy = remedy
    }
    /// One line: `CAP-CPU: ...; remedy: ...`.
    public var description: String { "\(code): \(message); remedy: \(remedy)" }
}

/// The capacity and quota check that runs before anything of the platform is deployed, from the declared
/// hardware (the profile's role sizes for each site host) and the rendered requests and volumes.
///
/// Node allocatable is the declared capacity less what Kubernetes keeps (`reservedMilliCPU`,
/// `reservedMemory`: kube-reserved + system-reserved + the default hard eviction threshold), less the control
/// plane's static pods on control-plane nodes, less the DaemonSets of every node. Where the node is up and its
/// kubelet reports `status.allocatable` (install's `platform-check` runs after every node joined), that
/// measured figure replaces the declared one: Kubernetes already took its reservations out of it.
public enum CapacityCheck {
    /// kube-reserved + system-reserved CPU per node.
    public static let reservedMilliCPU = 200
    /// kube-reserved + system-reserved memory, plus the kubelet's default `memory.available<100Mi` eviction.
    public static let reservedMemory = 612 * Quantity.mebibyte
    /// kube-apiserver 250m, controller-manager 200m, scheduler 100m, etcd 100m/100Mi (kubeadm's static pods).
    public static let controlPlaneMilliCPU = 650
    public static let controlPlaneMemory = 100 * Quantity.mebibyte
    /// Disk a node keeps for the OS, images and logs when its free disk backs the platform's volumes.
    public static let osDiskGiB = 50

    /// Allocatable of one node from its declared size.
    public struct NodeCapacity: Sendable, Equatable {
        public var name: String
        public var milliCPU: Int
        public var memoryBytes: Int
        public var diskGiB: Int
    }

    /// A node's `status.allocatable` as its kubelet reports it.
    public struct Allocatable: Sendable, Equatable {
        public var milliCPU: Int
        public var memoryBytes: Int
        public init(milliCPU: Int, memoryBytes: Int) {
            self.milliCPU = milliCPU
            self.memoryBytes = memoryBytes
        }
        /// From the kubelet's quantities (`cpu: "56"`, `memory: "263941120Ki"`); nil when either does not parse.
        public init?(cpu: String?, memory: String?) {
            guard let c = cpu.flatMap(Quantity.milliCPU), let m = memory.flatMap(Quantity.bytes) else { return nil }
            self.init(milliCPU: c, memoryBytes: m)
        }
    }

    public static func check(
        site: SiteInventory, profile: HardwareProfile, configuration c: PlatformConfiguration,
        releases: [PlatformRelease], allocatable: [String: Allocatable] = [:]
    ) -> [CapacityFinding] {
        var out: [CapacityFinding] = []
        let pods = releases.flatMap(\.pods)
        let systemHosts = site.hosts(withRole: .system)
        let roleFix =
            "give 'spec.hosts' nodes with the role 'system', or lower the requests in the profile's controlPlane.components"
        if systemHosts.isEmpty {
            out.append(
                CapacityFinding(
                    code: "CAP-NODES",
                    message: "the site has no system node; the platform's pods run only on system nodes",
                    remedy: "add the role 'system' to at least one host in spec.hosts"))
        }
        // Residual capacity of each system node after reservations, the control plane and DaemonSets.
        let daemonCPU = pods.filter { $0.placement == .everyNode || $0.placement == .everySystemNode }.reduce(0) {
            $0 + $1.milliCPU
        }
        let daemonMemory = pods.filter { $0.placement == .everyNode || $0.placement == .everySystemNode }.reduce(0) {
            $0 + $1.memoryBytes
        }
        var nodes: [NodeCapacity] = []
        for h in systemHosts {
            guard let req = profile.requirements(for: h.roles) else { continue }
            var cpu = (allocatable[h.name]?.milliCPU ?? (req.cpus * 1000 - reservedMilliCPU)) - daemonCPU
            var mem =
                (allocatable[h.name]?.memoryBytes ?? (req.memoryGiB * Quantity.gibibyte - reservedMemory))
                - daemonMemory
            if h.roles.contains(.controlPlane) {
                cpu -= controlPlaneMilliCPU
                mem -= controlPlaneMemory
            }
            nodes.append(NodeCapacity(name: h.name, milliCPU: cpu, memoryBytes: mem, diskGiB: req.diskGiB))
        }
        let placed = pods.filter { $0.placement == .system }
        let needCPU = placed.reduce(0) { $0 + $1.milliCPU * $1.replicas }
        let needMemory = placed.reduce(0) { $0 + $1.memoryBytes * $1.replicas }
        let haveCPU = nodes.reduce(0) { $0 + max(0, $1.milliCPU) }
        let haveMemory = nodes.reduce(0) { $0 + max(0, $1.memoryBytes) }
        let nodeWord = "\(nodes.count) system node\(nodes.count == 1 ? "" : "s")"
        if !nodes.isEmpty, needCPU > haveCPU {
            out.append(
                CapacityFinding(
                    code: "CAP-CPU",
                    message:
                        "the platform requests \(Quantity.cpuText(needCPU)) CPU on system nodes but \(nodeWord) \(nodes.count == 1 ? "provides" : "provide") \(Quantity.cpuText(haveCPU)) allocatable (after reservations, control plane and daemon sets)",
                    remedy: roleFix))
        }
        if !nodes.isEmpty, needMemory > haveMemory {
            out.append(
                CapacityFinding(
                    code: "CAP-MEMORY",
                    message:
                        "the platform requests \(Quantity.memoryText(needMemory)) of memory on system nodes but \(nodeWord) \(nodes.count == 1 ? "provides" : "provide") \(Quantity.memoryText(haveMemory)) allocatable (after reservations, control plane and daemon sets)",
                    remedy: roleFix))
        }
        // Every pod must fit on one node; then all of them must pack (first fit, largest first).
        if let largestCPU = nodes.map(\.milliCPU).max(), let largestMemory = nodes.map(\.memoryBytes).max() {
            // One line for the largest pod that fits no node, naming the others that do not fit either.
            let unfit = placed.filter { p in
                !nodes.contains { $0.milliCPU >= p.milliCPU && $0.memoryBytes >= p.memoryBytes }
            }.sorted { ($0.memoryBytes, $0.milliCPU, $0.name) > ($1.memoryBytes, $1.milliCPU, $1.name) }
            if let p = unfit.first {
                let others = unfit.dropFirst().map { "\($0.release)/\($0.name)" }
                let also = others.isEmpty ? "" : " (nor do \(others.count) more: \(others.joined(separator: ", ")))"
                let remedy =
                    p.sizedBy.map {
                        "use larger system nodes, or lower '\($0)' in the profile's controlPlane.components"
                    } ?? "use larger system nodes (the chart or its operator sets this pod's requests)"
                out.append(
                    CapacityFinding(
                        code: "CAP-POD",
                        message:
                            "pod \(p.release)/\(p.name) requests \(Quantity.cpuText(p.milliCPU)) CPU / \(Quantity.memoryText(p.memoryBytes)) but the largest system node has \(Quantity.cpuText(max(0, largestCPU))) CPU / \(Quantity.memoryText(max(0, largestMemory))) allocatable left\(also)",
                        remedy: remedy))
            }
            if out.allSatisfy({ $0.code != "CAP-CPU" && $0.code != "CAP-MEMORY" }) && unfit.isEmpty {
                var free = nodes
                let items = placed.flatMap { p in Array(repeating: p, count: p.replicas) }.sorted {
                    ($0.memoryBytes, $0.milliCPU, $0.name) > ($1.memoryBytes, $1.milliCPU, $1.name)
                }
                for p in items {
                    if let i = free.firstIndex(where: { $0.milliCPU >= p.milliCPU && $0.memoryBytes >= p.memoryBytes })
                    {
                        free[i].milliCPU -= p.milliCPU
                        free[i].memoryBytes -= p.memoryBytes
                    } else {
                        out.append(
                            CapacityFinding(
                                code: "CAP-PACK",
                                message:
                                    "the platform's pods fit the system nodes' total but not node by node: pod \(p.release)/\(p.name) (\(Quantity.cpuText(p.milliCPU)) CPU / \(Quantity.memoryText(p.memoryBytes))) finds no node with room after the larger pods",
                                remedy: roleFix))
                        break
                    }
                }
            }
        }
        // Volumes on the platform's class fit what is behind it.
        let volumes = releases.flatMap(\.volumes)
        let needGiB = volumes.reduce(0) { $0 + $1.sizeGiB }
        let className = c.storage.storageClass ?? "the default StorageClass"
        if let declared = c.storage.capacityGiB {
            if needGiB > declared {
                out.append(
                    CapacityFinding(
                        code: "CAP-STORAGE",
                        message:
                            "the platform's volumes on \(className) total \(needGiB) GiB (\(volumeList(volumes))) but 'spec.platform.storage.capacityGiB' declares \(declared) GiB",
                        remedy: "add storage behind \(className), or lower the sizes in spec.platform.storage"))
            }
        } else if !nodes.isEmpty {
            let local = nodes.reduce(0) { $0 + max(0, $1.diskGiB - osDiskGiB) }
            if needGiB > local {
                out.append(
                    CapacityFinding(
                        code: "CAP-STORAGE",
                        message:
                            "the platform's volumes on \(className) total \(needGiB) GiB (\(volumeList(volumes))) but \(nodeWord) have \(local) GiB of disk beyond \(osDiskGiB) GiB each for the system, and the site declares no other storage",
                        remedy:
                            "declare the storage behind the class in spec.platform.storage.capacityGiB (and storageClass), or lower the sizes in spec.platform.storage"
                    ))
            }
        }
        if let export = c.storage.nfsExportGiB, c.storage.datasetCacheGiB > export {
            out.append(
                CapacityFinding(
                    code: "CAP-NFS",
                    message:
                        "the dataset cache asks \(c.storage.datasetCacheGiB) GiB but the NFS export \(c.nfsServer):\(c.nfsPath) is declared with \(export) GiB",
                    remedy: "grow the export, or lower spec.platform.storage.datasetCacheGiB"))
        }
        out += quotaFindings(site: site, profile: profile, queues: c.queues)
        return out
    }

    static func volumeList(_ v: [VolumeClaim]) -> String {
        v.map { "\($0.release)/\($0.name) \($0.sizeGiB) GiB" }.joined(separator: ", ")
    }

    /// The cluster's GPUs: every gpu-worker host at the profile's GPU count.
    public static func clusterGPUs(site: SiteInventory, profile: HardwareProfile) -> Int {
        site.hosts(withRole: .gpuWorker).reduce(0) { $0 + (profile.requirements(for: $1.roles)?.gpu?.count ?? 0) }
    }

    /// QUOTA-SUM, QUOTA-CHILD, QUOTA-LIMIT.
    public static func quotaFindings(site: SiteInventory, profile: HardwareProfile, queues: [SiteInventory.Queue])
        -> [CapacityFinding]
    {
        var out: [CapacityFinding] = []
        let gpus = clusterGPUs(site: site, profile: profile)
        let names = Set(queues.map(\.name))
        let top = queues.filter { $0.parent.map { !names.contains($0) } ?? true }
        let topSum = top.reduce(0) { $0 + $1.gpuQuota }
        let workers = site.hosts(withRole: .gpuWorker).count
        if topSum > gpus {
            out.append(
                CapacityFinding(
                    code: "QUOTA-SUM",
                    message:
                        "top-level GPU quotas sum to \(topSum) (\(top.map { "\($0.name) \($0.gpuQuota)" }.joined(separator: ", "))) but the cluster has \(gpus) GPUs (\(workers) gpu-worker node\(workers == 1 ? "" : "s") of profile \(profile.name))",
                    remedy: "lower the top-level queues' gpuQuota in spec.platform.queues, or add GPU nodes"))
        }
        for parent in queues {
            let children = queues.filter { $0.parent == parent.name }
            let sum = children.reduce(0) { $0 + $1.gpuQuota }
            if !children.isEmpty, sum > parent.gpuQuota {
                out.append(
                    CapacityFinding(
                        code: "QUOTA-CHILD",
                        message:
                            "children of queue '\(parent.name)' have GPU quotas summing to \(sum) (\(children.map { "\($0.name) \($0.gpuQuota)" }.joined(separator: ", "))) but '\(parent.name)' has gpuQuota \(parent.gpuQuota)",
                        remedy: "lower the children's gpuQuota or raise '\(parent.name)' in spec.platform.queues"))
            }
        }
        for q in queues where q.gpuLimit != SiteInventory.Queue.noLimit && q.gpuQuota > q.gpuLimit {
            out.append(
                CapacityFinding(
                    code: "QUOTA-LIMIT",
                    message: "queue '\(q.name)' has gpuQuota \(q.gpuQuota) above its gpuLimit \(q.gpuLimit)",
                    remedy: "raise gpuLimit to at least \(q.gpuQuota) (or -1 for no limit), or lower gpuQuota"))
        }
        return out
    }
}
