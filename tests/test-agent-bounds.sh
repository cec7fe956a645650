#!/bin/bash
# What an allowed sender can make an agent hold, and what an agent knows
# after a crash (issue 21, defects 6 and 7):
#   1. Link probes are bounded: 6 slow probes at once against
#      --max-queries 2 get 2 answers and 4 refusals (before: 6 processes,
#      each allowed 75 s, counted nowhere), and the metrics show them.
#   2. The session count survives the agent: two VMs arrive under
#      --max-sessions 2; the agent is killed (-9) and started again; it
#      still counts both sessions (query and metrics), refuses a third VM
#      (which keeps running at the source), and admits it once one of the
#      earlier sessions ended.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
PEER=${TOP_BUILDDIR:-.}/tests/peer
echo "1..11"
jf() { sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p" "$1"; }
metric() { sed -n "s/^$2 //p" "$1"; }

# 1. Probes.
start_agent P "$T/p" --insecure --max-queries 2 --metrics-file "$T/p.prom"
timeout 60 "$PEER" probes "$PORT" 6 20 >"$T/probes.out" 2>&1 &
PP=$!
for i in $(seq 300); do grep -q answered= "$T/probes.out" && break; sleep 0.1; done
grep -q "answered=2 refused=4 lost=0" "$T/probes.out"
ok $? "6 slow probes against --max-queries 2: $(cat "$T/probes.out")"
grep -q "max-queries" "$T/probes.out"
ok $? "a refusal says why"
q=$(metric "$T/p.prom" pml_migrate_queries) r=$(metric "$T/p.prom" pml_migrate_queries_refused_total)
[ "$q" = 2 ] && [ "$r" = 4 ] && [ "$(metric "$T/p.prom" pml_migrate_max_queries)" = 2 ]
ok $? "the metrics show them: pml_migrate_queries $q, pml_migrate_queries_refused_total $r"
wait $PP
for i in $(seq 300); do [ "$(metric "$T/p.prom" pml_migrate_queries)" = 0 ] && break; sleep 0.1; done
q=$(metric "$T/p.prom" pml_migrate_queries)
[ "$q" = 0 ]
ok $? "once they ended, none is counted ($q)"

# 2. A restarted agent.
make_certs
SRC="$T/src" DST="$T/dst"
ARGS="ws=16M prefill=1 rate=8 content=text until=finish"
start_agent A "$DST" --max-sessions 2
A1=$APID
for v in e1 e2 e3; do start_vm "$SRC" $v memstress ring seed=${v#e} $ARGS; done
send_vm "$SRC" e1 "$PORT" && send_vm "$SRC" e2 "$PORT"
ok $? "two VMs migrated in under --max-sessions 2"
pkill -KILL -P "$A1" # the agent itself (under timeout(1)); its sessions live on
wait "$A1" 2>/dev/null
alive=$(PML_MIGRATE_RUNDIR="$DST" "$PM" list --json 2>/dev/null | grep -c '"state":"running"')
[ "$alive" = 2 ]
ok $? "the agent killed with SIGKILL, both VMs still run there ($alive)"
start_agent A2 "$DST" --max-sessions 2 --metrics-file "$T/a2.prom"
PML_MIGRATE_RUNDIR="$SRC" timeout 60 "$PM" evacuate --to "127.0.0.1:$PORT" --certs "$C" --node sender --peer agent \
	--dry-run --json >"$T/dry.json" 2>/dev/null
grep '"event":"agent"' "$T/dry.json" | grep -q '"sessions":2,"max_sessions":2'
ok $? "restarted, it still counts them: $(grep '"event":"agent"' "$T/dry.json")"
s=$(metric "$T/a2.prom" pml_migrate_sessions) e=$(metric "$T/a2.prom" pml_migrate_earlier_sessions)
[ "$s" = 2 ] && [ "$e" = 2 ] && grep -q "2 session(s) an earlier agent started still run here" "$T/A2.log"
ok $? "its metrics and log say so: pml_migrate_sessions $s, pml_migrate_earlier_sessions $e"
send_vm "$SRC" e3 "$PORT"
rc=$?
st=$(PML_MIGRATE_RUNDIR="$SRC" "$PM" ctl e3 status 2>&1)
[ $rc = 1 ] && grep -q "busy" "$T/e3.send" && echo "$st" | grep -q '"state":"running"'
ok $? "a third VM is refused (exit $rc: $(field "$T/e3.send" error)) and runs on at the source"
finish_vm "$DST" e1
for i in $(seq 600); do [ -s "$DST/e1.result.json" ] && ! PML_MIGRATE_RUNDIR="$DST" "$PM" ctl e1 status >/dev/null 2>&1 && break; sleep 0.1; done
send_vm "$SRC" e3 "$PORT"
rc=$?
[ $rc = 0 ]
ok $? "once one of the earlier VMs ended there, it is admitted (exit $rc $(field "$T/e3.send" error))"
for v in e2 e3; do finish_vm "$DST" $v; done
for v in e2 e3; do wait_result "$DST" $v; done
ok=0
for v in e1 e2 e3; do
	want=$(reference_of memstress "seed=${v#e} $ARGS" "$DST/$v.result.json")
	[ -n "$want" ] && [ "$(field "$DST/$v.result.json" digest)" = "$want" ] || ok=1
done
[ $ok = 0 ]
ok $? "each finished on the destination with the digest of a run that never moved"
exit $fail
