/*
 * cli/list.c - `pml-migrate list`: the VMs hosted on this machine (every
 * control socket in the run directory that answers).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "util/rundir.h"

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

int cmd_list(int argc, char **argv)
{
	int json = 0;
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200];
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
	int dfd = rundir_open(0, dir, sizeof(dir), why, sizeof(why));
	if (dfd < 0 && dfd != -ENOENT) {
		util_err("list: %s", why);
		return PMG_EXIT_FAIL;
	}
	DIR *d = NULL;
	if (dfd >= 0) {
		int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		d = rfd >= 0 ? fdopendir(rfd) : NULL;
		if (!d && rfd >= 0)
			close(rfd);
		close(dfd);
	}
	if (!json)
		printf("%-24s %-14s %8s %-9s %10s %6s %-7s %12s\n", "NAME", "STATE", "PID", "HV", "MEMORY", "VCPUS", "LOG",
		       "UPTIME");
	if (!d)
		return PMG_EXIT_OK;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".sock"))
			continue;
		char name[80];
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), e->d_name);
		if (!util_valid_name(name))
			continue;
		/* Quietly skip sockets nobody answers on (a VM that died). */
		int fd = util_ctl_connect(NULL, name);
		if (fd < 0)
			continue;
		char buf[4096], line[4096];
		size_t have = 0;
		int l = write(fd, "status\n", 7) == 7 ? util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 2000) : -1;
		close(fd);
		if (l <= 0)
			continue;
		if (json) {
			printf("%s\n", line);
			continue;
		}
		char st[32] = "?", pid[16] = "?", mem[32] = "0", vc[8] = "?", dl[16] = "?", up[32] = "0";
		char hv[16] = "kvm", dom[16] = "", hvcol[40];
		json_field(line, "state", st, sizeof(st));
		json_field(line, "pid", pid, sizeof(pid));
		json_field(line, "mem_bytes", mem, sizeof(mem));
		json_field(line, "vcpus", vc, sizeof(vc));
		json_field(line, "dirty_log", dl, sizeof(dl));
		json_field(line, "uptime_ms", up, sizeof(up));
		json_field(line, "hv", hv, sizeof(hv));
		json_field(line, "domid", dom, sizeof(dom));
		/* A Xen VM shows its domain id, the name `xl` knows it by. */
		snprintf(hvcol, sizeof(hvcol), "%s%s%s", hv, dom[0] ? ":" : "", dom);
		printf("%-24s %-14s %8s %-9s %9lluM %6s %-7s %11.1fs\n", name, st, pid, hvcol,
		       strtoull(mem, NULL, 10) >> 20, vc, dl, strtod(up, NULL) / 1000.0);
	}
	closedir(d);
	return PMG_EXIT_OK;
}
