import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePreflight
import ApplianceSSH
import Foundation

/// `appliance status`: reads the cluster's state, changing nothing, and returns an evaluated `StatusReport`.
///
/// Two kinds of reads, run side by side:
/// - one script on the first control plane that answers (the next one when it does not): kubectl with the
///   admin kubeconfig (nodes, pods, `/readyz?verbose`, each control plane's own API server's `/readyz`),
///   etcdctl with kubeadm's healthcheck client certificate against the API server's `--etcd-servers`
///   (member list and the health of every member; `kubectl exec` into the etcd static pod where the host
///   has no etcdctl), `helm list -A -o json`, the install record, and `curl` of every registry's `/v2/`
///   with the installer's CA; every command under `timeout`, all in parallel, one SSH round trip;
/// - one probe per node over SSH (kubelet's unit, the fabric manager's where it exists), bounded by
///   `spec.ssh.parallelism`.
/// What does not answer becomes a line of the report, never an error of the command.
public enum ClusterStatus {
    public static func gather(session: OperationSession, commandTimeoutSeconds: Int = 20) async -> StatusReport {
        let site = session.site
        let now = Date()
        async let clusterRead = readCluster(session, timeout: commandTimeoutSeconds)
        async let probeRead = probeNodes(session, timeout: commandTimeoutSeconds)
        let (cluster, probes) = await (clusterRead, probeRead)

        let installParams = try? OperationParameters.load(session.stateDirectory, kind: InstallOperation.kind)
        let record = cluster.sections["install"].flatMap { s -> InstallRecord? in
            s.succeeded ? InstallRecord.decode(Data(s.stdout.utf8)) : nil
        }
        let profileName = record?.profile ?? installParams?.profile ?? site.profile
        let profile = profileName.flatMap {
            try? ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load($0)
        }
        var report = StatusReport(
            cluster: site.name, collectedAt: now,
            installed: record.map {
                .init(
                    bundle: $0.bundleName, version: $0.bundleVersion, digest: $0.bundleDigest,
                    kubernetesVersion: $0.kubernetesVersion, profile: $0.profile, installedAt: $0.installedAt)
            },
            controlPlane: .init(
                endpoint: site.effectiveAPIEndpoint.map { "https://\($0.name ?? $0.address):\($0.port)" }),
            registry: .init(mode: site.registry?.mode ?? SiteInventory.RegistrySettings.inCluster),
            platform: .init(),
            lastOperation: lastOperation(session))
        fill(&report, cluster: cluster, probes: probes, profile: profile, site: site)
        return report.evaluated()
    }

    // MARK: assembling

