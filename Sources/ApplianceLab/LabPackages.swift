import Foundation

/// The lab's Debian packages: the stand-ins (`appliance-labnode`) under the real tools' package names, built
/// with `dpkg-deb --build` so that a lab node installs them with the real `dpkg -i`, exactly as a server
/// installs the real ones from a bundle.
///
/// | package | installs |
/// |---|---|
/// | `appliance-labnode` | `/usr/lib/appliance-labnode/appliance-labnode` (the multi-call binary), `/usr/bin/appliance-labnode`, `/usr/bin/lspci` (the lab's hardware) |
/// | `kubeadm`, `kubelet` | `/usr/bin/NAME` links; the version file `/var/lib/appliance-lab/versions/NAME`; kubelet also `kubelet.service` |
/// | `kubectl` | the **real** kubectl binary when the admin host has one within one minor version of the lab's Kubernetes (`RealKubectl`), else the stand-in link; the version file; `/var/lib/appliance-lab/kubectl-kind` (`real` or `stand-in`) |
/// | `helm` | `/usr/bin/helm`; the version file `/var/lib/appliance-lab/versions/helm` |
/// | `nvidia-driver` | `nvidia-smi`, `dcgmi`; its postinst "loads" the driver (`/var/lib/appliance-lab/driver-installed`) |
/// | `nvidia-fabricmanager` | `nv-fabricmanager`, `nvidia-fabricmanager`, `nvidia-fabricmanager.service` |
/// | `nvidia-container-toolkit` | `nvidia-ctk` (`runtime configure --runtime=containerd` edits containerd's configuration as the real 1.18+ does), `nvidia-container-runtime` (runs runc) |
///
/// The binary must run in a node, whose rootfs has no Swift toolchain: it has to be linked with
/// `--static-swift-stdlib` (checked before anything is built).
public struct LabPackages: Sendable {
    /// The `appliance-labnode` executable to package.
    public var labnode: String
    /// Kubernetes version of kubeadm, kubelet and kubectl, without the `v` ("1.34.3").
    public var kubernetesVersion: String
    /// Version of the stand-in NVIDIA driver and fabric manager ("535.54.03").
    public var driverVersion: String
    public var helmVersion: String
    /// Version of the stand-in NVIDIA container toolkit ("1.19.1").
    public var toolkitVersion: String
    /// Which kubectl the `kubectl` package carries.
    public var kubectl: KubectlChoice

    public enum KubectlChoice: Sendable, Equatable {
        /// The stand-in (`/usr/bin/kubectl` → appliance-labnode).
        case standIn
        /// A real kubectl binary and its version ("1.33.5").
        case real(path: String, version: String)

        public var label: String {
            switch self {
            case .standIn: "stand-in"
            case .real(_, let v): "real v\(v)"
            }
        }
    }

    public static let defaultKubernetesVersion = "1.34.3"
    /// The driver of the A100 profiles' declarations (the default `lab` profile included).
    public static let defaultDriverVersion = "535.54.03"
    public static let defaultHelmVersion = "3.19.0"
    /// The container toolkit of the GPU Operator v26.3 line (the release bundle's pin).
    public static let defaultToolkitVersion = "1.19.1"
    /// Version of the `appliance-labnode` package itself.
    public static let labnodeVersion = "1.0.0"
    static let libDirectory = "/usr/lib/appliance-labnode"
    static let binary = "/usr/lib/appliance-labnode/appliance-labnode"
    /// The stand-ins' command on a node where the `appliance-labnode` package is installed.
    public static let nodeBinary = "/usr/bin/appliance-labnode"

    public init(
        labnode: String, kubernetesVersion: String = defaultKubernetesVersion,
        driverVersion: String = defaultDriverVersion, helmVersion: String = defaultHelmVersion,
        toolkitVersion: String = defaultToolkitVersion, kubectl: KubectlChoice = .standIn
    ) {
        self.toolkitVersion = toolkitVersion
        self.kubectl = kubectl
        self.labnode = labnode
        self.kubernetesVersion = kubernetesVersion
        self.driverVersion = driverVersion
        self.helmVersion = helmVersion
    }

    /// One built package.
    public struct Package: Sendable, Equatable {
        public var name: String
        public var version: String
        public var path: String
    }

