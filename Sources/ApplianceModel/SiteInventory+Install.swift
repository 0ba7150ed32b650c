import Foundation
import Yams

// The parts of the site that `appliance install` reads: the API endpoint and how it is served, install
// pacing, role policy, preflight waivers, researcher authentication (OIDC) and the private registry.

extension SiteInventory {
    /// Where clients reach the Kubernetes API (kubeadm's `controlPlaneEndpoint`), and who serves it.
    ///
    /// Written in the site as `spec.network.apiEndpoint`, either a string `host[:port]` (a load balancer the
    /// site runs; port 6443 unless given) or a mapping:
    /// `{address, port?, mode: load-balancer|virtual-ip, name?, interface?, virtualRouterID?, unicast?}`.
    /// In `virtual-ip` mode the installer runs keepalived (the address moves between control planes) and
    /// HAProxy (on `port`, 8443 unless given, in front of every API server's 6443) on the control planes.
    public struct APIEndpoint: Sendable, Equatable {
        public enum Mode: String, Sendable, Equatable, CaseIterable {
            /// A load balancer the site runs in front of every control plane's :6443.
            case loadBalancer = "load-balancer"
            /// A virtual IP the installer runs with keepalived + HAProxy on the control planes.
            case virtualIP = "virtual-ip"
        }

        /// The API servers' own port on every control plane (kubeadm's default `bindPort`).
        public static let apiServerPort = 6443
        /// HAProxy's port on the control planes in virtual-ip mode (it cannot share 6443 with the API server).
        public static let defaultVirtualIPPort = 8443
        /// keepalived's `virtual_router_id` when the site names none (the value distributions pre-configure).
        public static let defaultVirtualRouterID = 51

        /// An IPv4 address (required for a virtual IP) or a DNS name (a load balancer).
        public var address: String
        public var port: Int
        public var mode: Mode
        /// A DNS name for the endpoint (`api.ml.example.internal`): used as `controlPlaneEndpoint` instead of
        /// the address, added to the API server's certificate and to every node's `/etc/hosts`.
        public var name: String?
        /// The NIC keepalived announces the virtual IP on; nil: the NIC that carries the node's own address
        /// (found by the install step on each node).
        public var interface: String?
        /// keepalived `virtual_router_id`, 1...255: unique among the VRRP groups of the nodes' network.
        public var virtualRouterID: Int
        /// VRRP by unicast between the control planes' addresses instead of multicast (networks that drop
        /// multicast, most clouds and some switches).
        public var unicast: Bool
        @EqualityIgnored public var location: SourceLocation? = nil

        public init(
            address: String, port: Int? = nil, mode: Mode = .loadBalancer, name: String? = nil,
            interface: String? = nil, virtualRouterID: Int = defaultVirtualRouterID, unicast: Bool = false,
            location: SourceLocation? = nil
        ) {
            self.address = address
            self.port = port ?? (mode == .virtualIP ? Self.defaultVirtualIPPort : Self.apiServerPort)
            self.mode = mode
            self.name = name
            self.interface = interface
            self.virtualRouterID = virtualRouterID
            self.unicast = unicast
            self.location = location
        }

        /// `host:port` as kubeadm's `controlPlaneEndpoint` and join discovery take it.
        public var hostPort: String { "\(name ?? address):\(port)" }
        /// The address as an IPv4 address, if it is one.
        public var ipv4: IPv4Address? { IPv4Address(address) }
    }

    /// `spec.install`: pacing of the install.
    public struct InstallSettings: Sendable, Equatable {
        /// Workers joined at once (control planes always join one at a time).
        public var parallelism: Int
        public static let defaultParallelism = 10
        /// `dcgmi diag -r` level of the GPU validation gate (1-4; nil: 1, or the command line's).
        public var dcgmLevel: Int?
        /// Seconds `helm upgrade --install --wait` waits for one platform release (issue 13; nil: 300).
        public var releaseTimeoutSeconds: Int?
        public static let defaultReleaseTimeoutSeconds = 300
        public init(parallelism: Int = defaultParallelism, dcgmLevel: Int? = nil, releaseTimeoutSeconds: Int? = nil) {
            self.parallelism = parallelism
            self.dcgmLevel = dcgmLevel
            self.releaseTimeoutSeconds = releaseTimeoutSeconds
        }
    }

