import ApplianceCluster
import ApplianceModel
import AppliancePlatform
import ApplianceSSH
import Foundation

/// Runs one smoke test (`AppliancePlatform.SmokeTest`) against the cluster with kubectl on the first control
/// plane: removes what a previous attempt left, applies the test's objects (and the smoke queues for the
/// scheduler's tests), polls the Job and its pods until the expectation holds or the timeout passes, keeps the
/// pods, their logs and the namespace's events under `evidenceDirectory` when it fails, and deletes everything
/// it created in every case.
struct SmokeRunner: Sendable {
    /// What a kubectl command printed.
    struct Output: Sendable {
        var status: Int32?
        var stdout: String
        var stderr: String
    }
    /// Runs `kubectl ARGS` with the cluster's admin credentials (stdin when given); a non-zero exit is returned,
    /// not thrown.
    typealias Kubectl = @Sendable (_ args: [String], _ stdin: [UInt8]?, _ label: String) async throws -> Output
    let kubectl: Kubectl
    /// Where a failure's evidence goes (`<state>/operations/<operation>/smoke/<test>/`).
    let evidenceDirectory: URL
    var pollInterval: Duration = .seconds(2)

    /// kubectl on a node, with the admin kubeconfig kubeadm wrote there (the first control plane).
    static func kubectl(on runner: NodeRunner) -> Kubectl {
        { args, stdin, label in
            let out = try await runner.output(
                "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) " + args.map(shellQuote).joined(separator: " "),
                stdin: stdin, label: label, timeout: .seconds(120))
            return Output(status: out.exit.status, stdout: out.stdoutText, stderr: out.stderrText)
        }
    }

    /// kubectl that must succeed: its stdout, or a failure naming the command and its error.
    @discardableResult
    func must(_ args: [String], stdin: [UInt8]? = nil, label: String) async throws -> String {
        let out = try await kubectl(args, stdin, label)
        guard out.status == 0 else {
            let err = out.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").suffix(3)
            throw Failure(
                test: "", pod: nil,
                reason: "\(label) failed (exit \(out.status.map(String.init) ?? "?")): \(err.joined(separator: " "))")
        }
        return out.stdout
    }

    struct Failure: Error, CustomStringConvertible {
        var test: String
        var pod: String?
        var reason: String
        var evidence: String?
        var description: String {
            var s = "smoke test \(test) failed"
            if let pod { s += ": pod \(pod)" }
            s += ": \(reason)"
            if let evidence { s += " (pods, logs and events kept in \(evidence))" }
            return s
        }
    }

    static func usesScheduler(_ t: SmokeTest) -> Bool { t.release == "kai-scheduler" }

    /// Runs the test; returns a line for the step's output, throws `Failure`.
    func run(_ t: SmokeTest) async throws -> String {
        try await cleanup(t)
        if t.namespace == SmokeTests.namespace {
            let ns: YAMLTree = .map([
                ("apiVersion", .string("v1")), ("kind", .string("Namespace")),
                ("metadata", .map([("name", .string(SmokeTests.namespace))])),
            ])
            try await apply([ns], label: "kubectl apply namespace \(SmokeTests.namespace)")
        }
        if Self.usesScheduler(t) {
            try await apply(SmokeTests.queues(), label: "kubectl apply the smoke queues")
        }
        do {
            try await apply(t.objects, label: "kubectl apply smoke test \(t.name)")
            let line = try await wait(t)
            try await cleanup(t)
            return line
        } catch var failure as Failure {
            if failure.test.isEmpty { failure.test = t.name }
            failure.evidence = await keepEvidence(t)
            try? await cleanup(t)
            throw failure
        } catch {
            let evidence = await keepEvidence(t)
            try? await cleanup(t)
            throw Failure(test: t.name, pod: nil, reason: "\(error)", evidence: evidence)
        }
    }

    func apply(_ objects: [YAMLTree], label: String) async throws {
        try await must(["apply", "-f", "-"], stdin: Array(PlatformObjects.document(objects).utf8), label: label)
    }

