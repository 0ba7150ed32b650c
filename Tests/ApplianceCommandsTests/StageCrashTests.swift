import AppliancePlan
import ApplianceTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Crash tests of the real product: `appliance stage` to three real sshd nodes is killed (SIGKILL) or
/// interrupted (SIGINT) at many points, then resumed (or started again: a lock left by a killed process is
/// taken over at once); the end state must equal that of an uninterrupted run.
@Suite(.serialized, .tags(.sshd), .enabled(if: IsolatedNode.available))
struct StageCrashTests {
    enum Recovery { case resume, stageAgain }

    struct Scenario: Sendable {
        var name: String
        var signal: Int32
        var recovery: Recovery
        /// A second Ctrl-C once the first was acknowledged.
        var twice = false
        /// Where to stop it: an observation of the nodes (never a timer).
        var trigger: @Sendable (StagingCluster) -> Bool
    }

    /// The rate cap makes the transfer last a while, so kill points inside it are easy to hit.
    static let rate = ["--limit-rate", "2MB"]

    static func relaySetUp(_ node: Int) -> @Sendable (StagingCluster) -> Bool {
        { c in c.nodes[node].transientFiles().contains { $0.hasPrefix(".staging/relay-") } }
    }
    static func bytesArrived(_ node: Int) -> @Sendable (StagingCluster) -> Bool {
        { c in c.nodes[node].transientFiles().contains { $0.hasPrefix("incoming/") || $0.hasPrefix("partial/") } }
    }
    static func blobVisible(_ node: Int) -> @Sendable (StagingCluster) -> Bool {
        { c in ((try? FileManager.default.contentsOfDirectory(atPath: c.nodes[node].store + "/sha256")) ?? []).count > 0
        }
    }
    static func manifestRecorded(_ node: Int) -> @Sendable (StagingCluster) -> Bool {
        { c in FileManager.default.fileExists(atPath: c.nodes[node].store + "/bundles/1.0.0/manifest.yaml") }
    }
    static let lockTaken: @Sendable (StagingCluster) -> Bool = { c in
        FileManager.default.fileExists(atPath: c.nodes[0].appliance + "/lock/holder")
    }
    /// The operation is in the journal: its first copy reached the control-plane node.
    static let operationStarted: @Sendable (StagingCluster) -> Bool = { c in
        FileManager.default.fileExists(atPath: c.nodes[0].appliance + "/journal/latest")
    }

    static let scenarios: [Scenario] = [
        Scenario(name: "kill-after-lock", signal: SIGKILL, recovery: .stageAgain, trigger: lockTaken),
        Scenario(name: "kill-relay-set-up", signal: SIGKILL, recovery: .resume, trigger: relaySetUp(2)),
        Scenario(name: "kill-bytes-at-last-hop", signal: SIGKILL, recovery: .stageAgain, trigger: bytesArrived(2)),
        Scenario(name: "kill-blob-visible", signal: SIGKILL, recovery: .resume, trigger: blobVisible(1)),
        Scenario(name: "kill-manifest-recorded", signal: SIGKILL, recovery: .resume, trigger: manifestRecorded(0)),
        Scenario(name: "int-bytes-at-last-hop", signal: SIGINT, recovery: .resume, trigger: bytesArrived(2)),
        Scenario(name: "int-blob-visible", signal: SIGINT, recovery: .resume, trigger: blobVisible(0)),
        Scenario(name: "int-twice", signal: SIGINT, recovery: .resume, twice: true, trigger: relaySetUp(1)),
    ]
    @Test func killedAndInterruptedStagingResumesToTheStateOfAnUninterruptedRun() async throws {
        let cluster = try await onThread { try StagingCluster() }
        defer { cluster.stop() }
        let reference = try await onThread { try Self.referenceRun(cluster) }
        var hits = 0
        for scenario in Self.scenarios {
            let started = Date()
            defer { print("scenario \(scenario.name): \(Date().timeIntervalSince(started)) s") }
            let hit = try await onThread { try Self.run(scenario, cluster: cluster, reference: reference) }
            if hit { hits += 1 }
        }
        // Each trigger is an observation of work in progress; the transfer phase lasts about a second.
        #expect(hits >= Self.scenarios.count - 2, "only \(hits) of \(Self.scenarios.count) runs were stopped mid-way")
    }

