#!/bin/bash
# Resume after a lost link (issue 9). A migration slowed to 12 MB/s has its
# connection cut for real in the middle of pre-copy: the kernel aborts the
# source's TCP socket (ss -K, a RST to the destination), or, between two
# network namespaces, the destination's end of a veth pair goes down for
# 4 s (a partition: nothing arrives, nothing is refused) and the source
# notices the silence (--link-timeout 2). Each time the source reconnects
# to the destination's session, resends only what did not arrive, and the
# guest finishes on the destination with the digest of an unmigrated run;
# the reconnects show in the report and the progress events, and the
# bytes on the wire stay below 1.5x an uncut migration of the same guest.
# Cut during a --verify switchover (the guest paused, VERIFY records on
# the way) and right after STATE_DONE (the destination already applying
# the last round): the guest runs again at the source, the destination
# goes back to receiving, and the next switchover verifies and migrates.
# With --no-resume the same cut fails the migration and the guest runs on
# at the source.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
if ! command -v ss >/dev/null; then
	skip_all "ss (iproute2) absent: it is what cuts the connection"
fi
echo "1..35"
make_certs; ok $? "certificates"
start_agent b "$T/hostB"
PB=$PORT
# 48 MiB written before the migration starts, then 2 MB/s until asked to
# finish (after the migration, wherever it runs): the first pass takes ~4 s
# at 12 MB/s, so a cut lands inside it, and the guest outlives every
# migration whatever the machine's speed.
MEM="ws=48M prefill=1 rate=2 content=random until=finish"
RATE=12M

# after_pages NAME N: waits (<= 20 s) until NAME's progress reports N pages sent.
after_pages() {
	for i in $(seq 400); do
		p=$(grep '"phase":"precopy"' "$T/$1.send" 2>/dev/null | tail -n 1 | sed -n 's/.*"pages_sent":\([0-9]*\).*/\1/p')
		[ -n "$p" ] && [ "$p" -ge "$2" ] && return 0
		sleep 0.05
	done
	return 1
}
# cut PORT: aborts every TCP socket of this namespace connected to PORT.
cut() { ss -K dst 127.0.0.1 dport = :"$1" >/dev/null 2>&1; }
# digest_ok RUNDIR NAME [REPORT]: asks NAME to finish under RUNDIR and
# checks its digest (in REPORT, default its result there) against an
# unmigrated run of the ops it did; GOT and REF for the message.
digest_ok() {
	f=${3:-$1/$2.result.json}
	finish_vm "$1" "$2"
	if [ -z "$3" ]; then wait_result "$1" "$2"; else wait $VPID; fi
	GOT=$(field "$f" digest) REF=$(reference_of memstress "$MEM" "$f")
	[ -n "$REF" ] && [ "$GOT" = "$REF" ]
}
# cut_mid NAME MODE [send options]: boots NAME, sends it at $RATE, cuts the
# connection to agent B once 4000 pages went (one TAP line), waits for
# send: its exit code in RC, the report's reconnects in REC.
cut_mid() {
	name=$1 mode=$2
	shift 2
	start_vm "$T/hostA" "$name" memstress "$mode" $MEM
	send_vm "$T/hostA" "$name" "$PB" --max-bandwidth $RATE "$@" &
	spid=$!
	after_pages "$name" 4000; ok $? "$name: pre-copy under way (4000 pages sent)"
	cut "$PB"
	wait $spid
	RC=$?
	REC=$(field "$T/$name.send" reconnects)
}

# 1. Uncut: the baseline for bytes on the wire.
start_vm "$T/hostA" base memstress ring $MEM
send_vm "$T/hostA" base "$PB" --max-bandwidth $RATE
rc=$?
base_wire=$(field "$T/base.send" bytes_on_wire)
[ $rc = 0 ] && [ "$(field "$T/base.send" reconnects)" = 0 ]
ok $? "uncut migration: exit $rc, $base_wire bytes on the wire, no reconnects"
digest_ok "$T/hostB" base; ok $? "uncut: destination digest $GOT = unmigrated $REF"

