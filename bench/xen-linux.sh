#!/bin/bash
# bench/xen-linux.sh [--runs N] [--mem MIB] [--out DIR]
#
# A real guest moved by pml-migrate and by `xl migrate`, side by side in
# one boot of the real Xen 4.17 (under QEMU's TCG emulation here:
# tests/xen-lib.sh). The guest is an `xl create`d Linux PVH domain
# (Debian's kernel, tests/xen-domu-init: a counter on its console, a vif
# on a dom0 bridge, a disk from a loop device), moved within the dom0,
# N runs of four moves of the same domain:
#   xl:              xl migrate -s '' lx 'xl migrate-receive' (libxl's own
#                    stream over a plain pipe: one stream, no compression,
#                    no encryption), twice a run;
#   pml-migrate:     send lx to a local agent in plaintext (--insecure, as
#                    xl's pipe);
#   pml-migrate TLS: the same over TLS 1.3 with client certificates.
# Each pml-migrate move starts from a domain xl keeps, so send starts the
# host for that migration (attach --live --once) as for an operator's
# guest; the agent's session restores it through libxl.
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
RUNS=3 MEM=128 OUT=bench/results/xen-linux
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,28s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench/xen-linux.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
PM=$PWD/pml-migrate
grep -q 'HAVE_XEN 1' config.h 2>/dev/null || { echo "bench/xen-linux.sh: build with the Xen libraries first" >&2; exit 1; }
T=$(mktemp -d)
# One emulated CPU for Xen, as tests/test-xen-linux.sh (the lab kills a
# Linux domU far less often so).
export XEN_QEMU_SMP=${XEN_QEMU_SMP:-1}
trap 'rm -rf "$T"' EXIT
. tests/xen-lib.sh
xen_fetch || exit 1
"$PM" certs init "$T/certs" >/dev/null && "$PM" certs issue "$T/certs" agent >/dev/null &&
	"$PM" certs issue "$T/certs" sender >/dev/null || exit 1
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
mkdir -m 0700 /run/pmg /run/dstT /run/dstP; export PML_MIGRATE_RUNDIR=/run/pmg
\$PM recv --listen 127.0.0.1:0 --handshake-timeout 600 --timeout 300 --certs /certs --run-dir /run/dstT --port-file /tmp/portT 2>/tmp/agentT.log &
\$PM recv --listen 127.0.0.1:0 --handshake-timeout 600 --timeout 300 --insecure --run-dir /run/dstP --port-file /tmp/portP 2>/tmp/agentP.log &
for i in \$(seq 300); do [ -s /tmp/portT ] && [ -s /tmp/portP ] && break; sleep 0.2; done
# boot_lx: a fresh guest (the lab's emulation fault kills one now and
# then: see tests/test-xen-linux.sh); the console logs of the last one go.
boot_lx() {
	for d in \$(xl list | awk 'NR>1 && \$1 != "Domain-0" {print \$1}'); do xl destroy \$d; done
	rm -f \$L/guest-*.log
	timeout 600 xl create /tmp/lx.cfg >/dev/null 2>&1
	waittick_above 5 300 || echo "XB dead at boot"
	sleep 2
}
# move TOOL RUN: one move of lx by TOOL, and its line; 1 if the guest died.
move() {
	k0=\$(lasttick) t0=\$(up)
	case \$1 in
	xl) timeout 900 xl migrate -s '' lx 'xl migrate-receive' >/tmp/xl.out 2>&1; rc=\$? ;;
	pml) timeout 900 \$PM send lx 127.0.0.1:\$(cat /tmp/portP) --setup-timeout 600 --link-timeout 120 --insecure --json >/tmp/p.json 2>/tmp/p.err; rc=\$? ;;
	pml-tls) timeout 900 \$PM send lx 127.0.0.1:\$(cat /tmp/portT) --setup-timeout 600 --link-timeout 120 --certs /certs --node sender --peer agent --json >/tmp/p.json 2>/tmp/p.err; rc=\$? ;;
	esac
	t1=\$(up)
	rep=; [ \$1 = xl ] || rep=\$(tail -n 1 /tmp/p.json)
	waittick_above \$((k0 + 4)) 120; alive=\$?
	# The guest's largest step of its clock between two ticks of the move's
	# window (1 s + what the move took from it).
	g=\$(ticks | awk -F: -v a=\$k0 -v b=\$(lasttick) '\$1 >= a && \$1 <= b { if (n++ && \$2 - pu > g) g = \$2 - pu; pu = \$2 } END { if (n > 1) printf "%.2f", g; else printf "?" }')
	echo "XB \$1 run=\$2 rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") gap=\$g \$([ \$alive = 0 ] || echo dead) \$rep"
	return \$alive
}
# Each run: xl, pml-migrate plaintext (as xl's pipe), xl, pml-migrate over
# TLS; every pml-migrate move starts from a domain xl's own monitor keeps
# (send starts a host for it), as an operator's would. A guest that dies
# is replaced and the run done again, at most RUNS deaths in all.
boot_lx
k=1 deaths=0
while [ \$k -le $RUNS ] && [ \$deaths -le $RUNS ]; do
	for tool in xl pml xl pml-tls; do
		move \$tool \$k && continue
		deaths=\$((deaths + 1)); boot_lx; continue 2
	done
	k=\$((k + 1))
