import ApplianceModel
import Foundation
import Logging

/// What every command needs, built once per run and handed down (tests build their own).
public struct CommandContext: Sendable {
    public var logger: Logger
    public var output: OutputStream
    public var logFilePath: String?
    public var useColor: Bool
    public var isTerminal: Bool
    /// Writes to the run's log file only (the error presenter's record of what it printed).
    let fileLog: FileLogHandler?

    public init(logger: Logger, output: OutputStream, logFilePath: String?, useColor: Bool, isTerminal: Bool) {
        self.init(
            logger: logger, output: output, logFilePath: logFilePath, useColor: useColor, isTerminal: isTerminal,
            fileLog: nil)
    }

    init(
        logger: Logger, output: OutputStream, logFilePath: String?, useColor: Bool, isTerminal: Bool,
        fileLog: FileLogHandler?
    ) {
        self.fileLog = fileLog
        self.logger = logger
        self.output = output
        self.logFilePath = logFilePath
        self.useColor = useColor
        self.isTerminal = isTerminal
    }

    nonisolated(unsafe) private static var current: CommandContext?

    /// Builds the process-wide context once: logging to stderr and to a per-run log file.
    /// Called from the main task before any concurrent work starts, which is what makes the static safe.
    public static func make(_ options: GlobalOptions, command: String) -> CommandContext {
        if let current { return current }
        let logPath = options.logFile ?? RunLog.defaultPath()
        let fileHandler = logPath.flatMap { FileLogHandler.open(path: $0) }
        let stderrLevel: Logger.Level = options.verbose ? .debug : (options.quiet ? .error : .notice)
        let tty = isatty(STDERR_FILENO) == 1
        let color = tty && !options.noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        LoggingSystem.bootstrap { label in
            var handlers: [LogHandler] = [StderrLogHandler(level: stderrLevel, color: color)]
            if let fileHandler { handlers.append(fileHandler.handler(label: label)) }
            return MultiplexLogHandler(handlers)
        }
        // The multiplexer passes each event to the handlers whose own level admits it.
        let logger = Logger(label: "appliance")
        logger.debug(
            "run started", metadata: ["command": "\(command)", "version": "\(ApplianceVersion.current)"])
        let ctx = CommandContext(
            logger: logger, output: OutputStream.standardOutput, logFilePath: fileHandler?.path, useColor: color,
            isTerminal: tty, fileLog: fileHandler)
        current = ctx
        return ctx
    }

    /// The context of this run if one was made (the error presenter uses it to name the log file).
    public static var existing: CommandContext? { current }
}

/// stdout, line-buffered writes that never interleave mid-line.
public struct OutputStream: Sendable {
    let write: @Sendable (String) -> Void

    public init(write: @escaping @Sendable (String) -> Void) { self.write = write }

    /// Writes to fd 1. When the reader went away (`appliance history | head`), further output is dropped
    /// and the command goes on to its end: an operation is never cut short by a closed pipe.
    public static let standardOutput = OutputStream { text in writeAll(1, text) }

    /// Writes every byte to `fd`, retrying short writes; gives up quietly on EPIPE and other errors.
    static func writeAll(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
    }

    public func print(_ text: String = "") { write(text + "\n") }
}

public enum ApplianceVersion {
    public static let current = "0.1.0"
}
