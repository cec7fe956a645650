/*
 * cli/recv.c - `pml-migrate recv`: the receiving agent.
 *
 * The agent only accepts TCP connections and hands each to a new process
 * (this binary, re-executed as a session), so it never parses a byte from
 * the network: a hostile stream or a crashing VM takes down one session,
 * never the agent or the other VMs. A session runs the migration
 * (migrate/dest.c) and, once the guest runs, hosts it like `run` does,
 * with its own control socket, so it can be migrated onward.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "cli/agent.h"
#include "cli/commands.h"
#include "cli/metrics.h"
#include "cli/recv-resolve.h"
#include "cli/util.h"
#include "migrate/dest.h"
#include "transport/xport.h"
#include "util/rundir.h"
#include "vmhost/vmhost.h"

static void recv_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate recv --listen HOST:PORT [options]\n"
		"\n"
		"Runs the receiving agent: a daemon that accepts live migrations. Each\n"
		"incoming migration runs in its own process; once its guest runs, that\n"
		"process hosts the VM with a control socket (see 'pml-migrate list', 'ctl'),\n"
		"so it can be migrated onward with 'pml-migrate send'. The guest's console\n"
		"goes to RUNDIR/NAME.log and its final report to RUNDIR/NAME.result.json.\n"
		"\n"
		"options:\n"
		"  --listen HOST:PORT   address to accept migrations on (port 0: any free port)\n"
		"  --certs DIR          certificate directory (ca.pem, NODE.pem, NODE.key)\n"
		"  --node NAME          this agent's certificate name in DIR (default: agent)\n"
		"  --allow N1,N2,...    accept only clients whose certificate carries one of\n"
		"                       these names (default: any certificate DIR/ca.pem signed)\n"
		"  --insecure           plaintext, no authentication (trusted networks only)\n"
		"  --run-dir DIR        where VMs' control sockets, logs and reports go\n"
		"                       (default: $PML_MIGRATE_RUNDIR, see README)\n"
		"  --port-file FILE     write the listening port to FILE once listening\n"
		"  --metrics-file FILE  keep FILE (mode 0644) up to date with the agent's figures in\n"
		"                       the Prometheus text format: migrations in and out by\n"
		"                       result, bytes, downtime, sessions (for the node exporter's\n"
		"                       textfile collector; names in the README). Its directory\n"
		"                       may be another user's, but writable by nobody else\n"
		"  --max-sessions N     at most N incoming migrations and VMs they brought\n"
		"                       (authenticated sessions, an earlier agent's still running\n"
		"                       included; default 16)\n"
		"  --max-handshakes N   at most N connections finishing their TLS handshake at\n"
		"                       once, each in a process of its own; the oldest makes\n"
		"                       room for a new one (default 8)\n"
		"  --max-pending N      at most N connections whose first TLS record has not yet\n"
		"                       fully arrived (they cost one descriptor and no process;\n"
		"                       the oldest makes room; default 1024)\n"
		"  --max-queries N      at most N capacity queries, link probes (estimate --to) and\n"
		"                       resolutions answered at once, each in a process of its\n"
		"                       own; more are refused until one ends (default 4)\n"
		"  --timeout S          fail an incoming migration that makes no progress for S\n"
		"                       seconds before READY: nothing received, announced pages\n"
		"                       missing. After READY it never fails on a timeout: with no\n"
		"                       COMMIT within S the VM is kept paused, in doubt, until the\n"
		"                       source resolves it (default 60)\n"
		"  --handshake-timeout S  a connection must be authenticated and say HELLO\n"
		"                       within S seconds (default 10)\n"
		"  --hv auto|kvm|xen    the hypervisor incoming VMs run on (default auto: xen\n"
		"                       on a Xen dom0, else kvm); a migration from the other\n"
		"                       one is refused. On Xen each VM becomes a PVH domain of\n"
		"                       its name, served by its session process; a toolstack's\n"
		"                       guest (an 'xl' domain) is restored by libxl as an\n"
		"                       ordinary domain, kept by its session, which does what\n"
		"                       its on_poweroff/on_reboot/on_crash say\n"
		"  -h, --help           this text\n"
		"\n"
		"TLS 1.3 with mutual certificate authentication is the default: clients must\n"
		"present a certificate that chains to DIR/ca.pem. Stop the agent with SIGINT or\n"
		"SIGTERM; VMs already running in session processes keep running.\n"
		"exit codes: 0 stopped by a signal; 1 cannot listen or load certificates;\n"
		"            2 usage error.\n");
}

/* ================= session: one migration, then one VM ================= */

