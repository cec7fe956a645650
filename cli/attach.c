/*
 * cli/attach.c - `pml-migrate attach DOMAIN`: takes over hosting a Xen
 * domain that the toolstack created, paused and without a device model,
 * and hosts it (vmhost/) as `run --hv xen` would have: control socket,
 * the guest ABI's ports, migrations, the final report.
 */
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "vmhost/vmhost.h"

static void attach_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate attach DOMAIN [options]\n"
		"\n"
		"Takes over hosting the Xen domain DOMAIN (an id or a name, as in 'xl list'),\n"
		"then unpauses it and hosts it until its guest exits or it migrates away: this\n"
		"process serves its guest's console, exit and report ports (an ioreq server),\n"
		"answers its control socket and can migrate it ('pml-migrate send'). The\n"
		"domain must be PVH with 1 vCPU and a memory size that is a multiple of 2 MiB,\n"
		"created paused and without a device model, e.g. 'xl create -p vm.cfg'. It is\n"
		"destroyed when its guest exits here. A refused attach leaves it untouched.\n"
		"Needs a Xen dom0 and root. The guest's console goes to stdout (stderr with\n"
		"--json).\n"
		"\n"
		"With --live, DOMAIN is a guest of the toolstack's own (its kernel, PV\n"
		"console, vifs and disks on storage both hosts see), running or paused, PVH,\n"
		"1 or 2 vCPUs, any memory size: this process does not serve it, only hosts its\n"
		"migration. The switchover is the guest's own suspend (as 'xl migrate'): a\n"
		"guest that does not answer within libxl's 60 s keeps running and the\n"
		"migration fails. The destination's toolstack rebuilds the domain (its devices\n"
		"included) and owns it once it runs there; here the domain is destroyed only\n"
		"after it migrated, and 'ctl NAME stop' leaves it running, untouched.\n"
		"\n"
		"options:\n"
		"  --live          a toolstack's running guest, moved with its help (above)\n"
		"  --once          leave after one migration: the domain moved away, or\n"
		"                  stays with its toolstack (what 'send DOMAIN' starts)\n"
		"  --name NAME     name of the control socket (default: the domain's name)\n"
		"  --json          print the final report as one JSON object on stdout\n"
		"  -h, --help      this text\n"
		"\n"
		"exit codes: 0 guest exited with 0 and reported (or migrated away); 1 refused\n"
		"            or guest failed; 2 usage error.\n");
}

int cmd_attach(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "name", required_argument, 0, 'n' },
		{ "live", no_argument, 0, 'l' },
		{ "once", no_argument, 0, 'o' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct vmhost r;
	char err[512] = "", name[65] = "";
	int c, rc = PMG_EXIT_FAIL, e, live = 0;

	if (vmhost_init(&r, "") < 0)
		return PMG_EXIT_FAIL;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (!util_valid_name(optarg)) {
				util_err("--name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.'", optarg);
				rc = PMG_EXIT_USAGE;
				goto out;
			}
			snprintf(name, sizeof(name), "%s", optarg);
			break;
		case 'j':
			r.json = 1;
			break;
		case 'l':
			live = 1;
			break;
		case 'o':
			r.one_migration = 1;
			break;
		case 'h':
			attach_usage(stdout);
			rc = PMG_EXIT_OK;
			goto out;
		default:
			if (optopt)
				util_err("attach: option '-%c' is unknown or needs a value (see 'pml-migrate attach --help')",
					 optopt);
			else
				util_err("attach: unknown option '%s' (see 'pml-migrate attach --help')", argv[optind - 1]);
			rc = PMG_EXIT_USAGE;
			goto out;
		}
	}
	if (optind != argc - 1) {
		util_err("attach: %s DOMAIN (see 'pml-migrate attach --help')", optind >= argc ? "missing" : "one");
		rc = PMG_EXIT_USAGE;
		goto out;
	}
	if (!hv_backend_built("xen")) {
		util_err("attach: this pml-migrate was built without the Xen libraries (libxen-dev)");
		goto out;
	}
	r.con = r.json ? stderr : stdout;
	/* Xen's log-dirty, armed only while a migration runs. */
	e = hv_vm_attach("xen", argv[optind], HV_DIRTY_BITMAP, live ? HV_ATTACH_LIVE : 0, &r.vm, err, sizeof(err));
	if (e < 0) {
		util_err("attach: %s", err);
		goto out;
	}
	r.cfg = *hv_vm_config(r.vm);
	if (!name[0] && !util_valid_name(r.cfg.name)) {
		util_err("attach: the domain's name '%s' cannot name a control socket: give --name", r.cfg.name);
		goto out;
	}
	hv_vm_set_guest_ops(r.vm, &vmhost_guest_ops, &r);
	if (vmhost_claim_name(&r, name[0] ? name : r.cfg.name) < 0)
		goto out;
	if (vmhost_went_live(&r) < 0)
		goto out;
	e = hv_vm_start(r.vm);
	if (e < 0) {
		util_err("attach: starting domain %lld: %s", (long long)hv_vm_domid(r.vm), strerror(-e));
		goto out;
	}
	rc = vmhost_run(&r);
out:
	vmhost_cleanup(&r);
	return rc;
}
