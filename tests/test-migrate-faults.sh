#!/bin/bash
# Faults: the connection cut before COMMIT (nobody listening; the
# destination session killed mid-stream, mid-batch) and a refusal by the
# destination: the source guest keeps running and later finishes with the
# right digest, and the agent keeps serving. Hostile input to the agent
# (garbage before the handshake, truncated records, oversized lengths,
# frames outside memory, unknown codecs, LZ4 that decodes to the wrong
# size, a client with no certificate, one from another CA, one not on the
# allow-list): each refused with a clear error, the agent still serving.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
TS=${TOP_BUILDDIR:-.}/tests/test-stream
echo "1..25"
make_certs && "$PM" certs issue "$C" intruder >/dev/null; ok $? "certificates"
start_agent b "$T/hostB"
PB=$PORT
# Runs until asked to finish: every guest outlives the step it is there
# for, whatever the machine's speed; its digest is checked against an
# unmigrated run of exactly its ops.
MEM="ws=32M rate=32 content=random until=finish"
# src_done NAME: asks NAME to finish on host A, waits for its process and
# checks it finished there with the unmigrated digest.
src_done() {
	finish_vm "$T/hostA" "$1"
	wait $VPID
	r=$(reference_of memstress "$MEM" "$T/$1.src.json")
	[ "$(field "$T/$1.src.json" result)" = ok ] && [ -n "$r" ] && [ "$(field "$T/$1.src.json" digest)" = "$r" ]
}


# 1. Nobody listening.
start_vm "$T/hostA" f1 memstress ring $MEM
send_vm "$T/hostA" f1 1
rc=$?
[ $rc = 1 ]; ok $? "send to a port nobody listens on fails with exit 1 ($(field "$T/f1.send" error))"
PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl f1 status | grep -q '"state":"running"'
ok $? "the guest still runs on the source"
src_done f1; ok $? "and finishes there with the unmigrated digest"

# 2. The destination session dies mid-stream (slowed to 2 MB/s so the cut
# lands inside the page stream, mid-batch).
start_vm "$T/hostA" f2 memstress ring $MEM
sleep 1 # ~32 MB touched: at 2 MB/s the page stream lasts far longer than the cut below
send_vm "$T/hostA" f2 "$PB" --max-bandwidth 2M &
spid=$!
sess=$(new_session b "")
sleep 0.7
kill -9 "$sess" 2>/dev/null
killed=$sess
wait $spid
rc=$?
[ $rc = 1 ]; ok $? "session killed mid-stream: send exits 1 ($(field "$T/f2.send" error))"
src_done f2; ok $? "the source guest finished with the unmigrated digest"
kill -0 $APID; ok $? "agent B survived its session's death"

# 2b. The guest ends while the sender is blocked on a stalled destination
# (its session stopped with SIGSTOP, so the TCP window and then the send
# queue fill and the encoder waits in xport_send; 4 MB/s so the first pass
# outlasts the stop whatever the host's load): the migration must fail
# promptly and the VM process must end with its guest's report, not hang.
start_vm "$T/hostA" f6 memstress ring ws=32M rate=0 ops=100000000 ms=3000 content=random
send_vm "$T/hostA" f6 "$PB" --no-throttle --downtime 1 --max-bandwidth 4M &
spid=$!
sess=$(new_session b "$killed")
sleep 0.3
kill -STOP "$sess" 2>/dev/null
for i in $(seq 300); do kill -0 $spid 2>/dev/null || break; sleep 0.1; done
kill -0 $spid 2>/dev/null && { kill $spid; kill -9 $VPID; }
wait $spid
rc=$?
[ $rc = 1 ] && grep -q "guest stopped during the migration: it exited with status" "$T/f6.send"
ok $? "guest ended while the sender was blocked on a full queue: send exits 1 within 30 s (rc $rc: $(field "$T/f6.send" error))"
for i in $(seq 100); do kill -0 $VPID 2>/dev/null || break; sleep 0.1; done
wait $VPID
[ "$(field "$T/f6.src.json" result)" = ok ]
ok $? "the VM process ended with its guest's report ($(field "$T/f6.src.json" result), ops $(field "$T/f6.src.json" ops))"
kill -CONT "$sess" 2>/dev/null
kill "$sess" 2>/dev/null

# 3. The destination refuses: a VM of that name already runs there.
start_vm "$T/hostB" dup idle ring until=finish period_us=10000
bpid=$VPID
start_vm "$T/hostA" dup memstress bitmap $MEM
send_vm "$T/hostA" dup "$PB"
rc=$?
[ $rc = 1 ] && grep -q "already runs" "$T/dup.send"
ok $? "destination refuses a duplicate name: $(field "$T/dup.send" error)"
src_done dup; ok $? "the refused guest finished at the source"
finish_vm "$T/hostB" dup
wait $bpid 2>/dev/null

