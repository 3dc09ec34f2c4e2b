/* Unit tests of the trace block format (proto/block.c): round trip, ordering, and that every
 * kind of corruption a disk or a wire can cause is rejected with a clear reason. */
#include <ctype.h>
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
#include "proto/block_v3.h"
#include "proto/crc32c.h"
#include "proto/varint.h"
#include "proto/wire.h"

#define N_RECORDS 1000

static void fill(Tracevault__V1__TraceRecord *r, uint64_t i, char *path, size_t pathlen)
{
	tracevault__v1__trace_record__init(r);
	snprintf(path, pathlen, "/item/%llu?q=%llu", (unsigned long long)i,
		 (unsigned long long)(i * 7));
	/* deliberately out of order: the block must come out sorted */
	r->ts_ns = 1700000000000000000ull + ((i * 7919) % N_RECORDS) * 1000;
	r->end_ns = r->ts_ns + 500;
	r->latency_ns = 500;
	r->pid = 1000 + (uint32_t)i;
	r->comm = "nginx";
	r->local = "127.0.0.1:8080";
	r->remote = "127.0.0.1:40000";
	r->method = i % 2 ? "GET" : "POST";
	r->path = path;
	r->status = 200 + (uint32_t)(i % 3);
	r->req_body_bytes = i;
	r->resp_body_bytes = i * 3;
	r->trace_id = "";
	r->span_id = "";
}

/* n records sealed by the builder writing version (2: the encoder before version 3). */
static void *seal_nv(int n, enum tv_codec codec, size_t *len, unsigned version)
{
	struct tv_block_builder *b = tv_block_builder_new();
	void *out = NULL;
	char path[64];

	assert_non_null(b);
	assert_int_equal(tv_block_builder_set_version(b, version), 0);
	for (int i = 0; i < n; i++) {
		Tracevault__V1__TraceRecord r;

		fill(&r, (uint64_t)i, path, sizeof(path));
		assert_int_equal(tv_block_builder_add(b, &r), 0);
	}
	assert_int_equal(tv_block_builder_count(b), (uint32_t)n);
	assert_int_equal(tv_block_builder_seal(b, 42, codec, TV_BLOCK_DEFAULT_ZSTD_LEVEL, &out, len),
			 0);
	assert_int_equal(tv_block_builder_count(b), 0);
	tv_block_builder_free(b);
	return out;
}

/* The tests of the version 2 layout (offsets, CRCs) use the version 2 encoder. */
static void *seal_n(int n, enum tv_codec codec, size_t *len)
{
	return seal_nv(n, codec, len, 2);
}

static void roundtrip_v(enum tv_codec codec, unsigned version)
{
	size_t len;
	void *blk = seal_nv(N_RECORDS, codec, &len, version);
	struct tv_block_reader *r;
	Tracevault__V1__TraceRecord *rec;
	uint64_t prev = 0, seen_sum = 0, want_sum = 0;
	int n = 0, ret;
	char err[256];

	assert_int_equal(tv_block_reader_open(&r, blk, len, err, sizeof(err)), 0);
	const struct tv_block_header *h = tv_block_reader_header(r);
	assert_int_equal(h->magic, TV_BLOCK_MAGIC);
	assert_int_equal(h->block_id, 42);
	assert_int_equal(h->record_count, N_RECORDS);
	assert_int_equal(h->codec, codec);
	assert_int_equal(h->min_ts_ns, 1700000000000000000ull);
	assert_int_equal(h->max_ts_ns, 1700000000000000000ull + (N_RECORDS - 1) * 1000ull);
	if (codec == TV_CODEC_ZSTD)
		assert_true(h->payload_bytes < h->raw_bytes);
	while ((ret = tv_block_reader_next(r, &rec)) == 1) {
		assert_true(rec->ts_ns >= prev);
		prev = rec->ts_ns;
		assert_int_equal(rec->end_ns, rec->ts_ns + 500);
		/* the fields travel intact: pid encodes i, and so do the body counts */
		uint64_t i = rec->pid - 1000;
		assert_int_equal(rec->req_body_bytes, i);
		assert_int_equal(rec->resp_body_bytes, i * 3);
		assert_string_equal(rec->comm, "nginx");
		assert_string_equal(rec->method, i % 2 ? "GET" : "POST");
		seen_sum += i;
		n++;
		tracevault__v1__trace_record__free_unpacked(rec, NULL);
	}
	assert_int_equal(ret, 0);
	assert_int_equal(n, N_RECORDS);
	for (uint64_t i = 0; i < N_RECORDS; i++)
		want_sum += i;
	assert_int_equal(seen_sum, want_sum);
	tv_block_reader_free(r);
	free(blk);
}

static void test_roundtrip_zstd_sorted(void **state)
{
	(void)state;
	roundtrip_v(TV_CODEC_ZSTD, 2);
	roundtrip_v(TV_CODEC_ZSTD, 3);
}

static void test_roundtrip_uncompressed(void **state)
{
	(void)state;
	roundtrip_v(TV_CODEC_NONE, 2);
	roundtrip_v(TV_CODEC_NONE, 3);
}

/* ---- version 3: columns give back each record's exact bytes ---- */

#define V3_RECORDS 5000

static uint64_t rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

/* Record i of a varied set: every field, trace ids hex, upper-case and odd, shared and new,
 * spans, headers and bodies (kept as protobuf), empty strings. */
