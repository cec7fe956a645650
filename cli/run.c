/*
 * cli/run.c - `pml-migrate run`: the built-in VMM.
 *
 * Threads: main runs a libuv loop (control socket, signals, the VM-stopped
 * notification); one thread per vCPU (hv/); one harvester thread that
 * consumes the dirty log continuously when a log is on, so its cost can be
 * watched while the guest runs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "hv/hv.h"
#include "precopy/dirtylog.h"

struct runner {
	struct hv_vm *vm;
	struct hv_vm_config cfg;
	char name[65];
	char sock_path[108];
	int json;
	FILE *con;
	uint64_t t_start, t_end;

	/* dirty log and its harvester */
	struct precopy_dirtylog *dl;
	unsigned harvest_ms;
	pthread_t harvester;
	int harvester_started;
	atomic_int harvest_stop;
	pthread_mutex_t lock; /* guards dl, unique, report, stop info */
	uint64_t unique_frames;
	struct precopy_dirty_set set;

	/* guest results */
	struct pmg_report report;
	int have_report;
	enum hv_stop_reason why;
	int exit_code;
	char detail[160];

	uv_loop_t loop;
	uv_pipe_t server;
	int server_open;
	uv_async_t stopped_async;
	uv_signal_t sigint, sigterm;
	int paused;
};

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate run IMAGE [options] [-- GUEST-ARGS...]\n"
		"\n"
		"Boots a guest ELF image in the built-in KVM VMM (64-bit, CPL 3) and runs it\n"
		"until it exits. The guest's console goes to stdout (stderr with --json).\n"
		"\n"
		"options:\n"
		"  --mem SIZE             guest memory, multiple of 2M, 16M..128G (default 256M);\n"
		"                         memory is sparse: untouched pages cost nothing\n"
		"  --vcpus N              1 or 2 (default 1)\n"
		"  --dirty-log MODE       ring (default), bitmap or off\n"
		"  --ring-entries N       dirty ring size per vCPU, power of two (default 65536)\n"
		"  --harvest-ms N         harvest the dirty log every N ms, 1..10000 (default 10)\n"
		"  --name NAME            VM name for the control socket (default vm-PID)\n"
		"  --json                 print the final report as one JSON object on stdout\n"
		"  -h, --help             this text\n"
		"\n"
		"GUEST-ARGS are key=value words for the workload, e.g. seed=7 ws=64M rate=64.\n"
		"Control socket: $PML_MIGRATE_RUNDIR/NAME.sock (see 'pml-migrate ctl').\n"
		"exit codes: 0 guest exited with 0 and reported; 1 guest failed or VMM error;\n"
		"            2 usage error.\n");
}

/* ---- guest callbacks (vCPU threads) ---- */

static void run__console(void *opaque, unsigned vcpu, const char *buf, size_t len)
{
	struct runner *r = opaque;
	(void)vcpu;
	fwrite(buf, 1, len, r->con);
	fflush(r->con);
}

static void run__report(void *opaque, const struct pmg_report *rep)
{
	struct runner *r = opaque;
	pthread_mutex_lock(&r->lock);
	r->report = *rep;
	r->have_report = 1;
	pthread_mutex_unlock(&r->lock);
}

static void run__stopped(void *opaque, enum hv_stop_reason why, int code, const char *detail)
{
	struct runner *r = opaque;
	pthread_mutex_lock(&r->lock);
	r->why = why;
	r->exit_code = code;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
	r->t_end = cli_now_ns();
	pthread_mutex_unlock(&r->lock);
	uv_async_send(&r->stopped_async);
}

static const struct hv_guest_ops run_gops = {
	.console = run__console,
	.report = run__report,
	.stopped = run__stopped,
};

/* ---- harvester ---- */

static void run__harvest_once(struct runner *r)
{
	pthread_mutex_lock(&r->lock);
	long n = precopy_dirtylog_harvest(r->dl, &r->set);
	for (long i = 0; i < n; i++)
		if (precopy_dirtylog_hotness(r->dl, r->set.gfns[i]) == 1)
			r->unique_frames++;
	pthread_mutex_unlock(&r->lock);
}

static void *run__harvester(void *arg)
{
	struct runner *r = arg;
	pthread_setname_np(pthread_self(), "harvest");
	while (!atomic_load(&r->harvest_stop)) {
		usleep(r->harvest_ms * 1000u);
		run__harvest_once(r);
	}
	return NULL;
}

