/* Unit tests of the bounded block reader (proto/block_stream.c): it reads what the whole-block
 * reader reads, holds memory set by the zstd window and the largest record (never raw_bytes,
 * and never more than TV_BLOCK_STREAM_MAX_MEMORY_BYTES), takes every byte from its budget,
 * refuses each kind of damage with a readable reason, and every allocation that fails is
 * -ENOMEM or -ENOBUFS with a readable reason in err (malloc is wrapped: --wrap in
 * tests/CMakeLists.txt), for this reader and for tv_block_reader_open. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "proto/block.h"
#include "proto/block_stream.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"
#include "proto/varint.h"

#define TS0 1700000000000000000ull
#define ERR_LEN 256
#define GARBAGE 0xAA /* err is filled with it first: an unset err shows */

#include "fail_alloc.h" /* fail_countdown, injected: the Nth allocation fails */

/* ---- a block in memory, read through tv_block_read_fn ---- */

struct mem_file {
	const uint8_t *p;
	size_t len;         /* bytes the "file" has */
	uint64_t eio_at;    /* a read reaching this offset fails with -EIO (0: never) */
};

static ssize_t mem_read(void *arg, uint64_t off, void *buf, size_t len)
{
	struct mem_file *f = arg;

	if (f->eio_at && off + len > f->eio_at)
		return -EIO;
	if (off >= f->len)
		return 0;
	if (len > f->len - off)
		len = f->len - off;
	memcpy(buf, f->p + off, len);
	return (ssize_t)len;
}

/* ---- a budget that counts, remembers its peak and can say no ---- */

struct budget {
	size_t limit; /* 0: no limit */
	size_t held, peak, reserved, released;
};

static int b_reserve(void *arg, size_t bytes, char *why, size_t whylen)
{
	struct budget *b = arg;

	if (b->limit && bytes > b->limit - b->held) {
		snprintf(why, whylen, "test budget says no at %zu + %zu", b->held, bytes);
		return -ENOBUFS;
	}
	b->held += bytes;
	b->reserved += bytes;
	if (b->held > b->peak)
		b->peak = b->held;
	return 0;
}

static void b_release(void *arg, size_t bytes)
{
	struct budget *b = arg;

	assert_true(bytes <= b->held);
	b->held -= bytes;
	b->released += bytes;
}

/* ---- blocks made by hand (BLOCK.md, version 2), so any content and zstd setting goes ---- */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

struct raw {
	uint8_t *p;
	size_t len, cap;
	uint32_t count;
};

/* Append a TraceRecord {ts_ns, path of path_len bytes of c} with its length prefix. */
static void raw_add(struct raw *r, uint64_t ts_ns, size_t path_len, char c)
{
	Tracevault__V1__TraceRecord rec = TRACEVAULT__V1__TRACE_RECORD__INIT;
	char *path = __real_malloc(path_len + 1);
	size_t n;

	assert_non_null(path);
	memset(path, c, path_len);
	path[path_len] = '\0';
	rec.ts_ns = ts_ns;
	rec.path = path;
	n = tracevault__v1__trace_record__get_packed_size(&rec);
	if (r->cap - r->len < n + TV_VARINT_MAX_BYTES) {
		r->cap = (r->cap + n + TV_VARINT_MAX_BYTES) * 2;
		r->p = __real_realloc(r->p, r->cap);
		assert_non_null(r->p);
	}
	r->len += tv_varint_put(r->p + r->len, n);
	r->len += tracevault__v1__trace_record__pack(&rec, r->p + r->len);
	r->count++;
	free(path);
}

struct blk_opts {
	int codec;          /* TV_CODEC_* */
	int level;          /* zstd level (0: 3) */
	int window_log;     /* 0: the level's own */
	uint32_t count;     /* record_count to write */
	uint64_t min_ts, max_ts;
	uint64_t raw_bytes; /* raw_bytes to write */
};

static struct blk_opts opts_for(const struct raw *r, int codec, uint64_t min_ts, uint64_t max_ts)
{
	return (struct blk_opts){ .codec = codec, .count = r->count, .min_ts = min_ts,
				  .max_ts = max_ts, .raw_bytes = r->len };
}

