/* Unit tests of the complete block check (proto/block_check.c): each rule of BLOCK.md's "What a
 * writer promises" at both edges (the last value accepted, the first refused), the same answer
 * whatever pieces the payload arrives in, bounded decompression, and the record check against
 * protobuf-c's own unpack on thousands of damaged records. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <cmocka.h>

#include "proto/block.h"
#include "proto/block_check.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"
#include "proto/varint.h"

#define BASE_TS 1700000000000000000ull

/* ---- hand-made blocks: any header field, any payload ---- */

/* A block as a writer might send it: the records (packed TraceRecords) framed as BLOCK.md says,
 * then the header fields, each of which a test may override after make_spec. */
struct spec {
	uint8_t *raw;    /* framed records (owned) */
	size_t raw_len, raw_cap;
	struct tv_block_header h;
	int zstd_level;  /* codec zstd: the level; window_log forces a window when not 0 */
	int window_log;
	const uint8_t *payload; /* when set, the stored payload as is (raw/codec ignored) */
	size_t payload_len;
};

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); } /* little-endian hosts */
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static size_t pack_record(uint64_t ts_ns, size_t path_bytes, uint8_t **out)
{
	Tracevault__V1__TraceRecord r;
	char *path = malloc(path_bytes + 1);
	size_t n;

	assert_non_null(path);
	memset(path, 'p', path_bytes);
	path[path_bytes] = 0;
	tracevault__v1__trace_record__init(&r);
	r.ts_ns = ts_ns;
	r.end_ns = ts_ns + 10;
	r.latency_ns = 10;
	r.comm = "nginx";
	r.method = "GET";
	r.path = path;
	r.status = 200;
	n = tracevault__v1__trace_record__get_packed_size(&r);
	*out = malloc(n ? n : 1);
	assert_non_null(*out);
	tracevault__v1__trace_record__pack(&r, *out);
	free(path);
	return n;
}

/* Append one framed record (varint length + bytes) to s->raw. */
static void add_bytes(struct spec *s, const uint8_t *rec, size_t n)
{
	if (s->raw_len + n + TV_VARINT_MAX_BYTES > s->raw_cap) { /* doubling: ASan copies */
		s->raw_cap = 2 * (s->raw_len + n + TV_VARINT_MAX_BYTES);
		s->raw = realloc(s->raw, s->raw_cap);
		assert_non_null(s->raw);
	}
	s->raw_len += tv_varint_put(s->raw + s->raw_len, n);
	memcpy(s->raw + s->raw_len, rec, n);
	s->raw_len += n;
}

static void add(struct spec *s, uint64_t ts_ns, size_t path_bytes)
{
	uint8_t *rec;
	size_t n = pack_record(ts_ns, path_bytes, &rec);

	add_bytes(s, rec, n);
	free(rec);
}

static size_t varint_len(uint64_t v)
{
	uint8_t tmp[TV_VARINT_MAX_BYTES];

	return tv_varint_put(tmp, v);
}

/* A packed record of exactly size bytes (its path sized to fit); the caller frees it. */
static uint8_t *record_of_size(uint64_t ts_ns, size_t size)
{
	size_t path = size > 64 ? size - 64 : 0, n;
	uint8_t *rec;

	for (int k = 0; k < 8; k++) {
		n = pack_record(ts_ns, path, &rec);
		if (n == size)
			return rec;
		free(rec);
		path = path + size - n;
	}
	fail_msg("no record of %zu bytes", size);
	return NULL;
}

/* n records at BASE_TS + i (sorted), header fields as a correct writer sets them. */
static void make_spec(struct spec *s, int n, enum tv_codec codec)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < n; i++)
		add(s, BASE_TS + (uint64_t)i, 20);
	s->h.version = 2;
	s->h.codec = (uint16_t)codec;
	s->h.block_id = 42;
	s->h.min_ts_ns = BASE_TS;
	s->h.max_ts_ns = n ? BASE_TS + (uint64_t)n - 1 : BASE_TS;
	s->h.record_count = (uint32_t)n;
	s->zstd_level = 3;
}

/* The encoded block of s; raw_bytes and the sizes and CRCs are filled in unless set already
 * (raw_bytes: when h.raw_bytes is not UINT64_MAX it is kept). */
