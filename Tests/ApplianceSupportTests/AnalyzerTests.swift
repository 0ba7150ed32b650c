import ApplianceBundle
import Foundation
import Testing

@testable import ApplianceSupport

enum Fixture {
    static let repo: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let directory: String = {
        if let d = ProcessInfo.processInfo.environment["APPLIANCE_FIXTURES"] { return d }
        let candidates = [repo + "/../shared/fixtures/gpu", "/work/shared/fixtures/gpu"]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }()

    /// A real capture with its `# SOURCE:` first line stripped.
    static func text(_ name: String) throws -> String {
        let raw = try String(contentsOfFile: directory + "/" + name, encoding: .utf8)
        var lines = raw.split(separator: "\n", omittingEmptySubsequences: false)
        if let first = lines.first, first.hasPrefix("#") { lines.removeFirst() }
        return lines.joined(separator: "\n")
    }

    static func temporaryDirectory(_ name: String) throws -> String {
        let dir =
            FileManager.default.temporaryDirectory.path + "/\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Writes `files` (path -> text) and a manifest into a bundle with the product's archive writer.
    static func bundle(_ files: [String: String], manifest: SupportManifest, at path: String) throws {
        let w = try CompressedArchiveWriter(path: path, mtime: 0)
        try w.add(SupportManifest.fileName, data: try manifest.encoded())
        for (p, t) in files.sorted(by: { $0.key < $1.key }) { try w.add(p, data: Data(t.utf8)) }
        try w.close()
    }
}

@Suite("support-bundle analyze: findings from planted bundle contents")
struct AnalyzerTests {
    static let collected = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-18

    static func manifest(nodes: [SupportManifest.Node]) -> SupportManifest {
        SupportManifest(
            cluster: "site-a", applianceVersion: "0.1.0", createdAt: collected,
            since: collected.addingTimeInterval(-86400),
            gpuDiag: false, nodes: nodes, files: [], failures: [])
    }

    /// A GPU node's collector facts: the real HGX A100 lspci capture (6 NVSwitches), the fabric manager unit
    /// inactive, the fabric manager package at another version than the driver.
    static func facts(fmActive: String, fmVersion: String) throws -> String {
        let lspci = try Fixture.text("lspci-nn-grep-nvidia_hgx-a100-sxm4-80gb_8gpu-6nvswitch")
            .split(separator: "\n").filter { $0.contains("[10de:") }.joined(separator: "\n")
        return """
            @@appliance:begin meta
            1795000000
            gpu-1
            @@appliance:end meta 0
            @@appliance:begin services
            containerd active=active enabled=enabled
            kubelet active=active enabled=enabled
            nvidia-fabricmanager active=\(fmActive) enabled=enabled
            @@appliance:end services 0
            @@appliance:begin fabricmanager
            version=\(fmVersion)
            @@appliance:end fabricmanager 0
            @@appliance:begin lspci
            \(lspci)
            @@appliance:end lspci 0

            """
    }

    static func nodesJSON() -> String {
        """
        {
            "apiVersion": "v1",
            "items": [
                {
                    "metadata": {
                        "name": "cp-1",
                        "labels": {"node-role.kubernetes.io/control-plane": ""}
                    },
                    "spec": {},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                        "nodeInfo": {"kubeletVersion": "v1.34.3"}
                    }
                },
                {
                    "metadata": {
                        "name": "gpu-1",
                        "labels": {}
                    },
                    "spec": {"unschedulable": true},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                        "allocatable": {"nvidia.com/gpu": "7"},
                        "nodeInfo": {"kubeletVersion": "v1.34.3"}
                    }
                },
                {
                    "metadata": {
                        "name": "gpu-2",
                        "labels": {}
                    },
                    "spec": {},
                    "status": {
                        "conditions": [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}],
                        "nodeInfo": {"kubeletVersion": "v1.34.3"}
                    }
                }
            ],
            "kind": "List"
        }
        """
    }

    static func podsJSON() -> String {
        """
        {
            "items": [
                {
                    "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}},
                    "spec": {"nodeName": "gpu-1", "containers": [{"name": "c"}]},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
                },
                {
                    "metadata": {"name": "train-7", "namespace": "research", "labels": {}},
                    "spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
                    "status": {
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node affinity/selector."}]
                    }
                }
            ]
        }
        """
    }

