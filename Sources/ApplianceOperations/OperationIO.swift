import Foundation
import Logging

/// How an operation's progress is shown.
public enum OperationEventFormat: String, Sendable, CaseIterable {
    /// A live display on a terminal, plain lines otherwise (on stderr).
    case text
    /// One JSON event per line on stdout.
    case ndjson
}

/// Where an operation writes: results to `output` (stdout), progress to stderr in the chosen format.
/// The command builds it from its context; tests build their own.
public struct OperationIO: Sendable {
    public var logger: Logger
    /// Writes text to stdout (no newline added).
    public var output: @Sendable (String) -> Void
    public var format: OperationEventFormat
    public var quiet: Bool
    public var isTerminal: Bool
    /// Starts a byte progress display (label, total) and returns the functions that advance and end it.
    public var byteProgress: @Sendable (String, Int64) -> ByteProgressSink

    public init(
        logger: Logger, output: @escaping @Sendable (String) -> Void, format: OperationEventFormat = .text,
        quiet: Bool = false, isTerminal: Bool = false,
        byteProgress: @escaping @Sendable (String, Int64) -> ByteProgressSink = { _, _ in .silent }
    ) {
        self.logger = logger
        self.output = output
        self.format = format
        self.quiet = quiet
        self.isTerminal = isTerminal
        self.byteProgress = byteProgress
    }

    /// Prints one line of results (text format only: NDJSON output stays machine-readable).
    public func print(_ line: String) {
        if format == .text { output(line + "\n") }
    }
}

/// The two ends of a byte progress display.
public struct ByteProgressSink: Sendable {
    public var add: @Sendable (Int64) -> Void
    public var finish: @Sendable () -> Void
    public init(add: @escaping @Sendable (Int64) -> Void, finish: @escaping @Sendable () -> Void) {
        self.add = add
        self.finish = finish
    }
    public static let silent = ByteProgressSink(add: { _ in }, finish: {})
}
