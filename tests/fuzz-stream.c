/*
 * libFuzzer target for the stream record parser: arbitrary bytes, fed in
 * chunks whose sizes come from the input, through framing, every record
 * parser and the page decoder. Built and run by tests/test-fuzz-stream.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined ...
 */
#include <stdint.h>
#include <string.h>
#include "compress/compress.h"
#include "migrate/stream.h"

static uint8_t page[COMPRESS_PAGE_SIZE];

static int each_page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	(void)opaque;
	(void)gfn;
	compress_page_decode(codec, data, len, page);
	return 0;
}

static int on_record(void *opaque, const struct stream_record *rec)
{
	struct stream_hello h;
	struct stream_shape s;
	struct stream_round_end re;
	uint32_t idx, len, code;
	const uint8_t *blob;
	uint64_t total;
	char text[128];
	(void)opaque;
	switch (rec->type) {
	case STREAM_HELLO: stream_parse_hello(rec, &h); break;
	case STREAM_SHAPE: stream_parse_shape(rec, &s); break;
	case STREAM_PAGES: stream_parse_pages(rec, 1u << 16, each_page, NULL); break;
	case STREAM_VCPU: stream_parse_vcpu(rec, 2, &idx, &blob, &len); break;
	case STREAM_ROUND_END: stream_parse_round_end(rec, &re); break;
	case STREAM_STATE_DONE: stream_parse_state_done(rec, &total); break;
	case STREAM_ERROR: stream_parse_error(rec, &code, text, sizeof(text)); break;
	case STREAM_JOIN: {
		struct stream_join j;
		stream_parse_join(rec, &j);
		break;
	}
	case STREAM_RESUME: {
		struct stream_resume r;
		stream_parse_resume(rec, &r);
		break;
	}
	case STREAM_ACK: {
		struct stream_ack a;
		stream_parse_ack(rec, &a);
		break;
	}
	case STREAM_CHECKPOINT: {
		struct stream_checkpoint c;
		stream_parse_checkpoint(rec, &c);
		break;
	}
	case STREAM_SEAL: {
		struct stream_seal s;
		stream_parse_seal(rec, &s);
		break;
	}
	case STREAM_CAPACITY: {
		struct stream_capacity c;
		stream_parse_capacity(rec, &c);
		break;
	}
	case STREAM_PROBE_DONE: {
		struct stream_probe_done p;
		stream_parse_probe_done(rec, &p);
		break;
	}
	case STREAM_RESOLVE: {
		struct stream_resolve v;
		stream_parse_resolve(rec, &v);
		break;
	}
	case STREAM_RESOLVED: {
		static struct stream_resolved v;
		stream_parse_resolved(rec, &v);
		break;
	}
	case STREAM_VERIFY: {
		uint64_t first;
		uint32_t count;
		const uint8_t *dg;
		if (stream_parse_verify(rec, 1u << 16, &first, &count, &dg) == 0) {
			volatile uint64_t sum = 0; /* touch every digest ASan can see */
			for (uint32_t i = 0; i < count; i++)
				sum += dg[8ull * i];
		}
		break;
	}
	default: stream_parse_empty(rec); break;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stream_reader r;
	if (!size)
		return 0;
	size_t chunk = 1 + data[0] % 64;
	data++;
	size--;
	stream_reader_init(&r);
	while (size) {
		size_t n = chunk < size ? chunk : size;
		if (stream_reader_feed(&r, data, n, on_record, NULL))
			break;
		data += n;
		size -= n;
	}
	stream_reader_free(&r);
	return 0;
}
