import ApplianceLab
import ApplianceModel
import AppliancePlatform
import Foundation
import Testing
import Yams

@testable import ApplianceLabNode

/// The lab charts (`bundles/lab/charts`) take the values the product renders for the real charts: every
/// release renders through the helm stand-in's template engine into workloads (or a CloudNativePG Cluster,
/// whose instances the operator places as the Cluster says) on the system nodes, with
/// images from the private registry that the lab bundle carries.
@Suite struct LabChartTests {
    static let chartsDirectory = Capture.repo + "/bundles/lab/charts"

    static func site() -> SiteInventory {
        let hosts = [
            SiteInventory.Host(name: "cp-1", address: "10.0.0.11", roles: [.controlPlane, .system]),
            SiteInventory.Host(name: "gpu-1", address: "10.0.0.31", roles: [.gpuWorker]),
        ]
        var site = SiteInventory(
            name: "lab", profile: nil, ssh: .init(), hosts: hosts,
            network: .init(domain: "ml.example.internal", apiEndpoint: "10.0.0.11:6443"))
        site.platform = .init(
            queues: [SiteInventory.Queue(name: "org", gpuQuota: 4, gpuLimit: -1, overQuotaWeight: 1, priority: 100)])
        site.storage = .init(nfsServer: "10.0.0.5", nfsPath: "/export/datasets")
        return site
    }

    static func chartDirectory(_ chart: ChartReference) -> String { chartsDirectory + "/" + chart.name }

