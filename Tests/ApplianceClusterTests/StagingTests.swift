import ApplianceBundle
import ApplianceModel
import ApplianceSSH
import ApplianceTestSupport
import Foundation
import Logging
import Testing

@testable import ApplianceCluster

/// Staging against real OpenSSH servers on loopback, each one a "node" with its own store.
@Suite(.serialized, .tags(.sshd), .enabled(if: TestSSHServer.available))
struct StagingTests {
    /// A signed bundle with artifacts for different roles, built from random files.
    struct Fixture {
        let dir = NSTemporaryDirectory() + "staging-" + UUID().uuidString
        let verified: VerifiedBundle
        let key: Ed25519Key
        var manifest: BundleManifest { verified.manifest }

        init(sizes: [String: (Int, String)]) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var artifacts = ""
            for (name, (size, role)) in sizes.sorted(by: { $0.key < $1.key }) {
                var bytes = [UInt8](repeating: 0, count: size)
                for i in stride(from: 0, to: size, by: 8) {
                    var r = UInt64.random(in: 0...UInt64.max)
                    withUnsafeBytes(of: &r) { raw in
                        for j in 0..<min(8, size - i) { bytes[i + j] = raw[j] }
                    }
                }
                try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
                artifacts += "        - {name: \(name), kind: file, roles: [\(role)], source: {file: \(name)}}\n"
            }
            let spec = """
                apiVersion: appliance.dev/v1alpha1
                kind: BundleSpec
                metadata: {name: staging-test}
                spec:
                  version: 1.0.0
                  kubernetes: {version: v1.34.3}
                  components:
                    - name: c
                      version: "1"
                      artifacts:
                \(artifacts)
                """
            try spec.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
            key = try Ed25519Key.generate()
            _ = try BundleBuilder(
                spec: try BundleSpec.load(path: dir + "/spec.yaml"), signingKey: key, debCacheDirectory: dir
            )
            .build(output: dir + "/b.tar")
            verified = try BundleArchive.open(dir + "/b.tar").verify(trusted: [key], allowUnsigned: false)
        }

