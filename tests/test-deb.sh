#!/bin/bash
# The Debian package: `dpkg-buildpackage -us -uc -b` from a copy of the
# source tree (it runs `make install` into the package) gives an
# installable .deb holding the binary, the man page, the guest images,
# pml-migrate-agent.service and its options file (a conffile); the unit is
# enabled at install and not started; the unit passes systemd's own check;
# and the agent starts from the package with the options the unit gives it.
. "$(dirname "$0")/tap.sh"
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v dpkg-buildpackage >/dev/null || ! dpkg-query -W -f='${Status}' debhelper 2>/dev/null | grep -q "ok installed"; then
	skip_all "dpkg-buildpackage or debhelper not installed (scripts/setup.sh installs them)"
fi
echo "1..9"
mkdir -p "$T/src" "$T/root"
# The tree as it is (tracked and new files, no build products).
git -C "$SRCDIR" ls-files -z --cached --others --exclude-standard | (cd "$SRCDIR" && tar --null -T - -cf -) |
	tar -x -C "$T/src"
(cd "$T/src" && timeout 900 dpkg-buildpackage -us -uc -b -j2 >"$T/build.log" 2>&1)
rc=$?
DEB=$(ls "$T"/pml-migrate_*_amd64.deb 2>/dev/null | head -n 1)
[ $rc = 0 ] && [ -n "$DEB" ]
ok $? "dpkg-buildpackage -us -uc -b: exit $rc, $(basename "${DEB:-none}") $( [ $rc = 0 ] || tail -n 5 "$T/build.log")"
dpkg-deb -c "$DEB" | awk '{ print $6 }' >"$T/contents"
missing=""
for f in ./usr/bin/pml-migrate ./usr/share/man/man1/pml-migrate.1.gz ./lib/systemd/system/pml-migrate-agent.service \
	./etc/default/pml-migrate-agent ./usr/lib/x86_64-linux-gnu/pml-migrate/guest/memstress.elf \
	./usr/share/doc/pml-migrate/copyright; do
	grep -qx "$f" "$T/contents" || missing="$missing $f"
done
[ -z "$missing" ]
ok $? "it holds the binary, man page, guest images, unit and options file${missing:+; missing:$missing}"
dpkg-deb -e "$DEB" "$T/ctl"
grep -qx /etc/default/pml-migrate-agent "$T/ctl/conffiles"
ok $? "the options file is a conffile (an operator's edits survive upgrades)"
grep -q "deb-systemd-helper enable 'pml-migrate-agent.service'" "$T/ctl/postinst" &&
	! grep -q "deb-systemd-invoke start" "$T/ctl/postinst" && grep -q "adduser --system" "$T/ctl/postinst"
ok $? "installing enables the unit, starts nothing, and creates the service user"
dep=$(dpkg-deb -f "$DEB" Depends)
echo "$dep" | grep -q libuv1 && echo "$dep" | grep -q libssl3 && echo "$dep" | grep -q liblz4
ok $? "runtime dependencies from the libraries: $(echo "$dep" | head -c 120)"

# Installed into a scratch root.
dpkg -x "$DEB" "$T/root"
v=$("$T/root/usr/bin/pml-migrate" --version)
zcat "$T/root/usr/share/man/man1/pml-migrate.1.gz" | grep -q '^\.TH PML.-MIGRATE 1' && [ "${v#pml-migrate }" != "$v" ]
ok $? "the installed binary runs ($v) and the man page is there"
UNIT="$T/root/lib/systemd/system/pml-migrate-agent.service"
if command -v systemd-analyze >/dev/null; then
	# systemd's own check, with the binary where the scratch root has it
	# (verify resolves ExecStart on this host); any complaint fails.
	mkdir -p "$T/unit"
	sed "s|/usr/bin/pml-migrate|$T/root/usr/bin/pml-migrate|" "$UNIT" >"$T/unit/pml-migrate-agent.service"
	out=$(systemd-analyze verify --man=no "$T/unit/pml-migrate-agent.service" 2>&1)
	rc=$?
	[ $rc = 0 ] && [ -z "$out" ]
	ok $? "systemd-analyze verify: exit $rc ${out:+: $out}"
else
	ok 1 "systemd-analyze is not installed (scripts/setup.sh installs systemd)"
fi
grep -q '^DeviceAllow=/dev/kvm rw' "$UNIT" && grep -q '^ProtectSystem=strict' "$UNIT" && grep -q '^Restart=on-failure' "$UNIT" &&
	grep -q '^EnvironmentFile=-/etc/default/pml-migrate-agent' "$UNIT" && grep -q '^KillMode=process' "$UNIT" &&
	grep -q '^RuntimeDirectory=pml-migrate' "$UNIT"
ok $? "sandboxed with /dev/kvm and its run directory open, restarted on failure, options from the environment file"

# The agent, started the way the unit starts it, from the options file.
"$T/root/usr/bin/pml-migrate" certs init "$T/certs" >/dev/null && "$T/root/usr/bin/pml-migrate" certs issue "$T/certs" agent >/dev/null
set -a
. "$T/root/etc/default/pml-migrate-agent"
set +a
PML_MIGRATE_LISTEN=127.0.0.1:0 PML_MIGRATE_CERTS="$T/certs"
cmd=$(sed -n 's/^ExecStart=//p' "$UNIT" | sed "s|/usr/bin/pml-migrate|$T/root/usr/bin/pml-migrate|")
eval "set -- $(echo "$cmd" | sed 's/\${\([A-Z_]*\)}/"$\1"/g')"
PML_MIGRATE_RUNDIR="$T/run" timeout 20 "$@" --port-file "$T/port" 2>"$T/agent.log" &
AP=$!
for i in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.05; done
port=$(cat "$T/port" 2>/dev/null)
kill $AP 2>/dev/null
wait $AP 2>/dev/null
[ -n "$port" ]
ok $? "the agent starts with the unit's command line and the default options: listened on port ${port:-none} $(head -c 200 "$T/agent.log")"
