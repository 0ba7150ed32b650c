import ApplianceModel
import AppliancePreflight
import Foundation
import Testing

@testable import ApplianceLab

/// The stand-ins as an installer meets them: real .deb packages copied to booted nspawn nodes and installed with
/// `dpkg -i` over SSH, then driven by hand like the real tools (DESIGN section 7, issue 7).
extension RealLabSuites {
    @Suite("the stand-ins installed in lab nodes", .tags(.lab), .serialized)
    struct LabStandInTests {
        static let kubernetes = ["appliance-labnode", "kubeadm", "kubelet", "kubectl"]

        @Test func oneControlPlaneTwoWorkersPDBExpiredTokenSkewAndAPoweredOffWorker() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            let packages = try labPackages()
            let lab = try StandInLab(id: "ls1", subnet: "10.77.211", profile: "lab", nodes: 3, controlPlanes: 1)
            defer { lab.down() }
            let all = ["cp-1", "gpu-1", "gpu-2"]
            let cp = try lab.address("cp-1")

            // Nothing of Kubernetes or the GPU stack is on a fresh node.
            for tool in ["kubeadm", "kubectl", "kubelet", "nvidia-smi"] {
                #expect(try lab.run("gpu-1", tool).status == 127, "\(tool) exists before its package")
            }
            try lab.install(Self.kubernetes, on: all, from: packages)
            #expect(try lab.ok("gpu-1", "dpkg-query -W -f '${Version}' kubeadm kubelet") == "1.34.3-1.11.34.3-1.1")
            #expect(try lab.ok("gpu-1", "cat /var/lib/appliance-lab/versions/kubelet") == "v1.34.3")
            switch labKubectl(kubernetesVersion: LabPackages.defaultKubernetesVersion) {
            case .standIn:
                #expect(try lab.ok("gpu-1", "readlink -f /usr/bin/kubectl") == LabPackages.binary)
                #expect(try lab.ok("gpu-1", "cat /var/lib/appliance-lab/kubectl-kind") == "stand-in")
            case .real(_, let version):
                #expect(try lab.ok("gpu-1", "kubectl version --client").contains("Client Version: v\(version)"))
                #expect(try lab.ok("gpu-1", "cat /var/lib/appliance-lab/kubectl-kind") == "real")
            }
            #expect(try lab.run("gpu-1", "nvidia-smi").status == 127)
            try lab.install(["helm"], on: ["cp-1"], from: packages)
            #expect(try lab.ok("cp-1", "helm version --short") == "v\(LabPackages.defaultHelmVersion)+glabstandin")

