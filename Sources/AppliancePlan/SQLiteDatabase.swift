internal import CSQLite
import Foundation

/// Owns one `sqlite3*` connection and frees it in `deinit`.
///
/// Threading contract: not thread-safe by itself; `Journal` is its only user and calls it only from
/// its own serial queue. Every return code goes through `check`, which reads `sqlite3_errmsg` in the
/// same synchronous frame.
final class SQLiteDatabase {
    enum Value {
        case text(String)
        case int(Int64)
        case real(Double)
        case null
    }

    let path: String
    private var handle: OpaquePointer?

    init(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws {
        self.path = path
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        handle = db
        if rc != SQLITE_OK {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot allocate a connection"
            sqlite3_close(db)
            handle = nil
            throw PlanError.journal(path: path, operation: "open", code: rc, message: message)
        }
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
    }

    deinit { sqlite3_close_v2(handle) }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
            throw PlanError.journal(path: path, operation: what, code: rc, message: message)
        }
    }

    /// Runs one or more statements without parameters.
    func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &error)
        if rc != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(error)
            throw PlanError.journal(path: path, operation: "execute", code: rc, message: message)
        }
    }

    /// Runs one statement with positional parameters and returns its rows.
    @discardableResult
    func query(_ sql: String, _ parameters: [Value] = []) throws -> [[Value]] {
        var stmt: OpaquePointer?
        try check(sqlite3_prepare_v2(handle, sql, -1, &stmt, nil), "prepare")
        defer { sqlite3_finalize(stmt) }
        for (i, p) in parameters.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch p {
            case .text(let s): rc = sqlite3_bind_text(stmt, idx, s, -1, csqlite_transient())
            case .int(let v): rc = sqlite3_bind_int64(stmt, idx, v)
            case .real(let v): rc = sqlite3_bind_double(stmt, idx, v)
            case .null: rc = sqlite3_bind_null(stmt, idx)
            }
            try check(rc, "bind")
        }
        var rows: [[Value]] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            try check(rc, "step")
            let columns = sqlite3_column_count(stmt)
            var row: [Value] = []
            row.reserveCapacity(Int(columns))
            for c in 0..<columns {
                switch sqlite3_column_type(stmt, c) {
                case SQLITE_INTEGER: row.append(.int(sqlite3_column_int64(stmt, c)))
                case SQLITE_FLOAT: row.append(.real(sqlite3_column_double(stmt, c)))
                case SQLITE_NULL: row.append(.null)
                default:
                    if let p = sqlite3_column_text(stmt, c) {
                        row.append(.text(String(cString: p)))
                    } else {
                        row.append(.null)
                    }
                }
            }
            rows.append(row)
        }
        return rows
    }

    /// Runs `body` in one IMMEDIATE transaction (taken at once, so a second writer waits for the busy
    /// timeout instead of failing half-way).
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }
}

extension SQLiteDatabase.Value {
    var string: String? {
        switch self {
        case .text(let s): return s
        case .int(let v): return String(v)
        case .real(let v): return String(v)
        case .null: return nil
        }
    }
    var int: Int64? {
        switch self {
        case .int(let v): return v
        case .real(let v): return Int64(v)
        case .text(let s): return Int64(s)
        case .null: return nil
        }
    }
    var double: Double? {
        switch self {
        case .int(let v): return Double(v)
        case .real(let v): return v
        case .text(let s): return Double(s)
        case .null: return nil
        }
    }
}

extension SQLiteDatabase.Value {
    init(_ s: String?) { self = s.map { .text($0) } ?? .null }
    init(_ d: Date?) { self = d.map { .real($0.timeIntervalSince1970) } ?? .null }
    init(_ i: Int?) { self = i.map { .int(Int64($0)) } ?? .null }
}
