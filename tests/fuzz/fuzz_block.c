/* libFuzzer harness: every reader of trace blocks (proto/BLOCK.md, versions 1, 2 and 3): the
 * header parser, the Write-time check fed in pieces (block_check.c), the in-memory reader
 * (block.c) and the server's streaming reader (block_stream.c, pages and trace-id filter).
 * Input: byte 0 options, then the block.
 *   bit 0    put right every CRC32C the block holds (header, payload, v3 directory, filter and
 *            pages) before reading, so mutations reach past the checksums
 *   bit 1    also set payload_bytes to the bytes that follow the header
 *   bits 2-3 the piece size the check is fed in: 1, 7, 4096 bytes or all at once
 *   bits 4-7 where the second stream seeks (that many sixteenths of [min_ts, max_ts])
 * Properties beyond "no crash": the check gives the same answer fed in pieces as on the whole
 * block, and a block it accepts (what the server acknowledges) reads without an error through
 * both readers, which give the same records (bytes and ts_ns, record_count of them, each one
 * protobuf-c unpacks); a v3 block's trace-id filter answers "maybe" for every 32-byte trace id
 * of its records, its pages read field by field without an error, and a seek hands out the
 * records from the seek time on. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "proto/block.h"
#include "proto/block_check.h"
#include "proto/block_stream.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"

#include "fuzz_check.h"

#define MAX_RECS 4096

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v; /* little-endian hosts (the build's targets) */
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Make every CRC of the block in b (len bytes) right for its bytes, as a writer would. */
static void fix_crcs(uint8_t *b, size_t len, bool fix_size)
{
	uint32_t hb;
	uint64_t pay;

	if (len < TV_BLOCK_PREFIX_BYTES)
		return;
	hb = tv_block_header_bytes(b);
	if (!hb || len < hb)
		return;
	if (fix_size) {
		uint64_t n = len - hb;

		memcpy(b + 48, &n, 8);
	}
	pay = get64(b + 48);
	if (pay > len - hb)
		pay = len - hb;
	if (hb == TV_BLOCK_V3_HEADER_BYTES) {
		uint8_t *dir = b + hb;
		uint64_t pages = get32(b + 108), bloom = get32(b + 112);
		uint64_t dir_bytes = pages * TV_BLOCK_V3_PAGE_ENTRY_BYTES, off;

		if (dir_bytes <= pay) {
			off = dir_bytes + (bloom <= pay - dir_bytes ? bloom : 0);
			for (uint64_t i = 0; i < pages; i++) {
				uint8_t *e = dir + i * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
				uint32_t stored = get32(e + 20);

				if (stored > pay - off)
					break;
				put32(e + 28, tv_crc32c(b + hb + off, stored));
				off += stored;
			}
			put32(b + 116, tv_crc32c(dir, dir_bytes));
			if (bloom <= pay - dir_bytes)
				put32(b + 120, tv_crc32c(dir + dir_bytes, bloom));
		}
	}
	put32(b + 56, tv_crc32c(b + hb, pay));
	put32(b + hb - 4, tv_crc32c(b, hb - 4));
}

struct mem {
	const uint8_t *p;
	size_t n;
};

static ssize_t mem_read(void *arg, uint64_t off, void *buf, size_t len)
{
	const struct mem *m = arg;

	if (off >= m->n)
		return 0;
	if (len > m->n - off)
		len = m->n - off;
	memcpy(buf, m->p + off, len);
	return (ssize_t)len;
}

/* A small version 3 block the check context reads before the input's, as the server reads
 * a segment's blocks with one context (made in LLVMFuzzerInitialize). */
static void *warm_block;
static size_t warm_len;

/* The check fed piece bytes at a time (0: all at once), by a context that has checked
 * warm_block first. */
static int check_in_pieces(const uint8_t *b, size_t len, size_t piece)
{
	struct tv_block_check *c = tv_block_check_new();
	struct tv_block_header h;
	char err[256];
	size_t off;
	int ret;

	if (!c)
		return -ENOMEM;
	FUZZ_CHECK(tv_block_header_parse(warm_block, warm_len, &h, err, sizeof(err)) == 0);
	FUZZ_CHECK(tv_block_check_begin(c, &h, err, sizeof(err)) == 0);
	FUZZ_CHECK(tv_block_check_feed(c, (uint8_t *)warm_block + h.header_bytes,
				       warm_len - h.header_bytes, err, sizeof(err)) == 0);
	FUZZ_CHECK(tv_block_check_end(c, err, sizeof(err)) == 0);
	ret = tv_block_header_parse(b, len, &h, err, sizeof(err));
	if (ret)
		goto out;
	/* tv_block_validate's size and payload CRC rules, before the pieces */
	if (tv_block_total_bytes(&h) != len ||
	    tv_crc32c(b + h.header_bytes, h.payload_bytes) != h.payload_crc32c) {
		ret = -EBADMSG;
		goto out;
	}
	ret = tv_block_check_begin(c, &h, err, sizeof(err));
	for (off = h.header_bytes; !ret && off < len;) {
		size_t n = piece && piece < len - off ? piece : len - off;

		ret = tv_block_check_feed(c, b + off, n, err, sizeof(err));
		off += n;
	}
	if (!ret)
		ret = tv_block_check_end(c, err, sizeof(err));
out:
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "in pieces of %zu: %d %s\n", piece, ret, ret ? err : "");
	tv_block_check_free(c);
	return ret;
}

