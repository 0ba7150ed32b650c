import ApplianceModel

/// What goes wrong while changing nodes, with the node it happened on.
public enum ClusterError: ApplianceFailure, Equatable {
    case io(path: String, reason: String)
    /// A node-side script reported something unexpected.
    case node(node: String, reason: String)
    /// Some nodes failed; the others completed.
    case nodesFailed([NodeFailure])
    case noNodes(reason: String)

    public struct NodeFailure: Sendable, Equatable, CustomStringConvertible {
        public var node: String
        public var reason: String
        public var status: ExitStatus
        public init(node: String, reason: String, status: ExitStatus) {
            self.node = node
            self.reason = reason
            self.status = status
        }
        public var description: String { "\(node): \(reason)" }
    }

    public var message: String {
        switch self {
        case let .io(path, reason): "\(path): \(reason)"
        case let .node(node, reason): "\(node): \(reason)"
        case let .nodesFailed(list):
            "\(list.count) node\(list.count == 1 ? "" : "s") failed:\n" + list.map { "  \($0)" }.joined(separator: "\n")
        case let .noNodes(reason): reason
        }
    }

    public var hint: String? {
        switch self {
        case .nodesFailed: "fix the nodes named above and run the same command again: finished work is not repeated"
        default: nil
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .nodesFailed(let list):
            let kinds = Set(list.map(\.status))
            return kinds.count == 1 ? (kinds.first ?? ExitStatus.partialFailure) : ExitStatus.partialFailure
        case .node: return ExitStatus.remoteCommandFailed
        default: return ExitStatus.failure
        }
    }
}