    static func fill(
        _ report: inout StatusReport, cluster: ClusterRead, probes: [String: NodeProbe], profile: HardwareProfile?,
        site: SiteInventory
    ) {
        let s = cluster.sections
        let apiUp = cluster.through != nil
        report.controlPlane.through = cluster.through
        report.controlPlane.apiError = apiUp ? nil : cluster.failure
        var kubeNodes: [KubeNode] = []
        if apiUp, let nodes = s["nodes"] {
            kubeNodes = (try? ClusterAPI.parseNodes(Data(nodes.stdout.utf8))) ?? []
        }
        if apiUp, let readyz = s["readyz"] {
            report.controlPlane.apiReady = readyz.succeeded
            report.controlPlane.failedChecks = StatusParsers.failedReadyzChecks(readyz.stdout + "\n" + readyz.stderr)
        }
        // Each control plane's own API server.
        if apiUp {
            for (i, cp) in site.controlPlanes.enumerated() {
                guard let sec = s["server-\(i)"] else { continue }
                report.controlPlane.servers.append(
                    .init(
                        node: cp.name, url: "https://\(cp.address):6443", ready: sec.succeeded,
                        detail: sec.succeeded ? nil : sec.reason))
            }
        }
        // etcd: etcdctl's member list and health; else each control plane's /readyz (stacked etcd).
        if apiUp, let members = s["etcd-members"] {
            if members.succeeded,
                let list = try? StatusParsers.etcdMembers(
                    memberList: members.stdout, health: s["etcd-health"]?.stdout ?? "")
            {
                report.controlPlane.etcd = .init(source: "etcdctl", members: list)
            } else {
                let listed = kubeNodes.filter { $0.labels[NodeRoleMarks.controlPlaneKey] != nil }.map(\.name)
                report.controlPlane.etcd = .init(
                    source: listed.isEmpty ? nil : "apiserver",
                    members: report.controlPlane.servers.filter { listed.contains($0.node) }.map {
                        .init(name: $0.node, endpoint: $0.url, healthy: $0.ready, error: $0.detail)
                    }, error: "etcdctl: \(members.reason)")
            }
        }
        // Registry endpoints.
        for (i, e) in registryEndpoints(site).enumerated() {
            let url = "https://\(e.endpoint)/v2/"
            guard apiUp || s["registry-\(i)"] != nil, let sec = s["registry-\(i)"] else {
                report.registry.endpoints.append(.init(node: e.node, url: url, answering: nil))
                continue
            }
            let code = sec.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            // 200, or 401 when the registry asks for credentials: it answers over TLS either way.
            let answering = sec.succeeded && (code == "200" || code == "401")
            report.registry.endpoints.append(
                .init(
                    node: e.node, url: url, answering: answering,
                    detail: answering ? "HTTP \(code)" : (sec.succeeded ? "HTTP \(code)" : sec.reason)))
        }
        // Platform releases and their pods.
        if apiUp, let helm = s["helm"] {
            if helm.status == 127 {
                // No helm on the control plane: nothing was ever deployed with it.
                report.platform = .init(releases: [])
            } else if !helm.succeeded {
                report.platform = .init(error: "helm list -A failed on \(cluster.through ?? "?"): \(helm.reason)")
            } else {
                do {
                    var releases = try StatusParsers.helmReleases(helm.stdout)
                    if !releases.isEmpty, let pods = s["pods"] {
                        func list(_ key: String) -> String { s[key].flatMap { $0.succeeded ? $0.stdout : nil } ?? "" }
                        releases = try StatusParsers.attachPods(
                            releases, podList: pods.stdout, deploymentList: list("deployments"),
                            daemonSetList: list("daemonsets"), statefulSetList: list("statefulsets"),
                            ownerLists: ReleasePods.ownerResources.indices.map { list("owners-\($0)") })
                    }
                    report.platform = .init(releases: releases)
                } catch {
                    report.platform = .init(error: "\(error)")
                }
            }
        }
        // Nodes: the site's, in its order, then any other Node the API lists.
        var nodes: [StatusReport.Node] = []
        for host in site.hosts {
            var n = StatusReport.Node(
                name: host.name, address: host.address, roles: host.roles.map(\.rawValue), inSite: true)
            apply(probes[host.name], to: &n)
            let kn = kubeNodes.first { $0.name == host.name }
            if apiUp { n.member = kn != nil }
            if let kn { apply(kn, to: &n) }
            if let gpu = profile?.requirements(for: host.roles)?.gpu, gpu.count > 0 {
                n.gpus = .init(
                    declared: gpu.count, model: gpu.model, allocatable: kn?.allocatableGPUs,
                    healthy: kn?.allocatableGPUs == gpu.count && n.cordonReason == nil)
                // The host's unit, or (operator-precompiled) the GPU Operator driver container's process.
                n.fabricManagerRequired = gpu.fabricManager
            }
            nodes.append(n)
        }
        for kn in kubeNodes where site.host(named: kn.name) == nil {
            var n = StatusReport.Node(
                name: kn.name, address: kn.internalIP,
                roles: kn.labels.keys.filter { $0.hasPrefix("node-role.kubernetes.io/") }.map {
                    String($0.dropFirst("node-role.kubernetes.io/".count))
                }.sorted(), inSite: false, member: true)
            apply(kn, to: &n)
            nodes.append(n)
        }
        report.nodes = nodes
    }

    static func apply(_ probe: NodeProbe?, to n: inout StatusReport.Node) {
        guard let probe else { return }
        n.reachable = probe.error == nil
        n.unreachableReason = probe.error
        n.kubeletService = probe.kubelet
        n.fabricManager = probe.fabricManager
    }

