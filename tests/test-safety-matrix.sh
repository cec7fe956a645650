#!/bin/bash
# The safety matrix (issue 9): every promise of the README's Safety
# section broken on purpose. A record-aware relay (tests/relay.c) sits
# between send and the agent (plaintext, --insecure on both sides, so the
# records are readable) and cuts or stalls the link at each step of the
# commit handshake: in pre-copy, while the paused source sends its vCPU
# state, at STATE_DONE, at READY (dropped or delivered), at COMMIT (dropped
# or delivered), at RUNNING (dropped or delivered), for both dirty logs;
# and it loses single records on a link that stays up (READY, COMMIT,
# RUNNING). Each cell asserts the invariant, not one exit code, so an
# engine that later does better (say, reconnects after a cut and migrates,
# or resumes when the destination says it never saw COMMIT) still passes:
#   exit 0: the guest runs on the destination and finishes there with the
#           reference digest; the source process ended 'migrated'.
#   exit 1: the guest still runs on the source and finishes there with the
#           reference digest; the destination's session failed, or holds
#           the VM paused in doubt (READY sent, no COMMIT heard: the
#           source's ABORT cannot reach it through this one-connection
#           relay); no copy ever ran there.
#   exit 3: the source copy is paused (indeterminate), refuses resume and
#           never runs again (its RESOLVE cannot pass the relay either);
#           the destination runs the guest (and it finishes with the
#           reference digest), failed, or holds it in doubt: never both.
# And every cell ends in bounded time: send within --max-time, the wait
# for RUNNING after COMMIT included (plus slack); the destination's
# session runs or fails within its --timeout. Cells overlap: one migration
# at a time, while earlier cells wait on their deadlines and guests.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
RELAY=${TOP_BUILDDIR:-.}/tests/relay

# ~2 s of pre-copy (64 MiB written before the send starts, a 48 MB/s link,
# 16 MB/s dirtied), then ~4 s of guest work left after switchover: slack
# for a slow machine, where the guest must still be running when the
# relay's record comes by.
MEM="ws=64M rate=16 ops=24576 content=random prefill=1"
SEND="--max-bandwidth 48M"
MAXT=15   # --max-time: bounds every cell before COMMIT
GUEST_S=7 # the guest's whole work: a source copy that had resumed would have finished within this

# ACTION:DIRECTION:RECORD[:N] (tests/relay.c). The ones that wait on a
# deadline (--max-time, the wait for RUNNING) first, so they overlap the rest.
CELLS="stall:s2d:COMMIT stall:d2s:RUNNING drop:d2s:RUNNING stall:s2d:PAGES:20 stall:s2d:STATE_DONE stall:d2s:READY
	cut:s2d:PAGES:20 cut:s2d:VCPU cut:s2d:STATE_DONE cut:d2s:READY cut-after:d2s:READY drop:d2s:READY
	cut:s2d:COMMIT cut-after:s2d:COMMIT drop:s2d:COMMIT cut:d2s:RUNNING cut-after:d2s:RUNNING"
MODES="ring bitmap"
ncells=$(($(echo $CELLS | wc -w) * 2))
echo "1..$((2 + ncells * 4))"

