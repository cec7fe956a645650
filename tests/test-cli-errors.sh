#!/bin/sh
# Bad input to `pml-migrate run` gets a one-line error and exit code 2
# (usage) or 1 (bad image / runtime), never a crash or a hang.
. "$(dirname "$0")/tap.sh"

# expect CODE PATTERN DESCRIPTION -- ARGS...
expect() {
	code=$1 pat=$2 what=$3
	shift 4
	timeout 30 "$PM" "$@" >"$T/out" 2>"$T/err"
	rc=$?
	lines=$(wc -l <"$T/err")
	if [ "$rc" = "$code" ] && grep -q -- "$pat" "$T/err" && [ "$lines" -le 2 ]; then
		ok 0 "$what: exit $rc, '$(head -1 "$T/err")'"
	else
		ok 1 "$what: exit $rc (want $code), stderr: $(head -3 "$T/err" | tr '\n' '|')"
	fi
}

echo "1..20"
if [ ! -e /dev/kvm ]; then
	echo "# /dev/kvm absent: image checks that need a VM are skipped"
fi
head -c 100 "$G/idle.elf" >"$T/trunc.elf"
# Keep the headers but cut the file inside the loadable segment.
head -c 3000 "$G/idle.elf" >"$T/cut.elf"
yes "just text, no ELF header here" | head -20 >"$T/text.elf"
# A segment moved below 1 MiB (into the VMM's area): patch p_paddr of phdr 0.
cp "$G/idle.elf" "$T/low.elf"
phoff=$(od -An -tu8 -j32 -N8 "$G/idle.elf" | tr -d ' ')
printf '\000\020\000\000\000\000\000\000' | dd of="$T/low.elf" bs=1 seek=$((phoff + 24)) conv=notrunc 2>/dev/null
# A segment far beyond memory.
cp "$G/idle.elf" "$T/high.elf"
printf '\000\000\000\000\001\000\000\000' | dd of="$T/high.elf" bs=1 seek=$((phoff + 24)) conv=notrunc 2>/dev/null

expect 2 "missing IMAGE" "no image" -- run
expect 2 "unknown option" "unknown flag" -- run --frobnicate "$G/idle.elf"
expect 2 "\-\-mem '0'" "--mem 0" -- run --mem 0 "$G/idle.elf"
expect 2 "\-\-mem '3M'" "--mem not a multiple of 2M" -- run --mem 3M "$G/idle.elf"
expect 2 "\-\-mem 'lots'" "--mem garbage" -- run --mem lots "$G/idle.elf"
expect 2 "\-\-vcpus '9'" "--vcpus 9" -- run --vcpus 9 "$G/idle.elf"
expect 2 "\-\-dirty-log 'pml'" "unknown dirty log" -- run --dirty-log pml "$G/idle.elf"
expect 2 "\-\-name" "bad VM name" -- run --name ../etc "$G/idle.elf"
expect 2 "unknown command" "unknown command" -- frobnicate
expect 1 "No such file" "missing image file" -- run "$T/nope.elf"
if [ -e /dev/kvm ]; then
	expect 1 "truncated" "truncated image" -- run "$T/trunc.elf"
	expect 1 "past the end" "image cut inside a segment" -- run "$T/cut.elf"
	expect 1 "not an ELF" "non-ELF file" -- run "$T/text.elf"
	expect 1 "outside guest memory" "segment below the image base" -- run "$T/low.elf"
	expect 1 "outside guest memory" "segment beyond guest memory" -- run --mem 16M "$T/high.elf"
else
	for i in 1 2 3 4 5; do n=$((n + 1)); echo "ok $n # SKIP /dev/kvm absent"; done
fi
"$PM" run --help >"$T/out" 2>&1
grep -q -- "--dirty-log" "$T/out"
ok $? "run --help documents its options (exit 0)"

# A guest that crashes: the report says where its vCPU stood (its ud2).
ud=$(fault_rip idle.elf)
if [ -e /dev/kvm ]; then
	expect 1 "triple fault (rip=0x$ud .*cs=0x1b" "a guest that triple-faults (fault=1): the error says where" -- run "$G/idle.elf" -- fault=1
else
	ok 0 "# SKIP triple-fault report: /dev/kvm absent"
fi

# A reader that went away costs a failed write, never the process: the one
# hosting a VM died of SIGPIPE (and its guest with it) when a destination
# closed mid-stream. Here the reader is gone before the help is written;
# SIGPIPE is set to its default first, whatever the harness inherited.
for cmd in run attach send; do
	env --default-signal=PIPE sh -c '( sleep 0.2; "$0" "$1" --help; echo $? >"$2" ) | true' "$PM" $cmd "$T/rc" 2>/dev/null
	rc=$(cat "$T/rc")
	[ "$rc" = 0 ]
	ok $? "$cmd --help into a closed pipe: no death by SIGPIPE (exit $rc)"
done
exit $fail
