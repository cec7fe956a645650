/*
 * cli/ctl.c - `pml-migrate ctl NAME COMMAND`: one request to a running
 * VM's control socket, its JSON answer on stdout.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"

static void ctl_usage(FILE *f)
{
	fprintf(f, "usage: pml-migrate ctl NAME status|pause|resume|stats|finish|stop|cancel|resolve\n"
		   "\n"
		   "Sends one command to the VM NAME started by 'pml-migrate run --name NAME'\n"
		   "(or received by an agent) and prints its one-line JSON answer.\n"
		   "cancel aborts NAME's outgoing migration unless COMMIT was already sent; the\n"
		   "guest keeps running here. finish asks a guest started with until=finish to\n"
		   "end its work and report (the VM is not migrated after that); stop ends the\n"
		   "VM at once. resolve asks the destination of NAME's last migration what became\n"
		   "of it, when its outcome was lost (state indeterminate): the guest ran there\n"
		   "(this copy is discarded), never ran there (it resumes here), or unknown (it\n"
		   "stays paused; asked again automatically). On a destination, a VM in doubt\n"
		   "(READY answered, COMMIT never heard) is started by resume and discarded by\n"
		   "stop: check the source first. Socket: RUNDIR/NAME.sock (see README).\n"
		   "exit codes: 0 answered ok; 1 refused, no such VM or no answer; 2 usage error.\n");
}

int cmd_ctl(int argc, char **argv)
{
	static const char *const cmds[] = { "status", "pause", "resume", "stats", "finish", "stop", "cancel", "resolve" };
	char line[4096];
	int fd, known = 0;

	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		ctl_usage(stdout);
		return PMG_EXIT_OK;
	}
	if (argc != 3) {
		ctl_usage(stderr);
		return PMG_EXIT_USAGE;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		known |= !strcmp(argv[2], cmds[i]);
	if (!known) {
		util_err("ctl: unknown command '%s' (status, pause, resume, stats, finish, stop, cancel, resolve)", argv[2]);
		return PMG_EXIT_USAGE;
	}
	if (!util_valid_name(argv[1])) {
		util_err("ctl: invalid VM name '%s'", argv[1]);
		return PMG_EXIT_USAGE;
	}
	fd = util_ctl_connect("ctl", argv[1]);
	if (fd < 0)
		return PMG_EXIT_FAIL;
	int n = snprintf(line, sizeof(line), "%s\n", argv[2]);
	if (write(fd, line, (size_t)n) != n) {
		util_err("ctl: write: %s", strerror(errno));
		close(fd);
		return PMG_EXIT_FAIL;
	}
	char buf[4096];
	size_t have = 0;
	/* resolve waits for the destination's agent (bounded there too). */
	int wait_s = !strcmp(argv[2], "resolve") ? 60 : 10;
	int got = util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), wait_s * 1000);
	close(fd);
	if (got == -ETIMEDOUT) {
		util_err("ctl: no answer from '%s' within %d s", argv[1], wait_s);
		return PMG_EXIT_FAIL;
	}
	if (got <= 0) {
		util_err("ctl: '%s' closed the connection without answering", argv[1]);
		return PMG_EXIT_FAIL;
	}
	puts(line);
	return strstr(line, "\"ok\":true") ? PMG_EXIT_OK : PMG_EXIT_FAIL;
}