    /// What goes into one package (before `dpkg-deb`).
    struct Spec {
        var name: String
        var version: String
        var depends: [String] = []
        var description: String
        /// Symlinks to the multi-call binary: node path.
        var links: [String] = []
        /// Regular files: node path, content, mode.
        var files: [(String, Data, Int)] = []
        var postinst: String? = nil
        var postrm: String? = nil
    }

    static func versionFileScript(_ tool: String, _ version: String) -> (postinst: String, postrm: String) {
        (
            """
            #!/bin/sh
            set -e
            mkdir -p /var/lib/appliance-lab/versions
            echo v\(version) > /var/lib/appliance-lab/versions/\(tool)

            """,
            """
            #!/bin/sh
            set -e
            if [ "$1" = remove ] || [ "$1" = purge ]; then rm -f /var/lib/appliance-lab/versions/\(tool); fi

            """
        )
    }

    func specs() throws(LabError) -> [Spec] {
        let k8s = kubernetesVersion
        // pkgs.k8s.io names its packages VERSION-1.1; the lab does the same so version pins look alike.
        let k8sPackage = "\(k8s)-1.1"
        guard Self.isVersion(k8s) else {
            throw .invalidArgument("Kubernetes version '\(k8s)' must look like 1.34.3")
        }
        guard Self.isVersion(driverVersion) else {
            throw .invalidArgument("driver version '\(driverVersion)' must look like 535.54.03")
        }
        guard Self.isVersion(toolkitVersion) else {
            throw .invalidArgument("container toolkit version '\(toolkitVersion)' must look like 1.19.1")
        }
        guard Self.isVersion(helmVersion) else {
            throw .invalidArgument("helm version '\(helmVersion)' must look like 3.19.0")
        }
        let binaryData: Data
        do { binaryData = try Data(contentsOf: URL(fileURLWithPath: labnode)) } catch {
            throw .io(path: labnode, detail: "\(error)")
        }
        let labnodeDep = "appliance-labnode (>= \(Self.labnodeVersion))"
        var specs: [Spec] = [
            Spec(
                name: "appliance-labnode", version: Self.labnodeVersion,
                description:
                    "appliance lab stand-ins (multi-call binary)\n The lab's stand-ins for kubeadm, kubelet, kubectl, helm, nvidia-smi, dcgmi,\n nvidia-fabricmanager and lspci. Not the real tools: see the appliance README.",
                links: ["/usr/bin/appliance-labnode", "/usr/bin/lspci"],
                files: [(Self.binary, binaryData, 0o755)])
        ]
        for tool in ["kubeadm", "kubelet", "kubectl"] {
            if tool == "kubectl", case .real(let path, let version) = kubectl {
                let data: Data
                do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                    throw .io(path: path, detail: "\(error)")
                }
                let scripts = Self.versionFileScript(tool, version)
                specs.append(
                    Spec(
                        name: "kubectl", version: "\(version)-1.1",
                        description:
                            "kubectl v\(version), the real Kubernetes client (packed by the appliance lab from \(path))",
                        files: [("/usr/bin/kubectl", data, 0o755)],
                        postinst: scripts.postinst + "echo real > /var/lib/appliance-lab/kubectl-kind\n",
                        postrm: scripts.postrm))
                continue
            }
            var scripts = Self.versionFileScript(tool, k8s)
            if tool == "kubectl" {
                scripts.postinst += "echo stand-in > /var/lib/appliance-lab/kubectl-kind\n"
            }
            var spec = Spec(
                name: tool, version: k8sPackage,
                depends: [labnodeDep] + (tool == "kubeadm" ? ["openssl", "iproute2"] : []),
                description: "\(tool) stand-in of the appliance lab (Kubernetes v\(k8s))", links: ["/usr/bin/\(tool)"],
                postinst: scripts.postinst, postrm: scripts.postrm)
            if tool == "kubelet" {
                // As the real package: the unit is installed, and `kubeadm init|join` writes the configuration
                // it needs before starting it (the stand-in kubeadm writes its own unit under /etc).
                spec.files.append(
                    (
                        "/lib/systemd/system/kubelet.service",
                        Data(
                            """
                            [Unit]
                            Description=kubelet: The Kubernetes Node Agent (appliance lab stand-in)
                            ConditionPathExists=/etc/kubernetes/kubelet.conf
                            After=network-online.target

                            [Service]
                            ExecStart=/usr/bin/kubelet --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml
                            Restart=always
                            RestartSec=10

                            [Install]
                            WantedBy=multi-user.target

                            """.utf8), 0o644
                    ))
            }
            specs.append(spec)
        }
        let helmScripts = Self.versionFileScript("helm", helmVersion)
        specs.append(
            Spec(
                name: "helm", version: helmVersion, depends: [labnodeDep],
                description: "helm stand-in of the appliance lab", links: ["/usr/bin/helm"],
                postinst: helmScripts.postinst, postrm: helmScripts.postrm))
        specs.append(
            Spec(
                name: "nvidia-driver", version: driverVersion, depends: [labnodeDep],
                description:
                    "NVIDIA driver stand-in of the appliance lab (\(driverVersion))\n nvidia-smi and dcgmi for the GPUs the node's hardware declaration lists.",
                links: ["/usr/bin/nvidia-smi", "/usr/bin/dcgmi"],
                postinst: """
                    #!/bin/sh
                    set -e
                    # The driver is "installed and loaded": the stand-ins answer from now on.
                    mkdir -p /var/lib/appliance-lab
                    echo \(driverVersion) > /var/lib/appliance-lab/driver-installed

                    """,
                postrm: """
                    #!/bin/sh
                    set -e
                    if [ "$1" = remove ] || [ "$1" = purge ]; then rm -f /var/lib/appliance-lab/driver-installed; fi

                    """))
        specs.append(
            Spec(
                name: "nvidia-fabricmanager", version: driverVersion, depends: [labnodeDep, "nvidia-driver"],
                description: "NVIDIA fabric manager stand-in of the appliance lab (\(driverVersion))",
                links: ["/usr/bin/nv-fabricmanager", "/usr/bin/nvidia-fabricmanager"],
                files: [
                    (
                        "/lib/systemd/system/nvidia-fabricmanager.service",
                        Data(
                            """
                            [Unit]
                            Description=NVIDIA fabric manager service (appliance lab stand-in)
                            After=network-online.target

                            [Service]
                            Type=simple
                            ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg
                            Restart=on-failure
                            RestartSec=5
                            LimitCORE=infinity

                            [Install]
                            WantedBy=multi-user.target

                            """.utf8), 0o644
                    )
                ],
                postinst: """
                    #!/bin/sh
                    set -e
                    mkdir -p /var/lib/appliance-lab
                    echo \(driverVersion) > /var/lib/appliance-lab/fabricmanager-installed
                    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi

                    """,
                postrm: """
                    #!/bin/sh
                    set -e
                    if [ "$1" = remove ] || [ "$1" = purge ]; then rm -f /var/lib/appliance-lab/fabricmanager-installed; fi

                    """))
        // The real toolkit package of NVIDIA's repository is named VERSION-1.
        specs.append(
            Spec(
                name: "nvidia-container-toolkit", version: "\(toolkitVersion)-1", depends: [labnodeDep],
                description:
                    "NVIDIA container toolkit stand-in of the appliance lab (\(toolkitVersion))\n nvidia-ctk runtime configure --runtime=containerd edits containerd's configuration as the real one;\n nvidia-container-runtime runs runc (the lab has no GPU to give a container).",
                links: ["/usr/bin/nvidia-ctk", "/usr/bin/nvidia-container-runtime"]))
        return specs
    }

    static func isVersion(_ v: String) -> Bool {
        let parts = v.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2 && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }

    /// Refuses a binary that needs the Swift runtime libraries: a node's rootfs has none.
    public static func checkRunsWithoutToolchain(_ path: String) throws(LabError) {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw .labnodeUnusable(path: path, reason: "it is not an executable file")
        }
        let needed: [String]
        do { needed = try ELFDynamic.neededLibraries(path: path) } catch {
            throw .labnodeUnusable(path: path, reason: error.description)
        }
        if let swift = needed.first(where: { $0.hasPrefix("libswift") || $0.hasPrefix("libFoundation") }) {
            throw .labnodeUnusable(
                path: path,
                reason: "it is linked against the Swift runtime (\(swift)), which lab nodes do not have")
        }
    }

    /// Builds every package into `directory` (created if needed) and returns them in install order.
    public func build(into directory: String) throws(LabError) -> [Package] {
        try Self.checkRunsWithoutToolchain(labnode)
        guard HostCommand.which("dpkg-deb") != nil else { throw .missingTool(tool: "dpkg-deb", package: "dpkg") }
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .io(path: directory, detail: "\(error)")
        }
        let work = "\(directory)/.build-\(getpid())"
        try? fm.removeItem(atPath: work)
        defer { try? fm.removeItem(atPath: work) }
        var built: [Package] = []
        for spec in try specs() {
            let root = "\(work)/\(spec.name)"
            try writeTree(spec, root: root)
            let out = "\(directory)/\(spec.name)_\(spec.version)_amd64.deb"
            try? fm.removeItem(atPath: out)
            try HostCommand.run(
                "dpkg-deb", ["--root-owner-group", "-Zgzip", "-z1", "--build", root, out],
                context: "cannot build the lab package \(spec.name)")
            built.append(Package(name: spec.name, version: spec.version, path: out))
        }
        return built
    }

    func writeTree(_ spec: Spec, root: String) throws(LabError) {
        let fm = FileManager.default
        func put(_ rel: String, _ data: Data, mode: Int) throws(LabError) {
            let p = root + rel
            do {
                try fm.createDirectory(
                    atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try data.write(to: URL(fileURLWithPath: p))
                try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: p)
            } catch { throw .io(path: p, detail: "\(error)") }
        }
        var control = """
            Package: \(spec.name)
            Version: \(spec.version)
            Architecture: amd64
            Maintainer: appliance lab <lab@appliance.invalid>
            Section: admin
            Priority: optional

            """
        if !spec.depends.isEmpty { control += "Depends: \(spec.depends.joined(separator: ", "))\n" }
        control += "Description: \(spec.description)\n"
        try put("/DEBIAN/control", Data(control.utf8), mode: 0o644)
        if let s = spec.postinst { try put("/DEBIAN/postinst", Data(s.utf8), mode: 0o755) }
        if let s = spec.postrm { try put("/DEBIAN/postrm", Data(s.utf8), mode: 0o755) }
        for (path, data, mode) in spec.files { try put(path, data, mode: mode) }
        for link in spec.links {
            let p = root + link
            do {
                try fm.createDirectory(
                    atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                try fm.createSymbolicLink(atPath: p, withDestinationPath: Self.binary)
            } catch { throw .io(path: p, detail: "\(error)") }
        }
    }
}

