#!/bin/bash
# The benchmark harness for real, at its smallest: one headline cell per
# engine family over loopback and over the tbf-shaped 1 Gbit/s veth link,
# pml-migrate (ring) against QEMU (bitmap). Checks that every run migrated
# and carries both the engine's figures and the guest's own stall, that the
# shaped link really is 1 Gbit/s (QEMU's uncompressed bytes cannot cross it
# faster), that the outputs exist and parse, that the namespaces are gone
# afterwards, and that bad options are refused with exit 2.
. "$(dirname "$0")/tap.sh"
B=$(cd "$(dirname "$0")/../bench" && pwd)
export PML_MIGRATE=$(cd "$(dirname "$PM")" && pwd)/$(basename "$PM")
export GUEST_DIR=$(cd "$G" && pwd)
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
for t in jq python3 qemu-system-x86_64; do
	command -v $t >/dev/null || skip_all "$t not installed (scripts/setup.sh installs it)"
done
links=lo,1g
if [ "$(id -u)" != 0 ]; then links=lo; fi
# --perf when perf can profile the whole system here.
perf=""
perf record -a -o "$T/probe.data" -- true >/dev/null 2>&1 && perf=--perf
echo "1..14"

"$B/run" --preset nosuch >"$T/o" 2>&1
[ $? = 2 ] && grep -q "must be quick or full" "$T/o"
ok $? "an unknown preset is refused with exit 2: $(head -c 120 "$T/o")"
"$B/run" --links lo --engines pml-ring --only 'no-such-cell' >"$T/o" 2>&1
[ $? = 2 ] && grep -q "no cell left" "$T/o"
ok $? "a filter that leaves nothing is refused with exit 2"
"$B/run" --preset full --list >"$T/list" 2>&1
[ "$(wc -l <"$T/list")" -ge 40 ] && grep -q '^rate 1g qemu-ring 2G memstress .*rate=1024' "$T/list" &&
	grep -q '^size lo pml-bitmap 16G ' "$T/list"
ok $? "--list shows the full matrix ($(wc -l <"$T/list") cells, rate sweep and guest sizes included)"

before=$(ip netns list 2>/dev/null | grep -c '^pmb')
timeout 600 "$B/run" --links $links --engines pml-ring,qemu-bitmap --only '^headline/' $perf --out "$T/b" >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 0 ]
ok $? "bench/run over $links exits 0 (rc $rc; $(tail -n 2 "$T/err" | tr '\n' ' ' | head -c 300))"
want=$(($(tr ',' '\n' <<<"$links" | wc -l) * 2))
[ "$(jq length "$T/b/runs.json")" = "$want" ] && [ "$(($(wc -l <"$T/b/runs.csv") - 1))" = "$want" ]
ok $? "runs.json and runs.csv hold the $want runs"
bad=$(jq -r '.[] | select(.result != "ok" or (.downtime_ms | type) != "number" or (.total_time_ms | type) != "number"
	or (.guest_stall_ms | type) != "number" or .guest_stall_ms <= 0 or (.bytes_on_wire | type) != "number") | .cell' "$T/b/runs.json")
[ -z "$bad" ]
ok $? "every run migrated and carries downtime, total time, bytes and a guest-observed stall ${bad:+(not: $bad)}"
# The guest cannot feel less than the part of the pause the engine proves,
# minus its own wait slice (memstress at 64 MB/s writes 16 pages a ms).
bad=$(jq -r '.[] | select(.engine == "pml-ring" and .guest_stall_ms + 1.5 < .raw.downtime_min_ms) | "\(.cell): \(.guest_stall_ms) < \(.raw.downtime_min_ms)"' "$T/b/runs.json")
[ -z "$bad" ]
ok $? "pml-migrate's guest stall is at least its proven downtime lower bound ${bad:+($bad)}"
if [ "$links" = lo,1g ]; then
	# 1 Gbit/s moves at most 125 MB/s (plus tbf's 5 ms burst): QEMU's raw
	# transfer gives a floor for its total time. Unshaped it runs > 1 GB/s.
	r=$(jq -r '.[] | select(.link == "1g" and .engine == "qemu-bitmap") | "\(.transferred_bytes) \(.total_time_ms)"' "$T/b/runs.json")
	set -- $r
	floor=$(awk -v b="${1:-0}" 'BEGIN { printf "%d", (b - 625000) * 8 / 1e6 }')
	[ -n "${2:-}" ] && [ "${2%.*}" -ge "$floor" ] && [ "$floor" -gt 500 ]
	ok $? "the 1g link is shaped: QEMU moved $(( ${1:-0} / 1000000 )) MB in ${2:-?} ms, at least the $floor ms 1 Gbit/s allows"
	[ "$(ip netns list 2>/dev/null | grep -c '^pmb')" = "$before" ] && ! ip link show 2>/dev/null | grep -q 'pmb[0-9]*s'
	ok $? "the harness removed its namespaces and veth pair"