struct session {
	struct vmhost r;
	const char *hv; /* "kvm" or "xen" */
	struct migrate_dst *d;
	struct xport_tls *tls;
	int failed;
	int queried; /* a capacity query, answered: not a failed migration */
	int agent_fd;
	int slot_fd; /* agent_slot_hold(): held as long as this process lives */
	struct recv_record rec; /* RUNDIR/NAME.migration, once the migration has a token */
	int rec_on;
	uv_timer_t fault_timer; /* PML_MIGRATE_TEST_FAULT=stop-after-ready */
	int fault_timer_on;
};

/* The record of this migration (recv-resolve.h), best effort: without it
 * a source that lost our answer cannot learn the outcome for certain. */
static void session__record(struct session *s, enum recv_state st)
{
	if (!s->rec_on)
		return;
	s->rec.state = st;
	int e = recv_record_write(s->r.dirfd, s->r.name, &s->rec);
	if (e < 0)
		recv_log("cannot record the migration of '%s' (%s): %s", s->r.name, recv_state_name(st), strerror(-e));
}

/* Test hook (tests/test-resolve.sh): the session stops itself (SIGSTOP)
 * once its READY is on the wire, as a hung host would, so a test can hold
 * it between READY and COMMIT for as long as it likes. */
static void session__fault_tick(uv_timer_t *t)
{
	struct session *s = t->data;
	if (s->d && migrate_dst_unsent(s->d))
		return;
	uv_timer_stop(t);
	recv_log("test fault: '%s' stops itself after READY", s->r.name);
	raise(SIGSTOP);
}

static void session__step(void *opaque, enum migrate_dst_step step, const char *why)
{
	struct session *s = opaque;
	const char *fault = getenv("PML_MIGRATE_TEST_FAULT");
	switch (step) {
	case MIGRATE_DST_RECEIVING:
		if (!(s->rec.token = migrate_dst_token(s->d)))
			break; /* one connection, no resume: nothing names this migration */
		snprintf(s->rec.peer, sizeof(s->rec.peer), "%s", migrate_dst_peer(s->d));
		s->rec.pid = getpid();
		snprintf(s->rec.hv, sizeof(s->rec.hv), "%s", s->hv);
		s->rec_on = 1;
		session__record(s, RECV_RECEIVING);
		break;
	case MIGRATE_DST_READY:
		session__record(s, RECV_READY);
		if (fault && !strcmp(fault, "stop-after-ready") && !s->fault_timer_on) {
			uv_timer_init(&s->r.loop, &s->fault_timer);
			s->fault_timer.data = s;
			s->fault_timer_on = 1;
			uv_timer_start(&s->fault_timer, session__fault_tick, 0, 1);
		}
		break;
	case MIGRATE_DST_IN_DOUBT:
		s->r.in_doubt = 1;
		session__record(s, RECV_IN_DOUBT);
		recv_log("migration of '%s' in doubt: %s; the VM stays here paused until the source resolves it "
			 "('ctl %s resume' starts it here, 'ctl %s stop' discards it, once the source is checked)",
			 s->r.name, why, s->r.name, s->r.name);
		break;
	case MIGRATE_DST_COMMITTED:
		session__record(s, RECV_COMMITTED);
		break;
	}
}

static const char *outcome_name(int o)
{
	return o == STREAM_OUTCOME_RAN ? "ran" : o == STREAM_OUTCOME_NONE ? "none" : "unknown";
}

