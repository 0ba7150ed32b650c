internal import CLibSSH2
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What an operation tells the loop after one step.
enum StepResult {
    /// Something moved; step again before sleeping.
    case progressed
    /// Nothing can move until the socket, a pipe or a deadline says so.
    case waiting
    /// The operation is over and has reported its result.
    case finished
}

/// A unit of work multiplexed on one SSH session: a command or a port forward.
///
/// Threading contract: `step`, `abort`, `wantsInbound`, `extraPoll` and `deadline` are used only on the
/// loop thread. `requestCancel` may be called from any thread. Conformers are `@unchecked Sendable`
/// for that reason: they are handed to the loop thread once and touched there only.
protocol LoopOperation: AnyObject, Sendable {
    func step(_ loop: SessionLoop) -> StepResult
    /// The session is gone (or the loop shuts down): report `error` and make no libssh2 call.
    func abort(_ error: SSHError)
    /// Whether the next step would read the transport, so the loop should wake on input.
    var wantsInbound: Bool { get }
    /// Another descriptor to wait on (forwarding).
    var extraPoll: (fd: Int32, events: Int16)? { get }
    var deadline: ContinuousClock.Instant? { get }
}

/// One SSH session, its socket and the dedicated thread that drives them.
///
/// Threading contract: the libssh2 session is created, used and freed only on `thread`, in
/// non-blocking mode; waiting is `poll()` on the socket (plus a wake-up pipe and operation
/// descriptors) with a deadline. Other threads talk to the loop only through `shared` (a lock) and
/// the wake-up pipe: `submit`, `shutdown`, `cancelConnect`. Swift's cooperative pool never blocks here.
///
/// libssh2 rules the loop enforces for multiplexing channels on one non-blocking session:
/// - only one channel open (`session`/`direct-tcpip`) is in progress at a time (`openSlot`), since
///   libssh2 keeps the open state per session;
/// - when a call leaves a partly sent packet (`outboundBlocked`), only the operation that made that
///   call is stepped until it has repeated the call and the packet is out (`sendOwner`); any other
///   send in between would fail with LIBSSH2_ERROR_BAD_USE.
// @unchecked Sendable: state marked "loop thread only" is touched only on `thread`; the rest is in
// `shared` (a lock) or immutable.
final class SessionLoop: @unchecked Sendable {
    enum Transport {
        case tcp
        /// An already connected socket (the local end of a jump-host forward); the loop owns it.
        case socket(Int32)
    }

    let endpoint: SSHEndpoint
    let policy: HostKeyPolicy
    let options: SSHOptions
    let logger: Logger
    var host: String { endpoint.displayName }

    private struct Shared {
        var incoming: [any LoopOperation] = []
        var shutdown = false
        var connectCancelled = false
        var dead: SSHError?
        var connectWaiter: CheckedContinuation<Result<Void, SSHError>, Never>?
        var endWaiters: [CheckedContinuation<Void, Never>] = []
        var ended = false
    }

    private let shared = Locked(Shared())
    private let wake: (read: Int32, write: Int32)
    private let transport: Transport

    // Loop thread only.
    private(set) var session: SessionHandle?
    /// The host key verified at connect (set on the loop thread before `start` returns, read-only after).
    nonisolated(unsafe) private(set) var hostKey: HostPublicKey?
    private var socketFD: Int32 = -1
    private var active: [any LoopOperation] = []
    private var queued: [any LoopOperation] = []
    private var sendOwner: ObjectIdentifier?
    private var openSlot: ObjectIdentifier?
    private var fatal: SSHError?
    private var peerClosedSeen = false

    private init(
        endpoint: SSHEndpoint, policy: HostKeyPolicy, options: SSHOptions, logger: Logger, transport: Transport
    )
        throws(SSHError)
    {
        self.endpoint = endpoint
        self.policy = policy
        self.options = options
        self.logger = logger
        self.transport = transport
        self.wake = try Socket.wakePipe()
    }

    deinit {
        close(wake.read)
        close(wake.write)
    }