static uint8_t *encode(const struct raw *r, const struct blk_opts *o, size_t *len)
{
	size_t bound = o->codec == TV_CODEC_ZSTD ? ZSTD_compressBound(r->len) : r->len;
	uint8_t *b = __real_malloc(TV_BLOCK_V2_HEADER_BYTES + bound + 1);
	size_t plen = r->len;

	assert_non_null(b);
	if (o->codec == TV_CODEC_ZSTD) {
		ZSTD_CCtx *z = ZSTD_createCCtx();

		assert_non_null(z);
		ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, o->level ? o->level : 3);
		if (o->window_log)
			ZSTD_CCtx_setParameter(z, ZSTD_c_windowLog, o->window_log);
		plen = ZSTD_compress2(z, b + TV_BLOCK_V2_HEADER_BYTES, bound, r->p, r->len);
		assert_false(ZSTD_isError(plen));
		ZSTD_freeCCtx(z);
	} else if (r->len) {
		memcpy(b + TV_BLOCK_V2_HEADER_BYTES, r->p, r->len);
	}
	memset(b, 0, TV_BLOCK_V2_HEADER_BYTES);
	put32(b + 0, TV_BLOCK_MAGIC);
	put16(b + 4, 2);
	put16(b + 6, (uint16_t)o->codec);
	put64(b + 8, 42);
	put64(b + 16, o->min_ts);
	put64(b + 24, o->max_ts);
	put32(b + 32, o->count);
	put64(b + 40, o->raw_bytes);
	put64(b + 48, plen);
	put32(b + 56, tv_crc32c(b + TV_BLOCK_V2_HEADER_BYTES, plen));
	put32(b + 108, tv_crc32c(b, 108));
	*len = TV_BLOCK_V2_HEADER_BYTES + plen;
	return b;
}

/* n records from TS0, step 1000 ns, paths of path_len bytes */
static struct raw records(unsigned n, size_t path_len)
{
	struct raw r = { 0 };

	for (unsigned i = 0; i < n; i++)
		raw_add(&r, TS0 + i * 1000ull, path_len, (char)('a' + i % 26));
	return r;
}

/* ---- reading ---- */

static void assert_reason(const char *err, const char *what)
{
	size_t n = strnlen(err, ERR_LEN);

	if (n == 0 || n == ERR_LEN)
		fail_msg("err is %s", n ? "not terminated" : "empty");
	for (size_t i = 0; i < n; i++)
		if (err[i] < 32 || err[i] > 126)
			fail_msg("err has byte 0x%02x at %zu: not a readable reason",
				 (unsigned char)err[i], i);
	if (what && !strstr(err, what))
		fail_msg("reason '%s' does not mention '%s'", err, what);
}

/* Open and read the whole block: returns the first error (or 0) with err set by it, the count
 * of records read in *n. */
static int read_all(struct mem_file *f, struct budget *b, unsigned *n, char *err)
{
	struct tv_block_budget tb = { .reserve = b_reserve, .release = b_release, .arg = b };
	struct tv_block_stream *s = NULL;
	const uint8_t *data;
	size_t len;
	uint64_t ts;
	int ret;

	memset(err, GARBAGE, ERR_LEN);
	*n = 0;
	ret = tv_block_stream_open(&s, mem_read, f, f->len, b ? &tb : NULL, err, ERR_LEN);
	if (ret) {
		assert_null(s);
		return ret;
	}
	while ((ret = tv_block_stream_next(s, &data, &len, &ts, err, ERR_LEN)) == 1)
		(*n)++;
	if (!ret)
		assert_int_equal(*n, tv_block_stream_records(s));
	tv_block_stream_free(s);
	if (b)
		assert_int_equal(b->held, 0); /* everything reserved came back */
	return ret;
}

