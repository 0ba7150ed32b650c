import AppliancePlan
import ApplianceSSH
import Foundation

/// Copies an operation's journal to a node (the first control-plane node) so another admin host can see
/// and resume it: `DIR/<operation>.json` (written to a temporary name, then renamed) and `DIR/latest`.
///
/// Best effort, as the executor expects: a failure is logged there and the operation goes on. Pushes are
/// coalesced to at most one every `interval` while the operation runs; the final state is always pushed.
public actor NodeJournalMirror: JournalMirror {
    public static let defaultDirectory = "/var/lib/appliance/journal"

    let pool: SSHPool
    let endpoint: SSHEndpoint
    let directory: String
    let interval: Duration
    private var lastPush: ContinuousClock.Instant?

    public init(
        pool: SSHPool, endpoint: SSHEndpoint, directory: String = defaultDirectory, interval: Duration = .seconds(1)
    ) {
        self.pool = pool
        self.endpoint = endpoint
        self.directory = directory
        self.interval = interval
    }

    public func journalDidChange(_ journal: Journal, operation: String) async throws {
        let running = (try journal.operation(operation))?.state == .running
        let now = ContinuousClock.now
        if running, let last = lastPush, now - last < interval { return }
        lastPush = now
        let data = try journal.exportJSON(operation: operation)
        let file = "\(directory)/\(operation).json"
        let command = """
            set -e; mkdir -p \(shellQuote(directory)); chmod 700 \(shellQuote(directory)); \
            cat > \(shellQuote(file + ".tmp")); mv \(shellQuote(file + ".tmp")) \(shellQuote(file)); \
            printf '%s\\n' \(shellQuote(operation)) > \(shellQuote(directory + "/latest.tmp")); \
            mv \(shellQuote(directory + "/latest.tmp")) \(shellQuote(directory + "/latest"))
            """
        let out = try await pool.run(
            endpoint, command, stdin: .bytes(Array(data)), timeout: .seconds(30), label: "journal mirror")
        guard out.exit.succeeded else {
            throw ClusterError.node(node: endpoint.host, reason: "journal mirror: \(out.stderrText)")
        }
    }

    /// Every journal copy on the node (operation exports), newest operation last.
    public static func fetch(pool: SSHPool, endpoint: SSHEndpoint, directory: String = defaultDirectory) async throws
        -> [Data]
    {
        // Each copy is framed by its byte count, so any JSON layout survives the trip.
        let cmd = """
            d=\(shellQuote(directory)); [ -d "$d" ] || exit 0; for f in $(ls -tr "$d"/*.json 2>/dev/null); do \
            printf '%s\\n' "@@appliance-journal $(wc -c < "$f")"; cat "$f"; printf '\\n'; done
            """
        let out = try await pool.run(endpoint, cmd, timeout: .seconds(60), label: "journal copies")
        guard out.exit.succeeded else {
            throw ClusterError.node(node: endpoint.host, reason: "reading journal copies: \(out.stderrText)")
        }
        var result: [Data] = []
        var bytes = out.stdout[...]
        let marker = Array("@@appliance-journal ".utf8)
        while bytes.starts(with: marker) {
            guard let nl = bytes.firstIndex(of: 0x0A),
                let n = Int(String(decoding: bytes[bytes.startIndex + marker.count..<nl], as: UTF8.self))
            else { break }
            let start = nl + 1
            guard start + n <= bytes.endIndex else { break }
            result.append(Data(bytes[start..<start + n]))
            bytes = bytes[(start + n + 1 < bytes.endIndex ? start + n + 1 : bytes.endIndex)...]
        }
        return result
    }
}
