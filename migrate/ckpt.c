/*
 * migrate/ckpt.c - checkpoint files: writing, listing, checking, chains,
 * merging (contract in ckpt.h, format in docs/checkpoint.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "hv/hv.h"
#include "migrate/ckpt.h"

#define CKPT_IO_CHUNK (1u << 20)
/* CHECKPOINT, HELLO (longest name) and SHAPE with their headers. */
#define CKPT_HEAD_MAX (3 * STREAM_HDR_SIZE + 40 + 16 + STREAM_MAX_NAME + 32)

void ckpt_file_name(uint32_t seq, char *buf, size_t len) { snprintf(buf, len, "%08" PRIu32 ".ckpt", seq); }

static void ckpt__tmp_name(uint32_t seq, char *buf, size_t len) { snprintf(buf, len, ".%08" PRIu32 ".ckpt.tmp", seq); }

/* "NNNNNNNN.ckpt" -> 1, with *seq; anything else -> 0. */
static int ckpt__parse_name(const char *name, uint32_t *seq)
{
	if (strlen(name) != 13 || strcmp(name + 8, ".ckpt"))
		return 0;
	uint32_t v = 0;
	for (int i = 0; i < 8; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		v = v * 10 + (uint32_t)(name[i] - '0');
	}
	*seq = v;
	return v != 0;
}

static int ckpt__write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Opens checkpoint file name in dirfd for reading, refusing anything but a
 * regular file before it could block: a FIFO named like a checkpoint would
 * hang an open or read for ever. Returns the descriptor (blocking again),
 * -errno from open, or -EINVAL when it is not a regular file. */
static int ckpt__open_regular(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

/* ---- writing ---- */

struct ckpt_writer {
	int dirfd, fd;
	char tmp[32], final[24];
	EVP_MD_CTX *md;
	uint64_t bytes, records;
};

int ckpt_writer_open(int dirfd, uint32_t seq, struct ckpt_writer **out)
{
	if (!seq || seq > CKPT_MAX_SEQ)
		return -ERANGE;
	struct ckpt_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->dirfd = dirfd;
	ckpt__tmp_name(seq, w->tmp, sizeof(w->tmp));
	ckpt_file_name(seq, w->final, sizeof(w->final));
	w->md = EVP_MD_CTX_new();
	if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(w->md);
		free(w);
		return -ENOMEM;
	}
	/* A fresh file, whatever sat under that name (a FIFO would block
	 * the open; a link would be written through). */
	if (unlinkat(dirfd, w->tmp, 0) < 0 && errno != ENOENT) {
		int e = -errno;
		EVP_MD_CTX_free(w->md);
		free(w);
		return e;
	}
	w->fd = openat(dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (w->fd < 0) {
		int e = -errno;
		EVP_MD_CTX_free(w->md);
		free(w);
		return e;
	}
	*out = w;
	return 0;
}

int ckpt_writer_put(struct ckpt_writer *w, struct stream_buf *b)
{
	/* Count the records: SEAL says how many came before it. */
	for (size_t off = 0; off + STREAM_HDR_SIZE <= b->len;) {
		uint32_t len;
		memcpy(&len, b->p + off + 4, 4);
		off += STREAM_HDR_SIZE + (size_t)len;
		w->records++;
	}
	if (b->len && EVP_DigestUpdate(w->md, b->p, b->len) != 1)
		return -EIO;
	int e = ckpt__write_all(w->fd, b->p, b->len);
	if (e < 0)
		return e;
	w->bytes += b->len;
	b->len = 0;
	return 0;
}

uint64_t ckpt_writer_bytes(const struct ckpt_writer *w) { return w->bytes; }

static void ckpt__writer_free(struct ckpt_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	EVP_MD_CTX_free(w->md);
	free(w);
}

void ckpt_writer_abort(struct ckpt_writer *w)
{
	if (!w)
		return;
	unlinkat(w->dirfd, w->tmp, 0);
	ckpt__writer_free(w);
}

int ckpt_writer_commit(struct ckpt_writer *w, uint64_t paused_ns, uint64_t pause_ns, uint64_t *bytes)
{
	struct stream_seal s = { .records = w->records, .bytes = w->bytes, .paused_ns = paused_ns, .pause_ns = pause_ns };
	struct stream_buf b = { 0 };
	unsigned mdlen = 0;
	int e = EVP_DigestFinal_ex(w->md, s.sha256, &mdlen) == 1 && mdlen == STREAM_SHA256_LEN ? 0 : -EIO;
	if (!e)
		e = stream_put_seal(&b, &s);
	if (!e)
		e = ckpt__write_all(w->fd, b.p, b.len);
	stream_buf_free(&b);
	/* Durable before it has its name: a crash leaves the old state or the
	 * new, never a named file with a hole. */
	if (!e && fsync(w->fd) < 0)
		e = -errno;
	if (!e && renameat(w->dirfd, w->tmp, w->dirfd, w->final) < 0)
		e = -errno;
	if (!e && fsync(w->dirfd) < 0)
		e = -errno;
	if (e) {
		ckpt_writer_abort(w);
		return e;
	}
	if (bytes)
		*bytes = w->bytes + STREAM_SEAL_RECORD;
	ckpt__writer_free(w);
	return 0;
}

/* Calls fn for each entry of dirfd, through a descriptor of its own (a
 * dup would share dirfd's offset with another thread's walk). 0 or
 * -errno. */
static int ckpt__each_entry(int dirfd, int (*fn)(void *opaque, const char *name), void *opaque)
{
	int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), e = 0;
	if (dfd < 0)
		return -errno;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -errno;
	}
	rewinddir(d);
	struct dirent *de;
	while (!e && (de = readdir(d)))
		e = fn(opaque, de->d_name);
	closedir(d);
	return e;
}

