import ApplianceTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The cluster-side lock through the real binary: two admin hosts (two state directories) against one
/// cluster of real sshd nodes.
@Suite(.serialized, .tags(.sshd), .enabled(if: IsolatedNode.available))
struct ClusterLockCLITests {
    @Test func aSecondAdminHostIsRefusedWhileTheFirstHoldsTheLockAndProceedsAfterUnlockForce() async throws {
        let c = try await onThread { try StagingCluster() }
        defer { c.stop() }
        try await onThread {
            let adminA = c.dir + "/admin-a"
            let adminB = c.dir + "/admin-b"
            let site = ["-i", c.sitePath]
            let lockHolder = c.nodes[0].appliance + "/lock/holder"
            // A stages slowly; B tries while A holds the lock.
            let a = try ApplianceProcess.start(c.stageArgs(["--limit-rate", "1MB"]), state: adminA)
            var exited: Int32?
            while exited == nil && !FileManager.default.fileExists(atPath: lockHolder) {
                exited = a.poll()
                usleep(1000)
            }
            try #require(
                exited == nil, "A finished before it was seen holding the lock: \(a.finish(exited ?? 0).stderr)")
            let refused = try ApplianceProcess.run(c.stageArgs(), state: adminB)
            #expect(refused.status == 10, "\(refused.stderr)")
            #expect(refused.stderr.contains("error: cluster 'crash' is locked on node-1 by pid \(a.pid) on admin host"))
            #expect(refused.stderr.contains("hint: "))
            // B changed nothing: A's transfer goes on, B's journal has no operation.
            let history = try ApplianceProcess.run(["history"] + site, state: adminB)
            #expect(history.stdout.contains("no operations recorded"))

            // A's admin host dies; its lock is still fresh, so B is refused, and unlock without --force too.
            a.signal(SIGKILL)
            _ = a.wait()
            let stillRefused = try ApplianceProcess.run(c.stageArgs(), state: adminB)
            #expect(stillRefused.status == 10, "\(stillRefused.stderr)")
            let gentle = try ApplianceProcess.run(["plan", "unlock"] + site, state: adminB)
            #expect(gentle.status == 10, "\(gentle.stderr)")
            #expect(gentle.stderr.contains("--force"))
            #expect(FileManager.default.fileExists(atPath: lockHolder))

            let forced = try ApplianceProcess.run(["plan", "unlock", "--force"] + site, state: adminB)
            #expect(forced.status == 0, "\(forced.stderr)")
            #expect(forced.stdout.contains("broke the cluster lock on node-1 held by pid \(a.pid)"), "\(forced.stdout)")
            let staged = try ApplianceProcess.run(c.stageArgs(), state: adminB)
            #expect(staged.status == 0, "\(staged.stderr)")
            #expect(staged.stdout.contains("staged 3/3 nodes"))
            #expect(!FileManager.default.fileExists(atPath: c.nodes[0].appliance + "/lock"))
            for n in c.nodes { #expect(n.relayKeyLines().isEmpty) }

            // A comes back: its own local lock was left by its killed process, which the free flock proves
            // dead, so resume takes it over at once; the cluster-side lock is free again.
            let aResumed = try ApplianceProcess.run(["plan", "resume"] + site, state: adminA)
            #expect(aResumed.status == 0, "\(aResumed.stderr)")
            #expect(aResumed.stderr.contains("took over the cluster lock left by pid \(a.pid)"), "\(aResumed.stderr)")
        }
    }

    @Test func aStaleLockOfAnotherAdminHostIsReportedAndBrokenByUnlock() async throws {
        let c = try await onThread { try StagingCluster() }
        defer { c.stop() }
        try await onThread {
            let admin = c.dir + "/admin"
            let site = ["-i", c.sitePath]
            // Another admin host took the lock and stopped refreshing it ten minutes ago.
            let lock = c.nodes[0].appliance + "/lock"
            try FileManager.default.createDirectory(atPath: lock, withIntermediateDirectories: true)
            try """
            {"admin":"other-admin","host":"laptop-7","operation":"op-x","pid":4242,"startedAt":"2026-01-01T00:00:00Z","token":"t-1"}
            """.write(toFile: lock + "/holder", atomically: true, encoding: .utf8)
            try TestSSHServer.shell("touch -d '10 minutes ago' '\(lock)/holder'")

            let refused = try ApplianceProcess.run(c.stageArgs(), state: admin)
            #expect(refused.status == 10, "\(refused.stderr)")
            #expect(refused.stderr.contains("stale lock on node-1 left by pid 4242 on admin host laptop-7"))
            #expect(refused.stderr.contains("last heartbeat"))
            #expect(refused.stderr.contains("appliance plan unlock"))
            let unlock = try ApplianceProcess.run(["plan", "unlock"] + site, state: admin)
            #expect(unlock.status == 0, "\(unlock.stderr)")
            #expect(unlock.stdout.contains("broke the cluster lock on node-1 held by pid 4242"))
            let staged = try ApplianceProcess.run(c.stageArgs(), state: admin)
            #expect(staged.status == 0, "\(staged.stderr)")
        }
    }

    @Test func anUnreachableControlPlaneNodeLeavesOnlyTheLocalLockWithAWarning() async throws {
        let c = try await onThread { try StagingCluster(deadControlPlane: true) }
        defer { c.stop() }
        try await onThread {
            let admin = c.dir + "/admin"
            let r = try ApplianceProcess.run(c.stageArgs(), state: admin)
            #expect(r.status == 9, "\(r.stderr)")  // node-1 failed, the workers are staged
            #expect(r.stderr.contains("warning: cannot reach node-1 to take the cluster lock there"), "\(r.stderr)")
            #expect(r.stderr.contains("this admin host's lock only"))
            #expect(r.stdout.contains("staged 2/3 nodes"), "\(r.stdout)")
            for n in c.nodes.dropFirst() {
                #expect(FileManager.default.fileExists(atPath: n.store + "/bundles/1.0.0/manifest.yaml"))
            }
            // The local lock still keeps a second process of this admin host out while one runs, and was released.
            let again = try ApplianceProcess.run(c.stageArgs(["--node", "node-2"]), state: admin)
            #expect(again.status == 0, "\(again.stderr)")
        }
    }
}
