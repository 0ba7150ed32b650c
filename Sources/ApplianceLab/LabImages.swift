import ApplianceBundle
import ApplianceModel
import Foundation

/// The lab's OCI images, made by the project from Debian binaries: real OCI image layouts
/// (image-spec `image-layout.md`) with real digests, small, and byte-identical on every build.
///
/// Every image has one layer: Debian's statically linked `catatonit` at `/usr/bin/catatonit`. The pause image
/// runs it as a real pause process (`catatonit -P`: reaps nothing, sleeps until signalled), which is what
/// the upstream pause image does. The other images carry the names and tags kubeadm 1.34 and the lab's
/// flannel manifest pull (`registry.k8s.io/kube-apiserver:v1.34.3`, `registry.k8s.io/etcd:3.6.4-0`, ...)
/// so that the whole image path (bundle, registry seeding, containerd mirrors, pulls by digest) is real; their
/// content is the same pause process, labelled with the image it stands in for, because the lab's kubelet
/// (a stand-in) runs no containers and no Debian binary of those components exists at those versions.
///
/// Reproducible: the layer tar is sorted by name with fixed owner (0:0, numeric), mode and mtime (0), in GNU
/// format, gzipped with `gzip -n` (no name, no time stamp); JSON documents are written with sorted keys.
public struct LabImages: Sendable {
    /// The `catatonit` executable to put in the images (from Debian's `catatonit` package).
    public var catatonit: String
    /// Where the binary came from, recorded in every image's config labels (e.g. "catatonit 0.1.7-1+b2").
    public var catatonitSource: String
    public var kubernetesVersion: String

    public init(
        catatonit: String, catatonitSource: String, kubernetesVersion: String = LabPackages.defaultKubernetesVersion
    ) {
        self.catatonit = catatonit
        self.catatonitSource = catatonitSource
        self.kubernetesVersion = kubernetesVersion
    }

    /// Versions kubeadm 1.34 uses (`kubeadm config images list`): pause 3.10.1, etcd 3.6.4-0, CoreDNS v1.12.1.
    public static let pauseTag = "3.10.1"
    public static let etcdTag = "3.6.4-0"
    public static let corednsTag = "v1.12.1"
    /// The images of the flannel v0.28.9 manifest (`reference/charts/flannel-v0.28.9/kube-flannel.yml`).
    public static let flannelTag = "v0.28.9"
    public static let flannelCNIPluginTag = "v1.9.1-flannel3"

    /// One image of the lab.
    public struct Image: Sendable, Equatable {
        /// Directory name under the output folder.
        public var directory: String
        /// The upstream repository, e.g. `registry.k8s.io/pause`.
        public var repository: String
        public var tag: String
        /// Why it is there.
        public var purpose: String
        public var reference: String { "\(repository):\(tag)" }
    }

    /// Every lab image, in a fixed order.
    public var images: [Image] {
        let k = kubernetesVersion.hasPrefix("v") ? kubernetesVersion : "v" + kubernetesVersion
        return [
            Image(
                directory: "pause", repository: "registry.k8s.io/pause", tag: Self.pauseTag,
                purpose: "the pod sandbox (a real pause process: catatonit -P)"),
            Image(
                directory: "kube-apiserver", repository: "registry.k8s.io/kube-apiserver", tag: k,
                purpose: "stand-in: kubeadm's control-plane image"),
            Image(
                directory: "kube-controller-manager", repository: "registry.k8s.io/kube-controller-manager", tag: k,
                purpose: "stand-in: kubeadm's control-plane image"),
            Image(
                directory: "kube-scheduler", repository: "registry.k8s.io/kube-scheduler", tag: k,
                purpose: "stand-in: kubeadm's control-plane image"),
            Image(
                directory: "kube-proxy", repository: "registry.k8s.io/kube-proxy", tag: k,
                purpose: "stand-in: kubeadm's kube-proxy addon image"),
            Image(
                directory: "etcd", repository: "registry.k8s.io/etcd", tag: Self.etcdTag,
                purpose: "stand-in: kubeadm's etcd image"),
            Image(
                directory: "coredns", repository: "registry.k8s.io/coredns/coredns", tag: Self.corednsTag,
                purpose: "stand-in: kubeadm's CoreDNS addon image"),
            Image(
                directory: "flannel", repository: "ghcr.io/flannel-io/flannel", tag: Self.flannelTag,
                purpose: "stand-in: the lab CNI's daemon image"),
            Image(
                directory: "flannel-cni-plugin", repository: "ghcr.io/flannel-io/flannel-cni-plugin",
                tag: Self.flannelCNIPluginTag, purpose: "stand-in: the lab CNI's plugin installer image"),
        ] + Self.platformImages + Self.operatorImages + Self.smokeImages
    }

