import ApplianceModel

/// The smoke tests run after the platform is deployed (issue 13): Kubernetes Jobs from bundle images, each a pure
/// function of `PlatformConfiguration`. The runner (`ApplianceOperations.SmokeRunner`) applies a test's
/// objects, waits for its expectation, keeps the pods' logs and events on failure, and deletes them.
public struct SmokeTest: Sendable, Equatable {
    /// What must hold for the test to pass.
    public enum Expectation: Sendable, Equatable {
        /// Every Job completes; each of its pods ran on a node with `nvidia.com/gpu` when `onGPUNode`.
        case completes(onGPUNode: Bool)
        /// The Job completes and its pods carry one KAI GPU group (`runai-gpu-group`) on one node: one GPU shared.
        case sharesOneGPU(pods: Int)
        /// The Job completes and all its pods were bound in the same scheduling decision (a gang).
        case startsTogether(pods: Int)
        /// No pod of the Job is bound for `seconds`; each stays Pending with PodScheduled False (Unschedulable).
        case staysPending(seconds: Int)
    }

    /// `smoke/<name>` in the install plan.
    public var name: String
    public var summary: String
    /// The Helm release the test exercises (the step depends on it and is skipped without it).
    public var release: String
    /// Objects to apply, in order (deleted in reverse order afterwards).
    public var objects: [YAMLTree]
    /// The Job whose pods are checked, and its namespace.
    public var job: String
    public var namespace: String
    public var expectation: Expectation
    /// How long the runner waits for the expectation before it fails the test.
    public var timeoutSeconds: Int

    public var document: String { PlatformObjects.document(objects) }
}

public enum SmokeTests {
    /// Namespace of the tests that need no platform secret (the runner creates and deletes it).
    public static let namespace = "appliance-smoke"
    /// The label on every object of a smoke test (`appliance.io/smoke: <name>`).
    public static let label = "appliance.io/smoke"
    /// The queues the GPU tests use, created by the runner before them and removed after: a parent with no
    /// limit, a leaf with no limit and a leaf whose GPU limit admits one GPU (the gang refusal).
    public static let parentQueue = "appliance-smoke"
    public static let queue = "appliance-smoke-gpu"
    public static let limitedQueue = "appliance-smoke-limited"

    /// Upstream images the tests run, mirrored into the site registry like every platform image (the bundle
    /// must carry them): CUDA base (nvidia-smi, injected by the NVIDIA runtime), the CloudNativePG PostgreSQL image
    /// (psql), curl (S3 requests signed with `--aws-sigv4`), BusyBox (a shell for the NFS write).
    public static let cudaImage = "nvcr.io/nvidia/cuda:12.9.1-base-ubuntu24.04"
    public static let curlImage = "docker.io/curlimages/curl:8.11.1"
    public static let busyboxImage = "docker.io/library/busybox:1.37.0"
    public static var postgresImage: String {
        "ghcr.io/cloudnative-pg/postgresql:\(ChartReference.cnpgCluster.appVersion)"
    }
    public static var images: [String] { [cudaImage, postgresImage, curlImage, busyboxImage] }

    /// Every test the install runs, in run order.
    public static func all(_ c: PlatformConfiguration) -> [SmokeTest] {
        [gpu(c), gpuFraction(c), gang(c), gangLimit(c), database(c), objectStore(c), nfs(c)]
    }

    /// The smoke queues (parents first), for the runner to apply before the GPU tests and delete after.
    public static func queues() -> [YAMLTree] {
        func q(_ name: String, parent: String?, limit: Int) -> YAMLTree {
            var spec: [(String, YAMLTree)] = [("displayName", .string(name))]
            if let parent { spec.append(("parentQueue", .string(parent))) }
            let unlimited: YAMLTree = .map([("quota", .int(-1)), ("limit", .int(-1)), ("overQuotaWeight", .int(1))])
            spec.append(
                (
                    "resources",
                    .map([
                        (
                            "gpu",
                            .map([("quota", .int(0)), ("limit", .int(limit)), ("overQuotaWeight", .int(1))])
                        ),
                        ("cpu", unlimited), ("memory", unlimited),
                    ])
                ))
            return .map([
                ("apiVersion", .string("scheduling.run.ai/v2")), ("kind", .string("Queue")),
                (
                    "metadata",
                    .map([("name", .string(name)), ("labels", .map([(label, .string("queues"))]))])
                ),
                ("spec", .map(spec)),
            ])
        }
        return [
            q(parentQueue, parent: nil, limit: -1), q(queue, parent: parentQueue, limit: -1),
            q(limitedQueue, parent: parentQueue, limit: 1),
        ]
    }

