import Foundation

/// The operator's description of a site: which machines, how to reach them, and what they are for.
///
/// A Kubernetes-style document (`apiVersion: appliance.dev/v1alpha1`, `kind: Site`). Loaded with every
/// problem reported at once by `file:line:column`. `ApplianceModel` only describes and validates;
/// it never connects anywhere.
public struct SiteInventory: Sendable, Equatable {
    public static let apiVersion = "appliance.dev/v1alpha1"
    public static let kind = "Site"

    public var name: String
    public var profile: String?
    public var ssh: SSHSettings
    public var hosts: [Host]
    /// Cluster network: domain, API endpoint, pod/service CIDRs, MTU (optional in the file).
    public var network: NetworkSettings?
    /// Certificate, key and CA for the platform's wildcard domain.
    public var tls: TLSSettings?
    /// NFS export for the dataset cache.
    public var storage: StorageSettings?
    /// In-cluster registry, or an existing one.
    public var registry: RegistrySettings?
    /// Install pacing (`spec.install`).
    public var install: InstallSettings
    /// Role policy (`spec.roles`).
    public var roles: RoleSettings
    /// Accepted preflight failures, each with a reason (`spec.preflight.waivers`).
    public var preflight: PreflightSettings
    /// Researcher authentication (`spec.auth.oidc`).
    public var auth: AuthSettings?
    /// The platform control plane's queues and storage (`spec.platform`); nil: no platform section.
    public var platform: PlatformSettings?
    /// What `appliance support-bundle` also removes (`spec.supportBundle.redact`).
    public var supportBundle: SupportBundleSettings = SupportBundleSettings()
    /// The file this site was read from (relative paths in it are resolved against its folder).
    public var sourcePath: String?

    public init(
        name: String, profile: String?, ssh: SSHSettings, hosts: [Host], network: NetworkSettings? = nil,
        tls: TLSSettings? = nil, storage: StorageSettings? = nil, registry: RegistrySettings? = nil,
        install: InstallSettings = InstallSettings(), roles: RoleSettings = RoleSettings(),
        preflight: PreflightSettings = PreflightSettings(), auth: AuthSettings? = nil,
        platform: PlatformSettings? = nil, sourcePath: String? = nil
    ) {
        self.platform = platform
        self.install = install
        self.roles = roles
        self.preflight = preflight
        self.auth = auth
        self.network = network
        self.tls = tls
        self.storage = storage
        self.registry = registry
        self.name = name
        self.profile = profile
        self.ssh = ssh
        self.hosts = hosts
        self.sourcePath = sourcePath
    }

    public struct Host: Sendable, Equatable {
        public var name: String
        public var address: String
        public var port: Int?
        public var user: String?
        public var roles: [NodeRole]
        /// Pinned host key fingerprints (`SHA256:...`), checked in addition to known_hosts.
        public var hostKeyFingerprints: [String]
        public var location: SourceLocation?

        public init(
            name: String, address: String, port: Int? = nil, user: String? = nil, roles: [NodeRole],
            hostKeyFingerprints: [String] = [], location: SourceLocation? = nil
        ) {
            self.name = name
            self.address = address
            self.port = port
            self.user = user
            self.roles = roles
            self.hostKeyFingerprints = hostKeyFingerprints
            self.location = location
        }
    }

    public struct JumpHost: Sendable, Equatable {
        public var address: String
        public var port: Int
        public var user: String?
        public var hostKeyFingerprints: [String]

        public init(address: String, port: Int = 22, user: String? = nil, hostKeyFingerprints: [String] = []) {
            self.address = address
            self.port = port
            self.user = user
            self.hostKeyFingerprints = hostKeyFingerprints
        }
    }

    public struct SSHSettings: Sendable, Equatable {
        public var user: String
        public var port: Int
        /// Private key (ed25519), absolute after loading.
        public var identityFile: String?
        /// OpenSSH known_hosts file, absolute after loading.
        public var knownHostsFile: String?
        public var useAgent: Bool
        /// Run commands through `sudo -n` (the user is not root).
        public var sudo: Bool
        public var jumpHost: JumpHost?
        public var connectTimeoutSeconds: Int
        /// How many nodes are worked on at once.
        public var parallelism: Int

