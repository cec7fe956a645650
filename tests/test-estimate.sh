#!/bin/bash
# pml-migrate estimate: a running guest's working set and dirty rate,
# measured with the dirty log armed only for the estimate. memstress
# writes pages of its working set chosen uniformly at random at a set
# rate, so what the estimate must find follows from the arguments:
# writing r pages/s into W pages, a window of t seconds holds
# W * (1 - exp(-r t / W)) distinct pages. Also: the log is disarmed after,
# what cannot be measured is refused with the reason, a migration cannot
# start meanwhile, and a guest that stops during the estimate ends it
# with an error.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..23"
export PML_MIGRATE_RUNDIR="$T/host"
mkdir -p "$PML_MIGRATE_RUNDIR"

# within VALUE EXPECTED PCT: VALUE is within PCT % of EXPECTED.
within() { awk -v v="$1" -v e="$2" -v p="$3" 'BEGIN { exit !(v != "" && v >= e * (1 - p / 100) && v <= e * (1 + p / 100)) }'; }
jf() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$1"; }

# 16 MiB (4096 pages) at 8 MB/s (2048 pages/s), uniformly.
start_vm "$PML_MIGRATE_RUNDIR" est1 memstress ring seed=3 ws=16M prefill=1 rate=8 ops=200000 content=text
P1=$VPID
sleep 0.5
timeout 60 "$PM" estimate est1 --seconds 3 --link 125M --downtime 50 --json >"$T/e1.json" 2>"$T/e1.err"
rc=$?
[ $rc = 0 ] && grep -q '"ok":true' "$T/e1.json"
ok $? "estimate --seconds 3 --json of a running guest: exit $rc $(head -c 200 "$T/e1.err")"
exp100=$(awk 'BEGIN { printf "%d", 4096 * (1 - exp(-204.8 / 4096)) }')
exp1s=$(awk 'BEGIN { printf "%d", 4096 * (1 - exp(-2048 / 4096)) }')
exptot=$(awk -v s="$(jf "$T/e1.json" seconds)" 'BEGIN { printf "%d", 4096 * (1 - exp(-2048 * s / 4096)) }')
v=$(jf "$T/e1.json" wss_100ms_median_pages)
within "$v" "$exp100" 25
ok $? "working set per 100 ms: median $v pages, expected about $exp100 ($(jf "$T/e1.json" wss_100ms_windows) windows)"
v=$(jf "$T/e1.json" wss_1s_median_pages)
within "$v" "$exp1s" 25
ok $? "working set per 1 s: median $v pages, expected about $exp1s ($(jf "$T/e1.json" wss_1s_windows) windows)"
[ "$(jf "$T/e1.json" wss_10s_windows)" = 0 ] && ! grep -q wss_10s_median "$T/e1.json"
ok $? "no 10 s figure from 3 s of measuring ($(jf "$T/e1.json" wss_10s_windows) windows)"
v=$(jf "$T/e1.json" pages_written)
within "$v" "$exptot" 15
ok $? "distinct pages written over the estimate: $v, expected about $exptot"
v=$(jf "$T/e1.json" dirty_pages_per_s)
within "$v" 2048 25
ok $? "dirty rate $v pages/s, the guest writes 2048"
v=$(jf "$T/e1.json" hot_pages)
[ -n "$v" ] && [ "$v" -lt 100 ]
ok $? "no hot set in a uniformly written 16 MiB: $v pages"
f=$(jf "$T/e1.json" write_faults) b=$(jf "$T/e1.json" kernel_ms_per_s_before) d=$(jf "$T/e1.json" kernel_ms_per_s_during)
[ "${f:-0}" -gt 1000 ] && within "$b" 500 100 && within "$d" 500 100
ok $? "its cost: $f write faults, kernel time $b ms/s before and $d ms/s during"
# The prediction over 1 Gbit/s, from the engine's switchover decision: the
# resident pages in a first round, then what the guest writes meanwhile;
# 2048 pages/s never outruns 125 MB/s.
v=$(jf "$T/e1.json" predicted_verdict) rounds=$(jf "$T/e1.json" predicted_rounds) res=$(jf "$T/e1.json" resident_pages)
tot=$(jf "$T/e1.json" predicted_total_time_ms) dt=$(jf "$T/e1.json" predicted_downtime_ms) by=$(jf "$T/e1.json" predicted_bytes)
wpp=$(jf "$T/e1.json" wire_bytes_per_page)
[ "$v" = switchover ] && [ "${rounds:-0}" -ge 1 ] && [ "${res:-0}" -ge 4096 ] &&
	awk -v t="$tot" -v d="$dt" -v b="$by" -v r="$res" -v w="$wpp" 'BEGIN { exit !(d > 0 && d <= 50 && t > d && b >= r * w && w > 100 && w < 4200) }'
ok $? "predicted over 125 MB/s: $v after $rounds round(s), total $tot ms, downtime $dt ms, $by bytes ($res resident pages, $wpp bytes a page)"
v0=$(jf "$T/e1.json" vcpu0_dirty_pages) s0=$(jf "$T/e1.json" vcpu0_dirty_share)
[ "${v0:-0}" -gt 1000 ] && [ "$s0" = 1.0 -o "$s0" = 1 ]
ok $? "the spread over vCPUs: its one vCPU wrote $v0 pages, share $s0"
"$PM" ctl est1 stats >"$T/st.json"
grep -q '"dirty_log_armed":false' "$T/st.json"
ok $? "afterwards the log is disarmed again: $(head -c 120 "$T/st.json")"

