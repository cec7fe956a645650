#!/bin/bash
# recv --metrics-file: the agent keeps a Prometheus text-format file up to
# date with what its sessions did: a migration in, one refused, a
# capacity query, and the VM it received migrating onward (out, bytes,
# downtime histogram). The file is replaced atomically, readable by the
# node exporter's user (0644), and every line is valid exposition format.
# Its directory may belong to another user (the exporter's), but nobody
# else may write there: a group- or world-writable one is refused.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..11"
make_certs
M="$T/prom/pml-migrate.prom"
mkdir -p "$T/prom"
start_agent A "$T/a" --max-sessions 8 --metrics-file "$M"
PA=$PORT
start_agent B "$T/b"
PB=$PORT
metric() { awk -v k="$1" '$1 == k { print $2 }' "$M"; }
wait_metric() { # NAME VALUE: up to 10 s
	for i in $(seq 100); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
	return 1
}

[ -f "$M" ] && [ "$(stat -c %a "$M")" = 644 ] && [ "$(metric pml_migrate_max_sessions)" = 8 ] &&
	[ "$(metric 'pml_migrate_migrations_in_total{result="ok"}')" = 0 ]
ok $? "written at start, mode $(stat -c %a "$M" 2>/dev/null), zeros and --max-sessions $(metric pml_migrate_max_sessions)"

SRC="$T/src"
ARGS="seed=3 ws=16M prefill=1 rate=4 ops=1000000 content=text"
start_vm "$SRC" m1 memstress ring $ARGS
sleep 0.3
send_vm "$SRC" m1 "$PA"
wait_metric 'pml_migrate_migrations_in_total{result="ok"}' 1 && wait_metric pml_migrate_sessions 1
ok $? "a migration in: in ok $(metric 'pml_migrate_migrations_in_total{result="ok"}'), sessions $(metric pml_migrate_sessions)"
b=$(metric pml_migrate_received_bytes_total)
[ "${b:-0}" -gt 4000000 ]
ok $? "received bytes counted: $b (16 MiB of text, LZ4)"

# The same name again: refused by A (it runs a VM of that name).
start_vm "$SRC" m1 memstress ring $ARGS
sleep 0.3
send_vm "$SRC" m1 "$PA"
wait_metric 'pml_migrate_migrations_in_total{result="failed"}' 1
ok $? "a refused migration in: in failed $(metric 'pml_migrate_migrations_in_total{result="failed"}')"
PML_MIGRATE_RUNDIR="$SRC" "$PM" ctl m1 stop >/dev/null

PML_MIGRATE_RUNDIR="$T/empty" timeout 30 "$PM" evacuate --to "127.0.0.1:$PA" --certs "$C" --node sender --peer agent \
	--dry-run >/dev/null 2>&1
wait_metric pml_migrate_capacity_queries_total 1 && [ "$(metric 'pml_migrate_migrations_in_total{result="failed"}')" = 1 ]
ok $? "a capacity query counted as such: $(metric pml_migrate_capacity_queries_total), not as a failure"

# Onward from A to B: A's session reports the migration out.
send_vm "$T/a" m1 "$PB"
rc=$?
wait_metric 'pml_migrate_migrations_out_total{result="ok"}' 1 && wait_metric pml_migrate_downtime_seconds_count 1 &&
	wait_metric 'pml_migrate_downtime_seconds_bucket{le="+Inf"}' 1
ok $? "the VM migrated onward (send exit $rc): out ok $(metric 'pml_migrate_migrations_out_total{result="ok"}'), downtime count $(metric pml_migrate_downtime_seconds_count), sum $(metric pml_migrate_downtime_seconds_sum) s"
o=$(metric pml_migrate_sent_bytes_total) d=$(metric pml_migrate_downtime_seconds_sum)
[ "${o:-0}" -gt 1000000 ] && awk -v d="$d" 'BEGIN { exit !(d > 0 && d < 5) }'
ok $? "sent bytes $o and a downtime of $d s"
wait_metric pml_migrate_sessions 0
ok $? "its session ended there: sessions $(metric pml_migrate_sessions)"
bad=$(grep -v '^# \(HELP\|TYPE\) pml_migrate_[a-z_]* ' "$M" |
	grep -vE '^pml_migrate_[a-z_]+(\{(result|le)="[^"]+"\})? [0-9]+(\.[0-9]+)?$')
fam=$(grep -c '^# TYPE' "$M") help=$(grep -c '^# HELP' "$M")
[ -z "$bad" ] && [ "$fam" = "$help" ] && [ "$fam" -ge 9 ]
ok $? "exposition format: $fam families, each with HELP and TYPE${bad:+; bad lines: $bad}"
PML_MIGRATE_RUNDIR="$T/b" "$PM" ctl m1 stop >/dev/null 2>&1

mkdir -p "$T/ww" && chmod 0777 "$T/ww"
timeout 20 "$PM" recv --listen 127.0.0.1:0 --insecure --run-dir "$T/c" --metrics-file "$T/ww/m.prom" 2>"$T/ww.err"
rc=$?
[ $rc = 1 ] && grep -q "writable by others" "$T/ww.err" && [ ! -e "$T/ww/m.prom" ]
ok $? "--metrics-file in a world-writable directory: refused at start (exit $rc: $(head -c 250 "$T/ww.err"))"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
	mkdir -p "$T/exporter" && chmod 0755 "$T/exporter" && chown nobody "$T/exporter"
	start_agent C "$T/c" --insecure --metrics-file "$T/exporter/m.prom"
	[ -n "$PORT" ] && [ -f "$T/exporter/m.prom" ]
	ok $? "in a directory another user owns (nobody, 0755: the exporter's, say): accepted"
else
	ok 0 "# SKIP not root: cannot make a directory another user owns"
fi
