/*
 * migrate/stream.c - record framing, validation and encoding.
 * All multi-byte fields are little-endian; x86-64 only, so loads are
 * memcpy of native integers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "compress/compress.h"
#include "hv/hv.h"
#include "migrate/stream.h"

static uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

const char *stream_type_name(unsigned t)
{
	static const char *const n[] = { "?", "HELLO", "SHAPE", "PAGES", "VCPU", "ROUND_END", "STATE_DONE",
					 "READY", "COMMIT", "RUNNING", "ERROR", "VERIFY", "JOIN", "RESUME", "ACK", "CHECKPOINT", "SEAL", "CAPACITY", "PROBE", "PROBE_DONE",
					 "RESOLVE", "RESOLVED", "DOMAIN" };
	return t < STREAM_TYPE_MAX ? n[t] : "?";
}

/* Largest payload each type may carry: a header announcing more is
 * refused before its payload is buffered. */
static uint32_t max_len(unsigned t)
{
	switch (t) {
	case STREAM_HELLO: return 16 + STREAM_MAX_NAME;
	case STREAM_SHAPE: return 32;
	case STREAM_PAGES: return 8 + STREAM_MAX_BATCH * (STREAM_PAGE_ENTRY_HDR + COMPRESS_MAX_PAYLOAD);
	case STREAM_VCPU: return 8 + STREAM_MAX_VCPU_BLOB;
	case STREAM_ROUND_END: return 32;
	case STREAM_STATE_DONE: return 8;
	case STREAM_READY: case STREAM_COMMIT: case STREAM_RUNNING: return 0;
	case STREAM_ERROR: return 8 + STREAM_MAX_TEXT;
	case STREAM_VERIFY: return 16 + 8 * STREAM_MAX_VERIFY;
	case STREAM_JOIN: return 16;
	case STREAM_RESUME: return 24;
	case STREAM_ACK: return 16;
	case STREAM_CHECKPOINT: return 40;
	case STREAM_SEAL: return STREAM_SEAL_RECORD - STREAM_HDR_SIZE;
	case STREAM_CAPACITY: return 32;
	case STREAM_PROBE: return STREAM_MAX_PROBE;
	case STREAM_PROBE_DONE: return 16;
	case STREAM_RESOLVE: return 16;
	case STREAM_RESOLVED: return 8 + STREAM_MAX_TEXT;
	case STREAM_DOMAIN: return STREAM_MAX_DOMAIN;
	default: return 0;
	}
}

