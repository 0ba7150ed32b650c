import ApplianceModel
import ApplianceSSH
import Foundation

/// Who holds the cluster-side lock: the admin host (its name and the id of its state directory), the
/// process, the operation and when it started. `heartbeatAge` is measured on the node's own clock (seconds
/// since the holder last refreshed the lock), so clock skew between admin hosts does not matter.
public struct NodeLockHolder: Sendable, Codable, Equatable, CustomStringConvertible {
    /// The admin host's identity: a random id kept in its state directory, so two admin hosts with the
    /// same host name (or two state directories on one machine) are told apart.
    public var admin: String
    public var host: String
    public var pid: Int32
    public var operation: String?
    public var startedAt: Date
    /// A fresh random value per acquisition: heartbeats and release touch the lock only while it is theirs.
    public var token: String
    /// Seconds since the last heartbeat, on the node's clock; not stored, filled in when read.
    public var heartbeatAge: Int?

    public init(admin: String, host: String, pid: Int32, operation: String?, startedAt: Date, token: String) {
        self.admin = admin
        self.host = host
        self.pid = pid
        self.operation = operation
        self.startedAt = startedAt
        self.token = token
    }

    public var description: String {
        var s = "pid \(pid) on admin host \(host)"
        s += operation.map { " (operation \($0)" } ?? " (no operation yet"
        s += ", since \(ISO8601DateFormatter().string(from: startedAt))"
        if let heartbeatAge { s += ", last heartbeat \(heartbeatAge) s ago" }
        return s + ")"
    }

    static let unknown = NodeLockHolder(
        admin: "unknown", host: "an unknown admin host", pid: 0, operation: nil,
        startedAt: Date(timeIntervalSince1970: 0),
        token: "")
}

/// Refusals of the cluster-side lock.
public enum NodeLockError: ApplianceFailure, Equatable {
    /// Another admin host holds the lock and its heartbeat is recent.
    case held(cluster: String, node: String, holder: NodeLockHolder)
    /// Another admin host holds the lock but stopped refreshing it.
    case stale(cluster: String, node: String, holder: NodeLockHolder)
    /// The node answered, but not as expected (permissions, a full disk).
    case io(node: String, reason: String)

    public var message: String {
        switch self {
        case let .held(c, n, h): "cluster '\(c)' is locked on \(n) by \(h)"
        case let .stale(c, n, h):
            "cluster '\(c)' has a stale lock on \(n) left by \(h), which stopped refreshing it"
        case let .io(n, r): "\(n): cluster lock: \(r)"
        }
    }

    public var hint: String? {
        switch self {
        case .held:
            "wait for that operation to finish; if that admin host is gone for good, run `appliance plan unlock -i SITE --force`"
        case .stale:
            "make sure that admin host is no longer running an operation, then run `appliance plan unlock -i SITE`"
        case .io: "check that the node's /var/lib/appliance is writable by the SSH user"
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .held, .stale: .locked
        case .io: .remoteCommandFailed
        }
    }
}