static uint8_t *encode(struct spec *s, size_t *len, uint64_t raw_bytes_override)
{
	size_t hb = s->h.version == 1 ? TV_BLOCK_V1_HEADER_BYTES : TV_BLOCK_V2_HEADER_BYTES;
	size_t cap = hb + ZSTD_compressBound(s->raw_len) + s->payload_len + 16;
	uint8_t *b = calloc(1, cap), *p;
	size_t plen;

	assert_non_null(b);
	p = b + hb;
	if (s->payload) {
		memcpy(p, s->payload, s->payload_len);
		plen = s->payload_len;
	} else if (s->h.codec == TV_CODEC_ZSTD) {
		ZSTD_CCtx *cc = ZSTD_createCCtx();

		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, s->zstd_level);
		if (s->window_log)
			ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, s->window_log);
		plen = ZSTD_compress2(cc, p, cap - hb, s->raw, s->raw_len);
		assert_false(ZSTD_isError(plen));
		ZSTD_freeCCtx(cc);
	} else {
		if (s->raw_len) /* raw is NULL for a block without records */
			memcpy(p, s->raw, s->raw_len);
		plen = s->raw_len;
	}
	put32(b, TV_BLOCK_MAGIC);
	put16(b + 4, s->h.version);
	put16(b + 6, s->h.codec);
	put64(b + 8, s->h.block_id);
	put64(b + 16, s->h.min_ts_ns);
	put64(b + 24, s->h.max_ts_ns);
	put32(b + 32, s->h.record_count);
	put32(b + 36, s->h.flags);
	put64(b + 40, raw_bytes_override != UINT64_MAX ? raw_bytes_override : s->raw_len);
	put64(b + 48, plen);
	put32(b + 56, tv_crc32c(p, plen));
	if (hb == TV_BLOCK_V2_HEADER_BYTES)
		put32(b + 60, s->h.reserved);
	put32(b + hb - 4, tv_crc32c(b, hb - 4));
	*len = hb + plen;
	return b;
}

/* Run the check with the payload fed in pieces of `piece` bytes (0: one piece). */
static int check_in_pieces(const uint8_t *b, size_t len, size_t piece, char *err, size_t errlen)
{
	struct tv_block_check *c = tv_block_check_new();
	struct tv_block_header h;
	int ret;

	assert_non_null(c);
	ret = tv_block_header_parse(b, len, &h, err, errlen);
	if (!ret)
		ret = tv_block_check_begin(c, &h, err, errlen);
	for (size_t off = h.header_bytes; !ret && off < len; off += piece ? piece : len) {
		size_t n = piece && len - off > piece ? piece : len - off;

		ret = tv_block_check_feed(c, b + off, n, err, errlen);
	}
	if (!ret)
		ret = tv_block_check_end(c, err, errlen);
	tv_block_check_free(c);
	return ret;
}

/* tv_block_validate and the streaming check in pieces of 1, 7 and 4096 bytes all answer want,
 * with a reason containing what (when want != 0). */
static void expect_block(const uint8_t *b, size_t len, int want, const char *what)
{
	static const size_t pieces[] = { 1, 7, 4096 };
	char err[256] = "";
	int ret = tv_block_validate(b, len, err, sizeof(err));

	if (ret != want)
		fail_msg("validate: %d (%s), want %d (%s)", ret, err, want, what ? what : "ok");
	if (want && !strstr(err, what))
		fail_msg("reason '%s' does not mention '%s'", err, what);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		err[0] = 0;
		ret = check_in_pieces(b, len, pieces[i], err, sizeof(err));
		if (ret != want || (want && !strstr(err, what)))
			fail_msg("in pieces of %zu: %d (%s), want %d (%s)", pieces[i], ret, err, want,
				 what ? what : "ok");
	}
}

/* Encode s (raw_bytes as given, UINT64_MAX: the true size) and expect_block it. */
static void expect(struct spec *s, uint64_t raw_bytes, int want, const char *what)
{
	size_t len;
	uint8_t *b = encode(s, &len, raw_bytes);

	expect_block(b, len, want, what);
	free(b);
}

static void spec_free(struct spec *s)
{
	free(s->raw);
	s->raw = NULL;
}

/* Both codecs: each rule must hold whatever the payload's encoding. */
static const enum tv_codec CODECS[] = { TV_CODEC_NONE, TV_CODEC_ZSTD };
#define FOR_CODECS(c) for (size_t ci_ = 0; ci_ < 2 && ((c) = CODECS[ci_], 1); ci_++)

/* ---- the rules, each at both edges ---- */

static void test_builder_blocks_pass(void **state)
{
	struct tv_block_builder *bb = tv_block_builder_new();
	const struct tv_block_loss loss = { .ring_full = 3 };
	Tracevault__V1__TraceRecord r;
	enum tv_codec codec;
	void *out;
	size_t len;

	(void)state;
	FOR_CODECS(codec) {
		/* what the real writer seals: records out of order, equal timestamps */
		for (int i = 0; i < 500; i++) {
			tracevault__v1__trace_record__init(&r);
			r.ts_ns = BASE_TS + (uint64_t)((i * 7919) % 100);
			r.path = "/x";
			assert_int_equal(tv_block_builder_add(bb, &r), 0);
		}
		assert_int_equal(tv_block_builder_seal(bb, 9, codec, 3, &out, &len), 0);
		expect_block(out, len, 0, NULL);
		free(out);
		/* and a loss-only block: no record, one instant */
		tv_block_builder_set_loss(bb, &loss, BASE_TS);
		assert_int_equal(tv_block_builder_seal(bb, 10, codec, 3, &out, &len), 0);
		expect_block(out, len, 0, NULL);
		free(out);
	}
	tv_block_builder_free(bb);
}

/* The server checks every block of a segment with one context (server/segment.c). Found by
 * tests/fuzz/fuzz_server_request: a version 3 block first made the context's zstd
 * decompressor without its output buffer, and a version 2 zstd block after it was refused
 * ("Operation made no progress ... output buffer being full", DATA_LOSS to the client). */
