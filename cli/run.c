/*
 * cli/run.c - `pml-migrate run`: boots a guest image in the built-in VMM
 * and hosts it (vmhost/vmhost.c) until it exits or migrates away.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "vmhost/vmhost.h"

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate run IMAGE [options] [-- GUEST-ARGS...]\n"
		"\n"
		"Boots a guest ELF image and hosts it until it exits: in the built-in KVM VMM\n"
		"(64-bit, CPL 3), or with --hv xen as a Xen PVH domain that this process serves\n"
		"as device model. The guest's console goes to stdout (stderr with --json).\n"
		"\n"
		"options:\n"
		"  --mem SIZE             guest memory, multiple of 2M, 16M..128G (default 256M);\n"
		"                         memory is sparse: untouched pages cost nothing\n"
		"  --vcpus N              1 or 2 (default 1)\n"
		"  --hv kvm|xen           hypervisor (default kvm); xen needs a Xen dom0, root,\n"
		"                         1 vCPU, and names the domain after --name\n"
		"  --dirty-log MODE       ring (default on KVM), bitmap or off; Xen has bitmap only\n"
		"                         (its default), armed only while the VM migrates\n"
		"  --ring-entries N       dirty ring size per vCPU, power of two (default 65536)\n"
		"  --harvest-ms N         keep the dirty log armed from boot and harvest it every\n"
		"                         N ms, 1..10000, to watch what it costs the guest; without\n"
		"                         it the log is armed only while a migration runs\n"
		"  --name NAME            VM name for the control socket (default vm-PID)\n"
		"  --json                 print the final report as one JSON object on stdout\n"
		"  -h, --help             this text\n"
		"\n"
		"GUEST-ARGS are key=value words for the workload, e.g. seed=7 ws=64M rate=64.\n"
		"Control socket: $PML_MIGRATE_RUNDIR/NAME.sock (see 'pml-migrate ctl').\n"
		"exit codes: 0 guest exited with 0 and reported; 1 guest failed or VMM error;\n"
		"            2 usage error.\n");
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, 0, 'm' },
		{ "vcpus", required_argument, 0, 'c' },
		{ "dirty-log", required_argument, 0, 'd' },
		{ "ring-entries", required_argument, 0, 'R' },
		{ "harvest-ms", required_argument, 0, 'H' },
		{ "name", required_argument, 0, 'n' },
		{ "hv", required_argument, 0, 'V' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct vmhost r;
	char err[256] = "";
	char guest_args[3072] = "";
	char name[65];
	uint64_t v;
	int c, rc = PMG_EXIT_FAIL, e, dirty_set = 0;
	const char *hv = "kvm";

	snprintf(name, sizeof(name), "vm-%d", (int)getpid());
	if (vmhost_init(&r, name) < 0)
		return PMG_EXIT_FAIL;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (cli_parse_size(optarg, &v) < 0 || !hv_mem_size_valid(v)) {
				util_err("--mem '%s': must be a multiple of 2M between 16M and 128G", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			r.cfg.mem_bytes = v;
			break;
		case 'c':
			if (cli_parse_uint(optarg, 1, HV_MAX_VCPUS, &v) < 0) {
				util_err("--vcpus '%s': must be 1..%d", optarg, HV_MAX_VCPUS);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			r.cfg.vcpus = (unsigned)v;
			break;
		case 'd':
			if (hv_dirty_mode_parse(optarg, &r.cfg.dirty_mode) < 0) {
				util_err("--dirty-log '%s': must be ring, bitmap or off", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			dirty_set = 1;
			break;
		case 'V':
			if (strcmp(optarg, "kvm") && strcmp(optarg, "xen")) {
				util_err("--hv '%s': must be kvm or xen", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			hv = optarg;
			break;
		case 'R':
			if (cli_parse_uint(optarg, 64, 1u << 20, &v) < 0 || (v & (v - 1))) {
				util_err("--ring-entries '%s': must be a power of two, 64..1048576", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			r.cfg.ring_entries = (uint32_t)v;
			break;
		case 'H':
			if (cli_parse_uint(optarg, 1, 10000, &v) < 0) {
				util_err("--harvest-ms '%s': must be 1..10000", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			r.harvest_ms = (unsigned)v;
			r.harvest_at_rest = 1;
			break;
		case 'n':
			if (!util_valid_name(optarg)) {
				util_err("--name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.'", optarg);
				{ rc = PMG_EXIT_USAGE; goto out; }
			}
			snprintf(r.name, sizeof(r.name), "%s", optarg);
			break;
		case 'j':
			r.json = 1;
			break;
		case 'h':
			run_usage(stdout);
			rc = PMG_EXIT_OK;
			goto out;
		default:
			if (optopt)
				util_err("run: option '-%c' is unknown or needs a value (see 'pml-migrate run --help')", optopt);
			else
				util_err("run: unknown option '%s' (see 'pml-migrate run --help')", argv[optind - 1]);
			{ rc = PMG_EXIT_USAGE; goto out; }
		}
	}
	if (optind >= argc) {
		util_err("run: missing IMAGE (see 'pml-migrate run --help')");
		{ rc = PMG_EXIT_USAGE; goto out; }
	}
	/* GNU getopt moved every non-option (IMAGE, then the guest's words)
	 * behind the options and consumed "--". */
	const char *image = argv[optind++];
	for (size_t used = 0; optind < argc; optind++) {
		int n = snprintf(guest_args + used, sizeof(guest_args) - used, "%s%s", used ? " " : "", argv[optind]);
		if (n < 0 || (size_t)n >= sizeof(guest_args) - used) {
			util_err("run: guest arguments longer than %zu bytes", sizeof(guest_args) - 1);
			{ rc = PMG_EXIT_USAGE; goto out; }
		}
		used += (size_t)n;
	}

	if (!strcmp(hv, "xen")) {
		/* Xen has a bitmap only (log-dirty), armed only while a
		 * migration runs: a guest that is not moving runs without it. */
		if (!dirty_set)
			r.cfg.dirty_mode = HV_DIRTY_BITMAP;
		if (r.cfg.dirty_mode == HV_DIRTY_RING) {
			util_err("--dirty-log ring: Xen exposes no per-vCPU dirty log to dom0; use bitmap or off");
			{ rc = PMG_EXIT_USAGE; goto out; }
		}
		if (r.cfg.vcpus != 1) {
			util_err("--vcpus %u: a Xen PVH guest runs 1 vCPU here (the guest images start no others)",
				 r.cfg.vcpus);
			{ rc = PMG_EXIT_USAGE; goto out; }
		}
		snprintf(r.cfg.name, sizeof(r.cfg.name), "%s", r.name);
	}
	r.con = r.json ? stderr : stdout;
	e = hv_vm_create(hv, &r.cfg, &r.vm);
	if (e < 0) {
		if (!strcmp(hv, "xen") && e == -ENOTSUP)
			util_err("--hv xen: this pml-migrate was built without the Xen libraries (libxen-dev)");
		else if (!strcmp(hv, "xen"))
			util_err("cannot open the Xen control interfaces (is this a Xen dom0, run as root?): %s",
				 strerror(-e));
		else if (e == -ENOENT || e == -EACCES)
			util_err("cannot open /dev/kvm: %s", strerror(-e));
		else if (e == -ENOTSUP)
			util_err("this KVM lacks what --dirty-log %s needs", hv_dirty_mode_name(r.cfg.dirty_mode));
		else
			util_err("creating the VM: %s", strerror(-e));
		goto out;
	}
	hv_vm_set_guest_ops(r.vm, &vmhost_guest_ops, &r);
	e = hv_boot_image(r.vm, image, guest_args, err, sizeof(err));
	if (e < 0) {
		util_err("%s", err);
		goto out;
	}
	if (vmhost_claim_name(&r, r.name) < 0)
		goto out;
	/* With --harvest-ms the dirty log and its harvester start with the
	 * guest's first write; otherwise a migration arms the log. */
	if (vmhost_went_live(&r) < 0)
		goto out;
	e = hv_vm_start(r.vm);
	if (e < 0) {
		util_err("starting vCPUs: %s", strerror(-e));
		goto out;
	}
	rc = vmhost_run(&r);
out:
	vmhost_cleanup(&r);
	return rc;
}
