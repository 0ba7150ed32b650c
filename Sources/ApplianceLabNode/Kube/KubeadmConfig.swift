import Foundation
import Yams

/// The kubeadm configuration API (kubeadm.k8s.io v1beta3 and v1beta4, plus KubeletConfiguration
/// kubelet.config.k8s.io/v1beta1 and KubeProxyConfiguration kubeproxy.config.k8s.io/v1alpha1), checked the way
/// kubeadm checks it:
/// - a missing apiVersion/kind, an old or unknown apiVersion, a kind given twice: error;
/// - unknown fields: "strict decoding error" — a warning for `init`/`join` (kubeadm prints it with klog and
///   goes on), an error for `kubeadm config validate`;
/// - field type mismatches: the Go JSON decoder's error;
/// - semantic validation (CIDRs, addresses, ports, tokens, discovery): aggregated field errors.
public struct KubeadmConfig: Sendable {
    public struct Token: Sendable, Equatable {
        public var token: String
        public var ttlSeconds: Int
        public init(token: String, ttlSeconds: Int) {
            self.token = token
            self.ttlSeconds = ttlSeconds
        }
    }

    public var apiVersion: String = "kubeadm.k8s.io/v1beta4"
    public var hasInit = false
    public var hasCluster = false
    public var hasJoin = false
    // Init
    public var advertiseAddress: String?
    public var bindPort: Int = 6443
    public var nodeName: String?
    public var criSocket: String?
    public var bootstrapTokens: [Token] = []
    public var certificateKey: String?
    public var taints: [[String: String]]?
    // Cluster
    public var kubernetesVersion: String?
    public var controlPlaneEndpoint: String?
    public var podSubnet: String?
    public var serviceSubnet: String = "10.96.0.0/12"
    public var dnsDomain: String = "cluster.local"
    public var clusterName: String = "kubernetes"
    public var certificatesDir: String = "/etc/kubernetes/pki"
    /// `controllerManager.extraArgs` (v1beta4 `[{name, value}]`, v1beta3 a map). The stand-in's controllers run
    /// in its API server and honour `node-monitor-grace-period`.
    public var controllerManagerArgs: [String: String] = [:]
    /// `apiServer.certSANs`: extra names and addresses of the serving certificate.
    public var apiServerCertSANs: [String] = []
    // Join
    public var discoveryAPIServerEndpoint: String?
    public var discoveryToken: String?
    public var discoveryCACertHashes: [String] = []
    public var unsafeSkipCAVerification = false
    public var joinControlPlane = false
    public var joinCertificateKey: String?
    // Kubelet
    public var kubeletMaxPods: Int?
    public var kubeletCgroupDriver: String?

    public var warnings: [String] = []
}

public struct KubeadmConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Field types of the schema used for strict decoding.
indirect enum FieldType: Sendable {
    case string, int, bool, duration, stringList, stringMap, any
    case object([String: FieldType])
    case list(FieldType)
    /// v1beta3: map[string]string; v1beta4: []{name, value}
    case extraArgs

    var goName: String {
        switch self {
        case .string, .duration: return "string"
        case .int: return "int32"
        case .bool: return "bool"
        case .stringList, .list: return "[]"
        case .stringMap, .extraArgs: return "map"
        case .object, .any: return "object"
        }
    }
}

enum KubeadmSchema {
    static func extraArgs(_ v4: Bool) -> FieldType {
        v4 ? .list(.object(["name": .string, "value": .string])) : .stringMap
    }

    static func nodeRegistration(_ v4: Bool) -> FieldType {
        var f: [String: FieldType] = [
            "name": .string, "criSocket": .string,
            "taints": .list(.object(["key": .string, "value": .string, "effect": .string, "timeAdded": .string])),
            "kubeletExtraArgs": extraArgs(v4), "ignorePreflightErrors": .stringList, "imagePullPolicy": .string,
        ]
        if v4 { f["imagePullSerial"] = .bool }
        return .object(f)
    }