    /// `spec.roles`: cluster-wide role policy.
    public struct RoleSettings: Sendable, Equatable {
        /// Taint system nodes `NoSchedule` so only the platform's services (which tolerate it) run there.
        public var dedicatedSystemNodes: Bool
        public init(dedicatedSystemNodes: Bool = false) { self.dedicatedSystemNodes = dedicatedSystemNodes }
    }

    /// One accepted preflight failure: the check (on one node, or on all), and why it is acceptable.
    public struct PreflightWaiver: Sendable, Equatable {
        /// A check id (`hw.cpu-count`, `os.release`).
        public var check: String
        /// The node it applies to; nil: every node.
        public var node: String?
        /// Why the operator accepts it; shown and recorded with the result.
        public var reason: String
        @EqualityIgnored public var location: SourceLocation? = nil
        public init(check: String, node: String? = nil, reason: String, location: SourceLocation? = nil) {
            self.check = check
            self.node = node
            self.reason = reason
            self.location = location
        }

        /// Parses the command line's `--waive ID[@NODE]=reason`; nil with the reason when malformed.
        public static func parse(commandLine text: String) -> Result<PreflightWaiver, DiagnosticsError> {
            func fail(_ m: String) -> Result<PreflightWaiver, DiagnosticsError> {
                .failure(DiagnosticsError(subject: "--waive", diagnostics: [Diagnostic(m, at: nil)]))
            }
            guard let eq = text.firstIndex(of: "=") else {
                return fail("'\(text)' must be ID[@NODE]=reason: a waiver needs a reason")
            }
            let target = text[..<eq]
            let reason = text[text.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            let parts = target.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
            let check = String(parts[0])
            let node = parts.count == 2 ? String(parts[1]) : nil
            guard SiteInventory.isCheckID(check) else {
                return fail("'\(check)' must be \(SiteInventory.waiverCheckPattern)")
            }
            if let node, !SiteInventory.isValidNodeName(node) { return fail("'\(node)' is not a node name") }
            guard !reason.isEmpty else { return fail("the waiver of '\(check)' needs a reason after '='") }
            return .success(PreflightWaiver(check: check, node: node, reason: reason))
        }

        /// Whether this waiver covers `check` on `node`.
        public func covers(check: String, node: String) -> Bool {
            self.check == check && (self.node == nil || self.node == node)
        }
    }

    /// `spec.preflight`.
    public struct PreflightSettings: Sendable, Equatable {
        public var waivers: [PreflightWaiver]
        public init(waivers: [PreflightWaiver] = []) { self.waivers = waivers }

        /// The waiver that covers `check` on `node`, a node-specific one first.
        public func waiver(check: String, node: String) -> PreflightWaiver? {
            waivers.first { $0.check == check && $0.node == node }
                ?? waivers.first { $0.covers(check: check, node: node) }
        }
    }

    /// Researcher authentication: the API server's OIDC flags (`--oidc-*`), as the Run:ai guide's
    /// access-control chapter sets them by hand on every control plane.
    public struct OIDCSettings: Sendable, Equatable {
        /// `--oidc-issuer-url`: https only (the API server refuses anything else).
        public var issuerURL: String
        /// `--oidc-client-id`.
        public var clientID: String
        /// `--oidc-username-claim` (API server default `sub`).
        public var usernameClaim: String?
        /// `--oidc-groups-claim`.
        public var groupsClaim: String?
        /// `--oidc-username-prefix` (`-` disables prefixing, as the Run:ai guide sets it).
        public var usernamePrefix: String?
        /// `--oidc-groups-prefix`.
        public var groupsPrefix: String?
        /// PEM CA of the issuer on the admin host (absolute after loading); installed on every control plane
        /// at `nodeCAPath` and passed as `--oidc-ca-file`.
        public var caFile: String?

        /// Where the issuer's CA goes on control planes: under `/etc/kubernetes/pki`, which the API server's
        /// static pod already mounts, so no extra volume is needed.
        public static let nodeCAPath = "/etc/kubernetes/pki/oidc-ca.crt"