/* ---- control socket ---- */

struct ctl_client {
	uv_pipe_t pipe;
	struct runner *r;
	char buf[512];
	size_t len;
};

static void ctl__free(uv_handle_t *h) { free(h->data); }

static void ctl__written(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

static void ctl__reply(struct ctl_client *c, char *text, size_t len)
{
	uv_write_t *w = malloc(sizeof(*w));
	if (!w) {
		free(text);
		return;
	}
	w->data = text;
	uv_buf_t b = uv_buf_init(text, (unsigned)len);
	if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, ctl__written) < 0) {
		free(text);
		free(w);
	}
}

static const char *run__state(struct runner *r)
{
	if (r->t_end)
		return "stopped";
	return r->paused ? "paused" : "running";
}

static void ctl__command(struct ctl_client *c, const char *cmd)
{
	struct runner *r = c->r;
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	struct json j;

	if (!f)
		return;
	json_begin(&j, f);
	if (!strcmp(cmd, "status")) {
		json_bool(&j, "ok", 1);
		json_str(&j, "name", r->name);
		json_str(&j, "state", run__state(r));
		json_u64(&j, "pid", (uint64_t)getpid());
		json_u64(&j, "vcpus", r->cfg.vcpus);
		json_u64(&j, "mem_bytes", r->cfg.mem_bytes);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		json_u64(&j, "uptime_ms", ((r->t_end ? r->t_end : cli_now_ns()) - r->t_start) / 1000000);
	} else if (!strcmp(cmd, "pause")) {
		if (r->t_end) {
			json_bool(&j, "ok", 0);
			json_str(&j, "error", "VM has stopped");
		} else {
			uint64_t t0 = cli_now_ns();
			hv_vm_pause(r->vm);
			uint64_t dt = cli_now_ns() - t0;
			r->paused++;
			json_bool(&j, "ok", 1);
			json_f64(&j, "pause_us", (double)dt / 1000.0);
		}
	} else if (!strcmp(cmd, "resume")) {
		if (!r->paused) {
			json_bool(&j, "ok", 0);
			json_str(&j, "error", "VM is not paused");
		} else {
			hv_vm_resume(r->vm);
			r->paused--;
			json_bool(&j, "ok", 1);
		}
	} else if (!strcmp(cmd, "stats")) {
		json_bool(&j, "ok", 1);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		pthread_mutex_lock(&r->lock);
		if (r->dl) {
			struct precopy_dirtylog_stats st;
			precopy_dirtylog_get_stats(r->dl, &st);
			json_u64(&j, "harvests", st.harvests);
			json_u64(&j, "dirty_pages_harvested", st.frames);
			json_u64(&j, "unique_pages_dirtied", r->unique_frames);
			json_f64(&j, "harvest_time_ms", (double)st.total_ns / 1e6);
			json_f64(&j, "harvest_max_ms", (double)st.max_ns / 1e6);
			json_u64(&j, "ring_full_exits", st.ring_full_exits);
		}
		pthread_mutex_unlock(&r->lock);
	} else if (!strcmp(cmd, "stop")) {
		hv_vm_stop(r->vm);
		json_bool(&j, "ok", 1);
	} else {
		json_bool(&j, "ok", 0);
		json_str(&j, "error", "unknown command (status, pause, resume, stats, stop)");
	}
	json_end(&j);
	fclose(f);
	ctl__reply(c, out, outlen);
}

static void ctl__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct ctl_client *c = h->data;
	(void)sz;
	*b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void ctl__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct ctl_client *c = s->data;
	(void)b;
	if (n < 0) {
		uv_close((uv_handle_t *)s, ctl__free);
		return;
	}
	c->len += (size_t)n;
	char *nl;
	while ((nl = memchr(c->buf, '\n', c->len))) {
		*nl = 0;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = 0;
		ctl__command(c, c->buf);
		size_t used = (size_t)(nl - c->buf) + 1;
		memmove(c->buf, nl + 1, c->len - used);
		c->len -= used;
	}
	if (c->len == sizeof(c->buf)) /* a line longer than any command */
		uv_close((uv_handle_t *)s, ctl__free);
}

