import ApplianceTestSupport
import Foundation
import Testing

/// `stage`, `history`, `plan show` and `preflight` through the real binary against sshd on loopback.
@Suite(.serialized, .tags(.sshd), .enabled(if: TestSSHServer.available))
struct ClusterCLITests {
    let dir = NSTemporaryDirectory() + "cluster-cli-" + UUID().uuidString

    func site(_ servers: [TestSSHServer], extra: String = "") throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var known = ""
        var hosts = ""
        for (i, s) in servers.enumerated() {
            let fields = s.hostPublicKeyLine.split(separator: " ")
            known += "[127.0.0.1]:\(s.port) \(fields[0]) \(fields[1])\n"
            hosts +=
                "    - {name: node-\(i + 1), address: 127.0.0.1, port: \(s.port), roles: [\(i == 0 ? "control-plane" : "gpu-worker")]}\n"
        }
        try known.write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
        let text = """
            apiVersion: appliance.dev/v1alpha1
            kind: Site
            metadata: {name: cli-test}
            spec:
              profile: lab
              ssh: {user: root, identityFile: \(servers[0].userKey), knownHosts: known_hosts, connectTimeoutSeconds: 3}
              hosts:
            \(hosts)\(extra)
            """
        try text.write(toFile: dir + "/site.yaml", atomically: true, encoding: .utf8)
        return dir + "/site.yaml"
    }

    func bundle() async throws -> (path: String, pub: String) {
        _ = try await CLI.run(["bundle", "keygen", "--out", dir + "/keys"], state: dir)
        try Data(repeating: 42, count: 3 << 20).write(to: URL(fileURLWithPath: dir + "/payload.bin"))
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: cli}
        spec:
          version: 3.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
                - {name: payload, kind: file, source: {file: payload.bin}}
        """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let b = try await CLI.run(
            [
                "bundle", "build", "-f", dir + "/spec.yaml", "-o", dir + "/b.tar", "--key",
                dir + "/keys/appliance-signing.key",
            ],
            state: dir)
        #expect(b.status == 0, "\(b.stderr)")
        return (dir + "/b.tar", dir + "/keys/appliance-signing.pub")
    }

    @Test func stageThenStageAgainThenHistory() async throws {
        let server = try TestSSHServer()
        defer {
            server.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let sitePath = try site([server])
        let (b, pub) = try await bundle()
        let store = server.directory + "/store"
        let args = ["stage", "-i", sitePath, "--bundle", b, "--trust", pub, "--store", store]
        let dry = try await CLI.run(args + ["--dry-run"], state: dir)
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("transfer") && dry.stdout.contains("stage/node-1"))
        #expect(!FileManager.default.fileExists(atPath: store))

        let first = try await CLI.run(args + ["--format", "ndjson"], state: dir)
        #expect(first.status == 0, "\(first.stderr)")
        let events = first.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(events.contains { $0["event"] as? String == "operationFinished" })
        #expect(events.allSatisfy { $0["time"] != nil && $0["operation"] != nil })
        // Progress per node (its own bytes) and in all (the transfer step), ending at the bundle's size: the
        // payload and the bill of materials every bundle carries (issue 15).
        let inspected = try await CLI.run(["bundle", "inspect", b, "--format", "json"], state: dir)
        let json = try JSONSerialization.jsonObject(with: Data(inspected.stdout.utf8)) as? [String: Any]
        let total = json?["totalBytes"]
        #expect((total as? Int ?? 0) > 3 << 20)
        for step in ["stage/node-1", "transfer"] {
            let progress = events.filter { $0["event"] as? String == "stepProgress" && $0["step"] as? String == step }
            #expect(progress.last?["bytesDone"] as? Int == total as? Int, "\(step): \(progress)")
            #expect(progress.last?["bytesTotal"] as? Int == total as? Int, "\(step): \(progress)")
        }
        #expect(
            events.contains {
                $0["event"] as? String == "stepProgress" && $0["step"] as? String == "stage/node-1"
                    && $0["node"] as? String == "node-1"
            })
        #expect(FileManager.default.fileExists(atPath: store + "/bundles/3.0.0/manifest.yaml"))

        let second = try await CLI.run(args, state: dir)
        #expect(second.status == 0)
        #expect(second.stdout.contains("sent 0 B"), "\(second.stdout)")

        let history = try await CLI.run(["history", "-i", sitePath], state: dir)
        #expect(history.status == 0)
        #expect(
            history.stdout.split(separator: "\n").filter { $0.contains("stage") && $0.contains("succeeded") }.count == 2
        )
        let show = try await CLI.run(["plan", "show", "-i", sitePath], state: dir)
        #expect(show.stdout.contains("stage/node-1"))

        // The journal was mirrored to the control-plane node: another admin host pulls it and sees both runs.
        let mirrored = server.directory + "/journal"
        #expect(
            (try? FileManager.default.contentsOfDirectory(atPath: mirrored))?.filter { $0.hasSuffix(".json") }.count
                == 2)
        let other = dir + "/other-admin"
        let pull = try await CLI.run(["plan", "pull", "-i", sitePath, "--directory", mirrored], state: other)
        #expect(pull.status == 0, "\(pull.stderr)")
        #expect(pull.stdout.contains("pulled 2 operation journal(s) from node-1"))
        let otherHistory = try await CLI.run(["history", "-i", sitePath], state: other)
        #expect(otherHistory.stdout.split(separator: "\n").filter { $0.contains("succeeded") }.count == 2)
    }

    @Test func stageReportsAnUnreachableNodeWithItsOwnExitCode() async throws {
        let server = try TestSSHServer()
        defer {
            server.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let deadPort = try TestSSHServer.freePort()
        let sitePath = try site(
            [server], extra: "    - {name: node-dead, address: 127.0.0.1, port: \(deadPort), roles: [cpu-worker]}\n")
        let (b, pub) = try await bundle()
        let r = try await CLI.run(
            ["stage", "-i", sitePath, "--bundle", b, "--trust", pub, "--store", server.directory + "/store"], state: dir
        )
        #expect(r.status == 9, "\(r.stderr)")  // some nodes failed, the others completed
        #expect(r.stderr.contains("node-dead: cannot reach"))
        #expect(r.stdout.contains("staged 1/2 nodes"))

        // Resuming rebuilds the same operation: same nodes and the same store (never the default one).
        let resumed = try await CLI.run(["plan", "resume", "-i", sitePath], state: dir)
        #expect(resumed.status == 9, "\(resumed.stderr)")
        #expect(resumed.stderr.contains("node-dead: "))
        let inspect = try await CLI.run(["bundle", "inspect", b, "--format", "json"], state: dir)
        let manifest = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let blob = try #require(
            ((manifest["components"] as? [[String: Any]])?.first?["artifacts"] as? [[String: Any]])?.first?["sha256"]
                as? String)
        #expect(!FileManager.default.fileExists(atPath: "/var/lib/appliance/store/sha256/\(blob)"))
        #expect(FileManager.default.fileExists(atPath: server.directory + "/store/sha256/\(blob)"))
        #expect(FileManager.default.fileExists(atPath: server.directory + "/store/bundles/3.0.0/manifest.yaml"))
    }

    /// `appliance status` on hosts that answer SSH but run no cluster, and one that does not answer: every
    /// section says what it could not read, exit 5, in bounded time, in text and in JSON.
    @Test func statusDegradesWhenNothingAnswers() async throws {
        let server = try TestSSHServer()
        defer {
            server.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        let deadPort = try TestSSHServer.freePort()
        let sitePath = try site(
            [server], extra: "    - {name: node-dead, address: 127.0.0.1, port: \(deadPort), roles: [cpu-worker]}\n")
        let started = Date()
        let r = try await CLI.run(["status", "-i", sitePath, "--timeout", "10"], state: dir)
        #expect(Date().timeIntervalSince(started) < 120)
        #expect(r.status == 5, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("status: NOT HEALTHY"), "\(r.stdout)")
        #expect(
            r.stdout.contains("api: the API did not answer through any control plane (node-1: kubectl get nodes:"),
            "\(r.stdout)")
        #expect(r.stdout.contains("node-dead: not reachable over SSH"), "\(r.stdout)")
        #expect(r.stdout.contains("LAST OPERATION\n  none recorded on this admin host"), "\(r.stdout)")
        let j = try await CLI.run(["status", "-i", sitePath, "--timeout", "10", "--format", "json"], state: dir)
        #expect(j.status == 5)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        #expect(doc["schema"] as? String == "appliance.dev/status/v1")
        #expect(doc["healthy"] as? Bool == false)
        #expect(doc["exitCode"] as? Int == 5)
        let nodes = try #require(doc["nodes"] as? [[String: Any]])
        #expect(nodes.first { $0["name"] as? String == "node-dead" }?["reachable"] as? Bool == false)
        #expect(nodes.first { $0["name"] as? String == "node-1" }?["reachable"] as? Bool == true)
    }

    @Test func preflightRunsTheCollectorOverSSH() async throws {
        let servers = [try TestSSHServer(), try TestSSHServer()]
        defer {
            for s in servers { s.stop() }
            try? FileManager.default.removeItem(atPath: dir)
        }
        let deadPort = try TestSSHServer.freePort()
        let sitePath = try site(
            servers, extra: "    - {name: node-dead, address: 127.0.0.1, port: \(deadPort), roles: [cpu-worker]}\n")
        let r = try await CLI.run(["preflight", "-i", sitePath, "--format", "json", "--timeout", "30"], state: dir)
        #expect([0, 3, 4].contains(r.status), "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let results = try #require(json["results"] as? [[String: Any]])
        let nodes = Set(results.compactMap { $0["node"] as? String })
        #expect(nodes.isSuperset(of: ["node-1", "node-2", "node-dead"]))
        // The collector really ran on the reachable nodes: the OS check read Debian from them.
        let osOnNode1 = results.first {
            $0["node"] as? String == "node-1" && ($0["check"] as? String)?.hasPrefix("os.") == true
        }
        #expect(osOnNode1?["status"] as? String != "unknown", "\(String(describing: osOnNode1))")
        let reach = results.first { $0["node"] as? String == "node-dead" && $0["check"] as? String == "node.reachable" }
        #expect(reach?["status"] as? String == "fail")
        #expect(r.status == 3)
    }

    /// Issue 13: a site with spec.platform gets the platform's capacity and certificate check after the node
    /// checks (on stderr), and a failing one makes preflight fail.
    @Test func preflightReportsThePlatformCheck() async throws {
        let server = try TestSSHServer()
        defer {
            server.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in ["tls.crt", "tls.key", "ca.crt"] {
            try "not a certificate".write(toFile: dir + "/" + f, atomically: true, encoding: .utf8)
        }
        let sitePath = try site(
            [server],
            extra: """
                  network: {domain: ml.example.internal, apiEndpoint: "127.0.0.1:6443"}
                  tls: {certificate: tls.crt, key: tls.key, ca: ca.crt}
                  storage: {nfs: {server: 10.0.0.5, path: /export/datasets}}
                  platform:
                    queues: [{name: team, gpuQuota: 1}]

                """)
        let r = try await CLI.run(["preflight", "-i", sitePath, "--format", "json", "--timeout", "30"], state: dir)
        #expect(r.status == 3, "\(r.stderr)")
        #expect(
            r.stderr.contains("platform check (spec.platform, profile lab; system nodes at the profile's minimum size"))
        #expect(r.stderr.contains("CAP-NODES: the site has no system node"))
        #expect(r.stderr.contains("TLS: the certificate file is not a PEM certificate"))
        // The report itself stays valid JSON on stdout.
        #expect((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) != nil)
    }
}
