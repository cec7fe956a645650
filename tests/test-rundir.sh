#!/bin/bash
# The run directory is trusted only when it is ours (issue 9, defect 1):
# a symlink, a directory another user owns (also the predictable
# /tmp/pml-migrate-UID a local user created first) or one that others can
# write to is refused by run, ctl, list and recv with a clear error; a
# symlink planted as NAME.log or NAME.result.json.tmp is never followed by
# the agent; control sockets are 0600. And (defect 8) a run directory far
# longer than a socket path still works end to end.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/migrate-lib.sh"
if [ ! -e /dev/kvm ]; then
	skip_all "/dev/kvm absent"
fi
[ "$(id -u)" = 0 ] || skip_all "needs root to create directories owned by another user"
echo "1..17"
IDLE="until=finish period_us=10000" # runs until asked (ctl NAME finish)

# refused WHAT RUNDIR PATTERN CMD...: CMD fails (exit 1) naming the problem.
refused() {
	what=$1 rd=$2 pat=$3
	shift 3
	PML_MIGRATE_RUNDIR="$rd" timeout 20 "$PM" "$@" >"$T/out" 2>"$T/err"
	rc=$?
	[ $rc = 1 ] && grep -q "$pat" "$T/err"
	ok $? "$what: exit $rc, $(head -c 200 "$T/err")"
}

mkdir -p "$T/real"
ln -s "$T/real" "$T/link"
refused "run refuses a symlinked run directory" "$T/link" "symlink" run "$G/idle.elf" --name s1 -- $IDLE
[ ! -e "$T/real/s1.sock" ]; ok $? "and created nothing behind the link"

mkdir -p "$T/theirs"
chown 65534 "$T/theirs"
refused "run refuses a run directory owned by another user" "$T/theirs" "owned by uid 65534" run "$G/idle.elf" --name s2 -- $IDLE
refused "ctl refuses it too" "$T/theirs" "owned by uid 65534" ctl s2 status
refused "list refuses it too" "$T/theirs" "owned by uid 65534" list

mkdir -p "$T/open"
chmod 1777 "$T/open"
refused "run refuses a world-writable run directory" "$T/open" "writable by group or others" run "$G/idle.elf" --name s3 -- $IDLE
timeout 20 "$PM" recv --listen 127.0.0.1:0 --insecure --run-dir "$T/open" >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 1 ] && grep -q "writable by group or others" "$T/err"
ok $? "recv refuses it at start: exit $rc, $(head -c 200 "$T/err")"

# The predictable default of a user without XDG_RUNTIME_DIR, created
# first by someone else (here root, for a user 54321 that owns nothing).
U=54321
rm -rf "/tmp/pml-migrate-$U"
mkdir -m 0755 "/tmp/pml-migrate-$U"
env -u PML_MIGRATE_RUNDIR -u XDG_RUNTIME_DIR setpriv --reuid $U --regid $U --clear-groups \
	"$PM" ctl victim status >"$T/out" 2>"$T/err"
rc=$?
rm -rf "/tmp/pml-migrate-$U"
[ $rc = 1 ] && grep -q "/tmp/pml-migrate-$U is owned by uid 0" "$T/err"
ok $? "a non-root user refuses /tmp/pml-migrate-UID made by another user: $(head -c 200 "$T/err")"

# A good run directory: the socket is 0600 and answers.
start_vm "$T/good" s4 idle ring $IDLE
mode=$(stat -c %a "$T/good/s4.sock" 2>/dev/null)
[ "$mode" = 600 ]; ok $? "control socket mode is $mode"
PML_MIGRATE_RUNDIR="$T/good" "$PM" ctl s4 status | grep -q '"ok":true'; ok $? "and it answers"
finish_vm "$T/good" s4
wait $VPID
[ ! -e "$T/good/s4.sock" ]; ok $? "the socket is removed when the VM ends"

# The agent's files: planted symlinks are replaced, never written through.
start_agent b "$T/hostB" --insecure
echo precious >"$T/victim1"
echo precious >"$T/victim2"
ln -s "$T/victim1" "$T/hostB/planted.log"
ln -s "$T/victim2" "$T/hostB/planted.result.json.tmp"
start_vm "$T/hostA" planted idle ring $IDLE
PML_MIGRATE_RUNDIR="$T/hostA" timeout 120 "$PM" send planted "127.0.0.1:$PORT" --insecure --json >"$T/planted.send" 2>&1
ok $? "a VM migrates into an agent whose run directory has planted symlinks: $(field "$T/planted.send" result)"
finish_vm "$T/hostB" planted || finish_vm "$T/hostA" planted
wait_result "$T/hostB" planted
ref=$(reference_of idle "$IDLE" "$T/hostB/planted.result.json")
[ -n "$ref" ] && [ "$(field "$T/hostB/planted.result.json" digest)" = "$ref" ]; ok $? "and finishes there with the right digest"
[ "$(cat "$T/victim1")" = precious ] && [ "$(cat "$T/victim2")" = precious ]
ok $? "the files the symlinks pointed to are untouched"
[ -f "$T/hostB/planted.log" ] && [ ! -L "$T/hostB/planted.log" ] && [ ! -L "$T/hostB/planted.result.json" ]
ok $? "NAME.log and NAME.result.json are regular files of the agent's own"
wait $VPID

# Defect 8: a run directory much longer than sun_path (108 bytes) works.
LONG="$T/$(printf 'd%.0s' $(seq 150))"
start_agent l "$LONG" --insecure
start_vm "$T/hostA" longdir idle ring $IDLE
PML_MIGRATE_RUNDIR="$T/hostA" timeout 120 "$PM" send longdir "127.0.0.1:$PORT" --insecure --json >"$T/longdir.send" 2>&1
ok $? "a migration into an agent whose run directory is ${#LONG} bytes long: $(field "$T/longdir.send" result) $(field "$T/longdir.send" error)"
finish_vm "$LONG" longdir || finish_vm "$T/hostA" longdir
wait_result "$LONG" longdir
ref=$(reference_of idle "$IDLE" "$LONG/longdir.result.json")
[ -n "$ref" ] && [ "$(field "$LONG/longdir.result.json" digest)" = "$ref" ]; ok $? "finishes there with the right digest"
wait $VPID
exit $fail
