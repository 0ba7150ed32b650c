import ApplianceModel
import Foundation
import Testing
import Yams

@testable import ApplianceCluster

@Suite struct RenderTests {
    typealias F = RenderFixtures

    // MARK: kubeadm

    func documents(_ text: String) throws -> [[String: Any]] {
        try Yams.load_all(yaml: text).map { try #require($0 as? [String: Any]) }
    }

    @Test func kubeadmInitForAVirtualIPCluster() throws {
        let site = F.haSite()
        let file = try KubeadmConfig.initFile(
            site: site, profile: try F.profile(), bundle: F.bundle, node: site.hosts[0],
            options: .init(controllerManagerArgs: [KubeadmArg("node-monitor-grace-period", "20s")]),
            certificateKey: F.certificateKey, bootstrapToken: F.token)
        Golden.check(file.content, "kubeadm-init-ha.yaml")
        #expect(file.path == "/etc/kubernetes/appliance/kubeadm-init.yaml" && file.mode == 0o600 && file.containsSecret)
        let docs = try documents(file.content)
        #expect(
            docs.map { $0["kind"] as? String } == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"])
        #expect(
            docs.map { $0["apiVersion"] as? String } == [
                "kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta4", "kubelet.config.k8s.io/v1beta1",
            ])
        let initDoc = docs[0], cluster = docs[1], kubelet = docs[2]
        #expect(initDoc["certificateKey"] as? String == F.certificateKey)
        #expect(F.value(initDoc, ["localAPIEndpoint", "advertiseAddress"]) as? String == "10.0.0.11")
        #expect(F.value(initDoc, ["localAPIEndpoint", "bindPort"]) as? Int == 6443)
        #expect(
            F.value(initDoc, ["nodeRegistration", "criSocket"]) as? String == "unix:///run/containerd/containerd.sock")
        let taints = try #require(F.value(initDoc, ["nodeRegistration", "taints"]) as? [[String: Any]])
        #expect(taints.count == 1 && taints[0]["key"] as? String == "node-role.kubernetes.io/control-plane")
        #expect(taints[0]["effect"] as? String == "NoSchedule")
        let kubeletArgs = try #require(F.value(initDoc, ["nodeRegistration", "kubeletExtraArgs"]) as? [[String: Any]])
        #expect(
            kubeletArgs.first?["name"] as? String == "node-ip" && kubeletArgs.first?["value"] as? String == "10.0.0.11")
        #expect(cluster["kubernetesVersion"] as? String == "v1.34.3")
        #expect(cluster["controlPlaneEndpoint"] as? String == "api.ml.example.internal:8443")
        #expect(cluster["imageRepository"] as? String == "registry.k8s.io")
        #expect(F.value(cluster, ["networking", "podSubnet"]) as? String == "10.244.0.0/16")
        #expect(F.value(cluster, ["networking", "serviceSubnet"]) as? String == "10.96.0.0/12")
        #expect(F.value(cluster, ["networking", "dnsDomain"]) as? String == "cluster.local")
        let sans = try #require(F.value(cluster, ["apiServer", "certSANs"]) as? [String])
        #expect(
            sans == [
                "api.ml.example.internal", "10.0.0.100", "cp-1", "10.0.0.11", "cp-2", "10.0.0.12", "cp-3", "10.0.0.13",
            ])
        let apiArgs = try #require(F.value(cluster, ["apiServer", "extraArgs"]) as? [[String: String]])
        #expect(
            apiArgs.map { "\($0["name"] ?? "")=\($0["value"] ?? "")" } == [
                "oidc-issuer-url=https://id.ml.example.internal/auth/realms/runai", "oidc-client-id=runai",
                "oidc-username-claim=email", "oidc-username-prefix=-", "oidc-groups-claim=groups",
                "oidc-ca-file=/etc/kubernetes/pki/oidc-ca.crt",
            ])
        let cmArgs = try #require(F.value(cluster, ["controllerManager", "extraArgs"]) as? [[String: String]])
        #expect(cmArgs == [["name": "node-monitor-grace-period", "value": "20s"]])
        #expect(kubelet["cgroupDriver"] as? String == "systemd")
        // The bootstrap token is a list of one with the v1beta4 fields.
        let tokens = try #require(initDoc["bootstrapTokens"] as? [[String: Any]])
        #expect(tokens.first?["token"] as? String == F.token)
    }

    @Test func kubeadmInitWithoutSecretsForTheKeptCopy() throws {
        let site = F.singleSite()
        let file = try KubeadmConfig.initFile(
            site: site, profile: try F.profile("lab"), bundle: F.bundle, node: site.hosts[0])
        Golden.check(file.content, "kubeadm-init-single.yaml")
        #expect(!file.containsSecret)
        #expect(!file.content.contains("certificateKey") && !file.content.contains("bootstrapTokens"))
        let cluster = try documents(file.content)[1]
        #expect(cluster["controlPlaneEndpoint"] as? String == "10.0.0.11:6443")
        #expect(F.value(cluster, ["apiServer", "extraArgs"]) == nil)
        #expect(cluster["controllerManager"] == nil)
    }

    @Test func kubeadmJoinsForAControlPlaneAndAWorker() throws {
        let site = F.haSite()
        let profile = try F.profile()
        let cp = try KubeadmConfig.joinFile(
            site: site, profile: profile, node: site.hosts[1], token: F.token, caCertHashes: [F.caHash],
            certificateKey: F.certificateKey)
        Golden.check(cp.content, "kubeadm-join-control-plane.yaml")
        let cpDoc = try #require(try documents(cp.content).first)
        #expect(cpDoc["kind"] as? String == "JoinConfiguration")
        #expect(
            F.value(cpDoc, ["discovery", "bootstrapToken", "apiServerEndpoint"]) as? String
                == "api.ml.example.internal:8443")
        #expect(F.value(cpDoc, ["discovery", "bootstrapToken", "caCertHashes"]) as? [String] == [F.caHash])
        #expect(F.value(cpDoc, ["controlPlane", "certificateKey"]) as? String == F.certificateKey)
        #expect(F.value(cpDoc, ["controlPlane", "localAPIEndpoint", "advertiseAddress"]) as? String == "10.0.0.12")
        #expect(cp.mode == 0o600 && cp.containsSecret)

        let sys = try KubeadmConfig.joinFile(
            site: site, profile: profile, node: site.hosts[3], token: F.token, caCertHashes: [F.caHash])
        Golden.check(sys.content, "kubeadm-join-system.yaml")
        let sysDoc = try #require(try documents(sys.content).first)
        #expect(sysDoc["controlPlane"] == nil)
        let taints = try #require(F.value(sysDoc, ["nodeRegistration", "taints"]) as? [[String: Any]])
        #expect(taints.map { $0["key"] as? String } == ["node-role.kubernetes.io/system"])

        let lab = try KubeadmConfig.joinFile(
            site: site, profile: profile, node: site.hosts[5], token: F.token, caCertHashes: [F.caHash],
            options: .init(ignorePreflightErrors: ["Swap", "SystemVerification"]))
        let labDoc = try #require(try documents(lab.content).first)
        #expect(
            F.value(labDoc, ["nodeRegistration", "ignorePreflightErrors"]) as? [String] == [
                "Swap", "SystemVerification",
            ])

        let worker = try KubeadmConfig.joinFile(
            site: site, profile: profile, node: site.hosts[4], token: F.token, caCertHashes: [F.caHash])
        let wDoc = try #require(try documents(worker.content).first)
        #expect((F.value(wDoc, ["nodeRegistration", "taints"]) as? [Any])?.isEmpty == true)
    }

    @Test func kubeadmRefusesMalformedSecretsWithoutQuotingThem() throws {
        let site = F.haSite()
        let profile = try F.profile()
        #expect(throws: RenderError.self) {
            try KubeadmConfig.joinFile(
                site: site, profile: profile, node: site.hosts[4], token: "NOT-A-TOKEN-xyz", caCertHashes: [F.caHash])
        }
        do {
            _ = try KubeadmConfig.joinFile(
                site: site, profile: profile, node: site.hosts[1], token: F.token, caCertHashes: [F.caHash],
                certificateKey: "secretvalue")
            Issue.record("expected a refusal")
        } catch {
            #expect(!error.message.contains("secretvalue"))
        }
        #expect(throws: RenderError.self) {
            try KubeadmConfig.joinFile(
                site: site, profile: profile, node: site.hosts[4], token: F.token, caCertHashes: [])
        }
        #expect(throws: RenderError.self) {
            try KubeadmConfig.joinFile(
                site: site, profile: profile, node: site.hosts[4], token: F.token, caCertHashes: [F.caHash],
                certificateKey: F.certificateKey)
        }
        #expect(throws: RenderError.self) {
            try KubeadmConfig.initFile(site: site, profile: profile, bundle: F.bundle, node: site.hosts[4])
        }
        var noEndpoint = site
        noEndpoint.network = nil
        #expect(throws: RenderError.self) {
            try KubeadmConfig.initFile(site: noEndpoint, profile: profile, bundle: F.bundle, node: site.hosts[0])
        }
    }

    // MARK: containerd

    @Test func containerdVersion2ForDebiansContainerd() throws {
        let file = try ContainerdConfig.configFile(
            containerdVersion: "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
            pauseImage: F.bundle.pauseImage, nvidia: .init())
        Golden.check(file.content, "containerd-config-v2-nvidia.toml")
        F.checkTOMLStructure(file.content)
        guard let t = try F.parseTOML(file.content) else { return }
        let cri = ["plugins", "io.containerd.grpc.v1.cri"]
        #expect(t["version"] as? Int == 2)
        #expect(F.value(t, cri + ["sandbox_image"]) as? String == "registry.k8s.io/pause:3.10.1")
        #expect(F.value(t, cri + ["containerd", "runtimes", "runc", "options", "SystemdCgroup"]) as? Bool == true)
        #expect(
            F.value(t, cri + ["containerd", "runtimes", "nvidia", "options", "BinaryName"]) as? String
                == "/usr/bin/nvidia-container-runtime")
        #expect(F.value(t, cri + ["containerd", "default_runtime_name"]) as? String == "nvidia")
        #expect(F.value(t, cri + ["registry", "config_path"]) as? String == "/etc/containerd/certs.d")
        #expect(F.value(t, cri + ["registry", "mirrors"]) == nil)
    }

    @Test func containerdVersion3ForContainerd2() throws {
        let v20 = try ContainerdConfig.configFile(
            containerdVersion: "containerd containerd.io v2.0.4 1a43cb6a", pauseImage: F.bundle.pauseImage)
        Golden.check(v20.content, "containerd-config-v3.toml")
        let v21 = try ContainerdConfig.configFile(containerdVersion: "2.1.1", pauseImage: F.bundle.pauseImage)
        #expect(v21.content.contains("bin_dirs = [\"/opt/cni/bin\"]") && !v20.content.contains("bin_dirs"))
        for f in [v20, v21] {
            F.checkTOMLStructure(f.content)
            guard let t = try F.parseTOML(f.content) else { continue }
            #expect(t["version"] as? Int == 3)
            #expect(
                F.value(t, ["plugins", "io.containerd.cri.v1.images", "pinned_images", "sandbox"]) as? String
                    == "registry.k8s.io/pause:3.10.1")
            #expect(
                F.value(t, ["plugins", "io.containerd.cri.v1.images", "registry", "config_path"]) as? String
                    == "/etc/containerd/certs.d")
            #expect(
                F.value(
                    t,
                    [
                        "plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc", "options",
                        "SystemdCgroup",
                    ]) as? Bool == true)
            #expect(
                F.value(t, ["plugins", "io.containerd.cri.v1.runtime", "containerd", "default_runtime_name"]) as? String
                    == "runc")
        }
        #expect(ContainerdConfig.version(of: "1.7.24").map { $0.major == 1 && $0.minor == 7 } == true)
        #expect(throws: RenderError.self) {
            try ContainerdConfig.configFile(containerdVersion: "1.5.9", pauseImage: "p")
        }
        #expect(throws: RenderError.self) {
            try ContainerdConfig.configFile(containerdVersion: "unknown", pauseImage: "p")
        }
    }

    /// The real containerd decodes the configuration rendered for its own version (`config dump` merges the
    /// file into its plugin configurations without starting anything), where containerd is installed or
    /// `APPLIANCE_CONTAINERD` names a binary (e.g. unpacked from Debian's package).
    @Test func realContainerdReadsItsConfiguration() throws {
        let binary = ProcessInfo.processInfo.environment["APPLIANCE_CONTAINERD"] ?? "containerd"
        guard let (vrc, version) = try F.run(binary, ["--version"]), vrc == 0 else {
            print("containerd is not installed here: its configuration check is skipped")
            return
        }
        let file = try ContainerdConfig.configFile(
            containerdVersion: version, pauseImage: F.bundle.pauseImage, nvidia: .init(setAsDefault: false))
        let dir = NSTemporaryDirectory() + "ctrd-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try file.content.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
        let dump = try #require(try F.run(binary, ["--config", dir + "/config.toml", "config", "dump"]))
        #expect(dump.0 == 0, "\(dump.1)")
        #expect(dump.1.contains("SystemdCgroup = true"))
        #expect(dump.1.contains("config_path = \"/etc/containerd/certs.d\""))
        #expect(dump.1.contains("registry.k8s.io/pause:3.10.1"))
    }

    @Test func hostsTomlPerUpstreamRegistry() throws {
        let site = F.haSite()
        let files = ContainerdConfig.hostsFiles(bundle: F.bundle, site: site)
        #expect(
            files.map(\.path) == [
                "/etc/containerd/certs.d/registry.k8s.io/hosts.toml", "/etc/containerd/certs.d/quay.io/hosts.toml",
                "/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/containerd/certs.d/nvcr.io/hosts.toml",
            ])
        let docker = try #require(files.first { $0.path.contains("/docker.io/") })
        Golden.check(docker.content, "hosts-docker.io.toml")
        // Two registry nodes: both mirrors, in order.
        var two = site
        two.registry = SiteInventory.RegistrySettings(mode: "in-cluster", port: 5443, nodes: ["cp-1", "sys-1"])
        let k8s = ContainerdConfig.hostsFile(upstream: "registry.k8s.io", mirrors: ContainerdConfig.mirrors(site: two))
        Golden.check(k8s.content, "hosts-registry.k8s.io-two-mirrors.toml")
        for f in files + [k8s] {
            F.checkTOMLStructure(f.content)
            guard let t = try F.parseTOML(f.content) else { continue }
            let upstream = f.path.split(separator: "/").dropLast().last.map(String.init) ?? ""
            #expect(t["server"] as? String == "https://" + ImageReference.upstreamServer(for: upstream))
            let hosts = try #require(t["host"] as? [String: Any])
            for (url, v) in hosts {
                #expect(url.hasSuffix("/v2/\(upstream)"))
                #expect(F.value(v, ["capabilities"]) as? [String] == ["pull", "resolve"])
                #expect(F.value(v, ["override_path"]) as? Bool == true)
                #expect(F.value(v, ["ca"]) as? String == ContainerdConfig.registryCAPath)
            }
        }
        let existing = ContainerdConfig.mirrors(
            site: {
                var s = site; s.registry = .init(mode: "existing", endpoint: "reg.example.internal:5000"); return s
            }())
        #expect(existing == [ContainerdConfig.Mirror(hostPort: "reg.example.internal:5000")])
    }

    @Test func imageReferencesNormaliseLikeContainerd() throws {
        func n(_ s: String) -> String? { ImageReference(s)?.description }
        #expect(n("nginx") == "docker.io/library/nginx:latest")
        #expect(n("nginx:1.27") == "docker.io/library/nginx:1.27")
        #expect(n("calico/node:v3.29.1") == "docker.io/calico/node:v3.29.1")
        #expect(n("index.docker.io/library/busybox:1") == "docker.io/library/busybox:1")
        #expect(n("registry-1.docker.io/busybox") == "docker.io/library/busybox:latest")
        #expect(n("registry.k8s.io/coredns/coredns:v1.12.1") == "registry.k8s.io/coredns/coredns:v1.12.1")
        #expect(n("localhost/x:1") == "localhost/x:1")
        #expect(n("myreg:5000/team/app:2") == "myreg:5000/team/app:2")
        let d = "sha256:" + String(repeating: "a", count: 64)
        #expect(n("quay.io/x/y@\(d)") == "quay.io/x/y@\(d)")
        #expect(n("quay.io/x/y:1@\(d)") == "quay.io/x/y:1@\(d)")
        for bad in ["", "UPPER/case", "a//b", "x:bad tag", "quay.io/x/y@sha256:short", "-x", "a__-b"] {
            #expect(ImageReference(bad) == nil, "\(bad)")
        }
        #expect(ImageReference("registry.k8s.io/pause:3.10.1")?.mirrorRepository == "registry.k8s.io/pause")
        #expect(ImageReference("nginx")?.mirrorRepository == "docker.io/library/nginx")
        #expect(ImageReference("myreg:5000/app")?.mirrorRepository == "myreg_5000/app")
        let regs = ImageReference.registries(of: ["nginx", "busybox", "quay.io/a/b", "bad ref"])
        #expect(regs.registries == ["docker.io", "quay.io"] && regs.invalid == ["bad ref"])
        #expect(F.bundle.upstreamRegistries == ["registry.k8s.io", "quay.io", "docker.io", "nvcr.io"])
        #expect(
            BundleFacts(kubernetesVersion: "v1.33.2", imageReferences: []).pauseImage == "registry.k8s.io/pause:3.10")
        #expect(
            BundleFacts(kubernetesVersion: "v1.33.2", imageReferences: []).upstreamRegistries == ["registry.k8s.io"])
    }

    // MARK: node preparation

    @Test func sysctlAndModulesFiles() {
        Golden.check(NodePrepFiles.sysctlFile().content, "sysctl-99-kubernetes.conf")
        let f = NodeFile(path: "/x", mode: 0o600, content: "abc")
        #expect(f.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(f.octalMode == "0600")
        Golden.check(NodePrepFiles.modulesFile().content, "modules-load-kubernetes.conf")
        #expect(NodePrepFiles.sysctlFile().path == "/etc/sysctl.d/99-kubernetes.conf")
        let keys = NodePrepFiles.sysctlFile().content.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(
            keys == [
                "net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-ip6tables = 1",
                "net.ipv4.ip_forward = 1",
            ])
    }

    @Test func fstabSwapIsCommentedIdempotentlyAndReversibly() {
        let fstab = """
            # /etc/fstab: static file system information.
            UUID=1234 /               ext4    errors=remount-ro 0       1
            UUID=5678 none            swap    sw              0       0
            /swapfile\tnone\tswap\tsw\t0\t0
            #/dev/sdb1 none swap sw 0 0
              /dev/sdc1 none swap defaults 0 0
            tmpfs /swapdir tmpfs defaults 0 0

            """
        let off = NodePrepFiles.disablingSwap(fstab: fstab)
        Golden.check(off, "fstab-swap-disabled")
        #expect(NodePrepFiles.disablingSwap(fstab: off) == off)
        #expect(NodePrepFiles.restoringSwap(fstab: off) == fstab)
        #expect(off.components(separatedBy: NodePrepFiles.swapMarker).count - 1 == 3)
        #expect(off.contains("#/dev/sdb1 none swap sw 0 0\n") && !off.contains(NodePrepFiles.swapMarker + "#/dev/sdb1"))
        #expect(off.contains("\ntmpfs /swapdir tmpfs defaults 0 0\n"))
        #expect(NodePrepFiles.disablingSwap(fstab: "") == "")
    }

    @Test func etcHostsBlockIsManagedIdempotently() {
        let site = F.haSite()
        let original = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
        let once = NodePrepFiles.withHostsBlock(hosts: original, site: site)
        Golden.check(once, "etc-hosts")
        #expect(NodePrepFiles.withHostsBlock(hosts: once, site: site) == once)
        #expect(once.hasPrefix(original))
        #expect(once.contains("10.0.0.100\tapi.ml.example.internal\n"))
        // A changed site replaces the block in place, keeping lines after it.
        let later = once + "192.168.1.5\tprinter\n"
        var smaller = site
        smaller.hosts.removeLast()
        let replaced = NodePrepFiles.withHostsBlock(hosts: later, site: smaller)
        #expect(!replaced.contains("cpu-1") && replaced.hasSuffix("printer\n") && replaced.hasPrefix(original))
        #expect(NodePrepFiles.withoutHostsBlock(hosts: once) == original)
    }

    // MARK: keepalived and HAProxy

    @Test func keepalivedAndHAProxyFollowTheKubeadmHAGuide() throws {
        let site = F.haSite()
        let first = try LoadBalancerConfig.keepalivedFile(site: site, node: site.hosts[0])
        let second = try LoadBalancerConfig.keepalivedFile(site: site, node: site.hosts[1], authPassword: "k8s-vrrp")
        let check = try LoadBalancerConfig.checkScriptFile(site: site)
        let haproxy = try LoadBalancerConfig.haproxyFile(site: site)
        Golden.check(first.content, "keepalived-cp-1.conf")
        Golden.check(second.content, "keepalived-cp-2-password.conf")
        Golden.check(check.content, "check_apiserver.sh")
        Golden.check(haproxy.content, "haproxy.cfg")
        #expect(first.content.contains("state MASTER") && first.content.contains("priority 101"))
        #expect(second.content.contains("state BACKUP") && second.content.contains("priority 100"))
        #expect(second.containsSecret && second.mode == 0o600 && !first.containsSecret)
        #expect(first.content.contains("10.0.0.100/24 dev eth0"))
        #expect(first.content.contains("unicast_peer {\n        10.0.0.12\n        10.0.0.13\n    }"))
        #expect(haproxy.content.contains("bind *:8443"))
        #expect(haproxy.content.components(separatedBy: ":6443 check check-ssl verify none").count - 1 == 3)
        #expect(check.mode == 0o755)
        // sh -n parses the check script.
        let dir = NSTemporaryDirectory() + "lb-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check.content.write(toFile: dir + "/check.sh", atomically: true, encoding: .utf8)
        if let (rc, out) = try F.run("sh", ["-n", dir + "/check.sh"]) { #expect(rc == 0, "\(out)") }
        // The real tools check their files where they are installed.
        try haproxy.content.write(toFile: dir + "/haproxy.cfg", atomically: true, encoding: .utf8)
        if FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy"),
            let (rc, out) = try F.run("/usr/sbin/haproxy", ["-c", "-f", dir + "/haproxy.cfg"])
        {
            #expect(rc == 0, "\(out)")
        } else {
            print("haproxy is not installed here: its configuration check is skipped")
        }
        // keepalived checks that the track script exists and is safe: point it at a copy in a 0755 folder.
        try FileManager.default.createDirectory(
            atPath: dir + "/s", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try check.content.write(toFile: dir + "/s/check.sh", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir + "/s/check.sh")
        for (i, f) in [first, second].enumerated() {
            let conf = f.content.replacingOccurrences(of: LoadBalancerConfig.checkScriptPath, with: dir + "/s/check.sh")
            try conf.write(toFile: dir + "/keepalived-\(i).conf", atomically: true, encoding: .utf8)
            if FileManager.default.isExecutableFile(atPath: "/usr/sbin/keepalived"),
                let (rc, out) = try F.run(
                    "/usr/sbin/keepalived", ["--config-test", "-f", dir + "/keepalived-\(i).conf"])
            {
                #expect(rc == 0, "\(out)")
            } else {
                print("keepalived is not installed here: its configuration check is skipped")
            }
        }
    }

    @Test func loadBalancerRefusesSitesWithoutAVirtualIP() throws {
        let single = F.singleSite()
        #expect(throws: RenderError.self) { try LoadBalancerConfig.haproxyFile(site: single) }
        var site = F.haSite()
        site.network?.endpoint?.interface = nil
        #expect(throws: RenderError.self) { try LoadBalancerConfig.keepalivedFile(site: site, node: site.hosts[0]) }
        #expect(
            try LoadBalancerConfig.keepalivedFile(site: site, node: site.hosts[0], interface: "bond0").content.contains(
                "interface bond0"))
        #expect(throws: RenderError.self) {
            try LoadBalancerConfig.keepalivedFile(site: site, node: site.hosts[4], interface: "eth0")
        }
        #expect(throws: RenderError.self) {
            try LoadBalancerConfig.keepalivedFile(
                site: site, node: site.hosts[0], interface: "eth0", authPassword: "toolongpassword")
        }
    }

    // MARK: registry

    @Test func registryConfigAndUnit() throws {
        let config = RegistryConfig.configFile()
        Golden.check(config.content, "registry-config.yml")
        Golden.check(RegistryConfig.dropInFile().content, "docker-registry-appliance.conf")
        let tree = try #require(try Yams.load(yaml: config.content) as? [String: Any])
        #expect(tree["version"] as? String == "0.1")
        #expect(F.value(tree, ["storage", "filesystem", "rootdirectory"]) as? String == "/var/lib/docker-registry")
        #expect(F.value(tree, ["storage", "delete", "enabled"]) as? Bool == false)
        #expect(F.value(tree, ["http", "addr"]) as? String == ":5000")
        #expect(F.value(tree, ["http", "tls", "certificate"]) as? String == RegistryConfig.certificatePath)
        #expect(F.value(tree, ["http", "tls", "key"]) as? String == RegistryConfig.keyPath)
        #expect(tree["auth"] == nil)
        #expect(!config.containsSecret && config.owner == "root:docker-registry")
        let withSecret = RegistryConfig.configFile(port: 5443, httpSecret: "s3cr3t")
        #expect(withSecret.containsSecret && withSecret.content.contains("addr: :5443"))
        #expect(RegistryConfig.keyFile(pem: "k").containsSecret)
    }

    // MARK: apt

    static let controlText = """
        Package: kubeadm
        Version: 1.34.3-1.1
        Architecture: amd64
        Maintainer: Kubernetes Authors <dev@kubernetes.io>
        Installed-Size: 70000
        Depends: cri-tools (>= 1.30.0), kubernetes-cni (>= 1.2.0)
        Section: admin
        Priority: optional
        Homepage: https://kubernetes.io
        Description: Command-line utility for administering a Kubernetes cluster
         Command-line utility for deploying and administering a Kubernetes cluster.
         .
           indented line
         ..
        X-Custom-Field: kept

        """

    @Test func packagesIndexInDpkgScanpackagesOrder() throws {
        let entry = AptRepository.Entry(
            fields: AptRepository.parseControl(Self.controlText), filename: "./kubeadm_1.34.3-1.1_amd64.deb",
            size: 12345,
            sha256: String(repeating: "c", count: 64))
        let other = AptRepository.Entry(
            fields: [
                .init("Package", "containerd"), .init("Version", "1.6.20~ds1-1+deb12u3"),
                .init("Architecture", "amd64"), .init("Description", "daemon"),
            ],
            filename: "./containerd.deb", size: 9, sha256: String(repeating: "d", count: 64))
        let file = AptRepository.packagesFile([entry, other])
        Golden.check(file.content, "Packages")
        #expect(file.content.hasPrefix("Package: containerd\n"))
        Golden.check(AptRepository.sourcesFile().content, "appliance.list")
        #expect(AptRepository.sourcesFile().content.hasSuffix("deb [trusted=yes] file:/var/lib/appliance/repo ./\n"))
        #expect(
            AptRepository.holdList(installed: ["containerd", "kubectl", "kubelet", "kubeadm"]) == [
                "kubeadm", "kubelet", "kubectl",
            ])
    }

    /// The same index as the real `dpkg-scanpackages` writes for a real `.deb` (where dpkg-dev is installed).
    @Test func packagesIndexMatchesTheRealDpkgScanpackages() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-scanpackages"),
            FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-deb")
        else {
            print("dpkg-dev is not installed here: the comparison with dpkg-scanpackages is skipped")
            return
        }
        let dir = NSTemporaryDirectory() + "repo-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/pkg/DEBIAN", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/repo", withIntermediateDirectories: true)
        try Self.controlText.write(toFile: dir + "/pkg/DEBIAN/control", atomically: true, encoding: .utf8)
        let built = try #require(
            try F.run("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", dir + "/pkg", dir + "/repo/kubeadm.deb"]))
        try #require(built.0 == 0, "\(built.1)")
        let scanned = try #require(
            try F.run("dpkg-scanpackages", ["-h", "sha256", ".", "/dev/null"], cwd: dir + "/repo"))
        try #require(scanned.0 == 0, "\(scanned.1)")
        let real = scanned.1.components(separatedBy: "\n").filter { !$0.hasPrefix("dpkg-scanpackages:") }.joined(
            separator: "\n")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/repo/kubeadm.deb"))
        let sha = try #require(try F.run("sha256sum", [dir + "/repo/kubeadm.deb"])).1.prefix(64)
        let ours = AptRepository.packagesFile([
            AptRepository.Entry(
                fields: AptRepository.parseControl(Self.controlText), filename: "./kubeadm.deb",
                size: Int64(data.count),
                sha256: String(sha))
        ]).content
        #expect(ours.trimmingCharacters(in: .newlines) == real.trimmingCharacters(in: .newlines))
    }

    // MARK: roles

    @Test func roleMarksInBothSpellings() {
        let std = NodeRoleMarks.forNode([.system, .controlPlane], style: .standard, dedicatedSystemNodes: true)
        #expect(
            std.labels.map(\.kubectlArgument) == [
                "node-role.kubernetes.io/control-plane=", "node-role.kubernetes.io/system=",
            ])
        #expect(
            std.taints.map(\.kubectlArgument) == [
                "node-role.kubernetes.io/control-plane:NoSchedule", "node-role.kubernetes.io/system:NoSchedule",
            ])
        let runai = NodeRoleMarks.forNode([.gpuWorker], style: .runai, dedicatedSystemNodes: true)
        #expect(runai.labels == [NodeLabel(key: "node-role.kubernetes.io/runai-gpu-worker", value: "true")])
        #expect(runai.taints.isEmpty)
        let shared = NodeRoleMarks.forNode([.system], style: .runai, dedicatedSystemNodes: false)
        #expect(
            shared.labels.map(\.kubectlArgument) == ["node-role.kubernetes.io/runai-system=true"]
                && shared.taints.isEmpty)
        #expect(
            NodeRoleMarks.staleLabelKeys([.cpuWorker, .controlPlane], style: .runai) == [
                "node-role.kubernetes.io/cpu-worker"
            ])
    }
}
