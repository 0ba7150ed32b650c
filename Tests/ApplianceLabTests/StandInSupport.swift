import ApplianceModel
import AppliancePlan
import Foundation
import Logging
import Testing

@testable import ApplianceLab

/// The repository this test file is in.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

struct StandInSetupFailure: Error, Sendable, CustomStringConvertible {
    var description: String
}

/// The stand-in binary, built once per test process with `--static-swift-stdlib` (nodes have no Swift runtime) in
/// its own scratch path, or `$APPLIANCE_LABNODE_BINARY`.
let staticLabnode: Result<String, StandInSetupFailure> = {
    if let given = ProcessInfo.processInfo.environment["APPLIANCE_LABNODE_BINARY"], !given.isEmpty {
        return .success(given)
    }
    let scratch = packageRoot + "/.build-labnode"
    do {
        let r = try HostCommand.run(
            "/usr/bin/env",
            [
                "swift", "build", "--package-path", packageRoot, "--scratch-path", scratch, "--static-swift-stdlib",
                "--product", "appliance-labnode",
            ], check: false)
        guard r.status == 0 else {
            return .failure(.init(description: "swift build --static-swift-stdlib failed: \(r.combined.suffix(2000))"))
        }
    } catch { return .failure(.init(description: "\(error)")) }
    return .success(scratch + "/debug/appliance-labnode")
}()

/// The lab packages of that binary, built once per test process.
let builtLabPackages: Result<[LabPackages.Package], StandInSetupFailure> = {
    do {
        return .success(try buildLabPackages(kubernetesVersion: LabPackages.defaultKubernetesVersion))
    } catch { return .failure(.init(description: "\(error)")) }
}()

/// The kubectl the lab tests put in nodes: the real one when this machine has one within the skew (CI's does:
/// the Google Cloud CLI's kubectl package), else the stand-in.
func labKubectl(kubernetesVersion: String) -> LabPackages.KubectlChoice {
    RealKubectl.find(for: kubernetesVersion).map { .real(path: $0.path, version: $0.version) } ?? .standIn
}

func buildLabPackages(kubernetesVersion: String) throws -> [LabPackages.Package] {
    // Next to the binary's build (ignored by git, replaced by each run), not a new temporary directory per run.
    let dir = packageRoot + "/.build-labnode/lab-packages-\(kubernetesVersion)"
    return try LabPackages(
        labnode: try staticLabnode.get(), kubernetesVersion: kubernetesVersion,
        kubectl: labKubectl(kubernetesVersion: kubernetesVersion)
    ).build(into: dir)
}

func labPackages() throws -> [String: LabPackages.Package] {
    byName(try builtLabPackages.get())
}

func byName(_ packages: [LabPackages.Package]) -> [String: LabPackages.Package] {
    Dictionary(uniqueKeysWithValues: packages.map { ($0.name, $0) })
}

/// One running lab for a stand-in test, with SSH helpers. `down` runs when the test ends.
struct StandInLab {
    let lab: Lab
    let state: LabState
    let ssh: LabSSH

    init(id: String, subnet: String, profile: String, nodes: Int, controlPlanes: Int) throws {
        let config = try LabConfig(
            id: id, subnet: subnet,
            directory: FileManager.default.temporaryDirectory.appendingPathComponent("lab-\(id)-\(getpid())").path)
        lab = Lab(config: config, logger: Logger(label: "lab-test"))
        _ = try? lab.down()
        do {
            state = try lab.up(
                .init(profile: profile, nodes: nodes, controlPlanes: controlPlanes, diskSizeMiB: 64)
            ).state
        } catch {
            _ = try? lab.down()
            throw error
        }
        ssh = lab.ssh(state)
    }

    func down() { _ = try? lab.down() }

    func address(_ node: String) throws -> String { try state.node(node).address }

    /// Runs a shell command on a node; the result whatever its exit status.
    @discardableResult
    func run(_ node: String, _ command: String, timeout: Int = 120) throws -> HostCommand.Result {
        try ssh.run(address: try address(node), "timeout \(timeout) sh -c \(quote(command))", check: false)
    }

    /// stdout of a command that must succeed.
    @discardableResult
    func ok(_ node: String, _ command: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws
        -> String
    {
        let r = try run(node, command)
        try #require(
            r.status == 0, "\(node): `\(command)` exited \(r.status): \(r.combined)", sourceLocation: sourceLocation)
        return r.stdout
    }

