internal import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One remote command on its own channel: open, exec, pump stdin/stdout/stderr, close, report.
///
/// Threading contract: created on any thread, then touched only on the loop thread, except
/// `requestCancel` (a lock) and the pipes (thread-safe).
// @unchecked Sendable: see the threading contract; loop-thread state is never touched elsewhere.
final class ExecOperation: LoopOperation, @unchecked Sendable {
    /// Where stdin comes from, as the loop reads it.
    enum Stdin {
        case none
        case bytes([UInt8], position: Int)
        /// A local file descriptor, owned (closed) by the operation.
        case file(fd: Int32, path: String)
        case pipe(InputPipe)
    }

    fileprivate enum Phase { case open, exec, running, close, waitClosed, free, done }
    private enum Pending { case write, readStdout, readStderr }

    static let chunkSize = 256 << 10
    /// Output bytes read per step before giving other channels a turn.
    private static let readBudget = 4 << 20

    let command: String
    /// What error messages call this operation (never the command itself, which may hold secrets).
    let label: String
    let output: OutputPipe
    private let commandDeadline: ContinuousClock.Instant?
    private let timeoutSeconds: Double
    private let cancelRequested = Locked(false)

    // Loop thread only.
    private var stdin: Stdin
    /// stdout goes to this local file instead of the pipe (downloads); owned (closed) by the operation.
    private var stdoutFile: (fd: Int32, path: String)?
    private var phase = Phase.open
    private var channel: OpaquePointer?
    private var openStarted = false
    private var pending: Pending?
    private var writeBuffer: [UInt8] = []
    private var writeOffset = 0
    private var stdinAtEnd = false
    private var eofSent = false
    /// stdin is at its end: EOF is to be sent (from `step`'s one call site, see there).
    private var eofWanted = false
    /// The EOF packet is half sent: nothing else may be sent until it is out.
    private var eofPending = false
    private var stdoutDone = false
    private var stderrDone = false
    private var failure: SSHError?
    private var closeDeadline: ContinuousClock.Instant?
    private var exit = ExitResult(status: nil, signal: nil)
    private var inputStalled = false
    private var outputStalled = false
    private let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ExecOperation.chunkSize, alignment: 16)

    init(
        command: String, label: String, stdin: Stdin, stdoutFile: (fd: Int32, path: String)?, output: OutputPipe,
        timeout: Duration?
    ) {
        self.command = command
        self.label = label
        self.stdin = stdin
        self.stdoutFile = stdoutFile
        self.output = output
        self.commandDeadline = timeout.map { ContinuousClock.now + $0 }
        self.timeoutSeconds = timeout?.seconds ?? 0
    }

    deinit {
        readBuffer.deallocate()
        closeLocalFiles()
    }

    private func closeLocalFiles() {
        if case .file(let fd, _) = stdin { close(fd) }
        stdin = .none
        if let f = stdoutFile { close(f.fd) }
        stdoutFile = nil
    }

    /// Any thread: ask the loop to close the channel and report `cancelled`.
    func requestCancel() { cancelRequested.withLock { $0 = true } }

    var extraPoll: (fd: Int32, events: Int16)? { nil }

    /// The command's deadline, then the grace period for closing after a timeout or cancellation.
    var deadline: ContinuousClock.Instant? { closeDeadline ?? commandDeadline }

    var wantsInbound: Bool {
        switch phase {
        case .open: openStarted
        case .exec, .close, .waitClosed, .free: true
        case .running: pending != nil || !outputStalled || (!eofSent && !inputStalled)
        case .done: false
        }
    }

    func abort(_ error: SSHError) {
        guard phase != .done else { return }
        phase = .done
        channel = nil  // the session frees its channels
        if case .pipe(let p) = stdin { p.abandon() }
        closeLocalFiles()
        output.finish(.failure(error))
    }

    // MARK: stepping

    func step(_ loop: SessionLoop) -> StepResult {
        guard let session = loop.session else {
            abort(.closed(host: loop.host))
            return .finished
        }
        // A half-sent packet must be completed before anything else is sent (see SessionLoop).
        if let p = pending {
            let r = perform(p, loop, session)
            if r == .blocked { return .waiting }
            if r == .failed { return finishNow(loop) }
        }
        // EOF is sent from this one call site only, the first time and every repeat. libssh2 1.10 builds the EOF
        // packet in its own stack frame and takes the repeat of a half-sent packet only at the same address: an
        // EOF first tried deeper in the stack (from the stdin writer) and repeated from here was refused as
        // BAD_USE ("unable to send eof on channel"), which ends the whole connection.
        if eofWanted, !eofSent, phase == .running {
            switch performSendEOF(loop, session) {
            case .blocked: if eofPending { return .waiting }
            case .failed: return finishNow(loop)
            case .progressed, .idle: break
            }
        }
        if failure == nil, phase.rawOrder < Phase.close.rawOrder {
            if cancelRequested.withLock({ $0 }) {
                failure = .cancelled(host: loop.host)
            } else if let commandDeadline, ContinuousClock.now >= commandDeadline {
                failure = .timeout(host: loop.host, operation: label, seconds: timeoutSeconds)
            }
            if failure != nil {
                if phase == .open && !openStarted { return finishNow(loop) }
                // libssh2 1.10 cannot send the "signal" request (a channel accepts one process_startup),
                // so the remote command is not killed: sshd keeps it (and holds back its CLOSE) until it
                // exits or dies of SIGPIPE on its next write. We close our end and stop waiting.
                // An open or exec request in flight is completed first (see stepOpen).
                if phase == .running { beginClose() }
            }
        }

        switch phase {
        case .open: return stepOpen(loop, session)
        case .exec: return stepExec(loop, session)
        case .running: return stepRunning(loop, session)
        case .close, .waitClosed, .free: return stepClose(loop, session)
        case .done: return .finished
        }
    }

    private func beginClose() {
        phase = .close
        // A normal close is answered at once; after a timeout or cancellation the server holds its
        // CLOSE back while the command runs, so the grace period is short and the channel is then
        // left to the session (freed with it).
        closeDeadline = ContinuousClock.now + (failure == nil ? .seconds(10) : .seconds(1))
    }

    private func stepOpen(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        guard loop.claimOpenSlot(self) else { return .waiting }
        openStarted = true
        let (pointer, outcome) = session.check(
            pointer: cssh2_channel_open_session(session.raw, 4 << 20, cssh2_channel_packet_default()))
        switch outcome {
        case .again:
            return .waiting
        case .failed(let code, let message):
            loop.releaseOpenSlot(self)
            return fail(code: code, message: message, step: "opening a session channel", loop)
        case .ok:
            channel = pointer
            if failure != nil {
                loop.releaseOpenSlot(self)
                beginClose()
            } else {
                // The slot is kept through the exec request: libssh2 1.10 fails a channel's wait for
                // CHANNEL_SUCCESS (with -1) when another channel's reply arrives first, so only one
                // channel request may be outstanding per session.
                phase = .exec
            }
            return .progressed
        }
    }

    private func stepExec(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        guard let channel else { return finishNow(loop) }
        switch session.check(Int(cssh2_channel_exec(channel, command))) {
        case .again: return .waiting
        case .failed(let code, let message):
            loop.releaseOpenSlot(self)
            return fail(code: code, message: message, step: "starting \(label)", loop)
        case .ok:
            loop.releaseOpenSlot(self)
            if failure != nil {
                beginClose()
            } else {
                phase = .running
            }
            return .progressed
        }
    }

    private enum Perform { case progressed, blocked, idle, failed }

    private func stepRunning(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        var progressed = false
        // stdin first: it keeps the remote side busy while we read.
        if !eofSent && !eofWanted {
            switch perform(.write, loop, session) {
            case .progressed: progressed = true
            case .blocked: if pending != nil { return .waiting }
            case .failed: return finishNow(loop)
            case .idle: break
            }
        }
        for stream in [Pending.readStdout, .readStderr] {
            switch perform(stream, loop, session) {
            case .progressed: progressed = true
            case .blocked: if pending != nil { return .waiting }
            case .failed: return finishNow(loop)
            case .idle: break
            }
            if phase != .running { return .progressed }
        }
        if stdoutDone && stderrDone {
            beginClose()
            return .progressed
        }
        return progressed ? .progressed : .waiting
    }

    /// Runs one kind of call as far as it goes. Sets `pending` when it left a packet half sent.
    private func perform(_ what: Pending, _ loop: SessionLoop, _ session: SessionHandle) -> Perform {
        let repeating = pending == what
        pending = nil
        switch what {
        case .write: return performWrite(loop, session)
        case .readStdout: return performRead(stderr: false, repeating: repeating, loop, session)
        case .readStderr: return performRead(stderr: true, repeating: repeating, loop, session)
        }
    }

    private func blocked(_ what: Pending, _ session: SessionHandle) -> Perform {
        if session.outboundBlocked { pending = what }
        return .blocked
    }

    private func refill(_ loop: SessionLoop) -> Bool {
        inputStalled = false
        switch stdin {
        case .none:
            stdinAtEnd = true
        case .bytes(let bytes, let position):
            let end = min(bytes.count, position + Self.chunkSize)
            if position >= end {
                stdinAtEnd = true
            } else {
                writeBuffer = Array(bytes[position..<end])
                stdin = .bytes(bytes, position: end)
            }
        case .file(let fd, let path):
            var chunk = [UInt8](repeating: 0, count: Self.chunkSize)
            var n: Int
            repeat { n = read(fd, &chunk, chunk.count) } while n < 0 && errno == EINTR
            if n < 0 {
                failure = .localFile(path: path, reason: Socket.errnoText())
                return false
            }
            if n == 0 {
                stdinAtEnd = true
            } else {
                chunk.removeSubrange(n...)
                writeBuffer = chunk
            }
        case .pipe(let p):
            switch p.take() {
            case .chunk(let c): writeBuffer = c
            case .empty: inputStalled = true
            case .end: stdinAtEnd = true
            case .failed(let reason):
                failure = .localFile(path: "(stdin stream)", reason: reason)
                return false
            }
        }
        writeOffset = 0
        return true
    }

    private func performWrite(_ loop: SessionLoop, _ session: SessionHandle) -> Perform {
        guard let channel else { return .failed }
        var progressed = false
        var budget = Self.readBudget
        while budget > 0 {
            if writeOffset >= writeBuffer.count {
                writeBuffer = []
                if stdinAtEnd {
                    eofWanted = true
                    return .progressed
                }
                guard refill(loop) else {
                    beginClose()
                    return .progressed
                }
                if stdinAtEnd {
                    eofWanted = true
                    return .progressed
                }
                if writeBuffer.isEmpty { return progressed ? .progressed : .idle }
            }
            let rc = writeBuffer.withUnsafeBytes { raw in
                cssh2_channel_write(
                    channel, raw.baseAddress?.advanced(by: writeOffset).assumingMemoryBound(to: CChar.self),
                    raw.count - writeOffset)
            }
            switch session.check(rc) {
            case .ok(let n):
                writeOffset += n
                budget -= n
                progressed = true
                if n == 0 { return .progressed }
            case .again:
                let r = blocked(.write, session)
                return pending != nil ? r : (progressed ? .progressed : .blocked)
            case .failed(let code, let message):
                if CallOutcome.isChannelLevel(code) {
                    // The remote side stopped reading (command exited): drop the rest of stdin.
                    eofSent = true
                    writeBuffer = []
                    dropStdin()
                    return .progressed
                }
                _ = fail(code: code, message: message, step: "writing stdin of \(label)", loop)
                return .failed
            }
        }
        return .progressed
    }

    private func dropStdin() {
        if case .pipe(let p) = stdin { p.abandon() }
        if case .file(let fd, _) = stdin { close(fd) }
        stdin = .none
    }

    private func performSendEOF(_ loop: SessionLoop, _ session: SessionHandle) -> Perform {
        guard let channel else { return .failed }
        switch session.check(Int(libssh2_channel_send_eof(channel))) {
        case .ok:
            eofSent = true
            eofPending = false
            dropStdin()
            return .progressed
        case .again:
            eofPending = session.outboundBlocked
            return .blocked
        case .failed(let code, let message):
            eofPending = false
            if CallOutcome.isChannelLevel(code) {
                eofSent = true
                dropStdin()
                return .progressed
            }
            _ = fail(code: code, message: message, step: "closing stdin of \(label)", loop)
            return .failed
        }
    }

    /// `repeating`: this read left a packet half sent (a window adjustment) and must be called again before
    /// anything else is sent on the session, even when the output pipe is full: skipping it and going on to
    /// write stdin or send EOF would make libssh2 refuse that send as BAD_USE, which ends the connection.
    private func performRead(stderr: Bool, repeating: Bool, _ loop: SessionLoop, _ session: SessionHandle) -> Perform {
        guard let channel else { return .failed }
        if !repeating, stderr ? stderrDone : stdoutDone { return .idle }
        var progressed = false
        var budget = Self.readBudget
        let toFile = !stderr && stdoutFile != nil
        var mustCall = repeating
        while budget > 0 {
            if !mustCall && !toFile && !output.hasSpace() {
                outputStalled = true
                return progressed ? .progressed : .idle
            }
            mustCall = false
            outputStalled = false
            let base = readBuffer.baseAddress?.assumingMemoryBound(to: CChar.self)
            let rc =
                stderr
                ? cssh2_channel_read_stderr(channel, base, readBuffer.count)
                : cssh2_channel_read(channel, base, readBuffer.count)
            switch session.check(rc) {
            case .ok(0):
                if libssh2_channel_eof(channel) == 1 {
                    if stderr { stderrDone = true } else { stdoutDone = true }
                    return .progressed
                }
                return progressed ? .progressed : .idle
            case .ok(let n):
                budget -= n
                progressed = true
                let bytes = UnsafeRawBufferPointer(rebasing: readBuffer[0..<n])
                if toFile, let file = stdoutFile {
                    if !writeAll(file.fd, bytes) {
                        failure = .localFile(path: file.path, reason: Socket.errnoText())
                        beginClose()
                        return .progressed
                    }
                } else {
                    output.push(stderr ? .stderr([UInt8](bytes)) : .stdout([UInt8](bytes)))
                }
            case .again:
                let r = blocked(stderr ? .readStderr : .readStdout, session)
                return pending != nil ? r : (progressed ? .progressed : .blocked)
            case .failed(let code, let message):
                if CallOutcome.isChannelLevel(code) {
                    stdoutDone = true
                    stderrDone = true
                    return .progressed
                }
                _ = fail(code: code, message: message, step: "reading output of \(label)", loop)
                return .failed
            }
        }
        return .progressed
    }

    private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress?.advanced(by: offset), bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    private func stepClose(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        guard let channel else { return finishNow(loop) }
        // Never given up with a close packet half sent: the session could send nothing else after it.
        if failure != nil, let closeDeadline, ContinuousClock.now >= closeDeadline, !session.outboundBlocked {
            // The server does not answer the close; leave the channel to the session and report.
            self.channel = nil
            return finishNow(loop)
        }
        switch phase {
        case .close:
            switch session.check(Int(libssh2_channel_close(channel))) {
            case .again: return .waiting
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) {
                    return fail(code: code, message: message, step: "closing the channel of \(label)", loop)
                }
                phase = .free
            case .ok:
                // After a timeout or cancellation the remote may never send EOF: do not wait for it.
                phase = failure == nil ? .waitClosed : .free
            }
            return .progressed
        case .waitClosed:
            switch session.check(Int(libssh2_channel_wait_closed(channel))) {
            case .again: return .waiting
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) {
                    return fail(code: code, message: message, step: "closing the channel of \(label)", loop)
                }
            case .ok:
                break
            }
            readExit(channel, session)
            phase = .free
            return .progressed
        case .free:
            switch session.check(Int(libssh2_channel_free(channel))) {
            case .again: return .waiting
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) {
                    return fail(code: code, message: message, step: "freeing the channel of \(label)", loop)
                }
            case .ok:
                break
            }
            self.channel = nil
            return finishNow(loop)
        default:
            return .waiting
        }
    }

    private func readExit(_ channel: OpaquePointer, _ session: SessionHandle) {
        var signal: UnsafeMutablePointer<CChar>?
        var signalLength = 0
        _ = cssh2_channel_get_exit_signal(channel, &signal, &signalLength)
        if let signal {
            exit = ExitResult(status: nil, signal: signalLength > 0 ? String(cString: signal) : nil)
            libssh2_free(session.raw, signal)
        }
        if exit.signal == nil {
            exit = ExitResult(status: libssh2_channel_get_exit_status(channel), signal: nil)
        }
    }

    /// Records a failure: a channel-level one closes this channel, a session-level one ends the session.
    private func fail(code: Int32, message: String, step: String, _ loop: SessionLoop) -> StepResult {
        if CallOutcome.isChannelLevel(code) {
            if failure == nil { failure = .channel(host: loop.host, step: step, reason: message) }
            if channel != nil && phase.rawOrder < Phase.close.rawOrder {
                beginClose()
                return .progressed
            }
            return finishNow(loop)
        }
        let error = loop.lostConnection(code: code, message: message, step: step)
        loop.sessionFailed(error)
        channel = nil
        failure = error
        return finishNow(loop)
    }

    private func finishNow(_ loop: SessionLoop) -> StepResult {
        loop.releaseOpenSlot(self)
        guard phase != .done else { return .finished }
        phase = .done
        if case .pipe(let p) = stdin { p.abandon() }
        closeLocalFiles()
        if let failure {
            output.finish(.failure(failure))
        } else {
            output.finish(.success(exit))
        }
        return .finished
    }
}

extension ExecOperation.Phase {
    fileprivate var rawOrder: Int {
        switch self {
        case .open: 0
        case .exec: 1
        case .running: 2
        case .close: 3
        case .waitClosed: 4
        case .free: 5
        case .done: 6
        }
    }
}
