import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Who holds (or held) a cluster lock.
public struct LockHolder: Sendable, Codable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var host: String
    public var operation: String?
    public var startedAt: Date

    public var description: String {
        var s = "pid \(pid) on \(host)"
        if let operation { s += " (operation \(operation)" } else { s += " (no operation yet" }
        s += ", since \(ISO8601DateFormatter().string(from: startedAt)))"
        return s
    }

    static let unknown = LockHolder(
        pid: 0, host: "unknown host", operation: nil, startedAt: Date(timeIntervalSince1970: 0))
}

/// One operation at a time per cluster: a lock file `<state>/locks/<cluster>.lock` held with
/// `flock(LOCK_EX)` for the life of this object, containing the holder (pid, host, operation, start
/// time) as JSON.
///
/// The kernel drops the flock when the holder dies, but the file keeps its content: a lock whose flock is
/// free while the file still names a holder on this host is *stale*. The free flock proves that holder
/// dead (a SIGKILL, a crashed laptop), so `acquire` takes the lock over at once and reports the previous
/// holder in `tookOverFrom` (the caller marks that holder's operation interrupted); no `plan unlock` is
/// needed. A holder named on another host (a state directory shared between admin hosts) cannot be
/// verified from here and is reported as held unless broken with `breakStaleLock(force:)`.
///
/// Threading: the file descriptor is owned by this object and closed in `release`/`deinit`; `release`
/// may be called from any thread once.
public final class ClusterLock: @unchecked Sendable {
    // @unchecked: `fd` and `holder` are only changed under `lock`.
    public let path: String
    public let cluster: String
    public private(set) var holder: LockHolder
    /// The holder named in the file when this lock was taken over from a process that had died.
    public let tookOverFrom: LockHolder?
    private var fd: Int32
    private let lock = NSLock()

    private init(path: String, cluster: String, fd: Int32, holder: LockHolder, tookOverFrom: LockHolder?) {
        self.path = path
        self.cluster = cluster
        self.fd = fd
        self.holder = holder
        self.tookOverFrom = tookOverFrom
    }

    deinit { release() }

    /// The lock file's path for a cluster.
    public static func path(stateDirectory: URL, cluster: String) -> String {
        let safe = String(cluster.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
        return stateDirectory.appendingPathComponent("locks").appendingPathComponent("\(safe).lock").path
    }

    /// Takes the lock or throws `lockHeld` naming the holder. Never blocks. A lock left by a dead process of
    /// this host is taken over (`tookOverFrom` names it).
    public static func acquire(stateDirectory: URL, cluster: String, operation: String? = nil) throws -> ClusterLock {
        let path = path(stateDirectory: stateDirectory, cluster: cluster)
        let fd = try openLockFile(path)
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            let holder = readHolder(fd)
            close(fd)
            if e == EWOULDBLOCK || e == EAGAIN {
                throw PlanError.lockHeld(cluster: cluster, holder: holder ?? .unknown, path: path)
            }
            throw PlanError.lockIO(path: path, operation: "flock", errno: e)
        }
        let previous = readHolder(fd)
        if let previous, previous.host != currentHost() {
            close(fd)  // also drops the flock
            throw PlanError.lockHeld(cluster: cluster, holder: previous, path: path)
        }
        let holder = LockHolder(pid: getpid(), host: currentHost(), operation: operation, startedAt: Date())
        do {
            try writeHolder(holder, fd: fd, path: path)
        } catch {
            close(fd)
            throw error
        }
        return ClusterLock(path: path, cluster: cluster, fd: fd, holder: holder, tookOverFrom: previous)
    }

    /// Who holds the lock now, without taking it: nil when free. `isStale` is true when the holder is gone.
    public static func inspect(stateDirectory: URL, cluster: String) throws -> (holder: LockHolder, isStale: Bool)? {
        let path = path(stateDirectory: stateDirectory, cluster: cluster)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let fd = try openLockFile(path)
        defer { close(fd) }
        let held = flock(fd, LOCK_SH | LOCK_NB) != 0
        guard let holder = readHolder(fd) else { return nil }
        return (holder, !held && holder.host == currentHost())
    }

    /// Clears a stale lock and returns the holder it named (nil when there was nothing to clear).
    /// A live holder is never broken (`lockHeld`); a holder on another host only with `force`.
    @discardableResult
    public static func breakStaleLock(stateDirectory: URL, cluster: String, force: Bool = false) throws -> LockHolder? {
        let path = path(stateDirectory: stateDirectory, cluster: cluster)
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let fd = try openLockFile(path)
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            throw PlanError.lockHeld(cluster: cluster, holder: readHolder(fd) ?? .unknown, path: path)
        }
        guard let holder = readHolder(fd) else { return nil }
        if holder.host != currentHost() && !force {
            throw PlanError.lockHeld(cluster: cluster, holder: holder, path: path)
        }
        if ftruncate(fd, 0) != 0 || fsync(fd) != 0 {
            throw PlanError.lockIO(path: path, operation: "truncate", errno: errno)
        }
        return holder
    }

    /// Records the operation id once it is known.
    public func update(operation: String) throws {
        try lock.withLock {
            guard fd >= 0 else { return }
            holder.operation = operation
            try Self.writeHolder(holder, fd: fd, path: path)
        }
    }

    /// Empties the file and drops the flock. Idempotent.
    public func release() {
        lock.withLock {
            guard fd >= 0 else { return }
            _ = ftruncate(fd, 0)
            _ = fsync(fd)
            _ = flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    // MARK: Internals

    static func isAlive(_ pid: Int32) -> Bool { pid > 0 && (kill(pid, 0) == 0 || errno == EPERM) }

    /// This machine's host name, as lock holders record it.
    public static func currentHostName() -> String { currentHost() }

    static func currentHost() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func openLockFile(_ path: String) throws -> Int32 {
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { throw PlanError.lockIO(path: path, operation: "open", errno: errno) }
        return fd
    }

    private static func readHolder(_ fd: Int32) -> LockHolder? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        var offset: off_t = 0
        while true {
            let n = pread(fd, &buffer, buffer.count, offset)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
            offset += off_t(n)
            if data.count > 65536 { break }
        }
        guard !data.isEmpty else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return (try? decoder.decode(LockHolder.self, from: data)) ?? .unknown
    }

    private static func writeHolder(_ holder: LockHolder, fd: Int32, path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        let bytes = [UInt8]((try? encoder.encode(holder)) ?? Data()) + [0x0A]
        guard ftruncate(fd, 0) == 0 else { throw PlanError.lockIO(path: path, operation: "truncate", errno: errno) }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == bytes.count else { throw PlanError.lockIO(path: path, operation: "write", errno: errno) }
        guard fsync(fd) == 0 else { throw PlanError.lockIO(path: path, operation: "fsync", errno: errno) }
    }
}