        public init(
            user: String = "root", port: Int = 22, identityFile: String? = nil, knownHostsFile: String? = nil,
            useAgent: Bool = false, sudo: Bool = false, jumpHost: JumpHost? = nil, connectTimeoutSeconds: Int = 10,
            parallelism: Int = 32
        ) {
            self.user = user
            self.port = port
            self.identityFile = identityFile
            self.knownHostsFile = knownHostsFile
            self.useAgent = useAgent
            self.sudo = sudo
            self.jumpHost = jumpHost
            self.connectTimeoutSeconds = connectTimeoutSeconds
            self.parallelism = parallelism
        }
    }

    public func host(named name: String) -> Host? { hosts.first { $0.name == name } }

    public func hosts(withRole role: NodeRole) -> [Host] { hosts.filter { $0.roles.contains(role) } }

    public func user(for host: Host) -> String { host.user ?? ssh.user }
    public func port(for host: Host) -> Int { host.port ?? ssh.port }
}

extension SiteInventory {
    /// Loads and validates a site file, reporting every problem at once.
    public static func load(path: String) throws(DiagnosticsError) -> SiteInventory {
        let (reader, root) = try YAMLReader.load(path: path, subject: "site file")
        let site = decode(root, baseDirectory: (path as NSString).deletingLastPathComponent)
        try reader.finish()
        guard var site else {
            throw DiagnosticsError(subject: "site file", diagnostics: [Diagnostic("unreadable site file", at: nil)])
        }
        site.sourcePath = path
        return site
    }

