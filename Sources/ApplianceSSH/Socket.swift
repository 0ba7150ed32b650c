import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Small POSIX socket helpers for the loop thread. All calls here may block only inside `poll`,
/// always with a deadline, and only on a `SessionLoop` thread, never on Swift's cooperative pool.
enum Socket {
    static let pollIn = Int16(POLLIN)
    static let pollOut = Int16(POLLOUT)
    static let pollErrors = Int16(POLLERR | POLLHUP | POLLNVAL)
    /// POLLRDHUP (Linux): the peer closed its side. Reported only if asked for.
    #if os(Linux)
        static let pollPeerClosed: Int16 = 0x2000
    #else
        static let pollPeerClosed: Int16 = 0
    #endif

    static func errnoText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code)).lowercased()
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var v = value
        _ = setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Milliseconds until `deadline` for poll (-1: none), at least 0.
    static func pollTimeout(until deadline: ContinuousClock.Instant?) -> Int32 {
        guard let deadline else { return -1 }
        let left = ContinuousClock.now.duration(to: deadline)
        if left <= .zero { return 0 }
        let ms = left.seconds * 1000
        return Int32(min(ms.rounded(.up), 60_000))
    }

    /// Resolves `host` and connects to the first address that answers, before `deadline`.
    /// `interrupted` is checked between polls (cancellation, shutdown); `wakeFD` interrupts a poll.
    static func connect(
        host: String, port: Int, deadline: ContinuousClock.Instant, wakeFD: Int32,
        interrupted: () -> SSHError?
    ) throws(SSHError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if os(Linux)
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
            hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw .unreachable(
                host: host, reason: "cannot resolve name: \(String(cString: gai_strerror(rc)).lowercased())")
        }
        defer { freeaddrinfo(list) }

        var lastReason = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            if fd < 0 {
                lastReason = errnoText()
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            setNonBlocking(fd)
            if Foundation.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                return tuned(fd)
            }
            guard errno == EINPROGRESS else {
                lastReason = errnoText()
                close(fd)
                continue
            }
            while true {
                if let error = interrupted() {
                    close(fd)
                    throw error
                }
                let timeout = pollTimeout(until: deadline)
                if timeout == 0 {
                    close(fd)
                    throw .unreachable(host: host, reason: "connect timed out")
                }
                var fds = [pollfd(fd: fd, events: pollOut, revents: 0), pollfd(fd: wakeFD, events: pollIn, revents: 0)]
                let n = poll(&fds, 2, timeout)
                if n < 0 && errno == EINTR { continue }
                if fds[1].revents != 0 { drain(wakeFD) }
                if fds[0].revents != 0 { break }
            }
            var soError: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len)
            if soError == 0 { return tuned(fd) }
            lastReason = errnoText(soError)
            close(fd)
        }
        throw .unreachable(host: host, reason: lastReason)
    }

    private static func tuned(_ fd: Int32) -> Int32 {
        setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
        setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
        #if os(Linux)
            setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, 30)
            setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, 10)
            setOption(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, 4)
        #endif
        return fd
    }

    /// A connected pair of non-blocking Unix stream sockets (jump-host plumbing).
    static func pair() throws(SSHError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        #if os(Linux)
            let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
            let type = SOCK_STREAM
        #endif
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else {
            throw .libssh2(host: "localhost", step: "socketpair", code: -1, message: errnoText())
        }
        setNonBlocking(fds[0])
        setNonBlocking(fds[1])
        for fd in fds {
            setOption(fd, SOL_SOCKET, SO_SNDBUF, 1 << 20)
            setOption(fd, SOL_SOCKET, SO_RCVBUF, 1 << 20)
        }
        return (fds[0], fds[1])
    }

    /// A non-blocking pipe used to wake a loop thread out of `poll`.
    static func wakePipe() throws(SSHError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else {
            throw .libssh2(host: "localhost", step: "pipe", code: -1, message: errnoText())
        }
        for fd in fds {
            setNonBlocking(fd)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        return (fds[0], fds[1])
    }

    static func closeFD(_ fd: Int32) { _ = close(fd) }

    /// Whether a send on `fd` would not block now (poll for POLLOUT without waiting).
    static func writable(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: pollOut, revents: 0)
        return poll(&p, 1, 0) == 1 && p.revents & pollOut != 0
    }

    static func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 256)
        while read(fd, &buffer, buffer.count) > 0 {}
    }
}