/* ---- the seed corpus: blocks sealed by the real builder (TV_FUZZ_WRITE_SEEDS=DIR) ---- */

static void seed_record(Tracevault__V1__TraceRecord *r, uint64_t ts, unsigned i,
			Tracevault__V1__Header **hdrs, char *trace)
{
	static Tracevault__V1__Header h[2] = { TRACEVAULT__V1__HEADER__INIT,
					       TRACEVAULT__V1__HEADER__INIT };
	static const char *paths[] = { "/api/v1/items?id=7", "/", "/health", "/login" };

	tracevault__v1__trace_record__init(r);
	r->ts_ns = ts;
	r->latency_ns = 1000000 + i * 1777;
	r->end_ns = ts + r->latency_ns;
	r->pid = 4242 + i % 3;
	r->comm = i % 2 ? "nginx" : "curl";
	r->local = "127.0.0.1:8080";
	r->remote = i % 3 ? "[::1]:50000" : "127.0.0.1:41234";
	r->method = i % 4 == 3 ? "POST" : "GET";
	r->path = (char *)paths[i % 4];
	r->status = i % 5 == 4 ? 404 : 200;
	r->resp_body_bytes = 1578 + i;
	r->role = i % 2 ? "server" : "client";
	r->host = "example.com:8080";
	r->http_version = "1.1";
	if (i % 3 == 0) {
		snprintf(trace, 33, "4bf92f3577b34da6a3ce929d0e0e%04x", i & 0xffff);
		r->trace_id = trace;
		r->span_id = "00f067aa0ba902b7";
	}
	if (i % 7 == 1) {
		h[0].name = "User-Agent";
		h[0].value = "curl/7.88.1";
		h[1].name = "Accept";
		h[1].value = "*/*";
		hdrs[0] = &h[0];
		hdrs[1] = &h[1];
		r->n_req_headers = 2;
		r->req_headers = hdrs;
	}
	if (i % 11 == 2) {
		r->req_body.data = (uint8_t *)"{\"k\":1}";
		r->req_body.len = 7;
		r->req_content_type = "application/json";
	}
}

static void write_seed(const char *dir, const char *name, unsigned version, enum tv_codec codec,
		       unsigned records, int loss)
{
	struct tv_block_builder *b = tv_block_builder_new();
	struct tv_block_loss l = { 3, 0, 1, 0, 0, 2 };
	char path[4096], trace[33];
	void *out = NULL;
	size_t len = 0;
	uint8_t opt = 0x55; /* fix CRCs (a no-op here), feed the check in 7-byte pieces, seek
			     * 5/16 in */
	FILE *f;

	if (!b || tv_block_builder_set_version(b, version))
		abort();
	for (unsigned i = 0; i < records; i++) {
		Tracevault__V1__TraceRecord r;
		Tracevault__V1__Header *hdrs[2];

		seed_record(&r, 1767225600000000000ull + i * 1000000ull + (i % 4) * 17, i, hdrs,
			    trace);
		if (tv_block_builder_add(b, &r))
			abort();
	}
	if (loss)
		tv_block_builder_set_loss(b, &l, 1767225600000000000ull);
	if (tv_block_builder_seal(b, 0x1234567800000000ull + records, codec,
				  TV_BLOCK_DEFAULT_ZSTD_LEVEL, &out, &len))
		abort();
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&opt, 1, 1, f) != 1 || fwrite(out, 1, len, f) != len || fclose(f))
		abort();
	fprintf(stderr, "%s: %zu bytes\n", path, len + 1);
	free(out);
	tv_block_builder_free(b);
}

/* A version 3 block of records [first, first + n) without trace ids (no filter), as the
 * builder seals it; *len its bytes. */
static uint8_t *seal_v3(unsigned first, unsigned n, size_t *len)
{
	struct tv_block_builder *b = tv_block_builder_new();
	void *out = NULL;

	for (unsigned i = first; b && i < first + n; i++) {
		Tracevault__V1__TraceRecord r;
		Tracevault__V1__Header *hdrs[2];
		char trace[33];

		seed_record(&r, 1767225600000000000ull + i * 1000000ull, i, hdrs, trace);
		r.trace_id = r.span_id = "";
		if (tv_block_builder_add(b, &r))
			abort();
	}
	if (!b || tv_block_builder_seal(b, 0x5111ced, TV_CODEC_ZSTD, 3, &out, len))
		abort();
	tv_block_builder_free(b);
	return out;
}