    static func apply(_ kn: KubeNode, to n: inout StatusReport.Node) {
        n.ready = kn.ready
        n.notReadyReason = kn.notReadyReason
        n.kubeletVersion = kn.kubeletVersion
        let tainted = kn.taints.contains {
            $0.key == MaintenanceMarks.drainTaint.key && $0.effect == MaintenanceMarks.drainTaint.effect
        }
        n.scheduling = kn.unschedulable ? "cordoned" : (tainted ? "tainted" : "schedulable")
        let a = kn.annotations
        if let reason = a[MaintenanceMarks.reason] {
            n.maintenance = .init(
                reason: reason, by: a[MaintenanceMarks.by], at: a[MaintenanceMarks.at],
                method: a[MaintenanceMarks.method], operation: a[MaintenanceMarks.operation],
                gpus: a[MaintenanceMarks.gpus].flatMap { Int($0) })
        }
        n.cordonReason = a[InstallPlan.cordonReasonAnnotation]
    }

    static func lastOperation(_ session: OperationSession) -> StatusReport.LastOperation? {
        guard let journal = try? session.journal(),
            let op = try? journal.operations(cluster: session.site.name, limit: 1).first
        else { return nil }
        let failed = ((try? journal.latestStates(operation: op.id)) ?? [:]).values.filter { $0.state == .failed }
            .sorted { $0.step < $1.step }
            .map { t in "\(t.step)\(t.error.map { ": \($0.split(separator: "\n").first ?? "")" } ?? "")" }
        return .init(
            id: op.id, kind: op.kind, state: op.state.rawValue, startedAt: op.startedAt, finishedAt: op.finishedAt,
            failedSteps: failed)
    }

    // MARK: the control-plane script

    struct ClusterRead: Sendable {
        var through: String?
        var sections: [String: StatusParsers.Section]
        /// Why no control plane could be read through (each one tried, one line).
        var failure: String?
    }

    static func registryEndpoints(_ site: SiteInventory) -> [(node: String?, endpoint: String)] {
        if let r = site.registry, r.mode == SiteInventory.RegistrySettings.existing {
            return r.endpoint.map { [(nil, $0)] } ?? []
        }
        let port = site.registry?.port ?? SiteInventory.RegistrySettings.defaultPort
        return site.registryHosts.map { ($0.name, "\($0.address):\(port)") }
    }

    /// The script run on a control plane: every read in parallel, each under `timeout`, printed as sections
    /// (see `StatusParsers.sections`).
    static func script(site: SiteInventory, node: String, timeout: Int) -> String {
        let kc = "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) --request-timeout=\(max(5, timeout - 5))s"
        var reads: [(String, String)] = [
            ("install", "cat \(InstallRecord.path)"),
            ("nodes", "\(kc) get nodes -o json"),
            ("readyz", "\(kc) get --raw '/readyz?verbose'"),
            ("pods", "\(kc) get pods -A -o json"),
            ("deployments", "\(kc) get deployments -A -o json"),
            ("daemonsets", "\(kc) get daemonsets -A -o json"),
            ("statefulsets", "\(kc) get statefulsets -A -o json"),
        ]
        // The operators' resources that own pods (an error where their CRD is not installed: none of them).
        reads += ReleasePods.ownerResources.enumerated().map {
            ("owners-\($0.offset)", "\(kc) get \($0.element) -A -o json")
        }
        reads += [
            (
                "helm",
                "command -v helm >/dev/null 2>&1 || { echo 'helm: not installed' >&2; exit 127; }; helm list -A -o json --kubeconfig \(ClusterAPI.adminKubeconfig)"
            )
        ]
        for (i, cp) in site.controlPlanes.enumerated() {
            reads.append(("server-\(i)", "\(kc) --server=https://\(cp.address):6443 get --raw /readyz"))
        }
        let etcdArgs =
            EtcdControl.preamble(node: node, kubectl: kc, commandTimeout: max(3, timeout / 3))
            + "\nset -- \"$@\" -w json"
        reads.append(("etcd-members", etcdArgs + "\ne \"$@\" member list"))
        reads.append(("etcd-health", etcdArgs + "\ne \"$@\" endpoint health --cluster"))
        for (i, r) in registryEndpoints(site).enumerated() {
            reads.append(
                (
                    "registry-\(i)",
                    "curl -sS --max-time \(max(3, timeout - 5)) --cacert \(PrivateRegistry.caPath) -o /dev/null -w '%{http_code}' https://\(r.endpoint)/v2/"
                ))
        }
        var script = """
            d=$(mktemp -d) || exit 3
            trap 'rm -rf "$d"' EXIT
            read1() { n=$1; shift; timeout \(timeout) sh -c "$1" >"$d/$n.out" 2>"$d/$n.err"; echo $? >"$d/$n.rc"; }

            """
        for (name, command) in reads { script += "read1 \(name) \(shellQuote(command)) &\n" }
        script += "wait\n"
        script += "for n in \(reads.map(\.0).joined(separator: " ")); do\n"
        script +=
            "  printf '%s %s %s\\n' \(StatusParsers.marker) \"$n\" \"$(cat \"$d/$n.rc\" 2>/dev/null || echo 255)\"\n"
        script += "  cat \"$d/$n.out\" 2>/dev/null; echo\n"
        script += "  printf '%s %s stderr\\n' \(StatusParsers.marker) \"$n\"\n"
        script += "  tail -c 2000 \"$d/$n.err\" 2>/dev/null; echo\n"
        script += "done\n"
        return script
    }

