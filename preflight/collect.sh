# appliance preflight collector: runs on one node in one round trip (POSIX sh, as root or with sudo -n).
# Reads only; changes nothing except a probe file under $PF_STAGING_DIR and a temporary NFS mount point,
# both removed before it exits. Tolerates missing tools: each section ends with its exit code, and a tool
# that is not installed reports 127. Output is line-oriented:
#   @@appliance:begin NAME
#   ...the command's stdout and stderr...
#   @@appliance:end NAME RC
# Parameters arrive as environment variables set by the caller before this text:
#   PF_PEERS (addresses of the other nodes), PF_DNS_NAMES (names that must resolve), PF_STAGING_DIR,
#   PF_NFS_SERVER, PF_NFS_PATH, PF_DCGM (1: run `dcgmi diag -r 1 -j`), PF_CMD_TIMEOUT (seconds per tool).
#
# Cost: on a cluster of N nodes every collector shares the node's cores with the others' (and on a lab host,
# all of them share one machine), so the collector is built to cost little CPU (about 0.02 CPU-s where the
# old one-process-per-check version took 0.12-0.2): the shell itself does what its builtins can (tests,
# globs, PATH lookups, reading one-line files), a single awk reads every other file from /proc, /sys and
# /etc (listening ports from /proc/net/tcp instead of ss, the cgroup file system from /proc/mounts instead
# of stat), and external tools run only where nothing else can answer (df, ip, systemctl, timedatectl, the
# GPU tools), once each, and only when the hardware or software they describe is there (journalctl's Xid
# scan only with an NVIDIA driver, device or nvidia-smi; the nvidia-smi CSV query only when the XML query
# failed; chronyc only when timedatectl did not already say the clock is synchronised).
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export PATH
T=${PF_CMD_TIMEOUT:-20}
have() { command -v "$1" >/dev/null 2>&1; }
# tmo CMD...: run with a time limit when `timeout` exists (a hung nvidia-smi must not hang the node's report).
tmo() { if have timeout; then timeout "$T" "$@"; else "$@"; fi; }
sec() { n=$1; shift; echo "@@appliance:begin $n"; "$@" 2>&1 </dev/null; rc=$?; echo; echo "@@appliance:end $n $rc"; }
# tool NAME TOOL ARGS...: like sec, but reports 127 when TOOL is missing. Sets `rc`.
tool() { n=$1; t=$2; shift 2
  if have "$t"; then sec "$n" tmo "$t" "$@"; else echo "@@appliance:begin $n"; echo "$t: not found"; echo "@@appliance:end $n 127"; rc=127; fi; }
# Like `tool`, without the time limit: for tools that only read kernel state (ip) and cannot hang.
direct() { n=$1; t=$2; shift 2
  if have "$t"; then sec "$n" "$t" "$@"; else echo "@@appliance:begin $n"; echo "$t: not found"; echo "@@appliance:end $n 127"; fi; }

# The node's clock, read first (for the skew check).
now=$(date +%s.%N)
host=""; read -r host 2>/dev/null </proc/sys/kernel/hostname
kver=""; read -r kver 2>/dev/null </proc/sys/kernel/osrelease

echo "@@appliance:begin meta"; echo "$now"; echo "$host"
# The user id, without a process: the owner of this shell's /proc entry is who runs it.
uid=""; while read -r k v _; do [ "$k" = "Uid:" ] && uid=$v && break; done 2>/dev/null </proc/self/status; echo "$uid"
echo; echo "@@appliance:end meta 0"
echo "@@appliance:begin uname"; m=""; read -r m 2>/dev/null </proc/sys/kernel/arch || m=$(uname -m); echo "$kver $m"; echo; echo "@@appliance:end uname 0"