struct ckpt_leftovers {
	int dirfd, n;
};

static int ckpt__leftover(void *opaque, const char *name)
{
	struct ckpt_leftovers *l = opaque;
	uint32_t seq;
	char base[16];
	if (name[0] != '.' || strlen(name) != 18 || strcmp(name + 14, ".tmp"))
		return 0;
	memcpy(base, name + 1, 13);
	base[13] = 0;
	if (ckpt__parse_name(base, &seq) && unlinkat(l->dirfd, name, 0) == 0)
		l->n++;
	return 0;
}

int ckpt_remove_leftovers(int dirfd)
{
	struct ckpt_leftovers l = { dirfd, 0 };
	int e = ckpt__each_entry(dirfd, ckpt__leftover, &l);
	return e < 0 ? e : l.n;
}

/* ---- reading ---- */

/* The first records of a file, up to what the caller collects. */
struct ckpt_head {
	int n;
	int bad;
	struct ckpt_info *ci;
};

static int ckpt__head_record(void *opaque, const struct stream_record *rec)
{
	struct ckpt_head *h = opaque;
	int e = -EPROTO;
	switch (h->n) {
	case 0:
		e = stream_parse_checkpoint(rec, &h->ci->hdr);
		break;
	case 1:
		e = rec->type == STREAM_HELLO ? stream_parse_hello(rec, &h->ci->hello) : -EPROTO;
		break;
	case 2:
		e = rec->type == STREAM_SHAPE ? stream_parse_shape(rec, &h->ci->shape) : -EPROTO;
		break;
	default:
		return 1; /* enough */
	}
	if (e < 0) {
		h->bad = h->n;
		return e;
	}
	h->n++;
	return h->n == 3 ? 1 : 0;
}

