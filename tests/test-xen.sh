#!/bin/sh
# The Xen backend on the real Xen 4.17 hypervisor: Xen and a Debian dom0
# boot inside QEMU (TCG, tests/xen-lib.sh) and the project's own binary and
# guest images run in that dom0. The dom0 side prints "XT" lines; the
# assertions are made here, against the same guests run under KVM.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/xen-lib.sh"
Q=${QEMU:-$(command -v qemu-system-x86_64)}
if [ -z "$Q" ] || [ ! -x "$Q" ]; then skip_all "qemu-system-x86_64 not installed (it runs Xen here)"; fi
if ! grep -q 'HAVE_XEN 1' "${TOP_BUILDDIR:-.}/config.h" 2>/dev/null; then
	skip_all "pml-migrate was built without the Xen libraries (configure --with-xen=no or no libxen-dev)"
fi
QEMU=$Q
echo "1..39"

MS_ARGS="seed=7 ws=16M rate=0 ops=4096"
MIG_ARGS="seed=9 ws=16M rate=4 ops=6000"     # about 6 s: paused mid-run, not in its report
ON_ARGS="seed=11 ws=16M rate=2 ops=8000"     # long enough for two hops
CUT_ARGS="seed=13 ws=16M rate=4 ops=8000"   # still running after the cut
ATT_ARGS="seed=15 ws=16M rate=4 ops=8000"   # xl gives no tsc_khz: paced at a guessed 2 GHz
FLAT_ARGS="seed=17 ws=16M rate=0 ops=3000000 content=random"  # never in a port call when paused
cat >"$T/dom0.sh" <<DOM0
PM=/bin/pml-migrate
R() { echo "XT \$*"; }
mkdir -m 0700 /run/pmg; export PML_MIGRATE_RUNDIR=/run/pmg
R "xen \$(xl info | sed -n 's/^xen_version *: //p') caps \$(xl info | sed -n 's/^virt_caps *: //p' | tr ' ' ,)"

# 1. A workload under Xen, served by our ioreq server.
timeout 120 \$PM run --hv xen --mem 64M --name ms1 --json /guest/memstress.elf -- $MS_ARGS >/tmp/ms1.json 2>/tmp/ms1.err
R "ms1 rc=\$? console=\$(grep -c PMG-REPORT /tmp/ms1.err) left=\$(xl domid ms1 >/dev/null 2>&1 && echo yes || echo no)"
R "ms1-json \$(cat /tmp/ms1.json)"

# 2. A running guest: list, control socket, a pause Xen sees, then a
#    domain destroyed from outside ends the host process with an error.
\$PM run --hv xen --mem 32M --name idle1 /guest/idle.elf -- ops=100000 period_us=20000 >/tmp/idle.out 2>/tmp/idle.err &
P=\$!
for i in \$(seq 100); do \$PM ctl idle1 status >/tmp/st.json 2>/dev/null && break; sleep 0.2; done
R "idle1-status \$(cat /tmp/st.json)"
R "idle1-list \$(\$PM list | grep '^idle1 ')"
R "idle1-domid \$(xl domid idle1)"
\$PM ctl idle1 pause >/dev/null; R "idle1-paused \$(xl list idle1 | awk 'NR==2{print \$5}')"
\$PM ctl idle1 resume >/dev/null; R "idle1-resumed \$(xl list idle1 | awk 'NR==2{print \$5}')"
xl destroy idle1
timeout 30 sh -c "while kill -0 \$P 2>/dev/null; do sleep 0.1; done"
wait \$P; R "idle1-destroyed rc=\$? err=\$(tr '\n' ' ' </tmp/idle.err)"

# 3. Not a PVH image: a clear error and no domain left behind.
\$PM run --hv xen /bin/busybox >/dev/null 2>/tmp/bad.err
R "bad rc=\$? err=\$(tr '\n' ' ' </tmp/bad.err)"
# A guest that triple-faults: the report says where its vCPU stood.
\$PM run --hv xen --mem 32M /guest/idle.elf -- fault=1 >/dev/null 2>/tmp/fault.err
R "fault rc=\$? err=\$(tr '\n' ' ' </tmp/fault.err)"
R "domains \$(xl list | awk 'NR>1{print \$1}' | tr '\n' ,)"

