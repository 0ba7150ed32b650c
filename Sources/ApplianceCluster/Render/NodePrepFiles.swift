import ApplianceModel

/// The OS preparation files every node gets: kernel parameters, modules to load at boot, swap off in
/// `/etc/fstab`, and every node's name in `/etc/hosts`.
public enum NodePrepFiles {
    public static let sysctlPath = "/etc/sysctl.d/99-kubernetes.conf"
    public static let modulesPath = "/etc/modules-load.d/kubernetes.conf"
    public static let fstabPath = "/etc/fstab"
    public static let hostsPath = "/etc/hosts"

    /// The parameters kubeadm's preflight and every CNI need; applied with `sysctl --system` (after the
    /// modules are loaded: the bridge keys exist only with `br_netfilter`).
    public static let sysctls: [(String, String)] = [
        ("net.bridge.bridge-nf-call-iptables", "1"), ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ("net.ipv4.ip_forward", "1"),
    ]
    public static let modules = ["overlay", "br_netfilter"]

    public static func sysctlFile() -> NodeFile {
        let body = sysctls.map { "\($0.0) = \($0.1)" }.joined(separator: "\n")
        return NodeFile(
            path: sysctlPath, mode: 0o644,
            content: RenderText.header(
                "#", ["Kubernetes networking: bridged traffic through iptables, IPv4 forwarding."]) + body + "\n")
    }

    public static func modulesFile() -> NodeFile {
        NodeFile(
            path: modulesPath, mode: 0o644,
            content: RenderText.header(
                "#", ["Loaded at boot by systemd-modules-load (containerd overlay snapshots, bridge netfilter)."])
                + modules.joined(separator: "\n") + "\n")
    }

    // MARK: /etc/fstab

    /// Prefix of a swap line the installer commented out; `restoringSwap` removes exactly this prefix.
    public static let swapMarker = "# appliance: swap disabled for Kubernetes: "

    /// `/etc/fstab` with every active swap entry commented out behind `swapMarker`; everything else
    /// byte-for-byte as it was. Idempotent: an already-marked line is left alone.
    public static func disablingSwap(fstab: String) -> String {
        transformLines(fstab) { line in isSwapEntry(line) ? swapMarker + line : line }
    }

    /// The reverse of `disablingSwap`: marked lines get their entry back. `restoringSwap(disablingSwap(x)) == x`.
    public static func restoringSwap(fstab: String) -> String {
        transformLines(fstab) { line in line.hasPrefix(swapMarker) ? String(line.dropFirst(swapMarker.count)) : line }
    }

    /// Whether a line is an active swap entry: not a comment, and its third field (the type) is `swap`.
    public static func isSwapEntry(_ line: String) -> Bool {
        let trimmed = line.drop { $0 == " " || $0 == "\t" }
        guard !trimmed.isEmpty, trimmed.first != "#" else { return false }
        let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return fields.count >= 3 && fields[2] == "swap"
    }

    static func transformLines(_ text: String, _ f: (String) -> String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { f(String($0)) }.joined(separator: "\n")
    }

    // MARK: /etc/hosts

    public static let hostsBegin = "# BEGIN appliance cluster nodes (managed by appliance install; edit the site file)"
    public static let hostsEnd = "# END appliance cluster nodes"

    /// The managed block: every node (`address name`), then the API endpoint's name when it has one and an
    /// address (a virtual IP, or a load balancer given by address).
    public static func hostsBlock(site: SiteInventory) -> String {
        var lines = [hostsBegin]
        for h in site.hosts where IPv4Address(h.address) != nil {
            lines.append("\(h.address)\t\(h.name)")
        }
        if let e = site.network?.endpoint, let name = e.name, let a = e.ipv4 {
            lines.append("\(a)\t\(name)")
        }
        lines.append(hostsEnd)
        return lines.joined(separator: "\n") + "\n"
    }

    /// `/etc/hosts` with the managed block replaced (or appended once); the rest untouched. Idempotent:
    /// applying it to its own output gives the same text.
    public static func withHostsBlock(hosts: String, site: SiteInventory) -> String {
        let block = hostsBlock(site: site)
        var lines = hosts.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        if let b = lines.firstIndex(of: hostsBegin), let e = lines[b...].firstIndex(of: hostsEnd) {
            let before = lines[..<b].joined(separator: "\n")
            let after = lines[(e + 1)...].joined(separator: "\n")
            return (before.isEmpty ? "" : before + "\n") + block + (after.isEmpty ? "" : after + "\n")
        }
        let kept = lines.joined(separator: "\n")
        return (kept.isEmpty ? "" : kept + "\n") + block
    }

    /// `/etc/hosts` without the managed block (for node removal).
    public static func withoutHostsBlock(hosts: String) -> String {
        var lines = hosts.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let b = lines.firstIndex(of: hostsBegin), let e = lines[b...].firstIndex(of: hostsEnd) {
            lines.removeSubrange(b...e)
        }
        return lines.joined(separator: "\n")
    }
}
