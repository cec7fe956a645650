/*
 * cli/evacuate.c - `pml-migrate evacuate --to HOST:PORT,...`: drains this
 * host. Every VM running here is live-migrated to one of the given
 * agents, N at a time, each placed by memory and load from the agents'
 * answers to a capacity query (migrate/query.h, over the same TLS). A VM
 * whose migration fails is tried on another agent, and otherwise keeps
 * running here.
 *
 * Each migration is `pml-migrate send` run as a child process (this very
 * binary), so it behaves, reports and fails exactly as the operator's own
 * `send` would; its last JSON line and exit code are the outcome.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "migrate/query.h"

#define EVAC_MAX_AGENTS 32
#define EVAC_MAX_VMS 1024
#define EVAC_QUERY_MS 5000

struct evac_agent {
	char addr[300];
	int up;                   /* answered the capacity query */
	char why[300];            /* when not */
	struct stream_capacity cap;
	uint64_t mem_planned;     /* bytes of VMs placed or moving there */
	unsigned slots_planned;
	unsigned moved;
};

enum evac_state { EV_WAIT, EV_RUNNING, EV_MOVED, EV_STAYED, EV_INDETERMINATE };

struct evac_vm {
	char name[80];
	char hv[8];
	uint64_t mem_bytes;
	int candidate;             /* running: may move */
	char why[300];             /* why it stays, or the last failure */
	enum evac_state st;
	int planned;               /* the agent of the plan, -1 none */
	int agent;                 /* where it is going / went */
	unsigned long tried;       /* agents tried, a bit each */
	unsigned attempts;
	pid_t pid;
	int out_fd, err_fd;
	double downtime_ms, total_ms;
};

struct evac {
	struct evac_agent ag[EVAC_MAX_AGENTS];
	unsigned nag;
	struct evac_vm *vm;
	unsigned nvm;
	int json;
	char certs[PATH_MAX], node[65], peer[65];
	int insecure;
	char downtime[16], max_time[16];
};

static void evacuate_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate evacuate --to HOST:PORT[,HOST:PORT...] [--parallel N]\n"
		"                            [--dry-run] [--json] [--certs DIR] [--node NAME]\n"
		"                            [--peer NAME] [--insecure] [--downtime MS] [--max-time S]\n"
		"\n"
		"Drains this host: every VM running here (see 'pml-migrate list') is migrated\n"
		"live to one of the given agents. Each agent is first asked, over the same\n"
		"authenticated TLS a migration uses, what it can take: its host's memory and\n"
		"its free session slots (recv --max-sessions). VMs are placed largest first,\n"
		"each on the agent that keeps the most memory free after it (fewest sessions\n"
		"on a tie), never beyond an agent's memory or slots, and moved N at a time. A\n"
		"VM whose migration fails is tried on another agent that has room; when none\n"
		"is left it keeps running here. The plan is printed before anything moves,\n"
		"and a table of outcomes at the end.\n"
		"\n"
		"options:\n"
		"  --to LIST        the agents, comma-separated HOST:PORT (up to 32)\n"
		"  --parallel N     migrations at a time, 1..16 (default 1)\n"
		"  --dry-run        query the agents and print the plan; move nothing\n"
		"  --json           one JSON line per agent, plan entry and outcome, and a\n"
		"                   summary (fields in the README)\n"
		"  --certs DIR      certificate directory, as for send (required unless\n"
		"                   --insecure)\n"
		"  --node NAME      this host's certificate name in DIR (default: sender)\n"
		"  --peer NAME      the name every agent's certificate must carry (default:\n"
		"                   each agent's HOST)\n"
		"  --insecure       plaintext, no authentication (trusted networks only)\n"
		"  --downtime MS, --max-time S   passed to each migration (see send)\n"
		"  -h, --help       this text\n"
		"\n"
		"A VM's memory size counts against an agent's available memory in full\n"
		"(memory is sparse; a VM usually takes less).\n"
		"exit codes: 0 the host is empty (every VM moved; --dry-run: every VM has a\n"
		"            place); 1 some VMs stayed here, and they still run here (or no\n"
		"            agent answered); 2 usage error; 3 some migration's outcome is\n"
		"            indeterminate (send's exit 3): check that VM on its agent.\n");
}

/* ---- the VMs here ---- */

