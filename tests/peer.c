/*
 * tests/peer.c - a misbehaving peer for the hardening tests (plaintext,
 * 127.0.0.1 only; every wait is bounded). One mode per defect it attacks:
 *
 *   peer early-ready PORTFILE
 *       A fake destination: accepts one source, answers its HELLO, then at
 *       once sends READY (before any STATE_DONE) and reports on stdout
 *       whether a COMMIT followed ("commit=0" / "commit=1").
 *   peer join-abuse PORT
 *       A fake source with 2 connections: after the destination announced
 *       its join port, connects there and closes, connects and sends
 *       garbage, connects and idles, then joins for real and checks that
 *       the session still answers a round ("alive") - the attacks must not
 *       have failed it.
 *   peer phase PORTFILE PHASE TYPE
 *       A fake destination that answers like a real one until the source
 *       is in PHASE (hello: HELLO, SHAPE, JOIN received; join: HELLO
 *       answered with resume, the source waits for our JOIN; precopy: the
 *       source's first ROUND_END received; state: its STATE_DONE received;
 *       committed: READY answered and COMMIT received), then sends one
 *       valid record of TYPE (a stream_type_name) and reports for 1.5 s
 *       what the source did: "error: TEXT" (its ERROR), "commit" (it sent
 *       COMMIT) or "alive" (it went on). Answers are those of this
 *       source's session: ROUND_END names the round the source ended.
 *   peer lying-agent PORTFILE SECONDS
 *       A fake agent (for evacuate): answers every capacity query with
 *       room for anything, and takes every migration like a real
 *       destination (HELLO, rounds answered, READY after STATE_DONE) until
 *       COMMIT, then reports that the guest failed to start (ERROR): each
 *       such source ends indeterminate. Serves one connection at a time
 *       for SECONDS, printing "query" or "migration NAME committed" per
 *       connection.
 *   peer flood PORT IDLE TRICKLE HELLO SECONDS
 *       Opens IDLE connections that send nothing, TRICKLE that send one
 *       byte of a TLS ClientHello every 500 ms, and HELLO that send a
 *       whole ClientHello and then stall; holds them SECONDS, then exits.
 *       Prints "open=N" once all are connected.
 *   peer probes PORT N SECONDS
 *       N slow link probes at once against an --insecure agent: each sends
 *       HELLO with QUERY | PROBE; once every one has its first answer,
 *       prints "answered=A refused=R lost=L" (with the last refusal's
 *       text), then the answered ones trickle a small PROBE every 500 ms
 *       until SECONDS are up.
 *
 * Exit: 0 as described, 1 on an unexpected answer, 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <openssl/ssl.h>
#include "migrate/stream.h"

static int tcp_to(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 10 };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int put(int fd, struct stream_buf *b)
{
	int ok = write(fd, b->p, b->len) == (ssize_t)b->len;
	stream_buf_free(b);
	memset(b, 0, sizeof(*b));
	return ok ? 0 : -1;
}

/* Reads one record; payload (malloc'd) in *p. Returns the type or -1. */
static int get(int fd, uint8_t **p, uint32_t *len)
{
	uint8_t h[8];
	size_t got = 0;
	while (got < 8) {
		ssize_t n = read(fd, h + got, 8 - got);
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	*len = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
	if (*len > STREAM_MAX_RECORD)
		return -1;
	*p = malloc(*len + 1);
	for (got = 0; got < *len;) {
		ssize_t n = read(fd, *p + got, *len - got);
		if (n <= 0) {
			free(*p);
			return -1;
		}
		got += (size_t)n;
	}
	return h[0] | h[1] << 8;
}

/* A fake destination's one connection: listens on 127.0.0.1, writes the
 * port to portfile, accepts one source (within 30 s) and reads its
 * opening (HELLO, SHAPE, JOIN). The fd or -1. */
static int accept_one(const char *portfile)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	struct timeval tv = { .tv_sec = 30 };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		return -1;
	FILE *f = fopen(portfile, "w");
	if (!f)
		return -1;
	fprintf(f, "%u\n", ntohs(a.sin_port));
	fclose(f);
	struct pollfd pf = { .fd = ls, .events = POLLIN };
	int fd = poll(&pf, 1, 30000) == 1 ? accept(ls, NULL, NULL) : -1;
	close(ls); /* one source only */
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < 3; i++) {
		uint8_t *p;
		uint32_t len;
		if (get(fd, &p, &len) < 0) {
			close(fd);
			return -1;
		}
		free(p);
	}
	return fd;
}

