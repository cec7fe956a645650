#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the destination session:
# inputs are whole first-connection byte streams fed to the real session
# (migrate_dst_feed, no network) with real KVM VMs behind it, seeded with
# complete migration streams. FUZZ_SECONDS sets the length (default 20);
# the README gives the long-run command.
. "$(dirname "$0")/tap.sh"
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
BLD=${TOP_BUILDDIR:-.}
SECS=${FUZZ_SECONDS:-20}
CLANG=$(command -v clang || command -v clang-14 || true)
[ -n "$CLANG" ] || skip_all "clang not installed (apt-get install clang)"
[ -e /dev/kvm ] || skip_all "/dev/kvm absent"
echo "1..3"
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Wno-gnu-variable-sized-type-not-at-end \
	-I"$SRC" -I"$BLD" -D_GNU_SOURCE -o "$T/fuzz-dest" "$SRC/tests/fuzz-dest.c" \
	"$SRC"/migrate/dest.c "$SRC"/migrate/stream.c "$SRC"/migrate/verify.c "$SRC"/compress/compress.c \
	"$SRC"/transport/xport.c "$SRC"/hv/hv.c "$SRC"/hv/kvm.c "$SRC"/hv/kvm-boot.c "$SRC"/hv/kvm-dirty.c \
	"$SRC"/hv/kvm-state.c "$SRC"/hv/elf.c -luv -lssl -lcrypto -llz4 -lpthread 2>"$T/cc.err"
ok $? "fuzz target builds with libFuzzer $(head -c 300 "$T/cc.err")"
mkdir -p "$T/corpus"
PMG_FUZZ_SEED="$T/corpus" "$T/fuzz-dest" >/dev/null 2>&1 && [ -s "$T/corpus/complete" ] && [ -s "$T/corpus/verify" ]
ok $? "seeded with complete migration streams ($(cat "$T"/corpus/* 2>/dev/null | wc -c) bytes in $(ls "$T/corpus" | wc -l) files)"
"$T/fuzz-dest" -max_total_time="$SECS" -max_len=1100000 -rss_limit_mb=4096 -print_final_stats=1 "$T/corpus" \
	>"$T/fuzz.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/fuzz.log")
ok $rc "fuzzed ${SECS}s: ${runs:-?} inputs, no crash, leak or UB $( [ $rc = 0 ] || tail -30 "$T/fuzz.log" | tr '\n' '|')"
exit $fail
