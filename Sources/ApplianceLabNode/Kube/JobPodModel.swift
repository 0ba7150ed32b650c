import Foundation

/// How the kubelet stand-in decides the outcome of a Job's pod. The lab runs no containers (its images hold only
/// a pause process), so a container's command is carried out only where the node has what it calls:
///
/// - `nvidia-smi ARGS`: run for real against this node's GPU stack (the lab's `nvidia-smi`, in process, with its
///   faults), as the NVIDIA runtime would expose it to the container: only when the pod was given GPUs
///   (`nvidia.com/gpu`, or a KAI fraction, whose GPU index comes from its sharing ConfigMap's
///   `NVIDIA_VISIBLE_DEVICES` and is passed as `-i INDEX`). A whole-GPU pod also needs at least as many GPUs
///   listed as it asked for. A pod given no GPU gets what a container without the NVIDIA runtime gets:
///   `nvidia-smi: not found`, exit 127.
/// - anything else: the pod fails (exit 1) with a message saying the lab has no model for it.
///
/// The outcome is the container's exit code and its termination message (the last 4096 bytes of its output, as
/// `terminationMessagePolicy: FallbackToLogsOnError` gives).
public struct JobPodModel: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public struct Outcome: Sendable, Equatable {
        public var exitCode: Int32
        public var message: String
    }

    /// - Parameter visibleDevices: the pod's `NVIDIA_VISIBLE_DEVICES` from its KAI sharing ConfigMap, if any.
    public func run(_ pod: KObject, visibleDevices: String?) -> Outcome {
        let container = (K.spec(pod)["containers"] as? [KObject] ?? []).first ?? [:]
        let argv = (container["command"] as? [String] ?? []) + (container["args"] as? [String] ?? [])
        let image = container["image"] as? String ?? ""
        guard let tool = argv.first.map({ ($0 as NSString).lastPathComponent }) else {
            return Outcome(exitCode: 1, message: "appliance lab: no command in image \(image) to model")
        }
        switch tool {
        case "nvidia-smi":
            let whole = APIServerStandin.requests(pod)["nvidia.com/gpu"] ?? 0
            let fraction = K.annotations(pod)[KAISchedulerModel.gpuFraction] != nil
            guard whole >= 1 || (fraction && visibleDevices != nil) else {
                return Outcome(
                    exitCode: 127, message: "/bin/sh: 1: nvidia-smi: not found\n(the pod was given no GPU)")
            }
            var args = Array(argv.dropFirst())
            if let devices = visibleDevices, !args.contains("-i") { args += ["-i", devices] }
            let out = NvidiaSMI(context: context).run(args)
            let text = String((out.stdout + out.stderr).suffix(4096))
            if out.exitCode == 0, whole >= 1, args.contains("-L") {
                let listed = out.stdout.split(separator: "\n").filter { $0.hasPrefix("GPU ") }.count
                if Double(listed) < whole {
                    return Outcome(exitCode: 1, message: text + "expected \(Int(whole)) GPUs, \(listed) listed\n")
                }
            }
            return Outcome(exitCode: out.exitCode, message: text)
        default:
            return Outcome(
                exitCode: 1,
                message:
                    "appliance lab: the kubelet stand-in runs no containers and has no model for \(argv.joined(separator: " ")) (image \(image))"
            )
        }
    }
}