    /// The precompiled driver branch of the lab's `operator-precompiled` images: the `lab-operator` profile's
    /// (its driver versions), which is the branch of the driver the lab's HGX H100 hardware declares.
    public static let operatorDriverBranch = 590

    /// The GPU Operator's images for `gpuStack.mode: operator-precompiled` (profile `lab-operator`): its driver
    /// manager, container toolkit and standalone DCGM at the chart's default tags (`PrecompiledDriver`), and
    /// the precompiled driver of the lab's branch for the kernel of the machine that builds the lab bundle,
    /// which is the lab nodes' kernel (containers share it), on Debian 12: the tag the operator, and install's
    /// preflight, look for on a node.
    public static var operatorImages: [Image] {
        let driver = Image(
            directory: "operator-nvidia-driver-precompiled", repository: PrecompiledDriver.repository,
            tag: PrecompiledDriver.tag(
                branch: operatorDriverBranch, kernel: LabServerParity.kernelRelease, osID: "debian", osVersion: "12"),
            purpose: "stand-in: the GPU Operator's precompiled driver container for this kernel (issue 13)")
        return [driver]
            + PrecompiledDriver.operandImages.map { ref in
                let (repository, tag) = (String(ref.split(separator: ":")[0]), String(ref.split(separator: ":")[1]))
                return stand(
                    in: repository, tag: tag, prefix: "operator",
                    purpose: "a GPU Operator operand of operator-precompiled mode (issue 13)")
            }
    }

