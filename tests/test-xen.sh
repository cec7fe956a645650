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
echo "1..13"

MS_ARGS="seed=7 ws=16M rate=0 ops=4096"
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
R "domains \$(xl list | awk 'NR>1{print \$1}' | tr '\n' ,)"
DOM0

start=$(date +%s)
if ! xen_fetch; then
	ok 1 "fetching Xen 4.17 and a dom0 kernel from the Debian archive"
	exit 1
fi
xen_initrd "$T/initrd.img" "$T/dom0.sh" "$PM" "$G/memstress.elf" "$G/idle.elf" ||
	{ ok 1 "building the dom0 initramfs"; exit 1; }
xen_boot "$T/initrd.img" 300 "$T/boot.log"
secs=$(($(date +%s) - start))
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
[ "$(xt domains)" = "Domain-0," ]
ok $? "no domain left behind: xl list shows '$(xt domains)'"

grep -q '^XT done' "$T/boot.log"
ok $? "dom0 finished its script and QEMU stopped on its own"
[ $secs -lt 480 ]
ok $? "within the 8-minute budget (${secs} s)"
exit $fail