static void test_context_reused_across_versions(void **state)
{
	static const struct {
		unsigned version;
		enum tv_codec codec;
	} SEQ[] = { { 3, TV_CODEC_ZSTD }, { 2, TV_CODEC_ZSTD }, { 3, TV_CODEC_NONE },
		    { 2, TV_CODEC_NONE }, { 2, TV_CODEC_ZSTD }, { 3, TV_CODEC_ZSTD } };
	struct tv_block_check *c = tv_block_check_new();
	struct tv_block_builder *bb = tv_block_builder_new();
	Tracevault__V1__TraceRecord r;
	char err[256];

	(void)state;
	assert_non_null(c);
	assert_non_null(bb);
	for (size_t k = 0; k < sizeof(SEQ) / sizeof(SEQ[0]); k++) {
		struct tv_block_header h;
		void *out;
		size_t len;

		for (int i = 0; i < 20; i++) {
			tracevault__v1__trace_record__init(&r);
			r.ts_ns = BASE_TS + (uint64_t)i;
			r.path = "/x";
			assert_int_equal(tv_block_builder_add(bb, &r), 0);
		}
		assert_int_equal(tv_block_builder_set_version(bb, SEQ[k].version), 0);
		assert_int_equal(tv_block_builder_seal(bb, 100 + k, SEQ[k].codec, 3, &out, &len), 0);
		assert_int_equal(tv_block_header_parse(out, len, &h, err, sizeof(err)), 0);
		err[0] = '\0';
		if (tv_block_check_begin(c, &h, err, sizeof(err)) ||
		    tv_block_check_feed(c, (uint8_t *)out + h.header_bytes, h.payload_bytes, err,
					sizeof(err)) ||
		    tv_block_check_end(c, err, sizeof(err)))
			fail_msg("block %zu (version %u, codec %d) after the others: %s", k,
				 SEQ[k].version, (int)SEQ[k].codec, err);
		free(out);
	}
	tv_block_builder_free(bb);
	tv_block_check_free(c);
}

/* A record whose last byte is the key of a length-delimited field: the length prefix is
 * missing. Found by tests/fuzz/fuzz_block (a record cut across pieces is collected into a
 * buffer of exactly its length): the check read the byte after the record for the prefix. Each
 * record here sits at the very end of its own allocation, so ASan sees such a read. */
static void test_record_ending_in_a_length_key(void **state)
{
	static const uint8_t RECS[][4] = {
		{ 0x08, 0x01, 0x2a },       /* ts_ns 1, then field 5 (comm) with no length */
		{ 0x2a },                   /* only the key */
		{ 0x08, 0x01, 0x82, 0x01 }, /* field 16 (req_headers), a two-byte key */
	};
	static const size_t LENS[] = { 3, 1, 4 };
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(LENS) / sizeof(LENS[0]); i++) {
		uint8_t *p = malloc(LENS[i]);
		uint64_t ts;

		assert_non_null(p);
		memcpy(p, RECS[i], LENS[i]);
		assert_int_equal(tv_block_check_record(p, LENS[i], &ts, err, sizeof(err)), -EBADMSG);
		assert_non_null(strstr(err, "length prefix beyond the message"));
		free(p);
	}
}

/* ---- version 3: every part of the payload is checked, damage is a clean error ---- */

#define V3_N 5000

/* A version 3 block of V3_N records, a third of them with a trace id. */
static uint8_t *v3_block(size_t *len)
{
	struct tv_block_builder *bb = tv_block_builder_new();
	Tracevault__V1__TraceRecord r;
	char trace[40];
	void *out;

	for (int i = 0; i < V3_N; i++) {
		tracevault__v1__trace_record__init(&r);
		r.ts_ns = BASE_TS + (uint64_t)i * 1000;
		r.latency_ns = (uint64_t)i * 37 % 10000;
		r.path = i % 3 ? "/x" : "/y";
		snprintf(trace, sizeof(trace), "%032x", i / 2);
		r.trace_id = i % 3 ? "" : trace;
		assert_int_equal(tv_block_builder_add(bb, &r), 0);
	}
	assert_int_equal(tv_block_builder_seal(bb, 11, TV_CODEC_ZSTD, 3, &out, len), 0);
	tv_block_builder_free(bb);
	return out;
}

/* After a test changed bytes inside the payload: the CRCs of the directory (when dir), the
 * filter, the payload and the header made right again, so an inner check must find it. */
static void v3_restamp(uint8_t *b, bool dir)
{
	struct tv_block_header h;
	uint8_t *payload = b + TV_BLOCK_V3_HEADER_BYTES;
	size_t dl;

	memcpy(&h.page_count, b + 108, 4);
	memcpy(&h.bloom_bytes, b + 112, 4);
	memcpy(&h.payload_bytes, b + 48, 8);
	dl = (size_t)h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
	if (dir)
		put32(b + 116, tv_crc32c(payload, dl));
	put32(b + 120, tv_crc32c(payload + dl, h.bloom_bytes));
	put32(b + 56, tv_crc32c(payload, h.payload_bytes));
	put32(b + 124, tv_crc32c(b, 124));
}

