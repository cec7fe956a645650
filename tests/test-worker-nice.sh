#!/bin/bash
# A migration's worker threads yield to the guest (PML_MIGRATE_WORKER_NICE,
# default 10): during a migration the source's pre-copy engine and page
# encoders and the destination's TLS decryption and page decoders run at
# nice 10 while the vCPU threads stay at 0; the guest that arrives runs
# its vCPUs at 0 (not inheriting a worker's priority); 0 leaves the
# workers at the guest's priority. Why: on a host with fewer free cores
# than threads, a worker sharing a core with a vCPU otherwise takes whole
# scheduler slices from it (bench/RESULTS.md).
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..6"
make_certs
start_agent b "$T/hostB"
PB=$PORT

# nices PID...: "comm=nice" for every thread of the processes and their
# descendants, sorted.
nices() {
	local p c
	for p in "$@"; do
		for c in /proc/$p/task/*; do
			[ -r "$c/stat" ] && awk -v n="$(cat "$c/comm" 2>/dev/null)" '{ sub(/.*\) /, ""); print n "=" $17 }' "$c/stat" 2>/dev/null
		done
		nices $(pgrep -P "$p")
	done | sort -u
}

# sample ROUNDS PID...: thread nices seen while a migration runs.
sample() {
	local n=$1 i
	shift
	for i in $(seq "$n"); do nices "$@"; sleep 0.1; done | sort -u
}

MEM="ws=16M prefill=1 rate=1 ops=20000 content=random"
start_vm "$T/hostA" nice1 memstress ring $MEM
src=$(pgrep -P "$VPID")
send_vm "$T/hostA" nice1 "$PB" --max-bandwidth 4M &
spid=$!
sleep 0.5
sample 10 "$src" "$APID" >"$T/during"
wait $spid
rc=$?
during=$(tr '\n' ' ' <"$T/during")
[ $rc = 0 ]; ok $? "migrated (send exit $rc)"
grep -qx 'precopy=10' "$T/during" && grep -qx 'encode0=10' "$T/during" && ! grep -q '^precopy=0\|^encode0=0' "$T/during"
ok $? "source: pre-copy engine and encoder at nice 10 ($during)"
grep -qx 'vcpu0=0' "$T/during" && ! grep -q '^vcpu0=[1-9]' "$T/during"
ok $? "source: the guest's vCPU stays at 0"
grep -qx 'decode0=10' "$T/during" && grep -qx 'tls-rx=10' "$T/during"
ok $? "destination: TLS decryption and the page decoder at nice 10"
# The guest now runs in the agent's session process.
after=$(nices "$APID" | grep '^vcpu' | tr '\n' ' ')
[ -n "$after" ] && ! grep -q 'vcpu[0-9]*=[1-9]' <<<"$after"
ok $? "destination: the arrived guest's vCPUs run at 0 ($after)"
PML_MIGRATE_RUNDIR="$T/hostB" "$PM" ctl nice1 stop >/dev/null 2>&1

PML_MIGRATE_WORKER_NICE=0 start_vm "$T/hostA" nice2 memstress ring $MEM
src=$(pgrep -P "$VPID")
send_vm "$T/hostA" nice2 "$PB" --max-bandwidth 4M &
spid=$!
sleep 0.5
sample 5 "$src" >"$T/during0"
wait $spid
grep -qx 'encode0=0' "$T/during0" && grep -qx 'precopy=0' "$T/during0"
ok $? "PML_MIGRATE_WORKER_NICE=0: the source's workers at the guest's priority ($(tr '\n' ' ' <"$T/during0"))"
PML_MIGRATE_RUNDIR="$T/hostB" "$PM" ctl nice2 stop >/dev/null 2>&1
exit $fail
