#!/bin/sh
# A real guest on the real Xen 4.17, moved live by pml-migrate (issue 22).
# Debian's own kernel boots as an `xl create`d PVH domU with its PV
# console, a vif on a dom0 bridge and a disk (a loop device both "hosts"
# see), from a busybox initramfs (tests/xen-domu-init) that counts on its
# console, echoes TCP on port 7 and writes to and reads from its disk when
# asked (ports 8, 9). One TCP connection from dom0 stays open the whole
# run. In order:
#   - `xl migrate` to localhost: the reference (its time and the guest's
#     stall printed) and the proof that the lab can move this guest;
#   - faults, each of which must leave the guest running at the source,
#     devices and all: the link cut before READY (a cancelled suspend),
#     a guest that does not answer the suspend request (paused by xl);
#   - `pml-migrate send lx` over TLS with no process hosting the domain
#     (send starts one for that migration): the domain runs on under its
#     name as the agent's session restored it through libxl, the source's
#     copy is gone;
#   - onward from that session to another agent;
#   - `xl shutdown` of the moved domain, and its keeper session ends;
#   - a second guest moved to an agent and rebooted there: the session
#     keeping it restarts it, as its configuration's on_reboot says.
# After each move: the counter went on (the guest's own clock says how
# long it stalled), the TCP connection carries data, the disk holds what
# the guest wrote before and takes what it writes; over the whole run the
# counter never repeated or skipped a number (one boot).
#
# The guest is kept quiet: the dom0 client talks only when a check asks,
# the counter forks nothing. In this emulated lab a busy Linux domU dies
# now and then of an emulation fault (QEMU 7.2's SVM: see the README's Xen
# section); a failed check prints the guest's oops, if any, and says when
# it is that one.
. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/xen-lib.sh"
Q=${QEMU:-$(command -v qemu-system-x86_64)}
if [ -z "$Q" ] || [ ! -x "$Q" ]; then skip_all "qemu-system-x86_64 not installed (it runs Xen here)"; fi
if ! grep -q 'HAVE_XEN 1' "${TOP_BUILDDIR:-.}/config.h" 2>/dev/null; then
	skip_all "pml-migrate was built without the Xen libraries (configure --with-xen=no or no libxen-dev)"
fi
QEMU=$Q
# One emulated CPU for Xen: with two (and one TCG thread for both), this
# guest died of the lab's emulation fault (README, Xen section) in about
# half the runs, mostly right after a move; with one, in none of the
# runs so far. Slower to boot.
export XEN_QEMU_SMP=${XEN_QEMU_SMP:-1}
PM=${TOP_BUILDDIR:-.}/pml-migrate
echo "1..19"

