#!/bin/bash
# A guest that asks to sleep (PMG_HC_SLEEP) is not run in the meantime:
# the idle workload sleeps between its few operations, so the process
# hosting it should use a small share of one CPU. (The KVM backend's sleep
# once returned at once - its timed wait used the wrong clock - and the
# guest spun through hypercalls at 100% of a CPU; the duty-cycle throttle,
# which sits out its share the same way, did not slow anything.) With the
# guest arg sleep=0 it spins instead, as under QEMU.
. "$(dirname "$0")/tap.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..3"
# cpu_ms: NOW, the CPU in ms this shell's children used so far, from
# `times` (run by this shell itself: in a pipeline or $(...) a subshell
# would report its own).
cpu_ms() {
	times >"$T/times"
	NOW=$(awk 'NR==2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%d", (u[1]*60 + u[2] + s[1]*60 + s[2]) * 1000 }' "$T/times")
}
# run OPS [ARGS]: the idle guest with OPS operations 50 ms apart; WALL and
# CPU in ms.
run() {
	cpu_ms
	c0=$NOW start=$(date +%s%N)
	"$PM" run --dirty-log off --json "$G/idle.elf" -- ops=$1 period_us=50000 $2 >"$T/r.json" 2>/dev/null
	RC=$?
	WALL=$((($(date +%s%N) - start) / 1000000))
	cpu_ms
	CPU=$((NOW - c0))
}
# One operation: what starting and ending a VM costs on this machine.
run 1
w1=$WALL c1=$CPU
# ops=20: about 1 s asleep more.
run 20
[ $RC = 0 ] && grep -q '"result":"ok"' "$T/r.json"
ok $? "idle guest ran and reported (exit $RC, ${WALL} ms; ${w1} ms with one operation)"
# The extra second asleep costs next to no CPU; spinning would cost ~100%
# of it. Measured against the one-operation run, so a slow machine's
# longer start-up counts on both sides.
[ $((CPU - c1)) -lt $(((WALL - w1) / 2)) ]
ok $? "the host spent $((CPU - c1)) ms more CPU over $((WALL - w1)) ms more of sleeps ($CPU against $c1 ms in all): the guest's sleeps are real"
# sleep=0 (for comparing stalls with QEMU, which ignores the call): the
# guest waits by spinning, so the same second costs about a CPU second.
run 20 sleep=0
[ $RC = 0 ] && [ $((CPU - c1)) -gt $(((WALL - w1) / 2)) ]
ok $? "sleep=0: the guest spins instead: $((CPU - c1)) ms more CPU over $((WALL - w1)) ms more of waiting (exit $RC)"
exit $fail
