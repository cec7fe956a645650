#!/bin/sh
# End to end over TLS on loopback: each workload migrated mid-run with
# the ring and with the bitmap finishes on the destination with the digest
# of an unmigrated run; --verify proves the destination's memory equals
# the source's at switchover; the guest's TSC never goes backwards and its
# stall covers the downtime; A -> B -> A; two migrations into one agent at
# once.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
echo "1..42"
make_certs; ok $? "certificates for agent and sender"
start_agent b "$T/hostB"
[ -n "$PORT" ]; ok $? "agent B listening on 127.0.0.1:$PORT"
PB=$PORT

# Every guest runs until asked to finish (where it runs by then), so each
# migration starts and ends while it works, whatever the machine's speed;
# its digest is checked against an unmigrated run of exactly its ops.
IDLE="until=finish period_us=10000"
MEM="ws=48M rate=48 content=text until=finish"
KV="until=finish"
for w in idle memstress kvstore; do
	# The guest provably did not run from the moment every vCPU was out
	# (pause returned) until COMMIT left: downtime_min_ms. (downtime_ms
	# runs to RUNNING's arrival, a loop turn after the guest resumed, so
	# it is an upper bound.) tol: a guest asleep on purpose when paused
	# (idle between ops, memstress between rate-limited batches) does not
	# count the overlap with its planned sleep.
	case $w in
	idle) a=$IDLE tol=10000 ;;        # period_us=10000
	memstress) a=$MEM tol=1500 ;;     # 16-page batches at 48 MB/s: 1.4 ms
	kvstore) a=$KV tol=0 ;;           # never sleeps
	esac
	for mode in ring bitmap; do
		vm="$w-$mode"
		start_vm "$T/hostA" "$vm" $w $mode $a
		sleep 0.4
		send_vm "$T/hostA" "$vm" "$PB" --verify
		rc=$?
		finish_vm "$T/hostB" "$vm" || finish_vm "$T/hostA" "$vm"
		wait_result "$T/hostB" "$vm"
		got=$(field "$T/hostB/$vm.result.json" digest)
		ref=$(reference_of $w "$a" "$T/hostB/$vm.result.json")
		down=$(field "$T/$vm.send" downtime_ms)
		dmin=$(field "$T/$vm.send" downtime_min_ms)
		[ $rc = 0 ] && [ "$(field "$T/$vm.send" tls)" = true ] && [ "$(field "$T/$vm.send" verified_chunks)" -gt 0 ]
		ok $? "$vm: migrated over TLS with --verify (exit $rc, downtime $down ms, $(field "$T/$vm.send" rounds) rounds) $(field "$T/$vm.send" error)"
		[ -n "$ref" ] && [ "$got" = "$ref" ]
		ok $? "$vm: destination digest $got = unmigrated $ref"
		[ "$(field "$T/hostB/$vm.result.json" tsc_backwards)" = 0 ]
		ok $? "$vm: guest TSC never went backwards"
		stall=$(field "$T/hostB/$vm.result.json" max_stall_us)
		awk -v s="$stall" -v d="$dmin" -v t=$tol 'BEGIN { exit !(s + t >= d * 1000) }'
		ok $? "$vm: guest-observed stall $stall us >= downtime $dmin..$down ms (lower bound, less $tol us)"
		wait $VPID
		[ "$(field "$T/$vm.src.json" result)" = migrated ]
		ok $? "$vm: source process ended with result 'migrated'"
	done
done

# A -> B -> A: the VM that arrived on B is migrated onward, back to A.
start_agent a "$T/hostA"
PA=$PORT
start_vm "$T/hostA" pingpong kvstore ring $KV
sleep 0.3
send_vm "$T/hostA" pingpong "$PB"
ok $? "A -> B: $(field "$T/pingpong.send" result)"
wait $VPID
for i in $(seq 100); do
	PML_MIGRATE_RUNDIR="$T/hostB" "$PM" ctl pingpong status 2>/dev/null | grep -q '"state":"running"' && break
	sleep 0.05
done
PML_MIGRATE_RUNDIR="$T/hostB" "$PM" list >"$T/listB"
grep -q '^pingpong .*running' "$T/listB"
ok $? "list on B shows the arrived VM running"
send_vm "$T/hostB" pingpong "$PA"
ok $? "B -> A: $(field "$T/pingpong.send" result)"
finish_vm "$T/hostA" pingpong || finish_vm "$T/hostB" pingpong
wait_result "$T/hostA" pingpong
kvref=$(reference_of kvstore "$KV" "$T/hostA/pingpong.result.json")
[ -n "$kvref" ] && [ "$(field "$T/hostA/pingpong.result.json" digest)" = "$kvref" ]
ok $? "A -> B -> A: digest $(field "$T/hostA/pingpong.result.json" digest) = unmigrated $kvref"
[ "$(field "$T/hostB/pingpong.result.json" result)" = migrated ]
ok $? "B's copy ended as 'migrated'"

# Two migrations into one agent at the same time.
start_vm "$T/hostA" twin1 kvstore ring $KV
p1=$VPID
start_vm "$T/hostA" twin2 kvstore bitmap $KV
p2=$VPID
sleep 0.3
send_vm "$T/hostA" twin1 "$PB" & s1=$!
send_vm "$T/hostA" twin2 "$PB" --streams 2 & s2=$!
wait $s1; r1=$?
wait $s2; r2=$?
[ $r1 = 0 ] && [ $r2 = 0 ]
ok $? "two concurrent migrations into agent B (exit $r1, $r2; second with 2 streams) $(field "$T/twin1.send" error) $(field "$T/twin2.send" error) $(tail -n 1 "$T/twin1.send.err") $(tail -n 1 "$T/twin2.send.err")"
for t in twin1 twin2; do finish_vm "$T/hostB" $t || finish_vm "$T/hostA" $t; done
wait_result "$T/hostB" twin1 && wait_result "$T/hostB" twin2
k1=$(reference_of kvstore "$KV" "$T/hostB/twin1.result.json") k2=$(reference_of kvstore "$KV" "$T/hostB/twin2.result.json")
[ -n "$k1" ] && [ "$(field "$T/hostB/twin1.result.json" digest)" = "$k1" ] &&
	[ -n "$k2" ] && [ "$(field "$T/hostB/twin2.result.json" digest)" = "$k2" ]
ok $? "both finished on B with the unmigrated digest"
[ "$(field "$T/twin2.send" streams)" = 2 ]; ok $? "the second used 2 connections"
# Each connection carries its share of every round, and its own ROUND_END:
# the destination answers a round once both shares are applied.
re=$(sed -n 's/.*twin2.*"rounds":\([0-9]*\).*"round_ends":\([0-9]*\).*/\1 \2/p' "$T/b.log" | tail -n 1)
[ -n "$re" ] && [ "${re#* }" = $((2 * ${re% *})) ]
ok $? "ROUND_END on both connections of the second: rounds and ROUND_ENDs received: ${re:-none logged}"
wait $p1 $p2
kill -0 $APID 2>/dev/null; ok $? "agent A still serving"
exit $fail