static void stream_matches_reader(enum tv_codec codec)
{
	struct raw r = records(1000, 40);
	struct blk_opts o = opts_for(&r, codec, TS0, TS0 + 999 * 1000);
	size_t len, rlen, slen;
	uint8_t *blk = encode(&r, &o, &len);
	struct mem_file f = { blk, len, 0 };
	struct tv_block_reader *rd;
	struct tv_block_stream *s;
	const uint8_t *rdata, *sdata;
	uint64_t rts, sts;
	char err[ERR_LEN];
	int ret;

	assert_int_equal(tv_block_reader_open(&rd, blk, len, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	assert_memory_equal(tv_block_stream_header(s), tv_block_reader_header(rd),
			    sizeof(struct tv_block_header));
	while ((ret = tv_block_reader_next_raw(rd, &rdata, &rlen, &rts)) == 1) {
		assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 1);
		assert_int_equal(slen, rlen);
		assert_memory_equal(sdata, rdata, rlen);
		assert_int_equal(sts, rts);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_records(s), 1000);
	tv_block_stream_free(s);
	tv_block_reader_free(rd);
	free(blk);
	free(r.p);
}

static void test_stream_reads_what_the_reader_reads_zstd(void **state)
{
	(void)state;
	stream_matches_reader(TV_CODEC_ZSTD);
}

static void test_stream_reads_what_the_reader_reads_uncompressed(void **state)
{
	(void)state;
	stream_matches_reader(TV_CODEC_NONE);
}

static void test_empty_block_has_no_records(void **state)
{
	struct raw r = { 0 };
	char err[ERR_LEN];
	unsigned n;

	(void)state;
	for (int codec = TV_CODEC_NONE; codec <= TV_CODEC_ZSTD; codec++) {
		struct blk_opts o = opts_for(&r, codec, TS0, TS0);
		size_t len;
		uint8_t *blk = encode(&r, &o, &len);
		struct mem_file f = { blk, len, 0 };
		struct budget b = { 0 };

		assert_int_equal(read_all(&f, &b, &n, err), 0);
		assert_int_equal(n, 0);
		free(blk);
	}
}

/* The rel-08 shape: a few KB of zstd that claim tens of MiB of valid records. What the reader
 * holds is the window and one record buffer, not raw_bytes. */
static void test_memory_is_bounded_by_the_window_not_the_raw_size(void **state)
{
	struct raw r = records(384, 64 << 10); /* 24 MiB raw */
	struct blk_opts o = opts_for(&r, TV_CODEC_ZSTD, TS0, TS0 + 383 * 1000);
	size_t len;
	uint8_t *blk = encode(&r, &o, &len);
	struct mem_file f = { blk, len, 0 };
	struct budget b = { 0 };
	char err[ERR_LEN];
	unsigned n;

	(void)state;
	assert_true(len < r.len / 100);
	assert_int_equal(read_all(&f, &b, &n, err), 0);
	assert_int_equal(n, 384);
	if (b.peak > (4u << 20) || b.peak * 6 > r.len)
		fail_msg("held %zu bytes at most to read %zu raw bytes", b.peak, r.len);
	assert_int_equal(b.reserved, b.released);
	free(blk);
	free(r.p);
}

/* Records of the largest size behind the largest window: the most a stream needs, which
 * TV_BLOCK_STREAM_MAX_MEMORY_BYTES (and through it the server's least query budget) states. */
static void test_largest_window_and_record_fit_the_stated_maximum(void **state)
{
	struct raw r = { 0 };
	struct blk_opts o;
	struct budget b = { 0 };
	struct mem_file f;
	char err[ERR_LEN];
	uint8_t *blk;
	size_t len;
	unsigned n;

	(void)state;
	for (unsigned i = 0; i < 9; i++) /* 9 MiB: more than the window, so it is all used */
		raw_add(&r, TS0 + i, TV_BLOCK_MAX_RECORD_BYTES - 64, (char)('a' + i));
	o = opts_for(&r, TV_CODEC_ZSTD, TS0, TS0 + 8);
	o.level = 1;
	o.window_log = TV_BLOCK_MAX_WINDOW_LOG;
	blk = encode(&r, &o, &len);
	f = (struct mem_file){ blk, len, 0 };
	assert_int_equal(read_all(&f, &b, &n, err), 0);
	assert_int_equal(n, 9);
	if (b.peak <= (1u << TV_BLOCK_MAX_WINDOW_LOG) || b.peak > TV_BLOCK_STREAM_MAX_MEMORY_BYTES)
		fail_msg("peak %zu: want above the window %u and at most %u", b.peak,
			 1u << TV_BLOCK_MAX_WINDOW_LOG, TV_BLOCK_STREAM_MAX_MEMORY_BYTES);
	free(blk);

	/* one step up: a window the reader will not allocate is a block it refuses */
	o.window_log = TV_BLOCK_MAX_WINDOW_LOG + 1;
	blk = encode(&r, &o, &len);
	f = (struct mem_file){ blk, len, 0 };
	b = (struct budget){ 0 };
	assert_int_equal(read_all(&f, &b, &n, err), -EBADMSG);
	assert_reason(err, "window");
	assert_true(b.peak < (1u << TV_BLOCK_MAX_WINDOW_LOG));
	free(blk);
	free(r.p);
}

/* ---- damage: each refused with -EBADMSG (or the header's own errno) and a reason ---- */

static void expect_damage(const uint8_t *blk, size_t file_len, int want, const char *what)
{
	struct mem_file f = { blk, file_len, 0 };
	struct budget b = { 0 };
	char err[ERR_LEN];
	unsigned n;

	assert_int_equal(read_all(&f, &b, &n, err), want);
	assert_reason(err, what);
}

static void test_damaged_bytes_are_refused_before_any_record(void **state)
{
	struct raw r = records(100, 30);
	struct blk_opts o = opts_for(&r, TV_CODEC_ZSTD, TS0, TS0 + 99 * 1000);
	size_t len;
	uint8_t *blk = encode(&r, &o, &len);
	struct tv_block_stream *s = (void *)1;
	struct mem_file f = { blk, len, 0 };
	char err[ERR_LEN];

	(void)state;
	blk[len - 1] ^= 1; /* the payload: its CRC fails at open, before a record is out */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)),
			 -EBADMSG);
	assert_null(s);
	assert_reason(err, "payload checksum mismatch");
	blk[len - 1] ^= 1;
	blk[20] ^= 4; /* min_ts_ns */
	expect_damage(blk, len, -EBADMSG, "header checksum mismatch");
	blk[20] ^= 4;
	expect_damage(blk, len - 1, -EBADMSG, "size mismatch");
	expect_damage(blk, 10, -EINVAL, "truncated");
	f.eio_at = len - 5; /* a read error is passed on as it is */
	memset(err, GARBAGE, sizeof(err));
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), -EIO);
	assert_reason(err, "read at byte");
	free(blk);
	free(r.p);
}

