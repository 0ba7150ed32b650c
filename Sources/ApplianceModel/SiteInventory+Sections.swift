import Foundation

extension SiteInventory {
    public struct NetworkSettings: Sendable, Equatable {
        /// The platform's DNS domain; `*.domain` must resolve to the ingress.
        public var domain: String
        /// The Kubernetes API endpoint as `host[:port]` text (what preflight resolves); `endpoint` has the
        /// parsed form with the mode.
        public var apiEndpoint: String
        /// The API endpoint and how it is served (load balancer or installer-run virtual IP).
        public var endpoint: APIEndpoint?
        public var podCIDR: String?
        public var serviceCIDR: String?
        /// The nodes' own network (`10.0.0.0/24`); needed for a virtual IP (keepalived adds it with this
        /// prefix length), and checked against the pod and service CIDRs.
        public var nodeCIDR: String?
        /// The MTU every cluster NIC must have.
        public var mtu: Int?
        /// NTP servers the nodes should follow.
        public var ntpServers: [String]
        public var dnsServers: [String]
        /// Where `podCIDR`, `serviceCIDR` and `nodeCIDR` were written, for install validation's messages.
        @EqualityIgnored public var podCIDRLocation: SourceLocation? = nil
        @EqualityIgnored public var serviceCIDRLocation: SourceLocation? = nil
        @EqualityIgnored public var nodeCIDRLocation: SourceLocation? = nil
        public init(
            domain: String, apiEndpoint: String, endpoint: APIEndpoint? = nil, podCIDR: String? = nil,
            serviceCIDR: String? = nil, nodeCIDR: String? = nil, mtu: Int? = nil, ntpServers: [String] = [],
            dnsServers: [String] = []
        ) {
            self.domain = domain
            self.apiEndpoint = apiEndpoint
            self.endpoint = endpoint
            self.podCIDR = podCIDR
            self.serviceCIDR = serviceCIDR
            self.nodeCIDR = nodeCIDR
            self.mtu = mtu
            self.ntpServers = ntpServers
            self.dnsServers = dnsServers
        }
    }

    public struct TLSSettings: Sendable, Equatable {
        /// PEM files, absolute after loading.
        public var certificateFile: String
        public var keyFile: String
        public var caFile: String
        public init(certificateFile: String, keyFile: String, caFile: String) {
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.caFile = caFile
        }
    }

    public struct StorageSettings: Sendable, Equatable {
        public var nfsServer: String
        public var nfsPath: String
        public var mountOptions: String?
        public init(nfsServer: String, nfsPath: String, mountOptions: String? = nil) {
            self.nfsServer = nfsServer
            self.nfsPath = nfsPath
            self.mountOptions = mountOptions
        }
    }

    /// `spec.registry`: the installer's own registry on the cluster's nodes (`in-cluster`, seeded from the
    /// bundle) or an `existing` one the site runs, which must already hold the bundle's images under their full
    /// upstream names (`registry.k8s.io/pause`, `docker.io/library/busybox`), as the in-cluster one does.
    public struct RegistrySettings: Sendable, Equatable {
        public static let inCluster = "in-cluster"
        public static let existing = "existing"
        /// The installer's registry listens here on its nodes.
        public static let defaultPort = 5000

        /// `in-cluster` (seeded from the bundle) or `existing`.
        public var mode: String
        /// `host[:port]` of an existing registry.
        public var endpoint: String?
        /// PEM CA: of an existing registry, or the CA that signed `certificateFile` (absolute after loading).
        /// Installed as trusted on every node. Without it (in-cluster) the installer issues a CA of its own.
        public var caFile: String?
        /// PEM server certificate and key for the in-cluster registry, when the site issues them itself;
        /// without them the installer issues one from its CA (absolute after loading).
        public var certificateFile: String?
        public var keyFile: String?
        /// Port of the in-cluster registry (5000 unless given).
        public var port: Int
        /// Which hosts run the in-cluster registry; empty: every system node, else the first control plane.
        public var nodes: [String]
        public init(
            mode: String, endpoint: String? = nil, caFile: String? = nil, certificateFile: String? = nil,
            keyFile: String? = nil, port: Int = defaultPort, nodes: [String] = []
        ) {
            self.mode = mode
            self.endpoint = endpoint
            self.caFile = caFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.port = port
            self.nodes = nodes
        }
    }

