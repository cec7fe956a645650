# tests/migrate-lib.sh - helpers for the end-to-end migration tests;
# source it after tap.sh. Everything runs on 127.0.0.1, every process is
# bounded by timeout(1), and every agent started here is killed on exit.
C="$T/certs"
AGENTS=""
cleanup() {
	# The agents' sessions first (children of the agent, itself a child
	# of timeout(1)): a session holding a VM in doubt waits for ever.
	for p in $AGENTS; do
		for a in $(pgrep -P "$p"); do pkill -KILL -P "$a" 2>/dev/null; done
		kill "$p" 2>/dev/null
	done
	pkill -f "recv --session-fd 3 .*$T" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

make_certs() {
	mkdir -p "$C"
	"$PM" certs init "$C" >/dev/null && "$PM" certs issue "$C" agent >/dev/null &&
		"$PM" certs issue "$C" sender >/dev/null
}

# start_agent TAG RUNDIR [recv options...]: sets PORT and APID.
start_agent() {
	tag=$1 rd=$2
	shift 2
	mkdir -p "$rd"
	rm -f "$T/$tag.port"
	if [ "$1" = "--insecure" ]; then
		timeout 300 "$PM" recv --listen 127.0.0.1:0 --run-dir "$rd" --port-file "$T/$tag.port" "$@" 2>>"$T/$tag.log" &
	else
		timeout 300 "$PM" recv --listen 127.0.0.1:0 --certs "$C" --node agent --allow sender --run-dir "$rd" \
			--port-file "$T/$tag.port" "$@" 2>>"$T/$tag.log" &
	fi
	APID=$!
	AGENTS="$AGENTS $APID"
	for i in $(seq 100); do [ -s "$T/$tag.port" ] && break; sleep 0.05; done
	PORT=$(cat "$T/$tag.port" 2>/dev/null)
}

# start_vm RUNDIR NAME IMAGE MODE GUEST-ARGS...: boots and waits for the socket.
start_vm() {
	rd=$1 name=$2 img=$3 mode=$4
	shift 4
	mkdir -p "$rd"
	PML_MIGRATE_RUNDIR="$rd" timeout 300 "$PM" run "$G/$img.elf" --mem 512M --name "$name" --dirty-log "$mode" \
		--json -- "$@" >"$T/$name.src.json" 2>"$T/$name.src.log" &
	VPID=$!
	for i in $(seq 100); do [ -S "$rd/$name.sock" ] && break; sleep 0.05; done
}

# send_vm RUNDIR NAME PORT [send options...]: the report goes to $T/NAME.send.
send_vm() {
	rd=$1 name=$2 port=$3
	shift 3
	PML_MIGRATE_RUNDIR="$rd" timeout 300 "$PM" send "$name" "127.0.0.1:$port" --certs "$C" --node sender \
		--peer agent --json "$@" >"$T/$name.send" 2>"$T/$name.send.err"
}

# wait_result RUNDIR NAME: the destination's final report.
wait_result() {
	for i in $(seq 600); do [ -s "$1/$2.result.json" ] && return 0; sleep 0.1; done
	return 1
}

# field FILE KEY: a value from the last JSON line of FILE.
field() { tail -n 1 "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",}]*\).*/\1/p"; }

# reference IMAGE GUEST-ARGS...: the digest of an unmigrated run.
reference() {
	img=$1
	shift
	PML_MIGRATE_RUNDIR="$T/refrun" timeout 300 "$PM" run "$G/$img.elf" --mem 512M --dirty-log off --json \
		-- "$@" 2>/dev/null | sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p'
}

# Guests started with until=finish run until asked, so they outlive every
# step a test takes whatever the machine's speed.
# finish_vm RUNDIR NAME: asks NAME (running under RUNDIR) to finish.
finish_vm() { PML_MIGRATE_RUNDIR="$1" "$PM" ctl "$2" finish >/dev/null 2>&1; }

# reference_of IMAGE "GUEST-ARGS" REPORT-FILE: the digest of an unmigrated
# run of exactly the ops REPORT-FILE says the guest did, at full speed
# (pacing does not change a digest); empty without a report.
reference_of() {
	o=$(field "$3" ops)
	[ -n "$o" ] || return 0
	reference "$1" $(echo "$2" | sed 's/until=finish//; s/rate=[0-9]*/rate=0/; s/period_us=[0-9]*/period_us=0/') ops="$o"
}

# new_session TAG OLD: the pid of agent TAG's newest session other than OLD,
# once the agent logs handing it a connection (empty after 5 s).
new_session() {
	local s=""
	for i in $(seq 100); do
		s=$(sed -n 's/.*connection handed to session \([0-9]*\).*/\1/p' "$T/$1.log" | tail -n 1)
		[ -n "$s" ] && [ "$s" != "$2" ] && break
		s=""
		sleep 0.05
	done
	echo "$s"
}
