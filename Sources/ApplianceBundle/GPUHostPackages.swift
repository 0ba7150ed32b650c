import Foundation

/// The NVIDIA host GPU stack's Debian packages (the `host-driver` mode): which package is the driver, the
/// fabric manager or the container toolkit, and the version pins between them.
///
/// Names as the vendors publish them: the driver is `nvidia-driver[-BRANCH][-server][-open]` (Ubuntu,
/// Debian), `cuda-drivers[-BRANCH]` (NVIDIA's CUDA repository) or `nvidia-open[-BRANCH]`; the fabric manager
/// is `nvidia-fabricmanager[-BRANCH]` (the branch left the name at 580) with its NVSwitch library
/// `libnvidia-nscq[-BRANCH]`; the container toolkit is `nvidia-container-toolkit` with its base and
/// `libnvidia-container` packages. The fabric manager (and NSCQ) must be exactly the driver's version: it
/// refuses to start otherwise ("fabric manager NVIDIA GPU driver interface version ... don't match"), and
/// NVIDIA's own driver container installs `nvidia-fabricmanager=${DRIVER_VERSION}-1`.
public enum GPUHostPackages {
    /// The part of the host GPU stack a package belongs to.
    public enum Part: String, Sendable, CaseIterable, Comparable {
        case driver
        case fabricManager = "fabric-manager"
        case containerToolkit = "container-toolkit"

        public static func < (a: Part, b: Part) -> Bool {
            (allCases.firstIndex(of: a) ?? 0) < (allCases.firstIndex(of: b) ?? 0)
        }
    }

    /// The part a package name belongs to; nil for anything else.
    public static func part(ofPackage name: String) -> Part? {
        func named(_ base: String) -> Bool { name == base || name.hasPrefix(base + "-") }
        if named("nvidia-driver") || named("cuda-drivers") || named("nvidia-open") { return .driver }
        if named("nvidia-fabricmanager") || named("libnvidia-nscq") { return .fabricManager }
        if [
            "nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
            "libnvidia-container1", "nvidia-container-runtime",
        ].contains(name) {
            return .containerToolkit
        }
        return nil
    }

    /// Whether the package is the fabric manager daemon itself (not its NSCQ library).
    public static func isFabricManagerDaemon(_ name: String) -> Bool {
        name == "nvidia-fabricmanager" || name.hasPrefix("nvidia-fabricmanager-")
    }

    /// Whether the package is the toolkit itself (the one that installs `nvidia-ctk`).
    public static func isToolkit(_ name: String) -> Bool { name == "nvidia-container-toolkit" }

    /// The upstream version of a Debian version: the epoch and the Debian revision dropped
    /// (`535.161.08-1`, `1:535.161.08-0ubuntu2.22.04.1` and `535.161.08` are all `535.161.08`).
    public static func upstreamVersion(_ debianVersion: String) -> String {
        var v = Substring(debianVersion)
        if let colon = v.firstIndex(of: ":"), v[..<colon].allSatisfy(\.isNumber) { v = v[v.index(after: colon)...] }
        if let dash = v.lastIndex(of: "-") { v = v[..<dash] }
        return String(v)
    }

    /// One Debian package of the bundle: its name, its Debian version and the artifact that carries it.
    public struct Package: Sendable, Equatable {
        public var name: String
        public var version: String
        public var artifact: String
        public init(name: String, version: String, artifact: String) {
            self.name = name
            self.version = version
            self.artifact = artifact
        }
        public var upstream: String { GPUHostPackages.upstreamVersion(version) }
    }

    /// The driver's upstream version among `packages` (nil: no driver package).
    public static func driverVersion(_ packages: [Package]) -> String? {
        packages.filter { part(ofPackage: $0.name) == .driver }.map(\.upstream).sorted().first
    }

    /// Every version pin the packages break, one line each naming both versions: two driver versions, a
    /// fabric manager (or NSCQ library) at another version than the driver, a fabric manager without a driver,
    /// a driver the profile denies.
    public static func pinProblems(_ packages: [Package], deniedDriverVersions: [String] = []) -> [String] {
        var out: [String] = []
        let drivers = packages.filter { part(ofPackage: $0.name) == .driver }
        let driverVersions = Set(drivers.map(\.upstream))
        if driverVersions.count > 1 {
            out.append(
                "the bundle carries more than one NVIDIA driver version: "
                    + drivers.map { "\($0.name) \($0.version)" }.sorted().joined(separator: ", "))
        }
        for d in drivers where deniedDriverVersions.contains(d.upstream) {
            out.append(
                "NVIDIA driver \(d.upstream) (\(d.name) \(d.version), artifact '\(d.artifact)') is on the profile's deny list (deniedDriverVersions)"
            )
        }
        let fabric = packages.filter { part(ofPackage: $0.name) == .fabricManager }
        if let driver = drivers.sorted(by: { $0.name < $1.name }).first {
            for f in fabric where f.upstream != driver.upstream {
                out.append(
                    "\(f.name) \(f.version) (artifact '\(f.artifact)') is version \(f.upstream) but the driver \(driver.name) \(driver.version) is \(driver.upstream): the fabric manager must be exactly the driver's version"
                )
            }
        } else if let f = fabric.first {
            out.append("\(f.name) \(f.version) (artifact '\(f.artifact)') has no NVIDIA driver package beside it")
        }
        return Array(Set(out)).sorted()
    }
}
