import ArgumentParser

/// Flags every command takes.
public struct GlobalOptions: ParsableArguments, Sendable {
    @Flag(name: .shortAndLong, help: "Print debug logs on stderr (the run's log file always has them).")
    public var verbose = false

    @Flag(name: .shortAndLong, help: "Print only errors on stderr.")
    public var quiet = false

    @Option(name: .long, help: "Write this run's log here instead of the state directory.")
    public var logFile: String?

    @Flag(name: .long, help: "Never use colour (NO_COLOR in the environment does the same).")
    public var noColor = false

    public init() {}
}

/// How results are printed on stdout.
public enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text
    case json
}