/* Control commands about the incoming migration (vmhost.h incoming_ctl). */
static int session__ctl(void *opaque, const char *cmd, struct json *j)
{
	struct session *s = opaque;
	char why[300] = "", tok[24], dec[16];
	uint64_t token = 0;
	enum stream_decision decision;
	int n = 0, by_operator = 0;
	if (!strncmp(cmd, "resolve ", 8) && sscanf(cmd + 8, "%20s %15s%n", tok, dec, &n) == 2 && !cmd[8 + n]) {
		char *end;
		token = strtoull(tok, &end, 16);
		if (*end || (strcmp(dec, "commit") && strcmp(dec, "abort"))) {
			json_bool(j, "ok", 0);
			json_str(j, "error", "usage: resolve TOKEN commit|abort");
			return 1;
		}
		decision = !strcmp(dec, "commit") ? STREAM_DECIDE_COMMIT : STREAM_DECIDE_ABORT;
	} else if (s->r.incoming && s->r.in_doubt && (!strcmp(cmd, "resume") || !strcmp(cmd, "stop"))) {
		/* The operator's word, once they checked the source. */
		token = s->rec.token;
		by_operator = 1;
		decision = !strcmp(cmd, "resume") ? STREAM_DECIDE_COMMIT : STREAM_DECIDE_ABORT;
		recv_log("'%s' in doubt: the operator says %s", s->r.name, cmd);
	} else {
		return 0;
	}
	int o;
	if (!s->rec_on || token != s->rec.token) {
		o = -EACCES;
		snprintf(why, sizeof(why), "not the migration this session holds");
	} else if (!s->d) { /* the migration ended: its outcome is known */
		o = s->r.incoming || s->failed ? STREAM_OUTCOME_NONE : STREAM_OUTCOME_RAN;
		snprintf(why, sizeof(why), "%s", o == STREAM_OUTCOME_RAN ? "the guest started here after COMMIT"
									  : "the VM was destroyed here before it ever ran");
	} else {
		o = migrate_dst_resolve(s->d, token, decision, by_operator ? "the operator" : "the source", why, sizeof(why));
	}
	json_bool(j, "ok", o > 0);
	if (o < 0) {
		json_str(j, "error", why);
		return 1;
	}
	json_str(j, "outcome", outcome_name(o));
	json_str(j, "why", why);
	recv_log("migration of '%s' resolved (%s): %s, %s", s->r.name, decision == STREAM_DECIDE_COMMIT ? "commit" : "abort",
		 outcome_name(o), why);
	return 1;
}

static int session__resolve(void *opaque, const char *name, const char *peer, const struct stream_resolve *rq,
			    char *text, size_t len)
{
	struct session *s = opaque;
	unsigned live, max;
	s->queried = 1; /* a query, not a failed migration */
	int o = agent_gate_query(s->agent_fd, &live, &max, text, len); /* one of --max-queries */
	if (o < 0) {
		recv_log("resolve of '%s' refused: %s", name, text);
		return o;
	}
	o = recv_resolve_answer(name, peer, rq, text, len);
	recv_log("resolve of '%s' (%s) from %s: %s: %s", name, rq->decision == STREAM_DECIDE_COMMIT ? "commit" : "abort",
		 peer[0] ? peer : "(plaintext)", o > 0 ? outcome_name(o) : "refused", text);
	return o;
}

static int session__claim(void *opaque, const char *name, char *why, size_t len)
{
	struct session *s = opaque;
	char file[96];
	if (!util_valid_name(name)) {
		snprintf(why, len, "invalid VM name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'", name);
		return -EINVAL;
	}
	/* Authenticated (the HELLO came over a verified TLS session): only now
	 * does this process take one of the agent's session slots. */
	int e = agent_gate_ask(s->agent_fd, why, len);
	if (e < 0)
		return e;
	/* The slot, also for an agent restarted while we run. */
	if (s->agent_fd >= 0 && (s->slot_fd = agent_slot_hold()) < 0)
		recv_log("cannot hold a session slot in the run directory (%s): a restarted agent would not count "
			 "this session", strerror(-s->slot_fd));
	e = vmhost_claim_name(&s->r, name);
	if (e == -EEXIST) {
		snprintf(why, len, "a VM named '%s' already runs on the destination", name);
		return e;
	}
	if (e < 0) {
		snprintf(why, len, "the destination cannot use its run directory for '%s' (see the agent's log)", name);
		return e;
	}
	snprintf(s->r.result_name, sizeof(s->r.result_name), "%s.result.json", name);
	unlinkat(s->r.dirfd, s->r.result_name, 0);
	snprintf(file, sizeof(file), "%s.log", name);
	FILE *f = rundir_create(s->r.dirfd, file);
	if (f) {
		setvbuf(f, NULL, _IOLBF, 0);
		s->r.con = s->r.out = f;
	} else {
		recv_log("cannot create %s in the run directory: %s", file, strerror(errno));
	}
	recv_log("incoming migration of '%s'", name);
	return 0;
}

