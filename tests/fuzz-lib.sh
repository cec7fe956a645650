# tests/fuzz-lib.sh - helpers for the libFuzzer tests; source it after
# tap.sh. Sets SRC, BLD, SECS (FUZZ_SECONDS, default 20) and skips the whole
# test when clang is missing.
SRC=${TOP_SRCDIR:-$(dirname "$0")/..}
BLD=${TOP_BUILDDIR:-.}
SECS=${FUZZ_SECONDS:-20}
CLANG=$(command -v clang || command -v clang-14 || true)
[ -n "$CLANG" ] || skip_all "clang not installed (apt-get install clang)"

# The hv/ sources a target links (hv.c refers to the Xen backend when this
# build has it) and the libraries those need.
HV_SRC="$SRC/hv/hv.c $SRC/hv/guest-io.c $SRC/hv/kvm.c $SRC/hv/kvm-boot.c $SRC/hv/kvm-dirty.c $SRC/hv/kvm-state.c $SRC/hv/elf.c"
HV_LIBS=""
if grep -q 'HAVE_XEN 1' "$BLD/config.h" 2>/dev/null; then
	HV_SRC="$HV_SRC $SRC/hv/xen.c $SRC/hv/xen-ioreq.c $SRC/hv/xen-dirty.c $SRC/hv/xen-state.c $SRC/hv/xen-guest.c"
	HV_LIBS=$(pkg-config --libs xencontrol xenguest xenforeignmemory xendevicemodel xenevtchn xenlight xenstore xentoollog)
fi

# fuzz_build NAME SOURCES... [LIBS...]: builds $T/NAME with ASan + UBSan and
# reports it as one TAP line. ($HV_SRC and $HV_LIBS unquoted: word lists.)
fuzz_build() {
	name=$1
	shift
	"$CLANG" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-Wno-gnu-variable-sized-type-not-at-end -I"$SRC" -I"$BLD" -D_GNU_SOURCE -o "$T/$name" "$@" 2>"$T/cc.err"
	ok $? "fuzz target builds with libFuzzer $(head -c 300 "$T/cc.err")"
}

# fuzz_run NAME LIBFUZZER-OPTIONS...: fuzzes $T/NAME for SECS seconds over
# $T/corpus and reports inputs run and the verdict as one TAP line.
fuzz_run() {
	name=$1
	shift
	"$T/$name" -max_total_time="$SECS" -print_final_stats=1 "$@" "$T/corpus" >"$T/fuzz.log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/fuzz.log")
	ok $rc "fuzzed ${SECS}s: ${runs:-?} inputs, no crash, leak or UB $( [ $rc = 0 ] || tail -30 "$T/fuzz.log" | tr '\n' '|')"
}
