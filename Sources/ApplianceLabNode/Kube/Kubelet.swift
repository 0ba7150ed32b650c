import Foundation

/// The `kubelet` stand-in: registers its Node (capacity from the hardware declaration, `nvidia.com/gpu` when
/// the lab NVIDIA driver is loaded, counting only GPUs that answer), renews its Lease and posts Ready every
/// heartbeat, and marks the pods bound to it Running/Ready. Runs no containers.
public struct Kubelet: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public struct Options: Sendable {
        public var kubeconfig = "/etc/kubernetes/kubelet.conf"
        public var nodeName: String
        public var nodeIP: String
        public var labels: [String: String] = [:]
        public var heartbeat: Double = 2
    }

    public func options(_ args: [String]) -> Options {
        let f = Flags(args)
        var o = Options(
            nodeName: f.value("hostname-override") ?? context.hostname,
            nodeIP: NodeNetwork.detect(context: context, explicit: f.value("node-ip")))
        if let k = f.value("kubeconfig") { o.kubeconfig = k }
        for kv in (f.value("node-labels") ?? "").split(separator: ",") {
            let p = kv.split(separator: "=", maxSplits: 1).map(String.init)
            o.labels[p[0]] = p.count > 1 ? p[1] : ""
        }
        if let h = context.environment["APPLIANCE_LAB_KUBELET_HEARTBEAT"], let v = Double(h) { o.heartbeat = v }
        return o
    }

    /// The Node capacity this kubelet advertises (allocatable is the same minus 100 MiB of memory).
    public func resources() -> KObject {
        let hw = try? context.loadHardware()
        let cpus =
            hw.map { $0.cpu.sockets * $0.cpu.coresPerSocket * $0.cpu.threadsPerCore }
            ?? ProcessInfo.processInfo.activeProcessorCount
        let memKi = (hw?.memoryGiB ?? 8) * 1024 * 1024
        var cap: KObject = [
            "cpu": "\(cpus)", "memory": "\(memKi)Ki", "pods": "110",
            "ephemeral-storage": "\((hw?.disks.first?.sizeGB ?? 100) * 976_562)Ki",
            "hugepages-1Gi": "0", "hugepages-2Mi": "0",
        ]
        if let inv = try? GPUInventory.load(context: context), case .loaded = inv.driver, !inv.gpus.isEmpty {
            cap["nvidia.com/gpu"] = "\(inv.gpus.count)"
        }
        return cap
    }

    func nodeObject(_ o: Options, now: Date) -> KObject {
        let cap = resources()
        var alloc = cap
        if let m = cap["memory"] as? String, let ki = Int(m.dropLast(2)) {
            alloc["memory"] = "\(max(0, ki - 102_400))Ki"
        }
        let kv = InstalledVersions.of("kubelet", context: context)
        let osImage =
            (context.read("/etc/os-release") ?? (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }.map {
                $0.dropFirst(12).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            } ?? "Debian GNU/Linux 12 (bookworm)"
        var uts = utsname()
        uname(&uts)
        let kernel = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var labels: [String: String] = [
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": o.nodeName, "kubernetes.io/os": "linux",
        ]
        for (k, v) in o.labels { labels[k] = v }
        let ts = K.timestamp(now)
        func cond(_ type: String, _ status: String, _ reason: String, _ msg: String) -> KObject {
            [
                "type": type, "status": status, "reason": reason, "message": msg, "lastHeartbeatTime": ts,
                "lastTransitionTime": ts,
            ]
        }
        return [
            "apiVersion": "v1", "kind": "Node",
            "metadata": [
                "name": o.nodeName, "labels": labels,
                "annotations": [
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                ],
            ],
            "spec": [:] as KObject,
            "status": [
                "capacity": cap, "allocatable": alloc,
                "addresses": [
                    ["type": "InternalIP", "address": o.nodeIP], ["type": "Hostname", "address": o.nodeName],
                ],
                "conditions": [
                    cond(
                        "MemoryPressure", "False", "KubeletHasSufficientMemory",
                        "kubelet has sufficient memory available"),
                    cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "nodeInfo": [
                    "architecture": "amd64", "bootID": K.uid(), "containerRuntimeVersion": "containerd://1.6.20",
                    "kernelVersion": kernel, "kubeProxyVersion": kv.description, "kubeletVersion": kv.description,
                    "machineID": String(K.uid().replacingOccurrences(of: "-", with: "")), "operatingSystem": "linux",
                    "osImage": osImage, "systemUUID": K.uid(),
                ] as KObject,
                "daemonEndpoints": ["kubeletEndpoint": ["Port": 10250]],
            ] as KObject,
        ]
    }

    /// One registration/heartbeat round. Returns an error text when the apiserver could not be reached.
    public func heartbeat(_ o: Options, client: KubeClient, now: Date = Date()) -> String? {
        let nodes = KResource.nodes, leases = KResource.leases, pods = KResource.pods
        do {
            let fresh = nodeObject(o, now: now)
            if let existing = try client.get(nodes, nil, o.nodeName) {
                // Keep transition times of unchanged conditions; post status.
                var status = fresh["status"] as? KObject ?? [:]
                let old = K.status(existing)["conditions"] as? [KObject] ?? []
                var conds = status["conditions"] as? [KObject] ?? []
                for i in conds.indices {
                    if let prev = old.first(where: { $0["type"] as? String == conds[i]["type"] as? String }),
                        prev["status"] as? String == conds[i]["status"] as? String
                    {
                        conds[i]["lastTransitionTime"] = prev["lastTransitionTime"]
                    }
                }
                status["conditions"] = conds
                var info = status["nodeInfo"] as? KObject ?? [:]
                for k in ["bootID", "machineID", "systemUUID"] {
                    info[k] = K.get(existing, "status.nodeInfo.\(k)") ?? info[k]
                }
                status["nodeInfo"] = info
                _ = try client.patch(nodes, nil, o.nodeName, ["status": status])
            } else {
                _ = try client.create(nodes, nil, fresh)
            }
            let lease: KObject = [
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": ["name": o.nodeName, "namespace": "kube-node-lease"],
                "spec": ["holderIdentity": o.nodeName, "leaseDurationSeconds": 40, "renewTime": K.timestamp(now)],
            ]
            _ = try client.apply(leases, "kube-node-lease", lease)
            for p in try client.list(pods, nil, query: "fieldSelector=spec.nodeName%3D\(o.nodeName)")
            where K.get(p, "status.phase") as? String == "Pending" || K.conditionStatus(p, "Ready") != "True" {
                let containers = (K.spec(p)["containers"] as? [KObject] ?? []).map { c -> KObject in
                    [
                        "name": c["name"] as? String ?? "", "image": c["image"] as? String ?? "", "ready": true,
                        "started": true, "restartCount": 0, "state": ["running": ["startedAt": K.timestamp(now)]],
                    ]
                }
                let ts = K.timestamp(now)
                _ = try? client.patch(
                    pods, K.namespace(p), K.name(p),
                    [
                        "status": [
                            "phase": "Running", "hostIP": o.nodeIP, "podIP": o.nodeIP, "startTime": ts,
                            "containerStatuses": containers,
                            "conditions": [
                                ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                                ["type": "Initialized", "status": "True", "lastTransitionTime": ts],
                                ["type": "ContainersReady", "status": "True", "lastTransitionTime": ts],
                                ["type": "Ready", "status": "True", "lastTransitionTime": ts],
                            ],
                        ] as KObject
                    ])
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Runs until SIGTERM (called by the dispatcher with signals blocked).
    public func serve(_ args: [String]) -> Int32 {
        let o = options(args)
        guard let conf = context.read(o.kubeconfig), let server = Kubeconfig.server(conf) else {
            FileHandle.standardError.write(
                Data("E0000 kubelet: failed to load kubeconfig \(o.kubeconfig): no such file or directory\n".utf8))
            return 1
        }
        let client = KubeClient(server: server)
        let period = o.heartbeat
        let t = Thread {
            while true {
                if let e = heartbeat(o, client: client) {
                    FileHandle.standardError.write(
                        Data(
                            "E kubelet_node_status.go: \"Unable to register node with API server\" err=\"\(e)\" node=\"\(o.nodeName)\"\n"
                                .utf8))
                }
                Thread.sleep(forTimeInterval: period)
            }
        }
        t.start()
        _ = LabNodeDispatcher.waitForTermination()
        return 0
    }
}

extension APIServerStandin {
    /// `kube-apiserver-standin --advertise-address A --secure-port P --etcd-servers URLS --kubernetes-version V
    /// [--node-monitor-grace-period D]`
    public static func serve(_ args: [String], context: LabNodeContext) -> Int32 {
        let f = Flags(args)
        let addr = f.value("advertise-address") ?? "127.0.0.1"
        let port = Int(f.value("secure-port") ?? "6443") ?? 6443
        let etcd = (f.value("etcd-servers") ?? "http://127.0.0.1:2379").split(separator: ",").map(String.init)
        let v = KubeVersion(f.value("kubernetes-version") ?? "") ?? InstalledVersions.of("kubeadm", context: context)
        // The cluster's node-monitor-grace-period (kubeadm passes the ClusterConfiguration's
        // controllerManager.extraArgs on), else the lab environment, else 20 s.
        let grace =
            f.value("node-monitor-grace-period").flatMap(KubeadmConfigParser.parseDuration)
            ?? Double(context.environment["APPLIANCE_LAB_NODE_GRACE"] ?? "") ?? 20
        let api = APIServerStandin(
            etcd: EtcdClient(endpoints: etcd), version: v, nodeGraceSeconds: grace, identity: "\(addr):\(port)")
        let server: HTTPServer
        do {
            server = try HTTPServer(host: addr, port: port) { api.handle($0) }
        } catch {
            FileHandle.standardError.write(Data("E0000 run.go: \"command failed\" err=\"\(error)\"\n".utf8))
            return 1
        }
        server.start()
        let t = Thread { api.runControllers() }
        t.start()
        FileHandle.standardError.write(
            Data(
                "I0000 kube-apiserver-standin serving on http://\(addr):\(port) (etcd \(etcd.joined(separator: ",")), \(v))\n"
                    .utf8))
        _ = LabNodeDispatcher.waitForTermination()
        server.stop()
        return 0
    }
}
