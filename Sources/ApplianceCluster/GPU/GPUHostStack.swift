import ApplianceBundle
import ApplianceSSH
import Foundation

/// The NVIDIA host GPU stack on one node (profile `gpuStack.mode: host-driver`), from the bundle's packages
/// through the node's local apt repository (`LocalRepository`, the same repository as the packages step):
/// the driver, the fabric manager (NVSwitch systems) enabled and started, and the container toolkit with
/// containerd given the `nvidia` runtime by `nvidia-ctk`. Each part checks the node before it changes it.
public struct GPUHostStack: Sendable {
    public let runner: NodeRunner
    public let store: String
    /// Every package the bundle carries for the node (what the repository holds).
    public let available: [StagedPackage]
    public let driver: [StagedPackage]
    public let fabricManager: [StagedPackage]
    public let toolkit: [StagedPackage]
    /// The containerd config.toml the runtime step renders (its digest is recorded beside nvidia-ctk's edit).
    public let containerdConfig: NodeFile

    public init(
        runner: NodeRunner, store: String, available: [StagedPackage], driver: [StagedPackage],
        fabricManager: [StagedPackage], toolkit: [StagedPackage], containerdConfig: NodeFile
    ) {
        self.runner = runner
        self.store = store
        self.available = available
        self.driver = driver
        self.fabricManager = fabricManager
        self.toolkit = toolkit
        self.containerdConfig = containerdConfig
    }

    func repository(_ part: [StagedPackage]) -> LocalRepository {
        LocalRepository(runner: runner, store: store, packages: part, available: available)
    }

    // MARK: driver

    public func driverInstalled() async throws -> Bool { try await repository(driver).isInstalled() }

    /// Installs the driver packages, loads the module where it is not loaded yet, and proves the driver
    /// answers (`nvidia-smi -L`; a GPU that fell off the bus is the validation's to name).
    public func installDriver() async throws {
        try await repository(driver).install()
        let out = try await runner.output(
            """
            [ -e /proc/driver/nvidia/version ] || modprobe nvidia >/dev/null 2>&1 || true
            nvidia-smi -L
            """, label: "nvidia-smi -L", timeout: .seconds(120))
        let rc = out.exit.status
        if rc != 0 && rc != 15 {
            let text = (out.stdoutText + out.stderrText).split(separator: "\n").prefix(3).joined(separator: " ")
            throw ClusterError.node(
                node: runner.name,
                reason:
                    "the NVIDIA driver is installed but does not answer (nvidia-smi exit \(rc.map(String.init) ?? "?")): \(text); a reboot may be needed to load it"
            )
        }
    }

    // MARK: fabric manager

