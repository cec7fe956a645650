#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the stream record parser and
# page decoder, seeded with valid records written by the encoder.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
echo "1..2"
fuzz_build fuzz-stream "$SRC/tests/fuzz-stream.c" "$SRC/migrate/stream.c" "$SRC/compress/compress.c" -llz4
mkdir -p "$T/corpus"
if [ -x "$BLD/tests/test-stream" ]; then "$BLD/tests/test-stream" --seeds "$T/corpus" >/dev/null; fi
fuzz_run fuzz-stream -max_len=1100000 -rss_limit_mb=2048
exit $fail
