import Foundation

/// The `nvidia-ctk` stand-in (NVIDIA Container Toolkit CLI 1.18/1.19): `runtime configure --runtime=containerd`
/// edits containerd's real configuration files as the real one does since 1.18, where drop-in files are the
/// default (NVIDIA/nvidia-container-toolkit `pkg/config/engine/containerd`, PRs #1311 and #1382):
///
/// - the drop-in (`--drop-in-config`, default `/etc/containerd/conf.d/99-nvidia.toml`) gets the config's
///   `version`, a copy of the whole CRI plugin section of the top-level config (containerd 1.x merges an
///   imported file's plugin sections whole, containerd#5837, so the drop-in carries them all), and the
///   `nvidia` runtime: the `runc` runtime's tables copied under `runtimes.nvidia` with
///   `options.BinaryName = "/usr/bin/nvidia-container-runtime"`; `--set-as-default` also sets
///   `default_runtime_name = "nvidia"`;
/// - the top-level config (`--config`, default `/etc/containerd/config.toml`) gets the import of the drop-in's
///   directory (`imports = ["/etc/containerd/conf.d/*.toml"]`), kept beside imports it already has.
///
/// Difference from the real tool: it edits the top-level file's text in place instead of re-serialising it
/// with go-toml (comments and layout are kept; the keys and values are the same).
/// `--dry-run` prints the drop-in instead of writing anything. `--version` prints the toolkit version.
public struct NvidiaCTK: Sendable {
    public let context: LabNodeContext
    public init(context: LabNodeContext) { self.context = context }

    public static let version = "1.19.1"
    public static let runtimeBinary = "/usr/bin/nvidia-container-runtime"

