import Foundation

/// What a check found on one node.
public enum CheckStatus: String, Sendable, Codable, CaseIterable, Comparable {
    case pass, info, skip, unknown, warn, fail

    /// Worse sorts later.
    public static func < (a: CheckStatus, b: CheckStatus) -> Bool {
        allCases.firstIndex(of: a) ?? 0 < allCases.firstIndex(of: b) ?? 0
    }
}

/// An analyzer's finding before severity is applied: `.problem` becomes the check's severity.
public enum Verdict: Sendable, Equatable {
    case pass(String)
    /// Does not meet the check; becomes fail or warn per the catalogue's severity.
    case problem(String)
    /// A softer finding than the check's severity (e.g. a pending change), always warn.
    case warn(String)
    case info(String)
    /// Not applicable here (profile expects no NVSwitch, no NFS configured).
    case skip(String)
    /// The input could not be read: the check says so rather than guessing.
    case unreadable(String)
}

/// A waiver: `ID` or `ID@NODE`, with the operator's reason.
public struct Waiver: Sendable, Equatable, Codable {
    public var checkID: String
    public var node: String?
    public var reason: String
    public init(checkID: String, node: String?, reason: String) {
        self.checkID = checkID
        self.node = node
        self.reason = reason
    }

    /// Parses `ID[@NODE]=REASON` (the reason is required).
    public static func parse(_ text: String) -> Waiver? {
        guard let eq = text.firstIndex(of: "=") else { return nil }
        let target = text[..<eq].trimmingCharacters(in: .whitespaces)
        let reason = text[text.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        guard !target.isEmpty, !reason.isEmpty else { return nil }
        let parts = target.split(separator: "@", maxSplits: 1)
        return Waiver(checkID: String(parts[0]), node: parts.count > 1 ? String(parts[1]) : nil, reason: reason)
    }

    public func covers(check: String, node n: String) -> Bool { checkID == check && (node == nil || node == n) }
}

/// One cell of the node x check matrix.
public struct CheckOutcome: Sendable, Equatable, Codable {
    public var checkID: String
    public var node: String
    public var status: CheckStatus
    public var observed: String
    /// Set when the operator waived this finding; the status is kept, the verdict ignores it.
    public var waiver: Waiver?

    public init(checkID: String, node: String, status: CheckStatus, observed: String, waiver: Waiver? = nil) {
        self.checkID = checkID
        self.node = node
        self.status = status
        self.observed = observed
        self.waiver = waiver
    }

    /// The status that counts for the exit code.
    public var effectiveStatus: CheckStatus {
        if waiver != nil, status == .fail || status == .warn || status == .unknown { return .pass }
        return status
    }
}

extension Verdict {
    func status(severity: CheckDefinition.Severity) -> (CheckStatus, String) {
        switch self {
        case .pass(let s): (.pass, s)
        case .problem(let s):
            switch severity {
            case .fail: (.fail, s)
            case .warn: (.warn, s)
            case .info: (.info, s)
            }
        case .warn(let s): (severity == .info ? .info : .warn, s)
        case .info(let s): (.info, s)
        case .skip(let s): (.skip, s)
        case .unreadable(let s): (.unknown, "could not read: \(s)")
        }
    }
}
