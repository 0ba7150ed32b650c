import Foundation

/// Runs programs on the admin host. Every process the lab starts goes through here, so that failures
/// carry the command line, the exit status and the program's own words.
///
/// Blocking: `run` waits for the program. Lab commands are synchronous and call it from the main thread
/// or from `DispatchQueue.concurrentPerform`, never from Swift's cooperative pool.
public enum HostCommand {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public var combined: String { [stdout, stderr].filter { !$0.isEmpty }.joined(separator: "\n") }
    }

    static let searchPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// The absolute path of a program, looked up in the usual system directories.
    public static func which(_ name: String) -> String? {
        if name.hasPrefix("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        return searchPath.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs a program to completion and returns its output; throws `commandFailed` (with `context`) on a
    /// non-zero exit unless `check` is false.
    @discardableResult
    public static func run(
        _ program: String, _ arguments: [String], input: String? = nil, check: Bool = true,
        context: @autoclosure () -> String = "a host command failed"
    ) throws(LabError) -> Result {
        guard let path = which(program) else {
            throw .missingTool(tool: program, package: packageHint(program))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let inPipe = input.map { _ in Pipe() }
        process.standardInput = inPipe ?? FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw .commandFailed(
                command: render(program, arguments), status: -1, output: "\(error)", context: context())
        }
        if let inPipe, let input {
            inPipe.fileHandleForWriting.write(Data(input.utf8))
            try? inPipe.fileHandleForWriting.close()
        }
        // stderr is drained on a thread of its own so that neither pipe can fill up and block the child. Not
        // on a dispatch queue: on Linux libdispatch's global pool has one thread per core and adds another
        // only about once a second while its threads block, so callers running commands side by side (a
        // sampler beside a long `appliance upgrade`) would queue behind each other's reads.
        let errBox = DataBox()
        let done = DispatchSemaphore(value: 0)
        let reader = Thread {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        done.wait()
        process.waitUntilExit()
        let result = Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines),
            stderr: String(decoding: errBox.data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        if check && result.status != 0 {
            throw .commandFailed(
                command: render(program, arguments), status: result.status, output: result.combined, context: context())
        }
        return result
    }

    /// Starts a program in a new session (`POSIX_SPAWN_SETSID`) that outlives this process, with
    /// stdin/stdout/stderr on /dev/null (the program redirects its own output) and no other descriptor of
    /// ours: a detached program holding one of our pipes or Foundation's process-watch sockets open would
    /// make whoever waits on them wait forever. Returns its pid.
    public static func spawnDetached(_ program: String, _ arguments: [String], context: String) throws(LabError)
        -> pid_t
    {
        guard let path = which(program) else { throw .missingTool(tool: program, package: packageHint(program)) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(name), fd > 2 {
                let flags = fcntl(fd, F_GETFD)
                if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
            }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)  // we ignore SIGPIPE; the node's processes must not inherit that
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        // glibc's POSIX_SPAWN_SETSID (0x80, since 2.26) is not imported into Swift.
        let setsid: Int32 = 0x80
        posix_spawnattr_setflags(&attr, Int16(setsid | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, argv, environ)
        if rc != 0 {
            throw .commandFailed(
                command: render(program, arguments), status: -1, output: String(cString: strerror(rc)), context: context
            )
        }
        return pid
    }

    static func render(_ program: String, _ arguments: [String]) -> String {
        ([program] + arguments).map { $0.contains(" ") || $0.isEmpty ? "'\($0)'" : $0 }.joined(separator: " ")
    }

    static func packageHint(_ program: String) -> String {
        switch program {
        case "systemd-nspawn": "systemd-container"
        case "debootstrap": "debootstrap"
        case "nft": "nftables"
        case "ssh", "ssh-keygen": "openssh-client"
        case "ip", "tc": "iproute2"
        default: "util-linux"
        }
    }
}

/// Hands one `Data` from the reader thread to the waiting thread; the DispatchGroup orders the accesses.
private final class DataBox: @unchecked Sendable {
    var data = Data()
}
