import ApplianceModel
import Foundation

/// Where a lab lives on the host and what its kernel objects are called. Every name carries the lab id,
/// so `down` can find what an interrupted `up` left, and two labs with different ids never share anything.
public struct LabConfig: Sendable {
    /// Short lab id (letters and digits, at most 8): part of every namespace, link and machine name.
    public var id: String
    /// First three octets of the lab's private /24, e.g. "10.77.0". It exists only inside the lab's
    /// namespaces and on the admin veth.
    public var subnet: String
    /// The lab's own files: state, keys, site file, per-node overlays. `down` removes it.
    public var directory: String
    /// Cached root file systems; survives `down`.
    public var cacheDirectory: String

    public init(id: String = "lab", subnet: String = "10.77.0", directory: String? = nil, cacheDirectory: String? = nil)
        throws(LabError)
    {
        guard (1...8).contains(id.count), id.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber) }) else {
            throw .invalidArgument("lab id '\(id)' must be 1-8 lower-case letters or digits")
        }
        let octets = subnet.split(separator: ".").compactMap { Int($0) }
        guard octets.count == 3, octets.allSatisfy({ (0...255).contains($0) }),
            octets[0] == 10 || (octets[0] == 192 && octets[1] == 168)
                || (octets[0] == 172 && (16...31).contains(octets[1]))
        else {
            throw .invalidArgument(
                "lab subnet '\(subnet)' must be the first three octets of a private /24, e.g. 10.77.0")
        }
        let state = StateDirectory.path()
        self.id = id
        self.subnet = subnet
        self.directory = directory ?? (id == "lab" ? "\(state)/lab" : "\(state)/lab-\(id)")
        self.cacheDirectory = cacheDirectory ?? "\(state)/lab-cache"
    }

    // MARK: names of kernel objects

    /// Prefix of every network namespace and machine name of this lab.
    public var prefix: String { "ap-\(id)" }
    /// The namespace holding the lab bridge.
    public var labNamespace: String { prefix }
    public var adminNamespace: String { "\(prefix)-admin" }
    public func nodeNamespace(_ node: String) -> String { "\(prefix)-\(node)" }
    public func machineName(_ node: String) -> String { "\(prefix)-\(node)" }
    /// The admin end of the uplink veth (in the host, or in the admin namespace).
    public var adminLink: String { "ap-\(id)" }
    static let bridge = "br0"
    static let uplinkPeer = "up0"
    static func bridgePort(_ index: Int) -> String { "vn\(index)" }
    static let nodeInterface = "eth0"

    /// The cgroup (relative to a hierarchy's root) each node's systemd-nspawn runs in, and its parent.
    public var cgroupParent: String { prefix }
    func cgroup(_ node: String) -> String { "\(prefix)/\(node)" }
    /// Where nspawn looks for cgroups: the named systemd and unified hierarchies of a hybrid host, or a
    /// pure cgroup2 root. Only those that exist are used.
    static let cgroupHierarchies = ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]

    public var adminAddress: String { "\(subnet).1" }
    public func nodeAddress(_ index: Int) -> String { "\(subnet).\(10 + index)" }
    /// A free address on the lab bridge for the API's virtual IP (keepalived moves it between control-plane
    /// nodes): never given to a node (nodes are .11 to .210), nor the admin side (.1), nor the gateway (.254).
    public var virtualIP: String { "\(subnet).250" }
    /// The lab's pod network (flannel's default; the lab CNI manifest's net-conf.json says the same).
    public static let podCIDR = "10.244.0.0/16"
    public static let serviceCIDR = "10.96.0.0/12"
    /// An address on the bridge that nobody holds: nodes' default route points at it, so traffic for
    /// anywhere else stays on the lab bridge and goes nowhere.
    var blackholeGateway: String { "\(subnet).254" }

    // MARK: files

    /// The lab host's NFS export directory: `<adminAddress>:/P` is `<nfsExportDirectory>/P`. This kernel has no
    /// NFS server or client, so every node gets the directory bind-mounted at `nfsNodePath` (ApplianceLabNode's
    /// `LabPaths.nfsRoot/<server>`), where the lab's NFS CSI model provisions and its kubelet mounts volumes.
    public var nfsExportDirectory: String { "\(directory)/nfs-export" }
    public var nfsNodePath: String { "/var/lib/appliance-lab/nfs/\(adminAddress)" }
    public var statePath: String { "\(directory)/lab.json" }
    public var sitePath: String { "\(directory)/site.yaml" }
    public var keyPath: String { "\(directory)/ssh/id_ed25519" }
    public var knownHostsPath: String { "\(directory)/ssh/known_hosts" }
    public func nodeDirectory(_ node: String) -> String { "\(directory)/nodes/\(node)" }
    public func hardwarePath(_ node: String) -> String { "\(nodeDirectory(node))/hardware.json" }
    func consoleLog(_ node: String) -> String { "\(nodeDirectory(node))/console.log" }
    func applianceDirectory(_ node: String) -> String { "\(nodeDirectory(node))/var-lib-appliance" }
}