    static func decodeNetwork(_ v: YAMLValue, hosts: [Host]) -> NetworkSettings? {
        let r = v.reader
        guard
            let m = v.mapping(allowing: [
                "domain", "apiEndpoint", "podCIDR", "serviceCIDR", "nodeCIDR", "mtu", "ntpServers", "dnsServers",
            ])
        else { return nil }
        let domain = m.require("domain")?.nonEmptyString()
        if let d = domain, let dv = m["domain"], !isDNSName(d) {
            r.error("'spec.network.domain' must be a DNS name like ml.example.internal, not '\(d)'", at: dv)
        }
        let endpoint = m.require("apiEndpoint").flatMap { decodeAPIEndpoint($0, hosts: hosts) }
        let pod = m["podCIDR"].flatMap { HardwareProfile.cidr($0) }
        let svc = m["serviceCIDR"].flatMap { HardwareProfile.cidr($0) }
        let nodes = m["nodeCIDR"].flatMap { HardwareProfile.cidr($0) }
        if let pod, let svc, cidrsOverlap(pod, svc) {
            r.error("'spec.network.podCIDR' \(pod) overlaps 'serviceCIDR' \(svc)", at: m["podCIDR"])
        }
        let mtu = m["mtu"]?.int(in: 1280...9216)
        let ntp = m["ntpServers"]?.stringList() ?? []
        let dns = m["dnsServers"]?.stringList() ?? []
        guard let domain, let endpoint else { return nil }
        // The text form as written (string form), or address:port (mapping form).
        let text = m["apiEndpoint"]?.scalarText ?? "\(endpoint.address):\(endpoint.port)"
        var n = NetworkSettings(
            domain: domain, apiEndpoint: text, endpoint: endpoint, podCIDR: pod, serviceCIDR: svc, nodeCIDR: nodes,
            mtu: mtu, ntpServers: ntp, dnsServers: dns)
        n.podCIDRLocation = m["podCIDR"]?.location
        n.serviceCIDRLocation = m["serviceCIDR"]?.location
        n.nodeCIDRLocation = m["nodeCIDR"]?.location
        return n
    }

    static func decodeTLS(_ v: YAMLValue, baseDirectory: String) -> TLSSettings? {
        guard let m = v.mapping(allowing: ["certificate", "key", "ca"]) else { return nil }
        func file(_ key: String) -> String? {
            guard let fv = m.require(key), let s = fv.nonEmptyString() else { return nil }
            let path = absolute(s, base: baseDirectory)
            if !FileManager.default.fileExists(atPath: path) {
                v.reader.error("'spec.tls.\(key)' names \(path), which does not exist", at: fv)
            }
            return path
        }
        let c = file("certificate"), k = file("key"), ca = file("ca")
        guard let c, let k, let ca else { return nil }
        return TLSSettings(certificateFile: c, keyFile: k, caFile: ca)
    }

    static func decodeStorage(_ v: YAMLValue) -> StorageSettings? {
        guard let m = v.mapping(allowing: ["nfs"]),
            let n = m.require("nfs")?.mapping(allowing: ["server", "path", "mountOptions"])
        else { return nil }
        let server = n.require("server")?.nonEmptyString()
        let path = n.require("path")?.nonEmptyString()
        if let p = path, !p.hasPrefix("/"), let pv = n["path"] {
            v.reader.error("'spec.storage.nfs.path' must be an absolute export path, not '\(p)'", at: pv)
        }
        guard let server, let path else { return nil }
        return StorageSettings(nfsServer: server, nfsPath: path, mountOptions: n["mountOptions"]?.nonEmptyString())
    }

    static func decodeRegistry(_ v: YAMLValue, baseDirectory: String, hosts: [Host] = []) -> RegistrySettings? {
        let r = v.reader
        guard let m = v.mapping(allowing: ["mode", "endpoint", "ca", "certificate", "key", "port", "nodes"]) else {
            return nil
        }
        let mode = m.require("mode")?.oneOf([RegistrySettings.inCluster, RegistrySettings.existing])
        let endpoint = m["endpoint"]?.nonEmptyString()
        if mode == RegistrySettings.existing && endpoint == nil {
            r.error("'spec.registry.endpoint' is required when mode is 'existing'", at: v)
        }
        if mode == RegistrySettings.inCluster, let ev = m["endpoint"] {
            r.error(
                "'spec.registry.endpoint' names an existing registry (mode: existing); the in-cluster registry runs on 'nodes'",
                at: ev)
        }
        let ca = m["ca"].flatMap { existingFile($0, key: "spec.registry.ca", base: baseDirectory) }
        let cert = m["certificate"].flatMap { existingFile($0, key: "spec.registry.certificate", base: baseDirectory) }
        let key = m["key"].flatMap { existingFile($0, key: "spec.registry.key", base: baseDirectory) }
        if mode == RegistrySettings.existing, let bad = m["certificate"] ?? m["key"] ?? m["port"] ?? m["nodes"] {
            r.error(
                "'certificate', 'key', 'port' and 'nodes' configure the registry the installer runs (mode: in-cluster); an existing registry needs only 'endpoint' and 'ca'",
                at: bad)
        }
        if (cert == nil) != (key == nil), m.has("certificate") != m.has("key") {
            r.error("'spec.registry.certificate' and 'key' go together", at: m["certificate"] ?? m["key"])
        }
        if cert != nil, ca == nil, !m.has("ca") {
            r.error(
                "'spec.registry.ca' is required with a site certificate: every node must trust the CA that signed it",
                at: m["certificate"])
        }
        let port = m["port"]?.int(in: 1...65535) ?? RegistrySettings.defaultPort
        var nodes: [String] = []
        if let nv = m["nodes"], let list = nv.stringList() {
            for n in list where !hosts.isEmpty && !hosts.contains(where: { $0.name == n }) {
                r.error("'spec.registry.nodes' names '\(n)', which is not in spec.hosts", at: nv)
            }
            nodes = list
        }
        guard let mode else { return nil }
        return RegistrySettings(
            mode: mode, endpoint: endpoint, caFile: ca, certificateFile: cert, keyFile: key, port: port, nodes: nodes)
    }

