import Foundation
import Testing

@testable import ApplianceLab

/// The package builder without a lab: real dpkg-deb output, read back with dpkg-deb.
@Suite("lab packages")
struct LabPackagesTests {
    func dpkgDeb(_ args: String...) throws -> String {
        try HostCommand.run("dpkg-deb", args).stdout
    }

    @Test func aBinaryThatNeedsTheSwiftRuntimeIsRefused() throws {
        // This test bundle links the Swift runtime dynamically, as a plain `swift build` does.
        let me = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let needed = try ELFDynamic.neededLibraries(path: me)
        #expect(needed.contains("libswiftCore.so"))
        let refused = #expect(throws: LabError.self) { try LabPackages.checkRunsWithoutToolchain(me) }
        #expect(refused?.message.contains("it is linked against the Swift runtime (libswift") == true)
        #expect(refused?.hint?.contains("--static-swift-stdlib") == true)
        #expect(refused?.exitStatus == .usage)
        let text = FileManager.default.temporaryDirectory.appendingPathComponent("not-elf-\(getpid())").path
        try "#!/bin/sh\n".write(toFile: text, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: text)
        defer { try? FileManager.default.removeItem(atPath: text) }
        #expect(throws: LabError.self) { try LabPackages.checkRunsWithoutToolchain(text) }
        #expect(throws: LabError.self) { try LabPackages.checkRunsWithoutToolchain("/nonexistent/appliance-labnode") }
    }

