/*
 * migrate/stream.h - the migration stream: versioned, typed,
 * length-prefixed records (wire format in docs/stream.md).
 *
 * Everything read from the network passes through here and is validated
 * before any field is used: record sizes, counts, frame numbers against
 * the announced memory, codec ids and payload lengths. Functions return 0
 * or -errno (-EPROTO for a malformed record, -E2BIG for a size over the
 * limits, -ERANGE for a frame outside memory). Pure functions on buffers;
 * no threads, no I/O.
 */
#ifndef PMG_MIGRATE_STREAM_H
#define PMG_MIGRATE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_MAGIC 0x4d4c4d50u /* "PMLM" */
#define STREAM_VERSION 1
#define STREAM_HDR_SIZE 8
#define STREAM_MAX_BATCH 256           /* pages per PAGES record */
#define STREAM_PAGE_ENTRY_HDR 16
#define STREAM_MAX_RECORD (2u << 20)   /* payload bytes */
#define STREAM_MAX_VCPU_BLOB (256u << 10)
#define STREAM_MAX_TEXT 1024
#define STREAM_MAX_NAME 64
#define STREAM_VERIFY_CHUNK 512        /* pages per VERIFY digest */
#define STREAM_MAX_VERIFY 65536        /* digests per VERIFY record */

enum stream_type {
	STREAM_HELLO = 1,
	STREAM_SHAPE = 2,
	STREAM_PAGES = 3,
	STREAM_VCPU = 4,
	STREAM_ROUND_END = 5,
	STREAM_STATE_DONE = 6,
	STREAM_READY = 7,
	STREAM_COMMIT = 8,
	STREAM_RUNNING = 9,
	STREAM_ERROR = 10,
	STREAM_VERIFY = 11,
	STREAM_JOIN = 12,
	STREAM_RESUME = 13,
	STREAM_ACK = 14,
	STREAM_CHECKPOINT = 15, /* on disk only (docs/checkpoint.md): a file's first record */
	STREAM_SEAL = 16,       /* on disk only: a file's last record */
	STREAM_CAPACITY = 17,   /* an agent's answer to a HELLO with STREAM_CAP_QUERY */
	STREAM_PROBE = 18,      /* link probe filler (any bytes); an empty one ends the probe */
	STREAM_PROBE_DONE = 19, /* the agent's measure of a link probe */
	STREAM_RESOLVE = 20,    /* after a HELLO with STREAM_CAP_RESOLVE: which migration, and the source's decision */
	STREAM_RESOLVED = 21,   /* the agent's answer: what became of that migration there */
	STREAM_DOMAIN = 22,     /* after a SHAPE with STREAM_HV_XEN_DOMAIN: how the toolstack builds the domain */
	STREAM_TYPE_MAX
};

struct stream_record {
	uint16_t type;
	uint32_t len;
	const uint8_t *payload; /* points into the reader's buffer: valid during the callback */
};

struct stream_hello {
	uint16_t version;
	uint64_t caps;
	char name[STREAM_MAX_NAME + 1];
};

/* Which hypervisor's state the VCPU records carry: the destination must
 * run the same one. */
enum stream_hv {
	STREAM_HV_KVM = 0,
	STREAM_HV_XEN = 1,
	STREAM_HV_XEN_DOMAIN = 2, /* Xen, a toolstack's own guest: a DOMAIN record follows SHAPE */
};
#define STREAM_MAX_DOMAIN (1u << 20) /* DOMAIN payload bytes */

struct stream_shape {
	uint64_t mem_bytes;
	uint32_t vcpus;
	uint64_t tsc_khz;
	uint8_t dirty_log;
	uint8_t hv;      /* enum stream_hv */
};

/* Extra connections of one migration (--streams N). The destination
 * sends index 0 with the port its session listens on; each extra
 * connection of the source opens with index 1..count-1 and the token. */
struct stream_join {
	uint64_t token;
	uint32_t index;
	uint16_t port;
	uint16_t count;
};

