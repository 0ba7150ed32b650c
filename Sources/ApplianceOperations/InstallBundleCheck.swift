import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlatform
import Foundation

/// Whether a verified bundle can install this site with this profile: it is an install bundle of the
/// profile's Kubernetes version, and it carries what each node's roles need (the Kubernetes packages and the
/// container runtime on every node, the registry on registry nodes, keepalived and HAProxy on control planes
/// behind a virtual IP, the CNI manifest and the images the registry nodes seed).
public enum InstallBundleCheck {
    public static let kubernetesPackages = ["kubeadm", "kubelet", "kubectl"]
    public static let runtimePackages = ["containerd", "runc"]

    /// Every problem, one line each (empty: the bundle fits).
    public static func problems(
        _ manifest: BundleManifest, profile: HardwareProfile, site: SiteInventory
    ) -> [String] {
        var out: [String] = []
        let bundleK8s = normalized(manifest.kubernetesVersion)
        let profileK8s = normalized(profile.kubernetes.version)
        if bundleK8s != profileK8s {
            out.append(
                "bundle \(manifest.name) \(manifest.version) installs Kubernetes \(bundleK8s), profile \(profile.name) runs \(profileK8s)"
            )
        }
        for host in site.hosts {
            let debs = Set(
                manifest.allArtifacts.filter { $0.artifact.kind == .deb && $0.artifact.applies(to: host.roles) }
                    .compactMap { $0.artifact.provenance("package") })
            var needed = kubernetesPackages + runtimePackages
            if site.registryHosts.contains(where: { $0.name == host.name }) { needed += ["docker-registry", "curl"] }
            if host.roles.contains(.controlPlane), site.effectiveAPIEndpoint?.mode == .virtualIP {
                needed += ["keepalived", "haproxy"]
            }
            let missing = needed.filter { !debs.contains($0) }
            if !missing.isEmpty {
                out.append(
                    "\(host.name) (\(host.roles.map(\.rawValue).joined(separator: ", "))) needs packages the bundle lacks for it: \(missing.joined(separator: ", "))"
                )
            }
            // kubeadm and the kubelet are the cluster's version; kubectl may be one minor apart (skew policy).
            for pkg in ["kubeadm", "kubelet"] {
                if let v = packageVersion(manifest, pkg, roles: host.roles),
                    !v.hasPrefix(String(profileK8s.dropFirst()))
                {
                    out.append("\(pkg) \(v) in the bundle does not match Kubernetes \(profileK8s)")
                    break
                }
            }
        }
        out += gpuStackProblems(manifest, profile: profile, site: site)
        if cniManifest(manifest) == nil {
            out.append("the bundle has no CNI manifest (a file artifact of component 'cni')")
        }
        if site.platform != nil { out += smokeImageProblems(manifest) }
        for host in site.registryHosts {
            let images = manifest.allArtifacts.filter { $0.artifact.kind == .image }
            let unstaged = images.filter { !$0.artifact.applies(to: host.roles) }.map(\.artifact.name)
            if !unstaged.isEmpty {
                out.append(
                    "registry node \(host.name) would not receive the images \(unstaged.joined(separator: ", ")) (their roles do not include \(host.roles.map(\.rawValue).joined(separator: "/")))"
                )
            }
        }
        return Array(Set(out)).sorted()
    }

    /// Sites with a platform: the images its smoke tests run (`SmokeTests.images`) are in the bundle, since an
    /// air-gapped node pulls only from the private registry the bundle seeds. Compared as normalised references
    /// (`busybox:1.37.0` is `docker.io/library/busybox:1.37.0`).
    public static func smokeImageProblems(_ manifest: BundleManifest) -> [String] {
        let missing = lacking(SmokeTests.images, in: manifest)
        guard !missing.isEmpty else { return [] }
        return [
            "the bundle lacks the images the platform's smoke tests run: \(missing.joined(separator: ", ")) (add them to the bundle spec's images)"
        ]
    }

    /// Those of `references` the bundle carries no image of, compared as normalised references.
    static func lacking(_ references: [String], in manifest: BundleManifest) -> [String] {
        let carried = Set(manifest.images.compactMap { ImageReference($0.reference)?.description })
        return references.filter { ref in ImageReference(ref).map { !carried.contains($0.description) } ?? true }
    }