static void fill_varied(Tracevault__V1__TraceRecord *r, uint64_t i, uint64_t *seed, char *buf,
			Tracevault__V1__Header **hp, Tracevault__V1__Header *h)
{
	static const char *paths[] = { "/", "/api/users", "/api/orders/17", "/checkout", "" };
	static const char *methods[] = { "GET", "POST", "PUT", "" };
	char *trace = buf, *span = buf + 40, *path = buf + 64;

	tracevault__v1__trace_record__init(r);
	r->ts_ns = 1700000000000000000ull + i * 1000 + rnd(seed) % 900;
	r->latency_ns = rnd(seed) % 5 ? rnd(seed) % 100000000 : 0;
	r->end_ns = rnd(seed) % 7 ? r->ts_ns + r->latency_ns : r->ts_ns + rnd(seed);
	r->pid = (uint32_t)(rnd(seed) % 4 ? 1000 + rnd(seed) % 3 : 0);
	r->comm = rnd(seed) % 2 ? "nginx" : "node";
	r->local = "10.0.0.1:8080";
	r->remote = rnd(seed) % 3 ? "10.0.0.9:40000" : "[::1]:51234";
	r->method = (char *)methods[rnd(seed) % 4];
	if (rnd(seed) % 3)
		r->path = (char *)paths[rnd(seed) % 5];
	else {
		snprintf(path, 64, "/item/%llu", (unsigned long long)rnd(seed));
		r->path = path;
	}
	r->status = (uint32_t)(rnd(seed) % 10 ? 200 : 503);
	r->req_body_bytes = rnd(seed) % 3 ? 0 : rnd(seed);
	r->resp_body_bytes = rnd(seed) % 100000;
	switch (rnd(seed) % 6) {
	case 0:
	case 1:
		snprintf(trace, 33, "%016llx%016llx", (unsigned long long)rnd(seed),
			 (unsigned long long)(i / 3)); /* shared by neighbours */
		r->trace_id = trace;
		break;
	case 2:
		snprintf(trace, 33, "%016llX%016llX", (unsigned long long)i,
			 (unsigned long long)i); /* upper case: kept as a string */
		r->trace_id = trace;
		break;
	case 3:
		r->trace_id = "not-a-trace";
		break;
	default:
		r->trace_id = "";
	}
	switch (rnd(seed) % 3) {
	case 0:
		snprintf(span, 17, "%016llx", (unsigned long long)rnd(seed));
		r->span_id = span;
		break;
	case 1:
		r->span_id = "xyz";
		break;
	default:
		r->span_id = "";
	}
	r->flags = (uint32_t)(rnd(seed) % 20 ? 0 : 3);
	r->role = rnd(seed) % 2 ? "server" : "client";
	r->host = rnd(seed) % 2 ? "shop.example" : "";
	r->http_version = "1.1";
	if (rnd(seed) % 4 == 0) {
		tracevault__v1__header__init(h);
		h->name = "x-req";
		h->value = "1";
		hp[0] = h;
		r->n_req_headers = 1;
		r->req_headers = hp;
		r->resp_body.data = (uint8_t *)"{\"ok\":true}";
		r->resp_body.len = 11;
		r->resp_content_type = "application/json";
	}
}