/* HELLO capabilities. */
#define STREAM_CAP_RESUME (1ull << 0) /* a lost connection before READY may be resumed */
#define STREAM_CAP_QUERY (1ull << 1)  /* not a migration: asks the agent's capacity (CAPACITY) */
#define STREAM_CAP_PROBE (1ull << 2)  /* with QUERY: then measures the link (PROBE..., PROBE_DONE) */
#define STREAM_CAP_RESOLVE (1ull << 3) /* with QUERY: asks what became of a migration (RESOLVE) */
#define STREAM_CAP_TOKEN (1ull << 4)   /* the answer's JOIN names the migration even with one connection
					* and no resume (port 0 then): RESOLVE needs it */
#define STREAM_MAX_PROBE (1u << 20)   /* filler bytes per PROBE record */

/* A source whose migration's outcome it could not learn asks the agent
 * (HELLO with STREAM_CAP_QUERY | STREAM_CAP_RESOLVE and the VM's name):
 * the migration is the one of token (its JOIN's), and decision is what
 * the source did. COMMIT: COMMIT was sent, so a destination still
 * holding the VM at READY starts it. ABORT: the source resumed its
 * guest (or will), so a destination holding it destroys it. */
enum stream_decision {
	STREAM_DECIDE_COMMIT = 1,
	STREAM_DECIDE_ABORT = 2,
};
struct stream_resolve {
	uint64_t token;
	uint8_t decision; /* enum stream_decision */
};
/* The agent's answer. RAN: the guest started there after COMMIT (the
 * migration happened, whatever became of the guest since). NONE: no copy
 * runs there and none can start (never started, destroyed): the source's
 * copy is the only one. UNKNOWN: the agent cannot say for certain now. */
enum stream_outcome {
	STREAM_OUTCOME_RAN = 1,
	STREAM_OUTCOME_NONE = 2,
	STREAM_OUTCOME_UNKNOWN = 3,
};
struct stream_resolved {
	uint32_t outcome; /* enum stream_outcome */
	char text[STREAM_MAX_TEXT + 1]; /* why, for the operator */
};

/* What the agent measured of a link probe: the PROBE bytes (headers
 * included) that arrived after the first PROBE record, and the time from
 * that first record to the empty one that ended the probe. */
struct stream_probe_done {
	uint64_t bytes;
	uint64_t ns;
};

/* What an agent can take: its host's memory and its session slots. */
struct stream_capacity {
	uint64_t mem_total;     /* bytes of RAM on the agent's host */
	uint64_t mem_available; /* bytes available to new VMs (the kernel's MemAvailable) */
	uint32_t sessions;      /* migrations and VMs it hosts now (its --max-sessions count) */
	uint32_t max_sessions;
	uint8_t hv;             /* enum stream_hv: what it receives into */
};

/* A re-connection of a migration whose link was lost (source to the
 * destination's session port): the token of its JOIN, which connection it
 * replaces, and the source's attempt number (a RESUME of an older attempt
 * than one already seen is stale and dropped). */
struct stream_resume {
	uint64_t token;
	uint32_t index;
	uint16_t count;
	uint32_t epoch;
};

/* Destination to source, on connection index: the number of records
 * received on it so far (after the handshake). Sent periodically and as
 * the answer to RESUME: the source resends what followed them. */
struct stream_ack {
	uint32_t index;
	uint64_t records;
};

/* A checkpoint file's first record: which point of which chain it holds.
 * A full image has parent_id 0 and parent_seq 0; an incremental one holds
 * the pages written since checkpoint parent_seq, whose id is parent_id. */
struct stream_checkpoint {
	uint32_t seq;        /* >= 1 */
	uint32_t parent_seq; /* < seq; 0 for a full image */
	uint64_t id;         /* random, not 0: names this point in time */
	uint64_t parent_id;  /* 0 for a full image */
	uint64_t start_ns;   /* CLOCK_REALTIME when writing began */
};

/* A checkpoint file's last record: what came before it, and when the
 * guest was paused for the consistent point. */
#define STREAM_SHA256_LEN 32
struct stream_seal {
	uint64_t records;    /* records before this one */
	uint64_t bytes;      /* bytes before this one */
	uint64_t paused_ns;  /* CLOCK_REALTIME at the pause: the checkpoint's time */
	uint64_t pause_ns;   /* how long the guest stayed paused */
	uint8_t sha256[STREAM_SHA256_LEN]; /* of the bytes before this record */
};