    /// Copies the named lab packages to the nodes and installs them there with `dpkg -i`, all nodes at once.
    func install(_ names: [String], on nodes: [String], from packages: [String: LabPackages.Package]) throws {
        let files = try names.map { n in try #require(packages[n], "no lab package \(n)").path }
        let remote = files.map { "/tmp/" + ($0 as NSString).lastPathComponent }.joined(separator: " ")
        let ssh = self.ssh
        let targets = try nodes.map { try address($0) }
        let failures = Parallel.map(targets) { address -> String? in
            do {
                try ssh.copy(files, address: address, to: "/tmp")
                let r = try ssh.run(address: address, "dpkg -i \(remote)", check: false)
                return r.status == 0 ? nil : "\(address): dpkg -i exited \(r.status): \(r.combined)"
            } catch { return "\(address): \(error)" }
        }.compactMap { $0 }
        try #require(failures.isEmpty, "\(failures)")
    }

    /// Writes a file on a node.
    func write(_ node: String, _ path: String, _ text: String) throws {
        let r = try ssh.run(
            address: try address(node), "cat > \(path) <<'LAB_EOF'\n\(text)\nLAB_EOF", check: false)
        try #require(r.status == 0, "cannot write \(path) on \(node): \(r.combined)")
    }

    /// `kubectl get nodes -o json` on `node` with `kubeconfig`: name -> Ready condition status ("True",
    /// "Unknown", ...); nil when kubectl fails.
    func nodeReadiness(on node: String, kubeconfig: String = "/etc/kubernetes/admin.conf") throws -> [String: String]? {
        let r = try run(node, "KUBECONFIG=\(kubeconfig) kubectl get nodes -o json", timeout: 30)
        guard r.status == 0 else { return nil }
        let list = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(list["kind"] as? String == "List" && list["apiVersion"] as? String == "v1")  // as kubectl prints it
        var out: [String: String] = [:]
        for item in list["items"] as? [[String: Any]] ?? [] {
            let name = (item["metadata"] as? [String: Any])?["name"] as? String ?? "?"
            let conditions = (item["status"] as? [String: Any])?["conditions"] as? [[String: Any]] ?? []
            out[name] = conditions.first { $0["type"] as? String == "Ready" }?["status"] as? String ?? "absent"
        }
        return out
    }

    /// Polls `condition` every half second until it holds or `seconds` pass; returns whether it held.
    func eventually(_ seconds: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.5)
        } while Date() < deadline
        return try condition()
    }
}

func quote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

/// The v1beta4 kubeadm configuration the tests init with (`controllerManager.extraArgs` sets the lab's short
/// node grace period, as on a real cluster).
func kubeadmConfig(address: String, node: String, grace: Int = 6) -> String {
    """
    apiVersion: kubeadm.k8s.io/v1beta4
    kind: InitConfiguration
    localAPIEndpoint:
      advertiseAddress: \(address)
      bindPort: 6443
    nodeRegistration:
      name: \(node)
      criSocket: unix:///run/containerd/containerd.sock
    ---
    apiVersion: kubeadm.k8s.io/v1beta4
    kind: ClusterConfiguration
    kubernetesVersion: v1.34.3
    clusterName: lab
    controlPlaneEndpoint: \(address):6443
    networking:
      podSubnet: 10.244.0.0/16
      serviceSubnet: 10.96.0.0/12
    controllerManager:
      extraArgs:
      - name: node-monitor-grace-period
        value: \(grace)s
    ---
    apiVersion: kubelet.config.k8s.io/v1beta1
    kind: KubeletConfiguration
    cgroupDriver: systemd
    """
}

/// The journal's transitions of `step` in the newest operation of `kind` in the CLI's state directory.
func journalTransitions(_ cli: ApplianceCLI, kind: String, step: String) throws -> [StepTransition] {
    let clusters = try FileManager.default.contentsOfDirectory(atPath: cli.state + "/clusters")
    guard let cluster = clusters.first else { return [] }
    let journal = try Journal(stateDirectory: URL(fileURLWithPath: cli.state + "/clusters/" + cluster))
    // Newest first.
    guard let op = try journal.operations().first(where: { $0.kind == kind }) else { return [] }
    return try journal.transitions(operation: op.id).filter { $0.step == step }
}

/// The output the journal kept for `step` of the newest operation of `kind` in the CLI's state directory.
func journalOutput(_ cli: ApplianceCLI, kind: String, step: String) throws -> String {
    try journalTransitions(cli, kind: kind, step: step).compactMap(\.outputTail).joined(separator: "\n")
}

/// The states `step` went through in the newest operation of `kind`.
func journalStates(_ cli: ApplianceCLI, kind: String, step: String) throws -> [StepState] {
    try journalTransitions(cli, kind: kind, step: step).map(\.state)
}
