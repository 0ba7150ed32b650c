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
    static let platformCheckStep = "platform-check"
    static let platformQueuesStep = "platform-queues"
    static func platformRelease(_ release: String) -> String { "platform/\(release)" }

    static func smokeSteps(_ c: InstallContext, existing: [Step]) -> [Step] {
        guard c.site.platform != nil, let cp1 = c.firstControlPlane,
            let config = try? PlatformConfiguration.resolve(site: c.site, profile: c.profile)
        else { return [] }
        let names = Set(existing.map(\.name))
        let platformSteps = existing.map(\.name).filter {
            $0 == platformCheckStep || $0 == platformQueuesStep || $0.hasPrefix("platform/")
        }
        let gates = existing.map(\.name).filter { $0.hasPrefix("gpu-validate/") }
        let api = ClusterAPI(runner: c.runner(cp1))
        let state = c.session.stateDirectory
        let tests = SmokeTests.all(config).filter { names.contains(platformRelease($0.release)) }
        var steps: [Step] = []
        var previous: String?
        for (i, test) in tests.enumerated() {
            let last = i == tests.count - 1
            let deps = platformSteps + (SmokeRunner.usesScheduler(test) ? gates : []) + (previous.map { [$0] } ?? [])
            steps.append(
                Step(
                    smoke(test.name), on: .cluster, after: deps, summary: "smoke test: \(test.summary)",
                    timeout: .seconds(test.timeoutSeconds + 180),
                    apply: { ctx in
                        let evidence = state.appendingPathComponent("operations/\(ctx.operation)/smoke/\(test.name)")
                        let runner = SmokeRunner(api: api, evidenceDirectory: evidence)
                        do {
                            ctx.appendOutput(try await runner.run(test))
                        } catch let failure as SmokeRunner.Failure {
                            throw ClusterError.node(node: cp1.name, reason: failure.description)
                        }
                        if last {
                            _ = try? await api.runner.output(
                                "kubectl --kubeconfig=\(ClusterAPI.adminKubeconfig) delete namespace \(SmokeTests.namespace) --ignore-not-found --wait=false",
                                label: "kubectl delete namespace \(SmokeTests.namespace)", timeout: .seconds(60))
                        }
                    }))
            previous = smoke(test.name)
        }
        return steps
    }
}