    static let apiEndpoint: FieldType = .object(["advertiseAddress": .string, "bindPort": .int])
    static let patches: FieldType = .object(["directory": .string])
    static let timeouts: FieldType = .object([
        "controlPlaneComponentHealthCheck": .duration, "kubeletHealthCheck": .duration, "kubernetesAPICall": .duration,
        "etcdAPICall": .duration, "tlsBootstrap": .duration, "discovery": .duration, "upgradeManifests": .duration,
    ])
    static let bootstrapToken: FieldType = .object([
        "token": .string, "description": .string, "ttl": .duration, "expires": .string, "usages": .stringList,
        "groups": .stringList,
    ])
    static let envs: FieldType = .list(.object(["name": .string, "value": .string, "valueFrom": .any]))
    static let volumes: FieldType = .list(
        .object([
            "name": .string, "hostPath": .string, "mountPath": .string, "readOnly": .bool, "pathType": .string,
        ]))

    static func initConfiguration(_ v4: Bool) -> [String: FieldType] {
        var f: [String: FieldType] = [
            "apiVersion": .string, "kind": .string, "bootstrapTokens": .list(bootstrapToken),
            "nodeRegistration": nodeRegistration(v4), "localAPIEndpoint": apiEndpoint, "certificateKey": .string,
            "skipPhases": .stringList, "patches": patches,
        ]
        if v4 {
            f["dryRun"] = .bool
            f["timeouts"] = timeouts
        }
        return f
    }

    static func component(_ v4: Bool, apiServer: Bool = false) -> FieldType {
        var f: [String: FieldType] = ["extraArgs": extraArgs(v4), "extraVolumes": volumes]
        if v4 { f["extraEnvs"] = envs }
        if apiServer {
            f["certSANs"] = .stringList
            if !v4 { f["timeoutForControlPlane"] = .duration }
        }
        return .object(f)
    }

    static func clusterConfiguration(_ v4: Bool) -> [String: FieldType] {
        var local: [String: FieldType] = [
            "imageRepository": .string, "imageTag": .string, "dataDir": .string, "extraArgs": extraArgs(v4),
            "serverCertSANs": .stringList, "peerCertSANs": .stringList,
        ]
        if v4 { local["extraEnvs"] = envs }
        var external: [String: FieldType] = [
            "endpoints": .stringList, "caFile": .string, "certFile": .string, "keyFile": .string,
        ]
        if v4 { external["httpEndpoints"] = .stringList }
        var dns: [String: FieldType] = ["imageRepository": .string, "imageTag": .string]
        if v4 { dns["disabled"] = .bool }
        var f: [String: FieldType] = [
            "apiVersion": .string, "kind": .string,
            "etcd": .object(["local": .object(local), "external": .object(external)]),
            "networking": .object(["serviceSubnet": .string, "podSubnet": .string, "dnsDomain": .string]),
            "kubernetesVersion": .string, "controlPlaneEndpoint": .string,
            "apiServer": component(v4, apiServer: true), "controllerManager": component(v4),
            "scheduler": component(v4), "dns": .object(dns), "certificatesDir": .string, "imageRepository": .string,
            "featureGates": .any, "clusterName": .string,
        ]
        if v4 {
            f["proxy"] = .object(["disabled": .bool])
            f["encryptionAlgorithm"] = .string
            f["certificateValidityPeriod"] = .duration
            f["caCertificateValidityPeriod"] = .duration
        }
        return f
    }

    static func joinConfiguration(_ v4: Bool) -> [String: FieldType] {
        var discovery: [String: FieldType] = [
            "bootstrapToken": .object([
                "token": .string, "apiServerEndpoint": .string, "caCertHashes": .stringList,
                "unsafeSkipCAVerification": .bool,
            ]),
            "file": .object(["kubeConfigPath": .string, "kubeConfig": .any]), "tlsBootstrapToken": .string,
        ]
        if !v4 { discovery["timeout"] = .duration }
        var f: [String: FieldType] = [
            "apiVersion": .string, "kind": .string, "nodeRegistration": nodeRegistration(v4), "caCertPath": .string,
            "discovery": .object(discovery),
            "controlPlane": .object(["localAPIEndpoint": apiEndpoint, "certificateKey": .string]),
            "skipPhases": .stringList, "patches": patches,
        ]
        if v4 {
            f["dryRun"] = .bool
            f["timeouts"] = timeouts
        }
        return f
    }

