import ApplianceLabNode
import Testing

@Suite("kubeadm configuration API")
struct KubeadmConfigTests {
    let v134 = KubeVersion(1, 34, 3)

    func parse(_ y: String, _ mode: KubeadmConfigParser.Mode = .initialize) throws -> KubeadmConfig {
        try KubeadmConfigParser.parse(y, mode: mode, kubeadmVersion: v134)
    }

    func rejection(_ y: String, _ mode: KubeadmConfigParser.Mode = .initialize) -> String? {
        do {
            _ = try parse(y, mode)
            return nil
        } catch let e as KubeadmConfigError {
            return e.message
        } catch {
            return "\(error)"
        }
    }

    static let goodV1beta4 = """
        apiVersion: kubeadm.k8s.io/v1beta4
        kind: InitConfiguration
        bootstrapTokens:
        - token: abcdef.0123456789abcdef
          ttl: 24h0m0s
          usages: [signing, authentication]
          groups: ["system:bootstrappers:kubeadm:default-node-token"]
        localAPIEndpoint:
          advertiseAddress: 10.10.0.11
          bindPort: 6443
        nodeRegistration:
          name: cp-1
          criSocket: unix:///var/run/containerd/containerd.sock
          kubeletExtraArgs:
          - name: node-ip
            value: 10.10.0.11
          taints:
          - key: node-role.kubernetes.io/control-plane
            effect: NoSchedule
        timeouts:
          controlPlaneComponentHealthCheck: 4m0s
        ---
        apiVersion: kubeadm.k8s.io/v1beta4
        kind: ClusterConfiguration
        kubernetesVersion: v1.34.3
        controlPlaneEndpoint: 10.10.0.10:6443
        encryptionAlgorithm: ECDSA-P256
        networking:
          podSubnet: 192.168.0.0/16
          serviceSubnet: 10.96.0.0/12
          dnsDomain: cluster.local
        apiServer:
          certSANs: [10.10.0.10]
          extraArgs:
          - name: audit-log-maxage
            value: "30"
        etcd:
          local:
            dataDir: /var/lib/etcd
        proxy:
          disabled: false
        ---
        apiVersion: kubelet.config.k8s.io/v1beta1
        kind: KubeletConfiguration
        cgroupDriver: systemd
        maxPods: 110
        serverTLSBootstrap: true
        authentication:
          webhook:
            enabled: true
        """

    @Test func acceptsARealV1beta4Document() throws {
        let c = try parse(Self.goodV1beta4)
        #expect(c.hasInit && c.hasCluster)
        #expect(c.advertiseAddress == "10.10.0.11")
        #expect(c.podSubnet == "192.168.0.0/16")
        #expect(c.bootstrapTokens == [.init(token: "abcdef.0123456789abcdef", ttlSeconds: 86400)])
        #expect(c.kubeletCgroupDriver == "systemd")
        #expect(c.warnings.isEmpty)
        #expect(try parse(Self.goodV1beta4, .validate).warnings.isEmpty)
    }

    @Test func v1beta3IsAcceptedWithDeprecationWarningAndMapExtraArgs() throws {
        let y = """
            apiVersion: kubeadm.k8s.io/v1beta3
            kind: ClusterConfiguration
            kubernetesVersion: v1.34.0
            apiServer:
              timeoutForControlPlane: 4m0s
              extraArgs:
                audit-log-maxage: "30"
            networking:
              podSubnet: 10.244.0.0/16
            """
        let c = try parse(y)
        #expect(c.warnings.count == 1)
        #expect(c.warnings[0].contains("uses a deprecated API spec: \"kubeadm.k8s.io/v1beta3\""))
        // v1beta4-only fields are unknown in v1beta3.
        let w = try parse(y + "\nencryptionAlgorithm: RSA-2048\n").warnings
        #expect(w.contains { $0.contains("strict decoding error: unknown field \"encryptionAlgorithm\"") })
        // and v1beta3-only fields are unknown in v1beta4
        let v4 =
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\napiServer:\n  timeoutForControlPlane: 4m0s\n"
        #expect(rejection(v4, .validate)?.contains("unknown field \"apiServer.timeoutForControlPlane\"") == true)
    }

    @Test func unknownFieldsWarnOnInitAndFailValidate() throws {
        let y = """
            apiVersion: kubeadm.k8s.io/v1beta4
            kind: ClusterConfiguration
            networking:
              podSubnett: 10.244.0.0/16
            kubernetesVersion: v1.34.3
            bogus: 1
            """
        let c = try parse(y)
        let msg =
            "error unmarshaling configuration schema.GroupVersionKind{Group:\"kubeadm.k8s.io\", Version:\"v1beta4\", Kind:\"ClusterConfiguration\"}: strict decoding error: unknown field \"networking.podSubnett\", unknown field \"bogus\""
        #expect(c.warnings.count == 1)
        #expect(c.warnings[0].hasSuffix(msg))
        #expect(rejection(y, .validate) == msg)
    }

