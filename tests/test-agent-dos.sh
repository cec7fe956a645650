#!/bin/bash
# Unauthenticated connections cost almost nothing and cannot starve
# authenticated ones (issue 9, defect 2): with 200 connections held open
# against the agent - idle, trickling a ClientHello a byte at a time, or
# sending a whole ClientHello and then stalling - a real send still
# migrates, the agent never runs more than --max-handshakes processes for
# them, and everything they held is released once they stop.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
PEER=${TOP_BUILDDIR:-.}/tests/peer
echo "1..7"
make_certs; ok $? "certificates"
start_agent b "$T/hostB" --max-sessions 4
PB=$PORT
MEM="ws=16M rate=16 content=random until=finish" # runs until asked: outlives the send
sessions() { pgrep -f "recv --session-fd 3 .*$T" | wc -l; }

# 120 idle + 60 trickling + 20 stalled after a full ClientHello, for 25 s.
timeout 60 "$PEER" flood "$PB" 120 60 20 25 >"$T/flood.out" 2>&1 &
fpid=$!
for i in $(seq 100); do grep -q open= "$T/flood.out" && break; sleep 0.1; done
grep -q "open=200" "$T/flood.out"; ok $? "200 unauthenticated connections held open ($(cat "$T/flood.out"))"
sleep 2
procs=$(sessions)
[ "$procs" -le 8 ]; ok $? "they run $procs session processes (at most --max-handshakes 8), not one each"

start_vm "$T/hostA" real memstress ring $MEM
sleep 0.3
send_vm "$T/hostA" real "$PB"
rc=$?
[ $rc = 0 ]; ok $? "a real send migrates through the flood (exit $rc, setup $(field "$T/real.send" setup_time_ms) ms) $(field "$T/real.send" error)"
finish_vm "$T/hostB" real || finish_vm "$T/hostA" real
wait_result "$T/hostB" real
ref=$(reference_of memstress "$MEM" "$T/hostB/real.result.json")
[ -n "$ref" ] && [ "$(field "$T/hostB/real.result.json" digest)" = "$ref" ]; ok $? "and finishes there with the right digest"
wait $VPID

wait $fpid
for i in $(seq 300); do [ "$(sessions)" = 0 ] && break; sleep 0.1; done
procs=$(sessions)
[ "$procs" = 0 ]; ok $? "once the flood stops, no process is left for it ($procs)"
grep -q "dropped .* unauthenticated" "$T/b.log"; ok $? "the agent logs what it dropped: $(grep "dropped" "$T/b.log" | tail -n 1 | sed 's/.*: dropped/dropped/')"
exit $fail
