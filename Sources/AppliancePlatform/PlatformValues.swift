import ApplianceModel

/// Renders the values of every platform release from profile + site, purely: images from the private
/// registry, system-node placement, explicit requests, storage sizes, the TLS secret and the domain. Only
/// keys of each chart's real `values.yaml` (a test checks every path against `../shared/reference/charts/`).
///
/// Install order (gpu-platform.md §8.1): monitoring first (its CRDs let the GPU Operator create its
/// ServiceMonitor), the GPU Operator, the scheduler, the database operator then its cluster, the NFS CSI
/// driver, the object store, the ingress.
public enum PlatformValues {
    public static let monitoringRelease = "kube-prometheus-stack"

    /// Every release, in install order.
    public static func releases(_ c: PlatformConfiguration) -> [PlatformRelease] {
        [
            monitoring(c), gpuOperator(c), kaiScheduler(c), cnpgOperator(c), postgresCluster(c), csiDriverNFS(c),
            objectStore(c), ingress(c),
        ]
    }

    /// Renders from profile + site in one call.
    public static func releases(site: SiteInventory, profile: HardwareProfile) throws(PlatformError)
        -> [PlatformRelease]
    {
        releases(try PlatformConfiguration.resolve(site: site, profile: profile))
    }

    // MARK: - building blocks

    /// `<registry>/<upstream registry>/<path>`: the private registry keeps every image under its full
    /// upstream name (`registry.k8s.io/sig-storage/nfsplugin`), a port's `:` written `_`.
    static func mirrored(_ c: PlatformConfiguration, _ upstream: String) -> String {
        "\(c.registry)/\(mirrorPath(upstream))"
    }

    /// The repository path inside the private registry for an upstream repository (without tag).
    static func mirrorPath(_ upstream: String) -> String {
        let parts = upstream.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { return upstream }
        return "\(parts[0].replacingOccurrences(of: ":", with: "_"))/\(parts[1])"
    }

    static func resources(_ r: PlatformConfiguration.Resources) -> YAMLTree {
        var pairs: [(String, YAMLTree)] = [
            ("requests", .map([("cpu", .string(r.cpuRequest)), ("memory", .string(r.memoryRequest))]))
        ]
        var limits: [(String, YAMLTree)] = []
        if let l = r.cpuLimit { limits.append(("cpu", .string(l))) }
        if let l = r.memoryLimit { limits.append(("memory", .string(l))) }
        if !limits.isEmpty { pairs.append(("limits", .map(limits))) }
        return .map(pairs)
    }

    static func nodeSelector(_ c: PlatformConfiguration) -> YAMLTree {
        .map([(c.placement.labelKey, .string(c.placement.labelValue))])
    }

    static func toleration(_ c: PlatformConfiguration) -> YAMLTree {
        .map([
            ("key", .string(c.placement.labelKey)), ("operator", .string("Exists")), ("effect", .string("NoSchedule")),
        ])
    }

    /// The system role's toleration, and kubeadm's control-plane taint's where system nodes are control planes.
    static func tolerations(_ c: PlatformConfiguration) -> YAMLTree {
        guard c.placement.onControlPlanes else { return .list([toleration(c)]) }
        let controlPlane: YAMLTree = .map([
            ("key", .string("node-role.kubernetes.io/control-plane")), ("operator", .string("Exists")),
            ("effect", .string("NoSchedule")),
        ])
        return .list([toleration(c), controlPlane])
    }

    /// Required node affinity on the system label (charts that have no nodeSelector key).
    static func systemAffinity(_ c: PlatformConfiguration) -> YAMLTree {
        .map([
            (
                "nodeAffinity",
                .map([
                    (
                        "requiredDuringSchedulingIgnoredDuringExecution",
                        .map([
                            (
                                "nodeSelectorTerms",
                                .list([
                                    .map([
                                        (
                                            "matchExpressions",
                                            .list([
                                                .map([
                                                    ("key", .string(c.placement.labelKey)),
                                                    ("operator", .string("Exists")),
                                                ])
                                            ])
                                        )
                                    ])
                                ])
                            )
                        ])
                    )
                ])
            )
        ])
    }

