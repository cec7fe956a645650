#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over checkpoint files as restore
# reads them (listing, chain, every record, the seal), seeded with files
# the real writer made.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
echo "1..3"
fuzz_build fuzz-ckpt "$SRC/tests/fuzz-ckpt.c" "$SRC/migrate/ckpt.c" "$SRC/migrate/stream.c" "$SRC/compress/compress.c" \
	-llz4 -lcrypto
mkdir -p "$T/corpus" "$T/work"
export PMG_FUZZ_DIR="$T/work"
PMG_FUZZ_SEED="$T/corpus" "$T/fuzz-ckpt" >/dev/null 2>&1
[ -s "$T/corpus/seed-full" ] && [ -s "$T/corpus/seed-incr" ]
ok $? "seeds written by the real writer: $(ls "$T/corpus" | tr '\n' ' ')"
fuzz_run fuzz-ckpt -max_len=200000 -rss_limit_mb=2048
exit $fail