/// The real kubectl binaries of the admin host: the Google Cloud CLI's `kubectl` package installs the official
/// static builds as `kubectl.1.MINOR` (`dpkg -L kubectl`); a plain `kubectl` that is not that package's
/// dispatcher counts too.
public enum RealKubectl {
    public static let searchDirectories = ["/usr/lib/google-cloud-sdk/bin", "/usr/local/bin", "/usr/bin"]

    /// The client version a kubectl binary reports ("1.33.5"), from `kubectl version --client -o json`.
    public static func version(of path: String) -> String? {
        guard FileManager.default.isExecutableFile(atPath: path),
            let r = try? HostCommand.run(path, ["version", "--client", "-o", "json"], check: false), r.status == 0,
            let obj = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
            let git = (obj["clientVersion"] as? [String: Any])?["gitVersion"] as? String
        else { return nil }
        let v = git.hasPrefix("v") ? String(git.dropFirst()) : git
        // "1.33.5-dispatcher" or "+build" suffixes: keep MAJOR.MINOR.PATCH.
        let core = v.prefix { $0.isNumber || $0 == "." }
        return LabPackages.isVersion(String(core)) ? String(core) : nil
    }

    static func minor(_ v: String) -> Int? {
        let p = v.split(separator: ".")
        return p.count >= 2 ? Int(p[1]) : nil
    }

