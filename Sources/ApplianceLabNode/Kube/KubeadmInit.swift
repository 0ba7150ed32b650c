import Foundation

/// Where a node's lab services listen.
struct NodeNetwork {
    var address: String
    var apiPort: Int
    var etcdClientPort: Int
    var etcdPeerPort: Int

    static func detect(context: LabNodeContext, explicit: String?) -> String {
        if let e = explicit, !e.isEmpty { return e }
        if let e = context.environment["APPLIANCE_LAB_NODE_ADDRESS"], !e.isEmpty { return e }
        let r = Supervisor.run("/sbin/ip", ["-4", "-o", "addr", "show", "scope", "global"])
        for line in r.output.split(separator: "\n") {
            let f = line.split(separator: " ")
            if let i = f.firstIndex(of: "inet"), i + 1 < f.count { return String(f[i + 1].split(separator: "/")[0]) }
        }
        return "127.0.0.1"
    }

    init(context: LabNodeContext, address: String, apiPort: Int = 6443) {
        self.address = address
        self.apiPort = apiPort
        etcdClientPort = Int(context.environment["APPLIANCE_LAB_ETCD_CLIENT_PORT"] ?? "") ?? 2379
        etcdPeerPort = Int(context.environment["APPLIANCE_LAB_ETCD_PEER_PORT"] ?? "") ?? 2380
    }

    var etcdClientURL: String { "http://\(address):\(etcdClientPort)" }
    var etcdPeerURL: String { "http://\(address):\(etcdPeerPort)" }
}

/// Shared steps of init and control-plane join.
struct ControlPlaneSteps {
    let context: LabNodeContext
    var sup: Supervisor { Supervisor(context: context) }

    func startEtcd(name: String, net: NodeNetwork, initialCluster: String, state: String) throws {
        try context.write("/var/lib/appliance-lab/etcd-member", net.address + "\n")
        try FileManager.default.createDirectory(
            atPath: context.path("/var/lib/etcd"), withIntermediateDirectories: true)
        try sup.start(
            "lab-etcd", description: "etcd", executable: "/usr/bin/etcd",
            argv: [
                "/usr/bin/etcd", "--name", name, "--data-dir", context.path("/var/lib/etcd"),
                "--listen-client-urls", net.etcdClientURL, "--advertise-client-urls", net.etcdClientURL,
                "--listen-peer-urls", net.etcdPeerURL, "--initial-advertise-peer-urls", net.etcdPeerURL,
                "--initial-cluster", initialCluster, "--initial-cluster-state", state,
                "--initial-cluster-token", "appliance-lab", "--heartbeat-interval", "100", "--election-timeout", "1000",
            ])
    }

    func waitEtcd(_ net: NodeNetwork, seconds: Double = 30) -> Bool {
        let c = EtcdClient(endpoints: [net.etcdClientURL])
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? c.get("/health-probe")) != nil || c.healthy() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    /// `nodeGrace`: the cluster's `node-monitor-grace-period` (controllerManager.extraArgs), which the stand-in's
    /// node lifecycle controller uses.
    func startAPIServer(net: NodeNetwork, etcd: [String], version: KubeVersion, nodeGrace: Double? = nil) throws {
        try sup.start(
            "kube-apiserver-standin", description: "Kubernetes API server stand-in",
            executable: Supervisor.selfExecutable,
            argv: [
                "kube-apiserver-standin", "--advertise-address", net.address, "--secure-port", "\(net.apiPort)",
                "--etcd-servers", etcd.joined(separator: ","), "--kubernetes-version", version.description,
                // On a node, all addresses (as kube-apiserver's default 0.0.0.0: the control-plane VIP too); in a
                // test's state root, the node's own address, so that several "nodes" share one host.
                "--bind-address", context.root == "/" ? "0.0.0.0" : net.address,
                "--tls-cert-file", "/etc/kubernetes/pki/apiserver.crt", "--tls-private-key-file",
                "/etc/kubernetes/pki/apiserver.key", "--client-ca-file", "/etc/kubernetes/pki/ca.crt",
            ] + (nodeGrace.map { ["--node-monitor-grace-period", "\(Int($0))s"] } ?? []))
    }