static void test_records_that_break_the_format_are_refused(void **state)
{
	struct raw ok = records(10, 30), big = { 0 }, rev = { 0 };
	struct blk_opts o;
	uint8_t *blk;
	size_t len;

	(void)state;
	/* out of order */
	raw_add(&rev, TS0 + 5, 10, 'x');
	raw_add(&rev, TS0 + 3, 10, 'y');
	o = opts_for(&rev, TV_CODEC_NONE, TS0, TS0 + 5);
	blk = encode(&rev, &o, &len);
	expect_damage(blk, len, -EBADMSG, "out of order");
	free(blk);
	/* outside the header's range */
	o = opts_for(&ok, TV_CODEC_ZSTD, TS0, TS0 + 5000);
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "outside the header's");
	free(blk);
	/* miscounted either way */
	o = opts_for(&ok, TV_CODEC_ZSTD, TS0, TS0 + 9000);
	o.count = 9;
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "more records than");
	free(blk);
	o.count = 11;
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "record_count says 11");
	free(blk);
	/* raw_bytes says more, or less, than the payload decompresses to */
	o = opts_for(&ok, TV_CODEC_ZSTD, TS0, TS0 + 9000);
	o.raw_bytes = ok.len + 1;
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "does not decompress to");
	free(blk);
	o.raw_bytes = ok.len - 1;
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "more than raw_bytes");
	free(blk);
	/* a record cut by the end of the payload */
	o = opts_for(&ok, TV_CODEC_NONE, TS0, TS0 + 9000);
	ok.len -= 3;
	o.raw_bytes = ok.len;
	blk = encode(&ok, &o, &len);
	expect_damage(blk, len, -EBADMSG, "ends inside record 9");
	free(blk);
	/* a payload that is not zstd, behind a good CRC */
	o = opts_for(&ok, TV_CODEC_NONE, TS0, TS0 + 9000);
	blk = encode(&ok, &o, &len);
	put16(blk + 6, TV_CODEC_ZSTD);
	put32(blk + 108, tv_crc32c(blk, 108));
	expect_damage(blk, len, -EBADMSG, "does not decompress");
	free(blk);
	/* a record above the record limit is refused from its length, before it is read */
	raw_add(&big, TS0, TV_BLOCK_MAX_RECORD_BYTES, 'z');
	o = opts_for(&big, TV_CODEC_NONE, TS0, TS0);
	blk = encode(&big, &o, &len);
	expect_damage(blk, len, -EBADMSG, "above the 1048576-byte record limit");
	free(blk);
	free(ok.p);
	free(big.p);
	free(rev.p);
}

/* The payload is read twice (CRC at open, then records): a file changed in place in between
 * is reported, at the end of the records or when a reader stops early (finish). */
static void test_file_changed_while_read_is_reported(void **state)
{
	struct raw r = records(3000, 40);
	struct blk_opts o = opts_for(&r, TV_CODEC_NONE, TS0, TS0 + 2999 * 1000);
	size_t len, dlen;
	uint8_t *blk = encode(&r, &o, &len);
	struct mem_file f = { blk, len, 0 };
	struct tv_block_stream *s;
	const uint8_t *data;
	char err[ERR_LEN];
	uint64_t ts;
	int ret, n = 0;

	(void)state;
	/* unchanged: finish after one record says so */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_next(s, &data, &dlen, &ts, err, sizeof(err)), 1);
	assert_int_equal(tv_block_stream_finish(s, err, sizeof(err)), 0);
	tv_block_stream_free(s);
	/* changed after the first record: read to the end */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_next(s, &data, &dlen, &ts, err, sizeof(err)), 1);
	blk[len - 2] ^= 1; /* inside the last record's path: it still parses */
	memset(err, GARBAGE, sizeof(err));
	while ((ret = tv_block_stream_next(s, &data, &dlen, &ts, err, sizeof(err))) == 1)
		n++;
	assert_int_equal(ret, -EBADMSG);
	assert_int_equal(n, 2999);
	assert_reason(err, "changed while it was read");
	tv_block_stream_free(s);
	/* or stop early: finish reads the rest */
	blk[len - 2] ^= 1;
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_next(s, &data, &dlen, &ts, err, sizeof(err)), 1);
	blk[len - 2] ^= 1;
	memset(err, GARBAGE, sizeof(err));
	assert_int_equal(tv_block_stream_finish(s, err, sizeof(err)), -EBADMSG);
	assert_reason(err, "changed while it was read");
	tv_block_stream_free(s);
	free(blk);
	free(r.p);
}

/* ---- memory: the budget's no, and malloc's ---- */

