/// The faults a lab can inject into a node. Each lasting fault has a counterpart that undoes it; lasting
/// faults are recorded in the lab state and shown by `lab status` until undone.
public enum LabFaultKind: String, Codable, Sendable, CaseIterable {
    case powerOff = "power-off"
    case powerOn = "power-on"
    case partition
    case heal
    case slowLink = "slow-link"
    case normalLink = "normal-link"
    case packetLoss = "packet-loss"
    case noLoss = "no-loss"
    case dropSSH = "drop-ssh"
    case diskFull = "disk-full"
    case diskFree = "disk-free"
    case stopService = "stop-service"
    case killService = "kill-service"
    case startService = "start-service"

    /// The lasting faults that this kind undoes (empty for faults and one-off events).
    public var undoes: [LabFaultKind] {
        switch self {
        case .powerOn: [.powerOff]
        case .heal: [.partition]
        case .normalLink: [.slowLink]
        case .noLoss: [.packetLoss]
        case .diskFree: [.diskFull]
        case .startService: [.stopService, .killService]
        default: []
        }
    }

    /// Whether the fault stays until undone (and is listed in status); `drop-ssh` is an event.
    public var isLasting: Bool { Self.allCases.contains { $0.undoes.contains(self) } }

    /// What the argument after the kind means, if it takes one.
    public var argument: String? {
        switch self {
        case .slowLink: "RATE (e.g. 1mbit)"
        case .packetLoss: "PERCENT (1-100)"
        case .stopService, .killService, .startService: "SERVICE (a systemd unit on the node)"
        default: nil
        }
    }

    public var summary: String {
        switch self {
        case .powerOff: "stop the node (SIGTERM to its container); its disk is kept"
        case .powerOn: "boot a powered-off node again and wait until SSH answers"
        case .partition: "unplug the node's link from the lab bridge"
        case .heal: "plug it back in"
        case .slowLink: "limit the node's link to RATE both ways (tc tbf)"
        case .normalLink: "restore the rate from `lab up --link` (or none)"
        case .packetLoss: "drop PERCENT of packets in and out of the node (nftables)"
        case .noLoss: "stop dropping packets"
        case .dropSSH: "kill every open SSH connection to the node now (sshd keeps listening)"
        case .diskFull: "fill /var/lib/appliance on the node (its size-limited tmpfs)"
        case .diskFree: "give /var/lib/appliance its space back"
        case .stopService: "systemctl stop SERVICE"
        case .killService: "SIGKILL the main process of SERVICE, as a crash would (its Restart= policy applies)"
        case .startService: "systemctl start SERVICE (undoes stop-service and kill-service)"
        }
    }
}
