import Foundation

// `spec.platform`: what the platform control plane needs from the site beyond the sections it already has
// (the domain from `spec.network.domain`, the certificate from `spec.tls`, the NFS export from
// `spec.storage.nfs`, the registry from `spec.registry`): the GPU scheduler's queues and the namespaces
// mapped to them, and the platform's storage (sizes and the classes behind them).

extension SiteInventory {
    /// `spec.platform`.
    public struct PlatformSettings: Sendable, Equatable {
        /// The scheduler's queues; empty: the profile's default queues (top-level, one per profile queue).
        public var queues: [Queue]
        public var storage: PlatformStorage
        /// Name of the Secret (kubernetes.io/tls) that holds the site certificate for the ingress.
        public var tlsSecretName: String
        @EqualityIgnored public var location: SourceLocation? = nil

        public static let defaultTLSSecretName = "platform-tls"

        public init(
            queues: [Queue] = [], storage: PlatformStorage = PlatformStorage(),
            tlsSecretName: String = defaultTLSSecretName, location: SourceLocation? = nil
        ) {
            self.queues = queues
            self.storage = storage
            self.tlsSecretName = tlsSecretName
            self.location = location
        }
    }

    /// One scheduler queue (`spec.platform.queues[]`), a KAI `Queue` (`scheduling.run.ai/v2`) once rendered.
    public struct Queue: Sendable, Equatable {
        public var name: String
        /// The parent queue; nil: a top-level queue.
        public var parent: String?
        /// Guaranteed GPUs (deserved quota).
        public var gpuQuota: Int
        /// Most GPUs the queue may use, borrowing idle ones; -1: no limit.
        public var gpuLimit: Int
        /// Share of idle GPUs beyond quota, relative to the other queues of the same priority.
        public var overQuotaWeight: Int
        /// Higher gets surplus first and is reclaimed last (KAI's default is 100).
        public var priority: Int
        /// Namespaces whose workloads go to this queue (leaf queues only).
        public var namespaces: [String]
        @EqualityIgnored public var location: SourceLocation? = nil

        public static let noLimit = -1
        public static let defaultPriority = 100

        public init(
            name: String, parent: String? = nil, gpuQuota: Int, gpuLimit: Int = noLimit, overQuotaWeight: Int = 1,
            priority: Int = defaultPriority, namespaces: [String] = [], location: SourceLocation? = nil
        ) {
            self.name = name
            self.parent = parent
            self.gpuQuota = gpuQuota
            self.gpuLimit = gpuLimit
            self.overQuotaWeight = overQuotaWeight
            self.priority = priority
            self.namespaces = namespaces
            self.location = location
        }
    }

    /// `spec.platform.storage`: sizes of the platform's volumes (nil: the profile's, else the design's
    /// defaults) and what is behind their classes (nil: not declared, so not checked).
    public struct PlatformStorage: Sendable, Equatable {
        /// StorageClass of the platform's own volumes (PostgreSQL, Prometheus, object store); nil: the
        /// cluster's default class.
        public var storageClass: String?
        /// Capacity behind `storageClass`, in GiB.
        public var capacityGiB: Int?
        public var postgresqlGiB: Int?
        public var prometheusGiB: Int?
        /// Per object-store volume server.
        public var objectStoreGiB: Int?
        public var datasetCacheGiB: Int?
        /// Name of the NFS StorageClass of the dataset cache.
        public var datasetStorageClass: String
        /// Size of the NFS export (`spec.storage.nfs`), in GiB.
        public var nfsExportGiB: Int?
        @EqualityIgnored public var capacityLocation: SourceLocation? = nil
        @EqualityIgnored public var nfsExportLocation: SourceLocation? = nil

        public static let defaultDatasetStorageClass = "dataset-cache"