static void ckpt__info(int dirfd, struct ckpt_info *ci)
{
	uint8_t head[CKPT_HEAD_MAX], tail[STREAM_SEAL_RECORD];
	static const char *const what[] = { "CHECKPOINT", "HELLO", "SHAPE" };
	struct stat st;
	int fd = ckpt__open_regular(dirfd, ci->file);
	if (fd == -EINVAL) {
		snprintf(ci->why, sizeof(ci->why), "%s: not a regular file", ci->file);
		return;
	}
	if (fd < 0) {
		snprintf(ci->why, sizeof(ci->why), "%s: cannot open: %s", ci->file, strerror(-fd));
		return;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(ci->why, sizeof(ci->why), "%s: not a regular file", ci->file);
		goto out;
	}
	ci->size = (uint64_t)st.st_size;
	ssize_t k = pread(fd, head, sizeof(head), 0);
	if (k < 0) {
		snprintf(ci->why, sizeof(ci->why), "%s: cannot read: %s", ci->file, strerror(errno));
		goto out;
	}
	struct stream_reader r;
	struct ckpt_head h = { .ci = ci };
	stream_reader_init(&r);
	int e = stream_reader_feed(&r, head, (size_t)k, ckpt__head_record, &h);
	stream_reader_free(&r);
	if (h.n < 3) {
		if (e == 0)
			snprintf(ci->why, sizeof(ci->why), "%s: truncated: it ends before its %s record", ci->file,
				 what[h.n]);
		else
			snprintf(ci->why, sizeof(ci->why), "%s: not a checkpoint file, or corrupted (bad %s record)",
				 ci->file, what[h.bad]);
		goto out;
	}
	if (ci->hdr.seq != ci->seq) {
		snprintf(ci->why, sizeof(ci->why), "%s holds checkpoint %" PRIu32 ": renamed, or out of order", ci->file,
			 ci->hdr.seq);
		goto out;
	}
	if (ci->size < sizeof(tail) || pread(fd, tail, sizeof(tail), (off_t)(ci->size - sizeof(tail))) != sizeof(tail)) {
		snprintf(ci->why, sizeof(ci->why), "%s: truncated: no SEAL record at its end", ci->file);
		goto out;
	}
	uint16_t type, rsv;
	uint32_t len;
	memcpy(&type, tail, 2);
	memcpy(&rsv, tail + 2, 2);
	memcpy(&len, tail + 4, 4);
	struct stream_record rec = { .type = type, .len = len, .payload = tail + STREAM_HDR_SIZE };
	if (rsv || stream_parse_seal(&rec, &ci->seal) < 0 || ci->seal.bytes != ci->size - sizeof(tail)) {
		snprintf(ci->why, sizeof(ci->why), "%s: truncated or incomplete: no SEAL record at its end", ci->file);
		goto out;
	}
	ci->ok = 1;
out:
	close(fd);
}

static int ckpt__cmp(const void *a, const void *b)
{
	const struct ckpt_info *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct ckpt_listing {
	struct ckpt_info *v;
	size_t n, cap;
};

static int ckpt__listed(void *opaque, const char *name)
{
	struct ckpt_listing *l = opaque;
	uint32_t seq;
	if (!ckpt__parse_name(name, &seq))
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		struct ckpt_info *nv = realloc(l->v, nc * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = nc;
	}
	struct ckpt_info *c = &l->v[l->n++];
	memset(c, 0, sizeof(*c));
	memcpy(c->file, name, 14); /* "NNNNNNNN.ckpt" and its NUL, checked above */
	c->seq = seq;
	return 0;
}

void ckpt_info_reload(int dirfd, struct ckpt_info *ci)
{
	char file[sizeof(ci->file)];
	uint32_t seq = ci->seq;
	memcpy(file, ci->file, sizeof(file));
	memset(ci, 0, sizeof(*ci));
	memcpy(ci->file, file, sizeof(file));
	ci->seq = seq;
	ckpt__info(dirfd, ci);
}

int ckpt_list(int dirfd, struct ckpt_info **out, size_t *n)
{
	struct ckpt_listing l = { 0 };
	int e = ckpt__each_entry(dirfd, ckpt__listed, &l);
	if (e < 0) {
		free(l.v);
		return e;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof(*l.v), ckpt__cmp);
	for (size_t i = 0; i < l.n; i++)
		ckpt__info(dirfd, &l.v[i]);
	*out = l.v;
	*n = l.n;
	return 0;
}

static int ckpt__same_shape(const struct stream_shape *a, const struct stream_shape *b)
{
	return a->mem_bytes == b->mem_bytes && a->vcpus == b->vcpus && a->tsc_khz == b->tsc_khz &&
	       a->dirty_log == b->dirty_log && a->hv == b->hv;
}

static const struct ckpt_info *ckpt__find(const struct ckpt_info *v, size_t n, uint32_t seq, size_t *idx)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].seq == seq) {
			*idx = i;
			return &v[i];
		}
	return NULL;
}