static void test_budget_refusal_is_enobufs_with_its_reason(void **state)
{
	struct raw r = records(384, 64 << 10);
	struct blk_opts o = opts_for(&r, TV_CODEC_ZSTD, TS0, TS0 + 383 * 1000);
	size_t len, limits[] = { 1, 100, 70 << 10, 200 << 10, 1 << 20, 2 << 20, 3 << 20 };
	uint8_t *blk = encode(&r, &o, &len);
	int refused = 0, read = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		struct mem_file f = { blk, len, 0 };
		struct budget b = { .limit = limits[i] };
		char err[ERR_LEN];
		unsigned n;
		int ret = read_all(&f, &b, &n, err);

		if (ret) {
			assert_int_equal(ret, -ENOBUFS);
			assert_reason(err, "test budget says no");
			refused++;
		} else {
			assert_int_equal(n, 384);
			assert_true(b.peak <= limits[i]);
			read++;
		}
		assert_int_equal(b.reserved, b.released);
	}
	/* the small limits refuse at open, on zstd's tables and at the window */
	assert_true(refused >= 4);
	assert_true(read >= 1);
	free(blk);
	free(r.p);
}

/* rel-13's kind: whichever allocation fails, the caller gets -ENOMEM and a reason, not the
 * bytes that happened to be in its buffer. */
static void test_every_failed_allocation_is_enomem_with_a_reason(void **state)
{
	struct raw r = records(200, 2000);
	struct blk_opts o = opts_for(&r, TV_CODEC_ZSTD, TS0, TS0 + 199 * 1000);
	size_t len;
	uint8_t *blk = encode(&r, &o, &len);
	unsigned k, failures = 0;

	(void)state;
	for (k = 1; k < 1000; k++) {
		struct mem_file f = { blk, len, 0 };
		struct budget b = { 0 };
		struct tv_block_reader *rd = NULL;
		char err[ERR_LEN];
		unsigned n;
		int ret;

		injected = 0;
		fail_countdown = k;
		ret = read_all(&f, &b, &n, err);
		fail_countdown = 0;
		if (!injected) {
			assert_int_equal(ret, 0);
			break;
		}
		failures++;
		assert_int_equal(ret, -ENOMEM);
		assert_reason(err, "out of memory");
		assert_int_equal(b.reserved, b.released);

		/* the whole-block reader too */
		injected = 0;
		memset(err, GARBAGE, sizeof(err));
		fail_countdown = k;
		ret = tv_block_reader_open(&rd, blk, len, err, sizeof(err));
		fail_countdown = 0;
		if (injected) {
			assert_int_equal(ret, -ENOMEM);
			assert_reason(err, "out of memory");
		}
		tv_block_reader_free(rd);
	}
	assert_true(k < 1000);
	assert_true(failures >= 3); /* the stream, its buffers, zstd's own */
	free(blk);
	free(r.p);
}

/* ---- version 3: pages read one at a time, a seek by ts, the trace-id filter ---- */

#define V3_N 20000

/* V3_N records 1 us apart from TS0, every fourth with the trace id of its number. */
static uint8_t *v3_block(size_t *len)
{
	struct tv_block_builder *bb = tv_block_builder_new();
	Tracevault__V1__TraceRecord r;
	char trace[40];
	void *out;

	for (int i = 0; i < V3_N; i++) {
		tracevault__v1__trace_record__init(&r);
		r.ts_ns = TS0 + (uint64_t)i * 1000;
		r.latency_ns = (uint64_t)i * 7919 % 100000;
		r.path = i % 5 ? "/a" : "/b";
		r.status = 200;
		snprintf(trace, sizeof(trace), "%032x", i);
		r.trace_id = i % 4 ? "" : trace;
		assert_int_equal(tv_block_builder_add(bb, &r), 0);
	}
	assert_int_equal(tv_block_builder_seal(bb, 3, TV_CODEC_ZSTD, 3, &out, len), 0);
	tv_block_builder_free(bb);
	return out;
}

static void test_v3_stream_reads_what_the_reader_reads_and_seeks(void **state)
{
	size_t len, rlen, slen;
	uint8_t *blk = v3_block(&len);
	struct mem_file f = { blk, len, 0 };
	struct budget b = { 0 };
	struct tv_block_budget tb = { .reserve = b_reserve, .release = b_release, .arg = &b };
	struct tv_block_reader *rd;
	struct tv_block_stream *s;
	const uint8_t *rdata, *sdata;
	uint64_t rts, sts, from = TS0 + 12345 * 1000ull + 1;
	char err[ERR_LEN];
	unsigned n = 0;
	int ret;

	(void)state;
	assert_int_equal(tv_block_reader_open(&rd, blk, len, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, &tb, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_header(s)->version, 3);
	while ((ret = tv_block_reader_next_raw(rd, &rdata, &rlen, &rts)) == 1) {
		assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 1);
		assert_int_equal(slen, rlen);
		assert_memory_equal(sdata, rdata, rlen);
		assert_int_equal(sts, rts);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_rows_decoded(s), V3_N);
	assert_int_equal(tv_block_stream_finish(s, err, sizeof(err)), 0);
	tv_block_stream_free(s);
	tv_block_reader_free(rd);
	print_message("v3 stream: peak %zu bytes for a %zu-byte block of %d records\n", b.peak,
		      len, V3_N);
	assert_true(b.peak <= TV_BLOCK_STREAM_MAX_MEMORY_BYTES);
	assert_int_equal(b.held, 0);

	/* a seek to the middle: the first record is the first at or after it, the rows decoded
	 * are those of its page and after, not the block's */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, &tb, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_seek(s, from), 1);
	assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 1);
	assert_int_equal(sts, TS0 + 12346 * 1000ull);
	assert_true(tv_block_stream_rows_decoded(s) <= 12346 % TV_BLOCK_V3_PAGE_RECORDS + 1);
	n = 1;
	while ((ret = tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err))) == 1)
		n++;
	assert_int_equal(ret, 0);
	assert_int_equal(n, V3_N - 12346);
	assert_true(tv_block_stream_rows_decoded(s) < V3_N - 12346 + TV_BLOCK_V3_PAGE_RECORDS);
	tv_block_stream_free(s);
	/* past the end: nothing, no page read */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, &tb, err, sizeof(err)), 0);
	tv_block_stream_seek(s, TS0 + V3_N * 1000ull);
	assert_int_equal(tv_block_stream_next(s, &sdata, &slen, &sts, err, sizeof(err)), 0);
	assert_int_equal(tv_block_stream_rows_decoded(s), 0);
	tv_block_stream_free(s);
	assert_int_equal(b.held, 0);
	free(blk);
}

