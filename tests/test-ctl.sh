#!/bin/sh
# The control socket of a running VM: status, pause (the guest stops
# making progress and sees the gap), resume, stats, and refusal of
# nonsense; the VM's report is intact afterwards.
. "$(dirname "$0")/tap.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
echo "1..9"
"$PM" run --name ctltest --json "$G/idle.elf" -- ops=150 period_us=10000 >"$T/report" 2>"$T/console" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
for i in $(seq 50); do [ -S "$T/run/ctltest.sock" ] && break; sleep 0.1; done
"$PM" ctl ctltest status >"$T/s" 2>&1
ok $? "status answers: $(cat "$T/s")"
grep -q '"state":"running"' "$T/s"; ok $? "state is running"
"$PM" ctl ctltest pause >"$T/p" 2>&1
ok $? "pause: $(cat "$T/p")"
"$PM" ctl ctltest status | grep -q '"state":"paused"'; ok $? "state is paused"
sleep 0.3
"$PM" ctl ctltest resume >/dev/null 2>&1; ok $? "resume"
"$PM" ctl ctltest resume >"$T/r2" 2>&1
[ $? = 1 ] && grep -q '"ok":false' "$T/r2"; ok $? "second resume refused: $(cat "$T/r2")"
"$PM" ctl ctltest stats >"$T/st" 2>&1
grep -q '"dirty_log_armed":false' "$T/st"; ok $? "stats (the log is armed only while migrating): $(cat "$T/st")"
wait $pid
rc=$?
stall=$(sed -n 's/.*"max_stall_us":\([0-9.]*\).*/\1/p' "$T/report")
[ $rc = 0 ] && awk -v s="$stall" 'BEGIN { exit !(s >= 250000) }'
ok $? "guest finished (exit $rc) and saw the 300 ms pause as a stall of ${stall} us"
"$PM" ctl ctltest status >/dev/null 2>&1
[ $? = 1 ]; ok $? "socket gone after the VM ended"
exit $fail
