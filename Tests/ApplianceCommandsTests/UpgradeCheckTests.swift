import ApplianceBundle
import ApplianceModel
import AppliancePlan
import Foundation
import Testing

@testable import ApplianceOperations

/// The rules an upgrade bundle must meet against what is installed (issue 14), and `--max-unavailable`.
@Suite struct UpgradeCheckTests {
    func manifest(_ version: String, from: [String], kubernetes: String) -> BundleManifest {
        BundleManifest(
            name: "appliance-lab", version: version, created: "2026-11-30T00:00:00Z", upgradeFrom: from,
            kubernetesVersion: kubernetes, components: [])
    }

    @Test func aBundleForTheInstalledVersionOneMinorAheadIsAccepted() {
        let next = manifest("2026.12.0-lab", from: ["2026.10.0-lab", "2026.11.0-lab"], kubernetes: "v1.35.0")
        #expect(
            UpgradeCheck.refusal(
                bundlePath: "up.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3", target: next)
                == nil)
        // A patch release of the same minor, and the same bundle again (a re-run), are no refusal either.
        let patch = manifest("2026.11.1-lab", from: ["2026.11.0-lab"], kubernetes: "v1.34.5")
        #expect(
            UpgradeCheck.refusal(
                bundlePath: "p.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "1.34.3", target: patch)
                == nil)
        #expect(
            UpgradeCheck.refusal(
                bundlePath: "up.tar", installedVersion: "2026.12.0-lab", installedKubernetes: "v1.35.0", target: next)
                == nil)
    }

    @Test func aBundleThatDoesNotNameTheInstalledVersionIsRefusedWithBothVersions() throws {
        let next = manifest("2026.12.0-lab", from: ["2026.10.0-lab"], kubernetes: "v1.35.0")
        let r = try #require(
            UpgradeCheck.refusal(
                bundlePath: "up.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3", target: next))
        #expect(r.message.contains("2026.10.0-lab"), "\(r.message)")
        #expect(r.message.contains("the cluster runs bundle 2026.11.0-lab"), "\(r.message)")
        #expect(r.message.contains("nothing was changed"))
        #expect(r.exitStatus == .upgradeRefused && r.exitStatus.rawValue == 12)
        let empty = manifest("2026.12.0-lab", from: [], kubernetes: "v1.35.0")
        let e = try #require(
            UpgradeCheck.refusal(
                bundlePath: "up.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3", target: empty))
        #expect(e.message.contains("upgradeFrom is empty"), "\(e.message)")
    }

    @Test func skippingAMinorOrGoingBackIsRefusedWithTheKubernetesVersions() throws {
        let skip = manifest("2027.01.0-lab", from: ["2026.11.0-lab"], kubernetes: "v1.36.0")
        let r = try #require(
            UpgradeCheck.refusal(
                bundlePath: "skip.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3",
                target: skip))
        #expect(r.message.contains("v1.36.0") && r.message.contains("v1.34.3"), "\(r.message)")
        #expect(r.message.contains("skips 1 minor version"), "\(r.message)")
        #expect(r.message.contains("one minor version at a time"), "\(r.message)")
        let back = manifest("2026.12.0-lab", from: ["2026.11.0-lab"], kubernetes: "v1.33.9")
        let b = try #require(
            UpgradeCheck.refusal(
                bundlePath: "b.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3", target: back))
        #expect(b.message.contains("does not downgrade"), "\(b.message)")
        let major = manifest("2026.12.0-lab", from: ["2026.11.0-lab"], kubernetes: "v2.0.0")
        #expect(
            UpgradeCheck.refusal(
                bundlePath: "m.tar", installedVersion: "2026.11.0-lab", installedKubernetes: "v1.34.3", target: major)
                != nil)
    }

    @Test func maxUnavailableIsACountOrAPercentageOfTheWorkers() throws {
        #expect(try UpgradeOptions.batchSize("1", workers: 5) == 1)
        #expect(try UpgradeOptions.batchSize("3", workers: 2) == 3)
        #expect(try UpgradeOptions.batchSize("50%", workers: 3) == 1)
        #expect(try UpgradeOptions.batchSize("50%", workers: 4) == 2)
        #expect(try UpgradeOptions.batchSize("10%", workers: 2) == 1)
        #expect(try UpgradeOptions.batchSize("100%", workers: 4) == 4)
        for bad in ["0", "-1", "x", "0%", "150%", ""] {
            #expect(throws: OperationError.self) { try UpgradeOptions.batchSize(bad, workers: 4) }
        }
    }

    @Test func theNodeInFlightIsTheNodeOfTheFirstFailedStep() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("upgrade-journal-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let journal = try Journal(stateDirectory: dir)
        let op = try journal.beginOperation(kind: UpgradeOperation.kind, cluster: "lab")
        let t0 = Date()
        try journal.record([
            StepTransition(operation: op.id, step: "health/cp-1", node: "cp-1", state: .done, time: t0),
            StepTransition(operation: op.id, step: "drain/w-1", node: "w-1", state: .done, time: t0 + 1),
            StepTransition(operation: op.id, step: "health/w-1", node: "w-1", state: .failed, time: t0 + 2),
            StepTransition(operation: op.id, step: "record", node: nil, state: .skipped, time: t0 + 3),
        ])
        #expect(try UpgradeOperation.nodeInFlight(journal, operation: op.id) == "w-1")
        let clean = try journal.beginOperation(kind: UpgradeOperation.kind, cluster: "lab")
        try journal.record(
            StepTransition(operation: clean.id, step: "health/cp-1", node: "cp-1", state: .done, time: t0))
        #expect(try UpgradeOperation.nodeInFlight(journal, operation: clean.id) == nil)
    }
}
