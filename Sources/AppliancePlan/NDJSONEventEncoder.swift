import Foundation

/// Encodes events as newline-delimited JSON with a stable schema (see README.md): every line has the
/// fields `time`, `event`, `operation`, `step`, `node`, `attempt`, `bytesDone`, `bytesTotal`,
/// `message`, `state`, in that order, with `null` where a field does not apply.
public struct NDJSONEventEncoder: Sendable {
    public let sink: @Sendable (String) -> Void

    /// `sink` receives one complete line (ending in "\n") per event.
    public init(sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
    }

    public func write(_ event: PlanEvent) { sink(Self.encode(event) + "\n") }

    /// Writes every event of the stream until it finishes.
    public func consume(_ events: AsyncStream<PlanEvent>) async {
        for await event in events { write(event) }
    }

    /// One line of JSON, without the newline.
    public static func encode(_ e: PlanEvent) -> String {
        var fields: [String] = []
        fields.append(#""time":"# + string(timestamp(e.time)))
        fields.append(#""event":"# + string(e.kind.rawValue))
        fields.append(#""operation":"# + string(e.operation))
        fields.append(#""step":"# + (e.step.map(string) ?? "null"))
        fields.append(#""node":"# + (e.node.map(string) ?? "null"))
        fields.append(#""attempt":"# + (e.attempt.map { String($0) } ?? "null"))
        fields.append(#""bytesDone":"# + (e.bytesDone.map { String($0) } ?? "null"))
        fields.append(#""bytesTotal":"# + (e.bytesTotal.map { String($0) } ?? "null"))
        fields.append(#""message":"# + (e.message.map(string) ?? "null"))
        fields.append(#""state":"# + (e.state.map(string) ?? "null"))
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-22T16:58:54.123Z`.
    static func timestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = time_t(millis / 1000)
        var parts = tm()
        var s = seconds
        gmtime_r(&s, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(millis % 1000))
    }

    static func string(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20 || c.value == 0x7F:
                out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