    static let kubeletConfiguration: [String: FieldType] = {
        var f: [String: FieldType] = ["apiVersion": .string, "kind": .string]
        let strings = [
            "staticPodPath", "syncFrequency", "fileCheckFrequency", "httpCheckFrequency", "staticPodURL", "address",
            "tlsCertFile", "tlsPrivateKeyFile", "tlsMinVersion", "healthzBindAddress", "clusterDomain",
            "streamingConnectionIdleTimeout", "nodeStatusUpdateFrequency", "nodeStatusReportFrequency",
            "imageMinimumGCAge", "imageMaximumGCAge", "volumeStatsAggPeriod", "kubeletCgroups", "systemCgroups",
            "cgroupRoot", "cgroupDriver", "cpuManagerPolicy", "cpuManagerReconcilePeriod", "memoryManagerPolicy",
            "topologyManagerPolicy", "topologyManagerScope", "runtimeRequestTimeout", "hairpinMode", "podCIDR",
            "resolvConf", "cpuCFSQuotaPeriod", "contentType", "evictionPressureTransitionPeriod",
            "containerLogMaxSize", "containerLogMonitorInterval", "configMapAndSecretChangeDetectionStrategy",
            "reservedSystemCPUs", "showHiddenMetricsForVersion", "systemReservedCgroup", "kubeReservedCgroup",
            "volumePluginDir", "providerID", "shutdownGracePeriod", "shutdownGracePeriodCriticalPods",
            "containerRuntimeEndpoint", "imageServiceEndpoint", "imagePullCredentialsVerificationPolicy",
        ]
        for s in strings { f[s] = .string }
        let ints = [
            "port", "readOnlyPort", "registryPullQPS", "registryBurst", "eventRecordQPS", "eventBurst", "healthzPort",
            "oomScoreAdj", "nodeLeaseDurationSeconds", "imageGCHighThresholdPercent", "imageGCLowThresholdPercent",
            "maxPods", "podPidsLimit", "nodeStatusMaxImages", "maxOpenFiles", "kubeAPIQPS", "kubeAPIBurst",
            "maxParallelImagePulls", "evictionMaxPodGracePeriod", "podsPerCore", "iptablesMasqueradeBit",
            "iptablesDropBit", "containerLogMaxFiles", "containerLogMaxWorkers", "memoryThrottlingFactor",
        ]
        for s in ints { f[s] = .int }
        let bools = [
            "enableServer", "rotateCertificates", "serverTLSBootstrap", "enableDebuggingHandlers",
            "enableContentionProfiling", "cgroupsPerQOS", "runOnce", "cpuCFSQuota", "serializeImagePulls",
            "enableControllerAttachDetach", "protectKernelDefaults", "makeIPTablesUtilChains", "failSwapOn",
            "kernelMemcgNotification", "enableSystemLogHandler", "enableSystemLogQuery", "enableProfilingHandler",
            "enableDebugFlagsHandler", "seccompDefault", "registerNode", "localStorageCapacityIsolation",
            "failCgroupV1", "singleProcessOOMKill", "mergeDefaultEvictionSettings",
        ]
        for s in bools { f[s] = .bool }
        for s in [
            "staticPodURLHeader", "evictionHard", "evictionSoft", "evictionSoftGracePeriod", "evictionMinimumReclaim",
            "featureGates", "systemReserved", "kubeReserved", "qosReserved", "cpuManagerPolicyOptions",
            "topologyManagerPolicyOptions",
        ] { f[s] = .any }
        for s in [
            "tlsCipherSuites", "clusterDNS", "enforceNodeAllocatable", "allowedUnsafeSysctls",
            "preloadedImagesVerificationAllowlist",
        ] { f[s] = .stringList }
        for s in ["shutdownGracePeriodByPodPriority", "reservedMemory", "registerWithTaints"] { f[s] = .list(.any) }
        f["authentication"] = .object([
            "x509": .object(["clientCAFile": .string]),
            "webhook": .object(["enabled": .bool, "cacheTTL": .duration]),
            "anonymous": .object(["enabled": .bool]),
        ])
        f["authorization"] = .object([
            "mode": .string,
            "webhook": .object(["cacheAuthorizedTTL": .duration, "cacheUnauthorizedTTL": .duration]),
        ])
        f["memorySwap"] = .object(["swapBehavior": .string])
        f["logging"] = .any
        f["tracing"] = .any
        f["crashLoopBackOff"] = .any
        f["userNamespaces"] = .any
        return f
    }()
}

public enum KubeadmConfigParser {
    public enum Mode: Sendable { case initialize, join, validate }