int ckpt_chain(const struct ckpt_info *v, size_t n, uint32_t at, size_t *chain, size_t *len, char *err,
	       size_t errlen)
{
	size_t i, k = 0;
	if (!n) {
		snprintf(err, errlen, "no checkpoint files (NNNNNNNN.ckpt) here");
		return -ENOENT;
	}
	if (!at) {
		i = n - 1;
	} else if (!ckpt__find(v, n, at, &i)) {
		snprintf(err, errlen, "no checkpoint %" PRIu32 " here (there are %" PRIu32 "..%" PRIu32 ")", at, v[0].seq,
			 v[n - 1].seq);
		return -ENOENT;
	}
	size_t rev[CKPT_MAX_CHAIN];
	for (;;) {
		const struct ckpt_info *c = &v[i];
		if (!c->ok) {
			snprintf(err, errlen, "%s", c->why);
			return -EBADMSG;
		}
		if (k == CKPT_MAX_CHAIN) {
			snprintf(err, errlen, "%s: its chain is longer than %u files", v[rev[0]].file, CKPT_MAX_CHAIN);
			return -EBADMSG;
		}
		rev[k++] = i;
		if (!c->hdr.parent_id)
			break;
		size_t j;
		const struct ckpt_info *p = ckpt__find(v, n, c->hdr.parent_seq, &j);
		if (!p) {
			snprintf(err, errlen, "%s is incremental on checkpoint %" PRIu32 ", whose file is missing", c->file,
				 c->hdr.parent_seq);
			return -EBADMSG;
		}
		if (p->ok && p->hdr.id != c->hdr.parent_id) {
			snprintf(err, errlen,
				 "%s does not follow %s: it was taken after another checkpoint %" PRIu32
				 " (files renamed, or mixed from two directories)",
				 c->file, p->file, c->hdr.parent_seq);
			return -EBADMSG;
		}
		if (p->ok && (strcmp(p->hello.name, c->hello.name) || !ckpt__same_shape(&p->shape, &c->shape))) {
			snprintf(err, errlen, "%s: another VM's checkpoint than %s (name or shape differ)", c->file, p->file);
			return -EBADMSG;
		}
		i = j;
	}
	for (size_t m = 0; m < k; m++)
		chain[m] = rev[k - 1 - m];
	*len = k;
	return 0;
}

/* One file being read and checked. */
struct ckpt_rd {
	const struct ckpt_info *ci;
	int phase; /* 0 CHECKPOINT, 1 HELLO, 2 SHAPE, 3 body, 4 SEAL, 5 done */
	uint64_t off, records, pages, nframes;
	uint8_t vcpu_seen[HV_MAX_VCPUS];
	EVP_MD_CTX *md;
	int (*each)(void *opaque, const struct stream_record *rec);
	void *opaque;
	char *err;
	size_t errlen;
};

static int ckpt__count_page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	(void)gfn, (void)codec, (void)data, (void)len;
	((struct ckpt_rd *)opaque)->pages++;
	return 0;
}

static int ckpt__bad(struct ckpt_rd *rd, const struct stream_record *rec, const char *what)
{
	snprintf(rd->err, rd->errlen, "%s: %s %s record at byte %" PRIu64, rd->ci->file, what,
		 stream_type_name(rec->type), rd->off);
	return -EBADMSG;
}