    static func image(_ c: PlatformConfiguration, _ upstream: String) -> String {
        let tag = upstream.split(separator: ":", maxSplits: 1)
        guard tag.count == 2 else { return PlatformValues.mirrored(c, upstream) }
        // The tag follows the last path component (a registry host may carry a port, but these do not).
        return PlatformValues.mirrored(c, String(tag[0])) + ":" + tag[1]
    }

    static func metadata(_ name: String, _ ns: String, test: String, extra: [(String, YAMLTree)] = [])
        -> YAMLTree
    {
        .map([("name", .string(name)), ("namespace", .string(ns)), ("labels", .map([(label, .string(test))]))] + extra)
    }

    /// A Job of `pods` pods (all must succeed), never restarted, with the test's label on its pods.
    static func job(
        _ test: String, name: String, ns: String, pods: Int = 1, annotations: [(String, YAMLTree)] = [],
        podLabels: [(String, YAMLTree)] = [], podAnnotations: [(String, YAMLTree)] = [], kai: Bool,
        container: [(String, YAMLTree)], volumes: [YAMLTree] = []
    ) -> YAMLTree {
        var podSpec: [(String, YAMLTree)] = []
        if kai { podSpec.append(("schedulerName", .string("kai-scheduler"))) }
        podSpec.append(("restartPolicy", .string("Never")))
        if kai {
            podSpec.append(
                (
                    "tolerations",
                    .list([
                        .map([
                            ("key", .string("nvidia.com/gpu")), ("operator", .string("Exists")),
                            ("effect", .string("NoSchedule")),
                        ])
                    ])
                ))
        }
        podSpec.append(("containers", .list([.map(container)])))
        if !volumes.isEmpty { podSpec.append(("volumes", .list(volumes))) }
        var podMeta: [(String, YAMLTree)] = [("labels", .map([(label, .string(test))] + podLabels))]
        if !podAnnotations.isEmpty { podMeta.append(("annotations", .map(podAnnotations))) }
        var meta: [(String, YAMLTree)] = [
            ("name", .string(name)), ("namespace", .string(ns)), ("labels", .map([(label, .string(test))] + podLabels)),
        ]
        if !annotations.isEmpty { meta.append(("annotations", .map(annotations))) }
        return .map([
            ("apiVersion", .string("batch/v1")), ("kind", .string("Job")), ("metadata", .map(meta)),
            (
                "spec",
                .map([
                    ("parallelism", .int(pods)), ("completions", .int(pods)), ("backoffLimit", .int(0)),
                    ("activeDeadlineSeconds", .int(600)),
                    ("template", .map([("metadata", .map(podMeta)), ("spec", .map(podSpec))])),
                ])
            ),
        ])
    }

    static func resources(gpus: Int?) -> YAMLTree {
        var limits: [(String, YAMLTree)] = [("cpu", .string("500m")), ("memory", .string("256Mi"))]
        if let gpus { limits.append(("nvidia.com/gpu", .string("\(gpus)"))) }
        return .map([
            ("requests", .map([("cpu", .string("100m")), ("memory", .string("64Mi"))])), ("limits", .map(limits)),
        ])
    }

    static func nvidiaSMI(_ c: PlatformConfiguration, gpus: Int?) -> [(String, YAMLTree)] {
        [
            ("name", .string("nvidia-smi")), ("image", .string(image(c, cudaImage))),
            ("command", .list([.string("nvidia-smi"), .string("-L")])),
            ("terminationMessagePolicy", .string("FallbackToLogsOnError")),
            ("resources", resources(gpus: gpus)),
        ]
    }

    static let kaiRelease = "kai-scheduler"

    /// (a) One pod asking one GPU, through KAI in a leaf queue, lands on a GPU node and lists its GPU.
    public static func gpu(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "gpu"
        return SmokeTest(
            name: name, summary: "a GPU pod scheduled by kai-scheduler in a leaf queue runs on a GPU node",
            release: kaiRelease,
            objects: [
                job(
                    name, name: "smoke-gpu", ns: namespace, podLabels: [("kai.scheduler/queue", .string(queue))],
                    kai: true, container: nvidiaSMI(c, gpus: 1))
            ], job: "smoke-gpu", namespace: namespace, expectation: .completes(onGPUNode: true), timeoutSeconds: 180)
    }

