/*
 * cli/agent.c - the receiving agent: accept, admit, hand off (stages in
 * cli/agent.h). The agent never parses the stream: it looks at the first
 * record's header without consuming it and leaves every byte to the
 * session process, so a hostile stream takes down one session, never the
 * agent or other VMs.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "cli/agent.h"
#include "cli/metrics.h"
#include "cli/util.h"
#include "migrate/stream.h"
#include "transport/xport.h"
#include "util/rundir.h"

#define AGENT_TICK_MS 100
#define AGENT_EVICT_AFTER_NS (500ull * 1000000ull) /* a handshake is never cut before this */
#define TLS_MAX_RECORD 16384

void recv_log(const char *fmt, ...)
{
	char ts[32];
	time_t t = time(NULL);
	struct tm tm;
	va_list ap;
	localtime_r(&t, &tm);
	strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
	fprintf(stderr, "[%s] pml-migrate recv[%d]: ", ts, (int)getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* ---- session side of the gate ---- */

int agent_gate_ask(int fd, char *why, size_t len)
{
	char c = 'A';
	if (fd < 0)
		return 0;
	if (write(fd, &c, 1) != 1) {
		snprintf(why, len, "the destination agent went away");
		return -EPIPE;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1 || read(fd, &c, 1) != 1) {
		snprintf(why, len, "the destination agent did not grant a session");
		return -EIO;
	}
	if (c == 'Y')
		return 0;
	snprintf(why, len, "the destination is busy: its --max-sessions limit is reached");
	return -EBUSY;
}

int agent_gate_query(int fd, unsigned *sessions, unsigned *max_sessions, char *why, size_t len)
{
	char c = 'Q';
	uint32_t v[2];
	if (fd < 0) {
		*sessions = 0;
		*max_sessions = 1;
		return 0;
	}
	if (write(fd, &c, 1) != 1) {
		snprintf(why, len, "the destination agent went away");
		return -EPIPE;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	if (poll(&p, 1, 5000) != 1 || read(fd, v, sizeof(v)) != sizeof(v)) {
		snprintf(why, len, "the destination agent did not answer");
		return -EIO;
	}
	if (v[0] == UINT32_MAX) {
		snprintf(why, len, "the destination answers at most %u queries, probes and resolutions at once "
				   "(--max-queries): try again",
			 v[1]);
		return -EBUSY;
	}
	*sessions = v[0];
	*max_sessions = v[1];
	return 0;
}

#define AGENT_SLOT_PREFIX ".session-" /* no VM name starts with '.' */

int agent_slot_hold(void)
{
	char file[48], why[RUNDIR_MAX_PATH + 200];
	int dfd = rundir_open(0, NULL, 0, why, sizeof(why));
	if (dfd < 0)
		return dfd;
	snprintf(file, sizeof(file), AGENT_SLOT_PREFIX "%d", (int)getpid());
	int fd = openat(dfd, file, O_CREAT | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
	int e = fd < 0 ? -errno : 0;
	close(dfd);
	if (!e && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		e = -errno;
		close(fd);
	}
	return e < 0 ? e : fd;
}

/* ---- agent ---- */

struct agent_pend;
struct agent_child;

struct agent {
	uv_loop_t loop;
	uv_tcp_t server;
	uv_signal_t sigint, sigterm;
	uv_timer_t tick;
	struct recv_opts o;
	char **child_argv;
	unsigned live, handshaking, pending;
	unsigned queries;   /* children answering a query, probe or resolution */
	struct agent_pend *ph, *pt;   /* pending, oldest first */
	struct agent_child *ch, *ct;  /* session processes, oldest first */
	uint64_t dropped_deadline, dropped_evicted, dropped_bad; /* logged at most once a second */
	uint64_t last_drop_log;
	struct metrics m;
};

struct agent_pend {
	struct agent_pend *prev, *next;
	struct agent *a;
	uv_poll_t poll;
	int fd, polling;
	uint64_t t;
	char addr[64];
};

struct agent_child {
	struct agent_child *prev, *next;
	struct agent *a;
	uv_process_t proc;
	uv_pipe_t ctl;
	int authed, exited, handles;
	int query;     /* authenticated, answering a capacity query: neither handshaking nor a session */
	uint64_t t;
	char in[256];  /* what the session said, not yet taken */
	size_t inlen;
};

static uint64_t agent__now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define LIST_APPEND(h, t, x)                 \
	do {                                 \
		(x)->prev = (t);             \
		(x)->next = NULL;            \
		if (t)                       \
			(t)->next = (x);     \
		else                         \
			(h) = (x);           \
		(t) = (x);                   \
	} while (0)
#define LIST_REMOVE(h, t, x)                       \
	do {                                       \
		if ((x)->prev)                     \
			(x)->prev->next = (x)->next; \
		else                               \
			(h) = (x)->next;           \
		if ((x)->next)                     \
			(x)->next->prev = (x)->prev; \
		else                               \
			(t) = (x)->prev;           \
	} while (0)

/* ---- stage 1: pending ---- */

static void agent__pend_closed(uv_handle_t *h)
{
	struct agent_pend *p = h->data;
	close(p->fd); /* a session process that got it has its own copy */
	free(p);
}

static void agent__pend_drop(struct agent_pend *p, uint64_t *counter)
{
	struct agent *a = p->a;
	LIST_REMOVE(a->ph, a->pt, p);
	a->pending--;
	if (counter)
		(*counter)++;
	uv_close((uv_handle_t *)&p->poll, agent__pend_closed);
}

/* 1: the whole first record is here; 0: not yet; -1: not our protocol or
 * closed (the caller drops it). Looks without consuming. */
static int agent__pend_check(struct agent *a, struct agent_pend *p)
{
	uint8_t h[8];
	size_t need = a->o.insecure ? 8 : 5;
	ssize_t n = recv(p->fd, h, need, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0)
		return -1;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
	size_t rec;
	if (!a->o.insecure) {
		/* TLS: a handshake record (22) of version 3.x. */
		if (h[0] != 22 || (n >= 2 && h[1] != 3))
			return -1;
		if ((size_t)n < need)
			return 0;
		rec = (size_t)h[3] << 8 | h[4];
		if (!rec || rec > TLS_MAX_RECORD)
			return -1;
	} else {
		/* Plaintext: a HELLO record header (docs/stream.md). */
		if ((size_t)n < need)
			return 0;
		rec = (size_t)h[4] | (size_t)h[5] << 8 | (size_t)h[6] << 16 | (size_t)h[7] << 24;
		if ((h[0] | h[1] << 8) != STREAM_HELLO || h[2] || h[3] || rec > 16 + STREAM_MAX_NAME)
			return -1;
	}
	int avail = 0;
	if (ioctl(p->fd, FIONREAD, &avail) < 0)
		return -1;
	return (size_t)avail >= need + rec ? 1 : 0;
}

/* ---- stage 2 and 3: session processes ---- */

static void agent__child_closed(uv_handle_t *h)
{
	struct agent_child *c = h->data;
	if (--c->handles == 0)
		free(c);
}

static void agent__ctl_drain(struct agent_child *c);
static void agent__metrics(struct agent *a);

static void agent__child_exit(uv_process_t *p, int64_t status, int sig)
{
	struct agent_child *c = p->data;
	struct agent *a = c->a;
	if (c->authed)
		a->live--;
	else if (c->query)
		a->queries--;
	else
		a->handshaking--;
	LIST_REMOVE(a->ch, a->ct, c);
	c->exited = 1;
	agent__ctl_drain(c);
	agent__metrics(a);
	if (sig)
		recv_log("session %d killed by signal %d%s", p->pid, sig, c->authed ? "" : " (before authenticating)");
	else
		recv_log("session %d exited with status %" PRId64, p->pid, status);
	uv_close((uv_handle_t *)p, agent__child_closed);
	if (!uv_is_closing((uv_handle_t *)&c->ctl))
		uv_close((uv_handle_t *)&c->ctl, agent__child_closed);
}

static void agent__ctl_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct agent_child *c = h->data;
	(void)sz;
	*b = uv_buf_init(c->in + c->inlen, (unsigned)(sizeof(c->in) - c->inlen));
}

static void agent__ctl_written(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void agent__ctl_answer(uv_stream_t *s, const void *p, size_t n)
{
	uv_write_t *w = malloc(sizeof(*w) + n);
	if (!w)
		return;
	memcpy(w + 1, p, n);
	uv_buf_t ob = uv_buf_init((char *)(w + 1), (unsigned)n);
	if (uv_write(w, s, &ob, 1, agent__ctl_written) < 0)
		free(w);
}

/* Sessions an earlier agent started that still run here (they outlived
 * a crash or restart): slot locks in the run directory held by processes
 * that are not our children. Stale ones (their process is gone) are
 * removed on the way. */
static unsigned agent__earlier(struct agent *a)
{
	char why[RUNDIR_MAX_PATH + 200];
	unsigned n = 0;
	int dfd = rundir_open(0, NULL, 0, why, sizeof(why));
	int rfd = dfd >= 0 ? openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
	if (!d && rfd >= 0)
		close(rfd);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char *end;
		if (strncmp(e->d_name, AGENT_SLOT_PREFIX, strlen(AGENT_SLOT_PREFIX)))
			continue;
		long pid = strtol(e->d_name + strlen(AGENT_SLOT_PREFIX), &end, 10);
		if (*end || pid <= 0)
			continue;
		int ours = 0;
		for (struct agent_child *c = a->ch; c && !ours; c = c->next)
			ours = c->proc.pid == pid;
		if (ours)
			continue; /* counted in a->live */
		int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
			n++; /* held: its session runs */
		else
			unlinkat(dfd, e->d_name, 0);
		close(fd);
	}
	if (d)
		closedir(d);
	if (dfd >= 0)
		close(dfd);
	return n;
}

/* The metrics file, rewritten whenever a figure changes; earlier: what
 * agent__earlier() just counted. */
static void agent__metrics_with(struct agent *a, unsigned earlier)
{
	int e;
	if (!a->o.metrics_file[0])
		return;
	struct metrics_gauges g = { .sessions = a->live + earlier, .earlier = earlier, .max_sessions = a->o.max_sessions,
				    .handshaking = a->handshaking, .queries = a->queries, .max_queries = a->o.max_queries };
	if ((e = metrics_write(&a->m, a->o.metrics_file, &g)) < 0)
		recv_log("cannot write --metrics-file %s: %s", a->o.metrics_file, strerror(-e));
}

static void agent__metrics(struct agent *a)
{
	if (a->o.metrics_file[0])
		agent__metrics_with(a, agent__earlier(a));
}

/* What a session says on its socketpair: 'A' asks for a slot once its
 * peer is authenticated, 'Q' asks the counts for a capacity query, and
 * "M ...\n" lines report outcomes for the metrics (cli/metrics.h). */
static void agent__ctl_input(struct agent_child *c, uv_stream_t *s)
{
	struct agent *a = c->a;
	size_t i = 0;
	while (i < c->inlen) {
		char k = c->in[i];
		if (k == 'M') {
			char *nl = memchr(c->in + i, '\n', c->inlen - i);
			if (!nl)
				break; /* the rest of the line is on its way */
			*nl = 0;
			if (metrics_take(&a->m, c->in + i) == 0)
				agent__metrics(a);
			i = (size_t)(nl - c->in) + 1;
			continue;
		}
		i++;
		if (!s)
			continue; /* draining a session that exited: only its reports count */
		if (k == 'Q') {
			/* Authenticated, and no migration: it leaves the
			 * handshake stage (its deadline and evictions) without
			 * taking a session slot, but takes one of --max-queries
			 * (a probe may last 75 s; each costs a process). */
			uint32_t v[2] = { UINT32_MAX, a->o.max_queries };
			unsigned earlier = agent__earlier(a);
			if (!c->query && a->queries >= a->o.max_queries) {
				recv_log("refusing query %d: %u queries, probes or resolutions already answering "
					 "(--max-queries)",
					 c->proc.pid, a->queries);
				a->m.queries_refused++;
			} else {
				if (!c->query && !c->authed) {
					c->query = 1;
					a->handshaking--;
					a->queries++;
				}
				v[0] = a->live + earlier;
				v[1] = a->o.max_sessions;
			}
			agent__ctl_answer(s, v, sizeof(v));
			agent__metrics_with(a, earlier);
		} else if (k == 'A' && !c->authed) {
			char answer = 'N';
			unsigned earlier = agent__earlier(a);
			if (a->live + earlier < a->o.max_sessions) {
				c->authed = 1;
				a->handshaking--;
				a->live++;
				answer = 'Y';
				agent__metrics_with(a, earlier);
			} else {
				recv_log("refusing session %d: %u sessions already running (--max-sessions)%s", c->proc.pid,
					 a->live + earlier, earlier ? ", an earlier agent's included" : "");
			}
			agent__ctl_answer(s, &answer, 1);
		}
	}
	memmove(c->in, c->in + i, c->inlen - i);
	c->inlen -= i;
	if (c->inlen == sizeof(c->in))
		c->inlen = 0; /* a line longer than any report: dropped */
}

static void agent__ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct agent_child *c = s->data;
	(void)b;
	if (n <= 0) {
		if (n < 0)
			uv_read_stop(s);
		return;
	}
	c->inlen += (size_t)n;
	agent__ctl_input(c, s);
}

/* A session that exited may have reported just before: read what is
 * left on its socketpair before closing it. */
static void agent__ctl_drain(struct agent_child *c)
{
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->ctl, &fd) < 0)
		return;
	for (;;) {
		ssize_t k = recv(fd, c->in + c->inlen, sizeof(c->in) - c->inlen, MSG_DONTWAIT);
		if (k <= 0)
			break;
		c->inlen += (size_t)k;
		agent__ctl_input(c, NULL);
	}
}

