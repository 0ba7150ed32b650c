import Foundation

/// Renders events for people.
///
/// `.tty`: a live block with one line per node (the step in flight, a progress bar with bytes, rate
/// and ETA where the step reports them), failures printed above it as they happen, and a summary at
/// the end. `.plain` (not a terminal, or logs): one line per event, progress at most every 25 %.
/// Colour only in `.tty(color: true)`; `style(environment:isTTY:)` honours `NO_COLOR`.
///
/// Not thread-safe: feed it from one task (`consume`).
public final class PlanEventRenderer {
    public enum Style: Sendable, Equatable {
        case tty(color: Bool)
        case plain
    }

    /// `.plain` when the output is not a terminal; colour unless `NO_COLOR` is set (to anything
    /// non-empty) or `TERM` is `dumb`.
    public static func style(environment: [String: String] = ProcessInfo.processInfo.environment, isTTY: Bool) -> Style
    {
        guard isTTY, environment["TERM"] != "dumb" else { return .plain }
        let noColor = !(environment["NO_COLOR"] ?? "").isEmpty
        return .tty(color: !noColor)
    }

    public let style: Style
    public let width: Int
    private let sink: @Sendable (String) -> Void

    private struct Running {
        var step: String
        var started: Date
        var attempt: Int
        var bytesDone: Int64?
        var bytesTotal: Int64?
        var firstProgress: (time: Date, bytes: Int64)?
        var lastProgress: (time: Date, bytes: Int64)?
        var lastPlainBucket = -1
    }

    private struct NodeState {
        var total = 0
        var done = 0
        var failed = 0
        var skipped = 0
        var running: [Running] = []
    }

    private var nodes: [String: NodeState] = [:]
    private var nodeOrder: [String] = []
    private var liveLines = 0
    private var lastDraw: Date?
    private var failures: [String] = []
    private var skips: [String] = []
    private var started: Date?

    public init(style: Style, width: Int = 100, sink: @escaping @Sendable (String) -> Void) {
        self.style = style
        self.width = max(40, width)
        self.sink = sink
    }

    public func consume(_ events: AsyncStream<PlanEvent>) async {
        for await event in events { handle(event) }
    }

    public func handle(_ e: PlanEvent) {
        if started == nil { started = e.time }
        let nodeName = e.node ?? "cluster"
        if e.kind != .operationFinished, nodes[nodeName] == nil {
            nodes[nodeName] = NodeState()
            nodeOrder.append(nodeName)
        }
        var plainLine: String?
        var permanent: String?
        var forceDraw = true
        switch e.kind {
        case .stepPlanned:
            nodes[nodeName]?.total += 1
            forceDraw = false
        case .stepStarted:
            let step = e.step ?? "?"
            nodes[nodeName]?.running.removeAll { $0.step == step }
            nodes[nodeName]?.running.append(Running(step: step, started: e.time, attempt: e.attempt ?? 1))
            let retry = (e.attempt ?? 1) > 1 ? " (attempt \(e.attempt ?? 1))" : ""
            let what = e.message.map { " \($0)" } ?? ""
            plainLine = "\(nodeName): \(step) started\(what)\(retry)"
        case .stepProgress:
            forceDraw = false
            let step = e.step ?? "?"
            guard var node = nodes[nodeName], let i = node.running.firstIndex(where: { $0.step == step }) else { break }
            var r = node.running[i]
            r.bytesDone = e.bytesDone
            r.bytesTotal = e.bytesTotal
            if let b = e.bytesDone {
                if r.firstProgress == nil { r.firstProgress = (e.time, b) }
                r.lastProgress = (e.time, b)
            }
            if let done = e.bytesDone, let total = e.bytesTotal, total > 0 {
                let bucket = Int(Double(done) / Double(total) * 4)
                if bucket > r.lastPlainBucket {
                    r.lastPlainBucket = bucket
                    plainLine =
                        "\(nodeName): \(step) \(Self.bytes(done))/\(Self.bytes(total)) (\(Int(Double(done) / Double(total) * 100))%)"
                        + (rateText(r).map { ", \($0)" } ?? "")
                }
            }
            node.running[i] = r
            nodes[nodeName] = node
        case .stepFinished:
            let step = e.step ?? "?"
            let started = nodes[nodeName]?.running.first { $0.step == step }?.started
            nodes[nodeName]?.running.removeAll { $0.step == step }
            nodes[nodeName]?.done += 1
            let note = e.message.map { " (\($0))" } ?? ""
            let took = started.map { " in \(Self.duration(e.time.timeIntervalSince($0)))" } ?? ""
            plainLine = "\(nodeName): \(step) \(e.state ?? "done")\(note)\(took)"
        case .stepFailed:
            let step = e.step ?? "?"
            nodes[nodeName]?.running.removeAll { $0.step == step }
            let message = e.message ?? "failed"
            if e.state == "retrying" {
                plainLine = "\(nodeName): \(step) attempt \(e.attempt ?? 1) failed: \(message)"
                permanent = paint("! ", "33") + "\(nodeName): \(step) attempt \(e.attempt ?? 1) failed: \(message)"
            } else {
                nodes[nodeName]?.failed += 1
                let label = e.state == StepState.interrupted.rawValue ? "interrupted" : "FAILED"
                let line = "\(nodeName): \(step) \(label): \(message)"
                failures.append(line)
                plainLine = line
                permanent = paint("✗ ", "31") + line
            }
        case .stepSkipped:
            let step = e.step ?? "?"
            nodes[nodeName]?.skipped += 1
            let line = "\(nodeName): \(step) skipped: \(e.message ?? "")"
            skips.append(line)
            plainLine = line
        case .operationFinished:
            clearLive()
            sink(summary(e))
            return
        }

        switch style {
        case .plain:
            if let plainLine { sink(plainLine + "\n") }
        case .tty:
            if !forceDraw, let last = lastDraw, e.time.timeIntervalSince(last) < 0.1 { return }
            clearLive()
            if let permanent { sink(permanent + "\n") }
            draw(now: e.time)
        }
    }

