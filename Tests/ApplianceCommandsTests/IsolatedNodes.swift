import ApplianceTestSupport
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A "node" for tests of the real `appliance` binary with several nodes on one machine: an OpenSSH server on
/// loopback in its own mount namespace, where `/var/lib/appliance` (store, journal copies, cluster lock) and
/// `/root/.ssh` (authorized_keys, where staging adds its temporary relay keys) are this node's own
/// directories. So the product runs with its default paths and nothing lands on the host's.
final class IsolatedNode: @unchecked Sendable {
    // @unchecked: `pid` is only changed by the test that owns the node, never concurrently.
    let directory: String
    let port: Int
    let hostKeyLine: String
    let authorizedKey: String
    private(set) var pid: pid_t = 0

    /// Why these tests cannot run here, or nil.
    static let unavailableReason: String? = {
        if let reason = TestSSHServer.unavailableReason { return reason }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") { return "no /usr/bin/unshare" }
        if (try? TestSSHServer.shell("/usr/bin/unshare -m --propagation private true")) == nil {
            return "cannot create mount namespaces here"
        }
        return nil
    }()

    static var available: Bool {
        if let reason = unavailableReason {
            print("skipping isolated-node tests: \(reason)")
            return false
        }
        return true
    }

    /// `appliance` sees this node's /var/lib/appliance here.
    var appliance: String { directory + "/appliance" }
    var store: String { appliance + "/store" }
    var authorizedKeysFile: String { directory + "/ssh/authorized_keys" }

    init(authorizedKey: String) throws {
        directory = NSTemporaryDirectory() + "appliance-node-" + UUID().uuidString.prefix(8)
        self.authorizedKey = authorizedKey
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory + "/ssh", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: directory + "/appliance", withIntermediateDirectories: true)
        // The mount points must exist on the host; creating them changes nothing there.
        try fm.createDirectory(atPath: "/var/lib/appliance", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: "/root/.ssh", withIntermediateDirectories: true)
        try? fm.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        chmod(directory + "/ssh", 0o700)
        try TestSSHServer.keygen(directory + "/host_ed25519")
        hostKeyLine = try String(contentsOfFile: directory + "/host_ed25519.pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        port = try Self.uniquePort()
        try resetAuthorizedKeys()
        let config = """
            ListenAddress 127.0.0.1
            Port \(port)
            HostKey \(directory)/host_ed25519
            PidFile \(directory)/sshd.pid
            AuthorizedKeysFile .ssh/authorized_keys
            StrictModes no
            UsePAM no
            PermitRootLogin yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            AllowTcpForwarding yes
            MaxStartups 100
            LogLevel ERROR

            """
        try config.write(toFile: directory + "/sshd_config", atomically: true, encoding: .utf8)
        try start()
    }

    func start() throws {
        let mounts =
            "mount --bind '\(appliance)' /var/lib/appliance && mount --bind '\(directory)/ssh' /root/.ssh && exec /usr/sbin/sshd -D -e -f '\(directory)/sshd_config'"
        let pid = try TestSSHServer.spawn(
            ["/usr/bin/unshare", "-m", "--propagation", "private", "/bin/sh", "-c", mounts],
            stderrPath: directory + "/sshd.log")
        // The server answering must be this one (not another test's that took the port meanwhile).
        let blob = hostKeyLine.split(separator: " ")[1]
        guard TestSSHServer.waitForPort(port, pid: pid),
            (try? TestSSHServer.shell("ssh-keyscan -t ed25519 -p \(port) 127.0.0.1 2>/dev/null"))?.contains(blob)
                == true
        else {
            TestSSHServer.terminate(pid)
            let log = (try? String(contentsOfFile: directory + "/sshd.log", encoding: .utf8)) ?? ""
            throw NodeSetupError("sshd in a mount namespace did not start on port \(port): \(log)")
        }
        self.pid = pid
    }

    /// A free port no other server of this test process was given (`TestSSHServer.freePort`).
    static func uniquePort() throws -> Int { try TestSSHServer.freePort() }