        public init(
            issuerURL: String, clientID: String, usernameClaim: String? = nil, groupsClaim: String? = nil,
            usernamePrefix: String? = nil, groupsPrefix: String? = nil, caFile: String? = nil
        ) {
            self.issuerURL = issuerURL
            self.clientID = clientID
            self.usernameClaim = usernameClaim
            self.groupsClaim = groupsClaim
            self.usernamePrefix = usernamePrefix
            self.groupsPrefix = groupsPrefix
            self.caFile = caFile
        }
    }

    /// `spec.auth`.
    public struct AuthSettings: Sendable, Equatable {
        public var oidc: OIDCSettings?
        public init(oidc: OIDCSettings? = nil) { self.oidc = oidc }
    }
}

extension SiteInventory {
    /// The nodes that run the installer's registry (`spec.registry.nodes`, else every system node, else the
    /// first control plane); empty when the site uses an existing registry.
    public var registryHosts: [Host] {
        if let r = registry, r.mode == RegistrySettings.existing { return [] }
        if let names = registry?.nodes, !names.isEmpty { return names.compactMap { host(named: $0) } }
        let system = hosts(withRole: .system)
        if !system.isEmpty { return system }
        return Array(hosts(withRole: .controlPlane).prefix(1))
    }

    /// The control-plane hosts in site order (the first runs `kubeadm init`).
    public var controlPlanes: [Host] { hosts(withRole: .controlPlane) }

    /// The API endpoint clients use: the site's, else the only control plane's address on 6443; nil when
    /// several control planes have none (install validation refuses that).
    public var effectiveAPIEndpoint: APIEndpoint? {
        if let e = network?.endpoint { return e }
        let cps = controlPlanes
        guard cps.count == 1, let cp = cps.first else { return nil }
        return APIEndpoint(address: cp.address, mode: .loadBalancer)
    }
}

extension SiteInventory {
    static let waiverCheckPattern = "a check id like os.release or hw.cpu-count"

    static func isCheckID(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count >= 2
            && parts.allSatisfy { p in
                !p.isEmpty && p.first != "-" && p.last != "-"
                    && p.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
            }
    }

    /// `spec.network.apiEndpoint`, a string or a mapping.
    static func decodeAPIEndpoint(_ v: YAMLValue, hosts: [Host]) -> APIEndpoint? {
        let r = v.reader
        let cpCount = hosts.filter { $0.roles.contains(.controlPlane) }.count
        var endpoint: APIEndpoint?
        if let m = v.mappingIfMapping(allowing: [
            "address", "port", "mode", "name", "interface", "virtualRouterID", "unicast",
        ]) {
            let address = m.require("address")?.nonEmptyString()
            let port = m["port"]?.int(in: 1...65535)
            let mode = m["mode"]?.oneOf(APIEndpoint.Mode.allCases.map(\.rawValue)).flatMap {
                APIEndpoint.Mode(rawValue: $0)
            }
            let name = m["name"]?.nonEmptyString()
            if let n = name, let nv = m["name"], !isDNSName(n) {
                r.error(
                    "'spec.network.apiEndpoint.name' must be a DNS name like api.example.internal, not '\(n)'", at: nv)
            }
            let interface = m["interface"]?.nonEmptyString()
            let vrid = m["virtualRouterID"]?.int(in: 1...255)
            let unicast = m["unicast"]?.bool() ?? false
            guard let address, let av = m["address"] else { return nil }
            let resolvedMode = mode ?? .loadBalancer
            if resolvedMode == .virtualIP {
                if IPv4Address(address) == nil {
                    r.error(
                        "a virtual IP must be an IPv4 address (keepalived moves it between control planes), not '\(address)'",
                        at: av)
                }
                if port == APIEndpoint.apiServerPort, let pv = m["port"] {
                    r.error(
                        "in virtual-ip mode HAProxy runs on the control planes, where the API servers already listen on 6443; use another port (8443 is the default)",
                        at: pv)
                }
            } else {
                if interface != nil || vrid != nil || m.has("unicast") {
                    r.error(
                        "'interface', 'virtualRouterID' and 'unicast' configure keepalived, which runs only in mode virtual-ip",
                        at: m["interface"] ?? m["virtualRouterID"] ?? m["unicast"])
                }
                if IPv4Address(address) == nil && !isDNSName(address) {
                    r.error(
                        "'spec.network.apiEndpoint.address' must be an IPv4 address or DNS name, not '\(address)'",
                        at: av)
                }
            }
            endpoint = APIEndpoint(
                address: address, port: port, mode: resolvedMode, name: name, interface: interface,
                virtualRouterID: vrid ?? APIEndpoint.defaultVirtualRouterID, unicast: unicast, location: v.location)
        } else if let a = v.nonEmptyString() {
            let parts = a.split(separator: ":", omittingEmptySubsequences: false)
            let host = String(parts.first ?? "")
            var port: Int?
            if parts.count == 2, let p = Int(parts[1]), (1...65535).contains(p) {
                port = p
            } else if parts.count != 1 {
                r.error("'spec.network.apiEndpoint' must be host or host:port with a port 1-65535, not '\(a)'", at: v)
                return nil
            }
            if !(HardwareProfile.isIPv4(host) || isDNSName(host)) {
                r.error(
                    "'spec.network.apiEndpoint' must be an IPv4 address or DNS name, optionally with :port, not '\(a)'",
                    at: v)
                return nil
            }
            endpoint = APIEndpoint(address: host, port: port, mode: .loadBalancer, location: v.location)
        }
        if let e = endpoint, hosts.contains(where: { $0.address == e.address }), cpCount > 1 {
            r.error(
                "'spec.network.apiEndpoint' is one node's address; with several control-plane nodes use a load balancer or a virtual IP (mode: virtual-ip)",
                at: v)
        }
        return endpoint
    }

