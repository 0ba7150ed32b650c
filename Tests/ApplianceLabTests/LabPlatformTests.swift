import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension RealLabSuites {
    @Suite("the platform control plane on lab nodes (issue 13)", .tags(.lab), .serialized)
    struct LabPlatformTests {
        /// A CA and a certificate for `domain` and `*.domain` (90 days), made with openssl.
        static func certificate(domain: String, in dir: String) throws -> SiteInventory.TLSSettings {
            let script = """
                set -e
                cd "$1"
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 365 -subj /CN=lab-ca 2>/dev/null
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.csr -subj "/CN=$2" 2>/dev/null
                printf 'subjectAltName=DNS:%s,DNS:*.%s\\n' "$2" "$2" > ext
                openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out tls.crt -days 90 -extfile ext 2>/dev/null
                """
            try HostCommand.run(
                "/bin/sh", ["-c", script, "sh", dir, domain], context: "cannot make the test certificate")
            return .init(certificateFile: dir + "/tls.crt", keyFile: dir + "/tls.key", caFile: dir + "/ca.crt")
        }

        /// The lab's site with a platform section: TLS from a test CA, the dataset cache on the lab host's NFS
        /// export (`LabConfig.nfsExportDirectory`, seen by every node, where the share is made here), two queues
        /// and storage sized for the lab; and the waivers an install of it needs.
        static func platformSite(_ lab: Lab, _ state: LabState, in dir: String) throws -> SiteInventory {
            var site = lab.siteInventory(state)
            site.tls = try certificate(domain: site.network?.domain ?? "lab-\(lab.config.id).internal", in: dir)
            site.storage = .init(nfsServer: lab.config.adminAddress, nfsPath: "/export/datasets")
            try FileManager.default.createDirectory(
                atPath: lab.config.nfsExportDirectory + "/export/datasets", withIntermediateDirectories: true)
            site.platform = .init(
                queues: [
                    .init(name: "org", gpuQuota: 4, gpuLimit: -1, overQuotaWeight: 1, priority: 100),
                    .init(
                        name: "team-a", parent: "org", gpuQuota: 2, gpuLimit: 4, overQuotaWeight: 2, priority: 100,
                        namespaces: ["team-a"]),
                ],
                storage: .init(
                    capacityGiB: 4000, postgresqlGiB: 10, prometheusGiB: 10, objectStoreGiB: 50, datasetCacheGiB: 100,
                    nfsExportGiB: 2000))
            return site
        }

        /// One control plane, and preflight's NFS mount check: the lab's export is a shared directory
        /// without the NFS protocol.
        static let platformWaivers = [
            "--waive", "cluster.control-plane=lab test: one control plane",
            "--waive", "storage.nfs=lab test: the lab shares its export as a directory, without the NFS protocol",
        ]

        static func json(_ text: String) -> Any? { try? JSONSerialization.jsonObject(with: Data(text.utf8)) }

        @Test(
            "lab profile, 1 control plane (also the system node) + 2 GPU workers with spec.platform: platform-check, every release deployed at its chart version with its pods Ready on the system node, the Queues applied; a second install changes nothing; a release whose pods cannot run names the release, the pod and why",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(
                if: FileManager.default.isExecutableFile(atPath: ApplianceCLI.binary),
                "the appliance binary is not built (swift build)"))
        func platformReleases() throws {
            let bundle = try FullLabBundle.built.get()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-p1-\(getpid())").path
            let config = try LabConfig(id: "p1", subnet: "10.77.160", directory: dir + "/lab")
            let lab = Lab(config: config, logger: Logger(label: "lab-test"))
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: dir)
            }
            let state = try lab.up(.init(profile: "lab", nodes: 3, controlPlanes: 1, diskSizeMiB: 1024)).state
            let ssh = lab.ssh(state)
            let cli = ApplianceCLI(state: dir + "/state")
            var site = try Self.platformSite(lab, state, in: dir)
            // A release whose pods cannot run fails after 45 s (default 300).
            site.install.releaseTimeoutSeconds = 45
            let sitePath = dir + "/site-platform.yaml"
            try site.yaml().write(toFile: sitePath, atomically: true, encoding: .utf8)
            let install =
                ["install", "-i", sitePath, "--bundle", bundle.path, "--trust", bundle.publicKey]
                + Self.platformWaivers
            let cp1 = try state.node("cp-1").address
            let releases = [
                ("kube-prometheus-stack", "monitoring", "88.5.3"), ("gpu-operator", "gpu-operator", "v26.3.3"),
                ("kai-scheduler", "kai-scheduler", "v0.16.8"), ("cloudnative-pg", "cnpg-system", "0.29.0"),
                ("platform-db", "platform-db", "0.8.1"), ("csi-driver-nfs", "kube-system", "4.13.4"),
                ("object-store", "platform-s3", "4.44.0"), ("haproxy-ingress", "ingress", "1.52.1"),
            ]

            // The dry run lists the platform's steps after the GPU gates.
            let plan = try cli.run(install + ["--dry-run"])
            #expect(plan.status == 0, "\(plan.combined.suffix(3000))")
            for step in ["platform-check"] + releases.map { "platform/\($0.0)" } + ["platform-queues"] {
                #expect(plan.stdout.contains("─ \(step) "), "\(step) not in the plan: \(plan.stdout.suffix(3000))")
            }

            let first = try cli.run(install)
            #expect(first.status == 0, "\(first.combined.suffix(6000))")
            // The object store smoke test: curl's signed requests, answered by the S3 gateway of the filer pod (its
            // log, through the API server and the kubelet, has each request).
            let s3 = try journalOutput(cli, kind: "install", step: "smoke/object-store")
            #expect(s3.contains("the object store stores and returns an object: smoke-object-store-"), "\(s3)")
            let filerLog = try ssh.run(
                address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf logs -n platform-s3 object-store-filer-0"
            ).stdout
            for request in ["s3: PUT /appliance-smoke-", "s3: GET /appliance-smoke-", "s3: DELETE /appliance-smoke-"] {
                #expect(filerLog.contains(request), "'\(request)' not in the filer's log: \(filerLog.suffix(3000))")
            }
            #expect(filerLog.contains("(curl/"), "\(filerLog.suffix(2000))")
            #expect(!first.combined.contains("BEGIN EC PRIVATE KEY") && !first.combined.contains("BEGIN PRIVATE KEY"))
            func list() throws -> [[String: Any]] {
                let r = try ssh.run(address: cp1, "helm list -A -o json --kubeconfig /etc/kubernetes/admin.conf")
                return Self.json(r.stdout) as? [[String: Any]] ?? []
            }
            let listed = try list()
            for (name, ns, version) in releases {
                let row = listed.first { $0["name"] as? String == name }
                #expect(row?["namespace"] as? String == ns, "\(name): \(listed)")
                #expect(row?["status"] as? String == "deployed", "\(name): \(row ?? [:])")
                #expect((row?["chart"] as? String)?.hasSuffix("-\(version)") == true, "\(name): \(row ?? [:])")
                #expect(row?["revision"] as? String == "1", "\(name): \(row ?? [:])")
            }
            // Every platform pod is Running and Ready; all but the DaemonSets' on the system node.
            let namespaces = Set(releases.map(\.1))
            let pods = try ssh.run(address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get pods -A -o json")
            let items = (Self.json(pods.stdout) as? [String: Any])?["items"] as? [[String: Any]] ?? []
            var platformPods = 0
            for p in items {
                let meta = p["metadata"] as? [String: Any] ?? [:]
                guard let ns = meta["namespace"] as? String, namespaces.contains(ns), ns != "kube-system" else {
                    continue
                }
                platformPods += 1
                let name = meta["name"] as? String ?? ""
                let conditions = (p["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
                #expect(
                    conditions.contains { $0["type"] as? String == "Ready" && $0["status"] as? String == "True" },
                    "\(ns)/\(name) is not Ready: \(p["status"] ?? "")")
                let owner = (meta["ownerReferences"] as? [[String: Any]])?.first?["kind"] as? String
                if owner != "DaemonSet" {
                    #expect(
                        (p["spec"] as? [String: Any])?["nodeName"] as? String == "cp-1", "\(ns)/\(name) not on cp-1")
                }
            }
            #expect(platformPods >= 20, "\(platformPods) platform pods")
            // The database release's pods are the CloudNativePG Cluster's instances (owned by the Cluster, not by
            // a workload of the release): install waited for them and status counts them.
            let status = try cli.run(["status", "-i", sitePath])
            let dbLine = status.stdout.split(separator: "\n").first { $0.hasPrefix("  platform-db/platform-db ") }
            let dbPods = dbLine?.split(separator: " ").last?.split(separator: "/").compactMap { Int($0) } ?? []
            #expect(
                dbPods.count == 2 && dbPods[0] >= 1 && dbPods[0] == dbPods[1],
                "platform-db pods: \(dbLine ?? "no line"): \(status.stdout.suffix(3000))")
            let queues = try ssh.run(
                address: cp1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get queues.scheduling.run.ai -o name")
            #expect(queues.stdout.contains("queue.scheduling.run.ai/org"), "\(queues.combined)")
            #expect(queues.stdout.contains("queue.scheduling.run.ai/team-a"), "\(queues.combined)")
            let secret = try ssh.run(
                address: cp1,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf get secret platform-tls -n ingress -o name")
            #expect(secret.status == 0, "\(secret.combined)")

            // A second install changes nothing: every release stays at revision 1.
            let again = try cli.run(install)
            #expect(again.status == 0, "\(again.combined.suffix(4000))")
            #expect(again.stdout.contains("nothing to change"), "\(again.stdout.suffix(3000))")
            let after = try list()
            #expect(after.count == releases.count && after.allSatisfy { $0["revision"] as? String == "1" }, "\(after)")

            // The system node gets a taint the platform does not tolerate, and the object store is installed
            // again: its pod cannot be scheduled, and install names the release, the pod and the reason.
            _ = try ssh.run(
                address: cp1,
                "kubectl --kubeconfig=/etc/kubernetes/admin.conf taint node cp-1 lab/broken=true:NoSchedule && helm uninstall object-store -n platform-s3 --kubeconfig /etc/kubernetes/admin.conf"
            )
            let failed = try cli.run(install)
            #expect(failed.status != 0, "\(failed.combined.suffix(4000))")
            for words in [
                "platform release object-store", "pod platform-s3/object-store-master-0 not Ready",
                "untolerated taint {lab/broken: true}",
            ] {
                #expect(failed.stderr.contains(words), "'\(words)' not in: \(failed.stderr.suffix(4000))")
            }
        }
    }
}
