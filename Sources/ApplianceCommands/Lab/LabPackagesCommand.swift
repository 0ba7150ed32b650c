import ApplianceLab
import ArgumentParser
import Foundation

struct LabPackagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "packages",
        abstract:
            "Build the lab's Debian packages of the stand-ins (kubeadm, kubelet, kubectl, helm, NVIDIA driver...).",
        discussion: Format.help(
            """
            Real .deb files made with dpkg-deb, installed on lab nodes with `dpkg -i` like the real packages: \
            appliance-labnode (the multi-call binary, and lspci for the node's declared hardware), kubeadm, \
            kubelet, kubectl, helm, nvidia-driver (nvidia-smi, dcgmi) and nvidia-fabricmanager. The binary must be \
            linked with `swift build --static-swift-stdlib --product appliance-labnode`: nodes have no Swift runtime. \
            The kubectl package carries a real kubectl when this host has one within one minor version of the \
            Kubernetes version (by default the newest of /usr/lib/google-cloud-sdk/bin/kubectl.1.MINOR; --kubectl \
            PATH picks one), else the stand-in.
            """))

    @OptionGroup var global: GlobalOptions

    @Option(help: "Directory to write the packages to.")
    var out: String

    @Option(help: "The appliance-labnode executable (default: the one next to this program).")
    var labnode: String?

    @Option(help: "Kubernetes version of kubeadm, kubelet and kubectl.")
    var kubernetesVersion = LabPackages.defaultKubernetesVersion

    @Option(help: "Version of the stand-in NVIDIA driver and fabric manager.")
    var driverVersion = LabPackages.defaultDriverVersion

    @Option(help: "A real kubectl binary to pack into the kubectl package (default: the newest real one found).")
    var kubectl: String?

    @Flag(help: "Pack the stand-in kubectl even when a real one is available.")
    var standInKubectl = false

    func validate() throws {
        if kubectl != nil && standInKubectl {
            throw ValidationError("--kubectl and --stand-in-kubectl exclude each other")
        }
    }

    func run() throws {
        let ctx = CommandContext.make(global, command: "lab packages")
        let choice: LabPackages.KubectlChoice
        if standInKubectl {
            choice = .standIn
        } else if let kubectl {
            choice = .real(path: kubectl, version: try RealKubectl.check(kubectl, kubernetesVersion: kubernetesVersion))
        } else if let found = RealKubectl.find(for: kubernetesVersion) {
            choice = .real(path: found.path, version: found.version)
        } else {
            choice = .standIn
        }
        let binary =
            labnode
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("appliance-labnode").path
        let packages = LabPackages(
            labnode: binary, kubernetesVersion: kubernetesVersion, driverVersion: driverVersion, kubectl: choice)
        for p in try packages.build(into: out) {
            ctx.output.print("\(p.name) \(p.version) \(p.path)")
        }
        if case .real(let path, let version) = choice {
            FileHandle.standardError.write(Data("kubectl: the real v\(version) from \(path)\n".utf8))
        } else {
            FileHandle.standardError.write(
                Data(
                    "kubectl: the stand-in (no real kubectl within one minor version of v\(kubernetesVersion) on this host)\n"
                        .utf8))
        }
    }
}
