#!/bin/sh
# The same guest image boots in QEMU through its PVH entry (32-bit entry,
# its own page tables, drop to CPL 3) and reports the same digest as under
# the built-in VMM's direct 64-bit entry.
. "$(dirname "$0")/tap.sh"
Q=${QEMU:-$(command -v qemu-system-x86_64)}
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
if [ -z "$Q" ] || [ ! -x "$Q" ]; then skip_all "qemu-system-x86_64 not installed"; fi
echo "1..6"
for spec in "kvstore:seed=9 data=4M ops=50000" "memstress:seed=9 ws=8M rate=0 ops=20000 dist=zipf" "idle:seed=9 ops=20 period_us=1000"; do
	img=${spec%%:*}
	args=${spec#*:}
	start=$(date +%s%N)
	timeout 120 "$Q" -M microvm,x-option-roms=off,rtc=off -accel kvm -m 128M -kernel "$G/$img.elf" \
		-append "$args" -nodefaults -no-user-config -display none -serial "file:$T/q.out" -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 2>"$T/q.err"
	qrc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	qd=$(sed -n 's/.*PMG-REPORT.* digest=\([0-9a-f]*\).*/\1/p' "$T/q.out")
	qops=$(sed -n 's/.*PMG-REPORT.* ops=\([0-9]*\).*/\1/p' "$T/q.out")
	# isa-debug-exit turns guest exit code 0 into QEMU exit status 1.
	[ "$qrc" = 1 ] && [ -n "$qd" ]
	ok $? "$img under QEMU microvm via PVH: exit $qrc, ops $qops, digest $qd, $ms ms $(head -c 200 "$T/q.err" | tr '\n' ' ')"
	"$PM" run --json --dirty-log off "$G/$img.elf" -- $args >"$T/p.json" 2>/dev/null
	pd=$(sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$T/p.json")
	[ -n "$pd" ] && [ "$pd" = "$qd" ]
	ok $? "$img: same digest in pml-migrate run ($pd) and QEMU ($qd)"
done
exit $fail