    public func run(_ args: [String]) -> ToolOutput {
        if args.first == "--version" || args.first == "-v" {
            return .ok("NVIDIA Container Toolkit CLI version \(Self.version)\ncommit: lab-stand-in\n")
        }
        guard args.count >= 2, args[0] == "runtime", args[1] == "configure" else {
            return .fail(
                1,
                stderr:
                    "nvidia-ctk (lab stand-in): supported: `nvidia-ctk runtime configure --runtime=containerd [--config=PATH] [--drop-in-config=PATH] [--set-as-default] [--nvidia-runtime-name=NAME] [--dry-run]`, `nvidia-ctk --version`"
            )
        }
        var runtime = "docker"
        var config = "/etc/containerd/config.toml"
        var dropIn = "/etc/containerd/conf.d/99-nvidia.toml"
        var setDefault = false
        var name = "nvidia"
        var dryRun = false
        var i = 2
        while i < args.count {
            let a = args[i]
            func value() -> String? {
                if let eq = a.firstIndex(of: "=") { return String(a[a.index(after: eq)...]) }
                i += 1
                return i < args.count ? args[i] : nil
            }
            let key = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
            switch key {
            case "--runtime": runtime = value() ?? ""
            case "--config": config = value() ?? ""
            case "--drop-in-config": dropIn = value() ?? ""
            case "--set-as-default", "--nvidia-set-as-default": setDefault = true
            case "--nvidia-runtime-name": name = value() ?? "nvidia"
            case "--dry-run": dryRun = true
            default:
                return .fail(1, stderr: "Incorrect Usage: flag provided but not defined: -\(a.drop { $0 == "-" })")
            }
            i += 1
        }
        guard runtime == "containerd" else {
            return .fail(
                1, stderr: "nvidia-ctk (lab stand-in): only --runtime=containerd is modelled, not '\(runtime)'")
        }
        let original = context.read(config) ?? ""
        let result: (topLevel: String, dropIn: String)
        do {
            result = try Self.configure(
                topLevel: original, dropInPath: dropIn, runtimeName: name, setAsDefault: setDefault)
        } catch {
            return .fail(1, stderr: "ERRO[0000] unable to load config: \(error)")
        }
        var log = "INFO[0000] Using config version \(Self.configVersion(original))\n"
        log += "INFO[0000] Using CRI runtime plugin name \"\(Self.criPlugin(version: Self.configVersion(original)))\"\n"
        if dryRun { return ToolOutput(stdout: result.dropIn, stderr: log) }
        do {
            try context.write(dropIn, result.dropIn)
            if result.topLevel != original { try context.write(config, result.topLevel) }
        } catch {
            return .fail(1, stderr: log + "ERRO[0000] unable to flush config: \(error)")
        }
        log += "INFO[0000] Wrote updated config to \(dropIn)\n"
        log += "INFO[0000] It is recommended that containerd daemon be restarted.\n"
        return ToolOutput(stderr: log)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The config's `version` (1 when absent, as containerd reads it; 2 for an empty file, as nvidia-ctk does).
    static func configVersion(_ text: String) -> Int {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return 2 }
        for line in text.split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("[") { break }
            if t.hasPrefix("version"), let eq = t.firstIndex(of: "="),
                let v = Int(t[t.index(after: eq)...].trimmingCharacters(in: .whitespaces))
            {
                return v
            }
        }
        return 1
    }

    static func criPlugin(version: Int) -> String {
        switch version {
        case 1: "cri"
        case 2: "io.containerd.grpc.v1.cri"
        default: "io.containerd.cri.v1.runtime"
        }
    }

    /// One `[table]` block of a TOML file: its header path (as written) and its lines.
    struct Block {
        var header: String
        var lines: [String]
    }

    /// Top-level lines (before the first table) and the table blocks, in order.
    static func blocks(_ text: String) -> (top: [String], tables: [Block]) {
        var top: [String] = []
        var tables: [Block] = []
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(raw)
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("[") && !t.hasPrefix("[[") && t.hasSuffix("]") {
                tables.append(
                    Block(header: String(t.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces), lines: []))
            } else if tables.isEmpty {
                top.append(line)
            } else {
                tables[tables.count - 1].lines.append(line)
            }
        }
        return (top, tables)
    }

    /// The edited top-level config and the drop-in's text.
    /// `runtimeBinary`: the runtime's `BinaryName` (the toolkit container of the GPU Operator installs it under
    /// `/usr/local/nvidia/toolkit`).
    public static func configure(
        topLevel: String, dropInPath: String, runtimeName: String, setAsDefault: Bool,
        runtimeBinary: String = NvidiaCTK.runtimeBinary
    ) throws
        -> (topLevel: String, dropIn: String)
    {
        let version = configVersion(topLevel)
        guard version >= 2 else {
            throw Failure(description: "config version \(version) does not support drop-in files (imports)")
        }
        let plugin = "plugins.\"\(criPlugin(version: version))\""
        let runtimes = "\(plugin).containerd.runtimes"
        let (top, tables) = blocks(topLevel)
        // The drop-in: the whole CRI plugin section, the runtime copied from runc, BinaryName set.
        var out = "version = \(version)\n"
        var cri = tables.filter { $0.header == plugin || $0.header.hasPrefix(plugin + ".") }
        cri.removeAll {
            $0.header == "\(runtimes).\(runtimeName)" || $0.header.hasPrefix("\(runtimes).\(runtimeName).")
        }
        if setAsDefault {
            let containerdTable = "\(plugin).containerd"
            if let i = cri.firstIndex(where: { $0.header == containerdTable }) {
                cri[i].lines.removeAll {
                    $0.trimmingCharacters(in: .whitespaces).hasPrefix("default_runtime_name")
                }
                cri[i].lines.insert("  default_runtime_name = \"\(runtimeName)\"", at: 0)
            } else {
                cri.append(Block(header: containerdTable, lines: ["  default_runtime_name = \"\(runtimeName)\""]))
            }
        }
        let runc = cri.filter { $0.header == "\(runtimes).runc" || $0.header.hasPrefix("\(runtimes).runc.") }
        var nvidia: [Block] = runc.map {
            Block(
                header: "\(runtimes).\(runtimeName)" + String($0.header.dropFirst("\(runtimes).runc".count)),
                lines: $0.lines)
        }
        if !nvidia.contains(where: { $0.header == "\(runtimes).\(runtimeName)" }) {
            nvidia.insert(
                Block(
                    header: "\(runtimes).\(runtimeName)",
                    lines: ["  runtime_type = \"io.containerd.runc.v2\"", "  privileged_without_host_devices = false"]),
                at: 0)
        }
        let optionsHeader = "\(runtimes).\(runtimeName).options"
        if let i = nvidia.firstIndex(where: { $0.header == optionsHeader }) {
            nvidia[i].lines.removeAll { $0.trimmingCharacters(in: .whitespaces).hasPrefix("BinaryName") }
            nvidia[i].lines.insert("  BinaryName = \"\(runtimeBinary)\"", at: 0)
        } else {
            nvidia.append(Block(header: optionsHeader, lines: ["  BinaryName = \"\(runtimeBinary)\""]))
        }
        for b in cri + nvidia {
            out += "\n[\(b.header)]\n"
            let body = b.lines.filter {
                let t = $0.trimmingCharacters(in: .whitespaces)
                return !t.isEmpty && !t.hasPrefix("#")
            }
            for l in body { out += "  " + l.trimmingCharacters(in: .whitespaces) + "\n" }
        }
        // The top level imports the drop-in's directory.
        let pattern = ((dropInPath as NSString).deletingLastPathComponent) + "/*.toml"
        var newTop = top
        if let i = newTop.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("imports") }) {
            let line = newTop[i]
            if !line.contains("\"\(pattern)\"") {
                guard let close = line.lastIndex(of: "]") else {
                    throw Failure(description: "cannot read the imports line '\(line)'")
                }
                let inner = line[line.index(after: line.firstIndex(of: "[") ?? line.startIndex)..<close]
                    .trimmingCharacters(in: .whitespaces)
                newTop[i] = "imports = [" + (inner.isEmpty ? "" : inner + ", ") + "\"\(pattern)\"]"
            }
        } else if let v = newTop.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("version") }) {
            newTop.insert("imports = [\"\(pattern)\"]", at: v + 1)
        } else {
            newTop.insert("version = \(version)", at: 0)
            newTop.insert("imports = [\"\(pattern)\"]", at: 1)
        }
        var text = newTop.joined(separator: "\n")
        for b in tables {
            text += "\n[\(b.header)]"
            if !b.lines.isEmpty { text += "\n" + b.lines.joined(separator: "\n") }
        }
        return (text, out)
    }
}
