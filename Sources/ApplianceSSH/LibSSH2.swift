internal import CLibSSH2
import Foundation

/// Process-wide libssh2 setup: `libssh2_init` runs exactly once (Swift runs global initialisers once,
/// thread-safely) before the first session is created, and is never undone.
enum LibSSH2 {
    private static let initResult: Int32 = libssh2_init(0)

    static func ensureInitialized(host: String) throws(SSHError) {
        if initResult != 0 {
            throw .libssh2(host: host, step: "libssh2_init", code: initResult, message: "library initialisation failed")
        }
    }

    static let eagain = Int(cssh2_error_eagain())
}

/// The outcome of one libssh2 call, classified by `SessionHandle.check`.
enum CallOutcome {
    case ok(Int)
    /// LIBSSH2_ERROR_EAGAIN: call again with the same arguments once the socket is ready.
    case again
    case failed(code: Int32, message: String)

    /// Transport-level failures end the connection (socket errors, MAC/decrypt/protocol errors, and
    /// BAD_USE, which means libssh2's send state can no longer be trusted); every other failure ends
    /// only the operation whose call failed. -1 (SOCKET_NONE) is not among them: libssh2 1.10 also
    /// uses it for "the packet I waited for is not there".
    static func isChannelLevel(_ code: Int32) -> Bool {
        ![-2, -3, -4, -5, -6, -7, -8, -9, -12, -13, -14, -30, -39, -43, -44, -45].contains(code)
    }
}

/// Owner of one `LIBSSH2_SESSION *`.
///
/// Threading contract: created, used and freed only on its `SessionLoop`'s thread. It is not Sendable.
final class SessionHandle {
    let raw: OpaquePointer
    let host: String

    init(host: String) throws(SSHError) {
        try LibSSH2.ensureInitialized(host: host)
        guard let raw = cssh2_session_init() else {
            throw .libssh2(host: host, step: "session init", code: -6, message: "out of memory")
        }
        self.raw = raw
        self.host = host
        libssh2_session_set_blocking(raw, 0)
    }

    deinit { libssh2_session_free(raw) }

    /// THE place where libssh2 return codes are interpreted. It reads `libssh2_session_last_error`
    /// in the same synchronous frame as the call that produced `rc`, before any other libssh2 call.
    func check(_ rc: Int) -> CallOutcome {
        if rc >= 0 { return .ok(rc) }
        if rc == LibSSH2.eagain { return .again }
        var messagePointer: UnsafePointer<CChar>?
        let code = cssh2_session_last_error(raw, &messagePointer)
        var message = messagePointer.map { String(cString: $0) } ?? ""
        if message.isEmpty { message = "error \(rc)" }
        // libssh2 keeps the first code of a failure chain; prefer the one returned when they differ.
        return .failed(code: code != 0 ? code : Int32(rc), message: message.lowercased())
    }

    /// For calls that return a pointer: NULL is classified by the session's last errno, through `check`.
    func check(pointer: OpaquePointer?) -> (OpaquePointer?, CallOutcome) {
        if let pointer { return (pointer, .ok(0)) }
        let rc = Int(libssh2_session_last_errno(raw))
        return (nil, check(rc == 0 ? -1 : rc))
    }

    /// True while a partly sent packet waits in libssh2's transport layer: until it is completed by
    /// repeating the very call that started it, no other call may send.
    var outboundBlocked: Bool {
        libssh2_session_block_directions(raw) & cssh2_session_block_outbound() != 0
    }

    var inboundBlocked: Bool {
        libssh2_session_block_directions(raw) & cssh2_session_block_inbound() != 0
    }
}
