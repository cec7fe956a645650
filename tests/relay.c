/*
 * tests/relay.c - a record-aware plaintext TCP relay that breaks a
 * migration's link on purpose at a chosen record (the safety matrix,
 * tests/test-safety-matrix.sh). Plaintext only (send and recv with
 * --insecure), 127.0.0.1 only; every wait is bounded.
 *
 *   relay --target PORT --port-file FILE [--at DIR:TYPE[:N]]
 *         [--action cut|cut-after|stall|drop] [--stall-seconds S] [--max-seconds S]
 *         [--dump-s2d FILE]
 *
 * Listens on 127.0.0.1:0, writes its port to FILE, accepts ONE connection
 * (the source's connection 0) and forwards it to 127.0.0.1:PORT, reading
 * the pml stream records (docs/stream.md) in both directions: s2d (source
 * to destination) and d2s (the destination's answers). Records are
 * reassembled across reads; a record's header is held back until it is
 * complete, so the decision about a record is taken before any byte of it
 * is forwarded. The trigger --at s2d:COMMIT or d2s:READY:2 names a
 * direction, a record type (stream_type_name) and which occurrence
 * (default the first). The action, when the trigger record's header is in:
 *
 *   cut        forward what came before it, then close both connections:
 *              the record is never delivered.
 *   cut-after  forward the whole record (and wait, bounded, until the peer
 *              has it), then close both connections.
 *   stall      forward nothing more in either direction, read nothing
 *              more, keep both connections open, until killed or
 *              --stall-seconds (default: until --max-seconds); then close.
 *   drop       swallow that one record and forward everything else: the
 *              link stays up, only the record is lost.
 *
 * --dump-s2d FILE writes what was forwarded from the source up to its
 * COMMIT (not included): a real stream that a destination answers with
 * READY, which seeds the destination session's fuzz target.
 *
 * Without --at it is a plain record-counting relay. It exits by itself
 * within --max-seconds (default 120). Stdout: one line per thing it did
 * ("cut at d2s READY #1", "stall at s2d COMMIT #1", "stall ended after
 * 20 s", "closed by source"...), the bytes left unread in each direction
 * when it closed, then the records seen per direction (also when ended by
 * SIGTERM or SIGINT).
 *
 * Exit: 0 (triggered or not: the line says which), 1 on a socket error
 * before the connection was made, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "migrate/stream.h"

#define CHUNK (64u << 10)
#define FLUSH_MS 2000 /* how long a cut-after waits for its record to be taken */

enum action { ACT_NONE, ACT_CUT, ACT_CUT_AFTER, ACT_STALL, ACT_DROP };
static const char *const action_name[] = { "none", "cut", "cut-after", "stall", "drop" };

/* One direction: bytes read from fd_in, parsed, forwarded to fd_out. */
struct dir {
	const char *name; /* "s2d" or "d2s" */
	int fd_in, fd_out;
	int eof;
	uint8_t hdr[STREAM_HDR_SIZE];
	unsigned hdr_len;   /* header bytes of the current record so far */
	uint64_t left;      /* payload bytes of the current record still to come */
	uint64_t drop_left; /* payload bytes of a dropped record still to swallow */
	int opaque;         /* an unparseable header: pass the rest through blindly */
	uint64_t count[STREAM_TYPE_MAX];
	uint8_t *out;       /* parsed bytes waiting to be written to fd_out */
	size_t out_len, out_off;
};

static volatile sig_atomic_t killed;
static void on_term(int sig) { killed = sig; }

static enum action act;
static FILE *dump; /* --dump-s2d, until COMMIT */
static int trig_dir = -1; /* 0 s2d, 1 d2s */
static unsigned trig_type, trig_nth = 1;
static int fired;           /* the trigger record's header was seen */
static int stop_after_flush; /* cut-after: the record is queued, close once written */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int type_by_name(const char *s)
{
	for (unsigned t = 1; t < STREAM_TYPE_MAX; t++)
		if (!strcmp(s, stream_type_name(t)))
			return (int)t;
	return -1;
}

