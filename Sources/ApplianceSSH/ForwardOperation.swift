internal import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A `direct-tcpip` channel on a bastion's session, pumped to and from a local socket.
///
/// Jump hosts work like this: the bastion's loop runs this operation; the other end of a socketpair is
/// handed to the target's own `SessionLoop` as its socket. The target session is then an ordinary
/// libssh2 session on an ordinary descriptor (its own thread, its own poll), which is more robust than
/// libssh2's custom send/recv callbacks: those would have to call into the bastion's session from the
/// target's thread, and a session must stay on one thread.
///
/// Threading contract: as for `ExecOperation`; the open result is delivered once through a lock.
// @unchecked Sendable: loop-thread state is touched only on the loop thread; `opened` is a lock.
final class ForwardOperation: LoopOperation, @unchecked Sendable {
    private enum Phase { case open, running, close, free, done }

    let targetHost: String
    let targetPort: Int
    private let opened = Locked<CheckedContinuation<Result<Void, SSHError>, Never>?>(nil)
    private let cancelRequested = Locked(false)

    // Loop thread only.
    private var localFD: Int32
    private var phase = Phase.open
    private var channel: OpaquePointer?
    private var openStarted = false
    private var toChannel: [UInt8] = []
    private var toChannelOffset = 0
    private var fromChannel: [UInt8] = []
    private var fromChannelOffset = 0
    private var localEOF = false
    private var remoteEOF = false
    private var eofSent = false
    private var pendingWrite = false
    private var pendingEOF = false
    private var pendingRead = false
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)

    init(targetHost: String, targetPort: Int, localFD: Int32) {
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.localFD = localFD
    }

    deinit {
        buffer.deallocate()
        if localFD >= 0 { close(localFD) }
    }

    /// Any thread: install the waiter for the open result before `submit`.
    func setOpenWaiter(_ c: CheckedContinuation<Result<Void, SSHError>, Never>) { opened.withLock { $0 = c } }

    func requestCancel() { cancelRequested.withLock { $0 = true } }

    private func reportOpen(_ result: Result<Void, SSHError>) {
        let waiter = opened.withLock { w in
            let c = w
            w = nil
            return c
        }
        waiter?.resume(returning: result)
    }

    var deadline: ContinuousClock.Instant? { nil }

    var wantsInbound: Bool {
        switch phase {
        case .open: openStarted
        case .running:
            pendingWrite || pendingEOF || pendingRead || (fromChannelOffset >= fromChannel.count && !remoteEOF)
                || !toChannel.isEmpty
        case .close, .free: true
        case .done: false
        }
    }

    var extraPoll: (fd: Int32, events: Int16)? {
        guard phase == .running, localFD >= 0 else { return nil }
        var events: Int16 = 0
        if toChannel.isEmpty && !localEOF { events |= Socket.pollIn }
        if fromChannelOffset < fromChannel.count { events |= Socket.pollOut }
        return events == 0 ? nil : (localFD, events)
    }

    func abort(_ error: SSHError) {
        guard phase != .done else { return }
        phase = .done
        channel = nil
        if localFD >= 0 { close(localFD) }
        localFD = -1
        reportOpen(.failure(error))
    }

    func step(_ loop: SessionLoop) -> StepResult {
        guard let session = loop.session else {
            abort(.closed(host: loop.host))
            return .finished
        }
        if phase == .running, cancelRequested.withLock({ $0 }), !pendingWrite, !pendingEOF, !pendingRead {
            phase = .close
        }
        switch phase {
        case .open:
            if cancelRequested.withLock({ $0 }) && !openStarted { return finish(loop, .cancelled(host: loop.host)) }
            guard loop.claimOpenSlot(self) else { return .waiting }
            openStarted = true
            let (pointer, outcome) = session.check(
                pointer: cssh2_channel_direct_tcpip(session.raw, targetHost, Int32(targetPort)))
            switch outcome {
            case .again:
                return .waiting
            case .failed(let code, let message):
                loop.releaseOpenSlot(self)
                if !CallOutcome.isChannelLevel(code) && code != -21 {
                    loop.sessionFailed(loop.lostConnection(code: code, message: message, step: "opening a forward"))
                }
                return finish(
                    loop,
                    .unreachable(
                        host: "\(targetHost):\(targetPort)",
                        reason: "jump host \(loop.host) could not open a connection to it: \(message)"))
            case .ok:
                loop.releaseOpenSlot(self)
                channel = pointer
                phase = .running
                reportOpen(.success(()))
                return .progressed
            }
        case .running:
            return pump(loop, session)
        case .close, .free:
            return stepClose(loop, session)
        case .done:
            return .finished
        }
    }

    private func pump(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        guard let channel else { return finish(loop, nil) }
        var progressed = false
        readProgress = false
        // A read that left a window adjustment half sent must be repeated before anything else.
        if pendingRead, let result = readChannel(channel, loop, session) { return result }

        // local -> channel
        if !pendingEOF {
            if toChannel.isEmpty && !localEOF {
                let n = recv(localFD, buffer.baseAddress, buffer.count, 0)
                if n > 0 {
                    toChannel = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    toChannelOffset = 0
                    progressed = true
                } else if n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    localEOF = true
                    progressed = true
                }
            }
            writeLoop: while toChannelOffset < toChannel.count {
                let rc = toChannel.withUnsafeBytes { raw in
                    cssh2_channel_write(
                        channel, raw.baseAddress?.advanced(by: toChannelOffset).assumingMemoryBound(to: CChar.self),
                        raw.count - toChannelOffset)
                }
                switch session.check(rc) {
                case .ok(let n):
                    toChannelOffset += n
                    pendingWrite = false
                    progressed = true
                    if n == 0 { break writeLoop }
                case .again:
                    pendingWrite = session.outboundBlocked
                    if pendingWrite { return .waiting }
                    break writeLoop
                case .failed(let code, let message):
                    return failed(code, message, loop)
                }
            }
            if toChannelOffset >= toChannel.count {
                toChannel = []
                toChannelOffset = 0
            }
        }
        if localEOF && toChannel.isEmpty && !eofSent {
            switch session.check(Int(libssh2_channel_send_eof(channel))) {
            case .ok:
                eofSent = true
                pendingEOF = false
                progressed = true
            case .again:
                pendingEOF = session.outboundBlocked
                if pendingEOF { return .waiting }
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) { return failed(code, message, loop) }
                eofSent = true
            }
        }

        // channel -> local
        if let result = readChannel(channel, loop, session) { return result }
        if readProgress { progressed = true }
        while fromChannelOffset < fromChannel.count {
            let n = fromChannel.withUnsafeBytes { raw in
                send(
                    localFD, raw.baseAddress?.advanced(by: fromChannelOffset), raw.count - fromChannelOffset,
                    Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                fromChannelOffset += n
                progressed = true
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                break
            } else {
                // The target's session went away: drop what is left.
                fromChannel = []
                fromChannelOffset = 0
                localEOF = true
                remoteEOF = true
            }
        }

        if localEOF && remoteEOF && fromChannelOffset >= fromChannel.count {
            phase = .close
            return .progressed
        }
        return progressed ? .progressed : .waiting
    }

    /// One read from the channel into `fromChannel`. Returns a step result to end the step with, or nil.
    private var readProgress = false
    private func readChannel(_ channel: OpaquePointer, _ loop: SessionLoop, _ session: SessionHandle) -> StepResult? {
        if fromChannelOffset >= fromChannel.count && !remoteEOF {
            let rc = cssh2_channel_read(channel, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), buffer.count)
            switch session.check(rc) {
            case .ok(0):
                pendingRead = false
                if libssh2_channel_eof(channel) == 1 {
                    remoteEOF = true
                    shutdown(localFD, Int32(SHUT_WR))
                    readProgress = true
                }
            case .ok(let n):
                pendingRead = false
                fromChannel = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                fromChannelOffset = 0
                readProgress = true
            case .again:
                pendingRead = session.outboundBlocked
                if pendingRead { return .waiting }
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) { return failed(code, message, loop) }
                pendingRead = false
                remoteEOF = true
                shutdown(localFD, Int32(SHUT_WR))
            }
        }
        return nil
    }

    private func stepClose(_ loop: SessionLoop, _ session: SessionHandle) -> StepResult {
        guard let channel else { return finish(loop, nil) }
        if phase == .close {
            switch session.check(Int(libssh2_channel_close(channel))) {
            case .again: return .waiting
            case .failed(let code, let message):
                if !CallOutcome.isChannelLevel(code) { return failed(code, message, loop) }
            case .ok: break
            }
            phase = .free
        }
        switch session.check(Int(libssh2_channel_free(channel))) {
        case .again: return .waiting
        case .failed(let code, let message):
            if !CallOutcome.isChannelLevel(code) { return failed(code, message, loop) }
        case .ok: break
        }
        self.channel = nil
        return finish(loop, nil)
    }

    private func failed(_ code: Int32, _ message: String, _ loop: SessionLoop) -> StepResult {
        if CallOutcome.isChannelLevel(code) {
            phase = .close
            return .progressed
        }
        let error = loop.lostConnection(code: code, message: message, step: "forwarding to \(targetHost)")
        loop.sessionFailed(error)
        channel = nil
        return finish(loop, error)
    }

    private func finish(_ loop: SessionLoop, _ error: SSHError?) -> StepResult {
        loop.releaseOpenSlot(self)
        phase = .done
        if localFD >= 0 { close(localFD) }
        localFD = -1
        reportOpen(.failure(error ?? .closed(host: loop.host)))
        return .finished
    }
}
