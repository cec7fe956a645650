/*
 * transport/xport.c - TLS 1.3 over memory BIOs on a libuv TCP handle.
 *
 * OpenSSL never touches the socket. Sending: whoever has plaintext
 * encrypts it in its own thread (the pre-copy engine's encoders call
 * xport_send, so N connections encrypt on N cores); OpenSSL writes the
 * ciphertext through a BIO of ours straight into a write request, which
 * joins the connection's queue in the order it was encrypted, and the
 * loop thread only hands queued requests to uv_write. Receiving:
 * ciphertext read by libuv goes into a memory BIO and SSL_read yields
 * plaintext on the loop thread, or (xport_rx_offload, the destination's
 * lanes) the loop hands each read to a thread of the connection's own
 * that decrypts and hands plaintext back. One lock per connection (ssl_lock)
 * serialises every use of the SSL object, which OpenSSL does not allow
 * from two threads at once; it is never held across a callback.
 */
#include <errno.h>
#include <sys/ioctl.h>
#include <netdb.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "transport/xport.h"
#include "util/util.h"

#define XPORT_RBUF (64u << 10)
#define XPORT_TLS_RECORD 16384u /* plaintext bytes per TLS record */
#define XPORT_TLS_OVERHEAD 64u  /* a TLS 1.3 record's header, type byte and tag, rounded up */

struct xport_tls {
	SSL_CTX *ctx;
	int insecure, server;
	char peer_name[256];
	char allow[1024];
};

/* Bytes on their way to the socket: queued in order, then one uv_write. */
struct xport_wreq {
	uv_write_t req;
	struct xport_wreq *next;
	struct xport_conn *c;
	size_t n, cap;
	uint8_t *data; /* n bytes to write: into own, or inl */
	void *own;     /* a sender's buffer handed over (plaintext), freed after */
	uint8_t inl[];
};

struct xport_conn {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_async_t async;
	uv_connect_t creq;
	uv_shutdown_t sreq;
	struct xport_tls *tls;
	const struct xport_callbacks *cb;
	void *opaque;

	int ready_pending, closing, close_delivered, handles_closed, free_req;
	int handles_closing; /* uv_close issued (once) */
	int read_paused, connected;
	int close_err;
	char close_why[256];
	char peer[256];

	/* The SSL object and what OpenSSL is writing into (see top). */
	pthread_mutex_t ssl_lock;
	SSL *ssl;
	BIO *rbio, *wbio;
	struct xport_wreq *wcur; /* ciphertext being written by OpenSSL */
	size_t whint;            /* ciphertext expected from the SSL_write under way */

	/* shared with worker threads; taken inside ssl_lock, never around it */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct xport_wreq *qhead, *qtail; /* ready for the socket, in order */
	size_t pending; /* bytes queued or inside uv write requests */
	int ready, dead;
	int send_err; /* a worker's SSL_write failed: the loop closes */
	char send_why[200];
	struct xport_rx *rx; /* decrypting on its own thread (xport_rx_offload) */
	uint64_t wire_out, wire_in;

	uint8_t rbuf[XPORT_RBUF];
	uint8_t pbuf[XPORT_TLS_RECORD];
};

/* ---- TLS settings ---- */

static void xport__ssl_errstr(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(buf, len, "unknown TLS error");
		return;
	}
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

int xport_tls_new(const struct xport_tls_config *cfg, struct xport_tls **out, char *err, size_t errlen)
{
	struct xport_tls *t = calloc(1, sizeof(*t));
	char path[4096], why[256];
	int e = -EINVAL;

	if (!t)
		return -ENOMEM;
	t->insecure = cfg->insecure;
	t->server = cfg->server;
	snprintf(t->peer_name, sizeof(t->peer_name), "%s", cfg->peer_name ? cfg->peer_name : "");
	snprintf(t->allow, sizeof(t->allow), "%s", cfg->allow ? cfg->allow : "");
	if (t->insecure) {
		*out = t;
		return 0;
	}
	if (!cfg->certs_dir || !cfg->node) {
		snprintf(err, errlen, "TLS needs a certificate directory and a node name (or --insecure)");
		goto err_free;
	}
	t->ctx = SSL_CTX_new(TLS_method());
	if (!t->ctx) {
		e = -ENOMEM;
		snprintf(err, errlen, "SSL_CTX_new failed");
		goto err_free;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(t->ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	SSL_CTX_set_num_tickets(t->ctx, 0); /* one connection per migration: no resumption */
	SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
	snprintf(path, sizeof(path), "%s/%s.pem", cfg->certs_dir, cfg->node);
	if (access(path, R_OK) < 0) {
		e = -errno;
		snprintf(err, errlen, "certificate %s: %s (create it with 'pml-migrate certs issue %s %s')", path,
			 strerror(errno), cfg->certs_dir, cfg->node);
		goto err_ctx;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, path) != 1) {
		xport__ssl_errstr(why, sizeof(why));
		snprintf(err, errlen, "certificate %s: %s", path, why);
		goto err_ctx;
	}
	snprintf(path, sizeof(path), "%s/%s.key", cfg->certs_dir, cfg->node);
	if (SSL_CTX_use_PrivateKey_file(t->ctx, path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(t->ctx) != 1) {
		xport__ssl_errstr(why, sizeof(why));
		snprintf(err, errlen, "private key %s: %s", path, why);
		goto err_ctx;
	}
	snprintf(path, sizeof(path), "%s/ca.pem", cfg->certs_dir);
	if (SSL_CTX_load_verify_locations(t->ctx, path, NULL) != 1) {
		xport__ssl_errstr(why, sizeof(why));
		snprintf(err, errlen, "CA certificate %s: %s", path, why);
		goto err_ctx;
	}
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | (t->server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	*out = t;
	return 0;

err_ctx:
	SSL_CTX_free(t->ctx);
err_free:
	free(t);
	return e;
}

void xport_tls_free(struct xport_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t);
}


/* ---- addresses ---- */

int xport_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;

	if (!s || !*s)
		return -EINVAL;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (!hl || hl >= hostlen)
		return -EINVAL;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p > 65535)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = 0;
	*port = (unsigned)p;
	return 0;
}