# Migration. Agent A: TLS; agent B: plaintext (the relay cuts plaintext).
# Domain names; a domain being torn down shows as (null) for a moment.
names() {
	for i in \$(seq 50); do xl list | grep -q '^(null)' || break; sleep 0.1; done
	xl list | awk 'NR>1{print \$1}' | tr '\n' ,
}
waitfile() { for i in \$(seq 600); do [ -s "\$1" ] && return 0; sleep 0.2; done; return 1; }
waitctl() { for i in \$(seq 100); do \$PM ctl "\$1" status >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
# Bounded: a step that hangs fails its own checks and says what was
# running, instead of eating the whole QEMU budget.
SEND="timeout 150 \$PM send"
bwait() {
	for i in \$(seq \$((\$2 * 5))); do kill -0 \$1 2>/dev/null || break; sleep 0.2; done
	if kill -0 \$1 2>/dev/null; then
		R "hung \$3: pid \$1 still running after \$2 s: \$(ps -o pid,args | grep '[p]ml-migrate' | tr '\n' ' ' | cut -c1-400)"
		kill -9 \$1
	fi
	wait \$1
}
mkdir -m 0700 /run/dstA /run/dstB
\$PM recv --listen 127.0.0.1:0 --certs /certs --run-dir /run/dstA --port-file /tmp/portA 2>/tmp/agentA.log &
\$PM recv --listen 127.0.0.1:0 --insecure --run-dir /run/dstB --port-file /tmp/portB 2>/tmp/agentB.log &
waitfile /tmp/portA; waitfile /tmp/portB
PA=\$(cat /tmp/portA) PB=\$(cat /tmp/portB)

# 4. Live over TLS with --verify: the guest finishes over there.
\$PM run --hv xen --mem 64M --name mig --json /guest/memstress.elf -- $MIG_ARGS >/tmp/mig.src.json 2>/tmp/mig.src.err &
P=\$!
waitctl mig; sleep 0.5
R "mig-names-before \$(names)"
\$SEND mig 127.0.0.1:\$PA --certs /certs --node sender --peer agent --verify --json >/tmp/mig.send 2>/tmp/mig.send.err
R "mig-send rc=\$? \$(tail -1 /tmp/mig.send)"
bwait \$P 90 mig; R "mig-src rc=\$? \$(cat /tmp/mig.src.json)"
R "mig-names-running \$(names) \$([ -s /run/dstA/mig.result.json ] && echo finished)"
waitfile /run/dstA/mig.result.json
R "mig-dst \$(cat /run/dstA/mig.result.json)"
sleep 1; R "mig-names-after \$(names)"

# 5. Onward: a VM that arrived leaves again (A's session -> agent B).
\$PM run --hv xen --mem 64M --name on --json /guest/memstress.elf -- $ON_ARGS >/tmp/on.src.json 2>/tmp/on.src.err &
waitctl on; sleep 0.3
\$SEND on 127.0.0.1:\$PA --certs /certs --node sender --peer agent --json >/tmp/on.send1 2>&1
R "on-hop1 rc=\$? \$(tail -3 /tmp/on.send1 | tr '\n' ' ' | cut -c1-400)"
PML_MIGRATE_RUNDIR=/run/dstA waitctl on
PML_MIGRATE_RUNDIR=/run/dstA \$SEND on 127.0.0.1:\$PB --insecure --json >/tmp/on.send2 2>&1
R "on-hop2 rc=\$? \$(tail -1 /tmp/on.send2)"
R "on-hop2-err \$(grep -v '^{' /tmp/on.send2 | tail -3 | tr '\n' ' ' | cut -c1-400)"
R "on-src-err \$(tail -3 /tmp/on.src.err | tr '\n' ' ' | cut -c1-400)"
R "on-names-running \$(names)"
waitfile /run/dstB/on.result.json
R "on-dst \$(cat /run/dstB/on.result.json)"

# 6. The link cut before COMMIT (READY lost, no resume): the guest stays here.
\$PM run --hv xen --mem 64M --name cut --json /guest/memstress.elf -- $CUT_ARGS >/tmp/cut.src.json 2>/tmp/cut.src.err &
P=\$!
waitctl cut
relay --target \$PB --port-file /tmp/rport --at d2s:READY --action cut --max-seconds 60 >/tmp/relay.out 2>&1 &
waitfile /tmp/rport
\$SEND cut 127.0.0.1:\$(cat /tmp/rport) --insecure --no-resume --json >/tmp/cut.send 2>&1
R "cut-send rc=\$? \$(tail -1 /tmp/cut.send | cut -c1-200)"
R "cut-relay \$(grep -m1 '^cut at' /tmp/relay.out)"
sleep 1; R "cut-names-during \$(names)"
bwait \$P 90 cut; R "cut-src rc=\$? \$(cat /tmp/cut.src.json)"

# 7. attach: domains the toolstack made. A running one is refused and left
#    alone; a paused one is hosted, then migrated. xl was seen to crash at
#    random here: judge by the domain's state, not xl's exit code.
pvh() { printf 'name="%s"\ntype="pvh"\nkernel="%s"\nmemory=64\nvcpus=1\ncmdline="%s"\non_reboot="destroy"\n' "\$1" "\$2" "\$3" >/tmp/\$1.cfg; }
pvh busy /guest/idle.elf "ops=100000 period_us=20000"
xl create /tmp/busy.cfg >/dev/null 2>&1
\$PM attach busy >/dev/null 2>/tmp/busy.err
R "busy rc=\$? \$(tr '\n' ' ' </tmp/busy.err) state=\$(xl list busy | awk 'NR==2{print \$5}')"
xl destroy busy
pvh att /guest/memstress.elf "$ATT_ARGS"
xl create -p /tmp/att.cfg >/dev/null 2>&1
R "att-created \$(xl list att | awk 'NR==2{print \$5}')"
\$PM attach att --json >/tmp/att.json 2>/tmp/att.err &
P=\$!
waitctl att; sleep 0.3
R "att-status \$(\$PM ctl att status)"
\$SEND att 127.0.0.1:\$PA --certs /certs --node sender --peer agent --json >/tmp/att.send 2>&1
R "att-send rc=\$? \$(tail -1 /tmp/att.send | cut -c1-300)"
bwait \$P 90 att; R "att-src rc=\$? \$(cat /tmp/att.json)"
waitfile /run/dstA/att.result.json
R "att-dst \$(cat /run/dstA/att.result.json)"

# 8. A guest writing flat out, so its vCPU is running (not in a port call)
#    when paused: its first port call over there is its final report.
#    How long it runs here varies threefold with the emulation's speed
#    (0.4 to 3 s were seen): one that ended before its migration could
#    start is run again, up to 3 times.
for k in 1 2 3; do
	\$PM run --hv xen --mem 64M --name flat --json /guest/memstress.elf -- $FLAT_ARGS >/tmp/flat.src.json 2>/dev/null &
	P=\$!
	waitctl flat
	\$SEND flat 127.0.0.1:\$PB --insecure --max-bandwidth 16M --downtime 300 --json >/tmp/flat.send 2>&1
	rc=\$?
	bwait \$P 90 flat
	grep -q 'guest stopped during the migration' /tmp/flat.send || break
done
R "flat-send rc=\$rc \$(tail -1 /tmp/flat.send)"
R "flat-attempts \$k"
waitfile /run/dstB/flat.result.json
R "flat-dst \$(cat /run/dstB/flat.result.json)"
sleep 1; R "final-names \$(names)"
R "agentA-failures \$(grep -c failed /tmp/agentA.log) agentB-failures \$(grep failed /tmp/agentB.log | grep -vc 'guest stopped during the migration')"
R "agentA-failed \$(grep failed /tmp/agentA.log | tr '\n' ' ' | cut -c1-600)"
R "agentB-failed \$(grep failed /tmp/agentB.log | tr '\n' ' ' | cut -c1-600)"
DOM0

start=$(date +%s)
if ! xen_fetch; then
	ok 1 "fetching Xen 4.17 and a dom0 kernel from the Debian archive"
	exit 1
fi
"$PM" certs init "$T/certs" >/dev/null && "$PM" certs issue "$T/certs" agent >/dev/null &&
	"$PM" certs issue "$T/certs" sender >/dev/null || { ok 1 "making test certificates"; exit 1; }
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$PM" "${TOP_BUILDDIR:-.}/tests/relay" "$G/memstress.elf" "$G/idle.elf" \
	"$T"/certs/ca.pem "$T"/certs/agent.pem "$T"/certs/agent.key "$T"/certs/sender.pem "$T"/certs/sender.key ||
	{ ok 1 "building the dom0 initramfs"; exit 1; }
xen_boot "$T/initrd.img" 300 "$T/boot.log"
secs=$(($(date +%s) - start))
# The emulated machine's whole serial log, for a look after a failure.
cp "$T/boot.log" "${TOP_BUILDDIR:-.}/tests/test-xen.boot.log" 2>/dev/null
xt() { sed -n "s/^XT $1 //p" "$T/boot.log" | tr -d '\r' | head -1; }
field() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }

