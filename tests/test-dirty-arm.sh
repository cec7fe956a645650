#!/bin/sh
# The dirty log is armed only while a migration uses it (issue 11): a
# guest writing flat out under `run --dirty-log ring|bitmap` has no log
# armed and no harvests at rest; a migration arms it; a cancelled
# migration disarms it again (on KVM the ring's leftover entries are
# drained), and the next migration re-arms it and moves the guest with
# the digest of an unmigrated run (to the same agent: the cancel told
# it, so it let the name go). `run --harvest-ms` keeps the log armed
# from boot, as before. (Speed with the log disarmed against
# --dirty-log off is a benchmark: bench/RESULTS.md.)
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
echo "1..17"
make_certs; ok $? "certificates"
start_agent b "$T/hostB"
PB=$PORT

# stat NAME KEY: one field of NAME's `ctl stats` answer.
stat() { PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl "$1" stats 2>/dev/null | sed -n "s/.*\"$2\":\([a-z0-9.]*\).*/\1/p"; }

# 32 MiB rewritten at 8 MB/s until asked to finish, wherever it runs.
MEM="ws=32M rate=8 content=random until=finish"
for mode in ring bitmap; do
	vm="arm-$mode"
	start_vm "$T/hostA" "$vm" memstress $mode $MEM
	sleep 0.5
	[ "$(stat $vm dirty_log_armed)" = false ] && [ -z "$(stat $vm harvests)" ]
	ok $? "$vm: at rest the $mode log is not armed and never harvested ($(PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl $vm stats 2>&1))"
	# A migration slowed to 2 MB/s, cancelled in its first pass.
	send_vm "$T/hostA" "$vm" "$PB" --max-bandwidth 2M &
	spid=$!
	armed=""
	for i in $(seq 100); do
		armed=$(stat $vm dirty_log_armed)
		[ "$armed" = true ] && break
		sleep 0.05
	done
	[ "$armed" = true ]; ok $? "$vm: the migration armed the log"
	sleep 0.5
	PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl "$vm" cancel >/dev/null 2>&1
	wait $spid
	rc=$?
	[ $rc = 1 ] && [ "$(stat $vm dirty_log_armed)" = false ]
	ok $? "$vm: cancelled (send exit $rc) and the log is disarmed again: $(tail -n 1 "$T/$vm.send.err")"
	# The cancel told the destination (an ERROR record), so B's session
	# of the cancelled attempt ends at once and lets the name go.
	for i in $(seq 50); do [ -S "$T/hostB/$vm.sock" ] || break; sleep 0.1; done
	send_vm "$T/hostA" "$vm" "$PB"
	rc=$?
	finish_vm "$T/hostB" "$vm" || finish_vm "$T/hostA" "$vm"
	wait_result "$T/hostB" "$vm"
	got=$(field "$T/hostB/$vm.result.json" digest)
	ref=$(reference_of memstress "$MEM" "$T/hostB/$vm.result.json")
	[ $rc = 0 ] && [ "$(field "$T/$vm.send" harvests)" -gt 0 ]
	ok $? "$vm: the next migration, to the same agent, re-armed it and migrated (exit $rc, $(field "$T/$vm.send" harvests) harvests) $(field "$T/$vm.send" error)"
	[ -n "$ref" ] && [ "$got" = "$ref" ]
	ok $? "$vm: destination digest $got = unmigrated $ref"
	[ "$(field "$T/hostB/$vm.result.json" harvests)" = 0 ]
	ok $? "$vm: the destination runs it with the log disarmed"
	wait $VPID
	[ "$(field "$T/$vm.src.json" result)" = migrated ]
	ok $? "$vm: source process ended with result 'migrated'"
done

# --harvest-ms: armed from boot and harvested while the guest runs.
PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" run "$G/memstress.elf" --mem 512M --name rest --harvest-ms 5 \
	--json -- ws=8M rate=8 until=finish >"$T/rest.json" 2>/dev/null &
rpid=$!
for i in $(seq 100); do [ -S "$T/hostA/rest.sock" ] && break; sleep 0.05; done
sleep 0.3
[ "$(stat rest dirty_log_armed)" = true ]; ok $? "--harvest-ms: the log is armed at rest"
finish_vm "$T/hostA" rest
wait $rpid
rc=$?
u=$(field "$T/rest.json" unique_pages_dirtied) o=$(field "$T/rest.json" ops)
# N uniform writes into 2048 pages touch 2048 (1 - (1 - 1/2048)^N) of them;
# the guest's own stack and data pages add a few.
[ $rc = 0 ] && [ "$(field "$T/rest.json" harvests)" -gt 10 ] &&
	awk -v u="${u:-0}" -v o="${o:-0}" 'BEGIN { e = 2048 * (1 - exp(o * log(1 - 1 / 2048))); exit !(o > 0 && u >= 0.8 * e && u <= e * 1.1 + 256) }'
ok $? "--harvest-ms: $(field "$T/rest.json" harvests) harvests saw $u distinct pages ($o random writes into an 8 MiB working set of 2048 pages touch about $(awk -v o="${o:-0}" 'BEGIN { printf "%.0f", 2048 * (1 - exp(o * log(1 - 1 / 2048))) }'))"
exit $fail
