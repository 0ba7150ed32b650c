import ApplianceModel
import Foundation

/// What a real server has and a systemd-nspawn container lacks, given to every lab node so that the
/// installer needs no lab-only code path (issue 11, DESIGN section 7):
///
/// - **cgroup v1 controllers writable.** nspawn mounts the controller hierarchies read-only; containerd and runc
///   must create cgroups. A oneshot unit (`appliance-lab-node.service`, ordered before `sysinit.target`, so
///   before containerd on every boot, also after a power-off) remounts them read-write. With the capabilities
///   the boot script gives (`--capability=all --system-call-filter=@keyring`) and `/var/lib/containerd` bound
///   to a host directory (overlayfs cannot hold containerd's snapshots), Debian's containerd and runc run.
/// - **Kernel modules as kmod sees them.** A node shares the host's kernel and cannot load modules. When the
///   host kernel is modular, `lab up` loads `overlay` and `br_netfilter` on the host and binds the host's
///   `/lib/modules` read-only into each node, so `modprobe overlay br_netfilter` in a node finds them loaded and
///   succeeds. When they are built in (no `/lib/modules` on the host, as on this build machine), each node gets a
///   `/lib/modules/<release>/modules.builtin` naming the built-in modules `lab up` found, indexed with `depmod` at
///   boot, so `modprobe` succeeds as on a server whose kernel has them built in.
/// - **Sysctls.** `net.ipv4.ip_forward` and the `net.bridge.bridge-nf-call-*` switches are per network
///   namespace (the node's own), but nspawn mounts `/proc/sys` read-only: the unit bind-mounts `/proc/sys/net`
///   read-write again, so `sysctl -w` and `sysctl --system` set them, and re-applies `sysctl.d` at boot
///   (systemd-sysctl skips a read-only `/proc/sys`). Sysctls outside `net.*` (`vm.*`, `kernel.*`, `fs.*`)
///   stay read-only in a node: they belong to the host's kernel.
enum LabServerParity {
    /// Modules kmod must find on a node: what kubeadm's guides load, and what flannel and kube-proxy use.
    /// Each with how `lab up` proves that the host kernel has it when there is no module directory.
    static let builtinProbes: [(module: String, path: String, probe: @Sendable () -> Bool)] = [
        (
            "overlay", "kernel/fs/overlayfs/overlay.ko",
            { ProcFile.text("/proc/filesystems")?.contains("\toverlay") == true }
        ),
        ("bridge", "kernel/net/bridge/bridge.ko", { FileManager.default.fileExists(atPath: "/sys/module/bridge") }),
        (
            "br_netfilter", "kernel/net/bridge/br_netfilter.ko",
            { FileManager.default.fileExists(atPath: "/proc/sys/net/bridge/bridge-nf-call-iptables") }
        ),
        ("vxlan", "kernel/drivers/net/vxlan/vxlan.ko", { FileManager.default.fileExists(atPath: "/sys/module/vxlan") }),
        (
            "nf_conntrack", "kernel/net/netfilter/nf_conntrack.ko",
            { FileManager.default.fileExists(atPath: "/sys/module/nf_conntrack") }
        ),
    ]

    /// The host's kernel release.
    static var kernelRelease: String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: &u.release) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Whether the host has a module directory for its kernel (a modular kernel).
    static var hostHasModules: Bool { FileManager.default.fileExists(atPath: "/lib/modules/\(kernelRelease)") }

    /// On a modular host: loads what nodes need, on the host (nodes share its kernel).
    static func loadHostModules() throws(LabError) {
        guard hostHasModules else { return }
        for m in ["overlay", "br_netfilter"] {
            try HostCommand.run("modprobe", [m], context: "cannot load the kernel module \(m) for the lab nodes")
        }
    }

    /// `modules.builtin` of a monolithic host: the modules the probes found.
    static func builtinList() -> String {
        builtinProbes.filter { $0.probe() }.map { $0.path + "\n" }.joined()
    }

    static let unitName = "appliance-lab-node.service"
    static let scriptPath = "usr/lib/appliance-lab/node-setup"

    static let script = """
        #!/bin/sh
        # Written by `appliance lab up`: gives this container node what a server has (see the appliance README).
        # cgroup v1 controllers are mounted read-only by systemd-nspawn; containerd and runc need them writable.
        for d in /sys/fs/cgroup/*; do
          [ -d "$d" ] || continue
          # remount,bind changes this mount's flag only (a superblock remount is refused: EBUSY)
          if mountpoint -q "$d"; then mount -o remount,bind,rw "$d" || echo "cannot remount $d read-write" >&2; fi
        done
        # net.* sysctls belong to this node's own network namespace; nspawn mounts /proc/sys read-only, so
        # /proc/sys/net is made writable again (the rest of /proc/sys is the host kernel's and stays read-only).
        if ! grep -q " /proc/sys/net " /proc/self/mountinfo; then
          mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net \
            || echo "cannot make /proc/sys/net writable" >&2
        fi
        # systemd-sysctl skips a read-only /proc/sys at boot: apply the net.* settings of sysctl.d as it would.
        sysctl --system >/dev/null 2>&1 || true
        # The kernel's built-in modules, indexed for kmod so that modprobe finds them as on a server.
        rel=$(uname -r)
        if [ -f "/lib/modules/$rel/modules.builtin" ] && [ ! -f "/lib/modules/$rel/modules.builtin.bin" ]; then
          depmod -a "$rel" || echo "depmod failed" >&2
        fi
        exit 0

        """

    static let unit = """
        # Written by `appliance lab up`: what a real server has and a container lacks (cgroups, kmod index).
        [Unit]
        Description=appliance lab: give this node what a server has
        DefaultDependencies=no
        Before=sysinit.target containerd.service
        ConditionVirtualization=container

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/\(scriptPath)

        [Install]
        WantedBy=sysinit.target

        """

    /// Files for the node's upper layer: (relative path, content, mode).
    static func files() -> [(String, Data, Int)] {
        var out: [(String, Data, Int)] = [
            (scriptPath, Data(script.utf8), 0o755),
            ("etc/systemd/system/\(unitName)", Data(unit.utf8), 0o644),
        ]
        if !hostHasModules {
            // usr/lib: /lib is a symbolic link to usr/lib in Debian 12's merged /usr; a real lib/ directory in the
            // upper layer would hide it (and /lib/systemd with it)
            let dir = "usr/lib/modules/\(kernelRelease)"
            out.append(("\(dir)/modules.builtin", Data(builtinList().utf8), 0o644))
            // what depmod reads besides (no loadable modules: both empty)
            out.append(("\(dir)/modules.order", Data(), 0o644))
            out.append(("\(dir)/modules.builtin.modinfo", Data(), 0o644))
        }
        return out
    }

    /// The unit's enablement link (relative to the upper layer) and its target.
    static var enableLink: (path: String, target: String) {
        ("etc/systemd/system/sysinit.target.wants/\(unitName)", "../\(unitName)")
    }

    /// Extra systemd-nspawn arguments: the host's module directory, read-only, on a modular host.
    static func nspawnArguments() -> [String] {
        hostHasModules ? ["--bind-ro=/lib/modules/\(kernelRelease)"] : []
    }
}
