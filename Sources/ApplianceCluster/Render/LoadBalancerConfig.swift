import ApplianceModel

/// The software load balancer of the kubeadm HA guide (`kubernetes/kubeadm` `docs/ha-considerations.md`,
/// "keepalived and haproxy", option 1: services on the OS) for a site whose API endpoint is a virtual IP:
/// keepalived moves the address between the control planes, HAProxy on each control plane listens on the
/// endpoint's port and balances TCP over every API server's :6443, checking `GET /healthz` over TLS.
///
/// Both run from Debian's `keepalived` and `haproxy` packages (from the bundle), enabled and started with
/// systemd **before** `kubeadm init`, since `controlPlaneEndpoint` is the virtual IP. Until the first API
/// server answers, the check script fails and keepalived lowers the priority; the address stays on some
/// node, which is all kubeadm needs.
public enum LoadBalancerConfig {
    public static let keepalivedPath = "/etc/keepalived/keepalived.conf"
    public static let checkScriptPath = "/etc/keepalived/check_apiserver.sh"
    public static let haproxyPath = "/etc/haproxy/haproxy.cfg"

    /// The virtual-IP endpoint, or a refusal for a site that has none.
    static func virtualIP(_ site: SiteInventory) throws(RenderError) -> (SiteInventory.APIEndpoint, IPv4Address) {
        guard let e = site.network?.endpoint, e.mode == .virtualIP, let vip = e.ipv4 else {
            throw RenderError("the site's API endpoint is not a virtual IP (spec.network.apiEndpoint mode: virtual-ip)")
        }
        return (e, vip)
    }

    /// keepalived.conf for one control plane.
    ///
    /// The first control plane in site order starts as `MASTER` with priority 101, the others as `BACKUP`
    /// with 100, 99, ... (the guide's 101/100, extended so the order is deterministic). The check script's
    /// `weight -2` drops a node whose API server fails below the next one. `interface`: the site's
    /// `apiEndpoint.interface`, else the one the caller found carrying the node's address.
    ///
    /// Secret: `authPassword` (VRRP `auth_pass`, at most 8 characters, the same on every control plane) is
    /// carried by the file when given; the guide sets one. Then the file is 0600 and `containsSecret`.
    public static func keepalivedFile(
        site: SiteInventory, node: SiteInventory.Host, interface detectedInterface: String? = nil,
        authPassword: String? = nil
    ) throws(RenderError) -> NodeFile {
        let (e, vip) = try virtualIP(site)
        let cps = site.controlPlanes
        guard let index = cps.firstIndex(where: { $0.name == node.name }) else {
            throw RenderError("keepalived runs on the control planes; '\(node.name)' is not one")
        }
        guard let interface = e.interface ?? detectedInterface else {
            throw RenderError(
                "no interface for the virtual IP on '\(node.name)': set spec.network.apiEndpoint.interface or pass the one carrying \(node.address)"
            )
        }
        if let p = authPassword, p.isEmpty || p.count > 8 || p.contains(where: { $0.isWhitespace || $0 == "\"" }) {
            throw RenderError("the VRRP password must be 1 to 8 characters without blanks or quotes")
        }
        let prefix = site.network?.nodeCIDR.flatMap { IPv4CIDR($0) }?.prefixLength ?? 32
        var s = RenderText.header("!", ["keepalived for the Kubernetes API virtual IP \(vip) (kubeadm HA guide)."])
        s += """
            global_defs {
                router_id \(node.name)
                enable_script_security
                script_user root
            }

            vrrp_script check_apiserver {
                script "\(checkScriptPath)"
                interval 3
                weight -2
                fall 10
                rise 2
            }

            vrrp_instance VI_1 {
                state \(index == 0 ? "MASTER" : "BACKUP")
                interface \(interface)
                virtual_router_id \(e.virtualRouterID)
                priority \(101 - index)
                advert_int 1

            """
        if let p = authPassword {
            s += """
                    authentication {
                        auth_type PASS
                        auth_pass \(p)
                    }

                """
        }
        if e.unicast, IPv4Address(node.address) != nil {
            s += "    unicast_src_ip \(node.address)\n    unicast_peer {\n"
            for peer in cps where peer.name != node.name { s += "        \(peer.address)\n" }
            s += "    }\n"
        }
        s += """
                virtual_ipaddress {
                    \(vip)/\(prefix) dev \(interface)
                }
                track_script {
                    check_apiserver
                }
            }

            """
        return NodeFile(
            path: keepalivedPath, mode: authPassword == nil ? 0o644 : 0o600, content: s,
            containsSecret: authPassword != nil)
    }

    /// check_apiserver.sh: the guide's script. Fails when this node's HAProxy does not answer TLS on the
    /// endpoint port, or, on the node holding the virtual IP, when the virtual IP does not. Needs `curl`.
    public static func checkScriptFile(site: SiteInventory) throws(RenderError) -> NodeFile {
        let (e, vip) = try virtualIP(site)
        let s = """
            #!/bin/sh
            # Written by appliance install; a re-run rewrites it, so edit the site file instead.
            # keepalived health check for the Kubernetes API virtual IP (kubeadm HA guide).

            errorExit() {
                echo "*** $*" 1>&2
                exit 1
            }

            curl --silent --max-time 2 --insecure https://localhost:\(e.port)/ -o /dev/null || errorExit "Error GET https://localhost:\(e.port)/"
            if ip addr | grep -q "inet \(vip)/"; then
                curl --silent --max-time 2 --insecure https://\(vip):\(e.port)/ -o /dev/null || errorExit "Error GET https://\(vip):\(e.port)/"
            fi

            """
        return NodeFile(path: checkScriptPath, mode: 0o755, content: s)
    }

    /// haproxy.cfg, the same on every control plane: the guide's defaults, a TCP frontend on the endpoint
    /// port, and a round-robin backend of every control plane's API server checked with `GET /healthz` over TLS.
    public static func haproxyFile(site: SiteInventory) throws(RenderError) -> NodeFile {
        let (e, _) = try virtualIP(site)
        var s = RenderText.header("#", ["HAProxy in front of every Kubernetes API server (kubeadm HA guide)."])
        s += """
            global
                log /dev/log local0
                log /dev/log local1 notice
                daemon

            defaults
                mode                    http
                log                     global
                option                  httplog
                option                  dontlognull
                option http-server-close
                option forwardfor       except 127.0.0.0/8
                option                  redispatch
                retries                 1
                timeout http-request    10s
                timeout queue           20s
                timeout connect         5s
                timeout client          20s
                timeout server          20s
                timeout http-keep-alive 10s
                timeout check           10s

            frontend apiserver
                bind *:\(e.port)
                mode tcp
                option tcplog
                default_backend apiserverbackend

            backend apiserverbackend
                # The guide's check, GET /healthz, made over TLS by the servers' check-ssl (the guide's
                # additional ssl-hello-chk would replace the HTTP check with a bare TLS hello).
                option httpchk GET /healthz
                http-check expect status 200
                mode tcp
                balance     roundrobin

            """
        for cp in site.controlPlanes {
            s +=
                "    server \(cp.name) \(cp.address):\(SiteInventory.APIEndpoint.apiServerPort) check check-ssl verify none\n"
        }
        return NodeFile(path: haproxyPath, mode: 0o644, content: s)
    }
}
