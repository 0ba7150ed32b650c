import ApplianceSSH

/// Runs collector scripts on a node over SSH: the script goes to `sh -s` on stdin, wrapped in the node's
/// `timeout(1)` so a hung collector is killed on the node, not only abandoned here.
public struct SSHNodeShell: NodeShell {
    public let pool: SSHPool
    public let endpoint: SSHEndpoint

    public init(pool: SSHPool, endpoint: SSHEndpoint) {
        self.pool = pool
        self.endpoint = endpoint
    }

    public func run(script: String, timeout: Duration) async throws -> NodeShellResult {
        let seconds = max(1, Int(timeout.components.seconds))
        // The node kills the script at the limit; the channel gets two more seconds to report that. The
        // login shell execs timeout (no shell process waiting beside the collector on every node).
        let command = "exec timeout -s KILL \(seconds) sh -s"
        do {
            let out = try await pool.run(
                endpoint, command, stdin: .bytes(Array(script.utf8)), timeout: timeout + .seconds(2),
                label: "preflight collector")
            if out.exit.status == 137 || out.exit.signal == "KILL" { throw NodeShellError.timedOut(timeout) }
            return NodeShellResult(stdout: out.stdoutText, stderr: out.stderrText, exitCode: out.exit.status ?? -1)
        } catch let e as SSHError {
            switch e.category {
            case .unreachable, .authentication, .hostKey: throw NodeShellError.unreachable(e.message)
            case .remote:
                if case .timeout = e { throw NodeShellError.timedOut(timeout) }
                throw NodeShellError.failed(e.message)
            case .cancelled: throw CancellationError()
            case .internal: throw NodeShellError.failed(e.message)
            }
        }
    }
}
