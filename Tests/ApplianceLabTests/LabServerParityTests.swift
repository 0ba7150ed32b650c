import ApplianceBundle
import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

/// The lab bundle's real Debian packages, built from `bundles/lab.yaml` (its runtime, registry and
/// load-balancer components, with their dependency closure, and the pause image) through the real builder:
/// the stand-in packages are left out so that this needs no static stand-in binary.
struct LabBundlePart {
    let path: String
    let manifest: BundleManifest

    static let built: Result<LabBundlePart, StandInSetupFailure> = {
        do {
            let specPath = packageRoot + "/bundles/lab.yaml"
            var spec = try BundleSpec.load(path: specPath)
            let keep = ["runtime", "registry", "load-balancer", "images"]
            spec.components = spec.components.filter { keep.contains($0.name) }
            for i in spec.components.indices where spec.components[i].name == "images" {
                spec.components[i].artifacts = spec.components[i].artifacts.filter { $0.name == "pause-image" }
            }
            let bundle = LabBundle(
                specPath: specPath, labnode: "", debCacheDirectory: StateDirectory.path() + "/cache/debs",
                logger: Logger(label: "lab-test"))
            let k8s = String(spec.kubernetesVersion.dropFirst())
            _ = try LabBundle.images(
                into: bundle.inputsDirectory + "/images", kubernetesVersion: k8s,
                debCacheDirectory: bundle.debCacheDirectory,
                scratch: bundle.inputsDirectory + "/.catatonit-test-\(getpid())")
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("lab-part-\(getpid()).tar").path
            let result = try BundleBuilder(spec: spec, signingKey: nil, debCacheDirectory: bundle.debCacheDirectory)
                .build(output: out)
            return .success(LabBundlePart(path: out, manifest: result.manifest))
        } catch { return .failure(.init(description: "\(error)")) }
    }()

    /// Writes the blobs of a component's artifacts to `directory` as NAME.deb (or NAME.tar); returns the paths.
    func extract(component: String, into directory: String) throws -> [String] {
        let archive = try BundleArchive.open(path)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let c = try #require(manifest.components.first { $0.name == component }, "no component \(component)")
        var paths: [String] = []
        for a in c.artifacts {
            let file = "\(directory)/\(a.name).\(a.kind == .deb ? "deb" : "tar")"
            FileManager.default.createFile(atPath: file, contents: nil)
            let handle = try #require(FileHandle(forWritingAtPath: file))
            try archive.streamBlob(a.sha256) { chunk in handle.write(Data(chunk)) }
            try handle.close()
            paths.append(file)
        }
        return paths
    }
}

extension RealLabSuites {
    /// What a real server has that the installer relies on, proven on lab nodes with the lab bundle's real
    /// Debian packages: containerd + runc run a container, a registry on one node serves another through a
    /// hosts.toml mirror, keepalived's virtual IP moves when its holder dies, modprobe and the bridge sysctls work.
    @Suite("lab nodes as servers (issue 11)", .tags(.lab), .serialized)
    struct LabServerParityTests {
        @Test(
            "containerd and runc from the bundle run in a node; it pulls the pause image from a registry on another node; the VIP moves",
            .enabled(if: labSkipReason() == nil, "\(labSkipReason() ?? "")"),
            .enabled(if: HostCommand.which("skopeo") != nil, "skopeo is not installed (scripts/bootstrap)"))
        func runtimeRegistryAndVIP() throws {
            let part = try LabBundlePart.built.get()
            // The closure recorded where every package came from.
            let all = part.manifest.allArtifacts.map(\.artifact)
            let resolved = all.filter { $0.provenance("resolvedFrom") != nil }
            #expect(!resolved.isEmpty, "the lab's packages need something beyond the node's base")
            for a in resolved {
                #expect(a.kind == .deb && a.provenance("requiredBy") != nil && a.os == ["debian-12"], "\(a.name)")
            }
            #expect(all.first { $0.name == "containerd" }?.provenance("closure") != nil)

            let lab = try StandInLab(id: "e1", subnet: "10.77.131", profile: "lab", nodes: 2, controlPlanes: 2)
            defer { lab.down() }
            let registry = try lab.address("cp-2")
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("lab-e1-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: scratch) }

            // 1. Packages from the bundle, installed with apt from a local directory (apt resolves the order).
            let runtime = try part.extract(component: "runtime", into: "\(scratch)/cp-1")
            let lb = try part.extract(component: "load-balancer", into: "\(scratch)/lb")
            let reg = try part.extract(component: "registry", into: "\(scratch)/cp-2")
            for (node, files) in [("cp-1", runtime + lb), ("cp-2", reg + lb)] {
                try lab.ssh.copy(files, address: try lab.address(node), to: "/var/lib/appliance")
                // (not --no-download: with it apt 2.6 fails on the upgraded base package perl-base, "Internal
                // Error, Pathname to install is not absolute"; the empty source list keeps apt offline anyway)
                let names = files.map { "./" + ($0 as NSString).lastPathComponent }
                try lab.ok(
                    node,
                    // Only the bundle's packages: a node's apt lists name deb.debian.org, and apt would rather
                    // download an identical version from there (unreachable) than take the local file.
                    "cd /var/lib/appliance && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                        + "-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/nonexistent "
                        + names.joined(separator: " "))
            }

            // 2. What install's OS preparation does, as on a server: modules and bridge sysctls.
            try lab.ok("cp-1", "modprobe overlay && modprobe br_netfilter")
            try lab.ok(
                "cp-1",
                "sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=1"
            )
            let values = try lab.ok(
                "cp-1", "cat /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/ipv4/ip_forward")
            #expect(values.split(separator: "\n") == ["1", "1"], "\(values)")

            // 3. containerd runs (the package starts it).
            #expect(lab.eventually(30) { (try? lab.run("cp-1", "ctr version"))?.status == 0 })
            try lab.ok("cp-1", "systemctl is-active containerd")

            // 4. The registry on cp-2 with a test config, reachable on the lab bridge.
            try lab.write(
                "cp-2", "/etc/docker/registry/config.yml",
                """
                version: 0.1
                storage:
                  filesystem:
                    rootdirectory: /var/lib/docker-registry
                  delete:
                    enabled: true
                http:
                  addr: :5000
                """)
            try lab.ok("cp-2", "systemctl restart docker-registry")
            #expect(
                lab.eventually(30) {
                    (try? HostCommand.run("curl", ["-sf", "http://\(registry):5000/v2/"], check: false))?.status == 0
                }, "the registry answers on the lab bridge")

            // 5. The pause image the bundle was built from (the bundle stores its blobs under the same digests),
            // pushed with skopeo from the admin side.
            let layout = packageRoot + "/bundles/lab/generated/images/pause"
            let pause = try #require(part.manifest.images.first { $0.reference == "registry.k8s.io/pause:3.10.1" })
            let index = try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json")))
                    as? [String: Any])
            let digest = try #require((index["manifests"] as? [[String: Any]])?.first?["digest"] as? String)
            #expect(digest == "sha256:\(pause.manifestDigest.hex)")
            try HostCommand.run(
                "skopeo",
                [
                    "copy", "--dest-tls-verify=false", "oci:\(layout):registry.k8s.io/pause:3.10.1",
                    "docker://\(registry):5000/pause:3.10.1",
                ])

