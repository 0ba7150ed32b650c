import Foundation

extension SiteInventory {
    public struct NetworkSettings: Sendable, Equatable {
        /// The platform's DNS domain; `*.domain` must resolve to the ingress.
        public var domain: String
        /// The Kubernetes API endpoint: a virtual IP or `host:port` of a load balancer.
        public var apiEndpoint: String
        public var podCIDR: String?
        public var serviceCIDR: String?
        /// The MTU every cluster NIC must have.
        public var mtu: Int?
        /// NTP servers the nodes should follow.
        public var ntpServers: [String]
        public var dnsServers: [String]
        public init(
            domain: String, apiEndpoint: String, podCIDR: String? = nil, serviceCIDR: String? = nil, mtu: Int? = nil,
            ntpServers: [String] = [], dnsServers: [String] = []
        ) {
            self.domain = domain
            self.apiEndpoint = apiEndpoint
            self.podCIDR = podCIDR
            self.serviceCIDR = serviceCIDR
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

    public struct RegistrySettings: Sendable, Equatable {
        /// `in-cluster` (seeded from the bundle) or `existing`.
        public var mode: String
        /// `host[:port]` of an existing registry.
        public var endpoint: String?
        /// PEM CA of an existing registry, absolute after loading.
        public var caFile: String?
        public init(mode: String, endpoint: String? = nil, caFile: String? = nil) {
            self.mode = mode
            self.endpoint = endpoint
            self.caFile = caFile
        }
    }

    static func decodeNetwork(_ v: YAMLValue, hosts: [Host]) -> NetworkSettings? {
        let r = v.reader
        guard
            let m = v.mapping(allowing: [
                "domain", "apiEndpoint", "podCIDR", "serviceCIDR", "mtu", "ntpServers", "dnsServers",
            ])
        else { return nil }
        let domain = m.require("domain")?.nonEmptyString()
        if let d = domain, let dv = m["domain"], !isDNSName(d) {
            r.error("'spec.network.domain' must be a DNS name like ml.example.internal, not '\(d)'", at: dv)
        }
        let api = m.require("apiEndpoint")?.nonEmptyString()
        if let a = api, let av = m["apiEndpoint"] {
            let hostPart = a.split(separator: ":").first.map(String.init) ?? a
            if !(HardwareProfile.isIPv4(hostPart) || isDNSName(hostPart)) {
                r.error(
                    "'spec.network.apiEndpoint' must be an IPv4 address or DNS name, optionally with :port, not '\(a)'",
                    at: av)
            }
            if hosts.contains(where: { $0.address == hostPart })
                && hosts.filter({ $0.roles.contains(.controlPlane) }).count > 1
            {
                r.error(
                    "'spec.network.apiEndpoint' is one node's address; with several control-plane nodes use a virtual IP",
                    at: av)
            }
        }
        let pod = m["podCIDR"].flatMap { HardwareProfile.cidr($0) }
        let svc = m["serviceCIDR"].flatMap { HardwareProfile.cidr($0) }
        if let pod, let svc, cidrsOverlap(pod, svc) {
            r.error("'spec.network.podCIDR' \(pod) overlaps 'serviceCIDR' \(svc)", at: m["podCIDR"])
        }
        let mtu = m["mtu"]?.int(in: 1280...9216)
        let ntp = m["ntpServers"]?.stringList() ?? []
        let dns = m["dnsServers"]?.stringList() ?? []
        guard let domain, let api else { return nil }
        return NetworkSettings(
            domain: domain, apiEndpoint: api, podCIDR: pod, serviceCIDR: svc, mtu: mtu, ntpServers: ntp, dnsServers: dns
        )
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

    static func decodeRegistry(_ v: YAMLValue, baseDirectory: String) -> RegistrySettings? {
        guard let m = v.mapping(allowing: ["mode", "endpoint", "ca"]) else { return nil }
        let mode = m.require("mode")?.oneOf(["in-cluster", "existing"])
        let endpoint = m["endpoint"]?.nonEmptyString()
        if mode == "existing" && endpoint == nil {
            v.reader.error("'spec.registry.endpoint' is required when mode is 'existing'", at: v)
        }
        let ca = m["ca"]?.nonEmptyString().map { absolute($0, base: baseDirectory) }
        guard let mode else { return nil }
        return RegistrySettings(mode: mode, endpoint: endpoint, caFile: ca)
    }

    public static func isDNSName(_ s: String) -> Bool {
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        return s.count <= 253 && !labels.isEmpty
            && labels.allSatisfy {
                isValidNodeName(String($0)) || (String($0).lowercased() == String($0) && isValidNodeName(String($0)))
            }
    }

    static func cidrsOverlap(_ a: String, _ b: String) -> Bool {
        func range(_ c: String) -> (UInt32, UInt32)? {
            let p = c.split(separator: "/")
            guard p.count == 2, let bits = UInt32(p[1]) else { return nil }
            let o = p[0].split(separator: ".").compactMap { UInt32($0) }
            guard o.count == 4 else { return nil }
            let ip = o[0] << 24 | o[1] << 16 | o[2] << 8 | o[3]
            let mask: UInt32 = bits == 0 ? 0 : ~UInt32(0) << (32 - bits)
            return (ip & mask, (ip & mask) | ~mask)
        }
        guard let x = range(a), let y = range(b) else { return false }
        return x.0 <= y.1 && y.0 <= x.1
    }

    /// YAML pairs for the optional sections, used by `yaml()`.
    func sectionTrees() -> [(String, YAMLTree)] {
        var out: [(String, YAMLTree)] = []
        if let n = network {
            var p: [(String, YAMLTree)] = [("domain", .string(n.domain)), ("apiEndpoint", .string(n.apiEndpoint))]
            if let c = n.podCIDR { p.append(("podCIDR", .string(c))) }
            if let c = n.serviceCIDR { p.append(("serviceCIDR", .string(c))) }
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
            out.append(("registry", .map(p)))
        }
        return out + preflightTree()
    }
}