    /// The placement of a pod spec part: nodeSelector + tolerations (+ resources).
    static func placed(
        _ c: PlatformConfiguration, _ r: PlatformConfiguration.Resources?, extra: [(String, YAMLTree)] = []
    )
        -> [(String, YAMLTree)]
    {
        var p = extra
        p.append(("nodeSelector", nodeSelector(c)))
        p.append(("tolerations", tolerations(c)))
        if let r { p.append(("resources", resources(r))) }
        return p
    }

    /// `{registry, repository}` image values where the chart splits them.
    static func splitImage(_ c: PlatformConfiguration, _ upstream: String, tag: String? = nil) -> YAMLTree {
        var p: [(String, YAMLTree)] = [
            ("registry", .string(c.registry)), ("repository", .string(mirrorPath(upstream))),
        ]
        if let tag { p.append(("tag", .string(tag))) }
        return .map(p)
    }

    static func gib(_ n: Int) -> String { "\(n)Gi" }

    // MARK: - releases

    /// kube-prometheus-stack: Prometheus (volume from the profile/site), Alertmanager, Grafana (behind the
    /// ingress at `grafana.<domain>`), the operator, kube-state-metrics, node exporter on every node.
    public static func monitoring(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = monitoringRelease
        let prom = c.resources("metrics")
        let reloader = c.resources("config-reloader")
        var storageSpec: [(String, YAMLTree)] = [("accessModes", .list([.string("ReadWriteOnce")]))]
        if let sc = c.storage.storageClass { storageSpec.insert(("storageClassName", .string(sc)), at: 0) }
        storageSpec.append(
            ("resources", .map([("requests", .map([("storage", .string(gib(c.storage.prometheusGiB)))]))])))
        let retentionMB = max(1, c.storage.prometheusGiB * 1024 * 9 / 10)
        let grafanaHost = "grafana.\(c.domain)"
        let values: YAMLTree = .map([
            ("crds", .map([("enabled", .bool(true))])),
            (
                "prometheusOperator",
                .map(
                    placed(
                        c, c.resources("prometheus-operator"),
                        extra: [
                            ("image", splitImage(c, "quay.io/prometheus-operator/prometheus-operator")),
                            (
                                "prometheusConfigReloader",
                                .map([
                                    ("image", splitImage(c, "quay.io/prometheus-operator/prometheus-config-reloader")),
                                    ("resources", resources(reloader)),
                                ])
                            ),
                            (
                                "admissionWebhooks",
                                .map([
                                    (
                                        "patch",
                                        .map(
                                            [("image", splitImage(c, "ghcr.io/jkroepke/kube-webhook-certgen"))]
                                                + placed(c, nil))
                                    )
                                ])
                            ),
                            ("thanosImage", splitImage(c, "quay.io/thanos/thanos")),
                        ]))
            ),
            (
                "prometheus",
                .map([
                    (
                        "prometheusSpec",
                        .map(
                            placed(
                                c, prom,
                                extra: [
                                    ("image", splitImage(c, "quay.io/prometheus/prometheus")),
                                    ("retention", .string("15d")),
                                    ("retentionSize", .string("\(retentionMB)MB")),
                                    ("serviceMonitorSelectorNilUsesHelmValues", .bool(false)),
                                    ("podMonitorSelectorNilUsesHelmValues", .bool(false)),
                                    (
                                        "storageSpec",
                                        .map([("volumeClaimTemplate", .map([("spec", .map(storageSpec))]))])
                                    ),
                                ]))
                    )
                ])
            ),
            (
                "alertmanager",
                .map([
                    (
                        "alertmanagerSpec",
                        .map(
                            placed(
                                c, c.resources("alertmanager"),
                                extra: [("image", splitImage(c, "quay.io/prometheus/alertmanager"))]))
                    )
                ])
            ),
            (
                "grafana",
                .map(
                    placed(
                        c, c.resources("grafana"),
                        extra: [
                            ("image", splitImage(c, "docker.io/grafana/grafana")),
                            ("sidecar", .map([("image", splitImage(c, "quay.io/kiwigrid/k8s-sidecar"))])),
                            ("initChownData", .map([("image", splitImage(c, "docker.io/library/busybox"))])),
                            ("downloadDashboardsImage", splitImage(c, "docker.io/curlimages/curl")),
                            ("testFramework", .map([("enabled", .bool(false))])),
                            (
                                "ingress",
                                .map([
                                    ("enabled", .bool(true)),
                                    ("hosts", .list([.string(grafanaHost)])),
                                    (
                                        "tls",
                                        .list([
                                            .map([
                                                ("secretName", .string(c.tlsSecretName)),
                                                ("hosts", .list([.string(grafanaHost)])),
                                            ])
                                        ])
                                    ),
                                ])
                            ),
                        ]))
            ),
            (
                "kube-state-metrics",
                .map(
                    placed(
                        c, c.resources("kube-state-metrics"),
                        extra: [
                            ("image", splitImage(c, "registry.k8s.io/kube-state-metrics/kube-state-metrics")),
                            ("kubeRBACProxy", .map([("image", splitImage(c, "quay.io/brancz/kube-rbac-proxy"))])),
                        ]))
            ),
            (
                "prometheus-node-exporter",
                .map([
                    ("image", splitImage(c, "quay.io/prometheus/node-exporter")),
                    ("kubeRBACProxy", .map([("image", splitImage(c, "quay.io/brancz/kube-rbac-proxy"))])),
                    ("resources", resources(c.resources("node-exporter"))),
                ])
            ),
        ])
        return PlatformRelease(
            name: name, namespace: "monitoring", chart: .kubePrometheusStack, values: values,
            pods: [
                PodFootprint(release: name, name: "prometheus", containers: [prom, reloader], sizedBy: "metrics"),
                PodFootprint(
                    release: name, name: "alertmanager", containers: [c.resources("alertmanager"), reloader],
                    sizedBy: "alertmanager"),
                PodFootprint(release: name, name: "grafana", resources: c.resources("grafana"), sizedBy: "grafana"),
                PodFootprint(
                    release: name, name: "prometheus-operator", resources: c.resources("prometheus-operator"),
                    sizedBy: "prometheus-operator"),
                PodFootprint(
                    release: name, name: "kube-state-metrics", resources: c.resources("kube-state-metrics"),
                    sizedBy: "kube-state-metrics"),
                PodFootprint(
                    release: name, name: "node-exporter", resources: c.resources("node-exporter"),
                    placement: .everyNode, sizedBy: "node-exporter"
                ),
            ],
            volumes: [
                VolumeClaim(
                    release: name, name: "prometheus", sizeGiB: c.storage.prometheusGiB,
                    storageClass: c.storage.storageClass)
            ])
    }

