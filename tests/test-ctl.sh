#!/bin/sh
# The control socket of a running VM: status, pause (the guest stops
# making progress and sees the gap), resume, stats, finish (a guest started
# with until=finish ends its work when asked, whatever the machine's speed,
# and its digest is the one of a run of exactly the ops it reports), and
# refusal of nonsense; the VM's report is intact afterwards.
. "$(dirname "$0")/tap.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
echo "1..15"
"$PM" run --name ctltest --json "$G/idle.elf" -- until=finish period_us=10000 >"$T/report" 2>"$T/console" &
pid=$!
pid2=
trap 'kill $pid $pid2 2>/dev/null; rm -rf "$T"' EXIT
for i in $(seq 50); do [ -S "$T/run/ctltest.sock" ] && break; sleep 0.1; done
"$PM" ctl ctltest status >"$T/s" 2>&1
ok $? "status answers: $(cat "$T/s")"
grep -q '"state":"running"' "$T/s"; ok $? "state is running"
# The pause below must land in the guest's work loop to show as a stall:
# wait for its first poll from there (booting can take a while on a
# loaded machine).
for i in $(seq 600); do "$PM" ctl ctltest status | grep -q '"guest_polls":[1-9]' && break; sleep 0.05; done
"$PM" ctl ctltest pause >"$T/p" 2>&1
ok $? "pause: $(cat "$T/p")"
"$PM" ctl ctltest status | grep -q '"state":"paused"'; ok $? "state is paused"
sleep 0.3
"$PM" ctl ctltest resume >/dev/null 2>&1; ok $? "resume"
"$PM" ctl ctltest resume >"$T/r2" 2>&1
[ $? = 1 ] && grep -q '"ok":false' "$T/r2"; ok $? "second resume refused: $(cat "$T/r2")"
"$PM" ctl ctltest stats >"$T/st" 2>&1
grep -q '"dirty_log_armed":false' "$T/st"; ok $? "stats (the log is armed only while migrating): $(cat "$T/st")"
"$PM" ctl ctltest finish >"$T/f" 2>&1
ok $? "finish: $(cat "$T/f")"
# Bounded: a guest that ignored the request is a failure, not a hang.
for i in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid
rc=$?
stall=$(sed -n 's/.*"max_stall_us":\([0-9.]*\).*/\1/p' "$T/report")
[ $rc = 0 ] && grep -q '"result":"ok"' "$T/report" && awk -v s="$stall" 'BEGIN { exit !(s >= 250000) }'
ok $? "guest finished when asked (exit $rc) and saw the 300 ms pause as a stall of ${stall} us: $(cut -c1-120 "$T/report")"
"$PM" ctl ctltest status >/dev/null 2>&1
[ $? = 1 ]; ok $? "socket gone after the VM ended"

# memstress until=finish: the ops it reports, run as ops=N, give its digest.
"$PM" run --name fin --json --mem 64M "$G/memstress.elf" -- seed=5 ws=8M rate=2 until=finish >"$T/fin" 2>/dev/null &
pid=$!
for i in $(seq 50); do [ -S "$T/run/fin.sock" ] && break; sleep 0.1; done
# Some work done first, so the run stops in the middle of its loop.
"$PM" ctl fin pause >/dev/null 2>&1 && "$PM" ctl fin resume >/dev/null 2>&1
"$PM" ctl fin finish >/dev/null 2>&1
for i in $(seq 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid
rc=$?
ops=$(sed -n 's/.*"ops":\([0-9]*\).*/\1/p' "$T/fin")
dg=$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/fin")
ref=$("$PM" run --json --mem 64M "$G/memstress.elf" -- seed=5 ws=8M rate=0 ops="${ops:-x}" 2>/dev/null |
	sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p')
[ $rc = 0 ] && [ -n "$dg" ] && [ "$dg" = "$ref" ]
ok $? "memstress until=finish ended after $ops ops with digest $dg = a run of ops=$ops ($ref)"

# A VM asked to finish is not migrated any more (the request would stay
# here); idle without until=finish ignores the request, so it is still up.
"$PM" run --name nofin "$G/idle.elf" -- ops=1000000 period_us=10000 >/dev/null 2>"$T/nofin.err" &
pid2=$!
for i in $(seq 50); do [ -S "$T/run/nofin.sock" ] && break; sleep 0.1; done
"$PM" ctl nofin finish >/dev/null 2>&1
ok $? "finish is accepted by any running VM"
"$PM" send nofin 127.0.0.1:1 --insecure >"$T/send" 2>&1
rc=$?
[ $rc = 1 ] && grep -q 'asked to finish' "$T/send"
ok $? "send after finish: refused, exit $rc: $(cat "$T/send")"
"$PM" ctl nofin status | grep -q '"state":"running"'
ok $? "and the VM runs on here"
"$PM" ctl nofin stop >/dev/null 2>&1
wait $pid2
"$PM" ctl nofin finish >"$T/f2" 2>&1
[ $? = 1 ]; ok $? "finish to a VM that is gone: exit 1 ($(tr '\n' ' ' <"$T/f2"))"
exit $fail