static int ckpt__rd_record(void *opaque, const struct stream_record *rec)
{
	struct ckpt_rd *rd = opaque;
	const struct ckpt_info *ci = rd->ci;
	int e = 0;
	switch (rd->phase) {
	case 0: {
		struct stream_checkpoint c;
		if (stream_parse_checkpoint(rec, &c) < 0)
			return ckpt__bad(rd, rec, "malformed or unexpected");
		if (memcmp(&c, &ci->hdr, sizeof(c))) {
			snprintf(rd->err, rd->errlen, "%s changed while it was read (a checkpoint replaced it): try again",
				 ci->file);
			return -ESTALE;
		}
		break;
	}
	case 1: {
		struct stream_hello h;
		if (rec->type != STREAM_HELLO || stream_parse_hello(rec, &h) < 0 || strcmp(h.name, ci->hello.name))
			return ckpt__bad(rd, rec, "malformed or unexpected");
		break;
	}
	case 2: {
		struct stream_shape s;
		if (rec->type != STREAM_SHAPE || stream_parse_shape(rec, &s) < 0 || !ckpt__same_shape(&s, &ci->shape))
			return ckpt__bad(rd, rec, "malformed or unexpected");
		rd->nframes = s.mem_bytes >> HV_PAGE_SHIFT;
		break;
	}
	case 3:
		if (rec->type == STREAM_PAGES) {
			if (stream_parse_pages(rec, rd->nframes, ckpt__count_page, rd) < 0)
				return ckpt__bad(rd, rec, "malformed");
		} else if (rec->type == STREAM_VCPU) {
			uint32_t idx, len;
			const uint8_t *blob;
			if (stream_parse_vcpu(rec, ci->shape.vcpus, &idx, &blob, &len) < 0)
				return ckpt__bad(rd, rec, "malformed");
			if (rd->vcpu_seen[idx]++)
				return ckpt__bad(rd, rec, "a second");
		} else if (rec->type == STREAM_STATE_DONE) {
			uint64_t total;
			if (stream_parse_state_done(rec, &total) < 0)
				return ckpt__bad(rd, rec, "malformed");
			for (unsigned i = 0; i < ci->shape.vcpus; i++)
				if (!rd->vcpu_seen[i]) {
					snprintf(rd->err, rd->errlen, "%s: no state for vCPU %u", ci->file, i);
					return -EBADMSG;
				}
			if (total != rd->pages) {
				snprintf(rd->err, rd->errlen, "%s: STATE_DONE counts %" PRIu64 " pages, the file holds %" PRIu64,
					 ci->file, total, rd->pages);
				return -EBADMSG;
			}
			rd->phase = 4;
			break;
		} else {
			return ckpt__bad(rd, rec, "unexpected");
		}
		if (rd->each && (e = rd->each(rd->opaque, rec)) != 0) {
			if (!rd->err[0])
				snprintf(rd->err, rd->errlen, "%s: %s", ci->file, e < 0 ? strerror(-e) : "stopped");
			return e;
		}
		break;
	case 4: {
		struct stream_seal s;
		uint8_t sha[EVP_MAX_MD_SIZE];
		unsigned shalen = 0;
		if (stream_parse_seal(rec, &s) < 0 || s.bytes != rd->off || s.records != rd->records)
			return ckpt__bad(rd, rec, "malformed or misplaced");
		if (EVP_DigestFinal_ex(rd->md, sha, &shalen) != 1 || shalen != STREAM_SHA256_LEN ||
		    memcmp(sha, s.sha256, STREAM_SHA256_LEN)) {
			snprintf(rd->err, rd->errlen, "%s: checksum mismatch: the file is corrupted", ci->file);
			return -EBADMSG;
		}
		break;
	}
	default:
		snprintf(rd->err, rd->errlen, "%s: data after its SEAL record (byte %" PRIu64 ")", ci->file, rd->off);
		return -EBADMSG;
	}
	if (rd->phase < 3)
		rd->phase++;
	else if (rd->phase == 4 && rec->type == STREAM_SEAL)
		rd->phase = 5;
	rd->records++;
	rd->off += STREAM_HDR_SIZE + (uint64_t)rec->len;
	return 0;
}