    /// The host GPU stack (issue 13), for `host-driver` profiles: every GPU node gets a driver, the fabric
    /// manager on NVSwitch profiles and the container toolkit; the fabric manager is exactly the driver's
    /// version; the driver is not on the profile's deny list. Both versions are named when a pin breaks.
    public static func gpuStackProblems(
        _ manifest: BundleManifest, profile: HardwareProfile, site: SiteInventory
    ) -> [String] {
        if profile.gpuStack.mode == .operatorPrecompiled {
            return precompiledDriverProblems(manifest, profile: profile, site: site)
        }
        var out: [String] = []
        for host in site.hosts where host.roles.contains(.gpuWorker) {
            guard let want = profile.requirements(for: host.roles)?.gpu else { continue }
            let packages = manifest.allArtifacts.compactMap { (_, a) -> GPUHostPackages.Package? in
                guard a.kind == .deb, a.applies(to: host.roles), let name = a.provenance("package"),
                    let version = a.provenance("version"), GPUHostPackages.part(ofPackage: name) != nil
                else { return nil }
                return .init(name: name, version: version, artifact: a.name)
            }
            let names = packages.map(\.name)
            var lacking: [String] = []
            if !names.contains(where: { GPUHostPackages.part(ofPackage: $0) == .driver }) {
                lacking.append("an NVIDIA driver (nvidia-driver-*, cuda-drivers-*)")
            }
            if want.fabricManager && !names.contains(where: GPUHostPackages.isFabricManagerDaemon) {
                lacking.append("nvidia-fabricmanager (profile \(profile.name) has NVSwitches)")
            }
            if !names.contains(where: GPUHostPackages.isToolkit) { lacking.append("nvidia-container-toolkit") }
            if !lacking.isEmpty {
                out.append(
                    "\(host.name) (gpu-worker, gpuStack.mode host-driver) needs what the bundle lacks for it: \(lacking.joined(separator: ", "))"
                )
            }
            out += GPUHostPackages.pinProblems(packages, deniedDriverVersions: profile.gpuStack.deniedDriverVersions)
        }
        return out
    }

    /// `operator-precompiled` profiles with GPU nodes: the GPU Operator's driver manager and container toolkit
    /// images, and at least one precompiled driver image of the profile's branch (which of them fits each
    /// node's kernel is preflight's `gpu.precompiled-driver`, once the nodes are read).
    public static func precompiledDriverProblems(
        _ manifest: BundleManifest, profile: HardwareProfile, site: SiteInventory
    ) -> [String] {
        guard site.hosts.contains(where: { $0.roles.contains(.gpuWorker) }) else { return [] }
        guard let branch = profile.gpuStack.driverBranch else {
            return ["profile \(profile.name) names no driver version, so no precompiled driver branch"]
        }
        var missing = lacking(PrecompiledDriver.operandImages, in: manifest)
        let tags = PrecompiledDriver.tags(in: manifest.images.map(\.reference))
        if PrecompiledDriver.tags(tags, branch: branch).isEmpty {
            let carried = tags.isEmpty ? "none" : tags.joined(separator: ", ")
            missing.append(
                "\(PrecompiledDriver.repository):\(branch)-<kernel>-<os> for the GPU nodes' kernels (driver branch \(branch) of profile \(profile.name); the bundle's precompiled driver tags: \(carried))"
            )
        }
        guard !missing.isEmpty else { return [] }
        return [
            "gpuStack.mode operator-precompiled (profile \(profile.name)) needs images the bundle lacks: \(missing.joined(separator: ", "))"
        ]
    }

    /// The bundle's version of a Debian package for these roles.
    public static func packageVersion(_ manifest: BundleManifest, _ name: String, roles: [NodeRole]) -> String? {
        manifest.allArtifacts.first {
            $0.artifact.kind == .deb && $0.artifact.provenance("package") == name && $0.artifact.applies(to: roles)
        }?.artifact.provenance("version")
    }

    /// The CNI manifest: a `file` artifact of the component named `cni`.
    public static func cniManifest(_ manifest: BundleManifest) -> BundleManifest.Artifact? {
        manifest.components.first { $0.name == "cni" }?.artifacts.first { $0.kind == .file }
    }

    static func normalized(_ v: String) -> String { v.hasPrefix("v") ? v : "v" + v }
}
