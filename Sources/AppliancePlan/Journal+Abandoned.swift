import Foundation

extension Journal {
    /// Marks an operation whose process died (its lock was found stale and broken) as `interrupted`, with
    /// every step it had in flight (`running`) journaled `interrupted`, so the journal never shows it
    /// running forever. Returns the steps marked; does nothing to an operation that is not `running`.
    @discardableResult
    public func markAbandoned(operation id: String) throws -> [String] {
        guard let current = try operation(id), current.state == .running else { return [] }
        let inFlight = try latestStates(operation: id).values.filter { $0.state == .running }
        let marks = inFlight.map {
            StepTransition(
                operation: id, step: $0.step, node: $0.node, state: .interrupted, attempt: $0.attempt,
                error: "in flight when the process running it died; checked again on resume")
        }
        for mark in marks { try record(mark) }
        try setOperationState(id, .interrupted)
        return marks.map(\.step).sorted()
    }
}