    static func pdbsJSON() -> String {
        """
        {
            "items": [
                {
                    "metadata": {"name": "web-pdb", "namespace": "shop"},
                    "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "web"}}}
                },
                {
                    "metadata": {"name": "other", "namespace": "shop"},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}
                }
            ]
        }
        """
    }

    static let xidLines = """
        2026-11-18T09:01:02+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:10:00): 79, pid=0, GPU has fallen off the bus.
        2026-11-18T09:03:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:16:00): 48, pid=1234, name=python, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at physAddr 0x1b8000000.
        2026-11-18T09:04:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:49:00): 63, pid=1234, Row Remapper: New row marked for remapping, reset gpu to activate.
        2026-11-18T09:05:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:4d:00): 64, pid=1234, Row Remapper: Failed to remap a row.
        2026-11-18T09:06:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:8a:00): 94, pid=1234, Contained: SM (0x1). RST: No, D-RST: No
        2026-11-18T09:07:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:8f:00): 95, pid=1234, Uncontained: FBHUB. RST: Yes, D-RST: No
        2026-11-18T09:08:00+0000 gpu-1 kernel: NVRM: Xid (PCI:0000:c6:00): 13, pid=1234, Graphics SM Warp Exception
        """

    static let certificates = """
        $ kubeadm certs check-expiration
        CERTIFICATE                EXPIRES                  RESIDUAL TIME   CERTIFICATE AUTHORITY   EXTERNALLY MANAGED
        admin.conf                 Nov 28, 2026 10:00 UTC   9d              ca                      no
        apiserver                  Nov 18, 2027 10:00 UTC   364d            ca                      no

        == /etc/kubernetes/pki/apiserver-kubelet-client.crt
        subject=CN = kube-apiserver-kubelet-client, O = kubeadm:cluster-admins
        notAfter=Nov 10 08:00:00 2026 GMT
        == /etc/kubernetes/pki/ca.crt
        subject=CN = kubernetes
        notAfter=Nov 15 08:00:00 2036 GMT
        """

    static let etcd = """
        $ etcdctl member list
        +------------------+---------+------+-----------------------+-----------------------+------------+
        |        ID        | STATUS  | NAME |      PEER ADDRS       |     CLIENT ADDRS      | IS LEARNER |
        +------------------+---------+------+-----------------------+-----------------------+------------+
        | 2f1c2a8bd8a3e1f0 | started | cp-1 | http://10.0.0.11:2380 | http://10.0.0.11:2379 |      false |
        | 8e9e05c52164694d | started | cp-2 | http://10.0.0.12:2380 | http://10.0.0.12:2379 |      false |
        +------------------+---------+------+-----------------------+-----------------------+------------+

        $ etcdctl endpoint health --cluster
        http://10.0.0.11:2379 is healthy: successfully committed proposal: took = 2.1ms
        http://10.0.0.12:2379 is unhealthy: failed to commit proposal: context deadline exceeded
        Error: unhealthy cluster
        """

    static let disk = """
        Filesystem     1024-blocks      Used Available Capacity Mounted on
        /dev/sda1        102400000  50000000  52400000      49% /
        tmpfs              1048576   1048576         0     100% /var/lib/appliance
        tmpfs              8000000        10   7999990       1% /run

        Filesystem      Inodes IUsed IFree IUse% Mounted on
        /dev/sda1      6400000 64000 6336000   1% /
        """

    func plantedBundle() throws -> SupportBundleContents {
        let dir = try Fixture.temporaryDirectory("analyze")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let nodes: [SupportManifest.Node] = [
            .init(name: "cp-1", address: "10.0.0.11", roles: ["control-plane"], reachable: true),
            .init(name: "gpu-1", address: "10.0.0.21", roles: ["gpu-worker"], reachable: true),
            .init(
                name: "gpu-2", address: "10.0.0.22", roles: ["gpu-worker"], reachable: false,
                error: "cannot connect to 10.0.0.22:22: no route to host"),
        ]
        // The real H100 `nvidia-smi -q` capture: driver 590.48.01; the fabric manager package is 535.
        let q = try Fixture.text("nvidia-smi-q_h100-80gb-hbm3_sxm5_single-vm")
        try Fixture.bundle(
            [
                "cluster/nodes.json": Self.nodesJSON(), "cluster/pods.json": Self.podsJSON(),
                "cluster/pdbs.json": Self.pdbsJSON(), "cluster/etcd.txt": Self.etcd,
                "nodes/gpu-1/facts.txt": try Self.facts(fmActive: "inactive", fmVersion: "535.54.03"),
                "nodes/gpu-1/nvidia-smi-q.txt": q, "nodes/gpu-1/kernel-xid.log": Self.xidLines,
                "nodes/gpu-1/disk.txt": Self.disk, "nodes/cp-1/certificates.txt": Self.certificates,
                "nodes/cp-1/journal/kubelet.log": "not read by the analyzers\n",
            ], manifest: Self.manifest(nodes: nodes), at: dir + "/b.tar.gz")
        return try SupportBundleContents.read(archive: dir + "/b.tar.gz")
    }

