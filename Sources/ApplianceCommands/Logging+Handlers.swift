import ApplianceModel
import Foundation
import Logging

/// Where per-run log files go: `$APPLIANCE_STATE_DIR/logs`, else `$XDG_STATE_HOME/appliance/logs`,
/// else `~/.local/state/appliance/logs`. Keeps the newest 50.
enum RunLog {
    static func defaultPath() -> String? {
        let dir = StateDirectory.path() + "/logs"
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        } catch {
            return nil
        }
        prune(dir, keep: 50)
        let stamp = ISO8601DateFormatter.string(
            from: Date(), timeZone: TimeZone(identifier: "UTC") ?? .current,
            formatOptions: [.withYear, .withMonth, .withDay, .withTime])
        return "\(dir)/appliance-\(stamp)-\(getpid()).log"
    }

    private static func prune(_ dir: String, keep: Int) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        let logs = names.filter { $0.hasPrefix("appliance-") && $0.hasSuffix(".log") }.sorted()
        for name in logs.dropLast(keep) { try? FileManager.default.removeItem(atPath: "\(dir)/\(name)") }
    }
}

/// Appends log lines to one file. A lock serialises writers; the file descriptor is owned here.
final class FileLogHandler: @unchecked Sendable {  // all mutable state is behind `lock`
    let path: String
    private let fd: Int32
    private let lock = NSLock()

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    static func open(path: String) -> FileLogHandler? {
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        return fd >= 0 ? FileLogHandler(path: path, fd: fd) : nil
    }

    deinit { close(fd) }

    func write(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        _ = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
    }

    func handler(label: String) -> LogHandler { Handler(file: self, label: label) }

    struct Handler: LogHandler {
        let file: FileLogHandler
        let label: String
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            let meta =
                all.isEmpty
                ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let time = ISO8601DateFormatter.string(
                from: Date(), timeZone: TimeZone(identifier: "UTC") ?? .current,
                formatOptions: [.withInternetDateTime, .withFractionalSeconds])
            file.write("\(time) \(event.level) \(label):\(meta) \(event.message)")
        }
    }
}

/// Human log lines on stderr: `warning: message (host=gpu-01)`.
struct StderrLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    /// Fixed at start from --verbose/--quiet; a logger's level change does not make stderr noisier.
    let threshold: Logger.Level
    let color: Bool

    init(level: Logger.Level, color: Bool) {
        self.logLevel = level
        self.threshold = level
        self.color = color
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        guard event.level >= threshold else { return }
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let meta =
            all.isEmpty
            ? "" : " (" + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + ")"
        let prefix: String
        switch event.level {
        case .trace, .debug: prefix = color ? "\u{1B}[2mdebug:\u{1B}[0m " : "debug: "
        case .info, .notice: prefix = ""
        case .warning: prefix = color ? "\u{1B}[33mwarning:\u{1B}[0m " : "warning: "
        case .error, .critical: prefix = color ? "\u{1B}[31merror:\u{1B}[0m " : "error: "
        }
        FileHandle.standardError.write(Data("\(prefix)\(event.message)\(meta)\n".utf8))
    }
}