static void test_v3_gives_back_exact_bytes(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	static uint8_t want[V3_RECORDS][512];
	static size_t want_len[V3_RECORDS];
	uint64_t seed = 7, ts;
	struct tv_block_reader *rd;
	const uint8_t *data;
	size_t len, len2;
	void *blk, *blk2;
	char err[256];
	int n = 0, ret;

	(void)state;
	for (int i = 0; i < V3_RECORDS; i++) {
		Tracevault__V1__TraceRecord r;
		Tracevault__V1__Header h, *hp[1];
		char buf[160];

		fill_varied(&r, (uint64_t)i, &seed, buf, hp, &h);
		want_len[i] = tracevault__v1__trace_record__pack(&r, want[i]);
		assert_int_equal(tv_block_builder_add(b, &r), 0);
	}
	assert_int_equal(tv_block_builder_seal(b, 9, TV_CODEC_ZSTD, 3, &blk, &len), 0);
	assert_int_equal(tv_block_reader_open(&rd, blk, len, err, sizeof(err)), 0);
	assert_int_equal(tv_block_reader_header(rd)->version, 3);
	assert_true(tv_block_reader_header(rd)->page_count >= V3_RECORDS / TV_BLOCK_V3_PAGE_RECORDS);
	while ((ret = tv_block_reader_next_raw(rd, &data, &len2, &ts)) == 1) {
		assert_int_equal(len2, want_len[n]);
		assert_memory_equal(data, want[n], len2);
		n++;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(n, V3_RECORDS);
	tv_block_reader_free(rd);
	/* and smaller than the version 2 block of the same records */
	for (int i = 0; i < V3_RECORDS; i++) {
		Tracevault__V1__TraceRecord *r = tracevault__v1__trace_record__unpack(NULL,
										      want_len[i],
										      want[i]);
		assert_int_equal(tv_block_builder_add(b, r), 0);
		tracevault__v1__trace_record__free_unpacked(r, NULL);
	}
	assert_int_equal(tv_block_builder_set_version(b, 2), 0);
	assert_int_equal(tv_block_builder_seal(b, 9, TV_CODEC_ZSTD, 3, &blk2, &len2), 0);
	print_message("v3 %zu bytes, v2 %zu bytes for %d varied records\n", len, len2, V3_RECORDS);
	assert_true(len < len2);
	free(blk2);
	free(blk);
	tv_block_builder_free(b);
}

/* Records the columns cannot rebuild are kept whole: fields out of number order, a repeated
 * field, a non-minimal varint, an unknown field of every wire type, no ts_ns at all. */
static void test_v3_page_keeps_odd_records(void **state)
{
	static const uint8_t recs[][24] = {
		{ 0x18, 0x05, 0x08, 0x01 },			     /* latency before ts */
		{ 0x08, 0x02, 0x08, 0x02 },			     /* ts twice */
		{ 0x08, 0x83, 0x00 },				     /* ts 3 in 2 bytes */
		{ 0x08, 0x04, 0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8 },  /* field 99, fixed64 */
		{ 0x08, 0x05, 0xf5, 0x01, 1, 2, 3, 4 },		     /* field 30, fixed32 */
		{ 0x08, 0x06, 0x4a, 0x01, '/', 0xf2, 0x01, 0x02, 'a', 'b' }, /* path, field 30 */
		{ 0x08, 0x07, 0x50, 0xc8, 0x01 },		     /* status 200 */
	};
	static const size_t lens[] = { 4, 4, 3, 12, 8, 10, 5 };
	static const uint64_t ts[] = { 1, 2, 3, 4, 5, 6, 7 };
	struct tv_v3_page_enc *e = tv_v3_page_enc_new();
	struct tv_v3_page_entry ent;
	struct tv_v3_page *pg;
	struct tv_v3_record r;
	uint8_t *out = NULL, rebuilt[64];
	const uint8_t *whole;
	size_t out_len = 0, out_cap = 0;
	uint64_t hash;
	bool has;
	void *work;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		assert_int_equal(tv_v3_page_enc_add(e, recs[i], lens[i], ts[i], &has, &hash), 0);
	assert_int_equal(tv_v3_page_enc_finish(e, NULL, 0, &out, &out_len, &out_cap, &ent), 0);
	assert_int_equal(ent.crc32c, tv_crc32c(out, out_len));
	work = malloc(tv_v3_page_work_bytes(&ent));
	assert_int_equal(tv_v3_page_open(&pg, work, &ent, out, NULL, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		assert_int_equal(tv_v3_page_next(pg, &r, err, sizeof(err)), 1);
		assert_int_equal(r.bytes, lens[i]);
		assert_int_equal(tv_v3_record_write(&r, rebuilt, err, sizeof(err)), 0);
		assert_memory_equal(rebuilt, recs[i], lens[i]);
		/* the first three are kept whole, in place in the page; the others have columns */
		assert_int_equal(tv_v3_record_whole(&r, &whole), i < 3);
		if (i < 3)
			assert_memory_equal(whole, recs[i], lens[i]);
	}
	assert_int_equal(tv_v3_page_next(pg, &r, err, sizeof(err)), 0);
	free(work);
	free(out);
	tv_v3_page_enc_free(e);
}

/* What protobuf reads for field f of the record (the last occurrence wins): a varint field's
 * value, or a string field's bytes; 0 / "" when absent. */
static void proto_field(const uint8_t *p, size_t len, unsigned f, uint64_t *num,
			const uint8_t **str, size_t *slen)
{
	size_t i = 0, used = 0;
	uint64_t key = 0, v = 0;

	*num = 0;
	*str = (const uint8_t *)"";
	*slen = 0;
	while (i < len) {
		assert_int_equal(tv_varint_get(p + i, len - i, &key, &used), 0);
		i += used;
		switch (key & 7) {
		case 0:
			assert_int_equal(tv_varint_get(p + i, len - i, &v, &used), 0);
			if (key >> 3 == f)
				*num = v;
			i += used;
			break;
		case 1:
			i += 8;
			break;
		case 5:
			i += 4;
			break;
		default:
			assert_int_equal(key & 7, 2);
			assert_int_equal(tv_varint_get(p + i, len - i, &v, &used), 0);
			i += used;
			if (key >> 3 == f) {
				*str = p + i;
				*slen = v;
			}
			i += v;
		}
	}
}

/* A field reader (tv_v3_page_open_fields) gives each record's fields as protobuf reads them
 * from the record's bytes, for varied records (kept fields, absent strings) and records kept
 * whole (handed back as bytes), compressed or not, for several sets of fields; equal
 * dictionary ids are equal strings and the reader ends where the page does. */
static void test_v3_field_reader_matches_the_records(void **state)
{
	static const uint32_t sets[] = {
		1u << 9, 1u << 19 | 1u << 10, 1u << 3 | 1u << 10 | 1u << 15 | 1u << 7,
		TV_V3_FIELDS_READABLE,
	};
	static const unsigned strs[] = { 5, 6, 7, 8, 9, 18, 19, 20 };
	static uint8_t recs[600][512];
	static size_t lens[600];
	static uint64_t ts[600];
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	uint64_t seed = 11, hash;
	size_t n = 0;
	char err[256];
	bool has;

	(void)state;
	for (uint64_t i = 0; n < 600; i++) {
		Tracevault__V1__TraceRecord r;
		Tracevault__V1__Header h, *hp[1];
		char buf[160];

		fill_varied(&r, i, &seed, buf, hp, &h);
		ts[n] = 1000 + i;
		if (i % 50 == 7) { /* kept whole: status before ts_ns, or the path twice */
			uint8_t *o = recs[n];

			if (i % 2)
				o += tv_varint_put(o, 10u << 3) + tv_varint_put(o + 1, 200);
			*o++ = 1u << 3;
			o += tv_varint_put(o, ts[n]);
			if (!(i % 2)) {
				memcpy(o, "\x4a\x01" "a" "\x4a\x01" "b", 6);
				o += 6;
			}
			lens[n] = (size_t)(o - recs[n]);
		} else {
			r.ts_ns = ts[n];
			lens[n] = tracevault__v1__trace_record__pack(&r, recs[n]);
		}
		n++;
	}
	for (int codec = 0; codec < 2; codec++) {
		struct tv_v3_page_enc *e = tv_v3_page_enc_new();
		struct tv_v3_page_entry ent;
		uint8_t *out = NULL;
		size_t out_len = 0, out_cap = 0;
		void *work;

		for (size_t i = 0; i < n; i++)
			assert_int_equal(tv_v3_page_enc_add(e, recs[i], lens[i], ts[i], &has, &hash),
					 0);
		assert_int_equal(tv_v3_page_enc_finish(e, codec ? cctx : NULL, 3, &out, &out_len,
						       &out_cap, &ent), 0);
		work = malloc(tv_v3_page_work_bytes(&ent));
		for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
			static const uint8_t *seen[21][600];
			static size_t seen_len[21][600];
			struct tv_v3_page *pg;
			struct tv_v3_fields r;
			size_t raws = 0;

			memset(seen, 0, sizeof(seen));
			assert_int_equal(tv_v3_page_open_fields(&pg, work, &ent, out, dctx, sets[k],
								err, sizeof(err)), 0);
			assert_int_equal(tv_v3_page_records(pg), n);
			for (size_t i = 0; i < n; i++) {
				assert_int_equal(tv_v3_page_next_fields(pg, &r, err, sizeof(err)), 1);
				assert_int_equal(tv_v3_page_ts(pg)[i], ts[i]);
				if (r.raw) {
					assert_int_equal(r.raw_len, lens[i]);
					assert_memory_equal(r.raw, recs[i], lens[i]);
					raws++;
					continue;
				}
				for (unsigned f = 3; f <= 20; f++) {
					uint64_t num;
					const uint8_t *str;
					size_t slen;
					bool is_str = false;

					if (!(sets[k] & 1u << f))
						continue;
					proto_field(recs[i], lens[i], f, &num, &str, &slen);
					for (size_t j = 0; j < sizeof(strs) / sizeof(strs[0]); j++)
						is_str |= strs[j] == f;
					if (!is_str) {
						assert_int_equal(r.num[f], num);
						continue;
					}
					assert_int_equal(r.str_len[f], slen);
					assert_memory_equal(r.str[f], str, slen);
					if (r.str_id[f] == TV_V3_NO_ID)
						continue;
					assert_true(r.str_id[f] < 600);
					if (seen[f][r.str_id[f]]) { /* equal ids, equal strings */
						assert_int_equal(seen_len[f][r.str_id[f]], slen);
						assert_memory_equal(seen[f][r.str_id[f]], str, slen);
					}
					seen[f][r.str_id[f]] = str;
					seen_len[f][r.str_id[f]] = slen;
				}
			}
			assert_int_equal(raws, 12);
			assert_int_equal(tv_v3_page_next_fields(pg, &r, err, sizeof(err)), 0);
		}
		free(work);
		free(out);
		tv_v3_page_enc_free(e);
	}
	ZSTD_freeCCtx(cctx);
	ZSTD_freeDCtx(dctx);
}

/* One page of the records given (each a ts and a trace id), zstd-compressed; whole: one more
 * record kept whole (field 13 before field 1) holding trace id `whole`. Returns the page's
 * tv_v3_page_may_hold_trace answer for id. */
static int page_may_hold(const char *const *ids, size_t n, const char *whole, const char *id)
{
	struct tv_v3_page_enc *e = tv_v3_page_enc_new();
	ZSTD_CCtx *cctx = ZSTD_createCCtx();
	ZSTD_DCtx *dctx = ZSTD_createDCtx();
	struct tv_v3_page_entry ent;
	uint8_t rec[256], *out = NULL;
	size_t out_len = 0, out_cap = 0, len;
	uint64_t hash;
	bool has;
	void *work;
	char err[256];
	int ret;

	for (size_t i = 0; i < n; i++) {
		Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;

		r.ts_ns = 100 + i;
		r.method = (char *)"GET";
		r.trace_id = (char *)ids[i];
		len = tracevault__v1__trace_record__pack(&r, rec);
		assert_int_equal(tv_v3_page_enc_add(e, rec, len, r.ts_ns, &has, &hash), 0);
	}
	if (whole) { /* trace_id (13) then ts_ns (1): not in number order, so kept whole */
		rec[0] = 13 << 3 | 2;
		rec[1] = (uint8_t)strlen(whole);
		memcpy(rec + 2, whole, strlen(whole));
		len = 2 + strlen(whole);
		rec[len++] = 1 << 3;
		rec[len++] = 120;
		assert_int_equal(tv_v3_page_enc_add(e, rec, len, 120, &has, &hash), 0);
	}
	assert_int_equal(tv_v3_page_enc_finish(e, cctx, 3, &out, &out_len, &out_cap, &ent), 0);
	work = malloc(tv_v3_page_work_bytes(&ent));
	assert_non_null(work);
	ret = tv_v3_page_may_hold_trace(&ent, out, work, dctx, id, 1, 33, err, sizeof(err));
	free(work);
	free(out);
	ZSTD_freeDCtx(dctx);
	ZSTD_freeCCtx(cctx);
	tv_v3_page_enc_free(e);
	return ret;
}

/* A page is passed over for a trace id only when no record of it can hold the id: hex ids
 * (lower case: column 26) and others (upper case, not hex: column 29) match without case, and
 * a page with a record kept whole always may hold it. */
static void test_v3_page_trace_check(void **state)
{
	static const char lo[] = "0af7651916cd43dd8448eb211c80319c",
			  up[] = "4BF92F3577B34DA6A3CE929D0E0E4736",
			  odd[] = "not-a-hex-id-but-32-bytes-long!!",
			  none[] = "ffffffffffffffffffffffffffffff01";
	const char *ids[] = { lo, up, odd, "", "short" };
	char lo_up[33], up_lo[33];

	(void)state;
	for (int i = 0; i < 33; i++) {
		lo_up[i] = (char)toupper((unsigned char)lo[i]);
		up_lo[i] = (char)tolower((unsigned char)up[i]);
	}
	assert_int_equal(page_may_hold(ids, 5, NULL, lo), 1);
	assert_int_equal(page_may_hold(ids, 5, NULL, lo_up), 1);
	assert_int_equal(page_may_hold(ids, 5, NULL, up), 1);
	assert_int_equal(page_may_hold(ids, 5, NULL, up_lo), 1);
	assert_int_equal(page_may_hold(ids, 5, NULL, none), 0);
	assert_int_equal(page_may_hold(ids + 1, 4, NULL, lo), 0);
	assert_int_equal(page_may_hold(ids, 1, NULL, up), 0);
	/* the odd string is in column 29 like any other trace id that is not lower-case hex */
	assert_int_equal(page_may_hold(ids + 2, 1, NULL, odd), 1);
	/* a record kept whole: its id is not in the columns, so the page may hold anything */
	assert_int_equal(page_may_hold(ids + 3, 2, none, none), 1);
	assert_int_equal(page_may_hold(ids + 3, 2, lo, none), 1);
	assert_int_equal(page_may_hold(ids + 3, 2, NULL, none), 0);
}

/* Every trace id added tests positive; about 1% of others do (10 bits per id). */
static void test_v3_bloom(void **state)
{
	size_t bytes = tv_v3_bloom_bytes_for(1000), fp = 0;
	uint8_t *bloom = calloc(1, bytes);
	char id[40];

	(void)state;
	assert_int_equal(bytes % TV_BLOCK_V3_BLOOM_BLOCK_BYTES, 0);
	assert_int_equal(tv_v3_bloom_bytes_for(0), 0);
	assert_int_equal(tv_v3_bloom_bytes_for(10000000), TV_BLOCK_V3_MAX_BLOOM_BYTES);
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "%032x", i * 7919);
		tv_v3_bloom_add(bloom, bytes, tv_v3_trace_hash(id));
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "%032X", i * 7919); /* case folded like the filter */
		assert_true(tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(id)));
	}
	for (int i = 0; i < 100000; i++) {
		snprintf(id, sizeof(id), "%032x", 1000000007 + i);
		fp += tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(id));
	}
	print_message("bloom: %zu bytes for 1000 ids, %zu of 100000 others test positive\n", bytes,
		      fp);
	assert_true(fp < 3000);
	assert_false(tv_v3_bloom_test(bloom, 0, tv_v3_trace_hash(id)));
	/* the two-step test (a 32-byte block fetched alone) answers the same */
	for (int i = 0; i < 20000; i++) {
		uint64_t h;
		size_t off;

		snprintf(id, sizeof(id), "%032x", i % 2 ? 1000000007 + i : (i / 2 % 1000) * 7919);
		h = tv_v3_trace_hash(id);
		off = tv_v3_bloom_block_offset(bytes, h);
		assert_true(off % TV_BLOCK_V3_BLOOM_BLOCK_BYTES == 0 && off < bytes);
		assert_int_equal(tv_v3_bloom_block_test(bloom + off, h),
				 tv_v3_bloom_test(bloom, bytes, h));
	}
	free(bloom);
}

