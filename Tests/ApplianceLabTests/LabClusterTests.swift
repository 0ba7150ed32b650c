import ApplianceModel
import Foundation
import Logging
import Testing

@testable import ApplianceLab

extension Tag {
    @Tag static var lab: Self
}

/// Why the real lab cannot run here, or nil when it can.
func labSkipReason() -> String? {
    if geteuid() != 0 { return "not root" }
    if HostCommand.which("systemd-nspawn") == nil { return "systemd-nspawn is not installed (scripts/bootstrap)" }
    if (try? Lab.probeHost()) == nil { return "network namespaces or nspawn are unavailable here" }
    return nil
}

/// Everything a lab could leave behind on the host, by its names.
struct Leftovers: CustomStringConvertible {
    var namespaces: [String]
    var mounts: [String]
    var processes: [Int32]
    var links: Bool
    var directory: Bool
    var cgroups: [String]

    init(_ config: LabConfig) {
        namespaces = LabNetwork.namespaces().filter { $0 == config.labNamespace || $0.hasPrefix(config.prefix + "-") }
        mounts = Lab.mounts(under: config.directory)
        processes =
            ProcessTable.nspawnProcesses(machinePrefix: config.prefix + "-").map(\.pid)
            + ProcessTable.all().filter { $0.arguments.contains { $0.hasPrefix(config.directory + "/") } }.map(\.pid)
        links = LabNetwork.linkExists(config.adminLink)
        directory = FileManager.default.fileExists(atPath: config.directory)
        cgroups = Lab.cgroupDirectories(config)
    }

    var isEmpty: Bool {
        namespaces.isEmpty && mounts.isEmpty && processes.isEmpty && !links && !directory && cgroups.isEmpty
    }
    var description: String {
        "namespaces \(namespaces), mounts \(mounts), processes \(processes), link \(links), dir \(directory), cgroups \(cgroups)"
    }
}

/// Every suite that boots nodes, one at a time: two labs at once on two shared cores would make the timing
/// checks (slow link, grace periods) flaky.
@Suite("real labs, one at a time", .serialized)
struct RealLabSuites {}

extension RealLabSuites {
    @Suite("the lab on this machine", .tags(.lab), .serialized)
    struct LabClusterTests {
        let logger = Logger(label: "lab-test")

        func tempDirectory(_ name: String) -> String {
            FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())").path
        }

        @Test func nodesAnswerSSHWithPinnedKeysEveryFaultHappensAndIsUndoneAndDownLeavesNothing() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            let config = try LabConfig(id: "lt", subnet: "10.77.201", directory: tempDirectory("lab-lt"))
            let lab = Lab(config: config, logger: logger)
            _ = try? lab.down()
            defer { _ = try? lab.down() }

            let report = try lab.up(.init(profile: "lab", nodes: 3, controlPlanes: 1, diskSizeMiB: 64))
            let state = report.state
            #expect(state.nodes.map(\.name) == ["cp-1", "gpu-1", "gpu-2"])
            let ssh = lab.ssh(state)

            // Every node: SSH with strict checking against the lab known_hosts, its own hostname, its
            // declaration, and the fingerprint the site file pins.
            let site = try SiteInventory.load(path: config.sitePath)
            for node in state.nodes {
                let out = try ssh.run(address: node.address, "hostname; cat \(HardwareDeclaration.pathOnNode)").stdout
                #expect(out.hasPrefix(node.name + "\n"))
                let decl = try HardwareDeclaration.decode(Data(out.dropFirst(node.name.count + 1).utf8))
                #expect(decl.node == node.name && decl.roles == node.roles)
                #expect(site.host(named: node.name)?.hostKeyFingerprints == [node.hostKeyFingerprint])
                let scanned = try HostCommand.run(
                    "sh",
                    ["-c", "ssh-keygen -lf \(config.nodeDirectory(node.name))/upper/etc/ssh/ssh_host_ed25519_key.pub"])
                #expect(scanned.stdout.contains(node.hostKeyFingerprint))
            }
            // Pinning is real: the same login against a known_hosts that holds another node's key is refused.
            let wrong = config.directory + "/wrong_known_hosts"
            let other = try LabKeys.publicKeyLine("\(config.nodeDirectory("gpu-2"))/keys/ssh_host_ed25519_key.pub")
            try "\(state.nodes[1].address) \(other)\n".write(toFile: wrong, atomically: true, encoding: .utf8)
            let refused = try HostCommand.run(
                "ssh",
                [
                    "-i", config.keyPath, "-o", "UserKnownHostsFile=\(wrong)", "-o", "GlobalKnownHostsFile=/dev/null",
                    "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@\(state.nodes[1].address)", "true",
                ],
                check: false)
            #expect(refused.status == 255 && refused.stderr.contains("IDENTIFICATION HAS CHANGED"))

