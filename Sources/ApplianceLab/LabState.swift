import ApplianceModel
import Foundation

/// What a running lab is made of, saved as `lab.json` in the lab directory after every change so that
/// `status`, `ssh`, `fault` and `down` (from any later process) find it. `down` does not depend on it:
/// it also sweeps by name, so a lab from an interrupted `up` is taken down too.
public struct LabState: Codable, Sendable, Equatable {
    public enum Phase: String, Codable, Sendable { case starting, running }

    public var id: String
    public var subnet: String
    public var profile: String
    public var phase: Phase
    public var createdAt: Date
    public var rootfs: String
    public var adminNamespace: String?
    public var adminAddress: String
    public var linkRate: String?
    public var adminLinkRate: String?
    public var diskSizeMiB: Int
    public var nodes: [Node]

    public struct Node: Codable, Sendable, Equatable {
        public var name: String
        public var index: Int
        public var address: String
        public var roles: [NodeRole]
        public var hostKeyFingerprint: String
        /// The systemd-nspawn process; nil while powered off.
        public var pid: Int32?
        public var faults: [Fault]
    }

    public struct Fault: Codable, Sendable, Equatable {
        public var kind: LabFaultKind
        public var detail: String?
        public var since: Date
        public var description: String { detail.map { "\(kind.rawValue) \($0)" } ?? kind.rawValue }
    }

    public func node(_ name: String) throws(LabError) -> Node {
        guard let n = nodes.first(where: { $0.name == name }) else {
            throw .unknownNode(name, known: nodes.map(\.name))
        }
        return n
    }

    mutating func update(_ name: String, _ change: (inout Node) -> Void) {
        if let i = nodes.firstIndex(where: { $0.name == name }) { change(&nodes[i]) }
    }
}

extension LabState {
    static func load(_ path: String) throws(LabError) -> LabState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            let d = JSONDecoder()
            d.dateDecodingStrategy = .iso8601
            return try d.decode(LabState.self, from: data)
        } catch {
            throw .io(path: path, detail: "unreadable lab state (\(error)); `appliance lab down` removes it")
        }
    }

    func save(_ path: String) throws(LabError) {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        do {
            try e.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .io(path: path, detail: "cannot write the lab state: \(error)")
        }
    }
}