    /// Whether a client of `client` may talk to a cluster of `cluster` (one minor version either way).
    public static func withinSkew(client: String, cluster: String) -> Bool {
        guard let c = minor(client), let k = minor(cluster),
            client.split(separator: ".").first == cluster.split(separator: ".").first
        else { return false }
        return abs(c - k) <= 1
    }

    /// The newest real kubectl within the supported skew of `kubernetesVersion`, if the host has one.
    public static func find(for kubernetesVersion: String, in directories: [String] = searchDirectories)
        -> (path: String, version: String)?
    {
        guard let k = minor(kubernetesVersion) else { return nil }
        for m in [k + 1, k, k - 1] {
            for d in directories {
                let p = "\(d)/kubectl.1.\(m)"
                if let v = version(of: p), withinSkew(client: v, cluster: kubernetesVersion) { return (p, v) }
            }
        }
        for d in directories {
            let p = "\(d)/kubectl"
            // The gcloud dispatcher picks a binary at run time and needs the SDK: not packable.
            if let v = version(of: p), withinSkew(client: v, cluster: kubernetesVersion),
                (try? FileManager.default.destinationOfSymbolicLink(atPath: p))?.contains("google-cloud-sdk") != true,
                let size = (try? FileManager.default.attributesOfItem(atPath: p))?[.size] as? Int, size > 20_000_000
            {
                return (p, v)
            }
        }
        return nil
    }