static void test_seal_empty_is_enodata(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	void *out = NULL;
	size_t len = 0;

	(void)state;
	assert_int_equal(tv_block_builder_seal(b, 1, TV_CODEC_ZSTD, 3, &out, &len), -ENODATA);
	assert_null(out);
	tv_block_builder_free(b);
}

static void test_reset_forgets_records(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	Tracevault__V1__TraceRecord r;
	void *out = NULL;
	size_t len = 0;
	char path[64];

	(void)state;
	fill(&r, 1, path, sizeof(path));
	assert_int_equal(tv_block_builder_add(b, &r), 0);
	tv_block_builder_reset(b);
	assert_int_equal(tv_block_builder_count(b), 0);
	assert_int_equal(tv_block_builder_raw_bytes(b), 0);
	assert_int_equal(tv_block_builder_seal(b, 1, TV_CODEC_ZSTD, 3, &out, &len), -ENODATA);
	/* the builder is usable again, and the forgotten record does not come back */
	fill(&r, 2, path, sizeof(path));
	assert_int_equal(tv_block_builder_add(b, &r), 0);
	assert_int_equal(tv_block_builder_seal(b, 1, TV_CODEC_NONE, 0, &out, &len), 0);
	struct tv_block_header h;
	assert_int_equal(tv_block_header_parse(out, len, &h, NULL, 0), 0);
	assert_int_equal(h.record_count, 1);
	assert_int_equal(h.min_ts_ns, r.ts_ns);
	free(out);
	tv_block_builder_free(b);
}

