import Foundation

/// The kubelet's side of the object store's filer pod (`weed filer -s3`): the lab runs `S3Gateway` for it, in
/// the kubelet's process, on the node's address at the `-s3.port` (8333 by default), with the identities of the
/// `-s3.config` file read from the Secret volume that file lies in, and the objects under
/// `/var/lib/appliance-lab/seaweedfs/<ns>_<pod>` on the node (kept across pods of the same name).
enum S3GatewayPod {
    /// The SeaweedFS container of a filer pod with the S3 gateway: its `args` start with `filer` and hold `-s3`.
    static func container(_ p: KObject) -> KObject? {
        (K.spec(p)["containers"] as? [KObject] ?? []).first { c in
            let args = c["args"] as? [String] ?? []
            return (c["image"] as? String ?? "").contains("seaweedfs") && args.first == "filer" && args.contains("-s3")
        }
    }

    static func flag(_ c: KObject, _ name: String) -> String? {
        (c["args"] as? [String] ?? []).first { $0.hasPrefix("-\(name)=") }.map { String($0.dropFirst(name.count + 2)) }
    }

    static func port(_ c: KObject) -> Int { flag(c, "s3.port").flatMap(Int.init) ?? 8333 }

    /// Where the `-s3.config` file comes from: the Secret of the volume mounted at the file's directory, and the
    /// key named like the file (nil without `-s3.config`: no identities, every request allowed).
    static func configSource(_ p: KObject, _ c: KObject) -> (secret: String, key: String)?? {
        guard let path = flag(c, "s3.config") else { return .some(nil) }
        let dir = (path as NSString).deletingLastPathComponent
        let file = (path as NSString).lastPathComponent
        let mounts = c["volumeMounts"] as? [KObject] ?? []
        guard let mount = mounts.first(where: { ($0["mountPath"] as? String ?? "") == dir }),
            let volume = (K.spec(p)["volumes"] as? [KObject] ?? []).first(where: {
                $0["name"] as? String == mount["name"] as? String
            }),
            let secret = K.get(volume, "secret.secretName") as? String
        else { return nil }
        return .some((secret, file))
    }
}

/// The gateways this kubelet runs, by pod uid.
final class S3Gateways: @unchecked Sendable {
    // @unchecked: all state guarded by `lock`.
    static let shared = S3Gateways()
    private let lock = NSLock()
    private var servers: [String: HTTPServer] = [:]

    func running(_ uid: String) -> Bool { lock.withLock { servers[uid] != nil } }
    func add(_ uid: String, _ server: HTTPServer) { lock.withLock { servers[uid] = server } }

    /// Stops the gateways of pods no longer on this node.
    func stopAbsent(present: Set<String>) {
        let gone: [HTTPServer] = lock.withLock {
            let uids = servers.keys.filter { !present.contains($0) }
            return uids.compactMap { servers.removeValue(forKey: $0) }
        }
        for s in gone { s.stop() }
    }

    func stopAll() {
        let all = lock.withLock {
            defer { servers = [:] }
            return Array(servers.values)
        }
        for s in all { s.stop() }
    }
}

extension Kubelet {
    /// Starts the S3 gateway of filer pod `p` when this kubelet does not run it yet (a pod found Ready after a
    /// kubelet restart gets its gateway again), then reports the pod Running and Ready. A missing Secret waits with
    /// the kubelet's `CreateContainerConfigError`; a port that cannot be bound fails the pod.
    func startS3Gateway(_ p: KObject, _ o: Options, client: KubeClient, now: Date) throws {
        let uid = K.meta(p)["uid"] as? String ?? K.name(p)
        guard !S3Gateways.shared.running(uid), let c = S3GatewayPod.container(p) else { return }
        var identities: [S3Gateway.Identity] = []
        switch S3GatewayPod.configSource(p, c) {
        case .none:
            return try postWaiting(
                p, o, client: client, now: now, reason: "CreateContainerConfigError",
                message: "appliance lab: no Secret volume is mounted where -s3.config points")
        case .some(.none): break
        case .some(.some(let source)):
            guard let secret = try client.get(KResource.secrets, K.namespace(p), source.secret) else {
                return try postWaiting(
                    p, o, client: client, now: now, reason: "CreateContainerConfigError",
                    message: "secret \"\(source.secret)\" not found")
            }
            guard let text = K.secretValue(secret, source.key) else {
                return try postWaiting(
                    p, o, client: client, now: now, reason: "CreateContainerConfigError",
                    message: "couldn't find key \(source.key) in Secret \(K.namespace(p))/\(source.secret)")
            }
            do { identities = try S3Gateway.identities(config: text) } catch {
                return try Self.postTerminated(
                    p, o, client: client, now: now,
                    outcome: .init(exitCode: 1, message: "s3 config: \(error)", log: "s3 config: \(error)"))
            }
        }
        let port = S3GatewayPod.port(c)
        let log = PodLog(path: Kubelet.logPath(context: context, pod: p))
        let server: HTTPServer
        do {
            let gateway = try S3Gateway(
                root: context.path("/var/lib/appliance-lab/seaweedfs/\(K.namespace(p))_\(K.name(p))"),
                identities: identities)
            server = try gateway.serve(host: o.nodeIP, port: port, log: { log.append($0) })
        } catch {
            let text = "appliance lab: S3 gateway of \(K.namespace(p))/\(K.name(p)): \(error)"
            log.append(text)
            return try Self.postTerminated(
                p, o, client: client, now: now, outcome: .init(exitCode: 1, message: text, log: text))
        }
        S3Gateways.shared.add(uid, server)
        log.append(
            "appliance lab: S3 gateway (stand-in for weed filer -s3) listening on \(o.nodeIP):\(port), \(identities.count) credential(s)"
        )
        try postRunning(p, o, client: client, now: now)
    }
}

/// A pod's log file, appended to line by line from any thread (the gateway's request threads).
final class PodLog: @unchecked Sendable {
    // @unchecked: writes are serialised by `lock`.
    private let lock = NSLock()
    let path: String

    init(path: String) {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640])
        }
    }

    func append(_ line: String) {
        lock.withLock {
            guard let h = FileHandle(forWritingAtPath: path) else { return }
            h.seekToEndOfFile()
            h.write(Data((line + "\n").utf8))
            try? h.close()
        }
    }
}
