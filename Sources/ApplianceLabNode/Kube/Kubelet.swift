import Foundation
import Yams

/// The `kubelet` stand-in: registers its Node (capacity from the hardware declaration, `nvidia.com/gpu` as the
/// GPU Operator's device plugin would advertise it: `DevicePluginModel`), renews its Lease and posts Ready every
/// heartbeat, and marks the pods bound to it Running/Ready. Runs no containers: a Job's pod's command is run on
/// the node as `JobPodModel` says (`Kubelet+JobPods.swift`).
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
        if let gpus = DevicePluginModel(context: context).advertisedGPUs() {
            cap["nvidia.com/gpu"] = "\(gpus)"
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
        // Node Feature Discovery's PCI label, which the GPU Operator places its operands by (the lab's chart
        // selects on it): the kubelet plays NFD's worker as it plays the device plugin.
        if (try? context.loadHardware())?.gpus != nil { labels["feature.node.kubernetes.io/pci-10de.present"] = "true" }
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
            let mine = try client.list(pods, nil, query: "fieldSelector=spec.nodeName%3D\(o.nodeName)")
            try syncMirrorPods(o, client: client, existing: mine, now: now)
            let present = Set(mine.compactMap { K.meta($0)["uid"] as? String })
            CNPGInstances.shared.stopAbsent(present: present)
            S3Gateways.shared.stopAbsent(present: present)
            GPUOperands.shared.stopAbsent(present: present)
            for p in mine
            where GPUOperand.of(p) != nil
                && !["Succeeded", "Failed"].contains(K.get(p, "status.phase") as? String ?? "")
            {
                try startGPUOperand(p, o, client: client, now: now)
            }
            for p in mine
            where S3GatewayPod.container(p) != nil
                && !["Succeeded", "Failed"].contains(K.get(p, "status.phase") as? String ?? "")
            {
                try startS3Gateway(p, o, client: client, now: now)
            }
            for p in mine
            where K.annotations(p)["kubernetes.io/config.mirror"] == nil
                && !["Succeeded", "Failed"].contains(K.get(p, "status.phase") as? String ?? "")
                && (K.get(p, "status.phase") as? String == "Pending" || K.conditionStatus(p, "Ready") != "True"
                    || K.controller(p)?["kind"] as? String == "Job")
            {
                if K.controller(p)?["kind"] as? String == "Job" {
                    try finishJobPod(p, o, client: client, now: now)
                    continue
                }
                if CNPGInstanceModel.isInstance(p) {
                    try startCNPGInstance(p, o, client: client, now: now)
                    continue
                }
                if S3GatewayPod.container(p) != nil || GPUOperand.of(p) != nil { continue }
                // A container's readiness probe passes `initialDelaySeconds` after the pod was created (the only
                // part of a probe the stand-in honours): Running, not Ready until then.
                let created = K.date(K.meta(p)["creationTimestamp"] as? String) ?? now
                let delays = (K.spec(p)["containers"] as? [KObject] ?? []).map {
                    Double(K.get($0, "readinessProbe.initialDelaySeconds") as? Int ?? 0)
                }
                let ready = now.timeIntervalSince(created) >= (delays.max() ?? 0)
                if !ready && K.get(p, "status.phase") as? String == "Running" { continue }
                let containers = (K.spec(p)["containers"] as? [KObject] ?? []).map {
                    Self.containerStatus($0, ready: ready, running: true, now: now)
                }
                let ts = K.timestamp(now)
                let readiness = ready ? "True" : "False"
                _ = try? client.patch(
                    pods, K.namespace(p), K.name(p),
                    [
                        "status": [
                            "phase": "Running", "hostIP": o.nodeIP, "podIP": o.nodeIP, "startTime": ts,
                            "hostIPs": [["ip": o.nodeIP]], "podIPs": [["ip": o.nodeIP]],
                            "containerStatuses": containers,
                            "conditions": [
                                ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                                ["type": "Initialized", "status": "True", "lastTransitionTime": ts],
                                ["type": "ContainersReady", "status": readiness, "lastTransitionTime": ts],
                                ["type": "Ready", "status": readiness, "lastTransitionTime": ts],
                            ],
                        ] as KObject
                    ])
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Runs a Job's pod to completion as `JobPodModel` decides (on a thread of its own: a real process may take a
    /// while, and the heartbeat goes on), and posts its final status. A pod whose container cannot be created yet
    /// (a missing Secret or ConfigMap, an unbound claim) waits with the kubelet's reason and is tried again.
    func finishJobPod(_ p: KObject, _ o: Options, client: KubeClient, now: Date) throws {
        let uid = K.meta(p)["uid"] as? String ?? K.name(p)
        guard JobPods.shared.claim(uid) else { return }
        var devices: String?
        if let cm = K.annotations(p)[KAISchedulerModel.sharedConfigMapAnnotation],
            let obj = try client.get(KResource.configmaps, K.namespace(p), cm)
        {
            devices = (obj["data"] as? [String: String])?["NVIDIA_VISIBLE_DEVICES"]
        }
        let runtime: JobPodModel.Runtime
        switch try podRuntime(p, o, client: client) {
        case .failure(let waiting):
            JobPods.shared.release(uid)
            try postWaiting(p, o, client: client, now: now, reason: waiting.reason, message: waiting.message)
            return
        case .success(let r): runtime = r
        }
        try postRunning(p, o, client: client, now: now)
        let context = self.context
        let pod = PodBox(p)
        let visible = devices
        let t = Thread {
            let p = pod.pod
            let outcome = JobPodModel(context: context).run(p, visibleDevices: visible, runtime: runtime)
            Kubelet.writeLog(context: context, pod: p, log: outcome.log)
            do { try Kubelet.postTerminated(p, o, client: client, now: Date(), outcome: outcome) } catch {
                JobPods.shared.release(uid)
                return
            }
            JobPods.shared.finish(uid)
        }
        t.start()
    }

    static func postTerminated(_ p: KObject, _ o: Options, client: KubeClient, now: Date, outcome: JobPodModel.Outcome)
        throws
    {
        let ts = K.timestamp(now)
        let ok = outcome.exitCode == 0
        let containers = (K.spec(p)["containers"] as? [KObject] ?? []).map { c -> KObject in
            var st = Self.containerStatus(c, ready: false, now: now)
            st["started"] = false
            let terminated: KObject = [
                "exitCode": Int(outcome.exitCode), "reason": ok ? "Completed" : "Error",
                "message": outcome.message, "startedAt": ts, "finishedAt": ts,
                "containerID": st["containerID"] as? String ?? "",
            ]
            st["state"] = ["terminated": terminated] as KObject
            return st
        }
        let ready: KObject = [
            "type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": ts,
        ]
        _ = try client.patch(
            KResource.pods, K.namespace(p), K.name(p),
            [
                "status": [
                    "phase": ok ? "Succeeded" : "Failed", "hostIP": o.nodeIP, "podIP": o.nodeIP, "startTime": ts,
                    "hostIPs": [["ip": o.nodeIP]], "podIPs": [["ip": o.nodeIP]],
                    "containerStatuses": containers,
                    "conditions": [
                        ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                        ["type": "Initialized", "status": "True", "lastTransitionTime": ts],
                        [
                            "type": "ContainersReady", "status": "False", "reason": "PodCompleted",
                            "lastTransitionTime": ts,
                        ],
                        ready,
                    ],
                ] as KObject
            ])
    }

    /// Runs until SIGTERM (called by the dispatcher with signals blocked).
    public func serve(_ args: [String]) -> Int32 {
        let o = options(args)
        guard let conf = context.read(o.kubeconfig), let client = try? KubeClient(kubeconfig: conf) else {
            FileHandle.standardError.write(
                Data("E0000 kubelet: failed to load kubeconfig \(o.kubeconfig): no such file or directory\n".utf8))
            return 1
        }
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
        let logs = startLogServer(o, kubeconfig: conf)
        _ = LabNodeDispatcher.waitForTermination()
        logs?.stop()
        // The servers of CloudNativePG instances are this kubelet's children: stopped with it.
        CNPGInstances.shared.stopAll(seconds: 10)
        S3Gateways.shared.stopAll()
        GPUOperands.shared.stopAll()
        return 0
    }
}

extension Kubelet {
    /// 64 hex digits derived from `text` (stable image and container ids; not a real digest).
    static func digest(_ text: String) -> String {
        var out = ""
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for round in 0..<4 {
            for b in (text + "#\(round)").utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            out += String(format: "%016llx", h)
        }
        return out
    }

    /// A container's status as the kubelet reports it (`imageID` and `containerID` are required by the API).
    /// `running` without `ready`: started, its readiness probe not passing yet.
    static func containerStatus(_ c: KObject, ready: Bool, running: Bool? = nil, now: Date) -> KObject {
        let running = running ?? ready
        let image = c["image"] as? String ?? ""
        let repo = image.split(separator: ":").first.map(String.init) ?? image
        var st: KObject = [
            "name": c["name"] as? String ?? "", "image": image, "imageID": "\(repo)@sha256:\(digest(image))",
            "containerID": "containerd://\(digest(image + (c["name"] as? String ?? "")))", "ready": ready,
            "started": running, "restartCount": 0,
        ]
        st["state"] =
            running
            ? ["running": ["startedAt": K.timestamp(now)]] as KObject
            : ["waiting": ["reason": "ContainerCreating"]] as KObject
        return st
    }

    /// Whether a control-plane component of this node answers (what its static pod's probes check).
    func componentRunning(_ component: String, _ o: Options) -> Bool {
        if component == "etcd" {
            return EtcdClient(endpoints: [NodeNetwork(context: context, address: o.nodeIP).etcdClientURL]).healthy()
        }
        // kube-controller-manager and kube-scheduler run inside the API server stand-in.
        return (try? HTTPClient.request("GET", "https://\(o.nodeIP):6443/livez", timeout: 2, tls: .insecure).status)
            == 200
    }

    /// Mirror pods of the static pods in /etc/kubernetes/manifests (kube-system/COMPONENT-NODE, with the
    /// `kubernetes.io/config.mirror` annotation and the manifest's labels), Ready while the component answers;
    /// removed when their manifest is.
    func syncMirrorPods(_ o: Options, client: KubeClient, existing: [KObject], now: Date) throws {
        let dir = "/etc/kubernetes/manifests"
        let files = (try? FileManager.default.contentsOfDirectory(atPath: context.path(dir))) ?? []
        var wanted: Set<String> = []
        let node = try client.get(KResource.nodes, nil, o.nodeName)
        for file in files.sorted() where file.hasSuffix(".yaml") {
            guard let text = context.read(dir + "/" + file), let y = try? Yams.load(yaml: text),
                let data = try? JSONSerialization.data(withJSONObject: y), let manifest = K.parse(data)
            else { continue }
            let component = K.name(manifest)
            let name = "\(component)-\(o.nodeName)"
            wanted.insert(name)
            let ready = componentRunning(component, o)
            let hash = String(Self.digest(text).prefix(32))
            let current = existing.first { K.name($0) == name && K.namespace($0) == "kube-system" }
            let ts = K.timestamp(now)
            let containers = (K.spec(manifest)["containers"] as? [KObject] ?? []).map {
                Self.containerStatus($0, ready: ready, now: now)
            }
            let condition = ready ? "True" : "False"
            let status: KObject = [
                "phase": ready ? "Running" : "Pending", "hostIP": o.nodeIP, "podIP": o.nodeIP,
                "hostIPs": [["ip": o.nodeIP]], "podIPs": [["ip": o.nodeIP]], "startTime": ts, "qosClass": "Burstable",
                "containerStatuses": containers,
                "conditions": [
                    ["type": "PodScheduled", "status": "True", "lastTransitionTime": ts],
                    ["type": "Initialized", "status": "True", "lastTransitionTime": ts],
                    ["type": "ContainersReady", "status": condition, "lastTransitionTime": ts],
                    ["type": "Ready", "status": condition, "lastTransitionTime": ts],
                ],
            ]
            if let current {
                let wasReady = K.conditionStatus(current, "Ready") == "True"
                if wasReady != ready || K.annotations(current)["kubernetes.io/config.hash"] != hash {
                    _ = try client.patch(
                        KResource.pods, "kube-system", name,
                        [
                            "metadata": [
                                "annotations": ["kubernetes.io/config.hash": hash, "kubernetes.io/config.mirror": hash]
                            ],
                            "status": status,
                        ])
                }
                continue
            }
            var meta = K.meta(manifest)
            meta["name"] = name
            meta["namespace"] = "kube-system"
            meta["annotations"] = [
                "kubernetes.io/config.hash": hash, "kubernetes.io/config.mirror": hash,
                "kubernetes.io/config.seen": ts, "kubernetes.io/config.source": "file",
            ]
            if let uid = node.flatMap({ K.meta($0)["uid"] as? String }) {
                meta["ownerReferences"] = [
                    ["apiVersion": "v1", "kind": "Node", "name": o.nodeName, "uid": uid, "controller": true]
                ]
            }
            var spec = K.spec(manifest)
            spec["nodeName"] = o.nodeName
            spec["tolerations"] = [["operator": "Exists", "effect": "NoExecute"]]
            spec["priority"] = 2_000_001_000
            spec["enableServiceLinks"] = true
            spec["dnsPolicy"] = "ClusterFirst"
            spec["terminationGracePeriodSeconds"] = 30
            var pod: KObject = ["apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec]
            pod["status"] = status
            _ = try? client.create(KResource.pods, "kube-system", pod)
        }
        for p in existing
        where K.namespace(p) == "kube-system" && K.annotations(p)["kubernetes.io/config.mirror"] != nil
            && !wanted.contains(K.name(p))
        {
            _ = try? client.delete(KResource.pods, "kube-system", K.name(p))
        }
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
        let certFile = f.value("tls-cert-file") ?? "/etc/kubernetes/pki/apiserver.crt"
        let keyFile = f.value("tls-private-key-file") ?? "/etc/kubernetes/pki/apiserver.key"
        let caFile = f.value("client-ca-file") ?? "/etc/kubernetes/pki/ca.crt"
        guard let cert = context.read(certFile), let key = context.read(keyFile), let ca = context.read(caFile) else {
            FileHandle.standardError.write(
                Data(
                    "E0000 run.go: \"command failed\" err=\"unable to load server certificate: open \(certFile), \(keyFile) or \(caFile): no such file or directory\"\n"
                        .utf8))
            return 1
        }
        // The kubelet client certificate (kubeadm passes `--kubelet-client-certificate`/`--kubelet-client-key`).
        let kubeletCert = context.read(
            f.value("kubelet-client-certificate") ?? "/etc/kubernetes/pki/apiserver-kubelet-client.crt")
        let kubeletKey = context.read(
            f.value("kubelet-client-key") ?? "/etc/kubernetes/pki/apiserver-kubelet-client.key")
        let kubeletClient = kubeletCert.flatMap { c in
            kubeletKey.map { TLSClientIdentity(caPEM: nil, certificatePEM: c, keyPEM: $0) }
        }
        let api = APIServerStandin(
            etcd: EtcdClient(endpoints: etcd), version: v, nodeGraceSeconds: grace, identity: "\(addr):\(port)",
            pki: LabPKI(context: context, dir: (caFile as NSString).deletingLastPathComponent),
            nfsRoot: context.path(LabPaths.nfsRoot), kubeletClient: kubeletClient)
        let server: HTTPServer
        do {
            server = try HTTPServer(
                host: f.value("bind-address") ?? addr, port: port,
                tls: TLSServerIdentity(certificatePEM: cert, keyPEM: key, clientCAPEM: ca),
                log: { FileHandle.standardError.write(Data(APIServerStandin.httpLogLine($0).utf8)) }
            ) { api.respond($0) }
        } catch {
            FileHandle.standardError.write(Data("E0000 run.go: \"command failed\" err=\"\(error)\"\n".utf8))
            return 1
        }
        server.start()
        let t = Thread { api.runControllers() }
        t.start()
        FileHandle.standardError.write(
            Data(
                "I0000 kube-apiserver-standin serving on https://\(addr):\(port) (etcd \(etcd.joined(separator: ",")), \(v))\n"
                    .utf8))
        _ = LabNodeDispatcher.waitForTermination()
        server.stop()
        return 0
    }
}
