import ApplianceModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What one stand-in invocation prints and how it exits.
public struct ToolOutput: Sendable, Equatable {
    public var stdout: String
    public var stderr: String
    public var exitCode: Int32

    public init(stdout: String = "", stderr: String = "", exitCode: Int32 = 0) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitCode = exitCode
    }

    public static func ok(_ text: String) -> ToolOutput { ToolOutput(stdout: text) }
    public static func fail(_ code: Int32, stderr: String) -> ToolOutput {
        ToolOutput(stderr: stderr.hasSuffix("\n") ? stderr : stderr + "\n", exitCode: code)
    }
}

/// Paths of the lab state on a node. All are absolute node paths; `LabNodeContext.path(_:)` maps them under
/// the state root (`APPLIANCE_LABNODE_ROOT`, default `/`).
public enum LabPaths {
    public static let stateDir = "/var/lib/appliance-lab"
    /// Present once the (lab) NVIDIA driver package is installed; its content is the driver version
    /// (empty means the version in the hardware declaration).
    public static let driverInstalled = "/var/lib/appliance-lab/driver-installed"
    /// Present once the fabric manager package is installed; content is its version (empty: driver version).
    public static let fabricManagerInstalled = "/var/lib/appliance-lab/fabricmanager-installed"
    /// Fault files, one per fault, named as `LabFault.fileName` says.
    public static let faultsDir = "/var/lib/appliance-lab/faults"
    /// Persistence mode per GPU, written by `nvidia-smi -pm`: lines "INDEX Enabled|Disabled".
    public static let persistenceMode = "/var/lib/appliance-lab/persistence-mode"
    /// The real fabric manager's pid file path; the stand-in daemon writes its pid here.
    public static let fabricManagerPID = "/run/nvidia-fabricmanager/nv-fabricmanager.pid"
    /// The lab's NFS exports as every node sees them: `<nfsRoot>/<server>/<export path>` (the lab host's export
    /// directory is bind-mounted at `<nfsRoot>/<lab host address>`; the kernel has no NFS client or server).
    public static let nfsRoot = "/var/lib/appliance-lab/nfs"
    /// Kernel log (syslog `kern.log` format) where faults leave their `NVRM: Xid` lines.
    public static let kernelLog = "/var/log/kern.log"
}

/// Everything a stand-in needs from its surroundings: the state root, the environment and the clock.
/// Tests build their own with a temporary root.
public struct LabNodeContext: Sendable {
    public var root: String
    public var environment: [String: String]
    public var now: @Sendable () -> Date

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        var root = environment["APPLIANCE_LABNODE_ROOT"] ?? "/"
        if root.isEmpty { root = "/" }
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        self.environment = environment
        self.now = now
    }

    /// Maps an absolute node path under the state root.
    public func path(_ absolute: String) -> String {
        root == "/" ? absolute : root + absolute
    }

    public var hardwarePath: String {
        environment["APPLIANCE_LAB_HARDWARE"] ?? path(HardwareDeclaration.pathOnNode)
    }

    public func loadHardware() throws -> HardwareDeclaration {
        let p = hardwarePath
        guard let data = FileManager.default.contents(atPath: p) else {
            throw LabNodeError.missingHardwareDeclaration(path: p)
        }
        do {
            return try HardwareDeclaration.decode(data)
        } catch {
            throw LabNodeError.badHardwareDeclaration(path: p, reason: "\(error)")
        }
    }

    // MARK: files

    public func exists(_ absolute: String) -> Bool {
        FileManager.default.fileExists(atPath: path(absolute))
    }

    public func read(_ absolute: String) -> String? {
        guard let d = FileManager.default.contents(atPath: path(absolute)) else { return nil }
        return String(decoding: d, as: UTF8.self)
    }

    public func write(_ absolute: String, _ text: String) throws {
        let p = path(absolute)
        try FileManager.default.createDirectory(
            atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: p), options: .atomic)
    }

    public func append(_ absolute: String, _ text: String) throws {
        let p = path(absolute)
        try FileManager.default.createDirectory(
            atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if let h = FileHandle(forWritingAtPath: p) {
            defer { try? h.close() }
            try h.seekToEnd()
            try h.write(contentsOf: Data(text.utf8))
        } else {
            try Data(text.utf8).write(to: URL(fileURLWithPath: p))
        }
    }

    public func remove(_ absolute: String) {
        try? FileManager.default.removeItem(atPath: path(absolute))
    }

    public func list(_ absoluteDir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path(absoluteDir))) ?? []).sorted()
    }

    /// Whether a pid file names a live process.
    public func pidFileIsLive(_ absolute: String) -> Bool {
        guard let text = read(absolute), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
            pid > 0
        else { return false }
        return kill(pid, 0) == 0 || errno == EPERM
    }

    public var hostname: String {
        if let h = environment["APPLIANCE_LAB_HOSTNAME"] { return h }
        return ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
    }
}

/// Errors of the stand-ins themselves (not the modelled tools' errors, which are `ToolOutput`s).
public enum LabNodeError: Error, CustomStringConvertible, Equatable {
    case missingHardwareDeclaration(path: String)
    case badHardwareDeclaration(path: String, reason: String)
    case usage(String)

    public var description: String {
        switch self {
        case .missingHardwareDeclaration(let p):
            return
                "lab hardware declaration not found at \(p) (hint: `appliance lab up` writes it; set APPLIANCE_LAB_HARDWARE to override)"
        case .badHardwareDeclaration(let p, let r):
            return "lab hardware declaration at \(p) is not valid: \(r)"
        case .usage(let s):
            return s
        }
    }
}
