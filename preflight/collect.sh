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
LC_ALL=C; export LC_ALL
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH; export PATH
T=${PF_CMD_TIMEOUT:-20}
have() { command -v "$1" >/dev/null 2>&1; }
# tmo CMD...: run with a time limit when `timeout` exists (a hung nvidia-smi must not hang the node's report).
tmo() { if have timeout; then timeout "$T" "$@"; else "$@"; fi; }
sec() { n=$1; shift; echo "@@appliance:begin $n"; "$@" 2>&1 </dev/null; rc=$?; echo; echo "@@appliance:end $n $rc"; }
# tool NAME TOOL ARGS...: like sec, but reports 127 when TOOL is missing.
tool() { n=$1; t=$2; shift 2
  if have "$t"; then sec "$n" tmo "$t" "$@"; else echo "@@appliance:begin $n"; echo "$t: not found"; echo "@@appliance:end $n 127"; fi; }
catf() { for f in "$@"; do [ -r "$f" ] && cat "$f"; done; }

sec meta sh -c 'date +%s.%N; hostname; id -u'
sec os-release catf /etc/os-release
sec uname uname -rm
sec cpu sh -c 'getconf _NPROCESSORS_ONLN 2>/dev/null || nproc; grep -m1 "model name" /proc/cpuinfo | sed "s/.*: //"'
sec meminfo catf /proc/meminfo
sec disk sh -c "df -Pk / /var/lib ${PF_STAGING_DIR:-/var/lib/appliance} 2>/dev/null || df -Pk /"
sec swaps catf /proc/swaps
sec sysctl sh -c 'for k in net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables; do v=$(cat /proc/sys/$k 2>/dev/null) || v=missing; echo "$k=$v"; done'
sec modules sh -c 'cut -d" " -f1 /proc/modules 2>/dev/null'
sec cmdline catf /proc/cmdline
sec ids sh -c 'echo "product_uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)"; echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"'
tool links ip -o link show
tool addrs ip -o -4 addr show
if have ss; then sec listen ss -ltnH; else tool listen netstat -ltn; fi
# One systemctl call for every unit (two per unit cost a tenth of a second): "UNIT active=STATE enabled=STATE".
services() {
  have systemctl || return 0
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
sec time sh -c 'timedatectl show -p NTPSynchronized 2>/dev/null; chronyc -n tracking 2>/dev/null | grep -E "^(System time|Leap status)"'
sec resolv catf /etc/resolv.conf
# Name resolution: names in /etc/hosts (the "files" source, first in every default nsswitch.conf) are
# read in one awk pass; the others resolve in parallel, each bounded, so a resolver that does not answer
# cannot stall the report. ahosts (getaddrinfo) asks for both address families at once. Prints "NAME ADDR".
dns() {
  [ -n "${PF_DNS_NAMES:-}" ] || return 0
  found=$(awk -v names="$PF_DNS_NAMES" 'BEGIN { n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
    /^[ \t]*#/ { next }
    { for (i = 2; i <= NF; i++) { if ($i ~ /^#/) break; if (($i in want) && !($i in got)) got[$i] = $1 } }
    END { for (k in got) print k " " got[k] }' /etc/hosts 2>/dev/null)
  [ -n "$found" ] && echo "$found"
  for n in $PF_DNS_NAMES; do
    case "
$found" in *"
$n "*) continue ;; esac
    ( r=$(timeout 3 getent ahosts "$n" 2>/dev/null | head -1); echo "$n ${r:-UNRESOLVED}" ) &
  done
  wait
}
sec dns dns
if have ping; then
  sec peers sh -c 'for p in $PF_PEERS; do ( if ping -c1 -W2 "$p" >/dev/null 2>&1; then echo "$p ok"; else echo "$p unreachable"; fi ) & done; wait'
else
  echo "@@appliance:begin peers"; echo "ping: not found"; echo "@@appliance:end peers 127"
fi
sec exec sh -c 'for b in ip iptables mount nsenter conntrack ebtables ethtool socat tc touch crictl containerd kubeadm kubelet kubectl; do p=$(command -v $b 2>/dev/null); echo "$b ${p:-MISSING}"; done'
sec proxy sh -c 'env | grep -i -E "^(https?|no)_proxy=" || true'
sec kube-dirs sh -c 'ls /etc/kubernetes/manifests 2>/dev/null; ls -A /var/lib/etcd 2>/dev/null | sed "s/^/etcd:/"; true'
sec containerd-config sh -c 'grep -h -E "SystemdCgroup|sandbox_image|disabled_plugins|runtimes.nvidia|BinaryName" /etc/containerd/config.toml 2>/dev/null; true'
sec kubelet-config sh -c 'grep -h -E "cgroupDriver|failSwapOn" /var/lib/kubelet/config.yaml 2>/dev/null; true'
sec cgroupfs stat -fc %T /sys/fs/cgroup
tool secureboot mokutil --sb-state
sec iommu sh -c 'ls /sys/kernel/iommu_groups 2>/dev/null | wc -l'
# Held packages are dpkg selections ("Status: hold ..."): read them directly (apt-mark showhold loads the
# whole apt cache and takes about a second).
sec apt-holds sh -c 'awk "/^Package: /{p=\$2} /^Status: hold /{print p}" /var/lib/dpkg/status 2>/dev/null; grep -h -s "Unattended-Upgrade \"1\"" /etc/apt/apt.conf.d/* && echo unattended=on; true'
sec kernel-headers sh -c 'if [ -d /lib/modules/$(uname -r)/build ]; then echo present; else echo absent; fi'
sec nouveau-blacklist sh -c 'grep -rhs -E "^(blacklist nouveau|options nouveau)" /etc/modprobe.d /usr/lib/modprobe.d; true'
sec nvidia-proc catf /proc/driver/nvidia/version
tool nvsmi-xml nvidia-smi -q -x
tool nvsmi-csv nvidia-smi --query-gpu=index,name,uuid,pci.bus_id,pci.device_id,memory.total,driver_version,vbios_version,persistence_mode,ecc.mode.current,ecc.mode.pending,ecc.errors.uncorrected.volatile.total,ecc.errors.uncorrected.aggregate.total,ecc.errors.corrected.aggregate.total,retired_pages.pending,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,mig.mode.current,mig.mode.pending,pstate,clocks_event_reasons.hw_slowdown,clocks_event_reasons.hw_thermal_slowdown,clocks_event_reasons.hw_power_brake_slowdown,temperature.gpu,power.limit,power.default_limit,fabric.state,fabric.status --format=csv
tool topo nvidia-smi topo -m
tool nvlink-s nvidia-smi nvlink -s
tool nvlink-e nvidia-smi nvlink -e
tool lspci lspci -nn
sec fabricmanager sh -c 'v=$(nv-fabricmanager --version 2>/dev/null | grep -o -E "[0-9]+\.[0-9]+\.[0-9]+" | head -1); [ -z "$v" ] && v=$(dpkg-query -W -f="\${Version}" "nvidia-fabricmanager*" 2>/dev/null | grep -o -E "^[0-9]+\.[0-9]+\.[0-9]+" | head -1); echo "version=${v:-none}"'
sec xid sh -c '(journalctl -k -b --no-pager 2>/dev/null || dmesg 2>/dev/null) | grep -E "NVRM: Xid|Xid=" | tail -50; true'
if [ "${PF_DCGM:-0}" = 1 ]; then tool dcgm dcgmi diag -r 1 -j; fi
tool ibstat ibstat
sec versions sh -c 'kubeadm version -o short 2>/dev/null | sed "s/^/kubeadm=/"; kubelet --version 2>/dev/null | sed "s/.* /kubelet=/"; true'
if [ -n "${PF_NFS_SERVER:-}" ]; then
  sec nfs sh -c 'd=$(mktemp -d /tmp/appliance-nfs.XXXXXX) || exit 1; if mount -t nfs -o ro,soft,timeo=50,retrans=1,nolock "$PF_NFS_SERVER:$PF_NFS_PATH" "$d" 2>&1; then echo mounted; umount "$d"; rc=0; else rc=1; fi; rmdir "$d"; exit $rc'
fi
sec write-latency sh -c 'd=${PF_STAGING_DIR:-/var/lib/appliance}; [ -d "$d" ] || d=/var/tmp; f="$d/.appliance-preflight.$$"; s=$(date +%s%N); dd if=/dev/zero of="$f" bs=4k count=64 oflag=dsync 2>/dev/null; rc=$?; e=$(date +%s%N); rm -f "$f"; printf "dir=%s\nwrites=64\nns=%s\n" "$d" "$((e - s))"; exit $rc'
sec meta-end sh -c 'date +%s.%N'
