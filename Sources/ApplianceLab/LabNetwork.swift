import Foundation

/// The lab's network: a namespace holding a bridge, one namespace per node joined to the bridge by a
/// veth (`vnN` on the bridge, `eth0` in the node), and an uplink veth from the admin side (the host, or
/// its own namespace) to the bridge. Rates are `tc tbf` on both ends of a veth; packet loss is an
/// nftables `numgen random` rule in the node's namespace (netem is not available here).
struct LabNetwork {
    let config: LabConfig

    static func ip(_ args: [String], context: @autoclosure () -> String) throws(LabError) {
        try HostCommand.run("ip", args, context: context())
    }

    static func namespaces() -> [String] {
        let out = (try? HostCommand.run("ip", ["netns", "list"], check: false).stdout) ?? ""
        return out.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    static func linkExists(_ name: String, namespace: String? = nil) -> Bool {
        let args = (namespace.map { ["-n", $0] } ?? []) + ["link", "show", "dev", name]
        return (try? HostCommand.run("ip", args, check: false).status) == 0
    }

    func createNamespace(_ ns: String) throws(LabError) {
        try Self.ip(["netns", "add", ns], context: "cannot create the network namespace \(ns)")
        try Self.ip(["-n", ns, "link", "set", "lo", "up"], context: "cannot bring up loopback in \(ns)")
    }

    /// The bridge namespace and the admin uplink. With `adminNamespace`, the admin end of the uplink is in
    /// its own namespace (so its rate can be limited like any node's) instead of in the host.
    func createFabric(adminNamespace: String?, adminRate: String?) throws(LabError) {
        let lab = config.labNamespace
        try createNamespace(lab)
        try Self.ip(
            ["-n", lab, "link", "add", LabConfig.bridge, "type", "bridge"], context: "cannot create the lab bridge")
        try Self.ip(["-n", lab, "link", "set", LabConfig.bridge, "up"], context: "cannot bring up the lab bridge")
        if let adminNamespace { try createNamespace(adminNamespace) }
        // Create both ends inside the lab namespace, then move the admin end out: no name is ever
        // taken in the host that a failure could leave behind without the namespace.
        try Self.ip(
            ["-n", lab, "link", "add", config.adminLink, "type", "veth", "peer", "name", LabConfig.uplinkPeer],
            context: "cannot create the admin uplink")
        let adminSide = adminNamespace.map { ["-n", $0] } ?? []
        let target = adminNamespace ?? "\(getpid())"  // the netns this process runs in
        try Self.ip(
            ["-n", lab, "link", "set", config.adminLink, "netns", target],
            context: "cannot move the admin uplink into \(adminNamespace ?? "the host")")
        try Self.ip(
            ["-n", lab, "link", "set", LabConfig.uplinkPeer, "master", LabConfig.bridge, "up"],
            context: "cannot attach the admin uplink to the bridge")
        try Self.ip(
            adminSide + ["addr", "add", "\(config.adminAddress)/24", "dev", config.adminLink],
            context: "cannot address the admin uplink")
        try Self.ip(adminSide + ["link", "set", config.adminLink, "up"], context: "cannot bring up the admin uplink")
        if let adminRate {
            try setRate(adminRate, device: config.adminLink, namespace: adminNamespace)
            try setRate(adminRate, device: LabConfig.uplinkPeer, namespace: lab)
        }
    }

    func createNode(_ node: LabState.Node, rate: String?) throws(LabError) {
        let ns = config.nodeNamespace(node.name)
        let port = LabConfig.bridgePort(node.index)
        try createNamespace(ns)
        try Self.ip(
            [
                "-n", config.labNamespace, "link", "add", port, "type", "veth", "peer", "name", LabConfig.nodeInterface,
                "netns", ns,
            ],
            context: "cannot create the link of \(node.name)")
        try Self.ip(
            ["-n", config.labNamespace, "link", "set", port, "master", LabConfig.bridge, "up"],
            context: "cannot attach \(node.name) to the bridge")
        try Self.ip(
            ["-n", ns, "addr", "add", "\(node.address)/24", "dev", LabConfig.nodeInterface],
            context: "cannot address \(node.name)")
        try Self.ip(["-n", ns, "link", "set", LabConfig.nodeInterface, "up"], context: "cannot bring up \(node.name)")
        try Self.ip(
            [
                "-n", ns, "route", "add", "default", "via", config.blackholeGateway, "dev", LabConfig.nodeInterface,
                "onlink",
            ],
            context: "cannot set the default route of \(node.name)")
        if let rate { try setNodeRate(node, rate: rate) }
    }

    // MARK: faults

    func setNodeRate(_ node: LabState.Node, rate: String?) throws(LabError) {
        if let rate {
            try setRate(rate, device: LabConfig.bridgePort(node.index), namespace: config.labNamespace)
            try setRate(rate, device: LabConfig.nodeInterface, namespace: config.nodeNamespace(node.name))
        } else {
            clearRate(device: LabConfig.bridgePort(node.index), namespace: config.labNamespace)
            clearRate(device: LabConfig.nodeInterface, namespace: config.nodeNamespace(node.name))
        }
    }

    func setRate(_ rate: String, device: String, namespace: String?) throws(LabError) {
        let bits = try Self.bitsPerSecond(rate)
        let burst = max(16 * 1024, bits / 8 / 50)  // 20 ms at full rate, at least 16 KiB
        try HostCommand.run(
            "tc",
            (namespace.map { ["-n", $0] } ?? [])
                + [
                    "qdisc", "replace", "dev", device, "root", "tbf", "rate", "\(bits)bit", "burst", "\(burst)",
                    "latency", "200ms",
                ],
            context: "cannot limit \(device) to \(rate)")
    }

    func clearRate(device: String, namespace: String?) {
        _ = try? HostCommand.run(
            "tc", (namespace.map { ["-n", $0] } ?? []) + ["qdisc", "del", "dev", device, "root"], check: false)
    }

    /// The link as unplugged (`down`) or plugged back in.
    func setLink(_ node: LabState.Node, up: Bool) throws(LabError) {
        try Self.ip(
            ["-n", config.labNamespace, "link", "set", LabConfig.bridgePort(node.index), up ? "up" : "down"],
            context: "cannot \(up ? "reconnect" : "disconnect") \(node.name)")
    }

    static let lossTable = "appliance_lab_loss"

    /// Drops `percent` of the packets the node receives and of those it sends.
    func setLoss(_ node: LabState.Node, percent: Int?) throws(LabError) {
        let ns = config.nodeNamespace(node.name)
        _ = try? HostCommand.run(
            "ip", ["netns", "exec", ns, "nft", "delete", "table", "inet", Self.lossTable], check: false)
        guard let percent else { return }
        let rules = """
            table inet \(Self.lossTable) {
              chain input { type filter hook input priority -100; iifname "eth0" numgen random mod 100 < \(percent) drop; }
              chain output { type filter hook output priority -100; oifname "eth0" numgen random mod 100 < \(percent) drop; }
            }
            """
        try HostCommand.run(
            "ip", ["netns", "exec", ns, "nft", "-f", "-"], input: rules,
            context: "cannot add the packet-loss rules to \(node.name)")
    }

    /// "100mbit", "1gbit", "512kbit", "10mbps" (bytes), or plain bits per second.
    static func bitsPerSecond(_ text: String) throws(LabError) -> Int {
        let s = text.lowercased()
        let units: [(String, Int)] = [
            ("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000), ("gbps", 8_000_000_000),
            ("mbps", 8_000_000), ("kbps", 8_000), ("bit", 1),
        ]
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            if let v = Double(s.dropLast(suffix.count)), v > 0 { return Int(v * Double(factor)) }
        }
        if let v = Int(s), v > 0 { return v }
        throw .invalidArgument("link rate '\(text)' must look like 100mbit, 1gbit, 512kbit or 10mbps")
    }
}
