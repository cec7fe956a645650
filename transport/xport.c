/*
 * transport/xport.c - TLS 1.3 over memory BIOs on a libuv TCP handle.
 *
 * OpenSSL never touches the socket: ciphertext read by libuv goes into
 * rbio, SSL_read yields plaintext; SSL_write fills wbio, whose bytes are
 * handed to uv_write. That keeps the loop non-blocking and lets worker
 * threads queue plaintext while only the loop thread touches the SSL
 * object (OpenSSL objects are not safe to share between threads).
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "transport/xport.h"

#define XPORT_RBUF (64u << 10)

struct xport_tls {
	SSL_CTX *ctx;
	int insecure, server;
	char peer_name[256];
	char allow[1024];
};

struct xport_qbuf {
	struct xport_qbuf *next;
	void *p;
	size_t n;
};

struct xport_wreq {
	uv_write_t req;
	struct xport_conn *c;
	size_t n;
	char data[];
};

struct xport_conn {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_async_t async;
	uv_connect_t creq;
	uv_shutdown_t sreq;
	struct xport_tls *tls;
	SSL *ssl;
	BIO *rbio, *wbio;
	const struct xport_callbacks *cb;
	void *opaque;

	int ready, ready_pending, closing, close_delivered, handles_closed, free_req;
	int handles_closing; /* uv_close issued (once) */
	int read_paused, connected;
	int close_err;
	char close_why[256];
	char peer[256];

	/* shared with worker threads */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct xport_qbuf *qhead, *qtail;
	size_t pending; /* plaintext queued + bytes inside uv write requests */
	int dead;
	uint64_t wire_out, wire_in;

	uint8_t rbuf[XPORT_RBUF];
	uint8_t pbuf[16384];
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

static void xport__maybe_free(struct xport_conn *c)
{
	if (c->handles_closed < 2 || !c->free_req)
		return;
	struct xport_qbuf *q = c->qhead;
	while (q) {
		struct xport_qbuf *n = q->next;
		free(q->p);
		free(q);
		q = n;
	}
	SSL_free(c->ssl); /* frees both BIOs */
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

static void xport__flush_tls(struct xport_conn *c);

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
	pthread_mutex_lock(&c->lock);
	c->dead = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (!err && c->connected) {
		if (c->ssl && c->ready) {
			SSL_shutdown(c->ssl);
			xport__flush_tls(c);
		}
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

static void xport__written(uv_write_t *req, int status)
{
	struct xport_wreq *w = (struct xport_wreq *)req;
	struct xport_conn *c = w->c;
	pthread_mutex_lock(&c->lock);
	c->pending -= w->n;
	c->wire_out += w->n;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(w);
	if (status < 0 && !c->closing)
		xport_close(c, status, uv_strerror(status));
}

/* Hands bytes to libuv; counted in pending until written. */
static int xport__sock_write(struct xport_conn *c, struct xport_wreq *w)
{
	uv_buf_t b = uv_buf_init(w->data, (unsigned)w->n);
	w->c = c;
	pthread_mutex_lock(&c->lock);
	c->pending += w->n;
	pthread_mutex_unlock(&c->lock);
	int e = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, xport__written);
	if (e < 0) {
		pthread_mutex_lock(&c->lock);
		c->pending -= w->n;
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		free(w);
		if (!c->closing)
			xport_close(c, e, uv_strerror(e));
	}
	return e;
}

static void xport__flush_tls(struct xport_conn *c)
{
	size_t n;
	while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
		struct xport_wreq *w = malloc(sizeof(*w) + n);
		if (!w) {
			xport_close(c, -ENOMEM, "out of memory");
			return;
		}
		int got = BIO_read(c->wbio, w->data, (int)n);
		if (got <= 0) {
			free(w);
			return;
		}
		w->n = (size_t)got;
		if (xport__sock_write(c, w) < 0)
			return;
	}
}