/* Makes room for n more bytes after b->len. */
static int reserve(struct stream_buf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

void stream_reader_init(struct stream_reader *r) { memset(r, 0, sizeof(*r)); }

void stream_reader_free(struct stream_reader *r)
{
	stream_buf_free(&r->b);
	memset(r, 0, sizeof(*r));
}

void *stream_reader_take(struct stream_reader *r, const struct stream_record *rec, size_t *cap)
{
	if (!r->b.p || rec->payload != r->b.p + STREAM_HDR_SIZE)
		return NULL;
	void *p = r->b.p;
	*cap = r->b.cap;
	r->b.p = NULL;
	r->b.len = r->b.cap = 0;
	return p;
}

void stream_reader_give(struct stream_reader *r, void *buf, size_t cap)
{
	if (r->b.p || !buf) {
		free(buf);
		return;
	}
	r->b.p = buf;
	r->b.cap = cap;
	r->b.len = 0;
}

static int hdr_check(const uint8_t *h, uint16_t *type, uint32_t *len)
{
	*type = ld16(h);
	*len = ld32(h + 4);
	if (*type == 0 || *type >= STREAM_TYPE_MAX || ld16(h + 2) != 0)
		return -EPROTO;
	if (*len > max_len(*type))
		return -E2BIG;
	return 0;
}

int stream_reader_feed(struct stream_reader *r, const void *data, size_t n,
		       int (*on_record)(void *opaque, const struct stream_record *rec), void *opaque)
{
	const uint8_t *in = data;
	if (r->err)
		return r->err;
	while (n) {
		/* Fast path: whole records straight from the input, no copy. */
		if (r->b.len == 0 && n >= STREAM_HDR_SIZE) {
			uint16_t type;
			uint32_t len;
			int e = hdr_check(in, &type, &len);
			if (e)
				return r->err = e;
			if (n - STREAM_HDR_SIZE >= len) {
				struct stream_record rec = { .type = type, .len = len, .payload = in + STREAM_HDR_SIZE };
				r->records++;
				e = on_record(opaque, &rec);
				if (e)
					return e;
				in += STREAM_HDR_SIZE + len;
				n -= STREAM_HDR_SIZE + len;
				continue;
			}
		}
		/* Slow path: accumulate the header, check it once it is whole,
		 * then accumulate its payload. */
		if (r->b.len < STREAM_HDR_SIZE) {
			int e = reserve(&r->b, STREAM_HDR_SIZE - r->b.len);
			if (e)
				return e;
			size_t take = STREAM_HDR_SIZE - r->b.len < n ? STREAM_HDR_SIZE - r->b.len : n;
			memcpy(r->b.p + r->b.len, in, take);
			r->b.len += take;
			in += take;
			n -= take;
			if (r->b.len < STREAM_HDR_SIZE)
				break;
			uint16_t type;
			uint32_t len;
			e = hdr_check(r->b.p, &type, &len);
			if (e)
				return r->err = e;
			e = reserve(&r->b, STREAM_HDR_SIZE + (size_t)len - r->b.len);
			if (e)
				return e;
		}
		size_t need = STREAM_HDR_SIZE + ld32(r->b.p + 4);
		size_t take = need - r->b.len < n ? need - r->b.len : n;
		memcpy(r->b.p + r->b.len, in, take);
		r->b.len += take;
		in += take;
		n -= take;
		if (r->b.len == need) {
			struct stream_record rec = { .type = ld16(r->b.p), .len = ld32(r->b.p + 4), .payload = r->b.p + STREAM_HDR_SIZE };
			r->records++;
			r->b.len = 0;
			int e = on_record(opaque, &rec);
			if (e)
				return e;
		}
	}
	return 0;
}

int stream_parse_hello(const struct stream_record *rec, struct stream_hello *out)
{
	const uint8_t *p = rec->payload;
	if (rec->type != STREAM_HELLO || rec->len < 16)
		return -EPROTO;
	if (ld32(p) != STREAM_MAGIC)
		return -EPROTO;
	out->version = ld16(p + 4);
	if (out->version != STREAM_VERSION)
		return -EPROTONOSUPPORT;
	uint16_t nl = ld16(p + 6);
	out->caps = ld64(p + 8);
	if (rec->len != 16u + nl)
		return -EPROTO;
	if (nl > STREAM_MAX_NAME)
		return -EINVAL;
	for (uint16_t i = 0; i < nl; i++) {
		char c = (char)p[16 + i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return -EINVAL;
		out->name[i] = c;
	}
	out->name[nl] = 0;
	return 0;
}

int stream_parse_shape(const struct stream_record *rec, struct stream_shape *out)
{
	const uint8_t *p = rec->payload;
	if (rec->type != STREAM_SHAPE || rec->len != 32)
		return -EPROTO;
	out->mem_bytes = ld64(p);
	out->vcpus = ld32(p + 8);
	uint32_t page = ld32(p + 12);
	out->tsc_khz = ld64(p + 16);
	out->dirty_log = p[24];
	out->hv = p[25];
	if (page != HV_PAGE_SIZE || !hv_mem_size_valid(out->mem_bytes) || out->vcpus < 1 || out->vcpus > HV_MAX_VCPUS ||
	    out->tsc_khz > 100000000ull || out->dirty_log > HV_DIRTY_BITMAP || out->hv > STREAM_HV_XEN_DOMAIN)
		return -EPROTO;
	for (int i = 26; i < 32; i++)
		if (p[i])
			return -EPROTO;
	return 0;
}

int stream_parse_pages(const struct stream_record *rec, uint64_t nframes,
		       int (*each)(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len),
		       void *opaque)
{
	const uint8_t *p = rec->payload;
	if (rec->type != STREAM_PAGES || rec->len < 8)
		return -EPROTO;
	uint32_t count = ld32(p);
	if (count == 0 || count > STREAM_MAX_BATCH || ld32(p + 4) != 0)
		return -EPROTO;
	/* Pass 1: the whole batch is well formed. */
	size_t off = 8;
	for (uint32_t i = 0; i < count; i++) {
		if (rec->len - off < STREAM_PAGE_ENTRY_HDR)
			return -EPROTO;
		uint64_t gfn = ld64(p + off);
		uint32_t len = ld32(p + off + 8);
		unsigned codec = p[off + 12];
		if (p[off + 13] | p[off + 14] | p[off + 15])
			return -EPROTO;
		if (gfn >= nframes)
			return -ERANGE;
		if (codec >= COMPRESS_CODEC_MAX)
			return -EPROTO;
		if ((codec == COMPRESS_ZERO && len != 0) || (codec == COMPRESS_RAW && len != COMPRESS_PAGE_SIZE) ||
		    (codec == COMPRESS_LZ4 && (len == 0 || len > COMPRESS_MAX_PAYLOAD)))
			return -EPROTO;
		off += STREAM_PAGE_ENTRY_HDR;
		if (rec->len - off < len)
			return -EPROTO;
		off += len;
	}
	if (off != rec->len)
		return -EPROTO;
	/* Pass 2: hand out pages. */
	off = 8;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t gfn = ld64(p + off);
		uint32_t len = ld32(p + off + 8);
		unsigned codec = p[off + 12];
		off += STREAM_PAGE_ENTRY_HDR;
		int e = each(opaque, gfn, codec, p + off, len);
		if (e)
			return e;
		off += len;
	}
	return 0;
}

int stream_parse_vcpu(const struct stream_record *rec, uint32_t nvcpus, uint32_t *index, const uint8_t **blob,
		      uint32_t *len)
{
	if (rec->type != STREAM_VCPU || rec->len < 8)
		return -EPROTO;
	*index = ld32(rec->payload);
	*len = ld32(rec->payload + 4);
	if (*index >= nvcpus || *len == 0 || *len > STREAM_MAX_VCPU_BLOB || rec->len != 8 + *len)
		return -EPROTO;
	*blob = rec->payload + 8;
	return 0;
}

int stream_parse_round_end(const struct stream_record *rec, struct stream_round_end *out)
{
	if (rec->type != STREAM_ROUND_END || rec->len != 32 || ld32(rec->payload + 4) != 0)
		return -EPROTO;
	out->round = ld32(rec->payload);
	out->pages = ld64(rec->payload + 8);
	out->bytes = ld64(rec->payload + 16);
	out->remaining = ld64(rec->payload + 24);
	return 0;
}

int stream_parse_state_done(const struct stream_record *rec, uint64_t *total_pages)
{
	if (rec->type != STREAM_STATE_DONE || rec->len != 8)
		return -EPROTO;
	*total_pages = ld64(rec->payload);
	return 0;
}

int stream_parse_empty(const struct stream_record *rec)
{
	if ((rec->type != STREAM_READY && rec->type != STREAM_COMMIT && rec->type != STREAM_RUNNING) || rec->len)
		return -EPROTO;
	return 0;
}

int stream_parse_error(const struct stream_record *rec, uint32_t *code, char *text, size_t textsz)
{
	if (rec->type != STREAM_ERROR || rec->len < 8 || !textsz)
		return -EPROTO;
	*code = ld32(rec->payload);
	uint32_t n = ld32(rec->payload + 4);
	if (n > STREAM_MAX_TEXT || rec->len != 8 + n)
		return -EPROTO;
	size_t k = n < textsz - 1 ? n : textsz - 1;
	for (size_t i = 0; i < k; i++) {
		unsigned char c = rec->payload[8 + i];
		text[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	text[k] = 0;
	return 0;
}

int stream_parse_verify(const struct stream_record *rec, uint64_t nframes, uint64_t *first, uint32_t *count,
			const uint8_t **digests)
{
	if (rec->type != STREAM_VERIFY || rec->len < 16 || ld32(rec->payload + 12) != 0)
		return -EPROTO;
	*first = ld64(rec->payload);
	*count = ld32(rec->payload + 8);
	uint64_t nchunks = (nframes + STREAM_VERIFY_CHUNK - 1) / STREAM_VERIFY_CHUNK;
	if (*count == 0 || *count > STREAM_MAX_VERIFY || rec->len != 16 + 8ull * *count)
		return -EPROTO;
	if (*first >= nchunks || *count > nchunks - *first)
		return -ERANGE;
	*digests = rec->payload + 16;
	return 0;
}

int stream_parse_join(const struct stream_record *rec, struct stream_join *out)
{
	if (rec->type != STREAM_JOIN || rec->len != 16)
		return -EPROTO;
	out->token = ld64(rec->payload);
	out->index = ld32(rec->payload + 8);
	out->port = ld16(rec->payload + 12);
	out->count = ld16(rec->payload + 14);
	if (out->count < 1 || out->count > 16 || out->index >= out->count)
		return -EPROTO;
	return 0;
}

/* ---- writing ---- */

void stream_buf_free(struct stream_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void put(struct stream_buf *b, const void *d, size_t n)
{
	memcpy(b->p + b->len, d, n);
	b->len += n;
}
static void put16(struct stream_buf *b, uint16_t v) { put(b, &v, 2); }
static void put32(struct stream_buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(struct stream_buf *b, uint64_t v) { put(b, &v, 8); }

static int header(struct stream_buf *b, enum stream_type t, uint32_t len)
{
	if (len > max_len(t))
		return -E2BIG;
	if (reserve(b, STREAM_HDR_SIZE + (size_t)len))
		return -ENOMEM;
	put16(b, (uint16_t)t);
	put16(b, 0);
	put32(b, len);
	return 0;
}

int stream_put_hello(struct stream_buf *b, uint64_t caps, const char *name)
{
	size_t nl = strlen(name);
	if (nl > STREAM_MAX_NAME)
		return -EINVAL;
	int e = header(b, STREAM_HELLO, (uint32_t)(16 + nl));
	if (e)
		return e;
	put32(b, STREAM_MAGIC);
	put16(b, STREAM_VERSION);
	put16(b, (uint16_t)nl);
	put64(b, caps);
	put(b, name, nl);
	return 0;
}

int stream_put_shape(struct stream_buf *b, const struct stream_shape *s)
{
	static const uint8_t zero[6];
	int e = header(b, STREAM_SHAPE, 32);
	if (e)
		return e;
	put64(b, s->mem_bytes);
	put32(b, s->vcpus);
	put32(b, HV_PAGE_SIZE);
	put64(b, s->tsc_khz);
	put(b, &s->dirty_log, 1);
	put(b, &s->hv, 1);
	put(b, zero, 6);
	return 0;
}

int stream_put_domain(struct stream_buf *b, const void *blob, size_t len)
{
	if (!len || len > STREAM_MAX_DOMAIN)
		return -EINVAL;
	int e = header(b, STREAM_DOMAIN, (uint32_t)len);
	if (e)
		return e;
	put(b, blob, len);
	return 0;
}

int stream_parse_domain(const struct stream_record *rec, const uint8_t **blob, uint32_t *len)
{
	if (rec->type != STREAM_DOMAIN || !rec->len || rec->len > STREAM_MAX_DOMAIN)
		return -EPROTO;
	*blob = rec->payload;
	*len = rec->len;
	return 0;
}

int stream_put_pages_begin(struct stream_buf *b, size_t *mark)
{
	if (reserve(b, STREAM_HDR_SIZE + 8))
		return -ENOMEM;
	*mark = b->len;
	put16(b, STREAM_PAGES);
	put16(b, 0);
	put32(b, 0);
	put32(b, 0); /* count */
	put32(b, 0);
	return 0;
}

int stream_buf_reserve(struct stream_buf *b, size_t n)
{
	return reserve(b, n);
}

uint8_t *stream_page_slot(struct stream_buf *b, size_t maxlen)
{
	if (reserve(b, STREAM_PAGE_ENTRY_HDR + maxlen))
		return NULL;
	return b->p + b->len + STREAM_PAGE_ENTRY_HDR;
}

void stream_page_done(struct stream_buf *b, uint64_t gfn, unsigned codec, uint32_t len)
{
	static const uint8_t pad[3];
	uint8_t c = (uint8_t)codec;
	put64(b, gfn);
	put32(b, len);
	put(b, &c, 1);
	put(b, pad, 3);
	b->len += len; /* the payload is in place already */
}

int stream_put_page(struct stream_buf *b, uint64_t gfn, unsigned codec, const void *data, uint32_t len)
{
	uint8_t *slot = stream_page_slot(b, len);
	if (!slot)
		return -ENOMEM;
	if (len)
		memcpy(slot, data, len);
	stream_page_done(b, gfn, codec, len);
	return 0;
}

int stream_put_pages_end(struct stream_buf *b, size_t mark)
{
	size_t len = b->len - mark - STREAM_HDR_SIZE;
	if (len > max_len(STREAM_PAGES))
		return -E2BIG;
	uint32_t l = (uint32_t)len, count = 0;
	/* Count entries by walking them (the writer is trusted, this is cheap). */
	for (size_t off = mark + STREAM_HDR_SIZE + 8; off < b->len; count++)
		off += STREAM_PAGE_ENTRY_HDR + ld32(b->p + off + 8);
	if (count == 0 || count > STREAM_MAX_BATCH)
		return -EINVAL;
	memcpy(b->p + mark + 4, &l, 4);
	memcpy(b->p + mark + STREAM_HDR_SIZE, &count, 4);
	return 0;
}

int stream_put_vcpu(struct stream_buf *b, uint32_t index, const void *blob, uint32_t len)
{
	if (!len || len > STREAM_MAX_VCPU_BLOB)
		return -E2BIG;
	int e = header(b, STREAM_VCPU, 8 + len);
	if (e)
		return e;
	put32(b, index);
	put32(b, len);
	put(b, blob, len);
	return 0;
}

int stream_put_round_end(struct stream_buf *b, const struct stream_round_end *re)
{
	int e = header(b, STREAM_ROUND_END, 32);
	if (e)
		return e;
	put32(b, re->round);
	put32(b, 0);
	put64(b, re->pages);
	put64(b, re->bytes);
	put64(b, re->remaining);
	return 0;
}

int stream_put_state_done(struct stream_buf *b, uint64_t total_pages)
{
	int e = header(b, STREAM_STATE_DONE, 8);
	if (e)
		return e;
	put64(b, total_pages);
	return 0;
}

int stream_put_empty(struct stream_buf *b, enum stream_type type)
{
	if (type != STREAM_READY && type != STREAM_COMMIT && type != STREAM_RUNNING)
		return -EINVAL;
	return header(b, type, 0);
}

int stream_put_error(struct stream_buf *b, uint32_t code, const char *text)
{
	size_t n = strlen(text);
	if (n > STREAM_MAX_TEXT)
		n = STREAM_MAX_TEXT;
	int e = header(b, STREAM_ERROR, (uint32_t)(8 + n));
	if (e)
		return e;
	put32(b, code);
	put32(b, (uint32_t)n);
	put(b, text, n);
	return 0;
}

int stream_put_verify(struct stream_buf *b, uint64_t first, uint32_t count, const uint64_t *digests)
{
	if (!count || count > STREAM_MAX_VERIFY)
		return -EINVAL;
	int e = header(b, STREAM_VERIFY, 16 + 8 * count);
	if (e)
		return e;
	put64(b, first);
	put32(b, count);
	put32(b, 0);
	put(b, digests, 8ull * count);
	return 0;
}

int stream_parse_resume(const struct stream_record *rec, struct stream_resume *out)
{
	if (rec->type != STREAM_RESUME || rec->len != 24 || ld16(rec->payload + 14) || ld32(rec->payload + 20))
		return -EPROTO;
	out->token = ld64(rec->payload);
	out->index = ld32(rec->payload + 8);
	out->count = ld16(rec->payload + 12);
	out->epoch = ld32(rec->payload + 16);
	if (out->count < 1 || out->count > 16 || out->index >= out->count || !out->epoch)
		return -EPROTO;
	return 0;
}

int stream_parse_ack(const struct stream_record *rec, struct stream_ack *out)
{
	if (rec->type != STREAM_ACK || rec->len != 16 || ld32(rec->payload + 4))
		return -EPROTO;
	out->index = ld32(rec->payload);
	out->records = ld64(rec->payload + 8);
	return out->index < 16 ? 0 : -EPROTO;
}

int stream_put_join(struct stream_buf *b, const struct stream_join *j)
{
	int e = header(b, STREAM_JOIN, 16);
	if (e)
		return e;
	put64(b, j->token);
	put32(b, j->index);
	put16(b, j->port);
	put16(b, j->count);
	return 0;
}

int stream_put_resume(struct stream_buf *b, const struct stream_resume *r)
{
	int e = header(b, STREAM_RESUME, 24);
	if (e)
		return e;
	put64(b, r->token);
	put32(b, r->index);
	put16(b, r->count);
	put16(b, 0);
	put32(b, r->epoch);
	put32(b, 0);
	return 0;
}

int stream_put_ack(struct stream_buf *b, const struct stream_ack *a)
{
	int e = header(b, STREAM_ACK, 16);
	if (e)
		return e;
	put32(b, a->index);
	put32(b, 0);
	put64(b, a->records);
	return 0;
}

int stream_parse_checkpoint(const struct stream_record *rec, struct stream_checkpoint *out)
{
	if (rec->type != STREAM_CHECKPOINT || rec->len != 40 || ld64(rec->payload + 32))
		return -EPROTO;
	out->seq = ld32(rec->payload);
	out->parent_seq = ld32(rec->payload + 4);
	out->id = ld64(rec->payload + 8);
	out->parent_id = ld64(rec->payload + 16);
	out->start_ns = ld64(rec->payload + 24);
	if (!out->seq || !out->id)
		return -EPROTO;
	if (!out->parent_id)
		return out->parent_seq ? -EPROTO : 0;
	return out->parent_seq && out->parent_seq < out->seq ? 0 : -EPROTO;
}

int stream_put_checkpoint(struct stream_buf *b, const struct stream_checkpoint *c)
{
	int e = header(b, STREAM_CHECKPOINT, 40);
	if (e)
		return e;
	put32(b, c->seq);
	put32(b, c->parent_seq);
	put64(b, c->id);
	put64(b, c->parent_id);
	put64(b, c->start_ns);
	put64(b, 0);
	return 0;
}

int stream_parse_seal(const struct stream_record *rec, struct stream_seal *out)
{
	if (rec->type != STREAM_SEAL || rec->len != STREAM_SEAL_RECORD - STREAM_HDR_SIZE)
		return -EPROTO;
	out->records = ld64(rec->payload);
	out->bytes = ld64(rec->payload + 8);
	out->paused_ns = ld64(rec->payload + 16);
	out->pause_ns = ld64(rec->payload + 24);
	memcpy(out->sha256, rec->payload + 32, STREAM_SHA256_LEN);
	return 0;
}

int stream_put_seal(struct stream_buf *b, const struct stream_seal *s)
{
	int e = header(b, STREAM_SEAL, STREAM_SEAL_RECORD - STREAM_HDR_SIZE);
	if (e)
		return e;
	put64(b, s->records);
	put64(b, s->bytes);
	put64(b, s->paused_ns);
	put64(b, s->pause_ns);
	put(b, s->sha256, STREAM_SHA256_LEN);
	return 0;
}

int stream_parse_capacity(const struct stream_record *rec, struct stream_capacity *out)
{
	static const uint8_t zero[7];
	if (rec->type != STREAM_CAPACITY || rec->len != 32 || memcmp(rec->payload + 25, zero, 7))
		return -EPROTO;
	out->mem_total = ld64(rec->payload);
	out->mem_available = ld64(rec->payload + 8);
	out->sessions = ld32(rec->payload + 16);
	out->max_sessions = ld32(rec->payload + 20);
	out->hv = rec->payload[24];
	if (out->sessions > out->max_sessions || out->hv > STREAM_HV_XEN || out->mem_available > out->mem_total)
		return -EPROTO;
	return 0;
}

int stream_put_capacity(struct stream_buf *b, const struct stream_capacity *c)
{
	static const uint8_t zero[7];
	int e = header(b, STREAM_CAPACITY, 32);
	if (e)
		return e;
	put64(b, c->mem_total);
	put64(b, c->mem_available);
	put32(b, c->sessions);
	put32(b, c->max_sessions);
	put(b, &c->hv, 1);
	put(b, zero, 7);
	return 0;
}

int stream_put_probe(struct stream_buf *b, const void *filler, uint32_t n)
{
	int e = header(b, STREAM_PROBE, n);
	if (e)
		return e;
	if (n)
		put(b, filler, n);
	return 0;
}

int stream_parse_probe_done(const struct stream_record *rec, struct stream_probe_done *out)
{
	if (rec->type != STREAM_PROBE_DONE || rec->len != 16)
		return -EPROTO;
	out->bytes = ld64(rec->payload);
	out->ns = ld64(rec->payload + 8);
	return 0;
}

int stream_put_probe_done(struct stream_buf *b, const struct stream_probe_done *p)
{
	int e = header(b, STREAM_PROBE_DONE, 16);
	if (e)
		return e;
	put64(b, p->bytes);
	put64(b, p->ns);
	return 0;
}

int stream_parse_resolve(const struct stream_record *rec, struct stream_resolve *out)
{
	static const uint8_t zero[7];
	if (rec->type != STREAM_RESOLVE || rec->len != 16 || memcmp(rec->payload + 9, zero, 7))
		return -EPROTO;
	out->token = ld64(rec->payload);
	out->decision = rec->payload[8];
	if (!out->token || (out->decision != STREAM_DECIDE_COMMIT && out->decision != STREAM_DECIDE_ABORT))
		return -EPROTO;
	return 0;
}

int stream_put_resolve(struct stream_buf *b, const struct stream_resolve *r)
{
	static const uint8_t zero[7];
	int e = header(b, STREAM_RESOLVE, 16);
	if (e)
		return e;
	put64(b, r->token);
	put(b, &r->decision, 1);
	put(b, zero, 7);
	return 0;
}

int stream_parse_resolved(const struct stream_record *rec, struct stream_resolved *out)
{
	if (rec->type != STREAM_RESOLVED || rec->len < 8)
		return -EPROTO;
	out->outcome = ld32(rec->payload);
	uint32_t n = ld32(rec->payload + 4);
	if (n > STREAM_MAX_TEXT || rec->len != 8 + n || out->outcome < STREAM_OUTCOME_RAN ||
	    out->outcome > STREAM_OUTCOME_UNKNOWN)
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		unsigned char c = rec->payload[8 + i];
		out->text[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	out->text[n] = 0;
	return 0;
}

int stream_put_resolved(struct stream_buf *b, uint32_t outcome, const char *text)
{
	size_t n = strlen(text);
	if (n > STREAM_MAX_TEXT)
		n = STREAM_MAX_TEXT;
	int e = header(b, STREAM_RESOLVED, (uint32_t)(8 + n));
	if (e)
		return e;
	put32(b, outcome);
	put32(b, (uint32_t)n);
	put(b, text, n);
	return 0;
}
