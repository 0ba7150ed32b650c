import Foundation
import Yams

/// kubeadm's PKI made with the openssl CLI (ECDSA P-256 keys to keep it fast on the lab's shared cores;
/// real kubeadm defaults to RSA-2048): the same file names under /etc/kubernetes/pki.
public struct LabPKI: Sendable {
    public let context: LabNodeContext
    public let dir: String  // node path, e.g. /etc/kubernetes/pki

    public init(context: LabNodeContext, dir: String = "/etc/kubernetes/pki") {
        self.context = context
        self.dir = dir
    }

    func p(_ name: String) -> String { context.path(dir + "/" + name) }

    func openssl(_ args: [String]) throws {
        let r = Supervisor.run("/usr/bin/openssl", args)
        if r.status != 0 { throw LabNodeError.usage("openssl \(args.first ?? ""): \(r.output)") }
    }

    func key(_ name: String) throws {
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p(name + ".key")])
    }

    func ca(_ name: String, cn: String) throws {
        try key(name)
        try openssl([
            "req", "-x509", "-new", "-key", p(name + ".key"), "-subj", "/CN=\(cn)", "-days", "3650", "-out",
            p(name + ".crt"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        ])
    }

    func leaf(
        _ name: String, ca: String, subject: String, sans: [String] = [], server: Bool = false, client: Bool = true
    ) throws {
        try key(name)
        let ext = context.path(
            "/tmp/appliance-lab-ext-\(getpid())-\(name.replacingOccurrences(of: "/", with: "_")).cnf")
        try FileManager.default.createDirectory(
            atPath: (ext as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var usages: [String] = []
        if server { usages.append("serverAuth") }
        if client { usages.append("clientAuth") }
        var text =
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=\(usages.joined(separator: ","))\n"
        if !sans.isEmpty { text += "subjectAltName=" + sans.joined(separator: ",") + "\n" }
        try Data(text.utf8).write(to: URL(fileURLWithPath: ext))
        defer { try? FileManager.default.removeItem(atPath: ext) }
        try openssl(["req", "-new", "-key", p(name + ".key"), "-subj", subject, "-out", p(name + ".csr")])
        try openssl([
            "x509", "-req", "-in", p(name + ".csr"), "-CA", p(ca + ".crt"), "-CAkey", p(ca + ".key"), "-CAcreateserial",
            "-days", "365", "-extfile", ext, "-out", p(name + ".crt"),
        ])
        try? FileManager.default.removeItem(atPath: p(name + ".csr"))
    }

    /// The API server's serving certificate: the node name and the `kubernetes.default...` names, the service IP,
    /// the node's address and every extra SAN (the control-plane endpoint or VIP, `apiServer.certSANs`).
    public func apiserverCertificate(
        nodeName: String, address: String, serviceIP: String, dnsDomain: String, extraSANs: [String]
    ) throws -> String {
        var dns = [
            nodeName, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.\(dnsDomain)",
        ]
        var ips = [serviceIP, address]
        for san in extraSANs where !san.isEmpty {
            if IPNet.parseIP(san) != nil {
                if !ips.contains(san) { ips.append(san) }
            } else if !dns.contains(san) {
                dns.append(san)
            }
        }
        try leaf(
            "apiserver", ca: "ca", subject: "/CN=kube-apiserver",
            sans: dns.map { "DNS:\($0)" } + ips.map { "IP:\($0)" }, server: true, client: false)
        return
            "[certs] apiserver serving cert is signed for DNS names [\(dns.joined(separator: " "))] and IPs [\(ips.joined(separator: " "))]"
    }

    /// A client certificate and key signed by the cluster CA, for a kubeconfig (`subject` as `/O=group/CN=user`).
    public func clientCertificate(subject: String) throws -> (certificatePEM: String, keyPEM: String) {
        let name = "kubeconfig-client-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try leaf(name, ca: "ca", subject: subject)
        defer {
            try? FileManager.default.removeItem(atPath: p(name + ".crt"))
            try? FileManager.default.removeItem(atPath: p(name + ".key"))
        }
        guard let cert = FileManager.default.contents(atPath: p(name + ".crt")),
            let key = FileManager.default.contents(atPath: p(name + ".key"))
        else { throw LabNodeError.usage("openssl wrote no client certificate for \(subject)") }
        return (String(decoding: cert, as: UTF8.self), String(decoding: key, as: UTF8.self))
    }

    /// A new key and a certificate request for it (what the kubelet's TLS bootstrap sends), in `dir`.
    public func clientRequest(subject: String) throws -> (csrPEM: String, keyPEM: String) {
        try FileManager.default.createDirectory(atPath: p(""), withIntermediateDirectories: true)
        let name = "kubelet-client-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try key(name)
        defer {
            try? FileManager.default.removeItem(atPath: p(name + ".csr"))
            try? FileManager.default.removeItem(atPath: p(name + ".key"))
        }
        try openssl(["req", "-new", "-key", p(name + ".key"), "-subj", subject, "-out", p(name + ".csr")])
        guard let csr = FileManager.default.contents(atPath: p(name + ".csr")),
            let key = FileManager.default.contents(atPath: p(name + ".key"))
        else { throw LabNodeError.usage("openssl wrote no certificate request for \(subject)") }
        return (String(decoding: csr, as: UTF8.self), String(decoding: key, as: UTF8.self))
    }

    /// Signs a PEM certificate request with the cluster CA as a client certificate (what the CSR signer of
    /// kube-controller-manager does for `kubernetes.io/kube-apiserver-client-kubelet`).
    public func signClientCSR(_ csrPEM: String) throws -> String {
        let name = "csr-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let csr = p(name + ".csr"), crt = p(name + ".crt"), ext = p(name + ".cnf")
        try Data(csrPEM.utf8).write(to: URL(fileURLWithPath: csr))
        try Data(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
                .utf8
        ).write(to: URL(fileURLWithPath: ext))
        defer { for f in [csr, crt, ext] { try? FileManager.default.removeItem(atPath: f) } }
        try openssl([
            "x509", "-req", "-in", csr, "-CA", p("ca.crt"), "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "365",
            "-extfile", ext, "-out", crt,
        ])
        guard let cert = FileManager.default.contents(atPath: crt) else {
            throw LabNodeError.usage("openssl wrote no certificate for the request")
        }
        return String(decoding: cert, as: UTF8.self)
    }

    /// Generates everything `kubeadm init` does; returns the log lines it prints.
    public func generate(nodeName: String, address: String, serviceIP: String, dnsDomain: String, extraSANs: [String])
        throws -> [String]
    {
        try FileManager.default.createDirectory(atPath: p("etcd"), withIntermediateDirectories: true)
        var log = ["[certs] Using certificateDir folder \"\(dir)\""]
        try ca("ca", cn: "kubernetes")
        log.append("[certs] Generating \"ca\" certificate and key")
        let signed = try apiserverCertificate(
            nodeName: nodeName, address: address, serviceIP: serviceIP, dnsDomain: dnsDomain, extraSANs: extraSANs)
        log.append("[certs] Generating \"apiserver\" certificate and key")
        log.append(signed)
        try leaf(
            "apiserver-kubelet-client", ca: "ca", subject: "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client")
        log.append("[certs] Generating \"apiserver-kubelet-client\" certificate and key")
        try ca("front-proxy-ca", cn: "front-proxy-ca")
        log.append("[certs] Generating \"front-proxy-ca\" certificate and key")
        try leaf("front-proxy-client", ca: "front-proxy-ca", subject: "/CN=front-proxy-client")
        log.append("[certs] Generating \"front-proxy-client\" certificate and key")
        try ca("etcd/ca", cn: "etcd-ca")
        log.append("[certs] Generating \"etcd/ca\" certificate and key")
        let etcdSANs = ["DNS:\(nodeName)", "DNS:localhost", "IP:\(address)", "IP:127.0.0.1", "IP:::1"]
        try leaf("etcd/server", ca: "etcd/ca", subject: "/CN=\(nodeName)", sans: etcdSANs, server: true)
        log.append("[certs] Generating \"etcd/server\" certificate and key")
        log.append(
            "[certs] etcd/server serving cert is signed for DNS names [\(nodeName) localhost] and IPs [\(address) 127.0.0.1 ::1]"
        )
        try leaf("etcd/peer", ca: "etcd/ca", subject: "/CN=\(nodeName)", sans: etcdSANs, server: true)
        log.append("[certs] Generating \"etcd/peer\" certificate and key")
        log.append(
            "[certs] etcd/peer serving cert is signed for DNS names [\(nodeName) localhost] and IPs [\(address) 127.0.0.1 ::1]"
        )
        try leaf("etcd/healthcheck-client", ca: "etcd/ca", subject: "/CN=kube-etcd-healthcheck-client")
        log.append("[certs] Generating \"etcd/healthcheck-client\" certificate and key")
        try leaf("apiserver-etcd-client", ca: "etcd/ca", subject: "/CN=kube-apiserver-etcd-client")
        log.append("[certs] Generating \"apiserver-etcd-client\" certificate and key")
        try key("sa")
        try openssl(["pkey", "-in", p("sa.key"), "-pubout", "-out", p("sa.pub")])
        log.append("[certs] Generating \"sa\" key and public key")
        return log
    }

    /// "sha256:<hex>" of the CA's SubjectPublicKeyInfo, as `--discovery-token-ca-cert-hash` wants.
    public func caCertHash() throws -> String {
        let r = Supervisor.run(
            "/bin/sh",
            ["-c", "openssl x509 -pubkey -noout -in '\(p("ca.crt"))' | openssl pkey -pubin -outform der | sha256sum"])
        guard r.status == 0, let hex = r.output.split(separator: " ").first, hex.count == 64 else {
            throw LabNodeError.usage("cannot hash the CA public key: \(r.output)")
        }
        return "sha256:" + hex
    }

    public static func caHash(ofPEM pem: String) -> String? {
        let r = Supervisor.run(
            "/bin/sh", ["-c", "openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum"], input: pem)
        guard r.status == 0, let hex = r.output.split(separator: " ").first, hex.count == 64 else { return nil }
        return "sha256:" + hex
    }
}

/// kubeconfig files in the real format.
public enum Kubeconfig {
    public static func render(
        server: String, caPEM: String, user: String, cluster: String = "kubernetes", token: String? = nil,
        client: (certificatePEM: String, keyPEM: String)? = nil
    ) -> String {
        let ca = Data(caPEM.utf8).base64EncodedString()
        var s = """
            apiVersion: v1
            clusters:
            - cluster:
                certificate-authority-data: \(ca)
                server: \(server)
              name: \(cluster)
            contexts:
            - context:
                cluster: \(cluster)
                user: \(user)
              name: \(user)@\(cluster)
            current-context: \(user)@\(cluster)
            kind: Config
            preferences: {}
            users:
            - name: \(user)
              user:

            """
        if let token {
            s += "    token: \(token)\n"
        } else if let client {
            s +=
                "    client-certificate-data: \(Data(client.certificatePEM.utf8).base64EncodedString())\n    client-key-data: \(Data(client.keyPEM.utf8).base64EncodedString())\n"
        }
        return s
    }

    public struct Credentials: Sendable {
        public var server: String
        public var caPEM: String?
        public var certificatePEM: String?
        public var keyPEM: String?
        public var token: String?
    }

    /// What a client needs from the current context: server, CA, client certificate and key, or token
    /// (`*-data` fields inline, or the file paths of `certificate-authority`, `client-certificate`, `client-key`).
    public static func credentials(_ yaml: String) -> Credentials? {
        guard let any = try? Yams.load(yaml: yaml) as? [String: Any] else { return nil }
        let current = any["current-context"] as? String
        let contexts = any["contexts"] as? [[String: Any]] ?? []
        let ctx = (contexts.first { $0["name"] as? String == current } ?? contexts.first)?["context"] as? [String: Any]
        let clusters = any["clusters"] as? [[String: Any]] ?? []
        let users = any["users"] as? [[String: Any]] ?? []
        let c =
            (clusters.first { $0["name"] as? String == ctx?["cluster"] as? String } ?? clusters.first)?["cluster"]
            as? [String: Any]
        let u =
            (users.first { $0["name"] as? String == ctx?["user"] as? String } ?? users.first)?["user"] as? [String: Any]
        guard let server = c?["server"] as? String else { return nil }
        func pem(_ map: [String: Any]?, _ field: String) -> String? {
            if let d = map?[field + "-data"] as? String, let raw = Data(base64Encoded: d) {
                return String(decoding: raw, as: UTF8.self)
            }
            if let path = map?[field] as? String, let raw = FileManager.default.contents(atPath: path) {
                return String(decoding: raw, as: UTF8.self)
            }
            return nil
        }
        return Credentials(
            server: server, caPEM: pem(c, "certificate-authority"), certificatePEM: pem(u, "client-certificate"),
            keyPEM: pem(u, "client-key"), token: u?["token"] as? String)
    }

    /// The server URL of the current context's cluster.
    public static func server(_ yaml: String) -> String? {
        guard let any = try? Yams.load(yaml: yaml) as? [String: Any] else { return nil }
        let clusters = any["clusters"] as? [[String: Any]] ?? []
        let current = any["current-context"] as? String
        let contexts = any["contexts"] as? [[String: Any]] ?? []
        let clusterName =
            (contexts.first { $0["name"] as? String == current }?["context"] as? [String: Any])?["cluster"] as? String
        let c = clusters.first { $0["name"] as? String == clusterName } ?? clusters.first
        return (c?["cluster"] as? [String: Any])?["server"] as? String
    }
}
