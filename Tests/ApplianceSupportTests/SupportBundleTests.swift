import ApplianceBundle
import ApplianceModel
import ApplianceSSH
import ApplianceTestSupport
import Foundation
import Logging
import Testing

@testable import ApplianceSupport

/// Every byte of an archive after decompression (gzip -dc): what a reader of the bundle can see.
func decompressed(_ path: String) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-dc", path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return data
}

func siteFile(_ dir: String, extra: String = "") throws -> String {
    let path = dir + "/site.yaml"
    try """
    apiVersion: appliance.dev/v1alpha1
    kind: Site
    metadata:
      name: redaction-site
      annotations:
        ops.example/registry-user: ops-visible-user
        ops.example/registry-password: site-registry-passw0rd
    spec:
      profile: lab
      # mirror registry.example:5000, login ops-visible-user / password: site-registry-passw0rd
      hosts:
        - {name: cp-1, address: 127.0.0.1, roles: [control-plane, gpu-worker]}
      supportBundle:
        redact: ["CUST-[0-9]{8}"]
    \(extra)
    """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("support bundle: secrets planted in every source never reach the archive", .tags(.sshd), .serialized)
struct SupportBundleRedactionTests {
    static let secrets: [String: String] = [
        "site file": "site-registry-passw0rd",
        "site pattern": "CUST-20261130",
        "values": "values-db-passw0rd",
        "values token": "values-api-token-abc",
        "secret data": "c2VjcmV0LWRiLXBhc3N3b3Jk",  // base64 of secret-db-password
        "secret plain": "secret-db-password",
        "kubeconfig token": "kubeconfig-bearer-tok3n",
        "kubeconfig key": "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND",
        "log line": "abcdef.0123456789abcdef",
        "log password": "runlog-passw0rd",
        "node file key": "MIIEowIBAAKCAQEAnodefilesecretkeymaterial",
        "node file auth": "cmVnaXN0cnk6bm9kZS1maWxlLXBhc3M=",
        "htpasswd": "$2y$05$QWERTYUIOPASDFGHJKLZXuJ3G8x7q9V1oK2mN4bP6cR8tW0yZ1aBc",
        "cert key": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    ]

    /// Neighbours of the secrets that must survive.
    static let neighbours = [
        "ops-visible-user", "registry.example:5000", "replicaCount: 3", "\"name\": \"db-credentials\"",
        "\"password\": \"<redacted>\"", "client-certificate-data: UFVCTElDLUNFUlQtREFUQQ==",
        "server: https://10.77.170.11:6443", "msg=\"joined the cluster\"",
        "endpoint = [\"https://registry.local:5000\"]",
        "for customer <redacted>", "operator:<redacted>",
    ]

    static let values = """
        replicaCount: 3
        postgresql:
          auth:
            password: values-db-passw0rd
            existingSecret: ""
        api:
          token: values-api-token-abc
        customer: CUST-20261130

        """

    static let secretJSON = """
        {
            "apiVersion": "v1",
            "data": {
                "password": "c2VjcmV0LWRiLXBhc3N3b3Jk"
            },
            "kind": "Secret",
            "metadata": {
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\\"apiVersion\\":\\"v1\\",\\"kind\\":\\"Secret\\",\\"stringData\\":{\\"password\\":\\"secret-db-password\\"},\\"metadata\\":{\\"name\\":\\"db-credentials\\"}}\\n"
                },
                "name": "db-credentials"
            },
            "type": "Opaque"
        }

        """

    static let kubeconfig = """
        apiVersion: v1
        clusters:
        - cluster:
            server: https://10.77.170.11:6443
          name: lab
        users:
        - name: admin
          user:
            client-certificate-data: UFVCTElDLUNFUlQtREFUQQ==
            client-key-data: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV2Z0lCQURBTkJna3Foa2lHOXcwQkFRRUZBQVND
        - name: robot
          user:
            token: kubeconfig-bearer-tok3n

        """

    static let nodeFile = """
        version = 2
        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.local:5000"]
          endpoint = ["https://registry.local:5000"]
        [plugins."io.containerd.grpc.v1.cri".registry.configs."registry.local:5000".auth]
          auth = "cmVnaXN0cnk6bm9kZS1maWxlLXBhc3M="
        # a key someone left behind
        -----BEGIN RSA PRIVATE KEY-----
        MIIEowIBAAKCAQEAnodefilesecretkeymaterial
        -----END RSA PRIVATE KEY-----
        operator:$2y$05$QWERTYUIOPASDFGHJKLZXuJ3G8x7q9V1oK2mN4bP6cR8tW0yZ1aBc
        certificateKey: 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0

        """

    @Test(
        "site file, values, a Secret, a kubeconfig, a run-log line and a node file: no secret byte in the archive, neighbours kept, counts in the index",
        .enabled(if: TestSSHServer.available, "\(TestSSHServer.unavailableReason ?? "")"))
    func plantedEverywhere() async throws {
        let dir = try Fixture.temporaryDirectory("support-redaction")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let site = try SiteInventory.load(path: try siteFile(dir))
        // The admin host: a run log with a join command and a password, in the window.
        let logs = dir + "/logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        try """
        2026-11-30T10:00:00Z info kubeadm join 10.77.170.11:6443 --token abcdef.0123456789abcdef msg="joined the cluster"
        2026-11-30T10:00:01Z debug registry login password=runlog-passw0rd for customer CUST-20261130

        """.write(toFile: logs + "/appliance-20261130T100000Z-1.log", atomically: true, encoding: .utf8)
        // The node's files, read over real SSH by the same code path as every node file.
        let plant = dir + "/node"
        try FileManager.default.createDirectory(atPath: plant, withIntermediateDirectories: true)
        try Self.values.write(toFile: plant + "/values.yaml", atomically: true, encoding: .utf8)
        try Self.secretJSON.write(toFile: plant + "/secret.json", atomically: true, encoding: .utf8)
        try Self.kubeconfig.write(toFile: plant + "/admin.conf", atomically: true, encoding: .utf8)
        try Self.nodeFile.write(toFile: plant + "/config.toml", atomically: true, encoding: .utf8)

        try await TestSSHServer.with { server in
            let pool = SSHPool(policy: server.pinned, logger: Logger(label: "test"))
            let node = SupportNode(
                name: "cp-1", address: "127.0.0.1", roles: [.controlPlane], endpoint: server.endpoint())
            let collector = SupportCollector(
                site: site, nodes: [node], controlPlanes: [node], pool: pool,
                admin: AdminSources(
                    applianceVersion: "test", logsDirectory: logs, stateDirectory: URL(fileURLWithPath: dir + "/state"),
                    siteFile: site.sourcePath, profileFile: nil, bundleFile: nil),
                factsScript: nil, since: Date().addingTimeInterval(-86400), gpuDiag: false, parallelism: 4,
                logger: Logger(label: "test"))
            let stage = try SupportStage(
                rules: try RedactionRules(sitePatterns: site.supportBundle.redact.map(\.pattern)))
            defer { stage.remove() }
            await collector.collectAdmin(stage)
            for (file, path) in [
                ("cluster/helm-values/platform/db.yaml", "values.yaml"), ("cluster/secret.json", "secret.json"),
                ("nodes/cp-1/config/kubelet.txt", "admin.conf"), ("nodes/cp-1/config/containerd.txt", "config.toml"),
            ] {
                let status = try await collector.remote(
                    node, stage, path: file, source: "node/cp-1", what: file,
                    command: "cat \(shellQuote(plant + "/" + path))")
                #expect(status == 0)
            }
            let snap = await stage.snapshot()
            let manifest = SupportManifest(
                cluster: site.name, applianceVersion: "test", createdAt: Date(), since: Date(), gpuDiag: false,
                nodes: [], files: snap.files, failures: snap.failures)
            let out = dir + "/bundle.tar.gz"
            try await stage.pack(manifest: manifest, output: out)
            await pool.closeAll()

            let bytes = try decompressed(out)
            #expect(bytes.count > 1000)
            for (source, secret) in Self.secrets {
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "the \(source) secret is in the archive")
                let b64 = Data(secret.utf8).base64EncodedString()
                #expect(bytes.range(of: Data(b64.utf8)) == nil, "the \(source) secret is in the archive as base64")
            }
            for n in Self.neighbours {
                #expect(bytes.range(of: Data(n.utf8)) != nil, "the neighbour '\(n)' was lost")
            }
            // The index names every file with its redactions.
            let read = try SupportBundleContents.read(archive: out)
            func count(_ p: String) -> Int { read.manifest.files.first { $0.path == p }?.redactions ?? -1 }
            #expect(count("admin/site.yaml") >= 2)
            #expect(count("cluster/secret.json") >= 2)
            #expect(count("nodes/cp-1/config/kubelet.txt") == 2)
            #expect(count("nodes/cp-1/config/containerd.txt") >= 4)
            #expect(read.manifest.files.contains { $0.path.hasPrefix("admin/logs/") && $0.redactions >= 3 })
            #expect(read.manifest.files.contains { $0.path == "admin/version.txt" && $0.redactions == 0 })
            // The staging directory held only redacted bytes, 0600 files in a 0700 directory.
            var st = stat()
            #expect(stat(stage.root, &st) == 0 && st.st_mode & 0o777 == 0o700)
        }
    }

    @Test(
        "a whole collection: a node that does not answer is recorded and the bundle is still written; the archive has no absolute name and no link",
        .enabled(if: TestSSHServer.available, "\(TestSSHServer.unavailableReason ?? "")"))
    func unreachableNodeRecorded() async throws {
        let dir = try Fixture.temporaryDirectory("support-run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let site = try SiteInventory.load(path: try siteFile(dir))
        try await TestSSHServer.with { server in
            let pool = SSHPool(
                policy: server.pinned, options: SSHOptions(connectTimeout: .seconds(3)), logger: Logger(label: "test"))
            let up = SupportNode(
                name: "cp-1", address: "127.0.0.1", roles: [.controlPlane, .gpuWorker], endpoint: server.endpoint())
            let deadPort = try TestSSHServer.freePort()
            let down = SupportNode(
                name: "gpu-9", address: "127.0.0.1", roles: [.gpuWorker],
                endpoint: SSHEndpoint(host: "127.0.0.1", port: deadPort, user: "root", identityFile: server.userKey))
            let collector = SupportCollector(
                site: site, nodes: [up, down], controlPlanes: [up], pool: pool,
                admin: AdminSources(
                    applianceVersion: "test", logsDirectory: dir + "/no-logs",
                    stateDirectory: URL(fileURLWithPath: dir + "/state"),
                    siteFile: site.sourcePath, profileFile: nil, bundleFile: nil),
                factsScript: try String(contentsOfFile: Fixture.repo + "/preflight/collect.sh", encoding: .utf8),
                since: Date().addingTimeInterval(-3600), gpuDiag: false, parallelism: 2, logger: Logger(label: "test"))
            let out = dir + "/b.tar.gz"
            let manifest = try await collector.run(output: out)
            await pool.closeAll()

            #expect(FileManager.default.fileExists(atPath: out))
            let gpu9 = try #require(manifest.nodes.first { $0.name == "gpu-9" })
            #expect(!gpu9.reachable)
            #expect(gpu9.error?.isEmpty == false)
            #expect(manifest.failures.contains { $0.source == "node/gpu-9" })
            #expect(manifest.nodes.first { $0.name == "cp-1" }?.reachable == true)
            let paths = Set(manifest.files.map(\.path))
            for p in [
                "nodes/cp-1/facts.txt", "nodes/cp-1/disk.txt", "nodes/cp-1/memory.txt", "nodes/cp-1/packages.txt",
                "nodes/cp-1/journal/kubelet.log", "nodes/cp-1/kernel-xid.log", "admin/site.yaml", "admin/version.txt",
            ] {
                #expect(paths.contains(p), "\(p) missing from \(paths.sorted())")
            }
            #expect(!paths.contains { $0.hasPrefix("nodes/gpu-9/") })
            // This host has no kubectl: the cluster's state is a recorded failure, not a missing bundle.
            #expect(manifest.failures.contains { $0.source == "cluster" })

            // Read back with the product's reader: every entry is a plain relative file.
            let entries = try SafeArchive.check(archive: out)
            #expect(entries.count == manifest.files.count + 1)
            #expect(entries.allSatisfy { !$0.name.hasPrefix("/") && !$0.name.contains("..") })
            let read = try SupportBundleContents.read(archive: out)
            #expect(read.manifest.files.map(\.path) == manifest.files.map(\.path))
            #expect(read.manifest.nodes == manifest.nodes)
            let findings = SupportAnalyzer.analyze(read)
            #expect(findings.contains { $0.id == "node.unreachable" && $0.subject == "gpu-9" })
            let facts = try #require(read["nodes/cp-1/facts.txt"])
            #expect(facts.contains("@@appliance:begin meta"))
        }
    }
}