    static func decodeInstall(_ v: YAMLValue) -> InstallSettings {
        guard let m = v.mapping(allowing: ["parallelism", "dcgmLevel", "releaseTimeoutSeconds"]) else {
            return InstallSettings()
        }
        return InstallSettings(
            parallelism: m["parallelism"]?.int(in: 1...1024) ?? InstallSettings.defaultParallelism,
            dcgmLevel: m["dcgmLevel"]?.int(in: 1...4),
            releaseTimeoutSeconds: m["releaseTimeoutSeconds"]?.int(in: 10...7200))
    }

    static func decodeRoles(_ v: YAMLValue) -> RoleSettings {
        guard let m = v.mapping(allowing: ["dedicatedSystemNodes"]) else { return RoleSettings() }
        return RoleSettings(dedicatedSystemNodes: m["dedicatedSystemNodes"]?.bool() ?? false)
    }

    static func decodePreflight(_ v: YAMLValue, hosts: [Host]) -> PreflightSettings {
        let r = v.reader
        guard let m = v.mapping(allowing: ["waivers"]) else { return PreflightSettings() }
        var waivers: [PreflightWaiver] = []
        for item in m["waivers"]?.sequence() ?? [] {
            guard let w = item.mapping(allowing: ["check", "node", "reason"]) else { continue }
            let check = w.require("check")?.nonEmptyString()
            if let c = check, let cv = w["check"], !isCheckID(c) {
                r.error("\(cv.displayPath) must be \(waiverCheckPattern), not '\(c)'", at: cv)
            }
            let node = w["node"]?.nonEmptyString()
            if let n = node, let nv = w["node"], !hosts.isEmpty, !hosts.contains(where: { $0.name == n }) {
                r.error(
                    "waiver names node '\(n)', which is not in spec.hosts (known: \(hosts.map(\.name).joined(separator: ", ")))",
                    at: nv)
            }
            let reason = w.require("reason")?.nonEmptyString()
            guard let check, let reason else { continue }
            if waivers.contains(where: { $0.check == check && $0.node == node }) {
                r.error("check '\(check)'\(node.map { " on \($0)" } ?? "") is waived twice", at: item)
            }
            waivers.append(PreflightWaiver(check: check, node: node, reason: reason, location: item.location))
        }
        return PreflightSettings(waivers: waivers)
    }