v=$(xt xen)
case $v in 4.17*hvm*) r=0 ;; *) r=1 ;; esac
ok $r "Xen booted in QEMU with HVM/PVH guests possible: '$v' (whole test ${secs} s)"
[ $r = 0 ] || { sed 's/^/# /' "$T/boot.log" | tail -40; }

ms=$(xt ms1) msj=$(xt ms1-json)
xd=$(field "$msj" digest)
echo "$ms" | grep -q 'rc=0 console=1 left=no'
ok $? "run --hv xen memstress: exit 0, report on the console, domain destroyed after ($ms)"
[ "$(field "$msj" hv)" = xen ] && [ -n "$(field "$msj" domid)" ] && [ "$(field "$msj" exit_code)" = 0 ]
ok $? "its JSON report names the hypervisor and domain: hv=$(field "$msj" hv) domid=$(field "$msj" domid)"
if [ -e /dev/kvm ]; then
	kd=$(field "$("$PM" run --json --mem 64M "$G/memstress.elf" -- $MS_ARGS 2>/dev/null)" digest)
	[ -n "$xd" ] && [ "$xd" = "$kd" ]
	ok $? "same memstress digest under Xen ($xd) and KVM ($kd)"
else
	ok 0 "# SKIP KVM reference digest: /dev/kvm absent (Xen digest $xd)"