/* Loop thread: plaintext in, wire bytes out. */
static int xport__push(struct xport_conn *c, const void *p, size_t n)
{
	if (c->closing)
		return -EPIPE;
	if (!c->ssl) {
		struct xport_wreq *w = malloc(sizeof(*w) + n);
		if (!w)
			return -ENOMEM;
		memcpy(w->data, p, n);
		w->n = n;
		return xport__sock_write(c, w);
	}
	const uint8_t *b = p;
	while (n) {
		size_t chunk = n > (1u << 30) ? (1u << 30) : n;
		int r = SSL_write(c->ssl, b, (int)chunk);
		if (r <= 0) {
			char why[256];
			xport__ssl_errstr(why, sizeof(why));
			xport_close(c, -EPROTO, why);
			return -EPROTO;
		}
		b += r;
		n -= (size_t)r;
	}
	xport__flush_tls(c);
	return c->closing ? -EPIPE : 0;
}

int xport_write(struct xport_conn *c, const void *p, size_t n)
{
	return xport__push(c, p, n);
}

static void xport__drain_queue(struct xport_conn *c)
{
	for (;;) {
		pthread_mutex_lock(&c->lock);
		struct xport_qbuf *q = c->qhead;
		if (q) {
			c->qhead = q->next;
			if (!c->qhead)
				c->qtail = NULL;
		}
		pthread_mutex_unlock(&c->lock);
		if (!q)
			return;
		xport__push(c, q->p, q->n);
		pthread_mutex_lock(&c->lock);
		c->pending -= q->n; /* the wire copy is counted by now */
		pthread_cond_broadcast(&c->cond);
		pthread_mutex_unlock(&c->lock);
		free(q->p);
		free(q);
	}
}

int xport_send(struct xport_conn *c, void *buf, size_t n)
{
	struct xport_qbuf *q = malloc(sizeof(*q));
	if (!q) {
		free(buf);
		return -ENOMEM;
	}
	q->p = buf;
	q->n = n;
	q->next = NULL;
	pthread_mutex_lock(&c->lock);
	while (!c->dead && c->pending > XPORT_HIGH_WATER)
		pthread_cond_wait(&c->cond, &c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		free(buf);
		free(q);
		return -EPIPE;
	}
	if (c->qtail)
		c->qtail->next = q;
	else
		c->qhead = q;
	c->qtail = q;
	c->pending += n;
	pthread_mutex_unlock(&c->lock);
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

/* ---- reading ---- */

static void xport__became_ready(struct xport_conn *c)
{
	c->ready = 1;
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
	long vr = SSL_get_verify_result(c->ssl);
	xport__ssl_errstr(why, sizeof(why));
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
		int r = SSL_read(c->ssl, c->pbuf, (int)sizeof(c->pbuf));
		if (r > 0) {
			int e = c->cb->on_data(c, c->pbuf, (size_t)r, c->opaque);
			if (e && !c->closing)
				xport_close(c, e, NULL);
			continue;
		}
		int se = SSL_get_error(c->ssl, r);
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
		xport__flush_tls(c);
}

static void xport__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct xport_conn *c = h->data;
	(void)sz;
	*b = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void xport__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct xport_conn *c = s->data;
	(void)b;
	if (c->closing)
		return;
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
	if (!c->ssl) {
		int e = c->cb->on_data(c, c->rbuf, (size_t)n, c->opaque);
		if (e && !c->closing)
			xport_close(c, e, NULL);
		return;
	}
	if (BIO_write(c->rbio, c->rbuf, (int)n) != (int)n) {
		xport_close(c, -ENOMEM, "TLS buffer");
		return;
	}
	if (!c->ready) {
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
	}
	xport__drain_ssl(c);
}

void xport_read_pause(struct xport_conn *c, int pause)
{
	if (c->closing || c->read_paused == !!pause)
		return;
	c->read_paused = !!pause;
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
	if (c->ready_pending) {
		c->ready_pending = 0;
		xport__became_ready(c);
		if (c->closing)
			return;
	}
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
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (!tls->insecure) {
		c->ssl = SSL_new(tls->ctx);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		if (!c->ssl || !c->rbio || !c->wbio) {
			BIO_free(c->rbio);
			BIO_free(c->wbio);
			SSL_free(c->ssl);
			free(c);
			return -ENOMEM;
		}
		BIO_set_mem_eof_return(c->rbio, -1); /* empty = "want more", not EOF */
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