static int early_ready(const char *portfile)
{
	struct stream_buf b = { 0 };
	uint8_t *p;
	uint32_t len;
	int commit = 0, t;
	int fd = accept_one(portfile);
	if (fd < 0)
		return 1;
	stream_put_hello(&b, 0, "fake-destination");
	stream_put_empty(&b, STREAM_READY); /* long before any STATE_DONE */
	if (put(fd, &b) < 0)
		return 1;
	while ((t = get(fd, &p, &len)) >= 0) {
		free(p);
		if (t == STREAM_COMMIT)
			commit = 1;
	}
	printf("commit=%d\n", commit);
	close(fd);
	return 0;
}

/* One valid record of type t from a destination in this session. */
static int phase_record(struct stream_buf *b, const char *type, uint32_t round)
{
	static uint8_t page[4096];
	struct stream_shape sh = { .mem_bytes = 64ull << 20, .vcpus = 1, .dirty_log = 1 };
	struct stream_join j = { .token = 0x1234, .index = 0, .port = 1, .count = 1 };
	struct stream_round_end re = { .round = round ? round : 1 };
	struct stream_ack a = { .index = 0, .records = 0 };
	struct stream_resume r = { .token = 0x1234, .index = 0, .count = 1, .epoch = 1 };
	size_t mark;
	for (unsigned t = STREAM_HELLO; t <= STREAM_ACK; t++) {
		if (strcmp(type, stream_type_name((enum stream_type)t)))
			continue;
		switch (t) {
		case STREAM_HELLO: return stream_put_hello(b, 0, "fake-destination");
		case STREAM_SHAPE: return stream_put_shape(b, &sh);
		case STREAM_JOIN: return stream_put_join(b, &j);
		case STREAM_ROUND_END: return stream_put_round_end(b, &re);
		case STREAM_ACK: return stream_put_ack(b, &a);
		case STREAM_RESUME: return stream_put_resume(b, &r);
		case STREAM_STATE_DONE: return stream_put_state_done(b, 0);
		case STREAM_ERROR: return stream_put_error(b, 5, "the fake destination gives up");
		case STREAM_PAGES:
			if (stream_put_pages_begin(b, &mark) || stream_put_page(b, 1, 1, page, sizeof(page)))
				return -1;
			return stream_put_pages_end(b, mark);
		default: return stream_put_empty(b, (enum stream_type)t);
		}
	}
	return -1;
}

