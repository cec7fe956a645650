#!/bin/sh
# bench/gaps, the breakdown of a vCPU's gaps out of guest mode (issue 23),
# on a trace whose answer is known (tests/data/gaps-trace.txt, perf
# script's format): a hypercall exit, a sleep, a wake-up by tls-rx and 5 ms
# waiting for the CPU behind encode0; a fault exit preempted by the
# engine's thread for 2 ms; the source's vCPU pausing and the guest
# resuming 20 ms later in the destination's vCPU thread. Also the filters,
# and bad invocations refused with their exit codes.
. "$(dirname "$0")/tap.sh"
B=$(cd "$(dirname "$0")/../bench" && pwd)
D=$(cd "$(dirname "$0")/data" && pwd)
command -v python3 >/dev/null || skip_all "python3 not installed (scripts/setup.sh installs it)"
echo "1..7"

"$B/gaps" --script "$D/gaps-trace.txt" --json >"$T/g.json" 2>"$T/err"
ok $? "bench/gaps reads the trace: $(head -c 200 "$T/err")"

# Each check: python3 prints 0 (true) or 1, with the figures seen.
q() { python3 -c "import json,sys; g=json.load(open('$T/g.json')); $1" 2>&1; }

r=$(q "t=g[0]; b=t['by_state']; print(int(not (len(g)==3 and t['ms']==20.1 and b.get('paused (switchover)')==20.09 and t.get('moved_to_tid')==200)), t)")
ok "${r%% *}" "the longest gap is the switchover, 20.1 ms, the source's vCPU paused and the guest on in thread 200: ${r#* }"

r=$(q "t=g[1]; b=t['by_state']; print(int(not (t['ms']==10.5 and b=={'runnable':5.0,'sleeping':4.9,'hv io':0.6} and t['runnable_behind']=={'encode0':5.0} and list(t['woken_by'])==['tls-rx'])), t)")
ok "${r%% *}" "the 10.5 ms gap: 0.6 ms in the hypercall's exit, asleep 4.9 ms, woken by tls-rx, then 5 ms waiting for the CPU behind encode0: ${r#* }"

r=$(q "t=g[2]; print(int(not (t['ms']==2.3 and t['by_state']=={'runnable':2.0,'hv npf':0.3} and t['runnable_behind']=={'pml-migrate':2.0} and not t['woken_by'])), t)")
ok "${r%% *}" "the 2.3 ms gap: a fault exit, then preempted by the engine's thread for 2 ms: ${r#* }"

"$B/gaps" --script "$D/gaps-trace.txt" --json --min-ms 0.1 --top 10 >"$T/g.json"
r=$(q "print(int(not (len(g)==4 and g[3]['ms']==0.3)), [x['ms'] for x in g])")
ok "${r%% *}" "--min-ms 0.1 adds the 0.3 ms hypercall gap, --top 10 keeps all four: ${r#* }"

"$B/gaps" --script "$D/gaps-trace.txt" >"$T/table" 2>&1
grep -q "^| 0 | 1000.030 | 20.10 | paused (switchover) 20.09" "$T/table" && grep -q "encode0 5.00" "$T/table"
ok $? "the table form: $(sed -n 3p "$T/table")"

"$B/gaps" >"$T/o1" 2>&1; e1=$?
"$B/gaps" --script "$T/none.txt" >"$T/o2" 2>&1; e2=$?
"$B/gaps" --top >"$T/o3" 2>&1; e3=$?
[ $e1 = 2 ] && [ $e2 = 1 ] && [ $e3 = 2 ] && grep -q "usage:" "$T/o1" && grep -q "none.txt" "$T/o2"
ok $? "no input or a bad option: exit 2 with the usage; a missing file: exit 1 naming it ($e1 $e2 $e3: $(head -c 100 "$T/o2"))"
exit $fail
