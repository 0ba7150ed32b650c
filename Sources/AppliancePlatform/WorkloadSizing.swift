import ApplianceModel

/// Requests (and limits) of every platform workload. Many of the charts default to `resources: {}`, so the
/// product renders explicit requests for all of them: a profile's `controlPlane.components` entry of the same
/// name sets them, else the defaults below apply. The capacity check adds up the same numbers.
///
/// Names that profiles already use: `postgresql` (the CloudNativePG instance), `object-storage` (each
/// SeaweedFS volume server), `metrics` (Prometheus), `dcgm-exporter`. The others have their own names.
public enum WorkloadSizing {
    /// Defaults: the charts' own requests where they set one (GPU Operator, HAProxy ingress, NFD, csi-nfs),
    /// the cnvrg.io operator's defaults for PostgreSQL (1 CPU / 4Gi), the proposed figures of
    /// gpu-platform.md §8.1 for Prometheus (1 CPU / 4Gi) and Grafana (100m / 256Mi), and small figures for the
    /// rest.
    public static let defaults: [String: PlatformConfiguration.Resources] = [
        "postgresql": .init(cpuRequest: "1", memoryRequest: "4Gi", cpuLimit: "2", memoryLimit: "4Gi"),
        "cnpg-operator": .init(cpuRequest: "100m", memoryRequest: "256Mi", memoryLimit: "512Mi"),
        "object-storage": .init(cpuRequest: "500m", memoryRequest: "1Gi", memoryLimit: "4Gi"),
        "object-store-master": .init(cpuRequest: "100m", memoryRequest: "256Mi", memoryLimit: "512Mi"),
        "object-store-filer": .init(cpuRequest: "200m", memoryRequest: "512Mi", memoryLimit: "1Gi"),
        "metrics": .init(cpuRequest: "1", memoryRequest: "4Gi", memoryLimit: "8Gi"),
        "alertmanager": .init(cpuRequest: "50m", memoryRequest: "128Mi", memoryLimit: "256Mi"),
        "grafana": .init(cpuRequest: "100m", memoryRequest: "256Mi", memoryLimit: "512Mi"),
        "prometheus-operator": .init(cpuRequest: "100m", memoryRequest: "128Mi", memoryLimit: "512Mi"),
        "config-reloader": .init(cpuRequest: "10m", memoryRequest: "32Mi", memoryLimit: "64Mi"),
        "kube-state-metrics": .init(cpuRequest: "50m", memoryRequest: "128Mi", memoryLimit: "256Mi"),
        "node-exporter": .init(cpuRequest: "20m", memoryRequest: "32Mi", memoryLimit: "64Mi"),
        "ingress": .init(cpuRequest: "250m", memoryRequest: "400Mi"),
        "gpu-operator": .init(cpuRequest: "200m", memoryRequest: "100Mi", cpuLimit: "500m", memoryLimit: "350Mi"),
        "gpu-validator": .init(cpuRequest: "50m", memoryRequest: "64Mi", memoryLimit: "256Mi"),
        "device-plugin": .init(cpuRequest: "50m", memoryRequest: "64Mi", memoryLimit: "256Mi"),
        "gpu-feature-discovery": .init(cpuRequest: "20m", memoryRequest: "64Mi", memoryLimit: "256Mi"),
        "dcgm-exporter": .init(cpuRequest: "100m", memoryRequest: "128Mi", memoryLimit: "512Mi"),
        "mig-manager": .init(cpuRequest: "20m", memoryRequest: "64Mi", memoryLimit: "256Mi"),
        "driver": .init(cpuRequest: "100m", memoryRequest: "512Mi"),
        "container-toolkit": .init(cpuRequest: "50m", memoryRequest: "64Mi"),
        "dcgm": .init(cpuRequest: "100m", memoryRequest: "128Mi", memoryLimit: "1Gi"),
        "nfd-master": .init(cpuRequest: "100m", memoryRequest: "128Mi", memoryLimit: "4Gi"),
        "nfd-gc": .init(cpuRequest: "10m", memoryRequest: "128Mi", memoryLimit: "1Gi"),
        "nfd-worker": .init(cpuRequest: "5m", memoryRequest: "64Mi", memoryLimit: "512Mi"),
        "csi-nfs-container": .init(cpuRequest: "10m", memoryRequest: "20Mi", memoryLimit: "400Mi"),
        "kai-hook": .init(cpuRequest: "50m", memoryRequest: "128Mi", memoryLimit: "512Mi"),
    ]

    /// The defaults, with the profile's components of the same names in their place.
    public static func resolve(profile: HardwareProfile) -> [String: PlatformConfiguration.Resources] {
        var out = defaults
        for c in profile.controlPlane.components where out[c.name] != nil {
            out[c.name] = .init(
                cpuRequest: c.cpuRequest, memoryRequest: c.memoryRequest, cpuLimit: c.cpuLimit,
                memoryLimit: c.memoryLimit)
        }
        return out
    }

    /// The KAI Scheduler's operator-managed workloads, whose requests the operator sets itself (the chart's
    /// values.yaml has no key for them): KAI-Scheduler `pkg/apis/kai/v1` defaults (gpu-platform.md §1.10).
    /// The operator's own Deployment has no requests in the chart.
    public static let kaiManaged: [(name: String, resources: PlatformConfiguration.Resources)] = [
        ("kai-scheduler", .init(cpuRequest: "250m", memoryRequest: "512Mi")),
        ("kai-binder", .init(cpuRequest: "50m", memoryRequest: "200Mi")),
        ("kai-podgrouper", .init(cpuRequest: "50m", memoryRequest: "200Mi")),
        ("kai-podgroupcontroller", .init(cpuRequest: "20m", memoryRequest: "100Mi")),
        ("kai-queuecontroller", .init(cpuRequest: "20m", memoryRequest: "50Mi")),
        ("kai-admission", .init(cpuRequest: "50m", memoryRequest: "256Mi")),
    ]
}
