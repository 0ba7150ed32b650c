import ApplianceModel

/// A renderer's refusal: an input that would make a file the real tool rejects. Messages never quote a
/// secret's value.
public struct RenderError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// kubeadm's configuration (`kubeadm.k8s.io/v1beta4`, kubeadm ≥ 1.31) for `kubeadm init` and `kubeadm join`.
///
/// - init (first control plane): `InitConfiguration` + `ClusterConfiguration` + `KubeletConfiguration`,
///   written to `initPath` (0600) and kept there for upgrades; run as
///   `kubeadm init --config <path> --upload-certs`. The certificate key cannot be passed as a flag together
///   with `--config`, so it goes into `InitConfiguration.certificateKey` when the caller chose one.
/// - join (every other node): one `JoinConfiguration` with token discovery pinned by `caCertHashes`;
///   control planes get `controlPlane.certificateKey`. Written to `joinPath` (0600), removed after the join.
///
/// Images: `imageRepository` stays `registry.k8s.io` (upstream names), and containerd resolves every pull
/// through the private registry (`hosts.toml`, `ContainerdConfig`). So the sandbox image containerd uses is
/// exactly the `registry.k8s.io/pause:<tag>` kubeadm expects (its preflight stays quiet), CoreDNS keeps its
/// `coredns/coredns` path, and CNI manifests and charts need no rewriting. A caller that wants kubeadm to
/// name the private registry directly passes `imageRepository`.
public enum KubeadmConfig {
    public static let apiVersion = "kubeadm.k8s.io/v1beta4"
    public static let kubeletAPIVersion = "kubelet.config.k8s.io/v1beta1"
    public static let criSocket = "unix:///run/containerd/containerd.sock"
    public static let initPath = "/etc/kubernetes/appliance/kubeadm-init.yaml"
    public static let joinPath = "/etc/kubernetes/appliance/kubeadm-join.yaml"
    public static let defaultImageRepository = "registry.k8s.io"

    public struct Options: Sendable, Equatable {
        /// kubeadm `imageRepository`.
        public var imageRepository: String
        /// Extra `kube-controller-manager` flags (`node-monitor-grace-period`...), in order.
        public var controllerManagerArgs: [KubeadmArg]
        /// kubeadm preflight checks to ignore (`nodeRegistration.ignorePreflightErrors`, `Swap`, `NumCPU`...);
        /// empty on real servers, where the installer's own preflight gate has run.
        public var ignorePreflightErrors: [String]
        public init(
            imageRepository: String = KubeadmConfig.defaultImageRepository, controllerManagerArgs: [KubeadmArg] = [],
            ignorePreflightErrors: [String] = []
        ) {
            self.imageRepository = imageRepository
            self.controllerManagerArgs = controllerManagerArgs
            self.ignorePreflightErrors = ignorePreflightErrors
        }
    }