/* Makes room in the handshake stage: the oldest process still
 * handshaking is killed, but only once it had a fair chance to finish. */
static int agent__handshake_room(struct agent *a, uint64_t now)
{
	if (a->handshaking < a->o.max_handshakes)
		return 1;
	for (struct agent_child *c = a->ch; c; c = c->next)
		if (!c->authed && !c->query && !c->exited && util_age_ns(now, c->t) > AGENT_EVICT_AFTER_NS) {
			uv_process_kill(&c->proc, SIGKILL);
			a->dropped_evicted++;
			return 0; /* its exit frees the slot */
		}
	return 0;
}

static void agent__spawn(struct agent *a, struct agent_pend *p)
{
	struct agent_child *c = calloc(1, sizeof(*c));
	if (!c) {
		agent__pend_drop(p, &a->dropped_bad);
		return;
	}
	c->a = a;
	c->t = agent__now();
	c->proc.data = c->ctl.data = c;
	uv_pipe_init(&a->loop, &c->ctl, 0);
	uv_stdio_container_t stdio[5] = {
		{ .flags = UV_IGNORE },
		{ .flags = UV_INHERIT_FD, .data.fd = 1 },
		{ .flags = UV_INHERIT_FD, .data.fd = 2 },
		{ .flags = UV_INHERIT_FD, .data.fd = p->fd },
		{ .flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->ctl },
	};
	uv_process_options_t po = {
		.exit_cb = agent__child_exit,
		.file = "/proc/self/exe",
		.args = a->child_argv,
		.stdio_count = 5,
		.stdio = stdio,
	};
	int e = uv_spawn(&a->loop, &c->proc, &po);
	LIST_REMOVE(a->ph, a->pt, p);
	a->pending--;
	uv_close((uv_handle_t *)&p->poll, agent__pend_closed);
	if (e < 0) {
		recv_log("cannot start a session process: %s", uv_strerror(e));
		c->handles = 1;
		uv_close((uv_handle_t *)&c->ctl, agent__child_closed);
		return;
	}
	c->handles = 2;
	a->handshaking++;
	LIST_APPEND(a->ch, a->ct, c);
	uv_read_start((uv_stream_t *)&c->ctl, agent__ctl_alloc, agent__ctl_read);
	recv_log("connection handed to session %d (from %s)", c->proc.pid, p->addr);
}

