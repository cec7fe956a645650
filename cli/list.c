/*
 * cli/list.c - `pml-migrate list`: the VMs hosted on this machine (every
 * control socket in the run directory that answers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/util.h"

static void list_usage(FILE *f)
{
	fprintf(f, "usage: pml-migrate list [--json]\n"
		   "\n"
		   "Lists the VMs on this host: those started with 'pml-migrate run' and those\n"
		   "received by an agent, from the control sockets in the run directory\n"
		   "($PML_MIGRATE_RUNDIR, see README). --json prints one status object per line.\n"
		   "exit codes: 0 listed (possibly none); 1 the run directory is not ours;\n"
		   "            2 usage error.\n");
}

static void list_one(void *opaque, const char *name, const char *line)
{
	if (*(int *)opaque) {
		printf("%s\n", line);
		return;
	}
	char st[32] = "?", pid[16] = "?", mem[32] = "0", vc[8] = "?", dl[16] = "?", up[32] = "0";
	char hv[16] = "kvm", dom[16] = "", hvcol[40];
	json_field(line, "state", st, sizeof(st));
	json_field(line, "pid", pid, sizeof(pid));
	/* A toolstack's Xen guest: its RAM, not the extent of its p2m. */
	if (json_field(line, "ram_bytes", mem, sizeof(mem)) < 0)
		json_field(line, "mem_bytes", mem, sizeof(mem));
	json_field(line, "vcpus", vc, sizeof(vc));
	json_field(line, "dirty_log", dl, sizeof(dl));
	json_field(line, "uptime_ms", up, sizeof(up));
	json_field(line, "hv", hv, sizeof(hv));
	json_field(line, "domid", dom, sizeof(dom));
	/* A Xen VM shows its domain id, the name `xl` knows it by. */
	snprintf(hvcol, sizeof(hvcol), "%s%s%s", hv, dom[0] ? ":" : "", dom);
	printf("%-24s %-14s %8s %-9s %9lluM %6s %-7s %11.1fs\n", name, st, pid, hvcol, strtoull(mem, NULL, 10) >> 20,
	       vc, dl, strtod(up, NULL) / 1000.0);
}

int cmd_list(int argc, char **argv)
{
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			json = 1;
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			list_usage(stdout);
			return PMG_EXIT_OK;
		} else {
			util_err("list: unknown argument '%s'", argv[i]);
			return PMG_EXIT_USAGE;
		}
	}
	if (!json)
		printf("%-24s %-14s %8s %-9s %10s %6s %-7s %12s\n", "NAME", "STATE", "PID", "HV", "MEMORY", "VCPUS", "LOG",
		       "UPTIME");
	return cli_each_vm("list", list_one, &json) < 0 ? PMG_EXIT_FAIL : PMG_EXIT_OK;
}