    public static func isDNSName(_ s: String) -> Bool {
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        return s.count <= 253 && !labels.isEmpty
            && labels.allSatisfy {
                isValidNodeName(String($0)) || (String($0).lowercased() == String($0) && isValidNodeName(String($0)))
            }
    }

    static func cidrsOverlap(_ a: String, _ b: String) -> Bool {
        guard let x = IPv4CIDR(a), let y = IPv4CIDR(b) else { return false }
        return x.overlaps(y)
    }

    /// YAML pairs for the optional sections, used by `yaml()`.
    func sectionTrees() -> [(String, YAMLTree)] {
        var out: [(String, YAMLTree)] = []
        if let n = network {
            var p: [(String, YAMLTree)] = [("domain", .string(n.domain))]
            if let e = n.endpoint, e.mode == .virtualIP || e.name != nil {
                var ep: [(String, YAMLTree)] = [
                    ("address", .string(e.address)), ("port", .int(e.port)), ("mode", .string(e.mode.rawValue)),
                ]
                if let name = e.name { ep.append(("name", .string(name))) }
                if e.mode == .virtualIP {
                    if let i = e.interface { ep.append(("interface", .string(i))) }
                    ep.append(("virtualRouterID", .int(e.virtualRouterID)))
                    if e.unicast { ep.append(("unicast", .bool(true))) }
                }
                p.append(("apiEndpoint", .map(ep)))
            } else {
                p.append(("apiEndpoint", .string(n.apiEndpoint)))
            }
            if let c = n.podCIDR { p.append(("podCIDR", .string(c))) }
            if let c = n.serviceCIDR { p.append(("serviceCIDR", .string(c))) }
            if let c = n.nodeCIDR { p.append(("nodeCIDR", .string(c))) }
            if let m = n.mtu { p.append(("mtu", .int(m))) }
            if !n.ntpServers.isEmpty { p.append(("ntpServers", .list(n.ntpServers.map { .string($0) }))) }
            if !n.dnsServers.isEmpty { p.append(("dnsServers", .list(n.dnsServers.map { .string($0) }))) }
            out.append(("network", .map(p)))
        }
        if let t = tls {
            out.append(
                (
                    "tls",
                    .map([
                        ("certificate", .string(t.certificateFile)), ("key", .string(t.keyFile)),
                        ("ca", .string(t.caFile)),
                    ])
                ))
        }
        if let s = storage {
            var p: [(String, YAMLTree)] = [("server", .string(s.nfsServer)), ("path", .string(s.nfsPath))]
            if let o = s.mountOptions { p.append(("mountOptions", .string(o))) }
            out.append(("storage", .map([("nfs", .map(p))])))
        }
        if let g = registry {
            var p: [(String, YAMLTree)] = [("mode", .string(g.mode))]
            if let e = g.endpoint { p.append(("endpoint", .string(e))) }
            if let c = g.caFile { p.append(("ca", .string(c))) }
            if let c = g.certificateFile { p.append(("certificate", .string(c))) }
            if let k = g.keyFile { p.append(("key", .string(k))) }
            if g.mode == RegistrySettings.inCluster && g.port != RegistrySettings.defaultPort {
                p.append(("port", .int(g.port)))
            }
            if !g.nodes.isEmpty { p.append(("nodes", .list(g.nodes.map { .string($0) }))) }
            out.append(("registry", .map(p)))
        }
        return out
    }
}