    @Test func packagesCarryTheRealNamesVersionsLinksAndScripts() throws {
        // /bin/true needs only libc, as a binary linked with --static-swift-stdlib does.
        #expect(try ELFDynamic.neededLibraries(path: "/bin/true").contains("libc.so.6"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-pkg-unit-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let built = try LabPackages(labnode: "/bin/true", kubernetesVersion: "1.35.1", driverVersion: "590.48.01")
            .build(into: dir)
        #expect(
            built.map { "\($0.name) \($0.version)" } == [
                "appliance-labnode 1.0.0", "kubeadm 1.35.1-1.1", "kubelet 1.35.1-1.1", "kubectl 1.35.1-1.1",
                "helm 3.19.0", "nvidia-driver 590.48.01", "nvidia-fabricmanager 590.48.01",
                "nvidia-container-toolkit 1.19.1-1",
            ])
        #expect(
            try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
                == built.map { ($0.path as NSString).lastPathComponent }.sorted())
        let p = Dictionary(uniqueKeysWithValues: built.map { ($0.name, $0.path) })
        let base = try #require(p["appliance-labnode"])
        #expect(
            try dpkgDeb("-f", base, "Package", "Version", "Architecture")
                == "Package: appliance-labnode\nVersion: 1.0.0\nArchitecture: amd64")
        let contents = try dpkgDeb("-c", base)
        #expect(
            contents.contains("-rwxr-xr-x root/root")
                && contents.contains("./usr/lib/appliance-labnode/appliance-labnode"))
        #expect(contents.contains("./usr/bin/lspci -> /usr/lib/appliance-labnode/appliance-labnode"))
        let kubelet = try #require(p["kubelet"])
        #expect(try dpkgDeb("-f", kubelet, "Depends") == "appliance-labnode (>= 1.0.0)")
        #expect(try dpkgDeb("-c", kubelet).contains("./lib/systemd/system/kubelet.service"))
        #expect(
            try dpkgDeb("--info", kubelet, "postinst").contains(
                "echo v1.35.1 > /var/lib/appliance-lab/versions/kubelet"))
        let driver = try #require(p["nvidia-driver"])
        let driverFiles = try dpkgDeb("-c", driver)
        #expect(driverFiles.contains("./usr/bin/nvidia-smi -> ") && driverFiles.contains("./usr/bin/dcgmi -> "))
        #expect(
            try dpkgDeb("--info", driver, "postinst").contains(
                "echo 590.48.01 > /var/lib/appliance-lab/driver-installed"))
        let fm = try #require(p["nvidia-fabricmanager"])
        #expect(try dpkgDeb("-f", fm, "Depends") == "appliance-labnode (>= 1.0.0), nvidia-driver")
        #expect(try dpkgDeb("-c", fm).contains("./lib/systemd/system/nvidia-fabricmanager.service"))
        let toolkit = try dpkgDeb("-c", try #require(p["nvidia-container-toolkit"]))
        #expect(
            toolkit.contains("./usr/bin/nvidia-ctk -> ") && toolkit.contains("./usr/bin/nvidia-container-runtime -> "))

        #expect(throws: LabError.self) {
            try LabPackages(labnode: "/bin/true", kubernetesVersion: "v1.35").build(into: dir)
        }
    }

    @Test func theRealKubectlIsPackedWithinTheSkewAndRefusedOutsideIt() throws {
        // A fake "real" kubectl: what `version --client -o json` prints is all the choice reads.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lab-kubectl-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func fake(_ name: String, _ version: String) throws -> String {
            let path = "\(dir)/\(name)"
            try "#!/bin/sh\necho '{\"clientVersion\":{\"gitVersion\":\"v\(version)\"}}'\n".write(
                toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
            return path
        }
        _ = try fake("kubectl.1.31", "1.31.9")
        let k33 = try fake("kubectl.1.33", "1.33.1")
        let k35 = try fake("kubectl.1.35", "1.35.0")
        // The newest within one minor of 1.34: 1.35, then 1.34, then 1.33.
        #expect(RealKubectl.find(for: "1.34.3", in: [dir])?.path == k35)
        try FileManager.default.removeItem(atPath: k35)
        #expect(RealKubectl.find(for: "1.34.3", in: [dir])?.version == "1.33.1")
        #expect(RealKubectl.find(for: "1.30.0", in: [dir])?.version == "1.31.9")
        #expect(RealKubectl.find(for: "1.28.0", in: [dir]) == nil)
        // An explicit one outside the skew is refused, with the flag to use instead.
        let far = #expect(throws: LabError.self) { try RealKubectl.check(k33, kubernetesVersion: "1.31.0") }
        #expect(far?.message.contains("more than one minor version away") == true)
        #expect(far?.hint?.contains("--stand-in-kubectl") == true && far?.exitStatus == .usage)
        #expect(throws: LabError.self) { try RealKubectl.check("/bin/true", kubernetesVersion: "1.34.3") }
        #expect(try RealKubectl.check(k33, kubernetesVersion: "1.34.3") == "1.33.1")

        // Packed: the binary itself at /usr/bin/kubectl, the package at the client's version.
        let out = dir + "/debs"
        let built = try LabPackages(labnode: "/bin/true", kubectl: .real(path: k33, version: "1.33.1")).build(into: out)
        let kubectl = try #require(built.first { $0.name == "kubectl" })
        #expect(kubectl.version == "1.33.1-1.1")
        let files = try dpkgDeb("-c", kubectl.path)
        #expect(
            files.split(separator: "\n").contains {
                $0.hasPrefix("-rwxr-xr-x root/root") && $0.hasSuffix(" ./usr/bin/kubectl")
            } && !files.contains("->"), "\(files)")
        let postinst = try dpkgDeb("--info", kubectl.path, "postinst")
        #expect(postinst.contains("echo real > /var/lib/appliance-lab/kubectl-kind"))
        #expect(postinst.contains("echo v1.33.1 > /var/lib/appliance-lab/versions/kubectl"))
        // The stand-in says so too.
        let standIn = try LabPackages(labnode: "/bin/true").build(into: out + "-s")
        let standInKubectl = try #require(standIn.first { $0.name == "kubectl" })
        #expect(
            try dpkgDeb("-c", standInKubectl.path).contains(
                "./usr/bin/kubectl -> /usr/lib/appliance-labnode/appliance-labnode"))
        #expect(
            try dpkgDeb("--info", standInKubectl.path, "postinst").contains(
                "echo stand-in > /var/lib/appliance-lab/kubectl-kind"))
    }
}