fi

st=$(xt idle1-status)
[ "$(field "$st" state)" = running ] && [ "$(field "$st" hv)" = xen ]
ok $? "ctl status of a Xen-hosted VM: $st"
dom=$(xt idle1-domid)
echo "$(xt idle1-list)" | grep -q " xen:$dom "
ok $? "list shows it with its domain id $dom: $(xt idle1-list)"
case $(xt idle1-paused) in *p*) r=0 ;; *) r=1 ;; esac
ok $r "ctl pause pauses the domain in Xen (xl state $(xt idle1-paused))"
case $(xt idle1-resumed) in *p*) r=1 ;; ?*) r=0 ;; *) r=1 ;; esac
ok $r "ctl resume unpauses it (xl state $(xt idle1-resumed))"
d=$(xt idle1-destroyed)
echo "$d" | grep -q 'rc=1 .*destroyed from outside'
ok $? "xl destroy under a hosted VM: the host process says so and exits 1 ($d)"

b=$(xt bad)
echo "$b" | grep -q 'rc=1 .*no PVH entry note'
ok $? "an image without a PVH entry: clear error, exit 1 ($b)"
ud=$(fault_rip idle.elf)
echo "$(xt fault)" | grep -q "^rc=1 .*triple fault) (rip=0x$ud .*cs=0x1b"
ok $? "a guest that triple-faults (fault=1): exit 1, the error says where (ud2 at 0x$ud): $(xt fault)"
[ "$(xt domains)" = "Domain-0," ]
ok $? "no domain left behind: xl list shows '$(xt domains)'"