static void evac_found(void *opaque, const char *name, const char *status)
{
	struct evac *ev = opaque;
	char st[32] = "", mem[32] = "0", hv[8] = "kvm";
	if (ev->nvm == EVAC_MAX_VMS)
		return;
	json_field(status, "state", st, sizeof(st));
	json_field(status, "mem_bytes", mem, sizeof(mem));
	json_field(status, "hv", hv, sizeof(hv));
	/* What has left already, or is leaving, is not on the list. */
	if (!strcmp(st, "migrated"))
		return;
	struct evac_vm *v = &ev->vm[ev->nvm++];
	memset(v, 0, sizeof(*v));
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->hv, sizeof(v->hv), "%s", hv);
	v->mem_bytes = strtoull(mem, NULL, 10);
	v->planned = v->agent = -1;
	v->out_fd = v->err_fd = -1;
	v->candidate = !strcmp(st, "running");
	if (!v->candidate) {
		v->st = EV_STAYED;
		snprintf(v->why, sizeof(v->why), "it is %s here%s", st,
			 !strcmp(st, "paused") ? " (resume it first)" : "");
	}
}

static int evac_cmp_mem(const void *a, const void *b)
{
	const struct evac_vm *x = a, *y = b;
	if (x->candidate != y->candidate)
		return y->candidate - x->candidate;
	return x->mem_bytes < y->mem_bytes ? 1 : x->mem_bytes > y->mem_bytes ? -1 : strcmp(x->name, y->name);
}

/* ---- agents ---- */

static void evac_query(struct evac *ev, struct evac_agent *a, unsigned timeout_ms)
{
	struct migrate_query_auth auth = { ev->insecure, ev->certs, ev->node, ev->peer };
	a->up = migrate_query_capacity(&auth, a->addr, timeout_ms, &a->cap, a->why, sizeof(a->why)) == 0;
}

static uint64_t evac_mem_left(const struct evac_agent *a)
{
	return a->cap.mem_available > a->mem_planned ? a->cap.mem_available - a->mem_planned : 0;
}

static unsigned evac_slots_left(const struct evac_agent *a)
{
	unsigned used = a->cap.sessions + a->slots_planned;
	return a->cap.max_sessions > used ? a->cap.max_sessions - used : 0;
}

/* The agent for v: up, the same hypervisor, a free slot and v's memory
 * available, not tried for v yet; the most memory left after v wins,
 * then the fewest sessions. -1 when none. */
static int evac_pick(const struct evac *ev, const struct evac_vm *v)
{
	int best = -1;
	uint8_t hv = !strcmp(v->hv, "xen") ? STREAM_HV_XEN : STREAM_HV_KVM;
	for (unsigned i = 0; i < ev->nag; i++) {
		const struct evac_agent *a = &ev->ag[i];
		if (!a->up || a->cap.hv != hv || (v->tried >> i & 1) || !evac_slots_left(a) ||
		    evac_mem_left(a) < v->mem_bytes)
			continue;
		if (best < 0)
			best = (int)i;
		else {
			const struct evac_agent *b = &ev->ag[best];
			uint64_t la = evac_mem_left(a), lb = evac_mem_left(b);
			unsigned sa = a->cap.sessions + a->slots_planned, sb = b->cap.sessions + b->slots_planned;
			if (la > lb || (la == lb && sa < sb))
				best = (int)i;
		}
	}
	return best;
}

static void evac_take(struct evac_agent *a, const struct evac_vm *v, int sign)
{
	a->mem_planned += sign > 0 ? v->mem_bytes : -v->mem_bytes;
	a->slots_planned += (unsigned)sign;
}

/* ---- moving one VM: `send` as a child ---- */

static int evac_spawn(struct evac *ev, struct evac_vm *v)
{
	char *argv[24];
	int n = 0;
	argv[n++] = "pml-migrate";
	argv[n++] = "send";
	argv[n++] = v->name;
	argv[n++] = ev->ag[v->agent].addr;
	argv[n++] = "--json";
	if (ev->insecure) {
		argv[n++] = "--insecure";
	} else {
		argv[n++] = "--certs";
		argv[n++] = ev->certs;
		argv[n++] = "--node";
		argv[n++] = ev->node;
	}
	if (ev->peer[0]) {
		argv[n++] = "--peer";
		argv[n++] = ev->peer;
	}
	if (ev->downtime[0]) {
		argv[n++] = "--downtime";
		argv[n++] = ev->downtime;
	}
	if (ev->max_time[0]) {
		argv[n++] = "--max-time";
		argv[n++] = ev->max_time;
	}
	argv[n] = NULL;
	int e = 0;
	v->out_fd = memfd_create("evacuate-send-out", MFD_CLOEXEC);
	v->err_fd = memfd_create("evacuate-send-err", MFD_CLOEXEC);
	if (v->out_fd < 0 || v->err_fd < 0)
		e = -errno;
	fflush(stdout);
	pid_t pid = e ? -1 : fork();
	if (pid < 0) {
		if (!e)
			e = -errno;
		if (v->out_fd >= 0)
			close(v->out_fd);
		if (v->err_fd >= 0)
			close(v->err_fd);
		v->out_fd = v->err_fd = -1;
		return e;
	}
	if (pid == 0) {
		dup2(v->out_fd, 1);
		dup2(v->err_fd, 2);
		execv("/proc/self/exe", argv);
		_exit(PMG_EXIT_FAIL);
	}
	v->pid = pid;
	v->attempts++;
	v->tried |= 1ul << v->agent;
	v->st = EV_RUNNING;
	return 0;
}