            // A second lab with the same id is refused.
            #expect(throws: LabError.self) { try lab.up(.init(nodes: 1)) }

            let node = state.nodes[1]
            let peer = state.nodes[0]
            func faults() throws -> [String] { try lab.loadState().node(node.name).faults.map(\.description) }
            func reachable() -> Bool {
                (try? ssh.run(address: node.address, "true", check: false, connectTimeout: 2))?.status == 0
            }

            // partition / heal
            try lab.fault(node: node.name, kind: .partition)
            #expect(!reachable())
            #expect(try faults() == ["partition"])
            try lab.fault(node: node.name, kind: .heal)
            #expect(reachable())
            #expect(try faults().isEmpty)

            // slow link / normal link: 1 MB through 2 Mbit/s takes about 4 s, without the limit well under 2 s.
            func secondsForOneMegabyte() throws -> Double {
                let t = Date()
                let r = try ssh.run(address: node.address, "head -c 1000000 /dev/zero")
                #expect(r.stdout.utf8.count == 1_000_000)
                return Date().timeIntervalSince(t)
            }
            try lab.fault(node: node.name, kind: .slowLink, argument: "2mbit")
            #expect(try faults() == ["slow-link 2mbit"])
            let slow = try secondsForOneMegabyte()
            try lab.fault(node: node.name, kind: .normalLink)
            let fast = try secondsForOneMegabyte()
            #expect(slow > 3 && fast < 2, "slow \(slow) s, fast \(fast) s")

            // packet loss / no loss, seen by pings from another node
            func lossPercent() throws -> Double {
                let r = try ssh.run(address: peer.address, "ping -q -c 40 -i 0.02 -W 1 \(node.address)", check: false)
                // "40 packets transmitted, 9 received, 77.5% packet loss, time 1001ms"
                let field = r.stdout.split(separator: ",").first { $0.contains("% packet loss") } ?? ""
                let percent = Double(field.trimmingCharacters(in: .whitespaces).split(separator: "%").first ?? "")
                #expect(percent != nil, "no packet loss figure in: \(r.combined)")
                return percent ?? -1
            }
            try lab.fault(node: node.name, kind: .packetLoss, argument: "50")
            let lossy = try lossPercent()
            try lab.fault(node: node.name, kind: .noLoss)
            let clean = try lossPercent()
            #expect(lossy > 0 && lossy < 100 && clean == 0, "loss \(lossy)% then \(clean)%")