    /// The images the lab charts' workloads name (`bundles/lab/charts`), at the tags those charts (and the real
    /// ones) default to or the product pins: every image a platform release names is in the registry.
    public static let platformImages: [Image] = [
        ("quay.io/prometheus-operator/prometheus-operator", "v0.93.1"),
        ("quay.io/prometheus-operator/prometheus-config-reloader", "v0.93.1"),
        ("quay.io/prometheus/prometheus", "v3.14.0-distroless"),
        ("quay.io/prometheus/alertmanager", "v0.34.0"),
        ("docker.io/grafana/grafana", "13.2.0"),
        ("registry.k8s.io/kube-state-metrics/kube-state-metrics", "v2.20.0"),
        ("quay.io/prometheus/node-exporter", "v1.12.1"),
        ("nvcr.io/nvidia/gpu-operator", "v26.3.3"),
        ("registry.k8s.io/nfd/node-feature-discovery", "v0.18.3"),
        ("ghcr.io/kai-scheduler/kai-scheduler/operator", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/scheduler", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/binder", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/podgrouper", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/podgroupcontroller", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/queuecontroller", "v0.16.8"),
        ("ghcr.io/kai-scheduler/kai-scheduler/admission", "v0.16.8"),
        ("ghcr.io/cloudnative-pg/cloudnative-pg", "1.30.0"),
        ("ghcr.io/cloudnative-pg/postgresql", "16"),
        ("registry.k8s.io/sig-storage/csi-provisioner", "v6.3.0"),
        ("registry.k8s.io/sig-storage/csi-resizer", "v2.2.0"),
        ("registry.k8s.io/sig-storage/csi-snapshotter", "v8.6.0"),
        ("registry.k8s.io/sig-storage/livenessprobe", "v2.19.0"),
        ("registry.k8s.io/sig-storage/csi-node-driver-registrar", "v2.17.0"),
        ("registry.k8s.io/sig-storage/nfsplugin", "v4.13.4"),
        ("docker.io/chrislusf/seaweedfs", "4.44"),
        ("docker.io/haproxytech/kubernetes-ingress", "3.2.12"),
    ].map { stand(in: $0, tag: $1, prefix: "platform", purpose: "a platform chart's workload image (issue 13)") }

    /// The images the platform's smoke tests run (`SmokeTests.images`) that no platform chart names already: a
    /// site with a platform needs them in its bundle (`InstallBundleCheck`). The lab's kubelet runs a Job's command
    /// on the node, not the image.
    public static let smokeImages: [Image] = [
        ("nvcr.io/nvidia/cuda", "12.9.1-base-ubuntu24.04"),
        ("docker.io/curlimages/curl", "8.11.1"),
        ("docker.io/library/busybox", "1.37.0"),
    ].map { stand(in: $0, tag: $1, prefix: "smoke", purpose: "an image of the platform's smoke tests (issue 13)") }

    /// A stand-in image for an upstream one: its directory is `PREFIX-` and the repository path without the
    /// registry host, dashes for slashes.
    static func stand(in repository: String, tag: String, prefix: String, purpose: String) -> Image {
        Image(
            directory: prefix + "-" + repository.split(separator: "/").dropFirst().joined(separator: "-"),
            repository: repository, tag: tag, purpose: "stand-in: " + purpose)
    }

    public struct Built: Sendable, Equatable {
        public var image: Image
        /// The OCI image layout directory.
        public var path: String
        /// `sha256:<hex>` of the image manifest (what a registry serves and containerd pins).
        public var manifestDigest: String
        /// Bytes of all blobs of the layout.
        public var size: Int64
    }

    /// Writes one OCI image layout per image under `directory` (replacing earlier ones).
    public func build(into directory: String) throws(LabError) -> [Built] {
        let fm = FileManager.default
        guard fm.isExecutableFile(atPath: catatonit) else {
            throw .io(path: catatonit, detail: "not an executable file (install Debian's catatonit package)")
        }
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .io(path: directory, detail: "\(error)")
        }
        let scratch = "\(directory)/.layer-\(getpid())"
        try? fm.removeItem(atPath: scratch)
        defer { try? fm.removeItem(atPath: scratch) }
        let layer = try makeLayer(scratch: scratch)
        var out: [Built] = []
        for image in images {
            out.append(try writeLayout(image, layer: layer, into: "\(directory)/\(image.directory)"))
        }
        return out
    }

    struct Layer {
        var gzipPath: String
        var digest: String
        var size: Int64
        var diffID: String
    }