    func waitAPI(_ client: KubeClient, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if client.healthy() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    func startKubelet(nodeName: String, address: String) throws {
        try sup.start(
            "kubelet", description: "kubelet: The Kubernetes Node Agent", executable: Supervisor.selfExecutable,
            argv: [
                "kubelet", "--kubeconfig=/etc/kubernetes/kubelet.conf", "--config=/var/lib/kubelet/config.yaml",
                "--hostname-override=\(nodeName)", "--node-ip=\(address)",
            ])
    }

    func waitNode(_ client: KubeClient, _ name: String, seconds: Double = 30) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let n = try? client.get(KResource.nodes, nil, name), K.isReady(node: n) { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }

    func markControlPlane(_ client: KubeClient, _ name: String, taints: [[String: String]]?) throws {
        var patch: KObject = [
            "metadata": [
                "labels": [
                    "node-role.kubernetes.io/control-plane": "",
                    "node.kubernetes.io/exclude-from-external-load-balancers": "",
                ]
            ]
        ]
        let t = taints ?? [["key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"]]
        patch["spec"] = ["taints": t]
        _ = try client.patch(KResource.nodes, nil, name, patch)
    }

    func writeKubeletFiles(address: String, clusterDNS: String, podCIDR: String?) throws {
        try context.write(
            "/var/lib/kubelet/config.yaml",
            """
            apiVersion: kubelet.config.k8s.io/v1beta1
            kind: KubeletConfiguration
            authentication:
              webhook:
                enabled: true
            authorization:
              mode: Webhook
            cgroupDriver: systemd
            clusterDNS:
            - \(clusterDNS)
            clusterDomain: cluster.local
            containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock
            rotateCertificates: true
            staticPodPath: /etc/kubernetes/manifests

            """)
        try context.write(
            "/var/lib/kubelet/kubeadm-flags.env",
            "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --node-ip=\(address) --pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n"
        )
    }

    func staticPodManifest(_ name: String, image: String, command: [String]) -> String {
        """
        apiVersion: v1
        kind: Pod
        metadata:
          labels:
            component: \(name)
            tier: control-plane
          name: \(name)
          namespace: kube-system
        spec:
          containers:
          - command:
        \(command.map { "    - \($0)" }.joined(separator: "\n"))
            image: \(image)
            name: \(name)
          hostNetwork: true
          priorityClassName: system-node-critical

        """
    }
}

struct KubeadmInit {
    let context: LabNodeContext
    let kubeadm: Kubeadm
    static let flagsIncompatibleWithConfig = [
        "pod-network-cidr", "service-cidr", "apiserver-advertise-address", "apiserver-bind-port", "kubernetes-version",
        "control-plane-endpoint", "node-name", "token", "token-ttl", "cri-socket", "certificate-key",
        "service-dns-domain",
        "apiserver-cert-extra-sans",
    ]

    /// The `kubeadm-certs` Secret that `--control-plane --certificate-key KEY` joins download (the shared CA,
    /// service-account and etcd CA keys; the lab keeps a hash of the key instead of encrypting with it).
    static func uploadCerts(_ client: KubeClient, context: LabNodeContext, certificatesDir: String, key: String) throws
    {
        var data: [String: String] = ["lab-certificate-key-sha": Data(Self.sha(key).utf8).base64EncodedString()]
        for file in [
            "ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key", "etcd/ca.crt",
            "etcd/ca.key",
        ] {
            data[file.replacingOccurrences(of: "/", with: "-")] = Data(
                (context.read(certificatesDir + "/" + file) ?? "").utf8
            ).base64EncodedString()
        }
        _ = try client.apply(
            KResource.secrets, "kube-system",
            [
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": ["name": "kubeadm-certs", "namespace": "kube-system"], "data": data,
            ])
    }

