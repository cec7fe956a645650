#!/bin/bash
# A guest that asks to sleep (PMG_HC_SLEEP) is not run in the meantime:
# the idle workload sleeps between its few operations, so the process
# hosting it should use a small share of one CPU. (The KVM backend's sleep
# once returned at once - its timed wait used the wrong clock - and the
# guest spun through hypercalls at 100% of a CPU; the duty-cycle throttle,
# which sits out its share the same way, did not slow anything.)
. "$(dirname "$0")/tap.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..2"
# ops=20 period_us=50000: about 1 s asleep. Children's CPU from `times`.
start=$(date +%s%N)
"$PM" run --dirty-log off --json "$G/idle.elf" -- ops=20 period_us=50000 >"$T/r.json" 2>/dev/null
rc=$?
wall_ms=$((($(date +%s%N) - start) / 1000000))
times >"$T/times" # not in a pipeline: a subshell would report its own
cpu_ms=$(awk 'NR==2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", (u[1]*60 + u[2] + s[1]*60 + s[2]) * 1000 }' "$T/times")
[ $rc = 0 ] && grep -q '"result":"ok"' "$T/r.json"
ok $? "idle guest ran and reported (exit $rc, ${wall_ms} ms)"
# Asleep about 1 s of a ~1 s run: spinning would cost ~100% of it.
[ "$cpu_ms" -lt $((wall_ms / 2)) ]
ok $? "the host spent $cpu_ms ms of CPU over $wall_ms ms: the guest's sleeps are real"
exit $fail
