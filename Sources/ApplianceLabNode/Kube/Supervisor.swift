import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts and stops the node's long-running lab processes (etcd, the apiserver stand-in, kubelet).
/// Always writes a systemd unit file; then, on a booted lab node (`/run/systemd/system`, state root `/`),
/// enables and starts it with systemctl; elsewhere (tests) spawns the process in its own session with a pid
/// file under `/run/appliance-lab/`. `APPLIANCE_LABNODE_SUPERVISOR=systemd|spawn` forces one way.
public struct Supervisor: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public var useSystemd: Bool {
        switch context.environment["APPLIANCE_LABNODE_SUPERVISOR"] {
        case "systemd": return true
        case "spawn": return false
        default: return context.root == "/" && FileManager.default.fileExists(atPath: "/run/systemd/system")
        }
    }

    /// This binary (to run stand-in daemons under their tool names).
    public static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    public func unitPath(_ name: String) -> String { "/etc/systemd/system/\(name).service" }
    public func pidPath(_ name: String) -> String { "/run/appliance-lab/\(name).pid" }

    /// `argv[0]` is the tool name, `executable` the file to run.
    public func start(
        _ name: String, description: String, executable: String, argv: [String], extraEnv: [String: String] = [:]
    ) throws {
        var env = extraEnv
        for k in [
            "APPLIANCE_LABNODE_ROOT", "APPLIANCE_LAB_HARDWARE", "APPLIANCE_LAB_HOSTNAME", "APPLIANCE_LAB_NODE_GRACE",
            "APPLIANCE_LAB_KUBELET_HEARTBEAT",
        ] {
            if let v = context.environment[k], env[k] == nil { env[k] = v }
        }
        // systemd's `@PATH ARGV0 ARGS...` runs PATH with another argv[0]; without `@`, argv[0] is the path itself.
        let exec = (executable == argv[0] ? argv : ["@" + executable] + argv).map {
            $0.contains(" ") ? "\"\($0)\"" : $0
        }
        .joined(separator: " ")
        var unit =
            "[Unit]\nDescription=\(description) (appliance lab)\nAfter=network-online.target\n\n[Service]\nType=simple\n"
        for (k, v) in env.sorted(by: { $0.key < $1.key }) { unit += "Environment=\(k)=\(v)\n" }
        unit +=
            "ExecStart=\(exec)\nRestart=always\nRestartSec=2\nKillSignal=SIGTERM\n\n[Install]\nWantedBy=multi-user.target\n"
        try context.write(unitPath(name), unit)
        if useSystemd {
            _ = Self.run("/bin/systemctl", ["daemon-reload"])
            let r = Self.run("/bin/systemctl", ["enable", "--now", name + ".service"])
            if r.status != 0 { throw LabNodeError.usage("systemctl enable --now \(name): \(r.output)") }
            return
        }
        stop(name)
        let logPath = context.path("/var/log/appliance-lab/\(name).log")
        try FileManager.default.createDirectory(
            atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var fullEnv = ProcessInfo.processInfo.environment
        // A service does not inherit the marks of the SSH command that started it (systemd gives services
        // a clean environment; so does this fallback for the two marks the product puts on its commands).
        fullEnv["APPLIANCE_EXEC"] = nil
        fullEnv["APPLIANCE_OWNER"] = nil
        for (k, v) in context.environment { fullEnv[k] = v }
        for (k, v) in env { fullEnv[k] = v }
        let pid = try Self.spawn(executable, argv: argv, env: fullEnv, log: logPath)
        try context.write(pidPath(name), "\(pid)\n")
    }

    public func stop(_ name: String) {
        if useSystemd {
            _ = Self.run("/bin/systemctl", ["disable", "--now", name + ".service"])
            return
        }
        guard let t = context.read(pidPath(name)), let pid = Int32(t.trimmingCharacters(in: .whitespacesAndNewlines)),
            pid > 0
        else { return }
        if kill(pid, SIGTERM) == 0 {
            for _ in 0..<50 {
                if kill(pid, 0) != 0 { break }
                var st: Int32 = 0
                _ = waitpid(pid, &st, WNOHANG)
                usleep(100_000)
            }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        context.remove(pidPath(name))
    }

    public func isRunning(_ name: String) -> Bool {
        if useSystemd { return Self.run("/bin/systemctl", ["is-active", "--quiet", name + ".service"]).status == 0 }
        return context.pidFileIsLive(pidPath(name))
    }

    /// posix_spawn in a new session, stdout/stderr appended to `log`, stdin from /dev/null.
    static func spawn(_ path: String, argv: [String], env: [String: String], log: String) throws -> pid_t {
        var fa = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fa)
        defer { posix_spawn_file_actions_destroy(&fa) }
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&fa, 1, 2)
        // Close every other inherited descriptor (our caller's pipes must not stay open in a daemon).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(name), fd > 2 { posix_spawn_file_actions_addclose(&fa, fd) }
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // glibc: POSIX_SPAWN_SETSID = 0x80 (not exported to Swift), POSIX_SPAWN_SETSIGMASK = 0x08.
        posix_spawnattr_setflags(&attr, Int16(0x80 | POSIX_SPAWN_SETSIGMASK))
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        let cargs = argv.map { strdup($0) } + [nil]
        let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cargs.forEach { free($0) }
            cenv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &fa, &attr, cargs, cenv)
        guard rc == 0 else { throw LabNodeError.usage("cannot start \(path): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Runs a command to completion, capturing stdout+stderr.
    @discardableResult
    public static func run(_ path: String, _ args: [String], input: String? = nil, env: [String: String]? = nil) -> (
        status: Int32, output: String
    ) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        if let env { p.environment = env }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        let inPipe = Pipe()
        if input != nil { p.standardInput = inPipe }
        do { try p.run() } catch { return (127, "\(error)") }
        if let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try? inPipe.fileHandleForWriting.close()
        }
        // read(2) with EINTR retried: FileHandle.readDataToEndOfFile traps on an interrupted read.
        let fd = out.fileHandleForReading.fileDescriptor
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 {
                data.append(contentsOf: buffer[0..<n])
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
