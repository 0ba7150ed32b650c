import ApplianceLab
import ArgumentParser
import Foundation

struct LabPackagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "packages",
        abstract:
            "Build the lab's Debian packages of the stand-ins (kubeadm, kubelet, kubectl, helm, NVIDIA driver...).",
        discussion: """
            Real .deb files made with dpkg-deb, installed on lab nodes with `dpkg -i` like the real packages: \
            appliance-labnode (the multi-call binary, and lspci for the node's declared hardware), kubeadm, \
            kubelet, kubectl, helm, nvidia-driver (nvidia-smi, dcgmi) and nvidia-fabricmanager. The binary must be \
            linked with `swift build --static-swift-stdlib --product appliance-labnode`: nodes have no Swift runtime.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(help: "Directory to write the packages to.")
    var out: String

    @Option(help: "The appliance-labnode executable (default: the one next to this program).")
    var labnode: String?

    @Option(help: "Kubernetes version of kubeadm, kubelet and kubectl.")
    var kubernetesVersion = LabPackages.defaultKubernetesVersion

    @Option(help: "Version of the stand-in NVIDIA driver and fabric manager.")
    var driverVersion = LabPackages.defaultDriverVersion

    func run() throws {
        let ctx = CommandContext.make(global, command: "lab packages")
        let binary =
            labnode
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("appliance-labnode").path
        let packages = LabPackages(
            labnode: binary, kubernetesVersion: kubernetesVersion, driverVersion: driverVersion)
        for p in try packages.build(into: out) {
            ctx.output.print("\(p.name) \(p.version) \(p.path)")
        }
    }
}