# Everything that is a file: one awk, one section each, with the exit code the single-file command gave.
# The fabric manager's version comes from the dpkg database here when its binary is not installed.
fm_tool=0; have nv-fabricmanager && fm_tool=1
set -- /etc/apt/apt.conf.d/* /etc/modprobe.d/* /usr/lib/modprobe.d/*
awk -v fm_tool="$fm_tool" -v staging="${PF_STAGING_DIR:-}" '
function begin(n) { print "@@appliance:begin " n }
function end(n, rc) { print ""; print "@@appliance:end " n " " rc }
# Prints a file; returns 0, or 1 when it cannot be read (like `[ -r F ] && cat F`).
function catf(f,   l, r, any) { any = 0
  while ((r = (getline l < f)) > 0) { print l; any = 1 }
  close(f); return (r < 0 && !any) ? 1 : 0 }
function first(f,   l, r) { r = (getline l < f); close(f); return r > 0 ? l : "\001" }
function section_file(n, f) { begin(n); end(n, catf(f)) }
BEGIN {
  section_file("os-release", "/etc/os-release")
  # CPUs online (getconf _NPROCESSORS_ONLN reads the same list), then the model.
  begin("cpu"); n = 0; on = first("/sys/devices/system/cpu/online")
  if (on != "\001") { k = split(on, parts, ","); for (i = 1; i <= k; i++) {
      if (split(parts[i], r, "-") == 2) n += r[2] - r[1] + 1; else n++ } }
  print n
  while ((getline l < "/proc/cpuinfo") > 0) if (l ~ /^model name/) { sub(/^[^:]*: /, "", l); print l; break }
  close("/proc/cpuinfo"); end("cpu", 0)
  section_file("meminfo", "/proc/meminfo")
  section_file("swaps", "/proc/swaps")
  begin("sysctl"); split("net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables", ks, " ")
  for (i = 1; i <= 3; i++) { v = first("/proc/sys/" ks[i]); print ks[i] "=" (v == "\001" ? "missing" : v) }
  end("sysctl", 0)
  begin("modules"); rc = 1; while ((getline l < "/proc/modules") > 0) { split(l, w, " "); print w[1]; rc = 0 }
  close("/proc/modules"); end("modules", rc)
  section_file("cmdline", "/proc/cmdline")
  begin("ids"); v = first("/sys/class/dmi/id/product_uuid"); print "product_uuid=" (v == "\001" ? "" : v)
  v = first("/etc/machine-id"); print "machine_id=" (v == "\001" ? "" : v); end("ids", 0)
  # Listening TCP sockets (state 0A) as `ss -ltnH` lists them: state, queues, local address:port, peer.
  begin("listen"); rc = 1
  for (t = 4; t <= 6; t += 2) { f = t == 4 ? "/proc/net/tcp" : "/proc/net/tcp6"; hdr = 1
    while ((getline l < f) > 0) { rc = 0; if (hdr) { hdr = 0; continue }
      split(l, c, " "); if (c[4] != "0A") continue
      split(c[2], a, ":"); print "LISTEN 0 0 " addr(a[1]) ":" hex(a[2]) " " (t == 4 ? "0.0.0.0:*" : "[::]:*") }
    close(f) }
  end("listen", rc)
  section_file("resolv", "/etc/resolv.conf")
  begin("proxy"); for (k in ENVIRON) if (tolower(k) ~ /^(https?|no)_proxy$/) print k "=" ENVIRON[k]; end("proxy", 0)
  begin("containerd-config"); grepf("/etc/containerd/config.toml", "SystemdCgroup|sandbox_image|disabled_plugins|runtimes.nvidia|BinaryName"); end("containerd-config", 0)
  begin("kubelet-config"); grepf("/var/lib/kubelet/config.yaml", "cgroupDriver|failSwapOn"); end("kubelet-config", 0)
  # The file system type at /sys/fs/cgroup, named as `stat -f -c %T` names it.
  begin("cgroupfs"); best = -1; fs = ""
  while ((getline l < "/proc/mounts") > 0) { split(l, m, " "); p = m[2]
    if ((p == "/sys/fs/cgroup" || p == "/" || index("/sys/fs/cgroup/", p "/") == 1) && length(p) >= best) { best = length(p); fs = m[3] } }
  close("/proc/mounts")
  if (fs == "cgroup2") fs = "cgroup2fs"; else if (fs == "cgroup") fs = "cgroupfs"
  if (fs != "") print fs; end("cgroupfs", fs == "" ? 1 : 0)
  # Held packages are dpkg selections ("Status: hold ..."); apt-mark showhold would load the whole cache.
  begin("apt-holds"); p = ""; fmv = ""; fmp = 0
  while ((getline l < "/var/lib/dpkg/status") > 0) {
    if (l ~ /^Package: /) { p = substr(l, 10); fmp = (p ~ /^nvidia-fabricmanager/) }
    else if (l ~ /^Status: hold /) print p
    else if (fmp && fmv == "" && l ~ /^Version: /) fmv = substr(l, 10) }
  close("/var/lib/dpkg/status")
  on = 0; for (i = 1; i < ARGC; i++) if (ARGV[i] ~ /^\/etc\/apt\/apt\.conf\.d\//) on += grepf(ARGV[i], "Unattended-Upgrade \"1\"")
  if (on) print "unattended=on"; end("apt-holds", 0)
  begin("nouveau-blacklist"); for (i = 1; i < ARGC; i++) if (ARGV[i] ~ /modprobe\.d\//) grepf(ARGV[i], "^(blacklist nouveau|options nouveau)")
  end("nouveau-blacklist", 0)
  section_file("nvidia-proc", "/proc/driver/nvidia/version")
  if (!fm_tool) { begin("fabricmanager"); v = fmv
    if (match(v, /^[0-9]+\.[0-9]+\.[0-9]+/)) v = substr(v, 1, RLENGTH); else v = ""
    print "version=" (v == "" ? "none" : v); end("fabricmanager", 0) }
  exit 0
}
# Prints the lines of f matching re; returns how many.
function grepf(f, re,   l, n) { n = 0; while ((getline l < f) > 0) if (l ~ re) { print l; n++ }; close(f); return n }
function hex(h,   i, v) { v = 0; h = toupper(h); for (i = 1; i <= length(h); i++) v = v * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1; return v }
# /proc/net/tcp addresses: IPv4 as one little-endian word; IPv6 as four of them.
function addr(h,   i, o) {
  if (length(h) == 8) return hex(substr(h, 7, 2)) "." hex(substr(h, 5, 2)) "." hex(substr(h, 3, 2)) "." hex(substr(h, 1, 2))
  if (h ~ /^0+$/) return "[::]"
  o = ""; for (i = 1; i <= 32; i += 8) o = o substr(h, i + 6, 2) substr(h, i + 4, 2) (i < 25 ? ":" : "") substr(h, i + 2, 2) substr(h, i, 2)
  return "[" tolower(o) "]"
}
' "$@" 2>/dev/null
if [ "$fm_tool" = 1 ]; then
  sec fabricmanager sh -c 'v=$(nv-fabricmanager --version 2>/dev/null | grep -o -E "[0-9]+\.[0-9]+\.[0-9]+" | head -1); [ -z "$v" ] && v=$(dpkg-query -W -f="\${Version}" "nvidia-fabricmanager*" 2>/dev/null | grep -o -E "^[0-9]+\.[0-9]+\.[0-9]+" | head -1); echo "version=${v:-none}"'
fi

disk() { df -Pk / /var/lib "${PF_STAGING_DIR:-/var/lib/appliance}" 2>/dev/null || df -Pk /; }
sec disk disk
direct links ip -o link show
direct addrs ip -o -4 addr show
# One systemctl call for every unit (two per unit cost a tenth of a second): "UNIT active=STATE enabled=STATE".
# systemctl and timedatectl answer only where systemd runs as init (sd_booted(): /run/systemd/system).
booted=0; [ -d /run/systemd/system ] && booted=1
services() {
  have systemctl && [ $booted = 1 ] || return 0
  units=""
  for u in containerd kubelet nvidia-fabricmanager nvidia-persistenced firewalld ufw chronyd chrony systemd-timesyncd ntp; do
    units="$units $u.service"
  done
  # shellcheck disable=SC2086
  systemctl show -p Id,ActiveState,UnitFileState $units 2>/dev/null | awk 'BEGIN { RS = ""; FS = "\n" }
    { id = ""; a = ""; e = ""
      for (i = 1; i <= NF; i++) { k = $i; sub(/=.*/, "", k); v = substr($i, length(k) + 2)
        if (k == "Id") id = v; else if (k == "ActiveState") a = v; else if (k == "UnitFileState") e = v }
      sub(/\.service$/, "", id); if (id != "") print id " active=" a " enabled=" e }'
}
sec services services
# timedatectl first; chronyc only when it did not already say the clock is synchronised.
timesync() {
  synced=""
  if have timedatectl && [ $booted = 1 ]; then synced=$(timedatectl show -p NTPSynchronized 2>/dev/null); [ -n "$synced" ] && echo "$synced"; fi
  if [ "$synced" != "NTPSynchronized=yes" ] && have chronyc; then
    chronyc -n tracking 2>/dev/null | grep -E "^(System time|Leap status)"
  fi
  return 0
}
sec time timesync
# Name resolution: names in /etc/hosts (the "files" source, first in every default nsswitch.conf) are
# read by the shell itself; the others resolve in parallel, each bounded, so a resolver that does not answer
# cannot stall the report. ahosts (getaddrinfo) asks for both address families at once. Prints "NAME ADDR".
dns() {
  [ -n "${PF_DNS_NAMES:-}" ] || return 0
  want=" $PF_DNS_NAMES "; found=" "
  while read -r addr names; do
    case $addr in ''|'#'*) continue ;; esac
    for h in $names; do
      case $h in '#'*) break ;; esac
      case $want in *" $h "*) ;; *) continue ;; esac
      case $found in *" $h "*) continue ;; esac
      found="$found$h "; echo "$h $addr"
    done
  done 2>/dev/null </etc/hosts
  for name in $PF_DNS_NAMES; do
    case $found in *" $name "*) continue ;; esac
    ( r=$(timeout 3 getent ahosts "$name" 2>/dev/null | head -1); echo "$name ${r:-UNRESOLVED}" ) &
  done
  wait
}
sec dns dns
# Every peer at once, one ping process each (no shell around it); then their exit codes in order.
peers() {
  pids=""
  for p in $PF_PEERS; do ping -c1 -W2 "$p" >/dev/null 2>&1 & pids="$pids $!"; done
  # shellcheck disable=SC2086
  set -- $pids
  for p in $PF_PEERS; do
    if wait "$1"; then echo "$p ok"; else echo "$p unreachable"; fi
    shift
  done
  return 0
}
if have ping; then
  sec peers peers