int xport_resolve(const char *hostport, struct sockaddr_storage *ss)
{
	char host[256];
	unsigned port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;

	if (xport_split_hostport(hostport, host, sizeof(host), &port) < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
		return -EHOSTUNREACH;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
}

/* ---- closing ---- */

static void xport__free_wreqs(struct xport_wreq *w)
{
	while (w) {
		struct xport_wreq *n = w->next;
		free(w->own);
		free(w);
		w = n;
	}
}

static void xport__rx_stop(struct xport_conn *c);
static void xport__rx_free(struct xport_conn *c);

static void xport__maybe_free(struct xport_conn *c)
{
	if (c->handles_closed < 2 || !c->free_req)
		return;
	xport__free_wreqs(c->qhead);
	xport__free_wreqs(c->wcur);
	xport__rx_free(c);
	SSL_free(c->ssl); /* frees both BIOs */
	pthread_mutex_destroy(&c->ssl_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}

static void xport__handle_closed(uv_handle_t *h)
{
	struct xport_conn *c = h->data;
	if (++c->handles_closed < 2)
		return;
	if (!c->close_delivered) {
		c->close_delivered = 1;
		if (c->cb && c->cb->on_close && !c->free_req) {
			c->cb->on_close(c, c->close_err, c->close_why, c->opaque);
			return; /* on_close may have freed c */
		}
	}
	xport__maybe_free(c);
}

static void xport__close_handles(struct xport_conn *c)
{
	if (c->handles_closing)
		return; /* an abort overtook a graceful shutdown, whose callback comes too */
	c->handles_closing = 1;
	uv_close((uv_handle_t *)&c->tcp, xport__handle_closed);
	uv_close((uv_handle_t *)&c->async, xport__handle_closed);
}

static void xport__shutdown_done(uv_shutdown_t *req, int status)
{
	(void)status;
	xport__close_handles(req->data);
}

static void xport__take_tls(struct xport_conn *c);
static void xport__drain_queue(struct xport_conn *c);

void xport_close(struct xport_conn *c, int err, const char *why)
{
	if (c->closing) {
		/* A graceful close waits for the peer to take what is queued; an
		 * error means nobody should wait for that (a dead link would hold
		 * it until the TCP user timeout): close now. */
		if (err && !c->handles_closing) {
			c->close_err = err;
			snprintf(c->close_why, sizeof(c->close_why), "%s", why ? why : strerror(-err));
			xport__close_handles(c);
		}
		return;
	}
	c->closing = 1;
	c->close_err = err;
	snprintf(c->close_why, sizeof(c->close_why), "%s", why ? why : (err ? strerror(-err) : "closed"));
	xport__rx_stop(c); /* before the handles close: it wakes the loop through them */
	if (!err && c->connected && c->ssl && c->ready) {
		/* close_notify after everything queued so far */
		pthread_mutex_lock(&c->ssl_lock);
		SSL_shutdown(c->ssl);
		xport__take_tls(c);
		pthread_mutex_unlock(&c->ssl_lock);
	}
	pthread_mutex_lock(&c->lock);
	c->dead = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (!err && c->connected) {
		xport__drain_queue(c); /* what was queued before the close goes out */
		c->sreq.data = c;
		if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, xport__shutdown_done) == 0)
			return;
	}
	xport__close_handles(c);
}

void xport_free(struct xport_conn *c)
{
	if (!c)
		return;
	c->free_req = 1;
	if (!c->closing)
		xport_close(c, -ECANCELED, "closed by owner");
	xport__maybe_free(c);
}

/* ---- writing ---- */

static struct xport_wreq *xport__wreq_new(size_t cap)
{
	struct xport_wreq *w = malloc(sizeof(*w) + cap);
	if (!w)
		return NULL;
	w->next = NULL;
	w->n = 0;
	w->cap = cap;
	w->data = w->inl;
	w->own = NULL;
	return w;
}

/* Appends w to the send queue (any thread; inside ssl_lock when w is
 * ciphertext, so the queue keeps OpenSSL's order). -EPIPE, w freed,
 * once the connection is closing. */
static int xport__enqueue(struct xport_conn *c, struct xport_wreq *w)
{
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		xport__free_wreqs(w);
		return -EPIPE;
	}
	if (c->qtail)
		c->qtail->next = w;
	else
		c->qhead = w;
	c->qtail = w;
	c->pending += w->n;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* OpenSSL's output BIO: ciphertext goes straight into c->wcur, sized for
 * the SSL_write under way (whint), so it is copied once, not into a
 * memory BIO and out again. Under ssl_lock. */