static void test_v3_damage_is_refused(void **state)
{
	size_t len, dl, page0;
	uint8_t *good = v3_block(&len), *b = malloc(len);
	uint32_t pages, bloom, u32;
	char err[256];
	struct tv_block_check *c;
	struct tv_block_header h;

	(void)state;
	memcpy(&pages, good + 108, 4);
	memcpy(&bloom, good + 112, 4);
	dl = (size_t)pages * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
	page0 = TV_BLOCK_V3_HEADER_BYTES + dl + bloom; /* first page's first byte */
	assert_true(pages >= 2);
	assert_true(bloom > 0);
	expect_block(good, len, 0, NULL);

	/* a directory that lies about a page's records, CRC made right */
	memcpy(b, good, len);
	memcpy(&u32, b + TV_BLOCK_V3_HEADER_BYTES + 16, 4);
	u32++;
	memcpy(b + TV_BLOCK_V3_HEADER_BYTES + 16, &u32, 4);
	v3_restamp(b, true);
	expect_block(b, len, -EBADMSG, "page directory says");
	/* pages out of ts order */
	memcpy(b, good, len);
	memset(b + TV_BLOCK_V3_HEADER_BYTES + 32, 0, 8); /* page 1 first_ts 0 */
	v3_restamp(b, true);
	expect_block(b, len, -EBADMSG, "page 1 ts_ns");
	/* a flipped directory bit the directory CRC catches */
	memcpy(b, good, len);
	b[TV_BLOCK_V3_HEADER_BYTES + 20] ^= 1;
	v3_restamp(b, false);
	expect_block(b, len, -EBADMSG, "page directory checksum mismatch");
	/* a flipped page bit the page CRC catches */
	memcpy(b, good, len);
	b[page0 + 40] ^= 0x10;
	v3_restamp(b, true);
	expect_block(b, len, -EBADMSG, "page 0 checksum mismatch");
	/* a page whose CRC is right but whose column table is not */
	memcpy(b, good, len);
	b[page0] ^= 0x7f;
	memcpy(&u32, good + TV_BLOCK_V3_HEADER_BYTES + 20, 4); /* page 0 stored_len */
	put32(b + TV_BLOCK_V3_HEADER_BYTES + 28, tv_crc32c(b + page0, u32));
	v3_restamp(b, true);
	expect_block(b, len, -EBADMSG, "page 0:");
	/* a filter that lost its bits: a trace query would miss records */
	memcpy(b, good, len);
	memset(b + TV_BLOCK_V3_HEADER_BYTES + dl, 0, bloom);
	v3_restamp(b, true);
	expect_block(b, len, -EBADMSG, "not in the block's trace-id filter");
	/* a filter CRC that does not match */
	memcpy(b, good, len);
	b[TV_BLOCK_V3_HEADER_BYTES + dl] ^= 1;
	put32(b + 56, tv_crc32c(b + TV_BLOCK_V3_HEADER_BYTES, len - TV_BLOCK_V3_HEADER_BYTES));
	put32(b + 124, tv_crc32c(b, 124));
	expect_block(b, len, -EBADMSG, "trace-id filter checksum mismatch");
	/* more pages than records in the header: refused before anything is read */
	memcpy(b, good, len);
	put32(b + 108, V3_N + 1);
	put32(b + 124, tv_crc32c(b, 124));
	expect_block(b, len, -EBADMSG, "page directory out of bounds");
	/* a payload that stops inside a page */
	c = tv_block_check_new();
	assert_int_equal(tv_block_header_parse(good, len, &h, err, sizeof(err)), 0);
	assert_int_equal(tv_block_check_begin(c, &h, err, sizeof(err)), 0);
	assert_int_equal(tv_block_check_feed(c, good + TV_BLOCK_V3_HEADER_BYTES,
					     page0 + 10 - TV_BLOCK_V3_HEADER_BYTES, err,
					     sizeof(err)), 0);
	assert_int_equal(tv_block_check_end(c, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "payload ends inside its pages"));
	tv_block_check_free(c);
	free(b);
	free(good);
}

/* Random damage behind right CRCs: a byte of the directory or a page changed and every CRC
 * made right again (the page's too), so only the decoder's own checks stand between the bytes
 * and memory. Each must end in 0 or a clean error (ASan/UBSan watch the rest), the same in
 * pieces, and the whole-block reader must agree that a refused block is bad. */