    /// The NVIDIA GPU Operator: device plugin, feature discovery, DCGM exporter and validator on GPU nodes;
    /// in `host-driver` mode without the driver and toolkit containers (they are on the host), in
    /// `operator-precompiled` mode with precompiled driver images of the profile's branch and the standalone
    /// DCGM host engine (`dcgm.enabled`: the `nvidia-dcgm` pod, whose image carries `dcgmi`, which the install's
    /// GPU validation runs in that pod's namespaces, since such a node has no NVIDIA package on the host).
    public static let gpuOperatorNamespace = "gpu-operator"

    public static func gpuOperator(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "gpu-operator"
        let nvidia = mirrored(c, "nvcr.io/nvidia")
        let k8s = mirrored(c, "nvcr.io/nvidia/k8s")
        let cloudNative = mirrored(c, "nvcr.io/nvidia/cloud-native")
        let host = c.gpuStackMode == .hostDriver
        var driver: [(String, YAMLTree)] = [("enabled", .bool(!host))]
        if !host {
            driver.append(("usePrecompiled", .bool(true)))
            if let b = c.driverBranch { driver.append(("version", .string(String(b)))) }
            driver.append(("repository", .string(nvidia)))
            driver.append(("resources", resources(c.resources("driver"))))
            driver.append(("manager", .map([("repository", .string(cloudNative))])))
        }
        var toolkit: [(String, YAMLTree)] = [("enabled", .bool(!host))]
        if !host {
            toolkit.append(("repository", .string(k8s)))
            toolkit.append(("resources", resources(c.resources("container-toolkit"))))
        }
        let mig = c.migStrategy != "none"
        var dcgm: [(String, YAMLTree)] = [("enabled", .bool(!host))]
        if !host {
            dcgm.append(("repository", .string(cloudNative)))
            dcgm.append(("resources", resources(c.resources("dcgm"))))
        }
        var values: [(String, YAMLTree)] = [
            (
                "operator",
                .map([
                    ("repository", .string(nvidia)),
                    ("tolerations", tolerations(c)),
                    ("affinity", systemAffinity(c)),
                    ("resources", resources(c.resources("gpu-operator"))),
                ])
            ),
            (
                "validator",
                .map([("repository", .string(nvidia)), ("resources", resources(c.resources("gpu-validator")))])
            ),
            ("driver", .map(driver)),
            ("toolkit", .map(toolkit)),
            ("dcgm", .map(dcgm)),
            (
                "devicePlugin",
                .map([("repository", .string(nvidia)), ("resources", resources(c.resources("device-plugin")))])
            ),
            (
                "gfd",
                .map([("repository", .string(nvidia)), ("resources", resources(c.resources("gpu-feature-discovery")))])
            ),
            (
                "dcgmExporter",
                .map([
                    ("repository", .string(k8s)),
                    ("resources", resources(c.resources("dcgm-exporter"))),
                    (
                        "serviceMonitor",
                        .map([
                            ("enabled", .bool(true)),
                            ("additionalLabels", .map([("release", .string(monitoringRelease))])),
                        ])
                    ),
                ])
            ),
            (
                "migManager",
                .map([
                    ("enabled", .bool(mig)), ("repository", .string(cloudNative)),
                    ("resources", resources(c.resources("mig-manager"))),
                ])
            ),
        ]
        if mig { values.append(("mig", .map([("strategy", .string(c.migStrategy))]))) }
        values.append(
            (
                "node-feature-discovery",
                .map([
                    (
                        "image",
                        .map([("repository", .string(mirrored(c, "registry.k8s.io/nfd/node-feature-discovery")))])
                    ),
                    ("master", .map(placed(c, c.resources("nfd-master")))),
                    ("gc", .map(placed(c, c.resources("nfd-gc")))),
                    ("worker", .map([("resources", resources(c.resources("nfd-worker")))])),
                ])
            ))
        var pods = [
            PodFootprint(
                release: name, name: "gpu-operator", resources: c.resources("gpu-operator"), sizedBy: "gpu-operator"),
            PodFootprint(
                release: name, name: "nfd-master", resources: c.resources("nfd-master"), sizedBy: "nfd-master"),
            PodFootprint(release: name, name: "nfd-gc", resources: c.resources("nfd-gc"), sizedBy: "nfd-gc"),
            PodFootprint(
                release: name, name: "nfd-worker", resources: c.resources("nfd-worker"), placement: .everyNode,
                sizedBy: "nfd-worker"),
            PodFootprint(
                release: name, name: "device-plugin", resources: c.resources("device-plugin"), placement: .gpuNodes,
                sizedBy: "device-plugin"),
            PodFootprint(
                release: name, name: "gpu-feature-discovery", resources: c.resources("gpu-feature-discovery"),
                placement: .gpuNodes, sizedBy: "gpu-feature-discovery"),
            PodFootprint(
                release: name, name: "dcgm-exporter", resources: c.resources("dcgm-exporter"), placement: .gpuNodes,
                sizedBy: "dcgm-exporter"),
        ]
        if !host {
            pods.append(
                PodFootprint(
                    release: name, name: "driver", resources: c.resources("driver"), placement: .gpuNodes,
                    sizedBy: "driver"))
            pods.append(
                PodFootprint(
                    release: name, name: "container-toolkit", resources: c.resources("container-toolkit"),
                    placement: .gpuNodes, sizedBy: "container-toolkit"))
            pods.append(
                PodFootprint(
                    release: name, name: "dcgm", resources: c.resources("dcgm"), placement: .gpuNodes, sizedBy: "dcgm"))
        }
        return PlatformRelease(
            name: name, namespace: gpuOperatorNamespace, chart: .gpuOperator, values: .map(values), pods: pods,
            volumes: [])
    }

