import ApplianceModel

/// The installer's private registry: the CNCF distribution registry from Debian's `docker-registry`
/// package, run by the package's own `docker-registry.service` (user `docker-registry`) with a systemd
/// drop-in pointing it at the installer's configuration. Debian's `/etc/docker/registry/config.yml` (a
/// conffile, with htpasswd auth on a directory, so anonymous pulls get 401) is left untouched, so package
/// upgrades never prompt about it.
public enum RegistryConfig {
    public static let directory = "/etc/appliance/registry"
    public static let configPath = directory + "/config.yml"
    public static let certificatePath = directory + "/tls/registry.crt"
    public static let keyPath = directory + "/tls/registry.key"
    public static let dropInPath = "/etc/systemd/system/docker-registry.service.d/appliance.conf"
    /// The package's storage folder (its postinst chowns it to `docker-registry`).
    public static let rootDirectory = "/var/lib/docker-registry"
    /// The group the service runs as, which must read the configuration and the key.
    public static let serviceGroup = "docker-registry"

    /// config.yml (distribution configuration `version: 0.1`): filesystem storage, deletes disabled (the
    /// registry is append-only; a re-run pushes nothing), TLS on `:port`, no auth (the cluster's nodes pull
    /// anonymously; the network is the cluster's own).
    ///
    /// Secret: `httpSecret` (`http.secret`, the key that signs upload state) when given, so an upload in
    /// flight survives a restart and every registry node agrees; then the file is 0640 and `containsSecret`.
    public static func configFile(port: Int = SiteInventory.RegistrySettings.defaultPort, httpSecret: String? = nil)
        -> NodeFile
    {
        var http: [(String, YAMLTree)] = [("addr", .string(":\(port)"))]
        if let s = httpSecret { http.append(("secret", .string(s))) }
        http.append(("tls", .map([("certificate", .string(certificatePath)), ("key", .string(keyPath))])))
        http.append(("headers", .map([("X-Content-Type-Options", .list([.string("nosniff")]))])))
        let tree = YAMLTree.map([
            ("version", .string("0.1")),
            ("log", .map([("fields", .map([("service", .string("registry"))]))])),
            (
                "storage",
                .map([
                    ("filesystem", .map([("rootdirectory", .string(rootDirectory))])),
                    ("delete", .map([("enabled", .bool(false))])),
                    ("cache", .map([("blobdescriptor", .string("inmemory"))])),
                ])
            ),
            ("http", .map(http)),
            (
                "health",
                .map([
                    (
                        "storagedriver",
                        .map([("enabled", .bool(true)), ("interval", .string("10s")), ("threshold", .int(3))])
                    )
                ])
            ),
        ])
        // `version: 0.1` must stay a string for distribution; YAMLTree quotes it.
        let text =
            RenderText.header(
                "#", ["The private registry's configuration (CNCF distribution, docker-registry.service)."])
            + tree.serialized()
        return NodeFile(
            path: configPath, mode: 0o640, owner: "root:\(serviceGroup)", content: text,
            containsSecret: httpSecret != nil)
    }

    /// The systemd drop-in: the package's unit, started with the installer's configuration, restarted on
    /// failure. Needs `systemctl daemon-reload` and a restart after it changes.
    public static func dropInFile() -> NodeFile {
        let s =
            RenderText.header("#", ["Runs docker-registry.service with the installer's configuration."]) + """
                [Unit]
                After=network-online.target
                Wants=network-online.target

                [Service]
                ExecStart=
                ExecStart=/usr/bin/docker-registry serve \(configPath)
                Restart=on-failure
                RestartSec=2s

                """
        return NodeFile(path: dropInPath, mode: 0o644, content: s)
    }

    /// The registry's server certificate (PEM), readable by the service.
    public static func certificateFile(pem: String) -> NodeFile {
        NodeFile(path: certificatePath, mode: 0o644, content: pem)
    }

    /// The registry's private key (PEM). Secret: 0640, group `docker-registry`.
    public static func keyFile(pem: String) -> NodeFile {
        NodeFile(path: keyPath, mode: 0o640, owner: "root:\(serviceGroup)", content: pem, containsSecret: true)
    }

    /// The registry CA on every node (Debian's local CA folder; then `update-ca-certificates`), also named by
    /// every `hosts.toml`.
    public static func caFile(pem: String) -> NodeFile {
        NodeFile(path: ContainerdConfig.registryCAPath, mode: 0o644, content: pem)
    }
}
