import Foundation
import Yams

struct KubeadmJoin {
    let context: LabNodeContext
    let kubeadm: Kubeadm

    func run(_ args: [String]) -> ToolOutput {
        let f = Flags(args)
        var cfg = KubeadmConfig()
        var err = ""
        if let path = f.value("config") {
            let incompatible = [
                "token", "discovery-token", "discovery-token-ca-cert-hash", "node-name", "control-plane",
                "certificate-key", "apiserver-advertise-address",
            ]
            switch kubeadm.loadConfig(path: path, flags: f, incompatible: incompatible, mode: .join) {
            case .success(let loaded): cfg = loaded
            case .failure(let failure): return failure.output
            }
            err += cfg.warnings.map { $0 + "\n" }.joined()
        } else {
            cfg.hasJoin = true
            cfg.discoveryAPIServerEndpoint = f.positional.first
            cfg.discoveryToken = f.value("discovery-token") ?? f.value("token")
            cfg.discoveryCACertHashes = f.all("discovery-token-ca-cert-hash")
            cfg.unsafeSkipCAVerification = f.has("discovery-token-unsafe-skip-ca-verification")
            cfg.nodeName = f.value("node-name")
            cfg.joinControlPlane = f.has("control-plane")
            cfg.joinCertificateKey = f.value("certificate-key")
            cfg.advertiseAddress = f.value("apiserver-advertise-address")
            do { try KubeadmConfigParser.validateJoin(cfg) } catch { return kubeadm.fail("\(error)") }
        }
        var out = "[preflight] Running pre-flight checks\n"
        if context.exists("/etc/kubernetes/kubelet.conf") {
            return ToolOutput(
                stdout: out,
                stderr: err
                    + "error execution phase preflight: [preflight] Some fatal errors occurred:\n\t[ERROR FileAvailable--etc-kubernetes-kubelet.conf]: /etc/kubernetes/kubelet.conf already exists\n[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n"
                    + Kubeadm.stackHint + "\n", exitCode: 1)
        }
        let endpoint = cfg.discoveryAPIServerEndpoint ?? ""
        let token = cfg.discoveryToken ?? ""
        // Token discovery: cluster-info is read anonymously, and the CA is not known yet, so the server is not
        // verified until the pin is checked; the token authenticates what follows (an expired one: 401).
        let anonymous = KubeClient(server: endpoint, tls: .insecure)
        var client = KubeClient(server: endpoint, tls: .insecure, token: token)
        let cms = KResource.configmaps, secrets = KResource.secrets
        func preflight(_ m: String) -> ToolOutput {
            ToolOutput(
                stdout: out,
                stderr: err
                    + "error execution phase preflight: couldn't validate the identity of the API Server: \(m)\n"
                    + Kubeadm.stackHint + "\n", exitCode: 1)
        }
        // Discovery: the cluster-info ConfigMap, its per-token signature and the pinned CA.
        let info: KObject?
        do {
            info = try anonymous.get(cms, "kube-public", "cluster-info")
        } catch {
            return preflight(
                "failed to request the cluster-info ConfigMap: Get \"https://\(endpoint)/api/v1/namespaces/kube-public/configmaps/cluster-info?timeout=10s\": \(error)"
            )
        }
        guard let info else {
            return preflight("failed to request the cluster-info ConfigMap: configmaps \"cluster-info\" not found")
        }
        let data = info["data"] as? [String: String] ?? [:]
        let kc = data["kubeconfig"] ?? ""
        let id = String(token.prefix(6))
        let secret = (try? client.get(secrets, "kube-system", "bootstrap-token-\(id)")) ?? nil
        let expiry = K.date(
            (secret?["data"] as? [String: String])?["expiration"].flatMap { Data(base64Encoded: $0) }.map {
                String(decoding: $0, as: UTF8.self)
            })
        let expired = expiry.map { $0 < context.now() } ?? false
        guard let sig = data["jws-kubeconfig-\(id)"], secret != nil, !expired else {
            return preflight("could not find a JWS signature in the cluster-info ConfigMap for token ID \"\(id)\"")
        }
        guard sig == Kubeadm.jws(token: token, kubeconfig: kc) else {
            return preflight(
                "failed to verify JWS signature of received cluster info object, can't trust this API Server")
        }
        let caB64 =
            kc.split(separator: "\n").first { $0.contains("certificate-authority-data:") }?.split(separator: ":").last?
            .trimmingCharacters(in: .whitespaces) ?? ""
        let caPEM = String(decoding: Data(base64Encoded: caB64) ?? Data(), as: UTF8.self)
        if !cfg.unsafeSkipCAVerification {
            let actual = LabPKI.caHash(ofPEM: caPEM) ?? "sha256:unknown"
            if !cfg.discoveryCACertHashes.contains(actual) {
                return preflight(
                    "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \"\(actual)\" are pinned"
                )
            }
        }
        // From here on the API server must prove it holds the pinned CA's certificate.
        client = KubeClient(server: endpoint, tls: TLSClientIdentity(caPEM: caPEM), token: token)
        let nodeName = cfg.nodeName ?? context.hostname
        let address = NodeNetwork.detect(context: context, explicit: cfg.advertiseAddress)
        let steps = ControlPlaneSteps(context: context)
        out +=
            "[preflight] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n"
        out += "[preflight] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n"
        do {
            let cluster = try kubeadm.clusterConfig(client)
            // Version skew: a kubelet newer than the control plane is refused.
            let kubeletV = InstalledVersions.of("kubelet", context: context)
            if kubeletV.minor > cluster.version.minor {
                return ToolOutput(
                    stdout: out,
                    stderr: err
                        + "error execution phase kubelet-start: cannot get Node \"\(nodeName)\": the kubelet version \"\(kubeletV)\" is newer than the control plane version \"\(cluster.version)\"\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            try context.write("/etc/kubernetes/pki/ca.crt", caPEM)
            if cfg.joinControlPlane {
                out += "[preflight] Running pre-flight checks before initializing the new control plane instance\n"
                guard let certs = try client.get(secrets, "kube-system", "kubeadm-certs") else {
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error execution phase control-plane-prepare/download-certs: error downloading certs: error downloading the secret: secrets \"kubeadm-certs\" is forbidden: User \"system:bootstrap:\(id)\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\"\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                let cd = certs["data"] as? [String: String] ?? [:]
                let want = String(
                    decoding: Data(base64Encoded: cd["lab-certificate-key-sha"] ?? "") ?? Data(), as: UTF8.self)
                guard let key = cfg.joinCertificateKey, KubeadmInit.sha(key) == want else {
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error execution phase control-plane-prepare/download-certs: error downloading certs: error decoding secret data with provided key: cipher: message authentication failed\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                out +=
                    "[download-certs] Downloading the certificates in Secret \"kubeadm-certs\" in the \"kube-system\" Namespace\n"
                for (k, v) in cd where k != "lab-certificate-key-sha" {
                    let file = k.hasPrefix("etcd-") ? "etcd/" + k.dropFirst(5) : k
                    try context.write(
                        "/etc/kubernetes/pki/\(file)", String(decoding: Data(base64Encoded: v) ?? Data(), as: UTF8.self)
                    )
                }
                out += "[certs] Using certificateDir folder \"/etc/kubernetes/pki\"\n"
                // This node's own serving certificate (the same SANs as the first one's, with this address) and
                // the admin kubeconfig's client certificate, from the downloaded CA.
                let joinedCluster = (try? Yams.load(yaml: cluster.clusterConfigYAML)) as? [String: Any] ?? [:]
                let networking = joinedCluster["networking"] as? [String: Any] ?? [:]
                let serviceNet = IPNet(
                    (networking["serviceSubnet"] as? String ?? "10.96.0.0/12").split(separator: ",").first.map(
                        String.init) ?? "")
                let pki = LabPKI(context: context)
                out += "[certs] Generating \"apiserver\" certificate and key\n"
                out +=
                    try pki.apiserverCertificate(
                        nodeName: nodeName, address: address, serviceIP: serviceNet?.address(1) ?? "10.96.0.1",
                        dnsDomain: networking["dnsDomain"] as? String ?? "cluster.local",
                        extraSANs: [cluster.endpoint.split(separator: ":").first.map(String.init) ?? ""]
                            + ((joinedCluster["apiServer"] as? [String: Any])?["certSANs"] as? [String] ?? [])) + "\n"
                try context.write(
                    "/etc/kubernetes/admin.conf",
                    Kubeconfig.render(
                        server: "https://\(cluster.endpoint)", caPEM: caPEM, user: "kubernetes-admin",
                        client: try pki.clientCertificate(subject: "/O=kubeadm:cluster-admins/CN=kubernetes-admin")))
                let net = NodeNetwork(context: context, address: address, apiPort: 6443)
                // A real etcd member joins the existing cluster. etcd refuses a new member while a recent one is
                // not yet fully connected ("unhealthy cluster"); kubeadm retries the add with a backoff, as here.
                var r: (status: Int32, output: String)
                let addDeadline = Date().addingTimeInterval(40)
                repeat {
                    r = Supervisor.run(
                        "/usr/bin/etcdctl",
                        [
                            "--endpoints=" + cluster.etcdEndpoints.joined(separator: ","), "member", "add", nodeName,
                            "--peer-urls=\(net.etcdPeerURL)",
                        ], env: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
                    if r.status == 0 || !r.output.contains("unhealthy cluster") { break }
                    Thread.sleep(forTimeInterval: 1)
                } while Date() < addDeadline
                guard r.status == 0,
                    let line = r.output.split(separator: "\n").first(where: { $0.hasPrefix("ETCD_INITIAL_CLUSTER=") })
                else {
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: etcdserver: \(r.output.trimmingCharacters(in: .whitespacesAndNewlines))\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                let initial = line.dropFirst("ETCD_INITIAL_CLUSTER=".count).trimmingCharacters(
                    in: CharacterSet(charactersIn: "\""))
                out += "[etcd] Announced new etcd member joining to the existing etcd cluster\n"
                try context.write(
                    "/etc/kubernetes/manifests/etcd.yaml",
                    steps.staticPodManifest(
                        "etcd", image: "registry.k8s.io/etcd:3.6.4-0",
                        command: [
                            "etcd", "--name=\(nodeName)", "--initial-cluster=\(initial)",
                            "--initial-cluster-state=existing",
                        ]))
                out += "[etcd] Creating static Pod manifest for \"etcd\"\n"
                try steps.startEtcd(name: nodeName, net: net, initialCluster: initial, state: "existing")
                let t0 = Date()
                guard steps.waitEtcd(net, seconds: 40) else {
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error execution phase control-plane-join/etcd: error creating local etcd static pod manifest file: timeout waiting for etcd cluster to be available\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                out += "[etcd] Waiting for the new etcd member to join the cluster. This can take up to 40s\n"
                out +=
                    "[etcd] The new etcd member joined the cluster and is healthy after \(String(format: "%.9f", Date().timeIntervalSince(t0)))s\n"
                for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
                    out += "[control-plane] Creating static Pod manifest for \"\(c)\"\n"
                    try context.write(
                        "/etc/kubernetes/manifests/\(c).yaml",
                        steps.staticPodManifest(
                            c, image: "registry.k8s.io/\(c):\(cluster.version)",
                            command: [c, "--advertise-address=\(address)"]))
                }
                let clusterAny = (try? Yams.load(yaml: cluster.clusterConfigYAML)) as? [String: Any] ?? [:]
                try steps.startAPIServer(
                    net: net, etcd: [net.etcdClientURL] + cluster.etcdEndpoints, version: cluster.version,
                    nodeGrace: KubeadmConfigParser.nodeMonitorGrace(clusterConfiguration: clusterAny))
                let local = try KubeClient(
                    kubeconfig: context.read("/etc/kubernetes/admin.conf") ?? "", server: "\(address):\(net.apiPort)")
                guard steps.waitAPI(local) else {
                    return ToolOutput(
                        stdout: out,
                        stderr: err
                            + "error execution phase wait-control-plane: kube-apiserver check failed at https://\(address):\(net.apiPort)/livez: context deadline exceeded\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                _ = try client.patch(
                    cms, "kube-system", "kubeadm-config",
                    ["data": ["etcdEndpoints": (cluster.etcdEndpoints + [net.etcdClientURL]).joined(separator: ",")]])
            }
            // kubeadm's kubelet-start phase refuses a name that a Ready Node already has (a node reset or
            // reinstalled while its old Node still looks alive).
            if let existing = try client.get(KResource.nodes, nil, nodeName),
                K.conditionStatus(existing, "Ready") == "True"
            {
                return ToolOutput(
                    stdout: out,
                    stderr: err
                        + "error execution phase kubelet-start: a Node with name \"\(nodeName)\" and status \"Ready\" already exists in the cluster. You must delete the existing Node or change the name of this new joining Node\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            out += "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/instance-config.yaml\"\n"
            out += "[kubelet-start] Writing kubelet configuration to file \"/var/lib/kubelet/config.yaml\"\n"
            out +=
                "[kubelet-start] Writing kubelet environment file with flags to file \"/var/lib/kubelet/kubeadm-flags.env\"\n"
            try steps.writeKubeletFiles(address: address, clusterDNS: "10.96.0.10", podCIDR: nil)
            // TLS bootstrap: a certificate request signed through the API, as the kubelet's bootstrap does.
            let kubeletClient = try bootstrapKubeletCertificate(client, nodeName: nodeName)
            try context.write(
                "/etc/kubernetes/kubelet.conf",
                Kubeconfig.render(
                    server: "https://\(endpoint)", caPEM: caPEM, user: "system:node:\(nodeName)", client: kubeletClient)
            )
            out += "[kubelet-start] Starting the kubelet\n"
            out +=
                "[kubelet-check] Waiting for a healthy kubelet at http://127.0.0.1:10248/healthz. This can take up to 4m0s\n"
            let t0 = Date()
            try steps.startKubelet(nodeName: nodeName, address: address)
            guard steps.waitNode(client, nodeName) else {
                return ToolOutput(
                    stdout: out,
                    stderr: err + "error execution phase kubelet-start: timed out waiting for the condition\n"
                        + Kubeadm.stackHint + "\n", exitCode: 1)
            }
            out +=
                "[kubelet-check] The kubelet is healthy after \(String(format: "%.9f", Date().timeIntervalSince(t0)))s\n"
            out += "[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap\n"
            if cfg.joinControlPlane {
                out +=
                    "[mark-control-plane] Marking the node \(nodeName) as control-plane by adding the labels: [node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]\n"
                out +=
                    "[mark-control-plane] Marking the node \(nodeName) as control-plane by adding the taints [node-role.kubernetes.io/control-plane:NoSchedule]\n"
                try steps.markControlPlane(client, nodeName, taints: nil)
                out += """

                    This node has joined the cluster and a new control plane instance was created:

                    * Certificate signing request was sent to apiserver and approval was received.
                    * The Kubelet was informed of the new secure connection details.
                    * Control plane label and taint were applied to the new node.
                    * The Kubernetes control plane instances scaled up.
                    * A new etcd member was added to the local/stacked etcd cluster.

                    To start administering your cluster from this node, you need to run the following as a regular user:

                    \tmkdir -p $HOME/.kube
                    \tsudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config
                    \tsudo chown $(id -u):$(id -g) $HOME/.kube/config

                    Run 'kubectl get nodes' to see this node join the cluster.


                    """
            } else {
                out += """

                    This node has joined the cluster:
                    * Certificate signing request was sent to apiserver and a response was received.
                    * The Kubelet was informed of the new secure connection details.

                    Run 'kubectl get nodes' on the control-plane to see this node join the cluster.


                    """
            }
            return ToolOutput(stdout: out, stderr: err)
        } catch {
            return ToolOutput(
                stdout: out, stderr: err + "error execution phase kubelet-start: \(error)\n" + Kubeadm.stackHint + "\n",
                exitCode: 1)
        }
    }

    /// The kubelet's client certificate through a CertificateSigningRequest (signer
    /// `kubernetes.io/kube-apiserver-client-kubelet`), created with the bootstrap token; the API approves and
    /// signs it, as kube-controller-manager does.
    func bootstrapKubeletCertificate(_ client: KubeClient, nodeName: String) throws -> (
        certificatePEM: String, keyPEM: String
    ) {
        let pki = LabPKI(context: context, dir: "/var/lib/kubelet/pki")
        let (csr, key) = try pki.clientRequest(subject: "/O=system:nodes/CN=system:node:\(nodeName)")
        let created = try client.create(
            KResource.csrs, nil,
            [
                "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": ["generateName": "csr-"],
                "spec": [
                    "request": Data(csr.utf8).base64EncodedString(),
                    "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                    "usages": ["digital signature", "client auth"],
                ] as KObject,
            ])
        var cert = K.get(created, "status.certificate") as? String
        let deadline = Date().addingTimeInterval(30)
        while cert == nil, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.5)
            cert = try client.get(KResource.csrs, nil, K.name(created)).flatMap {
                K.get($0, "status.certificate") as? String
            }
        }
        guard let cert, let pem = Data(base64Encoded: cert) else {
            throw LabNodeError.usage(
                "timed out waiting for the kubelet client certificate: certificatesigningrequest \"\(K.name(created))\" was not signed"
            )
        }
        try context.write("/var/lib/kubelet/pki/kubelet-client-current.pem", String(decoding: pem, as: UTF8.self) + key)
        return (String(decoding: pem, as: UTF8.self), key)
    }
}

/// `kubeadm upgrade plan|apply VERSION|node` with kubeadm's version policy.
struct KubeadmUpgrade {
    let context: LabNodeContext
    let kubeadm: Kubeadm

    func policyErrors(cluster: KubeVersion, target: KubeVersion, kubelets: [KubeVersion]) -> [String] {
        var e: [String] = []
        let kv = kubeadm.version
        if target > kv && (target.minor > kv.minor || target.major > kv.major || target.patch > kv.patch) {
            e.append(
                "Specified version to upgrade to \"\(target)\" is higher than the kubeadm version \"\(kv)\". Upgrade kubeadm first using the tool you used to install kubeadm"
            )
        }
        if target.minor > cluster.minor + 1 {
            e.append(
                "Specified version to upgrade to \"\(target)\" is too high; kubeadm can upgrade only 1 minor version at a time"
            )
        }
        if target.minor < cluster.minor {
            e.append(
                "Specified version to upgrade to \"\(target)\" is equal to or lower than the minimum supported version \"\(KubeVersion(cluster.major, cluster.minor, 0))\". Please specify a higher version to upgrade to"
            )
        }
        let tooOld = kubelets.filter { target.minor - $0.minor > 3 }
        if !tooOld.isEmpty {
            e.append(
                "There are kubelets in this cluster that are too old that have these versions \(tooOld.map(\.description))"
                    .replacingOccurrences(of: "\"", with: ""))
        }
        return e
    }

    func run(_ args: [String]) -> ToolOutput {
        let f = Flags(Array(args.dropFirst()))
        guard
            let client = kubeadm.adminClient()
                ?? (context.read("/etc/kubernetes/kubelet.conf").flatMap { try? KubeClient(kubeconfig: $0) })
        else {
            return kubeadm.fail(
                "couldn't create a Kubernetes client from file \"/etc/kubernetes/admin.conf\": failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory"
            )
        }
        do {
            let cluster = try kubeadm.clusterConfig(client)
            let nodes = try client.list(KResource.nodes, nil)
            let kubelets = nodes.compactMap {
                KubeVersion(K.get($0, "status.nodeInfo.kubeletVersion") as? String ?? "")
            }
            var out =
                "[preflight] Running pre-flight checks.\n[upgrade/config] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n[upgrade/config] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n"
            switch args.first {
            case "plan":
                let target = kubeadm.version
                out += "[upgrade] Running cluster health checks\n[upgrade] Fetching available versions to upgrade to\n"
                out +=
                    "[upgrade/versions] Cluster version: \(cluster.version)\n[upgrade/versions] kubeadm version: \(kubeadm.version)\n[upgrade/versions] Target version: \(target)\n[upgrade/versions] Latest version in the v\(cluster.version.major).\(cluster.version.minor) series: \(cluster.version)\n\n"
                if target <= cluster.version
                    || !policyErrors(cluster: cluster.version, target: target, kubelets: kubelets).isEmpty
                {
                    out += "Awesome, you're up-to-date! Enjoy!\n"
                    return .ok(out)
                }
                out +=
                    "Components that must be upgraded manually after you have upgraded the control plane with 'kubeadm upgrade apply':\nCOMPONENT   NODE      CURRENT   TARGET\n"
                for n in nodes {
                    out +=
                        "kubelet     \(K.name(n).padding(toLength: 10, withPad: " ", startingAt: 0))\((K.get(n, "status.nodeInfo.kubeletVersion") as? String ?? "").padding(toLength: 10, withPad: " ", startingAt: 0))\(target)\n"
                }
                out +=
                    "\nUpgrade to the latest stable version:\n\nCOMPONENT                 NODE      CURRENT    TARGET\n"
                let cps = nodes.filter { K.labels($0)["node-role.kubernetes.io/control-plane"] != nil }
                for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"] {
                    for n in cps {
                        out +=
                            c.padding(toLength: 26, withPad: " ", startingAt: 0)
                            + K.name(n).padding(toLength: 10, withPad: " ", startingAt: 0)
                            + cluster.version.description.padding(toLength: 11, withPad: " ", startingAt: 0)
                            + target.description + "\n"
                    }
                }
                out +=
                    "\nYou can now apply the upgrade by executing the following command:\n\n\tkubeadm upgrade apply \(target)\n\n_____________________________________________________________________\n"
                return .ok(out)
            case "apply":
                guard let vText = f.positional.first, let target = KubeVersion(vText) else {
                    return kubeadm.fail("missing one or more required arguments. Required arguments: [version]")
                }
                let errs = policyErrors(cluster: cluster.version, target: target, kubelets: kubelets)
                if !errs.isEmpty {
                    let msg =
                        "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n"
                        + errs.map { "\t- \($0)\n" }.joined()
                        + "\nPlease fix the misalignments highlighted above and try upgrading again"
                    return ToolOutput(stdout: out, stderr: msg + "\n" + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                out +=
                    "[upgrade] Running cluster health checks\n[upgrade/version] You have chosen to change the cluster version to \"\(target)\"\n[upgrade/versions] Cluster version: \(cluster.version)\n[upgrade/versions] kubeadm version: \(kubeadm.version)\n"
                let newYAML = cluster.clusterConfigYAML.replacingOccurrences(
                    of: "kubernetesVersion: \(cluster.version)", with: "kubernetesVersion: \(target)")
                let unhealthy = controlPlaneProblems(nodes)
                if !unhealthy.isEmpty {
                    return ToolOutput(
                        stdout: out,
                        stderr:
                            "[upgrade/health] FATAL: [preflight] Some fatal errors occurred:\n"
                            + unhealthy.map { "\t[ERROR ControlPlaneNodesReady]: \($0)\n" }.joined()
                            + "[preflight] If you know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\n"
                            + Kubeadm.stackHint + "\n", exitCode: 1)
                }
                _ = try client.patch(
                    KResource.configmaps, "kube-system", "kubeadm-config", ["data": ["ClusterConfiguration": newYAML]])
                try upgradeStaticPods(to: target)
                try restartLocalAPIServer(version: target)
                out +=
                    "[upgrade/staticpods] Writing new Static Pod manifests to \"/etc/kubernetes/tmp/kubeadm-upgraded-manifests\"\n[upgrade/staticpods] Component \"kube-apiserver\" upgraded successfully!\n[upgrade/staticpods] Component \"kube-controller-manager\" upgraded successfully!\n[upgrade/staticpods] Component \"kube-scheduler\" upgraded successfully!\n[upgrade] The control plane instance for this node was successfully upgraded!\n[addons] Applied essential addon: CoreDNS\n[addons] Applied essential addon: kube-proxy\n\n"
                out +=
                    "[upgrade/successful] SUCCESS! Your cluster was upgraded to \"\(target)\". Enjoy!\n\n[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets if you haven't already done so.\n"
                return .ok(out)
            case "node":
                if context.exists("/etc/kubernetes/manifests/kube-apiserver.yaml") {
                    if kubeadm.version < cluster.version {
                        return kubeadm.fail(
                            "the kubeadm version \(kubeadm.version) is lower than the cluster version \(cluster.version): upgrade kubeadm first"
                        )
                    }
                    try upgradeStaticPods(to: cluster.version)
                    try restartLocalAPIServer(version: cluster.version)
                    out +=
                        "[upgrade] Upgrading your Static Pod-hosted control plane instance to version \"\(cluster.version)\"...\n[upgrade] The control plane instance for this node was successfully upgraded!\n"
                } else {
                    out += "[upgrade] Skipping phase. Not a control plane node.\n"
                }
                out +=
                    "[upgrade/kubeconfig] The kubeconfig files for this node were successfully upgraded!\n[upgrade] The configuration for this node was successfully upgraded!\n[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager.\n"
                return .ok(out)
            default:
                return .fail(1, stderr: "Usage: kubeadm upgrade plan|apply VERSION|node (lab stand-in)")
            }
        } catch {
            return kubeadm.fail("\(error)")
        }
    }

    /// Control-plane nodes that are not Ready (kubeadm's upgrade health check refuses to go on).
    func controlPlaneProblems(_ nodes: [KObject]) -> [String] {
        nodes.filter { K.labels($0)["node-role.kubernetes.io/control-plane"] != nil }.compactMap { n in
            let conds = K.status(n)["conditions"] as? [KObject] ?? []
            let ready = conds.first { $0["type"] as? String == "Ready" }?["status"] as? String == "True"
            return ready ? nil : "there are NotReady control-planes in the cluster: [\(K.name(n))]"
        }
    }

    /// As kubeadm: the control plane's static pod manifests rewritten with the new version's images (the old
    /// ones kept under /etc/kubernetes/tmp/kubeadm-backup-manifests-*).
    func upgradeStaticPods(to version: KubeVersion) throws {
        let backup = "/etc/kubernetes/tmp/kubeadm-backup-manifests-\(Int(context.now().timeIntervalSince1970))"
        for c in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let path = "/etc/kubernetes/manifests/\(c).yaml"
            guard let text = context.read(path) else { continue }
            try context.write("\(backup)/\(c).yaml", text)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
                guard line.trimmingCharacters(in: .whitespaces).hasPrefix("image: "), line.contains("/\(c):")
                else { return String(line) }
                let prefix = line[..<(line.range(of: "/\(c):")?.upperBound ?? line.endIndex)]
                return String(prefix) + version.description
            }
            try context.write(path, lines.joined(separator: "\n"))
        }
    }

    func restartLocalAPIServer(version: KubeVersion) throws {
        let sup = Supervisor(context: context)
        guard let unit = context.read(sup.unitPath("kube-apiserver-standin")),
            let exec = unit.split(separator: "\n").first(where: { $0.hasPrefix("ExecStart=") })
        else { return }
        var argv = exec.dropFirst("ExecStart=".count).split(separator: " ").map(String.init)
        let executable = argv[0].hasPrefix("@") ? String(argv.removeFirst().dropFirst()) : argv[0]
        if let i = argv.firstIndex(of: "--kubernetes-version"), i + 1 < argv.count { argv[i + 1] = version.description }
        try sup.start(
            "kube-apiserver-standin", description: "Kubernetes API server stand-in", executable: executable, argv: argv)
        let addr = argv.firstIndex(of: "--advertise-address").map { argv[$0 + 1] } ?? "127.0.0.1"
        let port = argv.firstIndex(of: "--secure-port").map { argv[$0 + 1] } ?? "6443"
        _ = ControlPlaneSteps(context: context).waitAPI(KubeClient(server: "\(addr):\(port)", tls: .insecure))
    }
}
