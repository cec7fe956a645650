#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the destination session:
# inputs are whole first-connection byte streams fed to the real session
# (migrate_dst_feed, no network) with real KVM VMs behind it, seeded with
# complete streams the target writes itself and with the stream of a real
# migration (a 16 MiB guest sent with --insecure through tests/relay, which
# records what the source sent). FUZZ_SECONDS sets the length (default 20);
# the README gives the long-run command.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
[ -e /dev/kvm ] || skip_all "/dev/kvm absent"
echo "1..5"
fuzz_build fuzz-dest "$SRC/tests/fuzz-dest.c" "$SRC"/migrate/dest*.c "$SRC"/migrate/prefault.c "$SRC"/migrate/stream.c "$SRC"/migrate/verify.c \
	"$SRC"/compress/compress.c "$SRC"/transport/xport.c "$SRC"/util/json.c "$SRC"/util/util.c "$SRC"/util/rundir.c $HV_SRC $HV_LIBS -luv -lssl -lcrypto -llz4 -ljansson -lm -lpthread
mkdir -p "$T/corpus"
PMG_FUZZ_SEED="$T/corpus" "$T/fuzz-dest" >/dev/null 2>&1 && [ -s "$T/corpus/complete" ] && [ -s "$T/corpus/verify" ] &&
	[ -s "$T/corpus/commit" ]
ok $? "seeded with complete migration streams ($(cat "$T"/corpus/* 2>/dev/null | wc -c) bytes in $(ls "$T/corpus" | wc -l) files)"
# The shortest complete migration (no pages, vCPU state, STATE_DONE 0,
# COMMIT) is taken and starts the guest: the target must carry on with a
# fresh VM (it once aborted, taking this for impossible).
"$T/fuzz-dest" -runs=3 "$T/corpus/commit" "$T/corpus/complete" "$T/corpus/commit" >"$T/commit.log" 2>&1
ok $? "a fed stream that commits starts the guest and the next inputs run on a fresh VM $(grep -m1 -o 'ERROR.*\|deadly.*' "$T/commit.log")"
# A real stream: a small guest migrated through the relay, which dumps it.
. "$(dirname "$0")/migrate-lib.sh"
start_agent b "$T/hostB" --insecure
mkdir -p "$T/hostA"
"$BLD/tests/relay" --target "$PORT" --port-file "$T/relay.port" --dump-s2d "$T/corpus/real" --max-seconds 60 \
	>"$T/relay.log" 2>&1 &
RPID=$!
for i in $(seq 100); do [ -s "$T/relay.port" ] && break; sleep 0.05; done
PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" run "$G/memstress.elf" --mem 16M --name real \
	-- ws=2M rate=8 content=text until=finish >/dev/null 2>&1 &
for i in $(seq 100); do [ -S "$T/hostA/real.sock" ] && break; sleep 0.05; done
sleep 0.3
PML_MIGRATE_RUNDIR="$T/hostA" timeout 60 "$PM" send real "127.0.0.1:$(cat "$T/relay.port")" --insecure --json \
	>"$T/real.send" 2>&1
rc=$?
# It runs until asked, wherever the send left it.
finish_vm "$T/hostB" real || finish_vm "$T/hostA" real
wait $RPID
[ $rc = 0 ] && [ -s "$T/corpus/real" ]
ok $? "seeded with a real migration's stream ($(wc -c <"$T/corpus/real" 2>/dev/null) bytes, send exit $rc)"
fuzz_run fuzz-dest -max_len=1100000 -rss_limit_mb=4096
exit $fail
