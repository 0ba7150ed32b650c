import ApplianceModel
import ArgumentParser
import Foundation

/// The root command. Subcommands are grouped in folders that mirror the CLI.
public struct ApplianceCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "appliance",
        abstract: "Install and run an air-gapped GPU cluster from one signed offline bundle.",
        discussion: """
            Exit codes: \(ExitStatus.allCases.map { "\($0.rawValue) \($0.summary)" }.joined(separator: "; ")).
            Every run writes a log file; its path is printed with any error.
            """,
        version: ApplianceVersion.current,
        subcommands: [
            BundleCommand.self, StageCommand.self, InstallCommand.self, UpgradeCommand.self, StatusCommand.self,
            NodeCommand.self, PlanCommand.self,
            HistoryCommand.self,
            ProfileCommand.self,
            SiteCommand.self, PreflightCommand.self, PlatformCommand.self, SupportBundleCommand.self, LabCommand.self,
        ]
    )

    public init() {}
}

/// The program's entry point: parse, run, and turn any error into `error:`/`hint:` lines and an exit code.
public enum ApplianceMain {
    public static func main(arguments: [String] = Array(CommandLine.arguments.dropFirst())) async -> Never {
        // A broken pipe (`appliance ... | head`) must end the run quietly, not crash it.
        signal(SIGPIPE, SIG_IGN)
        let status: Int32
        do {
            var command = try ApplianceCommand.parseAsRoot(arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            status = 0
        } catch {
            status = ErrorPresenter.present(error)
        }
        // Everything we print goes through unbuffered FileHandle writes; stdio is flushed for safety. _exit
        // skips atexit handlers: OpenSSL's would tear down libcrypto under any thread still inside it.
        fflush(nil)
        _exit(status)
    }
}

/// The one place errors reach the user.
public enum ErrorPresenter {
    /// Prints the error and returns the exit code for it.
    @discardableResult
    public static func present(
        _ error: Error, to write: (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }
    )
        -> Int32
    {
        if let failure = error as? ApplianceFailure {
            write("error: \(failure.message)\n")
            if let hint = failure.hint { write("hint: \(hint)\n") }
            logLine(write)
            CommandContext.existing?.fileLog?.write(
                "error: \(failure.message)\(failure.hint.map { "\nhint: \($0)" } ?? "")\nexit: \(failure.exitStatus.rawValue)"
            )
            return failure.exitStatus.rawValue
        }
        // ArgumentParser's own outcomes: help, version, completions, validation errors.
        let code = ApplianceCommand.exitCode(for: error)
        if code == .success || code.rawValue == 0 {
            ApplianceCommand.exit(withError: error)
        }
        let text = ApplianceCommand.fullMessage(for: error)
        if code == .validationFailure {
            write(text.hasSuffix("\n") ? text : text + "\n")
            return ExitStatus.usage.rawValue
        }
        write("error: \(text)\n")
        logLine(write)
        return code.rawValue == 1 ? ExitStatus.internal.rawValue : code.rawValue
    }

    private static func logLine(_ write: (String) -> Void) {
        if let path = CommandContext.existing?.logFilePath { write("log: \(path)\n") }
    }
}