    /// Checks an explicit `--kubectl PATH`: a real kubectl, within the skew.
    public static func check(_ path: String, kubernetesVersion: String) throws(LabError) -> String {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw .kubectlUnusable(path: path, reason: "it is not an executable file")
        }
        guard let v = version(of: path) else {
            throw .kubectlUnusable(path: path, reason: "`\(path) version --client -o json` did not report a version")
        }
        guard withinSkew(client: v, cluster: kubernetesVersion) else {
            throw .kubectlUnusable(
                path: path,
                reason:
                    "it is v\(v), more than one minor version away from the lab's Kubernetes v\(kubernetesVersion)")
        }
        return v
    }
}

/// Reads the `DT_NEEDED` entries of a 64-bit little-endian ELF file (what the dynamic loader must find).
enum ELFDynamic {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func neededLibraries(path: String) throws(Failure) -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(description: "unreadable") }
        let bytes = [UInt8](data)
        func u16(_ o: Int) -> Int { o + 2 <= bytes.count ? Int(bytes[o]) | Int(bytes[o + 1]) << 8 : 0 }
        func u64(_ o: Int) -> Int {
            guard o + 8 <= bytes.count else { return 0 }
            var v: UInt64 = 0
            for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[o + i]) }
            return Int(truncatingIfNeeded: v)
        }
        guard bytes.count > 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
            throw Failure(description: "not an ELF file")
        }
        guard bytes[4] == 2, bytes[5] == 1 else { throw Failure(description: "not a 64-bit little-endian ELF file") }
        let shoff = u64(0x28)
        let shentsize = u16(0x3a)
        let shnum = u16(0x3c)
        guard shoff > 0, shentsize >= 64, shoff + shnum * shentsize <= bytes.count else {
            throw Failure(description: "no section headers")
        }
        // Section headers: type at +4, offset at +0x18, size at +0x20, link at +0x28.
        var needed: [String] = []
        for i in 0..<shnum {
            let sh = shoff + i * shentsize
            guard bytes[sh + 4] == 6 else { continue }  // SHT_DYNAMIC
            let off = u64(sh + 0x18)
            let size = u64(sh + 0x20)
            let link = Int(bytes[sh + 0x28]) | Int(bytes[sh + 0x29]) << 8
            let strsh = shoff + link * shentsize
            guard link < shnum else { throw Failure(description: "bad dynamic string table") }
            let strOff = u64(strsh + 0x18)
            var e = off
            while e + 16 <= min(off + size, bytes.count) {
                let tag = u64(e)
                if tag == 0 { break }
                if tag == 1 {  // DT_NEEDED
                    var s = strOff + u64(e + 8)
                    var name: [UInt8] = []
                    while s < bytes.count, bytes[s] != 0 {
                        name.append(bytes[s])
                        s += 1
                    }
                    needed.append(String(decoding: name, as: UTF8.self))
                }
                e += 16
            }
        }
        return needed
    }
}
