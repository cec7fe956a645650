/*
 * transport/xport.h - one migration connection: libuv TCP carrying
 * OpenSSL TLS 1.3 through memory BIOs (or plaintext with --insecure).
 *
 * Threads: a connection lives on one libuv loop; every function here
 * except xport_send(), xport_pending() and the counters must be called on
 * that loop's thread, and every callback runs there. xport_send() is for
 * worker threads (the pre-copy engine, encoders): it blocks while more
 * than XPORT_HIGH_WATER bytes are queued, so the memory a migration uses
 * stays bounded whatever the gap between encoder and link speed.
 *
 * Authentication (TLS): both sides present a certificate from the
 * configured directory (DIR/ca.pem, DIR/NODE.pem, DIR/NODE.key, as made by
 * `pml-migrate certs`). A client checks that the server certificate chains
 * to the CA and carries the expected name; a server requires a client
 * certificate that chains to its CA and, with an allow-list, whose name is
 * on it. Only TLS 1.3 is offered or accepted.
 *
 * Returns: 0 or -errno throughout.
 */
#ifndef PMG_TRANSPORT_XPORT_H
#define PMG_TRANSPORT_XPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define XPORT_HIGH_WATER (2u << 20) /* bytes queued per connection before senders wait */

struct xport_tls_config {
	int server;            /* accept side: require and check client certificates */
	int insecure;          /* plaintext, no authentication at all */
	const char *certs_dir; /* DIR with ca.pem, NODE.pem, NODE.key */
	const char *node;      /* our certificate's name in certs_dir */
	const char *peer_name; /* client: the name the server certificate must carry */
	const char *allow;     /* server: comma-separated client names, NULL = any the CA signed */
};

/* Shared settings (an SSL_CTX) for many connections. err/errlen receive a
 * one-line reason (missing file, key does not match, ...). */
struct xport_tls;
int xport_tls_new(const struct xport_tls_config *cfg, struct xport_tls **out, char *err, size_t errlen);
void xport_tls_free(struct xport_tls *t);

struct xport_conn;

struct xport_callbacks {
	/* Handshake done and the peer authenticated (at once with --insecure).
	 * Optional (NULL). */
	void (*on_ready)(struct xport_conn *c, void *opaque);
	/* Plaintext bytes, in order. A non-zero return closes the connection
	 * with that error. */
	int (*on_data)(struct xport_conn *c, const uint8_t *p, size_t n, void *opaque);
	/* Called exactly once when the connection ends for any reason (err 0:
	 * the peer closed cleanly or xport_close(c, 0, ..) was called). The
	 * owner then calls xport_free() once no thread uses c any more. */
	void (*on_close)(struct xport_conn *c, int err, const char *why, void *opaque);
};

/* Connects to "HOST:PORT" ("[v6]:PORT" for IPv6 literals). Resolution is
 * synchronous; the TCP connect and handshake are not. */
int xport_connect(uv_loop_t *loop, struct xport_tls *tls, const char *hostport, const struct xport_callbacks *cb,
		  void *opaque, struct xport_conn **out);
/* Server side over an accepted TCP socket fd (ownership moves in). */
int xport_accept_fd(uv_loop_t *loop, struct xport_tls *tls, int fd, const struct xport_callbacks *cb, void *opaque,
		    struct xport_conn **out);
/* Server side: accepts a pending connection from a listening uv_tcp_t. */
int xport_accept(uv_stream_t *server, struct xport_tls *tls, const struct xport_callbacks *cb, void *opaque,
		 struct xport_conn **out);

/* Queues a copy of p for sending (loop thread). */
int xport_write(struct xport_conn *c, const void *p, size_t n);
/* Worker threads: queues buf (malloc'd, ownership moves in, freed even on
 * error), waking the loop; blocks while more than XPORT_HIGH_WATER bytes
 * wait. Returns -EPIPE once the connection has closed. */
int xport_send(struct xport_conn *c, void *buf, size_t n);
/* Blocks (worker thread) until everything queued so far is on the wire,
 * or the connection closed (-EPIPE). */
int xport_flush_wait(struct xport_conn *c);
/* Bytes queued and not yet written to the socket. Any thread. */
size_t xport_pending(struct xport_conn *c);
/* Has this connection decrypt on a thread of its own once the handshake
 * is done, so N connections decrypt on N cores: the loop thread then only
 * reads the socket, and on_data still runs on it, with the plaintext the
 * thread produced (in chunks up to 256 KiB). Call on the loop thread
 * before the handshake completes (right after xport_accept*() or
 * xport_connect()); -EALREADY after. Plaintext connections: nothing to
 * do, 0. Up to 4 MiB may wait between socket and on_data. */
int xport_rx_offload(struct xport_conn *c);
/* Stops / restarts delivering on_data (receive-side backpressure). */
void xport_read_pause(struct xport_conn *c, int pause);

/* Ends the connection: with err 0, after what is queued has been
 * written; otherwise at once, also when a graceful close is already
 * waiting. on_close follows (once). */
void xport_close(struct xport_conn *c, int err, const char *why);
/* Frees after on_close (or closes first). No thread may use c after. */
void xport_free(struct xport_conn *c);

/* The peer's certificate name (CN), "" with --insecure or before ready. */
const char *xport_peer_name(const struct xport_conn *c);
/* Bytes written to / read from the socket (TLS framing included). */
uint64_t xport_wire_out(const struct xport_conn *c);
uint64_t xport_wire_in(const struct xport_conn *c);
/* Whether on_ready has happened and the connection is still open. */
int xport_is_ready(const struct xport_conn *c);

/* The kernel's smoothed round-trip time estimate (TCP_INFO), 0 if unknown. */
unsigned xport_rtt_us(const struct xport_conn *c);
/* Whether input has arrived that on_data has not seen yet: bytes in the
 * socket's receive buffer, ciphertext or plaintext held by the decrypting
 * thread, or plaintext OpenSSL holds. 0 while the owner paused reading
 * (xport_read_pause) or once closing. A deadline judged while this is 1
 * would ignore what the peer already said (a process stopped and
 * continued runs its timers before its reads). Loop thread. */
int xport_rx_pending(struct xport_conn *c);
/* Local address of the connection's socket. */
int xport_sockname(const struct xport_conn *c, struct sockaddr_storage *ss);
/* The peer's address (connected sockets). */
int xport_peername(const struct xport_conn *c, struct sockaddr_storage *ss);

/* Parses "HOST:PORT" into host (NUL-terminated) and port. -EINVAL if bad. */
int xport_split_hostport(const char *s, char *host, size_t hostlen, unsigned *port);
/* Resolves HOST:PORT to a socket address (numeric first, then DNS). */
int xport_resolve(const char *hostport, struct sockaddr_storage *ss);

#endif