static int xport__bio_write(BIO *b, const char *p, size_t n, size_t *written)
{
	struct xport_conn *c = BIO_get_data(b);
	*written = n;
	while (n) {
		struct xport_wreq *w = c->wcur;
		if (w && w->n == w->cap) {
			c->wcur = NULL;
			if (xport__enqueue(c, w) < 0)
				return 1; /* closing: the bytes are dropped, as a dead socket would */
			w = NULL;
		}
		if (!w) {
			size_t cap = c->whint > n ? c->whint : n;
			w = c->wcur = xport__wreq_new(cap < 4096 ? 4096 : cap);
			if (!w)
				return 0;
		}
		size_t k = w->cap - w->n < n ? w->cap - w->n : n;
		memcpy(w->data + w->n, p, k);
		w->n += k;
		p += k;
		n -= k;
	}
	return 1;
}

static long xport__bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int xport__bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *xport_bio_method;
static pthread_once_t xport_bio_once = PTHREAD_ONCE_INIT;

static void xport__bio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pml-migrate xport");
	if (m && (!BIO_meth_set_write_ex(m, xport__bio_write) || !BIO_meth_set_ctrl(m, xport__bio_ctrl) ||
		  !BIO_meth_set_create(m, xport__bio_create))) {
		BIO_meth_free(m);
		m = NULL;
	}
	xport_bio_method = m;
}

/* Queues what OpenSSL has written so far (under ssl_lock). */
static void xport__take_tls(struct xport_conn *c)
{
	struct xport_wreq *w = c->wcur;
	c->wcur = NULL;
	if (w && w->n)
		xport__enqueue(c, w);
	else
		free(w);
}

static void xport__written(uv_write_t *req, int status)
{
	struct xport_wreq *w = (struct xport_wreq *)req;
	struct xport_conn *c = w->c;
	pthread_mutex_lock(&c->lock);
	c->pending -= w->n;
	c->wire_out += w->n;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(w->own);
	free(w);
	if (status < 0 && !c->closing)
		xport_close(c, status, uv_strerror(status));
}

/* Loop thread: hands everything queued to libuv, in order. */
static void xport__drain_queue(struct xport_conn *c)
{
	if (c->handles_closing)
		return;
	pthread_mutex_lock(&c->lock);
	struct xport_wreq *w = c->qhead;
	c->qhead = c->qtail = NULL;
	pthread_mutex_unlock(&c->lock);
	while (w) {
		struct xport_wreq *next = w->next;
		uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->n);
		w->c = c;
		int e = c->handles_closing ? UV_EPIPE : uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, xport__written);
		if (e < 0) {
			pthread_mutex_lock(&c->lock);
			c->pending -= w->n;
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->lock);
			free(w->own);
			free(w);
			if (!c->closing)
				xport_close(c, e, uv_strerror(e));
		}
		w = next;
	}
}

/* Encrypts n bytes into the queue (any thread). */
static int xport__encrypt(struct xport_conn *c, const void *p, size_t n)
{
	const uint8_t *b = p;
	int e = 0;
	pthread_mutex_lock(&c->ssl_lock);
	c->whint = n + (n / XPORT_TLS_RECORD + 1) * XPORT_TLS_OVERHEAD;
	while (n) {
		size_t chunk = n > (1u << 30) ? (1u << 30) : n;
		int r = SSL_write(c->ssl, b, (int)chunk);
		if (r <= 0) {
			e = -EPROTO;
			break;
		}
		b += r;
		n -= (size_t)r;
	}
	c->whint = 0;
	xport__take_tls(c);
	pthread_mutex_unlock(&c->ssl_lock);
	return e;
}

int xport_write(struct xport_conn *c, const void *p, size_t n)
{
	if (c->closing)
		return -EPIPE;
	if (c->ssl) {
		if (xport__encrypt(c, p, n) < 0) {
			char why[256];
			xport__ssl_errstr(why, sizeof(why));
			xport_close(c, -EPROTO, why);
			return -EPROTO;
		}
	} else {
		struct xport_wreq *w = xport__wreq_new(n);
		if (!w)
			return -ENOMEM;
		memcpy(w->inl, p, n);
		w->n = n;
		int e = xport__enqueue(c, w);
		if (e < 0)
			return e;
	}
	xport__drain_queue(c);
	return c->closing ? -EPIPE : 0;
}

int xport_send(struct xport_conn *c, void *buf, size_t n)
{
	int e = 0;
	pthread_mutex_lock(&c->lock);
	while (!c->dead && (!c->ready || c->pending > XPORT_HIGH_WATER))
		pthread_cond_wait(&c->cond, &c->lock);
	int dead = c->dead;
	pthread_mutex_unlock(&c->lock);
	if (dead) {
		free(buf);
		return -EPIPE;
	}
	if (c->ssl) {
		/* The encryption happens here, in the caller's thread. */
		e = xport__encrypt(c, buf, n);
		free(buf);
		if (e < 0) {
			/* The loop closes it: an SSL_write failure is the SSL
			 * object's end, and only the loop may close. */
			char why[160];
			xport__ssl_errstr(why, sizeof(why)); /* this thread's error queue */
			pthread_mutex_lock(&c->lock);
			snprintf(c->send_why, sizeof(c->send_why), "TLS: %s", why);
			c->dead = 1;
			c->send_err = 1;
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->lock);
			uv_async_send(&c->async);
			return -EPIPE;
		}
	} else {
		struct xport_wreq *w = xport__wreq_new(0);
		if (!w) {
			free(buf);
			return -ENOMEM;
		}
		w->data = w->own = buf; /* the sender's buffer goes to the socket as it is */
		w->n = n;
		if ((e = xport__enqueue(c, w)) < 0)
			return e;
	}
	uv_async_send(&c->async);
	return 0;
}