    @Test("each known problem is found once, with its stable id, evidence that points at the line, and a remedy")
    func findings() throws {
        let b = try plantedBundle()
        #expect(b["nodes/cp-1/journal/kubelet.log"] == nil, "journals are passed over, not loaded")
        let f = SupportAnalyzer.analyze(b)
        func one(_ id: String, _ subject: String) -> SupportFinding? {
            let m = f.filter { $0.id == id && $0.subject == subject }
            #expect(m.count == 1, "\(id) \(subject): \(m.count) findings in \(f.map { "\($0.id) \($0.subject)" })")
            return m.first
        }
        let unreachable = one("node.unreachable", "gpu-2")
        #expect(unreachable?.summary.contains("no route to host") == true)
        let notReady = one("node.not-ready", "gpu-2")
        #expect(notReady?.summary.contains("Kubelet stopped posting node status") == true)
        #expect(notReady?.summary.contains("did not answer SSH") == true)
        #expect(notReady?.evidence.first?.file == "cluster/nodes.json")
        #expect(notReady?.evidence.first?.line != nil)
        #expect(f.filter { $0.id == "node.not-ready" }.count == 1, "Ready nodes are not reported")

        for (code, severity) in [
            (79, "error"), (48, "error"), (63, "warning"), (64, "error"), (94, "warning"), (95, "error"), (13, "info"),
        ] {
            let x = one("gpu.xid", "gpu-1:xid-\(code)")
            #expect(x?.severity.rawValue == severity, "Xid \(code)")
            #expect(x?.evidence.first?.file == "nodes/gpu-1/kernel-xid.log")
            let expectedLine = Self.xidLines.split(separator: "\n").firstIndex { $0.contains("): \(code), ") }.map {
                $0 + 1
            }
            #expect(x?.evidence.first?.line == expectedLine, "Xid \(code)")
        }
        let fm = one("gpu.fabricmanager-stopped", "gpu-1")
        #expect(fm?.summary.contains("6 NVSwitches") == true, "\(fm?.summary ?? "")")
        let version = one("gpu.fabricmanager-version", "gpu-1")
        #expect(version?.summary.contains("535.54.03") == true && version?.summary.contains("590.48.01") == true)
        #expect(version?.evidence.first?.file == "nodes/gpu-1/nvidia-smi-q.txt")

        let pdb = one("k8s.pdb-blocks-drain", "shop/web-pdb")
        #expect(pdb?.severity == .error, "gpu-1 is cordoned: its drain is blocked")
        #expect(pdb?.summary.contains("gpu-1") == true && pdb?.summary.contains("web-0") == true)
        #expect(f.contains { $0.subject == "shop/other" } == false, "a PDB that allows a disruption is fine")

        let pending = one("k8s.pod-pending-gpu", "research/train-7")
        #expect(pending?.summary.contains("8 GPUs") == true)

        let admin = one("k8s.certificate-expiry", "cp-1:admin.conf")
        #expect(admin?.summary.contains("expires in 9 days") == true, "\(admin?.summary ?? "")")
        let expired = one("k8s.certificate-expiry", "cp-1:apiserver-kubelet-client.crt")
        #expect(expired?.summary.contains("expired") == true)
        #expect(!f.contains { $0.subject.hasSuffix("ca.crt") || $0.subject == "cp-1:apiserver" })

        let etcd = one("etcd.member-unhealthy", "http://10.0.0.12:2379")
        #expect(
            etcd?.evidence.first?.line
                == Self.etcd.split(separator: "\n", omittingEmptySubsequences: false).firstIndex {
                    $0.contains("is unhealthy")
                }.map { $0 + 1 })

