import ApplianceBundle
import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import ApplianceSSH
import Foundation

/// The platform control plane (issue 13), after the cluster, the roles and the GPU gates (DESIGN.md section 8):
///
/// `platform-check` (capacity, quotas and the site certificate, from the system nodes' allocatable as their
/// kubelets report it and the rendered requests: refuses before any chart is deployed) → one
/// `platform/<release>` step per Helm release → `platform-queues` (the site's `Queue`s, the namespaces mapped to leaf queues and the dataset cache).
///
/// Release order: the monitoring stack first (its CRDs let the GPU Operator create its ServiceMonitor), the
/// GPU Operator after it and after every GPU gate (in `operator-precompiled` mode the gates come after it,
/// since its driver containers install the driver they validate), the CloudNativePG operator before its cluster, the rest in
/// parallel after the check; the queues after KAI (their CRD) and the NFS CSI driver (the cache's class).
///
/// Each release step copies the rendered values to the first control plane (0600, under
/// `/var/lib/appliance/platform/`), runs `helm upgrade --install` on the chart blob the staging put in the node's
/// store, then waits for the release's pods to be Ready. The check — the release is deployed at the chart's
/// version, its description carries the values' digest, and its pods are Ready — makes a second install a
/// no-op. A failure names the release and every pod that is not Ready with why.
///
/// Secrets: the site's TLS certificate and key go to the cluster as a `kubernetes.io/tls` Secret through
/// kubectl's stdin (never a command line, never the journal); values hold only the Secret's name.
extension InstallPlan {
    static let platformCheckStep = "platform-check"
    static let platformQueuesStep = "platform-queues"
    static func platformRelease(_ release: String) -> String { "platform/\(release)" }
    static let platformDirectory = "/var/lib/appliance/platform"
    /// The prefix of the release description that records the values digest.
    static let valuesDigestPrefix = "appliance values sha256:"

    /// The platform releases' dependencies among themselves.
    static func platformDependencies(_ release: String) -> [String] {
        switch release {
        case "gpu-operator": [platformRelease(PlatformValues.monitoringRelease)]
        case "platform-db": [platformRelease("cloudnative-pg")]
        default: []
        }
    }

    /// The platform's steps (none when the site has no `spec.platform`), and the step names `record` waits for.
    static func platformSteps(_ c: InstallContext, _ cp1: SiteInventory.Host) throws -> [Step] {
        guard c.site.platform != nil else { return [] }
        let config: PlatformConfiguration
        do { config = try PlatformConfiguration.resolve(site: c.site, profile: c.profile) } catch {
            throw OperationError.invalid(error.message, hint: error.hint)
        }
        let releases = PlatformValues.releases(config)
        var charts: [String: BundleManifest.Artifact] = [:]
        var missing: [String] = []
        for r in releases {
            if let a = chartArtifact(c.manifest, r.chart) {
                charts[r.name] = a
            } else {
                missing.append("\(r.chart.name) \(r.chart.version) (release \(r.name))")
            }
        }
        guard missing.isEmpty else {
            throw OperationError.invalid(
                "the bundle has no chart for: " + missing.joined(separator: ", "),
                hint: "build the bundle with a chart artifact of each platform chart at the pinned version")
        }
        var steps: [Step] = [platformCheck(c, cp1)]
        let gates = c.site.hosts.compactMap { gpuValidateStep(c, $0)?.name }
        for r in releases {
            guard let chart = charts[r.name] else { continue }
            var deps = [platformCheckStep] + platformDependencies(r.name)
            // Host-driver mode: the operator's device plugin goes on validated nodes. Operator mode: the
            // release installs the driver, and the gates follow it (`plan`).
            if r.name == "gpu-operator" && c.profile.gpuStack.mode == .hostDriver { deps += gates }
            steps.append(releaseStep(c, cp1, r, chart: chart, after: deps, config: config))
        }
        steps.append(
            queuesStep(
                c, cp1, config: config, after: [platformRelease("kai-scheduler"), platformRelease("csi-driver-nfs")]))
        return steps
    }

