#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the stream record parser and
# page decoder, seeded with valid records written by the encoder.
. "$(dirname "$0")/tap.sh"
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
BLD=${TOP_BUILDDIR:-.}
SECS=${FUZZ_SECONDS:-20}
CLANG=$(command -v clang || command -v clang-14 || true)
[ -n "$CLANG" ] || skip_all "clang not installed (apt-get install clang)"
echo "1..2"
"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-I"$SRC" -I"$BLD" -D_GNU_SOURCE -o "$T/fuzz-stream" \
	"$SRC/tests/fuzz-stream.c" "$SRC/migrate/stream.c" "$SRC/compress/compress.c" -llz4 2>"$T/cc.err"
ok $? "fuzz target builds with libFuzzer $(head -c 300 "$T/cc.err")"
mkdir -p "$T/corpus"
if [ -x "$BLD/tests/test-stream" ]; then "$BLD/tests/test-stream" --seeds "$T/corpus" >/dev/null; fi
"$T/fuzz-stream" -max_total_time="$SECS" -max_len=1100000 -rss_limit_mb=2048 -print_final_stats=1 "$T/corpus" >"$T/fuzz.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/fuzz.log")
ok $rc "fuzzed ${SECS}s: ${runs:-?} inputs, no crash, leak or UB $( [ $rc = 0 ] || tail -30 "$T/fuzz.log" | tr '\n' '|')"
exit $fail