/* The last line of a memfd's contents (at most len-1 bytes). */
static void evac_last_line(int fd, char *buf, size_t len)
{
	buf[0] = 0;
	off_t size = lseek(fd, 0, SEEK_END);
	if (size <= 0)
		return;
	off_t from = size > (off_t)len - 1 ? size - (off_t)len + 1 : 0;
	ssize_t k = pread(fd, buf, len - 1, from);
	if (k <= 0)
		return;
	buf[k] = 0;
	while (k > 0 && buf[k - 1] == '\n')
		buf[--k] = 0;
	char *nl = strrchr(buf, '\n');
	if (nl)
		memmove(buf, nl + 1, strlen(nl + 1) + 1);
}

static void evac_print_outcome_json(const struct evac *ev, const struct evac_vm *v)
{
	static const char *const names[] = { "waiting", "running", "migrated", "stayed", "indeterminate" };
	struct json j;
	json_begin(&j, stdout);
	json_str(&j, "event", "outcome");
	json_str(&j, "vm", v->name);
	json_str(&j, "result", names[v->st]);
	if (v->agent >= 0 && v->st != EV_STAYED)
		json_str(&j, "to", ev->ag[v->agent].addr);
	json_u64(&j, "attempts", v->attempts);
	if (v->st == EV_MOVED) {
		json_f64(&j, "downtime_ms", v->downtime_ms);
		json_f64(&j, "total_time_ms", v->total_ms);
	}
	if (v->why[0] && v->st != EV_MOVED)
		json_str(&j, "error", v->why);
	json_end(&j);
}

/* A child ended: the VM moved, failed (tried elsewhere when possible),
 * or is indeterminate. */
static void evac_reap(struct evac *ev, struct evac_vm *v, int status)
{
	char line[8192], err[8192];
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : PMG_EXIT_FAIL;
	struct evac_agent *a = &ev->ag[v->agent];
	evac_last_line(v->out_fd, line, sizeof(line));
	evac_last_line(v->err_fd, err, sizeof(err));
	close(v->out_fd);
	close(v->err_fd);
	v->out_fd = v->err_fd = -1;
	v->pid = 0;
	char val[64];
	if (code == PMG_EXIT_OK) {
		v->st = EV_MOVED;
		a->moved++;
		v->downtime_ms = json_field(line, "downtime_ms", val, sizeof(val)) == 0 ? strtod(val, NULL) : 0;
		v->total_ms = json_field(line, "total_time_ms", val, sizeof(val)) == 0 ? strtod(val, NULL) : 0;
		if (!ev->json)
			printf("  %s: migrated to %s (downtime %.1f ms, %.1f s)\n", v->name, a->addr, v->downtime_ms,
			       v->total_ms / 1000);
		fflush(stdout);
		return;
	}
	if (json_field(line, "error", v->why, sizeof(v->why)) < 0)
		snprintf(v->why, sizeof(v->why), "%.299s", err[0] ? err : "send failed without a reason");
	if (code == PMG_EXIT_INDETERMINATE) {
		v->st = EV_INDETERMINATE; /* its slot there stays taken: it may run there */
		/* It took COMMIT and then could not say the guest runs (a lost
		 * RUNNING, or a guest that failed to start there): whatever it
		 * is, the next VM sent there would most likely end the same way,
		 * paused here and running nowhere. No more for it in this run. */
		a->up = 0;
		snprintf(a->why, sizeof(a->why), "took no more VMs after %s's migration there ended indeterminate",
			 v->name);
		if (!ev->json)
			printf("  %s: INDETERMINATE on %s: %s; that agent gets no more VMs\n", v->name, a->addr, v->why);
		return;
	}
	/* Failed: the guest still runs here. The agent's slot and memory are
	 * given back; an agent that no longer answers gets nothing more. Its
	 * new figures are not taken: they count the VMs moved or moving there,
	 * which the planned figures count already. */
	evac_take(a, v, -1);
	struct evac_agent probe = *a;
	evac_query(ev, &probe, 2000);
	a->up = probe.up;
	snprintf(a->why, sizeof(a->why), "%s", probe.why);
	if (!ev->json)
		printf("  %s: migration to %s failed (%s)%s\n", v->name, a->addr, v->why,
		       a->up ? "" : "; that agent no longer answers");
	v->st = EV_WAIT;
	fflush(stdout);
}

