import ApplianceBundle
import ApplianceSSH
import Foundation

/// Runs shell on one node over the pool's connection (wrapped in `sudo -n` where the site asks), for the
/// steps that change a node. Scripts are POSIX sh; what they read from stdin never appears in a command
/// line, a log or an error (that is how secrets reach a node).
public struct NodeRunner: Sendable {
    public let name: String
    public let address: String
    public let pool: SSHPool
    public let endpoint: SSHEndpoint

    public init(name: String, address: String, pool: SSHPool, endpoint: SSHEndpoint) {
        self.name = name
        self.address = address
        self.pool = pool
        self.endpoint = endpoint
    }

    /// Runs `script` and returns its stdout; a non-zero exit throws `ClusterError.node` naming `label` and
    /// the end of stderr. `label` names the command in errors and logs (the script may hold secrets).
    @discardableResult
    public func run(
        _ script: String, stdin: [UInt8]? = nil, label: String, timeout: Duration = .seconds(600)
    ) async throws -> String {
        let out = try await output(script, stdin: stdin, label: label, timeout: timeout)
        guard out.exit.succeeded else {
            throw ClusterError.node(node: name, reason: Self.failure(label, out))
        }
        return out.stdoutText
    }

    /// Runs `script` and returns everything it produced, whatever its exit.
    public func output(
        _ script: String, stdin: [UInt8]? = nil, label: String, timeout: Duration = .seconds(600)
    ) async throws -> CommandOutput {
        try await pool.run(
            endpoint, "set -u\n" + script, stdin: stdin.map { .bytes($0) } ?? .none, timeout: timeout, label: label)
    }

    /// Whether `script` exits 0 (a probe: an unreachable node throws).
    public func succeeds(_ script: String, label: String, timeout: Duration = .seconds(60)) async throws -> Bool {
        try await output(script, label: label, timeout: timeout).exit.succeeded
    }

    static func failure(_ label: String, _ out: CommandOutput) -> String {
        let err = out.stderrText.split(separator: "\n", omittingEmptySubsequences: true).suffix(6)
            .joined(separator: "\n    ")
        let text = err.isEmpty ? out.stdoutText.split(separator: "\n").suffix(4).joined(separator: "\n    ") : err
        return "\(label) failed (\(out.exit))" + (text.isEmpty ? "" : ":\n    \(text)")
    }
}

extension NodeRunner {
    /// The files whose content or mode on the node differs from `files` (missing ones included).
    public func differing(_ files: [NodeFile]) async throws -> [NodeFile] {
        guard !files.isEmpty else { return [] }
        var script = ""
        for (i, f) in files.enumerated() {
            let p = shellQuote(f.path)
            script += """
                if [ -f \(p) ] && [ "$(sha256sum < \(p) | cut -d' ' -f1)" = \(f.sha256) ] \
                  && [ "$(stat -c '%a %U:%G' \(p))" = \(shellQuote("\(String(f.mode, radix: 8)) \(f.owner)")) ]; then :; else echo \(i); fi

                """
        }
        let out = try await run(script, label: "check files")
        let indexes = Set(out.split(separator: "\n").compactMap { Int($0) })
        return files.enumerated().filter { indexes.contains($0.offset) }.map(\.element)
    }

    /// Writes each file atomically (a temporary file beside it, then rename), creating its directory.
    public func write(_ files: [NodeFile]) async throws {
        for f in files {
            let p = shellQuote(f.path)
            try await run(
                """
                d=$(dirname \(p)); [ -d "$d" ] || (umask 022 && mkdir -p "$d") || exit 3
                umask 077; cat > \(p).appliance-new && chmod \(f.octalMode) \(p).appliance-new \\
                  && chown \(shellQuote(f.owner)) \(p).appliance-new && mv -f \(p).appliance-new \(p)
                """, stdin: Array(f.content.utf8), label: "write \(f.path)")
        }
    }

    /// Writes the files that differ; returns their paths (empty when all were in place).
    @discardableResult
    public func ensure(_ files: [NodeFile]) async throws -> [String] {
        let changed = try await differing(files)
        try await write(changed)
        return changed.map(\.path)
    }
}