int xport_flush_wait(struct xport_conn *c)
{
	pthread_mutex_lock(&c->lock);
	while (!c->dead && c->pending)
		pthread_cond_wait(&c->cond, &c->lock);
	int e = c->pending ? -EPIPE : 0;
	pthread_mutex_unlock(&c->lock);
	return e;
}

size_t xport_pending(struct xport_conn *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->pending;
	pthread_mutex_unlock(&c->lock);
	return n;
}

uint64_t xport_wire_out(const struct xport_conn *c) { return __atomic_load_n(&c->wire_out, __ATOMIC_RELAXED); }
uint64_t xport_wire_in(const struct xport_conn *c) { return __atomic_load_n(&c->wire_in, __ATOMIC_RELAXED); }
const char *xport_peer_name(const struct xport_conn *c) { return c->peer; }
int xport_is_ready(const struct xport_conn *c) { return c->ready && !c->closing; }

unsigned xport_rtt_us(const struct xport_conn *c)
{
	uv_os_fd_t fd;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	return ti.tcpi_rtt;
}

int xport_sockname(const struct xport_conn *c, struct sockaddr_storage *ss)
{
	int len = sizeof(*ss);
	return uv_tcp_getsockname(&c->tcp, (struct sockaddr *)ss, &len);
}

int xport_peername(const struct xport_conn *c, struct sockaddr_storage *ss)
{
	int len = sizeof(*ss);
	return uv_tcp_getpeername(&c->tcp, (struct sockaddr *)ss, &len);
}

/* ---- decrypting on a thread of the connection's own ---- */

static void xport__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b);
static void xport__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);

/* Ciphertext read from the socket, or plaintext for on_data, in order. */
struct xport_chunk {
	struct xport_chunk *next;
	size_t n;
	int end;             /* plaintext queue: the stream ended here (err below) */
	int err;
	char why[200];
	uint8_t data[];
};

#define XPORT_RX_CHUNK (64u << 10) /* one socket read; plaintext handed to the loop at once, at most */
#define XPORT_RX_HIGH (4u << 20)   /* bytes held between socket and on_data before reading stops */
#define XPORT_RX_SPARE 96          /* chunks kept for reuse: more than HIGH holds, in both queues */

struct xport_rx {
	pthread_t thread;
	int started;
	struct xport_chunk *chead, *ctail; /* ciphertext in, under c->lock */
	struct xport_chunk *phead, *ptail; /* plaintext out, under c->lock */
	size_t held;                       /* bytes in both queues, under c->lock */
	int stop, poke;                    /* under c->lock */
	int busy;                          /* the thread holds a chunk being decrypted, under c->lock */
	struct xport_chunk *spare;         /* chunks back from either side, under c->lock */
	unsigned nspare;
	int reading_stopped;               /* loop: socket reads stopped for held */
	int eof;                           /* loop: the socket ended, its end is queued */
};

/* A chunk of XPORT_RX_CHUNK bytes, recycled when one is back: memory the
 * process already has, not fresh pages to fault in for every read. Any
 * thread. */
static struct xport_chunk *xport__chunk_get(struct xport_conn *c)
{
	struct xport_rx *rx = c->rx;
	pthread_mutex_lock(&c->lock);
	struct xport_chunk *k = rx->spare;
	if (k) {
		rx->spare = k->next;
		rx->nspare--;
	}
	pthread_mutex_unlock(&c->lock);
	if (!k && !(k = malloc(sizeof(*k) + XPORT_RX_CHUNK)))
		return NULL;
	memset(k, 0, offsetof(struct xport_chunk, data));
	return k;
}