/* ---- version 3: a record left unbuilt, built by the caller (the server's batches) ---- */

#define UNBUILT_N 6000

static uint64_t rnd(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
	return *seed >> 33;
}

/* Random record i into want (its packed bytes, returned: its length): any field present or
 * not, values of every varint length, strings from a few (dictionary) or new ones of random
 * length, trace ids lower-
 * hex (binary column), upper-case or odd (kept as strings), span ids alike, and some with
 * headers and a body (fields without a column: kept beside the columns). */
static size_t unbuilt_record(uint64_t i, uint64_t *seed, uint8_t *want)
{
	static const char *words[] = { "", "GET", "nginx", "/api/v1/items?page=2", "svc.internal:8004",
				       "10.0.0.5:8080", "server", "client", "1.1" };
	Tracevault__V1__TraceRecord r;
	Tracevault__V1__Header h, *hp[1] = { &h };
	char str[9][48], trace[40], span[24];

	tracevault__v1__trace_record__init(&r);
	r.ts_ns = TS0 + i * 997;
	r.latency_ns = rnd(seed) % 4 ? rnd(seed) << (rnd(seed) % 30) : 0;
	r.end_ns = rnd(seed) % 3 ? r.ts_ns + r.latency_ns + rnd(seed) % 3 : rnd(seed) % 2 ? 0 : r.ts_ns;
	r.pid = (uint32_t)(rnd(seed) % 3 ? rnd(seed) % 70000 : 0);
	for (int k = 0; k < 9; k++) {
		size_t n = rnd(seed) % sizeof(str[k]); /* new strings of every length to 47 */

		if (rnd(seed) % 4) {
			snprintf(str[k], sizeof(str[k]), "%s", words[rnd(seed) % 9]);
			continue;
		}
		for (size_t j = 0; j < n; j++)
			str[k][j] = (char)('!' + rnd(seed) % 90);
		str[k][n] = '\0';
	}
	r.comm = str[0];
	r.local = str[1];
	r.remote = str[2];
	r.method = str[3];
	r.path = str[4];
	r.role = str[5];
	r.host = str[6];
	r.http_version = str[7];
	r.status = (uint32_t)(rnd(seed) % 5 ? 100 + rnd(seed) % 500 : 0);
	r.req_body_bytes = rnd(seed) % 2 ? rnd(seed) : 0;
	r.resp_body_bytes = rnd(seed) % 1000000;
	switch (rnd(seed) % 5) {
	case 0:
	case 1:
		snprintf(trace, sizeof(trace), "%016llx%016llx", (unsigned long long)rnd(seed),
			 (unsigned long long)(i / 2));
		break;
	case 2:
		snprintf(trace, sizeof(trace), "%016llX%016llX", (unsigned long long)rnd(seed),
			 (unsigned long long)i);
		break;
	case 3:
		snprintf(trace, sizeof(trace), "odd-%llu", (unsigned long long)rnd(seed));
		break;
	default:
		trace[0] = '\0';
	}
	r.trace_id = trace;
	switch (rnd(seed) % 3) {
	case 0:
		snprintf(span, sizeof(span), "%016llx", (unsigned long long)rnd(seed));
		break;
	case 1:
		snprintf(span, sizeof(span), "S%llu", (unsigned long long)rnd(seed));
		break;
	default:
		span[0] = '\0';
	}
	r.span_id = span;
	r.flags = (uint32_t)(rnd(seed) % 10 ? 0 : rnd(seed) % 8);
	if (rnd(seed) % 5 == 0) {
		tracevault__v1__header__init(&h);
		h.name = "x-req";
		h.value = str[8];
		r.n_req_headers = 1;
		r.req_headers = hp;
		r.resp_body.data = (uint8_t *)str[8];
		r.resp_body.len = strlen(str[8]);
	}
	return tracevault__v1__trace_record__pack(&r, want);
}