    static let oldVersions = [
        "kubeadm.k8s.io/v1alpha1": "v1.10", "kubeadm.k8s.io/v1alpha2": "v1.11", "kubeadm.k8s.io/v1alpha3": "v1.12",
        "kubeadm.k8s.io/v1beta1": "v1.14", "kubeadm.k8s.io/v1beta2": "v1.22",
    ]

    /// Parses and validates. Throws `KubeadmConfigError` with kubeadm's text for what kubeadm rejects;
    /// returns warnings (in `warnings`) for what it only warns about.
    public static func parse(
        _ yaml: String, mode: Mode, kubeadmVersion: KubeVersion, klogPrefix: String = "W0000 00:00:00.000000       1 "
    )
        throws -> KubeadmConfig
    {
        var cfg = KubeadmConfig()
        let docs: [Node]
        do {
            docs = try Yams.compose_all(yaml: yaml).compactMap { $0 }
        } catch {
            throw KubeadmConfigError(message: "error converting YAML to JSON: \(error)")
        }
        var seenKinds: Set<String> = []
        var strictErrors: [String] = []
        for doc in docs {
            guard let map = doc.mapping else {
                throw KubeadmConfigError(
                    message:
                        "invalid configuration: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal \(doc.scalar != nil ? "string" : "array") into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }"
                )
            }
            let apiVersion = map["apiVersion"]?.string ?? ""
            let kind = map["kind"]?.string ?? ""
            if apiVersion.isEmpty || kind.isEmpty {
                let group = apiVersion.split(separator: "/").first.map(String.init) ?? ""
                let version = apiVersion.split(separator: "/").dropFirst().first.map(String.init) ?? ""
                throw KubeadmConfigError(
                    message:
                        "invalid configuration for GroupVersionKind \(group)/\(version), Kind=\(kind): kind and apiVersion is mandatory information that must be specified"
                )
            }
            if seenKinds.contains(kind) {
                throw KubeadmConfigError(
                    message: "invalid configuration: kind \"\(kind)\" is specified twice in YAML file")
            }
            seenKinds.insert(kind)
            let parts = apiVersion.split(separator: "/").map(String.init)
            let group = parts.count == 2 ? parts[0] : ""
            let version = parts.count == 2 ? parts[1] : parts[0]
            let gvk = "schema.GroupVersionKind{Group:\"\(group)\", Version:\"\(version)\", Kind:\"\(kind)\"}"

            let schema: [String: FieldType]
            if group == "kubeadm.k8s.io" {
                if let use = oldVersions[apiVersion] {
                    throw KubeadmConfigError(
                        message:
                            "your configuration file uses an old API spec: \"\(apiVersion)\". Please use kubeadm \(use) instead and run 'kubeadm config migrate --old-config old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API version."
                    )
                }
                guard version == "v1beta3" || version == "v1beta4" else {
                    throw KubeadmConfigError(
                        message:
                            "no kind \"\(kind)\" is registered for version \"\(apiVersion)\" in scheme \"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31\""
                    )
                }
                if version == "v1beta3" {
                    cfg.warnings.append(
                        "\(klogPrefix)common.go:101] your configuration file uses a deprecated API spec: \"\(apiVersion)\" (kind: \"\(kind)\"). Please use 'kubeadm config migrate --old-config old-config-file --new-config new-config-file', which will write the new, similar spec using a newer API version."
                    )
                }
                let v4 = version == "v1beta4"
                cfg.apiVersion = apiVersion
                switch kind {
                case "InitConfiguration": schema = KubeadmSchema.initConfiguration(v4); cfg.hasInit = true
                case "ClusterConfiguration": schema = KubeadmSchema.clusterConfiguration(v4); cfg.hasCluster = true
                case "JoinConfiguration": schema = KubeadmSchema.joinConfiguration(v4); cfg.hasJoin = true
                case "ResetConfiguration",
                    "UpgradeConfiguration" where v4:
                    cfg.warnings.append(
                        "\(klogPrefix)initconfiguration.go:369] [config] WARNING: Ignored configuration document with GroupVersionKind \(apiVersion), Kind=\(kind)"
                    )
                    continue
                default:
                    throw KubeadmConfigError(
                        message:
                            "no kind \"\(kind)\" is registered for version \"\(apiVersion)\" in scheme \"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31\""
                    )
                }
            } else if apiVersion == "kubelet.config.k8s.io/v1beta1" && kind == "KubeletConfiguration" {
                schema = KubeadmSchema.kubeletConfiguration
            } else if apiVersion == "kubeproxy.config.k8s.io/v1alpha1" && kind == "KubeProxyConfiguration" {
                schema = [:]  // accepted, not checked field by field
            } else {
                cfg.warnings.append(
                    "\(klogPrefix)initconfiguration.go:369] [config] WARNING: Ignored configuration document with GroupVersionKind \(apiVersion), Kind=\(kind)"
                )
                continue
            }

            // Strict decoding: unknown fields and types.
            var unknown: [String] = []
            if !schema.isEmpty {
                try check(map, schema: schema, path: "", unknown: &unknown, goType: kind)
            }
            if !unknown.isEmpty {
                strictErrors.append(
                    "error unmarshaling configuration \(gvk): strict decoding error: "
                        + unknown.map { "unknown field \"\($0)\"" }.joined(separator: ", "))
            }
            extract(map, kind: kind, into: &cfg)
        }
        if !strictErrors.isEmpty {
            if mode == .validate { throw KubeadmConfigError(message: strictErrors.joined(separator: "\n")) }
            cfg.warnings += strictErrors.map { "\(klogPrefix)initconfiguration.go:337] " + $0 }
        }
        switch mode {
        case .initialize,
            .validate where !cfg.hasJoin:
            try validateInit(cfg, kubeadmVersion: kubeadmVersion)
        case .join, .validate:
            guard cfg.hasJoin else {
                throw KubeadmConfigError(message: "no JoinConfiguration kind was found in the YAML file")
            }
            try validateJoin(cfg)
        }
        return cfg
    }

