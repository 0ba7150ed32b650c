import Foundation
import Testing

@testable import ApplianceLab

/// The real kubectl (the official static binary the machine image carries) against the lab's API server, in
/// lab nodes, for every command the product runs (issue 12). Its output and exit codes are the real client's.
extension RealLabSuites {
    @Suite("the real kubectl against the lab's API server", .tags(.lab), .serialized)
    struct LabRealKubectlTests {
        @Test func everyCommandTheProductRunsWorksWithTheRealClient() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            guard case .real(_, let clientVersion) = labKubectl(kubernetesVersion: LabPackages.defaultKubernetesVersion)
            else {
                print(
                    "skipped: no real kubectl within one minor version of v\(LabPackages.defaultKubernetesVersion) here"
                )
                return
            }
            let packages = try labPackages()
            let lab = try StandInLab(id: "k1", subnet: "10.77.120", profile: "lab", nodes: 2, controlPlanes: 1)
            defer { lab.down() }
            try lab.install(
                ["appliance-labnode", "kubeadm", "kubelet", "kubectl"], on: ["cp-1", "gpu-1"], from: packages)
            #expect(try lab.ok("cp-1", "cat /var/lib/appliance-lab/kubectl-kind") == "real")
            #expect(try lab.ok("cp-1", "kubectl version --client").contains("Client Version: v\(clientVersion)"))

            // The control-plane endpoint is a virtual IP held by the first control plane (as keepalived does).
            let cp = try lab.address("cp-1")
            let vip = "10.77.120.200"
            try lab.ok("cp-1", "ip addr add \(vip)/32 dev $(ip -o -4 addr show scope global | awk 'NR==1{print $2}')")
            let config = kubeadmConfig(address: cp, node: "cp-1").replacingOccurrences(
                of: "controlPlaneEndpoint: \(cp):6443",
                with: "controlPlaneEndpoint: \(vip):6443\napiServer:\n  certSANs:\n  - api.lab.internal\n  - \(vip)")
            try lab.write("cp-1", "/root/kubeadm.yaml", config)
            let initOut = try lab.ok("cp-1", "kubeadm init --config /root/kubeadm.yaml --upload-certs")
            #expect(initOut.contains("kubeadm join \(vip):6443 --token "))
            #expect(try lab.ok("cp-1", "grep 'server:' /etc/kubernetes/admin.conf").contains("https://\(vip):6443"))
            let sans = try lab.ok(
                "cp-1", "openssl x509 -in /etc/kubernetes/pki/apiserver.crt -noout -ext subjectAltName")
            for san in ["IP Address:\(vip)", "IP Address:\(cp)", "IP Address:10.96.0.1", "DNS:api.lab.internal"] {
                #expect(sans.contains(san), "\(san) missing from the serving certificate: \(sans)")
            }
            let k = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"  // a global flag before the verb