static int phase(const char *portfile, const char *ph, const char *type)
{
	struct stream_buf b = { 0 };
	uint8_t *p;
	uint32_t len, round = 0;
	int t;
	int fd = accept_one(portfile);
	if (fd < 0)
		return 1;
	if (strcmp(ph, "hello")) {
		stream_put_hello(&b, strcmp(ph, "join") ? 0 : STREAM_CAP_RESUME, "fake-destination");
		if (put(fd, &b) < 0)
			return 1;
	}
	/* Until the source is in the phase asked for. */
	int want = !strcmp(ph, "precopy") ? STREAM_ROUND_END
		   : !strcmp(ph, "state") || !strcmp(ph, "committed") ? STREAM_STATE_DONE : 0;
	while (want && (t = get(fd, &p, &len)) >= 0) {
		struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
		struct stream_round_end re;
		if (t == STREAM_ROUND_END && stream_parse_round_end(&rec, &re) == 0) {
			round = re.round;
			if (want == STREAM_STATE_DONE) { /* answered, as the source waits for that */
				struct stream_round_end ans = { .round = re.round };
				stream_put_round_end(&b, &ans);
				if (put(fd, &b) < 0)
					return 1;
			}
		}
		free(p);
		if (t == want)
			break;
		if (t == STREAM_ERROR)
			return 1;
	}
	if (!strcmp(ph, "committed")) {
		stream_put_empty(&b, STREAM_READY);
		if (put(fd, &b) < 0)
			return 1;
		while ((t = get(fd, &p, &len)) >= 0 && t != STREAM_COMMIT)
			free(p);
		if (t < 0)
			return 1;
		free(p);
	}
	if (phase_record(&b, type, round) < 0 || put(fd, &b) < 0)
		return 1;
	/* What the source did about it. */
	struct timeval quick = { .tv_usec = 100000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &quick, sizeof(quick));
	int commit = 0;
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		if ((t = get(fd, &p, &len)) >= 0) {
			struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
			if (t == STREAM_ERROR) {
				char text[STREAM_MAX_TEXT + 1];
				uint32_t code;
				stream_parse_error(&rec, &code, text, sizeof(text));
				printf("error: %s\n", text);
				free(p);
				return 0;
			}
			commit |= t == STREAM_COMMIT;
			free(p);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 1500);
	printf("%s\n", commit ? "commit" : "alive");
	close(fd);
	return 0;
}

/* lying-agent: one migration, HELLO already read: through COMMIT, then
 * ERROR. 0 once COMMIT came, -1 otherwise. */
static int lying_migration(int fd)
{
	struct stream_buf b = { 0 };
	uint8_t *p;
	uint32_t len;
	int t;
	for (int i = 0; i < 2; i++) { /* SHAPE, JOIN */
		if (get(fd, &p, &len) < 0)
			return -1;
		free(p);
	}
	stream_put_hello(&b, 0, "lying-agent");
	if (put(fd, &b) < 0)
		return -1;
	while ((t = get(fd, &p, &len)) >= 0) {
		struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
		struct stream_round_end re;
		if (t == STREAM_ROUND_END && stream_parse_round_end(&rec, &re) == 0) {
			struct stream_round_end ans = { .round = re.round };
			stream_put_round_end(&b, &ans);
			if (put(fd, &b) < 0)
				t = -1;
		}
		free(p);
		if (t == STREAM_STATE_DONE || t == STREAM_ERROR || t < 0)
			break;
	}
	if (t != STREAM_STATE_DONE)
		return -1;
	stream_put_empty(&b, STREAM_READY);
	if (put(fd, &b) < 0)
		return -1;
	while ((t = get(fd, &p, &len)) >= 0 && t != STREAM_COMMIT)
		free(p);
	if (t < 0)
		return -1;
	free(p);
	stream_put_error(&b, 5, "the guest failed to start here");
	put(fd, &b);
	return 0;
}

static int lying_agent(const char *portfile, int secs)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t al = sizeof(a);
	struct timeval tv = { .tv_sec = 10 };
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 8) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0)
		return 1;
	FILE *f = fopen(portfile, "w");
	if (!f)
		return 1;
	fprintf(f, "%u\n", ntohs(a.sin_port));
	fclose(f);
	time_t end = time(NULL) + secs;
	while (time(NULL) < end) {
		struct pollfd pf = { .fd = ls, .events = POLLIN };
		if (poll(&pf, 1, 500) != 1)
			continue;
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		uint8_t *p;
		uint32_t len;
		int t = get(fd, &p, &len);
		struct stream_hello h = { 0 };
		struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
		if (t == STREAM_HELLO && stream_parse_hello(&rec, &h) == 0) {
			if (h.caps & STREAM_CAP_QUERY) {
				struct stream_buf b = { 0 };
				struct stream_capacity c = { .mem_total = 64ull << 30, .mem_available = 32ull << 30,
							     .max_sessions = 64, .hv = STREAM_HV_KVM };
				stream_put_capacity(&b, &c);
				put(fd, &b);
				printf("query\n");
			} else if (lying_migration(fd) == 0) {
				printf("migration %s committed\n", h.name);
			}
			fflush(stdout);
		}
		if (t >= 0)
			free(p);
		close(fd);
	}
	close(ls);
	return 0;
}