# Migration. Reference digests from KVM when it is here; otherwise the
# digest of the same guest run under Xen without moving (its own run).
ref() { [ -e /dev/kvm ] && field "$("$PM" run --json --mem 64M "$G/memstress.elf" -- "$@" 2>/dev/null)" digest; }
mref=$(ref $MIG_ARGS) oref=$(ref $ON_ARGS) cref=$(ref $CUT_ARGS)
mb=$(xt mig-names-before) ms=$(xt mig-send) msrc=$(xt mig-src) mdst=$(xt mig-dst)
echo "$mb" | grep -q '^Domain-0,mig,$'
ok $? "before: one domain 'mig' ($mb)"
echo "$ms" | grep -q 'rc=0 .*"result":"migrated"' && [ "$(field "$ms" tls)" = true ] && [ "$(field "$ms" verified_chunks)" -gt 0 ]
ok $? "send over TLS with --verify: migrated (downtime $(field "$ms" downtime_ms) ms, $(field "$ms" rounds) rounds, $(field "$ms" bytes_on_wire) bytes)"
echo "$msrc" | grep -q 'rc=0 .*"result":"migrated"'
ok $? "the source host process ended with 'migrated': $(echo "$msrc" | cut -c1-80)"
[ "$(field "$mdst" exit_code)" = 0 ] && [ "$(field "$mdst" hv)" = xen ]
ok $? "the guest finished on the destination under Xen: exit $(field "$mdst" exit_code), domain $(field "$mdst" domid)"
[ -n "$(field "$mdst" digest)" ] && { [ -z "$mref" ] || [ "$(field "$mdst" digest)" = "$mref" ]; }
ok $? "destination digest $(field "$mdst" digest) = unmigrated ${mref:-(no KVM here)}"
[ "$(field "$mdst" tsc_backwards)" = 0 ]
ok $? "guest TSC never went backwards across the move"
dmin=$(field "$ms" downtime_min_ms) stall=$(field "$mdst" max_stall_us) saved=$(field "$ms" state_saved_ms)
# Xen restores the TSC as saved: the guest sees the paused time before the
# save (the final pages at least), not the rest of the downtime (README).
awk -v s="$stall" -v f="$saved" 'BEGIN { exit !(f > 0 && s >= f * 1000) }'
ok $? "guest-observed stall $stall us covers the paused time before the save ($saved ms; final pages and state sent at $(field "$ms" final_send_ms) ms; downtime $dmin ms)"
# The guest may already have finished over there (it has well under a
# second left there on a fast run): then no domain is right too, or one
# still being torn down, which xl lists under its name or as (null).
r=$(xt mig-names-running)
echo "$r" | grep -Eq '^Domain-0,mig, *$|^Domain-0,(\(null\),|mig,)? finished$'
ok $? "after the move: exactly one domain 'mig' (or none, the guest finished there), no temporary names ($r)"
echo "$(xt mig-names-after)" | grep -q '^Domain-0,$'
ok $? "and none once the guest exited there ($(xt mig-names-after))"

echo "$(xt on-hop1)" | grep -q 'rc=0' && echo "$(xt on-hop2)" | grep -q 'rc=0 .*"result":"migrated"'
r=$?
ok $r "onward: the VM that arrived was migrated again ($(xt on-hop1 | cut -c1-5); $(echo "$(xt on-hop2)" | cut -c1-5))"
[ $r = 0 ] || printf '# hop 1: %s\n# hop 2: %s %s\n# source guest: %s\n' "$(xt on-hop1)" "$(xt on-hop2)" "$(xt on-hop2-err)" "$(xt on-src-err)"
od=$(xt on-dst)
[ "$(field "$od" exit_code)" = 0 ] && { [ -z "$oref" ] || [ "$(field "$od" digest)" = "$oref" ]; }
ok $? "after two hops: exit $(field "$od" exit_code), digest $(field "$od" digest) = ${oref:-(no KVM here)}"
echo "$(xt on-names-running)" | grep -q '^Domain-0,on,$'
ok $? "after two hops: one domain 'on' ($(xt on-names-running))"

