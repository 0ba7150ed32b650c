import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One authenticated SSH connection to one node, over which any number of commands and transfers run,
/// up to `SSHOptions.maxChannels` at a time (more wait their turn).
///
/// Threading contract: the libssh2 session lives on a dedicated thread owned by this connection
/// (`SessionLoop`), in non-blocking mode with `poll()` and deadlines. The async methods here only hand
/// work to that thread and await results through bounded queues; no libssh2 call and no blocking
/// call ever runs on Swift's cooperative pool. Cancelling a calling task closes that command's channel
/// (the connection stays up). Methods are `nonisolated` because they only touch immutable state.
public actor SSHConnection {
    public nonisolated let endpoint: SSHEndpoint
    nonisolated let loop: SessionLoop
    private let bastion: SSHConnection?
    private let ownsBastion: Bool
    private var closed = false

    private init(endpoint: SSHEndpoint, loop: SessionLoop, bastion: SSHConnection?, ownsBastion: Bool) {
        self.endpoint = endpoint
        self.loop = loop
        self.bastion = bastion
        self.ownsBastion = ownsBastion
    }

    deinit {
        loop.shutdownSoon()
    }

    /// Connects to `endpoint` (through its jump host, or through `bastion` when given), verifies the
    /// host key against `policy` before sending any credential, and authenticates.
    ///
    /// - Throws: `SSHError` (`unreachable`, `hostKeyUnknown`, `hostKeyChanged`, `authenticationFailed`,
    ///   `cancelled`, …).
    public static func connect(
        to endpoint: SSHEndpoint, policy: HostKeyPolicy, options: SSHOptions = SSHOptions(),
        logger: Logger = Logger(label: "appliance.ssh"), via bastion: SSHConnection? = nil
    ) async throws -> SSHConnection {
        guard let jump = endpoint.jump else {
            let loop = try await SessionLoop.start(
                endpoint: endpoint, policy: policy, options: options, logger: logger, transport: .tcp)
            return SSHConnection(endpoint: endpoint, loop: loop, bastion: nil, ownsBastion: false)
        }
        let ownsBastion = bastion == nil
        let through: SSHConnection
        if let bastion {
            through = bastion
        } else {
            through = try await connect(to: jump, policy: policy, options: options, logger: logger)
        }
        do {
            let fd = try await through.openForward(host: endpoint.host, port: endpoint.port)
            let loop = try await SessionLoop.start(
                endpoint: endpoint, policy: policy, options: options, logger: logger, transport: .socket(fd))
            return SSHConnection(endpoint: endpoint, loop: loop, bastion: through, ownsBastion: ownsBastion)
        } catch {
            if ownsBastion { await through.close() }
            throw error
        }
    }

    /// Opens a `direct-tcpip` channel to `host:port` and returns the local end of a socket pair that
    /// carries it. The caller owns the descriptor.
    nonisolated func openForward(host: String, port: Int) async throws -> Int32 {
        let (mine, theirs) = try Socket.pair()
        let op = ForwardOperation(targetHost: host, targetPort: port, localFD: mine)
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<Void, SSHError>, Never>) in
                op.setOpenWaiter(c)
                loop.submit(op)
            }
        } onCancel: {
            op.requestCancel()
            loop.wakeUp()
        }
        do {
            try result.get()
        } catch {
            Socket.closeFD(theirs)
            throw error
        }
        return theirs
    }

    /// The host key this connection verified before authenticating.
    public nonisolated var hostKey: HostPublicKey? { loop.hostKey }

    /// Whether the session is still up. A pool replaces connections that are not.
    public nonisolated var isConnected: Bool { loop.deadReason == nil }

    /// Closes the connection: commands in flight fail with `SSHError.closed`. Idempotent.
    public func close() async {
        if closed { return }
        closed = true
        await loop.shutdown()
        if ownsBastion, let bastion { await bastion.close() }
    }

    // MARK: commands

    /// Runs `command` (through `sh -c` of the login shell; wrapped in `sudo -n` when the endpoint asks)
    /// and streams its output: each chunk of stdout and stderr is passed to the matching callback as it
    /// arrives, in arrival order, at most `SSHOptions.outputBufferBytes` ahead of the callbacks (slow
    /// callbacks slow the remote command down; nothing accumulates).
    ///
    /// - Parameters:
    ///   - stdin: what the command reads; stdin is closed after it.
    ///   - timeout: after this the channel is closed, every process the command started on the host is
    ///     killed (see `stopRemote`), and `SSHError.timeout` thrown. Cancellation does the same.
    ///   - label: names the command in errors and logs (the command text itself may hold secrets).
    /// - Returns: the exit status or signal. A non-zero status is not an error here.
    /// - Throws: `SSHError`, or what a callback threw (the channel is closed first).
    public nonisolated func exec(
        _ command: String, stdin: SSHInput = .none, timeout: Duration? = nil, label: String? = nil,
        onStdout: ([UInt8]) async throws -> Void, onStderr: ([UInt8]) async throws -> Void
    ) async throws -> ExitResult {
        try await start(
            command, stdin: stdin, stdoutFile: nil, timeout: timeout, label: label, onStdout: onStdout,
            onStderr: onStderr)
    }

    /// Runs `command` and collects its output, keeping at most `limit` bytes of each stream (the rest
    /// is read and dropped, and flagged as truncated).
    public nonisolated func run(
        _ command: String, stdin: SSHInput = .none, timeout: Duration? = nil, label: String? = nil,
        limit: Int = 16 << 20
    ) async throws -> CommandOutput {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var stdoutTruncated = false
        var stderrTruncated = false
        let exit = try await exec(
            command, stdin: stdin, timeout: timeout, label: label,
            onStdout: { chunk in
                let room = limit - stdout.count
                if chunk.count > room { stdoutTruncated = true }
                if room > 0 { stdout.append(contentsOf: chunk.prefix(room)) }
            },
            onStderr: { chunk in
                let room = limit - stderr.count
                if chunk.count > room { stderrTruncated = true }
                if room > 0 { stderr.append(contentsOf: chunk.prefix(room)) }
            })
        return CommandOutput(
            stdout: stdout, stderr: stderr, exit: exit, stdoutTruncated: stdoutTruncated,
            stderrTruncated: stderrTruncated)
    }

    /// `run`, but a non-zero exit throws `SSHError.commandFailed` (with the end of stderr).
    @discardableResult
    public nonisolated func runChecked(
        _ command: String, stdin: SSHInput = .none, timeout: Duration? = nil, label: String? = nil,
        limit: Int = 16 << 20
    ) async throws -> CommandOutput {
        let output = try await run(command, stdin: stdin, timeout: timeout, label: label, limit: limit)
        guard output.exit.succeeded else {
            throw SSHError.commandFailed(
                host: endpoint.displayName, command: label ?? Self.defaultLabel(command), exit: output.exit,
                stderr: String(decoding: output.stderr.suffix(4096), as: UTF8.self))
        }
        return output
    }

    // MARK: file transfers

    /// Copies a local file to `remotePath` by running `cat` (or `dd` when resuming) on the node with
    /// the file as stdin; no SFTP subsystem is needed and `sudo` wrapping applies.
    ///
    /// With `offset` > 0 the local bytes from `offset` on are written at `offset` of the remote file,
    /// which is kept (not truncated): this resumes a broken upload. The caller decides the offset
    /// (typically the remote file's current size) and verifies digests.
    /// - Returns: the number of bytes sent.
    @discardableResult
    public nonisolated func upload(
        file localPath: String, to remotePath: String, offset: UInt64 = 0, timeout: Duration? = nil
    ) async throws -> UInt64 {
        var info = stat()
        guard stat(localPath, &info) == 0 else {
            throw SSHError.localFile(path: localPath, reason: Socket.errnoText())
        }
        let size = UInt64(info.st_size)
        guard offset <= size else {
            throw SSHError.localFile(path: localPath, reason: "resume offset \(offset) is beyond its size \(size)")
        }
        try await transfer(
            Self.uploadCommand(remotePath, offset: offset), stdin: .file(path: localPath, offset: offset),
            timeout: timeout, label: "upload to \(remotePath)")
        return size - offset
    }

    /// Writes a stream of bytes to `remotePath` (at `offset`, keeping what is before it, when > 0).
    public nonisolated func upload(
        _ stream: AsyncThrowingStream<[UInt8], any Error>, to remotePath: String, offset: UInt64 = 0,
        timeout: Duration? = nil
    ) async throws {
        try await transfer(
            Self.uploadCommand(remotePath, offset: offset), stdin: .stream(stream), timeout: timeout,
            label: "upload to \(remotePath)")
    }

    /// Copies `remotePath` (from `offset` on) into a local file, written on the connection's thread.
    /// With `offset` 0 the local file is truncated first; otherwise bytes land at `offset` (resume).
    /// - Returns: the number of bytes received.
    @discardableResult
    public nonisolated func download(
        _ remotePath: String, to localPath: String, offset: UInt64 = 0, timeout: Duration? = nil
    ) async throws -> UInt64 {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (offset == 0 ? O_TRUNC : 0)
        let fd = open(localPath, flags, 0o644)
        guard fd >= 0 else { throw SSHError.localFile(path: localPath, reason: Socket.errnoText()) }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
            let reason = Socket.errnoText()
            Socket.closeFD(fd)
            throw SSHError.localFile(path: localPath, reason: reason)
        }
        let command =
            offset == 0
            ? "cat -- \(shellQuote(remotePath))"
            : "dd if=\(shellQuote(remotePath)) bs=1M skip=\(offset) iflag=skip_bytes status=none"
        try await transfer(
            command, stdin: .none, stdoutFile: (fd, localPath), timeout: timeout, label: "download of \(remotePath)")
        var info = stat()
        guard stat(localPath, &info) == 0 else { throw SSHError.localFile(path: localPath, reason: Socket.errnoText()) }
        return UInt64(info.st_size) - offset
    }

    /// Streams `remotePath` (from `offset` on) to `onChunk`.
    public nonisolated func download(
        _ remotePath: String, offset: UInt64 = 0, timeout: Duration? = nil, onChunk: ([UInt8]) async throws -> Void
    ) async throws {
        let command =
            offset == 0
            ? "cat -- \(shellQuote(remotePath))"
            : "dd if=\(shellQuote(remotePath)) bs=1M skip=\(offset) iflag=skip_bytes status=none"
        var stderr: [UInt8] = []
        let label = "download of \(remotePath)"
        let exit = try await exec(
            command, timeout: timeout, label: label, onStdout: onChunk,
            onStderr: { if stderr.count < 65536 { stderr += $0 } })
        try checkTransfer(exit, label: label, stderr: stderr)
    }

    static func uploadCommand(_ remotePath: String, offset: UInt64) -> String {
        offset == 0
            ? "cat > \(shellQuote(remotePath))"
            : "dd of=\(shellQuote(remotePath)) bs=1M seek=\(offset) oflag=seek_bytes conv=notrunc status=none"
    }

    private nonisolated func transfer(
        _ command: String, stdin: SSHInput, stdoutFile: (fd: Int32, path: String)? = nil, timeout: Duration?,
        label: String
    ) async throws {
        var stderr: [UInt8] = []
        let exit = try await start(
            command, stdin: stdin, stdoutFile: stdoutFile, timeout: timeout, label: label, onStdout: { _ in },
            onStderr: { if stderr.count < 65536 { stderr += $0 } })
        try checkTransfer(exit, label: label, stderr: stderr)
    }

    private nonisolated func checkTransfer(_ exit: ExitResult, label: String, stderr: [UInt8]) throws {
        guard exit.succeeded else {
            throw SSHError.commandFailed(
                host: endpoint.displayName, command: label, exit: exit, stderr: String(decoding: stderr, as: UTF8.self))
        }
    }

    // MARK: plumbing

    static func defaultLabel(_ command: String) -> String {
        let first = command.split(whereSeparator: { $0 == " " || $0 == "\n" }).first.map(String.init) ?? "command"
        return "command `\(first.prefix(40))`"
    }

    /// The command as sent: wrapped in `sudo -n` for a non-root user who asked for it.
    nonisolated func wrapped(_ command: String) -> String {
        guard endpoint.sudo, endpoint.user != "root" else { return command }
        return "sudo -n -- sh -c \(shellQuote(command))"
    }

    /// The environment variable that marks every process of one command on the host.
    static let markerVariable = "APPLIANCE_EXEC"

    /// The environment variable that marks every process a command of this admin process started on a
    /// host (`CommandOwner.current`), so a later run can find what a killed run left running there.
    public static let ownerVariable = "APPLIANCE_OWNER"

    /// Runs the command marked (an environment variable that its processes and their children inherit);
    /// on timeout or cancellation, kills what still runs under that mark over a second channel of this
    /// connection. libssh2 1.10 cannot send a channel `signal` request, and sshd does not end a command
    /// whose channel closed, so without this a timed-out command would run on.
    private nonisolated func start(
        _ command: String, stdin: SSHInput, stdoutFile: (fd: Int32, path: String)?, timeout: Duration?,
        label: String?, onStdout: ([UInt8]) async throws -> Void, onStderr: ([UInt8]) async throws -> Void
    ) async throws -> ExitResult {
        let marker = "appliance-" + String(UInt64.random(in: 0..<UInt64.max), radix: 36)
        do {
            return try await startChannel(
                "export \(Self.markerVariable)=\(marker) \(Self.ownerVariable)=\(CommandOwner.current); " + command,
                stdin: stdin, stdoutFile: stdoutFile,
                timeout: timeout, label: label ?? Self.defaultLabel(command), onStdout: onStdout, onStderr: onStderr)
        } catch let error as SSHError {
            switch error {
            case .timeout, .cancelled:
                // A new task: this one may be cancelled, and the kill must still go out (bounded).
                let stop = Task.detached { [self] in await stopRemote(marker: marker) }
                await stop.value
            default: break
            }
            throw error
        }
    }

    /// Kills every process on the host whose environment carries `marker` (best effort, at most 5 s).
    nonisolated func stopRemote(marker: String) async {
        let command = """
            for f in $(grep -lzx '\(Self.markerVariable)=\(marker)' /proc/[0-9]*/environ 2>/dev/null); do \
            p=${f#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null; done; true
            """
        _ = try? await startChannel(
            command, stdin: .none, stdoutFile: nil, timeout: .seconds(5), label: "stop of a timed-out command",
            onStdout: { _ in }, onStderr: { _ in })
    }

    private nonisolated func startChannel(
        _ command: String, stdin: SSHInput, stdoutFile: (fd: Int32, path: String)?, timeout: Duration?,
        label: String?, onStdout: ([UInt8]) async throws -> Void, onStderr: ([UInt8]) async throws -> Void
    ) async throws -> ExitResult {
        let loop = self.loop
        let label = label ?? Self.defaultLabel(command)
        var source: ExecOperation.Stdin
        var producer: (InputPipe, AsyncThrowingStream<[UInt8], any Error>)?
        switch stdin {
        case .none:
            source = .none
        case .bytes(let bytes):
            source = .bytes(bytes, position: 0)
        case .file(let path, let offset):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if let f = stdoutFile { Socket.closeFD(f.fd) }
                throw SSHError.localFile(path: path, reason: Socket.errnoText())
            }
            if offset > 0 && lseek(fd, off_t(offset), SEEK_SET) < 0 {
                let reason = Socket.errnoText()
                Socket.closeFD(fd)
                if let f = stdoutFile { Socket.closeFD(f.fd) }
                throw SSHError.localFile(path: path, reason: reason)
            }
            source = .file(fd: fd, path: path)
        case .stream(let stream):
            let pipe = InputPipe(wakeConsumer: { loop.wakeUp() })
            source = .pipe(pipe)
            producer = (pipe, stream)
        }
        let output = OutputPipe(capacity: loop.options.outputBufferBytes, wakeProducer: { loop.wakeUp() })
        let op = ExecOperation(
            command: wrapped(command), label: label, stdin: source, stdoutFile: stdoutFile, output: output,
            timeout: timeout)

        return try await withTaskCancellationHandler {
            loop.submit(op)
            guard let (pipe, stream) = producer else {
                return try await Self.consume(output, op: op, loop: loop, onStdout: onStdout, onStderr: onStderr)
            }
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        for try await chunk in stream {
                            if !(await pipe.write(chunk)) { return }
                        }
                        pipe.finish()
                    } catch {
                        pipe.finish(failure: "\(error)")
                    }
                }
                defer {
                    pipe.abandon()
                    group.cancelAll()
                }
                return try await Self.consume(output, op: op, loop: loop, onStdout: onStdout, onStderr: onStderr)
            }
        } onCancel: {
            op.requestCancel()
            loop.wakeUp()
        }
    }

    private static func consume(
        _ output: OutputPipe, op: ExecOperation, loop: SessionLoop, onStdout: ([UInt8]) async throws -> Void,
        onStderr: ([UInt8]) async throws -> Void
    ) async throws -> ExitResult {
        var callbackError: (any Error)?
        while true {
            switch await output.next() {
            case .event(let event):
                guard callbackError == nil else { continue }  // draining after a failed callback
                do {
                    switch event {
                    case .stdout(let bytes): try await onStdout(bytes)
                    case .stderr(let bytes): try await onStderr(bytes)
                    }
                } catch {
                    callbackError = error
                    op.requestCancel()
                    loop.wakeUp()
                }
            case .end(let result):
                if let callbackError { throw callbackError }
                return try result.get()
            }
        }
    }
}

/// Quotes a string for POSIX `sh`: `'…'`, with embedded single quotes as `'\''`.
public func shellQuote(_ s: String) -> String {
    "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
