import ApplianceModel

/// The Kubernetes objects the platform applies besides its Helm releases: the scheduler's queues
/// (`scheduling.run.ai/v2` `Queue`, cluster-scoped), the namespaces mapped to leaf queues, and the dataset
/// cache (an NFS CSI StorageClass on the site's export and the shared claim on it).
public enum PlatformObjects {
    public static let managedBy: (String, YAMLTree) = (
        "labels", .map([("app.kubernetes.io/managed-by", .string("appliance"))])
    )
    /// The label KAI's pod grouper reads for a workload's queue (`podgrouper.queueLabelKey`).
    public static let queueLabel = "kai.scheduler/queue"
    /// The namespace of the dataset cache's shared claim.
    public static let datasetNamespace = "platform-data"
    public static let datasetClaim = "dataset-cache"

    /// One `Queue` per site queue, parents before children. CPU and memory are not limited (-1); GPUs carry
    /// the site's quota, limit and over-quota weight.
    public static func queues(_ c: PlatformConfiguration) -> [YAMLTree] {
        ordered(c.queues).map { q in
            var spec: [(String, YAMLTree)] = [("displayName", .string(q.name))]
            if let p = q.parent { spec.append(("parentQueue", .string(p))) }
            spec.append(("priority", .int(q.priority)))
            let unlimited: YAMLTree = .map([("quota", .int(-1)), ("limit", .int(-1)), ("overQuotaWeight", .int(1))])
            spec.append(
                (
                    "resources",
                    .map([
                        (
                            "gpu",
                            .map([
                                ("quota", .int(q.gpuQuota)), ("limit", .int(q.gpuLimit)),
                                ("overQuotaWeight", .int(q.overQuotaWeight)),
                            ])
                        ),
                        ("cpu", unlimited),
                        ("memory", unlimited),
                    ])
                ))
            return .map([
                ("apiVersion", .string("scheduling.run.ai/v2")), ("kind", .string("Queue")),
                ("metadata", .map([("name", .string(q.name)), managedBy])), ("spec", .map(spec)),
            ])
        }
    }

    /// Parents first (a child's `parentQueue` must exist when it is created), otherwise in site order.
    static func ordered(_ queues: [SiteInventory.Queue]) -> [SiteInventory.Queue] {
        var out: [SiteInventory.Queue] = []
        var placed: Set<String> = []
        var rest = queues
        while !rest.isEmpty {
            let ready = rest.filter { q in
                q.parent.map { placed.contains($0) || !queues.contains { $0.name == q.parent } } ?? true
            }
            guard !ready.isEmpty else {
                out += rest
                break
            }
            for q in ready { placed.insert(q.name) }
            out += ready
            rest.removeAll { q in ready.contains { $0.name == q.name } }
        }
        return out
    }

    /// The namespaces mapped to leaf queues, labelled with their queue.
    public static func namespaces(_ c: PlatformConfiguration) -> [YAMLTree] {
        c.queues.flatMap { q in
            q.namespaces.map { ns in
                YAMLTree.map([
                    ("apiVersion", .string("v1")), ("kind", .string("Namespace")),
                    (
                        "metadata",
                        .map([
                            ("name", .string(ns)),
                            (
                                "labels",
                                .map([
                                    ("app.kubernetes.io/managed-by", .string("appliance")),
                                    (queueLabel, .string(q.name)),
                                ])
                            ),
                        ])
                    ),
                ])
            }
        }
    }

    /// The dataset cache: a StorageClass of the NFS CSI driver on the site's export (volumes kept on
    /// release), its namespace, and one shared ReadWriteMany claim of the cache's size.
    public static func datasetCache(_ c: PlatformConfiguration) -> [YAMLTree] {
        let sc: YAMLTree = .map([
            ("apiVersion", .string("storage.k8s.io/v1")), ("kind", .string("StorageClass")),
            ("metadata", .map([("name", .string(c.storage.datasetStorageClass)), managedBy])),
            ("provisioner", .string("nfs.csi.k8s.io")),
            ("parameters", .map([("server", .string(c.nfsServer)), ("share", .string(c.nfsPath))])),
            ("reclaimPolicy", .string("Retain")),
            ("volumeBindingMode", .string("Immediate")),
            ("allowVolumeExpansion", .bool(true)),
            ("mountOptions", .list(c.nfsMountOptions.map { .string($0) })),
        ])
        let ns: YAMLTree = .map([
            ("apiVersion", .string("v1")), ("kind", .string("Namespace")),
            ("metadata", .map([("name", .string(datasetNamespace)), managedBy])),
        ])
        let pvc: YAMLTree = .map([
            ("apiVersion", .string("v1")), ("kind", .string("PersistentVolumeClaim")),
            ("metadata", .map([("name", .string(datasetClaim)), ("namespace", .string(datasetNamespace)), managedBy])),
            (
                "spec",
                .map([
                    ("accessModes", .list([.string("ReadWriteMany")])),
                    ("storageClassName", .string(c.storage.datasetStorageClass)),
                    ("resources", .map([("requests", .map([("storage", .string("\(c.storage.datasetCacheGiB)Gi"))]))])),
                ])
            ),
        ])
        return [sc, ns, pvc]
    }

    /// Every object, in apply order, as one multi-document YAML file.
    public static func all(_ c: PlatformConfiguration) -> [YAMLTree] {
        datasetCache(c) + queues(c) + namespaces(c)
    }

    public static func document(_ objects: [YAMLTree]) -> String {
        objects.map { "---\n" + $0.serialized() }.joined()
    }
}