cs=$(xt cut-send) csrc=$(xt cut-src)
echo "$cs" | grep -q 'rc=1 .*"result":"failed"' && echo "$(xt cut-relay)" | grep -q 'cut at d2s READY'
ok $? "link cut before COMMIT (READY never arrives): send failed (exit 1), relay: $(xt cut-relay)"
echo "$(xt cut-names-during)" | grep -q '^Domain-0,cut,$'
ok $? "no destination domain left behind, the source domain kept its name ($(xt cut-names-during))"
echo "$csrc" | grep -q 'rc=0 .*"result":"ok"' && { [ -z "$cref" ] || [ "$(field "$csrc" digest)" = "$cref" ]; }
ok $? "the source guest ran on and finished here: digest $(field "$csrc" digest) = ${cref:-(no KVM here)}"
b=$(xt busy)
echo "$b" | grep -q "^rc=1 .*is running: attach takes a domain created paused.* state=..*" && ! echo "$b" | grep -q 'state= *$'
ok $? "attach to a running domain: refused, the domain left running ($b)"
echo "$(xt att-created)" | grep -q p
ok $? "xl create -p made a paused domain ($(xt att-created))"
st=$(xt att-status)
[ "$(field "$st" hv)" = xen ] && [ "$(field "$st" state)" = running ] && [ "$(field "$st" mem_bytes)" = 67108864 ]
ok $? "attach hosts it: $st"
echo "$(xt att-send)" | grep -q 'rc=0' && echo "$(xt att-src)" | grep -q 'rc=0 .*"result":"migrated"'
ok $? "the attached domain migrated over TLS ($(xt att-send | cut -c1-5))"
aref=$(ref $ATT_ARGS) ad=$(xt att-dst)
[ "$(field "$ad" exit_code)" = 0 ] && { [ -z "$aref" ] || [ "$(field "$ad" digest)" = "$aref" ]; }
ok $? "and finished over there: exit $(field "$ad" exit_code), digest $(field "$ad" digest) = ${aref:-(no KVM here)}"
fs=$(xt flat-send) fd=$(xt flat-dst) fref=$(ref $FLAT_ARGS)
echo "$fs" | grep -q 'rc=0 .*"result":"migrated"'
ok $? "a guest writing flat out migrated (downtime $(field "$fs" downtime_ms) ms, $(field "$fs" final_pages) pages at switchover; attempt $(xt flat-attempts) of 3)"
[ "$(field "$fd" exit_code)" = 0 ] && { [ -z "$fref" ] || [ "$(field "$fd" digest)" = "$fref" ]; } &&
	[ "$(field "$fd" tsc_backwards)" = 0 ]
ok $? "and finished over there: $(field "$fd" result), digest $(field "$fd" digest) = ${fref:-(no KVM here)}, stall $(field "$fd" max_stall_us) us"
[ "$(xt final-names)" = "Domain-0," ]
ok $? "nothing left at the end: $(xt final-names)"
a=$(xt agentA-failures)
[ "$a" = "0 agentB-failures 1" ]
r=$?
ok $r "agents: A no failed session, B one (the cut): $a"
[ $r = 0 ] || printf '# agent A: %s\n# agent B: %s\n' "$(xt agentA-failed)" "$(xt agentB-failed)"

h=$(sed -n 's/^XT hung //p' "$T/boot.log" | tr -d '\r' | tr '\n' ' ')
[ -z "$h" ]
ok $? "no step hung (sends bounded to 150 s, guests to 90 s after their send)${h:+: $h}"

grep -q '^XT done' "$T/boot.log"
ok $? "dom0 finished its script and QEMU stopped on its own"
[ $secs -lt 480 ]
ok $? "within the 8-minute budget (${secs} s)"
exit $fail