    /// KAI Scheduler on system nodes, with GPU sharing (fractions); its default queues are replaced by the
    /// site's (`PlatformObjects.queues`).
    public static func kaiScheduler(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "kai-scheduler"
        let hook = c.resources("kai-hook")
        let values: YAMLTree = .map([
            (
                "global",
                .map([
                    ("registry", .string(mirrored(c, "ghcr.io/kai-scheduler/kai-scheduler"))),
                    ("tag", .string(ChartReference.kaiScheduler.appVersion)),
                    ("imagePullPolicy", .string("IfNotPresent")),
                    ("gpuSharing", .bool(true)),
                    ("nodeSelector", nodeSelector(c)),
                    ("tolerations", tolerations(c)),
                ])
            ),
            ("crdupgrader", .map([("resources", resources(hook))])),
            ("kaiConfigDeployer", .map([("resources", resources(hook))])),
            ("topologyMigration", .map([("resources", resources(hook))])),
            ("postCleanup", .map([("resources", resources(hook))])),
            ("defaultQueue", .map([("createDefaultQueue", .bool(false))])),
        ])
        let pods =
            WorkloadSizing.kaiManaged.map { PodFootprint(release: name, name: $0.name, resources: $0.resources) }
            + [PodFootprint(release: name, name: "kai-operator", resources: .init(cpuRequest: "0", memoryRequest: "0"))]
        return PlatformRelease(
            name: name, namespace: "kai-scheduler", chart: .kaiScheduler, values: values, pods: pods, volumes: [])
    }