else
	ok 0 "# SKIP not root: no veth link"
	ok 0 "# SKIP not root: no veth link"
fi
# --perf: each run's CPU split names both engines' vCPU threads (their
# time in the hypervisor) and other threads; the report has its table.
if [ -n "$perf" ]; then
	bad=$(jq -r '.[] | select((.cpu_window_ms // 0) <= 0 or (.cpu_vcpu_hv_ms // 0) <= 0 or (.cpu_engine_ms // 0) <= 0
		or (.cpu_engine_threads | length) < 1) | "\(.engine)/\(.link): \(.cpu_note // "no cpu split")"' "$T/b/runs.json")
	[ -z "$bad" ] && grep -q '^| link | engine | LZ4 | workload | window ms | guest ms' "$T/b/report.md"
	ok $? "--perf: every run has its CPU split (vCPU in the hypervisor, engine threads) and report.md its table ${bad:+($bad)}$(jq -r '.[0] | " e.g. \(.engine): engine \(.cpu_engine_ms) ms, vCPU \(.cpu_vcpu_hv_ms) ms"' "$T/b/runs.json")"
else
	ok 0 "# SKIP perf cannot profile the system here (linux-perf not installed, or not allowed)"
fi
jq -e 'length == '$want' and all(.[]; .ok == 1 and .guest_stall_ms.med > 0)' "$T/b/summary.json" >/dev/null &&
	[ "$(($(wc -l <"$T/b/summary.csv") - 1))" = "$want" ]
ok $? "summary.json and summary.csv have one cell per run with medians"
grep -q '^## Target checks' "$T/b/report.md" && grep -q '^| lo | pml-ring | 2G | memstress' "$T/b/report.md" &&
	grep -q 'bench/run --links' "$T/b/report.md"
ok $? "report.md has the target checks, the table and the command that reproduces it"
# The plot is a PNG; its series' names are in its text chunk.
if grep -q 'matplotlib not installed' "$T/err"; then
	ok 0 "# SKIP matplotlib not installed"
else
	[ "$(head -c 4 "$T/b/plots/headline.png" | tail -c 3)" = PNG ] && grep -aq 'qemu-bitmap' "$T/b/plots/headline.png"
	ok $? "plots/headline.png drawn"
fi
# bench/rest.py at its smallest: every dirty-log setting runs the guest to
# the same digest and the tables come out (the figures are the benchmark's).
(cd "$T" && mkdir -p guest && ln -sf "$PML_MIGRATE" pml-migrate && ln -sf "$GUEST_DIR"/kvstore.elf "$GUEST_DIR"/idle.elf guest/ &&
	python3 "$B/rest.py" --runs 1 --mem 64M --args "data=4M ops=20000" --idle-mem 64M --idle-args "ops=5 period_us=2000") >"$T/rest" 2>&1
[ $? = 0 ] && grep -q "ratio to off" "$T/rest" && grep -q "the same in every run" "$T/rest" && grep -q "^| QEMU |" "$T/rest"
ok $? "bench/rest.py: off, ring and bitmap to one digest, stall at rest against QEMU $(tail -n 3 "$T/rest" | tr '\n' ' ')"
exit $fail