static void xport__chunk_put(struct xport_conn *c, struct xport_chunk *k)
{
	struct xport_rx *rx = c->rx;
	if (!k)
		return;
	pthread_mutex_lock(&c->lock);
	if (rx->nspare < XPORT_RX_SPARE && !k->end) {
		k->next = rx->spare;
		rx->spare = k;
		rx->nspare++;
		k = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	free(k);
}

static void xport__chunks_free(struct xport_chunk *k)
{
	while (k) {
		struct xport_chunk *n = k->next;
		free(k);
		k = n;
	}
}

/* Appends k to one of rx's queues (under c->lock). */
static void xport__chunk_append(struct xport_rx *rx, struct xport_chunk **head, struct xport_chunk **tail,
				struct xport_chunk *k)
{
	k->next = NULL;
	if (*tail)
		(*tail)->next = k;
	else
		*head = k;
	*tail = k;
	rx->held += k->n;
}

/* Takes the first chunk off one of rx's queues, NULL if empty (under c->lock). */
static struct xport_chunk *xport__chunk_pop(struct xport_rx *rx, struct xport_chunk **head, struct xport_chunk **tail)
{
	struct xport_chunk *k = *head;
	if (k) {
		*head = k->next;
		if (!*head)
			*tail = NULL;
		rx->held -= k->n;
	}
	return k;
}

/* The thread: plaintext (or the end) for the loop. */
static void xport__rx_out(struct xport_conn *c, struct xport_chunk *k)
{
	struct xport_rx *rx = c->rx;
	pthread_mutex_lock(&c->lock);
	xport__chunk_append(rx, &rx->phead, &rx->ptail, k);
	pthread_mutex_unlock(&c->lock);
	uv_async_send(&c->async);
}

/* The thread: ciphertext chunks in, through OpenSSL (under ssl_lock, as
 * everything that touches it), plaintext chunks out to the loop. */
static void *xport__rx_thread(void *arg)
{
	struct xport_conn *c = arg;
	struct xport_rx *rx = c->rx;
	pthread_setname_np(pthread_self(), "tls-rx");
	util_thread_background();
	for (;;) {
		pthread_mutex_lock(&c->lock);
		while (!rx->stop && !rx->chead && !rx->poke)
			pthread_cond_wait(&c->cond, &c->lock);
		if (rx->stop) {
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		struct xport_chunk *in = xport__chunk_pop(rx, &rx->chead, &rx->ctail);
		rx->poke = 0;
		rx->busy = 1; /* until its plaintext is queued: xport_rx_pending */
		pthread_mutex_unlock(&c->lock);

		struct xport_chunk *out = NULL, *end = NULL;
		if (in && in->end) {
			end = in; /* the socket's end, after all it carried */
			in = NULL;
		}
		pthread_mutex_lock(&c->ssl_lock);
		int w = in ? BIO_write(c->rbio, in->data, (int)in->n) : 0;
		int bad = in && w != (int)in->n;
		xport__chunk_put(c, in); /* c->lock inside ssl_lock: the usual order */
		while (!bad && !end) {
			if (!out && !(out = xport__chunk_get(c))) {
				bad = 1;
				break;
			}
			int r = SSL_read(c->ssl, out->data + out->n, (int)(XPORT_RX_CHUNK - out->n));
			if (r > 0) {
				out->n += (size_t)r;
				if (out->n + XPORT_TLS_RECORD > XPORT_RX_CHUNK) {
					xport__rx_out(c, out); /* c->lock inside ssl_lock: the usual order */
					out = NULL;
				}
				continue;
			}
			int se = SSL_get_error(c->ssl, r);
			if (se == SSL_ERROR_WANT_READ)
				break;
			end = calloc(1, sizeof(*end));
			if (end) {
				end->end = 1;
				if (se == SSL_ERROR_ZERO_RETURN) {
					snprintf(end->why, sizeof(end->why), "peer closed the connection");
				} else {
					end->err = -EPROTO;
					char why[160];
					xport__ssl_errstr(why, sizeof(why)); /* this thread's error queue */
					snprintf(end->why, sizeof(end->why), "TLS: %s", why);
				}
			}
			break;
		}
		xport__take_tls(c); /* SSL_read may answer (a key update) */
		pthread_mutex_unlock(&c->ssl_lock);
		if (out && out->n)
			xport__rx_out(c, out);
		else
			xport__chunk_put(c, out);
		pthread_mutex_lock(&c->lock);
		rx->busy = 0;
		pthread_mutex_unlock(&c->lock);
		if (bad && !end && (end = calloc(1, sizeof(*end)))) {
			end->end = 1;
			end->err = -ENOMEM;
			snprintf(end->why, sizeof(end->why), "out of memory for TLS");
		}
		if (end) {
			xport__rx_out(c, end);
			pthread_mutex_lock(&c->lock);
			while (!rx->stop)
				pthread_cond_wait(&c->cond, &c->lock); /* nothing may follow the end */
			pthread_mutex_unlock(&c->lock);
			return NULL;
		}
		uv_async_send(&c->async); /* queued answers (key updates) go out */
	}
}

/* Loop: stops and joins the thread (before the handles close: it wakes
 * the loop through c->async). */
static void xport__rx_stop(struct xport_conn *c)
{
	struct xport_rx *rx = c->rx;
	if (!rx || !rx->started)
		return;
	pthread_mutex_lock(&c->lock);
	rx->stop = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(rx->thread, NULL);
	rx->started = 0;
}

static void xport__rx_free(struct xport_conn *c)
{
	if (!c->rx)
		return;
	xport__chunks_free(c->rx->chead);
	xport__chunks_free(c->rx->phead);
	xport__chunks_free(c->rx->spare);
	free(c->rx);
	c->rx = NULL;
}

static int xport__rx_start(struct xport_conn *c)
{
	if (pthread_create(&c->rx->thread, NULL, xport__rx_thread, c))
		return -EAGAIN;
	c->rx->started = 1;
	pthread_mutex_lock(&c->lock);
	c->rx->poke = 1; /* ciphertext that came with the handshake's end */
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/* Loop: socket reads stop while too much is held, and restart below half. */
static void xport__rx_flow(struct xport_conn *c)
{
	struct xport_rx *rx = c->rx;
	pthread_mutex_lock(&c->lock);
	size_t held = rx->held;
	pthread_mutex_unlock(&c->lock);
	if (!rx->reading_stopped && held > XPORT_RX_HIGH) {
		rx->reading_stopped = 1;
		if (!c->read_paused)
			uv_read_stop((uv_stream_t *)&c->tcp);
	} else if (rx->reading_stopped && held < XPORT_RX_HIGH / 2) {
		rx->reading_stopped = 0;
		if (!c->read_paused && !c->closing && !rx->eof)
			uv_read_start((uv_stream_t *)&c->tcp, xport__alloc, xport__read);
	}
}

/* Loop: hands the thread's plaintext to on_data, in order, until paused. */
static void xport__rx_deliver(struct xport_conn *c)
{
	struct xport_rx *rx = c->rx;
	while (!c->closing && !c->read_paused) {
		pthread_mutex_lock(&c->lock);
		struct xport_chunk *k = xport__chunk_pop(rx, &rx->phead, &rx->ptail);
		pthread_mutex_unlock(&c->lock);
		if (!k)
			break;
		if (k->end) {
			xport_close(c, k->err, k->why);
			free(k);
			return;
		}
		int e = c->cb->on_data(c, k->data, k->n, c->opaque);
		xport__chunk_put(c, k);
		if (e && !c->closing)
			xport_close(c, e, NULL);
	}
	if (!c->closing)
		xport__rx_flow(c);
}

int xport_rx_pending(struct xport_conn *c)
{
	if (!c || c->closing || c->read_paused)
		return 0;
	if (c->rx) {
		pthread_mutex_lock(&c->lock);
		int held = c->rx->held > 0 || c->rx->busy;
		pthread_mutex_unlock(&c->lock);
		if (held)
			return 1;
	} else if (c->ssl) {
		pthread_mutex_lock(&c->ssl_lock);
		int p = SSL_pending(c->ssl) > 0;
		pthread_mutex_unlock(&c->ssl_lock);
		if (p)
			return 1;
	}
	uv_os_fd_t fd;
	int n = 0;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0)
		return 1;
	return 0;
}

int xport_rx_offload(struct xport_conn *c)
{
	if (!c->ssl || c->rx)
		return 0; /* plaintext: nothing to decrypt */
	if (c->ready)
		return -EALREADY;
	c->rx = calloc(1, sizeof(*c->rx));
	return c->rx ? 0 : -ENOMEM;
}


/* Loop: ciphertext read into a chunk (see xport__alloc) goes to the thread. */
static void xport__rx_in(struct xport_conn *c, struct xport_chunk *k, size_t n)
{
	struct xport_rx *rx = c->rx;
	k->n = n;
	pthread_mutex_lock(&c->lock);
	xport__chunk_append(rx, &rx->chead, &rx->ctail, k);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	xport__rx_flow(c);
}

/* ---- reading ---- */

/* Loop thread: queues and writes whatever OpenSSL produced (handshake
 * messages, alerts, key updates). */
static void xport__flush_tls(struct xport_conn *c)
{
	pthread_mutex_lock(&c->ssl_lock);
	xport__take_tls(c);
	pthread_mutex_unlock(&c->ssl_lock);
	xport__drain_queue(c);
}

static void xport__became_ready(struct xport_conn *c)
{
	pthread_mutex_lock(&c->lock);
	c->ready = 1;
	pthread_cond_broadcast(&c->cond); /* senders wait for it */
	pthread_mutex_unlock(&c->lock);
	if (c->cb->on_ready) /* optional */
		c->cb->on_ready(c, c->opaque);
}

/* Server side: the client chained to our CA (OpenSSL checked); now the
 * allow-list. Client side: OpenSSL checked the host name (SSL_set1_host). */
static int xport__check_peer(struct xport_conn *c)
{
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	if (!cert) {
		xport_close(c, -EACCES, "peer sent no certificate");
		return -EACCES;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, c->peer, sizeof(c->peer));
	if (!c->tls->server || !c->tls->allow[0])
		return 0;
	char list[sizeof(c->tls->allow)], *save = NULL;
	snprintf(list, sizeof(list), "%s", c->tls->allow);
	for (char *n = strtok_r(list, ",", &save); n; n = strtok_r(NULL, ",", &save))
		if (*n && X509_check_host(cert, n, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1)
			return 0;
	char why[400];
	snprintf(why, sizeof(why), "client certificate '%s' is not on the allow-list", c->peer);
	xport_close(c, -EACCES, why);
	return -EACCES;
}

static void xport__tls_failed(struct xport_conn *c, const char *stage)
{
	char why[256], msg[512];
	pthread_mutex_lock(&c->ssl_lock);
	long vr = SSL_get_verify_result(c->ssl);
	xport__ssl_errstr(why, sizeof(why));
	pthread_mutex_unlock(&c->ssl_lock);
	if (vr != X509_V_OK)
		snprintf(msg, sizeof(msg), "%s: peer certificate rejected: %s", stage, X509_verify_cert_error_string(vr));
	else
		snprintf(msg, sizeof(msg), "%s: %s", stage, why);
	xport__flush_tls(c); /* let the peer see our alert */
	xport_close(c, -EPROTO, msg);
}

/* Hands out whatever plaintext OpenSSL holds, until paused or dry. */
static void xport__drain_ssl(struct xport_conn *c)
{
	while (!c->closing && !c->read_paused) {
		pthread_mutex_lock(&c->ssl_lock);
		int r = SSL_read(c->ssl, c->pbuf, (int)sizeof(c->pbuf));
		int se = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
		xport__take_tls(c); /* SSL_read may answer (a key update) */
		pthread_mutex_unlock(&c->ssl_lock);
		if (r > 0) {
			int e = c->cb->on_data(c, c->pbuf, (size_t)r, c->opaque);
			if (e && !c->closing)
				xport_close(c, e, NULL);
			continue;
		}
		if (se == SSL_ERROR_WANT_READ)
			break;
		if (se == SSL_ERROR_ZERO_RETURN) {
			xport_close(c, 0, "peer closed the connection");
			return;
		}
		xport__tls_failed(c, "TLS");
		return;
	}
	if (!c->closing)
		xport__drain_queue(c);
}

/* With decryption on its own thread, each read lands in a chunk of its
 * own that is handed over as it is; else in the connection's buffer. */
static void xport__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct xport_conn *c = h->data;
	(void)sz;
	if (c->rx && c->rx->started) {
		struct xport_chunk *k = xport__chunk_get(c);
		if (k) {
			*b = uv_buf_init((char *)k->data, XPORT_RX_CHUNK);
			return;
		}
		*b = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
		return;
	}
	*b = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void xport__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct xport_conn *c = s->data;
	struct xport_chunk *k = NULL;
	if (b && b->base && b->base != (char *)c->rbuf)
		k = (struct xport_chunk *)(b->base - offsetof(struct xport_chunk, data));
	if (k && (c->closing || n <= 0))
		xport__chunk_put(c, k);
	if (c->closing)
		return;
	if (n < 0 && c->rx && c->rx->started) {
		/* The end goes behind the ciphertext still queued for the
		 * thread: what the peer sent before closing is delivered. */
		struct xport_chunk *e = calloc(1, sizeof(*e));
		if (!e) {
			xport_close(c, -ENOMEM, "out of memory");
			return;
		}
		e->end = 1;
		e->err = n == UV_EOF ? 0 : (int)n;
		snprintf(e->why, sizeof(e->why), "%s", n == UV_EOF ? "peer closed the connection" : uv_strerror((int)n));
		c->rx->eof = 1;
		uv_read_stop((uv_stream_t *)&c->tcp);
		xport__rx_in(c, e, 0);
		return;
	}
	if (n < 0) {
		if (n == UV_EOF)
			xport_close(c, c->ready ? 0 : -ECONNRESET,
				    c->ready ? "peer closed the connection" : "peer closed the connection during the handshake");
		else
			xport_close(c, (int)n, uv_strerror((int)n));
		return;
	}
	if (!n)
		return;
	__atomic_add_fetch(&c->wire_in, (uint64_t)n, __ATOMIC_RELAXED);
	if (k) {
		xport__rx_in(c, k, (size_t)n);
		return;
	}
	if (!c->ssl) {
		int e = c->cb->on_data(c, c->rbuf, (size_t)n, c->opaque);
		if (e && !c->closing)
			xport_close(c, e, NULL);
		return;
	}
	pthread_mutex_lock(&c->ssl_lock);
	int w = BIO_write(c->rbio, c->rbuf, (int)n);
	pthread_mutex_unlock(&c->ssl_lock);
	if (w != (int)n) {
		xport_close(c, -ENOMEM, "TLS buffer");
		return;
	}
	if (!c->ready) {
		/* No sender uses the SSL object before it is ready. */
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int se = SSL_get_error(c->ssl, r);
			if (se == SSL_ERROR_WANT_READ) {
				xport__flush_tls(c);
				return;
			}
			xport__tls_failed(c, "TLS handshake failed");
			return;
		}
		xport__flush_tls(c);
		if (xport__check_peer(c) < 0)
			return;
		xport__became_ready(c);
		if (c->closing)
			return;
		if (c->rx) {
			/* From here on the thread decrypts, starting with what
			 * came in with the handshake's last message. */
			int e = xport__rx_start(c);
			if (e < 0)
				xport_close(c, e, "cannot start the TLS receive thread");
			return;
		}
	}
	if (c->rx && c->rx->started)
		return; /* the thread's (read into c->rbuf before it started) */
	xport__drain_ssl(c);
}

void xport_read_pause(struct xport_conn *c, int pause)
{
	if (c->closing || c->read_paused == !!pause)
		return;
	c->read_paused = !!pause;
	if (c->rx && c->rx->started) {
		if (pause) {
			if (!c->rx->reading_stopped)
				uv_read_stop((uv_stream_t *)&c->tcp);
			return;
		}
		if (!c->rx->reading_stopped && !c->rx->eof)
			uv_read_start((uv_stream_t *)&c->tcp, xport__alloc, xport__read);
		xport__rx_deliver(c); /* what the thread decrypted meanwhile */
		return;
	}
	if (pause) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		return;
	}
	uv_read_start((uv_stream_t *)&c->tcp, xport__alloc, xport__read);
	if (c->ssl && c->ready)
		xport__drain_ssl(c); /* plaintext OpenSSL kept while paused */
}