mkdir -p "$T/cells"
: >"$T/pids"
matrix_cleanup() {
	for p in $(cat "$T/pids" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
	cleanup
}
trap matrix_cleanup EXIT

start_agent b "$T/hostB" --insecure --timeout 3 --max-sessions 32
PB=$PORT
ref=$(reference memstress $MEM)
[ -n "$PB" ] && [ -n "$ref" ]; ok $? "agent listening on 127.0.0.1:$PB (--insecure --timeout 3); reference digest $ref"
[ -x "$RELAY" ]; ok $? "relay built ($RELAY)"

src_state() { PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl "$1" status 2>/dev/null | sed -n 's/.*"state":"\([a-z]*\)".*/\1/p'; }
# dest_fate NAME SECONDS: what the agent says of NAME's session: running,
# failed, or none within SECONDS.
dest_fate() {
	for i in $(seq $(($2 * 20))); do
		grep -q "'$1' is running here" "$T/b.log" && { echo running; return; }
		grep -q "migration of '$1' failed" "$T/b.log" && { echo failed; return; }
		grep -q "migration of '$1' in doubt" "$T/b.log" && { echo in-doubt; return; }
		sleep 0.05
	done
	echo none
}
# A stalled relay stays stalled until the destination's fate is known, so
# the destination has to notice the stall by its own deadline.
stop_relay() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
dest_why() { sed -n "s/.*migration of '$1' \(failed\|in doubt\): //p" "$T/b.log" | head -n 1; }
# never_ran NAME: the destination holds NAME paused in doubt (READY, no
# COMMIT heard) and it never ran there: the source's word cannot reach it
# through this one-connection relay, so it waits for an operator.
never_ran() {
	[ ! -e "$T/hostB/$1.result.json" ] &&
		PML_MIGRATE_RUNDIR="$T/hostB" "$PM" ctl "$1" status 2>/dev/null | grep -q '"state":"in-doubt"'
}

# cell TAG MODE ACTION AT: one migration through a relay that does ACTION
# at AT; its assertions go to $T/cells/TAG (one "STATUS DESCRIPTION" line
# each, then "# outcome"), and $T/cells/TAG.done when it is over.
cell() {
	local tag=$1 mode=$2 action=$3 at=$4
	local out="$T/cells/$tag" rport="$T/$tag.rport"
	put() { echo "$1 $tag: $2" >>"$out"; }
	: >"$out"
	timeout 100 "$RELAY" --target "$PB" --port-file "$rport" --at "$at" --action "$action" --max-seconds 90 \
		>"$T/$tag.relay" 2>&1 &
	local rpid=$!
	echo $rpid >>"$T/pids"
	for i in $(seq 100); do [ -s "$rport" ] && break; sleep 0.05; done
	start_vm "$T/hostA" "$tag" memstress "$mode" $MEM
	local vpid=$VPID
	echo $vpid >>"$T/pids"
	sleep 0.3
	local t0=$(date +%s%N)
	# A stall in pre-copy lasts until --max-time while the guest runs on:
	# a shorter one there, so that usually it still runs when it is hit.
	local mt=$MAXT
	case $action:$at in stall:s2d:PAGES*) mt=4 ;; esac
	PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" send "$tag" "127.0.0.1:$(cat "$rport")" --insecure --json $SEND \
		--max-time $mt >"$T/$tag.send" 2>"$T/$tag.send.err"
	local rc=$?
	local ms=$((($(date +%s%N) - t0) / 1000000))
	local st=$(src_state "$tag")
	touch "$out.sent"
	local what=$(grep -E '^(cut|cut-after|stall|drop) at ' "$T/$tag.relay") # printed before it acts
	local result=$(field "$T/$tag.send" result) err=$(field "$T/$tag.send" error)
	local want=""
	case $rc in 0) want=migrated ;; 1) want=failed ;; 3) want=indeterminate ;; esac
	[ -n "$what" ] && [ -n "$want" ] && [ "$result" = "$want" ] && [ $ms -lt $(((mt + 5) * 1000)) ]
	put $? "${what:-relay never triggered}; send exit $rc after $ms ms (bound: --max-time $mt s + 5 s), result '$result'${err:+ ($err)}"
	local fate sres sdig dd vrc outcome
	case $rc in
	0)
		[ "$st" != running ] && [ "$st" != indeterminate ]
		put $? "exit 0: the source copy no longer runs (state: ${st:-gone})"
		fate=$(dest_fate "$tag" 10)
		stop_relay $rpid
		[ "$fate" = running ]; put $? "exit 0: the destination runs it ($fate)"
		wait_result "$T/hostB" "$tag"
		dd=$(field "$T/hostB/$tag.result.json" digest)
		wait $vpid
		sres=$(field "$T/$tag.src.json" result)
		[ "$dd" = "$ref" ] && [ "$sres" = migrated ] && ! grep -q PMG-REPORT "$T/$tag.src.log"
		put $? "exit 0: finished on the destination only, digest $dd (reference $ref); source ended '$sres'"
		outcome="migrated, runs on the destination"
		;;
	1)
		# (or it already ended there, its work done, while the link was stalled)
		[ "$st" = running ] || { [ -z "$st" ] && grep -q "guest stopped during the migration" "$T/$tag.send"; }
		put $? "exit 1: the guest still runs on the source (state: ${st:-ended there})"
		fate=$(dest_fate "$tag" 10)
		stop_relay $rpid
		wait $vpid
		sres=$(field "$T/$tag.src.json" result)
		sdig=$(field "$T/$tag.src.json" digest)
		{ [ "$fate" = failed ] && [ ! -e "$T/hostB/$tag.result.json" ] && [ ! -e "$T/hostB/$tag.sock" ]; } ||
			{ [ "$fate" = in-doubt ] && never_ran "$tag"; }
		put $? "exit 1: the destination's session $fate ($(dest_why "$tag")), no copy ran there"
		[ "$sres" = ok ] && [ "$sdig" = "$ref" ]
		put $? "exit 1: finished on the source with digest $sdig (reference $ref)"
		outcome="failed, the source keeps the guest; destination: $(dest_why "$tag")"
		;;
	3)
		PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl "$tag" resume >"$T/$tag.resume" 2>&1
		local resumed=$?
		[ "$st" = indeterminate ] && [ $resumed != 0 ]
		put $? "exit 3: the source copy is paused (state: ${st:-gone}) and resume is refused ($(cat "$T/$tag.resume"))"
		fate=$(dest_fate "$tag" 15)
		stop_relay $rpid
		if [ "$fate" = running ]; then
			wait_result "$T/hostB" "$tag"
			dd=$(field "$T/hostB/$tag.result.json" digest)
		fi
		# Long enough for a source copy resumed at switchover to have
		# finished its work and printed its report.
		local left=$((t0 / 1000000 + ms + GUEST_S * 1000 - $(date +%s%N) / 1000000))
		[ $left -gt 0 ] && sleep "$(awk -v l=$left 'BEGIN { printf "%.1f", l / 1000 }')"
		[ "$fate" = running ] && [ "$dd" = "$ref" ] ||
			{ [ "$fate" = failed ] && [ ! -e "$T/hostB/$tag.result.json" ] && [ ! -e "$T/hostB/$tag.sock" ]; } ||
			{ [ "$fate" = in-doubt ] && never_ran "$tag"; }
		put $? "exit 3: the destination $fate$([ "$fate" = running ] && echo " it and it finished with digest $dd (reference $ref)")$([ "$fate" != running ] && echo " ($(dest_why "$tag")), no copy ran there")"
		local later=$(src_state "$tag")
		PML_MIGRATE_RUNDIR="$T/hostA" "$PM" ctl "$tag" stop >/dev/null 2>&1
		wait $vpid
		vrc=$?
		sres=$(field "$T/$tag.src.json" result)
		sdig=$(field "$T/$tag.src.json" digest)
		[ "$later" = indeterminate ] && [ "$sres" = indeterminate ] && [ -z "$sdig" ] && [ $vrc = 3 ] &&
			! grep -q PMG-REPORT "$T/$tag.src.log"
		put $? "exit 3: the source copy never ran again (state '$later' after the destination's outcome, report '$sres', run exit $vrc, no guest report)"
		outcome="indeterminate, the source copy paused; destination: $fate"
		;;
	*)
		stop_relay $rpid
		put 1 "unexpected exit $rc: $(head -c 300 "$T/$tag.send.err")"
		put 1 "skipped"
		put 1 "skipped"
		kill -9 $vpid 2>/dev/null
		outcome="unexpected exit $rc"
		;;
	esac
	echo "# $tag: exit $rc, $outcome" >>"$out"
	if grep -q '^1 ' "$out"; then # the evidence, for the log
		for f in "$T/$tag.relay" "$T/$tag.send.err"; do sed "s|^|# $(basename "$f"): |" "$f" >>"$out"; done
		tail -n 1 "$T/$tag.send" | sed 's/^/# send: /' >>"$out"
		grep "'$tag'" "$T/b.log" | sed 's/^/# agent: /' >>"$out"
	fi
	touch "$out.done"
}