/* tv_block_stream_next_unbuilt + tv_block_stream_write give every record's exact bytes, the
 * same as tv_block_stream_next, on random records of both codecs and from a seek; records with
 * kept fields come built. */
static void test_v3_unbuilt_records_are_built_byte_for_byte(void **state)
{
	static uint8_t want[UNBUILT_N][1024]; /* a record is under 800 bytes */
	static size_t want_len[UNBUILT_N];
	static uint8_t out[1024];
	struct budget b = { 0 };
	struct tv_block_budget tb = { .reserve = b_reserve, .release = b_release, .arg = &b };
	uint64_t seed = 12;
	char err[ERR_LEN];

	(void)state;
	for (int codec = 0; codec < 2; codec++) {
		struct tv_block_builder *bb = tv_block_builder_new();
		unsigned unbuilt = 0, built = 0;
		struct tv_block_stream *s, *s2;
		const uint8_t *data, *data2;
		size_t len, len2, blen;
		uint64_t ts, ts2;
		struct mem_file f;
		void *blk;
		int ret, from;

		for (int i = 0; i < UNBUILT_N; i++) {
			Tracevault__V1__TraceRecord *r;

			want_len[i] = unbuilt_record((uint64_t)i, &seed, want[i]);
			assert_true(want_len[i] <= sizeof(want[i]));
			r = tracevault__v1__trace_record__unpack(NULL, want_len[i], want[i]);
			assert_non_null(r);
			assert_int_equal(tv_block_builder_add(bb, r), 0);
			tracevault__v1__trace_record__free_unpacked(r, NULL);
		}
		assert_int_equal(tv_block_builder_seal(bb, 5, codec ? TV_CODEC_ZSTD : TV_CODEC_NONE,
						       3, &blk, &blen), 0);
		tv_block_builder_free(bb);
		f = (struct mem_file){ blk, blen, 0 };
		for (int pass = 0; pass < 2; pass++) {
			from = pass ? UNBUILT_N / 2 + 1 : 0;
			assert_int_equal(tv_block_stream_open(&s, mem_read, &f, blen, &tb, err,
							      sizeof(err)), 0);
			assert_int_equal(tv_block_stream_open(&s2, mem_read, &f, blen, &tb, err,
							      sizeof(err)), 0);
			assert_int_equal(tv_block_stream_header(s)->version, 3);
			if (pass) {
				assert_int_equal(tv_block_stream_seek(s, TS0 + from * 997ull), 1);
				assert_int_equal(tv_block_stream_seek(s2, TS0 + from * 997ull), 1);
			}
			/* nothing was left unbuilt yet */
			assert_int_equal(tv_block_stream_write(s, out, err, sizeof(err)), -EINVAL);
			for (int i = from; i < UNBUILT_N; i++) {
				ret = tv_block_stream_next_unbuilt(s, &data, &len, &ts, err,
								   sizeof(err));
				assert_int_equal(ret, 1);
				assert_int_equal(ts, TS0 + i * 997ull);
				assert_int_equal(len, want_len[i]);
				if (!data) {
					memset(out, GARBAGE, sizeof(out));
					assert_int_equal(tv_block_stream_write(s, out, err,
									       sizeof(err)), 0);
					assert_memory_equal(out, want[i], len);
					assert_int_equal(out[len], GARBAGE); /* not one byte more */
					unbuilt++;
				} else {
					assert_memory_equal(data, want[i], len);
					assert_int_equal(tv_block_stream_write(s, out, err,
									       sizeof(err)),
							 -EINVAL);
					built++;
				}
				assert_int_equal(tv_block_stream_next(s2, &data2, &len2, &ts2, err,
								      sizeof(err)), 1);
				assert_int_equal(len2, len);
				assert_memory_equal(data2, want[i], len);
			}
			assert_int_equal(tv_block_stream_next_unbuilt(s, &data, &len, &ts, err,
								       sizeof(err)), 0);
			assert_int_equal(tv_block_stream_next(s2, &data2, &len2, &ts2, err,
							      sizeof(err)), 0);
			tv_block_stream_free(s);
			tv_block_stream_free(s2);
		}
		print_message("codec %d: %u records left unbuilt, %u built\n", codec, unbuilt, built);
		assert_true(unbuilt > UNBUILT_N);  /* most, in both passes */
		assert_true(built > UNBUILT_N / 10); /* those with headers and a body */
		assert_int_equal(b.held, 0);
		free(blk);
	}
}