static void test_v3_random_damage_behind_right_crcs(void **state)
{
	size_t len, dl, off0;
	uint8_t *good = v3_block(&len), *b = malloc(len);
	uint32_t pages, bloom;
	uint64_t seed = 99;
	unsigned refused = 0;

	(void)state;
	memcpy(&pages, good + 108, 4);
	memcpy(&bloom, good + 112, 4);
	dl = (size_t)pages * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
	off0 = TV_BLOCK_V3_HEADER_BYTES + dl + bloom;
	for (int k = 0; k < 300; k++) {
		size_t at, pstart = off0;
		struct tv_block_reader *rd = NULL;
		char err[256];
		int ret;

		memcpy(b, good, len);
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		if (k % 10 == 0) /* the directory */
			at = TV_BLOCK_V3_HEADER_BYTES + (seed >> 33) % dl;
		else
			at = off0 + (seed >> 33) % (len - off0);
		b[at] ^= (uint8_t)(1u << ((seed >> 20) % 8));
		if (k % 3 == 0 && at + 1 < len)
			b[at + 1] = (uint8_t)(seed >> 40);
		for (uint32_t i = 0; i < pages && at >= off0; i++) { /* that page's CRC */
			struct tv_v3_page_entry e;

			tv_v3_page_entry_get(b + TV_BLOCK_V3_HEADER_BYTES + i * 32, &e);
			if (at < pstart + e.stored_len) {
				e.crc32c = tv_crc32c(b + pstart, e.stored_len);
				tv_v3_page_entry_put(b + TV_BLOCK_V3_HEADER_BYTES + i * 32, &e);
				break;
			}
			pstart += e.stored_len;
		}
		v3_restamp(b, true);
		ret = tv_block_validate(b, len, err, sizeof(err));
		assert_true(ret == 0 || ret == -EBADMSG || ret == -EMSGSIZE);
		assert_int_equal(check_in_pieces(b, len, 4096, err, sizeof(err)), ret);
		if (ret) {
			refused++;
		} else if (tv_block_reader_open(&rd, b, len, err, sizeof(err)) == 0) {
			const uint8_t *d;
			size_t n;
			uint64_t ts;

			while (tv_block_reader_next_raw(rd, &d, &n, &ts) == 1)
				;
			tv_block_reader_free(rd);
		}
	}
	print_message("v3 random damage: %u of 300 refused\n", refused);
	assert_true(refused > 100);
	free(b);
	free(good);
}

static void test_record_ts_inside_header_range(void **state)
{
	struct spec s;
	enum tv_codec codec;

	(void)state;
	FOR_CODECS(codec) {
		make_spec(&s, 10, codec);
		expect(&s, UINT64_MAX, 0, NULL); /* first == min, last == max */
		s.h.min_ts_ns = BASE_TS + 1;    /* record 0 one below the range */
		expect(&s, UINT64_MAX, -EBADMSG, "record 0: ts_ns 1700000000000000000 outside");
		s.h.min_ts_ns = BASE_TS - 1;    /* range starts before the first record */
		expect(&s, UINT64_MAX, -EBADMSG, "not the header's min_ts_ns");
		s.h.min_ts_ns = BASE_TS;
		s.h.max_ts_ns = BASE_TS + 8;    /* the last record one above */
		expect(&s, UINT64_MAX, -EBADMSG, "record 9: ts_ns 1700000000000000009 outside");
		s.h.max_ts_ns = BASE_TS + 10;   /* range ends after the last record */
		expect(&s, UINT64_MAX, -EBADMSG, "not the header's max_ts_ns");
		/* rel-04: a block claiming all of time, its records inside it */
		s.h.min_ts_ns = 0;
		s.h.max_ts_ns = INT64_MAX;
		expect(&s, UINT64_MAX, -EBADMSG, "not the header's min_ts_ns");
		spec_free(&s);
		/* a record without ts_ns (0) in a block of [BASE, BASE] */
		make_spec(&s, 0, codec);
		add(&s, 0, 5);
		s.h.record_count = 1;
		expect(&s, UINT64_MAX, -EBADMSG, "record 0: ts_ns 0 outside");
		spec_free(&s);
	}
}

static void test_records_sorted_by_ts(void **state)
{
	struct spec s;
	enum tv_codec codec;

	(void)state;
	FOR_CODECS(codec) {
		make_spec(&s, 0, codec);
		add(&s, BASE_TS, 5);
		add(&s, BASE_TS + 5, 5);
		add(&s, BASE_TS + 5, 5); /* equal timestamps: sorted */
		add(&s, BASE_TS + 9, 5);
		s.h.record_count = 4;
		s.h.max_ts_ns = BASE_TS + 9;
		expect(&s, UINT64_MAX, 0, NULL);
		spec_free(&s);
		make_spec(&s, 0, codec);
		add(&s, BASE_TS, 5);
		add(&s, BASE_TS + 5, 5);
		add(&s, BASE_TS + 4, 5); /* one below the previous */
		add(&s, BASE_TS + 9, 5);
		s.h.record_count = 4;
		s.h.max_ts_ns = BASE_TS + 9;
		expect(&s, UINT64_MAX, -EBADMSG,
		       "record 2: ts_ns 1700000000000000004 before the previous record's");
		spec_free(&s);
	}
}

static void test_record_count_exact(void **state)
{
	struct spec s;
	enum tv_codec codec;

	(void)state;
	FOR_CODECS(codec) {
		make_spec(&s, 10, codec);
		s.h.record_count = 9;
		expect(&s, UINT64_MAX, -EBADMSG, "more records than record_count 9");
		s.h.record_count = 11;
		expect(&s, UINT64_MAX, -EBADMSG, "10 records, header says record_count 11");
		s.h.record_count = 3; /* rel-04's miscounted block */
		expect(&s, UINT64_MAX, -EBADMSG, "more records than record_count 3");
		s.h.record_count = 10;
		expect(&s, UINT64_MAX, 0, NULL);
		spec_free(&s);
	}
}