static void ctl__connection(uv_stream_t *server, int status)
{
	struct runner *r = server->data;
	if (status < 0)
		return;
	struct ctl_client *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->r = r;
	uv_pipe_init(&r->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctl__alloc, ctl__read) < 0)
		uv_close((uv_handle_t *)&c->pipe, ctl__free);
}

/* A socket file that nobody answers on is stale and may be replaced; one
 * that answers belongs to a running VM of the same name. */
static int run__socket_in_use(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int used = 0;
	if (fd < 0)
		return 0;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		used = 1;
	close(fd);
	return used;
}

static int run__open_ctl(struct runner *r)
{
	char dir[80];
	int e = cli_run_dir(dir, sizeof(dir), 1);
	if (e < 0) {
		cli_err("control socket directory: %s", strerror(-e));
		return e;
	}
	if ((size_t)snprintf(r->sock_path, sizeof(r->sock_path), "%s/%s.sock", dir, r->name) >= sizeof(r->sock_path)) {
		cli_err("control socket path too long");
		return -ENAMETOOLONG;
	}
	if (run__socket_in_use(r->sock_path)) {
		cli_err("a VM named '%s' is already running (%s)", r->name, r->sock_path);
		return -EEXIST;
	}
	unlink(r->sock_path);
	uv_pipe_init(&r->loop, &r->server, 0);
	r->server.data = r;
	r->server_open = 1;
	e = uv_pipe_bind(&r->server, r->sock_path);
	if (!e)
		e = uv_listen((uv_stream_t *)&r->server, 16, ctl__connection);
	if (e < 0) {
		cli_err("control socket %s: %s", r->sock_path, uv_strerror(e));
		return e;
	}
	return 0;
}

static void run__close_walk(uv_handle_t *h, void *arg)
{
	struct runner *r = arg;
	if (uv_is_closing(h))
		return;
	/* Control clients own their memory; everything else lives in runner. */
	if (h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&r->server)
		uv_close(h, ctl__free);
	else
		uv_close(h, NULL);
}

static void run__on_stopped(uv_async_t *a)
{
	struct runner *r = a->data;
	(void)r;
	uv_stop(a->loop);
}

static void run__on_signal(uv_signal_t *s, int sig)
{
	struct runner *r = s->data;
	(void)sig;
	hv_vm_stop(r->vm);
}

/* ---- report ---- */

