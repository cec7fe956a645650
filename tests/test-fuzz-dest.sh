#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the destination session:
# inputs are whole first-connection byte streams fed to the real session
# (migrate_dst_feed, no network) with real KVM VMs behind it, seeded with
# complete migration streams. FUZZ_SECONDS sets the length (default 20);
# the README gives the long-run command.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
[ -e /dev/kvm ] || skip_all "/dev/kvm absent"
echo "1..3"
fuzz_build fuzz-dest "$SRC/tests/fuzz-dest.c" "$SRC"/migrate/dest.c "$SRC"/migrate/stream.c "$SRC"/migrate/verify.c \
	"$SRC"/compress/compress.c "$SRC"/transport/xport.c "$SRC"/hv/hv.c "$SRC"/hv/kvm.c "$SRC"/hv/kvm-boot.c \
	"$SRC"/hv/kvm-dirty.c "$SRC"/hv/kvm-state.c "$SRC"/hv/elf.c -luv -lssl -lcrypto -llz4 -lpthread
mkdir -p "$T/corpus"
PMG_FUZZ_SEED="$T/corpus" "$T/fuzz-dest" >/dev/null 2>&1 && [ -s "$T/corpus/complete" ] && [ -s "$T/corpus/verify" ]
ok $? "seeded with complete migration streams ($(cat "$T"/corpus/* 2>/dev/null | wc -c) bytes in $(ls "$T/corpus" | wc -l) files)"
fuzz_run fuzz-dest -max_len=1100000 -rss_limit_mb=4096
exit $fail
