import Logging

/// Connections shared across the tasks of one run: one connection per endpoint, reused by every
/// command to that endpoint, replaced when it breaks, and a bound on the commands in flight per host
/// and in total (extra callers wait, in order).
///
/// Jump hosts: the bastion is itself a pooled connection, shared by all the targets behind it.
public actor SSHPool {
    public let policy: HostKeyPolicy
    public let options: SSHOptions
    public let maxPerHost: Int
    public let maxTotal: Int
    private let logger: Logger

    private var connections: [SSHEndpoint: SSHConnection] = [:]
    private var connecting: [SSHEndpoint: Task<SSHConnection, any Error>] = [:]
    private var inUse: [SSHEndpoint: Int] = [:]
    private var total = 0
    private var waiters: [(id: UInt64, endpoint: SSHEndpoint, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextWaiterID: UInt64 = 0
    private var shutDown = false

    /// - Parameters:
    ///   - maxPerHost: commands in flight per endpoint; defaults to the connection's channel limit.
    ///   - maxTotal: commands in flight across all endpoints.
    public init(
        policy: HostKeyPolicy, options: SSHOptions = SSHOptions(), maxPerHost: Int? = nil, maxTotal: Int = 64,
        logger: Logger = Logger(label: "appliance.ssh")
    ) {
        self.policy = policy
        self.options = options
        self.maxPerHost = max(1, maxPerHost ?? options.maxChannels)
        self.maxTotal = max(1, maxTotal)
        self.logger = logger
    }

    /// The live connection for `endpoint`, connecting (or reconnecting) if needed. Concurrent callers
    /// share one connection attempt.
    public func connection(for endpoint: SSHEndpoint) async throws -> SSHConnection {
        if shutDown { throw SSHError.closed(host: endpoint.displayName) }
        if let existing = connections[endpoint] {
            if existing.isConnected { return existing }
            connections[endpoint] = nil
            logger.info("reconnecting", metadata: ["host": "\(endpoint.displayName)"])
            await existing.close()
        }
        if let pending = connecting[endpoint] { return try await pending.value }
        let bastion: SSHConnection?
        if let jump = endpoint.jump {
            bastion = try await connection(for: jump)
        } else {
            bastion = nil
        }
        let (policy, options, logger) = (self.policy, self.options, self.logger)
        let task = Task {
            try await SSHConnection.connect(
                to: endpoint, policy: policy, options: options, logger: logger, via: bastion)
        }
        connecting[endpoint] = task
        defer { connecting[endpoint] = nil }
        let connection = try await task.value
        if shutDown {
            await connection.close()
            throw SSHError.closed(host: endpoint.displayName)
        }
        connections[endpoint] = connection
        return connection
    }

    /// Runs `body` with the endpoint's connection while holding one of the endpoint's (and the pool's)
    /// command slots.
    public func withConnection<R: Sendable>(
        _ endpoint: SSHEndpoint, _ body: (SSHConnection) async throws -> R
    ) async throws -> R {
        try await acquire(endpoint)
        defer { release(endpoint) }
        let connection = try await connection(for: endpoint)
        return try await body(connection)
    }

    /// `SSHConnection.run` through the pool.
    public func run(
        _ endpoint: SSHEndpoint, _ command: String, stdin: SSHInput = .none, timeout: Duration? = nil,
        label: String? = nil
    ) async throws -> CommandOutput {
        try await withConnection(endpoint) { try await $0.run(command, stdin: stdin, timeout: timeout, label: label) }
    }

    /// Closes every connection; later calls fail with `SSHError.closed`.
    public func closeAll() async {
        shutDown = true
        for w in waiters { w.continuation.resume(throwing: SSHError.closed(host: w.endpoint.displayName)) }
        waiters = []
        let all = connections.values
        connections = [:]
        // Targets first, so bastions outlive the forwards running through them.
        for c in all where c.endpoint.jump != nil { await c.close() }
        for c in all where c.endpoint.jump == nil { await c.close() }
    }

    /// Number of open connections (for tests and status output).
    public var connectionCount: Int { connections.values.filter(\.isConnected).count }

    // MARK: slots

    private func available(_ endpoint: SSHEndpoint) -> Bool {
        total < maxTotal && inUse[endpoint, default: 0] < maxPerHost
    }

    private func acquire(_ endpoint: SSHEndpoint) async throws {
        if shutDown { throw SSHError.closed(host: endpoint.displayName) }
        if available(endpoint) && !waiters.contains(where: { $0.endpoint == endpoint }) {
            take(endpoint)
            return
        }
        nextWaiterID += 1
        let id = nextWaiterID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled {
                    c.resume(throwing: SSHError.cancelled(host: endpoint.displayName))
                } else {
                    waiters.append((id, endpoint, c))
                }
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func cancelWaiter(_ id: UInt64) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        let w = waiters.remove(at: index)
        w.continuation.resume(throwing: SSHError.cancelled(host: w.endpoint.displayName))
    }

    private func take(_ endpoint: SSHEndpoint) {
        total += 1
        inUse[endpoint, default: 0] += 1
    }

    private func release(_ endpoint: SSHEndpoint) {
        total -= 1
        inUse[endpoint, default: 1] -= 1
        // Wake the first waiters that now fit, in order.
        var index = 0
        while index < waiters.count, total < maxTotal {
            if available(waiters[index].endpoint) {
                let w = waiters.remove(at: index)
                take(w.endpoint)
                w.continuation.resume()
            } else {
                index += 1
            }
        }
    }
}