    static func check(
        _ map: Node.Mapping, schema: [String: FieldType], path: String, unknown: inout [String], goType: String
    ) throws {
        for (k, v) in map {
            guard let key = k.string else { continue }
            let p = path.isEmpty ? key : path + "." + key
            guard let t = schema[key] else {
                unknown.append(p)
                continue
            }
            try checkValue(v, t, path: p, unknown: &unknown, goType: goType)
        }
    }

    static func typeError(_ v: Node, _ t: FieldType, _ path: String, _ goType: String) -> KubeadmConfigError {
        let got: String
        if v.mapping != nil {
            got = "object"
        } else if v.sequence != nil {
            got = "array"
        } else if let s = v.scalar {
            if s.style != .plain {
                got = "string"
            } else if s.string == "true" || s.string == "false" {
                got = "bool"
            } else if Int(s.string) != nil || Double(s.string) != nil {
                got = "number"
            } else {
                got = "string"
            }
        } else {
            got = "value"
        }
        return KubeadmConfigError(
            message: "json: cannot unmarshal \(got) into Go struct field \(goType).\(path) of type \(t.goName)")
    }

    static func checkValue(_ v: Node, _ t: FieldType, path: String, unknown: inout [String], goType: String) throws {
        if v.scalar?.string == "null" || v.scalar?.string == "~" { return }
        switch t {
        case .any: return
        case .string, .duration:
            guard let s = v.scalar else { throw typeError(v, t, path, goType) }
            if s.style == .plain, s.string == "true" || s.string == "false" || Double(s.string) != nil {
                throw typeError(v, t, path, goType)
            }
            if case .duration = t, !s.string.isEmpty, parseDuration(s.string) == nil {
                throw KubeadmConfigError(message: "time: invalid duration \"\(s.string)\"")
            }
        case .int:
            guard let s = v.scalar, s.style == .plain, Int(s.string) != nil else { throw typeError(v, t, path, goType) }
        case .bool:
            guard let s = v.scalar, s.style == .plain, s.string == "true" || s.string == "false" else {
                throw typeError(v, t, path, goType)
            }
        case .stringList:
            guard let seq = v.sequence else { throw typeError(v, t, path, goType) }
            for item in seq where item.scalar == nil { throw typeError(item, .string, path, goType) }
        case .stringMap:
            guard let m = v.mapping else { throw typeError(v, t, path, goType) }
            for (_, item) in m where item.scalar == nil { throw typeError(item, .string, path, goType) }
        case .object(let fields):
            guard let m = v.mapping else { throw typeError(v, t, path, goType) }
            try check(m, schema: fields, path: path, unknown: &unknown, goType: goType)
        case .list(let inner):
            guard let seq = v.sequence else { throw typeError(v, t, path, goType) }
            for item in seq { try checkValue(item, inner, path: path, unknown: &unknown, goType: goType) }
        case .extraArgs:
            return
        }
    }