    /// Deletes the test's objects (in reverse order) and, after the scheduler's tests, the smoke queues; what
    /// is already gone is fine.
    func cleanup(_ t: SmokeTest) async throws {
        for object in t.objects.reversed() {
            guard let kind = Self.field(object, "kind"), let name = Self.field(object, "metadata", "name") else {
                continue
            }
            var args = ["delete", kind.lowercased(), name, "--ignore-not-found", "--wait=false"]
            if let ns = Self.field(object, "metadata", "namespace") { args += ["-n", ns] }
            _ = try await kubectl(args, nil, "kubectl delete \(kind.lowercased()) \(name)")
        }
        // The Job's pods go with it (background propagation); wait until they are gone so that the next test
        // starts from a clean queue.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, !(try await pods(t)).isEmpty {
            try await Task.sleep(for: pollInterval)
        }
        if Self.usesScheduler(t) {
            for q in SmokeTests.queues().reversed() {
                guard let name = Self.field(q, "metadata", "name") else { continue }
                _ = try await kubectl(
                    ["delete", "queues.scheduling.run.ai", name, "--ignore-not-found"], nil,
                    "kubectl delete queue \(name)")
            }
        }
    }

    static func field(_ t: YAMLTree, _ path: String...) -> String? {
        var cur = t
        for key in path {
            guard case .map(let pairs) = cur, let next = pairs.first(where: { $0.0 == key })?.1 else { return nil }
            cur = next
        }
        if case .string(let s) = cur { return s }
        return nil
    }

    func json(_ args: [String], label: String) async throws -> [String: Any] {
        let out = try await must(args + ["-o", "json"], label: label)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw Failure(test: "", pod: nil, reason: "kubectl \(args.joined(separator: " ")) printed no JSON object")
        }
        return obj
    }

    func pods(_ t: SmokeTest) async throws -> [[String: Any]] {
        try await json(["get", "pods", "-n", t.namespace, "-l", "job-name=\(t.job)"], label: "kubectl get pods")[
            "items"]
            as? [[String: Any]] ?? []
    }

    static func get(_ o: Any?, _ path: String...) -> Any? {
        var cur = o
        for p in path { cur = (cur as? [String: Any])?[p] }
        return cur
    }

    static func name(_ pod: [String: Any]) -> String { get(pod, "metadata", "name") as? String ?? "?" }
    static func node(_ pod: [String: Any]) -> String? {
        (get(pod, "spec", "nodeName") as? String).flatMap { $0.isEmpty ? nil : $0 }
    }

    static func condition(_ o: [String: Any], _ type: String) -> [String: Any]? {
        (get(o, "status", "conditions") as? [[String: Any]] ?? []).first { $0["type"] as? String == type }
    }

    /// Why the pod did not succeed, from its status (the container's exit code and termination message, or the
    /// scheduler's condition).
    static func why(_ pod: [String: Any]) -> String {
        for cs in get(pod, "status", "containerStatuses") as? [[String: Any]] ?? [] {
            if let term = get(cs, "state", "terminated") as? [String: Any] {
                let code = term["exitCode"] as? Int ?? -1
                let msg = (term["message"] as? String ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                return "container \(cs["name"] as? String ?? "?") exited \(code)\(msg.isEmpty ? "" : ": " + msg)"
            }
            if let waiting = get(cs, "state", "waiting") as? [String: Any] {
                return "container \(cs["name"] as? String ?? "?") waiting: \(waiting["reason"] as? String ?? "")"
                    + ((waiting["message"] as? String).map { " " + $0 } ?? "")
            }
        }
        if let c = condition(pod, "PodScheduled"), c["status"] as? String == "False" {
            return "not scheduled (\(c["reason"] as? String ?? "")): \(c["message"] as? String ?? "")"
        }
        return "phase \(get(pod, "status", "phase") as? String ?? "Unknown")"
    }

    /// Polls until the expectation holds; throws a `Failure` naming the pod and why.
    func wait(_ t: SmokeTest) async throws -> String {
        let start = ContinuousClock.now
        let deadline = start + .seconds(t.timeoutSeconds)
        var gpuNodes: Set<String>?
        var sawPartialGang: String?
        var partialPolls = 0
        while true {
            // The Job before its pods: the Job controller marks it Failed or Complete only after a pod ended, so
            // pods read afterwards show that pod's end (read the other way round, a pod that ended between the
            // two reads was still Running, and a failure lost its exit code and message).
            let job = try await json(["get", "job", t.job, "-n", t.namespace], label: "kubectl get job \(t.job)")
            let pods = try await pods(t)
            if let failed = Self.condition(job, "Failed"), failed["status"] as? String == "True" {
                let pod = pods.first { Self.get($0, "status", "phase") as? String == "Failed" } ?? pods.first
                throw Failure(
                    test: t.name, pod: pod.map(Self.name),
                    reason: "job \(t.job) failed (\(failed["reason"] as? String ?? "")): "
                        + (pod.map(Self.why) ?? failed["message"] as? String ?? ""))
            }
            let complete = Self.condition(job, "Complete")?["status"] as? String == "True"
            let bound = pods.filter { Self.node($0) != nil }
            switch t.expectation {
            case .staysPending(let seconds):
                if let pod = bound.first {
                    throw Failure(
                        test: t.name, pod: Self.name(pod),
                        reason:
                            "was bound to \(Self.node(pod) ?? "?") although its queue \(SmokeTests.limitedQueue) admits one GPU and the gang needs two"
                    )
                }
                if ContinuousClock.now - start >= .seconds(seconds) {
                    let refused = pods.filter {
                        Self.condition($0, "PodScheduled")?["reason"] as? String == "Unschedulable"
                    }
                    guard pods.count >= 2, refused.count == pods.count, let first = refused.first else {
                        throw Failure(
                            test: t.name, pod: pods.first.map(Self.name),
                            reason:
                                "expected 2 pods held back by the scheduler, found \(pods.count) with \(refused.count) marked Unschedulable"
                        )
                    }
                    let msg = Self.condition(first, "PodScheduled")?["message"] as? String ?? ""
                    return "\(t.summary): \(pods.count) pods pending for \(seconds)s (\(msg))"
                }
            case .startsTogether(let n), .sharesOneGPU(let n):
                // Bound pods while others of the gang wait, in two polls in a row (a binder binds one pod after
                // the other, so one poll may fall between two binds of the same decision).
                if !bound.isEmpty && bound.count < n && pods.count >= n && !complete {
                    partialPolls += 1
                    if partialPolls >= 2 { sawPartialGang = bound.map(Self.name).joined(separator: ", ") }
                } else {
                    partialPolls = 0
                }
                if complete {
                    guard pods.count >= n, bound.count >= n else {
                        throw Failure(
                            test: t.name, pod: nil, reason: "job completed with \(bound.count) of \(n) pods bound")
                    }
                    if case .startsTogether = t.expectation, let partial = sawPartialGang {
                        throw Failure(
                            test: t.name, pod: partial, reason: "started before the rest of its gang (not together)")
                    }
                    if case .sharesOneGPU = t.expectation {
                        let groups = Set(
                            bound.map {
                                (Self.get($0, "metadata", "labels") as? [String: Any])?["runai-gpu-group"] as? String
                                    ?? ""
                            })
                        let nodes = Set(bound.compactMap(Self.node))
                        guard groups.count == 1, let g = groups.first, !g.isEmpty, nodes.count == 1 else {
                            throw Failure(
                                test: t.name, pod: Self.name(bound[0]),
                                reason:
                                    "the pods did not share one GPU: GPU groups \(groups.sorted()) on nodes \(nodes.sorted())"
                            )
                        }
                        return "\(t.summary): \(n) pods on \(nodes.first ?? "?") in GPU group \(g)"
                    }
                    return
                        "\(t.summary): \(n) pods bound together on \(Set(bound.compactMap(Self.node)).sorted().joined(separator: ", "))"
                }
            case .completes(let onGPUNode):
                if complete {
                    if onGPUNode {
                        if gpuNodes == nil { gpuNodes = try await self.gpuNodes() }
                        for pod in bound where !(gpuNodes ?? []).contains(Self.node(pod) ?? "") {
                            throw Failure(
                                test: t.name, pod: Self.name(pod),
                                reason: "ran on \(Self.node(pod) ?? "?"), which has no nvidia.com/gpu")
                        }
                    }
                    return
                        "\(t.summary): \(bound.map { "\(Self.name($0)) on \(Self.node($0) ?? "?")" }.joined(separator: ", "))"
                }
            }
            if ContinuousClock.now >= deadline {
                let pod = pods.first { Self.get($0, "status", "phase") as? String != "Succeeded" } ?? pods.first
                throw Failure(
                    test: t.name, pod: pod.map(Self.name),
                    reason: "not done after \(t.timeoutSeconds)s: " + (pod.map(Self.why) ?? "the Job created no pod"))
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    func gpuNodes() async throws -> Set<String> {
        let nodes = try await json(["get", "nodes"], label: "kubectl get nodes")["items"] as? [[String: Any]] ?? []
        return Set(
            nodes.filter {
                let v = Self.get($0, "status", "allocatable", "nvidia.com/gpu")
                return Int(v as? String ?? "") ?? (v as? Int ?? 0) > 0
            }.map(Self.name))
    }

    /// Writes the pods (JSON), each pod's logs and the namespace's events under the evidence directory;
    /// returns its path (nil when nothing could be written).
    func keepEvidence(_ t: SmokeTest) async -> String? {
        let dir = evidenceDirectory
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            func save(_ name: String, _ text: String) throws {
                try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
            }
            func capture(_ args: [String], label: String) async -> String {
                guard let out = try? await kubectl(args, nil, label) else {
                    return "kubectl \(args.joined(separator: " ")): could not run\n"
                }
                return out.stdout + (out.stderr.isEmpty ? "" : "\n[stderr]\n" + out.stderr)
            }
            try save(
                "pods.json",
                await capture(
                    ["get", "pods", "-n", t.namespace, "-l", "job-name=\(t.job)", "-o", "json"], label: "smoke pods"))
            try save(
                "job.json", await capture(["get", "job", t.job, "-n", t.namespace, "-o", "json"], label: "smoke job"))
            try save("events.txt", await capture(["get", "events", "-n", t.namespace], label: "smoke events"))
            for pod in (try? await pods(t)) ?? [] {
                let name = Self.name(pod)
                try save(
                    "\(name).log",
                    await capture(["logs", name, "-n", t.namespace, "--all-containers"], label: "logs \(name)")
                        + "\n[status] \(Self.why(pod))\n")
            }
            return dir.path
        } catch {
            return nil
        }
    }
}