# 2. The source's socket aborted mid pre-copy (ring).
cut_mid cutr ring
wire=$(field "$T/cutr.send" bytes_on_wire)
[ $RC = 0 ] && [ "${REC:-0}" -ge 1 ]
ok $? "cutr: socket aborted mid pre-copy, migration completed (exit $RC, $REC reconnect(s), $(field "$T/cutr.send" pages_resent) pages resent, link down $(field "$T/cutr.send" link_down_ms) ms)"
grep -q '"phase":"link_lost"' "$T/cutr.send" && grep -q '"phase":"resumed".*"reconnects":1' "$T/cutr.send"
ok $? "cutr: the progress events report the lost link and the reconnect"
digest_ok "$T/hostB" cutr; ok $? "cutr: destination digest $GOT = unmigrated $REF"
awk -v w="$wire" -v b="$base_wire" 'BEGIN { exit !(w > 0 && b > 0 && w < 1.5 * b) }'
ok $? "cutr: $wire bytes on the wire, $(awk -v w="$wire" -v b="$base_wire" 'BEGIN { printf "%.3f", w / b }')x the uncut run (< 1.5x)"
grep -q "waiting up to .* for it to resume" "$T/b.log"; ok $? "cutr: the destination kept the session for the resume"

# 3. Bitmap, two streams: the cut hits connection 0; the source ends the
# other itself and both come back.
cut_mid cutb bitmap --streams 2
[ $RC = 0 ] && [ "${REC:-0}" -ge 1 ] && [ "$(field "$T/cutb.send" streams)" = 2 ]
ok $? "cutb: bitmap, 2 streams, cut mid pre-copy: completed (exit $RC, $REC reconnect(s), $(field "$T/cutb.send" pages_resent) pages resent)"
digest_ok "$T/hostB" cutb; ok $? "cutb: destination digest $GOT = unmigrated $REF"
awk -v w="$(field "$T/cutb.send" bytes_on_wire)" -v b="$base_wire" 'BEGIN { exit !(w < 1.5 * b) }'
ok $? "cutb: $(field "$T/cutb.send" bytes_on_wire) bytes on the wire (< 1.5x uncut)"

# 3b. Cuts inside the switchover, placed by the record-aware relay
# (plaintext, so it can read the records): a second agent, --insecure.
start_agent p "$T/hostP" --insecure
PP=$PORT
# switch_cut NAME AT ACTION: migrates NAME with --verify through the relay
# acting at AT; RC, REC as cut_mid.
switch_cut() {
	rm -f "$T/$1.rport"
	"${TOP_BUILDDIR:-.}/tests/relay" --target "$PP" --port-file "$T/$1.rport" --at "$2" --action "$3" \
		--max-seconds 60 >"$T/$1.relay" 2>&1 &
	for i in $(seq 100); do [ -s "$T/$1.rport" ] && break; sleep 0.05; done
	start_vm "$T/hostA" "$1" memstress ring $MEM
	PML_MIGRATE_RUNDIR="$T/hostA" timeout 300 "$PM" send "$1" "127.0.0.1:$(cat "$T/$1.rport")" --insecure --json \
		--verify >"$T/$1.send" 2>"$T/$1.send.err"
	RC=$?
	REC=$(field "$T/$1.send" reconnects)
}
for c in "vcut s2d:VERIFY cut" "scut s2d:STATE_DONE cut-after" "dcut s2d:STATE_DONE cut"; do
	set -- $c
	switch_cut "$1" "$2" "$3"
	[ $RC = 0 ] && [ "${REC:-0}" -ge 1 ] && [ "$(field "$T/$1.send" verified_chunks)" -gt 0 ] &&
		grep -q "^$3 at" "$T/$1.relay"
	ok $? "$1: $3 at $2 during a --verify switchover: resumed, verified and migrated (exit $RC, $REC reconnect(s))"
	digest_ok "$T/hostP" "$1"; ok $? "$1: destination digest $GOT = unmigrated $REF"
	wait $VPID
	[ "$(field "$T/$1.src.json" result)" = migrated ]; ok $? "$1: the source process ended 'migrated'"
done
grep -q "back to receiving memory" "$T/p.log"; ok $? "scut: the destination went back from its switchover to receiving"

# 4. --no-resume: the same cut fails, the guest keeps running here.
cut_mid nore ring --no-resume
[ $RC = 1 ]; ok $? "nore: --no-resume and the cut: exit $RC ($(field "$T/nore.send" error))"
PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl nore status | grep -q '"state":"running"'
ok $? "nore: the guest still runs on the source"
digest_ok "$T/hostA" nore "$T/nore.src.json"; ok $? "nore: and finishes there with the unmigrated digest ($GOT = $REF)"

# 5. A partition: the destination's end of a veth pair between two
# namespaces goes down for 4 s.
NSS=pmr$$s NSD=pmr$$d SUB=$((200 + $$ % 50))
ns_cleanup() {
	ip netns pids $NSS 2>/dev/null | xargs -r kill 2>/dev/null
	ip netns pids $NSD 2>/dev/null | xargs -r kill 2>/dev/null
	ip netns del $NSS 2>/dev/null
	ip netns del $NSD 2>/dev/null
}
trap 'ns_cleanup; cleanup' EXIT
if [ "$(id -u)" != 0 ] || ! ip netns add $NSS 2>/dev/null || ! ip netns add $NSD 2>/dev/null; then
	for i in $(seq 8); do echo "ok $((n + i)) # SKIP the partition needs root and ip netns"; done
	exit $fail
