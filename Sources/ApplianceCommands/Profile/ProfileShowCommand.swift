import ApplianceModel
import AppliancePreflight
import ArgumentParser
import Foundation

struct ProfileShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one profile: roles, OS, GPU stack, sizing, queues.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Profile name (see `appliance profile list`).") var name: String
    @Option(name: .long, help: "text or json") var format: OutputFormat = .text

    func run() async throws {
        let ctx = CommandContext.make(global, command: "profile show")
        let p = try ProfileCatalog(directory: ResourceLocator.profilesDirectory()).load(name)
        if format == .json {
            let e = JSONEncoder()
            e.outputFormatting = [.prettyPrinted, .sortedKeys]
            ctx.output.print(String(decoding: try e.encode(ProfileJSON(p)), as: UTF8.self))
            return
        }
        var out = "\(p.name): \(p.summary)\n\nOS releases:\n"
        for r in p.os.releases {
            out +=
                "  \(r.id) \(r.version) (\(r.status)) kernels: \(r.kernels.isEmpty ? "any" : r.kernels.joined(separator: ", "))\n"
        }
        out +=
            "\nGPU stack: \(p.gpuStack.mode.rawValue), drivers \(p.gpuStack.driverVersions.joined(separator: ", ")), GPU Operator \(p.gpuStack.operatorVersion), MIG \(p.gpuStack.migStrategy)\n"
        out +=
            "Kubernetes: \(p.kubernetes.version), \(p.kubernetes.cni), pods \(p.kubernetes.podCIDR), services \(p.kubernetes.serviceCIDR)\n\nRoles:\n"
        for role in NodeRole.allCases {
            guard let r = p.roles[role] else { continue }
            out +=
                "  \(role.rawValue): \(r.cpus) CPU, \(r.memoryGiB) GiB, \(r.diskGiB) GB disk, staging headroom \(r.stagingHeadroomGiB) GB\(r.cpuModelContains.map { ", CPU \($0)" } ?? "")\n"
            if let g = r.gpu {
                out +=
                    "    GPUs: \(g.counts.map(String.init).joined(separator: " or "))x \(g.models.joined(separator: " / ")), >= \(g.memoryMiB) MiB, NVLink \(g.nvlinksPerGPU)x\(g.nvlinkSpeedGBps) GB/s, NVSwitch \(g.nvswitches), fabric manager \(g.fabricManager ? "yes" : "no"), ECC \(g.ecc)\n"
            }
            for n in r.nics {
                out += "    NIC: \(n.count)x \(n.kind) >= \(n.minRateGbps) Gb/s\(n.model.map { " (\($0))" } ?? "")\n"
            }
        }
        out += "\nControl plane: \(p.controlPlane.nodes) Kubernetes control-plane nodes\n"
        out += "  component            cpu req/limit  memory req/limit  replicas  volume\n"
        for c in p.controlPlane.components {
            out +=
                "  " + c.name.padding(toLength: 21, withPad: " ", startingAt: 0)
                + "\(c.cpuRequest)/\(c.cpuLimit)".padding(toLength: 15, withPad: " ", startingAt: 0)
                + "\(c.memoryRequest)/\(c.memoryLimit)".padding(toLength: 18, withPad: " ", startingAt: 0)
                + "\(c.replicas)".padding(toLength: 10, withPad: " ", startingAt: 0)
                + (c.volumeGiB > 0 ? "\(c.volumeGiB) GiB" : "-") + "\n"
        }
        out += "\nQueues:\n"
        for q in p.queues {
            out += "  \(q.name): \(q.gpuQuota) GPUs\(q.overQuota ? " (may borrow)" : ""), priority \(q.priority)\n"
        }
        ctx.output.print(out)
    }
}

/// JSON form with roles keyed by role name.
struct ProfileJSON: Encodable {
    let p: HardwareProfile
    init(_ p: HardwareProfile) { self.p = p }
    enum K: String, CodingKey { case name, description, os, gpuStack, kubernetes, roles, controlPlane, queues }
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: K.self)
        try c.encode(p.name, forKey: .name)
        try c.encode(p.summary, forKey: .description)
        try c.encode(p.os, forKey: .os)
        try c.encode(p.gpuStack, forKey: .gpuStack)
        try c.encode(p.kubernetes, forKey: .kubernetes)
        try c.encode(Dictionary(uniqueKeysWithValues: p.roles.map { ($0.key.rawValue, $0.value) }), forKey: .roles)
        try c.encode(p.controlPlane, forKey: .controlPlane)
        try c.encode(p.queues, forKey: .queues)
    }
}