static int parse_at(const char *arg)
{
	char buf[64], *type, *nth;
	if (strlen(arg) >= sizeof(buf))
		return -1;
	strcpy(buf, arg);
	if (!(type = strchr(buf, ':')))
		return -1;
	*type++ = 0;
	if ((nth = strchr(type, ':'))) {
		*nth++ = 0;
		char *end;
		long v = strtol(nth, &end, 10);
		if (*end || v < 1 || v > 1000000)
			return -1;
		trig_nth = (unsigned)v;
	}
	trig_dir = !strcmp(buf, "s2d") ? 0 : !strcmp(buf, "d2s") ? 1 : -1;
	int t = type_by_name(type);
	if (trig_dir < 0 || t < 0)
		return -1;
	trig_type = (unsigned)t;
	return 0;
}

static void queue(struct dir *d, const uint8_t *p, size_t n)
{
	if (dump && d->name[0] == 's' && fwrite(p, 1, n, dump) != n) {
		perror("relay: --dump-s2d");
		fclose(dump);
		dump = NULL;
	}
	memcpy(d->out + d->out_len, p, n);
	d->out_len += n;
}

/* Parses one chunk read from d->fd_in into d->out (sized to hold it).
 * Returns 1 when a cut or stall fired in it (nothing after the trigger
 * point is queued, except the trigger record itself for cut-after); a
 * drop only leaves the record out. */
static int feed(struct dir *d, int di, const uint8_t *p, size_t n)
{
	while (n) {
		if (d->opaque) {
			queue(d, p, n);
			return 0;
		}
		if (d->drop_left) {
			size_t k = n < d->drop_left ? n : (size_t)d->drop_left;
			p += k, n -= k, d->drop_left -= k;
			continue;
		}
		if (d->left) {
			size_t k = n < d->left ? n : (size_t)d->left;
			queue(d, p, k);
			p += k, n -= k, d->left -= k;
			if (!d->left && stop_after_flush && di == trig_dir)
				return 1; /* the cut-after record is whole: drop what follows */
			continue;
		}
		size_t k = STREAM_HDR_SIZE - d->hdr_len;
		if (k > n)
			k = n;
		memcpy(d->hdr + d->hdr_len, p, k);
		d->hdr_len += (unsigned)k;
		p += k, n -= k;
		if (d->hdr_len < STREAM_HDR_SIZE)
			continue;
		d->hdr_len = 0;
		unsigned type = d->hdr[0] | d->hdr[1] << 8;
		uint32_t len = (uint32_t)d->hdr[4] | (uint32_t)d->hdr[5] << 8 | (uint32_t)d->hdr[6] << 16 |
			       (uint32_t)d->hdr[7] << 24;
		if (type == 0 || type >= STREAM_TYPE_MAX || len > STREAM_MAX_RECORD) {
			printf("unparseable %s header (type %u, length %u): passing the rest through\n", d->name, type,
			       len);
			d->opaque = 1;
			queue(d, d->hdr, STREAM_HDR_SIZE);
			continue;
		}
		d->count[type]++;
		if (dump && di == 0 && type == STREAM_COMMIT) {
			fclose(dump);
			dump = NULL;
		}
		if (act != ACT_NONE && !fired && di == trig_dir && type == trig_type && d->count[type] == trig_nth) {
			fired = 1;
			printf("%s at %s %s #%u\n", action_name[act], d->name, stream_type_name(type), trig_nth);
			if (act == ACT_DROP) {
				d->drop_left = len;
				continue;
			}
			if (act != ACT_CUT_AFTER)
				return 1;
			stop_after_flush = 1;
			queue(d, d->hdr, STREAM_HDR_SIZE);
			d->left = len;
			if (!len)
				return 1;
			continue;
		}
		queue(d, d->hdr, STREAM_HDR_SIZE);
		d->left = len;
	}
	return 0;
}

