import Foundation

/// The state of one step in an operation, as journaled.
public enum StepState: String, Sendable, Codable, CaseIterable {
    case planned, running, done, failed, undone, skipped, interrupted
}

/// The state of an operation, as journaled.
public enum OperationState: String, Sendable, Codable, CaseIterable {
    case running, succeeded, failed, interrupted
    case rolledBack = "rolled-back"
    case rollbackFailed = "rollback-failed"

    /// Whether `resume` may continue it.
    public var isResumable: Bool { self == .running || self == .failed || self == .interrupted }
}

/// One row of the `operations` table.
public struct OperationRecord: Sendable, Codable, Equatable {
    public var id: String
    /// What the operation does: install, upgrade, stage, drain...
    public var kind: String
    public var cluster: String
    public var bundleDigest: String?
    public var startedAt: Date
    public var finishedAt: Date?
    public var state: OperationState
}

/// One row of the `step_transitions` table: a step entered `state` at `time`.
public struct StepTransition: Sendable, Codable, Equatable {
    public var operation: String
    public var step: String
    public var node: String?
    public var state: StepState
    public var attempt: Int
    public var time: Date
    /// Redacted and bounded to `Journal.outputTailLimit` bytes.
    public var outputTail: String?
    /// Redacted.
    public var error: String?

    public init(
        operation: String, step: String, node: String?, state: StepState, attempt: Int = 0, time: Date = Date(),
        outputTail: String? = nil, error: String? = nil
    ) {
        self.operation = operation
        self.step = step
        self.node = node
        self.state = state
        self.attempt = attempt
        self.time = time
        self.outputTail = outputTail
        self.error = error
    }
}

/// Called by the executor after journal transitions so the journal can be copied elsewhere (the first
/// control-plane node). Best effort: errors are logged and the operation goes on. Implementations
/// should be quick or coalesce calls; the executor awaits them.
public protocol JournalMirror: Sendable {
    func journalDidChange(_ journal: Journal, operation: String) async throws
}

/// The crash-safe record of operations and step transitions: one SQLite database (WAL,
/// `synchronous=FULL`, busy timeout) under the state directory of the admin host.
///
/// Every text written (output tails, errors) goes through the `Redactor` first. Thread-safe: all
/// database work runs on one private serial queue; the `async` variants hop there without blocking
/// Swift's cooperative pool, the synchronous ones block the caller.
public final class Journal: @unchecked Sendable {
    // @unchecked: `db` is touched only on `queue`.
    public static let fileName = "journal.sqlite"
    public static let outputTailLimit = 4096
    static let errorLimit = 4096
    static let schemaVersion = 1

    public let path: String
    public let redactor: Redactor
    private let db: SQLiteDatabase
    private let queue = DispatchQueue(label: "appliance.plan.journal")

    /// Opens (or creates) `stateDirectory/journal.sqlite`, creating the directory if needed.
    public init(stateDirectory: URL, redactor: Redactor = Redactor()) throws {
        try? FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        self.path = stateDirectory.appendingPathComponent(Self.fileName).path
        self.redactor = redactor
        self.db = try SQLiteDatabase(path: path)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("PRAGMA foreign_keys=ON")
        try db.transaction {
            try db.execute(
                """
                CREATE TABLE IF NOT EXISTS operations(
                    id TEXT PRIMARY KEY,
                    kind TEXT NOT NULL,
                    cluster TEXT NOT NULL,
                    bundle_digest TEXT,
                    started_at REAL NOT NULL,
                    finished_at REAL,
                    state TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS step_transitions(
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    operation_id TEXT NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
                    step TEXT NOT NULL,
                    node TEXT,
                    state TEXT NOT NULL,
                    attempt INTEGER NOT NULL DEFAULT 0,
                    time REAL NOT NULL,
                    output_tail TEXT,
                    error TEXT);
                CREATE INDEX IF NOT EXISTS step_transitions_by_operation ON step_transitions(operation_id, seq);
                PRAGMA user_version = \(Self.schemaVersion);
                """)
        }
    }

    // MARK: Operations