    /// (b) Two pods asking half a GPU each, started as a gang so that both hold their share at once.
    public static func gpuFraction(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "gpu-fraction"
        return SmokeTest(
            name: name, summary: "two pods asking half a GPU each share one GPU",
            release: kaiRelease,
            objects: [
                job(
                    name, name: "smoke-gpu-fraction", ns: namespace, pods: 2,
                    annotations: [("kai.scheduler/batch-min-member", .string("2"))],
                    podLabels: [("kai.scheduler/queue", .string(queue))],
                    podAnnotations: [("gpu-fraction", .string("0.5"))], kai: true, container: nvidiaSMI(c, gpus: nil))
            ], job: "smoke-gpu-fraction", namespace: namespace, expectation: .sharesOneGPU(pods: 2),
            timeoutSeconds: 180)
    }

    /// (c) A two-pod gang (`kai.scheduler/batch-min-member: 2`) starts together.
    public static func gang(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "gang"
        return SmokeTest(
            name: name, summary: "a two-pod gang starts together", release: kaiRelease,
            objects: [
                job(
                    name, name: "smoke-gang", ns: namespace, pods: 2,
                    annotations: [("kai.scheduler/batch-min-member", .string("2"))],
                    podLabels: [("kai.scheduler/queue", .string(queue))], kai: true, container: nvidiaSMI(c, gpus: 1))
            ], job: "smoke-gang", namespace: namespace, expectation: .startsTogether(pods: 2), timeoutSeconds: 180)
    }

    /// (d) The same gang in a queue whose GPU limit admits one GPU does not start at all.
    public static func gangLimit(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "gang-limit"
        return SmokeTest(
            name: name, summary: "a two-pod gang does not start when its queue's limit admits only one GPU",
            release: kaiRelease,
            objects: [
                job(
                    name, name: "smoke-gang-limit", ns: namespace, pods: 2,
                    annotations: [("kai.scheduler/batch-min-member", .string("2"))],
                    podLabels: [("kai.scheduler/queue", .string(limitedQueue))], kai: true,
                    container: nvidiaSMI(c, gpus: 1))
            ], job: "smoke-gang-limit", namespace: namespace, expectation: .staysPending(seconds: 20),
            timeoutSeconds: 120)
    }

    /// The CloudNativePG cluster of the `cluster` chart: `<release>-cluster`, its `-rw` service and `-app` secret.
    static let databaseRelease = "platform-db"
    static var databaseCluster: String { "\(databaseRelease)-cluster" }

    /// (e) The database answers `SELECT 1` through its read-write service, with the application's credentials.
    public static func database(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "database"
        let ns = "platform-db"
        let env: YAMLTree = .list([
            .map([
                ("name", .string("DB_URI")),
                (
                    "valueFrom",
                    .map([
                        (
                            "secretKeyRef",
                            .map([("name", .string("\(databaseCluster)-app")), ("key", .string("uri"))])
                        )
                    ])
                ),
            ])
        ])
        return SmokeTest(
            name: name, summary: "the database answers SELECT 1", release: databaseRelease,
            objects: [
                job(
                    name, name: "smoke-database", ns: ns, kai: false,
                    container: [
                        ("name", .string("psql")), ("image", .string(image(c, postgresImage))),
                        ("command", .list([.string("psql")])),
                        ("args", .list([.string("$(DB_URI)"), .string("-tAc"), .string("SELECT 1")])),
                        ("env", env), ("terminationMessagePolicy", .string("FallbackToLogsOnError")),
                        ("resources", resources(gpus: nil)),
                    ])
            ], job: "smoke-database", namespace: ns, expectation: .completes(onGPUNode: false), timeoutSeconds: 180)
    }

    static let objectStoreRelease = "object-store"
    /// SeaweedFS's S3 gateway service and the admin credentials the chart generates (`enableAuth`).
    static let s3Endpoint = "http://seaweedfs-s3.platform-s3.svc:8333"
    static let s3Secret = "seaweedfs-s3-secret"