    @Test(arguments: ["hpc-8xa100", "lab", "lab-operator"])
    func everyReleaseRendersWorkloadsOnSystemNodesWithBundledImages(profileName: String) throws {
        let profiles = ProfileCatalog(directory: Capture.repo + "/profiles")
        let profile = try profiles.load(profileName)
        let config = try PlatformConfiguration.resolve(site: Self.site(), profile: profile)
        let helm = Helm(context: LabNodeContext(environment: [:]))
        let bundled = Set(
            (LabImages.platformImages + LabImages.operatorImages).map {
                "\(config.registry)/\($0.repository):\($0.tag)"
            })
        // The precompiled driver's DaemonSet names the branch; the node's kernel picks the image (`<branch>-…`).
        let driverBranchImage = "\(config.registry)/\(PrecompiledDriver.repository):\(LabImages.operatorDriverBranch)"
        for r in PlatformValues.releases(config) {
            let chart = try helm.loadChart(Self.chartDirectory(r.chart))
            #expect(chart.name == r.chart.name && chart.version == r.chart.version, "\(r.name): Chart.yaml")
            let user = try #require(try Yams.load(yaml: r.valuesYAML) as? [String: Any])
            let values = K.mergePatch(chart.values, Kubectl.jsonSafe(user)) as? KObject ?? [:]
            let docs = try helm.render(chart, release: r.name, namespace: r.namespace, values: values)
            // A CloudNativePG Cluster is a workload too: the operator's instance pods get its image and placement.
            let workloads = docs.filter {
                ["Deployment", "DaemonSet", "StatefulSet"].contains($0["kind"] as? String)
                    || ($0["kind"] as? String == "Cluster" && $0["apiVersion"] as? String == "postgresql.cnpg.io/v1")
            }
            #expect(!workloads.isEmpty, "\(r.name) renders no workload")
            for w in workloads {
                var spec = K.get(w, "spec.template.spec") as? KObject ?? [:]
                if w["kind"] as? String == "Cluster" {
                    let affinity = K.get(w, "spec.affinity") as? KObject ?? [:]
                    spec = [
                        "containers": [["image": K.get(w, "spec.imageName") as? String ?? ""]],
                        "nodeSelector": affinity["nodeSelector"] ?? [:], "tolerations": affinity["tolerations"] ?? [],
                    ]
                }
                for c in spec["containers"] as? [KObject] ?? [] {
                    let image = c["image"] as? String ?? ""
                    if image == driverBranchImage {
                        #expect(bundled.contains { $0.hasPrefix(driverBranchImage + "-") }, "\(image)")
                        continue
                    }
                    #expect(bundled.contains(image), "\(r.name) \(K.name(w)): image \(image) is not in the lab bundle")
                }
                guard w["kind"] as? String != "DaemonSet" else { continue }
                // Pinned to system nodes: the system label by selector or required node affinity.
                let selector = spec["nodeSelector"] as? [String: String] ?? [:]
                let affinity = K.json(spec["affinity"] ?? [:])
                #expect(
                    selector[config.placement.labelKey] == config.placement.labelValue
                        || String(decoding: affinity, as: UTF8.self).contains(config.placement.labelKey),
                    "\(r.name) \(K.name(w)) is not placed on system nodes: \(spec)")
                #expect(
                    (spec["tolerations"] as? [KObject] ?? []).contains {
                        $0["key"] as? String == config.placement.labelKey
                    },
                    "\(r.name) \(K.name(w)) does not tolerate the system taint")
                // The system node is also the control plane here: kubeadm's taint is tolerated too.
                #expect(
                    (spec["tolerations"] as? [KObject] ?? []).contains {
                        $0["key"] as? String == "node-role.kubernetes.io/control-plane"
                    }, "\(r.name) \(K.name(w)) does not tolerate the control-plane taint")
            }
        }
    }

    /// Every key of a lab chart's values.yaml is a key of the real chart's (subcharts under their names), so
    /// the lab chart takes exactly the real chart's keys.
    @Test func labChartKeysAreRealChartKeys() throws {
        let reference = ["/work/shared/reference/charts", Capture.repo + "/../shared/reference/charts"].first {
            FileManager.default.fileExists(atPath: $0)
        }
        guard let reference else { return }
        let refs: [ChartReference] = [
            .kubePrometheusStack, .gpuOperator, .kaiScheduler, .cloudnativePG, .cnpgCluster, .csiDriverNFS, .seaweedfs,
            .haproxyIngress,
        ]
        for ref in refs {
            let lab = try #require(
                try Yams.load(yaml: String(contentsOfFile: Self.chartDirectory(ref) + "/values.yaml", encoding: .utf8))
                    as? [String: Any])
            let base = reference + "/" + ref.referenceDirectory
            let real =
                try Yams.load(yaml: String(contentsOfFile: base + "/values.yaml", encoding: .utf8)) as? [String: Any]
                ?? [:]
            var subs: [String: Any] = [:]
            for name in (try? FileManager.default.contentsOfDirectory(atPath: base + "/charts")) ?? [] {
                if let t = try? String(contentsOfFile: base + "/charts/\(name)/values.yaml", encoding: .utf8) {
                    subs[name] = try Yams.load(yaml: t)
                }
            }
            var unknown: [String] = []
            func walk(_ v: [String: Any], _ candidates: [[String: Any]], _ path: String) {
                for (k, child) in v {
                    let p = path.isEmpty ? k : "\(path).\(k)"
                    let next = candidates.compactMap { $0[k] }
                    guard !next.isEmpty || candidates.contains(where: { $0.keys.contains(k) }) else {
                        unknown.append(p)
                        continue
                    }
                    if let m = child as? [String: Any],
                        !["resources", "nodeSelector", "tolerations", "affinity"].contains(k)
                    {
                        walk(m, next.compactMap { $0 as? [String: Any] }, p)
                    }
                }
            }
            for (k, child) in lab {
                var candidates: [[String: Any]] = []
                if let m = real[k] as? [String: Any] { candidates.append(m) }
                if let s = subs[k] as? [String: Any] { candidates.append(s) }
                guard real.keys.contains(k) || subs[k] != nil else {
                    unknown.append(k)
                    continue
                }
                if let m = child as? [String: Any] { walk(m, candidates, k) }
            }
            #expect(unknown.isEmpty, "lab chart \(ref.name): keys the real chart lacks: \(unknown.sorted())")
        }
    }

    /// The object store's release as the product renders it: the S3 gateway's Service under the name the smoke
    /// test uses, the credentials Secret as a pre-install hook (generated once, kept by upgrades), and the filer
    /// pointed at that Secret's identities file, which the kubelet's S3 gateway reads.
    @Test func theObjectStoreRendersTheS3GatewayItsServiceAndItsCredentials() throws {
        let profile = try ProfileCatalog(directory: Capture.repo + "/profiles").load("lab")
        let config = try PlatformConfiguration.resolve(site: Self.site(), profile: profile)
        let helm = Helm(context: LabNodeContext(environment: [:]))
        let r = try #require(PlatformValues.releases(config).first { $0.name == "object-store" })
        let chart = try helm.loadChart(Self.chartDirectory(r.chart))
        let user = try #require(try Yams.load(yaml: r.valuesYAML) as? [String: Any])
        let values = K.mergePatch(chart.values, Kubectl.jsonSafe(user)) as? KObject ?? [:]
        let docs = try helm.render(chart, release: r.name, namespace: r.namespace, values: values)
        let service = try #require(docs.first { $0["kind"] as? String == "Service" && K.name($0) == "seaweedfs-s3" })
        #expect(
            K.get(service, "spec.selector") as? [String: String] == [
                "app.kubernetes.io/name": "seaweedfs", "app.kubernetes.io/component": "filer",
            ])
        #expect((K.get(service, "spec.ports") as? [KObject])?.first?["port"] as? Int == 8333)
        let secret = try #require(docs.first { $0["kind"] as? String == "Secret" })
        #expect(K.name(secret) == "seaweedfs-s3-secret")
        #expect(Helm.hookEvents(secret) == ["pre-install"])
        let data = try #require(secret["stringData"] as? [String: String])
        #expect(data["admin_access_key_id"]?.count == 16 && data["admin_secret_access_key"]?.count == 32)
        let identities = try S3Gateway.identities(config: Data((data["seaweedfs_s3_config"] ?? "").utf8))
        #expect(identities.map(\.name) == ["anvAdmin", "anvReadOnly"])
        #expect(identities.first?.accessKey == data["admin_access_key_id"])
        #expect(identities.first?.secretKey == data["admin_secret_access_key"])
        #expect(identities.last?.actions == ["Read"])

        let filer = try #require(docs.first { K.name($0) == "object-store-filer" })
        let pod: KObject = [
            "metadata": ["name": "object-store-filer-0", "namespace": "platform-s3"],
            "spec": K.get(filer, "spec.template.spec") as? KObject ?? [:],
        ]
        let container = try #require(S3GatewayPod.container(pod), "the filer is not an S3 gateway: \(pod)")
        #expect(S3GatewayPod.port(container) == 8333)
        let source = S3GatewayPod.configSource(pod, container)
        #expect(
            source??.secret == "seaweedfs-s3-secret" && source??.key == "seaweedfs_s3_config",
            "\(String(describing: source))")
    }

    /// The lab bundles carry every image the smoke tests run, so a lab install passes the bundle check that
    /// refuses a platform site's bundle without them.
    @Test func theLabImagesIncludeEverySmokeTestImage() {
        let lab = LabImages(catatonit: "", catatonitSource: "").images.map(\.reference)
        let problems = SmokeTests.images.filter { !lab.contains($0) }
        #expect(problems.isEmpty, "smoke test images the lab does not make: \(problems)")
    }

    @Test func theTemplateEngineRendersTheSubsetAndRefusesTheRest() throws {
        let t = try HelmTemplate(
            chartName: "c",
            sources: [
                ("_helpers.tpl", "{{- define \"x\" -}}name-{{ .n }}{{- end -}}"),
                (
                    "a.yaml",
                    """
                    a: {{ include "x" (dict "n" .Values.n) }}
                    {{- if .Values.on }}
                    b: {{ .Values.missing | default "d" | quote }}
                    {{- else }}
                    b: no
                    {{- end }}
                    c:
                      {{- toYaml .Values.m | nindent 2 }}
                    {{- range $i, $v := .Values.l }}
                    l{{ $i }}: {{ $v }}
                    {{- end }}
                    {{- with index .Values "k-k" }}
                    k: {{ . }}
                    {{- end }}
                    """
                ),
            ])
        let root: [String: Any] = [
            "Values": ["n": "v", "on": true, "m": ["z": 1, "a": ["p", "q"]], "l": ["u", "w"], "k-k": "kk"]
        ]
        #expect(
            try t.render(file: "a.yaml", root: root)
                == "a: name-v\nb: \"d\"\nc:\n  a:\n  - p\n  - q\n  z: 1\nl0: u\nl1: w\nk: kk")
        #expect(throws: HelmTemplate.Failure.self) {
            try HelmTemplate(chartName: "c", sources: [("x.yaml", "{{ upper .x }}")])
        }
        do {
            _ = try HelmTemplate(chartName: "c", sources: [("bad.yaml", "x: {{ .Values.n | upper }}")])
            Issue.record("upper was accepted")
        } catch {
            #expect(error.text == "Error: parse error at (c/templates/bad.yaml:1): function \"upper\" not defined")
        }
    }
}