static void test_raw_bytes_exact(void **state)
{
	struct spec s;

	(void)state;
	/* zstd: the frame decompresses to its own size whatever raw_bytes claims */
	make_spec(&s, 10, TV_CODEC_ZSTD);
	expect(&s, s.raw_len, 0, NULL);
	expect(&s, s.raw_len + 1, -EBADMSG, "decompresses to");
	expect(&s, s.raw_len - 1, -EBADMSG, "more than raw_bytes");
	spec_free(&s);
	/* a block cut after a record boundary: raw_bytes and record_count agree with the bytes */
	make_spec(&s, 10, TV_CODEC_NONE);
	s.raw_len -= 3; /* the last record cut short */
	expect(&s, UINT64_MAX, -EBADMSG, "record 9 cut short");
	spec_free(&s);
}

static void test_record_size_limit(void **state)
{
	struct spec s;
	uint8_t *rec;

	(void)state;
	/* a record of exactly the limit passes, one byte more is refused before it is read */
	make_spec(&s, 0, TV_CODEC_ZSTD);
	rec = record_of_size(BASE_TS, TV_BLOCK_MAX_RECORD_BYTES);
	add_bytes(&s, rec, TV_BLOCK_MAX_RECORD_BYTES);
	free(rec);
	s.h.record_count = 1;
	expect(&s, UINT64_MAX, 0, NULL);
	spec_free(&s);
	make_spec(&s, 0, TV_CODEC_ZSTD);
	rec = record_of_size(BASE_TS, TV_BLOCK_MAX_RECORD_BYTES + 1);
	add_bytes(&s, rec, TV_BLOCK_MAX_RECORD_BYTES + 1);
	free(rec);
	s.h.record_count = 1;
	expect(&s, UINT64_MAX, -EMSGSIZE, "1048577 bytes, above the limit of 1048576 bytes");
	spec_free(&s);
}

static void test_payload_must_decompress(void **state)
{
	static const uint8_t not_zstd[] = "not a zstd frame not a zstd frame";
	struct spec s;
	uint8_t *b, *two;
	size_t len, plen;

	(void)state;
	/* rel-04: CRCs right, payload not a zstd frame */
	make_spec(&s, 0, TV_CODEC_ZSTD);
	s.payload = not_zstd;
	s.payload_len = sizeof(not_zstd);
	s.h.record_count = 10;
	s.h.max_ts_ns = BASE_TS;
	expect(&s, 500, -EBADMSG, "does not decompress");
	spec_free(&s);
	/* a frame cut short, and a frame followed by more bytes */
	make_spec(&s, 10, TV_CODEC_ZSTD);
	b = encode(&s, &len, UINT64_MAX);
	plen = len - TV_BLOCK_V2_HEADER_BYTES;
	s.payload = b + TV_BLOCK_V2_HEADER_BYTES;
	s.payload_len = plen - 1;
	expect(&s, UINT64_MAX, -EBADMSG, "inside its zstd frame");
	two = malloc(2 * plen);
	memcpy(two, s.payload, plen);
	memcpy(two + plen, s.payload, plen); /* two frames: BLOCK.md says one */
	s.payload = two;
	s.payload_len = 2 * plen;
	expect(&s, UINT64_MAX, -EBADMSG, "after its zstd frame");
	free(two);
	free(b);
	spec_free(&s);
}

static void test_payload_bytes_are_records(void **state)
{
	static const uint8_t ff[] = { 0xff, 0xff, 0xff };
	static const uint8_t bad_record[] = { 0x05, 0x08, 0x01, 0x2a, 0x05, 0x41 };
	struct spec s;
	enum tv_codec codec;

	(void)state;
	FOR_CODECS(codec) {
		/* rel-04: ff ff ff is a length varint cut short */
		make_spec(&s, 0, codec);
		s.raw = malloc(sizeof(ff));
		memcpy(s.raw, ff, sizeof(ff));
		s.raw_len = sizeof(ff);
		s.h.record_count = 1;
		expect(&s, UINT64_MAX, -EBADMSG, "record 0 cut short");
		spec_free(&s);
		/* a record whose string field 5 claims more bytes than the record has */
		make_spec(&s, 0, codec);
		s.raw = malloc(sizeof(bad_record));
		memcpy(s.raw, bad_record, sizeof(bad_record));
		s.raw_len = sizeof(bad_record);
		s.h.record_count = 1;
		s.h.min_ts_ns = s.h.max_ts_ns = 1;
		expect(&s, UINT64_MAX, -EBADMSG, "record 0 is not a TraceRecord");
		s.raw[4] = 0x00; /* the same bytes with the string's length right: a record */
		s.raw[0] = 0x04;
		s.raw_len = 5;
		expect(&s, UINT64_MAX, 0, NULL);
		spec_free(&s);
		/* a length varint of 11 bytes */
		make_spec(&s, 0, codec);
		s.raw = malloc(11);
		memset(s.raw, 0x80, 10);
		s.raw[10] = 0;
		s.raw_len = 11;
		s.h.record_count = 1;
		expect(&s, UINT64_MAX, -EBADMSG, "length varint too long");
		spec_free(&s);
	}
}