static void run__print_report(struct runner *r)
{
	double secs = (double)(r->t_end - r->t_start) / 1e9;
	struct precopy_dirtylog_stats st = { 0 };
	if (r->dl)
		precopy_dirtylog_get_stats(r->dl, &st);
	double stall_us = 0;
	if (r->have_report && r->report.tsc_khz)
		stall_us = (double)r->report.max_stall_tsc * 1000.0 / (double)r->report.tsc_khz;
	const char *result = r->why == HV_STOP_EXIT ? (r->exit_code == 0 && r->have_report ? "ok" : "guest-failed")
			     : r->why == HV_STOP_CRASH ? "crashed"
						       : "stopped";
	if (r->json) {
		struct json j;
		char dig[17];
		json_begin(&j, stdout);
		json_str(&j, "result", result);
		json_i64(&j, "exit_code", r->exit_code);
		if (r->why != HV_STOP_EXIT)
			json_str(&j, "detail", r->detail);
		json_str(&j, "name", r->name);
		if (r->have_report) {
			snprintf(dig, sizeof(dig), "%016" PRIx64, r->report.digest);
			json_str(&j, "workload", r->report.workload);
			json_u64(&j, "seed", r->report.seed);
			json_u64(&j, "ops", r->report.ops);
			json_str(&j, "digest", dig);
			json_f64(&j, "max_stall_us", stall_us);
			json_u64(&j, "max_stall_tsc", r->report.max_stall_tsc);
			json_u64(&j, "tsc_backwards", r->report.tsc_backwards);
		}
		json_f64(&j, "run_time_ms", secs * 1000.0);
		json_u64(&j, "vcpus", r->cfg.vcpus);
		json_u64(&j, "mem_bytes", r->cfg.mem_bytes);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		json_u64(&j, "harvests", st.harvests);
		json_u64(&j, "dirty_pages_harvested", st.frames);
		json_u64(&j, "unique_pages_dirtied", r->unique_frames);
		json_f64(&j, "harvest_time_ms", (double)st.total_ns / 1e6);
		json_f64(&j, "harvest_mean_us", st.harvests ? (double)st.total_ns / 1e3 / (double)st.harvests : 0);
		json_f64(&j, "harvest_max_us", (double)st.max_ns / 1e3);
		json_u64(&j, "ring_full_exits", st.ring_full_exits);
		json_end(&j);
		return;
	}
	FILE *f = stdout;
	fprintf(f, "\n== pml-migrate run: %s ==\n", r->name);
	fprintf(f, "  result           %s", result);
	if (r->why == HV_STOP_EXIT)
		fprintf(f, " (guest exit code %d)\n", r->exit_code);
	else
		fprintf(f, " (%s)\n", r->detail);
	if (r->have_report) {
		fprintf(f, "  workload         %s (seed %" PRIu64 ")\n", r->report.workload, r->report.seed);
		fprintf(f, "  ops              %" PRIu64 "\n", r->report.ops);
		fprintf(f, "  digest           %016" PRIx64 "\n", r->report.digest);
		fprintf(f, "  max stall        %.3f ms (guest-observed)\n", stall_us / 1000.0);
	}
	fprintf(f, "  run time         %.3f s\n", secs);
	fprintf(f, "  dirty log        %s", hv_dirty_mode_name(r->cfg.dirty_mode));
	if (r->dl)
		fprintf(f, ": %" PRIu64 " harvests, %" PRIu64 " pages (%" PRIu64 " distinct), %.3f ms total, "
			   "%.1f us mean, %.1f us max, %" PRIu64 " ring-full exits\n",
			st.harvests, st.frames, r->unique_frames, (double)st.total_ns / 1e6,
			st.harvests ? (double)st.total_ns / 1e3 / (double)st.harvests : 0, (double)st.max_ns / 1e3,
			st.ring_full_exits);
	else
		fputc('\n', f);
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
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct runner r;
	char err[256] = "";
	char guest_args[3072] = "";
	uint64_t v;
	int c, rc = PMG_EXIT_FAIL, e, loop_ok = 0;

	memset(&r, 0, sizeof(r));
	r.cfg.mem_bytes = 256ull << 20;
	r.cfg.vcpus = 1;
	r.cfg.dirty_mode = HV_DIRTY_RING;
	r.harvest_ms = 10;
	snprintf(r.name, sizeof(r.name), "vm-%d", (int)getpid());

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (cli_parse_size(optarg, &v) < 0 || v < HV_MIN_MEM || v > HV_MAX_MEM || (v & ((2u << 20) - 1))) {
				cli_err("--mem '%s': must be a multiple of 2M between 16M and 128G", optarg);
				return PMG_EXIT_USAGE;
			}
			r.cfg.mem_bytes = v;
			break;
		case 'c':
			if (cli_parse_uint(optarg, 1, HV_MAX_VCPUS, &v) < 0) {
				cli_err("--vcpus '%s': must be 1..%d", optarg, HV_MAX_VCPUS);
				return PMG_EXIT_USAGE;
			}
			r.cfg.vcpus = (unsigned)v;
			break;
		case 'd':
			if (hv_dirty_mode_parse(optarg, &r.cfg.dirty_mode) < 0) {
				cli_err("--dirty-log '%s': must be ring, bitmap or off", optarg);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'R':
			if (cli_parse_uint(optarg, 64, 1u << 20, &v) < 0 || (v & (v - 1))) {
				cli_err("--ring-entries '%s': must be a power of two, 64..1048576", optarg);
				return PMG_EXIT_USAGE;
			}
			r.cfg.ring_entries = (uint32_t)v;
			break;
		case 'H':
			if (cli_parse_uint(optarg, 1, 10000, &v) < 0) {
				cli_err("--harvest-ms '%s': must be 1..10000", optarg);
				return PMG_EXIT_USAGE;
			}
			r.harvest_ms = (unsigned)v;
			break;
		case 'n':
			if (!cli_valid_name(optarg)) {
				cli_err("--name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.'", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(r.name, sizeof(r.name), "%s", optarg);
			break;
		case 'j':
			r.json = 1;
			break;
		case 'h':
			run_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				cli_err("run: option '-%c' is unknown or needs a value (see 'pml-migrate run --help')", optopt);
			else
				cli_err("run: unknown option '%s' (see 'pml-migrate run --help')", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		cli_err("run: missing IMAGE (see 'pml-migrate run --help')");
		return PMG_EXIT_USAGE;
	}
	/* GNU getopt moved every non-option (IMAGE, then the guest's words)
	 * behind the options and consumed "--". */
	const char *image = argv[optind++];
	for (size_t used = 0; optind < argc; optind++) {
		int n = snprintf(guest_args + used, sizeof(guest_args) - used, "%s%s", used ? " " : "", argv[optind]);
		if (n < 0 || (size_t)n >= sizeof(guest_args) - used) {
			cli_err("run: guest arguments longer than %zu bytes", sizeof(guest_args) - 1);
			return PMG_EXIT_USAGE;
		}
		used += (size_t)n;
	}

	r.con = r.json ? stderr : stdout;
	pthread_mutex_init(&r.lock, NULL);
	e = hv_vm_create("kvm", &r.cfg, &r.vm);
	if (e < 0) {
		if (e == -ENOENT || e == -EACCES)
			cli_err("cannot open /dev/kvm: %s", strerror(-e));
		else if (e == -ENOTSUP)
			cli_err("this KVM lacks what --dirty-log %s needs", hv_dirty_mode_name(r.cfg.dirty_mode));
		else
			cli_err("creating the VM: %s", strerror(-e));
		goto out;
	}
	hv_vm_set_guest_ops(r.vm, &run_gops, &r);
	e = hv_boot_image(r.vm, image, guest_args, err, sizeof(err));
	if (e < 0) {
		cli_err("%s", err);
		goto out_vm;
	}
	if (uv_loop_init(&r.loop) < 0) {
		cli_err("event loop init failed");
		goto out_vm;
	}
	loop_ok = 1;
	uv_async_init(&r.loop, &r.stopped_async, run__on_stopped);
	r.stopped_async.data = &r;
	uv_signal_init(&r.loop, &r.sigint);
	uv_signal_init(&r.loop, &r.sigterm);
	r.sigint.data = r.sigterm.data = &r;
	uv_signal_start(&r.sigint, run__on_signal, SIGINT);
	uv_signal_start(&r.sigterm, run__on_signal, SIGTERM);
	if (run__open_ctl(&r) < 0)
		goto out_loop;
	if (r.cfg.dirty_mode != HV_DIRTY_OFF) {
		e = precopy_dirtylog_open(r.vm, &r.dl);
		if (e < 0) {
			cli_err("starting the %s dirty log: %s", hv_dirty_mode_name(r.cfg.dirty_mode), strerror(-e));
			goto out_loop;
		}
	}
	r.t_start = cli_now_ns();
	e = hv_vm_start(r.vm);
	if (e < 0) {
		cli_err("starting vCPUs: %s", strerror(-e));
		goto out_loop;
	}
	if (r.dl) {
		e = pthread_create(&r.harvester, NULL, run__harvester, &r);
		if (e) {
			cli_err("harvester thread: %s", strerror(e));
			hv_vm_stop(r.vm);
		} else {
			r.harvester_started = 1;
		}
	}
	uv_run(&r.loop, UV_RUN_DEFAULT);
	hv_vm_wait(r.vm);
	if (r.harvester_started) {
		atomic_store(&r.harvest_stop, 1);
		pthread_join(r.harvester, NULL);
		run__harvest_once(&r); /* the tail since the last periodic harvest */
	}
	run__print_report(&r);
	rc = (r.why == HV_STOP_EXIT && r.exit_code == 0 && r.have_report) ? PMG_EXIT_OK : PMG_EXIT_FAIL;
	if (r.why == HV_STOP_CRASH && !r.json)
		cli_err("guest crashed: %s", r.detail);

out_loop:
	if (r.server_open)
		unlink(r.sock_path);
	if (loop_ok) {
		uv_walk(&r.loop, run__close_walk, &r);
		uv_run(&r.loop, UV_RUN_DEFAULT);
		uv_loop_close(&r.loop);
	}
out_vm:
	precopy_dirtylog_close(r.dl);
	precopy_dirty_set_free(&r.set);
	hv_vm_destroy(r.vm);
out:
	pthread_mutex_destroy(&r.lock);
	return rc;
}