    /// Starts a new operation in state `running`.
    public func beginOperation(
        kind: String, cluster: String, bundleDigest: String? = nil, id: String? = nil, time: Date = Date()
    ) throws -> OperationRecord {
        let record = OperationRecord(
            id: id ?? Self.newOperationID(kind: kind, time: time), kind: kind, cluster: cluster,
            bundleDigest: bundleDigest, startedAt: time, finishedAt: nil, state: .running)
        try queue.sync { try insertOperation(record) }
        return record
    }

    /// Sets the operation's state; terminal states also set `finished_at`.
    public func setOperationState(_ id: String, _ state: OperationState, time: Date = Date()) throws {
        try queue.sync { try updateOperation(id, state, time: time) }
    }

    public func setOperationState(_ id: String, _ state: OperationState, time: Date = Date()) async throws {
        try await onQueue { try self.updateOperation(id, state, time: time) }
    }

    public func operation(_ id: String) throws -> OperationRecord? {
        try queue.sync {
            try db.query("SELECT \(Self.operationColumns) FROM operations WHERE id = ?", [.text(id)])
                .first.flatMap(Self.operation(from:))
        }
    }

    /// History, newest first; optionally for one cluster.
    public func operations(cluster: String? = nil, limit: Int = 1000) throws -> [OperationRecord] {
        try queue.sync {
            let rows: [[SQLiteDatabase.Value]]
            if let cluster {
                rows = try db.query(
                    "SELECT \(Self.operationColumns) FROM operations WHERE cluster = ? ORDER BY started_at DESC, rowid DESC LIMIT ?",
                    [.text(cluster), .int(Int64(limit))])
            } else {
                rows = try db.query(
                    "SELECT \(Self.operationColumns) FROM operations ORDER BY started_at DESC, rowid DESC LIMIT ?",
                    [.int(Int64(limit))])
            }
            return rows.compactMap(Self.operation(from:))
        }
    }

    /// The newest operation of `cluster` (and `kind`, when given) that can be resumed.
    public func latestResumableOperation(cluster: String, kind: String? = nil) throws -> OperationRecord? {
        try operations(cluster: cluster).first { ($0.kind == kind || kind == nil) && $0.state.isResumable }
    }

    // MARK: Step transitions

    /// Appends a transition; output tail and error are redacted and bounded first.
    public func record(_ transition: StepTransition) throws {
        try queue.sync { try insertTransitions([transition]) }
    }

    public func record(_ transition: StepTransition) async throws {
        try await onQueue { try self.insertTransitions([transition]) }
    }

    /// Appends several transitions in one transaction (e.g. every step `planned`).
    public func record(_ transitions: [StepTransition]) throws {
        try queue.sync { try db.transaction { try insertTransitions(transitions) } }
    }

    public func record(_ transitions: [StepTransition]) async throws {
        try await onQueue { try self.db.transaction { try self.insertTransitions(transitions) } }
    }

    /// All transitions of an operation, oldest first.
    public func transitions(operation: String) throws -> [StepTransition] {
        try queue.sync { try selectTransitions(operation: operation) }
    }

    /// The latest transition of each step of an operation.
    public func latestStates(operation: String) throws -> [String: StepTransition] {
        var latest: [String: StepTransition] = [:]
        for t in try transitions(operation: operation) { latest[t.step] = t }
        return latest
    }

    /// `PRAGMA integrity_check`: "ok" when the database is sound.
    public func integrityCheck() throws -> String {
        try queue.sync {
            try db.query("PRAGMA integrity_check").map { $0.first?.string ?? "" }.joined(separator: "\n")
        }
    }

    // MARK: Export and import (mirroring)

    struct Export: Codable {
        struct Operation: Codable {
            var record: OperationRecord
            var transitions: [StepTransition]
        }
        var schema: Int
        var operations: [Operation]
    }