    /// `bootstrapTokens[].token` / `discovery.bootstrapToken.token`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    public static func isBootstrapToken(_ s: String) -> Bool {
        let p = s.split(separator: ".", omittingEmptySubsequences: false)
        let ok: (Substring) -> Bool = { $0.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber) } }
        return p.count == 2 && p[0].count == 6 && p[1].count == 16 && ok(p[0]) && ok(p[1])
    }

    /// A certificate key: 32 bytes, hex (64 characters).
    public static func isCertificateKey(_ s: String) -> Bool {
        s.count == 64 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// `sha256:<64 hex>` (the SHA-256 of the cluster CA's SubjectPublicKeyInfo).
    public static func isCACertHash(_ s: String) -> Bool {
        s.hasPrefix("sha256:") && s.dropFirst(7).count == 64 && s.dropFirst(7).allSatisfy(\.isHexDigit)
    }

    /// The API endpoint every node uses (`controlPlaneEndpoint` and join discovery).
    public static func controlPlaneEndpoint(site: SiteInventory) throws(RenderError) -> String {
        guard let e = site.effectiveAPIEndpoint else {
            throw RenderError("several control planes and no spec.network.apiEndpoint: there is no stable API endpoint")
        }
        return e.hostPort
    }

    /// The API server certificate's extra SANs: the endpoint's name and address, then every control plane's
    /// name and address (kubeadm adds its own node's, the service IP and the `kubernetes.*` names itself).
    public static func certSANs(site: SiteInventory) -> [String] {
        var out: [String] = []
        func add(_ s: String?) { if let s, !out.contains(s) { out.append(s) } }
        if let e = site.effectiveAPIEndpoint {
            add(e.name)
            add(e.address)
        }
        for cp in site.controlPlanes {
            add(cp.name)
            add(cp.address)
        }
        return out
    }

    /// The API server's `--oidc-*` flags from `spec.auth.oidc` (the caFile as installed on the node).
    public static func oidcArgs(site: SiteInventory) -> [KubeadmArg] {
        guard let o = site.auth?.oidc else { return [] }
        var args = [KubeadmArg("oidc-issuer-url", o.issuerURL), KubeadmArg("oidc-client-id", o.clientID)]
        if let v = o.usernameClaim { args.append(KubeadmArg("oidc-username-claim", v)) }
        if let v = o.usernamePrefix { args.append(KubeadmArg("oidc-username-prefix", v)) }
        if let v = o.groupsClaim { args.append(KubeadmArg("oidc-groups-claim", v)) }
        if let v = o.groupsPrefix { args.append(KubeadmArg("oidc-groups-prefix", v)) }
        if o.caFile != nil { args.append(KubeadmArg("oidc-ca-file", SiteInventory.OIDCSettings.nodeCAPath)) }
        return args
    }

    /// The init file for the first control plane.
    ///
    /// Secrets: `certificateKey` (the AES key of the certificates `--upload-certs` stores in the cluster) and
    /// `bootstrapToken` are optional; pass them only for the copy that `kubeadm init` reads, and keep the
    /// copy for upgrades without them (`containsSecret` says which one this is).
    public static func initFile(
        site: SiteInventory, profile: HardwareProfile, bundle: BundleFacts, node: SiteInventory.Host,
        options: Options = Options(), certificateKey: String? = nil, bootstrapToken: String? = nil
    ) throws(RenderError) -> NodeFile {
        guard node.roles.contains(.controlPlane) else {
            throw RenderError("kubeadm init runs on a control-plane node; '\(node.name)' is not one")
        }
        if let k = certificateKey, !isCertificateKey(k) {
            throw RenderError("the certificate key must be 64 lower-case hex characters (32 bytes)")
        }
        if let t = bootstrapToken, !isBootstrapToken(t) {
            throw RenderError("the bootstrap token must match [a-z0-9]{6}.[a-z0-9]{16}")
        }
        let endpoint = try controlPlaneEndpoint(site: site)
        var initPairs: [(String, YAMLTree)] = [
            ("apiVersion", .string(apiVersion)), ("kind", .string("InitConfiguration")),
        ]
        if let t = bootstrapToken {
            initPairs.append(
                (
                    "bootstrapTokens",
                    .list([
                        .map([
                            ("token", .string(t)), ("description", .string("appliance install: worker joins")),
                            ("ttl", .string("24h0m0s")),
                        ])
                    ])
                ))
        }
        if let k = certificateKey { initPairs.append(("certificateKey", .string(k))) }
        if let a = IPv4Address(node.address) {
            initPairs.append(
                (
                    "localAPIEndpoint",
                    .map([
                        ("advertiseAddress", .string(a.description)),
                        ("bindPort", .int(SiteInventory.APIEndpoint.apiServerPort)),
                    ])
                ))
        }
        initPairs.append(
            ("nodeRegistration", nodeRegistration(site: site, profile: profile, node: node, options: options)))

        let k8s = profile.kubernetes
        var cluster: [(String, YAMLTree)] = [
            ("apiVersion", .string(apiVersion)), ("kind", .string("ClusterConfiguration")),
            ("clusterName", .string(site.name)), ("kubernetesVersion", .string(bundle.kubernetesVersion)),
            ("controlPlaneEndpoint", .string(endpoint)), ("imageRepository", .string(options.imageRepository)),
            (
                "networking",
                .map([
                    ("podSubnet", .string(site.network?.podCIDR ?? k8s.podCIDR)),
                    ("serviceSubnet", .string(site.network?.serviceCIDR ?? k8s.serviceCIDR)),
                    ("dnsDomain", .string(k8s.dnsDomain)),
                ])
            ),
            ("etcd", .map([("local", .map([("dataDir", .string("/var/lib/etcd"))]))])),
        ]
        var apiServer: [(String, YAMLTree)] = [("certSANs", .list(certSANs(site: site).map { .string($0) }))]
        let oidc = oidcArgs(site: site)
        if !oidc.isEmpty { apiServer.append(("extraArgs", args(oidc))) }
        cluster.append(("apiServer", .map(apiServer)))
        if !options.controllerManagerArgs.isEmpty {
            cluster.append(("controllerManager", .map([("extraArgs", args(options.controllerManagerArgs))])))
        }
        let kubelet: [(String, YAMLTree)] = [
            ("apiVersion", .string(kubeletAPIVersion)), ("kind", .string("KubeletConfiguration")),
            ("cgroupDriver", .string(k8s.cgroupDriver)), ("containerRuntimeEndpoint", .string(criSocket)),
            ("failSwapOn", .bool(true)),
        ]
        let text =
            RenderText.header("#", ["kubeadm init --config \(initPath) --upload-certs (on \(node.name))"])
            + documents([.map(initPairs), .map(cluster), .map(kubelet)])
        return NodeFile(
            path: initPath, mode: 0o600, content: text, containsSecret: certificateKey != nil || bootstrapToken != nil)
    }

    /// The join file for a node: a control plane (its role says so) or a worker.
    ///
    /// Secrets: `token` always, `certificateKey` for control planes; the file is 0600 and `containsSecret`.
    public static func joinFile(
        site: SiteInventory, profile: HardwareProfile, node: SiteInventory.Host, token: String, caCertHashes: [String],
        certificateKey: String? = nil, options: Options = Options()
    ) throws(RenderError) -> NodeFile {
        guard isBootstrapToken(token) else {
            throw RenderError("the bootstrap token must match [a-z0-9]{6}.[a-z0-9]{16}")
        }
        guard !caCertHashes.isEmpty, caCertHashes.allSatisfy(isCACertHash) else {
            throw RenderError("a join needs the cluster CA's hash as sha256:<64 hex> (token discovery is pinned)")
        }
        if let k = certificateKey, !isCertificateKey(k) {
            throw RenderError("the certificate key must be 64 lower-case hex characters (32 bytes)")
        }
        let isControlPlane = node.roles.contains(.controlPlane)
        if certificateKey != nil && !isControlPlane {
            throw RenderError(
                "'\(node.name)' is not a control plane; only control-plane joins take the certificate key")
        }
        let endpoint = try controlPlaneEndpoint(site: site)
        var pairs: [(String, YAMLTree)] = [
            ("apiVersion", .string(apiVersion)), ("kind", .string("JoinConfiguration")),
            (
                "discovery",
                .map([
                    (
                        "bootstrapToken",
                        .map([
                            ("apiServerEndpoint", .string(endpoint)), ("token", .string(token)),
                            ("caCertHashes", .list(caCertHashes.map { .string($0) })),
                        ])
                    )
                ])
            ),
        ]
        if isControlPlane {
            var cp: [(String, YAMLTree)] = []
            if let a = IPv4Address(node.address) {
                cp.append(
                    (
                        "localAPIEndpoint",
                        .map([
                            ("advertiseAddress", .string(a.description)),
                            ("bindPort", .int(SiteInventory.APIEndpoint.apiServerPort)),
                        ])
                    ))
            }
            if let k = certificateKey { cp.append(("certificateKey", .string(k))) }
            pairs.append(("controlPlane", .map(cp)))
        }
        pairs.append(("nodeRegistration", nodeRegistration(site: site, profile: profile, node: node, options: options)))
        let command = "kubeadm join --config \(joinPath)"
        let text = RenderText.header("#", ["\(command) (on \(node.name))"]) + documents([.map(pairs)])
        return NodeFile(path: joinPath, mode: 0o600, content: text, containsSecret: true)
    }

    static func nodeRegistration(
        site: SiteInventory, profile: HardwareProfile, node: SiteInventory.Host, options: Options
    ) -> YAMLTree {
        let marks = NodeRoleMarks.forHost(node, site: site, profile: profile)
        var p: [(String, YAMLTree)] = [
            ("name", .string(node.name)), ("criSocket", .string(criSocket)),
            ("imagePullPolicy", .string("IfNotPresent")),
            // Explicit, so a control plane that is also a dedicated system node keeps kubeadm's taint too
            // (a non-nil list replaces kubeadm's default) and a worker registers with none.
            (
                "taints",
                .list(
                    marks.taints.map { t in
                        var tp: [(String, YAMLTree)] = [("key", .string(t.key))]
                        if !t.value.isEmpty { tp.append(("value", .string(t.value))) }
                        tp.append(("effect", .string(t.effect.rawValue)))
                        return .map(tp)
                    })
            ),
        ]
        if let a = IPv4Address(node.address) {
            p.append(("kubeletExtraArgs", args([KubeadmArg("node-ip", a.description)])))
        }
        if !options.ignorePreflightErrors.isEmpty {
            p.append(("ignorePreflightErrors", .list(options.ignorePreflightErrors.map { .string($0) })))
        }
        return .map(p)
    }

    static func args(_ list: [KubeadmArg]) -> YAMLTree {
        .list(list.map { .map([("name", .string($0.name)), ("value", .string($0.value))]) })
    }

    static func documents(_ docs: [YAMLTree]) -> String {
        docs.map { $0.serialized() }.joined(separator: "---\n")
    }
}

/// One v1beta4 `extraArgs`/`kubeletExtraArgs` entry: `{name, value}` (the flag without `--`).
public struct KubeadmArg: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}
