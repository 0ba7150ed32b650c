import ApplianceModel
import Foundation

/// Reads `/proc`: which processes live, whose child is whom, what they run. The lab's long-lived
/// processes are not its children (they are started in their own session), so this is how it finds them.
enum ProcessTable {
    struct Entry {
        var pid: Int32
        var parent: Int32
        var state: Character
        var arguments: [String]
    }

    static func entry(_ pid: Int32) -> Entry? {
        guard let stat = ProcFile.text("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, let state = fields[0].first, let parent = Int32(fields[1]) else { return nil }
        let raw = ProcFile.data("/proc/\(pid)/cmdline") ?? Data()
        let args = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return Entry(pid: pid, parent: parent, state: state, arguments: args)
    }

    static func all() -> [Entry] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { Int32($0) }.compactMap(entry)
    }

    /// Running and not a zombie.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let e = entry(pid) else { return false }
        return e.state != "Z" && e.state != "X"
    }

    static func children(of pid: Int32) -> [Entry] { all().filter { $0.parent == pid } }

    /// systemd-nspawn processes running a machine whose name starts with `prefix`.
    static func nspawnProcesses(machinePrefix prefix: String) -> [Entry] {
        all().filter { e in
            guard e.arguments.first?.hasSuffix("systemd-nspawn") == true else { return false }
            return zip(e.arguments, e.arguments.dropFirst()).contains { $0 == "-M" && $1.hasPrefix(prefix) }
        }
    }

    /// Sends SIGTERM to every pid, again every few seconds (a container caught early in its boot may
    /// miss the first one), and waits until all are gone or the deadline passes; returns those left.
    /// Never SIGKILL: a killed systemd-nspawn orphans the container's init.
    static func terminate(_ pids: [Int32], timeout: TimeInterval) -> [Int32] {
        let deadline = Date().addingTimeInterval(timeout)
        var left = pids.filter(isAlive)
        var nextSignal = Date.distantPast
        while !left.isEmpty && Date() < deadline {
            if Date() >= nextSignal {
                for pid in left { kill(pid, SIGTERM) }
                nextSignal = Date().addingTimeInterval(3)
            }
            usleep(50_000)
            left = left.filter(isAlive)
        }
        return left
    }
}