    /// `kubeadm init phase upload-certs --upload-certs [--certificate-key K]`: re-uploads the certificates
    /// with a new key (the Secret expires after two hours in real clusters), printing the key as kubeadm does.
    func uploadCertsPhase(_ f: Flags) -> ToolOutput {
        guard f.has("upload-certs") else {
            return .ok("[upload-certs] Skipping phase. Please see --upload-certs\n")
        }
        guard let client = kubeadm.adminClient() else {
            return kubeadm.fail(
                "failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory")
        }
        let key =
            f.value("certificate-key")
            ?? (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        do {
            try Self.uploadCerts(client, context: context, certificatesDir: "/etc/kubernetes/pki", key: key)
        } catch {
            return kubeadm.fail("error execution phase upload-certs: error uploading certs: \(error)")
        }
        return .ok(
            "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n\(key)\n"
        )
    }

    func run(_ args: [String]) -> ToolOutput {
        if args.first == "phase" {
            guard args.dropFirst().first == "upload-certs" else {
                return kubeadm.fail(
                    "unknown phase \"\(args.dropFirst().first ?? "")\": the lab's kubeadm runs only the upload-certs phase"
                )
            }
            return uploadCertsPhase(Flags(Array(args.dropFirst(2))))
        }
        let f = Flags(args)
        var cfg: KubeadmConfig
        var stderr = ""
        if let path = f.value("config") {
            switch kubeadm.loadConfig(
                path: path, flags: f, incompatible: Self.flagsIncompatibleWithConfig, mode: .initialize)
            {
            case .success(let loaded): cfg = loaded
            case .failure(let failure): return failure.output
            }
            stderr += cfg.warnings.map { $0 + "\n" }.joined()
        } else {
            cfg = KubeadmConfig()
            cfg.hasInit = true
            cfg.hasCluster = true
            cfg.podSubnet = f.value("pod-network-cidr")
            if let s = f.value("service-cidr") { cfg.serviceSubnet = s }
            cfg.advertiseAddress = f.value("apiserver-advertise-address")
            if let p = f.value("apiserver-bind-port") { cfg.bindPort = Int(p) ?? -1 }
            cfg.kubernetesVersion = f.value("kubernetes-version")
            cfg.controlPlaneEndpoint = f.value("control-plane-endpoint")
            cfg.nodeName = f.value("node-name")
            cfg.certificateKey = f.value("certificate-key")
            if let t = f.value("token") {
                cfg.bootstrapTokens = [
                    .init(
                        token: t,
                        ttlSeconds: Int(f.value("token-ttl").flatMap(KubeadmConfigParser.parseDuration) ?? 86400))
                ]
            }
            do { try KubeadmConfigParser.validateInit(cfg, kubeadmVersion: kubeadm.version) } catch {
                return kubeadm.fail("\(error)")
            }
        }
        return initialize(cfg, flags: f, stderr: stderr)
    }

    func initialize(_ cfg: KubeadmConfig, flags f: Flags, stderr: String) -> ToolOutput {
        var out = ""
        var err = stderr
        let steps = ControlPlaneSteps(context: context)
        let kubeadmV = kubeadm.version
        var target = kubeadmV
        if let v = cfg.kubernetesVersion, let kv = KubeVersion(v) { target = kv }
        let address = NodeNetwork.detect(context: context, explicit: cfg.advertiseAddress)
        let net = NodeNetwork(context: context, address: address, apiPort: cfg.bindPort)
        let nodeName = cfg.nodeName ?? context.hostname
        out += "[init] Using Kubernetes version: \(target)\n[preflight] Running pre-flight checks\n"

        // Preflight.
        let ignore = Set(f.all("ignore-preflight-errors").flatMap { $0.split(separator: ",").map { String($0) } })
        var errors: [(String, String)] = []
        var warnings: [(String, String)] = []
        if context.exists("/etc/kubernetes/manifests/kube-apiserver.yaml") {
            errors.append(
                (
                    "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
                    "/etc/kubernetes/manifests/kube-apiserver.yaml already exists"
                ))
        }
        if HTTPClient.listening(host: address, port: net.apiPort) {
            errors.append(("Port-\(net.apiPort)", "Port \(net.apiPort) is in use"))
        }
        let kubeletV = InstalledVersions.of("kubelet", context: context)
        if kubeletV.minor > target.minor || (kubeletV.minor == target.minor && kubeletV > target) {
            errors.append(
                (
                    "KubeletVersion",
                    "the kubelet version is higher than the control plane version. This is not a supported version skew and may lead to a malfunctional cluster. Kubelet version: \"\(kubeletV.bare)\" Control plane version: \"\(target.bare)\""
                ))
        } else if kubeletV.minor < target.minor - 3 {
            errors.append(
                (
                    "KubeletVersion",
                    "Kubelet version \"\(kubeletV.bare)\" is lower than kubeadm can support. Please upgrade kubelet"
                ))
        }
        if target.minor > kubeadmV.minor {
            warnings.append(
                (
                    "KubernetesVersion",
                    "Kubernetes version is greater than kubeadm version. Please consider to upgrade kubeadm. Kubernetes version: \(target.bare). Kubeadm version: \(kubeadmV.major).\(kubeadmV.minor).x"
                ))
        }
        for w in warnings { err += "\t[WARNING \(w.0)]: \(w.1)\n" }
        let fatal = errors.filter { !ignore.contains($0.0) && !ignore.contains("all") }
        for e in errors where !fatal.contains(where: { $0.0 == e.0 }) { err += "\t[WARNING \(e.0)]: \(e.1)\n" }
        if !fatal.isEmpty {
            var msg = "error execution phase preflight: [preflight] Some fatal errors occurred:\n"
            for e in fatal { msg += "\t[ERROR \(e.0)]: \(e.1)\n" }
            msg +=
                "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n"
                + Kubeadm.stackHint + "\n"
            return ToolOutput(stdout: out, stderr: err + msg, exitCode: 1)
        }
        if f.has("dry-run") {
            out +=
                "[dryrun] Would perform action CREATE on the \"kube-system\" namespace (lab stand-in: dry run stops after preflight)\n"
            return ToolOutput(stdout: out, stderr: err)
        }
        out +=
            "[preflight] Pulling images required for setting up a Kubernetes cluster\n[preflight] This might take a minute or two, depending on the speed of your internet connection\n[preflight] You can also perform this action beforehand using 'kubeadm config images pull'\n"

        do {
            let serviceNet = IPNet(cfg.serviceSubnet.split(separator: ",").first.map(String.init) ?? "10.96.0.0/12")
            let serviceIP = serviceNet?.address(1) ?? "10.96.0.1"
            let dnsIP = serviceNet?.address(10) ?? "10.96.0.10"
            let endpoint =
                (cfg.controlPlaneEndpoint.flatMap { $0.isEmpty ? nil : $0 } ?? "\(address):\(net.apiPort)")
            let pki = LabPKI(context: context, dir: cfg.certificatesDir)
            out +=
                try pki.generate(
                    nodeName: nodeName, address: address, serviceIP: serviceIP, dnsDomain: cfg.dnsDomain,
                    extraSANs: [endpoint.split(separator: ":").first.map(String.init) ?? ""] + cfg.apiServerCertSANs
                ).joined(separator: "\n") + "\n"
            let caPEM = context.read(cfg.certificatesDir + "/ca.crt") ?? ""
            out += "[kubeconfig] Using kubeconfig folder \"/etc/kubernetes\"\n"
            let server = "https://\(endpoint)"
            for (file, user, group) in [
                ("admin.conf", "kubernetes-admin", "kubeadm:cluster-admins"),
                ("super-admin.conf", "kubernetes-super-admin", "system:masters"),
                ("kubelet.conf", "system:node:\(nodeName)", "system:nodes"),
                ("controller-manager.conf", "system:kube-controller-manager", ""),
                ("scheduler.conf", "system:kube-scheduler", ""),
            ] {
                let client = try pki.clientCertificate(subject: (group.isEmpty ? "" : "/O=\(group)") + "/CN=\(user)")
                try context.write(
                    "/etc/kubernetes/\(file)",
                    Kubeconfig.render(
                        server: file == "admin.conf" || file == "super-admin.conf" || file == "kubelet.conf"
                            ? server : "https://\(address):\(net.apiPort)", caPEM: caPEM, user: user, client: client))
                out += "[kubeconfig] Writing \"\(file)\" kubeconfig file\n"
            }
            out += "[etcd] Creating static Pod manifest for local etcd in \"/etc/kubernetes/manifests\"\n"
            try context.write(
                "/etc/kubernetes/manifests/etcd.yaml",
                steps.staticPodManifest(
                    "etcd", image: "registry.k8s.io/etcd:3.6.4-0",
                    command: [
                        "etcd", "--advertise-client-urls=\(net.etcdClientURL)", "--data-dir=/var/lib/etcd",
                        "--name=\(nodeName)",
                    ]))
            out += "[control-plane] Using manifest folder \"/etc/kubernetes/manifests\"\n"
            for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
                out += "[control-plane] Creating static Pod manifest for \"\(c)\"\n"
                try context.write(
                    "/etc/kubernetes/manifests/\(c).yaml",
                    steps.staticPodManifest(
                        c, image: "registry.k8s.io/\(c):\(target)", command: [c, "--advertise-address=\(address)"]))
            }
            try steps.startEtcd(
                name: nodeName, net: net, initialCluster: "\(nodeName)=\(net.etcdPeerURL)", state: "new")
            out +=
                "[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"\n"
            out += "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"\n"
            try steps.writeKubeletFiles(address: address, clusterDNS: dnsIP, podCIDR: cfg.podSubnet)
            out += "[kubelet-start] Starting the kubelet\n"
            out +=
                "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static Pods from directory \"/etc/kubernetes/manifests\"\n"
            let t0 = Date()
            guard steps.waitEtcd(net) else {
                return ToolOutput(
                    stdout: out,
                    stderr: err
                        + "error execution phase wait-control-plane: etcd did not become healthy at \(net.etcdClientURL) within 30s (see /var/log/appliance-lab/lab-etcd.log)\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            try steps.startAPIServer(
                net: net, etcd: [net.etcdClientURL], version: target,
                nodeGrace: cfg.controllerManagerArgs["node-monitor-grace-period"].flatMap(
                    KubeadmConfigParser.parseDuration))
            let client = try KubeClient(
                kubeconfig: context.read("/etc/kubernetes/admin.conf") ?? "", server: "\(address):\(net.apiPort)")
            out += "[control-plane-check] Waiting for healthy control plane components. This can take up to 4m0s\n"
            out += "[control-plane-check] Checking kube-apiserver at https://\(address):\(net.apiPort)/livez\n"
            guard steps.waitAPI(client) else {
                return ToolOutput(
                    stdout: out,
                    stderr: err
                        + "error execution phase wait-control-plane: kube-apiserver check failed at https://\(address):\(net.apiPort)/livez: context deadline exceeded\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            out +=
                "[control-plane-check] kube-apiserver is healthy after \(String(format: "%.9f", Date().timeIntervalSince(t0)))s\n"

            // Cluster objects.
            let ns = KResource.namespaces, cms = KResource.configmaps, secrets = KResource.secrets
            for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                _ = try? client.create(ns, nil, ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": n]])
            }
            let controllerManagerYAML =
                cfg.controllerManagerArgs.isEmpty
                ? "{}"
                : "\n  extraArgs:\n"
                    + cfg.controllerManagerArgs.sorted { $0.key < $1.key }.map {
                        "  - name: \($0.key)\n    value: \"\($0.value)\"\n"
                    }.joined().dropLast()
            let apiServerYAML =
                cfg.apiServerCertSANs.isEmpty
                ? "{}" : "\n  certSANs:\n" + cfg.apiServerCertSANs.map { "  - \"\($0)\"" }.joined(separator: "\n")
            let clusterYAML = """
                apiServer: \(apiServerYAML)
                apiVersion: kubeadm.k8s.io/v1beta4
                caCertificateValidityPeriod: 87600h0m0s
                certificateValidityPeriod: 8760h0m0s
                certificatesDir: \(cfg.certificatesDir)
                clusterName: \(cfg.clusterName)
                controlPlaneEndpoint: \(endpoint)
                controllerManager: \(controllerManagerYAML)
                dns: {}
                encryptionAlgorithm: RSA-2048
                etcd:
                  local:
                    dataDir: /var/lib/etcd
                imageRepository: registry.k8s.io
                kind: ClusterConfiguration
                kubernetesVersion: \(target)
                networking:
                  dnsDomain: \(cfg.dnsDomain)
                  podSubnet: \(cfg.podSubnet ?? "")
                  serviceSubnet: \(cfg.serviceSubnet)
                proxy: {}
                scheduler: {}

                """
            out +=
                "[upload-config] Storing the configuration used in ConfigMap \"kubeadm-config\" in the \"kube-system\" Namespace\n"
            _ = try client.apply(
                cms, "kube-system",
                [
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": ["name": "kubeadm-config", "namespace": "kube-system"],
                    "data": ["ClusterConfiguration": clusterYAML, "etcdEndpoints": net.etcdClientURL],
                ])
            out +=
                "[kubelet] Creating a ConfigMap \"kubelet-config\" in namespace kube-system with the configuration for the kubelets in the cluster\n"
            _ = try client.apply(
                cms, "kube-system",
                [
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": ["name": "kubelet-config", "namespace": "kube-system"],
                    "data": ["kubelet": context.read("/var/lib/kubelet/config.yaml") ?? ""],
                ])
            var certificateKey: String?
            if f.has("upload-certs") {
                let key =
                    cfg.certificateKey
                    ?? (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
                certificateKey = key
                try Self.uploadCerts(client, context: context, certificatesDir: cfg.certificatesDir, key: key)
                out +=
                    "[upload-certs] Storing the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n[upload-certs] Using certificate key:\n\(key)\n"
            } else {
                out += "[upload-certs] Skipping phase. Please see --upload-certs\n"
            }
            try steps.startKubelet(nodeName: nodeName, address: address)
            guard steps.waitNode(client, nodeName) else {
                return ToolOutput(
                    stdout: out,
                    stderr: err
                        + "error execution phase mark-control-plane: timed out waiting for the condition: node \"\(nodeName)\" not found\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            out +=
                "[mark-control-plane] Marking the node \(nodeName) as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]\n"
            let taints = cfg.taints
            try steps.markControlPlane(client, nodeName, taints: taints)
            out +=
                "[mark-control-plane] Marking the node \(nodeName) as control-plane by adding the taints [\((taints ?? [["key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"]]).map { "\($0["key"] ?? ""):\($0["effect"] ?? "")" }.joined(separator: " "))]\n"
            let token =
                cfg.bootstrapTokens.first?.token.isEmpty == false ? cfg.bootstrapTokens[0].token : Kubeadm.newToken()
            let ttl = cfg.bootstrapTokens.first?.ttlSeconds ?? 86400
            out += "[bootstrap-token] Using token: \(token)\n"
            out += """
                [bootstrap-token] Configuring bootstrap tokens, cluster-info ConfigMap, RBAC Roles
                [bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes
                [bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to post CSRs in order for nodes to get long term certificate credentials
                [bootstrap-token] Configured RBAC rules to allow the csrapprover controller automatically approve CSRs from a Node Bootstrap Token
                [bootstrap-token] Configured RBAC rules to allow certificate rotation for all node client certificates in the cluster
                [bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace

                """
            let infoKubeconfig =
                Kubeconfig.render(server: server, caPEM: caPEM, user: "").components(separatedBy: "contexts:")[0]
                + "contexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n"
            _ = try client.apply(
                cms, "kube-public",
                [
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": ["name": "cluster-info", "namespace": "kube-public"],
                    "data": ["kubeconfig": infoKubeconfig],
                ])
            try kubeadm.createToken(client, token: token, ttl: ttl)
            out +=
                "[kubelet-finalize] Updating \"/etc/kubernetes/kubelet.conf\" to point to a rotatable kubelet client certificate and key\n"
            try Addons.install(client, dnsIP: dnsIP, version: target)
            out += "[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy\n"
            let hash = try LabPKI(context: context, dir: cfg.certificatesDir).caCertHash()
            out += """

                Your Kubernetes control-plane has initialized successfully!

                To start using your cluster, you need to run the following as a regular user:

                  mkdir -p $HOME/.kube
                  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
                  sudo chown $(id -u):$(id -g) $HOME/.kube/config

                Alternatively, if you are the root user, you can run:

                  export KUBECONFIG=/etc/kubernetes/admin.conf

                You should now deploy a pod network to the cluster.
                Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:
                  https://kubernetes.io/docs/concepts/cluster-administration/addons/


                """
            if let key = certificateKey {
                out += """
                    You can now join any number of control-plane nodes running the following command on each as root:

                      kubeadm join \(endpoint) --token \(token) \\
                    \t--discovery-token-ca-cert-hash \(hash) \\
                    \t--control-plane --certificate-key \(key)

                    Please note that the certificate-key gives access to cluster sensitive data, keep it secret!
                    As a safeguard, uploaded-certs will be deleted in two hours; If necessary, you can use
                    "kubeadm init phase upload-certs --upload-certs" to reload certs afterward.


                    """
            }
            out += "Then you can join any number of worker nodes by running the following on each as root:\n\n"
            out += "kubeadm join \(endpoint) --token \(token) \\\n\t--discovery-token-ca-cert-hash \(hash) \n"
            return ToolOutput(stdout: out, stderr: err)
        } catch {
            return ToolOutput(
                stdout: out, stderr: err + "error execution phase init: \(error)\n" + Kubeadm.stackHint + "\n",
                exitCode: 1)
        }
    }

    static func sha(_ s: String) -> String {
        let r = Supervisor.run("/usr/bin/sha256sum", [], input: s)
        return String(r.output.prefix(64))
    }
}

/// CoreDNS and kube-proxy, as kubeadm installs them (the workload objects; nothing runs in them).
enum Addons {
    static func install(_ client: KubeClient, dnsIP: String, version: KubeVersion) throws {
        let cp: [KObject] = [
            ["key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"],
            ["key": "CriticalAddonsOnly", "operator": "Exists"],
        ]
        let coredns: KObject = [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": ["name": "coredns", "namespace": "kube-system", "labels": ["k8s-app": "kube-dns"]],
            "spec": [
                "replicas": 2, "selector": ["matchLabels": ["k8s-app": "kube-dns"]],
                "template": [
                    "metadata": ["labels": ["k8s-app": "kube-dns"]],
                    "spec": [
                        "priorityClassName": "system-cluster-critical", "tolerations": cp,
                        "nodeSelector": ["kubernetes.io/os": "linux"],
                        "containers": [
                            [
                                "name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.1",
                                "resources": [
                                    "requests": ["cpu": "100m", "memory": "70Mi"], "limits": ["memory": "170Mi"],
                                ],
                            ]
                        ],
                    ] as KObject,
                ] as KObject,
            ] as KObject,
        ]
        _ = try client.apply(KResource.deployments, "kube-system", coredns)
        let proxy: KObject = [
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": ["name": "kube-proxy", "namespace": "kube-system", "labels": ["k8s-app": "kube-proxy"]],
            "spec": [
                "selector": ["matchLabels": ["k8s-app": "kube-proxy"]],
                "template": [
                    "metadata": ["labels": ["k8s-app": "kube-proxy"]],
                    "spec": [
                        "priorityClassName": "system-node-critical", "tolerations": [["operator": "Exists"]],
                        "nodeSelector": ["kubernetes.io/os": "linux"], "hostNetwork": true,
                        "containers": [["name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:\(version)"]],
                    ] as KObject,
                ] as KObject,
            ] as KObject,
        ]
        _ = try client.apply(KResource.daemonsets, "kube-system", proxy)
    }
}
