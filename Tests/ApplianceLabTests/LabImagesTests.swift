import ApplianceBundle
import ApplianceModel
import Foundation
import Testing

@testable import ApplianceLab

/// Issue 11: the lab's OCI images are real, reproducible image layouts; the lab's site file names a free VIP
/// and carries its preflight waivers with reasons.
@Suite struct LabImagesTests {
    /// Debian's catatonit when installed, else any static-enough executable: the layout is what is tested here.
    var binary: String {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/catatonit") ? "/usr/bin/catatonit" : "/bin/true"
    }

    func tree(_ dir: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        for rel in FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? [] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(dir)/\(rel)", isDirectory: &isDir), !isDir.boolValue {
                out[rel] = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(rel)"))
            }
        }
        return out
    }

    func json(_ data: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test(
        "every image is an OCI layout whose blobs match their digests, with upstream names; two builds are byte-identical"
    )
    func layouts() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("lab-images-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: base) }
        let images = LabImages(catatonit: binary, catatonitSource: "catatonit test", kubernetesVersion: "1.34.3")
        let first = try images.build(into: base + "/a")
        Thread.sleep(forTimeInterval: 1.1)  // a time stamp leaking into the bytes would now differ
        let second = try images.build(into: base + "/b")
        #expect(first.map(\.manifestDigest) == second.map(\.manifestDigest))
        #expect(try tree(base + "/a") == tree(base + "/b"))
        #expect(
            first.map(\.image.reference).prefix(9) == [
                "registry.k8s.io/pause:3.10.1", "registry.k8s.io/kube-apiserver:v1.34.3",
                "registry.k8s.io/kube-controller-manager:v1.34.3", "registry.k8s.io/kube-scheduler:v1.34.3",
                "registry.k8s.io/kube-proxy:v1.34.3", "registry.k8s.io/etcd:3.6.4-0",
                "registry.k8s.io/coredns/coredns:v1.12.1", "ghcr.io/flannel-io/flannel:v0.28.9",
                "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
            ])
        #expect(
            first.count == 9 + LabImages.platformImages.count + LabImages.operatorImages.count
                + LabImages.smokeImages.count)
        #expect(Set(first.map(\.image.directory)).count == first.count)
        for b in first {
            let blobs = b.path + "/blobs/sha256/"
            func blob(_ digest: String) throws -> Data {
                let data = try Data(contentsOf: URL(fileURLWithPath: blobs + digest.dropFirst(7)))
                #expect("sha256:" + SHA256Hasher.hash(data).hex == digest, "\(b.image.reference): \(digest)")
                return data
            }
            let layout = try json(Data(contentsOf: URL(fileURLWithPath: b.path + "/oci-layout")))
            #expect(layout["imageLayoutVersion"] as? String == "1.0.0")
            let index = try json(Data(contentsOf: URL(fileURLWithPath: b.path + "/index.json")))
            let entry = try #require((index["manifests"] as? [[String: Any]])?.first)
            #expect(entry["digest"] as? String == b.manifestDigest)
            #expect(
                (entry["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == b.image.reference)
            let manifest = try json(try blob(b.manifestDigest))
            #expect(manifest["mediaType"] as? String == "application/vnd.oci.image.manifest.v1+json")
            let configRef = try #require(manifest["config"] as? [String: Any])
            let config = try json(try blob(try #require(configRef["digest"] as? String)))
            let layer = try #require((manifest["layers"] as? [[String: Any]])?.first)
            let layerData = try blob(try #require(layer["digest"] as? String))
            #expect(layer["size"] as? Int == layerData.count)
            // gzip -n: no name, mtime 0 in the header
            #expect(layerData.prefix(2) == Data([0x1f, 0x8b]) && layerData[3] & 0x08 == 0)
            #expect(layerData[4..<8] == Data([0, 0, 0, 0]))
            // diff_id is the digest of the uncompressed tar, which holds usr/bin/catatonit owned by 0:0
            let tmp = base + "/layer.tar.gz"
            try layerData.write(to: URL(fileURLWithPath: tmp))
            let tar = try HostCommand.run("/bin/sh", ["-c", "gzip -dc '\(tmp)' | sha256sum | cut -d' ' -f1"]).stdout
            let rootfs = try #require(config["rootfs"] as? [String: Any])
            #expect(
                (rootfs["diff_ids"] as? [String]) == ["sha256:" + tar.trimmingCharacters(in: .whitespacesAndNewlines)])
            let listing = try HostCommand.run("tar", ["--numeric-owner", "-tvzf", tmp]).stdout
            #expect(listing.contains("0/0") && listing.contains("usr/bin/catatonit") && !listing.contains("1000/"))
            let entrypoint = (config["config"] as? [String: Any])?["Entrypoint"] as? [String]
            #expect(entrypoint == ["/usr/bin/catatonit", "-P"])
        }
    }

    @Test("what a node gets to act as a server: the unit enabled before sysinit, files under usr/lib (merged /usr)")
    func serverParityFiles() throws {
        let files = LabServerParity.files()
        // Debian 12's /lib is a link to usr/lib: a lib/ directory in the node's upper layer would hide /lib/systemd
        #expect(files.allSatisfy { !$0.0.hasPrefix("lib/") && !$0.0.hasPrefix("/") }, "\(files.map(\.0))")
        let unit = try #require(files.first { $0.0 == "etc/systemd/system/appliance-lab-node.service" })
        let text = String(decoding: unit.1, as: UTF8.self)
        #expect(text.contains("Before=sysinit.target containerd.service") && text.contains("WantedBy=sysinit.target"))
        #expect(LabServerParity.enableLink.path == "etc/systemd/system/sysinit.target.wants/appliance-lab-node.service")
        let script = String(decoding: try #require(files.first { $0.0 == LabServerParity.scriptPath }).1, as: UTF8.self)
        #expect(script.contains("remount,bind,rw") && script.contains("/proc/sys/net"))
        if !LabServerParity.hostHasModules {
            let builtin = try #require(files.first { $0.0.hasSuffix("/modules.builtin") })
            #expect(builtin.0 == "usr/lib/modules/\(LabServerParity.kernelRelease)/modules.builtin")
            let names = String(decoding: builtin.1, as: UTF8.self)
            // this host's kernel: overlay in /proc/filesystems means it is built in, and it is listed
            if (try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8))?.contains("\toverlay") == true {
                #expect(names.contains("kernel/fs/overlayfs/overlay.ko"))
            }
            #expect(LabServerParity.nspawnArguments().isEmpty)
        } else {
            #expect(LabServerParity.nspawnArguments() == ["--bind-ro=/lib/modules/\(LabServerParity.kernelRelease)"])
        }
    }

    @Test("the lab's site file names the free virtual IP with several control planes, and carries its waivers")
    func siteFile() throws {
        let config = try LabConfig(id: "e9", subnet: "10.77.139", directory: "/nonexistent/lab-e9")
        let lab = Lab(config: config, logger: .init(label: "t"))
        func state(_ cps: Int) -> LabState {
            LabState(
                id: "e9", subnet: config.subnet, profile: "lab", phase: .running, createdAt: Date(), rootfs: "/r",
                adminNamespace: nil, adminAddress: config.adminAddress, linkRate: nil, adminLinkRate: nil,
                diskSizeMiB: 64,
                nodes: (1...3).map { i in
                    .init(
                        name: i <= cps ? "cp-\(i)" : "cpu-\(i)", index: i, address: config.nodeAddress(i),
                        roles: i <= cps ? [.controlPlane] : [.cpuWorker], hostKeyFingerprint: "SHA256:x", pid: nil,
                        faults: [])
                })
        }
        // Several control planes: keepalived's virtual IP, HAProxy on 8443 in front of every API server.
        #expect(lab.siteInventory(state(3)).network?.apiEndpoint == "10.77.139.250:8443")
        #expect(lab.siteInventory(state(3)).network?.endpoint?.mode == .virtualIP)
        #expect(lab.siteInventory(state(1)).network?.apiEndpoint == "10.77.139.11:6443")
        #expect(!(11...210).map(config.nodeAddress).contains(config.virtualIP))
        // written and read back by the site loader
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-site-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let site = lab.siteInventory(state(3))
        try site.yaml().write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        let back = try SiteInventory.load(path: dir + "/site.yaml")
        #expect(
            back.preflight.waivers.map(\.check) == ["hw.cpu", "hw.memory", "hw.disk", "os.release", "dns.wildcard"])
        #expect(back.preflight.waivers.allSatisfy { $0.node == nil && $0.reason.hasPrefix("lab") })
        #expect(back.network?.podCIDR == "10.244.0.0/16")
    }
}
