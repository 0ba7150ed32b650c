import Foundation

/// How the kubelet stand-in runs a Job's pod. The lab has no container runtime (its images hold only a pause
/// process), so the container's command is carried out on the node itself, where the node has it:
///
/// - `nvidia-smi ARGS`: run in process against this node's GPU stack (the lab's `nvidia-smi`, with its faults),
///   as the NVIDIA runtime would expose it to the container: only when the pod was given GPUs (`nvidia.com/gpu`,
///   or a KAI fraction, whose GPU index comes from its sharing ConfigMap's `NVIDIA_VISIBLE_DEVICES` and is
///   passed as `-i INDEX`). A whole-GPU pod also needs at least as many GPUs listed as it asked for. A pod given
///   no GPU gets what a container without the NVIDIA runtime gets: `nvidia-smi: not found`, exit 127.
/// - any other command the node has (found as the container's `command[0]`, on the node's `PATH` when it has no
///   slash): run for real as a process on the node, with the container's environment (`env`, secret and
///   ConfigMap references resolved by the kubelet, `$(VAR)` expanded in command and args as Kubernetes does)
///   and only that, in its own mount and UTS namespaces: hostname = the pod's name, each volume bind-mounted at
///   its `mountPath` (read-only where the mount says so), `/etc/hosts` replaced by the pod's (the Services it
///   can resolve), working directory `/`. Its output (stdout and stderr) is the pod's log; its exit code
///   decides the pod's phase; it is killed at the deadline (exit 137).
/// - a command the node does not have: exit 127, `executable file not found in $PATH`, saying the lab has no
///   model for it.
///
/// The outcome is the container's exit code, its termination message (the last 4096 bytes of its output, as
/// `terminationMessagePolicy: FallbackToLogsOnError` gives) and its whole log.
public struct JobPodModel: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public struct Outcome: Sendable, Equatable {
        public var exitCode: Int32
        public var message: String
        /// The container's output (the pod's log).
        public var log: String = ""
    }

    /// What the kubelet resolved for the container.
    public struct Runtime: Sendable {
        /// The container's environment, references resolved (values may be secret: never logged).
        public var environment: [(String, String)] = []
        /// Bind mounts: a directory on the node (already mapped under the state root) at the container's path.
        public var mounts: [(source: String, target: String, readOnly: Bool)] = []
        /// The content of the pod's `/etc/hosts` (nil: the node's).
        public var hosts: String?
        /// Seconds before the process is killed.
        public var deadlineSeconds: Int = 300
        public init() {}
    }

    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// - Parameter visibleDevices: the pod's `NVIDIA_VISIBLE_DEVICES` from its KAI sharing ConfigMap, if any.
    public func run(_ pod: KObject, visibleDevices: String?, runtime: Runtime = Runtime()) -> Outcome {
        let container = (K.spec(pod)["containers"] as? [KObject] ?? []).first ?? [:]
        let env = Dictionary(runtime.environment, uniquingKeysWith: { _, b in b })
        let argv = ((container["command"] as? [String] ?? []) + (container["args"] as? [String] ?? [])).map {
            Self.expand($0, env)
        }
        let image = container["image"] as? String ?? ""
        guard let first = argv.first else {
            return Outcome(exitCode: 1, message: "appliance lab: no command in image \(image) to model")
        }
        if (first as NSString).lastPathComponent == "nvidia-smi" {
            return nvidiaSMI(pod, Array(argv.dropFirst()), visibleDevices: visibleDevices)
        }
        guard let executable = Self.resolve(first, path: env["PATH"] ?? Self.defaultPath) else {
            let text =
                "exec: \"\(first)\": executable file not found in $PATH\n(appliance lab: the kubelet stand-in runs a container's command on the node, and this node has no \(first); the lab has no model for \(argv.joined(separator: " ")) (image \(image)))\n"
            return Outcome(exitCode: 127, message: text, log: text)
        }
        return runProcess(pod, [executable] + argv.dropFirst(), runtime: runtime)
    }

    func nvidiaSMI(_ pod: KObject, _ arguments: [String], visibleDevices: String?) -> Outcome {
        let whole = APIServerStandin.requests(pod)["nvidia.com/gpu"] ?? 0
        let fraction = K.annotations(pod)[KAISchedulerModel.gpuFraction] != nil
        guard whole >= 1 || (fraction && visibleDevices != nil) else {
            let text = "/bin/sh: 1: nvidia-smi: not found\n(the pod was given no GPU)"
            return Outcome(exitCode: 127, message: text, log: text)
        }
        var args = arguments
        if let devices = visibleDevices, !args.contains("-i") { args += ["-i", devices] }
        let out = NvidiaSMI(context: context).run(args)
        let log = out.stdout + out.stderr
        let text = String(log.suffix(4096))
        if out.exitCode == 0, whole >= 1, args.contains("-L") {
            let listed = out.stdout.split(separator: "\n").filter { $0.hasPrefix("GPU ") }.count
            if Double(listed) < whole {
                let extra = "expected \(Int(whole)) GPUs, \(listed) listed\n"
                return Outcome(exitCode: 1, message: text + extra, log: log + extra)
            }
        }
        return Outcome(exitCode: out.exitCode, message: text, log: log)
    }

    /// `$(VAR)` references in a command or argument, as the kubelet expands them: defined variables are
    /// replaced, `$$` is a literal `$`, anything else stays as written.
    static func expand(_ s: String, _ env: [String: String]) -> String {
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            let next = s.index(after: i)
            if c == "$", next < s.endIndex {
                if s[next] == "$" {
                    out.append("$")
                    i = s.index(after: next)
                    continue
                }
                if s[next] == "(", let close = s[next...].firstIndex(of: ")") {
                    let name = String(s[s.index(after: next)..<close])
                    if let v = env[name] {
                        out += v
                        i = s.index(after: close)
                        continue
                    }
                }
            }
            out.append(c)
            i = next
        }
        return out
    }

    /// The node's executable for a container's `command[0]`.
    static func resolve(_ name: String, path: String) -> String? {
        let fm = FileManager.default
        if name.contains("/") { return fm.isExecutableFile(atPath: name) ? name : nil }
        for dir in path.split(separator: ":") where fm.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }

    static func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    func runProcess(_ pod: KObject, _ argv: [String], runtime: Runtime) -> Outcome {
        let fm = FileManager.default
        var setup = ["set -e", "hostname \(Self.quote(K.name(pod)))"]
        var hostsFile: String?
        if let hosts = runtime.hosts {
            let file = fm.temporaryDirectory.appendingPathComponent("pod-hosts-\(UUID().uuidString)").path
            if fm.createFile(atPath: file, contents: Data(hosts.utf8)) {
                hostsFile = file
                setup.append("mount --bind \(Self.quote(file)) /etc/hosts")
            }
        }
        defer { if let hostsFile { try? fm.removeItem(atPath: hostsFile) } }
        var created: [String] = []
        for m in runtime.mounts {
            if !fm.fileExists(atPath: m.target) {
                try? fm.createDirectory(atPath: m.target, withIntermediateDirectories: true)
                created.append(m.target)
            }
            setup.append("mount --bind \(Self.quote(m.source)) \(Self.quote(m.target))")
            if m.readOnly { setup.append("mount -o remount,bind,ro \(Self.quote(m.target))") }
        }
        defer { for dir in created.reversed() { try? fm.removeItem(atPath: dir) } }
        setup += ["cd /", "exec \"$@\""]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments =
            [
                "-s", "KILL", "\(max(1, runtime.deadlineSeconds))", "unshare", "--mount", "--uts", "--propagation",
                "private",
            ]
            + ["/bin/sh", "-c", setup.joined(separator: "\n"), "sh"] + argv
        var environment = ["PATH": Self.defaultPath, "HOSTNAME": K.name(pod), "HOME": "/root"]
        for (k, v) in runtime.environment { environment[k] = v }
        p.environment = environment
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            let text = "appliance lab: cannot start \(argv[0]) on the node: \(error)\n"
            return Outcome(exitCode: 128, message: text, log: text)
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var log = String(decoding: data, as: UTF8.self)
        var code = p.terminationStatus
        if code == 137 || (p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL) {
            code = 137
            log += "appliance lab: killed at the deadline (\(runtime.deadlineSeconds) s)\n"
        }
        return Outcome(exitCode: code, message: String(log.suffix(4096)), log: log)
    }
}
