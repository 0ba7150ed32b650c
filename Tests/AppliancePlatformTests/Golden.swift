import Foundation
import Testing

/// Expected documents of the renderers, checked in under `Golden/`.
///
/// `APPLIANCE_UPDATE_GOLDEN=1 swift test --filter AppliancePlatformTests` rewrites them from the current output
/// (then review the diff); otherwise a difference fails with the first differing line.
enum Golden {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")
    static var updating: Bool { ProcessInfo.processInfo.environment["APPLIANCE_UPDATE_GOLDEN"] == "1" }

    static func check(_ text: String, _ name: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) {
        let url = directory.appendingPathComponent(name)
        if updating {
            try? FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            do {
                try text.write(to: url, atomically: true, encoding: .utf8)
            } catch {
                Issue.record("cannot write \(url.path): \(error)", sourceLocation: sourceLocation)
            }
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            Issue.record(
                "no golden file \(name); run with APPLIANCE_UPDATE_GOLDEN=1 to create it",
                sourceLocation: sourceLocation)
            return
        }
        if text != expected {
            let a = text.split(separator: "\n", omittingEmptySubsequences: false)
            let b = expected.split(separator: "\n", omittingEmptySubsequences: false)
            let i = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
            Issue.record(
                """
                \(name) differs from its golden file at line \(i + 1):
                  got:      \(i < a.count ? String(a[i]) : "<end>")
                  expected: \(i < b.count ? String(b[i]) : "<end>")
                (APPLIANCE_UPDATE_GOLDEN=1 rewrites the golden files)
                """, sourceLocation: sourceLocation)
        }
    }
}
