#!/bin/sh
# pml-migrate set-up: installs the Debian 12 packages it needs, builds,
# and (unless --no-run) runs the built-in default job.
#
#   scripts/setup.sh            install + build + run the default job
#   scripts/setup.sh --no-run   install + build only
#
# Environment: CONFIGURE_FLAGS (extra ./configure flags, e.g. --enable-werror).
set -eu
cd "$(dirname "$0")/.."
run=1
for a in "$@"; do
	case $a in
	--no-run) run=0 ;;
	-h | --help) sed -n '2,9p' "$0"; exit 0 ;;
	*) echo "setup.sh: unknown option $a" >&2; exit 2 ;;
	esac
done

PKGS="build-essential autoconf automake libtool pkg-config libuv1-dev libssl-dev liblz4-dev libjansson-dev \
linux-libc-dev libxen-dev qemu-system-x86 iproute2 clang libclang-rt-14-dev openssl jq python3-matplotlib cpio linux-perf \
debhelper dpkg-dev systemd strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	echo "setup: installing:$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >/dev/null
fi
if [ ! -f Makefile ] || [ configure -nt config.status ]; then
	./configure -q ${CONFIGURE_FLAGS:-}
fi
make -j"$(nproc)" >/dev/null
echo "setup: built ./pml-migrate and guest/*.elf"

if [ "$run" = 1 ]; then
	if [ ! -e /dev/kvm ]; then
		echo "setup: /dev/kvm is absent, so no guest can run here; build finished" >&2
		exit 1
	fi
	echo "setup: migrating a kvstore guest live over TLS on loopback:"
	echo "       ./pml-migrate demo"
	exec ./pml-migrate demo
fi
