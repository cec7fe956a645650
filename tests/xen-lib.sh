# tests/xen-lib.sh - real Xen 4.17 for the tests, on a machine that cannot
# run it natively: the hypervisor and a Debian 6.1 PV dom0 boot inside QEMU
# with TCG (software emulation). Source it after tap.sh.
#
#   xen_fetch            Debian 12 packages -> $XEN_CACHE (once; cached)
#   xen_initrd OUT SCRIPT FILE...
#                        a dom0 initramfs: busybox, the Xen toolstack,
#                        xenstore-read/-write, every cached module (the
#                        dom0 ones loaded), FILEs (*.elf, *.cpio.gz and
#                        vmlinuz -> /guest, *.pem and *.key -> /certs,
#                        others -> /bin, with the shared libraries they
#                        need) and SCRIPT, run as /test.sh once the
#                        toolstack is up
#   xen_domu_initrd OUT  a Linux PVH domU's initramfs (tests/xen-domu-init
#                        as /init, busybox, netfront and blkfront); its
#                        kernel is $XEN_CACHE/vmlinuz, the dom0's own
#   xen_versions         the versions of Xen, its tools and the dom0
#                        kernel in the cache, on one line
#   xen_boot INITRD TIMEOUT_S LOG
#                        boots Xen + dom0 in QEMU; serial output -> LOG.
#                        Returns when dom0 powers off (after /test.sh) or
#                        at the timeout.
#
# Nothing Xen is installed on the host: packages are fetched with
# `apt-get download` and unpacked with dpkg-deb. Needs qemu-system-x86_64,
# apt-get with Debian 12 sources, cpio, gzip.
XEN_CACHE=${PMG_XEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pml-migrate/xen-4.17}
# Xen's userland, kept at its compiled-in path (libxl execs helpers there).
XEN_BIN=usr/lib/xen-4.17/bin

# What a cache holds, by layout: 2 adds the modules and tools a Linux
# domU needs (front- and backends, the bridge, loop, xenstore-utils). An
# older cache is fetched again.
XEN_LAYOUT=2
xen_fetch() {
	[ "$(cat "$XEN_CACHE/ready" 2>/dev/null)" = "$XEN_LAYOUT" ] && return 0
	rm -rf "$XEN_CACHE" && mkdir -p "$XEN_CACHE/debs" "$XEN_CACHE/root" || return 1
	# The kernel the linux-image-amd64 metapackage points at: a 6.1 kernel
	# that boots as a PV dom0 (its Xen modules are =m).
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6/{print $2; exit}')
	pkgs="xen-hypervisor-4.17-amd64 xen-utils-4.17 xen-utils-common libxenmisc4.17 libxenstore4
	      libxentoollog1 libxencall1 libxenevtchn1 libxenforeignmemory1 libxengnttab1 libxendevicemodel1
	      libxentoolcore1 libxenhypfs1 libyajl2 libncurses6 libtinfo6 libext2fs2 liblzma5 libuuid1
	      libzstd1 zlib1g libgcc-s1 busybox-static xenstore-utils $kpkg"
	( cd "$XEN_CACHE/debs" && { apt-get download $pkgs >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null 2>&1 && apt-get download $pkgs >/dev/null 2>&1; }; } ) || {
		echo "# xen_fetch: apt-get download failed (Debian 12 archive reachable?)" >&2
		return 1
	}
	# What the archive served: it moves on (a new kernel ABI, a Xen
	# security release), so a run's log says which it used.
	for d in "$XEN_CACHE"/debs/xen-hypervisor-*.deb "$XEN_CACHE"/debs/xen-utils-4*.deb \
		"$XEN_CACHE"/debs/linux-image-*.deb; do
		dpkg-deb -f "$d" Package Version | sed 's/^[A-Za-z]*: //' | paste -sd' ' -
	done >"$XEN_CACHE/versions"
	for d in "$XEN_CACHE"/debs/*.deb; do
		case $d in
		*/linux-image-*)
			# Only the kernel, the dom0 modules and what a Linux domU
			# and its backends need: the rest is 400 MB.
			dpkg-deb --fsys-tarfile "$d" | tar -x -C "$XEN_CACHE/root" --wildcards \
				'./boot/vmlinuz-*' '*/xen-evtchn.ko*' '*/xen-privcmd.ko*' '*/xenfs.ko*' \
				'*/xen-gntdev.ko*' '*/xen-gntalloc.ko*' '*/xen-netfront.ko*' '*/xen-blkfront.ko*' \
				'*/xen-netback.ko*' '*/xen-blkback.ko*' '*/net/bridge/bridge.ko*' '*/net/802/stp.ko*' \
				'*/net/llc/llc.ko*' '*/block/loop.ko*' || return 1 ;;
		*) dpkg-deb -x "$d" "$XEN_CACHE/root" || return 1 ;;
		esac
	done
	rm -rf "$XEN_CACHE/debs"
	# QEMU's -kernel loads the uncompressed multiboot image only.
	gunzip -c "$XEN_CACHE"/root/boot/xen-4.17-amd64.gz >"$XEN_CACHE/xen" &&
		cp "$XEN_CACHE"/root/boot/vmlinuz-* "$XEN_CACHE/vmlinuz" && echo "$XEN_LAYOUT" >"$XEN_CACHE/ready"
}

