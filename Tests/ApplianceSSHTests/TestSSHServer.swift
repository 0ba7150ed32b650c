import Foundation
import Testing

@testable import ApplianceSSH

#if canImport(Glibc)
    import Glibc
#endif

extension Tag {
    /// Tests that start real OpenSSH servers on loopback.
    @Tag static var sshd: Self
}

/// A real OpenSSH server on 127.0.0.1 with throw-away ed25519 host and user keys in a temporary
/// directory. `TestSSHServer.with { … }` starts it and always stops it and deletes the directory.
final class TestSSHServer: Sendable {
    let directory: String
    let port: Int
    let hostKeyFingerprint: String
    let hostPublicKeyLine: String
    let userKey: String
    private let pid: pid_t

    /// Why real-server tests cannot run here, or nil.
    static let unavailableReason: String? = {
        if getuid() != 0 { return "not root: sshd tests need root (PermitRootLogin, /run/sshd)" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/sshd") { return "no /usr/sbin/sshd" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh-keygen") { return "no ssh-keygen" }
        return nil
    }()

    static var available: Bool {
        if let reason = unavailableReason {
            print("skipping sshd tests: \(reason)")
            return false
        }
        return true
    }

    static func with<R>(_ body: (TestSSHServer) async throws -> R) async throws -> R {
        let server = try TestSSHServer()
        defer { server.stop() }
        return try await body(server)
    }

    init() throws {
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
                self.pid = pid
                return
            }
            Self.terminate(pid)
            lastError = TestServerError(
                message: "sshd did not start: " + ((try? String(contentsOfFile: directory + "/sshd.log", encoding: .utf8)) ?? ""))
        }
        try? FileManager.default.removeItem(atPath: directory)
        throw lastError ?? TestServerError(message: "sshd did not start")
    }

    func stop() {
        Self.terminate(pid)
        try? FileManager.default.removeItem(atPath: directory)
    }

    func endpoint(identity: String? = nil, jump: SSHEndpoint? = nil) -> SSHEndpoint {
        SSHEndpoint(host: "127.0.0.1", port: port, user: "root", identityFile: identity ?? userKey, jump: jump)
    }

    var pinned: HostKeyPolicy { HostKeyPolicy(pinnedFingerprints: [hostKeyFingerprint]) }

    func connect(options: SSHOptions = SSHOptions()) async throws -> SSHConnection {
        try await SSHConnection.connect(to: endpoint(), policy: pinned, options: options)
    }

    // MARK: helpers

    struct TestServerError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    static func spawn(_ argv: [String], stdoutFD: Int32? = nil, stderrPath: String? = nil) throws -> pid_t {
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

    static func terminate(_ pid: pid_t) {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    @discardableResult
    static func shell(_ command: String) throws -> String {
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

    static func keygen(_ path: String) throws {
        try shell("ssh-keygen -q -t ed25519 -N '' -C test -f '\(path)'")
    }

    static func fingerprint(ofPublicKeyFile path: String) throws -> String {
        let line = try shell("ssh-keygen -l -E sha256 -f '\(path)'")
        guard let fp = line.split(separator: " ").first(where: { $0.hasPrefix("SHA256:") }) else {
            throw TestServerError(message: "no fingerprint in \(line)")
        }
        return String(fp)
    }

    static func freePort() throws -> Int {
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

    static func waitForPort(_ port: Int, pid: pid_t) -> Bool {
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
