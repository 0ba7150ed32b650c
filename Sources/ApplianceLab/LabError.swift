import ApplianceModel

/// Everything that can go wrong in the lab, with the context the operator needs to act.
public enum LabError: Error, Sendable {
    case notRoot
    case missingTool(tool: String, package: String)
    case namespacesUnavailable(detail: String)
    case nspawnUnavailable(detail: String)
    case mirrorUnreachable(mirror: String, detail: String)
    case noMirror(detail: String)
    case rootfsBuildFailed(detail: String, log: String)
    case alreadyRunning(directory: String, detail: String)
    case subnetInUse(subnet: String, detail: String)
    case notRunning(directory: String)
    case unknownNode(String, known: [String])
    case unknownProfile(String, known: [String])
    case invalidArgument(String)
    case commandFailed(command: String, status: Int32, output: String, context: String)
    case nodeNotReady(node: String, seconds: Int, detail: String)
    case nodeDown(node: String)
    case stopTimedOut(node: String, pid: Int32)
    case io(path: String, detail: String)
    case labnodeUnusable(path: String, reason: String)
    case kubectlUnusable(path: String, reason: String)
}

extension LabError: ApplianceFailure {
    public var message: String {
        switch self {
        case .notRoot:
            "the lab needs root (network namespaces, mounts and systemd-nspawn)"
        case .missingTool(let tool, _):
            "'\(tool)' is not installed"
        case .namespacesUnavailable(let detail):
            "network namespaces are not available here: \(detail)"
        case .nspawnUnavailable(let detail):
            "systemd-nspawn cannot run here: \(detail)"
        case .mirrorUnreachable(let mirror, let detail):
            "the package mirror \(mirror) cannot be reached for the first rootfs build: \(detail)"
        case .noMirror(let detail):
            "no Debian package mirror is configured: \(detail)"
        case .rootfsBuildFailed(let detail, _):
            "building the lab rootfs failed: \(detail)"
        case .alreadyRunning(let directory, let detail):
            "a lab is already running (\(detail)); its state is in \(directory)"
        case .subnetInUse(let subnet, let detail):
            "the lab subnet \(subnet).0/24 is already in use on this machine: \(detail)"
        case .notRunning(let directory):
            "no lab is running (nothing in \(directory))"
        case .unknownNode(let name, let known):
            "no lab node is named '\(name)'; nodes: \(known.joined(separator: ", "))"
        case .unknownProfile(let name, let known):
            "unknown lab profile '\(name)'; profiles: \(known.joined(separator: ", "))"
        case .invalidArgument(let text):
            text
        case .commandFailed(let command, let status, let output, let context):
            "\(context): `\(command)` exited with status \(status)"
                + (output.isEmpty
                    ? "" : ":\n" + output.split(separator: "\n").suffix(12).map { "  " + $0 }.joined(separator: "\n"))
        case .nodeNotReady(let node, let seconds, let detail):
            seconds > 0
                ? "lab node \(node) did not accept SSH within \(seconds) s: \(detail)"
                : "lab node \(node) is not ready: \(detail)"
        case .nodeDown(let node):
            "lab node \(node) is powered off"
        case .stopTimedOut(let node, let pid):
            "lab node \(node) (systemd-nspawn pid \(pid)) did not stop after SIGTERM"
        case .io(let path, let detail):
            "\(path): \(detail)"
        case .labnodeUnusable(let path, let reason):
            "the stand-in binary \(path) cannot be installed in lab nodes: \(reason)"
        case .kubectlUnusable(let path, let reason):
            "the kubectl \(path) cannot be packed for the lab: \(reason)"
        }
    }

    public var hint: String? {
        switch self {
        case .notRoot: "run it as root (sudo -E appliance lab ...)"
        case .missingTool(_, let package): "install it with scripts/bootstrap (apt-get install \(package))"
        case .namespacesUnavailable: "the lab needs a Linux host where `ip netns add` works (root, CAP_SYS_ADMIN)"
        case .nspawnUnavailable:
            "install systemd-container (scripts/bootstrap); the lab needs a host where containers can boot"
        case .mirrorUnreachable, .noMirror:
            "the first build downloads Debian packages; check /etc/apt/sources.list(.d) or pass --mirror URL; later runs use the cached rootfs"
        case .rootfsBuildFailed(_, let log): "the debootstrap log is \(log)"
        case .alreadyRunning: "take it down first with `appliance lab down` (also cleans an interrupted `lab up`)"
        case .subnetInUse: "take the other lab down, or choose another lab with --lab-id and --subnet"
        case .notRunning: "start one with `appliance lab up --profile lab --nodes 3`"
        case .unknownNode: "`appliance lab status` lists the nodes"
        case .nodeDown(let node): "power it on with `appliance lab fault \(node) power-on`"
        case .nodeNotReady: "each node's console log is in the lab directory (nodes/NAME/console.log)"
        case .stopTimedOut: "the lab never SIGKILLs a container; look at the process and run `appliance lab down` again"
        case .labnodeUnusable:
            "build it with `swift build --static-swift-stdlib --product appliance-labnode` and pass that binary with --labnode"
        case .kubectlUnusable:
            "pass a real kubectl within one minor version of the lab's Kubernetes (`dpkg -L kubectl` lists kubectl.1.27 to kubectl.1.33), or --stand-in-kubectl"
        case .unknownProfile, .invalidArgument, .commandFailed, .io: nil
        }
    }

    public var exitStatus: ExitStatus {
        switch self {
        case .alreadyRunning, .subnetInUse: .locked
        case .nodeNotReady, .nodeDown: .unreachable
        case .unknownNode, .unknownProfile, .invalidArgument, .labnodeUnusable, .kubectlUnusable: .usage
        default: .failure
        }
    }
}