/* A pending connection may go on once its first record is here and the
 * handshake stage has room. */
static void agent__pend_advance(struct agent *a, struct agent_pend *p, uint64_t now)
{
	int r = agent__pend_check(a, p);
	if (r < 0) {
		agent__pend_drop(p, &a->dropped_bad);
		return;
	}
	if (r == 1 && agent__handshake_room(a, now))
		agent__spawn(a, p);
}

static void agent__pend_readable(uv_poll_t *h, int status, int events)
{
	struct agent_pend *p = h->data;
	(void)status;
	(void)events;
	/* Level-triggered: a client that trickles would wake us without end.
	 * From here on the tick looks at it, ten times a second at most. */
	uv_poll_stop(h);
	p->polling = 0;
	agent__pend_advance(p->a, p, agent__now());
}

static void agent__tick(uv_timer_t *t)
{
	struct agent *a = t->data;
	uint64_t now = agent__now(), hs = (uint64_t)a->o.lim.handshake_ms * 1000000ull;
	struct agent_pend *p = a->ph, *next;
	for (; p; p = next) {
		next = p->next;
		if (util_age_ns(now, p->t) > hs)
			agent__pend_drop(p, &a->dropped_deadline);
		else if (!p->polling)
			agent__pend_advance(a, p, now);
	}
	/* Backstop for a session process stuck before authenticating (it
	 * enforces the same deadline itself). */
	for (struct agent_child *c = a->ch; c; c = c->next)
		if (!c->authed && !c->query && !c->exited && util_age_ns(now, c->t) > hs + 2000000000ull) {
			uv_process_kill(&c->proc, SIGKILL);
			a->dropped_deadline++;
		}
	uint64_t n = a->dropped_deadline + a->dropped_evicted + a->dropped_bad;
	if (n && util_age_ns(now, a->last_drop_log) > 1000000000ull) {
		recv_log("dropped %" PRIu64 " unauthenticated connection(s): %" PRIu64 " past the %u ms handshake deadline, "
			 "%" PRIu64 " evicted for newer ones, %" PRIu64 " not speaking our protocol or closed",
			 n, a->dropped_deadline, a->o.lim.handshake_ms, a->dropped_evicted, a->dropped_bad);
		a->dropped_deadline = a->dropped_evicted = a->dropped_bad = 0;
		a->last_drop_log = now;
	}
}