struct stream_round_end {
	uint32_t round;
	uint64_t pages, bytes, remaining;
};

/* ---- reading ---- */

/* A growable byte buffer: records being written, or a partial record
 * being reassembled. */
struct stream_buf {
	uint8_t *p;
	size_t len, cap;
};

/* Reassembles records from arbitrary chunks of bytes. */
struct stream_reader {
	struct stream_buf b; /* the partial record, b.len bytes of it so far */
	uint64_t records;
	int err; /* sticky: a stream with a bad header stays refused */
};

void stream_reader_init(struct stream_reader *r);
void stream_reader_free(struct stream_reader *r);
/* Appends data and calls on_record for every complete record, in order.
 * A record header with an unknown type or a length over the limit fails
 * at once (-EPROTO / -E2BIG) without waiting for the payload. A non-zero
 * return from on_record stops and is returned. After a bad header every
 * later feed returns the same error. */
int stream_reader_feed(struct stream_reader *r, const void *data, size_t n,
		       int (*on_record)(void *opaque, const struct stream_record *rec), void *opaque);

/* Called from on_record: takes the buffer the reader assembled rec in
 * (rec's header at offset 0, its payload at STREAM_HDR_SIZE; *cap bytes,
 * the caller frees it), so a record reaches its consumer without a copy.
 * NULL when rec lies in the caller's input instead (copy it then). The
 * reader allocates a new buffer for the next record that needs one. */
void *stream_reader_take(struct stream_reader *r, const struct stream_record *rec, size_t *cap);
/* Hands the reader a buffer of cap bytes (malloc'd; ownership moves in)
 * for the records to come, if it holds none (else buf is freed): a
 * buffer recycled after stream_reader_take, already in memory. */
void stream_reader_give(struct stream_reader *r, void *buf, size_t cap);

/* -EPROTONOSUPPORT: another stream version; -EINVAL: the name is longer
 * than STREAM_MAX_NAME or has characters outside [A-Za-z0-9._-]. */
int stream_parse_hello(const struct stream_record *rec, struct stream_hello *out);
/* Checks the shape against this build's limits (memory multiple of 2 MiB
 * within 16 MiB..128 GiB, 1..2 vCPUs, 4 KiB pages). */
int stream_parse_shape(const struct stream_record *rec, struct stream_shape *out);
/* Validates a whole PAGES record (count 1..STREAM_MAX_BATCH, every entry's
 * header, codec, length and gfn < nframes) and only then calls each() per
 * page in order. data points into the record. */
int stream_parse_pages(const struct stream_record *rec, uint64_t nframes,
		       int (*each)(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len),
		       void *opaque);
int stream_parse_vcpu(const struct stream_record *rec, uint32_t nvcpus, uint32_t *index, const uint8_t **blob,
		      uint32_t *len);
int stream_parse_domain(const struct stream_record *rec, const uint8_t **blob, uint32_t *len);
int stream_parse_round_end(const struct stream_record *rec, struct stream_round_end *out);
int stream_parse_state_done(const struct stream_record *rec, uint64_t *total_pages);
/* READY, COMMIT, RUNNING: payload must be empty. */
int stream_parse_empty(const struct stream_record *rec);
/* VERIFY: digests of consecutive STREAM_VERIFY_CHUNK-page chunks starting
 * at chunk first; checks that they lie inside nframes. *digests points
 * into the record (unaligned: read with memcpy). */
int stream_parse_verify(const struct stream_record *rec, uint64_t nframes, uint64_t *first, uint32_t *count,
			const uint8_t **digests);
int stream_parse_join(const struct stream_record *rec, struct stream_join *out);
/* RESUME: count 1..16, index < count, epoch >= 1, reserved bytes zero. */
int stream_parse_resume(const struct stream_record *rec, struct stream_resume *out);
/* ACK: index < 16, reserved bytes zero. */
int stream_parse_ack(const struct stream_record *rec, struct stream_ack *out);
/* CHECKPOINT: seq >= 1, id != 0, a full image (parent_id 0, parent_seq 0)
 * or an incremental one (parent_id != 0, 1 <= parent_seq < seq). */
