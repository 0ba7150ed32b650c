import ApplianceModel
import Foundation
import Testing
import Yams

@testable import AppliancePlatform

/// Helm ignores unknown keys silently: every key path the product renders must exist in the real chart's
/// `values.yaml` (`../shared/reference/charts/<chart>-<version>/`, subcharts under `charts/`).
@Suite struct ChartKeyTests {
    /// Keys whose content Kubernetes defines, not the chart (it passes them to the pod spec as they are).
    static let kubernetesTyped: Set<String> = ["affinity", "resources", "nodeSelector", "tolerations"]

    /// The chart's values, and its subcharts' under their names.
    struct ChartValues {
        var root: Any
        var subcharts: [String: Any]

        static func load(_ chart: ChartReference) throws -> ChartValues? {
            guard let base = Fixtures.chartsDirectory?.appendingPathComponent(chart.referenceDirectory) else {
                return nil
            }
            func read(_ url: URL) throws -> Any {
                try Yams.load(yaml: String(contentsOf: url, encoding: .utf8)) ?? [String: Any]()
            }
            let root = try read(base.appendingPathComponent("values.yaml"))
            var subs: [String: Any] = [:]
            let chartsDir = base.appendingPathComponent("charts")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: chartsDir.path)) ?? [] {
                let v = chartsDir.appendingPathComponent(name).appendingPathComponent("values.yaml")
                if FileManager.default.fileExists(atPath: v.path) { subs[name] = try read(v) }
            }
            return ChartValues(root: root, subcharts: subs)
        }
    }

    /// The rendered key paths that the chart does not have.
    static func unknownPaths(_ rendered: YAMLTree, chart: ChartValues) -> [String] {
        var out: [String] = []
        func walk(_ t: YAMLTree, _ candidates: [Any?], _ path: String) {
            guard case .map(let pairs) = t else { return }
            for (k, v) in pairs {
                let p = path.isEmpty ? k : "\(path).\(k)"
                let next: [Any?] = candidates.map { ($0 as? [String: Any])?[k] }
                let present =
                    next.contains { $0 != nil }
                    || candidates.contains { (($0 as? [String: Any])?.keys.contains(k)) ?? false }
                if !present {
                    out.append(p)
                    continue
                }
                // Inside an empty map of the chart, or a Kubernetes-typed value, the keys are the user's.
                let freeForm = next.contains { ($0 as? [String: Any])?.isEmpty ?? false } || kubernetesTyped.contains(k)
                if freeForm { continue }
                if case .map = v { walk(v, next, p) }
            }
        }
        guard case .map(let pairs) = rendered else { return [] }
        for (k, v) in pairs {
            var candidates: [Any?] = [(chart.root as? [String: Any])?[k]]
            if let sub = chart.subcharts[k] { candidates.append(sub) }
            let present = ((chart.root as? [String: Any])?.keys.contains(k) ?? false) || chart.subcharts[k] != nil
            if !present {
                out.append(k)
                continue
            }
            if kubernetesTyped.contains(k) || candidates.contains(where: { ($0 as? [String: Any])?.isEmpty ?? false }) {
                continue
            }
            walk(v, candidates, k)
        }
        return out
    }

    @Test(arguments: ["hpc-8xa100", "lab", "cost-4xpcie"])
    func everyRenderedKeyExistsInTheRealChart(profileName: String) throws {
        guard Fixtures.chartsDirectory != nil else {
            print("skipped: ../shared/reference/charts is not on this machine")
            return
        }
        let profile = try Fixtures.profile(profileName)
        var c = try PlatformConfiguration.resolve(site: Fixtures.site(), profile: profile)
        for mode in HardwareProfile.GPUStackMode.allCases {
            c.gpuStackMode = mode
            c.migStrategy = "single"
            for r in PlatformValues.releases(c) {
                let chart = try #require(
                    try ChartValues.load(r.chart), "no reference chart \(r.chart.referenceDirectory)")
                let unknown = Self.unknownPaths(r.values, chart: chart)
                #expect(
                    unknown.isEmpty,
                    "\(r.name) (\(r.chart.referenceDirectory)) renders keys its values.yaml lacks: \(unknown)")
            }
        }
    }

    /// The check catches a key the chart does not have, at any depth, and one under a subchart.
    @Test func theCheckCatchesUnknownKeys() throws {
        guard Fixtures.chartsDirectory != nil else { return }
        let chart = try #require(try ChartValues.load(.kubePrometheusStack))
        let bad: YAMLTree = .map([
            ("prometheus", .map([("prometheusSpec", .map([("retentoin", .string("15d"))]))])),
            ("grafana", .map([("imagee", .string("x"))])),
            ("grafana2", .map([])),
            ("prometheusOperator", .map([("resources", .map([("requests", .map([("cpu", .string("1"))]))]))])),
        ])
        #expect(
            Self.unknownPaths(bad, chart: chart).sorted() == [
                "grafana.imagee", "grafana2", "prometheus.prometheusSpec.retentoin",
            ])
    }
}