static void agent__connection(uv_stream_t *server, int status)
{
	struct agent *a = server->data;
	uv_os_fd_t fd;

	if (status < 0)
		return;
	/* Take the socket away from libuv's TCP handle: stage 1 only polls it. */
	uv_tcp_t *t = malloc(sizeof(*t));
	if (!t)
		return;
	uv_tcp_init(&a->loop, t);
	int e = uv_accept(server, (uv_stream_t *)t);
	int dfd = e == 0 && uv_fileno((uv_handle_t *)t, &fd) == 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	char addr[64] = "?";
	if (dfd >= 0 && uv_tcp_getpeername(t, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			uv_ip4_name((struct sockaddr_in *)&ss, addr, sizeof(addr));
		else
			uv_ip6_name((struct sockaddr_in6 *)&ss, addr, sizeof(addr));
	}
	uv_close((uv_handle_t *)t, (uv_close_cb)free);
	if (dfd < 0)
		return;
	struct agent_pend *p = calloc(1, sizeof(*p));
	if (!p || uv_poll_init(&a->loop, &p->poll, dfd) < 0) {
		free(p);
		close(dfd);
		return;
	}
	if (a->pending >= a->o.max_pending)
		agent__pend_drop(a->ph, &a->dropped_evicted); /* the oldest makes room */
	p->a = a;
	p->fd = dfd;
	p->t = agent__now();
	p->poll.data = p;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	LIST_APPEND(a->ph, a->pt, p);
	a->pending++;
	p->polling = uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, agent__pend_readable) == 0;
}

