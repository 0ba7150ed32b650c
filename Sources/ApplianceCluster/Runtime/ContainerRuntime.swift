import ApplianceSSH
import Foundation

/// containerd on a node: its configuration (`config.toml`, a `hosts.toml` per upstream registry mirrored
/// to the private registry, the registry's CA), enabled and started, and checked with its own client.
public struct ContainerRuntime: Sendable {
    public let runner: NodeRunner
    public let files: [NodeFile]

    public init(runner: NodeRunner, files: [NodeFile]) {
        self.runner = runner
        self.files = files
    }

    /// The files that differ from what the installer renders. `config.toml` as the NVIDIA container toolkit
    /// left it does not count: `nvidia-ctk runtime configure` (the GPU stack's step) adds its import to the file
    /// this step wrote and records both digests (`ContainerdConfig.toolkitEditRecord`); while the file is
    /// exactly that edit of exactly this rendering, it is in place.
    func differing() async throws -> [NodeFile] {
        var out = try await runner.differing(files)
        if let i = out.firstIndex(where: { $0.path == ContainerdConfig.path }) {
            let f = out[i]
            let p = shellQuote(f.path)
            let edited = try await runner.succeeds(
                """
                r=\(ContainerdConfig.toolkitEditRecord); [ -f "$r" ] && [ -f \(p) ] || exit 1
                read -r base edited _ < "$r" || exit 1
                [ "$base" = \(f.sha256) ] && [ "$edited" = "$(sha256sum < \(p) | cut -d' ' -f1)" ]
                """, label: "containerd config as the container toolkit edited it")
            if edited { out.remove(at: i) }
        }
        return out
    }

    /// What is not in place (empty: done).
    public func missing() async throws -> [String] {
        var problems = try await differing().map { "\($0.path) differs" }
        if try await !runner.succeeds(
            "systemctl is-active -q containerd && ctr version >/dev/null 2>&1", label: "containerd running")
        {
            problems.append("containerd is not running")
        }
        return problems
    }

    public func apply() async throws {
        let changed = try await differing()
        try await runner.write(changed)
        let restart = changed.contains { $0.path.hasSuffix("config.toml") }
        try await runner.run(
            """
            systemctl enable containerd >/dev/null 2>&1 || true
            \(restart ? "systemctl restart containerd" : "systemctl is-active -q containerd || systemctl start containerd") || exit 3
            i=0; until ctr version >/dev/null 2>&1; do
              i=$((i+1)); [ $i -gt 30 ] && { echo 'containerd does not answer on its socket' >&2; journalctl -u containerd -n 5 --no-pager >&2 2>/dev/null; exit 4; }
              sleep 1
            done
            """, label: "start containerd")
    }

    /// Pulls `image` through the node's mirror configuration with containerd's own client (the path the
    /// kubelet's pulls take), which proves TLS, the CA and the seeded registry from this node.
    public func pullThroughMirror(_ image: String) async throws {
        try await runner.run(
            "ctr -n k8s.io images pull --hosts-dir /etc/containerd/certs.d \(shellQuote(image)) >/dev/null",
            label: "pull \(image) through the registry mirror", timeout: .seconds(300))
    }

    public func hasImage(_ image: String) async throws -> Bool {
        try await runner.succeeds(
            "ctr -n k8s.io images ls -q | grep -qxF \(shellQuote(image))", label: "look for \(image)")
    }
}