static int session__create_vm(void *opaque, const struct stream_shape *sh, const void *dom, size_t domlen,
			      struct hv_vm **vm, char *why, size_t len)
{
	struct session *s = opaque;
	int e = vmhost_create_incoming(&s->r, s->hv, sh, dom, domlen, why, len);
	if (e == -EPROTONOSUPPORT)
		snprintf(why, len, "the source runs a %s VM and this agent receives into %s (recv --hv)",
			 sh->hv != STREAM_HV_KVM ? "Xen" : "KVM", !strcmp(s->hv, "xen") ? "Xen" : "KVM");
	*vm = s->r.vm;
	return e;
}

/* One line to the agent for its metrics (cli/metrics.h); best effort. */
static void session__report(struct session *s, const char *line)
{
	if (s->agent_fd >= 0 && write(s->agent_fd, line, strlen(line)) < 0)
		recv_log("cannot report to the agent: %s", strerror(errno));
}

/* The VM hosted here migrated onward, or tried to. */
static void session__mig_done(void *opaque, enum migrate_result res, const char *json)
{
	struct session *s = opaque;
	char v[64], line[96];
	uint64_t bytes = json_field(json, "bytes_on_wire", v, sizeof(v)) == 0 ? strtoull(v, NULL, 10) : 0;
	double dt_ms = json_field(json, "downtime_ms", v, sizeof(v)) == 0 ? strtod(v, NULL) : 0;
	metrics_line_out(line, sizeof(line), res == MIGRATE_OK ? "ok" : res == MIGRATE_INDETERMINATE ? "indeterminate" : "failed",
			 bytes, (uint64_t)(dt_ms * 1000));
	session__report(s, line);
}

static void session__running(void *opaque, const char *stats)
{
	struct session *s = opaque;
	char v[64], line[96];
	recv_log("'%s' is running here (%s)", s->r.name, stats);
	s->r.in_doubt = 0;
	session__record(s, RECV_RUNNING);
	metrics_line_in(line, sizeof(line), 1, json_field(stats, "wire_bytes", v, sizeof(v)) == 0 ? strtoull(v, NULL, 10) : 0);
	session__report(s, line);
	if (vmhost_went_live(&s->r) < 0)
		hv_vm_stop(s->r.vm);
	migrate_dst_free(s->d);
	s->d = NULL;
}

/* The host's memory, from /proc/meminfo (kB). */
static int session__meminfo(uint64_t *total, uint64_t *avail)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	int got = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f) && got != 3) {
		unsigned long long kb;
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			*total = kb << 10, got |= 1;
		else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			*avail = kb << 10, got |= 2;
	}
	fclose(f);
	return got == 3 ? 0 : -EIO;
}

static int session__capacity(void *opaque, struct stream_capacity *c, char *why, size_t len)
{
	struct session *s = opaque;
	unsigned live, max;
	s->queried = 1; /* answered or refused, it is a query: not a failed migration */
	int e = agent_gate_query(s->agent_fd, &live, &max, why, len);
	if (e < 0) {
		recv_log("capacity query refused: %s", why);
		return e;
	}
	if (session__meminfo(&c->mem_total, &c->mem_available) < 0) {
		snprintf(why, len, "the destination cannot read its memory figures");
		recv_log("capacity query refused: %s", why);
		return -EIO;
	}
	if (c->mem_available > c->mem_total)
		c->mem_available = c->mem_total;
	c->sessions = live < max ? live : max;
	c->max_sessions = max;
	c->hv = !strcmp(s->hv, "xen") ? STREAM_HV_XEN : STREAM_HV_KVM;
	recv_log("capacity query answered: %u of %u sessions, %llu MiB available", c->sessions, max,
		 (unsigned long long)(c->mem_available >> 20));
	return 0;
}

static void session__failed(void *opaque, const char *why)
{
	struct session *s = opaque;
	char line[96];
	if (!s->queried)
		recv_log("migration of '%s' failed: %s", s->r.name[0] ? s->r.name : "(unnamed)", why);
	if (s->queried)
		metrics_line_query(line, sizeof(line));
	else
		metrics_line_in(line, sizeof(line), 0, 0);
	session__report(s, line);
	s->failed = 1;
	migrate_dst_free(s->d);
	s->d = NULL;
	if (s->r.con && s->r.con != stdout && !s->queried)
		fprintf(s->r.con, "migration failed: %s\n", why);
	uv_stop(&s->r.loop);
}

static const struct migrate_dst_ops session_ops = {
	.claim = session__claim,
	.create_vm = session__create_vm,
	.running = session__running,
	.failed = session__failed,
	.capacity = session__capacity,
	.step = session__step,
	.resolve = session__resolve,
};