# The human form, over a link the guest outruns (100 KB/s: about 50 of
# its pages a second against 2048 written).
timeout 60 "$PM" estimate est1 --seconds 0.5 --link 100K >"$T/e2.txt" 2>&1
[ $? = 0 ] && grep -q "working set 100ms median" "$T/e2.txt" && grep -q "dirty rate" "$T/e2.txt"
ok $? "without --json: a readable summary ($(grep -c . "$T/e2.txt") lines)"
grep -q "outruns the link" "$T/e2.txt"
ok $? "over 100 KB/s the guest outruns the link: $(grep prediction "$T/e2.txt" | head -c 200)"

# The link measured to an agent instead of stated: filler over the
# migration's TLS for 0.5 s, the agent's measure, the round trip.
make_certs
start_agent A "$T/agent"
timeout 60 "$PM" estimate est1 --seconds 0.5 --to "127.0.0.1:$PORT" --certs "$C" --node sender --peer agent \
	--probe-seconds 0.5 --json >"$T/e10.json" 2>"$T/e10.err"
rc=$?
l=$(jf "$T/e10.json" link_bytes_per_s) rt=$(jf "$T/e10.json" link_rtt_us)
[ $rc = 0 ] && [ "$(jf "$T/e10.json" link_source)" = measured ] && [ "${l:-0}" -gt 20000000 ] && [ "${rt:-0}" -gt 0 ] &&
	[ -n "$(jf "$T/e10.json" predicted_verdict)" ]
ok $? "estimate --to an agent: exit $rc, link $l bytes/s measured, round trip $rt us $(head -c 200 "$T/e10.err")"
grep -q "capacity query answered" "$T/A.log" && ! grep -q "failed" "$T/A.log"
ok $? "the agent took it as a query, not a failed migration"
# A probe longer than the agent's handshake deadline: a query is
# authenticated, so that deadline (and its evictions) no longer apply.
start_agent H "$T/agenth" --handshake-timeout 1
timeout 60 "$PM" estimate est1 --seconds 0.2 --to "127.0.0.1:$PORT" --certs "$C" --node sender --peer agent \
	--probe-seconds 4 --json >"$T/e12.json" 2>"$T/e12.err"
rc=$?
[ $rc = 0 ] && [ "$(jf "$T/e12.json" link_source)" = measured ]
ok $? "a 4 s probe to an agent with --handshake-timeout 1: exit $rc $(head -c 200 "$T/e12.err")"
timeout 20 "$PM" estimate est1 --to "127.0.0.1:$PORT" --link 1G --insecure >/dev/null 2>&1
rc=$?
timeout 20 "$PM" estimate est1 --seconds 0.2 --to 127.0.0.1:1 --insecure >"$T/e11.out" 2>&1
rc2=$?
[ $rc = 2 ] && [ $rc2 = 1 ] && grep -q "measuring the link to 127.0.0.1:1" "$T/e11.out"
ok $? "--to with --link: exit $rc; an agent that is not there: exit $rc2, $(head -c 150 "$T/e11.out")"

# A small set written over and over is hot: 64 pages at 2048 writes/s.
start_vm "$PML_MIGRATE_RUNDIR" est2 memstress ring seed=4 ws=256K prefill=1 rate=8 ops=200000 content=text
P2=$VPID
sleep 0.5
timeout 60 "$PM" estimate est2 --seconds 1 --json >"$T/e3.json" 2>&1
v=$(jf "$T/e3.json" hot_pages)
[ -n "$v" ] && [ "$v" -ge 56 ] && [ "$v" -le 70 ]
ok $? "a 64-page working set written 2048 times a second is hot: $v pages"

# Refusals, and no migration while measuring.
timeout 60 "$PM" estimate est1 --seconds 3 --json >"$T/e4.json" 2>&1 &
EP=$!
sleep 0.5
timeout 20 "$PM" estimate est1 --seconds 1 >"$T/e5.out" 2>&1
rc=$?
timeout 20 "$PM" send est1 127.0.0.1:9 --insecure --json >"$T/est1.send" 2>&1
src=$?
[ $rc = 1 ] && grep -q "already running" "$T/e5.out" && [ $src != 0 ] && grep -q "an estimate of 'est1' is already running" "$T/est1.send"
ok $? "while one runs: a second estimate is refused (exit $rc: $(head -c 100 "$T/e5.out")) and so is a migration (exit $src)"
wait $EP
grep -q '"ok":true' "$T/e4.json"
ok $? "and the first one completes"
"$PM" ctl est2 pause >/dev/null
timeout 20 "$PM" estimate est2 --seconds 1 >"$T/e6.out" 2>&1
rc=$?
"$PM" ctl est2 resume >/dev/null
timeout 20 "$PM" estimate nosuchvm >"$T/e7.out" 2>&1
rc2=$?
timeout 20 "$PM" estimate est2 --seconds 0 >"$T/e8.out" 2>&1
rc3=$?
[ $rc = 1 ] && grep -q "paused" "$T/e6.out" && [ $rc2 = 1 ] && grep -q "no VM named" "$T/e7.out" && [ $rc3 = 2 ]
ok $? "refused: a paused guest (exit $rc), no such VM (exit $rc2), --seconds 0 (exit $rc3)"

# A guest that stops during the estimate ends it with an error.
timeout 60 "$PM" estimate est2 --seconds 20 >"$T/e9.out" 2>&1 &
EP=$!
sleep 1
"$PM" ctl est2 stop >/dev/null
wait $EP
rc=$?
[ $rc = 1 ] && grep -q "guest stopped during the estimate" "$T/e9.out"
ok $? "the guest stopped meanwhile: exit $rc, $(head -c 120 "$T/e9.out")"
"$PM" ctl est1 stop >/dev/null
wait $P1 $P2 2>/dev/null
"$PM" estimate --help | grep -q -- "--seconds S"
ok $? "--help describes it"
exit $fail
