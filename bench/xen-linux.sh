#!/bin/bash
# bench/xen-linux.sh [--runs N] [--mem MIB] [--out DIR] [--insecure]
#
# A real guest moved by pml-migrate and by `xl migrate`, side by side in
# one boot of the real Xen 4.17 (under QEMU's TCG emulation here:
# tests/xen-lib.sh). The guest is an `xl create`d Linux PVH domain
# (Debian's kernel, tests/xen-domu-init: a counter on its console, a vif
# on a dom0 bridge, a disk from a loop device), moved within the dom0 N
# times each way, alternating on the same domain:
#   xl:          xl migrate -s '' lx 'xl migrate-receive' (libxl's own
#                stream over a plain pipe: one stream, no compression, no
#                encryption);
#   pml-migrate: send lx to a local agent over TLS (--insecure: plaintext,
#                as xl's pipe), which hosts the domain for that migration
#                only (attach --live --once) and restores it there through
#                libxl.
# Per move: total time (the migrating command's wall clock in dom0), the
# guest's own largest gap between two counter lines a second apart (its
# uptime clock, what the guest lived through: 1 s + the stall), bytes on
# the wire (pml-migrate's report; xl reports none). The network is quiet
# during the moves (see tests/test-xen-linux.sh).
# Run from the build directory after scripts/setup.sh --no-run. Writes
# DIR/raw.txt and DIR/table.md (default bench/results/xen-linux) and prints
# the table with the medians' ratio. Absolute figures are of an emulated
# machine: compare the ratio.
set -u
cd "$(dirname "$0")/.."
RUNS=3 MEM=128 OUT=bench/results/xen-linux SEC="--certs /certs --node sender --peer agent"
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--insecure) SEC=--insecure; shift ;;
	-h | --help) sed -n '2,26s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench/xen-linux.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
PM=$PWD/pml-migrate
grep -q 'HAVE_XEN 1' config.h 2>/dev/null || { echo "bench/xen-linux.sh: build with the Xen libraries first" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. tests/xen-lib.sh
xen_fetch || exit 1
"$PM" certs init "$T/certs" >/dev/null && "$PM" certs issue "$T/certs" agent >/dev/null &&
	"$PM" certs issue "$T/certs" sender >/dev/null || exit 1
AGENTSEC="--certs /certs"
[ "$SEC" = --insecure ] && AGENTSEC=--insecure
cat >"$T/dom0.sh" <<DOM0
PM=/bin/pml-migrate
up() { cut -d' ' -f1 /proc/uptime; }
L=/var/log/xen/console
kill "\$(cat /run/xenconsoled.pid)"; sleep 0.2
mkdir -p \$L; xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=\$L
ticks() { cat \$L/guest-*.log 2>/dev/null | tr -d '\r' | sed -n 's/^TICK \([0-9]*\) up=\([0-9.]*\).*/\1:\2/p' | sort -t: -k1,1n; }
lasttick() { ticks | tail -n 1 | cut -d: -f1; }
waittick_above() { for i in \$(seq \$((\$2 * 5))); do [ "\$(lasttick)" -gt "\$1" ] 2>/dev/null && return 0; sleep 0.2; done; return 1; }
for m in llc stp bridge xen-netback xen-blkback loop; do insmod /lib/modules/\$m.ko* 2>/dev/null; done
brctl addbr xenbr0 && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up
dd if=/dev/zero of=/tmp/disk.img bs=1M count=4 2>/dev/null
for i in \$(seq 50); do [ -b /dev/loop0 ] && break; sleep 0.1; done
losetup /dev/loop0 /tmp/disk.img
cat >/tmp/lx.cfg <<CFG
name = "lx"
type = "pvh"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/domu.cpio.gz"
cmdline = "console=hvc0 net=1"
memory = $MEM
vcpus = 1
tsc_mode = "native"
vif = [ "mac=00:16:3e:5a:00:01,bridge=xenbr0,script=/bin/xen-hotplug.sh" ]
disk = [ "format=raw,vdev=xvda,access=rw,script=/bin/xen-hotplug.sh,target=/dev/loop0" ]
CFG
mkdir -m 0700 /run/pmg /run/dst; export PML_MIGRATE_RUNDIR=/run/pmg
\$PM recv --listen 127.0.0.1:0 --handshake-timeout 600 --timeout 300 $AGENTSEC --run-dir /run/dst --port-file /tmp/port 2>/tmp/agent.log &
for i in \$(seq 300); do [ -s /tmp/port ] && break; sleep 0.2; done
timeout 600 xl create /tmp/lx.cfg >/dev/null 2>&1
waittick_above 5 300 || echo "XB dead at boot"
sleep 2
for k in \$(seq $RUNS); do
	k0=\$(lasttick) t0=\$(up)
	timeout 900 xl migrate -s '' lx 'xl migrate-receive' >/tmp/xl.out 2>&1
	rc=\$? t1=\$(up)
	waittick_above \$((k0 + 4)) 120 || { echo "XB xl run=\$k rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") window=\$k0:\$(lasttick) dead"; break; }
	echo "XB xl run=\$k rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") window=\$k0:\$(lasttick)"
	k0=\$(lasttick) t0=\$(up)
	timeout 900 \$PM send lx 127.0.0.1:\$(cat /tmp/port) --setup-timeout 600 --link-timeout 120 $SEC --json >/tmp/p.json 2>/tmp/p.err
	rc=\$? t1=\$(up)
	waittick_above \$((k0 + 4)) 120 || { echo "XB pml run=\$k rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") window=\$k0:\$(lasttick) dead \$(tail -n 1 /tmp/p.json)"; break; }
	echo "XB pml run=\$k rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") window=\$k0:\$(lasttick) \$(tail -n 1 /tmp/p.json)"
	# The session that received it keeps it; xl migrate takes it from
	# there next (its libxl configuration is the toolstack's own).