    /// The one layer: `usr/bin/catatonit`, packed reproducibly.
    func makeLayer(scratch: String) throws(LabError) -> Layer {
        let root = "\(scratch)/root"
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: "\(root)/usr/bin", withIntermediateDirectories: true)
            try fm.copyItem(atPath: catatonit, toPath: "\(root)/usr/bin/catatonit")
            try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(root)/usr/bin/catatonit")
            for d in ["\(root)/usr", "\(root)/usr/bin"] {
                try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: d)
            }
        } catch { throw .io(path: root, detail: "\(error)") }
        let tar = "\(scratch)/layer.tar"
        try HostCommand.run(
            "tar",
            [
                "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=gnu",
                "-C", root, "-cf", tar, "usr",
            ], context: "cannot pack the image layer")
        let gz = "\(scratch)/layer.tar.gz"
        try HostCommand.run(
            "/bin/sh", ["-c", "gzip -n -9 -c \"$1\" > \"$2\"", "sh", tar, gz],
            context: "cannot compress the image layer")
        let diffID = try Self.digest(file: tar)
        return Layer(gzipPath: gz, digest: try Self.digest(file: gz), size: try Self.size(gz), diffID: diffID)
    }

    func writeLayout(_ image: Image, layer: Layer, into dir: String) throws(LabError) -> Built {
        let fm = FileManager.default
        try? fm.removeItem(atPath: dir)
        let blobs = "\(dir)/blobs/sha256"
        do { try fm.createDirectory(atPath: blobs, withIntermediateDirectories: true) } catch {
            throw .io(path: blobs, detail: "\(error)")
        }
        func put(_ data: Data) throws(LabError) -> (digest: String, size: Int) {
            let d = SHA256Hasher.hash(data).hex
            do { try data.write(to: URL(fileURLWithPath: "\(blobs)/\(d)")) } catch {
                throw .io(path: "\(blobs)/\(d)", detail: "\(error)")
            }
            return ("sha256:" + d, data.count)
        }
        do {
            try fm.copyItem(atPath: layer.gzipPath, toPath: "\(blobs)/\(layer.digest.dropFirst(7))")
        } catch { throw .io(path: blobs, detail: "\(error)") }
        let config: [String: Any] = [
            "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
            "config": [
                "Entrypoint": ["/usr/bin/catatonit", "-P"],
                "Labels": [
                    "dev.appliance.lab.image": image.reference,
                    "dev.appliance.lab.purpose": image.purpose,
                    "dev.appliance.lab.built-from": "\(catatonitSource) (Debian)",
                ],
            ],
            "rootfs": ["type": "layers", "diff_ids": [layer.diffID]],
        ]
        let c = try put(try Self.json(config))
        let manifest: [String: Any] = [
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": ["mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.digest, "size": c.size],
            "layers": [
                [
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest,
                    "size": Int(layer.size),
                ]
            ],
        ]
        let m = try put(try Self.json(manifest))
        let index: [String: Any] = [
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                [
                    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m.digest, "size": m.size,
                    "platform": ["architecture": "amd64", "os": "linux"],
                    "annotations": [
                        "org.opencontainers.image.ref.name": image.reference,
                        "io.containerd.image.name": image.reference,
                    ],
                ]
            ],
        ]
        do {
            try Self.json(index).write(to: URL(fileURLWithPath: "\(dir)/index.json"))
            try Data(#"{"imageLayoutVersion":"1.0.0"}"#.utf8).write(to: URL(fileURLWithPath: "\(dir)/oci-layout"))
        } catch { throw .io(path: dir, detail: "\(error)") }
        return Built(
            image: image, path: dir, manifestDigest: m.digest, size: layer.size + Int64(c.size) + Int64(m.size))
    }

    static func json(_ object: Any) throws(LabError) -> Data {
        do {
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        } catch { throw .io(path: "image JSON", detail: "\(error)") }
    }

    static func digest(file: String) throws(LabError) -> String {
        do { return "sha256:" + (try SHA256Hasher.hash(file: file)).0.hex } catch {
            throw .io(path: file, detail: "\(error)")
        }
    }

    static func size(_ path: String) throws(LabError) -> Int64 {
        var st = stat()
        guard stat(path, &st) == 0 else { throw .io(path: path, detail: String(cString: strerror(errno))) }
        return Int64(st.st_size)
    }

    /// Extracts `/usr/bin/catatonit` from Debian's `catatonit` package into `directory`; returns its path.
    public static func extractCatatonit(deb: String, into directory: String) throws(LabError) -> String {
        let dir = "\(directory)/catatonit-root"
        try? FileManager.default.removeItem(atPath: dir)
        try HostCommand.run("dpkg-deb", ["-x", deb, dir], context: "cannot unpack \(deb)")
        let path = "\(dir)/usr/bin/catatonit"
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw .io(path: deb, detail: "the package has no /usr/bin/catatonit")
        }
        return path
    }
}