    /// Decodes from parsed YAML; problems go to the value's reader.
    static func decode(_ root: YAMLValue, baseDirectory: String) -> SiteInventory? {
        let r = root.reader
        guard
            let (doc, metadata) = root.resource(
                apiVersion: apiVersion, kind: kind, metadataKeys: ["name", "labels", "annotations"])
        else { return nil }
        let name = metadata?.require("name")?.nonEmptyString()
        guard
            let spec = doc.require("spec")?.mapping(allowing: [
                "profile", "ssh", "hosts", "network", "tls", "storage", "registry", "install", "roles", "preflight",
                "auth", "platform", "supportBundle",
            ])
        else { return nil }
        let profile = spec["profile"]?.nonEmptyString()
        var ssh = SSHSettings()
        if let m = spec["ssh"]?.mapping(allowing: [
            "user", "port", "identityFile", "knownHosts", "useAgent", "sudo", "jumpHost", "connectTimeoutSeconds",
            "parallelism",
        ]) {
            if let v = m["user"]?.nonEmptyString() { ssh.user = v }
            if let v = m["port"]?.int(in: 1...65535) { ssh.port = v }
            ssh.identityFile = m["identityFile"]?.nonEmptyString().map { absolute($0, base: baseDirectory) }
            ssh.knownHostsFile = m["knownHosts"]?.nonEmptyString().map { absolute($0, base: baseDirectory) }
            if let v = m["useAgent"]?.bool() { ssh.useAgent = v }
            if let v = m["sudo"]?.bool() { ssh.sudo = v }
            if let v = m["connectTimeoutSeconds"]?.int(in: 1...600) { ssh.connectTimeoutSeconds = v }
            if let v = m["parallelism"]?.int(in: 1...1024) { ssh.parallelism = v }
            if let j = m["jumpHost"]?.mapping(allowing: ["address", "port", "user", "hostKeyFingerprints"]),
                let address = j.require("address")?.nonEmptyString()
            {
                ssh.jumpHost = JumpHost(
                    address: address, port: j["port"]?.int(in: 1...65535) ?? 22, user: j["user"]?.nonEmptyString(),
                    hostKeyFingerprints: fingerprints(j["hostKeyFingerprints"]))
            }
        }
        var hosts: [Host] = []
        if let items = spec.require("hosts")?.sequence() {
            if items.isEmpty { r.error("'spec.hosts' must list at least one host", at: spec["hosts"]) }
            var names: [String: YAMLValue] = [:]
            var endpoints: [String: YAMLValue] = [:]
            for item in items {
                guard
                    let h = item.mapping(allowing: [
                        "name", "address", "port", "user", "roles", "hostKeyFingerprints", "labels",
                    ])
                else { continue }
                let nameValue = h.require("name")
                let hostName = nameValue?.nonEmptyString()
                if let hostName, let nameValue {
                    if !isValidNodeName(hostName) {
                        r.error(
                            "host name '\(hostName)' must be a DNS label: lower-case letters, digits and '-', at most 63",
                            at: nameValue)
                    } else if names[hostName] != nil {
                        r.error("host name '\(hostName)' is used twice", at: nameValue)
                    }
                    names[hostName] = nameValue
                }
                let addressValue = h.require("address")
                let address = addressValue?.nonEmptyString()
                let port = h["port"]?.int(in: 1...65535)
                if let address, let addressValue {
                    let key = "\(address):\(port ?? ssh.port)"
                    if endpoints[key] != nil { r.error("address \(key) is used by two hosts", at: addressValue) }
                    endpoints[key] = addressValue
                }
                var roles: [NodeRole] = []
                if let roleValues = h.require("roles")?.sequence() {
                    for rv in roleValues {
                        if let s = rv.oneOf(NodeRole.names), let role = NodeRole(rawValue: s) {
                            if roles.contains(role) { r.error("role '\(s)' is listed twice", at: rv) }
                            roles.append(role)
                        }
                    }
                    if roleValues.isEmpty { r.error("a host needs at least one role", at: h["roles"]) }
                }
                guard let hostName, let address else { continue }
                hosts.append(
                    Host(
                        name: hostName, address: address, port: port, user: h["user"]?.nonEmptyString(), roles: roles,
                        hostKeyFingerprints: fingerprints(h["hostKeyFingerprints"]), location: item.location))
            }
            if !hosts.isEmpty && !hosts.contains(where: { $0.roles.contains(.controlPlane) }) {
                r.error("no host has the role 'control-plane'; a cluster needs at least one", at: spec["hosts"])
            }
        }
        let network = spec["network"].flatMap { decodeNetwork($0, hosts: hosts) }
        let tls = spec["tls"].flatMap { decodeTLS($0, baseDirectory: baseDirectory) }
        let storage = spec["storage"].flatMap { decodeStorage($0) }
        let registry = spec["registry"].flatMap { decodeRegistry($0, baseDirectory: baseDirectory, hosts: hosts) }
        let install = spec["install"].map { decodeInstall($0) } ?? InstallSettings()
        let roles = spec["roles"].map { decodeRoles($0) } ?? RoleSettings()
        let preflight = spec["preflight"].map { decodePreflight($0, hosts: hosts) } ?? PreflightSettings()
        let auth = spec["auth"].flatMap { decodeAuth($0, baseDirectory: baseDirectory) }
        let platform = spec["platform"].flatMap { decodePlatform($0) }
        if platform != nil, spec["storage"] == nil, let pv = spec["platform"] {
            r.error(
                "'spec.platform' needs 'spec.storage.nfs' (server and path): the dataset cache is a StorageClass on that export",
                at: pv)
        }
        if platform != nil, spec["network"] == nil, let pv = spec["platform"] {
            r.error("'spec.platform' needs 'spec.network.domain': the ingress serves it and *.domain", at: pv)
        }
        if platform != nil, spec["tls"] == nil, let pv = spec["platform"] {
            r.error(
                "'spec.platform' needs 'spec.tls' (certificate, key, ca): the ingress serves the site's certificate",
                at: pv)
        }
        let supportBundle = spec["supportBundle"].map { decodeSupportBundle($0) } ?? SupportBundleSettings()
        guard let name else { return nil }
        var site = SiteInventory(
            name: name, profile: profile, ssh: ssh, hosts: hosts, network: network, tls: tls, storage: storage,
            registry: registry, install: install, roles: roles, preflight: preflight, auth: auth, platform: platform)
        site.supportBundle = supportBundle
        return site
    }

