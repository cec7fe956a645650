#!/bin/sh
# xen-hotplug.sh: the vif and vbd hotplug script of the Xen lab's busybox
# dom0 (the stock ones need bash). libxl runs it with add|online or
# remove|offline and XENBUS_PATH=backend/vif/D/N (and vif=vifD.N) or
# backend/vbd/D/N. netback connects once hotplug-status is "connected";
# blkback opens the device physical-device names (major:minor, hex).
case "$XENBUS_PATH" in
backend/vif/*)
	br=$(xenstore-read "$XENBUS_PATH/bridge" 2>/dev/null)
	case "$1" in
	online | add)
		brctl addif "${br:-xenbr0}" "$vif" && ip link set "$vif" up &&
			xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
	*)
		brctl delif "${br:-xenbr0}" "$vif" 2>/dev/null ;;
	esac ;;
backend/vbd/*)
	case "$1" in
	add | online)
		dev=$(xenstore-read "$XENBUS_PATH/params")
		mm=$(stat -L -c '%t:%T' "$dev") &&
			xenstore-write "$XENBUS_PATH/physical-device" "$mm" &&
			xenstore-write "$XENBUS_PATH/hotplug-status" connected ;;
	esac ;;
esac
exit 0
