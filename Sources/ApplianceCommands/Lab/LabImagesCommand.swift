import ApplianceLab
import ApplianceModel
import ArgumentParser
import Foundation

struct LabImagesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Write the lab's OCI images (pause, the kubeadm 1.34 images, flannel) as OCI image layouts.",
        discussion: Format.help(
            """
            Made from Debian's statically linked catatonit (fetched with apt-get download and cached): the pause \
            image runs it as a real pause process (catatonit -P); the others carry the upstream names and tags the \
            lab's kubeadm and CNI pull, with the same binary inside (the lab's kubelet runs no containers). \
            Reproducible: the same bytes and digests on every build.
            """))

    @OptionGroup var global: GlobalOptions

    @Option(help: "Directory to write the image layouts to (one folder per image).")
    var out: String

    @Option(help: "Kubernetes version of the kube-* image tags.")
    var kubernetesVersion = LabPackages.defaultKubernetesVersion

    func run() throws {
        let ctx = CommandContext.make(global, command: "lab images")
        let built = try LabBundle.images(
            into: out, kubernetesVersion: kubernetesVersion,
            debCacheDirectory: StateDirectory.path() + "/cache/debs", scratch: "\(out)/.catatonit-\(getpid())")
        for b in built {
            ctx.output.print("\(b.image.reference) \(b.manifestDigest) \(b.path)")
        }
    }
}