    private static func fingerprints(_ value: YAMLValue?) -> [String] {
        guard let value, let list = value.stringList() else { return [] }
        for fp in list where !fp.hasPrefix("SHA256:") {
            value.reader.error(
                "host key fingerprint '\(fp)' must look like SHA256:<base64> (ssh-keygen -lf)", at: value)
        }
        return list
    }

    static func absolute(_ path: String, base: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + String(path.dropFirst(1)) }
        let b = base.isEmpty ? FileManager.default.currentDirectoryPath : base
        return ((b as NSString).appendingPathComponent(path) as NSString).standardizingPath
    }

    /// Node names become Kubernetes node names and hostnames: RFC 1123 labels.
    public static func isValidNodeName(_ s: String) -> Bool {
        guard (1...63).contains(s.count), let first = s.first, let last = s.last else { return false }
        let ok = s.allSatisfy { ($0.isASCII && $0.isLowercase) || $0.isNumber || $0 == "-" }
        return ok && first != "-" && last != "-"
    }
}

extension SiteInventory {
    /// Writes the site as YAML (used by `lab up` to write the lab's site file).
    public func yaml() -> String {
        var sshPairs: [(String, YAMLTree)] = [("user", .string(ssh.user)), ("port", .int(ssh.port))]
        if let f = ssh.identityFile { sshPairs.append(("identityFile", .string(f))) }
        if let f = ssh.knownHostsFile { sshPairs.append(("knownHosts", .string(f))) }
        if ssh.useAgent { sshPairs.append(("useAgent", .bool(true))) }
        if ssh.sudo { sshPairs.append(("sudo", .bool(true))) }
        if let j = ssh.jumpHost {
            var jp: [(String, YAMLTree)] = [("address", .string(j.address)), ("port", .int(j.port))]
            if let u = j.user { jp.append(("user", .string(u))) }
            if !j.hostKeyFingerprints.isEmpty {
                jp.append(("hostKeyFingerprints", .list(j.hostKeyFingerprints.map { .string($0) })))
            }
            sshPairs.append(("jumpHost", .map(jp)))
        }
        sshPairs.append(("connectTimeoutSeconds", .int(ssh.connectTimeoutSeconds)))
        sshPairs.append(("parallelism", .int(ssh.parallelism)))
        let hostTrees: [YAMLTree] = hosts.map { h in
            var p: [(String, YAMLTree)] = [("name", .string(h.name)), ("address", .string(h.address))]
            if let port = h.port { p.append(("port", .int(port))) }
            if let u = h.user { p.append(("user", .string(u))) }
            p.append(("roles", .list(h.roles.map { .string($0.rawValue) })))
            if !h.hostKeyFingerprints.isEmpty {
                p.append(("hostKeyFingerprints", .list(h.hostKeyFingerprints.map { .string($0) })))
            }
            return .map(p)
        }
        var specPairs: [(String, YAMLTree)] = []
        if let profile { specPairs.append(("profile", .string(profile))) }
        specPairs.append(("ssh", .map(sshPairs)))
        specPairs.append(("hosts", .list(hostTrees)))
        specPairs.append(contentsOf: sectionTrees())
        specPairs.append(contentsOf: installTrees())
        specPairs.append(contentsOf: platformTrees())
        specPairs.append(contentsOf: supportBundleTrees())
        return YAMLTree.map([
            ("apiVersion", .string(Self.apiVersion)), ("kind", .string(Self.kind)),
            ("metadata", .map([("name", .string(name))])), ("spec", .map(specPairs)),
        ]).serialized()
    }
}