    /// The chart artifact of the bundle for a chart reference (name and version from its Chart.yaml).
    static func chartArtifact(_ manifest: BundleManifest, _ chart: ChartReference) -> BundleManifest.Artifact? {
        manifest.allArtifacts.map(\.artifact).first {
            $0.kind == .chart && $0.provenance("chart") == chart.name && $0.provenance("version") == chart.version
        }
    }

    static func platformCheck(_ c: InstallContext, _ cp1: SiteInventory.Host) -> Step {
        let (site, profile) = (c.site, c.profile)
        let api = ClusterAPI(runner: c.runner(cp1))
        let systemNodes = Set(site.hosts(withRole: .system).map(\.name))
        /// The system nodes' allocatable as their kubelets report it (every node has joined by now).
        @Sendable func measured() async throws -> [String: CapacityCheck.Allocatable] {
            var out: [String: CapacityCheck.Allocatable] = [:]
            for n in try await api.nodes() where systemNodes.contains(n.name) {
                out[n.name] = CapacityCheck.Allocatable(cpu: n.allocatableCPU, memory: n.allocatableMemory)
            }
            return out
        }
        return Step(
            platformCheckStep, on: .cluster, after: c.site.hosts.map { roles($0.name) },
            summary:
                "capacity, quota and TLS check of the platform against the system nodes' allocatable (refuses before any chart)",
            timeout: .seconds(60),
            check: { _ in
                let allocatable = try await measured()
                return try PlatformCheck.run(site: site, profile: profile, allocatable: allocatable).passed
            },
            apply: { ctx in
                let allocatable = try await measured()
                let result = try PlatformCheck.run(site: site, profile: profile, allocatable: allocatable)
                if let error = result.error { throw error }
                let sized = allocatable.sorted { $0.key < $1.key }.map {
                    "\($0.key) \(Quantity.cpuText($0.value.milliCPU)) CPU / \(Quantity.memoryText($0.value.memoryBytes))"
                }
                ctx.appendOutput(
                    "platform check passed"
                        + (sized.isEmpty ? "" : " (system nodes' allocatable: \(sized.joined(separator: ", ")))"))
            })
    }

    /// The digest recorded in a release's description: the values file and the chart blob.
    static func valuesDigest(_ release: PlatformRelease, chart: BundleManifest.Artifact) -> String {
        SHA256Hasher.hash(Data((release.valuesYAML + "\n" + chart.sha256.hex).utf8)).hex
    }