static void agent__signal(uv_signal_t *s, int sig)
{
	struct agent *a = s->data;
	recv_log("signal %d: stopping the agent (sessions keep running)", sig);
	uv_stop(&a->loop);
}

static void agent__close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (uv_is_closing(h))
		return;
	if (h->type == UV_PROCESS || h->type == UV_NAMED_PIPE)
		uv_close(h, agent__child_closed);
	else if (h->type == UV_POLL)
		uv_close(h, agent__pend_closed);
	else
		uv_close(h, NULL);
}

static void agent__write_port(FILE *f, void *opaque) { fprintf(f, "%u\n", *(unsigned *)opaque); }

int agent_run(struct recv_opts *o)
{
	struct agent a;
	struct sockaddr_storage ss;
	char err[512];
	struct xport_tls *probe;
	int e;

	memset(&a, 0, sizeof(a));
	a.o = *o;
	/* Load the certificates once here so a mistake shows at start, not at
	 * the first migration. */
	struct xport_tls_config tc = { .server = 1, .insecure = o->insecure, .certs_dir = o->certs, .node = o->node };
	if (xport_tls_new(&tc, &probe, err, sizeof(err)) < 0) {
		util_err("recv: %s", err);
		return PMG_EXIT_FAIL;
	}
	xport_tls_free(probe);
	/* Likewise the run directory: a bad one refuses at start, not at the
	 * first migration. */
	char why[RUNDIR_MAX_PATH + 200];
	int dfd = rundir_open(1, NULL, 0, why, sizeof(why));
	if (dfd < 0) {
		util_err("recv: %s", why);
		return PMG_EXIT_FAIL;
	}
	close(dfd);
	if (xport_resolve(o->listen, &ss) < 0) {
		util_err("recv: --listen '%s': cannot resolve", o->listen);
		return PMG_EXIT_USAGE;
	}
	/* Pending connections cost one descriptor each: allow as many as the
	 * hard limit does. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	uv_loop_init(&a.loop);
	uv_tcp_init(&a.loop, &a.server);
	a.server.data = &a;
	if ((e = uv_tcp_bind(&a.server, (struct sockaddr *)&ss, 0)) < 0 ||
	    (e = uv_listen((uv_stream_t *)&a.server, 256, agent__connection)) < 0) {
		util_err("recv: cannot listen on %s: %s", o->listen, uv_strerror(e));
		goto out;
	}
	int len = sizeof(ss);
	uv_tcp_getsockname(&a.server, (struct sockaddr *)&ss, &len);
	unsigned port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (o->port_file[0] && (e = rundir_write_atomic(AT_FDCWD, o->port_file, agent__write_port, &port)) < 0) {
		util_err("recv: --port-file %s: %s", o->port_file, strerror(-e));
		goto out;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	a.m.start_time_s = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
	if (o->metrics_file[0] && (e = metrics_check_dir(o->metrics_file, why, sizeof(why))) < 0) {
		util_err("recv: --metrics-file %s: %s", o->metrics_file, why);
		goto out;
	}
	unsigned earlier = agent__earlier(&a);
	struct metrics_gauges g0 = { .sessions = earlier, .earlier = earlier, .max_sessions = o->max_sessions,
				     .max_queries = o->max_queries };
	if (o->metrics_file[0] && (e = metrics_write(&a.m, o->metrics_file, &g0)) < 0) {
		util_err("recv: --metrics-file %s: %s", o->metrics_file, strerror(-e));
		goto out;
	}
	/* The session gets the same settings plus the connection as fd 3 and
	 * its line to us as fd 4. */
	char *args[32], tmo[16], htmo[16];
	int n = 0;
	args[n++] = "pml-migrate";
	args[n++] = "recv";
	args[n++] = "--session-fd";
	args[n++] = "3";
	args[n++] = "--agent-fd";
	args[n++] = "4";
	if (o->insecure) {
		args[n++] = "--insecure";
	} else {
		args[n++] = "--certs";
		args[n++] = o->certs;
		args[n++] = "--node";
		args[n++] = o->node;
	}
	if (o->allow[0]) {
		args[n++] = "--allow";
		args[n++] = o->allow;
	}
	args[n++] = "--hv";
	args[n++] = o->hv;
	snprintf(tmo, sizeof(tmo), "%u", o->lim.idle_ms / 1000);
	snprintf(htmo, sizeof(htmo), "%u", o->lim.handshake_ms / 1000);
	args[n++] = "--timeout";
	args[n++] = tmo;
	args[n++] = "--handshake-timeout";
	args[n++] = htmo;
	args[n] = NULL;
	a.child_argv = args;
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	a.sigint.data = a.sigterm.data = &a;
	uv_signal_start(&a.sigint, agent__signal, SIGINT);
	uv_signal_start(&a.sigterm, agent__signal, SIGTERM);
	uv_timer_init(&a.loop, &a.tick);
	a.tick.data = &a;
	uv_timer_start(&a.tick, agent__tick, AGENT_TICK_MS, AGENT_TICK_MS);
	recv_log("listening on port %u (%s)%s, receiving into %s", port, o->listen,
		 o->insecure ? ", PLAINTEXT (--insecure)" : ", TLS 1.3 with client certificates",
		 !strcmp(o->hv, "xen") ? "Xen domains" : "KVM VMs");
	if (earlier)
		recv_log("%u session(s) an earlier agent started still run here: they count against --max-sessions %u",
			 earlier, o->max_sessions);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	e = 0;
out:
	uv_walk(&a.loop, agent__close_walk, NULL);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	uv_loop_close(&a.loop);
	return e < 0 ? PMG_EXIT_FAIL : PMG_EXIT_OK;
}