static int join_abuse(unsigned port)
{
	struct stream_buf b = { 0 };
	struct stream_shape sh = { .mem_bytes = 64ull << 20, .vcpus = 1, .dirty_log = 1 };
	struct stream_join j = { .index = 0, .count = 2 }, dj = { 0 };
	uint8_t *p;
	uint32_t len;
	size_t mark;
	int t, fd = tcp_to(port);

	if (fd < 0)
		return 1;
	stream_put_hello(&b, 0, "join-abuse");
	stream_put_shape(&b, &sh);
	stream_put_join(&b, &j);
	if (put(fd, &b) < 0)
		return 1;
	while ((t = get(fd, &p, &len)) >= 0) {
		struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
		int done = t == STREAM_JOIN && stream_parse_join(&rec, &dj) == 0;
		free(p);
		if (done || t == STREAM_ERROR)
			break;
	}
	if (!dj.port) {
		printf("no join port announced\n");
		return 1;
	}
	/* The attacks: none of them holds the token. */
	int c1 = tcp_to(dj.port);
	if (c1 >= 0)
		close(c1);
	int c2 = tcp_to(dj.port);
	if (c2 >= 0 && write(c2, "GET / HTTP/1.0\r\n\r\n", 18) < 0)
		return 1;
	int c3 = tcp_to(dj.port); /* idles */
	struct stream_join bad = { .token = dj.token ^ 1, .index = 1, .count = 3 }; /* not a JOIN of ours */
	int c4 = tcp_to(dj.port);
	stream_put_join(&b, &bad);
	if (c4 >= 0)
		put(c4, &b);
	usleep(300000);
	/* The real extra connection. */
	struct stream_join mine = { .token = dj.token, .index = 1, .count = 2 };
	int x = tcp_to(dj.port);
	stream_put_join(&b, &mine);
	if (x < 0 || put(x, &b) < 0) {
		printf("cannot join\n");
		return 1;
	}
	/* One page on each connection, each followed by the round's end: the
	 * answer proves the session is alive and applied both. */
	static uint8_t zero[4096];
	struct stream_round_end re = { .round = 1 };
	stream_put_pages_begin(&b, &mark);
	stream_put_page(&b, 3, 0, zero, 0);
	stream_put_pages_end(&b, mark);
	stream_put_round_end(&b, &re);
	put(x, &b);
	stream_put_pages_begin(&b, &mark);
	stream_put_page(&b, 2, 0, zero, 0);
	stream_put_pages_end(&b, mark);
	stream_put_round_end(&b, &re);
	put(fd, &b);
	while ((t = get(fd, &p, &len)) >= 0) {
		struct stream_record rec = { .type = (uint16_t)t, .len = len, .payload = p };
		if (t == STREAM_ROUND_END && stream_parse_round_end(&rec, &re) == 0) {
			printf("alive round=%u\n", re.round);
			free(p);
			return 0;
		}
		if (t == STREAM_ERROR) {
			char text[STREAM_MAX_TEXT + 1];
			uint32_t code;
			stream_parse_error(&rec, &code, text, sizeof(text));
			printf("session failed: %s\n", text);
			free(p);
			return 1;
		}
		free(p);
	}
	printf("session closed without answering the round\n");
	(void)c3;
	return 1;
}

/* A real TLS ClientHello, made by OpenSSL into a memory BIO. */
static size_t client_hello(uint8_t *out, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL *s = SSL_new(ctx);
	BIO *r = BIO_new(BIO_s_mem()), *w = BIO_new(BIO_s_mem());
	SSL_set_bio(s, r, w);
	SSL_set_connect_state(s);
	SSL_do_handshake(s);
	int n = BIO_read(w, out, (int)cap);
	SSL_free(s);
	SSL_CTX_free(ctx);
	return n > 0 ? (size_t)n : 0;
}