static int recv_session(const struct recv_opts *o)
{
	struct session s;
	char err[512];
	int rc = PMG_EXIT_FAIL, rec_fd = -1;

	memset(&s, 0, sizeof(s));
	signal(SIGPIPE, SIG_IGN);
	/* The agent starts sessions through /proc/self/exe (the very binary
	 * it runs), which the kernel names "exe": ps, top and profiles would
	 * show a VM's host process under that name. */
	prctl(PR_SET_NAME, "pml-migrate", 0, 0, 0);
	if (vmhost_init(&s.r, "") < 0)
		return PMG_EXIT_FAIL;
	s.r.incoming = 1;
	s.r.on_mig_done = session__mig_done;
	s.r.on_mig_done_opaque = &s;
	s.r.incoming_ctl = session__ctl;
	s.r.incoming_ctl_opaque = &s;
	s.agent_fd = o->agent_fd;
	s.slot_fd = -1;
	s.hv = o->hv;
	struct xport_tls_config tc = { .server = 1, .insecure = o->insecure, .certs_dir = o->certs, .node = o->node,
				       .allow = o->allow[0] ? o->allow : NULL };
	if (xport_tls_new(&tc, &s.tls, err, sizeof(err)) < 0) {
		recv_log("session: %s", err);
		close(o->session_fd);
		goto out;
	}
	if (migrate_dst_start(&s.r.loop, s.tls, o->session_fd, &o->lim, &session_ops, &s, &s.d) < 0) {
		recv_log("session: cannot serve the connection");
		goto out;
	}
	uv_run(&s.r.loop, UV_RUN_DEFAULT);
	if (s.failed || !s.r.vm || s.r.incoming) {
		if (s.r.vm) {
			hv_vm_stop(s.r.vm);
			hv_vm_wait(s.r.vm);
		}
		/* Recorded once the VM is gone (below): a resolver that gets no
		 * answer from us reads it after we exit. */
		if (s.rec_on && s.rec.state < RECV_RUNNING)
			rec_fd = dup(s.r.dirfd);
		if (s.r.result_name[0])
			unlinkat(s.r.dirfd, s.r.result_name, 0);
		goto out;
	}
	rc = vmhost_finish(&s.r); /* the loop above ran until the guest stopped */
	recv_log("'%s' ended here: %s", s.r.name,
		 s.r.migrated ? "migrated onward" : rc == PMG_EXIT_OK ? "guest exited 0" : "guest failed or stopped");
out:
	if (s.d)
		migrate_dst_free(s.d);
	vmhost_cleanup(&s.r); /* destroys the VM */
	if (rec_fd >= 0) {
		s.rec.state = RECV_DESTROYED;
		if (recv_record_write(rec_fd, s.r.name, &s.rec) < 0)
			recv_log("cannot record that '%s' was destroyed", s.r.name);
		close(rec_fd);
	}
	if (s.r.con && s.r.con != stdout)
		fclose(s.r.con);
	xport_tls_free(s.tls);
	return rc;
}