    /// The journal (or one operation) as JSON, for mirroring to a control-plane node.
    public func exportJSON(operation: String? = nil) throws -> Data {
        let records: [OperationRecord]
        if let operation {
            guard let r = try self.operation(operation) else { throw PlanError.operationNotFound(operation) }
            records = [r]
        } else {
            records = try operations().reversed()
        }
        let export = Export(
            schema: Self.schemaVersion,
            operations: try records.map { Export.Operation(record: $0, transitions: try transitions(operation: $0.id)) }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .secondsSince1970
        return try encoder.encode(export)
    }

    /// Merges an export: each operation in it replaces the local copy of that operation.
    public func importJSON(_ data: Data) throws {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .secondsSince1970
        let export: Export
        do {
            export = try decoder.decode(Export.self, from: data)
        } catch {
            throw PlanError.invalidJournalExport(String(describing: error))
        }
        guard export.schema <= Self.schemaVersion else {
            throw PlanError.invalidJournalExport(
                "schema \(export.schema) is newer than this program's \(Self.schemaVersion)")
        }
        try queue.sync {
            try db.transaction {
                for op in export.operations {
                    try db.query("DELETE FROM step_transitions WHERE operation_id = ?", [.text(op.record.id)])
                    try db.query("DELETE FROM operations WHERE id = ?", [.text(op.record.id)])
                    try insertOperation(op.record)
                    try insertTransitions(op.transitions)
                }
            }
        }
    }

    // MARK: Internals (on `queue`)

    func onQueue<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    private static let operationColumns = "id, kind, cluster, bundle_digest, started_at, finished_at, state"

    private func insertOperation(_ r: OperationRecord) throws {
        try db.query(
            "INSERT INTO operations(\(Self.operationColumns)) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                .text(r.id), .text(r.kind), .text(r.cluster), .init(r.bundleDigest), .init(r.startedAt),
                .init(r.finishedAt), .text(r.state.rawValue),
            ])
    }

    private func updateOperation(_ id: String, _ state: OperationState, time: Date) throws {
        let finished: SQLiteDatabase.Value = state == .running ? .null : .init(time)
        try db.query(
            "UPDATE operations SET state = ?, finished_at = ? WHERE id = ?",
            [.text(state.rawValue), finished, .text(id)])
    }

    private func insertTransitions(_ transitions: [StepTransition]) throws {
        for t in transitions {
            let tail = t.outputTail.map { OutputTail.bounded(redactor.redact($0), limit: Self.outputTailLimit) }
            let error = t.error.map { OutputTail.bounded(redactor.redact($0), limit: Self.errorLimit) }
            try db.query(
                """
                INSERT INTO step_transitions(operation_id, step, node, state, attempt, time, output_tail, error)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .text(t.operation), .text(t.step), .init(t.node), .text(t.state.rawValue), .int(Int64(t.attempt)),
                    .init(t.time), .init(tail), .init(error),
                ])
        }
    }

    private func selectTransitions(operation: String) throws -> [StepTransition] {
        try db.query(
            """
            SELECT operation_id, step, node, state, attempt, time, output_tail, error
            FROM step_transitions WHERE operation_id = ? ORDER BY seq
            """, [.text(operation)]
        ).compactMap { row in
            guard row.count == 8, let op = row[0].string, let step = row[1].string,
                let state = row[3].string.flatMap(StepState.init(rawValue:)), let time = row[5].double
            else { return nil }
            return StepTransition(
                operation: op, step: step, node: row[2].string, state: state, attempt: Int(row[4].int ?? 0),
                time: Date(timeIntervalSince1970: time), outputTail: row[6].string, error: row[7].string)
        }
    }

    private static func operation(from row: [SQLiteDatabase.Value]) -> OperationRecord? {
        guard row.count == 7, let id = row[0].string, let kind = row[1].string, let cluster = row[2].string,
            let started = row[4].double, let state = row[6].string.flatMap(OperationState.init(rawValue:))
        else { return nil }
        return OperationRecord(
            id: id, kind: kind, cluster: cluster, bundleDigest: row[3].string,
            startedAt: Date(timeIntervalSince1970: started),
            finishedAt: row[5].double.map(Date.init(timeIntervalSince1970:)), state: state)
    }

    static func newOperationID(kind: String, time: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss"
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let safeKind = kind.filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return "\(safeKind)-\(formatter.string(from: time))-\(suffix)"
    }
}
