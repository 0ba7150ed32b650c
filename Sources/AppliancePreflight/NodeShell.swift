import Foundation

/// What came back from running a script on a node.
public struct NodeShellResult: Sendable, Equatable {
    public var stdout: String
    public var stderr: String
    public var exitCode: Int32
    public init(stdout: String, stderr: String, exitCode: Int32) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitCode = exitCode
    }
}

/// Why a script could not be run on a node.
public enum NodeShellError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The node could not be reached (connection refused, no route, authentication failed).
    case unreachable(String)
    /// The script did not finish in time; it was stopped.
    case timedOut(Duration)
    /// Anything else (could not start the shell).
    case failed(String)

    public var description: String {
        switch self {
        case .unreachable(let why): "unreachable: \(why)"
        case .timedOut(let d): "collector did not finish within \(d.formattedSeconds)"
        case .failed(let why): "could not run the collector: \(why)"
        }
    }
}

/// Runs one POSIX sh script on one node and returns its output. The SSH transport implements this for real
/// nodes (one exec channel, the script on stdin or as the command); `LocalNodeShell` runs it here.
/// Implementations must honour `timeout` (stop the remote script, throw `.timedOut`) and cancellation.
public protocol NodeShell: Sendable {
    func run(script: String, timeout: Duration) async throws -> NodeShellResult
}

/// Runs the script with `/bin/sh -s` on this machine (the script on stdin). Used by tests and by
/// `appliance preflight --local`. Kills the whole process group on timeout or cancellation.
public struct LocalNodeShell: NodeShell {
    public var shell: String
    public var environment: [String: String]?

    public init(shell: String = "/bin/sh", environment: [String: String]? = nil) {
        self.shell = shell
        self.environment = environment
    }

    public func run(script: String, timeout: Duration) async throws -> NodeShellResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: shell)
        process.arguments = ["-s"]
        if let environment { process.environment = environment }
        let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        let outBox = DataBox(), errBox = DataBox()
        stdout.fileHandleForReading.readabilityHandler = { h in outBox.append(h.availableData) }
        stderr.fileHandleForReading.readabilityHandler = { h in errBox.append(h.availableData) }
        // Foundation starts the child in its own process group; a timeout kills the group, so background
        // jobs of the script die with it.
        let done = ExitBox()
        process.terminationHandler = { p in done.finish(p.terminationStatus) }
        do {
            try process.run()
        } catch {
            throw NodeShellError.failed("\(shell): \(error.localizedDescription)")
        }
        let pid = process.processIdentifier
        stdin.fileHandleForWriting.write(Data(script.utf8))
        try? stdin.fileHandleForWriting.close()

        let deadline = ContinuousClock.now + timeout
        var timedOut = false
        while !done.isFinished {
            if Task.isCancelled || ContinuousClock.now >= deadline {
                timedOut = !Task.isCancelled
                let group = getpgid(pid)
                if group == pid { kill(-group, SIGKILL) }  // the shell and whatever it started
                kill(pid, SIGKILL)
                break
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        let status = await done.wait()
        // Wait for end-of-file on both pipes, but not forever: a background job that kept stdout open must not
        // hold the report hostage.
        let grace = ContinuousClock.now + .seconds(2)
        while !(outBox.eof && errBox.eof) && ContinuousClock.now < grace {
            try? await Task.sleep(for: .milliseconds(5))
        }
        stdout.fileHandleForReading.readabilityHandler = nil
        stderr.fileHandleForReading.readabilityHandler = nil
        if timedOut { throw NodeShellError.timedOut(timeout) }
        try Task.checkCancellation()
        return NodeShellResult(stdout: outBox.string, stderr: errBox.string, exitCode: status)
    }
}

/// Collects bytes from a readability handler (called on Foundation's own thread). Guarded by a lock.
final class DataBox: @unchecked Sendable {  // all state behind `lock`
    private let lock = NSLock()
    private var data = Data()
    private var ended = false
    /// An empty read is end-of-file.
    func append(_ d: Data) {
        lock.lock()
        if d.isEmpty { ended = true } else { data.append(d) }
        lock.unlock()
    }
    var eof: Bool {
        lock.lock()
        defer { lock.unlock() }
        return ended
    }
    var string: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The exit status of a process, set once by its termination handler. Guarded by a lock.
final class ExitBox: @unchecked Sendable {  // all state behind `lock`
    private let lock = NSLock()
    private var status: Int32?
    func finish(_ s: Int32) {
        lock.lock()
        status = s
        lock.unlock()
    }
    private func current() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        return status
    }
    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return status != nil
    }
    func wait() async -> Int32 {
        while true {
            if let s = current() { return s }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

extension FileHandle {
    func readDataToEndOfFileSafely() -> Data { (try? readToEnd()) ?? Data() }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var formattedSeconds: String {
        let s = seconds
        return s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }
}
