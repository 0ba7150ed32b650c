import ApplianceModel

/// What goes wrong while changing nodes, with the node it happened on.
public enum ClusterError: ApplianceFailure, Equatable {
    case io(path: String, reason: String)
    /// A node-side script reported something unexpected.
    case node(node: String, reason: String)
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
        case let .noNodes(reason): reason
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .node: .remoteCommandFailed
        default: .failure
        }
    }
}