/* ---- output ---- */

static void evac_print_agents(const struct evac *ev)
{
	for (unsigned i = 0; i < ev->nag; i++) {
		const struct evac_agent *a = &ev->ag[i];
		if (ev->json) {
			struct json j;
			json_begin(&j, stdout);
			json_str(&j, "event", "agent");
			json_str(&j, "to", a->addr);
			json_bool(&j, "ok", a->up);
			if (a->up) {
				json_str(&j, "hv", a->cap.hv == STREAM_HV_XEN ? "xen" : "kvm");
				json_u64(&j, "mem_total", a->cap.mem_total);
				json_u64(&j, "mem_available", a->cap.mem_available);
				json_u64(&j, "sessions", a->cap.sessions);
				json_u64(&j, "max_sessions", a->cap.max_sessions);
			} else {
				json_str(&j, "error", a->why);
			}
			json_end(&j);
		} else if (a->up) {
			printf("agent %-24s %s, %6.1f GiB available of %.1f, %u of %u sessions\n", a->addr,
			       a->cap.hv == STREAM_HV_XEN ? "xen" : "kvm", (double)a->cap.mem_available / (1 << 30),
			       (double)a->cap.mem_total / (1 << 30), a->cap.sessions, a->cap.max_sessions);
		} else {
			printf("agent %-24s DOWN: %s\n", a->addr, a->why);
		}
	}
}

static void evac_print_plan(const struct evac *ev)
{
	if (!ev->json)
		printf("\nplan (%u VM(s)):\n  %-24s %10s  %s\n", ev->nvm, "VM", "memory", "to");
	for (unsigned i = 0; i < ev->nvm; i++) {
		const struct evac_vm *v = &ev->vm[i];
		const char *to = v->planned >= 0 ? ev->ag[v->planned].addr : NULL;
		if (ev->json) {
			struct json j;
			json_begin(&j, stdout);
			json_str(&j, "event", "plan");
			json_str(&j, "vm", v->name);
			json_u64(&j, "mem_bytes", v->mem_bytes);
			if (to)
				json_str(&j, "to", to);
			else
				json_str(&j, "stays", v->why);
			json_end(&j);
		} else {
			printf("  %-24s %9" PRIu64 "M  %s%s\n", v->name, v->mem_bytes >> 20, to ? to : "stays here: ",
			       to ? "" : v->why);
		}
	}
	fflush(stdout);
}

static int evac_parse_targets(struct evac *ev, const char *list)
{
	char copy[4096];
	snprintf(copy, sizeof(copy), "%s", list);
	char *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char host[256];
		unsigned port;
		if (xport_split_hostport(t, host, sizeof(host), &port) < 0 || !port) {
			util_err("evacuate: --to: '%s' is not HOST:PORT", t);
			return -EINVAL;
		}
		for (unsigned i = 0; i < ev->nag; i++)
			if (!strcmp(ev->ag[i].addr, t)) {
				util_err("evacuate: --to: %s is listed twice", t);
				return -EINVAL;
			}
		if (ev->nag == EVAC_MAX_AGENTS) {
			util_err("evacuate: --to: at most %d agents", EVAC_MAX_AGENTS);
			return -E2BIG;
		}
		snprintf(ev->ag[ev->nag++].addr, sizeof(ev->ag[0].addr), "%s", t);
	}
	if (!ev->nag) {
		util_err("evacuate: --to needs at least one HOST:PORT");
		return -EINVAL;
	}
	return 0;
}