cat >"$T/dom0.sh" <<'DOM0'
PM=/bin/pml-migrate
R() { echo "XT $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
L=/var/log/xen/console
# The guests' consoles into files (one per domain name, the moved one's
# included): this lab's xenconsoled runs without logging.
kill "$(cat /run/xenconsoled.pid)"; sleep 0.2
mkdir -p $L; xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=$L
# ticks: every TICK line the guest printed, in order, as N:UPTIME.
# (Both domains' logs, ordered by the counter: the moved domain's log is
# named after its temporary name, lx--incoming.)
ticks() { cat $L/guest-*.log 2>/dev/null | tr -d '\r' | sed -n 's/^TICK \([0-9]*\) up=\([0-9.]*\).*/\1:\2/p' | sort -t: -k1,1n; }
lasttick() { ticks | tail -n 1 | cut -d: -f1; }
# waitlog PATTERN SECONDS
waitlog() { for i in $(seq $(($2 * 5))); do cat $L/guest-*.log 2>/dev/null | grep -q "$1" && return 0; lab_fault && return 1; sleep 0.2; done; return 1; }
# waittick_above N SECONDS
waittick_above() { for i in $(seq $(($2 * 5))); do [ "$(lasttick)" -gt "$1" ] 2>/dev/null && return 0; lab_fault && return 1; sleep 0.2; done; return 1; }
# What the disk's first sector holds, read from the file behind the loop
# device (the loop driver writes through the file's page cache; dom0's
# cache of /dev/loop0 itself is not told of what blkback wrote).
diskword() { dd if=/tmp/disk.img bs=512 count=1 2>/dev/null | tr -d '\000' | head -n 1; }
# The guest's disk, through the guest: write a line, read the sector.
gwrite() { echo "$1" | timeout 60 nc 10.0.0.2 8; }
gread() { timeout 60 nc 10.0.0.2 9 </dev/null; }
# contail: the end of the guest's console, for a failed check.
contail() { cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -v '^TICK' | tail -n 12 | tr '\n' '|' | cut -c1-1500; }

for m in llc stp bridge xen-netback xen-blkback loop; do insmod /lib/modules/$m.ko* || R "insmod $m failed"; done
brctl addbr xenbr0 && ip addr add 10.0.0.1/24 dev xenbr0 && ip link set xenbr0 up
dd if=/dev/zero of=/tmp/disk.img bs=1M count=4 2>/dev/null
printf 'SEED from dom0\n' | dd of=/tmp/disk.img bs=512 count=1 conv=notrunc,sync 2>/dev/null
for i in $(seq 50); do [ -b /dev/loop0 ] && break; sleep 0.1; done
losetup /dev/loop0 /tmp/disk.img || R "losetup failed"
cat >/tmp/lx.cfg <<CFG
name = "lx"
type = "pvh"
kernel = "/guest/vmlinuz"
ramdisk = "/guest/domu.cpio.gz"
cmdline = "console=hvc0 net=1"
memory = 128
vcpus = 1
on_crash = "preserve"
tsc_mode = "native"
vif = [ "mac=00:16:3e:5a:00:01,bridge=xenbr0,script=/bin/xen-hotplug.sh" ]
disk = [ "format=raw,vdev=xvda,access=rw,script=/bin/xen-hotplug.sh,target=/dev/loop0" ]
CFG
# Why tsc_mode native: in Xen's default mode it intercepts RDTSCP here,
# and QEMU's SVM reports it as an RDTSC exit Xen cannot decode: the guest
# would loop on its first rdtscp.

# The guest. When it dies of the lab's emulation fault (its console
# says so: see the README's Xen section), what it was doing is done again
# on a fresh boot, at most MAXBOOT boots in all; every such death is
# reported. Nothing else is retried.
MAXBOOT=5 BOOTS=0 ECHOPID=
lab_fault() { cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -q 'CR2: fffffe0000001ff8'; }
# lab_dead: that oops, or the guest stopped counting (no tick for 30 s)
# while its domain runs, neither paused, shut down nor gone: the same
# fault seen without its oops reaching the console. Said after a step,
# not during one of our migrations.
lab_dead() {
	lab_fault && return 0
	case $(xl list lx 2>/dev/null | awk 'NR == 2 {print $5}') in *p* | *s* | *c* | *d* | "") return 1 ;; esac
	! waittick_above "$(lasttick)" 30
}
# One TCP connection per boot, open the whole time: lines are sent only
# when a check asks (talk), the connection idle in between, so the guest
# takes as few interrupts as the checks allow.
# talk: three lines through the connection; waits (bounded) for their echo.
talk() {
	for j in 1 2 3; do echo "line $EC" >&4; EC=$((EC + 1)); sleep 0.3; done
	for i in $(seq 300); do [ "$(wc -l </tmp/echo.out)" -ge $EC ] && break; sleep 0.2; done
}
# boot_guest: a fresh lx, up with its network, disk and connection; what
# an earlier boot left (hosts, domains, console logs) goes first.
boot_guest() {
	while [ $BOOTS -lt $MAXBOOT ]; do
		BOOTS=$((BOOTS + 1))
		for p in $(ps -o pid,args | grep '[p]ml-migrate attach' | awk '{print $1}'); do kill -9 $p; done
		for d in $(xl list | awk 'NR>1 && $1 != "Domain-0" {print $1}'); do xl destroy $d; done
		[ -n "$ECHOPID" ] && { exec 4>&-; kill $ECHOPID 2>/dev/null; }
		mkdir -p /tmp/boot$BOOTS; mv $L/guest-*.log /tmp/boot$BOOTS/ 2>/dev/null
		rm -f /tmp/echo.in /tmp/echo.out /run/dstA/lx.result.json /run/dstB/lx.result.json
		boot_once
		lab_dead || return 0
		R "labfault boot $BOOTS $(lab_oops)"
	done
	return 1
}
lab_oops() {
	o=$(cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -m1 -E 'RIP:' | cut -c1-120)
	echo "${o:-no oops: the guest stopped counting at $(ticks | tail -n 1)}"
}
boot_once() {
	t0=$(up)
	timeout 600 xl create /tmp/lx.cfg >/tmp/create.out 2>&1
	rc=$?
	R "create rc=$rc secs=$(awk "BEGIN{print $(up)-$t0}") $(tail -n 2 /tmp/create.out | tr '\n' ' ')"
	if [ $rc != 0 ]; then # what went wrong, and nothing else to do
		R "create-out $(grep -v '^Parsing' /tmp/create.out | tr '\n' ' ' | cut -c1-1500)"
		R "create-dmesg $(xl dmesg | tail -n 8 | tr '\n' ' ' | cut -c1-800)"
		for f in /var/log/xen/*.log; do R "create-log $f $(tail -n 5 "$f" | tr '\n' ' ' | cut -c1-600)"; done
		exit 0
	fi
	waitlog DOMU-INIT 600; R "init secs=$(awk "BEGIN{print $(up)-$t0}") $(cat $L/guest-lx.log | tr -d '\r' | grep -m1 DOMU-INIT)"
	waitlog DOMU-NET 120; R "net $(cat $L/guest-lx.log | tr -d '\r' | grep -m1 -E 'DOMU-NET|DOMU-DISK')"
	waitlog DOMU-DISK-AT-BOOT 120
	R "console-boot $(contail)"
	R "disk-at-boot $(cat $L/guest-lx.log | tr -d '\r' | grep -m1 DOMU-DISK-AT-BOOT)"
	waittick_above 3 120
	ping -c 2 -W 5 10.0.0.2 >/dev/null 2>&1; R "ping rc=$?"
	mkfifo /tmp/echo.in
	timeout 1800 nc 10.0.0.2 7 </tmp/echo.in >/tmp/echo.out 2>/dev/null &
	ECHOPID=$!
	exec 4>/tmp/echo.in
	EC=0
	talk
	R "echo-before $(wc -l </tmp/echo.out)"
	R "disk-write $(gwrite "BEFORE $(lasttick)") dom0-reads=$(diskword)"
}
# pml-migrate: the same guest, moved live over TLS by the engine, from a
# host process that adopts the running domain (attach --live) to an agent
# whose session has libxl restore it.
waitfile() { for i in $(seq 3000); do [ -s "$1" ] && return 0; sleep 0.2; done; return 1; }
waitctl() { for i in $(seq 1500); do $PM ctl "$1" status >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }
tl() { tail -n ${2:-3} "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-600; }
bwait() {
	for i in $(seq $(($2 * 5))); do kill -0 $1 2>/dev/null || break; sleep 0.2; done
	kill -0 $1 2>/dev/null && { R "hung $3"; kill -9 $1; }
	wait $1
}
mkdir -m 0700 /run/pmg /run/dstA /run/dstB; export PML_MIGRATE_RUNDIR=/run/pmg
# PMG_XEN_WATCH=S (host environment): every S seconds, what runs and
# what the logs say, for a run that hangs.
if [ "@WATCH@" -gt 0 ] 2>/dev/null; then
	( while :; do sleep @WATCH@; echo "XW $(up) $(ps -o pid,stat,args | grep -E '[p]ml-migrate|[r]elay|[x]l |save-helper' | tr '\n' '|' | cut -c1-700)"
		for f in /tmp/agentA.log /tmp/agentB.log /tmp/cut.send /tmp/deaf.send /tmp/pm.send /tmp/lxatt.err /tmp/relay.out; do
			[ -s $f ] && echo "XW $f $(tail -n 3 $f | tr '\n' '|' | cut -c1-500)"; done
		echo "XW guest $(ticks | tail -n 1) $(cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -v '^TICK' | tail -n 4 | tr '\n' '|' | cut -c1-600)"
		done ) &
fi
AGENT="$PM recv --listen 127.0.0.1:0 --handshake-timeout 600 --timeout 300"
$AGENT --certs /certs --run-dir /run/dstA --port-file /tmp/portA 2>/tmp/agentA.log &
$AGENT --insecure --run-dir /run/dstB --port-file /tmp/portB 2>/tmp/agentB.log &
waitfile /tmp/portA; waitfile /tmp/portB; PA=$(cat /tmp/portA) PB=$(cat /tmp/portB)
SEND="timeout 900 $PM send --setup-timeout 600 --link-timeout 120"
# probe CHECK: the guest is fine - its counter goes on, the TCP connection
# carries data again, the disk answers.
probe() {
	k=$(lasttick) e=$(wc -l </tmp/echo.out)
	waittick_above $((k + 2)) 300
	talk
	R "$1 ticks=$k->$(lasttick) echo=$e->$(wc -l </tmp/echo.out) disk=$(gwrite "$1 $(lasttick)")/$(diskword) domains=$(xl list | awk 'NR>1{print $1}' | tr '\n' ,)"
}
# run_phase NAME FN: FN on the live guest; again on a fresh one when the
# guest died of the lab's fault in it (the death is reported).
run_phase() {
	while :; do
		$2
		lab_dead || return 0
		R "labfault $1 boot $BOOTS $(lab_oops)"
		boot_guest || return 1
	done
}

phase_faults() {
$PM attach --live lx --json >/tmp/lxatt.json 2>/tmp/lxatt.err &
AP=$!
waitctl lx; R "pm-status $($PM ctl lx status 2>&1 | cut -c1-400)"

# Faults first: each must leave the guest running here, devices and all.
# (a) The link cut after the last pages and the state, before READY: the
#     destination destroys what libxl built, the source cancels the
#     guest's suspend.
rm -f /tmp/rport
relay --target $PB --port-file /tmp/rport --at s2d:STATE_DONE --action cut --max-seconds 900 >/tmp/relay.out 2>&1 &
waitfile /tmp/rport
$SEND lx 127.0.0.1:$(cat /tmp/rport) --insecure --no-resume --json >/tmp/cut.send 2>&1
R "cut-send rc=$? $(grep -v '^{"event":"progress' /tmp/cut.send | tail -n 2 | tr '\n' ' ' | cut -c1-600)"
R "cut-relay $(grep -m1 '^cut at' /tmp/relay.out)"
for i in $(seq 300); do xl list | grep -q 'lx--incoming' || break; sleep 0.2; done
probe cut-after
# (b) The guest does not answer the suspend request (paused by the
#     operator): libxl gives up after its 60 s, the migration fails, the
#     guest runs on once unpaused.
xl pause lx
$SEND lx 127.0.0.1:$PA --certs /certs --node sender --peer agent --json >/tmp/deaf.send 2>&1
R "deaf-send rc=$? $(grep -v '^{"event":"progress' /tmp/deaf.send | tail -n 2 | tr '\n' ' ' | cut -c1-600)"
xl unpause lx
for i in $(seq 300); do xl list | grep -q 'lx--incoming' || break; sleep 0.2; done
# Its host leaves; the domain stays as the toolstack has it.
R "host-stop $($PM ctl lx stop 2>&1 | cut -c1-200)"
bwait $AP 120 attach; R "host-gone rc=$? $(cut -c1-300 /tmp/lxatt.json)"
probe deaf-after
}

phase_moves() {
# The move, over TLS: send alone (no process hosts the domain now: it
# starts one for this migration).
e1=$(wc -l </tmp/echo.out) k1=$(lasttick)
t3=$(up)
$SEND lx 127.0.0.1:$PA --certs /certs --node sender --peer agent --json >/tmp/pm.send 2>/tmp/pm.send.err
R "pm-send rc=$? secs=$(awk "BEGIN{print $(up)-$t3}")"
R "pm-send-json $(tail -n 1 /tmp/pm.send | cut -c1-1500)"
R "pm-send-err $(tl /tmp/pm.send.err)"
for i in $(seq 300); do $PM ctl lx status >/dev/null 2>&1 || break; sleep 0.2; done
for i in $(seq 300); do xl list | grep -q 'lx--migratedaway' || break; sleep 0.2; done
R "pm-src $($PM ctl lx status 2>&1 | cut -c1-200)"
R "pm-domains $(xl list | awk 'NR>1{print $1}' | tr '\n' ,)"
R "pm-agent $(tl /tmp/agentA.log 6)"
waittick_above $((k1 + 3)) 300
R "pm-ticks-after last=$(lasttick) before=$k1"
R "pm-console-after $(contail)"
talk
R "pm-disk-after guest-reads=$(gread) wrote=$(gwrite "AFTER2 $(lasttick)") dom0-reads=$(diskword)"
R "pm-echo-after before=$e1 now=$(wc -l </tmp/echo.out) last=$(tail -n 1 /tmp/echo.out)"
R "pm-window $k1 $(lasttick)"
R "pm-list $(PML_MIGRATE_RUNDIR=/run/dstA $PM list 2>&1 | tr '\n' ' ' | cut -c1-300)"

# Onward, from the session that received it (its control socket is in
# the agent's run directory) to the other agent.
PML_MIGRATE_RUNDIR=/run/dstA $SEND lx 127.0.0.1:$PB --insecure --json >/tmp/on.send 2>&1
R "on-send rc=$? $(tail -n 1 /tmp/on.send | cut -c1-400)"
for i in $(seq 300); do [ -s /run/dstA/lx.result.json ] && break; sleep 0.2; done
R "on-hop1 $(cut -c1-300 /run/dstA/lx.result.json 2>/dev/null)"
probe on-after
e0=$(wc -l </tmp/echo.out) k0=$(lasttick)
# Then xl's own live migration, to localhost, of the domain the session
# holds: the toolstack treats it as its own (its libxl configuration was
# recorded by libxl's restore); and the reference figures.
t1=$(up)
timeout 900 xl migrate -s '' lx 'xl migrate-receive' >/tmp/migrate.out 2>&1
R "xl-migrate rc=$? secs=$(awk "BEGIN{print $(up)-$t1}") domains=$(xl list | awk 'NR>1{print $1}' | tr '\n' ,)"
R "xl-migrate-out $(tail -n 3 /tmp/migrate.out | tr '\n' ' ' | cut -c1-300)"
waittick_above $((k0 + 3)) 300
R "ticks-after last=$(lasttick) before=$k0"
R "console-after $(contail)"
talk
R "disk-after guest-reads=$(gread) wrote=$(gwrite "AFTER3 $(lasttick)") dom0-reads=$(diskword)"
R "echo-after before=$e0 now=$(wc -l </tmp/echo.out) last=$(tail -n 1 /tmp/echo.out)"
R "xl-window $k0 $(lasttick)"
for i in $(seq 150); do [ -s /run/dstB/lx.result.json ] && break; sleep 0.2; done
R "session-end $(cut -c1-600 /run/dstB/lx.result.json 2>/dev/null)"
}

boot_guest && run_phase faults phase_faults && run_phase moves phase_moves || R "gaveup after $BOOTS boots"
R "boots $BOOTS"

exec 4>&-
R "ticks $(ticks | tr '\n' ' ')"

t2=$(up)
timeout 300 xl shutdown -w lx >/tmp/shutdown.out 2>&1
rc=$?
# -w returns once it shut down; the monitor then destroys it.
for i in $(seq 300); do xl list lx >/dev/null 2>&1 || break; sleep 0.2; done
R "shutdown rc=$rc secs=$(awk "BEGIN{print $(up)-$t2}") left=$(xl list | awk 'NR>1{print $1}' | tr '\n' ,) $(cat $L/guest-*.log | tr -d '\r' | grep -m1 DOMU-POWEROFF)"
# A kernel oops of the guest, if any: its first lines, for the report.
cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -v '^TICK' | grep -m1 -A14 -E 'BUG:|Oops:|Kernel panic' | sed 's/^/XT oops /'

# on_reboot: a domain a session keeps (moved here by pml-migrate, no xl
# process watching it) reboots; the session does what its configuration
# says (xl's default: restart), as xl's monitor would. A second, smaller
# guest (2 vCPUs, no vif, no disk), alone on the console logs; done again on a
# fresh one if the lab's fault kills it (at most 3).
sed -e 's/^name = "lx"/name = "lr"/' -e 's/^vcpus = 1/vcpus = 2/' -e '/^vif/d' -e '/^disk/d' -e 's/ net=1//' /tmp/lx.cfg >/tmp/lr.cfg
inits() { cat $L/guest-*.log 2>/dev/null | tr -d '\r' | grep -c DOMU-INIT; }
for a in 1 2 3; do
	xl destroy lr 2>/dev/null
	mkdir -p /tmp/lr$a; mv $L/guest-*.log /tmp/lr$a/ 2>/dev/null
	rm -f /run/dstB/lr.result.json
	timeout 600 xl create /tmp/lr.cfg >/tmp/lrcreate.out 2>&1
	R "lr-create rc=$? $(tail -n 1 /tmp/lrcreate.out)"
	waitlog DOMU-INIT 600 && waittick_above 2 120
	$SEND lr 127.0.0.1:$PB --insecure --json >/tmp/lr.send 2>&1
	R "lr-send rc=$? $(tail -n 1 /tmp/lr.send | cut -c1-300)"
	k=$(lasttick); waittick_above $((k + 1)) 300
	xl reboot lr >/tmp/lrreboot.out 2>&1
	R "lr-reboot rc=$? $(cat /tmp/lrreboot.out | tr '\n' ' ' | cut -c1-200)"
	# (deadlines by dom0's clock: each turn of these loops is slow here)
	d=$(($(cut -d. -f1 /proc/uptime) + 60))
	while [ ! -s /run/dstB/lr.result.json ] && [ "$(cut -d. -f1 /proc/uptime)" -lt $d ]; do sleep 0.5; done
	d=$(($(cut -d. -f1 /proc/uptime) + 600))
	while [ "$(inits)" -lt 2 ] && ! lab_fault && [ "$(cut -d. -f1 /proc/uptime)" -lt $d ]; do sleep 1; done
	R "lr-result $(cut -c1-700 /run/dstB/lr.result.json 2>/dev/null)"
	R "lr-after inits=$(inits) domains=$(xl list | awk 'NR>1{print $1}' | tr '\n' ,)"
	R "lr-agent $(tl /tmp/agentB.log 4)"
	lab_fault || break
	R "labfault reboot try $a $(lab_oops)"
done
xl destroy lr 2>/dev/null
DOM0

sed -i "s|@WATCH@|${PMG_XEN_WATCH:-0}|g" "$T/dom0.sh"
start=$(date +%s)
if ! xen_fetch; then
	ok 1 "fetching Xen 4.17 and a kernel from the Debian archive"
	exit 1
fi
xen_domu_initrd "$T/domu.cpio.gz" || { ok 1 "building the domU initramfs"; exit 1; }
"$PM" certs init "$T/certs" >/dev/null && "$PM" certs issue "$T/certs" agent >/dev/null &&
	"$PM" certs issue "$T/certs" sender >/dev/null || { ok 1 "making test certificates"; exit 1; }
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$XEN_CACHE/vmlinuz" "$T/domu.cpio.gz" "$(dirname "$0")/xen-hotplug.sh" \
	"$PM" "${TOP_BUILDDIR:-.}/tests/relay" "$T"/certs/ca.pem "$T"/certs/agent.pem "$T"/certs/agent.key "$T"/certs/sender.pem "$T"/certs/sender.key ||
	{ ok 1 "building the dom0 initramfs"; exit 1; }
xen_boot "$T/initrd.img" "${PMG_XEN_TEST_TIMEOUT:-3600}" "$T/boot.log"
secs=$(($(date +%s) - start))
cp "$T/boot.log" "${TOP_BUILDDIR:-.}/tests/test-xen-linux.boot.log" 2>/dev/null
# xt NAME: what dom0 said last under NAME (a step done again on a fresh
# boot says it again).
xt() { sed -n "s/^XT $1 //p" "$T/boot.log" | tr -d '\r' | tail -n 1; }
show() { for k in "$@"; do printf '#   %s: %s\n' "$k" "$(xt "$k" | cut -c1-600)"; done; }
field() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }
echo "# lab: $(xen_versions) (cache $XEN_CACHE); whole test $secs s; guest boots: $(xt boots)"
# Each death of the guest from the lab's emulation fault, and the step
# that was done again on a fresh boot because of it.
sed -n 's/^XT labfault /# the guest died of the lab'"'"'s emulation fault (done again on a fresh boot): /p' "$T/boot.log" | tr -d '\r' | cut -c1-220

c=$(xt create) g=$(xt gaveup)
echo "$c" | grep -q '^rc=0 ' && xt init | grep -q DOMU-INIT && [ -z "$g" ]
r=$?
ok $r "xl create of a Linux PVH domU (Debian's kernel, vif, disk): $c; /init after $(xt init | cut -d' ' -f1)${g:+; the lab's fault killed every guest: gave up $g (what follows may be an earlier boot's)}"
[ $r = 0 ] || { show create-out create-dmesg; sed -n 's/^XT create-log /#   /p' "$T/boot.log"; }
xt net | grep -q 'DOMU-NET 10.0.0.2' && [ "$(xt ping)" = "rc=0" ] && [ "$(xt echo-before)" -ge 3 ] 2>/dev/null
ok $? "its network: $(xt net); ping $(xt ping); a TCP connection from dom0 echoes ($(xt echo-before) lines)"
xt disk-at-boot | grep -q 'SEED from dom0' && xt disk-write | grep -q '^wrote dom0-reads=BEFORE [0-9]'
ok $? "its disk: it read what dom0 wrote before it booted ($(xt disk-at-boot)); dom0 reads what it wrote ($(xt disk-write))"

# The guest's own view: consecutive TICKs, and the largest gap of its
# clock between two of them (1 s plus whatever the move took from it).
tk=$(xt ticks)
# window FROM TO: the guest's largest gap between two consecutive ticks
# numbered FROM..TO (1 s plus what a move took from it), or "none".
window() {
	echo "$tk" | tr ' ' '\n' | awk -F: -v a="$1" -v b="$2" 'NF == 2 && $1 >= a && $1 <= b {
			if (n++ && $2 - pu > gap) gap = $2 - pu
			pu = $2
		}
		END { if (n > 1) printf "%.2f\n", gap; else print "none" }'
}
# after NAME: the counter went on (ticks-after's last > before).
after() { xt "$1" | awk '{ split($1, l, "="); split($2, b, "="); exit !(l[2] > b[2]) }'; }
xw=$(xt xl-window) pw=$(xt pm-window)
xgap=$(window $xw) pgap=$(window $pw)
# probed NAME: what probe() saw says the guest runs on, devices and all,
# as the only domain lx.
probed() {
	xt "$1" | awk -v n="$1" '{
		split($1, t, /[=>-]+/); split($2, e, /[=>-]+/)
		ok = t[3] > t[2] + 1 && e[3] > e[2] + 1 && index($3, "disk=wrote/" n) == 1 && $NF == "domains=Domain-0,lx,"
		exit !ok }'
}
c=$(xt cut-send)
echo "$c" | grep -q '^rc=1 .*"result":"failed"' && probed cut-after
r=$?
ok $r "the link cut after the final pages and the state, before READY: the migration failed ($(echo "$c" | cut -c1-160)), the guest's suspend was cancelled and it runs on here, devices and all: $(xt cut-after)"
[ $r = 0 ] || show cut-send cut-relay
c=$(xt deaf-send)
echo "$c" | grep -q '^rc=1 .*did not suspend' && probed deaf-after
r=$?
ok $r "a guest that does not answer the suspend request: the migration failed after libxl's 60 s ($(echo "$c" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p' | cut -c1-160)), the guest runs on: $(xt deaf-after)"
[ $r = 0 ] || show deaf-send

# pml-migrate's move of the same guest.
ps=$(xt pm-send) pj=$(xt pm-send-json)
echo "$ps" | grep -q '^rc=0 ' && echo "$pj" | grep -q '"result":"migrated"' && [ "$(xt pm-domains)" = "Domain-0,lx," ]
r=$?
ok $r "pml-migrate send over TLS moved the xl-created domain (domains after: $(xt pm-domains)): $ps (downtime $(field "$pj" downtime_ms) ms, $(field "$pj" rounds) rounds, $(field "$pj" bytes_on_wire) bytes on the wire)"
[ $r = 0 ] || show pm-status pm-send-json pm-send-err pm-agent pm-session pm-src
# The explicit host stayed through both failed migrations (a cancelled
# suspend is not the toolstack's) and left on ctl stop, not before.
hs=$(xt host-stop)
xt pm-src | grep -q "no VM named 'lx'" && echo "$hs" | grep -q '"ok":true' &&
	xt host-gone | grep -q '^rc=1 .*"result":"stopped"' && ! xt host-gone | grep -q 'by the toolstack'
r=$?
ok $r "the host send started for the domain left once it moved ($(xt pm-src | cut -c1-100)); the explicit attach --live host stayed through both failed migrations and left on ctl stop ($(echo "$hs" | cut -c1-80)), the domain running on ($(xt host-gone | sed -n 's/.*"detail":"\([^"]*\)".*/\1/p' | cut -c1-120))"
[ $r = 0 ] || show pm-src host-stop host-gone
after pm-ticks-after
r=$?
ok $r "after pml-migrate the guest's counter went on ($(xt pm-ticks-after)); its longest stall: $pgap s between two ticks a second apart"
[ $r = 0 ] || show pm-console-after pm-session
e=$(xt pm-echo-after)
echo "$e" | awk '{ split($1, b, "="); split($2, n, "="); exit !(n[2] > b[2] + 2) }'
ok $? "after pml-migrate the TCP connection opened before the moves carries data: $e"
d=$(xt pm-disk-after)
echo "$d" | grep -q '^guest-reads=deaf-after [0-9]* wrote=wrote dom0-reads=AFTER2 [0-9]'
ok $? "after pml-migrate the guest reads what it wrote to its disk before, and what it writes reaches dom0's file ($d)"

o=$(xt on-send)
# (list there shows the domain's RAM, 128 MiB and the special pages, not
# the 4 GiB its p2m spans.)
echo "$o" | grep -q '^rc=0 .*"result":"migrated"' && xt on-hop1 | grep -q '"result":"migrated"' && probed on-after &&
	xt pm-list | grep -Eq ' lx +running +[0-9]+ +xen:[0-9]+ +1[23][0-9]M +1 '
r=$?
ok $r "onward from the session that received it (listed there as $(xt pm-list | grep -o ' lx .*' | awk '{print $2, $4, $5}')) to another agent: migrated, the guest runs on: $(xt on-after)"
[ $r = 0 ] || show on-send on-hop1 pm-list

m=$(xt xl-migrate)
echo "$m" | grep -q '^rc=0 ' && echo "$m" | grep -q 'domains=Domain-0,lx,$'
r=$?
ok $r "xl migrate of the moved domain to localhost: the toolstack moves it as its own ($m)"
[ $r = 0 ] || show xl-migrate-out
after ticks-after
r=$?
ok $r "after xl migrate the guest's counter went on ($(xt ticks-after)); its longest stall: $xgap s between two ticks a second apart"
[ $r = 0 ] || show console-after
echo "# the same guest in the same run: pml-migrate $(echo "$ps" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p') s in all, the guest's largest tick gap $pgap s; xl migrate $(echo "$m" | sed -n 's/.*secs=\([0-9.]*\).*/\1/p') s, $xgap s"
e=$(xt echo-after)
echo "$e" | awk '{ split($1, b, "="); split($2, n, "="); exit !(n[2] > b[2] + 2) }'
ok $? "after xl migrate the TCP connection opened before all the moves carries data: $e"
d=$(xt disk-after)
echo "$d" | grep -q '^guest-reads=on-after [0-9]* wrote=wrote dom0-reads=AFTER3 [0-9]'
ok $? "after xl migrate the guest reads what it wrote to its disk before, and what it writes reaches dom0's file ($d)"


# The guest's own view over the whole run: one boot, one counter.
echo "$tk" | tr ' ' '\n' | awk -F: 'NF == 2 { if (n++ && $1 != prev + 1) bad = bad " " prev "->" $1; prev = $1 }
	END { printf "%s %d\n", bad ? bad : "none", n }' >"$T/seq"
read -r bad cnt <"$T/seq" # (not n: tap.sh counts with it)
[ "$bad" = none ] && [ "${cnt:-0}" -gt 10 ]
ok $? "over all the moves the counter never repeated or skipped a number ($cnt ticks; irregular: $bad)"
s=$(xt shutdown)
echo "$s" | grep -q '^rc=0 .*left=Domain-0, .*DOMU-POWEROFF'
ok $? "xl shutdown of the moved domain: it powers itself off and is gone ($s)"
xt session-end | grep -q '"result":"stopped"'
ok $? "the session that kept the domain ended when xl migrate took it away: $(xt session-end | cut -c1-200)"
l=$(xt lr-result)
xt lr-send | grep -q '^rc=0 .*"result":"migrated"' && echo "$l" | grep -q '"result":"ok".*"detail":"[^"]*reboot; restart: restarted as domain' &&
	xt lr-after | grep -q '^inits=2 domains=Domain-0,lr,$'
r=$?
ok $r "a moved domain that reboots: its keeper session restarts it as its configuration says (xl's on_reboot default), a fresh boot under its name ($(xt lr-after)): $(echo "$l" | sed -n 's/.*"detail":"\([^"]*\)".*/\1/p' | cut -c1-200)"
[ $r = 0 ] || show lr-create lr-send lr-reboot lr-result lr-agent
# The guest's kernel oopsed: say so, and whether it is the lab's known
# emulation fault (QEMU 7.2's SVM: the entry stack overflowing with page
# faults) rather than anything a migration did.
if grep -q '^XT oops ' "$T/boot.log"; then
	if grep -a '^XT oops ' "$T/boot.log" | grep -q 'fffffe0000001ff8\|ENTRY_TRAMPOLINE'; then
		echo "# the guest's kernel died of the lab's known emulation fault (entry stack overflow, CR2 fffffe0000001ff8):"
	else
		echo "# the guest's kernel oopsed:"
	fi
	sed -n 's/^XT oops /#   /p' "$T/boot.log" | tr -d '\r' | cut -c1-200
fi
exit $fail