static void xport__async(uv_async_t *a)
{
	struct xport_conn *c = a->data;
	if (c->closing)
		return;
	pthread_mutex_lock(&c->lock);
	int send_err = c->send_err;
	pthread_mutex_unlock(&c->lock);
	if (send_err) {
		xport_close(c, -EPROTO, c->send_why);
		return;
	}
	if (c->ready_pending) {
		c->ready_pending = 0;
		xport__became_ready(c);
		if (c->closing)
			return;
	}
	if (c->rx && c->rx->started)
		xport__rx_deliver(c);
	xport__drain_queue(c);
}

/* ---- setup ---- */

/* A peer that vanished without a FIN (power loss, partition) is noticed
 * within about 25 s of silence, and data unacknowledged for 30 s ends
 * the connection: no wait on the network is without a deadline. */
static void xport__keepalive(struct xport_conn *c)
{
	uv_os_fd_t fd;
	int one = 1, idle = 10, intvl = 5, cnt = 3;
	unsigned utmo = 30000;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &utmo, sizeof(utmo));
}

static int xport__new(uv_loop_t *loop, struct xport_tls *tls, const struct xport_callbacks *cb, void *opaque,
		      struct xport_conn **out)
{
	struct xport_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->tls = tls;
	c->cb = cb;
	c->opaque = opaque;
	pthread_mutex_init(&c->ssl_lock, NULL);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (!tls->insecure) {
		pthread_once(&xport_bio_once, xport__bio_init);
		c->ssl = SSL_new(tls->ctx);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = xport_bio_method ? BIO_new(xport_bio_method) : NULL;
		if (!c->ssl || !c->rbio || !c->wbio) {
			BIO_free(c->rbio);
			BIO_free(c->wbio);
			SSL_free(c->ssl);
			free(c);
			return -ENOMEM;
		}
		BIO_set_mem_eof_return(c->rbio, -1); /* empty = "want more", not EOF */
		BIO_set_data(c->wbio, c);
		SSL_set_bio(c->ssl, c->rbio, c->wbio);
	}
	uv_tcp_init(loop, &c->tcp);
	uv_async_init(loop, &c->async, xport__async);
	c->tcp.data = c->async.data = c;
	*out = c;
	return 0;
}