static void test_empty_block_is_one_instant(void **state)
{
	struct spec s;
	enum tv_codec codec;

	(void)state;
	FOR_CODECS(codec) {
		make_spec(&s, 0, codec);
		expect(&s, UINT64_MAX, 0, NULL); /* [BASE, BASE], no payload (zstd: an empty frame) */
		s.h.max_ts_ns = BASE_TS + 1;
		expect(&s, UINT64_MAX, -EBADMSG, "without records must have min_ts_ns == max_ts_ns");
		s.h.max_ts_ns = BASE_TS;
		add(&s, BASE_TS, 5); /* a record the count does not admit */
		expect(&s, UINT64_MAX, -EBADMSG, "raw_bytes 0");
		spec_free(&s);
	}
	/* rel-04's shape: no record, all of time */
	make_spec(&s, 0, TV_CODEC_NONE);
	s.h.min_ts_ns = 0;
	s.h.max_ts_ns = INT64_MAX;
	expect(&s, UINT64_MAX, -EBADMSG, "min_ts_ns == max_ts_ns");
	spec_free(&s);
}

static void test_header_fields_in_range(void **state)
{
	struct spec s;

	(void)state;
	make_spec(&s, 3, TV_CODEC_NONE);
	s.h.block_id = 0;
	expect(&s, UINT64_MAX, -EBADMSG, "block id 0");
	s.h.block_id = 1;
	expect(&s, UINT64_MAX, 0, NULL);
	s.h.flags = 1;
	expect(&s, UINT64_MAX, -EPROTONOSUPPORT, "reserved header field set (flags 0x00000001");
	s.h.flags = 0;
	s.h.reserved = 0x80000000u;
	expect(&s, UINT64_MAX, -EPROTONOSUPPORT, "bytes 60-63 0x80000000");
	s.h.reserved = 0;
	s.h.version = 1; /* version 1 has no bytes 60-63 to reserve: its CRC is there */
	expect(&s, UINT64_MAX, 0, NULL);
	s.h.flags = 0x100;
	expect(&s, UINT64_MAX, -EPROTONOSUPPORT, "flags 0x00000100");
	spec_free(&s);
	/* more records than raw bytes can hold: refused from the header alone */
	make_spec(&s, 3, TV_CODEC_NONE);
	s.h.record_count = (uint32_t)s.raw_len + 1;
	expect(&s, UINT64_MAX, -EBADMSG, "cannot fit in raw_bytes");
	spec_free(&s);
}

static void test_zstd_window_is_bounded(void **state)
{
	const size_t limit = (size_t)1 << TV_BLOCK_MAX_WINDOW_LOG;
	struct spec s;
	uint8_t *b, *rec;
	size_t len, last;
	int n;

	(void)state;
	/* a single-segment frame's window is its content size: exactly the limit passes ... */
	make_spec(&s, 0, TV_CODEC_ZSTD);
	s.zstd_level = 1;
	s.window_log = TV_BLOCK_MAX_WINDOW_LOG + 1; /* asks for more; zstd fits it to the data */
	for (n = 0; limit - s.raw_len > 40000; n++)
		add(&s, BASE_TS + (uint64_t)n, 1100);
	last = limit - s.raw_len; /* one framed record to fill it exactly: 3-byte length */
	rec = record_of_size(BASE_TS + (uint64_t)n, last - varint_len(last - 3));
	add_bytes(&s, rec, last - varint_len(last - 3));
	free(rec);
	n++;
	assert_int_equal(s.raw_len, limit);
	s.h.record_count = (uint32_t)n;
	s.h.max_ts_ns = BASE_TS + (uint64_t)n - 1;
	b = encode(&s, &len, UINT64_MAX);
	expect_block(b, len, 0, NULL);
	free(b);
	/* ... one more record (a window above 2^23) is refused, not given the memory */
	add(&s, BASE_TS + (uint64_t)n, 10);
	s.h.record_count++;
	s.h.max_ts_ns++;
	b = encode(&s, &len, UINT64_MAX);
	expect_block(b, len, -EMSGSIZE, "window above the limit");
	free(b);
	spec_free(&s);
}

/* ---- the record check against protobuf-c ---- */

/* xorshift64*: a fixed sequence, so a failure reproduces */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Damage a valid record in many ways (bit flips, bytes changed, cut, inserted, a field key or
 * varint rewritten) and require tv_block_check_record to accept exactly what protobuf-c's
 * unpack accepts: accepting more would let a block through that a reader cannot parse. The
 * one corner the damage reaches where the check is stricter (a field number 0, which
 * protobuf-c 1.4 keeps as an unknown field when its key takes two bytes) is counted, and every
 * such refusal must be one. */
static int has_field_zero(const Tracevault__V1__TraceRecord *u)
{
	for (unsigned i = 0; i < u->base.n_unknown_fields; i++)
		if (u->base.unknown_fields[i].tag == 0)
			return 1;
	for (size_t i = 0; i < u->n_req_headers; i++)
		for (unsigned j = 0; j < u->req_headers[i]->base.n_unknown_fields; j++)
			if (u->req_headers[i]->base.unknown_fields[j].tag == 0)
				return 1;
	for (size_t i = 0; i < u->n_resp_headers; i++)
		for (unsigned j = 0; j < u->resp_headers[i]->base.n_unknown_fields; j++)
			if (u->resp_headers[i]->base.unknown_fields[j].tag == 0)
				return 1;
	return 0;
}

