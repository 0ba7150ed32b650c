import ApplianceOperations
import ArgumentParser
import Foundation

extension CommandContext {
    /// The operations layer's view of this run: results to stdout, progress to stderr in `format`.
    func operationIO(format: EventFormat = .text, quiet: Bool = false) -> OperationIO {
        let out = output
        return OperationIO(
            logger: logger, output: { out.write($0) }, format: format.operationFormat, quiet: quiet,
            isTerminal: isTerminal,
            byteProgress: { label, total in
                let progress = ByteProgress(label: label, total: total, enabled: true)
                return ByteProgressSink(add: { progress.add($0) }, finish: { progress.finish() })
            })
    }

    /// Opens the site named by the site options for an operation.
    func session(_ options: SiteOptions) throws -> OperationSession {
        try OperationSession.open(sitePath: options.inventory, trustNewHosts: options.trustNewHosts, logger: logger)
    }
}

enum EventFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, ndjson

    var operationFormat: OperationEventFormat { self == .ndjson ? .ndjson : .text }
}

/// `50MB`, `1.5GB`, `800KB` (bytes per second) or `400mbit`, `1gbit` (bits per second).
func parseRate(_ text: String) throws -> Int64 {
    let t = text.lowercased().trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [
        ("gbit", 1e9 / 8), ("mbit", 1e6 / 8), ("kbit", 1e3 / 8), ("gb", 1_073_741_824), ("mb", 1_048_576),
        ("kb", 1024), ("g", 1_073_741_824), ("m", 1_048_576), ("k", 1024), ("b", 1),
    ]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v > 0 { return Int64(v * factor) }
    }
    if let v = Double(t), v > 0 { return Int64(v) }
    throw ValidationError("cannot read the rate '\(text)'; use for example 50MB (bytes/s) or 400mbit")
}