    /// The CloudNativePG operator.
    public static func cnpgOperator(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "cloudnative-pg"
        let values: YAMLTree = .map(
            [("image", .map([("repository", .string(mirrored(c, "ghcr.io/cloudnative-pg/cloudnative-pg")))]))]
                + placed(c, c.resources("cnpg-operator")))
        return PlatformRelease(
            name: name, namespace: "cnpg-system", chart: .cloudnativePG, values: values,
            pods: [
                PodFootprint(
                    release: name, name: "cnpg-operator", resources: c.resources("cnpg-operator"),
                    sizedBy: "cnpg-operator")
            ],
            volumes: [])
    }

    /// The platform's PostgreSQL, a CloudNativePG `Cluster` (chart `cluster`).
    public static func postgresCluster(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "platform-db"
        let pg = c.resources("postgresql")
        var storage: [(String, YAMLTree)] = [("size", .string(gib(c.storage.postgresqlGiB)))]
        if let sc = c.storage.storageClass { storage.append(("storageClass", .string(sc))) }
        let values: YAMLTree = .map([
            ("type", .string("postgresql")),
            ("mode", .string("standalone")),
            ("version", .map([("postgresql", .string(ChartReference.cnpgCluster.appVersion))])),
            (
                "cluster",
                .map([
                    ("instances", .int(c.postgresqlInstances)),
                    (
                        "imageName",
                        .string(
                            mirrored(c, "ghcr.io/cloudnative-pg/postgresql")
                                + ":\(ChartReference.cnpgCluster.appVersion)")
                    ),
                    ("storage", .map(storage)),
                    ("resources", resources(pg)),
                    ("affinity", .map([("nodeSelector", nodeSelector(c)), ("tolerations", tolerations(c))])),
                ])
            ),
        ])
        return PlatformRelease(
            name: name, namespace: "platform-db", chart: .cnpgCluster, values: values,
            pods: [
                PodFootprint(
                    release: name, name: "postgresql", replicas: c.postgresqlInstances, resources: pg,
                    sizedBy: "postgresql")
            ],
            volumes: (0..<c.postgresqlInstances).map {
                VolumeClaim(
                    release: name, name: "postgresql-\($0 + 1)", sizeGiB: c.storage.postgresqlGiB,
                    storageClass: c.storage.storageClass)
            })
    }

