import Foundation

/// One thing that happened during an operation. The executor emits them on one `AsyncStream`;
/// renderers (`PlanEventRenderer`, `NDJSONEventEncoder`) turn them into text.
public struct PlanEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case stepPlanned, stepStarted, stepProgress, stepFinished, stepFailed, stepSkipped, operationFinished
    }

    public var time: Date
    public var kind: Kind
    public var operation: String
    public var step: String?
    public var node: String?
    public var attempt: Int?
    public var bytesDone: Int64?
    public var bytesTotal: Int64?
    /// Redacted, human-readable detail (error, "already done", reason for skipping).
    public var message: String?
    /// For step events, the step's state (`StepState`); for `operationFinished`, the operation's.
    public var state: String?

    public init(
        time: Date = Date(), kind: Kind, operation: String, step: String? = nil, node: String? = nil,
        attempt: Int? = nil, bytesDone: Int64? = nil, bytesTotal: Int64? = nil, message: String? = nil,
        state: String? = nil
    ) {
        self.time = time
        self.kind = kind
        self.operation = operation
        self.step = step
        self.node = node
        self.attempt = attempt
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.message = message
        self.state = state
    }
}
