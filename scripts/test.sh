#!/bin/sh
# pml-migrate tests: installs what is missing and builds (scripts/setup.sh
# --no-run), runs every TAP test with `make check`, and ends with one line
# "N passed, N failed[, N skipped]".
set -u
cd "$(dirname "$0")/.."
sh scripts/setup.sh --no-run || { echo "0 passed, 1 failed"; exit 1; }
make -k check >/tmp/pml-migrate-check.$$ 2>&1
rc=$?
grep -E '^(PASS|FAIL|SKIP|ERROR|XFAIL|XPASS):' /tmp/pml-migrate-check.$$
pass=$(cat tests/*.trs 2>/dev/null | grep -c '^:test-result: PASS')
fail=$(cat tests/*.trs 2>/dev/null | grep -cE '^:test-result: (FAIL|ERROR|XPASS)')
skip=$(cat tests/*.trs 2>/dev/null | grep -c '^:test-result: SKIP')
if [ "$rc" != 0 ]; then
	tail -40 /tmp/pml-migrate-check.$$
	[ "$fail" = 0 ] && fail=1 # the harness failed outside any test
fi
rm -f /tmp/pml-migrate-check.$$
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