    static func decodeAuth(_ v: YAMLValue, baseDirectory: String) -> AuthSettings? {
        let r = v.reader
        guard let m = v.mapping(allowing: ["oidc"]) else { return nil }
        guard
            let o = m.require("oidc")?.mapping(allowing: [
                "issuerURL", "clientID", "usernameClaim", "groupsClaim", "usernamePrefix", "groupsPrefix", "caFile",
            ])
        else { return AuthSettings() }
        let issuer = o.require("issuerURL")?.nonEmptyString()
        if let i = issuer, let iv = o["issuerURL"] {
            let ok = URL(string: i).map { $0.scheme == "https" && !($0.host ?? "").isEmpty } ?? false
            if !ok {
                r.error(
                    "'spec.auth.oidc.issuerURL' must be an https:// URL (the API server accepts no other), not '\(i)'",
                    at: iv)
            }
        }
        let client = o.require("clientID")?.nonEmptyString()
        func optional(_ key: String) -> String? { o[key]?.nonEmptyString() }
        let ca = o["caFile"].flatMap { existingFile($0, key: "spec.auth.oidc.caFile", base: baseDirectory) }
        guard let issuer, let client else { return AuthSettings() }
        return AuthSettings(
            oidc: OIDCSettings(
                issuerURL: issuer, clientID: client, usernameClaim: optional("usernameClaim"),
                groupsClaim: optional("groupsClaim"), usernamePrefix: optional("usernamePrefix"),
                groupsPrefix: optional("groupsPrefix"), caFile: ca))
    }

    /// A path to a file on the admin host, made absolute; a missing file is reported.
    static func existingFile(_ v: YAMLValue, key: String, base: String) -> String? {
        guard let s = v.nonEmptyString() else { return nil }
        let path = absolute(s, base: base)
        if !FileManager.default.fileExists(atPath: path) {
            v.reader.error("'\(key)' names \(path), which does not exist", at: v)
        }
        return path
    }

    /// YAML pairs for the install sections, used by `yaml()`.
    func installTrees() -> [(String, YAMLTree)] {
        var out: [(String, YAMLTree)] = []
        if install != InstallSettings() {
            var pairs: [(String, YAMLTree)] = [("parallelism", .int(install.parallelism))]
            if let l = install.dcgmLevel { pairs.append(("dcgmLevel", .int(l))) }
            if let t = install.releaseTimeoutSeconds { pairs.append(("releaseTimeoutSeconds", .int(t))) }
            out.append(("install", .map(pairs)))
        }
        if roles != RoleSettings() {
            out.append(("roles", .map([("dedicatedSystemNodes", .bool(roles.dedicatedSystemNodes))])))
        }
        if !preflight.waivers.isEmpty {
            let items: [YAMLTree] = preflight.waivers.map { w in
                var p: [(String, YAMLTree)] = [("check", .string(w.check))]
                if let n = w.node { p.append(("node", .string(n))) }
                p.append(("reason", .string(w.reason)))
                return .map(p)
            }
            out.append(("preflight", .map([("waivers", .list(items))])))
        }
        if let o = auth?.oidc {
            var p: [(String, YAMLTree)] = [("issuerURL", .string(o.issuerURL)), ("clientID", .string(o.clientID))]
            for (k, v) in [
                ("usernameClaim", o.usernameClaim), ("groupsClaim", o.groupsClaim),
                ("usernamePrefix", o.usernamePrefix), ("groupsPrefix", o.groupsPrefix), ("caFile", o.caFile),
            ] {
                if let v { p.append((k, .string(v))) }
            }
            out.append(("auth", .map([("oidc", .map(p))])))
        }
        return out
    }
}

extension YAMLValue {
    /// The value as a checked mapping when it is one; nil (and nothing reported) when it is not.
    func mappingIfMapping(allowing keys: [String]) -> YAMLMapping? {
        guard case .mapping = node else { return nil }
        return mapping(allowing: keys)
    }
}

extension YAMLValue {
    /// The scalar's text when the value is a scalar; nil otherwise (nothing reported).
    var scalarText: String? {
        guard case .scalar(let s) = node else { return nil }
        return s.string
    }
}