static void test_record_check_agrees_with_protobuf_c(void **state)
{
	Tracevault__V1__Header h1 = TRACEVAULT__V1__HEADER__INIT, h2 = TRACEVAULT__V1__HEADER__INIT;
	Tracevault__V1__Header *hs[2] = { &h1, &h2 };
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;
	uint8_t base[512], buf[600];
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	size_t n, accepted = 0, stricter = 0;

	(void)state;
	r.ts_ns = BASE_TS;
	r.end_ns = BASE_TS + 99;
	r.pid = 77;
	r.comm = "curl";
	r.local = "127.0.0.1:80";
	r.method = "GET";
	r.path = "/a/b?c=d";
	r.status = 404;
	r.trace_id = "0af7651916cd43dd8448eb211c80319c";
	r.flags = 4;
	h1.name = "Host";
	h1.value = "example";
	h2.name = "Accept";
	h2.value = "*/*";
	r.req_headers = hs;
	r.n_req_headers = 2;
	r.resp_headers = hs + 1;
	r.n_resp_headers = 1;
	n = tracevault__v1__trace_record__pack(&r, base);
	assert_true(n < sizeof(base));
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = n, at, k = 1 + rnd(&seed) % 3;
		Tracevault__V1__TraceRecord *u;
		uint64_t ts = 0;
		int ours;

		memcpy(buf, base, n);
		while (k--) {
			at = len ? rnd(&seed) % len : 0;
			switch (rnd(&seed) % 6) {
			case 0: buf[at] ^= (uint8_t)(1u << (rnd(&seed) % 8)); break;
			case 1: buf[at] = (uint8_t)rnd(&seed); break;
			case 2: len = at; break;
			case 3: /* insert a byte */
				if (len < sizeof(buf) - 1) {
					memmove(buf + at + 1, buf + at, len - at);
					buf[at] = (uint8_t)rnd(&seed);
					len++;
				}
				break;
			case 4: /* a byte with the continuation bit, as in varints */
				buf[at] |= 0x80;
				break;
			default: /* a small value: a key of another wire type, a short length */
				buf[at] = (uint8_t)(rnd(&seed) % 0x40);
				break;
			}
		}
		ours = tv_block_check_record(buf, len, &ts, NULL, 0) == 0;
		u = tracevault__v1__trace_record__unpack(NULL, len, buf);
		if (ours && !u)
			fail_msg("iteration %d: the check accepts a record protobuf-c refuses", iter);
		if (ours && u->ts_ns != ts)
			fail_msg("iteration %d: ts_ns %llu, protobuf-c read %llu", iter,
				 (unsigned long long)ts, (unsigned long long)u->ts_ns);
		if (!ours && u) {
			if (!has_field_zero(u))
				fail_msg("iteration %d: protobuf-c accepts a record the check refuses",
					 iter);
			stricter++;
		}
		accepted += ours;
		tracevault__v1__trace_record__free_unpacked(u, NULL);
	}
	print_message("record check: %zu of 200000 damaged records accepted, %zu refused for a "
		      "field 0 that protobuf-c keeps\n", accepted, stricter);
	assert_true(accepted > 1000); /* the damage left many records valid: both sides were tried */
}

/* The check supports the field types TraceRecord and Header use; a new kind of field (a packed
 * scalar, a required field) must come with its rule in check_message. */
static void test_record_schema_is_covered(void **state)
{
	const ProtobufCMessageDescriptor *ds[] = { &tracevault__v1__trace_record__descriptor,
						   &tracevault__v1__header__descriptor };

	(void)state;
	for (size_t d = 0; d < 2; d++) {
		for (unsigned i = 0; i < ds[d]->n_fields; i++) {
			const ProtobufCFieldDescriptor *f = &ds[d]->fields[i];

			assert_int_not_equal(f->label, PROTOBUF_C_LABEL_REQUIRED);
			if (f->label == PROTOBUF_C_LABEL_REPEATED)
				assert_true(f->type == PROTOBUF_C_TYPE_MESSAGE ||
					    f->type == PROTOBUF_C_TYPE_STRING ||
					    f->type == PROTOBUF_C_TYPE_BYTES);
			assert_int_equal(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF, 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builder_blocks_pass),
		cmocka_unit_test(test_context_reused_across_versions),
		cmocka_unit_test(test_record_ending_in_a_length_key),
		cmocka_unit_test(test_v3_damage_is_refused),
		cmocka_unit_test(test_v3_random_damage_behind_right_crcs),
		cmocka_unit_test(test_record_ts_inside_header_range),
		cmocka_unit_test(test_records_sorted_by_ts),
		cmocka_unit_test(test_record_count_exact),
		cmocka_unit_test(test_raw_bytes_exact),
		cmocka_unit_test(test_record_size_limit),
		cmocka_unit_test(test_payload_must_decompress),
		cmocka_unit_test(test_payload_bytes_are_records),
		cmocka_unit_test(test_empty_block_is_one_instant),
		cmocka_unit_test(test_header_fields_in_range),
		cmocka_unit_test(test_zstd_window_is_bounded),
		cmocka_unit_test(test_record_schema_is_covered),
		cmocka_unit_test(test_record_check_agrees_with_protobuf_c),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
