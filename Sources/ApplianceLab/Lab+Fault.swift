import ApplianceModel
import Foundation

extension Lab {
    /// Injects or undoes a fault on one node and records it in the lab state. Returns a line saying what
    /// happened.
    @discardableResult
    public func fault(node name: String, kind: LabFaultKind, argument: String? = nil) throws(LabError) -> String {
        try Self.requireRoot()
        var state = try loadState()
        let node = try state.node(name)
        let net = LabNetwork(config: config)
        let labNode = LabNode(config: config, node: node)
        if kind.argument != nil && (argument ?? "").isEmpty {
            throw .invalidArgument("fault \(kind.rawValue) needs \(kind.argument ?? "an argument")")
        }
        if kind.argument == nil, let argument {
            throw .invalidArgument("fault \(kind.rawValue) takes no argument (got '\(argument)')")
        }
        let arg = argument ?? ""
        var detail: String? = nil
        let outcome: String
        switch kind {
        case .powerOff:
            guard let pid = node.pid, ProcessTable.isAlive(pid) else { return "\(name) is already off" }
            if !ProcessTable.terminate([pid], timeout: 60).isEmpty { throw .stopTimedOut(node: name, pid: pid) }
            // The node's network namespace outlives its container and would answer connections with a reset;
            // a server without power answers nothing. Its bridge port goes down with it.
            try net.setLink(node, up: false)
            state.update(name) { $0.pid = nil }
            outcome = "\(name) powered off (its disk is kept)"
        case .powerOn:
            if let pid = node.pid, ProcessTable.isAlive(pid) { return "\(name) is already on" }
            var booted = node
            if !node.faults.contains(where: { $0.kind == .partition }) { try net.setLink(node, up: true) }
            booted.pid = try labNode.boot()
            state.update(name) { $0.pid = booted.pid }
            try state.save(config.statePath)
            try waitUntilReady(state, nodes: [booted], timeout: 90)
            outcome = "\(name) powered on and answers SSH"
        case .partition:
            try net.setLink(node, up: false)
            outcome = "\(name) is cut off from the lab network"
        case .heal:
            // A powered-off node stays unplugged until it is powered on.
            if condition(node) == .running { try net.setLink(node, up: true) }
            outcome = "\(name) is connected again"
        case .slowLink:
            _ = try LabNetwork.bitsPerSecond(arg)
            try net.setNodeRate(node, rate: arg)
            detail = arg
            outcome = "\(name)'s link is limited to \(arg)"
        case .normalLink:
            try net.setNodeRate(node, rate: state.linkRate)
            outcome = "\(name)'s link is back to \(state.linkRate ?? "unlimited")"
        case .packetLoss:
            guard let p = Int(arg.trimmingCharacters(in: CharacterSet(charactersIn: "%"))), (1...100).contains(p) else {
                throw .invalidArgument("packet-loss needs a percentage from 1 to 100, not '\(arg)'")
            }
            try net.setLoss(node, percent: p)
            detail = "\(p)%"
            outcome = "\(name) loses \(p)% of its packets each way"
        case .noLoss:
            try net.setLoss(node, percent: nil)
            outcome = "\(name) loses no packets"
        case .dropSSH:
            // Each connection is served by a child of the sshd listener; killing them drops the
            // connections at once while sshd keeps accepting new ones.
            let r = try labNode.exec(
                "p=$(cat /run/sshd.pid) && n=$(pgrep -c -P \"$p\" || true) && pkill -KILL -P \"$p\" || true; echo ${n:-0}",
                context: "cannot drop the SSH connections of \(name)")
            outcome = "\(name): dropped \(r.stdout.split(separator: "\n").last ?? "0") SSH connection(s)"
        case .diskFull:
            try setDiskFull(node, full: true, sizeMiB: state.diskSizeMiB)
            outcome = "\(name): /var/lib/appliance is full"
        case .diskFree:
            try setDiskFull(node, full: false, sizeMiB: state.diskSizeMiB)
            outcome = "\(name): /var/lib/appliance has \(state.diskSizeMiB) MiB again"
        case .stopService, .killService, .startService:
            guard arg.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) else {
                throw .invalidArgument("'\(arg)' is not a systemd unit name")
            }
            // kill-service SIGKILLs the unit's main process, as a crash would (systemctl kill cannot signal
            // through this host's cgroup setup); the unit's Restart= policy then applies as on a server.
            let script =
                switch kind {
                case .stopService: "systemctl stop '\(arg)'"
                case .killService:
                    "p=$(systemctl show -p MainPID --value '\(arg)') && [ \"${p:-0}\" -gt 0 ] && kill -KILL \"$p\" || { echo '\(arg) has no running main process' >&2; exit 1; }"
                default: "systemctl start '\(arg)'"
                }
            try labNode.exec(script, context: "cannot \(kind.rawValue.split(separator: "-")[0]) \(arg) on \(name)")
            detail = arg
            outcome =
                "\(name): \(arg) \(kind == .stopService ? "stopped" : kind == .killService ? "killed" : "started")"
        case .gpuMissing, .nvlinkDown, .eccErrors, .fabricManagerStopped, .driverMismatch, .gpuHealthy:
            let args = try Self.nodeFaultArguments(kind, arg)
            let stand = LabPackages.nodeBinary
            var script =
                "[ -x \(stand) ] || { echo 'the lab stand-ins are not installed on this node (package appliance-labnode)' >&2; exit 3; }; "
            if kind == .gpuHealthy {
                script += "\(stand) fault clear-all"
            } else {
                script += "\(stand) fault set " + args.joined(separator: " ")
            }
            if kind == .fabricManagerStopped {
                // The host's unit (host-driver mode), or the GPU Operator driver container's process.
                script +=
                    " && { systemctl stop nvidia-fabricmanager.service 2>/dev/null || true; } && { pkill -TERM -f '\(PrecompiledDriver.fabricManagerProcess)' 2>/dev/null || true; }"
            }
            try labNode.exec(script, context: "cannot make the fault \(kind.rawValue) on \(name)")
            detail = arg.isEmpty ? nil : arg
            outcome =
                kind == .gpuHealthy
                ? "\(name): every GPU fault cleared" : "\(name): \(kind.rawValue)\(arg.isEmpty ? "" : " " + arg)"
        }
        let perDetail = Self.gpuFaultsByDetail(kind)
        state.update(name) { n in
            // A new fault replaces one of its kind (per unit for services, per GPU or link for GPU faults); a
            // counterpart removes what it undoes.
            n.faults.removeAll { f in
                if [.stopService, .killService, .startService].contains(kind) {
                    return f.detail == detail && [.stopService, .killService].contains(f.kind)
                }
                if perDetail { return f.kind == kind && f.detail == detail }
                return f.kind == kind || kind.undoes.contains(f.kind)
            }
            if kind.isLasting { n.faults.append(.init(kind: kind, detail: detail, since: Date())) }
        }
        try state.save(config.statePath)
        logger.debug("lab fault: \(outcome)", metadata: ["host": "\(name)"])
        return outcome
    }

    /// GPU faults that can be on several GPUs or links at once.
    static func gpuFaultsByDetail(_ kind: LabFaultKind) -> Bool {
        [.gpuMissing, .nvlinkDown, .eccErrors].contains(kind)
    }

    /// `appliance-labnode fault set` arguments for a lab GPU fault.
    static func nodeFaultArguments(_ kind: LabFaultKind, _ arg: String) throws(LabError) -> [String] {
        func index(_ s: Substring, _ what: String) throws(LabError) -> String {
            guard let n = Int(s), n >= 0 else {
                throw .invalidArgument("\(kind.rawValue): \(what) must be a number from 0, not '\(s)'")
            }
            return "\(n)"
        }
        let parts = arg.split(separator: ":", omittingEmptySubsequences: false)
        switch kind {
        case .gpuMissing:
            return ["gpu-missing", try index(Substring(arg), "the GPU")]
        case .nvlinkDown:
            guard parts.count == 2 else {
                throw .invalidArgument("nvlink-down needs GPU:LINK, e.g. 0:3 (got '\(arg)')")
            }
            return ["nvlink-down", try index(parts[0], "the GPU"), try index(parts[1], "the link")]
        case .eccErrors:
            guard (1...2).contains(parts.count) else {
                throw .invalidArgument("ecc-errors needs GPU or GPU:COUNT (got '\(arg)')")
            }
            let count = parts.count == 2 ? try index(parts[1], "the count") : "1"
            guard count != "0" else { throw .invalidArgument("ecc-errors: the count must be at least 1") }
            return ["ecc-uncorrectable", try index(parts[0], "the GPU"), count]
        case .driverMismatch:
            guard arg.allSatisfy({ $0.isNumber || $0 == "." }), arg.contains(".") else {
                throw .invalidArgument("driver-mismatch needs a driver version such as 535.104.05 (got '\(arg)')")
            }
            return ["driver-mismatch", arg]
        case .fabricManagerStopped: return ["fabricmanager-stopped"]
        default: return []
        }
    }

    /// The node's /var/lib/appliance tmpfs shrunk to exactly what it holds (full), or back to its size.
    func setDiskFull(_ node: LabState.Node, full: Bool, sizeMiB: Int) throws(LabError) {
        let dir = "\(config.nodeDirectory(node.name))/var-lib-appliance"
        let filler = "\(dir)/.lab-disk-full"
        if full {
            // A tmpfs of size 0 would be unlimited: hold at least one page first.
            if !FileManager.default.fileExists(atPath: filler) {
                _ = FileManager.default.createFile(atPath: filler, contents: Data(repeating: 0, count: 4096))
            }
            var s = statvfs()
            guard statvfs(dir, &s) == 0 else { throw .io(path: dir, detail: "statvfs failed") }
            let used = (UInt64(s.f_blocks) - UInt64(s.f_bfree)) * UInt64(s.f_frsize)
            try HostCommand.run(
                "mount", ["-o", "remount,size=\(used)", dir], context: "cannot fill /var/lib/appliance of \(node.name)")
        } else {
            try HostCommand.run(
                "mount", ["-o", "remount,size=\(sizeMiB)m", dir],
                context: "cannot free /var/lib/appliance of \(node.name)")
            try? FileManager.default.removeItem(atPath: filler)
        }
    }
}