# 4. Hostile streams into a plaintext agent (no TLS, so raw bytes reach
# the parser; every session runs in its own process).
start_agent h "$T/hostH" --insecure
PH=$PORT
hostile() {
	before=$(grep -c "failed:" "$T/h.log")
	{ "$TS" --hostile "$1"; sleep 0.5; } 2>/dev/null >/dev/tcp/127.0.0.1/"$PH"
	for i in $(seq 600); do [ "$(grep -c "failed:" "$T/h.log")" -gt "$before" ] && break; sleep 0.05; done
	grep "failed:" "$T/h.log" | tail -n 1 | sed 's/.*failed: //'
}
# Garbage never reaches a session: the agent only looks at the first
# record's header (without reading it) and drops the connection.
{ "$TS" --hostile garbage; sleep 0.5; } 2>/dev/null >/dev/tcp/127.0.0.1/"$PH"
for i in $(seq 600); do grep -q "not speaking our protocol" "$T/h.log" && break; sleep 0.05; done
m=$(grep "dropped" "$T/h.log" | tail -n 1 | sed 's/.*: dropped/dropped/')
echo "$m" | grep -q "1 not speaking our protocol"; ok $? "garbage before the handshake, dropped by the agent: $m"
m=$(hostile truncated); echo "$m" | grep -q "lost before COMMIT"; ok $? "truncated record: $m"
m=$(hostile oversized); echo "$m" | grep -q "longer than its type allows"; ok $? "oversized length: $m"
m=$(hostile badgfn); echo "$m" | grep -q "outside the guest's memory"; ok $? "frame outside memory: $m"
m=$(hostile badcodec); echo "$m" | grep -q "malformed PAGES"; ok $? "unknown codec: $m"
m=$(hostile lz4size); echo "$m" | grep -q "failed to decode"; ok $? "LZ4 decoding to the wrong size: $m"
kill -0 $APID && kill -0 $(sed -n 's/.*recv\[\([0-9]*\)\]: listening.*/\1/p' "$T/h.log" | head -n 1)
ok $? "both agents still running"

# 5. TLS refusals, with openssl s_client as the client.
tls() {
	before=$(grep -c "failed:" "$T/b.log")
	timeout 10 openssl s_client -connect 127.0.0.1:"$PB" -CAfile "$C/ca.pem" "$@" </dev/null >/dev/null 2>&1
	for i in $(seq 600); do [ "$(grep -c "failed:" "$T/b.log")" -gt "$before" ] && break; sleep 0.05; done
	grep "failed:" "$T/b.log" | tail -n 1 | sed 's/.*failed: //'
}
if command -v openssl >/dev/null; then
	m=$(tls); echo "$m" | grep -qi "certificate"; ok $? "client without a certificate refused: $m"
	mkdir -p "$T/other"
	"$PM" certs init "$T/other" >/dev/null && "$PM" certs issue "$T/other" sender >/dev/null
	m=$(tls -cert "$T/other/sender.pem" -key "$T/other/sender.key")
	echo "$m" | grep -qi "certificate"; ok $? "client certificate from another CA refused: $m"
	m=$(tls -cert "$C/intruder.pem" -key "$C/intruder.key")
	echo "$m" | grep -q "not on the allow-list"; ok $? "client not on the allow-list refused: $m"
else
	for t in 1 2 3; do echo "ok $((n + t)) # SKIP openssl command absent"; done
	n=$((n + 3))
fi
# The agent's own name check works the other way round too: a sender that
# expects another name refuses the agent.
start_vm "$T/hostA" f5 memstress ring $MEM
send_vm "$T/hostA" f5 "$PB" --peer someone-else
rc=$?
[ $rc = 1 ] && grep -qi "certificate" "$T/f5.send"; ok $? "sender refuses an agent with the wrong name: $(field "$T/f5.send" error)"
finish_vm "$T/hostA" f5
wait $VPID

# 5b. The guest stops on the source in the middle of pre-copy (ctl stop:
# a failure the engine meets, not a cancel): the destination hears ERROR
# and lets the VM and its name go at once, instead of waiting --timeout
# for a resume that cannot come.
start_agent c "$T/hostC" --timeout 120
PC=$PORT
start_vm "$T/hostA" gone memstress ring $MEM
send_vm "$T/hostA" gone "$PC" --max-bandwidth 2M &
SP=$!
for i in $(seq 600); do grep -q '"phase":"precopy"' "$T/gone.send" 2>/dev/null && break; sleep 0.05; done
PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl gone stop >/dev/null 2>&1
wait $SP
rc=$?
wait $VPID
for i in $(seq 300); do grep -q 'session [0-9]* exited' "$T/c.log" && break; sleep 0.05; done
grep -q 'session [0-9]* exited' "$T/c.log" && grep -q 'the source aborted' "$T/c.log" && ! grep -q 'waiting up to' "$T/c.log"
ok $? "the guest stopped at the source mid-migration (send exit $rc: $(field "$T/gone.send" error)): the destination ended its session at once: $(grep -m1 -E 'aborted|waiting up to' "$T/c.log" | sed 's/.*recv\[[0-9]*\]: //' | cut -c1-160)"

# 6. After all that, agent B still migrates.
start_vm "$T/hostA" last memstress ring $MEM
sleep 0.3
send_vm "$T/hostA" last "$PB"
ok $? "agent B still serves: $(field "$T/last.send" result)"
finish_vm "$T/hostB" last || finish_vm "$T/hostA" last
wait_result "$T/hostB" last
ref=$(reference_of memstress "$MEM" "$T/hostB/last.result.json")
[ -n "$ref" ] && [ "$(field "$T/hostB/last.result.json" digest)" = "$ref" ]; ok $? "and that guest finishes with the right digest"
wait $VPID
exit $fail