            // drop-ssh: an open session ends at once, new ones are accepted
            let (program, args) = ssh.command(address: node.address, remote: ["sleep", "60"])
            let session = Process()
            session.executableURL = URL(fileURLWithPath: program)
            session.arguments = args
            session.standardOutput = FileHandle.nullDevice
            session.standardError = FileHandle.nullDevice
            try session.run()
            Thread.sleep(forTimeInterval: 1.5)
            #expect(session.isRunning)
            try lab.fault(node: node.name, kind: .dropSSH)
            let dropDeadline = Date().addingTimeInterval(5)
            while session.isRunning && Date() < dropDeadline { Thread.sleep(forTimeInterval: 0.05) }
            #expect(!session.isRunning)
            if session.isRunning { session.terminate() } else { #expect(session.terminationStatus == 255) }
            #expect(reachable())

            // disk full / disk free
            let write = "head -c 100000 /dev/zero > /var/lib/appliance/probe && echo ok"
            try lab.fault(node: node.name, kind: .diskFull)
            #expect(try ssh.run(address: node.address, write, check: false).stdout != "ok")
            #expect(try faults() == ["disk-full"])
            try lab.fault(node: node.name, kind: .diskFree)
            #expect(try ssh.run(address: node.address, write).stdout == "ok")

            // stop / start a service (sshd itself: the fault works without SSH), kill / restart
            try lab.fault(node: node.name, kind: .stopService, argument: "ssh")
            #expect(!reachable())
            #expect(try faults() == ["stop-service ssh"])
            try lab.fault(node: node.name, kind: .startService, argument: "ssh")
            #expect(reachable())
            let mainPID = "systemctl show -p MainPID --value ssh"
            let before = try ssh.run(address: node.address, mainPID).stdout
            try lab.fault(node: node.name, kind: .killService, argument: "ssh")
            #expect(try faults() == ["kill-service ssh"])
            try lab.fault(node: node.name, kind: .startService, argument: "ssh")
            let after = try ssh.run(address: node.address, mainPID).stdout
            #expect(before != after && after != "0", "sshd main pid \(before) then \(after)")
            #expect(try faults().isEmpty)

            // power off / on: the process is gone, the disk is kept
            try ssh.run(address: node.address, "echo kept > /root/marker")
            try lab.fault(node: node.name, kind: .powerOff)
            #expect(lab.condition(try lab.loadState().node(node.name)) == .off)
            #expect(ProcessTable.nspawnProcesses(machinePrefix: config.machineName(node.name)).isEmpty)
            #expect(!reachable())
            try lab.fault(node: node.name, kind: .powerOn)
            #expect(try ssh.run(address: node.address, "cat /root/marker").stdout == "kept")
            #expect(try faults().isEmpty)

            // down leaves nothing, and a second down is fine
            #expect(!Leftovers(config).isEmpty)
            let first = try lab.down()
            #expect(first.stopped == 3)
            let left = Leftovers(config)
            #expect(left.isEmpty, "left behind: \(left)")
            #expect(try lab.down().isEmpty)
        }

        @Test func aLabFromAnInterruptedUpIsTakenDownCleanly() throws {
            if let reason = labSkipReason() {
                print("skipped: the lab cannot run here: \(reason)")
                return
            }
            // The appliance executable next to this test bundle, killed with SIGKILL part-way through `lab up`.
            let binDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            let candidates = [binDir, binDir.deletingLastPathComponent()].map {
                $0.appendingPathComponent("appliance").path
            }
            guard let binary = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
                Issue.record(
                    "the appliance executable is not built next to the tests (\(candidates)); run `swift build` first")
                return
            }
            let state = tempDirectory("state-lt2")
            let config = try LabConfig(
                id: "lt2", subnet: "10.77.202", directory: state + "/lab-lt2",
                cacheDirectory: LabConfig().cacheDirectory)
            let lab = Lab(config: config, logger: logger)
            _ = try? lab.down()
            defer {
                _ = try? lab.down()
                try? FileManager.default.removeItem(atPath: state)
            }
            // The subprocess must use the same rootfs cache and lab directory: point its state dir there and
            // link the cache in (so nothing is rebuilt).
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            try? FileManager.default.createSymbolicLink(
                atPath: state + "/lab-cache", withDestinationPath: config.cacheDirectory)

            let up = Process()
            up.executableURL = URL(fileURLWithPath: binary)
            up.arguments = [
                "lab", "up", "--nodes", "4", "--lab-id", "lt2", "--subnet", "10.77.202", "--disk-size", "64", "-q",
            ]
            up.environment = ProcessInfo.processInfo.environment.merging(["APPLIANCE_STATE_DIR": state]) { $1 }
            up.standardOutput = FileHandle.nullDevice
            up.standardError = FileHandle.nullDevice
            try up.run()
            // Interrupt once at least one node has been started but before the lab is running.
            let deadline = Date().addingTimeInterval(120)
            var interrupted = false
            while Date() < deadline && up.isRunning {
                if let s = try? LabState.load(config.statePath), s.nodes.contains(where: { $0.pid != nil }) {
                    kill(up.processIdentifier, SIGKILL)
                    interrupted = true
                    break
                }
                usleep(5_000)
            }
            up.waitUntilExit()
            #expect(interrupted, "lab up finished or failed before it could be interrupted")
            #expect((try? LabState.load(config.statePath))??.phase == .starting)
            #expect(!Leftovers(config).isEmpty)

            // A new `up` says one is there; `down` cleans it.
            #expect(throws: LabError.self) { try lab.up(.init(nodes: 1)) }
            _ = try lab.down()
            let left = Leftovers(config)
            #expect(left.isEmpty, "left behind: \(left)")
        }
    }
}
