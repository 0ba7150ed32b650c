import Foundation

/// One GPU as the NVIDIA tools describe it. Every field is optional: drivers differ in what they print, and a
/// field a driver does not support (`N/A`, `[N/A]`) stays nil. Built by `NvidiaSMIXML`, `NvidiaSMIText` and
/// `NvidiaSMIQueryCSV`, so analyzers do not care which format a node produced.
public struct GPURecord: Sendable, Equatable, Codable {
    public var index: Int?
    public var name: String?
    public var uuid: String?
    public var busID: String?
    /// Lower-case PCI device id, e.g. `20b2` (from `0x20B210DE`).
    public var pciDeviceID: String?
    public var memoryTotalMiB: Int?
    public var driverVersion: String?
    public var vbiosVersion: String?
    /// `Enabled` / `Disabled`.
    public var persistenceMode: String?
    public var eccModeCurrent: String?
    public var eccModePending: String?
    public var eccVolatileUncorrected: Int?
    public var eccAggregateUncorrected: Int?
    public var eccAggregateCorrected: Int?
    public var remappedRowsPending: Bool?
    public var remappedRowsFailure: Bool?
    public var remappedRowsUncorrectable: Int?
    public var retiredPagesPending: Bool?
    public var pcieGenCurrent: Int?
    public var pcieGenMax: Int?
    public var pcieWidthCurrent: Int?
    public var pcieWidthMax: Int?
    public var pcieReplays: Int?
    public var migModeCurrent: String?
    public var migModePending: String?
    /// `P0`...`P12`.
    public var performanceState: String?
    /// Hardware clock-event reasons reported `Active` (`hw_slowdown`, `hw_thermal_slowdown`, `hw_power_brake_slowdown`).
    public var activeHardwareClockEvents: [String]?
    public var temperatureC: Int?
    public var powerLimitW: Double?
    public var defaultPowerLimitW: Double?
    /// `Completed`, `In Progress`, `Not Started`; nil where the GPU has no fabric (A100 prints N/A).
    public var fabricState: String?
    public var fabricStatus: String?

    public init() {}
}

/// What one `nvidia-smi` run says about the whole node.
public struct NvidiaSMIReport: Sendable, Equatable, Codable {
    public var driverVersion: String?
    public var cudaVersion: String?
    /// The `Attached GPUs` field; do not trust it alone (count `gpus`).
    public var attachedGPUs: Int?
    public var gpus: [GPURecord]

    public init(
        driverVersion: String? = nil, cudaVersion: String? = nil, attachedGPUs: Int? = nil, gpus: [GPURecord] = []
    ) {
        self.driverVersion = driverVersion
        self.cudaVersion = cudaVersion
        self.attachedGPUs = attachedGPUs
        self.gpus = gpus
    }
}

/// A parser could not make sense of its input.
public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var format: String
    public var reason: String
    public init(_ format: String, _ reason: String) {
        self.format = format
        self.reason = reason
    }
    public var description: String { "could not read \(format): \(reason)" }
}

/// Small value helpers shared by the parsers.
enum Field {
    /// nil for the many spellings of "not available".
    static func clean(_ s: String?) -> String? {
        guard let t = s?.trimmingCharacters(in: .whitespacesAndNewlines), !t.isEmpty else { return nil }
        if [
            "N/A", "[N/A]", "[Not Supported]", "Not Supported", "[Unknown Error]", "Unknown Error",
            "[Insufficient Permissions]",
        ]
        .contains(t) {
            return nil
        }
        return t
    }

    /// The leading integer of `81559 MiB`, `16x`, `27 C`.
    static func int(_ s: String?) -> Int? {
        guard let t = clean(s) else { return nil }
        let digits = t.prefix { $0.isNumber || $0 == "-" }
        return Int(digits)
    }

    /// The leading number of `700.00 W`.
    static func double(_ s: String?) -> Double? {
        guard let t = clean(s) else { return nil }
        let num = t.prefix { $0.isNumber || $0 == "." || $0 == "-" }
        return Double(num)
    }

    static func yesNo(_ s: String?) -> Bool? {
        switch clean(s)?.lowercased() {
        case "yes", "true", "active", "1": true
        case "no", "false", "not active", "0": false
        default: nil
        }
    }

    /// `0x20B210DE` or `20B2` -> `20b2`.
    static func pciDevice(_ s: String?) -> String? {
        guard var t = clean(s)?.lowercased() else { return nil }
        if t.hasPrefix("0x") { t.removeFirst(2) }
        if t.count == 8 && t.hasSuffix("10de") { return String(t.prefix(4)) }
        return t.count == 4 ? t : nil
    }

    /// Removes ANSI escape sequences (`ESC[4m`), which `nvidia-smi topo -m` prints on a TTY.
    static func stripANSI(_ s: String) -> String {
        var out = ""
        var it = s.unicodeScalars.makeIterator()
        while let c = it.next() {
            if c == "\u{1B}" {
                // Skip `[` ... final letter.
                while let d = it.next() { if d.properties.isAlphabetic { break } }
                continue
            }
            out.unicodeScalars.append(c)
        }
        return out
    }

    static let hardwareClockEvents = ["hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"]
}