    func stop() {
        if pid > 0 { TestSSHServer.terminate(pid) }
        pid = 0
        try? FileManager.default.removeItem(atPath: directory)
    }

    func resetAuthorizedKeys() throws {
        try (authorizedKey + "\n").write(toFile: authorizedKeysFile, atomically: true, encoding: .utf8)
        chmod(authorizedKeysFile, 0o600)
    }

    /// Empties the node: no store, no journal copies, no lock, only the test's key authorized.
    func wipe() throws {
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: appliance)) ?? [] {
            try fm.removeItem(atPath: appliance + "/" + entry)
        }
        try resetAuthorizedKeys()
    }

    /// Every file under the store with its SHA-256, one `digest  ./path` line each, sorted. `whileBusy`:
    /// the node's side of a killed run may still be moving files (a relay finishing its piece), so files
    /// that vanish between listing and hashing are left out instead of failing the snapshot.
    func storeSnapshot(whileBusy: Bool = false) throws -> String {
        guard FileManager.default.fileExists(atPath: store) else { return "" }
        let tolerate = whileBusy ? " 2>/dev/null; true" : ""
        return try TestSSHServer.shell(
            "cd '\(store)' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum\(tolerate)")
    }

    /// Files under the store's incoming/, partial/ and .staging/ (what a transfer in progress uses).
    func transientFiles() -> [String] {
        ["incoming", "partial", ".staging"].flatMap { sub -> [String] in
            let dir = store + "/" + sub
            return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).map { "\(sub)/\($0)" }
        }
    }

    func relayKeyLines() -> [String] {
        let text = (try? String(contentsOfFile: authorizedKeysFile, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init).filter { $0.contains("appliance-staging-") }
    }
}

/// The real `appliance` binary as a child process, driven from a dedicated thread (never from Swift's
/// cooperative pool, whose threads must not block on child processes).
enum ApplianceProcess {
    struct Exit {
        /// The exit status, or 128 + the signal that ended the process.
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// A started process whose output goes to files.
    struct Running {
        var pid: pid_t
        var stdoutPath: String
        var stderrPath: String

        func signal(_ sig: Int32) { _ = Glibc.kill(pid, sig) }

        /// Whether it has exited (reaps it then); `status` is set once it has.
        func poll() -> Int32? {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            return r == pid ? Self.decode(status) : nil
        }

        func wait() -> Exit {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            return finish(Self.decode(status))
        }

        func finish(_ status: Int32) -> Exit {
            let out = (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? ""
            let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            return Exit(status: status, stdout: out, stderr: err)
        }

        static func decode(_ status: Int32) -> Int32 {
            let sig = status & 0x7f
            return sig == 0 ? (status >> 8) & 0xff : 128 + sig
        }
    }

    static func start(_ args: [String], state: String) throws -> Running {
        let base = state + "/run-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let fd = open(base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw NodeSetupError("cannot create \(base).out") }
        defer { close(fd) }
        let pid = try TestSSHServer.spawn(
            ["/usr/bin/env", "APPLIANCE_STATE_DIR=\(state)", "NO_COLOR=1", CLI.binary] + args, stdoutFD: fd,
            stderrPath: base + ".err")
        return Running(pid: pid, stdoutPath: base + ".out", stderrPath: base + ".err")
    }

    /// Runs to the end (blocking: call from `onThread`).
    static func run(_ args: [String], state: String) throws -> Exit {
        try start(args, state: state).wait()
    }
}

/// Runs blocking test code on a dedicated thread and awaits it.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
        Thread { c.resume(with: Result { try body() }) }.start()
    }
}

/// Three isolated nodes (node-1 control-plane, node-2 and node-3 GPU workers), a site file for them and a
/// signed bundle of several blobs for different roles.
final class StagingCluster: @unchecked Sendable {
    // @unchecked: immutable after init, except `nodes`' own state (see IsolatedNode).
    let dir = NSTemporaryDirectory() + "stage-cluster-" + UUID().uuidString.prefix(8)
    let nodes: [IsolatedNode]
    let sitePath: String
    let bundle: String
    let trust: String
    let userKey: String