    /// `node-monitor-grace-period` in seconds from a ClusterConfiguration as stored in the kubeadm-config
    /// ConfigMap (v1beta4 `extraArgs` list, or a v1beta3 map).
    public static func nodeMonitorGrace(clusterConfiguration any: [String: Any]) -> Double? {
        let extra = (any["controllerManager"] as? [String: Any])?["extraArgs"]
        var value: String?
        if let list = extra as? [[String: Any]] {
            value = list.first { $0["name"] as? String == "node-monitor-grace-period" }?["value"] as? String
        } else if let map = extra as? [String: Any] {
            value = map["node-monitor-grace-period"] as? String
        }
        return value.flatMap(parseDuration)
    }

    /// Go's time.ParseDuration subset: "24h0m0s", "1h30m", "90s", "500ms".
    public static func parseDuration(_ s: String) -> Double? {
        if s == "0" { return 0 }
        var total = 0.0
        var num = ""
        var i = s.startIndex
        guard !s.isEmpty else { return nil }
        while i < s.endIndex {
            let c = s[i]
            if c.isNumber || c == "." {
                num.append(c)
                i = s.index(after: i)
                continue
            }
            var unit = String(c)
            let n = s.index(after: i)
            if n < s.endIndex, (c == "m" && s[n] == "s") || (c == "u" && s[n] == "s") || (c == "n" && s[n] == "s") {
                unit.append("s")
                i = s.index(after: n)
            } else {
                i = n
            }
            guard let v = Double(num) else { return nil }
            num = ""
            switch unit {
            case "h": total += v * 3600
            case "m": total += v * 60
            case "s": total += v
            case "ms": total += v / 1000
            case "us", "ns": total += 0
            default: return nil
            }
        }
        return num.isEmpty ? total : nil
    }

    static func extract(_ map: Node.Mapping, kind: String, into cfg: inout KubeadmConfig) {
        func str(_ path: String...) -> String? {
            var node: Node? = Node.mapping(map)
            for p in path { node = node?.mapping?[p] }
            return node?.string
        }
        switch kind {
        case "InitConfiguration":
            cfg.advertiseAddress = str("localAPIEndpoint", "advertiseAddress")
            if let p = str("localAPIEndpoint", "bindPort"), let v = Int(p) { cfg.bindPort = v }
            cfg.nodeName = str("nodeRegistration", "name")
            cfg.criSocket = str("nodeRegistration", "criSocket")
            cfg.certificateKey = str("certificateKey")
            for t in map["bootstrapTokens"]?.sequence ?? [] {
                let ttl = t.mapping?["ttl"]?.string.flatMap(parseDuration) ?? 86400
                cfg.bootstrapTokens.append(.init(token: t.mapping?["token"]?.string ?? "", ttlSeconds: Int(ttl)))
            }
            if let taints = map["nodeRegistration"]?.mapping?["taints"]?.sequence {
                cfg.taints = taints.map { t in
                    var d: [String: String] = [:]
                    for (k, v) in t.mapping ?? [:] { if let k = k.string, let v = v.string { d[k] = v } }
                    return d
                }
            }
        case "ClusterConfiguration":
            cfg.kubernetesVersion = str("kubernetesVersion")
            cfg.controlPlaneEndpoint = str("controlPlaneEndpoint")
            cfg.podSubnet = str("networking", "podSubnet")
            if let s = str("networking", "serviceSubnet") { cfg.serviceSubnet = s }
            if let s = str("networking", "dnsDomain") { cfg.dnsDomain = s }
            if let s = str("clusterName") { cfg.clusterName = s }
            if let s = str("certificatesDir") { cfg.certificatesDir = s }
            cfg.apiServerCertSANs = map["apiServer"]?.mapping?["certSANs"]?.sequence?.compactMap(\.string) ?? []
            let extra = map["controllerManager"]?.mapping?["extraArgs"]
            for item in extra?.sequence ?? [] {
                if let n = item.mapping?["name"]?.string, let v = item.mapping?["value"]?.string {
                    cfg.controllerManagerArgs[n] = v
                }
            }
            for (k, v) in extra?.mapping ?? [:] {
                if let k = k.string, let v = v.string { cfg.controllerManagerArgs[k] = v }
            }
        case "JoinConfiguration":
            cfg.nodeName = str("nodeRegistration", "name")
            cfg.criSocket = str("nodeRegistration", "criSocket")
            cfg.discoveryAPIServerEndpoint = str("discovery", "bootstrapToken", "apiServerEndpoint")
            cfg.discoveryToken = str("discovery", "bootstrapToken", "token") ?? str("discovery", "tlsBootstrapToken")
            cfg.discoveryCACertHashes =
                map["discovery"]?.mapping?["bootstrapToken"]?.mapping?["caCertHashes"]?.sequence?.compactMap(\.string)
                ?? []
            cfg.unsafeSkipCAVerification = str("discovery", "bootstrapToken", "unsafeSkipCAVerification") == "true"
            if map["controlPlane"]?.mapping != nil {
                cfg.joinControlPlane = true
                cfg.joinCertificateKey = str("controlPlane", "certificateKey")
                cfg.advertiseAddress = str("controlPlane", "localAPIEndpoint", "advertiseAddress")
            }
            if map["discovery"]?.mapping?["file"] != nil {
                cfg.discoveryAPIServerEndpoint = cfg.discoveryAPIServerEndpoint ?? "file"
            }
        case "KubeletConfiguration":
            cfg.kubeletMaxPods = str("maxPods").flatMap { Int($0) }
            cfg.kubeletCgroupDriver = str("cgroupDriver")
        default:
            break
        }
    }