/* Two pages in a small block: the builder starts a page every 2048 records, so a seed of that
 * size would be slow to fuzz; the pages of two sealed blocks are put under one directory
 * instead (each page is self-contained: BLOCK.md). */
static void write_two_page_seed(const char *dir)
{
	size_t la, lb, h = TV_BLOCK_V3_HEADER_BYTES, e = TV_BLOCK_V3_PAGE_ENTRY_BYTES;
	uint8_t *a = seal_v3(0, 3, &la), *b = seal_v3(3, 4, &lb);
	size_t len = 1 + la + lb - h;
	uint8_t *out = malloc(len), *blk = out + 1;
	uint64_t v;
	char path[4096];
	FILE *f;

	if (!out)
		abort();
	out[0] = 0x55; /* fix CRCs: they are recomputed below as well */
	memcpy(blk, a, h);
	put32(blk + 32, get32(a + 32) + get32(b + 32)); /* record_count */
	memcpy(blk + 24, b + 24, 8);			 /* max_ts_ns */
	v = get64(a + 40) + get64(b + 40);		 /* raw_bytes */
	memcpy(blk + 40, &v, 8);
	v = get64(a + 48) + get64(b + 48);		 /* payload_bytes */
	memcpy(blk + 48, &v, 8);
	put32(blk + 108, 2);				 /* page_count */
	memcpy(blk + h, a + h, e);			 /* the directory */
	memcpy(blk + h + e, b + h, e);
	memcpy(blk + h + 2 * e, a + h + e, la - h - e); /* the pages */
	memcpy(blk + h + 2 * e + (la - h - e), b + h + e, lb - h - e);
	fix_crcs(blk, len - 1, false);
	snprintf(path, sizeof(path), "%s/v3_zstd_2pages", dir);
	f = fopen(path, "wb");
	if (!f || fwrite(out, 1, len, f) != len || fclose(f))
		abort();
	fprintf(stderr, "%s: %zu bytes\n", path, len);
	free(a);
	free(b);
	free(out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("TV_FUZZ_WRITE_SEEDS");

	(void)argc;
	(void)argv;
	{
		struct tv_block_builder *b = tv_block_builder_new();
		Tracevault__V1__TraceRecord r;
		Tracevault__V1__Header *hdrs[2];
		char trace[33];

		for (unsigned i = 0; b && i < 3; i++) {
			seed_record(&r, 1767225600000000000ull + i, i, hdrs, trace);
			if (tv_block_builder_add(b, &r))
				abort();
		}
		if (!b || tv_block_builder_seal(b, 7, TV_CODEC_ZSTD, 3, &warm_block, &warm_len))
			abort();
		tv_block_builder_free(b);
	}
	if (!dir)
		return 0;
	write_seed(dir, "v3_zstd_12", 3, TV_CODEC_ZSTD, 12, 0);
	write_seed(dir, "v3_none_5", 3, TV_CODEC_NONE, 5, 1);
	write_two_page_seed(dir);
	write_seed(dir, "v3_empty_loss", 3, TV_CODEC_ZSTD, 0, 1);
	write_seed(dir, "v2_zstd_6", 2, TV_CODEC_ZSTD, 6, 1);
	write_seed(dir, "v2_none_4", 2, TV_CODEC_NONE, 4, 0);
	write_seed(dir, "v2_empty_loss", 2, TV_CODEC_NONE, 0, 1);
	exit(0);
}

/* What the in-memory reader handed out (pointers into it, valid until it is freed) */
static const uint8_t *rec_p[MAX_RECS];
static size_t rec_len[MAX_RECS];
static uint64_t rec_ts[MAX_RECS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t PIECES[4] = { 1, 7, 4096, 0 };
	struct fuzz_in in = { data, size };
	uint8_t opt = fuzz_u8(&in);
	struct tv_block_reader *rd = NULL;
	struct tv_block_stream *st = NULL;
	const struct tv_block_header *h;
	struct mem m;
	char err[256] = "";
	uint8_t *b;
	size_t len = in.n, n = 0;
	int valid, ret;

	b = malloc(len ? len : 1);
	if (!b)
		return 0;
	memcpy(b, in.p, len);
	if (opt & 1)
		fix_crcs(b, len, opt & 2);
	m = (struct mem){ b, len };

	valid = tv_block_validate(b, len, err, sizeof(err));
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "block of %zu bytes: validate %d %s\n", len, valid, err);
	FUZZ_CHECK(valid == 0 || valid == -EBADMSG || valid == -EPROTONOSUPPORT ||
		   valid == -EINVAL || valid == -EMSGSIZE || valid == -ENOMEM);
	FUZZ_CHECK(check_in_pieces(b, len, PIECES[(opt >> 2) & 3]) == valid);

	/* the in-memory reader */
	ret = tv_block_reader_open(&rd, b, len, err, sizeof(err));
	if (valid == 0)
		FUZZ_CHECK(ret == 0);
	if (ret == 0) {
		const uint8_t *p;
		size_t l;
		uint64_t ts;

		while ((ret = tv_block_reader_next_raw(rd, &p, &l, &ts)) == 1) {
			if (valid == 0) {
				uint64_t ts2;

				FUZZ_CHECK(tv_block_check_record(p, l, &ts2, err, sizeof(err)) == 0);
				FUZZ_CHECK(ts2 == ts);
			}
			if (n < MAX_RECS) {
				rec_p[n] = p;
				rec_len[n] = l;
				rec_ts[n] = ts;
			}
			n++;
		}
		if (valid == 0) {
			FUZZ_CHECK(ret == 0);
			FUZZ_CHECK(n == tv_block_reader_header(rd)->record_count);
		}
	}

	/* the server's reader, from start to end */
	ret = tv_block_stream_open(&st, mem_read, &m, len, NULL, err, sizeof(err));
	if (valid == 0)
		FUZZ_CHECK(ret == 0);
	if (ret == 0) {
		const uint8_t *p;
		size_t l, i = 0;
		uint64_t ts;

		while ((ret = tv_block_stream_next(st, &p, &l, &ts, err, sizeof(err))) == 1) {
			if (valid == 0 && i < MAX_RECS && i < n)
				FUZZ_CHECK(l == rec_len[i] && ts == rec_ts[i] &&
					   memcmp(p, rec_p[i], l) == 0);
			i++;
		}
		if (valid == 0)
			FUZZ_CHECK(ret == 0 && i == n);
		tv_block_stream_free(st);
		st = NULL;
	}

	/* the same reader as a query with a time and trace ids uses it */
	ret = tv_block_stream_open(&st, mem_read, &m, len, NULL, err, sizeof(err));
	if (ret == 0) {
		const uint8_t *p, *id;
		size_t l, idl, i = 0;
		uint64_t ts, from;

		h = tv_block_stream_header(st);
		from = h->min_ts_ns + (h->max_ts_ns - h->min_ts_ns) / 16 * (opt >> 4);
		if (h->max_ts_ns < h->min_ts_ns)
			from = h->min_ts_ns;
		/* every 32-byte trace id of the block may be in it (the filter) */
		for (size_t k = 0; valid == 0 && k < n && k < MAX_RECS && k < 8; k++) {
			FUZZ_CHECK(tv_v3_record_trace(rec_p[k], rec_len[k], &id, &idl) == 0);
			if (idl == 32)
				FUZZ_CHECK(tv_block_stream_may_hold_trace(st, (const char *)id, 1,
									  32, err,
									  sizeof(err)) == 1);
		}
		tv_block_stream_seek(st, from);
		while ((ret = tv_block_stream_next(st, &p, &l, &ts, err, sizeof(err))) == 1) {
			if (valid == 0) /* nothing from the seek time on is passed */
				FUZZ_CHECK(ts >= from || h->version < 3);
			i++;
		}
		if (valid == 0) {
			size_t want = 0;

			FUZZ_CHECK(ret == 0);
			for (size_t k = 0; k < n && k < MAX_RECS; k++)
				want += rec_ts[k] >= from;
			FUZZ_CHECK(h->version < 3 ? i == n : (n > MAX_RECS || i >= want));
		}
		tv_block_stream_free(st);
		st = NULL;
	}

	/* version 3's page by page reading of a few fields (Summary) */
	ret = tv_block_stream_open(&st, mem_read, &m, len, NULL, err, sizeof(err));
	if (ret == 0 && tv_block_stream_header(st)->version == 3) {
		struct tv_v3_page *pg;
		size_t rows = 0;

		while ((ret = tv_block_stream_next_page(st, TV_V3_FIELDS_READABLE, UINT64_MAX, &pg,
							err, sizeof(err))) == 1) {
			struct tv_v3_fields f;
			int r;

			while ((r = tv_v3_page_next_fields(pg, &f, err, sizeof(err))) == 1)
				rows++;
			if (valid == 0)
				FUZZ_CHECK(r == 0);
			if (r < 0)
				break;
		}
		if (valid == 0)
			FUZZ_CHECK(ret == 0 && rows == n);
	}
	tv_block_stream_free(st);
	tv_block_reader_free(rd);
	free(b);
	return 0;
}
