import ApplianceModel
import Foundation

/// The GPU Operator's operands on a GPU node (`gpuStack.mode: operator-precompiled`), by container name as
/// the operator names them. The lab runs no containers, so the kubelet does on the node what each container
/// would do to it, with the lab's stand-in tools in place of the images' binaries:
///
/// - `nvidia-driver-ctr` (the precompiled driver container): "loads the kernel module" (the driver-installed
///   marker, at the declared version), and publishes its root filesystem at the driver root
///   `/run/nvidia/driver`, where the real container's `nvidia-smi` and `nv-fabricmanager` are found (the host
///   has none): a tmpfs with the node's `/usr`, `/etc`, `/run`, `/dev`, `/proc` and the lab state bound in,
///   and the container's tools over its `/usr/local/bin`; all private mounts, so nothing shows on the host.
///   On NVSwitch hardware it runs `nv-fabricmanager` as that container does (a failure to start is in the
///   pod's log; the lab does not fail the container for it).
/// - `nvidia-container-toolkit-ctr`: installs the runtime under `/usr/local/nvidia/toolkit` and configures
///   containerd with the lab's `nvidia-ctk` logic (the drop-in `/etc/containerd/conf.d/99-nvidia.toml`,
///   BinaryName the toolkit's runtime), then restarts containerd when the configuration changed.
/// - `nvidia-dcgm-ctr` (standalone DCGM): runs `nv-hostengine -n` in a mount namespace of its own where the
///   image's `dcgmi` is on `/usr/local/bin`, as in the container, so `nsenter` into it finds `dcgmi`.
///
/// Pulling the images is not modelled (the lab pulls no pod image); the precompiled image for the node's
/// kernel is install's preflight check (`gpu.precompiled-driver`).
enum GPUOperand: String, CaseIterable, Sendable {
    case driver = "nvidia-driver-ctr"
    case toolkit = "nvidia-container-toolkit-ctr"
    case dcgm = "nvidia-dcgm-ctr"

    static func of(_ p: KObject) -> GPUOperand? {
        for c in K.spec(p)["containers"] as? [KObject] ?? [] {
            if let kind = GPUOperand(rawValue: c["name"] as? String ?? "") { return kind }
        }
        return nil
    }

    /// Where the operands' images' tools are (symlinks to the lab's multi-call binary), never on the host's
    /// `PATH`.
    static let toolsDirectory = "/var/lib/appliance-lab/gpu-operator"
    static let driverTools = ["nvidia-smi", "nv-fabricmanager", "nvidia-fabricmanager"]
    static let dcgmTools = ["dcgmi", "nv-hostengine"]
    static let toolkitDirectory = "/usr/local/nvidia/toolkit"
    static let toolkitRuntime = toolkitDirectory + "/nvidia-container-runtime"
    static let dropIn = "/etc/containerd/conf.d/99-nvidia.toml"
    static let fabricManagerConfig = "/usr/share/nvidia/nvswitch/fabricmanager.cfg"
}

/// The operand pods this kubelet has set up, and the processes it runs for them, by pod uid.
final class GPUOperands: @unchecked Sendable {
    // @unchecked: all state guarded by `lock`.
    static let shared = GPUOperands()
    private let lock = NSLock()
    private var done: Set<String> = []
    private var processes: [String: Process] = [:]

    func claim(_ uid: String) -> Bool { lock.withLock { done.insert(uid).inserted } }
    func release(_ uid: String) { lock.withLock { _ = done.remove(uid) } }
    func started(_ uid: String, _ p: Process) { lock.withLock { processes[uid] = p } }

    /// Stops the processes of operand pods no longer on this node.
    func stopAbsent(present: Set<String>) {
        let gone: [Process] = lock.withLock {
            for uid in done where !present.contains(uid) { done.remove(uid) }
            let uids = processes.keys.filter { !present.contains($0) }
            return uids.compactMap { processes.removeValue(forKey: $0) }
        }
        for p in gone where p.isRunning { p.terminate() }
    }

    func stopAll() {
        let all = lock.withLock {
            defer { processes = [:] }
            return Array(processes.values)
        }
        for p in all where p.isRunning { p.terminate() }
    }
}

extension Kubelet {
    /// Sets up operand pod `p` once (again after a kubelet restart: each part is idempotent), then reports it
    /// Running and Ready; a failure leaves it waiting with the reason, tried again at the next heartbeat.
    func startGPUOperand(_ p: KObject, _ o: Options, client: KubeClient, now: Date) throws {
        let uid = K.meta(p)["uid"] as? String ?? K.name(p)
        guard let kind = GPUOperand.of(p), GPUOperands.shared.claim(uid) else { return }
        let log = Kubelet.logPath(context: context, pod: p)
        if !FileManager.default.fileExists(atPath: log) {
            FileManager.default.createFile(atPath: log, contents: nil, attributes: [.posixPermissions: 0o640])
        }
        do {
            switch kind {
            case .driver:
                try installDriver()
                if let fm = try startFabricManager(log: log) { GPUOperands.shared.started(uid, fm) }
            case .toolkit: try installToolkit(log: log)
            case .dcgm: GPUOperands.shared.started(uid, try startHostEngine(log: log))
            }
        } catch {
            GPUOperands.shared.release(uid)
            return try postWaiting(
                p, o, client: client, now: now, reason: "CrashLoopBackOff", message: "appliance lab: \(error)")
        }
        try postRunning(p, o, client: client, now: now)
    }