static int flood(unsigned port, int idle, int trickle, int hello, int secs)
{
	static uint8_t ch[4096];
	size_t chn = client_hello(ch, sizeof(ch));
	int n = idle + trickle + hello, open = 0;
	int *fds = calloc((size_t)n, sizeof(int));
	if (!fds || !chn)
		return 1;
	for (int i = 0; i < n; i++) {
		fds[i] = tcp_to(port);
		open += fds[i] >= 0;
		if (fds[i] >= 0 && i >= idle + trickle && write(fds[i], ch, chn) < 0)
			fds[i] = -1;
	}
	printf("open=%d\n", open);
	fflush(stdout);
	time_t end = time(NULL) + secs;
	for (size_t k = 0; time(NULL) < end; k++) {
		usleep(500000);
		for (int i = idle; i < idle + trickle; i++)
			if (fds[i] >= 0 && k < chn && send(fds[i], ch + k, 1, MSG_NOSIGNAL) < 0) {
				close(fds[i]);
				fds[i] = -1;
			}
	}
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return 0;
}

/* N slow link probes at once: each a HELLO with QUERY | PROBE; an
 * answered one then trickles a small PROBE every 500 ms (keeping its
 * session alive) until SECONDS are up. */
static int probes(unsigned port, int n, int secs)
{
	static const uint8_t filler[64];
	int *fds = calloc((size_t)n, sizeof(int)), answered = 0, refused = 0, lost = 0;
	char why[STREAM_MAX_TEXT + 1] = "";
	if (!fds)
		return 1;
	for (int i = 0; i < n; i++) {
		struct stream_buf b = { 0 };
		fds[i] = tcp_to(port);
		if (fds[i] < 0 || stream_put_hello(&b, STREAM_CAP_QUERY | STREAM_CAP_PROBE, "capacity-query") < 0 ||
		    put(fds[i], &b) < 0) {
			lost++;
			continue;
		}
	}
	for (int i = 0; i < n; i++) {
		uint8_t *p;
		uint32_t len;
		int t = fds[i] >= 0 ? get(fds[i], &p, &len) : -1;
		if (t == STREAM_CAPACITY) {
			answered++;
		} else if (t == STREAM_ERROR) {
			struct stream_record r = { .type = STREAM_ERROR, .len = len, .payload = p };
			uint32_t code;
			stream_parse_error(&r, &code, why, sizeof(why));
			refused++;
			close(fds[i]);
			fds[i] = -1;
		} else if (fds[i] >= 0) {
			lost++;
			close(fds[i]);
			fds[i] = -1;
		}
		if (t >= 0)
			free(p);
	}
	printf("answered=%d refused=%d lost=%d%s%s\n", answered, refused, lost, why[0] ? " refusal: " : "", why);
	fflush(stdout);
	time_t end = time(NULL) + secs;
	while (time(NULL) < end) {
		usleep(500000);
		for (int i = 0; i < n; i++) {
			struct stream_buf b = { 0 };
			if (fds[i] >= 0 && (stream_put_probe(&b, filler, sizeof(filler)) < 0 || put(fds[i], &b) < 0)) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "early-ready"))
		return early_ready(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "lying-agent"))
		return lying_agent(argv[2], atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "join-abuse"))
		return join_abuse((unsigned)atoi(argv[2]));
	if (argc == 5 && !strcmp(argv[1], "phase"))
		return phase(argv[2], argv[3], argv[4]);
	if (argc == 5 && !strcmp(argv[1], "probes"))
		return probes((unsigned)atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc == 7 && !strcmp(argv[1], "flood"))
		return flood((unsigned)atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
	fprintf(stderr, "usage: peer early-ready PORTFILE | phase PORTFILE PHASE TYPE | join-abuse PORT | flood PORT IDLE TRICKLE HELLO SECONDS | probes PORT N SECONDS\n");
	return 2;
}