            // A config real kubeadm rejects is rejected; the real one inits the control plane.
            try lab.write(
                "cp-1", "/root/bad.yaml",
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.244.0.0/33"
            )
            let bad = try lab.run("cp-1", "kubeadm init --config /root/bad.yaml")
            #expect(bad.status != 0 && bad.stderr.contains("10.244.0.0/33"), "\(bad.combined)")
            try lab.write("cp-1", "/root/kubeadm.yaml", kubeadmConfig(address: cp, node: "cp-1"))
            let initOut = try lab.ok("cp-1", "kubeadm init --config /root/kubeadm.yaml")
            #expect(initOut.contains("Your Kubernetes control-plane has initialized successfully!"))
            #expect(initOut.contains("kubeadm join \(cp):6443 --token "))
            #expect(
                try lab.ok("cp-1", "systemctl is-active lab-etcd kube-apiserver-standin kubelet")
                    == "active\nactive\nactive")
            // The real etcd holds the objects; the API listens on the node's own address.
            #expect(
                try lab.ok(
                    "cp-1", "ETCDCTL_API=3 etcdctl --endpoints http://\(cp):2379 get /registry/nodes/cp-1 --keys-only")
                    == "/registry/nodes/cp-1")

            // Join both workers with a fresh join command.
            let join = try lab.ok("cp-1", "kubeadm token create --print-join-command")
            #expect(
                join.hasPrefix("kubeadm join \(cp):6443 --token ")
                    && join.contains("--discovery-token-ca-cert-hash sha256:"))
            for r in Parallel.map(["gpu-1", "gpu-2"], { node in (node, try? lab.run(node, join)) }) {
                #expect(r.1?.status == 0, "\(r.0): \(r.1?.combined ?? "ssh failed")")
                #expect(r.1?.stdout.contains("This node has joined the cluster") == true)
            }
            #expect(
                try lab.eventually(30) {
                    try lab.nodeReadiness(on: "cp-1") == ["cp-1": "True", "gpu-1": "True", "gpu-2": "True"]
                },
                "nodes: \(String(describing: try? lab.nodeReadiness(on: "cp-1")))")
            let nodeJSON = try lab.ok("cp-1", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get node gpu-1 -o json")
            let node = try #require(try JSONSerialization.jsonObject(with: Data(nodeJSON.utf8)) as? [String: Any])
            let status = try #require(node["status"] as? [String: Any])
            #expect((status["nodeInfo"] as? [String: Any])?["kubeletVersion"] as? String == "v1.34.3")
            #expect(
                ((status["addresses"] as? [[String: Any]])?.first)?["address"] as? String == (try lab.address("gpu-1")))
            #expect((status["capacity"] as? [String: Any])?["nvidia.com/gpu"] == nil)

            // The driver, and the container toolkit giving containerd its nvidia runtime, make the node's GPUs
            // allocatable (what the device plugin needs to start; see DevicePluginModel).
            try lab.install(["nvidia-driver", "nvidia-container-toolkit"], on: ["gpu-1"], from: packages)
            try lab.ok("gpu-1", "nvidia-ctk runtime configure --runtime=containerd")
            #expect(
                try lab.eventually(20) {
                    try lab.run(
                        "cp-1",
                        "KUBECONFIG=/etc/kubernetes/admin.conf kubectl get node gpu-1 -o jsonpath='{.status.allocatable.nvidia\\.com/gpu}'"
                    ).stdout == "2"
                })

            // A join with a token that has expired fails as the real one does.
            let expired = try lab.ok("cp-1", "kubeadm token create --ttl 1s --print-join-command")
            let tokenID = try #require(
                expired.split(separator: " ").drop { $0 != "--token" }.dropFirst().first?.prefix(6))
            Thread.sleep(forTimeInterval: 2)
            try lab.ok("gpu-2", "kubeadm reset -f")
            let refused = try lab.run("gpu-2", expired)
            #expect(refused.status == 1)
            #expect(
                refused.stderr.contains(
                    "couldn't validate the identity of the API Server: could not find a JWS signature in the cluster-info ConfigMap for token ID \"\(tokenID)\""
                ), "\(refused.combined)")
            // kubeadm refuses to join under the name of a Node that is still Ready: remove it first, as the
            // real procedure does.
            try lab.ok("cp-1", "KUBECONFIG=/etc/kubernetes/admin.conf kubectl delete node gpu-2")
            try lab.ok("gpu-2", join)

            // A drain that a PodDisruptionBudget blocks fails with kubectl's messages.
            try lab.write(
                "cp-1", "/root/web.yaml",
                """
                apiVersion: apps/v1
                kind: Deployment
                metadata: {name: web, namespace: default}
                spec:
                  replicas: 2
                  selector: {matchLabels: {app: web}}
                  template:
                    metadata: {labels: {app: web}}
                    spec:
                      nodeSelector: {kubernetes.io/hostname: gpu-1}
                      containers: [{name: web, image: registry.lab/web:1}]
                ---
                apiVersion: policy/v1
                kind: PodDisruptionBudget
                metadata: {name: web, namespace: default}
                spec:
                  minAvailable: 2
                  selector: {matchLabels: {app: web}}
                """)
            let kubectl = "KUBECONFIG=/etc/kubernetes/admin.conf kubectl"
            try lab.ok(
                "cp-1", "\(kubectl) apply -f /root/web.yaml && \(kubectl) rollout status deployment/web --timeout=60s")
            let drainStarted = Date()
            let drain = try lab.run(
                "cp-1", "\(kubectl) drain gpu-1 --ignore-daemonsets --delete-emptydir-data --timeout=6s")
            let drainSeconds = Date().timeIntervalSince(drainStarted)
            #expect(drainSeconds >= 6, "the drain gave up after \(drainSeconds) s, before its 6 s timeout")
            #expect(drain.status == 1, "\(drain.combined)")
            #expect(drain.stdout.contains("node/gpu-1 cordoned"))
            #expect(
                drain.stderr.contains(
                    "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."))
            #expect(drain.stderr.contains("error: unable to drain node \"gpu-1\""))
            #expect(drain.stderr.contains("global timeout reached: 6s"))
            #expect(try lab.ok("cp-1", "\(kubectl) get pods -l app=web --no-headers | wc -l") == "2")
            try lab.ok("cp-1", "\(kubectl) uncordon gpu-1")

            // Version skew: with kubeadm 1.36 installed, an upgrade two minors ahead is refused.
            try lab.install(["kubeadm"], on: ["cp-1"], from: byName(try buildLabPackages(kubernetesVersion: "1.36.0")))
            #expect(try lab.ok("cp-1", "kubeadm version -o short") == "v1.36.0")
            let skew = try lab.run("cp-1", "kubeadm upgrade apply v1.36.0 -y")
            #expect(skew.status == 1)
            #expect(
                skew.stderr.contains(
                    "Specified version to upgrade to \"v1.36.0\" is too high; kubeadm can upgrade only 1 minor version at a time"
                ), "\(skew.combined)")
            #expect(try lab.ok("cp-1", "\(kubectl) version").contains("Server Version: v1.34.3"))

            // A worker that loses power goes NotReady after the grace period (6 s here); the others stay Ready.
            try lab.lab.fault(node: "gpu-2", kind: .powerOff)
            let off = Date()
            #expect(try lab.nodeReadiness(on: "cp-1")?["gpu-2"] == "True")
            #expect(try lab.eventually(30) { try lab.nodeReadiness(on: "cp-1")?["gpu-2"] == "Unknown" })
            let notReadyAfter = Date().timeIntervalSince(off)
            #expect(notReadyAfter >= 3, "NotReady after \(notReadyAfter) s, before the grace period")
            #expect(
                try lab.nodeReadiness(on: "cp-1")?.filter { $0.value == "True" }.keys.sorted() == ["cp-1", "gpu-1"])
            let table = try lab.ok("cp-1", "\(kubectl) get nodes --no-headers")
            #expect(
                table.split(separator: "\n").contains { $0.hasPrefix("gpu-2") && $0.contains(" NotReady ") }, "\(table)"
            )
        }

        @Test func threeControlPlanesServeWithOneDownAndStopWithTwoDown() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            let packages = try labPackages()
            let lab = try StandInLab(id: "ls3", subnet: "10.77.213", profile: "lab", nodes: 3, controlPlanes: 3)
            defer { lab.down() }
            let cps = ["cp-1", "cp-2", "cp-3"]
            try lab.install(Self.kubernetes, on: cps, from: packages)
            let cp1 = try lab.address("cp-1")
            try lab.write("cp-1", "/root/kubeadm.yaml", kubeadmConfig(address: cp1, node: "cp-1"))
            let initOut = try lab.ok("cp-1", "kubeadm init --config /root/kubeadm.yaml --upload-certs")
            let key = try #require(
                initOut.split(whereSeparator: \.isWhitespace).drop { $0 != "--certificate-key" }.dropFirst().first)
            let join = try lab.ok("cp-1", "kubeadm token create --print-join-command")
            for node in ["cp-2", "cp-3"] {
                let out = try lab.ok(node, "\(join) --control-plane --certificate-key \(key)")
                #expect(out.contains("This node has joined the cluster and a new control plane instance was created"))
            }
            let members = try lab.ok("cp-1", "ETCDCTL_API=3 etcdctl --endpoints http://\(cp1):2379 member list")
            #expect(members.split(separator: "\n").filter { $0.contains(", started, ") }.count == 3, "\(members)")
            // Each control plane's own API server, through a kubeconfig pointing at it.
            for node in cps {
                let address = try lab.address(node)
                try lab.ok(
                    node,
                    "sed 's#server: https://.*#server: https://\(address):6443#' /etc/kubernetes/admin.conf > /root/local.conf"
                )
            }
            let local = "/root/local.conf"
            #expect(
                try lab.eventually(30) { try lab.nodeReadiness(on: "cp-3", kubeconfig: local)?.count == 3 })

            // One of three down: etcd keeps quorum, the others keep serving reads and writes.
            try lab.lab.fault(node: "cp-1", kind: .powerOff)
            #expect(try lab.nodeReadiness(on: "cp-2", kubeconfig: local)?.keys.sorted() == cps)
            try lab.ok("cp-2", "KUBECONFIG=\(local) kubectl label node cp-2 lab.example/written=after-one-down")
            #expect(
                try lab.ok(
                    "cp-3",
                    "KUBECONFIG=\(local) kubectl get node cp-2 -o jsonpath='{.metadata.labels.lab\\.example/written}'")
                    == "after-one-down")

            // Two of three down: no quorum, the surviving API server stops serving.
            try lab.lab.fault(node: "cp-2", kind: .powerOff)
            let get = try lab.run("cp-3", "KUBECONFIG=\(local) kubectl get nodes", timeout: 90)
            #expect(get.status != 0, "kubectl still answers with two of three control planes down: \(get.stdout)")
            #expect(
                get.stderr.contains("Error from server") && get.stderr.contains("etcdserver: request timed out"),
                "\(get.combined)")
            let write = try lab.run("cp-3", "KUBECONFIG=\(local) kubectl label node cp-3 lab.example/x=y", timeout: 90)
            #expect(write.status != 0)

            // Power one back on: quorum again, and serving again.
            try lab.lab.fault(node: "cp-2", kind: .powerOn)
            #expect(try lab.eventually(60) { try lab.nodeReadiness(on: "cp-3", kubeconfig: local) != nil })
        }

        @Test func gpuStackComesWithItsPackagesAndLabFaultsShowInIt() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            let packages = try labPackages()
            let lab = try StandInLab(id: "ls2", subnet: "10.77.212", profile: "hpc-8xa100", nodes: 2, controlPlanes: 1)
            defer { lab.down() }
            let gpu = "gpu-1"
            let declared = try HardwareDeclaration.decode(
                Data(try lab.ok(gpu, "cat \(HardwareDeclaration.pathOnNode)").utf8))
            let gpus = try #require(declared.gpus)
            #expect(gpus.model == "NVIDIA A100-SXM4-80GB" && gpus.count == 8 && gpus.nvswitches == 6)

            // GPU faults are made by the stand-ins: without them on the node, the lab says so.
            let early = #expect(throws: LabError.self) {
                try lab.lab.fault(node: gpu, kind: .gpuMissing, argument: "0")
            }
            #expect(early?.message.contains("the lab stand-ins are not installed on this node") == true)
            #expect(try lab.lab.loadState().node(gpu).faults.isEmpty)

            // The hardware is there before any driver: lspci lists it; nvidia-smi does not exist yet.
            try lab.install(["appliance-labnode"], on: [gpu], from: packages)
            let pci = LspciListing.parse(try lab.ok(gpu, "lspci -nn"))
            #expect(pci.nvidiaGPUs.count == 8 && pci.nvswitches.count == 6 && pci.mellanox.count == 4)
            #expect(try lab.run(gpu, "nvidia-smi -L").status == 127)
            let noDriver = try lab.run(gpu, "\(LabPackages.nodeBinary) nvidia-smi -L")
            #expect(noDriver.status == 9, "\(noDriver.combined)")  // the stand-in itself: no driver loaded

            // The driver package: its postinst loads the "driver"; nvidia-smi -q -x reads, with the product's own
            // parser, as the GPUs the node declares.
            try lab.install(["nvidia-driver"], on: [gpu], from: packages)
            #expect(try lab.ok(gpu, "cat /var/lib/appliance-lab/driver-installed") == LabPackages.defaultDriverVersion)
            func report() throws -> NvidiaSMIReport {
                try NvidiaSMIXML.parse(try lab.run(gpu, "nvidia-smi -q -x").stdout)
            }
            let xml = try report()
            #expect(xml.driverVersion == gpus.driverVersion && xml.cudaVersion == gpus.cudaVersion)
            #expect(xml.attachedGPUs == gpus.count && xml.gpus.count == gpus.count)
            #expect(xml.gpus.allSatisfy { $0.name == gpus.model && $0.memoryTotalMiB == gpus.memoryMiB })
            #expect(
                xml.gpus.compactMap { $0.busID.map { String($0.dropFirst(9)).lowercased() } }
                    == pci.nvidiaGPUs.map(\.slot))
            #expect(xml.gpus.allSatisfy { $0.eccVolatileUncorrected == 0 })
            let links = try NvidiaNVLinkStatus.parse(try lab.ok(gpu, "nvidia-smi nvlink -s"))
            #expect(links.gpus.count == 8 && links.gpus.allSatisfy { $0.activeLinks == 12 && $0.minimumSpeed == 25 })
            #expect(NvidiaNVLinkErrors.parse(try lab.ok(gpu, "nvidia-smi nvlink -e")).values.reduce(0, +) == 0)

            // NVSwitch system: DCGM's level-2 diag fails until the fabric manager (its own package, a unit) runs.
            #expect(try lab.run(gpu, "dcgmi diag -r 2").status != 0)
            try lab.install(["nvidia-fabricmanager"], on: [gpu], from: packages)
            try lab.ok(gpu, "systemctl start nvidia-fabricmanager")
            #expect(
                try lab.eventually(10) {
                    try lab.run(gpu, "systemctl is-active nvidia-fabricmanager").stdout == "active"
                })
            let diag = try lab.run(gpu, "dcgmi diag -r 2")
            #expect(diag.status == 0, "\(diag.combined)")
            #expect(try DCGMDiag.parse(diag.stdout).failed.isEmpty)

            // Faults from `appliance lab fault`, as nvidia-smi shows them.
            try lab.lab.fault(node: gpu, kind: .gpuMissing, argument: "2")
            let listed = try lab.run(gpu, "nvidia-smi -L")
            #expect(listed.status == 15 && listed.stdout.split(separator: "\n").count == 7)
            #expect(listed.stderr.contains("GPU is lost.  Reboot the system to recover this GPU"))
            #expect(
                try lab.ok(gpu, "cat /var/log/kern.log").contains(
                    ": 79, pid=0, GPU has fallen off the bus."))
            #expect(try report().gpus.count == 7)
            #expect(LspciListing.parse(try lab.ok(gpu, "lspci -nn")).nvidiaGPUs.count == 7)

            try lab.lab.fault(node: gpu, kind: .nvlinkDown, argument: "0:3")
            let down = try NvidiaNVLinkStatus.parse(try lab.run(gpu, "nvidia-smi nvlink -s").stdout)
            #expect(down.gpus.first { $0.index == 0 }?.inactiveLinks == [3])
            #expect(throws: LabError.self) { try lab.lab.fault(node: gpu, kind: .nvlinkDown, argument: "0:12") }

            try lab.lab.fault(node: gpu, kind: .eccErrors, argument: "1:4")
            #expect(try report().gpus.first { $0.index == 1 }?.eccVolatileUncorrected == 4)

            try lab.lab.fault(node: gpu, kind: .fabricManagerStopped)
            #expect(try lab.run(gpu, "systemctl is-active nvidia-fabricmanager").stdout != "active")
            #expect(try lab.run(gpu, "\(LabPackages.nodeBinary) nv-fabricmanager").status == 1)

            try lab.lab.fault(node: gpu, kind: .driverMismatch, argument: "535.104.05")
            let mismatch = try lab.run(gpu, "nvidia-smi -L")
            #expect(
                mismatch.status == 18
                    && mismatch.combined.contains("Failed to initialize NVML: Driver/library version mismatch"))

            #expect(
                try lab.lab.loadState().node(gpu).faults.map(\.description).sorted()
                    == [
                        "driver-mismatch 535.104.05", "ecc-errors 1:4", "fabricmanager-stopped", "gpu-missing 2",
                        "nvlink-down 0:3",
                    ])

            // gpu-healthy clears them all; the fabric manager starts again.
            try lab.lab.fault(node: gpu, kind: .gpuHealthy)
            #expect(try lab.lab.loadState().node(gpu).faults.isEmpty)
            #expect(try lab.run(gpu, "nvidia-smi -L").stdout.split(separator: "\n").count == 8)
            #expect(try report().gpus.allSatisfy { $0.eccVolatileUncorrected == 0 })
            try lab.ok(gpu, "systemctl restart nvidia-fabricmanager")
            #expect(
                try lab.eventually(10) {
                    try lab.run(gpu, "systemctl is-active nvidia-fabricmanager").stdout == "active"
                })

            // Removing the driver package takes nvidia-smi away again.
            try lab.ok(gpu, "systemctl stop nvidia-fabricmanager && dpkg -r nvidia-fabricmanager nvidia-driver")
            #expect(try lab.run(gpu, "nvidia-smi -L").status == 127)
            #expect(try lab.run(gpu, "test -e /var/lib/appliance-lab/driver-installed").status == 1)
        }
    }
}