    /// (f) The object store stores an object and returns the same bytes: curl (`--aws-sigv4`, S3's Signature V4)
    /// makes a bucket of its own, puts an object, reads it back, compares (`cmp`), deletes both. The keys come
    /// from the chart's Secret into the environment and reach curl through a config file in the pod's scratch
    /// volume, never its command line.
    public static func objectStore(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "object-store"
        let ns = "platform-s3"
        func secret(_ env: String, _ key: String) -> YAMLTree {
            .map([
                ("name", .string(env)),
                ("valueFrom", .map([("secretKeyRef", .map([("name", .string(s3Secret)), ("key", .string(key))]))])),
            ])
        }
        let script = """
            set -e
            cd /scratch
            trap 'rm -f s3.curlrc' EXIT
            printf 'user = "%s:%s"\\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" > s3.curlrc
            s3() { curl -sS --fail-with-body -K s3.curlrc --aws-sigv4 "aws:amz:us-east-1:s3" "$@"; }
            bucket="appliance-smoke-$(date +%s)"
            s3 -X PUT "$S3_ENDPOINT/$bucket"
            echo "appliance smoke $bucket" > object
            s3 -T object "$S3_ENDPOINT/$bucket/object"
            s3 -o returned "$S3_ENDPOINT/$bucket/object"
            cmp object returned
            s3 -X DELETE "$S3_ENDPOINT/$bucket/object"
            s3 -X DELETE "$S3_ENDPOINT/$bucket"
            echo "object stored and returned ($(wc -c < object) bytes, bucket $bucket removed)"
            """
        return SmokeTest(
            name: name, summary: "the object store stores and returns an object", release: objectStoreRelease,
            objects: [
                job(
                    name, name: "smoke-object-store", ns: ns, kai: false,
                    container: [
                        ("name", .string("s3")), ("image", .string(image(c, curlImage))),
                        ("command", .list([.string("/bin/sh"), .string("-c"), .string(script)])),
                        (
                            "env",
                            .list([
                                .map([("name", .string("S3_ENDPOINT")), ("value", .string(s3Endpoint))]),
                                secret("S3_ACCESS_KEY", "admin_access_key_id"),
                                secret("S3_SECRET_KEY", "admin_secret_access_key"),
                            ])
                        ),
                        (
                            "volumeMounts",
                            .list([.map([("name", .string("scratch")), ("mountPath", .string("/scratch"))])])
                        ),
                        ("terminationMessagePolicy", .string("FallbackToLogsOnError")),
                        ("resources", resources(gpus: nil)),
                    ],
                    volumes: [.map([("name", .string("scratch")), ("emptyDir", .map([]))])])
            ], job: "smoke-object-store", namespace: ns, expectation: .completes(onGPUNode: false),
            timeoutSeconds: 180)
    }

    /// (g) A claim on the dataset cache's StorageClass binds and a pod writes, reads back and removes a file.
    public static func nfs(_ c: PlatformConfiguration) -> SmokeTest {
        let name = "nfs"
        let claim: YAMLTree = .map([
            ("apiVersion", .string("v1")), ("kind", .string("PersistentVolumeClaim")),
            ("metadata", metadata("smoke-nfs", namespace, test: name)),
            (
                "spec",
                .map([
                    ("accessModes", .list([.string("ReadWriteMany")])),
                    ("storageClassName", .string(c.storage.datasetStorageClass)),
                    ("resources", .map([("requests", .map([("storage", .string("1Gi"))]))])),
                ])
            ),
        ])
        let script = """
            set -e
            f=/data/appliance-smoke-$(hostname)
            echo appliance-smoke > "$f"
            test "$(cat "$f")" = appliance-smoke
            rm "$f"
            echo "nfs volume writable"
            """
        return SmokeTest(
            name: name, summary: "an NFS volume on the dataset cache is writable", release: "csi-driver-nfs",
            objects: [
                claim,
                job(
                    name, name: "smoke-nfs", ns: namespace, kai: false,
                    container: [
                        ("name", .string("write")), ("image", .string(image(c, busyboxImage))),
                        ("command", .list([.string("/bin/sh"), .string("-c"), .string(script)])),
                        (
                            "volumeMounts",
                            .list([.map([("name", .string("data")), ("mountPath", .string("/data"))])])
                        ),
                        ("terminationMessagePolicy", .string("FallbackToLogsOnError")),
                        ("resources", resources(gpus: nil)),
                    ],
                    volumes: [
                        .map([
                            ("name", .string("data")),
                            ("persistentVolumeClaim", .map([("claimName", .string("smoke-nfs"))])),
                        ])
                    ]),
            ], job: "smoke-nfs", namespace: namespace, expectation: .completes(onGPUNode: false), timeoutSeconds: 180)
    }
}