else
  echo "@@appliance:begin peers"; echo "ping: not found"; echo "@@appliance:end peers 127"
fi
# PATH lookups by the shell's own `command -v`: no process per binary.
executables() {
  for b in ip iptables mount nsenter conntrack ebtables ethtool socat tc touch crictl containerd kubeadm kubelet kubectl; do
    if have "$b"; then printf '%s ' "$b"; command -v "$b"; else echo "$b MISSING"; fi
  done
}
sec exec executables
kube_dirs() {
  for f in /etc/kubernetes/manifests/*; do [ -e "$f" ] && echo "${f##*/}"; done
  for f in /var/lib/etcd/* /var/lib/etcd/.[!.]* /var/lib/etcd/..?*; do [ -e "$f" ] && echo "etcd:${f##*/}"; done
  return 0
}
sec kube-dirs kube_dirs
tool secureboot mokutil --sb-state
iommu() { set -- /sys/kernel/iommu_groups/*; if [ -e "$1" ]; then echo $#; else echo 0; fi; }
sec iommu iommu
kernel_headers() { if [ -d "/lib/modules/$kver/build" ]; then echo present; else echo absent; fi; }
sec kernel-headers kernel_headers

# GPUs: nvidia-smi's full XML query carries every per-GPU field; the CSV query is its fallback only.
tool nvsmi-xml nvidia-smi -q -x
if [ "$rc" != 0 ] && [ "$rc" != 127 ]; then
  tool nvsmi-csv nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,pci.device_id,memory.total,driver_version,vbios_version,persistence_mode,ecc.mode.current,ecc.mode.pending,ecc.errors.uncorrected.volatile.total,ecc.errors.uncorrected.aggregate.total,ecc.errors.corrected.aggregate.total,retired_pages.pending,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,mig.mode.current,mig.mode.pending,pstate,clocks_event_reasons.hw_slowdown,clocks_event_reasons.hw_thermal_slowdown,clocks_event_reasons.hw_power_brake_slowdown,temperature.gpu,power.limit,power.default_limit,fabric.state,fabric.status --format=csv
elif [ "$rc" = 127 ]; then
  echo "@@appliance:begin nvsmi-csv"; echo "nvidia-smi: not found"; echo "@@appliance:end nvsmi-csv 127"
fi
tool topo nvidia-smi topo -m
tool nvlink-s nvidia-smi nvlink -s
tool nvlink-e nvidia-smi nvlink -e
tool lspci lspci -nn
# Xid messages come from the NVIDIA kernel driver: scan the kernel log only where an NVIDIA driver, device
# (PCI vendor 0x10de) or nvidia-smi is present.
nvidia_present() {
  [ -d /proc/driver/nvidia ] && return 0
  have nvidia-smi && return 0
  for v in /sys/bus/pci/devices/*/vendor; do
    [ -r "$v" ] || continue; read -r id <"$v" && [ "$id" = 0x10de ] && return 0
  done
  return 1
}
xid() {
  nvidia_present || return 0
  (journalctl -k -b --no-pager 2>/dev/null || dmesg 2>/dev/null) | grep -E "NVRM: Xid|Xid=" | tail -50; true
}
sec xid xid
if [ "${PF_DCGM:-0}" = 1 ]; then tool dcgm dcgmi diag -r 1 -j; fi
tool ibstat ibstat
versions() {
  if have kubeadm; then kubeadm version -o short 2>/dev/null | sed "s/^/kubeadm=/"; fi
  if have kubelet; then kubelet --version 2>/dev/null | sed "s/.* /kubelet=/"; fi
  return 0
}
sec versions versions
if [ -n "${PF_NFS_SERVER:-}" ]; then
  sec nfs sh -c 'd=$(mktemp -d /tmp/appliance-nfs.XXXXXX) || exit 1; if mount -t nfs -o ro,soft,timeo=50,retrans=1,nolock "$PF_NFS_SERVER:$PF_NFS_PATH" "$d" 2>&1; then echo mounted; umount "$d"; rc=0; else rc=1; fi; rmdir "$d"; exit $rc'