done
DOM0
XEN_DOMU_INIT=tests/xen-domu-init xen_domu_initrd "$T/domu.cpio.gz" || exit 1
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$XEN_CACHE/vmlinuz" "$T/domu.cpio.gz" tests/xen-hotplug.sh "$PM" \
	"$T"/certs/ca.pem "$T"/certs/agent.pem "$T"/certs/agent.key "$T"/certs/sender.pem "$T"/certs/sender.key || exit 1
xen_boot "$T/initrd.img" $((600 + RUNS * 1200)) "$T/boot.log"
mkdir -p "$OUT"
grep -a '^XB ' "$T/boot.log" | tr -d '\r' >"$OUT/raw.txt"
field() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
{
	echo "| run | tool | result | total s | guest's largest tick gap s | downtime ms (own report) | bytes on wire |"
	echo "| --- | --- | --- | --- | --- | --- | --- |"
	grep -E '^XB (xl|pml|pml-tls) ' "$OUT/raw.txt" | while read -r _ tool run rc wall gap rest; do
		res=$([ "$rc" = rc=0 ] && echo migrated || echo "failed ($rc)")
		case $rest in dead*) res="$res, guest died" ;; esac
		case $tool in
		xl) echo "| ${run#run=} | xl migrate | $res | ${wall#wall=} | ${gap#gap=} | - | - |" ;;
		pml) echo "| ${run#run=} | pml-migrate | $res | ${wall#wall=} | ${gap#gap=} | $(field "$rest" downtime_ms) | $(field "$rest" bytes_on_wire) |" ;;
		*) echo "| ${run#run=} | pml-migrate TLS | $res | ${wall#wall=} | ${gap#gap=} | $(field "$rest" downtime_ms) | $(field "$rest" bytes_on_wire) |" ;;
		esac
	done
} >"$OUT/table.md"
cat "$OUT/table.md"
# Medians of the moves that succeeded with the guest alive, and the ratios.
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; else printf "?" }'; }
col() { grep "| $1 | migrated |" "$OUT/table.md" | awk -F'|' -v c="$2" '{ gsub(/ /, "", $c); print $c }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else printf "?" }'; }
xt=$(col 'xl migrate' 5 | med) xg=$(col 'xl migrate' 6 | med)
echo
for t in pml-migrate 'pml-migrate TLS'; do
	pt=$(col "$t" 5 | med) pg=$(col "$t" 6 | med)
	echo "medians: total $pt s ($t) vs $xt s (xl migrate), ratio $(ratio "$pt" "$xt"); guest's gap $pg s vs $xg s, ratio $(ratio "$pg" "$xg")"
done | tee -a "$OUT/table.md"