    /// Connects, verifies the host key, authenticates, and returns the running loop.
    /// Cancelling the calling task aborts the attempt.
    static func start(
        endpoint: SSHEndpoint, policy: HostKeyPolicy, options: SSHOptions, logger: Logger, transport: Transport
    ) async throws(SSHError) -> SessionLoop {
        let loop: SessionLoop
        do {
            loop = try SessionLoop(
                endpoint: endpoint, policy: policy, options: options, logger: logger, transport: transport)
        } catch {
            if case .socket(let fd) = transport { close(fd) }
            throw error
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<Void, SSHError>, Never>) in
                loop.shared.withLock { $0.connectWaiter = c }
                let thread = Thread { loop.main() }
                thread.name = "ssh \(endpoint.displayName)"
                thread.stackSize = 1 << 20
                thread.start()
            }
        } onCancel: {
            loop.shared.withLock { $0.connectCancelled = true }
            loop.wakeUp()
        }
        try result.get()
        return loop
    }

    // MARK: any thread

    /// Hands an operation to the loop. If the loop is gone the operation is aborted at once.
    func submit(_ op: any LoopOperation) {
        let refused: SSHError? = shared.withLock { s in
            if let dead = s.dead { return dead }
            if s.shutdown { return .closed(host: endpoint.displayName) }
            s.incoming.append(op)
            return nil
        }
        if let refused { op.abort(refused) } else { wakeUp() }
    }

    func wakeUp() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    /// The reason the session ended, or nil while it is usable.
    var deadReason: SSHError? { shared.withLock { $0.dead } }

    /// Asks the loop to end: operations in flight fail with `closed`. Returns when the thread is done.
    func shutdown() async {
        shared.withLock { $0.shutdown = true }
        wakeUp()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = shared.withLock { s in
                if s.ended { return true }
                s.endWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Asks the loop to end without waiting (deinit paths).
    func shutdownSoon() {
        shared.withLock { $0.shutdown = true }
        wakeUp()
    }

    // MARK: loop thread: life cycle

    private func main() {
        let connectResult: Result<Void, SSHError>
        do {
            try establish()
            connectResult = .success(())
        } catch {
            connectResult = .failure(error)
        }
        let waiter = shared.withLock { s in
            if case .failure(let e) = connectResult { s.dead = e }
            let w = s.connectWaiter
            s.connectWaiter = nil
            return w
        }
        waiter?.resume(returning: connectResult)
        if case .success = connectResult {
            logger.debug("ssh session established", metadata: ["host": "\(host)"])
            run()
        }
        teardown()
    }

    private func interruption() -> SSHError? {
        shared.withLock { s in
            if s.connectCancelled { return .cancelled(host: endpoint.displayName) }
            if s.shutdown { return .closed(host: endpoint.displayName) }
            return nil
        }
    }

    private func establish() throws(SSHError) {
        let deadline = ContinuousClock.now + options.connectTimeout
        switch transport {
        case .tcp:
            socketFD = try Socket.connect(
                host: endpoint.host, port: endpoint.port, deadline: deadline, wakeFD: wake.read,
                interrupted: { self.interruption() })
        case .socket(let fd):
            socketFD = fd
        }
        let session = try SessionHandle(host: host)
        self.session = session
        // libssh2 1.10 offers neither aes-gcm nor chacha20-poly1305 (both arrived in 1.11), nor
        // encrypt-then-mac; aes128-ctr with hmac-sha2-256 is the fastest pair it shares with OpenSSH 9.
        _ = libssh2_session_method_pref(session.raw, LIBSSH2_METHOD_CRYPT_CS, "aes128-ctr,aes192-ctr,aes256-ctr")
        _ = libssh2_session_method_pref(session.raw, LIBSSH2_METHOD_CRYPT_SC, "aes128-ctr,aes192-ctr,aes256-ctr")
        _ = libssh2_session_method_pref(session.raw, LIBSSH2_METHOD_MAC_CS, "hmac-sha2-256,hmac-sha2-512,hmac-sha1")
        _ = libssh2_session_method_pref(session.raw, LIBSSH2_METHOD_MAC_SC, "hmac-sha2-256,hmac-sha2-512,hmac-sha1")
        _ = libssh2_session_method_pref(
            session.raw, LIBSSH2_METHOD_HOSTKEY,
            "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa")

        try blockingCall("ssh handshake", deadline: deadline) { libssh2_session_handshake(session.raw, socketFD) }

        hostKey = try HostKeyVerifier.verify(session: session, endpoint: endpoint, policy: policy)

        try authenticate(session, deadline: deadline)

        if let interval = options.keepaliveInterval {
            libssh2_keepalive_config(session.raw, 1, UInt32(max(1, interval.seconds.rounded())))
        }
    }

    /// Repeats a libssh2 call until it stops answering EAGAIN, polling in between (connect phase only).
    @discardableResult
    private func blockingCall(_ step: String, deadline: ContinuousClock.Instant, _ call: () -> Int32)
        throws(SSHError) -> Int
    {
        guard let session else { throw .closed(host: host) }
        while true {
            switch session.check(Int(call())) {
            case .ok(let n): return n
            case .failed(let code, let message):
                throw mapConnectFailure(step: step, code: code, message: message)
            case .again:
                try waitForSocket(deadline: deadline, step: step)
            }
        }
    }

    private func mapConnectFailure(step: String, code: Int32, message: String) -> SSHError {
        switch code {
        case -18, -19, -48, -16, -36, -42:  // authentication failed, unverified key, key file, agent
            return .authenticationFailed(host: host, user: endpoint.user, reason: message)
        case -1, -2, -3, -5, -7, -8, -13, -30, -43, -45:
            return .unreachable(host: host, reason: "\(step) failed: \(message)")
        default:
            return .libssh2(host: host, step: step, code: code, message: message)
        }
    }

    private func waitForSocket(deadline: ContinuousClock.Instant, step: String) throws(SSHError) {
        if let error = interruption() { throw error }
        let timeout = Socket.pollTimeout(until: deadline)
        if timeout == 0 {
            throw .unreachable(host: host, reason: "\(step) timed out after \(Int(options.connectTimeout.seconds)) s")
        }
        var events: Int16 = 0
        if let session {
            if session.inboundBlocked { events |= Socket.pollIn }
            if session.outboundBlocked { events |= Socket.pollOut }
        }
        if events == 0 { events = Socket.pollIn }
        var fds = [
            pollfd(fd: socketFD, events: events, revents: 0), pollfd(fd: wake.read, events: Socket.pollIn, revents: 0),
        ]
        let n = poll(&fds, 2, timeout)
        if n > 0 && fds[1].revents != 0 { Socket.drain(wake.read) }
    }

    private func authenticate(_ session: SessionHandle, deadline: ContinuousClock.Instant) throws(SSHError) {
        var reasons: [String] = []
        let user = endpoint.user
        if let identity = endpoint.identityFile {
            if access(identity, R_OK) != 0 {
                reasons.append("identity file \(identity) cannot be read: \(Socket.errnoText())")
            } else {
                let publicKey = identity + ".pub"
                let hasPublic = access(publicKey, R_OK) == 0
                do {
                    try blockingCall("public key authentication", deadline: deadline) {
                        cssh2_userauth_publickey_fromfile(session.raw, user, hasPublic ? publicKey : nil, identity, nil)
                    }
                    return
                } catch {
                    if case .authenticationFailed(_, _, let reason) = error {
                        reasons.append("key \(identity): \(reason)")
                    } else {
                        throw error
                    }
                }
            }
        }
        if endpoint.useAgent {
            if let socketPath = ProcessInfo.processInfo.environment["SSH_AUTH_SOCK"], !socketPath.isEmpty {
                if try authenticateWithAgent(session, deadline: deadline, reasons: &reasons) { return }
            } else {
                reasons.append("ssh-agent requested but SSH_AUTH_SOCK is not set")
            }
        }
        if reasons.isEmpty { reasons.append("no identity file or ssh-agent configured") }
        throw .authenticationFailed(host: host, user: user, reason: reasons.joined(separator: "; "))
    }

    /// Tries each agent identity in turn. The agent socket itself is local and blocking.
    private func authenticateWithAgent(
        _ session: SessionHandle, deadline: ContinuousClock.Instant, reasons: inout [String]
    )
        throws(SSHError) -> Bool
    {
        guard let agent = libssh2_agent_init(session.raw) else {
            reasons.append("ssh-agent: cannot initialise")
            return false
        }
        defer {
            libssh2_agent_disconnect(agent)
            libssh2_agent_free(agent)
        }
        if case .failed(_, let message) = session.check(Int(libssh2_agent_connect(agent))) {
            reasons.append("ssh-agent: \(message)")
            return false
        }
        if case .failed(_, let message) = session.check(Int(libssh2_agent_list_identities(agent))) {
            reasons.append("ssh-agent: \(message)")
            return false
        }
        var previous: UnsafeMutablePointer<libssh2_agent_publickey>?
        var tried = 0
        while true {
            var identity: UnsafeMutablePointer<libssh2_agent_publickey>?
            let rc = libssh2_agent_get_identity(agent, &identity, previous)
            guard rc == 0, let identity else { break }
            previous = identity
            tried += 1
            do {
                try blockingCall("ssh-agent authentication", deadline: deadline) {
                    libssh2_agent_userauth(agent, endpoint.user, identity)
                }
                return true
            } catch {
                guard case .authenticationFailed = error else { throw error }
            }
        }
        reasons.append(tried == 0 ? "ssh-agent holds no keys" : "ssh-agent: none of its \(tried) keys was accepted")
        return false
    }

    // MARK: loop thread: running

    /// Operations call this when a libssh2 failure concerns the whole session.
    func sessionFailed(_ error: SSHError) {
        if fatal == nil { fatal = error }
    }

    /// Claims the session-wide channel-open slot; true if `op` holds it.
    func claimOpenSlot(_ op: AnyObject) -> Bool {
        let id = ObjectIdentifier(op)
        if openSlot == nil { openSlot = id }
        return openSlot == id
    }

    func releaseOpenSlot(_ op: AnyObject) {
        if openSlot == ObjectIdentifier(op) { openSlot = nil }
    }

    private func run() {
        guard let session else { return }
        var nextKeepalive = ContinuousClock.now
        while true {
            let (incoming, shutdown) = shared.withLock { s in
                let ops = s.incoming
                s.incoming = []
                return (ops, s.shutdown)
            }
            queued.append(contentsOf: incoming)
            if shutdown {
                fatal = fatal ?? .closed(host: host)
                return
            }
            while active.count < options.maxChannels, !queued.isEmpty {
                active.append(queued.removeFirst())
            }

            var progressed = false
            for op in active {
                let id = ObjectIdentifier(op)
                if let owner = sendOwner, owner != id { continue }
                let result = op.step(self)
                if fatal != nil { return }
                switch result {
                case .finished:
                    active.removeAll { ObjectIdentifier($0) == id }
                    if openSlot == id { openSlot = nil }
                    if sendOwner == id { sendOwner = nil }
                    progressed = true
                case .progressed:
                    progressed = true
                case .waiting:
                    break
                }
                if session.outboundBlocked {
                    if result != .finished { sendOwner = id }
                    break
                } else if sendOwner == id {
                    sendOwner = nil
                }
            }
            if fatal != nil { return }
            if progressed { continue }

            // Keepalive only with nothing half sent and room in the socket's send buffer: libssh2 builds the
            // keepalive in a stack buffer and, when it is only partly sent, never repeats it (it counts it as
            // sent), so nothing else could be sent on the session after it.
            let now = ContinuousClock.now
            if options.keepaliveInterval != nil, sendOwner == nil, !session.outboundBlocked, now >= nextKeepalive,
                Socket.writable(socketFD)
            {
                var seconds: Int32 = 0
                switch session.check(Int(libssh2_keepalive_send(session.raw, &seconds))) {
                case .failed(let code, let message):
                    sessionFailed(lostConnection(code: code, message: message, step: "keepalive"))
                    return
                case .ok, .again:
                    if session.outboundBlocked {
                        sessionFailed(
                            .connectionLost(
                                host: host,
                                reason: "the connection stopped taking data (a keepalive was only partly sent)"))
                        return
                    }
                    nextKeepalive = now + .seconds(max(1, Int(seconds)))
                }
            }
            if !waitForEvents(session: session, keepaliveAt: options.keepaliveInterval == nil ? nil : nextKeepalive) {
                return
            }
        }
    }

    /// Maps a session-level libssh2 failure.
    func lostConnection(code: Int32, message: String, step: String) -> SSHError {
        switch code {
        case -1, -7, -13, -30, -43, -45:
            .connectionLost(host: host, reason: message)
        case -9:
            // LIBSSH2_ERROR_TIMEOUT: libssh2 waited 60 s (LIBSSH2_READ_TIMEOUT) for the server's answer to a
            // request (a channel open, a channel request) and none came: the node or the path to it is gone.
            .connectionLost(host: host, reason: "no answer from the server for 60 s while \(step)")
        default:
            .libssh2(host: host, step: step, code: code, message: message)
        }
    }

    /// Sleeps in poll() until the socket, the wake-up pipe, an operation's descriptor or a deadline
    /// calls. Returns false when the connection is found dead.
    private func waitForEvents(session: SessionHandle, keepaliveAt: ContinuousClock.Instant?) -> Bool {
        var events: Int16 = 0
        if active.contains(where: { $0.wantsInbound }) { events |= Socket.pollIn }
        if session.outboundBlocked { events |= Socket.pollOut }
        if !peerClosedSeen { events |= Socket.pollPeerClosed }
        var fds = [
            pollfd(fd: socketFD, events: events, revents: 0), pollfd(fd: wake.read, events: Socket.pollIn, revents: 0),
        ]
        for op in active {
            if let extra = op.extraPoll { fds.append(pollfd(fd: extra.fd, events: extra.events, revents: 0)) }
        }
        var deadline = keepaliveAt
        for op in active {
            if let d = op.deadline, deadline.map({ d < $0 }) ?? true { deadline = d }
        }
        let n = poll(&fds, nfds_t(fds.count), Socket.pollTimeout(until: deadline))
        if n <= 0 { return true }
        if fds[1].revents != 0 { Socket.drain(wake.read) }
        let socketEvents = fds[0].revents
        if socketEvents & (Socket.pollPeerClosed | Socket.pollErrors) != 0 {
            peerClosedSeen = true
            if active.isEmpty || socketEvents & Int16(POLLNVAL) != 0 {
                sessionFailed(.connectionLost(host: host, reason: "the server closed the connection"))
                return false
            }
        }
        return true
    }

    private func teardown() {
        let error = fatal ?? shared.withLock { $0.dead } ?? .closed(host: host)
        for op in active + queued { op.abort(error) }
        active = []
        queued = []
        let late = shared.withLock { s in
            if s.dead == nil { s.dead = error }
            let ops = s.incoming
            s.incoming = []
            return ops
        }
        for op in late { op.abort(error) }
        if let session {
            // Best effort, one try: the peer may be gone.
            if case .closed = error { _ = cssh2_session_disconnect(session.raw, "closing") }
        }
        session = nil  // frees the session and any channels left
        if socketFD >= 0 { close(socketFD) }
        socketFD = -1
        logger.debug("ssh session ended", metadata: ["host": "\(host)", "reason": "\(error.message)"])
        let waiters = shared.withLock { s in
            s.ended = true
            let w = s.endWaiters
            s.endWaiters = []
            return w
        }
        for w in waiters { w.resume() }
    }
}