int stream_parse_checkpoint(const struct stream_record *rec, struct stream_checkpoint *out);
/* SEAL: the fixed-size trailer (STREAM_SEAL_RECORD bytes with its header). */
#define STREAM_SEAL_RECORD (STREAM_HDR_SIZE + 64)
int stream_parse_seal(const struct stream_record *rec, struct stream_seal *out);
/* CAPACITY: sessions <= max_sessions, hv known, mem_available <= mem_total. */
int stream_parse_capacity(const struct stream_record *rec, struct stream_capacity *out);
int stream_parse_probe_done(const struct stream_record *rec, struct stream_probe_done *out);
/* -EPROTO: wrong length, a zero token, an unknown decision or outcome, or
 * non-zero padding. Control characters in the text read as '?'. */
int stream_parse_resolve(const struct stream_record *rec, struct stream_resolve *out);
int stream_parse_resolved(const struct stream_record *rec, struct stream_resolved *out);
/* text: NUL-terminated, control characters replaced by '?'. */
int stream_parse_error(const struct stream_record *rec, uint32_t *code, char *text, size_t textsz);

/* ---- writing ---- */

void stream_buf_free(struct stream_buf *b);
int stream_put_hello(struct stream_buf *b, uint64_t caps, const char *name);
int stream_put_shape(struct stream_buf *b, const struct stream_shape *s);
/* DOMAIN: the backend's description of the domain (hv_vm_domain_blob()),
 * 1..STREAM_MAX_DOMAIN bytes, opaque here: the backend checks it. */
int stream_put_domain(struct stream_buf *b, const void *blob, size_t len);
/* PAGES: begin, add up to STREAM_MAX_BATCH pages, end (fills the length). */
int stream_put_pages_begin(struct stream_buf *b, size_t *mark);
int stream_put_page(struct stream_buf *b, uint64_t gfn, unsigned codec, const void *data, uint32_t len);
int stream_put_pages_end(struct stream_buf *b, size_t mark);
/* Encoding a page straight into the record instead of copying it in:
 * stream_page_slot() makes room for the next entry with up to maxlen
 * payload bytes and returns where the payload goes (NULL: out of
 * memory); the caller writes len <= maxlen bytes there and calls
 * stream_page_done() before anything else touches b. */
uint8_t *stream_page_slot(struct stream_buf *b, size_t maxlen);
void stream_page_done(struct stream_buf *b, uint64_t gfn, unsigned codec, uint32_t len);
/* Makes room for n more bytes at once (a whole record: no regrowing). */
int stream_buf_reserve(struct stream_buf *b, size_t n);
int stream_put_vcpu(struct stream_buf *b, uint32_t index, const void *blob, uint32_t len);
int stream_put_round_end(struct stream_buf *b, const struct stream_round_end *re);
int stream_put_state_done(struct stream_buf *b, uint64_t total_pages);
int stream_put_empty(struct stream_buf *b, enum stream_type type);
int stream_put_verify(struct stream_buf *b, uint64_t first, uint32_t count, const uint64_t *digests);
int stream_put_join(struct stream_buf *b, const struct stream_join *j);
int stream_put_resume(struct stream_buf *b, const struct stream_resume *r);
int stream_put_ack(struct stream_buf *b, const struct stream_ack *a);
int stream_put_error(struct stream_buf *b, uint32_t code, const char *text);
int stream_put_checkpoint(struct stream_buf *b, const struct stream_checkpoint *c);
int stream_put_seal(struct stream_buf *b, const struct stream_seal *s);
int stream_put_capacity(struct stream_buf *b, const struct stream_capacity *c);
/* PROBE with n filler bytes (0: the end of the probe). */
int stream_put_probe(struct stream_buf *b, const void *filler, uint32_t n);
int stream_put_probe_done(struct stream_buf *b, const struct stream_probe_done *p);
int stream_put_resolve(struct stream_buf *b, const struct stream_resolve *r);
/* text is cut to STREAM_MAX_TEXT. */
int stream_put_resolved(struct stream_buf *b, uint32_t outcome, const char *text);

const char *stream_type_name(unsigned type);

#endif