        func remove() { try? FileManager.default.removeItem(atPath: dir) }
    }

    static let roles: [[NodeRole]] = [[.controlPlane], [.gpuWorker], [.gpuWorker], [.cpuWorker]]

    func nodes(_ servers: [TestSSHServer]) -> [StagingNode] {
        servers.enumerated().map { i, s in
            StagingNode(
                name: "node-\(i + 1)", endpoint: s.endpoint(), roles: Self.roles[i % Self.roles.count],
                store: s.directory + "/store", authorizedKeysFile: s.directory + "/authorized_keys")
        }
    }

    func pool(_ servers: [TestSSHServer]) -> SSHPool {
        SSHPool(
            policy: HostKeyPolicy(pinnedByHost: ["127.0.0.1": servers.map(\.hostKeyFingerprint)]),
            options: SSHOptions(connectTimeout: .seconds(5)))
    }

    /// Every blob a node needs is in its store with the right digest, and nothing else is left behind.
    func expectStaged(_ node: StagingNode, _ m: BundleManifest, server: TestSSHServer) throws {
        let store = node.store ?? ""
        let want = Set(m.allArtifacts.filter { $0.artifact.applies(to: node.roles) }.map(\.artifact.sha256))
        let have = Set(
            try FileManager.default.contentsOfDirectory(atPath: store + "/sha256").compactMap { SHA256Digest(hex: $0) })
        #expect(have == want, "\(node.name)")
        for d in have {
            let (actual, _) = try SHA256Hasher.hash(file: store + "/sha256/" + d.hex)
            #expect(actual == d)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: store + "/partial").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: store + "/incoming").isEmpty)
        // Temporary peer credentials are gone: no key files, no authorized_keys lines.
        let left = try FileManager.default.contentsOfDirectory(atPath: store + "/.staging")
        #expect(left.isEmpty, "\(node.name) still has \(left.sorted())")
        let auth = try String(contentsOfFile: server.directory + "/authorized_keys", encoding: .utf8)
        #expect(!auth.contains("appliance-staging-"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: store + "/digests").isEmpty)
        // No relay connection (ssh multiplexing master) outlives the run.
        let masters = Process()
        masters.executableURL = URL(fileURLWithPath: "/usr/bin/pgrep")
        masters.arguments = ["-f", store + "/.staging/ctl-"]
        masters.standardOutput = FileHandle.nullDevice
        try masters.run()
        masters.waitUntilExit()
        #expect(masters.terminationStatus == 1, "a relay connection of \(node.name) is still running")
    }

    /// Starts `n` servers and a pool for them; always closes the pool and stops the servers.
    func withServers<R>(_ n: Int, _ body: ([TestSSHServer], SSHPool) async throws -> R) async throws -> R {
        var servers: [TestSSHServer] = []
        defer { for s in servers { s.stop() } }
        for _ in 0..<n { servers.append(try TestSSHServer()) }
        let pool = pool(servers)
        do {
            let result = try await body(servers, pool)
            await pool.closeAll()
            return result
        } catch {
            await pool.closeAll()
            throw error
        }
    }

    @Test func stagesEachNodeWhatItsRolesNeedSendingEachByteOnce() async throws {
        let f = try Fixture(sizes: [
            "base": (2 << 20, "all"), "driver": (3 << 20, "gpu-worker"), "small": (10, "all"),
            "cp": (100_000, "control-plane"),
        ])
        defer { f.remove() }
        try await withServers(4) { servers, pool in
            let nodes = nodes(servers)
            let stager = Stager(bundle: f.verified, nodes: nodes, pool: pool, logger: Logger(label: "test"))
            let staged = try await stager.stage()
            #expect(Set(staged) == Set(nodes.map(\.name)))
            #expect(await stager.failures.isEmpty)
            // The admin host sent the union of what was missing, once, not once per node.
            #expect(await stager.bytesSent == f.manifest.totalBlobBytes)
            for (node, server) in zip(nodes, servers) { try expectStaged(node, f.manifest, server: server) }
            for node in nodes { try await stager.record(node) }

            // A second run finds everything in place and sends nothing.
            let again = Stager(bundle: f.verified, nodes: nodes, pool: pool, logger: Logger(label: "test"))
            #expect(Set(try await again.stage()) == Set(nodes.map(\.name)))
            #expect(await again.bytesSent == 0)
            let inv = try await again.inventory(nodes[0])
            #expect(inv.staged == ["1.0.0"])
        }
    }

    /// Staging that starts while the admin host still checks the blobs (as `appliance stage` does): both
    /// checks in a good bundle pass and every node is staged; a blob damaged in the bundle after signing
    /// stops the staging with that blob named, and no node shows any blob or records the bundle.
    @Test func stagingBesideTheBlobCheckKeepsNothingOfADamagedBundle() async throws {
        let f = try Fixture(sizes: ["base": (4 << 20, "all"), "driver": (1 << 20, "gpu-worker")])
        defer { f.remove() }
        try await withServers(2) { servers, pool in
            let nodes = nodes(servers)
            let signed = f.verified.signed
            let good = Stager(
                signed: signed, blobCheck: Task { try signed.verifyBlobs() }, nodes: nodes, pool: pool,
                logger: Logger(label: "test"))
            #expect(Set(try await good.stage()) == Set(nodes.map(\.name)))
            for (node, server) in zip(nodes, servers) { try expectStaged(node, f.manifest, server: server) }
        }
        // One byte of the base blob changed in the archive: its signature, manifest and sizes still check out.
        let damaged = f.dir + "/damaged.tar"
        try FileManager.default.copyItem(atPath: f.dir + "/b.tar", toPath: damaged)
        let base = try #require(f.manifest.allArtifacts.first { $0.artifact.name == "base" }?.artifact.sha256)
        let at = try #require(try BundleArchive.open(damaged).blobLocations()[base]).dataOffset + 1000
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: damaged))
        try file.seek(toOffset: UInt64(at))
        let byte = try #require(try file.read(upToCount: 1)?.first)
        try file.seek(toOffset: UInt64(at))
        try file.write(contentsOf: [byte ^ 0xFF])
        try file.close()
        let signed = try BundleArchive.open(damaged).verifySigned(trusted: [f.key], allowUnsigned: false)
        try await withServers(2) { servers, pool in
            let nodes = nodes(servers)
            let stager = Stager(
                signed: signed, blobCheck: Task { try signed.verifyBlobs() }, nodes: nodes, pool: pool,
                logger: Logger(label: "test"))
            let error = await #expect(throws: BundleError.self) { try await stager.stage() }
            guard case .contentMismatch(_, let problems)? = error else {
                Issue.record("expected contentMismatch, got \(String(describing: error))")
                return
            }
            #expect(
                problems.contains { $0.contains("artifact 'base'") && $0.contains("digest mismatch") }, "\(problems)")
            await stager.removeLeftovers()
            for (node, server) in zip(nodes, servers) {
                let store = node.store ?? ""
                let visible = (try? FileManager.default.contentsOfDirectory(atPath: store + "/sha256")) ?? []
                #expect(visible.isEmpty, "\(node.name) shows \(visible)")
                let recorded = (try? FileManager.default.contentsOfDirectory(atPath: store + "/bundles")) ?? []
                #expect(recorded.isEmpty, "\(node.name) recorded \(recorded)")
                let left = (try? FileManager.default.contentsOfDirectory(atPath: store + "/.staging")) ?? []
                #expect(left.isEmpty, "\(node.name) still has \(left.sorted())")
                let auth = (try? String(contentsOfFile: server.directory + "/authorized_keys", encoding: .utf8)) ?? ""
                #expect(!auth.contains("appliance-staging-"))
            }
        }
    }

    @Test func aNodeThatDiesMidTransferIsReportedAndResumesLater() async throws {
        let f = try Fixture(sizes: ["big": (8 << 20, "all"), "other": (2 << 20, "all")])
        defer { f.remove() }
        try await withServers(4) { servers, pool in
            let nodes = nodes(servers)
            // 4 MB/s, so the 10 MiB transfer lasts long enough to be cut.
            let stager = Stager(
                bundle: f.verified, nodes: nodes, pool: pool, bytesPerSecond: 4 << 20, logger: Logger(label: "test"))
            // The second node loses power once it holds 3 MiB of the first blob.
            let incoming = servers[1].directory + "/store/incoming"
            let killer = Task {
                for _ in 0..<600 {
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: incoming)) ?? []
                    let size = names.compactMap { n -> Int? in
                        (try? FileManager.default.attributesOfItem(atPath: incoming + "/" + n))?[.size] as? Int
                    }.reduce(0, +)
                    if size >= 3 << 20 { break }
                    try await Task.sleep(for: .milliseconds(20))
                }
                servers[1].kill()
            }
            let staged = try await stager.stage()
            try await killer.value
            #expect(!staged.contains("node-2"))
            #expect(Set(staged) == ["node-1", "node-3", "node-4"])
            let failures = await stager.failures
            #expect(failures["node-2"] != nil)
            #expect(failures["node-2"]?.status == .unreachable, "\(String(describing: failures["node-2"]))")
            for i in [0, 2, 3] { try expectStaged(nodes[i], f.manifest, server: servers[i]) }

            // The node comes back: only what it lacks is sent, and what it had is kept.
            try servers[1].restart()
            let resumed = Stager(bundle: f.verified, nodes: nodes, pool: pool, logger: Logger(label: "test"))
            #expect(Set(try await resumed.stage()) == Set(nodes.map(\.name)))
            let sent = await resumed.bytesSent
            // What the node had received before it died is not sent again.
            #expect(sent <= f.manifest.totalBlobBytes - (3 << 20), "resumed run re-sent \(sent) bytes")
            // (It may send nothing: pieces are written in the background, so a node can hold every byte when it
            // dies during its final check; what it lacks is then nothing.)
            try expectStaged(nodes[1], f.manifest, server: servers[1])
        }
    }

    @Test func unreachableAndFullNodesAreReportedWhileTheOthersCarryOn() async throws {
        let f = try Fixture(sizes: ["blob": (3 << 20, "all")])
        defer { f.remove() }
        try await withServers(3) { servers, pool in
            var nodes = nodes(servers)
            // A node whose store is on a 1 MiB filesystem.
            let tiny = servers[1].directory + "/store"
            try FileManager.default.createDirectory(atPath: tiny, withIntermediateDirectories: true)
            let mounted = (try? TestSSHServer.shell("mount -t tmpfs -o size=1m tmpfs '\(tiny)' && echo ok")) ?? ""
            defer { _ = try? TestSSHServer.shell("umount '\(tiny)'") }
            // And a node nobody answers for.
            let deadPort = try TestSSHServer.freePort()
            nodes.append(
                StagingNode(
                    name: "node-dead",
                    endpoint: SSHEndpoint(
                        host: "127.0.0.1", port: deadPort, user: "root", identityFile: servers[0].userKey),
                    roles: [.cpuWorker]))
            let stager = Stager(bundle: f.verified, nodes: nodes, pool: pool, logger: Logger(label: "test"))
            let staged = Set(try await stager.stage())
            let failures = await stager.failures
            #expect(failures["node-dead"]?.status == .unreachable)
            #expect(staged.contains("node-1") && staged.contains("node-3"))
            if mounted.contains("ok") {
                #expect(
                    failures["node-2"]?.reason.contains("disk full") == true,
                    "\(String(describing: failures["node-2"]))")
                #expect(!staged.contains("node-2"))
                // Nothing half-written is visible in its store.
                #expect(try FileManager.default.contentsOfDirectory(atPath: tiny + "/sha256").isEmpty)
            } else {
                print("skipping the disk-full part: cannot mount tmpfs here")
            }
        }
    }
}
