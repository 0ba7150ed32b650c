import ApplianceModel

/// A chart at the version the release bundle pins (`../shared/reference/charts/<name>-<version>` holds its
/// real `Chart.yaml`, `values.yaml` and CRDs).
public struct ChartReference: Sendable, Equatable {
    public var name: String
    public var version: String
    /// The image tag the product pins where the chart takes one (the chart's appVersion).
    public var appVersion: String
    public init(name: String, version: String, appVersion: String) {
        self.name = name
        self.version = version
        self.appVersion = appVersion
    }
    /// The folder name under the chart reference (`kai-scheduler-v0.16.8`).
    public var referenceDirectory: String { "\(name)-\(version)" }

    public static let kaiScheduler = ChartReference(name: "kai-scheduler", version: "v0.16.8", appVersion: "v0.16.8")
    public static let gpuOperator = ChartReference(name: "gpu-operator", version: "v26.3.3", appVersion: "v26.3.3")
    public static let csiDriverNFS = ChartReference(name: "csi-driver-nfs", version: "4.13.4", appVersion: "v4.13.4")
    public static let seaweedfs = ChartReference(name: "seaweedfs", version: "4.44.0", appVersion: "4.44")
    public static let cloudnativePG = ChartReference(name: "cloudnative-pg", version: "0.29.0", appVersion: "1.30.0")
    public static let cnpgCluster = ChartReference(name: "cluster", version: "0.8.1", appVersion: "16")
    public static let kubePrometheusStack = ChartReference(
        name: "kube-prometheus-stack", version: "88.5.3", appVersion: "v0.93.1")
    public static let haproxyIngress = ChartReference(
        name: "kubernetes-ingress", version: "1.52.1", appVersion: "3.2.12")

    /// Every chart the platform deploys (a bundle for a platform site carries each at this version).
    public static let platform: [ChartReference] = [
        kubePrometheusStack, gpuOperator, kaiScheduler, cloudnativePG, cnpgCluster, csiDriverNFS, seaweedfs,
        haproxyIngress,
    ]
}

/// A pod the platform runs, for the capacity check: requests per replica and where it runs.
public struct PodFootprint: Sendable, Equatable {
    public enum Placement: Sendable, Equatable {
        /// A Deployment/StatefulSet pod pinned to system nodes.
        case system
        /// A DaemonSet pod on every system node (and only there).
        case everySystemNode
        /// A DaemonSet pod on every node.
        case everyNode
        /// A DaemonSet pod on every GPU node.
        case gpuNodes
    }
    public var release: String
    public var name: String
    public var replicas: Int
    public var milliCPU: Int
    public var memoryBytes: Int
    public var placement: Placement
    /// The `controlPlane.components` name in a profile that sizes this pod; nil: the chart or the operator
    /// sizes it.
    public var sizedBy: String?

    public init(
        release: String, name: String, replicas: Int = 1, resources: PlatformConfiguration.Resources,
        placement: Placement = .system, sizedBy: String? = nil
    ) {
        self.release = release
        self.name = name
        self.replicas = replicas
        self.milliCPU = resources.milliCPU
        self.memoryBytes = resources.memoryBytes
        self.placement = placement
        self.sizedBy = sizedBy
    }

    /// Sums the requests of several containers of one pod.
    public init(
        release: String, name: String, replicas: Int = 1, containers: [PlatformConfiguration.Resources],
        placement: Placement = .system, sizedBy: String? = nil
    ) {
        self.release = release
        self.name = name
        self.replicas = replicas
        self.milliCPU = containers.reduce(0) { $0 + $1.milliCPU }
        self.memoryBytes = containers.reduce(0) { $0 + $1.memoryBytes }
        self.placement = placement
        self.sizedBy = sizedBy
    }
}

/// A persistent volume the platform claims.
public struct VolumeClaim: Sendable, Equatable {
    public var release: String
    public var name: String
    public var sizeGiB: Int
    /// nil: the cluster's default StorageClass.
    public var storageClass: String?
    public init(release: String, name: String, sizeGiB: Int, storageClass: String?) {
        self.release = release
        self.name = name
        self.sizeGiB = sizeGiB
        self.storageClass = storageClass
    }
}

/// One Helm release of the platform: the chart, where it goes, the values the product passes to it, and
/// what it will ask of the cluster.
public struct PlatformRelease: Sendable, Equatable {
    public var name: String
    public var namespace: String
    public var chart: ChartReference
    public var values: YAMLTree
    public var pods: [PodFootprint]
    public var volumes: [VolumeClaim]

    /// The values file's name in `appliance platform values -o DIR`.
    public var valuesFileName: String { "\(name).values.yaml" }
    /// The values document as written for `helm upgrade --install -f`.
    public var valuesYAML: String { values.serialized() }
}
