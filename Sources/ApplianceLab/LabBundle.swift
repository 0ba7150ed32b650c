import ApplianceBundle
import ApplianceModel
import Foundation
import Logging

/// Builds the signed lab bundle from scratch (issue 11): the lab's own inputs first, then `bundle build`
/// of `bundles/lab.yaml` with the same builder as any release bundle.
///
/// Inputs made here, under `<spec folder>/lab/generated/` (ignored by git), where the spec names them:
/// - `images/<name>/`: the lab's OCI image layouts (`LabImages`), from Debian's `catatonit`;
/// - `packages/*.deb`: the stand-in packages (`LabPackages`, what `appliance lab packages` writes), at the
///   spec's Kubernetes version.
/// Everything else the spec names is fetched by the builder (Debian packages by name and version, with their
/// dependency closure against the lab node's base set) or checked in (the CNI manifest).
public struct LabBundle: Sendable {
    /// `bundles/lab.yaml`.
    public var specPath: String
    /// The statically linked `appliance-labnode` (see `LabPackages`).
    public var labnode: String
    /// Where Debian packages are cached between builds.
    public var debCacheDirectory: String
    public var logger: Logger

    /// Debian's catatonit, the binary of every lab image.
    public static let catatonitPackage = "catatonit"
    public static let catatonitVersion = "0.1.7-1+b2"
    /// The spec component whose version is the stand-in NVIDIA driver's (and fabric manager's).
    public static let gpuDriverComponent = "gpu-host-driver"

    public init(specPath: String, labnode: String, debCacheDirectory: String, logger: Logger) {
        self.specPath = specPath
        self.labnode = labnode
        self.debCacheDirectory = debCacheDirectory
        self.logger = logger
    }

    /// Where the generated inputs go: next to the spec, where it names them: `lab/generated` for `lab.yaml`,
    /// `lab/generated-NAME` for `lab-NAME.yaml` (the upgrade bundle's `lab-upgrade.yaml`), so the two bundles'
    /// inputs (other Kubernetes and driver versions) never overwrite each other.
    public var inputsDirectory: String {
        let dir = (specPath as NSString).deletingLastPathComponent
        let base = ((specPath as NSString).lastPathComponent as NSString).deletingPathExtension
        let suffix = base == "lab" ? "" : "-" + (base.hasPrefix("lab-") ? String(base.dropFirst(4)) : base)
        return "\(dir.isEmpty ? "." : dir)/lab/generated\(suffix)"
    }

    public struct Report: Sendable {
        public var result: BundleBuilder.Result
        public var images: [LabImages.Built]
        public var packages: [LabPackages.Package]
        /// Seconds: images, stand-in packages, `bundle build` (closure, fetch, hash, pack, sign), total.
        public var imagesSeconds: Double
        public var packagesSeconds: Double
        public var buildSeconds: Double
        public var totalSeconds: Double
    }

    /// Makes the lab images of Debian's catatonit (fetched into the Debian package cache) under `directory`.
    public static func images(
        into directory: String, kubernetesVersion: String, debCacheDirectory: String, scratch: String
    ) throws -> [LabImages.Built] {
        let deb = try DebianPackage.fetch(
            name: catatonitPackage, version: catatonitVersion, architecture: nil, cache: debCacheDirectory,
            artifact: "catatonit (lab images)")
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let binary = try LabImages.extractCatatonit(deb: deb, into: scratch)
        return try LabImages(
            catatonit: binary, catatonitSource: "\(catatonitPackage) \(catatonitVersion)",
            kubernetesVersion: kubernetesVersion
        ).build(into: directory)
    }

    public func build(output: String, signingKey: Ed25519Key?) throws -> Report {
        let start = Date()
        let spec = try BundleSpec.load(path: specPath)
        let k8s =
            spec.kubernetesVersion.hasPrefix("v") ? String(spec.kubernetesVersion.dropFirst()) : spec.kubernetesVersion
        let inputs = inputsDirectory
        logger.notice("lab bundle: making the lab images (Debian catatonit) in \(inputs)/images")
        let images = try Self.images(
            into: "\(inputs)/images", kubernetesVersion: k8s, debCacheDirectory: debCacheDirectory,
            scratch: "\(inputs)/.catatonit-\(getpid())")
        let imagesDone = Date()
        logger.notice("lab bundle: building the stand-in packages (Kubernetes \(k8s)) in \(inputs)/packages")
        // The real kubectl when this host has one within the skew policy (as `lab packages` chooses), else the stand-in.
        let kubectl = RealKubectl.find(for: k8s).map {
            LabPackages.KubectlChoice.real(path: $0.path, version: $0.version)
        }
        // Built afresh, then each also named `NAME.deb`, which is how the spec names them: the real kubectl
        // carries its own version, so the file name of a package cannot be known when the spec is written.
        let packagesDirectory = "\(inputs)/packages"
        try? FileManager.default.removeItem(atPath: packagesDirectory)
        // The stand-in driver and fabric manager are built at the version of the spec's `gpu-host-driver`
        // component (the bundle build then checks the pin between them like any bundle's).
        let driver =
            spec.components.first { $0.name == Self.gpuDriverComponent }?.version ?? LabPackages.defaultDriverVersion
        let packages = try LabPackages(
            labnode: labnode, kubernetesVersion: k8s, driverVersion: driver, kubectl: kubectl ?? .standIn
        ).build(into: packagesDirectory)
        for p in packages {
            let stable = "\(packagesDirectory)/\(p.name).deb"
            do {
                try FileManager.default.copyItem(atPath: p.path, toPath: stable)
            } catch {
                throw LabError.io(path: stable, detail: "\(error)")
            }
        }
        let packagesDone = Date()
        logger.notice("lab bundle: bundle build of \(specPath)")
        let result = try BundleBuilder(
            spec: spec, signingKey: signingKey, debCacheDirectory: debCacheDirectory, logger: logger
        ).build(output: output)
        let end = Date()
        return Report(
            result: result, images: images, packages: packages,
            imagesSeconds: imagesDone.timeIntervalSince(start),
            packagesSeconds: packagesDone.timeIntervalSince(imagesDone),
            buildSeconds: end.timeIntervalSince(packagesDone), totalSeconds: end.timeIntervalSince(start))
    }
}