# report TAG: waits for the cell, then prints its TAP lines.
report() {
	local out="$T/cells/$1"
	for i in $(seq 1200); do [ -e "$out.done" ] && break; sleep 0.1; done
	[ -e "$out.done" ] || echo "1 $1: cell did not finish within 120 s" >>"$out"
	while read -r st desc; do
		[ "$st" = "#" ] && { echo "# $desc"; continue; }
		ok "$st" "$desc"
	done <"$out"
	grep '^# [a-z]*-[a-z]' "$out" | sed 's/^# //' >>"$T/summary"
}

tagof() { echo "$1-$2" | tr ':' '-'; }

T0=$(date +%s)
# Every cell runs in the background, but only one pre-copy at a time: the
# next cell starts once the relay has acted on this one (from there on the
# source is paused or done with the link, or waits on a deadline) or its
# send has ended. What follows, the guest finishing on one side and the
# checks, overlaps the next cells.
tags="" pids=""
for c in $CELLS; do
	for mode in $MODES; do
		tag=$(tagof "$mode" "$c")
		IFS=: read -r action at <<<"$c"
		cell "$tag" "$mode" "$action" "$at" &
		tags="$tags $tag"
		pids="$pids $!"
		for i in $(seq 600); do
			[ -e "$T/cells/$tag.sent" ] && break
			grep -qE '^(cut|cut-after|stall|drop) at' "$T/$tag.relay" 2>/dev/null && break
			sleep 0.1
		done
	done
done
for tag in $tags; do report "$tag"; done
wait $pids
echo "# outcomes ($(($(date +%s) - T0)) s):"
sed 's/^/#   /' "$T/summary"
exit $fail