    @Test(arguments: [
        ("10.244.0.0/33", "networking.podSubnet: Invalid value: \"10.244.0.0/33\": couldn't parse subnet"),
        ("10.244.0.0", "networking.podSubnet: Invalid value: \"10.244.0.0\": couldn't parse subnet"),
        ("300.1.0.0/16", "networking.podSubnet: Invalid value: \"300.1.0.0/16\": couldn't parse subnet"),
    ])
    func badPodCIDRs(cidr: String, message: String) {
        let y =
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: \"\(cidr)\"\n"
        #expect(rejection(y) == message)
    }

    @Test func serviceSubnetTooLarge() {
        let y =
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  serviceSubnet: 10.0.0.0/8\n"
        #expect(
            rejection(y)
                == "networking.serviceSubnet: Invalid value: \"10.0.0.0/8\": specified service subnet is too large; for 32-bit addresses, the mask must be >= 12"
        )
    }

    @Test func unsupportedAndMissingAPIVersions() {
        #expect(
            rejection("apiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\n")?.hasPrefix(
                "your configuration file uses an old API spec: \"kubeadm.k8s.io/v1beta2\". Please use kubeadm v1.22 instead"
            ) == true)
        #expect(
            rejection("apiVersion: kubeadm.k8s.io/v1beta9\nkind: InitConfiguration\n")?.hasPrefix(
                "no kind \"InitConfiguration\" is registered for version \"kubeadm.k8s.io/v1beta9\"") == true)
        #expect(
            rejection("kind: InitConfiguration\n")
                == "invalid configuration for GroupVersionKind /, Kind=InitConfiguration: kind and apiVersion is mandatory information that must be specified"
        )
        #expect(
            rejection(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"
            ) == "invalid configuration: kind \"InitConfiguration\" is specified twice in YAML file")
    }

    @Test func typeMismatchesAreDecodeErrors() {
        let y = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  bindPort: \"6443\"\n"
        #expect(
            rejection(y)
                == "json: cannot unmarshal string into Go struct field InitConfiguration.localAPIEndpoint.bindPort of type int32"
        )
        let d =
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nbootstrapTokens:\n- token: abcdef.0123456789abcdef\n  ttl: 24hours\n"
        #expect(rejection(d) == "time: invalid duration \"24hours\"")
    }

    @Test func badTokensAndAddresses() {
        let y = """
            apiVersion: kubeadm.k8s.io/v1beta4
            kind: InitConfiguration
            bootstrapTokens:
            - token: ABC.def
            localAPIEndpoint:
              advertiseAddress: 10.0.0.300
            """
        #expect(
            rejection(y)
                == "[bootstrapTokens[0].token: Invalid value: \"ABC.def\": the bootstrap token is invalid, localAPIEndpoint.advertiseAddress: Invalid value: \"10.0.0.300\": cannot parse IP address]"
        )
    }

    @Test func versionSkew() {
        let old = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.32.0\n"
        #expect(
            rejection(old)
                == "this version of kubeadm only supports deploying clusters with the control plane version >= 1.33.0. Current version: v1.32.0"
        )
        let ok = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.5\n"
        #expect(rejection(ok) == nil)
    }

    @Test func joinConfigurationRequiredFields() {
        let none = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  name: w1\n"
        #expect(rejection(none, .join) == "discovery: Invalid value: \"\": bootstrapToken or file must be set")
        let noHash = """
            apiVersion: kubeadm.k8s.io/v1beta4
            kind: JoinConfiguration
            discovery:
              bootstrapToken:
                token: abcdef.0123456789abcdef
            """
        #expect(
            rejection(noHash, .join)
                == "[discovery.bootstrapToken.apiServerEndpoint: Required value: APIServerEndpoint is not set, discovery.bootstrapToken: Invalid value: \"\": using token-based discovery without caCertHashes can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass --discovery-token-unsafe-skip-ca-verification flag to continue]"
        )
        let good = """
            apiVersion: kubeadm.k8s.io/v1beta4
            kind: JoinConfiguration
            discovery:
              bootstrapToken:
                token: abcdef.0123456789abcdef
                apiServerEndpoint: 10.10.0.11:6443
                caCertHashes: ["sha256:0ac795cf97cf7dd60048b9a3affae0a3446549192441db61be49dae90120b75d"]
            controlPlane:
              localAPIEndpoint:
                advertiseAddress: 10.10.0.12
              certificateKey: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
            """
        #expect(rejection(good, .join) == nil)
        #expect(rejection(none, .initialize) == nil || rejection(none, .join) != nil)
    }

    @Test func unknownKindsAreIgnoredWithWarning() throws {
        let c = try parse("apiVersion: example.com/v1\nkind: Widget\nspec: {}\n")
        #expect(
            c.warnings.first?.contains(
                "Ignored configuration document with GroupVersionKind example.com/v1, Kind=Widget") == true)
    }

    @Test func kubeletConfigurationStrictFields() {
        let y = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriverr: systemd\n"
        #expect(
            rejection(y, .validate)
                == "error unmarshaling configuration schema.GroupVersionKind{Group:\"kubelet.config.k8s.io\", Version:\"v1beta1\", Kind:\"KubeletConfiguration\"}: strict decoding error: unknown field \"cgroupDriverr\""
        )
    }
}