    // MARK: semantic validation (kubeadm's validation.go messages)

    static let tokenPattern = try? NSRegularExpression(pattern: "^([a-z0-9]{6})\\.([a-z0-9]{16})$")

    public static func isValidToken(_ t: String) -> Bool {
        tokenPattern?.firstMatch(in: t, range: NSRange(t.startIndex..., in: t)) != nil
    }

    static func aggregate(_ errs: [String]) throws {
        guard !errs.isEmpty else { return }
        throw KubeadmConfigError(message: errs.count == 1 ? errs[0] : "[" + errs.joined(separator: ", ") + "]")
    }

    static func validateInit(_ cfg: KubeadmConfig, kubeadmVersion: KubeVersion) throws {
        var errs: [String] = []
        for (i, t) in cfg.bootstrapTokens.enumerated() where !isValidToken(t.token) && !t.token.isEmpty {
            errs.append("bootstrapTokens[\(i)].token: Invalid value: \"\(t.token)\": the bootstrap token is invalid")
        }
        if let a = cfg.advertiseAddress, !a.isEmpty, IPNet.parseIP(a) == nil {
            errs.append("localAPIEndpoint.advertiseAddress: Invalid value: \"\(a)\": cannot parse IP address")
        }
        if cfg.bindPort < 1 || cfg.bindPort > 65535 {
            errs.append("localAPIEndpoint.bindPort: Invalid value: \(cfg.bindPort): port number is not valid")
        }
        errs += validateSubnets(cfg.serviceSubnet, field: "networking.serviceSubnet", service: true)
        if let p = cfg.podSubnet, !p.isEmpty {
            errs += validateSubnets(p, field: "networking.podSubnet", service: false)
        }
        if let k = cfg.certificateKey, !k.isEmpty, k.count != 64 || k.contains(where: { !$0.isHexDigit }) {
            errs.append("certificateKey: Invalid value: \"\(k)\": certificate key size must be 32 bytes")
        }
        try aggregate(errs)
        if let v = cfg.kubernetesVersion, !v.isEmpty, v != "stable", !v.hasPrefix("stable-"), v != "latest" {
            guard let kv = KubeVersion(v) else {
                throw KubeadmConfigError(
                    message: "couldn't parse Kubernetes version \"\(v)\": could not parse \"\(v)\" as version")
            }
            let min = KubeVersion(kubeadmVersion.major, kubeadmVersion.minor - 1, 0)
            if kv < min {
                throw KubeadmConfigError(
                    message:
                        "this version of kubeadm only supports deploying clusters with the control plane version >= \(min.bare). Current version: \(kv)"
                )
            }
        }
    }