    /// The first control plane whose kubectl lists the nodes; the reasons of those that did not.
    static func readCluster(_ session: OperationSession, timeout: Int) async -> ClusterRead {
        var reasons: [String] = []
        let cps = session.site.controlPlanes
        guard !cps.isEmpty else { return ClusterRead(sections: [:], failure: "the site has no control-plane node") }
        for cp in cps {
            let runner = NodeRunner(
                name: cp.name, address: cp.address, pool: session.pool, endpoint: session.endpoint(for: cp))
            do {
                let out = try await runner.output(
                    script(site: session.site, node: cp.name, timeout: timeout), label: "read the cluster's status",
                    timeout: .seconds(Int64(timeout) + 30))
                let sections = StatusParsers.sections(out.stdoutText)
                guard let nodes = sections["nodes"] else {
                    reasons.append("\(cp.name): the status script failed (\(out.exit))")
                    continue
                }
                if nodes.succeeded { return ClusterRead(through: cp.name, sections: sections) }
                reasons.append("\(cp.name): kubectl get nodes: \(nodes.reason)")
            } catch {
                reasons.append("\(cp.name): \(oneLine(error))")
            }
        }
        return ClusterRead(
            sections: [:],
            failure: "the API did not answer through any control plane (\(reasons.joined(separator: "; ")))")
    }

    // MARK: node probes

    struct NodeProbe: Sendable {
        var kubelet: String?
        var fabricManager: String?
        var error: String?
    }

    static let probeScript = """
        printf 'kubelet %s\\n' "$(systemctl is-active kubelet 2>/dev/null)"
        if [ "$(systemctl show -p LoadState --value \(GPUHostStack.fabricManagerUnit) 2>/dev/null)" = loaded ]; then
          printf 'fabricmanager %s\\n' "$(systemctl is-active \(GPUHostStack.fabricManagerUnit) 2>/dev/null)"
        elif [ -d \(PrecompiledDriver.driverRoot)/usr ]; then
          if pgrep -f '\(PrecompiledDriver.fabricManagerProcess)' >/dev/null 2>&1; then echo 'fabricmanager active'; else echo 'fabricmanager inactive'; fi
        fi
        true
        """

    static func probeNodes(_ session: OperationSession, timeout: Int) async -> [String: NodeProbe] {
        let hosts = session.site.hosts
        let width = max(1, session.site.ssh.parallelism)
        return await withTaskGroup(of: (String, NodeProbe).self) { group in
            var results: [String: NodeProbe] = [:]
            var next = 0
            func launch() {
                guard next < hosts.count else { return }
                let host = hosts[next]
                next += 1
                let runner = NodeRunner(
                    name: host.name, address: host.address, pool: session.pool, endpoint: session.endpoint(for: host))
                group.addTask {
                    do {
                        let out = try await runner.output(
                            probeScript, label: "probe kubelet and fabric manager", timeout: .seconds(Int64(timeout)))
                        var p = NodeProbe()
                        for line in out.stdoutText.split(separator: "\n") {
                            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
                            guard parts.count == 2 else { continue }
                            if parts[0] == "kubelet" { p.kubelet = parts[1] }
                            if parts[0] == "fabricmanager" { p.fabricManager = parts[1] }
                        }
                        return (host.name, p)
                    } catch {
                        return (host.name, NodeProbe(error: oneLine(error)))
                    }
                }
            }
            for _ in 0..<width { launch() }
            while let (name, probe) = await group.next() {
                results[name] = probe
                launch()
            }
            return results
        }
    }

    static func oneLine(_ error: Error) -> String {
        let text = (error as? SSHError)?.message ?? "\(error)"
        return text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}