static void xport__connected(uv_connect_t *req, int status)
{
	struct xport_conn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		xport_close(c, status, uv_strerror(status));
		return;
	}
	c->connected = 1;
	uv_tcp_nodelay(&c->tcp, 1);
	xport__keepalive(c);
	uv_read_start((uv_stream_t *)&c->tcp, xport__alloc, xport__read);
	if (!c->ssl) {
		xport__became_ready(c);
		return;
	}
	SSL_do_handshake(c->ssl); /* ClientHello into wbio */
	xport__flush_tls(c);
}

int xport_connect(uv_loop_t *loop, struct xport_tls *tls, const char *hostport, const struct xport_callbacks *cb,
		  void *opaque, struct xport_conn **out)
{
	struct sockaddr_storage ss;
	struct xport_conn *c;
	int e = xport_resolve(hostport, &ss);
	if (e < 0)
		return e;
	e = xport__new(loop, tls, cb, opaque, &c);
	if (e < 0)
		return e;
	if (c->ssl) {
		SSL_set_connect_state(c->ssl);
		if (tls->peer_name[0]) {
			SSL_set1_host(c->ssl, tls->peer_name);
			SSL_set_tlsext_host_name(c->ssl, tls->peer_name);
		}
	}
	c->creq.data = c;
	e = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&ss, xport__connected);
	if (e < 0) {
		c->free_req = 1;
		xport_close(c, e, uv_strerror(e));
		return e;
	}
	*out = c;
	return 0;
}

