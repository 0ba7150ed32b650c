import Foundation
import Yams

#if canImport(Glibc)
    import Glibc
#endif

/// The `kubeadm` stand-in: `version`, `config validate`, `init`, `join` (worker and `--control-plane`),
/// `token create|list|delete`, `reset`, `upgrade plan|apply|node`.
public struct Kubeadm: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    var version: KubeVersion { InstalledVersions.of("kubeadm", context: context) }
    static let stackHint = "To see the stack trace of this error execute with --v=5 or higher"

    func fail(_ message: String) -> ToolOutput { .fail(1, stderr: message + "\n" + Self.stackHint) }
    func phaseFail(_ phase: String, _ message: String) -> ToolOutput {
        fail("error execution phase \(phase): \(message)")
    }

    var klogPrefix: String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "MMdd HH:mm:ss.SSSSSS"
        return "W" + f.string(from: context.now()) + String(format: " %7d ", getpid())
    }

    public func run(_ args: [String]) -> ToolOutput {
        guard let sub = args.first else {
            return .fail(
                1,
                stderr:
                    "Usage:\n  kubeadm [command]\n\nAvailable Commands: config, init, join, reset, token, upgrade, version (lab stand-in)"
            )
        }
        let rest = Array(args.dropFirst())
        switch sub {
        case "version":
            if rest.contains("short") || rest.contains("-o=short") { return .ok(version.description + "\n") }
            return .ok(
                "kubeadm version: &version.Info{Major:\"\(version.major)\", Minor:\"\(version.minor)\", EmulationMajor:\"\", EmulationMinor:\"\", MinCompatibilityMajor:\"\", MinCompatibilityMinor:\"\", GitVersion:\"\(version)\", GitCommit:\"lab-standin\", GitTreeState:\"clean\", BuildDate:\"2025-01-01T00:00:00Z\", GoVersion:\"go1.24.0\", Compiler:\"gc\", Platform:\"linux/amd64\"}\n"
            )
        case "config":
            guard rest.first == "validate", let path = Flags(Array(rest.dropFirst())).value("config") else {
                return .fail(1, stderr: "Usage: kubeadm config validate --config FILE (lab stand-in)")
            }
            guard let text = readUserFile(path) else {
                return fail("unable to read config from \"\(path)\" : open \(path): no such file or directory")
            }
            do {
                _ = try KubeadmConfigParser.parse(
                    text, mode: .validate, kubeadmVersion: version, klogPrefix: klogPrefix)
                return .ok("ok\n")
            } catch {
                return fail("\(error)")
            }
        case "init": return KubeadmInit(context: context, kubeadm: self).run(rest)
        case "join": return KubeadmJoin(context: context, kubeadm: self).run(rest)
        case "token": return token(rest)
        case "reset": return reset(rest)
        case "upgrade": return KubeadmUpgrade(context: context, kubeadm: self).run(rest)
        default:
            return .fail(1, stderr: "unknown command \"\(sub)\" for \"kubeadm\"\nRun 'kubeadm --help' for usage.")
        }
    }

    /// Files named on the command line are relative to the process's cwd, but absolute ones live under the root.
    /// `--config FILE` as init and join read it: flags kubeadm refuses beside `--config`, then the file,
    /// then the configuration API. Returns the configuration, or the output kubeadm fails with.
    func loadConfig(path: String, flags f: Flags, incompatible: [String], mode: KubeadmConfigParser.Mode)
        -> Result<KubeadmConfig, ToolFailure>
    {
        let mixed = incompatible.filter { f.has($0) }
        if !mixed.isEmpty {
            return .failure(
                ToolFailure(
                    fail("can not mix '--config' with arguments \(mixed)".replacingOccurrences(of: "\"", with: ""))))
        }
        guard let text = readUserFile(path) else {
            return .failure(
                ToolFailure(fail("unable to read config from \"\(path)\" : open \(path): no such file or directory")))
        }
        do {
            return .success(
                try KubeadmConfigParser.parse(text, mode: mode, kubeadmVersion: version, klogPrefix: klogPrefix))
        } catch {
            return .failure(ToolFailure(fail("\(error)")))
        }
    }

    func readUserFile(_ path: String) -> String? {
        if path.hasPrefix("/") {
            return context.read(path)
                ?? (FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) })
        }
        return FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    // MARK: shared

    func adminClient() -> KubeClient? {
        guard let conf = context.read("/etc/kubernetes/admin.conf") else { return nil }
        return try? KubeClient(kubeconfig: conf)
    }

    static func newToken() -> String {
        let a = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<6).map { _ in a[Int.random(in: 0..<a.count)] }) + "."
            + String((0..<16).map { _ in a[Int.random(in: 0..<a.count)] })
    }

    static func tokenSecret(_ token: String, ttl: Int, now: Date, description: String = "") -> KObject {
        let p = token.split(separator: ".").map(String.init)
        func b(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
        var data: [String: String] = [
            "token-id": b(p[0]), "token-secret": b(p[1]), "usage-bootstrap-authentication": b("true"),
            "usage-bootstrap-signing": b("true"),
            "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token"),
        ]
        if ttl > 0 { data["expiration"] = b(K.timestamp(now.addingTimeInterval(Double(ttl)))) }
        if !description.isEmpty { data["description"] = b(description) }
        return [
            "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": ["name": "bootstrap-token-\(p[0])", "namespace": "kube-system"], "data": data,
        ]
    }

    /// The JWS-like signature kept in cluster-info for each token (a keyed hash: the lab does not verify JOSE).
    static func jws(token: String, kubeconfig: String) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in (token + "\n" + kubeconfig).utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "lab..%016llx", h)
    }

    func createToken(_ client: KubeClient, token: String, ttl: Int) throws {
        let secrets = KResource.secrets
        _ = try client.apply(secrets, "kube-system", Self.tokenSecret(token, ttl: ttl, now: context.now()))
        let cms = KResource.configmaps
        guard var info = try client.get(cms, "kube-public", "cluster-info") else { return }
        let kc = (info["data"] as? [String: String])?["kubeconfig"] ?? ""
        K.set(&info, ["data", "jws-kubeconfig-" + String(token.prefix(6))], Self.jws(token: token, kubeconfig: kc))
        _ = try client.patch(cms, "kube-public", "cluster-info", ["data": info["data"] as Any])
    }

    func joinCommand(endpoint: String, token: String) throws -> String {
        let hash = try LabPKI(context: context).caCertHash()
        return "kubeadm join \(endpoint) --token \(token) --discovery-token-ca-cert-hash \(hash) "
    }

    func token(_ args: [String]) -> ToolOutput {
        let f = Flags(Array(args.dropFirst()))
        guard let client = adminClient() else {
            return fail("failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such file or directory")
        }
        let secrets = KResource.secrets
        do {
            switch args.first {
            case "create":
                let token = f.positional.first ?? Self.newToken()
                guard KubeadmConfigParser.isValidToken(token) else {
                    return fail(
                        "the bootstrap token \"\(token)\" was not of the form \"^([a-z0-9]{6})\\.([a-z0-9]{16})$\"")
                }
                let ttl = f.value("ttl").flatMap(KubeadmConfigParser.parseDuration).map(Int.init) ?? 86400
                try createToken(client, token: token, ttl: ttl)
                if f.has("print-join-command") {
                    let cfg = try clusterConfig(client)
                    return .ok(try joinCommand(endpoint: cfg.endpoint, token: token) + "\n")
                }
                return .ok(token + "\n")
            case "list":
                var out =
                    "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION                                                EXTRA GROUPS\n"
                for s in try client.list(secrets, "kube-system")
                where s["type"] as? String == "bootstrap.kubernetes.io/token" {
                    let d = (s["data"] as? [String: String] ?? [:]).mapValues {
                        String(decoding: Data(base64Encoded: $0) ?? Data(), as: UTF8.self)
                    }
                    let exp = K.date(d["expiration"])
                    let ttl = exp.map { max(0, Int($0.timeIntervalSince(context.now()))) }
                    if let t = ttl, t == 0 { continue }
                    let ttlText = ttl.map { "\($0 / 3600)h" } ?? "<forever>"
                    out += "\(d["token-id"] ?? "").\(d["token-secret"] ?? "")".padding(
                        toLength: 26, withPad: " ", startingAt: 0)
                    out += ttlText.padding(toLength: 12, withPad: " ", startingAt: 0)
                    out += (d["expiration"] ?? "<never>").padding(toLength: 23, withPad: " ", startingAt: 0)
                    out +=
                        "authentication,signing   <none>                                                     system:bootstrappers:kubeadm:default-node-token\n"
                }
                return .ok(out)
            case "delete":
                for t in f.positional {
                    let id = String(t.prefix(6))
                    try? client.delete(secrets, "kube-system", "bootstrap-token-\(id)")
                    return .ok("bootstrap token \"\(id)\" deleted\n")
                }
                return fail(
                    "missing subcommand; 'token delete' is missing token of form \"[a-z0-9]{6}\" or \"[a-z0-9]{6}\\.[a-z0-9]{16}\""
                )
            default:
                return .fail(1, stderr: "Usage: kubeadm token create|list|delete (lab stand-in)")
            }
        } catch {
            return fail("\(error)")
        }
    }

    struct ClusterInfo {
        var endpoint: String
        var version: KubeVersion
        var clusterConfigYAML: String
        var etcdEndpoints: [String]
    }

    func clusterConfig(_ client: KubeClient) throws -> ClusterInfo {
        let cms = KResource.configmaps
        guard let cm = try client.get(cms, "kube-system", "kubeadm-config") else {
            throw LabNodeError.usage(
                "unable to fetch the kubeadm-config ConfigMap: configmaps \"kubeadm-config\" not found")
        }
        let data = cm["data"] as? [String: String] ?? [:]
        let yaml = data["ClusterConfiguration"] ?? ""
        let any = (try? Yams.load(yaml: yaml)) as? [String: Any] ?? [:]
        let endpoint = any["controlPlaneEndpoint"] as? String ?? client.server
        let v = KubeVersion(any["kubernetesVersion"] as? String ?? "") ?? version
        let etcd = (data["etcdEndpoints"] ?? "").split(separator: ",").map(String.init)
        return ClusterInfo(
            endpoint: endpoint.isEmpty ? client.server : endpoint, version: v, clusterConfigYAML: yaml,
            etcdEndpoints: etcd)
    }

    // MARK: reset

    func reset(_ args: [String]) -> ToolOutput {
        let f = Flags(args)
        if !f.has("force") && !args.contains("-f") {
            let answer = readLine() ?? ""
            if answer.lowercased() != "y" && answer.lowercased() != "yes" {
                return ToolOutput(
                    stdout: "[reset] Are you sure you want to proceed? [y/N]: ",
                    stderr: "error: aborted reset operation\n", exitCode: 1)
            }
        }
        var out = ""
        var err = ""
        let sup = Supervisor(context: context)
        // Leave the etcd cluster if others remain. Like kubeadm's remove-etcd-member phase, a failure is only a
        // warning: reset goes on and the member stays (the operator removes it with etcdctl). The only member
        // left needs no removal (kubeadm skips it too).
        var failure: String?
        if !context.exists("/etc/kubernetes/manifests/etcd.yaml") {
            out += "[reset] No etcd config found. Assuming external etcd\n"
            out += "[reset] Please, manually reset etcd to prevent further issues\n"
        } else if let client = adminClient() {
            out +=
                "[reset] Reading configuration from the \"kubeadm-config\" ConfigMap in namespace \"kube-system\"...\n"
            out += "[reset] Use 'kubeadm init phase upload-config kubeadm --config your-config-file' to re-upload it.\n"
            let info: ClusterInfo?
            do { info = try clusterConfig(client) } catch {
                info = nil
                failure = "unable to fetch the kubeadm-config ConfigMap: \(error)"
            }
            let me = context.read("/var/lib/appliance-lab/etcd-member")?.trimmingCharacters(in: .whitespacesAndNewlines)
            if let info, info.etcdEndpoints.count > 1, me == nil {
                failure = "this node's etcd member is not known (/var/lib/appliance-lab/etcd-member is missing)"
            }
            if let info, info.etcdEndpoints.count > 1, let me {
                let others = info.etcdEndpoints.filter { !$0.contains("//\(me):") }
                let etcd = EtcdClient(endpoints: others)
                do {
                    let members = try etcd.memberList()
                    if let m = members.first(where: {
                        ($0["clientURLs"] as? [String] ?? []).contains { $0.contains("//\(me):") }
                            || ($0["peerURLs"] as? [String] ?? []).contains { $0.contains("//\(me):") }
                    }), let id = (m["ID"] as? String).flatMap({ UInt64($0) }) {
                        let hex = String(id, radix: 16)
                        let r = Supervisor.run(
                            "/usr/bin/etcdctl",
                            ["--endpoints=" + others.joined(separator: ","), "member", "remove", hex],
                            env: ["ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"])
                        if r.status == 0 {
                            out += "[reset] Removed member \(hex) from the etcd cluster\n"
                        } else {
                            failure = r.output.trimmingCharacters(in: .whitespacesAndNewlines)
                        }
                    }
                } catch {
                    failure = "\(error)"
                }
                _ = try? client.patch(
                    KResource.configmaps, "kube-system", "kubeadm-config",
                    ["data": ["etcdEndpoints": others.joined(separator: ",")]])
            }
        } else {
            failure = "no admin kubeconfig at /etc/kubernetes/admin.conf to reach the cluster"
        }
        if let failure {
            err +=
                "\(klogPrefix)removeetcdmember.go:106] [reset] Failed to remove etcd member: \(failure), please manually remove this etcd member using etcdctl\n"
        }
        out += "[preflight] Running pre-flight checks\n"
        sup.stop("kubelet")
        out += "[reset] Stopping the kubelet service\n"
        sup.stop("kube-apiserver-standin")
        sup.stop("lab-etcd")
        out += "[reset] Unmounting mounted directories in \"/var/lib/kubelet\"\n"
        if context.exists("/var/lib/etcd") {
            context.remove("/var/lib/etcd")
            out += "[reset] Deleted contents of the etcd data directory: /var/lib/etcd\n"
        }
        out +=
            "[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki]\n"
        for p in [
            "/etc/kubernetes/manifests", "/var/lib/kubelet", "/etc/kubernetes/pki",
            "/var/lib/appliance-lab/etcd-member",
        ] { context.remove(p) }
        var files: [String] = []
        for f in [
            "admin.conf", "super-admin.conf", "kubelet.conf", "bootstrap-kubelet.conf", "controller-manager.conf",
            "scheduler.conf",
        ] {
            context.remove("/etc/kubernetes/" + f)
            files.append("/etc/kubernetes/" + f)
        }
        for u in ["kubelet", "kube-apiserver-standin", "lab-etcd"] { context.remove(sup.unitPath(u)) }
        out += "[reset] Deleting files: [\(files.joined(separator: " "))]\n\n"
        out += """
            The reset process does not perform cleanup of CNI plugin configuration,
            network filtering rules and kubeconfig files.

            For information on how to perform this cleanup manually, please see:
                https://k8s.io/docs/reference/setup-tools/kubeadm/kubeadm-reset/


            """
        return ToolOutput(stdout: out, stderr: err, exitCode: 0)
    }
}