    /// The NFS CSI driver; the dataset cache's StorageClass and claim are `PlatformObjects` (the chart's
    /// values.yaml has only `storageClass.create`).
    public static func csiDriverNFS(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "csi-driver-nfs"
        let ctr = c.resources("csi-nfs-container")
        let r = resources(ctr)
        let values: YAMLTree = .map([
            (
                "image",
                .map([
                    ("baseRepo", .string("\(c.registry)/registry.k8s.io")),
                    ("nfs", .map([("repository", .string(mirrored(c, "registry.k8s.io/sig-storage/nfsplugin")))])),
                ])
            ),
            (
                "controller",
                .map(
                    placed(
                        c, nil,
                        extra: [
                            (
                                "resources",
                                .map(
                                    ["csiProvisioner", "csiResizer", "csiSnapshotter", "livenessProbe", "nfs"].map {
                                        ($0, r)
                                    })
                            )
                        ]))
            ),
            ("node", .map([("resources", .map(["livenessProbe", "nodeDriverRegistrar", "nfs"].map { ($0, r) }))])),
            ("storageClass", .map([("create", .bool(false))])),
        ])
        return PlatformRelease(
            name: name, namespace: "kube-system", chart: .csiDriverNFS, values: values,
            pods: [
                PodFootprint(
                    release: name, name: "csi-nfs-controller", containers: Array(repeating: ctr, count: 5),
                    sizedBy: "csi-nfs-container"),
                PodFootprint(
                    release: name, name: "csi-nfs-node", containers: Array(repeating: ctr, count: 3),
                    placement: .everyNode),
            ],
            volumes: [])
    }