/// The cluster-side half of the cluster lock: a directory created with an atomic `mkdir` on the first
/// control-plane node (default `/var/lib/appliance/lock`), holding `holder` (JSON: admin id, host, pid,
/// operation, start, token). The holder refreshes the file's modification time every `heartbeat`; a lock
/// not refreshed for `staleAfter` (by the node's clock) is *stale*.
///
/// Together with the admin host's `ClusterLock` (which keeps two processes on one admin host apart),
/// this keeps two admin hosts from running operations on one cluster at once.
///
/// - `acquire` takes a free lock. A lock held by this same admin id is taken over: the caller holds this
///   admin host's local lock, so no other process of this admin host can be running (it crashed). A lock of
///   another admin host is refused, `held` or `stale`.
/// - `breakLock` removes a lock: a stale one or this admin host's own, or any with `force`.
///
/// Threading: an actor; every node command goes through the shared `SSHPool`.
public actor NodeClusterLock {
    public static let defaultDirectory = "/var/lib/appliance/lock"
    public static let defaultStaleAfter: Duration = .seconds(120)
    public static let defaultHeartbeat: Duration = .seconds(10)

    public nonisolated let pool: SSHPool
    public nonisolated let endpoint: SSHEndpoint
    public nonisolated let node: String
    public nonisolated let cluster: String
    public nonisolated let directory: String
    public nonisolated let staleAfter: Duration
    public private(set) var holder: NodeLockHolder?

    public init(
        pool: SSHPool, endpoint: SSHEndpoint, node: String, cluster: String, directory: String = defaultDirectory,
        staleAfter: Duration = defaultStaleAfter
    ) {
        self.pool = pool
        self.endpoint = endpoint
        self.node = node
        self.cluster = cluster
        self.directory = directory
        self.staleAfter = staleAfter
    }

    /// What `acquire` did.
    public enum Acquired: Sendable, Equatable {
        case free
        /// A lock of this admin host left by a process that died (the local lock proves it).
        case tookOverOwn(NodeLockHolder)
    }

    /// Takes the lock for `holder` or throws `NodeLockError` (held, stale) or an SSH error (unreachable).
    @discardableResult
    public func acquire(_ holder: NodeLockHolder) async throws -> Acquired {
        let json = try Self.encode(holder)
        let d = shellQuote(directory)
        // mkdir is atomic: of two admin hosts, exactly one creates the directory.
        let cmd = """
            d=\(d); mkdir -p "$(dirname "$d")" || exit 3
            if mkdir "$d" 2>/dev/null; then
              cat > "$d/holder.tmp" && mv "$d/holder.tmp" "$d/holder" && echo acquired; exit $?
            fi
            \(Self.reportHeld)
            """
        let text = try await run(cmd, stdin: json, label: "cluster lock")
        if text.hasPrefix("acquired") {
            self.holder = holder
            return .free
        }
        let current = Self.parseHeld(text)
        if current.admin == holder.admin {
            try await replace(token: current.token, with: holder)
            self.holder = holder
            return .tookOverOwn(current)
        }
        if Self.isStale(current, after: staleAfter) {
            throw NodeLockError.stale(cluster: cluster, node: node, holder: current)
        }
        throw NodeLockError.held(cluster: cluster, node: node, holder: current)
    }

    /// Who holds the lock, or nil when it is free.
    public func inspect() async throws -> NodeLockHolder? {
        let d = shellQuote(directory)
        let cmd = """
            d=\(d); [ -d "$d" ] || { echo free; exit 0; }
            \(Self.reportHeld)
            """
        let text = try await run(cmd, label: "cluster lock")
        return text.hasPrefix("free") ? nil : Self.parseHeld(text)
    }

    /// Refreshes the lock's heartbeat while it is ours. Returns false when the lock is no longer ours
    /// (it was broken, and perhaps taken by another admin host).
    public func heartbeat() async throws -> Bool {
        guard let holder else { return false }
        let text = try await run(
            "h=\(shellQuote(directory + "/holder")); grep -qF \(shellQuote(holder.token)) \"$h\" 2>/dev/null && touch \"$h\" && echo ours || echo lost",
            label: "cluster lock heartbeat")
        return text.hasPrefix("ours")
    }

    /// Refreshes the heartbeat every `interval` until cancelled; `lost` is called once if the lock stops
    /// being ours. Unreachable moments are logged by the caller's `failed` and retried next time.
    public func keepAlive(
        every interval: Duration = defaultHeartbeat, lost: @Sendable () -> Void, failed: @Sendable (any Error) -> Void
    ) async {
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: interval)
            } catch { return }
            do {
                if try await !heartbeat() {
                    lost()
                    return
                }
            } catch {
                if Task.isCancelled { return }
                failed(error)
            }
        }
    }

    /// Updates the holder (the operation id once known). Only while the lock is ours.
    public func update(operation: String) async throws {
        guard var holder else { return }
        holder.operation = operation
        try await replace(token: holder.token, with: holder)
        self.holder = holder
    }

    /// Removes the lock if it is still ours. Idempotent.
    public func release() async throws {
        guard let holder else { return }
        let d = shellQuote(directory)
        _ = try await run(
            "d=\(d); if grep -qF \(shellQuote(holder.token)) \"$d/holder\" 2>/dev/null; then rm -rf \"$d\"; fi; exit 0",
            label: "cluster lock release")
        self.holder = nil
    }

    /// Removes the lock and returns who held it (nil: it was free). A lock of another admin host that
    /// is not stale is refused with `held` unless `force`.
    @discardableResult
    public func breakLock(admin: String, force: Bool) async throws -> NodeLockHolder? {
        guard let current = try await inspect() else { return nil }
        if !force && current.admin != admin && !Self.isStale(current, after: staleAfter) {
            throw NodeLockError.held(cluster: cluster, node: node, holder: current)
        }
        let d = shellQuote(directory)
        // Moved aside first, so a lock taken in the meantime by someone else is never half-deleted.
        let guardToken = current.token.isEmpty ? "" : "grep -qF \(shellQuote(current.token)) \"$d/holder\" || exit 0; "
        _ = try await run(
            "d=\(d); [ -d \"$d\" ] || exit 0; \(guardToken)mv \"$d\" \"$d.broken.$$\" && rm -rf \"$d.broken.$$\"",
            label: "cluster lock break")
        return current
    }

    // MARK: Internals

    private func replace(token: String, with holder: NodeLockHolder) async throws {
        let d = shellQuote(directory)
        let guardToken = token.isEmpty ? "" : "grep -qF \(shellQuote(token)) \"$d/holder\" || { echo lost; exit 0; }; "
        let text = try await run(
            "d=\(d); [ -d \"$d\" ] || { echo lost; exit 0; }; \(guardToken)cat > \"$d/holder.tmp\" && mv \"$d/holder.tmp\" \"$d/holder\" && echo ok",
            stdin: try Self.encode(holder), label: "cluster lock")
        guard text.hasPrefix("ok") else {
            throw NodeLockError.io(node: node, reason: "the lock changed hands while it was being updated")
        }
    }

    private func run(_ command: String, stdin: [UInt8]? = nil, label: String) async throws -> String {
        let out = try await pool.run(
            endpoint, command, stdin: stdin.map { .bytes($0) } ?? .none, timeout: .seconds(30), label: label)
        guard out.exit.succeeded else {
            let err = out.stderrText.trimmingCharacters(in: .whitespacesAndNewlines)
            throw NodeLockError.io(node: node, reason: err.isEmpty ? "\(label) exited \(out.exit)" : err)
        }
        return out.stdoutText
    }

    /// Shell (with `d` the lock directory) printing what `parseHeld` reads: `held AGE`, then the holder's JSON.
    static let reportHeld = """
        h="$d/holder"; [ -f "$h" ] || h="$d"
        echo "held $(( $(date +%s) - $(stat -c %Y "$h") ))"; cat "$d/holder" 2>/dev/null; exit 0
        """

    static func isStale(_ holder: NodeLockHolder, after limit: Duration) -> Bool {
        guard let age = holder.heartbeatAge else { return false }
        return Int64(age) > limit.components.seconds
    }

    static func encode(_ holder: NodeLockHolder) throws -> [UInt8] {
        var stored = holder
        stored.heartbeatAge = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return Array(try encoder.encode(stored)) + [0x0A]
    }

    /// `held AGE` then the holder's JSON (absent when a holder died between mkdir and writing it).
    static func parseHeld(_ text: String) -> NodeLockHolder {
        let lines = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        let age = lines.first.flatMap { Int($0.dropFirst("held ".count).trimmingCharacters(in: .whitespaces)) }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        var holder =
            lines.count > 1
            ? (try? decoder.decode(NodeLockHolder.self, from: Data(lines[1].utf8))) ?? .unknown : .unknown
        holder.heartbeatAge = age.map { max(0, $0) }
        return holder
    }
}