static void test_v3_trace_filter_answers_before_any_page(void **state)
{
	size_t len;
	uint8_t *blk = v3_block(&len);
	struct mem_file f = { blk, len, 0 };
	struct tv_block_stream *s;
	char err[ERR_LEN], ids[3][33];
	unsigned yes = 0;

	(void)state;
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	snprintf(ids[0], 33, "%032x", 12344); /* a record's (12344 % 4 == 0) */
	assert_int_equal(tv_block_stream_may_hold_trace(s, ids[0], 1, 33, err, sizeof(err)), 1);
	snprintf(ids[0], 33, "%032X", 4); /* case does not matter */
	assert_int_equal(tv_block_stream_may_hold_trace(s, ids[0], 1, 33, err, sizeof(err)), 1);
	for (int i = 0; i < 1000; i++) {
		snprintf(ids[0], 33, "%032x", 1000000 + i);
		yes += (unsigned)tv_block_stream_may_hold_trace(s, ids[0], 1, 33, err, sizeof(err));
	}
	print_message("v3 trace filter: %u of 1000 absent ids test positive\n", yes);
	assert_true(yes < 50);
	/* one of several present is enough */
	snprintf(ids[0], 33, "%032x", 2000001);
	snprintf(ids[1], 33, "%032x", 2000002);
	snprintf(ids[2], 33, "%032x", 8);
	assert_int_equal(tv_block_stream_may_hold_trace(s, ids[0], 3, 33, err, sizeof(err)), 1);
	assert_int_equal(tv_block_stream_rows_decoded(s), 0);
	tv_block_stream_free(s);
	/* a filter whose CRC fails is damage, not "absent" */
	{
		uint32_t pages, dl;

		memcpy(&pages, blk + 108, 4);
		dl = pages * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
		blk[TV_BLOCK_V3_HEADER_BYTES + dl] ^= 1;
		assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err,
						      sizeof(err)), 0);
		assert_int_equal(tv_block_stream_may_hold_trace(s, ids[0], 3, 33, err, sizeof(err)),
				 -EBADMSG);
		assert_reason(err, "trace-id filter checksum mismatch");
		tv_block_stream_free(s);
	}
	free(blk);
}

static void test_v3_damaged_page_is_refused_when_read(void **state)
{
	size_t len;
	uint8_t *blk = v3_block(&len);
	struct mem_file f = { blk, len, 0 };
	struct tv_block_stream *s;
	const uint8_t *data;
	size_t dlen;
	uint64_t ts;
	char err[ERR_LEN];
	int ret;

	(void)state;
	blk[len - 3] ^= 0x20; /* in the last page */
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)), 0);
	while ((ret = tv_block_stream_next(s, &data, &dlen, &ts, err, sizeof(err))) == 1)
		;
	assert_int_equal(ret, -EBADMSG);
	assert_reason(err, "checksum mismatch");
	assert_true(tv_block_stream_records(s) > 0);
	tv_block_stream_free(s);
	/* a directory bit: refused at open */
	blk[len - 3] ^= 0x20;
	blk[TV_BLOCK_V3_HEADER_BYTES + 3] ^= 1;
	assert_int_equal(tv_block_stream_open(&s, mem_read, &f, len, NULL, err, sizeof(err)),
			 -EBADMSG);
	assert_reason(err, "directory checksum mismatch");
	free(blk);
}

static void test_v3_every_failed_allocation_is_enomem_with_a_reason(void **state)
{
	size_t len;
	uint8_t *blk = v3_block(&len);
	unsigned k, failures = 0;

	(void)state;
	for (k = 1; k < 1000; k++) {
		struct mem_file f = { blk, len, 0 };
		struct budget b = { 0 };
		char err[ERR_LEN];
		unsigned n;
		int ret;

		injected = 0;
		fail_countdown = k;
		ret = read_all(&f, &b, &n, err);
		fail_countdown = 0;
		if (!injected) {
			assert_int_equal(ret, 0);
			assert_int_equal(n, V3_N);
			break;
		}
		failures++;
		assert_int_equal(ret, -ENOMEM);
		assert_reason(err, "out of memory");
		assert_int_equal(b.reserved, b.released);
	}
	assert_true(k < 1000);
	assert_true(failures >= 4);
	free(blk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_reads_what_the_reader_reads_zstd),
		cmocka_unit_test(test_stream_reads_what_the_reader_reads_uncompressed),
		cmocka_unit_test(test_empty_block_has_no_records),
		cmocka_unit_test(test_memory_is_bounded_by_the_window_not_the_raw_size),
		cmocka_unit_test(test_largest_window_and_record_fit_the_stated_maximum),
		cmocka_unit_test(test_damaged_bytes_are_refused_before_any_record),
		cmocka_unit_test(test_records_that_break_the_format_are_refused),
		cmocka_unit_test(test_file_changed_while_read_is_reported),
		cmocka_unit_test(test_budget_refusal_is_enobufs_with_its_reason),
		cmocka_unit_test(test_every_failed_allocation_is_enomem_with_a_reason),
		cmocka_unit_test(test_v3_stream_reads_what_the_reader_reads_and_seeks),
		cmocka_unit_test(test_v3_unbuilt_records_are_built_byte_for_byte),
		cmocka_unit_test(test_v3_trace_filter_answers_before_any_page),
		cmocka_unit_test(test_v3_damaged_page_is_refused_when_read),
		cmocka_unit_test(test_v3_every_failed_allocation_is_enomem_with_a_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
