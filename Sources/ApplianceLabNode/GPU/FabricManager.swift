import Foundation

/// The `nv-fabricmanager` / `nvidia-fabricmanager` stand-in. It runs in the foreground (systemd `Type=simple`)
/// and writes its pid to the real pid file path; while that pid is alive, GPUs on NVSwitch profiles report
/// fabric state "Completed", otherwise "In Progress".
public struct FabricManager: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    /// Checks and registers the daemon. Returns the start-up log on success (the caller then waits for
    /// SIGTERM and calls `stop()`), or the failure output.
    public func start(pid: Int32) -> Result<String, ToolOutputError> {
        guard let inv = try? GPUInventory.load(context: context) else {
            return .failure(
                ToolOutputError(
                    .fail(
                        1, stderr: "nv-fabricmanager (lab stand-in): no hardware declaration at \(context.hardwarePath)"
                    )))
        }
        guard case .loaded(let driver) = inv.driver else {
            return .failure(
                ToolOutputError(
                    .fail(
                        1, stderr: "fabric manager failed to open the NVIDIA driver: NVIDIA kernel module is not loaded"
                    )))
        }
        let fmVersion = (context.read(LabPaths.fabricManagerInstalled) ?? "").trimmingCharacters(
            in: .whitespacesAndNewlines)
        if !fmVersion.isEmpty && fmVersion != driver {
            return .failure(
                ToolOutputError(
                    .fail(
                        1,
                        stderr:
                            "fabric manager NVIDIA GPU driver interface version \(fmVersion) don't match with driver version \(driver). Please update with matching NVIDIA driver package."
                    )))
        }
        guard inv.hasNVSwitch else {
            return .failure(
                ToolOutputError(
                    .fail(
                        1,
                        stderr:
                            "detected number of NVSwitches don't match with any supported system topology, aborting fabric manager"
                    )))
        }
        if inv.faults.contains(.fabricManagerStopped) {
            return .failure(
                ToolOutputError(.fail(1, stderr: "fabric manager stopped by lab fault (fabricmanager-stopped)")))
        }
        do {
            try context.write(LabPaths.fabricManagerPID, "\(pid)\n")
        } catch {
            return .failure(ToolOutputError(.fail(1, stderr: "nv-fabricmanager: cannot write pid file: \(error)")))
        }
        let v = fmVersion.isEmpty ? driver : fmVersion
        return .success(
            "Fabric Manager version is : \(v)\nConnected to 1 node.\nSuccessfully configured all the available GPUs and NVSwitches to route NVLink traffic.\n"
        )
    }

    /// `nv-fabricmanager --version`: the installed fabric manager's version (the driver's when the package
    /// records none, as in the GPU Operator's driver container, which carries both at one version).
    public func versionOutput() -> ToolOutput {
        let fm = (context.read(LabPaths.fabricManagerInstalled) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        var version = fm
        if version.isEmpty, let inv = try? GPUInventory.load(context: context), case .loaded(let d) = inv.driver {
            version = d
        }
        guard !version.isEmpty else {
            return .fail(1, stderr: "nv-fabricmanager (lab stand-in): no fabric manager or driver installed")
        }
        return .ok("Fabric Manager version is : \(version)\n")
    }

    public func stop() {
        context.remove(LabPaths.fabricManagerPID)
    }
}

/// A `ToolOutput` carried as an error.
public struct ToolOutputError: Error, Sendable {
    public var output: ToolOutput
    public init(_ output: ToolOutput) { self.output = output }
}