fi
ip link add ${NSS}v type veth peer name ${NSD}v && ip link set ${NSS}v netns $NSS && ip link set ${NSD}v netns $NSD &&
	ip -n $NSS addr add 10.253.$SUB.1/30 dev ${NSS}v && ip -n $NSD addr add 10.253.$SUB.2/30 dev ${NSD}v &&
	ip -n $NSS link set lo up && ip -n $NSD link set lo up && ip -n $NSS link set ${NSS}v up &&
	ip -n $NSD link set ${NSD}v up
ok $? "two namespaces joined by a veth pair (10.253.$SUB.1 - .2)"
mkdir -p "$T/hostD" "$T/hostS"
ip netns exec $NSD timeout 300 "$PM" recv --listen 10.253.$SUB.2:0 --certs "$C" --node agent --allow sender \
	--run-dir "$T/hostD" --port-file "$T/d.port" 2>"$T/d.log" &
for i in $(seq 100); do [ -s "$T/d.port" ] && break; sleep 0.05; done
PD=$(cat "$T/d.port")
PML_MIGRATE_RUNDIR="$T/hostS" ip netns exec $NSS timeout 300 "$PM" run "$G/memstress.elf" --mem 512M --name part \
	-- $MEM >/dev/null 2>&1 &
for i in $(seq 100); do [ -S "$T/hostS/part.sock" ] && break; sleep 0.05; done
PML_MIGRATE_RUNDIR="$T/hostS" timeout 300 "$PM" send part 10.253.$SUB.2:$PD --certs "$C" --node sender --peer agent \
	--json --max-bandwidth $RATE --link-timeout 2 >"$T/part.send" 2>"$T/part.send.err" &
spid=$!
after_pages part 4000
ip -n $NSD link set ${NSD}v down
sleep 4
ip -n $NSD link set ${NSD}v up
wait $spid
rc=$?
rec=$(field "$T/part.send" reconnects)
[ $rc = 0 ] && [ "${rec:-0}" -ge 1 ]
ok $? "part: link down 4 s mid pre-copy: completed (exit $rc, $rec reconnect(s), link down $(field "$T/part.send" link_down_ms) ms)"
grep -q '"phase":"link_lost".*nothing from the destination' "$T/part.send"
ok $? "part: the silence was noticed by --link-timeout ($(grep -o '"reason":"[^"]*"' "$T/part.send" | head -n 1))"
digest_ok "$T/hostD" part; ok $? "part: destination digest $GOT = unmigrated $REF"
awk -v w="$(field "$T/part.send" bytes_on_wire)" -v b="$base_wire" 'BEGIN { exit !(w < 1.5 * b) }'
ok $? "part: $(field "$T/part.send" bytes_on_wire) bytes on the wire (< 1.5x uncut)"

# 6. The source's own end goes down for good: every reconnection fails at
# once (no route), and --max-time ends the migration in the middle of
# them; the guest runs on at the source.
PML_MIGRATE_RUNDIR="$T/hostS" ip netns exec $NSS timeout 300 "$PM" run "$G/memstress.elf" --mem 512M --name gone \
	--json -- $MEM >"$T/gone.src.json" 2>/dev/null &
gpid=$!
for i in $(seq 100); do [ -S "$T/hostS/gone.sock" ] && break; sleep 0.05; done
PML_MIGRATE_RUNDIR="$T/hostS" timeout 300 "$PM" send gone 10.253.$SUB.2:$PD --certs "$C" --node sender --peer agent \
	--json --max-bandwidth $RATE --link-timeout 1 --max-time 8 >"$T/gone.send" 2>"$T/gone.send.err" &
spid=$!
after_pages gone 4000
ip -n $NSS link set ${NSS}v down
wait $spid
rc=$?
[ $rc = 1 ] && grep -q '"phase":"link_lost"' "$T/gone.send" && grep -q "max-time" "$T/gone.send"
ok $? "gone: no route back: --max-time ends the reconnecting migration (exit $rc: $(field "$T/gone.send" error))"
PML_MIGRATE_RUNDIR="$T/hostS" "$PM" ctl gone status | grep -q '"state":"running"'
ok $? "gone: the VM process is alive and its guest runs at the source"
VPID=$gpid
digest_ok "$T/hostS" gone "$T/gone.src.json"; ok $? "gone: and finishes there with the unmigrated digest ($GOT = $REF)"
exit $fail