    // MARK: Drawing

    private func clearLive() {
        guard case .tty = style, liveLines > 0 else { return }
        sink("\u{1B}[\(liveLines)A\u{1B}[J")
        liveLines = 0
    }

    private func draw(now: Date) {
        lastDraw = now
        let nameWidth = min(24, nodeOrder.map(\.count).max() ?? 8)
        var lines: [String] = []
        for name in nodeOrder {
            guard let node = nodes[name] else { continue }
            let label = name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
            let finished = node.done + node.failed + node.skipped
            let counts = "\(finished)/\(node.total)"
            if let r = node.running.first {
                var line = "\(label) \(counts) \(r.step)"
                if node.running.count > 1 { line += " +\(node.running.count - 1)" }
                if let done = r.bytesDone {
                    line += "  " + progressText(r, done: done, now: now)
                } else {
                    line += "  " + Self.duration(now.timeIntervalSince(r.started))
                }
                lines.append(truncate(line))
            } else if node.failed > 0 {
                lines.append(truncate("\(label) \(counts) " + paint("failed", "31")))
            } else if finished == node.total && node.total > 0 {
                lines.append(truncate("\(label) \(counts) " + paint("done", "32")))
            } else {
                lines.append(truncate("\(label) \(counts) waiting"))
            }
        }
        if lines.isEmpty { return }
        sink(lines.joined(separator: "\n") + "\n")
        liveLines = lines.count
    }

    private func progressText(_ r: Running, done: Int64, now: Date) -> String {
        var parts: [String] = []
        if let total = r.bytesTotal, total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let barWidth = 20
            let filled = Int(fraction * Double(barWidth))
            parts.append(
                "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "]")
            parts.append("\(Int(fraction * 100))%")
            parts.append("\(Self.bytes(done))/\(Self.bytes(total))")
        } else {
            parts.append(Self.bytes(done))
        }
        if let rate = rateText(r) { parts.append(rate) }
        return parts.joined(separator: " ")
    }

    /// "12.0 MiB/s, ETA 8 s" from the first and last progress reports of the step.
    private func rateText(_ r: Running) -> String? {
        guard let first = r.firstProgress, let last = r.lastProgress else { return nil }
        let elapsed = last.time.timeIntervalSince(first.time)
        guard elapsed > 0.2, last.bytes > first.bytes else { return nil }
        let rate = Double(last.bytes - first.bytes) / elapsed
        var text = "\(Self.bytes(Int64(rate)))/s"
        if let total = r.bytesTotal, total > last.bytes {
            text += ", ETA " + Self.duration(Double(total - last.bytes) / rate)
        }
        return text
    }

    private func summary(_ e: PlanEvent) -> String {
        let state = e.state ?? "finished"
        let took = started.map { " in " + Self.duration(e.time.timeIntervalSince($0)) } ?? ""
        let color =
            state == OperationState.succeeded.rawValue || state == OperationState.rolledBack.rawValue ? "32" : "31"
        var out = paint("operation \(e.operation) \(state)", color) + took
        if let m = e.message, !m.isEmpty { out += ": \(m)" }
        out += "\n"
        for f in failures { out += "  " + f + "\n" }
        if !skips.isEmpty {
            for s in skips.prefix(10) { out += "  " + s + "\n" }
            if skips.count > 10 { out += "  ... and \(skips.count - 10) more skipped\n" }
        }
        if state == OperationState.interrupted.rawValue || state == OperationState.failed.rawValue {
            out += "  resume: run the same command again, or `appliance plan resume` (operation \(e.operation))\n"
        }
        return out
    }

    private func paint(_ s: String, _ code: String) -> String {
        if case .tty(color: true) = style { return "\u{1B}[\(code)m\(s)\u{1B}[0m" }
        return s
    }

    private func truncate(_ s: String) -> String {
        // Escape sequences count towards the width here; lines with colour are short anyway.
        s.count <= width ? s : String(s.prefix(width - 1)) + "…"
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
    }

    static func duration(_ seconds: Double) -> String {
        if !seconds.isFinite || seconds < 0 { return "?" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 10 { return String(format: "%.1f s", seconds) }
        if seconds < 120 { return "\(Int(seconds)) s" }
        if seconds < 7200 { return "\(Int(seconds) / 60) min \(Int(seconds) % 60) s" }
        return "\(Int(seconds) / 3600) h \(Int(seconds) % 3600 / 60) min"
    }
}
