#!/bin/bash
# The source's state machine, record by record: a fake destination
# (tests/peer phase) takes a real source into each phase it can reach
# (awaiting HELLO, awaiting JOIN, pre-copy, awaiting READY, committed) and
# sends one valid record of each type a destination could send. The source
# takes exactly what the table in migrate/source-conn.c says (HELLO;
# JOIN and ACK with resume agreed; a round's answer; READY, then COMMIT;
# RUNNING) and fails on anything else with the record and its phase named,
# keeping its guest unless it had committed; an ERROR ends every phase.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
PEER=${TOP_BUILDDIR:-.}/tests/peer
PHASES="hello join precopy state committed"
TYPES="HELLO SHAPE JOIN PAGES ROUND_END STATE_DONE READY COMMIT RUNNING RESUME ACK ERROR"
echo "1..$(($(wc -w <<<"$PHASES") * $(wc -w <<<"$TYPES")))"
declare -A NAME=([hello]="waiting for the destination's HELLO" [join]="waiting for the destination's JOIN"
	[precopy]="pre-copy" [state]="waiting for READY" [committed]="committed")
declare -A TAKES=([hello]=" HELLO " [join]=" JOIN ACK " [precopy]=" ROUND_END " [state]=" ROUND_END READY "
	[committed]=" RUNNING ")
k=0
for ph in $PHASES; do
	for ty in $TYPES; do
		k=$((k + 1))
		vm=p$k
		rm -f "$T/fake.port"
		timeout 60 "$PEER" phase "$T/fake.port" "$ph" "$ty" >"$T/fake.out" 2>&1 &
		fpid=$!
		for i in $(seq 100); do [ -s "$T/fake.port" ] && break; sleep 0.02; done
		start_vm "$T/hostA" $vm memstress ring ws=4M rate=1 ops=2000 content=text
		PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" send $vm "127.0.0.1:$(cat "$T/fake.port")" --insecure \
			--json >"$T/$vm.send" 2>&1
		rc=$?
		wait $fpid
		peer=$(cat "$T/fake.out")
		err=$(field "$T/$vm.send" error)
		if [ "$ty" = ERROR ]; then
			grep -q "destination: the fake destination gives up" "$T/$vm.send"
			ok $? "$ph: an ERROR from the destination ends the migration (exit $rc: $err)"
		elif [[ "${TAKES[$ph]}" == *" $ty "* ]]; then
			case $ph/$ty in
			state/READY) want=commit ;;
			*) want=alive ;;
			esac
			[ "$peer" = "$want" ] && ! grep -q "unexpected or malformed" "$T/$vm.send" &&
				{ [ $ph/$ty != committed/RUNNING ] || [ $rc = 0 ]; }
			ok $? "$ph takes $ty: the source goes on ($peer; exit $rc${err:+: $err})"
		else
			exp=1
			[ $ph = committed ] && exp=3
			grep -qF "unexpected or malformed $ty record from the destination (connection 0, ${NAME[$ph]})" "$T/$vm.send" &&
				[ $rc = $exp ] && [ "$peer" != commit ]
			ok $? "$ph refuses $ty (exit $rc, peer: $peer): $err"
		fi
		PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl $vm stop >/dev/null 2>&1
		wait $VPID 2>/dev/null
	done
done
exit $fail