    /// `leaveAlone` (an upgrade's release whose chart and values are unchanged): when the release is still
    /// deployed as it was, its pods are only waited for, never `helm upgrade`d again.
    static func releaseStep(
        _ c: InstallContext, _ cp1: SiteInventory.Host, _ r: PlatformRelease, chart: BundleManifest.Artifact,
        after deps: [String], config: PlatformConfiguration, leaveAlone: Bool = false
    ) -> Step {
        let api = ClusterAPI(runner: c.runner(cp1))
        let chartPath = "\(c.store)/sha256/\(chart.sha256.hex)"
        let valuesFile = NodeFile(
            path: "\(platformDirectory)/\(r.valuesFileName)", mode: 0o600, content: r.valuesYAML)
        let digest = valuesDigest(r, chart: chart)
        let tls = r.name == "haproxy-ingress" || r.name == PlatformValues.monitoringRelease ? c.site.tls : nil
        let tlsSecret = config.tlsSecretName
        let timeout = c.site.install.releaseTimeoutSeconds ?? SiteInventory.InstallSettings.defaultReleaseTimeoutSeconds
        // Deployed as this step would deploy it: the chart's version, the values' digest, the TLS Secret.
        @Sendable func deployed() async throws -> Bool {
            guard let status = try await releaseStatus(api, r) else { return false }
            guard status.status == "deployed", status.chartVersion == r.chart.version,
                status.description == valuesDigestPrefix + digest
            else { return false }
            if tls != nil, try await !secretExists(api, namespace: r.namespace, name: tlsSecret) { return false }
            return true
        }
        return Step(
            platformRelease(r.name), on: .cluster, after: deps,
            summary:
                "helm upgrade --install \(r.name) \(r.chart.name) \(r.chart.version) -n \(r.namespace) --wait; its pods Ready",
            timeout: .seconds(timeout + 120),
            check: { _ in
                guard try await deployed() else { return false }
                return try await notReadyPods(api, r).isEmpty
            },
            apply: { ctx in
                // A helm of an earlier run that was killed with it leaves the release pending: wait for it, or
                // roll the pending operation back, and take a release it finished as this step's.
                if try await settlePending(api, r, seconds: timeout, ctx), try await deployed() {
                    let pods = try await waitPods(api, r, seconds: 120)
                    if !pods.isEmpty { throw releaseFailure(r, helm: nil, pods: pods) }
                    ctx.appendOutput(
                        "\(r.name): \(r.chart.name) \(r.chart.version) deployed by the interrupted run's helm, pods Ready"
                    )
                    return
                }
                if leaveAlone, try await deployed() {
                    let pods = try await waitPods(api, r, seconds: 120)
                    if !pods.isEmpty { throw releaseFailure(r, helm: nil, pods: pods) }
                    ctx.appendOutput(
                        "\(r.name): \(r.chart.name) \(r.chart.version) unchanged (same chart and values): left alone, pods Ready"
                    )
                    return
                }
                try await api.runner.ensure([valuesFile])
                if let tls {
                    try await applyTLSSecret(api, namespace: r.namespace, name: tlsSecret, tls: tls)
                }
                let command =
                    [
                        "helm", "upgrade", "--install", r.name, chartPath, "--namespace", r.namespace,
                        "--create-namespace", "-f", valuesFile.path, "--wait", "--timeout", "\(timeout)s",
                        "--description", valuesDigestPrefix + digest,
                        "--kubeconfig", ClusterAPI.adminKubeconfig,
                    ].map(shellQuote).joined(separator: " ")
                let out = try await api.runner.output(
                    command, label: "helm upgrade --install \(r.name)", timeout: .seconds(timeout + 60))
                let pods = try await waitPods(api, r, seconds: out.exit.succeeded ? 120 : 5)
                if !out.exit.succeeded || !pods.isEmpty {
                    let helmError =
                        out.exit.succeeded
                        ? nil
                        : (out.stderrText.isEmpty ? out.stdoutText : out.stderrText)
                            .split(separator: "\n").suffix(3).joined(separator: " ")
                    throw releaseFailure(r, helm: helmError, pods: pods)
                }
                ctx.appendOutput("\(r.name): \(r.chart.name) \(r.chart.version) deployed, pods Ready")
            })
    }

    /// When the release's last helm operation is still pending (an earlier run was killed during its
    /// `helm upgrade --install`): waits while that helm still runs on the node (at most `seconds`, its own
    /// `--timeout`), then rolls back an operation that stayed pending (helm refuses any other while it is).
    /// Returns whether the release was pending.
    static func settlePending(_ api: ClusterAPI, _ r: PlatformRelease, seconds: Int, _ ctx: StepContext) async throws
        -> Bool
    {
        guard let first = try await releaseStatus(api, r), first.status.hasPrefix("pending-") else { return false }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(seconds)
        // `[h]elm`: the pattern does not match the shell that runs pgrep.
        let running = "pgrep -f \(shellQuote("[h]elm upgrade --install \(r.name) ")) >/dev/null"
        var status = first
        while status.status.hasPrefix("pending-"), clock.now < deadline,
            try await api.runner.succeeds(running, label: "an earlier helm of \(r.name) still running")
        {
            try await Task.sleep(for: .seconds(2))
            status = try await releaseStatus(api, r) ?? status
        }
        status = try await releaseStatus(api, r) ?? status
        guard status.status.hasPrefix("pending-") else {
            ctx.appendOutput("\(r.name): the interrupted run's helm finished (\(status.status))")
            return true
        }
        let verb = status.status == "pending-install" ? ["uninstall", r.name] : ["rollback", r.name, "--wait"]
        let out = try await api.runner.output(
            (["helm"] + verb + ["-n", r.namespace, "--kubeconfig", ClusterAPI.adminKubeconfig]).map(shellQuote)
                .joined(separator: " "),
            label: "helm \(verb[0]) \(r.name)", timeout: .seconds(seconds + 60))
        guard out.exit.succeeded else {
            throw ClusterError.node(
                node: "cluster",
                reason:
                    "platform release \(r.name) is \(status.status) (an interrupted helm) and helm \(verb[0]) failed: "
                    + (out.stderrText.isEmpty ? out.stdoutText : out.stderrText).split(separator: "\n").suffix(3)
                    .joined(separator: " "))
        }
        ctx.appendOutput("\(r.name): was \(status.status) from an interrupted helm: helm \(verb[0]) done")
        return true
    }