int ckpt_read(int dirfd, const struct ckpt_info *ci, int (*each)(void *opaque, const struct stream_record *rec),
	      void *opaque, uint64_t *pages, char *err, size_t errlen)
{
	struct ckpt_rd rd = { .ci = ci, .each = each, .opaque = opaque, .err = err, .errlen = errlen };
	err[0] = 0;
	struct stream_reader r;
	struct stat st;
	uint8_t *buf = NULL;
	int e;
	int fd = ckpt__open_regular(dirfd, ci->file);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", ci->file, fd == -EINVAL ? "not a regular file" : strerror(-fd));
		return fd == -EINVAL ? -EBADMSG : fd;
	}
	stream_reader_init(&r);
	rd.md = EVP_MD_CTX_new();
	buf = malloc(CKPT_IO_CHUNK);
	if (!rd.md || !buf || EVP_DigestInit_ex(rd.md, EVP_sha256(), NULL) != 1) {
		snprintf(err, errlen, "out of memory");
		e = -ENOMEM;
		goto out;
	}
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < STREAM_SEAL_RECORD) {
		snprintf(err, errlen, "%s: truncated", ci->file);
		e = -EBADMSG;
		goto out;
	}
	/* The checksum covers everything before the SEAL, which is the last
	 * STREAM_SEAL_RECORD bytes of a whole file; a truncated one fails
	 * the SEAL's own checks. */
	uint64_t hashed_end = (uint64_t)st.st_size - STREAM_SEAL_RECORD, pos = 0;
	for (;;) {
		ssize_t k = read(fd, buf, CKPT_IO_CHUNK);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			e = -errno;
			snprintf(err, errlen, "%s: read error: %s", ci->file, strerror(errno));
			goto out;
		}
		if (k == 0)
			break;
		if (pos < hashed_end) {
			uint64_t h = hashed_end - pos < (uint64_t)k ? hashed_end - pos : (uint64_t)k;
			EVP_DigestUpdate(rd.md, buf, h);
		}
		pos += (uint64_t)k;
		e = stream_reader_feed(&r, buf, (size_t)k, ckpt__rd_record, &rd);
		if (e == -EPROTO || e == -E2BIG) {
			snprintf(err, errlen, "%s: corrupted: not a valid record at byte %" PRIu64, ci->file, rd.off);
			e = -EBADMSG;
		}
		if (e)
			goto out;
	}
	if (rd.phase != 5) {
		snprintf(err, errlen, "%s: truncated: it ends %s", ci->file,
			 r.b.len ? "inside a record" : "before its SEAL record");
		e = -EBADMSG;
		goto out;
	}
	if (pages)
		*pages = rd.pages;
	e = 0;
out:
	stream_reader_free(&r);
	EVP_MD_CTX_free(rd.md);
	free(buf);
	close(fd);
	return e;
}

/* ---- merging ---- */

struct ckpt_merge_st {
	uint32_t *last;    /* per frame: the ordinal of its last copy (0: none) */
	uint64_t nframes;
	uint32_t ord;      /* ordinal of the entry being looked at */
	int pass, from_inc;
	struct stream_buf out;
	size_t mark;
	unsigned in_batch;
	uint64_t pages;
	struct ckpt_writer *w;
	int err;
};

static int ckpt__merge_page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	struct ckpt_merge_st *m = opaque;
	uint32_t ord = ++m->ord;
	if (gfn >= m->nframes)
		return -ERANGE; /* both files share a shape (checked), each was read against it: never */
	if (m->pass == 1) {
		m->last[gfn] = ord;
		return 0;
	}
	if (m->last[gfn] != ord)
		return 0; /* a later copy follows */
	int e = 0;
	if (!m->in_batch)
		e = stream_put_pages_begin(&m->out, &m->mark);
	if (!e)
		e = stream_put_page(&m->out, gfn, codec, data, len);
	if (e)
		return e;
	m->pages++;
	if (++m->in_batch == STREAM_MAX_BATCH) {
		m->in_batch = 0;
		if ((e = stream_put_pages_end(&m->out, m->mark)) < 0)
			return e;
		if (m->out.len >= CKPT_IO_CHUNK)
			return ckpt_writer_put(m->w, &m->out);
	}
	return 0;
}

