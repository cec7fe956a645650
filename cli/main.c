/*
 * cli/main.c - pml-migrate: command dispatch and top-level help.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "config.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "demo", cmd_demo, "boot a guest, migrate it live over TLS on loopback, check its result" },
	{ "run", cmd_run, "boot a guest image and host it (built-in KVM VMM, or a Xen PVH domain)" },
	{ "attach", cmd_attach, "host a Xen domain the toolstack created paused (xl create -p)" },
	{ "send", cmd_send, "migrate a running VM live to an agent" },
	{ "recv", cmd_recv, "run the receiving agent (a daemon; one process per incoming VM)" },
	{ "list", cmd_list, "list the VMs on this host" },
	{ "certs", cmd_certs, "create a throwaway CA and node certificates for mutual TLS" },
	{ "ctl", cmd_ctl, "talk to a running VM's control socket (status, pause, resume, stats, finish, stop, cancel)" },
	{ "estimate", cmd_estimate, "measure a running VM's working set and dirty rate, without migrating" },
	{ "checkpoint", cmd_checkpoint, "write full and incremental checkpoints of a running VM to a directory" },
	{ "restore", cmd_restore, "boot a VM from a checkpoint directory and host it" },
	{ "evacuate", cmd_evacuate, "drain this host: migrate every VM to the given agents" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: pml-migrate COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\n'pml-migrate COMMAND --help' describes a command.\n"
		   "exit codes: 0 success, 1 failure, 2 usage error, 3 migration outcome\n"
		   "indeterminate (send); see the README.\n");
}

int main(int argc, char **argv)
{
	/* A peer that closes its end (an agent, a `send` waiting on a control
	 * socket) must cost an EPIPE on that connection, never the process:
	 * the one hosting a VM would take the guest down with it. */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2) {
		usage(stderr);
		return PMG_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return PMG_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("pml-migrate %s\n", PACKAGE_VERSION);
		return PMG_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	util_err("unknown command '%s' (see 'pml-migrate --help')", argv[1]);
	return PMG_EXIT_USAGE;
}
