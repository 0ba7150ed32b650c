import ApplianceSSH
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension Tag {
    /// Tests that start real OpenSSH servers on loopback.
    @Tag public static var sshd: Self
}

/// A real OpenSSH server on 127.0.0.1 with throw-away ed25519 host and user keys in a temporary
/// directory. `TestSSHServer.with { … }` starts it and always stops it and deletes the directory.
public final class TestSSHServer: Sendable {
    public let directory: String
    public let port: Int
    public let hostKeyFingerprint: String
    public let hostPublicKeyLine: String
    public let userKey: String
    private let pidBox = PIDBox()
    private var pid: pid_t { pidBox.value }

    /// Why real-server tests cannot run here, or nil.
    public static let unavailableReason: String? = {
        if getuid() != 0 { return "not root: sshd tests need root (PermitRootLogin, /run/sshd)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") { return "no /usr/sbin/sshd" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen") { return "no ssh-keygen" }
        return nil
    }()

    public static var available: Bool {
        if let reason = unavailableReason {
            print("skipping sshd tests: \(reason)")
            return false
        }
        return true
    }

    public static func with<R>(_ body: (TestSSHServer) async throws -> R) async throws -> R {
        let server = try TestSSHServer()
        defer { server.stop() }
        return try await body(server)
    }

    public init() throws {
        let directory = NSTemporaryDirectory() + "appliance-sshd-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try? FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        self.directory = directory
        let hostKey = directory + "/host_ed25519"
        userKey = directory + "/user_ed25519"
        try Self.keygen(hostKey)
        try Self.keygen(userKey)
        try FileManager.default.copyItem(atPath: userKey + ".pub", toPath: directory + "/authorized_keys")
        hostPublicKeyLine = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        hostKeyFingerprint = try Self.fingerprint(ofPublicKeyFile: hostKey + ".pub")

        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try Self.freePort()
            let config = """
                ListenAddress 127.0.0.1
                Port \(port)
                HostKey \(hostKey)
                AuthorizedKeysFile \(directory)/authorized_keys
                PidFile \(directory)/sshd.pid
                StrictModes no
                UsePAM no
                PermitRootLogin yes
                PasswordAuthentication no
                KbdInteractiveAuthentication no
                AllowTcpForwarding yes
                LogLevel ERROR

                """
            try config.write(toFile: directory + "/sshd_config", atomically: true, encoding: .utf8)
            // posix_spawn, not Foundation.Process: on Linux, Process's child reaper can block in
            // waitpid on a long-running child and then hang every later Process.waitUntilExit.
            let pid = try Self.spawn(
                ["/usr/sbin/sshd", "-D", "-e", "-f", directory + "/sshd_config"], stderrPath: directory + "/sshd.log")
            if Self.waitForPort(port, pid: pid) {
                self.port = port
                pidBox.value = pid
                return
            }
            Self.terminate(pid)
            lastError = TestServerError(
                message: "sshd did not start: "
                    + ((try? String(contentsOfFile: directory + "/sshd.log", encoding: .utf8)) ?? ""))
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw lastError ?? TestServerError(message: "sshd did not start")
    }

    /// Kills sshd and every session it forked, as a node losing power would (the directory stays).
    public func kill() {
        Self.killTree(pid)
    }

    /// Starts sshd again on the same port with the same keys.
    public func restart() throws {
        let pid = try Self.spawn(
            ["/usr/sbin/sshd", "-D", "-e", "-f", directory + "/sshd_config"], stderrPath: directory + "/sshd.log")
        guard Self.waitForPort(port, pid: pid) else { throw TestServerError(message: "sshd did not restart") }
        pidBox.value = pid
    }

    static func killTree(_ pid: pid_t) {
        let children = (try? shell("ps -o pid= --ppid \(pid)")) ?? ""
        for c in children.split(separator: "\n").compactMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) }) {
            killTree(c)
        }
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, WNOHANG)
    }

    public func stop() {
        Self.terminate(pid)
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func endpoint(identity: String? = nil, jump: SSHEndpoint? = nil) -> SSHEndpoint {
        SSHEndpoint(host: "127.0.0.1", port: port, user: "root", identityFile: identity ?? userKey, jump: jump)
    }

    public var pinned: HostKeyPolicy { HostKeyPolicy(pinnedFingerprints: [hostKeyFingerprint]) }

    public func connect(options: SSHOptions = SSHOptions()) async throws -> SSHConnection {
        try await SSHConnection.connect(to: endpoint(), policy: pinned, options: options)
    }

    // MARK: helpers

    public struct TestServerError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    public static func spawn(_ argv: [String], stdoutFD: Int32? = nil, stderrPath: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let stdoutFD {
            posix_spawn_file_actions_adddup2(&actions, stdoutFD, 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        guard rc == 0 else { throw TestServerError(message: "cannot start \(argv[0]): \(rc)") }
        return pid
    }

    public static func terminate(_ pid: pid_t) {
        Glibc.kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    @discardableResult
    /// `shell` on a thread of its own: for async tests, whose cooperative threads (as many as cores) must
    /// never block on a child process, or other tests' timers starve.
    public static func shellOffPool(_ command: String) async throws -> String {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<String, Error>) in
            Thread { c.resume(with: Result { try shell(command) }) }.start()
        }
    }

    public static func shell(_ command: String) throws -> String {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestServerError(message: "pipe failed") }
        let pid: pid_t
        do {
            pid = try spawn(["/bin/sh", "-c", command], stdoutFD: fds[1])
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
        close(fds[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(fds[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        guard status == 0 else { throw TestServerError(message: "`\(command)` failed (wait status \(status))") }
        return String(decoding: output, as: UTF8.self)
    }

    public static func keygen(_ path: String) throws {
        try shell("ssh-keygen -q -t ed25519 -N '' -C test -f '\(path)'")
    }

    public static func fingerprint(ofPublicKeyFile path: String) throws -> String {
        let line = try shell("ssh-keygen -l -E sha256 -f '\(path)'")
        guard let fp = line.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") }) else {
            throw TestServerError(message: "no fingerprint in \(line)")
        }
        return String(fp)
    }

    /// A loopback port that is free now and that no other caller in this test process was given: suites
    /// run in parallel, and a port handed out twice (a "dead" node's port, or one between a server's stop
    /// and its restart) would let one test's sshd answer for another's.
    public static func freePort() throws -> Int {
        while true {
            let port = try unboundPort()
            if portLock.withLock({ handedOut.insert(port).inserted }) { return port }
        }
    }

    private static let portLock = NSLock()
    nonisolated(unsafe) private static var handedOut: Set<Int> = []  // guarded by portLock

    private static func unboundPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
            }
        }
        guard ok else { throw TestServerError(message: "cannot find a free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    public static func waitForPort(_ port: Int, pid: pid_t) -> Bool {
        for _ in 0..<100 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { return false }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = UInt16(port).bigEndian
            let rc = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            close(fd)
            if rc == 0 { return true }
            usleep(50_000)
        }
        return false
    }
}

/// The current sshd pid of a test server (replaced on restart).
final class PIDBox: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var pid: pid_t = 0
    var value: pid_t {
        get { lock.withLock { pid } }
        set { lock.withLock { pid = newValue } }
    }
}
