#!/bin/bash
# bench/migrate-bench.sh - live-migration figures over TLS on loopback:
# page throughput for zero, compressible and incompressible memory, total
# time for a large sparse guest, and downtime / guest-observed stall for
# memstress at several dirty rates, ring and bitmap side by side.
# Usage: bench/migrate-bench.sh [OUT.csv]   (run from the build directory)
# Every process is bounded by timeout(1); only 127.0.0.1 is used.
set -u
PM=${PML_MIGRATE:-./pml-migrate}
G=${GUEST_DIR:-guest}
OUT=${1:-bench/results/migrate.csv}
T=$(mktemp -d)
trap 'kill $APID 2>/dev/null; rm -rf "$T"' EXIT
"$PM" certs init "$T/c" >/dev/null && "$PM" certs issue "$T/c" agent >/dev/null && "$PM" certs issue "$T/c" sender >/dev/null
timeout 3600 "$PM" recv --listen 127.0.0.1:0 --certs "$T/c" --node agent --run-dir "$T/dst" --port-file "$T/port" 2>"$T/agent.log" &
APID=$!
for i in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
PORT=$(cat "$T/port")
f() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$1" | tail -n 1; }
echo "case,dirty_log,mem,guest_args,wait_s,result,total_time_ms,setup_time_ms,downtime_ms,expected_downtime_ms,guest_stall_ms,rounds,pages_sent,zero_pages,lz4_pages,bytes_on_wire,page_MBps,throughput_mbps,dirty_rate_pages_per_s,harvest_time_ms,throttle_max_pct" >"$OUT"
run() { # case mode mem wait guest-args...
	local c=$1 mode=$2 mem=$3 wait=$4
	shift 4
	local name="b$RANDOM"
	PML_MIGRATE_RUNDIR="$T/src" timeout 600 "$PM" run "$G/memstress.elf" --mem "$mem" --dirty-log "$mode" --name "$name" \
		-- "$@" >/dev/null 2>&1 &
	local vp=$!
	sleep "$wait"
	PML_MIGRATE_RUNDIR="$T/src" timeout 600 "$PM" send "$name" "127.0.0.1:$PORT" --certs "$T/c" --node sender \
		--peer agent --downtime 10 --max-time 120 --json >"$T/s" 2>/dev/null
	wait $vp
	# Throughput cases do not need the guest to finish: stop it so it does
	# not compete with the next case for the two cores.
	case $c in throughput*|sparse*) sleep 0.2; PML_MIGRATE_RUNDIR="$T/dst" "$PM" ctl "$name" stop >/dev/null 2>&1 ;; esac
	for i in $(seq 600); do [ -s "$T/dst/$name.result.json" ] && break; sleep 0.1; done
	local pages=$(f "$T/s" pages_sent) tt=$(f "$T/s" total_time_ms) st=$(f "$T/s" setup_time_ms)
	local mbps=$(awk -v p="${pages:-0}" -v t="${tt:-1}" -v s="${st:-0}" 'BEGIN { printf "%.0f", p * 4096 / 1e6 / ((t - s) / 1000) }')
	local stall=$(awk -v u="$(f "$T/dst/$name.result.json" max_stall_us)" 'BEGIN { printf "%.3f", u / 1000 }')
	echo "$c,$mode,$mem,$*,$wait,$(f "$T/s" result),$tt,$st,$(f "$T/s" downtime_ms),$(f "$T/s" expected_downtime_ms),$stall,$(f "$T/s" rounds),$pages,$(f "$T/s" zero_pages),$(f "$T/s" lz4_pages),$(f "$T/s" bytes_on_wire),$mbps,$(f "$T/s" throughput_mbps),$(f "$T/s" dirty_rate_pages_per_s),$(f "$T/s" harvest_time_ms),$(f "$T/s" throttle_max_pct)" | tee -a "$OUT"
}
# Throughput: 512 MiB written once, then (almost) idle.
for c in zero text random; do
	run "throughput-$c" ring 1G 10 ws=512M prefill=1 rate=1 ops=8192 content=$c
done
# A 4 GiB guest that touched 256 MiB.
run sparse-4G-256M ring 4G 6 ws=256M prefill=1 rate=1 ops=8192 content=text
# Downtime and stall against dirty rate, ring vs bitmap (2 GiB, 128 MiB working set).
for rate in 16 64 256; do
	for mode in ring bitmap; do
		run "memstress-${rate}MBps" $mode 2G 3 ws=128M prefill=1 rate=$rate ops=$((rate * 256 * 6)) content=text
	done
done