int cmd_recv(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, 0, 'l' },
		{ "certs", required_argument, 0, 'c' },
		{ "node", required_argument, 0, 'n' },
		{ "allow", required_argument, 0, 'a' },
		{ "insecure", no_argument, 0, 'I' },
		{ "run-dir", required_argument, 0, 'r' },
		{ "port-file", required_argument, 0, 'p' },
		{ "metrics-file", required_argument, 0, 'M' },
		{ "max-sessions", required_argument, 0, 'm' },
		{ "session-fd", required_argument, 0, 'S' },
		{ "timeout", required_argument, 0, 'T' },
		{ "max-handshakes", required_argument, 0, 'K' },
		{ "max-pending", required_argument, 0, 'P' },
		{ "max-queries", required_argument, 0, 'Q' },
		{ "agent-fd", required_argument, 0, 'A' },
		{ "handshake-timeout", required_argument, 0, 'H' },
		{ "hv", required_argument, 0, 'V' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct recv_opts o;
	uint64_t v;
	int c;

	memset(&o, 0, sizeof(o));
	o.session_fd = -1;
	o.max_sessions = 16;
	o.max_handshakes = 8;
	o.max_pending = 1024;
	o.max_queries = 4;
	o.agent_fd = -1;
	migrate_dst_limits_default(&o.lim);
	snprintf(o.node, sizeof(o.node), "agent");
	snprintf(o.hv, sizeof(o.hv), "auto");
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			snprintf(o.listen, sizeof(o.listen), "%s", optarg);
			break;
		case 'c':
			snprintf(o.certs, sizeof(o.certs), "%s", optarg);
			break;
		case 'n':
			if (!util_valid_name(optarg)) {
				util_err("recv: --node '%s': not a valid name", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(o.node, sizeof(o.node), "%s", optarg);
			break;
		case 'a':
			snprintf(o.allow, sizeof(o.allow), "%s", optarg);
			break;
		case 'I':
			o.insecure = 1;
			break;
		case 'r':
			if (setenv("PML_MIGRATE_RUNDIR", optarg, 1) < 0)
				return PMG_EXIT_FAIL;
			break;
		case 'p':
			snprintf(o.port_file, sizeof(o.port_file), "%s", optarg);
			break;
		case 'M':
			if (strlen(optarg) >= sizeof(o.metrics_file) - 8) {
				util_err("recv: --metrics-file: path too long");
				return PMG_EXIT_USAGE;
			}
			snprintf(o.metrics_file, sizeof(o.metrics_file), "%s", optarg);
			break;
		case 'm':
			if (cli_parse_uint(optarg, 1, 1024, &v) < 0) {
				util_err("recv: --max-sessions '%s': must be 1..1024", optarg);
				return PMG_EXIT_USAGE;
			}
			o.max_sessions = (unsigned)v;
			break;
		case 'K':
		case 'P':
			if (cli_parse_uint(optarg, 1, 65536, &v) < 0) {
				util_err("recv: --%s '%s': must be 1..65536", c == 'K' ? "max-handshakes" : "max-pending", optarg);
				return PMG_EXIT_USAGE;
			}
			*(c == 'K' ? &o.max_handshakes : &o.max_pending) = (unsigned)v;
			break;
		case 'Q':
			if (cli_parse_uint(optarg, 1, 1024, &v) < 0) {
				util_err("recv: --max-queries '%s': must be 1..1024", optarg);
				return PMG_EXIT_USAGE;
			}
			o.max_queries = (unsigned)v;
			break;
		case 'A':
			if (cli_parse_uint(optarg, 3, 1024, &v) < 0) {
				util_err("recv: --agent-fd is internal");
				return PMG_EXIT_USAGE;
			}
			o.agent_fd = (int)v;
			break;
		case 'T':
		case 'H':
			if (cli_parse_uint(optarg, 1, 3600, &v) < 0) {
				util_err("recv: --%s '%s': must be 1..3600 seconds", c == 'T' ? "timeout" : "handshake-timeout",
					optarg);
				return PMG_EXIT_USAGE;
			}
			*(c == 'T' ? &o.lim.idle_ms : &o.lim.handshake_ms) = (unsigned)v * 1000;
			break;
		case 'S':
			if (cli_parse_uint(optarg, 3, 1024, &v) < 0) {
				util_err("recv: --session-fd is internal");
				return PMG_EXIT_USAGE;
			}
			o.session_fd = (int)v;
			break;
		case 'V':
			if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "xen")) {
				util_err("recv: --hv '%s': must be auto, kvm or xen", optarg);
				return PMG_EXIT_USAGE;
			}
			if (!hv_backend_built(strcmp(optarg, "auto") ? optarg : "kvm")) {
				util_err("recv: --hv xen: this pml-migrate was built without the Xen libraries (libxen-dev)");
				return PMG_EXIT_USAGE;
			}
			snprintf(o.hv, sizeof(o.hv), "%s", optarg);
			break;
		case 'h':
			recv_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				util_err("recv: option '-%c' is unknown or needs a value (see 'pml-migrate recv --help')", optopt);
			else
				util_err("recv: unknown option '%s' (see 'pml-migrate recv --help')", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		util_err("recv: unexpected argument '%s'", argv[optind]);
		return PMG_EXIT_USAGE;
	}
	if (!o.insecure && !o.certs[0]) {
		util_err("recv: --certs DIR is required (or --insecure for plaintext)");
		return PMG_EXIT_USAGE;
	}
	if (!strcmp(o.hv, "auto"))
		snprintf(o.hv, sizeof(o.hv), "%s", hv_host_backend());
	if (o.session_fd >= 0)
		return recv_session(&o);
	if (!o.listen[0]) {
		util_err("recv: --listen HOST:PORT is required (see 'pml-migrate recv --help')");
		return PMG_EXIT_USAGE;
	}
	return agent_run(&o);
}