/// `--flag value`, `--flag=value`, `-f`, and positionals.
struct Flags {
    var values: [String: [String]] = [:]
    var positional: [String] = []
    static let booleans: Set<String> = [
        "control-plane", "upload-certs", "print-join-command", "force", "dry-run", "ignore-daemonsets",
        "delete-emptydir-data", "disable-eviction", "all-namespaces", "A", "overwrite", "y", "yes",
        "discovery-token-unsafe-skip-ca-verification",
        "no-headers", "wait", "atomic", "install", "create-namespace", "skip-phases-none", "v", "etcd-upgrade",
        "certificate-renewal",
        "allow-experimental-upgrades", "allow-release-candidate-upgrades",
    ]

    init(_ args: [String]) {
        var i = 0
        while i < args.count {
            let a = args[i]
            if a.hasPrefix("-") && a.count > 1 {
                var name = String(a.drop(while: { $0 == "-" }))
                var value: String?
                if let eq = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                } else if !Self.booleans.contains(name), i + 1 < args.count {
                    value = args[i + 1]
                    i += 1
                }
                values[name, default: []].append(value ?? "true")
            } else {
                positional.append(a)
            }
            i += 1
        }
    }

    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }
    func has(_ name: String) -> Bool { values[name] != nil && values[name]?.last != "false" }
}

/// A tool's failing output carried through `Result`.
struct ToolFailure: Error {
    let output: ToolOutput
    init(_ output: ToolOutput) { self.output = output }
}