    static func validateSubnets(_ value: String, field: String, service: Bool) -> [String] {
        var errs: [String] = []
        let parts = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if parts.count > 2 {
            return [
                "\(field): Invalid value: \"\(value)\": expected one (IPv4 or IPv6) CIDR or two CIDRs from each family for dual-stack networking"
            ]
        }
        for p in parts {
            guard let net = IPNet(p) else {
                errs.append("\(field): Invalid value: \"\(p)\": couldn't parse subnet")
                continue
            }
            if service, net.isV4, net.prefix < 12 {
                errs.append(
                    "\(field): Invalid value: \"\(p)\": specified service subnet is too large; for 32-bit addresses, the mask must be >= 12"
                )
            }
            if service, !net.isV4, net.prefix < 108 {
                errs.append(
                    "\(field): Invalid value: \"\(p)\": specified service subnet is too large; for 128-bit addresses, the mask must be >= 108"
                )
            }
        }
        return errs
    }

    static func validateJoin(_ cfg: KubeadmConfig) throws {
        var errs: [String] = []
        if cfg.discoveryAPIServerEndpoint == nil && cfg.discoveryToken == nil {
            errs.append("discovery: Invalid value: \"\": bootstrapToken or file must be set")
        } else if cfg.discoveryAPIServerEndpoint != "file" {
            if (cfg.discoveryAPIServerEndpoint ?? "").isEmpty {
                errs.append("discovery.bootstrapToken.apiServerEndpoint: Required value: APIServerEndpoint is not set")
            }
            if let t = cfg.discoveryToken, !isValidToken(t) {
                errs.append("discovery.bootstrapToken.token: Invalid value: \"\(t)\": the bootstrap token is invalid")
            }
            if cfg.discoveryCACertHashes.isEmpty && !cfg.unsafeSkipCAVerification {
                errs.append(
                    "discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue"
                )
            }
        }
        if cfg.joinControlPlane, let k = cfg.joinCertificateKey, !k.isEmpty,
            k.count != 64 || k.contains(where: { !$0.isHexDigit })
        {
            errs.append("controlPlane.certificateKey: Invalid value: \"\(k)\": certificate key size must be 32 bytes")
        }
        if let a = cfg.advertiseAddress, !a.isEmpty, IPNet.parseIP(a) == nil {
            errs.append(
                "controlPlane.localAPIEndpoint.advertiseAddress: Invalid value: \"\(a)\": cannot parse IP address")
        }
        try aggregate(errs)
    }
}

/// An IPv4/IPv6 CIDR as Go's net.ParseCIDR accepts it.
public struct IPNet: Sendable, Equatable {
    public var bytes: [UInt8]
    public var prefix: Int
    public var isV4: Bool { bytes.count == 4 }

    public init?(_ s: String) {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let ip = IPNet.parseIP(String(parts[0])), let p = Int(parts[1]),
            !parts[1].hasPrefix("+"),
            p >= 0, p <= ip.count * 8
        else { return nil }
        bytes = ip
        prefix = p
    }

    public static func parseIP(_ s: String) -> [UInt8]? {
        if s.contains(":") {
            var a = in6_addr()
            guard inet_pton(AF_INET6, s, &a) == 1 else { return nil }
            return withUnsafeBytes(of: &a) { Array($0) }
        }
        let p = s.split(separator: ".", omittingEmptySubsequences: false)
        guard p.count == 4 else { return nil }
        var out: [UInt8] = []
        for x in p {
            guard !x.isEmpty, x.count <= 3, x.allSatisfy(\.isNumber), let v = Int(x), v <= 255 else { return nil }
            out.append(UInt8(v))
        }
        return out
    }

    /// The n-th address of the network (n = 1: first usable), e.g. 10.96.0.1 for the API service.
    public func address(_ n: Int) -> String {
        var b = bytes
        let host = b.count * 8 - prefix
        _ = host
        var carry = n
        var i = b.count - 1
        while carry > 0 && i >= 0 {
            let s = Int(b[i]) + carry
            b[i] = UInt8(s & 0xff)
            carry = s >> 8
            i -= 1
        }
        if isV4 { return b.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(format: "%x", Int(b[$0]) << 8 | Int(b[$0 + 1])) }.joined(
            separator: ":")
    }
}
