#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the destination's parsing of a
# toolstack's Xen domain description (the DOMAIN record), seeded with a
# valid one. FUZZ_SECONDS sets the length (default 20).
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
grep -q 'HAVE_XEN 1' "$BLD/config.h" 2>/dev/null ||
	skip_all "pml-migrate was built without the Xen libraries (configure --with-xen=no or no libxen-dev)"
echo "1..3"
fuzz_build fuzz-xen-blob "$SRC/tests/fuzz-xen-blob.c" $HV_SRC $HV_LIBS -lpthread
mkdir -p "$T/corpus"
"$BLD/tests/test-xen-blob" --seed "$T/corpus/valid" && [ -s "$T/corpus/valid" ]
ok $? "seeded with a valid description ($(wc -c <"$T/corpus/valid" 2>/dev/null) bytes)"
fuzz_run fuzz-xen-blob -max_len=65536 -rss_limit_mb=2048
exit $fail
