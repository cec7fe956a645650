#!/bin/bash
# Migrations whose end was not heard (issue 21, defects 3 and 4), with
# real agents, sources and guests on loopback. The agent runs with the
# test hook PML_MIGRATE_TEST_FAULT=stop-after-ready: each session stops
# itself (SIGSTOP, as a hung host would) once its READY is on the wire, so
# the source's COMMIT waits in its socket for as long as the test likes.
#   1. Stopped for longer than the agent's --timeout, then continued: the
#      session reads the COMMIT waiting for it before it judges any
#      deadline, and the guest runs there (before: it destroyed the VM
#      and the source ended indeterminate, the guest running nowhere).
#   2. The source gives up waiting for RUNNING (30 s after COMMIT:
#      indeterminate, its copy paused, `ctl resolve` says unknown while the
#      session is stopped); continued, the session starts the guest, and the source
#      learns it by itself (RESOLVE) and ends as migrated.
#   3. The same, but the stopped session is killed: the destination's
#      record says the VM died before it ran, so the source resumes its
#      own copy, and the guest finishes here with the right digest.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..15"
make_certs
SRC="$T/src" DST="$T/dst"
export PML_MIGRATE_TEST_FAULT=stop-after-ready
start_agent A "$DST" --timeout 1
unset PML_MIGRATE_TEST_FAULT
[ -n "$PORT" ]
ok $? "agent listening on 127.0.0.1:$PORT (sessions stop themselves after READY, --timeout 1)"
ARGS="ws=16M prefill=1 rate=8 content=text until=finish"

# stopped SESSION: waits (bounded) until the process is stopped (state T).
stopped() {
	for i in $(seq 600); do
		[ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' /proc/$1/status 2>/dev/null)" = T ] && return 0
		sleep 0.1
	done
	return 1
}
# session NAME: the pid of the agent's session holding NAME at READY, from
# the agent's record of it (bounded: 120 s). Not the agent's log: resolve
# questions get sessions of their own.
session() {
	for i in $(seq 1200); do
		grep -q '"state":"ready"' "$DST/$1.migration" 2>/dev/null &&
			sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$DST/$1.migration" && return 0
		sleep 0.1
	done
}

# finished_there NAME SEED: asks NAME on the destination to finish; true
# when its digest is that of an unmigrated run of the ops it did (got).
finished_there() {
	finish_vm "$DST" "$1"
	wait_result "$DST" "$1"
	want=$(reference_of memstress "seed=$2 $ARGS" "$DST/$1.result.json")
	got=$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$DST/$1.result.json")
	[ -n "$want" ] && [ "$got" = "$want" ]
}

# hold_at_ready NAME SEED: boots NAME, migrates it with a source that
# gives up waiting for RUNNING, and returns once its session stopped at
# READY and send ended: sets V (the source), S (the session), rc (send's).
hold_at_ready() {
	start_vm "$SRC" "$1" memstress ring seed=$2 $ARGS
	V=$VPID
	send_vm "$SRC" "$1" "$PORT" &
	local sp=$!
	S=$(session "$1")
	stopped "$S"
	wait $sp
	rc=$?
}

# 1. A stall between READY and COMMIT, longer than --timeout.
start_vm "$SRC" r1 memstress ring seed=1 $ARGS
V1=$VPID
send_vm "$SRC" r1 "$PORT" --link-timeout 120 &
SP=$!
S1=$(session r1)
stopped "$S1"
ok $? "session $S1 stopped itself after READY"
sleep 3 # the stopped session's 1 s deadline passes meanwhile: what it must not act on
kill -CONT "$S1"
wait $SP
rc=$?
[ $rc = 0 ] && [ "$(field "$T/r1.send" result)" = migrated ]
ok $? "continued 3 s later, it read the waiting COMMIT first: send exit $rc, $(field "$T/r1.send" result) $(field "$T/r1.send" error)"
st=$(PML_MIGRATE_RUNDIR="$DST" "$PM" ctl r1 status 2>&1)
echo "$st" | grep -q '"state":"running"'
ok $? "the guest runs on the destination: $st"
finished_there r1 1
ok $? "it finishes there with the digest of a run that never moved ($got)"
wait "$V1"

# 2. The source gives up; the destination starts the guest later; the
#    source learns it.
hold_at_ready r2 2
st=$(PML_MIGRATE_RUNDIR="$SRC" "$PM" ctl r2 status 2>&1)
[ $rc = 3 ] && echo "$st" | grep -q '"state":"indeterminate"'
ok $? "the source stopped waiting: send exit $rc ($(field "$T/r2.send" error)); $st"
res=$(PML_MIGRATE_RUNDIR="$SRC" "$PM" ctl r2 resolve 2>&1)
echo "$res" | grep -q '"outcome":"unknown".*"state":"indeterminate"'
ok $? "ctl resolve while the destination's session is stopped: $res"
kill -CONT "$S"
wait "$V" # the source's run ends once it learned where its guest runs
r2=$(tail -n 1 "$T/r2.src.json" 2>/dev/null)
echo "$r2" | grep -q '"result":"migrated"'
ok $? "continued, the destination took the COMMIT; the source learned it and ended as migrated: $(echo "$r2" | head -c 200)"
grep -q "resolving the migration to 127.0.0.1:$PORT (COMMIT was sent, try [0-9]*): ran" "$T/r2.src.log"
ok $? "by asking the agent: $(grep -m1 ': ran' "$T/r2.src.log")"
finished_there r2 2
ok $? "the guest finishes on the destination with the right digest ($got)"

# 3. The source gives up; the stopped session is killed: no copy runs
#    there, the source's copy resumes.
hold_at_ready r3 3
[ $rc = 3 ]
ok $? "indeterminate again: send exit $rc"
kill -KILL "$S"
st=""
for i in $(seq 600); do
	st=$(PML_MIGRATE_RUNDIR="$SRC" "$PM" ctl r3 status 2>&1)
	echo "$st" | grep -q '"state":"running"' && break
	sleep 0.1
done
echo "$st" | grep -q '"state":"running"'
ok $? "the destination's session was killed before COMMIT took effect: the source resumed its copy: $st"
grep -q '"state":"ready"' "$DST/r3.migration"
ok $? "what the agent went by, its record (left as READY by the killed session): $(cat "$DST/r3.migration" 2>/dev/null)"
finish_vm "$SRC" r3
wait $V
rc=$?
want=$(reference_of memstress "seed=3 $ARGS" "$T/r3.src.json")
got=$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/r3.src.json")
[ $rc = 0 ] && [ -n "$want" ] && [ "$got" = "$want" ]
ok $? "the guest finishes on the source (exit $rc) with the digest of a run that never moved ($got)"
left=$(PML_MIGRATE_RUNDIR="$DST" "$PM" list --json 2>/dev/null | grep -c '"name":"r3"')
[ "$left" = 0 ]
ok $? "and runs nowhere else ($left on the destination)"
exit $fail
