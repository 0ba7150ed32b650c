import Foundation
import Testing

@testable import AppliancePlan

final class Lines: @unchecked Sendable {
    // @unchecked: guarded by `lock`.
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ s: String) { lock.withLock { stored.append(s) } }
    var text: String { lock.withLock { stored.joined() } }
}

@Suite("event renderers")
struct RendererTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000.25)

    static var sample: [PlanEvent] {
        [
            PlanEvent(
                time: t0, kind: .stepPlanned, operation: "op", step: "stage/gpu-01", node: "gpu-01", state: "planned"),
            PlanEvent(time: t0, kind: .stepPlanned, operation: "op", step: "helm/x", node: nil, state: "planned"),
            PlanEvent(
                time: t0, kind: .stepStarted, operation: "op", step: "stage/gpu-01", node: "gpu-01", attempt: 1,
                state: "running"),
            PlanEvent(
                time: t0.addingTimeInterval(1), kind: .stepProgress, operation: "op", step: "stage/gpu-01",
                node: "gpu-01",
                attempt: 1, bytesDone: 0, bytesTotal: 4 << 30),
            PlanEvent(
                time: t0.addingTimeInterval(3), kind: .stepProgress, operation: "op", step: "stage/gpu-01",
                node: "gpu-01",
                attempt: 1, bytesDone: 2 << 30, bytesTotal: 4 << 30),
            PlanEvent(
                time: t0.addingTimeInterval(5), kind: .stepFinished, operation: "op", step: "stage/gpu-01",
                node: "gpu-01",
                attempt: 1, state: "done"),
            PlanEvent(
                time: t0.addingTimeInterval(5), kind: .stepFailed, operation: "op", step: "helm/x", node: nil,
                attempt: 1,
                message: "exit 1: \"quoted\"\nnext", state: "failed"),
            PlanEvent(
                time: t0.addingTimeInterval(6), kind: .operationFinished, operation: "op", message: "1 done, 1 failed",
                state: "failed"),
        ]
    }

    @Test("NDJSON lines have the documented fields in a fixed order, with nulls")
    func ndjson() throws {
        let lines = Lines()
        let encoder = NDJSONEventEncoder { lines.append($0) }
        for e in Self.sample { encoder.write(e) }
        let output = lines.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(output.count == Self.sample.count + 1 && output.last == "")
        let keys = [
            "time", "event", "operation", "step", "node", "attempt", "bytesDone", "bytesTotal", "message", "state",
        ]
        for line in output.dropLast() {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == Set(keys))
            // Order is part of the schema.
            let positions = keys.map { line.range(of: "\"\($0)\":")?.lowerBound }
            #expect(positions.allSatisfy { $0 != nil })
            #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
        }
        #expect(
            output[4]
                == #"{"time":"2026-09-21T14:13:23.250Z","event":"stepProgress","operation":"op","step":"stage/gpu-01","node":"gpu-01","attempt":1,"bytesDone":2147483648,"bytesTotal":4294967296,"message":null,"state":null}"#
        )
        let failed = try #require(try JSONSerialization.jsonObject(with: Data(output[6].utf8)) as? [String: Any])
        #expect(failed["message"] as? String == "exit 1: \"quoted\"\nnext")
        #expect(failed["node"] is NSNull)
    }

    @Test("style: plain off a terminal, no colour under NO_COLOR")
    func style() {
        #expect(PlanEventRenderer.style(environment: [:], isTTY: false) == .plain)
        #expect(PlanEventRenderer.style(environment: ["NO_COLOR": "1"], isTTY: true) == .tty(color: false))
        #expect(PlanEventRenderer.style(environment: ["NO_COLOR": ""], isTTY: true) == .tty(color: true))
        #expect(PlanEventRenderer.style(environment: ["TERM": "dumb"], isTTY: true) == .plain)
    }

    @Test("plain output: one line per event, no escape codes, a summary naming failures")
    func plain() {
        let lines = Lines()
        let renderer = PlanEventRenderer(style: .plain) { lines.append($0) }
        for e in Self.sample { renderer.handle(e) }
        let text = lines.text
        #expect(!text.contains("\u{1B}"))
        #expect(text.contains("gpu-01: stage/gpu-01 started"))
        #expect(text.contains("gpu-01: stage/gpu-01 2.0 GiB/4.0 GiB (50%), 1.0 GiB/s"))
        #expect(text.contains("gpu-01: stage/gpu-01 done in 5.0 s"))
        #expect(text.contains("cluster: helm/x FAILED: exit 1"))
        #expect(text.contains("operation op failed in 6.0 s: 1 done, 1 failed"))
        #expect(text.contains("`appliance plan resume` (operation op)"))
    }

    @Test("TTY output draws per-node lines with a bar, rate and ETA; NO_COLOR drops colour only")
    func tty() {
        for color in [true, false] {
            let lines = Lines()
            let renderer = PlanEventRenderer(style: .tty(color: color), width: 120) { lines.append($0) }
            for e in Self.sample.prefix(5) { renderer.handle(e) }
            let text = lines.text
            #expect(text.contains("[##########----------] 50% 2.0 GiB/4.0 GiB 1.0 GiB/s, ETA 2.0 s"))
            #expect(text.contains("\u{1B}[2A\u{1B}[J"), "redraw moves the cursor up over the live block")
            for e in Self.sample.dropFirst(5) { renderer.handle(e) }
            #expect(lines.text.contains("\u{1B}[31m") == color)
        }
    }
}