xen_versions() {
	if [ -s "$XEN_CACHE/versions" ]; then
		paste -sd, "$XEN_CACHE/versions" | sed 's/,/, /g'
	else
		echo "versions not recorded (a cache made before they were)"
	fi
}

xen_initrd() {
	out=$1 script=$2
	shift 2
	command -v cpio >/dev/null || { echo "# xen_initrd: cpio is not installed" >&2; return 1; }
	R=$XEN_CACHE/root I=$(mktemp -d)
	mkdir -p "$I"/bin "$I"/lib/modules "$I"/lib/x86_64-linux-gnu "$I"/lib64 "$I/$XEN_BIN" "$I"/guest \
		"$I"/proc "$I"/sys "$I"/dev "$I"/tmp "$I"/run "$I"/var "$I"/etc "$I"/usr/sbin
	ln -s ../run "$I"/var/run
	cp "$R"/bin/busybox "$I"/bin/busybox
	for b in xl xenstored xenconsoled xen-init-dom0 libxl-save-helper; do
		cp "$R/$XEN_BIN/$b" "$I/$XEN_BIN/" && ln -sf "/$XEN_BIN/$b" "$I/usr/sbin/$b"
	done
	# xenstore-read/-write (one binary named by argv[0]) for hotplug scripts.
	cp "$R"/usr/bin/xenstore "$I"/bin/ &&
		for t in read write rm exists ls; do ln -s xenstore "$I/bin/xenstore-$t"; done
	cp -a "$R"/etc/xen "$I"/etc/
	# Shared libraries: the unpacked packages first, then the host (a
	# Debian 12 host has the same libc, libuv, OpenSSL, lz4).
	lp=$R/usr/lib/x86_64-linux-gnu:$R/lib/x86_64-linux-gnu
	for f in "$I/$XEN_BIN"/* "$I"/bin/xenstore "$@"; do
		case $f in *.elf | *.pem | *.key | *.gz | */vmlinuz | *.sh) continue ;; esac
		LD_LIBRARY_PATH=$lp ldd "$f" | awk '/=> \//{print $1, $3}'
	done | sort -u | while read -r so path; do cp -L "$path" "$I/lib/x86_64-linux-gnu/$so"; done
	cp -L /lib64/ld-linux-x86-64.so.2 "$I"/lib64/
	# glibc dlopens libgcc_s for pthread_cancel; xl aborts without it.
	cp -L "$R"/lib/x86_64-linux-gnu/libgcc_s.so.1 "$I"/lib/x86_64-linux-gnu/
	# Every module the cache holds; /init loads the dom0 ones, a test the rest.
	find "$R"/lib/modules -name '*.ko*' -exec cp {} "$I"/lib/modules/ \;
	mkdir -m 0700 "$I"/certs
	for f in "$@"; do
		case $f in
		*.elf | *.cpio.gz | */vmlinuz) cp "$f" "$I"/guest/ ;;
		*.pem | *.key) cp -p "$f" "$I"/certs/ ;;
		*) cp "$f" "$I"/bin/ ;;
		esac
	done
	cp "$script" "$I"/test.sh
	cat >"$I"/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts /run/xen /run/xenstored /run/lock /var/lib/xen /var/lib/xenstored /var/log/xen
