# tests/tap.sh - TAP helpers for shell tests; source it.
# Sets PM (the pml-migrate binary), G (guest image dir), T (a temp dir
# removed on exit) and PML_MIGRATE_RUNDIR inside T.
PM=${PML_MIGRATE:-./pml-migrate}
G=${GUEST_DIR:-guest}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export PML_MIGRATE_RUNDIR="$T/run"
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
# Where a guest image's fault=1 faults: its one ud2 (guest/rt.c).
fault_rip() { objdump -d "$G/$1" | awk '/\tud2/{sub(":", "", $1); print $1; exit}'; }
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
