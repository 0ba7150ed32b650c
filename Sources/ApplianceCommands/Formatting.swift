import ApplianceOperations
import Foundation

/// Human formatting shared by commands.
enum Format {
    /// 1536 -> "1.5 KiB".
    static func bytes(_ n: Int64) -> String { ByteCount.text(n) }

    static func seconds(_ s: Double) -> String {
        s < 60 ? String(format: "%.1fs", s) : String(format: "%dm%02ds", Int(s) / 60, Int(s) % 60)
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = (0..<header.count).map { c in all.map { $0.indices.contains(c) ? $0[c].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A command's help text as paragraphs: the source's line breaks inside a paragraph are joined with
    /// spaces, so the argument parser wraps the text to the terminal instead of breaking each source line
    /// again. A blank line, and a line that starts with `-` (an option, a list item) or `Exit codes`, start
    /// a new line; an indented line (a table row) is kept as it is, on its own.
    static func help(_ text: String) -> String {
        var out: [String] = []
        var joinable = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || raw.hasPrefix(" ") {
                out.append(line.isEmpty ? "" : String(raw))
                joinable = false
            } else if joinable && !line.hasPrefix("-") && !line.hasPrefix("Exit codes") {
                out[out.count - 1] += " " + line
            } else {
                out.append(line)
                joinable = true
            }
        }
        return out.joined(separator: "\n")
    }

    static func json(_ object: Any) -> String {
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A one-line progress display on a TTY (bytes, rate, ETA); silent otherwise.
final class ByteProgress: @unchecked Sendable {  // mutable state is behind `lock`
    private let total: Int64
    private let label: String
    private let enabled: Bool
    private let lock = NSLock()
    private var done: Int64 = 0
    private var lastDraw = Date.distantPast
    private let start = Date()

    init(label: String, total: Int64, enabled: Bool) {
        self.label = label
        self.total = total
        self.enabled = enabled
    }

    func add(_ n: Int64) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        done += n
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(start), 0.001)
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let pct = total > 0 ? Int(Double(done) * 100 / Double(total)) : 100
        let line =
            "\r\(label) \(pct)%  \(Format.bytes(done)) / \(Format.bytes(total))  \(Format.bytes(Int64(rate)))/s  ETA \(Format.seconds(eta))\u{1B}[K"
        OutputStream.writeAll(2, line)
    }

    func finish() {
        guard enabled else { return }
        OutputStream.writeAll(2, "\r\u{1B}[K")
    }
}
