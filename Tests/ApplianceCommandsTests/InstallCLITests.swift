import Foundation
import Testing

/// `appliance install` refusing bad input before it touches any node: the site against the profile (positioned
/// errors), a bundle that does not fit. The hosts are loopback addresses where nothing listens: a refusal
/// that tried to connect would say so instead.
@Suite(.serialized) struct InstallCLITests {
    let dir = NSTemporaryDirectory() + "install-cli-" + UUID().uuidString

    init() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func site(controlPlanes: Int, podCIDR: String = "10.244.0.0/16", endpoint: String? = nil) -> String {
        var hosts = ""
        for i in 1...controlPlanes {
            hosts += "    - {name: cp-\(i), address: 127.0.77.\(i), roles: [control-plane]}\n"
        }
        hosts += "    - {name: cpu-1, address: 127.0.77.20, roles: [cpu-worker]}\n"
        return """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: refusals}
            spec:
              profile: lab
              ssh: {user: root, port: 1, connectTimeoutSeconds: 1}
              hosts:
            \(hosts)  network:
                domain: refusals.internal
                apiEndpoint: \(endpoint ?? "127.0.77.1:6443")
                podCIDR: \(podCIDR)
                serviceCIDR: 10.96.0.0/12

            """
    }

    func bundle(kubernetes: String) async throws -> (path: String, pub: String) {
        let keys = dir + "/keys"
        if !FileManager.default.fileExists(atPath: keys + "/appliance-signing.key") {
            _ = try await CLI.run(["bundle", "keygen", "--out", keys], state: dir)
        }
        try Data("motd\n".utf8).write(to: URL(fileURLWithPath: dir + "/motd"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: refusals}
        spec:
          version: 1.0.0
          kubernetes: {version: \(kubernetes)}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: motd, kind: file, source: {file: motd}}
        """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let out = dir + "/bundle-\(kubernetes).tar"
        let build = try await CLI.run(
            ["bundle", "build", "-f", dir + "/spec.yaml", "-o", out, "--key", keys + "/appliance-signing.key"],
            state: dir)
        #expect(build.status == 0, "\(build.stderr)")
        return (out, keys + "/appliance-signing.pub")
    }

    @Test func twoControlPlanesAreRefusedWithTheQuorumArithmeticAtTheirPosition() async throws {
        let path = dir + "/two.yaml"
        try site(controlPlanes: 2, endpoint: "127.0.77.100:6443").write(toFile: path, atomically: true, encoding: .utf8)
        let b = try await bundle(kubernetes: "v1.34.3")
        let r = try await CLI.run(["install", "-i", path, "--bundle", b.path, "--trust", b.pub], state: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("\(path):"), "\(r.stderr)")
        #expect(r.stderr.contains("quorum of 2 of 2"), "\(r.stderr)")
        #expect(!r.stderr.contains("connect"), "it tried to reach a node: \(r.stderr)")
        // Nothing was started: no operation in the journal.
        let history = try await CLI.run(["history", "-i", path], state: dir)
        #expect(history.stdout.contains("no operations recorded"), "\(history.stdout)")
    }

    @Test func overlappingPodAndServiceNetworksAreRefused() async throws {
        let path = dir + "/overlap.yaml"
        try site(controlPlanes: 1, podCIDR: "10.96.0.0/16").write(toFile: path, atomically: true, encoding: .utf8)
        let b = try await bundle(kubernetes: "v1.34.3")
        let r = try await CLI.run(["install", "-i", path, "--bundle", b.path, "--trust", b.pub], state: dir)
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("10.96.0.0/16") && r.stderr.contains("10.96.0.0/12"), "\(r.stderr)")
    }

    @Test func aBundleOfAnotherKubernetesVersionOrWithoutThePackagesIsRefused() async throws {
        let path = dir + "/ok.yaml"
        try site(controlPlanes: 1).write(toFile: path, atomically: true, encoding: .utf8)
        let b = try await bundle(kubernetes: "v1.33.2")
        let r = try await CLI.run(["install", "-i", path, "--bundle", b.path, "--trust", b.pub], state: dir)
        #expect(r.status == 7, "\(r.stderr)")
        #expect(r.stderr.contains("installs Kubernetes v1.33.2, profile lab runs v1.34.3"), "\(r.stderr)")
        #expect(r.stderr.contains("needs packages the bundle lacks for it: kubeadm, kubelet"), "\(r.stderr)")
        #expect(r.stderr.contains("no CNI manifest"), "\(r.stderr)")
        // --dry-run refuses the same way: the plan is only shown for an installable bundle.
        let dry = try await CLI.run(
            ["install", "-i", path, "--bundle", b.path, "--trust", b.pub, "--dry-run"], state: dir)
        #expect(dry.status == 7)
    }

    @Test func anUnsignedOrForeignBundleIsRefusedBeforeAnything() async throws {
        let path = dir + "/ok2.yaml"
        try site(controlPlanes: 1).write(toFile: path, atomically: true, encoding: .utf8)
        let b = try await bundle(kubernetes: "v1.34.3")
        _ = try await CLI.run(["bundle", "keygen", "--out", dir + "/other"], state: dir)
        let r = try await CLI.run(
            ["install", "-i", path, "--bundle", b.path, "--trust", dir + "/other/appliance-signing.pub"], state: dir)
        #expect(r.status == 7, "\(r.stderr)")
    }

    /// A Debian package of one control file (what `dpkg-deb -f` reads), for version-pin tests.
    func deb(_ name: String, _ version: String) throws -> String {
        let root = dir + "/debroot-\(name)"
        try FileManager.default.createDirectory(atPath: root + "/DEBIAN", withIntermediateDirectories: true)
        try
            "Package: \(name)\nVersion: \(version)\nArchitecture: amd64\nMaintainer: test <t@t.invalid>\nDescription: test\n"
            .write(toFile: root + "/DEBIAN/control", atomically: true, encoding: .utf8)
        let out = dir + "/\(name)_\(version).deb"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/dpkg-deb")
        p.arguments = ["--root-owner-group", "--build", root, out]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0)
        return out
    }

    @Test func aFabricManagerOfAnotherVersionThanTheDriverIsRefusedAtBuildAndAGPUNodeNeedsTheStack() async throws {
        let keys = dir + "/keys"
        _ = try await CLI.run(["bundle", "keygen", "--out", keys], state: dir)
        let driver = try deb("nvidia-driver", "535.161.08")
        let fm = try deb("nvidia-fabricmanager", "535.54.03-1")
        func spec(_ fabric: String) -> String {
            """
            apiVersion: appliance.dev/v1alpha1
            kind: BundleSpec
            metadata: {name: pins}
            spec:
              version: 1.0.0
              kubernetes: {version: v1.34.3}
              components:
                - name: nvidia-host
                  version: "535.161.08"
                  artifacts:
                    - {name: driver, kind: deb, roles: [gpu-worker], source: {debFile: \(driver)}}
                    - {name: fabricmanager, kind: deb, roles: [gpu-worker], source: {debFile: \(fabric)}}
            """
        }
        try spec(fm).write(toFile: dir + "/pins.yaml", atomically: true, encoding: .utf8)
        let refused = try await CLI.run(
            [
                "bundle", "build", "-f", dir + "/pins.yaml", "-o", dir + "/pins.tar", "--key",
                keys + "/appliance-signing.key",
            ],
            state: dir)
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("nvidia-fabricmanager 535.54.03-1"), "\(refused.stderr)")
        #expect(refused.stderr.contains("nvidia-driver 535.161.08"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/pins.tar"))

        // At the driver's version the bundle builds; a GPU node of a host-driver profile then also needs the
        // container toolkit, named before any node is touched.
        try spec(try deb("nvidia-fabricmanager", "535.161.08-1")).write(
            toFile: dir + "/pins.yaml", atomically: true, encoding: .utf8)
        let built = try await CLI.run(
            [
                "bundle", "build", "-f", dir + "/pins.yaml", "-o", dir + "/pins.tar", "--key",
                keys + "/appliance-signing.key",
            ],
            state: dir)
        #expect(built.status == 0, "\(built.stderr)")
        let gpuSite = site(controlPlanes: 1).replacingOccurrences(
            of: "    - {name: cpu-1, address: 127.0.77.20, roles: [cpu-worker]}\n",
            with: "    - {name: gpu-1, address: 127.0.77.21, roles: [gpu-worker]}\n")
        try gpuSite.write(toFile: dir + "/gpu.yaml", atomically: true, encoding: .utf8)
        let r = try await CLI.run(
            [
                "install", "-i", dir + "/gpu.yaml", "--bundle", dir + "/pins.tar", "--trust",
                keys + "/appliance-signing.pub",
            ],
            state: dir)
        #expect(r.status == 7, "\(r.stderr)")
        #expect(
            r.stderr.contains(
                "gpu-1 (gpu-worker, gpuStack.mode host-driver) needs what the bundle lacks for it: nvidia-container-toolkit"
            ), "\(r.stderr)")
    }
}