    /// SeaweedFS as the S3-compatible object store: one master, the volume servers holding the data (size
    /// per server from the profile/site), one filer with the S3 gateway.
    public static func objectStore(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "object-store"
        let masterGiB = 5
        let filerGiB = 10
        func yamlText(_ t: YAMLTree) -> YAMLTree { .string(t.serialized()) }
        func pvc(_ size: Int) -> [(String, YAMLTree)] {
            var p: [(String, YAMLTree)] = [("type", .string("persistentVolumeClaim")), ("size", .string(gib(size)))]
            if let sc = c.storage.storageClass { p.append(("storageClass", .string(sc))) }
            return p
        }
        // This chart takes nodeSelector and tolerations as YAML text (it runs them through `tpl`).
        let selector = yamlText(nodeSelector(c))
        let tolerationText = yamlText(tolerations(c))
        var dataDir: [(String, YAMLTree)] = [("name", .string("data1"))] + pvc(c.storage.objectStoreGiB)
        dataDir.append(("maxVolumes", .int(0)))
        let values: YAMLTree = .map([
            (
                "global",
                .map([
                    ("imageRegistry", .string(c.registry)),
                    (
                        "seaweedfs",
                        .map([("image", .map([("name", .string(mirrorPath("docker.io/chrislusf/seaweedfs")))]))])
                    ),
                ])
            ),
            ("image", .map([("tag", .string(ChartReference.seaweedfs.appVersion))])),
            (
                "master",
                .map([
                    ("replicas", .int(1)), ("data", .map(pvc(masterGiB))), ("nodeSelector", selector),
                    ("tolerations", tolerationText), ("resources", resources(c.resources("object-store-master"))),
                ])
            ),
            (
                "volume",
                .map([
                    ("replicas", .int(c.objectStoreReplicas)), ("dataDirs", .list([.map(dataDir)])),
                    ("resizeHook", .map([("enabled", .bool(false))])), ("nodeSelector", selector),
                    ("tolerations", tolerationText), ("resources", resources(c.resources("object-storage"))),
                ])
            ),
            (
                "filer",
                .map([
                    ("replicas", .int(1)), ("data", .map(pvc(filerGiB))), ("nodeSelector", selector),
                    ("tolerations", tolerationText), ("resources", resources(c.resources("object-store-filer"))),
                    ("s3", .map([("enabled", .bool(true)), ("enableAuth", .bool(true))])),
                ])
            ),
        ])
        var volumes = [
            VolumeClaim(release: name, name: "master", sizeGiB: masterGiB, storageClass: c.storage.storageClass),
            VolumeClaim(release: name, name: "filer", sizeGiB: filerGiB, storageClass: c.storage.storageClass),
        ]
        for i in 0..<c.objectStoreReplicas {
            volumes.append(
                VolumeClaim(
                    release: name, name: "volume-\(i + 1)", sizeGiB: c.storage.objectStoreGiB,
                    storageClass: c.storage.storageClass))
        }
        return PlatformRelease(
            name: name, namespace: "platform-s3", chart: .seaweedfs, values: values,
            pods: [
                PodFootprint(
                    release: name, name: "seaweedfs-master", resources: c.resources("object-store-master"),
                    sizedBy: "object-store-master"),
                PodFootprint(
                    release: name, name: "seaweedfs-volume", replicas: c.objectStoreReplicas,
                    resources: c.resources("object-storage"), sizedBy: "object-storage"),
                PodFootprint(
                    release: name, name: "seaweedfs-filer", resources: c.resources("object-store-filer"),
                    sizedBy: "object-store-filer"),
            ],
            volumes: volumes)
    }

    /// HAProxy Kubernetes ingress on every system node (a DaemonSet on the nodes' ports 80 and 443), the
    /// default IngressClass, serving the site's certificate (Secret `tlsSecretName` in the release's namespace)
    /// as the default for `<domain>` and `*.<domain>`.
    public static func ingress(_ c: PlatformConfiguration) -> PlatformRelease {
        let name = "haproxy-ingress"
        let r = c.resources("ingress")
        let values: YAMLTree = .map([
            (
                "controller",
                .map(
                    placed(
                        c, r,
                        extra: [
                            (
                                "image",
                                .map([
                                    ("repository", .string(mirrored(c, "docker.io/haproxytech/kubernetes-ingress"))),
                                    ("tag", .string(ChartReference.haproxyIngress.appVersion)),
                                ])
                            ),
                            ("kind", .string("DaemonSet")),
                            // Ports 80/443 on every system node: *.<domain> resolves to the system nodes.
                            ("daemonset", .map([("useHostPort", .bool(true))])),
                            ("ingressClass", .string("haproxy")),
                            ("ingressClassResource", .map([("name", .string("haproxy")), ("default", .bool(true))])),
                            (
                                "defaultTLSSecret",
                                .map([("enabled", .bool(true)), ("secret", .string(c.tlsSecretName))])
                            ),
                            ("service", .map([("type", .string("NodePort"))])),
                        ]))
            ),
            ("crdjob", .map(placed(c, r))),
        ])
        return PlatformRelease(
            name: name, namespace: "ingress", chart: .haproxyIngress, values: values,
            pods: [
                PodFootprint(
                    release: name, name: "haproxy-ingress", resources: r, placement: .everySystemNode,
                    sizedBy: "ingress")
            ],
            volumes: [])
    }
}