static void test_raw_walk_gives_ts_without_unpack(void **state)
{
	size_t len, rlen;
	void *blk = seal_n(50, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r;
	const uint8_t *data;
	uint64_t ts;
	int n = 0;

	(void)state;
	assert_int_equal(tv_block_reader_open(&r, blk, len, NULL, 0), 0);
	while (tv_block_reader_next_raw(r, &data, &rlen, &ts) == 1) {
		Tracevault__V1__TraceRecord *rec =
			tracevault__v1__trace_record__unpack(NULL, rlen, data);
		assert_non_null(rec);
		assert_int_equal(rec->ts_ns, ts);
		tracevault__v1__trace_record__free_unpacked(rec, NULL);
		n++;
	}
	assert_int_equal(n, 50);
	tv_block_reader_free(r);
	free(blk);
}

/* Corrupt one byte at off and expect rejection with ret and a reason containing what. */
static void expect_reject(size_t off, uint8_t xor_mask, int want, const char *what)
{
	size_t len;
	uint8_t *blk = seal_n(100, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r = (void *)1;
	char err[256] = "";

	blk[off] ^= xor_mask;
	assert_int_equal(tv_block_reader_open(&r, blk, len, err, sizeof(err)), want);
	assert_null(r);
	if (!strstr(err, what))
		fail_msg("reason '%s' does not mention '%s'", err, what);
	free(blk);
}

static void test_bad_magic_rejected(void **state)
{
	(void)state;
	expect_reject(0, 0xff, -EBADMSG, "magic");
}

static void test_header_bitflip_rejected(void **state)
{
	(void)state;
	/* a flipped record count: the header CRC must catch it */
	expect_reject(32, 0x01, -EBADMSG, "header checksum");
}

static void test_payload_bitflip_rejected(void **state)
{
	(void)state;
	expect_reject(TV_BLOCK_V2_HEADER_BYTES + 5, 0x10, -EBADMSG, "payload checksum");
}

/* Rewrite a header field and fix the header CRC, so only the field's own check can catch it. */
static void expect_field_reject(size_t off, uint64_t value, size_t width, int want,
				const char *what)
{
	size_t len;
	uint8_t *blk = seal_n(100, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r;
	char err[256] = "";
	uint32_t crc;

	memcpy(blk + off, &value, width); /* little-endian host: x86/arm64 */
	crc = tv_crc32c(blk, TV_BLOCK_V2_HEADER_BYTES - 4);
	memcpy(blk + TV_BLOCK_V2_HEADER_BYTES - 4, &crc, 4);
	assert_int_equal(tv_block_reader_open(&r, blk, len, err, sizeof(err)), want);
	if (!strstr(err, what))
		fail_msg("reason '%s' does not mention '%s'", err, what);
	free(blk);
}

static void test_unknown_version_rejected(void **state)
{
	(void)state;
	expect_field_reject(4, 4, 2, -EPROTONOSUPPORT, "version 4");
	expect_field_reject(4, 0, 2, -EPROTONOSUPPORT, "version 0");
}

static void test_unknown_codec_rejected(void **state)
{
	(void)state;
	expect_field_reject(6, 9, 2, -EPROTONOSUPPORT, "codec 9");
}

static void test_huge_size_rejected_before_alloc(void **state)
{
	(void)state;
	expect_field_reject(40, 1ull << 40, 8, -EBADMSG, "out of bounds");
}

static void test_raw_size_lie_rejected(void **state)
{
	size_t len;
	uint8_t *blk = seal_n(100, TV_CODEC_ZSTD, &len);
	struct tv_block_header h;

	(void)state;
	assert_int_equal(tv_block_header_parse(blk, len, &h, NULL, 0), 0);
	free(blk);
	/* raw size one byte short: zstd must not overrun, the reader must say so */
	expect_field_reject(40, h.raw_bytes - 1, 8, -EBADMSG, "decompress");
}

static void test_truncation_rejected(void **state)
{
	size_t len;
	uint8_t *blk = seal_n(100, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r;
	char err[256];

	(void)state;
	assert_int_equal(tv_block_reader_open(&r, blk, len - 1, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "size mismatch"));
	assert_int_equal(tv_block_reader_open(&r, blk, 10, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "truncated"));
	assert_int_equal(tv_block_reader_open(&r, blk, 0, err, sizeof(err)), -EINVAL);
	/* past the v1 size but short of the v2 header this block has */
	assert_int_equal(tv_block_reader_open(&r, blk, 80, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "header needs 112"));
	free(blk);
}

static void test_set_id_restamps_header(void **state)
{
	size_t len;
	uint8_t *blk = seal_n(20, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r;

	(void)state;
	assert_int_equal(tv_block_set_id(blk, len, 0x1122334455667788ull), 0);
	assert_int_equal(tv_block_reader_open(&r, blk, len, NULL, 0), 0);
	assert_int_equal(tv_block_reader_header(r)->block_id, 0x1122334455667788ull);
	assert_int_equal(tv_block_reader_header(r)->record_count, 20);
	tv_block_reader_free(r);
	blk[0] ^= 1; /* not a block any more: refused, not stamped */
	assert_int_equal(tv_block_set_id(blk, len, 7), -EBADMSG);
	free(blk);
}

static void test_crc32c_known_vector(void **state)
{
	(void)state;
	assert_int_equal(tv_crc32c("123456789", 9), 0xe3069283u);
	assert_int_equal(tv_crc32c_extend(tv_crc32c("1234", 4), "56789", 5), 0xe3069283u);
	assert_int_equal(tv_crc32c("", 0), 0);
}

/* The hand-packed chunk prefix + payload must parse as the same message protobuf-c would
 * pack: this is what lets the writer send a block's bytes without copying them. */
static void test_chunk_prefix_matches_protobuf(void **state)
{
	static const uint64_t ids[] = { 1, 0x7fffffffffffffffull, 0xffffffffffffffffull };
	static const uint64_t offsets[] = { 0, 1, 1ull << 20, 1ull << 40 };
	uint8_t payload[300], msg[TV_CHUNK_PREFIX_MAX + sizeof(payload)];

	(void)state;
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 31);
	for (size_t a = 0; a < 3; a++) {
		for (size_t o = 0; o < 4; o++) {
			for (size_t plen = 0; plen <= sizeof(payload); plen += 150) {
				uint32_t crc = tv_crc32c(payload, plen);
				size_t n = tv_wire_chunk_prefix(msg, ids[a], offsets[o], crc, plen);
				Tracevault__V1__WriteRequest *req;

				memcpy(msg + n, payload, plen);
				req = tracevault__v1__write_request__unpack(NULL, n + plen, msg);
				assert_non_null(req);
				assert_int_equal(req->value_case,
						 TRACEVAULT__V1__WRITE_REQUEST__VALUE_CHUNK);
				assert_int_equal(req->chunk->block_id, ids[a]);
				assert_int_equal(req->chunk->offset, offsets[o]);
				assert_int_equal(req->chunk->crc32c, crc);
				assert_int_equal(req->chunk->data.len, plen);
				assert_memory_equal(req->chunk->data.data, payload, plen);
				tracevault__v1__write_request__free_unpacked(req, NULL);
			}
		}
	}
}

/* ---- version 2 loss counters, and version 1 blocks still read ---- */

static void header_carries_loss(unsigned version)
{
	struct tv_block_builder *b = tv_block_builder_new();
	const struct tv_block_loss loss = {.ring_full = 7, .map_full = 1, .parser = 3,
					   .cache = 1ull << 40, .failed = 5};
	Tracevault__V1__TraceRecord rec;
	struct tv_block_reader *r;
	const struct tv_block_header *h;
	char path[64], err[256];
	void *out = NULL;
	size_t len = 0;

	assert_int_equal(tv_block_builder_set_version(b, version), 0);
	fill(&rec, 9, path, sizeof(path));
	assert_int_equal(tv_block_builder_add(b, &rec), 0);
	tv_block_builder_set_loss(b, &loss, 123);
	assert_int_equal(tv_block_builder_seal(b, 5, TV_CODEC_ZSTD, 3, &out, &len), 0);
	assert_int_equal(tv_block_reader_open(&r, out, len, err, sizeof(err)), 0);
	h = tv_block_reader_header(r);
	assert_int_equal(h->version, version);
	assert_int_equal(h->header_bytes, version == 2 ? TV_BLOCK_V2_HEADER_BYTES :
							 TV_BLOCK_V3_HEADER_BYTES);
	assert_int_equal(tv_block_header_bytes(out), h->header_bytes);
	assert_memory_equal(&h->loss, &loss, sizeof(loss));
	assert_int_equal(h->min_ts_ns, rec.ts_ns); /* records, not the loss time, give the range */
	tv_block_reader_free(r);
	free(out);
	/* the loss went with that seal: the next block starts from zero */
	assert_int_equal(tv_block_builder_add(b, &rec), 0);
	assert_int_equal(tv_block_builder_seal(b, 6, TV_CODEC_NONE, 0, &out, &len), 0);
	assert_int_equal(tv_block_reader_open(&r, out, len, err, sizeof(err)), 0);
	h = tv_block_reader_header(r);
	assert_int_equal(h->loss.ring_full + h->loss.map_full + h->loss.parser + h->loss.cache +
				 h->loss.failed, 0);
	tv_block_reader_free(r);
	free(out);
	tv_block_builder_free(b);
}

static void test_v2_header_carries_loss(void **state)
{
	(void)state;
	header_carries_loss(2);
	header_carries_loss(3);
}

static void test_loss_only_block_has_no_records(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	const struct tv_block_loss loss = {.ring_full = 11};
	struct tv_block_reader *r;
	Tracevault__V1__TraceRecord *rec;
	const struct tv_block_header *h;
	char err[256];
	void *out = NULL;
	size_t len = 0;

	(void)state;
	tv_block_builder_set_loss(b, &loss, 777);
	assert_int_equal(tv_block_builder_seal(b, 8, TV_CODEC_ZSTD, 3, &out, &len), 0);
	assert_int_equal(tv_block_reader_open(&r, out, len, err, sizeof(err)), 0);
	h = tv_block_reader_header(r);
	assert_int_equal(h->record_count, 0);
	assert_int_equal(h->min_ts_ns, 777);
	assert_int_equal(h->max_ts_ns, 777);
	assert_int_equal(h->loss.ring_full, 11);
	assert_int_equal(tv_block_reader_next(r, &rec), 0);
	tv_block_reader_free(r);
	free(out);
	/* and with the loss stamped, an empty builder is empty again */
	out = NULL;
	assert_int_equal(tv_block_builder_seal(b, 9, TV_CODEC_ZSTD, 3, &out, &len), -ENODATA);
	tv_block_builder_free(b);
}

/* A version 1 block as BLOCK.md lays it out (what tvtest.encode_block writes): 60 bytes of the
 * same fields as v2 with version 1, the CRC of those at 60, then the payload. */
static uint8_t *to_v1(const uint8_t *v2, size_t len, size_t *v1_len)
{
	uint8_t *v1 = malloc(len);
	uint16_t one = 1;
	uint32_t crc;

	assert_non_null(v1);
	memcpy(v1, v2, 60);
	memcpy(v1 + 4, &one, 2);
	crc = tv_crc32c(v1, 60);
	memcpy(v1 + 60, &crc, 4);
	memcpy(v1 + 64, v2 + TV_BLOCK_V2_HEADER_BYTES, len - TV_BLOCK_V2_HEADER_BYTES);
	*v1_len = len - (TV_BLOCK_V2_HEADER_BYTES - TV_BLOCK_V1_HEADER_BYTES);
	return v1;
}

static void test_v1_block_still_reads(void **state)
{
	size_t len, v1_len;
	uint8_t *v2 = seal_n(100, TV_CODEC_ZSTD, &len);
	uint8_t *v1 = to_v1(v2, len, &v1_len);
	struct tv_block_reader *r;
	const struct tv_block_header *h;
	Tracevault__V1__TraceRecord *rec;
	char err[256] = "";
	int n = 0;

	(void)state;
	assert_int_equal(tv_block_header_bytes(v1), TV_BLOCK_V1_HEADER_BYTES);
	if (tv_block_reader_open(&r, v1, v1_len, err, sizeof(err)))
		fail_msg("v1 block rejected: %s", err);
	h = tv_block_reader_header(r);
	assert_int_equal(h->version, 1);
	assert_int_equal(h->header_bytes, TV_BLOCK_V1_HEADER_BYTES);
	assert_int_equal(tv_block_total_bytes(h), v1_len);
	assert_int_equal(h->record_count, 100);
	assert_int_equal(h->loss.ring_full + h->loss.failed + h->loss.cache, 0);
	while (tv_block_reader_next(r, &rec) == 1) {
		tracevault__v1__trace_record__free_unpacked(rec, NULL);
		n++;
	}
	assert_int_equal(n, 100);
	tv_block_reader_free(r);
	/* a v1 header checksum covers [0, 60): a flipped field is caught there */
	v1[33] ^= 1;
	assert_int_equal(tv_block_reader_open(&r, v1, v1_len, err, sizeof(err)), -EBADMSG);
	assert_non_null(strstr(err, "header checksum"));
	free(v1);
	free(v2);
}

static void test_v2_loss_bitflip_rejected(void **state)
{
	(void)state;
	/* a flipped loss counter: the v2 header CRC covers it */
	expect_reject(64 + 3, 0x01, -EBADMSG, "header checksum");
}

/* ---- found by the issue 9 mutants (ordering of equal timestamps, loss of requests alone, a
 * payload with fewer records than its header counts) ---- */

static void test_equal_timestamps_keep_arrival_order(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	Tracevault__V1__TraceRecord r, *rec;
	struct tv_block_reader *rd;
	char path[64];
	void *out = NULL;
	size_t len = 0;

	(void)state;
	/* pids 1000..1004 in that order, all at one ts_ns, and one earlier record last */
	for (uint64_t i = 0; i < 6; i++) {
		fill(&r, i, path, sizeof(path));
		r.ts_ns = i == 5 ? 100 : 200;
		assert_int_equal(tv_block_builder_add(b, &r), 0);
	}
	assert_int_equal(tv_block_builder_seal(b, 3, TV_CODEC_NONE, 0, &out, &len), 0);
	assert_int_equal(tv_block_reader_open(&rd, out, len, NULL, 0), 0);
	for (int k = 0; k < 6; k++) {
		static const uint32_t want[] = {1005, 1000, 1001, 1002, 1003, 1004};

		assert_int_equal(tv_block_reader_next(rd, &rec), 1);
		assert_int_equal(rec->pid, want[k]);
		tracevault__v1__trace_record__free_unpacked(rec, NULL);
	}
	assert_int_equal(tv_block_reader_next(rd, &rec), 0);
	tv_block_reader_free(rd);
	free(out);
	tv_block_builder_free(b);
}

static void test_loss_of_requests_alone_seals_a_block(void **state)
{
	struct tv_block_builder *b = tv_block_builder_new();
	const struct tv_block_loss loss = {.requests = 4};
	struct tv_block_header h;
	void *out = NULL;
	size_t len = 0;

	(void)state;
	assert_true(tv_block_loss_any(&loss));
	tv_block_builder_set_loss(b, &loss, 555);
	assert_int_equal(tv_block_builder_seal(b, 12, TV_CODEC_ZSTD, 3, &out, &len), 0);
	assert_int_equal(tv_block_header_parse(out, len, &h, NULL, 0), 0);
	assert_int_equal(h.record_count, 0);
	assert_int_equal(h.loss.requests, 4);
	assert_int_equal(h.min_ts_ns, 555);
	free(out);
	tv_block_builder_free(b);
}

static void test_fewer_records_than_the_header_counts_rejected(void **state)
{
	size_t len, rlen;
	uint8_t *blk = seal_n(10, TV_CODEC_ZSTD, &len);
	struct tv_block_reader *r;
	const uint8_t *data;
	uint32_t count = 11, crc;
	uint64_t ts;
	int n = 0, ret;

	(void)state;
	/* the header claims 11 records, the payload holds 10: header CRC fixed up */
	memcpy(blk + 32, &count, 4);
	crc = tv_crc32c(blk, TV_BLOCK_V2_HEADER_BYTES - 4);
	memcpy(blk + TV_BLOCK_V2_HEADER_BYTES - 4, &crc, 4);
	assert_int_equal(tv_block_reader_open(&r, blk, len, NULL, 0), 0);
	while ((ret = tv_block_reader_next_raw(r, &data, &rlen, &ts)) == 1)
		n++;
	assert_int_equal(n, 10);
	assert_int_equal(ret, -EBADMSG);
	tv_block_reader_free(r);
	free(blk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_zstd_sorted),
		cmocka_unit_test(test_roundtrip_uncompressed),
		cmocka_unit_test(test_v3_gives_back_exact_bytes),
		cmocka_unit_test(test_v3_page_keeps_odd_records),
		cmocka_unit_test(test_v3_field_reader_matches_the_records),
		cmocka_unit_test(test_v3_bloom),
		cmocka_unit_test(test_v3_page_trace_check),
		cmocka_unit_test(test_seal_empty_is_enodata),
		cmocka_unit_test(test_reset_forgets_records),
		cmocka_unit_test(test_raw_walk_gives_ts_without_unpack),
		cmocka_unit_test(test_bad_magic_rejected),
		cmocka_unit_test(test_header_bitflip_rejected),
		cmocka_unit_test(test_payload_bitflip_rejected),
		cmocka_unit_test(test_unknown_version_rejected),
		cmocka_unit_test(test_unknown_codec_rejected),
		cmocka_unit_test(test_huge_size_rejected_before_alloc),
		cmocka_unit_test(test_raw_size_lie_rejected),
		cmocka_unit_test(test_truncation_rejected),
		cmocka_unit_test(test_set_id_restamps_header),
		cmocka_unit_test(test_crc32c_known_vector),
		cmocka_unit_test(test_v2_header_carries_loss),
		cmocka_unit_test(test_loss_only_block_has_no_records),
		cmocka_unit_test(test_v1_block_still_reads),
		cmocka_unit_test(test_v2_loss_bitflip_rejected),
		cmocka_unit_test(test_chunk_prefix_matches_protobuf),
		cmocka_unit_test(test_equal_timestamps_keep_arrival_order),
		cmocka_unit_test(test_loss_of_requests_alone_seals_a_block),
		cmocka_unit_test(test_fewer_records_than_the_header_counts_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
