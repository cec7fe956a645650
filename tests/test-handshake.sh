#!/bin/bash
# Each record is accepted only in its phase, on both sides (issue 9):
# a READY before STATE_DONE makes the source fail and keep its guest, never
# COMMIT (defect 3); connections to a multi-stream migration's join port
# that never join (connect-and-close, garbage, idle, a bogus JOIN) are
# dropped without harming it (defect 5); repeated VERIFY records are
# refused (defect 6); a HELLO with a bad name gets a clear refusal and a
# name that reads like an option is refused (defect 8).
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
PEER=${TOP_BUILDDIR:-.}/tests/peer
TS=${TOP_BUILDDIR:-.}/tests/test-stream
echo "1..9"
MEM="ws=16M rate=16 ops=16384 content=random"
ref=$(reference memstress $MEM)

# Defect 3: a destination that says READY right after HELLO.
timeout 60 "$PEER" early-ready "$T/fake.port" >"$T/fake.out" 2>&1 &
fpid=$!
for i in $(seq 100); do [ -s "$T/fake.port" ] && break; sleep 0.05; done
start_vm "$T/hostA" early memstress ring $MEM
sleep 0.3
PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" send early "127.0.0.1:$(cat "$T/fake.port")" --insecure --json \
	>"$T/early.send" 2>&1
rc=$?
wait $fpid
[ $rc = 1 ] && grep -q "unexpected or malformed READY" "$T/early.send"
ok $? "a READY before STATE_DONE fails the migration (exit $rc: $(field "$T/early.send" error))"
grep -q "commit=0" "$T/fake.out"; ok $? "and no COMMIT was ever sent ($(cat "$T/fake.out"))"
wait $VPID
[ "$(field "$T/early.src.json" digest)" = "$ref" ]; ok $? "the guest kept running at the source and finished with the right digest"

# Plaintext agent for the protocol attacks below.
start_agent h "$T/hostH" --insecure
PH=$PORT

# Defect 5: strays on the join port.
timeout 60 "$PEER" join-abuse "$PH" >"$T/join.out" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "alive" "$T/join.out"
ok $? "connect-and-close, garbage, an idle connection and a bogus JOIN on the join port leave the migration alive: $(cat "$T/join.out")"

hostile() {
	before=$(grep -c "failed:" "$T/h.log")
	{ "$TS" --hostile "$1"; sleep "${2:-0.5}"; } 2>/dev/null >/dev/tcp/127.0.0.1/"$PH"
	for i in $(seq 60); do [ "$(grep -c "failed:" "$T/h.log")" -gt "$before" ] && break; sleep 0.05; done
	grep "failed:" "$T/h.log" | tail -n 1 | sed 's/.*failed: //'
}
# Defect 6.
m=$(hostile verifyflood); echo "$m" | grep -q "VERIFY records overlap"; ok $? "repeated VERIFY records refused: $m"
# Defect 8.
m=$(hostile badname); echo "$m" | grep -q "HELLO carries an invalid VM name"; ok $? "HELLO with a bad name: $m"
m=$(hostile dashname); echo "$m" | grep -q "invalid VM name '-rf'"; ok $? "HELLO with a name that reads like an option: $m"
"$PM" run "$G/idle.elf" --name -x -- ops=1 >/dev/null 2>&1
[ $? = 2 ]; ok $? "run --name -x is a usage error"
kill -0 $APID; ok $? "the agent still serves"
exit $fail