        let disk = one("node.disk-full", "gpu-1:/var/lib/appliance")
        #expect(disk?.severity == .error)
        #expect(!f.contains { $0.subject == "gpu-1:/" || $0.subject == "gpu-1:/run" })
        for finding in f { #expect(!finding.remedy.isEmpty) }

        let report = SupportReport(contents: b, findings: f)
        #expect(report.errors > 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as? [String: Any])
        #expect((json["findings"] as? [[String: Any]])?.count == f.count)
        #expect(report.text().contains("gpu.fabricmanager-stopped  gpu-1"))
    }

    @Test("a healthy bundle has no finding of error severity")
    func healthy() throws {
        let dir = try Fixture.temporaryDirectory("analyze-ok")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Fixture.bundle(
            [
                "cluster/nodes.json":
                    #"{"items": [{"metadata": {"name": "cp-1"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}]}"#,
                "nodes/cp-1/facts.txt": try Self.facts(fmActive: "active", fmVersion: "590.48.01"),
                "nodes/cp-1/nvidia-smi-q.txt": try Fixture.text("nvidia-smi-q_h100-80gb-hbm3_sxm5_single-vm"),
                "nodes/cp-1/kernel-xid.log": "",
            ],
            manifest: Self.manifest(nodes: [
                .init(name: "cp-1", address: "10.0.0.1", roles: ["control-plane"], reachable: true)
            ]),
            at: dir + "/ok.tar.gz")
        let b = try SupportBundleContents.read(archive: dir + "/ok.tar.gz")
        let f = SupportAnalyzer.analyze(b)
        #expect(f.isEmpty, "\(f)")
        #expect(SupportReport(contents: b, findings: f).text().contains("no known problem found"))
    }
}

@Suite("support bundles are read with the product's safe archive reader")
struct ArchiveSafetyTests {
    /// Makes a .tar.gz with GNU tar from a directory, with extra arguments (absolute names, links).
    static func tar(_ args: [String], in dir: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/tar")
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        p.arguments = args
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return p.terminationStatus
    }

    @Test(
        "absolute names, .. and links are refused before anything is read; nothing is extracted",
        arguments: ["absolute", "traversal", "symlink", "hardlink"])
    func refused(kind: String) throws {
        let dir = try Fixture.temporaryDirectory("unsafe-\(kind)")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manifest = AnalyzerTests.manifest(nodes: [])
        try manifest.encoded().write(to: URL(fileURLWithPath: dir + "/manifest.json"))
        try Data("x\n".utf8).write(to: URL(fileURLWithPath: dir + "/f.txt"))
        let args: [String]
        switch kind {
        case "absolute": args = ["-czPf", "b.tar.gz", "manifest.json", dir + "/f.txt"]
        case "traversal":
            args = ["-czPf", "b.tar.gz", "manifest.json", "../\((dir as NSString).lastPathComponent)/f.txt"]
        case "symlink":
            try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: "/etc/shadow")
            args = ["-czf", "b.tar.gz", "manifest.json", "link"]
        default:
            #expect(link(dir + "/f.txt", dir + "/hard") == 0)
            args = ["-czf", "b.tar.gz", "manifest.json", "f.txt", "hard"]
        }
        #expect(try Self.tar(args, in: dir) == 0)
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(throws: SupportError.self) { try SupportBundleContents.read(archive: dir + "/b.tar.gz") }
        do {
            _ = try SupportBundleContents.read(archive: dir + "/b.tar.gz")
        } catch let e as SupportError {
            guard case .unsafeArchive = e else {
                Issue.record("expected unsafeArchive, got \(e)")
                return
            }
            #expect(e.exitStatus == .verification)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == before, "nothing was written")
    }

    @Test("a file that is not a support bundle is refused with what is wrong")
    func notABundle() throws {
        let dir = try Fixture.temporaryDirectory("not-bundle")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: dir + "/f.txt"))
        #expect(try Self.tar(["-czf", "b.tar.gz", "f.txt"], in: dir) == 0)
        #expect(throws: SupportError.notASupportBundle(path: dir + "/b.tar.gz", reason: "it has no manifest.json")) {
            try SupportBundleContents.read(archive: dir + "/b.tar.gz")
        }
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/g.tar.gz"))
        #expect(throws: SupportError.self) { try SupportBundleContents.read(archive: dir + "/g.tar.gz") }
    }
}