    /// The installed versions of the driver and fabric manager packages, upstream (`535.161.08`).
    public func installedVersions() async throws -> [String: String] {
        let names = (driver + fabricManager).map { shellQuote($0.name) }.joined(separator: " ")
        guard !names.isEmpty else { return [:] }
        let out = try await runner.run(
            """
            for p in \(names); do
              printf '%s %s\\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}/${Version}' "$p" 2>/dev/null)"
            done
            """, label: "driver and fabric manager versions")
        var v: [String: String] = [:]
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 2, f[1].hasPrefix("installed/") else { continue }
            v[String(f[0])] = GPUHostPackages.upstreamVersion(String(f[1].dropFirst("installed/".count)))
        }
        return v
    }

    /// The node's fabric manager and driver packages at different versions: one line naming both, or nil.
    public func versionMismatch() async throws -> String? {
        let v = try await installedVersions()
        guard let d = driver.first(where: { GPUHostPackages.part(ofPackage: $0.name) == .driver }),
            let dv = v[d.name]
        else { return nil }
        for f in fabricManager {
            if let fv = v[f.name], fv != dv {
                return
                    "\(f.name) \(fv) is installed with the driver \(d.name) \(dv): the fabric manager must be exactly the driver's version"
            }
        }
        return nil
    }

    public static let fabricManagerUnit = "nvidia-fabricmanager"

    public func fabricManagerReady() async throws -> Bool {
        guard try await repository(fabricManager).isInstalled(), try await versionMismatch() == nil else {
            return false
        }
        return try await runner.succeeds(
            "[ \"$(systemctl is-enabled \(Self.fabricManagerUnit) 2>/dev/null)\" = enabled ] && systemctl is-active -q \(Self.fabricManagerUnit)",
            label: "fabric manager enabled and active")
    }

    /// Installs the fabric manager at the driver's version (refused when the node's versions differ), enables
    /// it and starts it; it must still be running a few seconds later (it exits at once on a version skew or
    /// a topology it does not know).
    public func startFabricManager() async throws {
        try await repository(fabricManager).install()
        if let m = try await versionMismatch() { throw ClusterError.node(node: runner.name, reason: m) }
        let u = Self.fabricManagerUnit
        let out = try await runner.output(
            """
            systemctl enable \(u) >/dev/null 2>&1 || exit 3
            systemctl is-active -q \(u) || systemctl restart \(u) || true
            sleep 3
            if systemctl is-active -q \(u); then sleep 2; systemctl is-active -q \(u) && exit 0; fi
            echo "$(systemctl is-active \(u) 2>/dev/null)"
            journalctl -u \(u) -n 4 --no-pager -o cat 2>/dev/null | grep -v -e '^Started ' -e '^Stopped ' -e 'Scheduled restart' | tail -3
            exit 4
            """, label: "enable and start \(u)", timeout: .seconds(60))
        guard out.exit.succeeded else {
            let lines = out.stdoutText.split(separator: "\n").map(String.init)
            let state = lines.first ?? "inactive"
            let log = lines.dropFirst().joined(separator: " | ")
            throw ClusterError.node(
                node: runner.name,
                reason:
                    "\(u) does not stay running (\(state))\(log.isEmpty ? "" : ": \(log)"); without it CUDA reports 'system not yet initialized' on NVSwitch systems"
            )
        }
    }

    // MARK: container toolkit and containerd

    public static let nvidiaRuntimeBinary = "/usr/bin/nvidia-container-runtime"

    /// Done when the toolkit packages are at the bundle's versions, containerd's files are exactly what
    /// nvidia-ctk last made of the installer's config.toml (`ContainerdConfig.toolkitEditRecord`), and the
    /// running containerd's effective configuration has the `nvidia` runtime.
    public func toolkitConfigured() async throws -> Bool {
        guard try await repository(toolkit).isInstalled() else { return false }
        return try await runner.succeeds(
            """
            r=\(ContainerdConfig.toolkitEditRecord); [ -f "$r" ] || exit 1
            read -r base edited dropin < "$r" || exit 1
            [ "$base" = \(containerdConfig.sha256) ] || exit 1
            [ "$edited" = "$(sha256sum < \(ContainerdConfig.path) | cut -d' ' -f1)" ] || exit 1
            [ "$dropin" = "$(sha256sum < \(ContainerdConfig.nvidiaDropInPath) 2>/dev/null | cut -d' ' -f1)" ] || exit 1
            systemctl is-active -q containerd || exit 1
            containerd config dump 2>/dev/null | grep -qF 'BinaryName = "\(Self.nvidiaRuntimeBinary)"'
            """, label: "containerd has the nvidia runtime")
    }

    /// Installs the toolkit, runs `nvidia-ctk runtime configure --runtime=containerd --set-as-default` (as the
    /// toolkit's install guide and the GPU Operator's host-toolkit mode ask), restarts containerd only when
    /// its configuration changed, and records the digests.
    public func configureToolkit() async throws {
        try await repository(toolkit).install()
        let cfg = ContainerdConfig.path
        let dropIn = ContainerdConfig.nvidiaDropInPath
        try await runner.run(
            """
            sum() { sha256sum < "$1" 2>/dev/null | cut -d' ' -f1; }
            before="$(sum \(cfg)) $(sum \(dropIn))"
            nvidia-ctk runtime configure --runtime=containerd --config=\(cfg) --drop-in-config=\(dropIn) --set-as-default >/tmp/appliance-nvidia-ctk.log 2>&1 \\
              || { tail -5 /tmp/appliance-nvidia-ctk.log >&2; exit 4; }
            after="$(sum \(cfg)) $(sum \(dropIn))"
            if [ "$before" != "$after" ] || ! containerd config dump 2>/dev/null | grep -qF 'BinaryName = "\(Self.nvidiaRuntimeBinary)"' \\
               || ! systemctl is-active -q containerd; then
              systemctl restart containerd || exit 5
              i=0; until ctr version >/dev/null 2>&1; do
                i=$((i+1)); [ $i -gt 30 ] && { echo 'containerd does not answer on its socket after the restart' >&2; exit 6; }
                sleep 1
              done
            fi
            containerd config dump 2>/dev/null | grep -qF 'BinaryName = "\(Self.nvidiaRuntimeBinary)"' \\
              || { echo 'containerd has no nvidia runtime after nvidia-ctk runtime configure' >&2; exit 7; }
            mkdir -p \((ContainerdConfig.toolkitEditRecord as NSString).deletingLastPathComponent)
            echo \(containerdConfig.sha256) "$(sum \(cfg))" "$(sum \(dropIn))" > \(ContainerdConfig.toolkitEditRecord)
            """, label: "nvidia-ctk runtime configure --runtime=containerd", timeout: .seconds(180))
    }
}