static int xport__start_server(struct xport_conn *c)
{
	c->connected = 1;
	uv_tcp_nodelay(&c->tcp, 1);
	xport__keepalive(c);
	int e = uv_read_start((uv_stream_t *)&c->tcp, xport__alloc, xport__read);
	if (e < 0)
		return e;
	if (c->ssl) {
		SSL_set_accept_state(c->ssl);
	} else {
		c->ready_pending = 1; /* after the caller has stored *out */
		uv_async_send(&c->async);
	}
	return 0;
}

int xport_accept_fd(uv_loop_t *loop, struct xport_tls *tls, int fd, const struct xport_callbacks *cb, void *opaque,
		    struct xport_conn **out)
{
	struct xport_conn *c;
	int e = xport__new(loop, tls, cb, opaque, &c);
	if (e < 0) {
		close(fd);
		return e;
	}
	e = uv_tcp_open(&c->tcp, fd);
	if (e < 0) {
		close(fd);
		goto err_close;
	}
	e = xport__start_server(c);
	if (e < 0)
		goto err_close;
	*out = c;
	return 0;
err_close:
	c->free_req = 1;
	xport_close(c, e, uv_strerror(e));
	return e;
}

int xport_accept(uv_stream_t *server, struct xport_tls *tls, const struct xport_callbacks *cb, void *opaque,
		 struct xport_conn **out)
{
	struct xport_conn *c;
	int e = xport__new(server->loop, tls, cb, opaque, &c);
	if (e < 0)
		return e;
	e = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (!e)
		e = xport__start_server(c);
	if (e < 0) {
		c->free_req = 1;
		xport_close(c, e, uv_strerror(e));
		return e;
	}
	*out = c;
	return 0;
}