    /// An uninterrupted run: what every node must end with. Checked against the bundle itself.
    static func referenceRun(_ c: StagingCluster) throws -> [String] {
        let state = c.dir + "/state-reference"
        let r = try ApplianceProcess.run(c.stageArgs(rate), state: state)
        #expect(r.status == 0, "\(r.stderr)")
        let artifacts = try c.artifacts(state: state)
        var snapshots: [String] = []
        for (i, node) in c.nodes.enumerated() {
            let snap = try node.storeSnapshot()
            let want = Set(
                artifacts.filter { $0.roles.contains("all") || $0.roles.contains(StagingCluster.roles[i]) }.map(\.sha))
            let blobs = lines(snap).filter { $0.path.hasPrefix("./sha256/") }
            #expect(Set(blobs.map { String($0.path.dropFirst("./sha256/".count)) }) == want, "node-\(i + 1)")
            #expect(blobs.allSatisfy { $0.path.hasSuffix($0.digest) }, "node-\(i + 1): a blob with a wrong digest")
            #expect(
                Set(lines(snap).map(\.path)).subtracting(blobs.map(\.path))
                    == ["./bundles/1.0.0/manifest.yaml", "./bundles/1.0.0/manifest.yaml.sig"])
            snapshots.append(snap)
        }
        #expect(snapshots[1] == snapshots[2], "the two GPU workers hold the same")
        #expect(snapshots[0] != snapshots[1])
        try expectClean(c)
        return snapshots
    }

    /// Runs one scenario; returns whether the signal reached a run still in progress.
    static func run(_ s: Scenario, cluster c: StagingCluster, reference: [String]) throws -> Bool {
        for n in c.nodes { try n.wipe() }
        let state = c.dir + "/state-" + s.name
        let site = ["-i", c.sitePath]
        let process = try ApplianceProcess.start(c.stageArgs(rate), state: state)
        var exited: Int32?
        while exited == nil && !s.trigger(c) {
            exited = process.poll()
            usleep(1000)
        }
        let hit = exited == nil
        var abortedAtOnce = false
        if hit {
            process.signal(s.signal)
            if s.twice {
                // The second Ctrl-C once the first was acknowledged (signals sent together may merge).
                while process.poll() == nil {
                    if (try? String(contentsOfFile: process.stderrPath, encoding: .utf8))?.contains(
                        "Press Ctrl-C again") == true
                    {
                        process.signal(SIGINT)
                        abortedAtOnce = true
                        break
                    }
                    usleep(1000)
                }
            }
        }
        let first = exited.map { process.finish($0) } ?? process.wait()
        let label = "\(s.name): \(first.stderr)"
        var staleLock = false
        if hit {
            if s.signal == SIGKILL {
                #expect(first.status == 128 + SIGKILL, "\(label)")
                staleLock = true
            } else {
                #expect(first.status == 130, "\(label)")
                #expect(first.stderr.contains("interrupted"), "\(label)")
                let op = try #require(try latestOperation(c, state: state), "\(label)")
                if abortedAtOnce {
                    // Aborted at once: the journal still opens; the lock is left stale.
                    staleLock = true
                } else {
                    // Graceful: nothing left running, locks and relay keys gone, resumable.
                    #expect(op.state == "interrupted", "\(label)")
                    #expect(op.latest.values.allSatisfy { $0 != "running" }, "\(s.name): \(op.latest)")
                    #expect(c.nodes.allSatisfy { $0.relayKeyLines().isEmpty }, "\(label)")
                    #expect(
                        c.nodes.allSatisfy { !$0.transientFiles().contains { $0.hasPrefix(".staging/") } }, "\(label)")
                    #expect(!FileManager.default.fileExists(atPath: c.nodes[0].appliance + "/lock"), "\(label)")
                }
            }
        } else {
            #expect(first.status == 0, "\(label)")
        }
        try expectNothingHalfWritten(c, reference: reference, label: s.name)
        let interrupted = try latestOperation(c, state: state)

        switch s.recovery {
        case .resume:
            // A lock left by a killed process is taken over at once: the free flock proves the holder dead.
            let resumed = try ApplianceProcess.run(["plan", "resume"] + site, state: state)
            #expect(resumed.status == 0 || !hit, "\(s.name): \(resumed.stderr)")
            if staleLock {
                #expect(resumed.stderr.contains("took over the cluster lock left by pid"), "\(resumed.stderr)")
            }
            if hit {
                let id = try #require(interrupted?.id, "\(s.name): no operation to resume")
                #expect(resumed.stdout.contains("resuming stage \(id)"), "\(resumed.stdout)")
            }
        case .stageAgain:
            let again = try ApplianceProcess.run(c.stageArgs(), state: state)
            #expect(again.status == 0, "\(s.name): \(again.stderr)")
            if staleLock, let id = interrupted?.id {
                // The killed run's operation is no longer 'running': it was marked interrupted on takeover.
                #expect(
                    again.stderr.contains("took over the cluster lock left by pid")
                        && again.stderr.contains("its operation is marked interrupted"), "\(again.stderr)")
                #expect(try operations(c, state: state).first { $0.id == id }?.state == "interrupted", "\(s.name)")
            }
        }

        // The end state equals the uninterrupted run's, and nothing of the transfer is left.
        for (i, node) in c.nodes.enumerated() {
            #expect(try node.storeSnapshot() == reference[i], "\(s.name): node-\(i + 1) differs")
        }
        try expectClean(c, label: s.name)
        #expect(!FileManager.default.fileExists(atPath: c.nodes[0].appliance + "/lock"), "\(s.name): lock left")

        // The journal: the operation ends succeeded (a fresh start leaves the killed one interrupted, not
        // running), and no step ran again after it was done (done by its check or by its apply).
        let ops = try operations(c, state: state)
        #expect(ops.first?.state == "succeeded", "\(s.name): \(ops.map(\.state))")
        for op in ops {
            #expect(op.state != "running", "\(s.name): operation \(op.id) left running")
            for (step, states) in op.byStep {
                if let done = states.firstIndex(of: "done") {
                    #expect(!states[done...].contains("running"), "\(s.name): \(step) applied again after done")
                }
            }
        }
        if s.recovery == .resume && hit {
            #expect(ops.count == 1, "\(s.name): resumed in place")
            #expect(ops.first?.latest.values.allSatisfy { $0 == "done" } == true)
        }
        return hit
    }

    /// What is visible in stores is never half-written: every blob under sha256/ has its digest, and a
    /// recorded manifest means every blob the node needs is there.
    static func expectNothingHalfWritten(_ c: StagingCluster, reference: [String], label: String) throws {
        for (i, node) in c.nodes.enumerated() {
            let snap = lines(try node.storeSnapshot(whileBusy: true))
            let blobs = snap.filter { $0.path.hasPrefix("./sha256/") }
            #expect(blobs.allSatisfy { $0.path.hasSuffix($0.digest) }, "\(label): node-\(i + 1) shows a bad blob")
            if snap.contains(where: { $0.path == "./bundles/1.0.0/manifest.yaml" }) {
                let want = Set(lines(reference[i]).filter { $0.path.hasPrefix("./sha256/") }.map(\.path))
                #expect(want.isSubset(of: Set(blobs.map(\.path))), "\(label): node-\(i + 1) manifest before blobs")
            }
        }
    }

    static func expectClean(_ c: StagingCluster, label: String = "") throws {
        for (i, node) in c.nodes.enumerated() {
            #expect(node.transientFiles().isEmpty, "\(label): node-\(i + 1) keeps \(node.transientFiles())")
            #expect(node.relayKeyLines().isEmpty, "\(label): node-\(i + 1) keeps relay keys")
        }
    }

    static func lines(_ snapshot: String) -> [(digest: String, path: String)] {
        snapshot.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", maxSplits: 1)
            guard f.count == 2 else { return nil }
            return (String(f[0]), f[1].trimmingCharacters(in: .whitespaces))
        }
    }

    struct Operation {
        var id: String
        var state: String
        /// Each step's states in journal order.
        var byStep: [String: [String]]
        var latest: [String: String] { byStep.compactMapValues(\.last) }
    }

    /// The journal, read directly (the product's own reader), newest operation first.
    static func operations(_ c: StagingCluster, state: String) throws -> [Operation] {
        let journal = try Journal(stateDirectory: URL(fileURLWithPath: state + "/clusters/crash"))
        #expect(try journal.integrityCheck() == "ok")
        return try journal.operations(cluster: "crash").map { record in
            var byStep: [String: [String]] = [:]
            for t in try journal.transitions(operation: record.id) {
                byStep[t.step, default: []].append(t.state.rawValue)
            }
            return Operation(id: record.id, state: record.state.rawValue, byStep: byStep)
        }
    }

    /// Nil when the journal has no operation yet (stopped before the operation began).
    static func latestOperation(_ c: StagingCluster, state: String) throws -> Operation? {
        try operations(c, state: state).first
    }
}