int cmd_evacuate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, 0, 't' },
		{ "parallel", required_argument, 0, 'P' },
		{ "dry-run", no_argument, 0, 'D' },
		{ "json", no_argument, 0, 'j' },
		{ "certs", required_argument, 0, 'c' },
		{ "node", required_argument, 0, 'n' },
		{ "peer", required_argument, 0, 'p' },
		{ "insecure", no_argument, 0, 'I' },
		{ "downtime", required_argument, 0, 'd' },
		{ "max-time", required_argument, 0, 'm' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	static struct evac ev;
	const char *to = NULL;
	uint64_t parallel = 1, v;
	int dry = 0, c;

	memset(&ev, 0, sizeof(ev));
	snprintf(ev.node, sizeof(ev.node), "sender");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'P':
			if (cli_parse_uint(optarg, 1, 16, &parallel) < 0) {
				util_err("evacuate: --parallel '%s': must be 1..16", optarg);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'D':
			dry = 1;
			break;
		case 'j':
			ev.json = 1;
			break;
		case 'c':
			if (!realpath(optarg, ev.certs)) {
				util_err("evacuate: --certs '%s': %s", optarg, strerror(errno));
				return PMG_EXIT_USAGE;
			}
			break;
		case 'n':
		case 'p':
			if (!util_valid_name(optarg)) {
				util_err("evacuate: --%s '%s': not a valid certificate name", c == 'n' ? "node" : "peer", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(c == 'n' ? ev.node : ev.peer, sizeof(ev.node), "%s", optarg);
			break;
		case 'I':
			ev.insecure = 1;
			break;
		case 'd':
			if (cli_parse_uint(optarg, 1, 600000, &v) < 0) {
				util_err("evacuate: --downtime '%s': must be 1..600000 ms", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(ev.downtime, sizeof(ev.downtime), "%" PRIu64, v);
			break;
		case 'm':
			if (cli_parse_uint(optarg, 1, 86400, &v) < 0) {
				util_err("evacuate: --max-time '%s': must be 1..86400 s", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(ev.max_time, sizeof(ev.max_time), "%" PRIu64, v);
			break;
		case 'h':
			evacuate_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				util_err("evacuate: option '-%c' is unknown or needs a value (see 'pml-migrate evacuate --help')",
					 optopt);
			else
				util_err("evacuate: unknown option '%s' (see 'pml-migrate evacuate --help')", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		util_err("evacuate: unexpected argument '%s'", argv[optind]);
		return PMG_EXIT_USAGE;
	}
	if (!to) {
		util_err("evacuate: --to HOST:PORT[,...] is required (see 'pml-migrate evacuate --help')");
		return PMG_EXIT_USAGE;
	}
	if (!ev.insecure && !ev.certs[0]) {
		util_err("evacuate: --certs DIR is required (or --insecure for plaintext)");
		return PMG_EXIT_USAGE;
	}
	if (evac_parse_targets(&ev, to) < 0)
		return PMG_EXIT_USAGE;

	ev.vm = calloc(EVAC_MAX_VMS, sizeof(*ev.vm));
	if (!ev.vm) {
		util_err("evacuate: out of memory");
		return PMG_EXIT_FAIL;
	}
	int rc = PMG_EXIT_FAIL;
	if (cli_each_vm("evacuate", evac_found, &ev) < 0)
		goto out;
	qsort(ev.vm, ev.nvm, sizeof(*ev.vm), evac_cmp_mem);
	unsigned up = 0;
	for (unsigned i = 0; i < ev.nag; i++) {
		evac_query(&ev, &ev.ag[i], EVAC_QUERY_MS);
		up += ev.ag[i].up;
	}
	evac_print_agents(&ev);
	/* The plan: the same choice the moves make, made ahead on the
	 * agents' figures. */
	for (unsigned i = 0; i < ev.nvm; i++) {
		struct evac_vm *vm = &ev.vm[i];
		if (!vm->candidate)
			continue;
		vm->planned = evac_pick(&ev, vm);
		if (vm->planned >= 0)
			evac_take(&ev.ag[vm->planned], vm, +1);
		else
			snprintf(vm->why, sizeof(vm->why), "%s",
				 up ? "no agent has room for it (memory, sessions or hypervisor)" : "no agent answered");
	}
	evac_print_plan(&ev);
	unsigned placed = 0, candidates = 0;
	for (unsigned i = 0; i < ev.nvm; i++) {
		candidates += ev.vm[i].candidate;
		placed += ev.vm[i].planned >= 0;
	}
	if (dry) {
		rc = placed == ev.nvm ? PMG_EXIT_OK : PMG_EXIT_FAIL;
		goto out;
	}
	if (!up && candidates)
		util_err("evacuate: no agent answered: nothing moves");
	/* Planned reservations go back: the moves re-choose as they start,
	 * on what the earlier moves left. */
	for (unsigned i = 0; i < ev.nvm; i++)
		if (ev.vm[i].planned >= 0)
			evac_take(&ev.ag[ev.vm[i].planned], &ev.vm[i], -1);
	if (!ev.json)
		printf("\nmoving, %" PRIu64 " at a time:\n", parallel);
	fflush(stdout);
	signal(SIGPIPE, SIG_IGN);
	for (;;) {
		unsigned running = 0, waiting = 0;
		for (unsigned i = 0; i < ev.nvm; i++) {
			running += ev.vm[i].st == EV_RUNNING;
			waiting += ev.vm[i].candidate && ev.vm[i].st == EV_WAIT;
		}
		/* Start what fits: the next VM waiting, on its best agent now. */
		for (unsigned i = 0; i < ev.nvm && running < parallel; i++) {
			struct evac_vm *vm = &ev.vm[i];
			if (!vm->candidate || vm->st != EV_WAIT)
				continue;
			vm->agent = evac_pick(&ev, vm);
			if (vm->agent < 0) {
				vm->st = EV_STAYED;
				if (!vm->why[0])
					snprintf(vm->why, sizeof(vm->why), "no agent has room for it");
				if (!ev.json)
					printf("  %s: stays here (%s)\n", vm->name, vm->why);
				continue;
			}
			evac_take(&ev.ag[vm->agent], vm, +1);
			vm->why[0] = 0;
			int e = evac_spawn(&ev, vm);
			if (e < 0) {
				evac_take(&ev.ag[vm->agent], vm, -1);
				vm->st = EV_STAYED;
				snprintf(vm->why, sizeof(vm->why), "cannot start send: %s", strerror(-e));
				continue;
			}
			if (!ev.json)
				printf("  %s: migrating to %s%s\n", vm->name, ev.ag[vm->agent].addr,
				       vm->attempts > 1 ? " (another try)" : "");
			fflush(stdout);
			running++;
		}
		if (!running)
			break;
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (unsigned i = 0; i < ev.nvm; i++)
			if (ev.vm[i].st == EV_RUNNING && ev.vm[i].pid == pid)
				evac_reap(&ev, &ev.vm[i], status);
		(void)waiting;
	}

	/* Outcomes, and whether the host is empty now. */
	unsigned moved = 0, stayed = 0, indet = 0;
	if (!ev.json)
		printf("\noutcome:\n  %-24s %-14s %-24s %8s %12s  %s\n", "VM", "result", "where", "attempts", "downtime ms",
		       "why");
	for (unsigned i = 0; i < ev.nvm; i++) {
		struct evac_vm *vm = &ev.vm[i];
		moved += vm->st == EV_MOVED;
		stayed += vm->st == EV_STAYED || vm->st == EV_WAIT;
		indet += vm->st == EV_INDETERMINATE;
		if (ev.json) {
			evac_print_outcome_json(&ev, vm);
		} else {
			const char *res = vm->st == EV_MOVED ? "migrated" : vm->st == EV_INDETERMINATE ? "INDETERMINATE" : "stayed";
			char dt[32] = "-";
			if (vm->st == EV_MOVED)
				snprintf(dt, sizeof(dt), "%.1f", vm->downtime_ms);
			printf("  %-24s %-14s %-24s %8u %12s  %s\n", vm->name, res,
			       vm->st == EV_STAYED ? "here" : ev.ag[vm->agent].addr, vm->attempts, dt,
			       vm->st == EV_MOVED ? "" : vm->why);
		}
	}
	struct evac left = { .nvm = 0 };
	left.vm = calloc(EVAC_MAX_VMS, sizeof(*left.vm));
	int empty = left.vm && cli_each_vm("evacuate", evac_found, &left) == 0 && left.nvm == 0;
	free(left.vm);
	if (ev.json) {
		struct json j;
		json_begin(&j, stdout);
		json_str(&j, "event", "done");
		json_u64(&j, "migrated", moved);
		json_u64(&j, "stayed", stayed);
		json_u64(&j, "indeterminate", indet);
		json_bool(&j, "host_empty", empty);
		json_end(&j);
	} else {
		printf("\n%u migrated, %u stayed here, %u indeterminate; this host is %s\n", moved, stayed, indet,
		       empty ? "empty" : "not empty");
	}
	rc = indet ? PMG_EXIT_INDETERMINATE : empty ? PMG_EXIT_OK : PMG_EXIT_FAIL;
out:
	free(ev.vm);
	return rc;
}
