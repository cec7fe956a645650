#!/bin/sh
# The destination answers READY however its decode threads and its event
# loop interleave. A decode thread that finished a record wakes the loop,
# which asks whether every page STATE_DONE announced is applied; the
# thread used to clear its "busy" mark only after that wake-up, so a loop
# quick enough to look in between saw a busy lane, and with no wake-up to
# follow it never sent READY: the source gave up after 30 s (seen in CI
# under Xen's emulated dom0). tests/slow-wake.so (LD_PRELOAD into the
# agent) makes every decode thread pause for 3 ms right after its
# wake-up, so the loop always looks in between; migrations with one and
# two streams, several rounds each, must still complete.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
SO=${TOP_BUILDDIR:-.}/tests/slow-wake.so
[ -r "$SO" ] || skip_all "tests/slow-wake.so not built"
echo "1..6"
make_certs
LD_PRELOAD=$(cd "$(dirname "$SO")" && pwd)/slow-wake.so start_agent b "$T/hostB"
PB=$PORT

# Runs until asked to finish: it outlives the migration, however long the
# slowed destination makes it.
ARGS="seed=21 ws=16M prefill=1 rate=24 content=text until=finish"
for streams in 1 2; do
	vm=wake$streams
	start_vm "$T/hostA" $vm memstress ring $ARGS
	sleep 0.5
	# A small downtime target keeps it in pre-copy for a few rounds.
	send_vm "$T/hostA" $vm "$PB" --streams $streams --downtime 5
	rc=$?
	[ $rc = 0 ] && [ "$(field "$T/$vm.send" result)" = migrated ]
	ok $? "$streams stream(s), decode threads slow after each wake-up: migrated (exit $rc, $(field "$T/$vm.send" rounds) rounds, ready_wait $(field "$T/$vm.send" ready_wait_ms) ms) $(field "$T/$vm.send" error)"
	[ "$(field "$T/$vm.send" rounds)" -ge 2 ] 2>/dev/null
	ok $? "$streams stream(s): more than one round ($(field "$T/$vm.send" rounds))"
	finish_vm "$T/hostB" $vm || finish_vm "$T/hostA" $vm
	wait $VPID
	wait_result "$T/hostB" $vm
	ref=$(reference_of memstress "$ARGS" "$T/hostB/$vm.result.json")
	d=$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/hostB/$vm.result.json" 2>/dev/null)
	[ -n "$ref" ] && [ "$d" = "$ref" ]
	ok $? "$streams stream(s): the guest finished over there with the unmigrated digest ($d = $ref)"
done
exit $fail
