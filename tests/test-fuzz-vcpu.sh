#!/bin/sh
# A short libFuzzer run (ASan + UBSan) over the vCPU state loader, on a
# real KVM vCPU, seeded with a real saved state. FUZZ_SECONDS sets the
# length (default 20); the README gives the long-run command.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/fuzz-lib.sh"
[ -e /dev/kvm ] || skip_all "/dev/kvm absent"
echo "1..3"
fuzz_build fuzz-vcpu "$SRC/tests/fuzz-vcpu.c" $HV_SRC $HV_LIBS -lpthread
mkdir -p "$T/corpus"
PMG_FUZZ_SEED="$T/corpus/saved" "$T/fuzz-vcpu" >/dev/null 2>&1 && [ -s "$T/corpus/saved" ]
ok $? "seeded with a real saved vCPU state ($(wc -c <"$T/corpus/saved" 2>/dev/null) bytes)"
fuzz_run fuzz-vcpu -max_len=65536 -rss_limit_mb=2048
exit $fail
