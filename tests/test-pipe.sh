#!/bin/sh
# bench/pipe, the engine's data path end to end without a VM (issue 23):
# pages through the encoder step, the transport (TLS 1.3 and plaintext),
# the stream reader and a decoder arrive bit for bit (bench/pipe compares
# the two memories itself and fails otherwise), in each compression mode
# and for each content; the adaptive mode reports its probe; the guest
# stand-in reports its speed and gaps, also with the workers kept off its
# CPU; bad options are refused with exit 2.
. "$(dirname "$0")/tap.sh"
B=$(cd "$(dirname "$0")/../bench" && pwd)
PMA=$(cd "$(dirname "$PM")" && pwd)/$(basename "$PM")
[ -x "$B/pipe" ] || skip_all "bench/pipe not built (make)"
echo "1..7"

# run NAME ARGS...: bench/pipe, its JSON in $T/NAME.json, bounded.
run() { rn=$1; shift; timeout 120 "$B/pipe" --pm "$PMA" "$@" >"$T/$rn.json" 2>"$T/$rn.err"; }
# field NAME KEY: a value of that JSON.
field() { python3 -c "import json; print(json.load(open('$T/$1.json'))['$2'])" 2>/dev/null; }

run tls-text --mib 32 --content text --compress on
[ $? = 0 ] && [ "$(field tls-text ok)" = True ] && [ "$(field tls-text tls)" = True ] && [ "$(field tls-text lz4_share)" = 1.0 ]
ok $? "TLS, text pages, LZ4: 32 MiB arrive intact, every page in LZ4 ($(cat "$T/tls-text.json" "$T/tls-text.err" | head -c 300))"

run tls-random --mib 32 --content random --compress on
[ $? = 0 ] && [ "$(field tls-random ok)" = True ] && [ "$(field tls-random lz4_share)" = 0.0 ]
ok $? "TLS, random pages with LZ4 asked: intact, every page raw (LZ4 did not pay) ($(head -c 200 "$T/tls-random.json"))"

run plain --mib 32 --content text --compress off --insecure
[ $? = 0 ] && [ "$(field plain tls)" = False ] && [ "$(field plain lz4_share)" = 0.0 ]
ok $? "plaintext, raw pages: intact ($(head -c 200 "$T/plain.json"))"

run auto --mib 96 --content text --compress auto
[ $? = 0 ] && [ "$(field auto probes)" -ge 1 ]
ok $? "auto: the adaptive mode probed at least once over 96 MiB ($(head -c 300 "$T/auto.json"))"

run guest --mib 32 --content random --compress off --guest
g=$(field guest guest_speed)
[ $? = 0 ] && python3 -c "import sys; sys.exit(0 if 0 < $g <= 1.5 else 1)" && [ -n "$(field guest guest_gap_ms)" ]
ok $? "--guest: the stand-in's speed during the transfer over its speed alone, and its longest gap ($(head -c 300 "$T/guest.json"))"

run pinw --mib 32 --content text --compress off --guest --pin-workers
[ $? = 0 ] && [ "$(field pinw ok)" = True ] && [ "$(field pinw pin)" = workers ]
ok $? "--pin-workers: intact with the workers kept off the stand-in's CPU through PML_MIGRATE_WORKER_CPUS ($(head -c 300 "$T/pinw.json"; head -c 200 "$T/pinw.err"))"

"$B/pipe" --mib 8 >"$T/o1" 2>&1; e1=$?
"$B/pipe" --compress maybe >"$T/o2" 2>&1; e2=$?
"$B/pipe" --pin >"$T/o3" 2>&1; e3=$?
[ $e1 = 2 ] && [ $e2 = 2 ] && [ $e3 = 2 ] && grep -q usage "$T/o1" && grep -q "need --guest" "$T/o3"
ok $? "a size under 16 MiB, an unknown mode and --pin without --guest: exit 2 ($e1 $e2 $e3)"
exit $fail
