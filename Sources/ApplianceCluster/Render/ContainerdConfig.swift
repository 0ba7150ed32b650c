import ApplianceModel

/// containerd's configuration for kubeadm nodes: `/etc/containerd/config.toml` and one
/// `/etc/containerd/certs.d/<upstream>/hosts.toml` per upstream registry the bundle's images name.
///
/// config.toml: `SystemdCgroup = true` for runc (kubelet `cgroupDriver: systemd`), the pause image by its
/// upstream name (pulled through the mirror), `config_path` for registry hosts, and optionally the `nvidia`
/// runtime of the host-installed NVIDIA container toolkit. Config version 2 for containerd 1.6/1.7 (Debian 12
/// ships 1.6.20), version 3 for 2.x, chosen from the version the node reports (`containerd --version`).
/// Changing it needs `systemctl restart containerd`; `hosts.toml` changes are read on the next pull.
public enum ContainerdConfig {
    public static let path = "/etc/containerd/config.toml"
    public static let hostsDirectory = "/etc/containerd/certs.d"
    /// Where the registry CA is installed on every node: Debian's local CA folder, so
    /// `update-ca-certificates` adds it to the system store too (curl, helm), and `hosts.toml` names it.
    public static let registryCAPath = "/usr/local/share/ca-certificates/appliance-registry-ca.crt"
    public static let defaultCNIBinDirectory = "/opt/cni/bin"
    /// Where `nvidia-ctk runtime configure` puts the `nvidia` runtime (its default drop-in since toolkit 1.18).
    public static let nvidiaDropInPath = "/etc/containerd/conf.d/99-nvidia.toml"
    /// `BASE EDITED DROPIN` digests: the config.toml the installer rendered, the same file after nvidia-ctk
    /// added its import, and the drop-in nvidia-ctk wrote (written by the GPU stack's toolkit step).
    public static let toolkitEditRecord = "/var/lib/appliance/installed/containerd-nvidia-runtime"

    /// The NVIDIA container runtime of the host-driver GPU stack (nvidia-container-toolkit on the host).
    public struct NvidiaRuntime: Sendable, Equatable {
        public var binaryName: String
        /// Make it the default runtime (what `nvidia-ctk runtime configure --set-as-default` does), so GPU pods
        /// need no RuntimeClass; otherwise pods select it with a RuntimeClass named `nvidia`.
        public var setAsDefault: Bool
        public init(binaryName: String = "/usr/bin/nvidia-container-runtime", setAsDefault: Bool = true) {
            self.binaryName = binaryName
            self.setAsDefault = setAsDefault
        }
    }

