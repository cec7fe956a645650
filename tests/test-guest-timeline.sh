#!/bin/bash
# The guest's ops timeline (tl_ms=N): the work done per window of guest time
# and where the largest stall ended, the two things bench/run lines up with
# a migration to compare a guest's speed before, during and after it. A
# 400 ms pause through the control socket must show as that stall, with the
# windows it covers empty and the windows summing to the reported ops; the
# same line must come out under QEMU, whose console the benchmark reads.
. "$(dirname "$0")/tap.sh"
if [ ! -e /dev/kvm ]; then skip_all "/dev/kvm absent"; fi
echo "1..5"
KHZ=$(awk '/^cpu MHz/ { printf "%d", $4 * 1000; exit }' /proc/cpuinfo)
# 64 MB/s = 16384 pages/s = 327 pages per 20 ms window, until asked to
# finish (after the pause: the guest outlives it whatever the machine's speed).
"$PM" run --name tl --dirty-log off "$G/memstress.elf" --mem 256M -- ws=32M rate=64 until=finish tl_ms=20 \
	>"$T/out" 2>"$T/err" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$T"' EXIT
for i in $(seq 50); do [ -S "$T/run/tl.sock" ] && break; sleep 0.1; done
# In its work loop (it polls from there), then a second of work before the pause.
for i in $(seq 600); do "$PM" ctl tl status | grep -q '"guest_polls":[1-9]' && break; sleep 0.05; done
sleep 1
"$PM" ctl tl pause >/dev/null && sleep 0.4 && "$PM" ctl tl resume >/dev/null
sleep 0.2 # some windows after it
"$PM" ctl tl finish >/dev/null
wait $pid
rc=$?
line=$(grep '^PMG-OPS ' "$T/out")
ops=$(sed -n 's/.*PMG-REPORT.* ops=\([0-9]*\).*/\1/p' "$T/out")
[ $rc = 0 ] && [ -n "$line" ] && [ -n "$ops" ]
ok $? "memstress tl_ms=20 printed its timeline (exit $rc): $(cut -c1-120 <<<"$line")..."
# The last batch (16 pages) after the last progress call is not in a window.
read -r win at nwin sum <<<"$(awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	n = split(v["ops"], c, ","); s = 0; for (i = 1; i <= n; i++) s += c[i]
	print v["window_ms"], v["stall_at_ms"], v["windows"], s }' <<<"$line")"
# At least 1 s before the pause, 0.4 s in it and 0.2 s after: 80 windows.
[ "$win" = 20 ] && [ "$sum" -le "$ops" ] && [ "$sum" -ge $((ops - 16)) ] && [ "$nwin" -ge 80 ]
ok $? "20 ms windows ($nwin of them) add up to the reported ops ($sum of $ops)"
# The pause is the largest stall; the windows wholly inside it are empty,
# and the rate-limited guest writes about 327 pages in a window elsewhere.
awk -v at="$at" -v w="$win" '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	n = split(v["ops"], c, ","); bad = 0; busy = 0; k = 0
	for (i = 1; i <= n; i++) {
		t0 = (i - 1) * w; t1 = i * w
		if (t0 >= at - 350 && t1 <= at) { if (c[i] != 0) bad++ }
		else if (t1 < at - 450 && t0 > 400) { k++; if (c[i] > 200 && c[i] < 460) busy++ }
	}
	exit !(bad == 0 && k > 10 && busy >= k * 0.7) }' <<<"$line"
ok $? "the 400 ms pause ends at ${at} ms of guest time, the windows inside it are empty, the ones before it at the guest's rate"
stall=$(sed -n 's/.*max_stall_tsc=\([0-9]*\).*/\1/p' "$T/out")
awk -v t="$stall" -v k="$KHZ" 'BEGIN { exit !(t / k >= 350) }'
ok $? "the largest stall is the pause ($(awk -v t="$stall" -v k="$KHZ" 'BEGIN { printf "%.0f", t / k }') ms)"
Q=${QEMU:-$(command -v qemu-system-x86_64)}
if [ -z "$Q" ] || [ ! -x "$Q" ]; then
	ok 0 "# SKIP qemu-system-x86_64 not installed"
	exit $fail
fi
timeout 60 "$Q" -M microvm,x-option-roms=off,rtc=off -accel kvm -m 256M -kernel "$G/memstress.elf" \
	-append "ws=32M rate=64 ms=600 ops=100000000 tl_ms=50 tsc_khz=$KHZ" -nodefaults -no-user-config -display none \
	-serial "file:$T/q.out" -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 2>"$T/q.err"
grep -q '^PMG-OPS window_ms=50 stall_at_ms=[0-9]* windows=1[0-9] ops=[0-9,]*' "$T/q.out"
ok $? "the same line under QEMU: $(grep -a '^PMG-OPS' "$T/q.out" | cut -c1-100)"
exit $fail
