/*
 * bench/xen-suspend-proxy.c - lets `xl migrate` move a PVH guest that has
 * no Xen drivers (the project's guest images), for the benchmark against
 * it (bench/xen.sh).
 *
 *   xen-suspend-proxy DOMID [TIMEOUT_S]
 *
 * libxl suspends a PVH guest only through the PV protocol: it writes
 * "suspend" to the domain's control/shutdown node and waits for the guest
 * to shut down with reason "suspend". Our guests have no xenstore client,
 * so this answers for them from dom0: it waits for the request, shuts the
 * domain down remotely with SHUTDOWN_suspend (the hypervisor pauses it;
 * no guest help needed) and clears the node, as a guest would. It prints
 * "suspended at UPTIME" (dom0 /proc/uptime seconds) so the benchmark can
 * tell when the guest stopped. One request, then it exits; 1 on timeout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenctrl.h>
#include <xenstore.h>

static double uptime(void)
{
	double u = 0;
	FILE *f = fopen("/proc/uptime", "r");
	if (f) {
		if (fscanf(f, "%lf", &u) != 1)
			u = 0;
		fclose(f);
	}
	return u;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: xen-suspend-proxy DOMID [TIMEOUT_S]\n");
		return 2;
	}
	unsigned dom = (unsigned)strtoul(argv[1], NULL, 10);
	int timeout_ms = (argc > 2 ? atoi(argv[2]) : 300) * 1000;
	xc_interface *xch = xc_interface_open(NULL, NULL, 0);
	struct xs_handle *xs = xs_open(0);
	char path[64];
	if (!xch || !xs) {
		perror("xen-suspend-proxy: open");
		return 1;
	}
	snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown", dom);
	for (int waited = 0;; waited += 10) {
		unsigned int len;
		char *v = xs_read(xs, XBT_NULL, path, &len);
		int asked = v && !strcmp(v, "suspend");
		free(v);
		if (asked)
			break;
		if (waited >= timeout_ms) {
			fprintf(stderr, "xen-suspend-proxy: no suspend request for domain %u\n", dom);
			return 1;
		}
		usleep(10000);
	}
	int rc = xc_domain_shutdown(xch, dom, SHUTDOWN_suspend);
	double t = uptime();
	xs_write(xs, XBT_NULL, path, "", 0);
	printf("suspended at %.2f rc=%d\n", t, rc);
	xs_close(xs);
	xc_interface_close(xch);
	return rc ? 1 : 0;
}