            // TLS with client certificates; health and version for anyone, nothing else without credentials.
            let version = try lab.ok("cp-1", "\(k) version")
            #expect(version.contains("Server Version: v1.34.3"), "\(version)")
            #expect(try lab.ok("cp-1", "\(k) get --raw /readyz") == "ok")
            // The real client negotiated HTTP/2 (ALPN h2): the API server logs each request's protocol.
            let httplog = try lab.ok(
                "cp-1", "journalctl -u kube-apiserver-standin --no-pager -o cat | grep 'userAgent=\"kubectl/' || true")
            #expect(
                httplog.contains("protocol=\"HTTP/2.0\"") && !httplog.contains("protocol=\"HTTP/1.1\""), "\(httplog)")
            // Without credentials (raw HTTP over TLS, as kubectl would prompt for a password): system:anonymous.
            let anonymous = try lab.run(
                "cp-1",
                "printf 'GET /api/v1/nodes HTTP/1.1\\r\\nHost: \(vip)\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -quiet -connect \(vip):6443 2>/dev/null"
            )
            #expect(
                anonymous.stdout.contains("HTTP/1.1 403") && anonymous.stdout.contains("\"reason\":\"Forbidden\""),
                "\(anonymous.combined)")
            let badToken = try lab.run(
                "cp-1",
                "kubectl --server=https://\(vip):6443 --insecure-skip-tls-verify --token=abcdef.0123456789abcdef get nodes"
            )
            #expect(
                badToken.status == 1 && badToken.stderr.contains("error: You must be logged in to the server"),
                "\(badToken.combined)")
            // A CA that did not sign the serving certificate: the real client refuses the server.
            let unknownCA = try lab.run(
                "cp-1", "\(k) --certificate-authority=/etc/kubernetes/pki/front-proxy-ca.crt get nodes")
            #expect(
                unknownCA.status == 1 && unknownCA.stderr.contains("certificate signed by unknown authority"),
                "\(unknownCA.combined)")

            // A worker joins through token discovery and TLS bootstrap.
            let join = try lab.ok("cp-1", "kubeadm token create --print-join-command")
            let joined = try lab.run("gpu-1", join)
            #expect(joined.status == 0, "\(joined.combined)")
            let wait = try lab.run("cp-1", "\(k) wait --for=condition=Ready node --all --timeout=90s", timeout: 120)
            #expect(wait.status == 0, "\(wait.combined)")
            #expect(wait.stdout.contains("node/cp-1 condition met") && wait.stdout.contains("node/gpu-1 condition met"))

            // Discovery and tables.
            let resources = try lab.ok("cp-1", "\(k) api-resources")
            #expect(
                resources.split(separator: "\n").contains {
                    $0.hasPrefix("pods ") && $0.contains(" po ") && $0.contains("Pod")
                })
            #expect(resources.contains("poddisruptionbudgets"))
            let nodes = try lab.ok("cp-1", "\(k) get nodes")
            let header = nodes.split(separator: "\n").first.map(String.init) ?? ""
            #expect(
                header.split(separator: " ", omittingEmptySubsequences: true) == [
                    "NAME", "STATUS", "ROLES", "AGE", "VERSION",
                ])
            #expect(
                nodes.split(separator: "\n").contains {
                    $0.hasPrefix("cp-1") && $0.contains(" Ready ") && $0.contains("control-plane")
                        && $0.hasSuffix("v1.34.3")
                }, "\(nodes)")
            let wide = try lab.ok("cp-1", "\(k) get nodes -o wide")
            #expect(wide.contains("INTERNAL-IP") && wide.contains(cp) && wide.contains("OS-IMAGE"), "\(wide)")
            let list = try #require(
                try JSONSerialization.jsonObject(with: Data(try lab.ok("cp-1", "\(k) get nodes -o json").utf8))
                    as? [String: Any])
            #expect((list["items"] as? [Any])?.count == 2)
            #expect(try lab.ok("cp-1", "\(k) get nodes -o jsonpath='{.items[*].metadata.name}'") == "cp-1 gpu-1")
            #expect(try lab.ok("cp-1", "\(k) get node gpu-1 -o yaml").contains("kind: Node"))

            // Mirror pods of the static control-plane pods, with kubeadm's names and labels, Ready.
            let mirrors = try lab.ok("cp-1", "\(k) -n kube-system get pods -l tier=control-plane -o name")
            #expect(
                Set(mirrors.split(separator: "\n").map(String.init)) == [
                    "pod/etcd-cp-1", "pod/kube-apiserver-cp-1", "pod/kube-controller-manager-cp-1",
                    "pod/kube-scheduler-cp-1",
                ], "\(mirrors)")
            #expect(
                try lab.eventually(20) {
                    try lab.run("cp-1", "\(k) get pods -A").stdout.split(separator: "\n").contains {
                        $0.contains("etcd-cp-1") && $0.contains("1/1") && $0.contains("Running")
                    }
                })
            #expect(
                try lab.ok(
                    "cp-1",
                    "\(k) get pods -n kube-system -l component=etcd -o jsonpath='{.items[0].metadata.annotations.kubernetes\\.io/config\\.source}'"
                )
                    == "file")
            // Server-side field selectors: only gpu-1's pods.
            let onWorker = try lab.ok("cp-1", "\(k) get pods -A --field-selector spec.nodeName=gpu-1 -o name")
            #expect(!onWorker.contains("etcd-cp-1") && onWorker.contains("kube-proxy"), "\(onWorker)")

            // label, annotate, taint, cordon, uncordon.
            #expect(try lab.ok("cp-1", "\(k) label node gpu-1 lab.example/pool=a") == "node/gpu-1 labeled")
            let relabel = try lab.run("cp-1", "\(k) label node gpu-1 lab.example/pool=b")
            #expect(relabel.status == 1 && relabel.stderr.contains("--overwrite is false"), "\(relabel.combined)")
            try lab.ok("cp-1", "\(k) label node gpu-1 lab.example/pool=b --overwrite")
            #expect(try lab.ok("cp-1", "\(k) get nodes -l lab.example/pool=b -o name") == "node/gpu-1")
            #expect(try lab.ok("cp-1", "\(k) annotate node gpu-1 lab.example/note=hi") == "node/gpu-1 annotated")
            #expect(try lab.ok("cp-1", "\(k) taint nodes gpu-1 dedicated=gpu:NoSchedule") == "node/gpu-1 tainted")
            let taints = try lab.ok("cp-1", "\(k) get node gpu-1 -o jsonpath='{.spec.taints[*].key}'")
            #expect(taints == "dedicated", "\(taints)")
            let cpTaints = try lab.ok("cp-1", "\(k) get node cp-1 -o jsonpath='{.spec.taints[*].key}'")
            #expect(cpTaints == "node-role.kubernetes.io/control-plane", "\(cpTaints)")
            #expect(try lab.ok("cp-1", "\(k) taint nodes gpu-1 dedicated=gpu:NoSchedule-") == "node/gpu-1 untainted")
            #expect(try lab.ok("cp-1", "\(k) get node gpu-1 -o jsonpath='{.spec.taints}'") == "")
            #expect(try lab.ok("cp-1", "\(k) cordon gpu-1") == "node/gpu-1 cordoned")
            #expect(try lab.ok("cp-1", "\(k) get nodes gpu-1 --no-headers").contains("Ready,SchedulingDisabled"))
            #expect(try lab.ok("cp-1", "\(k) uncordon gpu-1") == "node/gpu-1 uncordoned")
            #expect(try lab.ok("cp-1", "\(k) uncordon gpu-1") == "node/gpu-1 already uncordoned")

            // Errors in the real Status shape.
            let missing = try lab.run("cp-1", "\(k) get node nope")
            #expect(missing.status == 1)
            #expect(
                missing.stderr.contains("Error from server (NotFound): nodes \"nope\" not found"), "\(missing.combined)"
            )

            // apply -f (client-side, then server-side) of a CNI-like manifest, and rollout status.
            try lab.write("cp-1", "/root/cni.yaml", Self.manifest)
            let applied = try lab.run("cp-1", "\(k) apply -f /root/cni.yaml")
            #expect(applied.status == 0, "\(applied.combined)")
            for line in [
                "namespace/lab-net created", "serviceaccount/lab-net created", "configmap/lab-net-config created",
                "daemonset.apps/lab-net created", "deployment.apps/web created",
                "poddisruptionbudget.policy/web created",
            ] {
                #expect(applied.stdout.contains(line), "\(line): \(applied.combined)")
            }
            let again = try lab.run("cp-1", "\(k) apply -f /root/cni.yaml")
            #expect(
                again.status == 0 && again.stdout.contains("configmap/lab-net-config unchanged"), "\(again.combined)")
            let ssa = try lab.run("cp-1", "\(k) apply --server-side -f /root/cni.yaml")
            #expect(
                ssa.status == 0 && ssa.stdout.contains("daemonset.apps/lab-net serverside-applied"), "\(ssa.combined)")
            // (kubectl create -f sends JSON; `create namespace` sends protobuf, which the lab's API does not read.)
            try lab.write("cp-1", "/root/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: lab-net")
            let exists = try lab.run("cp-1", "\(k) create -f /root/ns.yaml")
            #expect(
                exists.status == 1 && exists.stderr.contains("Error from server (AlreadyExists)")
                    && exists.stderr.contains("namespaces \"lab-net\" already exists"), "\(exists.combined)")
            let rollout = try lab.run(
                "cp-1", "\(k) -n default rollout status deployment/web --timeout=60s", timeout: 90)
            #expect(rollout.status == 0 && rollout.stdout.contains("successfully rolled out"), "\(rollout.combined)")
            let dsRollout = try lab.run(
                "cp-1", "\(k) -n lab-net rollout status daemonset/lab-net --timeout=60s", timeout: 90)
            #expect(
                dsRollout.status == 0 && dsRollout.stdout.contains("successfully rolled out"), "\(dsRollout.combined)")

            // A drain that the PodDisruptionBudget blocks fails at its timeout with the real messages...
            let started = Date()
            let blocked = try lab.run(
                "cp-1", "\(k) drain gpu-1 --ignore-daemonsets --delete-emptydir-data --timeout=8s", timeout: 60)
            #expect(Date().timeIntervalSince(started) >= 8)
            #expect(blocked.status == 1, "\(blocked.combined)")
            #expect(blocked.stdout.contains("node/gpu-1 cordoned"), "\(blocked.combined)")
            #expect(
                blocked.stderr.contains(
                    "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
                "\(blocked.combined)")
            #expect(blocked.stderr.contains("error: unable to drain node \"gpu-1\""), "\(blocked.combined)")
            // ...a server-side dry run changes nothing, and once the budget is relaxed the drain evicts.
            try lab.ok("cp-1", "\(k) -n default patch pdb web --type=merge -p '{\"spec\":{\"minAvailable\":0}}'")
            let dry = try lab.run("cp-1", "\(k) drain gpu-1 --ignore-daemonsets --dry-run=server")
            #expect(dry.status == 0 && dry.stdout.contains("(server dry run)"), "\(dry.combined)")
            #expect(try lab.ok("cp-1", "\(k) -n default get pods -l app=web --no-headers | wc -l") == "2")
            let drained = try lab.run(
                "cp-1", "\(k) drain gpu-1 --ignore-daemonsets --delete-emptydir-data --timeout=60s", timeout: 90)
            #expect(drained.status == 0 && drained.stdout.contains("node/gpu-1 drained"), "\(drained.combined)")
            #expect(drained.stdout.contains("evicting pod default/web-"), "\(drained.combined)")
            // The DaemonSet's pod stays; the web pods are gone from gpu-1.
            let left = try lab.ok("cp-1", "\(k) get pods -A --field-selector spec.nodeName=gpu-1 -o name")
            #expect(!left.contains("pod/web-") && left.contains("pod/lab-net-"), "\(left)")
            #expect(try lab.ok("cp-1", "\(k) uncordon gpu-1") == "node/gpu-1 uncordoned")

            // delete node: gone at once (the kubelet registers it again, as a real one does).
            let deleted = try lab.run("cp-1", "\(k) delete node gpu-1 --wait=true")
            #expect(deleted.status == 0 && deleted.stdout.contains("node \"gpu-1\" deleted"), "\(deleted.combined)")
        }

        static let manifest = """
            apiVersion: v1
            kind: Namespace
            metadata:
              name: lab-net
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata:
              name: lab-net
              namespace: lab-net
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: lab-net-config
              namespace: lab-net
            data:
              net-conf.json: '{"Network": "10.244.0.0/16"}'
            ---
            apiVersion: apps/v1
            kind: DaemonSet
            metadata:
              name: lab-net
              namespace: lab-net
              labels:
                app: lab-net
            spec:
              selector:
                matchLabels:
                  app: lab-net
              template:
                metadata:
                  labels:
                    app: lab-net
                spec:
                  serviceAccountName: lab-net
                  hostNetwork: true
                  tolerations:
                  - operator: Exists
                    effect: NoSchedule
                  containers:
                  - name: net
                    image: registry.lab.internal:5000/lab-net:v1
                    volumeMounts:
                    - name: cfg
                      mountPath: /etc/lab-net
                  volumes:
                  - name: cfg
                    configMap:
                      name: lab-net-config
            ---
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: web
              namespace: default
            spec:
              replicas: 2
              selector:
                matchLabels:
                  app: web
              template:
                metadata:
                  labels:
                    app: web
                spec:
                  nodeSelector:
                    kubernetes.io/hostname: gpu-1
                  containers:
                  - name: web
                    image: registry.lab.internal:5000/web:1
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata:
              name: web
              namespace: default
            spec:
              minAvailable: 2
              selector:
                matchLabels:
                  app: web
            """
    }
}
