#!/bin/bash
# bench/xen.sh [--runs N] [--mem MIB] [--rate MBPS] [--out DIR]
#
# pml-migrate against `xl migrate`, side by side in one boot of the real
# Xen 4.17 (under QEMU's TCG emulation here: tests/xen-lib.sh). The same
# guest image (memstress: a 32 MiB working set written at --rate MB/s)
# runs as a PVH domain and moves to a receiver in the same dom0, N times
# each way, alternating:
#   pml-migrate: run --hv xen, then send over TLS to a local agent;
#   xl:          xl create, then xl migrate -s '' NAME 'xl migrate-receive'
#                (libxl's own stream; bench/xen-suspend-proxy answers its
#                suspend request, which these guests cannot).
# Per run: total time (the migrating command's wall clock), downtime (from
# the guest stopping to it running again over there: pml-migrate's own
# report; for xl, from the proxy's suspend to xl's "starting domain" line,
# at dom0 /proc/uptime's 10 ms resolution), and bytes (pml-migrate: on the
# wire; xl: not reported by xl).
# Run from the build directory after scripts/setup.sh --no-run. Writes
# DIR/raw.txt and DIR/table.md (default bench/results/xen) and prints the
# table. Absolute figures are of an emulated machine: compare the ratio.
set -u
cd "$(dirname "$0")/.."
RUNS=3 MEM=128 RATE=4 OUT=bench/results/xen
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) echo "bench/xen.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
PM=$PWD/pml-migrate
[ -x bench/xen-suspend-proxy ] || { echo "bench/xen.sh: build with the Xen libraries first" >&2; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. tests/xen-lib.sh
xen_fetch || exit 1
"$PM" certs init "$T/certs" >/dev/null && "$PM" certs issue "$T/certs" agent >/dev/null &&
	"$PM" certs issue "$T/certs" sender >/dev/null || exit 1
ARGS="ws=32M rate=$RATE ops=100000000 content=text"
cat >"$T/dom0.sh" <<DOM0
PM=/bin/pml-migrate
up() { cut -d' ' -f1 /proc/uptime; }
waitctl() { for i in \$(seq 100); do \$PM ctl "\$1" status >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
mkdir -m 0700 /run/pmg /run/dst; export PML_MIGRATE_RUNDIR=/run/pmg
\$PM recv --listen 127.0.0.1:0 --certs /certs --run-dir /run/dst --port-file /tmp/port 2>/tmp/agent.log &
for i in \$(seq 50); do [ -s /tmp/port ] && break; sleep 0.2; done
for k in \$(seq $RUNS); do
	# pml-migrate
	\$PM run --hv xen --mem ${MEM}M --name p\$k /guest/memstress.elf -- seed=\$k $ARGS >/dev/null 2>&1 &
	waitctl p\$k; sleep 3
	t0=\$(up)
	\$PM send p\$k 127.0.0.1:\$(cat /tmp/port) --certs /certs --node sender --peer agent --json >/tmp/p.json 2>&1
	rc=\$?; t1=\$(up)
	echo "XB pml run=\$k rc=\$rc wall=\$(awk "BEGIN{print \$t1-\$t0}") \$(tail -1 /tmp/p.json)"
	PML_MIGRATE_RUNDIR=/run/dst \$PM ctl p\$k stop >/dev/null 2>&1
	# xl migrate
	printf 'name="x%s"\ntype="pvh"\nkernel="/guest/memstress.elf"\nmemory=$MEM\nvcpus=1\ncmdline="seed=%s $ARGS"\non_reboot="destroy"\n' \$k \$k >/tmp/x.cfg
	xl create /tmp/x.cfg >/dev/null 2>&1; sleep 3
	xen-suspend-proxy \$(xl domid x\$k) 600 >/tmp/proxy.out 2>&1 &
	PP=\$!
	t0=\$(up)
	xl -v migrate -s '' x\$k 'xl migrate-receive' 2>&1 | while IFS= read -r l; do echo "\$(up) \$l"; done >/tmp/xl.log
	t1=\$(up)
	wait \$PP
	sus=\$(sed -n 's/^suspended at \([0-9.]*\).*/\1/p' /tmp/proxy.out)
	start=\$(grep -m1 'starting domain' /tmp/xl.log | cut -d' ' -f1)
	ok=\$(xl list x\$k >/dev/null 2>&1 && echo yes || echo no)
	echo "XB xl run=\$k running=\$ok wall=\$(awk "BEGIN{print \$t1-\$t0}") suspended=\$sus started=\$start"
	[ \$k = 1 ] && sed 's/^/XL /' /tmp/xl.log | tail -25
	xl destroy x\$k >/dev/null 2>&1
done
DOM0
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$PM" bench/xen-suspend-proxy guest/memstress.elf \
	"$T"/certs/ca.pem "$T"/certs/agent.pem "$T"/certs/agent.key "$T"/certs/sender.pem "$T"/certs/sender.key || exit 1
xen_boot "$T/initrd.img" $((120 + RUNS * 240)) "$T/boot.log"
mkdir -p "$OUT"
grep -a '^XB \|^XL ' "$T/boot.log" | tr -d '\r' >"$OUT/raw.txt"
field() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
{
	echo "| run | tool | result | total s | downtime ms | bytes on wire |"
	echo "| --- | --- | --- | --- | --- | --- |"
	grep '^XB ' "$OUT/raw.txt" | while read -r _ tool run rest; do
		k=${run#run=}
		if [ "$tool" = pml ]; then
			echo "| $k | pml-migrate | $(field "$rest" result) | $(echo "$rest" | sed -n 's/.*wall=\([0-9.]*\).*/\1/p') | $(field "$rest" downtime_ms) | $(field "$rest" bytes_on_wire) |"
		else
			sus=$(echo "$rest" | sed -n 's/.*suspended=\([0-9.]*\).*/\1/p') st=$(echo "$rest" | sed -n 's/.*started=\([0-9.]*\).*/\1/p')
			dt=$( [ -n "$sus" ] && [ -n "$st" ] && awk -v a="$sus" -v b="$st" 'BEGIN{printf "%.0f", (b-a)*1000}')
			echo "| $k | xl migrate | $(echo "$rest" | sed -n 's/.*running=\([a-z]*\).*/\1/p' | sed 's/yes/migrated/;s/no/failed/') | $(echo "$rest" | sed -n 's/.*wall=\([0-9.]*\).*/\1/p') | ${dt:-?} | - |"
		fi
	done
} >"$OUT/table.md"
cat "$OUT/table.md"