    /// A failed release: the release and chart, helm's last lines, every pod not Ready with why.
    static func releaseFailure(_ r: PlatformRelease, helm: String?, pods: [PodProblem]) -> ClusterError {
        var lines: [String] = []
        if let helm { lines.append("helm: \(helm)") }
        lines += pods.map { "\($0.kind) \(r.namespace)/\($0.name) not Ready: \($0.reason)" }
        if pods.isEmpty {
            lines.append("no pod of the release is failing; see `helm status \(r.name) -n \(r.namespace)`")
        }
        return ClusterError.node(
            node: "cluster",
            reason: "platform release \(r.name) (chart \(r.chart.name) \(r.chart.version)) failed:\n    "
                + lines.joined(separator: "\n    "))
    }

    static func queuesStep(
        _ c: InstallContext, _ cp1: SiteInventory.Host, config: PlatformConfiguration, after deps: [String]
    ) -> Step {
        let api = ClusterAPI(runner: c.runner(cp1))
        let objects = PlatformObjects.all(config)
        let document = PlatformObjects.document(objects)
        let file = NodeFile(path: "\(platformDirectory)/platform-objects.yaml", mode: 0o644, content: document)
        let queueNames = config.queues.map(\.name)
        return Step(
            platformQueuesStep, on: .cluster, after: deps,
            summary:
                "kubectl apply the site's \(queueNames.count) scheduler Queue(s) (scheduling.run.ai/v2), their namespaces and the dataset cache",
            timeout: .seconds(120),
            check: { _ in
                guard try await api.runner.differing([file]).isEmpty else { return false }
                return try await api.runner.succeeds(
                    "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) get -f \(shellQuote(file.path)) -o name >/dev/null",
                    label: "platform objects present")
            },
            apply: { ctx in
                try await api.runner.ensure([file])
                try await api.kubectl(["apply", "-f", file.path], label: "kubectl apply the platform objects")
                ctx.appendOutput("queues: " + queueNames.joined(separator: ", "))
            })
    }

    // MARK: helpers

    struct ReleaseStatus: Sendable, Equatable {
        var status: String
        var chartVersion: String
        var description: String
    }

    /// `helm status NAME -n NS -o json`; nil when there is no such release.
    static func releaseStatus(_ api: ClusterAPI, _ r: PlatformRelease) async throws -> ReleaseStatus? {
        let out = try await api.runner.output(
            "helm status \(shellQuote(r.name)) -n \(shellQuote(r.namespace)) -o json --kubeconfig=\(ClusterAPI.adminKubeconfig)",
            label: "helm status \(r.name)", timeout: .seconds(60))
        guard out.exit.succeeded,
            let o = try? JSONSerialization.jsonObject(with: Data(out.stdoutText.utf8)) as? [String: Any]
        else { return nil }
        let info = o["info"] as? [String: Any] ?? [:]
        let meta = (o["chart"] as? [String: Any])?["metadata"] as? [String: Any] ?? [:]
        return ReleaseStatus(
            status: info["status"] as? String ?? "", chartVersion: meta["version"] as? String ?? "",
            description: info["description"] as? String ?? "")
    }

