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
    case gpuMissing = "gpu-missing"
    case nvlinkDown = "nvlink-down"
    case eccErrors = "ecc-errors"
    case fabricManagerStopped = "fabricmanager-stopped"
    case driverMismatch = "driver-mismatch"
    case gpuHealthy = "gpu-healthy"

    /// The lasting faults that this kind undoes (empty for faults and one-off events).
    public var undoes: [LabFaultKind] {
        switch self {
        case .powerOn: [.powerOff]
        case .heal: [.partition]
        case .normalLink: [.slowLink]
        case .noLoss: [.packetLoss]
        case .diskFree: [.diskFull]
        case .startService: [.stopService, .killService]
        case .gpuHealthy: Self.gpuFaults
        default: []
        }
    }

    /// The GPU faults: made by the node's stand-ins (`appliance-labnode fault set`), so the lab packages
    /// must be installed on the node.
    public static let gpuFaults: [LabFaultKind] = [
        .gpuMissing, .nvlinkDown, .eccErrors, .fabricManagerStopped, .driverMismatch,
    ]

    /// Whether the fault stays until undone (and is listed in status); `drop-ssh` is an event.
    public var isLasting: Bool { Self.allCases.contains { $0.undoes.contains(self) } }

    /// What the argument after the kind means, if it takes one.
    public var argument: String? {
        switch self {
        case .slowLink: "RATE (e.g. 1mbit)"
        case .packetLoss: "PERCENT (1-100)"
        case .stopService, .killService, .startService: "SERVICE (a systemd unit on the node)"
        case .gpuMissing: "GPU (index)"
        case .nvlinkDown: "GPU:LINK (e.g. 0:3)"
        case .eccErrors: "GPU[:COUNT] (default count 1)"
        case .driverMismatch: "VERSION (of the kernel module, e.g. 535.104.05)"
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
        case .gpuMissing: "GPU falls off the bus (Xid 79 in the kernel log); nvidia-smi reports it lost"
        case .nvlinkDown: "NVLink LINK of GPU is inactive"
        case .eccErrors: "COUNT uncorrectable ECC errors on GPU (row remap pending)"
        case .fabricManagerStopped: "stop nvidia-fabricmanager; it refuses to start until gpu-healthy"
        case .driverMismatch: "the loaded kernel module is VERSION, user space differs: NVML fails"
        case .gpuHealthy: "clear every GPU fault of the node"
        }
    }
}