    /// `major.minor` of a containerd version string (`1.6.20~ds1-1+deb12u3`, `v2.0.4`, `containerd
    /// github.com/containerd/containerd v1.7.24 ...`); nil when none is found.
    public static func version(of text: String) -> (major: Int, minor: Int)? {
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            let w = word.hasPrefix("v") ? word.dropFirst() : word[...]
            let parts = w.split(separator: ".", maxSplits: 2)
            guard parts.count >= 2, let major = Int(parts[0]), let minor = Int(parts[1].prefix { $0.isNumber }),
                !parts[1].isEmpty, parts[1].first?.isNumber == true
            else { continue }
            return (major, minor)
        }
        return nil
    }

    /// config.toml for a node whose containerd reports `containerdVersion`.
    public static func configFile(
        containerdVersion: String, pauseImage: String, nvidia: NvidiaRuntime? = nil,
        cniBinDirectory: String = defaultCNIBinDirectory
    ) throws(RenderError) -> NodeFile {
        guard let v = version(of: containerdVersion) else {
            throw RenderError("cannot read a containerd version from '\(containerdVersion)'")
        }
        guard v.major >= 1, !(v.major == 1 && v.minor < 6) else {
            throw RenderError("containerd \(v.major).\(v.minor) is too old for this installer (1.6 or later)")
        }
        let text =
            v.major >= 2
            ? version3(v, pauseImage, nvidia, cniBinDirectory) : version2(v, pauseImage, nvidia, cniBinDirectory)
        return NodeFile(path: path, mode: 0o644, content: text)
    }

    static func version2(_ v: (major: Int, minor: Int), _ pause: String, _ nvidia: NvidiaRuntime?, _ cniBin: String)
        -> String
    {
        let cri = "plugins.\"io.containerd.grpc.v1.cri\""
        var s = RenderText.header("#", ["containerd \(v.major).\(v.minor): config version 2."])
        s += """
            version = 2

            [\(cri)]
              sandbox_image = \(RenderText.toml(pause))

            [\(cri).cni]
              bin_dir = \(RenderText.toml(cniBin))
              conf_dir = "/etc/cni/net.d"

            [\(cri).containerd]
              default_runtime_name = \(RenderText.toml(nvidia?.setAsDefault == true ? "nvidia" : "runc"))
              snapshotter = "overlayfs"

            [\(cri).containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"

            [\(cri).containerd.runtimes.runc.options]
              SystemdCgroup = true

            """
        if let n = nvidia {
            s += """

                [\(cri).containerd.runtimes.nvidia]
                  runtime_type = "io.containerd.runc.v2"

                [\(cri).containerd.runtimes.nvidia.options]
                  BinaryName = \(RenderText.toml(n.binaryName))
                  SystemdCgroup = true

                """
        }
        s += """

            [\(cri).registry]
              config_path = \(RenderText.toml(hostsDirectory))

            """
        return s
    }

    static func version3(_ v: (major: Int, minor: Int), _ pause: String, _ nvidia: NvidiaRuntime?, _ cniBin: String)
        -> String
    {
        let images = "plugins.\"io.containerd.cri.v1.images\""
        let runtime = "plugins.\"io.containerd.cri.v1.runtime\""
        var s = RenderText.header("#", ["containerd \(v.major).\(v.minor): config version 3."])
        s += """
            version = 3

            [\(images)]
              snapshotter = "overlayfs"

            [\(images).pinned_images]
              sandbox = \(RenderText.toml(pause))

            [\(images).registry]
              config_path = \(RenderText.toml(hostsDirectory))

            [\(runtime).cni]
            \(v.major == 2 && v.minor == 0 ? "  bin_dir = \(RenderText.toml(cniBin))" : "  bin_dirs = \(RenderText.tomlArray([cniBin]))")
              conf_dir = "/etc/cni/net.d"

            [\(runtime).containerd]
              default_runtime_name = \(RenderText.toml(nvidia?.setAsDefault == true ? "nvidia" : "runc"))

            [\(runtime).containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"

            [\(runtime).containerd.runtimes.runc.options]
              SystemdCgroup = true

            """
        if let n = nvidia {
            s += """

                [\(runtime).containerd.runtimes.nvidia]
                  runtime_type = "io.containerd.runc.v2"

                [\(runtime).containerd.runtimes.nvidia.options]
                  BinaryName = \(RenderText.toml(n.binaryName))
                  SystemdCgroup = true

                """
        }
        return s
    }

    /// One mirror: the private registry on one node (`10.0.0.21:5000`), tried in the order given.
    public struct Mirror: Sendable, Equatable {
        public var hostPort: String
        public init(hostPort: String) { self.hostPort = hostPort }
        public init(host: SiteInventory.Host, port: Int) { self.hostPort = "\(host.address):\(port)" }
    }

    /// The mirrors of a site's registry: every in-cluster registry node at the registry port, or the
    /// existing registry's endpoint.
    public static func mirrors(site: SiteInventory) -> [Mirror] {
        if let r = site.registry, r.mode == SiteInventory.RegistrySettings.existing, let e = r.endpoint {
            return [Mirror(hostPort: e)]
        }
        let port = site.registry?.port ?? SiteInventory.RegistrySettings.defaultPort
        return site.registryHosts.map { Mirror(host: $0, port: port) }
    }

    /// `hosts.toml` for one upstream registry namespace (`registry.k8s.io`, `docker.io`): pulls go to each
    /// mirror under `/v2/<mirrorPrefix>` (the private registry keeps images under their full upstream name),
    /// over TLS verified by `caPath`; the upstream server stays last and is never reached air-gapped.
    public static func hostsFile(upstream registry: String, mirrors: [Mirror], caPath: String? = registryCAPath)
        -> NodeFile
    {
        let prefix = ImageReference.mirrorPrefix(for: registry)
        var s = RenderText.header("#", ["Pulls of \(registry)/* go to the private registry, as \(prefix)/*."])
        s += "server = \(RenderText.toml("https://" + ImageReference.upstreamServer(for: registry)))\n"
        for m in mirrors {
            s += "\n[host.\(RenderText.toml("https://\(m.hostPort)/v2/\(prefix)"))]\n"
            s += "  capabilities = [\"pull\", \"resolve\"]\n"
            s += "  override_path = true\n"
            if let caPath { s += "  ca = \(RenderText.toml(caPath))\n" }
        }
        return NodeFile(path: "\(hostsDirectory)/\(registry)/hosts.toml", mode: 0o644, content: s)
    }

    /// Every `hosts.toml` the bundle's images need, in the order of `bundle.upstreamRegistries`.
    public static func hostsFiles(bundle: BundleFacts, site: SiteInventory, caPath: String? = registryCAPath)
        -> [NodeFile]
    {
        let m = mirrors(site: site)
        return bundle.upstreamRegistries.map { hostsFile(upstream: $0, mirrors: m, caPath: caPath) }
    }
}
