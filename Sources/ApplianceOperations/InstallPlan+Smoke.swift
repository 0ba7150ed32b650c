import ApplianceCluster
import ApplianceModel
import AppliancePlan
import AppliancePlatform
import Foundation

/// `smoke/<name>`: the platform's smoke tests (`AppliancePlatform.SmokeTests`), after the platform steps, one
/// at a time (the scheduler's tests share the smoke queues), each run by `SmokeRunner` with kubectl on the
/// first control plane.
///
/// Only for sites with `spec.platform`, and a test only when the plan deploys the release it exercises
/// (`platform/<release>`). Each depends on the platform steps present in the plan (`platform-check`, every
/// `platform/<release>`, `platform-queues`), the GPU gates and the previous smoke test. A smoke test has no state
/// to check, so a re-run or a resume runs it again. A failure names the test, the pod and why, keeps the pods,
/// logs and events under `<state>/operations/<operation>/smoke/<name>/`, and fails the step like any node
/// command (`ClusterError.node` on the first control plane).
extension InstallPlan {
    static func smoke(_ name: String) -> String { "smoke/\(name)" }
    /// A smoke test's step: it has no check (it runs on every install, like the preflight gate) and
    /// leaves nothing behind, so it does not count as a change.
    static func isSmokeStep(_ name: String) -> Bool { name.hasPrefix("smoke/") }

    static func smokeSteps(_ c: InstallContext, existing: [Step]) -> [Step] {
        guard c.site.platform != nil, let cp1 = c.firstControlPlane,
            let config = try? PlatformConfiguration.resolve(site: c.site, profile: c.profile)
        else { return [] }
        let kubectl = SmokeRunner.kubectl(on: c.runner(cp1))
        let state = c.session.stateDirectory
        let order = smokeOrder(SmokeTests.all(config), existing: existing.map(\.name))
        var steps: [Step] = []
        for (i, (test, deps)) in order.enumerated() {
            let last = i == order.count - 1
            steps.append(
                Step(
                    smoke(test.name), on: .cluster, after: deps, summary: "smoke test: \(test.summary)",
                    timeout: .seconds(test.timeoutSeconds + 180),
                    apply: { ctx in
                        let evidence = state.appendingPathComponent("operations/\(ctx.operation)/smoke/\(test.name)")
                        let runner = SmokeRunner(kubectl: kubectl, evidenceDirectory: evidence)
                        do {
                            ctx.appendOutput(try await runner.run(test))
                        } catch let failure as SmokeRunner.Failure {
                            throw ClusterError.node(node: cp1.name, reason: failure.description)
                        }
                        if last {
                            _ = try? await kubectl(
                                ["delete", "namespace", SmokeTests.namespace, "--ignore-not-found", "--wait=false"],
                                nil,
                                "kubectl delete namespace \(SmokeTests.namespace)")
                        }
                    }))
        }
        return steps
    }

    /// The tests the plan runs (those whose release it deploys), in order, each with its dependencies: the
    /// platform steps present, the GPU gates (scheduler tests) and the previous smoke test.
    static func smokeOrder(_ tests: [SmokeTest], existing: [String]) -> [(test: SmokeTest, after: [String])] {
        let names = Set(existing)
        let platformSteps = existing.filter {
            $0 == platformCheckStep || $0 == platformQueuesStep || $0.hasPrefix("platform/")
        }
        let gates = existing.filter { $0.hasPrefix("gpu-validate/") }
        var out: [(SmokeTest, [String])] = []
        for test in tests where names.contains(platformRelease(test.release)) {
            let previous = out.last.map { [smoke($0.0.name)] } ?? []
            out.append((test, platformSteps + (SmokeRunner.usesScheduler(test) ? gates : []) + previous))
        }
        return out
    }
}