    struct PodProblem: Equatable {
        var name: String
        var reason: String
        /// `pod`, or the kind of an operator's resource of the release (`Cluster`).
        var kind = "pod"
    }

    /// The release's pods that are not Ready (`ReleasePods`), each with why.
    static func notReadyPods(_ api: ClusterAPI, _ r: PlatformRelease) async throws -> [PodProblem] {
        var lists: [String: [[String: Any]]] = [:]
        for kind in ["deployments", "daemonsets", "statefulsets", "pods"] {
            let text = try await api.kubectl(
                ["get", kind, "-n", r.namespace, "-o", "json"], label: "kubectl get \(kind) -n \(r.namespace)")
            lists[kind] = ReleasePods.items(text)
        }
        // The operators' resources that own pods; a cluster without their CRD answers an error: none.
        var owners: [[String: Any]] = []
        for resource in ReleasePods.ownerResources {
            let out = try await api.runner.output(
                "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) get \(resource) -A -o json",
                label: "kubectl get \(resource)", timeout: .seconds(120))
            if out.exit.succeeded { owners += ReleasePods.items(out.stdoutText) }
        }
        let pods = ReleasePods.of(
            release: r.name, namespace: r.namespace, deployments: lists["deployments"] ?? [],
            daemonSets: lists["daemonsets"] ?? [], statefulSets: lists["statefulsets"] ?? [], owners: owners,
            pods: lists["pods"] ?? [])
        let unsettled = ReleasePods.unsettledOwners(release: r.name, namespace: r.namespace, owners: owners)
        return (unsettled + pods.notReady).map { PodProblem(name: $0.pod, reason: $0.reason, kind: $0.kind) }
    }

    /// Polls until every pod of the release is Ready or `seconds` pass; what is still not Ready.
    static func waitPods(_ api: ClusterAPI, _ r: PlatformRelease, seconds: Int) async throws -> [PodProblem] {
        let deadline = Date().addingTimeInterval(Double(seconds))
        while true {
            let problems = try await notReadyPods(api, r)
            if problems.isEmpty || Date() >= deadline { return problems }
            try await Task.sleep(for: .seconds(2))
        }
    }

    static func secretExists(_ api: ClusterAPI, namespace: String, name: String) async throws -> Bool {
        try await api.runner.succeeds(
            "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) get secret \(shellQuote(name)) -n \(shellQuote(namespace)) -o name >/dev/null",
            label: "kubectl get secret \(name)")
    }

    /// The site certificate as a `kubernetes.io/tls` Secret, through kubectl's stdin: the key never appears
    /// on a command line, in the journal or in a log (only the label is logged).
    static func applyTLSSecret(
        _ api: ClusterAPI, namespace: String, name: String, tls: SiteInventory.TLSSettings
    ) async throws {
        func read(_ path: String) throws -> String {
            guard let d = FileManager.default.contents(atPath: path) else {
                throw ClusterError.io(path: path, reason: "cannot read the site certificate file")
            }
            return d.base64EncodedString()
        }
        let certificate = try read(tls.certificateFile)
        let secret: [String: Any] = [
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": [
                "name": name, "namespace": namespace,
                "labels": ["app.kubernetes.io/managed-by": "appliance"],
            ],
            "data": ["tls.crt": certificate, "tls.key": try read(tls.keyFile)],
        ]
        let namespaceObject: [String: Any] = ["apiVersion": "v1", "kind": "Namespace", "metadata": ["name": namespace]]
        // `\/` (JSONSerialization's default) is not an escape YAML 1.1 parsers (kubectl's) accept.
        let options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        var body = Data("---\n".utf8)
        body += try JSONSerialization.data(withJSONObject: namespaceObject, options: options)
        body += Data("\n---\n".utf8)
        body += try JSONSerialization.data(withJSONObject: secret, options: options)
        body += Data("\n".utf8)
        try await api.runner.run(
            "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) apply -f - >/dev/null",
            stdin: Array(body), label: "kubectl apply the TLS secret \(namespace)/\(name)")
    }
}