    struct OperandFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// Links `tools` to the lab's multi-call binary in `directory`.
    func linkTools(_ tools: [String], into directory: String) throws {
        let dir = context.path(directory)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for t in tools {
            let link = dir + "/" + t
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == context.path(Self.labnodeBinary) {
                continue
            }
            try? FileManager.default.removeItem(atPath: link)
            try FileManager.default.createSymbolicLink(
                atPath: link, withDestinationPath: context.path(Self.labnodeBinary))
        }
    }

    /// The lab's multi-call binary on a node (`LabPackages.nodeBinary`).
    static let labnodeBinary = "/usr/bin/appliance-labnode"

    /// Runs a shell script as root on the node (`Supervisor.run`); its output on failure.
    func shell(_ script: String) throws {
        let (status, output) = Supervisor.run("/bin/sh", ["-c", script])
        guard status == 0 else {
            throw OperandFailure(description: output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    func installDriver() throws {
        guard let hw = try? context.loadHardware(), hw.gpus != nil else {
            throw OperandFailure(description: "nvidia-driver-ctr: no NVIDIA GPU on this node (lspci lists none)")
        }
        if context.read(LabPaths.driverInstalled) == nil { try context.write(LabPaths.driverInstalled, "") }
        let tools = GPUOperand.toolsDirectory + "/driver/bin"
        try linkTools(GPUOperand.driverTools, into: tools)
        // Only on a real node root: tests of the model run under a state root, where mounting is not theirs.
        guard context.root == "/" else { return }
        let root = PrecompiledDriver.driverRoot
        try shell(
            """
            set -e
            DR='\(root)'
            if grep -q " $DR " /proc/self/mountinfo; then
              [ -e "$DR/usr/local/bin/nvidia-smi" ] && exit 0
              umount -R "$DR"
            fi
            mkdir -p "$DR"
            mount -t tmpfs -o mode=755 nvidia-driver-root "$DR"
            mount --make-private "$DR"
            for l in bin sbin lib lib32 lib64 libx32; do
              if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$DR/$l"; elif [ -d "/$l" ]; then mkdir -p "$DR/$l"; mount --bind "/$l" "$DR/$l"; mount --make-private "$DR/$l"; fi
            done
            for d in usr etc run dev proc var/lib/appliance-lab var/log; do
              mkdir -p "$DR/$d"; mount --bind "/$d" "$DR/$d"; mount --make-private "$DR/$d"
            done
            mkdir -p "$DR/tmp"; chmod 1777 "$DR/tmp"
            mount --bind '\(tools)' "$DR/usr/local/bin"
            """)
    }

    /// `nv-fabricmanager` of the driver container, on NVSwitch hardware (nil otherwise).
    func startFabricManager(log: String) throws -> Process? {
        guard let hw = try? context.loadHardware(), (hw.gpus?.nvswitches ?? 0) > 0 else { return nil }
        return try Self.spawn(
            context.path(GPUOperand.toolsDirectory + "/driver/bin/nv-fabricmanager"),
            ["-c", GPUOperand.fabricManagerConfig], log: log)
    }

    /// Starts a container's process, with the kubelet's environment, its output appended to the pod's log.
    static func spawn(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        p.environment = ProcessInfo.processInfo.environment
        let handle = FileHandle(forWritingAtPath: log)
        handle?.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    func installToolkit(log: String) throws {
        try linkTools(["nvidia-container-runtime", "nvidia-ctk"], into: GPUOperand.toolkitDirectory)
        let top = context.read(DevicePluginModel.containerdConfig) ?? ""
        let configured = try NvidiaCTK.configure(
            topLevel: top, dropInPath: GPUOperand.dropIn, runtimeName: "nvidia", setAsDefault: false,
            runtimeBinary: GPUOperand.toolkitRuntime)
        let changed = configured.topLevel != top || context.read(GPUOperand.dropIn) != configured.dropIn
        guard changed else { return }
        try context.write(GPUOperand.dropIn, configured.dropIn)
        try context.write(DevicePluginModel.containerdConfig, configured.topLevel)
        Kubelet.appendLog(
            log, "nvidia-container-toolkit: containerd configured (\(GPUOperand.dropIn)), restarting it\n")
        if context.root == "/" && FileManager.default.fileExists(atPath: "/run/systemd/system") {
            try shell("systemctl restart containerd")
        }
    }

    /// `nv-hostengine -n` in a mount namespace where the DCGM image's tools are on `/usr/local/bin`.
    func startHostEngine(log: String) throws -> Process {
        let tools = GPUOperand.toolsDirectory + "/dcgm/bin"
        try linkTools(GPUOperand.dcgmTools, into: tools)
        return try Self.spawn(
            "/usr/bin/unshare",
            [
                "--mount", "--propagation", "private", "/bin/sh", "-c",
                "mount --bind '\(context.path(tools))' /usr/local/bin && exec /usr/local/bin/nv-hostengine -n -b ALL",
            ], log: log)
    }

    /// Appends to the pod's log (which `startGPUOperand` creates).
    static func appendLog(_ path: String, _ text: String) {
        guard let h = FileHandle(forWritingAtPath: path) else { return }
        h.seekToEndOfFile()
        h.write(Data(text.utf8))
        try? h.close()
    }
}