/* Writes what is queued; -1 when the peer is gone. */
static int flush_some(struct dir *d)
{
	while (d->out_off < d->out_len) {
		ssize_t w = send(d->fd_out, d->out + d->out_off, d->out_len - d->out_off, MSG_NOSIGNAL);
		if (w < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -1;
		d->out_off += (size_t)w;
	}
	d->out_off = d->out_len = 0;
	return 0;
}

/* Bounded: writes d's queue out and waits until the peer's kernel holds it. */
static void flush_all(struct dir *d, uint64_t until)
{
	while (now_ms() < until) {
		if (flush_some(d) < 0)
			return;
		int unsent = 0;
		if (d->out_len == 0 && (ioctl(d->fd_out, SIOCOUTQ, &unsent) < 0 || unsent == 0))
			return;
		struct pollfd pf = { .fd = d->fd_out, .events = POLLOUT };
		poll(&pf, 1, 10);
	}
}

static int listen_local(const char *portfile)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		return -1;
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", portfile);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%u\n", ntohs(a.sin_port));
	if (fclose(f) || rename(tmp, portfile) < 0)
		return -1;
	return ls;
}

static int connect_local(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	/* Loopback: connect completes or fails at once. */
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void summary(struct dir *dirs)
{
	for (int i = 0; i < 2; i++) {
		printf("records %s:", dirs[i].name);
		for (unsigned t = 1; t < STREAM_TYPE_MAX; t++)
			if (dirs[i].count[t])
				printf(" %s=%llu", stream_type_name(t), (unsigned long long)dirs[i].count[t]);
		printf("\n");
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: relay --target PORT --port-file FILE [--at s2d|d2s:TYPE[:N]]\n"
			"             [--action cut|cut-after|stall|drop] [--stall-seconds S] [--max-seconds S]\n"
			"             [--dump-s2d FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *portfile = NULL;
	unsigned target = 0, stall_s = 0, max_s = 120;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(o, "--target"))
			target = (unsigned)atoi(v);
		else if (!strcmp(o, "--port-file"))
			portfile = v;
		else if (!strcmp(o, "--at")) {
			if (parse_at(v) < 0)
				usage();
		} else if (!strcmp(o, "--action")) {
			act = ACT_NONE;
			for (unsigned a = ACT_CUT; a <= ACT_DROP; a++)
				if (!strcmp(v, action_name[a]))
					act = (enum action)a;
			if (act == ACT_NONE)
				usage();
		} else if (!strcmp(o, "--stall-seconds"))
			stall_s = (unsigned)atoi(v);
		else if (!strcmp(o, "--max-seconds"))
			max_s = (unsigned)atoi(v);
		else if (!strcmp(o, "--dump-s2d")) {
			if (!(dump = fopen(v, "wb"))) {
				perror("relay: --dump-s2d");
				return 2;
			}
		} else
			usage();
	}
	if (!target || target > 65535 || !portfile || !max_s || (act != ACT_NONE) != (trig_dir >= 0))
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* No SA_RESTART: poll returns, and the summary still gets printed. */
	struct sigaction sa = { .sa_handler = on_term };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	uint64_t t0 = now_ms(), deadline = t0 + (uint64_t)max_s * 1000;
	int ls = listen_local(portfile);
	if (ls < 0) {
		perror("relay: listen");
		return 1;
	}
	struct pollfd pl = { .fd = ls, .events = POLLIN };
	int r = poll(&pl, 1, (int)(deadline - now_ms()));
	if (r != 1) {
		if (killed)
			printf("killed before anyone connected\n");
		else
			printf("nobody connected within %u s\n", max_s);
		return 0;
	}
	int src = accept(ls, NULL, NULL);
	close(ls);
	int dst = src < 0 ? -1 : connect_local(target);
	if (dst < 0) {
		perror("relay: accept/connect");
		return 1;
	}
	printf("relaying to 127.0.0.1:%u\n", target);
	fcntl(src, F_SETFL, fcntl(src, F_GETFL) | O_NONBLOCK);
	fcntl(dst, F_SETFL, fcntl(dst, F_GETFL) | O_NONBLOCK);

	struct dir dirs[2] = {
		{ .name = "s2d", .fd_in = src, .fd_out = dst },
		{ .name = "d2s", .fd_in = dst, .fd_out = src },
	};
	static uint8_t buf[CHUNK];
	for (int i = 0; i < 2; i++)
		if (!(dirs[i].out = malloc(CHUNK + STREAM_HDR_SIZE)))
			return 1;

	const char *how = NULL;
	uint64_t stall_from = 0;
	while (!how) {
		uint64_t now = now_ms();
		if (killed) {
			how = "killed: closing both";
			break;
		}
		if (now >= deadline) {
			how = "max-seconds reached: closing both";
			break;
		}
		if (stall_from && stall_s && now >= stall_from + (uint64_t)stall_s * 1000) {
			printf("stall ended after %u s: closing both\n", stall_s);
			how = "";
			break;
		}
		/* all[i]: side i's input, read only once its queue is out
		 * (backpressure) and never while stalled; all[2 + i]: the socket
		 * side i writes to, while it has something queued. A slot with
		 * nothing to wait for is left out (fd -1), so a hung-up socket
		 * during a stall does not spin the loop. */
		struct pollfd all[4];
		for (int i = 0; i < 2; i++) {
			struct dir *d = &dirs[i];
			all[i].events = !stall_from && !d->eof && d->out_len == 0 ? POLLIN : 0;
			all[i].fd = all[i].events ? d->fd_in : -1;
			all[2 + i].events = d->out_len ? POLLOUT : 0;
			all[2 + i].fd = all[2 + i].events ? d->fd_out : -1;
			all[i].revents = all[2 + i].revents = 0;
		}
		uint64_t wait = deadline - now;
		if (stall_from && stall_s) {
			uint64_t end = stall_from + (uint64_t)stall_s * 1000;
			if (end - now < wait)
				wait = end - now;
		}
		if (wait > 1000)
			wait = 1000;
		r = poll(all, 4, (int)wait);
		if (r < 0 && errno != EINTR) {
			how = "poll failed";
			break;
		}
		for (int i = 0; i < 2 && !how; i++) {
			struct dir *d = &dirs[i];
			if (d->out_len && flush_some(d) < 0) {
				printf("%s: peer gone while writing (%s)\n", d->name, strerror(errno));
				how = "";
			}
		}
		for (int i = 0; i < 2 && !how; i++) {
			struct dir *d = &dirs[i];
			if (stall_from || !(all[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t got = recv(d->fd_in, buf, sizeof(buf), 0);
			if (got < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (got <= 0) {
				printf("closed by %s%s%s\n", i == 0 ? "source" : "destination", got < 0 ? ": " : "",
				       got < 0 ? strerror(errno) : "");
				d->eof = 1;
				/* Pass the close on once what came before is out. */
				flush_all(d, now_ms() + FLUSH_MS);
				how = "";
				break;
			}
			if (!feed(d, i, buf, (size_t)got))
				continue;
			/* The trigger fired in this chunk. */
			if (act == ACT_STALL) {
				stall_from = now_ms();
				continue; /* keep flushing what came before; read nothing more */
			}
			flush_all(d, now_ms() + FLUSH_MS);
			how = "";
		}
	}
	if (how && *how)
		printf("%s\n", how);
	/* What the peers had sent that was never forwarded nor read (a close
	 * with unread bytes resets the connection). */
	int unread[2] = { 0, 0 };
	for (int i = 0; i < 2; i++)
		if (ioctl(dirs[i].fd_in, FIONREAD, &unread[i]) < 0)
			unread[i] = -1;
	printf("unread at close: s2d %d bytes, d2s %d bytes\n", unread[0], unread[1]);
	close(src);
	close(dst);
	if (dump && fclose(dump))
		perror("relay: --dump-s2d");
	if (act != ACT_NONE && !fired)
		printf("not triggered: no %s %s #%u seen\n", trig_dir == 0 ? "s2d" : "d2s", stream_type_name(trig_type),
		       trig_nth);
	printf("relay ran %.1f s\n", (double)(now_ms() - t0) / 1000.0);
	summary(dirs);
	for (int i = 0; i < 2; i++)
		free(dirs[i].out);
	return 0;
}