static int ckpt__merge_record(void *opaque, const struct stream_record *rec)
{
	struct ckpt_merge_st *m = opaque;
	if (rec->type == STREAM_PAGES)
		return stream_parse_pages(rec, UINT64_MAX, ckpt__merge_page, m);
	if (m->pass == 1 || !m->from_inc)
		return 0; /* the vCPUs are the incremental's */
	uint32_t idx, len;
	const uint8_t *blob;
	int e = stream_parse_vcpu(rec, HV_MAX_VCPUS, &idx, &blob, &len);
	if (!e && m->in_batch) {
		m->in_batch = 0;
		e = stream_put_pages_end(&m->out, m->mark);
	}
	return e ? e : stream_put_vcpu(&m->out, idx, blob, len);
}

int ckpt_merge(int dirfd, const struct ckpt_info *full, const struct ckpt_info *inc, char *err, size_t errlen)
{
	struct ckpt_merge_st m = { 0 };
	int e;
	if (!full->ok || !inc->ok || full->hdr.parent_id || inc->hdr.parent_id != full->hdr.id ||
	    inc->hdr.parent_seq != full->seq || !ckpt__same_shape(&full->shape, &inc->shape) ||
	    strcmp(full->hello.name, inc->hello.name)) {
		snprintf(err, errlen, "%s does not follow the full image %s (or holds another VM)", inc->file, full->file);
		return -EINVAL;
	}
	uint64_t nframes = inc->shape.mem_bytes >> HV_PAGE_SHIFT;
	m.nframes = nframes;
	m.last = calloc(nframes, sizeof(*m.last));
	if (!m.last) {
		snprintf(err, errlen, "out of memory for %" PRIu64 " frames", nframes);
		return -ENOMEM;
	}
	/* Pass 1 finds each frame's last copy, pass 2 writes only those. */
	for (m.pass = 1; m.pass <= 2; m.pass++) {
		m.ord = 0;
		if (m.pass == 2) {
			struct stream_checkpoint h = inc->hdr;
			h.parent_id = 0;
			h.parent_seq = 0;
			if ((e = ckpt_writer_open(dirfd, inc->seq, &m.w)) < 0) {
				snprintf(err, errlen, "cannot create the merged %s: %s", inc->file, strerror(-e));
				goto out;
			}
			e = stream_put_checkpoint(&m.out, &h);
			if (!e)
				e = stream_put_hello(&m.out, 0, inc->hello.name);
			if (!e)
				e = stream_put_shape(&m.out, &inc->shape);
			if (e)
				goto fail_io;
		}
		for (m.from_inc = 0; m.from_inc <= 1; m.from_inc++) {
			e = ckpt_read(dirfd, m.from_inc ? inc : full, ckpt__merge_record, &m, NULL, err, errlen);
			if (e)
				goto out;
		}
	}
	if (m.in_batch)
		e = stream_put_pages_end(&m.out, m.mark);
	if (!e)
		e = stream_put_state_done(&m.out, m.pages);
	if (!e)
		e = ckpt_writer_put(m.w, &m.out);
	if (e)
		goto fail_io;
	e = ckpt_writer_commit(m.w, inc->seal.paused_ns, inc->seal.pause_ns, NULL);
	m.w = NULL;
	if (e) {
		snprintf(err, errlen, "writing the merged %s: %s", inc->file, strerror(-e));
		goto out;
	}
	/* The merged file stands alone now; the old full image may go. */
	if (unlinkat(dirfd, full->file, 0) < 0 || fsync(dirfd) < 0) {
		e = -errno;
		snprintf(err, errlen, "merged into %s, but cannot remove %s: %s", inc->file, full->file, strerror(errno));
	}
	goto out;
fail_io:
	snprintf(err, errlen, "writing the merged %s: %s", inc->file, strerror(-e));
out:
	ckpt_writer_abort(m.w);
	stream_buf_free(&m.out);
	free(m.last);
	return e;
}