    static let roles = ["control-plane", "gpu-worker", "gpu-worker"]

    init(deadControlPlane: Bool = false) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        userKey = dir + "/user_ed25519"
        try TestSSHServer.keygen(userKey)
        let pub = try String(contentsOfFile: userKey + ".pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        var started: [IsolatedNode] = []
        do {
            for _ in 0..<3 { started.append(try IsolatedNode(authorizedKey: pub)) }
        } catch {
            for n in started { n.stop() }
            throw error
        }
        nodes = started
        var known = ""
        var hosts = ""
        for (i, n) in nodes.enumerated() {
            let f = n.hostKeyLine.split(separator: " ")
            known += "[127.0.0.1]:\(n.port) \(f[0]) \(f[1])\n"
            let port = i == 0 && deadControlPlane ? try TestSSHServer.freePort() : n.port
            hosts += "    - {name: node-\(i + 1), address: 127.0.0.1, port: \(port), roles: [\(Self.roles[i])]}\n"
        }
        try known.write(toFile: dir + "/known_hosts", atomically: true, encoding: .utf8)
        sitePath = dir + "/site.yaml"
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: Site
        metadata: {name: crash}
        spec:
          profile: lab
          ssh: {user: root, identityFile: \(userKey), knownHosts: known_hosts, connectTimeoutSeconds: 3}
          hosts:
        \(hosts)
        """.write(toFile: sitePath, atomically: true, encoding: .utf8)

        // Random contents, so nothing is shared between blobs by accident.
        let blobs: [(String, Int, String)] = [
            ("common", 700_000, "all"), ("driver", 600_000, "gpu-worker"), ("etcd", 400_000, "control-plane"),
            ("toolkit", 350_000, "gpu-worker"), ("small", 40_000, "all"),
        ]
        var artifacts = ""
        for (name, size, role) in blobs {
            try TestSSHServer.shell("head -c \(size) /dev/urandom > '\(dir)/\(name).bin'")
            artifacts += "        - {name: \(name), kind: file, roles: [\(role)], source: {file: \(name).bin}}\n"
        }
        try """
        apiVersion: appliance.dev/v1alpha1
        kind: BundleSpec
        metadata: {name: crash}
        spec:
          version: 1.0.0
          kubernetes: {version: v1.34.3}
          components:
            - name: c
              version: "1"
              artifacts:
        \(artifacts)
        """.write(toFile: dir + "/spec.yaml", atomically: true, encoding: .utf8)
        let state = dir + "/build-state"
        let keygen = try ApplianceProcess.run(["bundle", "keygen", "--out", dir + "/keys"], state: state)
        let build = try ApplianceProcess.run(
            [
                "bundle", "build", "-f", dir + "/spec.yaml", "-o", dir + "/b.tar", "--key",
                dir + "/keys/appliance-signing.key",
            ], state: state)
        guard keygen.status == 0, build.status == 0 else {
            for n in nodes { n.stop() }
            throw NodeSetupError("bundle build failed: \(keygen.stderr) \(build.stderr)")
        }
        bundle = dir + "/b.tar"
        trust = dir + "/keys/appliance-signing.pub"
    }

    func stop() {
        for n in nodes { n.stop() }
        try? FileManager.default.removeItem(atPath: dir)
    }

    func stageArgs(_ extra: [String] = []) -> [String] {
        ["stage", "-i", sitePath, "--bundle", bundle, "--trust", trust] + extra
    }

    /// The artifacts of the bundle: (sha256, roles).
    func artifacts(state: String) throws -> [(sha: String, roles: [String])] {
        let inspect = try ApplianceProcess.run(["bundle", "inspect", bundle, "--format", "json"], state: state)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let comps = try #require(json["components"] as? [[String: Any]])
        return comps.flatMap { ($0["artifacts"] as? [[String: Any]]) ?? [] }.compactMap { a in
            guard let sha = a["sha256"] as? String else { return nil }
            return (sha, (a["roles"] as? [String]) ?? ["all"])
        }
    }
}

struct NodeSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
