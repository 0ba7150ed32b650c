/// The checks `appliance install` makes on a loaded site against its profile before touching any node.
///
/// Loading a site already checks its shape (fields, types, names); this checks what only makes sense for an
/// install: etcd quorum, address plans, the API endpoint. Every problem is reported at once, positioned at
/// the site field to change (`file:line:column`), with the reason.
public enum InstallValidation {
    /// Control-plane counts an install accepts (etcd members: odd, and at most 5).
    public static let controlPlaneCounts = [1, 3, 5]

    public static func validate(site: SiteInventory, profile: HardwareProfile) -> [Diagnostic] {
        var out: [Diagnostic] = []
        let siteFile = site.sourcePath ?? "site file"
        let siteTop = SourceLocation(file: siteFile, line: 1, column: 1)
        let hostsAt = site.hosts.first?.location ?? siteTop
        func error(_ message: String, at location: SourceLocation?) {
            out.append(Diagnostic(message, at: location ?? siteTop))
        }

        // etcd quorum: members needed = n/2 + 1; failures tolerated = n - quorum.
        let cps = site.controlPlanes
        if !controlPlaneCounts.contains(cps.count) {
            let n = cps.count
            let quorum = n / 2 + 1
            let reason: String
            switch n {
            case 0:
                reason = "a cluster needs at least one control-plane node"
            case 2, 4:
                let tolerated = n - quorum
                let next = (n + 1) - ((n + 1) / 2 + 1)
                reason =
                    "etcd needs a quorum of \(quorum) of \(n) members (n/2+1), so \(n) tolerate \(tolerated) failure\(tolerated == 1 ? "" : "s"), the same as \(n - 1), with one more machine that can fail; use \(n - 1), or \(n + 1) (which tolerate \(next))"
            default:
                reason =
                    "more than 5 etcd members make every write wait for \(quorum) of them and add no useful tolerance; use 3 or 5"
            }
            error("\(n) control-plane node\(n == 1 ? "" : "s"): \(reason)", at: cps.last?.location ?? hostsAt)
        }

        // Every host's role must be defined by the profile.
        for h in site.hosts {
            for role in h.roles where profile.roles[role] == nil {
                error(
                    "host '\(h.name)' has the role '\(role.rawValue)', which profile '\(profile.name)' does not define",
                    at: h.location)
            }
        }

        // A host name or address named twice (any port: two Kubernetes nodes cannot share an address).
        var names: [String: SiteInventory.Host] = [:]
        var addresses: [String: SiteInventory.Host] = [:]
        for h in site.hosts {
            if let first = names[h.name] {
                error(
                    "host name '\(h.name)' is used twice (first at \(first.location?.description ?? "?"))",
                    at: h.location)
            } else {
                names[h.name] = h
            }
            if let first = addresses[h.address] {
                error(
                    "address \(h.address) is named twice ('\(first.name)' and '\(h.name)'); each node needs its own address",
                    at: h.location)
            } else {
                addresses[h.address] = h
            }
        }

        // Address plan.
        let network = site.network
        let networkAt = network?.endpoint?.location
        let pod = (network?.podCIDR ?? profile.kubernetes.podCIDR, network?.podCIDR != nil)
        let svc = (network?.serviceCIDR ?? profile.kubernetes.serviceCIDR, network?.serviceCIDR != nil)
        let podAt = network?.podCIDRLocation ?? networkAt ?? siteTop
        let svcAt = network?.serviceCIDRLocation ?? networkAt ?? siteTop
        let podCIDR = IPv4CIDR(pod.0)
        let svcCIDR = IPv4CIDR(svc.0)
        let podText = "pod CIDR \(pod.0)" + (pod.1 ? "" : " (from profile '\(profile.name)')")
        let svcText = "service CIDR \(svc.0)" + (svc.1 ? "" : " (from profile '\(profile.name)')")
        if podCIDR == nil { error("\(podText) is not an IPv4 CIDR", at: podAt) }
        if svcCIDR == nil { error("\(svcText) is not an IPv4 CIDR", at: svcAt) }
        if let p = podCIDR, let s = svcCIDR, p.overlaps(s) {
            error(
                "\(podText) overlaps \(svcText): pod and service addresses would be ambiguous; pick disjoint ranges",
                at: pod.1 ? podAt : svcAt)
        }
        let nodeCIDR = network?.nodeCIDR.flatMap { IPv4CIDR($0) }
        for (cidr, text, at) in [(podCIDR, podText, podAt), (svcCIDR, svcText, svcAt)] {
            guard let cidr else { continue }
            if let n = nodeCIDR, cidr.overlaps(n) {
                error("\(text) overlaps the nodes' network \(n): node traffic would be routed into the cluster", at: at)
            }
            for h in site.hosts {
                guard let a = IPv4Address(h.address), cidr.contains(a) else { continue }
                error(
                    "host '\(h.name)' address \(a) is inside the \(text): node traffic would be routed into the cluster",
                    at: h.location)
            }
        }
        if let n = nodeCIDR {
            for h in site.hosts {
                guard let a = IPv4Address(h.address), !n.contains(a) else { continue }
                error(
                    "host '\(h.name)' address \(a) is outside the nodes' network \(n) (spec.network.nodeCIDR)",
                    at: h.location)
            }
        }

        // The API endpoint.
        let endpoint = network?.endpoint
        if endpoint == nil && cps.count > 1 {
            error(
                "\(cps.count) control-plane nodes need a stable API endpoint for joins and clients: set spec.network.apiEndpoint to a load balancer or a virtual IP (mode: virtual-ip)",
                at: cps.dropFirst().first?.location ?? hostsAt)
        }
        if let e = endpoint, e.mode == .virtualIP {
            let at = e.location
            if let vip = e.ipv4 {
                if let h = site.hosts.first(where: { IPv4Address($0.address) == vip }) {
                    error(
                        "the virtual IP \(vip) is host '\(h.name)''s own address; pick a free address in the nodes' network",
                        at: at)
                }
                if let n = nodeCIDR {
                    if !n.contains(vip) {
                        error(
                            "the virtual IP \(vip) is outside the nodes' network \(n): keepalived can only move an address within the control planes' subnet",
                            at: at)
                    } else if vip == n.network || (n.prefixLength < 31 && vip == n.last) {
                        error("the virtual IP \(vip) is the network or broadcast address of \(n)", at: at)
                    }
                } else {
                    error(
                        "a virtual IP needs spec.network.nodeCIDR (the control planes' subnet, e.g. 10.0.0.0/24): keepalived adds the address with that prefix and it must be checked to lie in it",
                        at: at)
                }
                for (cidr, text) in [(podCIDR, podText), (svcCIDR, svcText)] {
                    if let c = cidr, c.contains(vip) { error("the virtual IP \(vip) is inside the \(text)", at: at) }
                }
            }
            // One control plane behind a virtual IP is allowed: control planes can be added later without
            // changing the endpoint every node and kubeconfig already use.
        } else if let e = endpoint, let a = e.ipv4 {
            for (cidr, text) in [(podCIDR, podText), (svcCIDR, svcText)] {
                if let c = cidr, c.contains(a) { error("the API endpoint \(a) is inside the \(text)", at: e.location) }
            }
            if cps.count > 1, let h = site.hosts.first(where: { $0.address == e.address }) {
                error(
                    "the API endpoint is host '\(h.name)''s own address; with \(cps.count) control planes it must be a load balancer or a virtual IP",
                    at: e.location)
            }
        }

        // Waivers must name known nodes.
        for w in site.preflight.waivers {
            if let n = w.node, site.host(named: n) == nil {
                error(
                    "the waiver of '\(w.check)' names node '\(n)', which is not in spec.hosts (known: \(site.hosts.map(\.name).joined(separator: ", ")))",
                    at: w.location)
            }
        }

        // Registry nodes must be hosts.
        if let r = site.registry {
            for n in r.nodes where site.host(named: n) == nil {
                error("spec.registry.nodes names '\(n)', which is not in spec.hosts", at: hostsAt)
            }
        }
        return out
    }
}