fi
# Write latency, last (as it always was): 64 synchronous 4 KiB writes between two clock readings; the
# second is also meta-end.
write_latency() {
  d=${PF_STAGING_DIR:-/var/lib/appliance}; [ -d "$d" ] || d=/var/tmp; f="$d/.appliance-preflight.$$"
  start=$(date +%s.%N)
  dd if=/dev/zero of="$f" bs=4k count=64 oflag=dsync 2>/dev/null; wrc=$?
  end=$(date +%s.%N); rm -f "$f"
  s0=${start%.*}; n0=${start#*.}; s1=${end%.*}; n1=${end#*.}
  # Leading zeros would read as octal: strip them.
  while [ "${n0#0}" != "$n0" ]; do n0=${n0#0}; done; while [ "${n1#0}" != "$n1" ]; do n1=${n1#0}; done
  printf "dir=%s\nwrites=64\nns=%s\n" "$d" "$(( (s1 - s0) * 1000000000 + ${n1:-0} - ${n0:-0} ))"
  return $wrc
}
echo "@@appliance:begin write-latency"; write_latency 2>&1 </dev/null; rc=$?; echo; echo "@@appliance:end write-latency $rc"
echo "@@appliance:begin meta-end"; echo "$end"; echo; echo "@@appliance:end meta-end 0"