done
echo "XB ticks \$(ticks | tr '\n' ' ')"
DOM0
XEN_DOMU_INIT=tests/xen-domu-init xen_domu_initrd "$T/domu.cpio.gz" || exit 1
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$XEN_CACHE/vmlinuz" "$T/domu.cpio.gz" tests/xen-hotplug.sh "$PM" \
	"$T"/certs/ca.pem "$T"/certs/agent.pem "$T"/certs/agent.key "$T"/certs/sender.pem "$T"/certs/sender.key || exit 1
xen_boot "$T/initrd.img" $((300 + RUNS * 300)) "$T/boot.log"
mkdir -p "$OUT"
grep -a '^XB ' "$T/boot.log" | tr -d '\r' >"$OUT/raw.txt"
tk=$(sed -n 's/^XB ticks //p' "$OUT/raw.txt")
# gap A:B: the largest step of the guest's clock between ticks A..B.
gap() {
	echo "$tk" | tr ' ' '\n' | awk -F: -v a="${1%:*}" -v b="${1#*:}" 'NF == 2 && $1 >= a && $1 <= b {
		if (n++ && $2 - pu > g) g = $2 - pu; pu = $2 } END { if (n > 1) printf "%.2f", g; else printf "?" }'
}
field() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
{
	echo "| run | tool | result | total s | guest's largest tick gap s | downtime ms (own report) | bytes on wire |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	grep -E '^XB (xl|pml) ' "$OUT/raw.txt" | while read -r _ tool run rc wall window rest; do
		w=${wall#wall=} win=${window#window=}
		res=$([ "$rc" = rc=0 ] && echo migrated || echo "failed ($rc)")
		case $rest in dead*) res="$res, guest died" ;; esac
		if [ "$tool" = pml ]; then
			echo "| ${run#run=} | pml-migrate | $res | $w | $(gap "$win") | $(field "$rest" downtime_ms) | $(field "$rest" bytes_on_wire) |"
		else
			echo "| ${run#run=} | xl migrate | $res | $w | $(gap "$win") | - | - |"
		fi
	done
} >"$OUT/table.md"
cat "$OUT/table.md"
# Medians of the moves that succeeded with the guest alive, and the ratios.
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else printf "?" }'; }
col() { grep "| $1 | migrated |" "$OUT/table.md" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $c); print $c }'; }
pt=$(col pml-migrate 5 | med) xt=$(col 'xl migrate' 5 | med) pg=$(col pml-migrate 6 | med) xg=$(col 'xl migrate' 6 | med)
echo
echo "medians: total $pt s (pml-migrate) vs $xt s (xl migrate), ratio $(awk -v a="$pt" -v b="$xt" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "?" }'); guest's gap $pg s vs $xg s, ratio $(awk -v a="$pg" -v b="$xg" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "?" }')" | tee -a "$OUT/table.md"