            // 6. Pulled by cp-1 directly, and by its upstream name through a hosts.toml mirror.
            let direct = try lab.ok("cp-1", "ctr -n k8s.io images pull --plain-http \(registry):5000/pause:3.10.1")
            #expect(direct.contains("done") || direct.contains("unpacking"), "\(direct)")
            try lab.ok("cp-1", "mkdir -p /etc/containerd/certs.d/registry.k8s.io")
            try lab.write(
                "cp-1", "/etc/containerd/certs.d/registry.k8s.io/hosts.toml",
                """
                server = "https://registry.k8s.io"

                [host."http://\(registry):5000"]
                  capabilities = ["pull", "resolve"]
                """)
            try lab.ok(
                "cp-1", "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d registry.k8s.io/pause:3.10.1")
            let images = try lab.ok("cp-1", "ctr -n k8s.io images ls")
            #expect(images.contains("registry.k8s.io/pause:3.10.1") && images.contains(digest), "\(images)")

            // 7. runc runs it: a real pause process in a container, cgroups made by runc in the node.
            try lab.ok("cp-1", "ctr -n k8s.io run -d registry.k8s.io/pause:3.10.1 lab-pause")
            #expect(
                lab.eventually(20) {
                    (try? lab.run("cp-1", "ctr -n k8s.io tasks ls"))?.stdout.contains("RUNNING") == true
                })
            try lab.ok(
                "cp-1",
                "ctr -n k8s.io tasks kill -s SIGKILL lab-pause; sleep 1; ctr -n k8s.io tasks rm -f lab-pause; ctr -n k8s.io containers rm lab-pause"
            )

            // Nodes see the host's cgroup v1 controller roots (see LabNode+Server.swift): runc removed the
            // container's cgroup, its empty `k8s.io` parent is removed here (rmdir removes only empty ones).
            for h in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
                rmdir("/sys/fs/cgroup/\(h)/k8s.io")
            }

            // 8. keepalived's VIP on the lab bridge: held by cp-1, moves to cp-2 when cp-1 loses power.
            let vip = lab.lab.config.virtualIP
            for (node, priority) in [("cp-1", 150), ("cp-2", 100)] {
                try lab.write(
                    node, "/etc/keepalived/keepalived.conf",
                    """
                    vrrp_instance lab_api {
                      state BACKUP
                      interface eth0
                      virtual_router_id 61
                      priority \(priority)
                      advert_int 1
                      virtual_ipaddress {
                        \(vip)/24
                      }
                    }
                    """)
                try lab.ok(node, "systemctl restart keepalived")
            }
            func holds(_ node: String) -> Bool {
                (try? lab.run(node, "ip -4 -o addr show dev eth0"))?.stdout.contains(" \(vip)/") == true
            }
            #expect(lab.eventually(20) { holds("cp-1") }, "cp-1 (priority 150) takes the VIP")
            #expect(!holds("cp-2"))
            _ = try lab.lab.fault(node: "cp-1", kind: .powerOff)
            #expect(lab.eventually(20) { holds("cp-2") }, "cp-2 takes the VIP when cp-1 is off")
            // and the admin side reaches cp-2's registry through the VIP
            #expect(
                lab.eventually(20) {
                    (try? HostCommand.run("curl", ["-sf", "-m", "2", "http://\(vip):5000/v2/"], check: false))?.status
                        == 0
                })
        }
    }
}