        public init(
            storageClass: String? = nil, capacityGiB: Int? = nil, postgresqlGiB: Int? = nil, prometheusGiB: Int? = nil,
            objectStoreGiB: Int? = nil, datasetCacheGiB: Int? = nil,
            datasetStorageClass: String = defaultDatasetStorageClass, nfsExportGiB: Int? = nil
        ) {
            self.storageClass = storageClass
            self.capacityGiB = capacityGiB
            self.postgresqlGiB = postgresqlGiB
            self.prometheusGiB = prometheusGiB
            self.objectStoreGiB = objectStoreGiB
            self.datasetCacheGiB = datasetCacheGiB
            self.datasetStorageClass = datasetStorageClass
            self.nfsExportGiB = nfsExportGiB
        }
    }

    static func decodePlatform(_ v: YAMLValue) -> PlatformSettings? {
        let r = v.reader
        guard let m = v.mapping(allowing: ["queues", "storage", "tlsSecretName"]) else { return nil }
        var settings = PlatformSettings(location: v.location)
        if let sv = m["tlsSecretName"], let s = sv.nonEmptyString() {
            if !isValidResourceName(s) {
                r.error(
                    "'spec.platform.tlsSecretName' must be a Kubernetes name (lower case, digits, '-', '.'), not '\(s)'",
                    at: sv)
            }
            settings.tlsSecretName = s
        }
        if let sv = m["storage"] { settings.storage = decodePlatformStorage(sv) }
        if let qv = m["queues"], let items = qv.sequence() {
            var names: Set<String> = []
            var namespaces: [String: String] = [:]
            for item in items {
                guard
                    let q = item.mapping(allowing: [
                        "name", "parent", "gpuQuota", "gpuLimit", "overQuotaWeight", "priority", "namespaces",
                    ])
                else { continue }
                let nameValue = q.require("name")
                let name = nameValue?.nonEmptyString()
                if let name, let nameValue {
                    if !isValidNodeName(name) {
                        r.error(
                            "queue name '\(name)' must be a DNS label: lower-case letters, digits and '-', at most 63",
                            at: nameValue)
                    } else if names.contains(name) {
                        r.error("queue '\(name)' is defined twice", at: nameValue)
                    }
                    names.insert(name)
                }
                let parent = q["parent"]?.nonEmptyString()
                if let parent, parent == name, let pv = q["parent"] {
                    r.error("queue '\(parent)' cannot be its own parent", at: pv)
                }
                let quota = q.require("gpuQuota")?.int(in: 0...1_000_000)
                let limit = q["gpuLimit"]?.int(in: -1...1_000_000) ?? Queue.noLimit
                let weight = q["overQuotaWeight"]?.int(in: 0...1000) ?? 1
                let priority = q["priority"]?.int(in: 0...1000) ?? Queue.defaultPriority
                var ns: [String] = []
                if let nv = q["namespaces"], let list = nv.stringList() {
                    for n in list {
                        if !isValidNodeName(n) {
                            r.error("namespace '\(n)' must be a DNS label", at: nv)
                        } else if let other = namespaces[n] {
                            r.error("namespace '\(n)' is mapped to queue '\(other)' already", at: nv)
                        }
                        namespaces[n] = name ?? ""
                    }
                    ns = list
                }
                guard let name, let quota else { continue }
                settings.queues.append(
                    Queue(
                        name: name, parent: parent, gpuQuota: quota, gpuLimit: limit, overQuotaWeight: weight,
                        priority: priority, namespaces: ns, location: item.location))
            }
            // Parents must exist and the tree must not loop; namespaces go to leaves only.
            let byName = Dictionary(settings.queues.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for q in settings.queues {
                if let p = q.parent, byName[p] == nil {
                    r.error(
                        "queue '\(q.name)' names parent '\(p)', which is not in spec.platform.queues",
                        location: q.location)
                }
                var seen: Set<String> = [q.name]
                var cur = q.parent
                while let c = cur, let next = byName[c] {
                    if seen.contains(c) {
                        r.error("queue '\(q.name)' is in a parent loop (\(c))", location: q.location)
                        break
                    }
                    seen.insert(c)
                    cur = next.parent
                }
                if !q.namespaces.isEmpty, settings.queues.contains(where: { $0.parent == q.name }) {
                    r.error(
                        "queue '\(q.name)' has child queues, so namespaces cannot map to it (workloads go to leaf queues)",
                        location: q.location)
                }
            }
        }
        return settings
    }

    static func decodePlatformStorage(_ v: YAMLValue) -> PlatformStorage {
        var s = PlatformStorage()
        guard
            let m = v.mapping(allowing: [
                "storageClass", "capacityGiB", "postgresqlGiB", "prometheusGiB", "objectStoreGiB", "datasetCacheGiB",
                "datasetStorageClass", "nfsExportGiB",
            ])
        else { return s }
        for key in ["storageClass", "datasetStorageClass"] {
            if let cv = m[key], let c = cv.nonEmptyString(), !isValidResourceName(c) {
                v.reader.error("'spec.platform.storage.\(key)' must be a Kubernetes name, not '\(c)'", at: cv)
            }
        }
        s.storageClass = m["storageClass"]?.nonEmptyString()
        if let c = m["datasetStorageClass"]?.nonEmptyString() { s.datasetStorageClass = c }
        s.capacityGiB = m["capacityGiB"]?.int(in: 1...100_000_000)
        s.capacityLocation = m["capacityGiB"]?.location
        s.postgresqlGiB = m["postgresqlGiB"]?.int(in: 1...1_000_000)
        s.prometheusGiB = m["prometheusGiB"]?.int(in: 1...1_000_000)
        s.objectStoreGiB = m["objectStoreGiB"]?.int(in: 1...100_000_000)
        s.datasetCacheGiB = m["datasetCacheGiB"]?.int(in: 1...100_000_000)
        s.nfsExportGiB = m["nfsExportGiB"]?.int(in: 1...100_000_000)
        s.nfsExportLocation = m["nfsExportGiB"]?.location
        return s
    }

    /// A Kubernetes object name (RFC 1123 subdomain).
    public static func isValidResourceName(_ s: String) -> Bool {
        s.count <= 253 && !s.isEmpty
            && s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { isValidNodeName(String($0)) }
    }

    /// YAML pairs of `spec.platform`, for `yaml()`.
    func platformTrees() -> [(String, YAMLTree)] {
        guard let p = platform else { return [] }
        var pairs: [(String, YAMLTree)] = []
        if !p.queues.isEmpty {
            pairs.append(
                (
                    "queues",
                    .list(
                        p.queues.map { q in
                            var qp: [(String, YAMLTree)] = [("name", .string(q.name))]
                            if let parent = q.parent { qp.append(("parent", .string(parent))) }
                            qp.append(("gpuQuota", .int(q.gpuQuota)))
                            qp.append(("gpuLimit", .int(q.gpuLimit)))
                            qp.append(("overQuotaWeight", .int(q.overQuotaWeight)))
                            qp.append(("priority", .int(q.priority)))
                            if !q.namespaces.isEmpty {
                                qp.append(("namespaces", .list(q.namespaces.map { .string($0) })))
                            }
                            return .map(qp)
                        })
                ))
        }
        let s = p.storage
        var sp: [(String, YAMLTree)] = []
        if let c = s.storageClass { sp.append(("storageClass", .string(c))) }
        if let c = s.capacityGiB { sp.append(("capacityGiB", .int(c))) }
        if let c = s.postgresqlGiB { sp.append(("postgresqlGiB", .int(c))) }
        if let c = s.prometheusGiB { sp.append(("prometheusGiB", .int(c))) }
        if let c = s.objectStoreGiB { sp.append(("objectStoreGiB", .int(c))) }
        if let c = s.datasetCacheGiB { sp.append(("datasetCacheGiB", .int(c))) }
        if s.datasetStorageClass != PlatformStorage.defaultDatasetStorageClass {
            sp.append(("datasetStorageClass", .string(s.datasetStorageClass)))
        }
        if let c = s.nfsExportGiB { sp.append(("nfsExportGiB", .int(c))) }
        if !sp.isEmpty { pairs.append(("storage", .map(sp))) }
        if p.tlsSecretName != PlatformSettings.defaultTLSSecretName {
            pairs.append(("tlsSecretName", .string(p.tlsSecretName)))
        }
        return [("platform", .map(pairs))]
    }
}
