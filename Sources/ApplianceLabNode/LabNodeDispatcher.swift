import ApplianceModel
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Picks the stand-in from argv[0]'s basename (`nvidia-smi`, `kubeadm`...) or, when invoked as
/// `appliance-labnode`, from the first argument (`appliance-labnode nvidia-smi -L`).
public enum LabNodeDispatcher {
    public static let tools = [
        "nvidia-smi", "dcgmi", "nvidia-fabricmanager", "nv-fabricmanager", "lspci", "kubeadm", "kubelet", "kubectl",
        "helm", "nvidia-ctk", "nvidia-container-runtime", "nv-hostengine",
        "kube-apiserver-standin", "fault",
    ]

    /// Splits argv into the tool name and its arguments.
    public static func resolve(_ argv: [String]) -> (tool: String, args: [String])? {
        guard let first = argv.first else { return nil }
        let base = (first as NSString).lastPathComponent
        if base == "appliance-labnode" {
            guard argv.count > 1 else { return nil }
            return (argv[1], Array(argv.dropFirst(2)))
        }
        return (base, Array(argv.dropFirst()))
    }

    public static let usage = """
        usage: appliance-labnode TOOL [ARGS...]   (or install as a symlink named TOOL)
        tools: \(tools.joined(separator: ", "))
        state root: $APPLIANCE_LABNODE_ROOT (default /); hardware: $APPLIANCE_LAB_HARDWARE (default \(HardwareDeclaration.pathOnNode))

        """

    /// Runs a one-shot tool. Daemons (`nvidia-fabricmanager`, `kube-apiserver-standin`, `kubelet`) are run by
    /// `main`, which owns the process lifetime.
    public static func runTool(_ tool: String, _ args: [String], context: LabNodeContext) -> ToolOutput? {
        switch tool {
        case "nvidia-smi": return NvidiaSMI(context: context).run(args)
        case "dcgmi": return DCGMI(context: context).run(args)
        case "lspci": return Lspci(context: context).run(args)
        case "fault": return faultCommand(args, context: context)
        case "kubeadm": return Kubeadm(context: context).run(args)
        case "kubectl": return Kubectl(context: context).run(args)
        case "helm": return Helm(context: context).run(args)
        case "nvidia-ctk": return NvidiaCTK(context: context).run(args)
        default: return nil
        }
    }

    /// `appliance-labnode fault set|clear|clear-all|list KIND ARGS...` — what `appliance lab fault` runs in a node.
    static func faultCommand(_ args: [String], context: LabNodeContext) -> ToolOutput {
        let faults = LabFaults(context: context)
        let help =
            "usage: fault set|clear KIND [ARGS]  |  fault list  |  fault clear-all\n  kinds: gpu-missing N, nvlink-down GPU LINK, ecc-uncorrectable N [COUNT], driver-mismatch VERSION, fabricmanager-stopped"
        guard let verb = args.first else { return .fail(2, stderr: help) }
        switch verb {
        case "list":
            return .ok(faults.active().map { $0.fileName + "\n" }.joined())
        case "clear-all":
            faults.clearAll()
            return .ok("")
        case "set", "clear":
            guard args.count >= 2, let fault = LabFault(kind: args[1], args: Array(args.dropFirst(2))) else {
                return .fail(2, stderr: help)
            }
            if verb == "clear" {
                faults.clear(fault)
                return .ok("")
            }
            do {
                try faults.inject(fault, hardware: try context.loadHardware())
            } catch {
                return .fail(1, stderr: "fault: \(error)")
            }
            return .ok("")
        default:
            return .fail(2, stderr: help)
        }
    }

    /// Blocks SIGTERM/SIGINT and waits for one of them (for foreground daemons run by systemd or tests).
    public static func waitForTermination() -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        var sig: Int32 = 0
        sigwait(&set, &sig)
        return sig
    }

    /// Blocks SIGTERM/SIGINT in this thread (and threads it creates), so `waitForTermination` can take them.
    public static func blockTerminationSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// The whole process: returns the exit status.
    public static func main(_ argv: [String], context: LabNodeContext = LabNodeContext()) -> Int32 {
        guard let (tool, args) = resolve(argv) else {
            FileHandle.standardError.write(Data(usage.utf8))
            return 2
        }
        switch tool {
        case "nvidia-fabricmanager", "nv-fabricmanager":
            if args.contains("-v") || args.contains("--version") {
                let out = FabricManager(context: context).versionOutput()
                emit(out)
                return out.exitCode
            }
            blockTerminationSignals()
            let fm = FabricManager(context: context)
            switch fm.start(pid: getpid()) {
            case .failure(let e):
                emit(e.output)
                return e.output.exitCode
            case .success(let log):
                emit(.ok(log))
                _ = waitForTermination()
                fm.stop()
                return 0
            }
        case "nv-hostengine":
            // The DCGM host engine in the foreground (`-n`, as the GPU Operator's nvidia-dcgm container runs it):
            // the lab's dcgmi needs no engine, so it only announces itself and waits for SIGTERM.
            blockTerminationSignals()
            let port =
                args.firstIndex(of: "-p").flatMap { args.indices.contains($0 + 1) ? args[$0 + 1] : nil } ?? "5555"
            emit(.ok("Started host engine version \(DCGMI.version) using port number: \(port) \n"))
            _ = waitForTermination()
            return 0
        case "kube-apiserver-standin":
            blockTerminationSignals()
            return APIServerStandin.serve(args, context: context)
        case "kubelet":
            blockTerminationSignals()
            return Kubelet(context: context).serve(args)
        case "nvidia-container-runtime":
            // The real one adds the NVIDIA hook to the OCI spec and runs runc; the lab has no GPU to hand to a
            // container, so it runs runc with the same arguments.
            let runc = ["/usr/sbin/runc", "/usr/bin/runc"].first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let runc else {
                FileHandle.standardError.write(Data("nvidia-container-runtime (lab stand-in): runc not found\n".utf8))
                return 1
            }
            var cargs = ([runc] + args).map { strdup($0) }
            cargs.append(nil)
            execv(runc, cargs)
            return 127
        default:
            if let out = runTool(tool, args, context: context) {
                emit(out)
                return out.exitCode
            }
            FileHandle.standardError.write(Data(("appliance-labnode: unknown tool '\(tool)'\n" + usage).utf8))
            return 2
        }
    }

    public static func emit(_ out: ToolOutput) {
        if !out.stdout.isEmpty { FileHandle.standardOutput.write(Data(out.stdout.utf8)) }
        if !out.stderr.isEmpty { FileHandle.standardError.write(Data(out.stderr.utf8)) }
    }
}