mount -t devpts devpts /dev/pts; mount -t tmpfs tmp /tmp
ip link set lo up
for m in xen-evtchn xen-privcmd xenfs xen-gntdev xen-gntalloc; do insmod /lib/modules/$m.ko* ; done
mount -t xenfs xenfs /proc/xen
xenstored --pid-file /run/xenstored.pid
xen-init-dom0 >/dev/null
xenconsoled --pid-file=/run/xenconsoled.pid
echo "XT toolstack-up $(cut -d' ' -f1 /proc/uptime)"
sh /test.sh 2>&1
echo "XT done"
# Leave QEMU through isa-debug-exit (a PV dom0 has I/O port access).
printf '\001' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
poweroff -f
INIT
	chmod +x "$I"/init "$I"/test.sh
	(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
	rc=$?
	rm -rf "$I"
	return $rc
}

xen_domu_initrd() {
	out=$1 R=$XEN_CACHE/root I=$(mktemp -d)
	mkdir -p "$I"/bin "$I"/sbin "$I"/proc "$I"/sys "$I"/dev "$I"/tmp "$I"/lib/modules
	cp "$R"/bin/busybox "$I"/bin/busybox
	for m in xen-netfront xen-blkfront; do
		cp "$(find "$R"/lib/modules -name "$m.ko*" | head -1)" "$I"/lib/modules/ || return 1
	done
	cp "${XEN_DOMU_INIT:-$(dirname "$0")/xen-domu-init}" "$I"/init && chmod +x "$I"/init
	(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
	rc=$?
	rm -rf "$I"
	return $rc
}

xen_boot() {
	initrd=$1 to=$2 log=$3
	# -cpu max without SMAP/SMEP: with them a PV dom0 dies on its first
	# page fault under QEMU 7.2's TCG. Without XSAVE: with it, dom0
	# processes were seen to lose their SSE registers across context
	# switches (memcpy left the first 64 bytes of large copies zero, TLS
	# records failed their MAC) - an emulation fault, gone when Xen
	# switches FPU state with FXSAVE. XEN_QEMU_CPU overrides the model.
	# One TCG thread for both emulated CPUs: with a thread each (MTTCG),
	# 5 of 45 guests writing flat out triple-faulted right after a VM
	# exit, on the source during log-dirty rounds as well as after
	# arriving, and in some the state Xen saved for the guest was Xen's
	# own (RIP just past Xen's VMRUN, CS 0xe008, Xen's IDT): the emulated
	# CPU ran host code in guest mode, an emulation race that no guest
	# state can cause. With one thread: 0 of 30. XEN_QEMU_SMP: how many
	# CPUs Xen gets (and dom0 vCPUs), 2 unless said. QEMU splits -initrd
	# at commas.
	timeout -k 5 "$to" "${QEMU:-qemu-system-x86_64}" -accel tcg,thread=single -machine q35 \
		-cpu "${XEN_QEMU_CPU:-max,-smap,-smep,-xsave}" -smp "${XEN_QEMU_SMP:-2}" \
		-m 2048 -display none -monitor none -serial "file:$log" -no-reboot \
		-device isa-debug-exit,iobase=0xf4,iosize=4 -kernel "$XEN_CACHE/xen" \
		-append "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=${XEN_QEMU_SMP:-2} noreboot ${XEN_EXTRA_ARGS:-}" \
		-initrd "$XEN_CACHE/vmlinuz console=hvc0 loglevel=3,$initrd" </dev/null >/dev/null 2>&1
	return 0
}
