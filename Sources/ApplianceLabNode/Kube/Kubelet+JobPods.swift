import Foundation

/// The Job pods this kubelet has started (a pod runs once: a uid is never claimed again after it finished).
final class JobPods: @unchecked Sendable {
    // @unchecked: both sets are guarded by `lock`.
    static let shared = JobPods()
    private let lock = NSLock()
    private var running: Set<String> = []
    private var finished: Set<String> = []

    func claim(_ uid: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if running.contains(uid) || finished.contains(uid) { return false }
        running.insert(uid)
        return true
    }
    func release(_ uid: String) {
        lock.lock()
        running.remove(uid)
        lock.unlock()
    }
    func finish(_ uid: String) {
        lock.lock()
        running.remove(uid)
        finished.insert(uid)
        lock.unlock()
    }
}

/// A pod handed to the thread that runs it (read only there).
final class PodBox: @unchecked Sendable {
    // @unchecked: never mutated after init.
    let pod: KObject
    init(_ pod: KObject) { self.pod = pod }
}

/// What the kubelet resolves before it starts a Job pod's container: its environment, its volumes, its
/// `/etc/hosts`, and where its log goes.
extension Kubelet {
    struct Waiting: Error {
        var reason: String
        var message: String
    }

    /// The container's runtime, or why it cannot be created yet.
    func podRuntime(_ p: KObject, _ o: Options, client: KubeClient) throws -> Result<JobPodModel.Runtime, Waiting> {
        let ns = K.namespace(p)
        let container = (K.spec(p)["containers"] as? [KObject] ?? []).first ?? [:]
        var rt = JobPodModel.Runtime()
        if let deadline = K.spec(p)["activeDeadlineSeconds"] as? Int { rt.deadlineSeconds = deadline }
        for e in container["env"] as? [KObject] ?? [] {
            guard let name = e["name"] as? String else { continue }
            if let v = e["value"] as? String {
                rt.environment.append((name, JobPodModel.expand(v, Dictionary(rt.environment) { _, b in b })))
                continue
            }
            let from = e["valueFrom"] as? KObject ?? [:]
            if let ref = from["secretKeyRef"] as? KObject ?? from["configMapKeyRef"] as? KObject {
                let secret = from["secretKeyRef"] != nil
                let what = secret ? "secret" : "configmap"
                let objName = ref["name"] as? String ?? "", key = ref["key"] as? String ?? ""
                let optional = ref["optional"] as? Bool ?? false
                let obj = try client.get(secret ? KResource.secrets : KResource.configmaps, ns, objName)
                guard let obj else {
                    if optional { continue }
                    return .failure(
                        Waiting(reason: "CreateContainerConfigError", message: "\(what) \"\(objName)\" not found"))
                }
                let value: String?
                if secret {
                    value = K.secretValue(obj, key).map { String(decoding: $0, as: UTF8.self) }
                } else {
                    value = (obj["data"] as? [String: String])?[key]
                }
                guard let value else {
                    if optional { continue }
                    return .failure(
                        Waiting(
                            reason: "CreateContainerConfigError",
                            message: "couldn't find key \(key) in \(secret ? "Secret" : "ConfigMap") \(ns)/\(objName)"))
                }
                rt.environment.append((name, value))
            } else if let field = (from["fieldRef"] as? KObject)?["fieldPath"] as? String {
                let value: String? =
                    switch field {
                    case "metadata.name": K.name(p)
                    case "metadata.namespace": ns
                    case "spec.nodeName": o.nodeName
                    case "status.podIP", "status.hostIP": o.nodeIP
                    default: nil
                    }
                if let value { rt.environment.append((name, value)) }
            }
        }
        var sources: [String: String] = [:]
        for v in K.spec(p)["volumes"] as? [KObject] ?? [] {
            let name = v["name"] as? String ?? ""
            if let claim = (v["persistentVolumeClaim"] as? KObject)?["claimName"] as? String {
                guard let pvc = try client.get(KResource.persistentvolumeclaims, ns, claim) else {
                    return .failure(
                        Waiting(
                            reason: "ContainerCreating",
                            message: "persistentvolumeclaim \"\(claim)\" not found"))
                }
                guard let pvName = K.spec(pvc)["volumeName"] as? String, !pvName.isEmpty,
                    let pv = try client.get(KResource.persistentvolumes, nil, pvName)
                else {
                    return .failure(
                        Waiting(
                            reason: "ContainerCreating",
                            message: "pod has unbound immediate PersistentVolumeClaims (claim \(claim))"))
                }
                guard K.get(pv, "spec.csi.driver") as? String == APIServerStandin.nfsDriver,
                    let attrs = K.get(pv, "spec.csi.volumeAttributes") as? [String: String]
                else {
                    return .failure(
                        Waiting(
                            reason: "ContainerCreating",
                            message: "appliance lab: volume \(pvName) is not an NFS CSI volume; the lab mounts no other"
                        ))
                }
                let share = attrs["share"] ?? "/"
                let dir =
                    context.path(LabPaths.nfsRoot) + "/" + (attrs["server"] ?? "")
                    + (share.hasPrefix("/") ? share : "/" + share) + "/" + (attrs["subdir"] ?? "")
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                    return .failure(
                        Waiting(
                            reason: "ContainerCreating",
                            message:
                                "MountVolume.SetUp failed for volume \"\(pvName)\" : mount \(attrs["server"] ?? ""):\(share)/\(attrs["subdir"] ?? ""): no such file or directory"
                        ))
                }
                sources[name] = dir
            } else if v["emptyDir"] != nil {
                let uid = K.meta(p)["uid"] as? String ?? K.name(p)
                let dir = context.path("/var/lib/kubelet/pods/\(uid)/volumes/kubernetes.io~empty-dir/\(name)")
                try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                sources[name] = dir
            }
        }
        for m in container["volumeMounts"] as? [KObject] ?? [] {
            let name = m["name"] as? String ?? ""
            guard let source = sources[name], let path = m["mountPath"] as? String else {
                return .failure(
                    Waiting(
                        reason: "ContainerCreating",
                        message:
                            "appliance lab: volume \"\(name)\" is of a kind the lab does not mount (NFS claims and emptyDir only)"
                    ))
            }
            rt.mounts.append((source, path, m["readOnly"] as? Bool ?? false))
        }
        rt.hosts = try podHosts(p, o, client: client)
        return .success(rt)
    }

    /// The pod's `/etc/hosts`: itself, and each Service of the cluster with a selector under the names a pod's
    /// resolver finds it by (`NAME` in the pod's namespace, `NAME.NS`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`),
    /// at the address of the first Ready pod the Service selects (the lab has no cluster IPs: pod IP = node IP).
    func podHosts(_ p: KObject, _ o: Options, client: KubeClient) throws -> String {
        var lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", "\(o.nodeIP)\t\(K.name(p))"]
        let services = try client.list(KResource.services, nil)
        guard !services.isEmpty else { return lines.joined(separator: "\n") + "\n" }
        let pods = try client.list(KResource.pods, nil)
        for svc in services {
            guard let selector = K.spec(svc)["selector"] as? [String: String], !selector.isEmpty else { continue }
            let ns = K.namespace(svc), name = K.name(svc)
            let target = pods.first { q in
                K.namespace(q) == ns && APIServerStandin.podReady(q)
                    && selector.allSatisfy { K.labels(q)[$0.key] == $0.value }
            }
            guard let ip = target.flatMap({ K.get($0, "status.podIP") as? String }), !ip.isEmpty else { continue }
            var names = ["\(name).\(ns).svc.cluster.local", "\(name).\(ns).svc", "\(name).\(ns)"]
            if ns == K.namespace(p) { names.append(name) }
            lines.append("\(ip)\t" + names.joined(separator: " "))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The container's log where the real kubelet keeps it: `/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`.
    static func writeLog(context: LabNodeContext, pod: KObject, log: String) {
        FileManager.default.createFile(
            atPath: logPath(context: context, pod: pod), contents: Data(log.utf8),
            attributes: [.posixPermissions: 0o640])
    }

    /// The path of the pod's first container's log on this node (its directory created).
    static func logPath(context: LabNodeContext, pod: KObject) -> String {
        let container = ((K.spec(pod)["containers"] as? [KObject] ?? []).first?["name"] as? String) ?? "main"
        let dir = context.path(
            "/var/log/pods/\(K.namespace(pod))_\(K.name(pod))_\(K.meta(pod)["uid"] as? String ?? "")/\(container)")
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir + "/0.log"
    }

    func postWaiting(_ p: KObject, _ o: Options, client: KubeClient, now: Date, reason: String, message: String) throws
    {
        let current = (K.status(p)["containerStatuses"] as? [KObject])?.first
        if K.get(current, "state.waiting.message") as? String == message { return }
        let containers = (K.spec(p)["containers"] as? [KObject] ?? []).map { c -> KObject in
            var st = Self.containerStatus(c, ready: false, now: now)
            st["state"] = ["waiting": ["reason": reason, "message": message]] as KObject
            return st
        }
        let ts = K.timestamp(now)
        _ = try client.patch(
            KResource.pods, K.namespace(p), K.name(p),
            [
                "status": [
                    "phase": "Pending", "hostIP": o.nodeIP, "startTime": ts, "containerStatuses": containers,
                    "conditions": [
                        ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                        ["type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": ts],
                    ],
                ] as KObject
            ])
    }

    func postRunning(_ p: KObject, _ o: Options, client: KubeClient, now: Date) throws {
        let ts = K.timestamp(now)
        let containers = (K.spec(p)["containers"] as? [KObject] ?? []).map {
            Self.containerStatus($0, ready: true, now: now)
        }
        _ = try client.patch(
            KResource.pods, K.namespace(p), K.name(p),
            [
                "status": [
                    "phase": "Running", "hostIP": o.nodeIP, "podIP": o.nodeIP, "startTime": ts,
                    "hostIPs": [["ip": o.nodeIP]], "podIPs": [["ip": o.nodeIP]], "containerStatuses": containers,
                    "conditions": [
                        ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                        ["type": "Initialized", "status": "True", "lastTransitionTime": ts],
                        ["type": "ContainersReady", "status": "True", "lastTransitionTime": ts],
                        ["type": "Ready", "status": "True", "lastTransitionTime": ts],
                    ],
                ] as KObject
            ])
    }
}
