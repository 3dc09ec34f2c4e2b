/* Block format version 3: the page directory, the trace-id filter and the columnar page codec
 * (proto/block_v3.h; layout and rules in proto/BLOCK.md "Version 3"). The codec is exact: a
 * record it cannot rebuild byte for byte from columns is kept whole, so every reader hands out
 * the very bytes the writer packed. */
#include "proto/block_v3.h"

#include <ctype.h>
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errf.h"
#include "proto/crc32c.h"
#include "proto/varint.h"

enum {
	C_MASK, C_TS, C_END, C_LAT, C_PID, C_STATUS, C_REQB, C_RESPB, C_FLAGS,
	C_COMM, C_LOCAL, C_REMOTE, C_METHOD, C_PATH, C_ROLE, C_HOST, C_HTTPV,
	C_COMM_S, C_LOCAL_S, C_REMOTE_S, C_METHOD_S, C_PATH_S, C_ROLE_S, C_HOST_S, C_HTTPV_S,
	C_TRACE, C_TRACE_BIN, C_SPAN, C_SPAN_BIN, C_ODD, C_REST, NCOL
};
_Static_assert(NCOL == TV_BLOCK_V3_COLUMNS, "BLOCK.md lists the columns");

#define NSTRDICT 8           /* string dictionaries: C_COMM..C_HTTPV */
#define TRACE_DICT NSTRDICT  /* the trace-id dictionary follows them */
#define NDICT (NSTRDICT + 1)

enum kind { K_TS, K_END, K_NUM, K_STR, K_TRACE, K_SPAN };

/* The TraceRecord fields that have columns, in field-number order; bit i of a record's mask
 * says F[i] is present. */
static const struct { uint8_t field, kind, col; } F[] = {
	{ 1, K_TS, C_TS },	    { 2, K_END, C_END },	{ 3, K_NUM, C_LAT },
	{ 4, K_NUM, C_PID },	    { 5, K_STR, C_COMM },	{ 6, K_STR, C_LOCAL },
	{ 7, K_STR, C_REMOTE },	    { 8, K_STR, C_METHOD },	{ 9, K_STR, C_PATH },
	{ 10, K_NUM, C_STATUS },    { 11, K_NUM, C_REQB },	{ 12, K_NUM, C_RESPB },
	{ 13, K_TRACE, C_TRACE },   { 14, K_SPAN, C_SPAN },	{ 15, K_NUM, C_FLAGS },
	{ 18, K_STR, C_ROLE },	    { 19, K_STR, C_HOST },	{ 20, K_STR, C_HTTPV },
};
#define NF (sizeof(F) / sizeof(F[0]))
#define MASK_REST (1u << NF)      /* the record has fields kept as protobuf (C_REST) */
#define MASK_RAW (1u << (NF + 1)) /* the whole record is in C_REST */
#define MAX_FIELD 20

/* bit of field n in the mask, -1 for a field without a column */
static int fbit(uint64_t n)
{
	static const int8_t b[MAX_FIELD + 1] = { -1, 0,	 1,  2,	 3,  4,	 5,  6,	 7,  8, 9,
						 10, 11, 12, 13, 14, -1, -1, 15, 16, 17 };

	return n <= MAX_FIELD ? b[n] : -1;
}

static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/* A varint's length in bytes: 7 bits a byte, by the count of v's significant bits. */
static inline size_t varint_len(uint64_t v)
{
	return (size_t)((63 - __builtin_clzll(v | 1)) * 9 + 73) / 64;
}

void tv_v3_page_entry_get(const uint8_t *p, struct tv_v3_page_entry *e)
{
	e->first_ts = get64(p);
	e->last_ts = get64(p + 8);
	e->records = get32(p + 16);
	e->stored_len = get32(p + 20);
	e->raw_len = get32(p + 24);
	e->crc32c = get32(p + 28);
}

void tv_v3_page_entry_put(uint8_t *p, const struct tv_v3_page_entry *e)
{
	put64(p, e->first_ts);
	put64(p + 8, e->last_ts);
	put32(p + 16, e->records);
	put32(p + 20, e->stored_len);
	put32(p + 24, e->raw_len);
	put32(p + 28, e->crc32c);
}

void tv_v3_header_tail_get(const uint8_t *hdr, uint32_t *page_count, uint32_t *bloom_bytes,
			   uint32_t *dir_crc32c, uint32_t *bloom_crc32c)
{
	*page_count = get32(hdr + 108);
	*bloom_bytes = get32(hdr + 112);
	*dir_crc32c = get32(hdr + 116);
	*bloom_crc32c = get32(hdr + 120);
}

int tv_v3_directory_check(const uint8_t *dir, const struct tv_block_header *h, char *err,
			  size_t errlen)
{
	uint64_t records = 0, raw = 0, stored = 0, prev_last = 0;
	struct tv_v3_page_entry e;

	for (uint32_t i = 0; i < h->page_count; i++) {
		tv_v3_page_entry_get(dir + (size_t)i * TV_BLOCK_V3_PAGE_ENTRY_BYTES, &e);
		if (e.records == 0 || e.records > TV_BLOCK_V3_MAX_PAGE_RECORDS)
			return tv_errf(err, errlen, -EBADMSG, "page %u holds %u records (1..%u)",
				       i, e.records, TV_BLOCK_V3_MAX_PAGE_RECORDS);
		if (e.raw_len > TV_BLOCK_V3_MAX_PAGE_RAW_BYTES || e.stored_len == 0 ||
		    e.stored_len > e.raw_len ||
		    (h->codec == TV_CODEC_NONE && e.stored_len != e.raw_len))
			return tv_errf(err, errlen, -EBADMSG,
				       "page %u sizes out of bounds: stored %u, raw %u", i,
				       e.stored_len, e.raw_len);
		if (e.first_ts > e.last_ts || (i && e.first_ts < prev_last) ||
		    (i == 0 && e.first_ts != h->min_ts_ns) ||
		    (i + 1 == h->page_count && e.last_ts != h->max_ts_ns))
			return tv_errf(err, errlen, -EBADMSG,
				       "page %u ts_ns [%llu, %llu] out of order or not the "
				       "header's [%llu, %llu]", i, (unsigned long long)e.first_ts,
				       (unsigned long long)e.last_ts,
				       (unsigned long long)h->min_ts_ns,
				       (unsigned long long)h->max_ts_ns);
		prev_last = e.last_ts;
		records += e.records;
		raw += e.raw_len;
		stored += e.stored_len;
	}
	raw += (uint64_t)h->page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES + h->bloom_bytes;
	stored += (uint64_t)h->page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES + h->bloom_bytes;
	if (records != h->record_count || raw != h->raw_bytes || stored != h->payload_bytes)
		return tv_errf(err, errlen, -EBADMSG,
			       "page directory says %llu records, raw %llu, payload %llu bytes; "
			       "the header %u, %llu, %llu", (unsigned long long)records,
			       (unsigned long long)raw, (unsigned long long)stored,
			       h->record_count, (unsigned long long)h->raw_bytes,
			       (unsigned long long)h->payload_bytes);
	return 0;
}

/* ---- trace-id filter: Parquet's split-block Bloom filter ---- */

static uint64_t fmix64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ull;
	k ^= k >> 33;
	return k;
}

uint64_t tv_v3_trace_hash(const char *id32)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (int i = 0; i < 32; i++) {
		unsigned char c = (unsigned char)id32[i];

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 0x100000001b3ull;
	}
	return fmix64(h);
}

size_t tv_v3_bloom_bytes_for(size_t n)
{
	size_t bytes = (n * TV_BLOCK_V3_BLOOM_BITS_PER_ID + 7) / 8;

	bytes = (bytes + TV_BLOCK_V3_BLOOM_BLOCK_BYTES - 1) / TV_BLOCK_V3_BLOOM_BLOCK_BYTES *
		TV_BLOCK_V3_BLOOM_BLOCK_BYTES;
	return bytes > TV_BLOCK_V3_MAX_BLOOM_BYTES ? TV_BLOCK_V3_MAX_BLOOM_BYTES : bytes;
}

static const uint32_t SALT[8] = { 0x47b6137bu, 0x44974d91u, 0x8824ad5bu, 0xa2b7289du,
				  0x705495c7u, 0x2df1424bu, 0x9efc4947u, 0x5c6bfb31u };

static size_t bloom_offset(size_t bytes, uint64_t hash)
{
	uint64_t nblocks = bytes / TV_BLOCK_V3_BLOOM_BLOCK_BYTES;

	return (size_t)((hash >> 32) * nblocks >> 32) * TV_BLOCK_V3_BLOOM_BLOCK_BYTES;
}

static uint8_t *bloom_block(uint8_t *bloom, size_t bytes, uint64_t hash)
{
	return bloom + bloom_offset(bytes, hash);
}

void tv_v3_bloom_add(uint8_t *bloom, size_t bytes, uint64_t hash)
{
	uint8_t *b = bloom_block(bloom, bytes, hash);

	for (int i = 0; i < 8; i++) {
		uint32_t w = get32(b + 4 * i) | 1u << (((uint32_t)hash * SALT[i]) >> 27);

		put32(b + 4 * i, w);
	}
}

size_t tv_v3_bloom_block_offset(size_t bytes, uint64_t hash)
{
	return bloom_offset(bytes, hash);
}

bool tv_v3_bloom_block_test(const uint8_t *b, uint64_t hash)
{
	for (int i = 0; i < 8; i++)
		if (!(get32(b + 4 * i) & 1u << (((uint32_t)hash * SALT[i]) >> 27)))
			return false;
	return true;
}

bool tv_v3_bloom_test(const uint8_t *bloom, size_t bytes, uint64_t hash)
{
	if (bytes < TV_BLOCK_V3_BLOOM_BLOCK_BYTES)
		return false;
	return tv_v3_bloom_block_test(bloom_block((uint8_t *)bloom, bytes, hash), hash);
}

/* ---- protobuf field walking ---- */

/* The field at p (len bytes left): its number, wire type and total length (key included).
 * Returns 0 or -EBADMSG. */
static int field_span(const uint8_t *p, size_t len, uint64_t *num, unsigned *wt, size_t *total,
		      size_t *key_len, size_t *val_off, size_t *val_len)
{
	uint64_t key, v;
	size_t used, pos;

	if (tv_varint_get(p, len, &key, &used))
		return -EBADMSG;
	pos = used;
	*key_len = used;
	*num = key >> 3;
	*wt = key & 7;
	switch (*wt) {
	case 0:
		if (tv_varint_get(p + pos, len - pos, &v, &used))
			return -EBADMSG;
		*val_off = pos;
		*val_len = used;
		pos += used;
		break;
	case 1:
	case 5: {
		size_t n = *wt == 1 ? 8 : 4;

		if (len - pos < n)
			return -EBADMSG;
		*val_off = pos;
		*val_len = n;
		pos += n;
		break;
	}
	case 2:
		if (tv_varint_get(p + pos, len - pos, &v, &used) || v > len - pos - used)
			return -EBADMSG;
		*val_off = pos + used;
		*val_len = (size_t)v;
		pos += used + (size_t)v;
		break;
	default:
		return -EBADMSG;
	}
	if (*num == 0)
		return -EBADMSG;
	*total = pos;
	return 0;
}

int tv_v3_record_trace(const uint8_t *rec, size_t len, const uint8_t **id, size_t *id_len)
{
	size_t pos = 0;

	*id = NULL;
	*id_len = 0;
	while (pos < len) {
		uint64_t num;
		unsigned wt;
		size_t total, kl, vo, vl;

		if (field_span(rec + pos, len - pos, &num, &wt, &total, &kl, &vo, &vl))
			return -EBADMSG;
		if (num == 13 && wt == 2) { /* the last one wins, as protobuf reads it */
			*id = rec + pos + vo;
			*id_len = vl;
		}
		pos += total;
	}
	return 0;
}

/* ---- encoder ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static int buf_room(struct buf *b, size_t n)
{
	size_t ncap = b->cap ? b->cap : 256;
	uint8_t *np;

	if (b->cap - b->len >= n)
		return 0;
	while (ncap - b->len < n)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = ncap;
	return 0;
}

static int buf_varint(struct buf *b, uint64_t v)
{
	if (buf_room(b, TV_VARINT_MAX_BYTES))
		return -ENOMEM;
	b->len += tv_varint_put(b->p + b->len, v);
	return 0;
}

static int buf_bytes(struct buf *b, const void *p, size_t n)
{
	if (buf_room(b, n))
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

struct dent {
	uint64_t hash;
	uint32_t off, len; /* the key in dict.keys */
};

/* first-seen order ids of distinct strings, a hash table of id+1 (0: free) */
struct dict {
	uint32_t *slots;
	uint32_t nslots;
	struct dent *ent;
	uint32_t n, cap;
	struct buf keys;
};

struct tv_v3_page_enc {
	struct buf col[NCOL];
	struct dict d[NDICT];
	struct buf rest; /* one record's fields kept as protobuf */
	uint32_t records;
	uint64_t first_ts, last_ts;
	size_t raw;
};

static uint64_t str_hash(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return fmix64(h ^ n);
}

/* The id of the n bytes at s, or -1 after adding it as the next id. -ENOMEM as -2. */
static int64_t dict_get(struct dict *d, const uint8_t *s, size_t n)
{
	uint64_t h = str_hash(s, n);
	uint32_t i;

	if ((d->n + 1) * 2 > d->nslots) {
		uint32_t ns = d->nslots ? d->nslots * 2 : 256;
		uint32_t *sl = calloc(ns, sizeof(*sl));

		if (!sl)
			return -2;
		for (uint32_t k = 0; k < d->n; k++) {
			i = (uint32_t)d->ent[k].hash & (ns - 1);
			while (sl[i])
				i = (i + 1) & (ns - 1);
			sl[i] = k + 1;
		}
		free(d->slots);
		d->slots = sl;
		d->nslots = ns;
	}
	for (i = (uint32_t)h & (d->nslots - 1); d->slots[i]; i = (i + 1) & (d->nslots - 1)) {
		const struct dent *e = &d->ent[d->slots[i] - 1];

		if (e->hash == h && e->len == n && !memcmp(d->keys.p + e->off, s, n))
			return d->slots[i] - 1;
	}
	if (d->n == d->cap) {
		uint32_t nc = d->cap ? d->cap * 2 : 64;
		struct dent *ne = realloc(d->ent, nc * sizeof(*ne));

		if (!ne)
			return -2;
		d->ent = ne;
		d->cap = nc;
	}
	d->ent[d->n] = (struct dent){ .hash = h, .off = (uint32_t)d->keys.len, .len = (uint32_t)n };
	if (buf_bytes(&d->keys, s, n))
		return -2;
	d->slots[i] = ++d->n;
	return -1;
}

static void dict_reset(struct dict *d)
{
	if (d->slots)
		memset(d->slots, 0, d->nslots * sizeof(*d->slots));
	d->n = 0;
	d->keys.len = 0;
}

struct tv_v3_page_enc *tv_v3_page_enc_new(void)
{
	return calloc(1, sizeof(struct tv_v3_page_enc));
}

void tv_v3_page_enc_free(struct tv_v3_page_enc *e)
{
	if (!e)
		return;
	for (int i = 0; i < NCOL; i++)
		free(e->col[i].p);
	for (int i = 0; i < NDICT; i++) {
		free(e->d[i].slots);
		free(e->d[i].ent);
		free(e->d[i].keys.p);
	}
	free(e->rest.p);
	free(e);
}

uint32_t tv_v3_page_enc_records(const struct tv_v3_page_enc *e)
{
	return e->records;
}

/* Split rec into column fields and kept fields (e->rest). false: keep the record whole (its
 * fields are out of number order, a column field is repeated or has another wire type, or a
 * varint is not minimal, so columns could not give the same bytes back). */
static bool enc_split(struct tv_v3_page_enc *e, const uint8_t *rec, size_t len,
		      struct tv_v3_record *r)
{
	uint64_t last = 0;
	size_t pos = 0;

	e->rest.len = 0;
	r->mask = 0;
	while (pos < len) {
		uint64_t num, v = 0;
		unsigned wt;
		size_t total, kl, vo, vl, used;
		int bit;

		if (field_span(rec + pos, len - pos, &num, &wt, &total, &kl, &vo, &vl))
			return false;
		if (num < last || kl != varint_len(num << 3 | wt))
			return false;
		bit = fbit(num);
		if (bit < 0) {
			if (buf_bytes(&e->rest, rec + pos, total))
				return false;
		} else {
			bool is_num = F[bit].kind == K_TS || F[bit].kind == K_END ||
				      F[bit].kind == K_NUM;

			if (num == last || wt != (is_num ? 0u : 2u))
				return false;
			if (is_num) {
				tv_varint_get(rec + pos + vo, vl, &v, &used);
				if (vl != varint_len(v))
					return false;
				r->num[num] = v;
			} else {
				if (vo - kl != varint_len(vl))
					return false;
				r->str[num] = rec + pos + vo;
				r->str_len[num] = (uint32_t)vl;
			}
			r->mask |= 1u << bit;
		}
		last = num;
		pos += total;
	}
	if (e->rest.len)
		r->mask |= MASK_REST;
	return true;
}

static bool lower_hex(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int hexval(uint8_t c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

static int put_hex_bin(struct buf *b, const uint8_t *s, size_t n)
{
	if (buf_room(b, n / 2))
		return -ENOMEM;
	for (size_t i = 0; i < n; i += 2)
		b->p[b->len++] = (uint8_t)(hexval(s[i]) << 4 | hexval(s[i + 1]));
	return 0;
}

static int put_lenstr(struct buf *b, const uint8_t *s, size_t n)
{
	return buf_varint(b, n) ? -ENOMEM : buf_bytes(b, s, n);
}

static uint64_t zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static int enc_fields(struct tv_v3_page_enc *e, const struct tv_v3_record *r)
{
	int ret = 0;

	for (size_t i = 0; i < NF && !ret; i++) {
		uint8_t f = F[i].field;
		const uint8_t *s = r->str[f];
		size_t n = r->str_len[f];
		int64_t id;

		if (!(r->mask & 1u << i))
			continue;
		switch (F[i].kind) {
		case K_TS:
			break;
		case K_END: {
			uint64_t lat = r->mask & 1u << 2 ? r->num[3] : 0;

			ret = buf_varint(&e->col[C_END],
					 zigzag((int64_t)(r->num[2] - r->ts_ns - lat)));
			break;
		}
		case K_NUM:
			ret = buf_varint(&e->col[F[i].col], r->num[f]);
			break;
		case K_STR: {
			struct dict *d = &e->d[F[i].col - C_COMM];
			uint32_t next = d->n;

			id = dict_get(d, s, n);
			if (id == -2)
				return -ENOMEM;
			if (id >= 0) {
				ret = buf_varint(&e->col[F[i].col], (uint64_t)id);
			} else {
				ret = buf_varint(&e->col[F[i].col], next);
				if (!ret)
					ret = put_lenstr(&e->col[F[i].col + NSTRDICT], s, n);
			}
			break;
		}
		case K_TRACE: {
			struct dict *d = &e->d[TRACE_DICT];
			uint32_t next = d->n;

			id = dict_get(d, s, n);
			if (id == -2)
				return -ENOMEM;
			if (id >= 0)
				ret = buf_varint(&e->col[C_TRACE], (uint64_t)id);
			else if (n == 32 && lower_hex(s, n))
				ret = buf_varint(&e->col[C_TRACE], next) ||
				      put_hex_bin(&e->col[C_TRACE_BIN], s, n) ? -ENOMEM : 0;
			else
				ret = buf_varint(&e->col[C_TRACE], next + 1ull) ||
				      put_lenstr(&e->col[C_ODD], s, n) ? -ENOMEM : 0;
			break;
		}
		case K_SPAN:
			if (n == 16 && lower_hex(s, n))
				ret = buf_varint(&e->col[C_SPAN], 0) ||
				      put_hex_bin(&e->col[C_SPAN_BIN], s, n) ? -ENOMEM : 0;
			else
				ret = buf_varint(&e->col[C_SPAN], 1) ||
				      put_lenstr(&e->col[C_ODD], s, n) ? -ENOMEM : 0;
			break;
		}
	}
	return ret;
}

int tv_v3_page_enc_add(struct tv_v3_page_enc *e, const uint8_t *rec, size_t len, uint64_t ts_ns,
		       bool *has_trace, uint64_t *trace_hash)
{
	struct tv_v3_record r;
	const uint8_t *id;
	size_t id_len;
	size_t before[NCOL];
	int ret;

	memset(&r, 0, sizeof(r));
	*has_trace = false;
	if (tv_v3_record_trace(rec, len, &id, &id_len) == 0 && id_len == 32) {
		*has_trace = true;
		*trace_hash = tv_v3_trace_hash((const char *)id);
	}
	for (int i = 0; i < NCOL; i++)
		before[i] = e->col[i].len;
	r.ts_ns = ts_ns;
	if (e->records == 0)
		e->first_ts = ts_ns;
	ret = buf_varint(&e->col[C_TS], ts_ns - (e->records ? e->last_ts : e->first_ts));
	if (ret)
		goto fail;
	if (enc_split(e, rec, len, &r) && (!(r.mask & 1u) || r.num[1] == ts_ns) &&
	    ((r.mask & 1u) || ts_ns == 0)) {
		ret = buf_varint(&e->col[C_MASK], r.mask);
		if (!ret)
			ret = enc_fields(e, &r);
		if (!ret && (r.mask & MASK_REST))
			ret = put_lenstr(&e->col[C_REST], e->rest.p, e->rest.len);
	} else {
		ret = buf_varint(&e->col[C_MASK], MASK_RAW);
		if (!ret)
			ret = put_lenstr(&e->col[C_REST], rec, len);
	}
	if (ret)
		goto fail;
	e->last_ts = ts_ns;
	e->records++;
	e->raw += len;
	return 0;
fail:
	/* a dictionary may hold a string of the failed record: harmless, ids stay consistent
	 * only if the columns do, so the caller gives up the page (seal fails with -ENOMEM) */
	for (int i = 0; i < NCOL; i++)
		e->col[i].len = before[i];
	return ret;
}

void tv_v3_page_enc_reset(struct tv_v3_page_enc *e)
{
	for (int i = 0; i < NCOL; i++)
		e->col[i].len = 0;
	for (int i = 0; i < NDICT; i++)
		dict_reset(&e->d[i]);
	e->records = 0;
	e->raw = 0;
}

int tv_v3_page_enc_finish(struct tv_v3_page_enc *e, ZSTD_CCtx *cctx, int level, uint8_t **out,
			  size_t *out_len, size_t *out_cap, struct tv_v3_page_entry *entry)
{
	struct buf o = { *out, *out_len, *out_cap };
	uint64_t raw = 0;
	size_t start = o.len, table = 0;
	size_t stored[NCOL];
	uint8_t *z[NCOL] = { 0 };
	int ret = 0;

	for (int i = 0; i < NCOL; i++)
		raw += e->col[i].len;
	if (raw > TV_BLOCK_V3_MAX_PAGE_RAW_BYTES - NCOL * 8) {
		ret = -E2BIG;
		goto out;
	}
	for (int i = 0; i < NCOL; i++) {
		size_t n = e->col[i].len, bound = ZSTD_compressBound(n), zn;

		stored[i] = n;
		if (!cctx || n < 16)
			continue;
		z[i] = malloc(bound);
		if (!z[i]) {
			ret = -ENOMEM;
			goto out;
		}
		zn = ZSTD_compressCCtx(cctx, z[i], bound, e->col[i].p, n, level);
		if (ZSTD_isError(zn)) {
			ret = -EIO;
			goto out;
		}
		if (zn < n)
			stored[i] = zn;
	}
	for (int i = 0; i < NCOL; i++) {
		ret = buf_varint(&o, e->col[i].len) || buf_varint(&o, stored[i]) ? -ENOMEM : 0;
		if (ret)
			goto out;
	}
	table = o.len - start;
	for (int i = 0; i < NCOL; i++) {
		ret = buf_bytes(&o, stored[i] < e->col[i].len ? z[i] : e->col[i].p, stored[i]);
		if (ret)
			goto out;
	}
	entry->first_ts = e->first_ts;
	entry->last_ts = e->last_ts;
	entry->records = e->records;
	entry->stored_len = (uint32_t)(o.len - start);
	entry->raw_len = (uint32_t)(table + raw);
	entry->crc32c = tv_crc32c(o.p + start, o.len - start);
	tv_v3_page_enc_reset(e);
out:
	for (int i = 0; i < NCOL; i++)
		free(z[i]);
	if (ret)
		o.len = start;
	*out = o.p;
	*out_len = o.len;
	*out_cap = o.cap;
	return ret;
}

/* ---- decoder ---- */

struct col {
	const uint8_t *p;
	size_t len, pos;
};

struct dref {
	const uint8_t *p;
	uint32_t len;
	uint8_t hex;
	uint8_t lenlen; /* its protobuf length prefix's bytes (written as hex: 2 * len) */
};

struct tv_v3_page {
	struct tv_v3_page_entry e;
	struct col c[NCOL];
	uint64_t *ts;
	struct dref *dict[NDICT];
	uint32_t dn[NDICT];
	uint32_t next;
	uint32_t want; /* the columns decoded (bits by column number) */
	uint8_t fidx[NF]; /* a field reader's fields: their indexes in F */
	uint8_t nfidx;
	uint8_t *raw;
};

#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

size_t tv_v3_page_work_bytes(const struct tv_v3_page_entry *e)
{
	return ALIGN16(sizeof(struct tv_v3_page)) + ALIGN16((size_t)e->records * 8) +
	       NDICT * ALIGN16((size_t)e->records * sizeof(struct dref)) + e->raw_len;
}

/* col_varint past its one-byte case: a longer value, or the error of a column cut short. */
static __attribute__((noinline)) int col_varint_long(struct tv_v3_page *p, int c, uint64_t *v,
						      char *err, size_t errlen)
{
	struct col *k = &p->c[c];
	const uint8_t *q = k->p + k->pos;
	size_t used;

	/* three or four bytes (latencies, times) with room for them: no bound checks per byte */
	if (k->len - k->pos >= 4 && q[0] >= 0x80 && q[1] >= 0x80) {
		uint64_t x = (uint64_t)(q[0] & 0x7f) | (uint64_t)(q[1] & 0x7f) << 7 |
			     (uint64_t)(q[2] & 0x7f) << 14;

		if (q[2] < 0x80) {
			*v = x;
			k->pos += 3;
			return 0;
		}
		if (q[3] < 0x80) {
			*v = x | (uint64_t)q[3] << 21;
			k->pos += 4;
			return 0;
		}
	}
	if (tv_varint_get(q, k->len - k->pos, v, &used))
		return tv_errf(err, errlen, -EBADMSG, "page column %d ends inside record %u", c,
			       p->next);
	k->pos += used;
	return 0;
}

/* The next varint of column c into *v. 0, or -EBADMSG (err set) when the column ends in it.
 * Inlined for its one- and two-byte cases, most of a page's values (dictionary indexes,
 * statuses, pids, body sizes); read as tv_varint_get reads them. */
static inline __attribute__((always_inline)) int col_varint(struct tv_v3_page *p, int c,
							    uint64_t *v, char *err, size_t errlen)
{
	struct col *k = &p->c[c];
	const uint8_t *q = k->p + k->pos;

	if (k->pos < k->len && q[0] < 0x80) {
		*v = q[0];
		k->pos++;
		return 0;
	}
	if (k->len - k->pos >= 2 && q[1] < 0x80) {
		*v = (uint64_t)(q[0] & 0x7f) | (uint64_t)q[1] << 7;
		k->pos += 2;
		return 0;
	}
	return col_varint_long(p, c, v, err, errlen);
}

static inline __attribute__((always_inline)) int col_bytes(struct tv_v3_page *p, int c, size_t n,
							    const uint8_t **s, char *err,
							    size_t errlen)
{
	struct col *k = &p->c[c];

	if (n > k->len - k->pos)
		return tv_errf(err, errlen, -EBADMSG, "page column %d ends inside record %u", c,
			       p->next);
	*s = k->p + k->pos;
	k->pos += n;
	return 0;
}

/* Inlined with col_bytes: every new string of a page comes through here. */
static inline __attribute__((always_inline)) int col_lenstr(struct tv_v3_page *p, int c,
							     const uint8_t **s, uint32_t *n,
							     char *err, size_t errlen)
{
	uint64_t v;
	int ret = col_varint(p, c, &v, err, errlen);

	if (ret)
		return ret;
	if (v > TV_BLOCK_MAX_RECORD_BYTES)
		return tv_errf(err, errlen, -EBADMSG, "page column %d: a %llu-byte string", c,
			       (unsigned long long)v);
	*n = (uint32_t)v;
	return col_bytes(p, c, (size_t)v, s, err, errlen);
}

/* The page's column table at src: each column's raw and stored length, checked against the
 * directory entry e; *pos gets the offset of the first column. 0 or -EBADMSG. */
static int column_table(const struct tv_v3_page_entry *e, const uint8_t *src, uint64_t *rawlen,
			uint64_t *stlen, size_t *pos_out, char *err, size_t errlen)
{
	uint64_t sum_raw = 0, sum_st = 0;
	size_t pos = 0, used;

	for (int i = 0; i < NCOL; i++) {
		if (tv_varint_get(src + pos, e->stored_len - pos, &rawlen[i], &used))
			return tv_errf(err, errlen, -EBADMSG, "page column table cut at column %d",
				       i);
		pos += used;
		if (tv_varint_get(src + pos, e->stored_len - pos, &stlen[i], &used))
			return tv_errf(err, errlen, -EBADMSG, "page column table cut at column %d",
				       i);
		pos += used;
		if (rawlen[i] > TV_BLOCK_V3_MAX_PAGE_RAW_BYTES || stlen[i] > rawlen[i])
			return tv_errf(err, errlen, -EBADMSG,
				       "page column %d: stored %llu, raw %llu bytes", i,
				       (unsigned long long)stlen[i],
				       (unsigned long long)rawlen[i]);
		sum_raw += rawlen[i];
		sum_st += stlen[i];
	}
	if (pos + sum_st != e->stored_len || pos + sum_raw != e->raw_len)
		return tv_errf(err, errlen, -EBADMSG,
			       "page columns hold %llu stored / %llu raw bytes, its directory "
			       "entry %u / %u", (unsigned long long)(pos + sum_st),
			       (unsigned long long)(pos + sum_raw), e->stored_len, e->raw_len);
	*pos_out = pos;
	return 0;
}

/* Column i (stored at s, stlen bytes) into dst (rawlen bytes): copied, or decompressed from
 * its one zstd frame. 0 or -EBADMSG. */
static int column_get(const uint8_t *s, uint64_t stlen, uint64_t rawlen, uint8_t *dst,
		      ZSTD_DCtx *dctx, int i, char *err, size_t errlen)
{
	unsigned long long fcs;
	size_t fsz, z;

	if (stlen == rawlen) {
		if (rawlen)
			memcpy(dst, s, rawlen);
		return 0;
	}
	fcs = ZSTD_getFrameContentSize(s, stlen);
	fsz = ZSTD_findFrameCompressedSize(s, stlen);
	if (!dctx || fcs != rawlen || ZSTD_isError(fsz) || fsz != stlen)
		return tv_errf(err, errlen, -EBADMSG, "page column %d is not one zstd frame of %llu "
			       "bytes", i, (unsigned long long)rawlen);
	z = ZSTD_decompressDCtx(dctx, dst, rawlen, s, stlen);
	if (ZSTD_isError(z) || z != rawlen)
		return tv_errf(err, errlen, -EBADMSG, "page column %d does not decompress: %s", i,
			       ZSTD_isError(z) ? ZSTD_getErrorName(z) : "short");
	return 0;
}

static bool id_equal_nocase(const uint8_t *a, const char *b)
{
	for (int i = 0; i < 32; i++) {
		unsigned char x = a[i], y = (unsigned char)b[i];

		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y - 'A' + 'a');
		if (x != y)
			return false;
	}
	return true;
}

int tv_v3_page_may_hold_trace(const struct tv_v3_page_entry *e, const uint8_t *src,
			      void *work, ZSTD_DCtx *dctx, const char *ids, size_t n,
			      size_t stride, char *err, size_t errlen)
{
	static const int need[] = { C_MASK, C_TRACE_BIN, C_ODD };
	uint64_t rawlen[NCOL], stlen[NCOL], off[NCOL];
	const uint8_t *col[NCOL];
	uint8_t *w = work;
	size_t pos = 0, used;
	int ret;

	ret = column_table(e, src, rawlen, stlen, &pos, err, errlen);
	if (ret)
		return ret;
	for (int i = 0; i < NCOL; i++) {
		off[i] = pos;
		pos += stlen[i];
	}
	for (size_t k = 0; k < sizeof(need) / sizeof(need[0]); k++) {
		int i = need[k];

		ret = column_get(src + off[i], stlen[i], rawlen[i], w, dctx, i, err, errlen);
		if (ret)
			return ret;
		col[i] = w;
		w += rawlen[i];
	}
	/* a record kept whole (another encoder's field order) has its trace id in C_REST */
	for (size_t p = 0; p < rawlen[C_MASK]; p += used) {
		uint64_t m;

		if (tv_varint_get(col[C_MASK] + p, rawlen[C_MASK] - p, &m, &used))
			return tv_errf(err, errlen, -EBADMSG, "page mask column cut");
		if (m & MASK_RAW)
			return 1;
	}
	/* every lower-case hex id of the page is in C_TRACE_BIN once (16 bytes), any other
	 * trace id (upper case, not hex) in C_ODD (beside odd span ids: a match there is only
	 * a maybe) */
	if (rawlen[C_TRACE_BIN] % 16)
		return tv_errf(err, errlen, -EBADMSG, "page trace-id column of %llu bytes",
			       (unsigned long long)rawlen[C_TRACE_BIN]);
	for (size_t k = 0; k < n; k++) {
		const char *id = ids + k * stride;
		uint8_t bin[16];
		bool hex = true;

		for (int i = 0; i < 32 && hex; i++)
			hex = isxdigit((unsigned char)id[i]);
		for (int i = 0; hex && i < 16; i++)
			bin[i] = (uint8_t)(hexval((uint8_t)tolower((unsigned char)id[2 * i])) << 4 |
					   hexval((uint8_t)tolower((unsigned char)id[2 * i + 1])));
		for (size_t p = 0; hex && p < rawlen[C_TRACE_BIN]; p += 16)
			if (!memcmp(col[C_TRACE_BIN] + p, bin, 16))
				return 1;
		for (size_t p = 0; p < rawlen[C_ODD];) {
			uint64_t len;

			if (tv_varint_get(col[C_ODD] + p, rawlen[C_ODD] - p, &len, &used) ||
			    len > rawlen[C_ODD] - p - used)
				return tv_errf(err, errlen, -EBADMSG, "page odd-string column cut");
			p += used;
			if (len == 32 && id_equal_nocase(col[C_ODD] + p, id))
				return 1;
			p += len;
		}
	}
	return 0;
}

/* Columns a field reader needs besides mask and ts: the rest column only when a record is kept
 * whole (decided from the mask column at open). */
#define COL_BIT(c) (1u << (c))
#define ALL_COLS ((uint32_t)((1ull << NCOL) - 1))

/* Whether the mask column (decoded, at k) holds a record kept whole. -EBADMSG when it does not
 * parse (the reader reports it with the record then). */
static bool any_raw(const struct col *k)
{
	size_t pos = 0, used;
	uint64_t v;

	while (pos < k->len) {
		if (tv_varint_get(k->p + pos, k->len - pos, &v, &used))
			return true; /* let the record walk report it */
		if (v & MASK_RAW)
			return true;
		pos += used;
	}
	return false;
}

/* tv_v3_page_open for the columns in want (bits by column number; mask and ts always): the
 * others are checked against the column table's sizes but not decompressed, and hold
 * nothing. */
static int page_open(struct tv_v3_page **out, void *work, const struct tv_v3_page_entry *e,
		     const uint8_t *src, ZSTD_DCtx *dctx, uint32_t want, char *err, size_t errlen)
{
	uint8_t *w = work;
	struct tv_v3_page *p = work;
	uint64_t rawlen[NCOL], stlen[NCOL], prev;
	size_t pos = 0, dst = 0;
	int ret;

	if (e->records == 0 || e->records > TV_BLOCK_V3_MAX_PAGE_RECORDS)
		return tv_errf(err, errlen, -EBADMSG, "page of %u records", e->records);
	memset(p, 0, sizeof(*p));
	p->e = *e;
	w += ALIGN16(sizeof(*p));
	p->ts = (uint64_t *)w;
	w += ALIGN16((size_t)e->records * 8);
	for (int i = 0; i < NDICT; i++) {
		p->dict[i] = (struct dref *)w;
		w += ALIGN16((size_t)e->records * sizeof(struct dref));
	}
	p->raw = w;
	ret = column_table(e, src, rawlen, stlen, &pos, err, errlen);
	if (ret)
		return ret;
	want |= COL_BIT(C_MASK) | COL_BIT(C_TS);
	p->want = want;
	for (int i = 0; i < NCOL; i++) {
		if (i == C_REST && !(want & COL_BIT(C_REST)) && any_raw(&p->c[C_MASK]))
			p->want = want |= COL_BIT(C_REST);
		if (!(want & COL_BIT(i))) {
			pos += stlen[i];
			continue;
		}
		ret = column_get(src + pos, stlen[i], rawlen[i], p->raw + dst, dctx, i, err,
				 errlen);
		if (ret)
			return ret;
		p->c[i] = (struct col){ .p = p->raw + dst, .len = rawlen[i] };
		dst += rawlen[i];
		pos += stlen[i];
	}
	prev = e->first_ts;
	for (uint32_t i = 0; i < e->records; i++) {
		uint64_t d;

		p->next = i;
		ret = col_varint(p, C_TS, &d, err, errlen);
		if (ret)
			return ret;
		if (d > UINT64_MAX - prev)
			return tv_errf(err, errlen, -EBADMSG, "page ts_ns overflows at record %u",
				       i);
		p->ts[i] = prev += d;
	}
	p->next = 0;
	if (p->ts[0] != e->first_ts || p->ts[e->records - 1] != e->last_ts ||
	    p->c[C_TS].pos != p->c[C_TS].len)
		return tv_errf(err, errlen, -EBADMSG,
			       "page ts_ns column does not match its directory entry [%llu, "
			       "%llu]", (unsigned long long)e->first_ts,
			       (unsigned long long)e->last_ts);
	*out = p;
	return 0;
}

int tv_v3_page_open(struct tv_v3_page **out, void *work, const struct tv_v3_page_entry *e,
		    const uint8_t *src, ZSTD_DCtx *dctx, char *err, size_t errlen)
{
	return page_open(out, work, e, src, dctx, ALL_COLS, err, errlen);
}

const uint64_t *tv_v3_page_ts(const struct tv_v3_page *p)
{
	return p->ts;
}

static size_t tag_len(unsigned field)
{
	return field < 16 ? 1 : 2;
}

int tv_v3_page_next(struct tv_v3_page *p, struct tv_v3_record *r, char *err, size_t errlen)
{
	uint64_t v;
	size_t bytes = 0;
	int ret;

	if (p->next == p->e.records) {
		for (int i = 0; i < NCOL; i++)
			if (p->c[i].pos != p->c[i].len)
				return tv_errf(err, errlen, -EBADMSG,
					       "page column %d holds bytes past its %u records", i,
					       p->e.records);
		return 0;
	}
	ret = col_varint(p, C_MASK, &v, err, errlen);
	if (ret)
		return ret;
	if (v >= MASK_RAW << 1 || ((v & MASK_RAW) && v != MASK_RAW))
		return tv_errf(err, errlen, -EBADMSG, "record %u of the page has a bad mask 0x%llx",
			       p->next, (unsigned long long)v);
	r->mask = (uint32_t)v;
	r->ts_ns = p->ts[p->next];
	r->rest = NULL;
	r->rest_len = 0;
	if (v & MASK_RAW) {
		uint64_t ts;

		ret = col_lenstr(p, C_REST, &r->rest, &r->rest_len, err, errlen);
		if (ret)
			return ret;
		if (tv_block_record_ts(r->rest, r->rest_len, &ts) || ts != r->ts_ns)
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u of the page is not a record of ts_ns %llu",
				       p->next, (unsigned long long)r->ts_ns);
		r->bytes = r->rest_len;
		p->next++;
		return 1;
	}
	if (!(v & 1u) && r->ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the page has no ts_ns but its column says %llu",
			       p->next, (unsigned long long)r->ts_ns);
	r->num[1] = r->ts_ns;
	r->num[3] = 0;
	if (v & (1u << 2)) { /* latency first: end_ns is stored relative to ts + latency */
		ret = col_varint(p, C_LAT, &r->num[3], err, errlen);
		if (ret)
			return ret;
	}
	for (uint32_t m = r->mask & ((1u << NF) - 1); m; m &= m - 1) { /* its fields only */
		size_t i = (size_t)__builtin_ctz(m);
		uint8_t f = F[i].field;

		/* the record's protobuf size is summed field by field, each case its own: the
		 * tags of fields with columns take one byte up to field 15, two past it */
		switch (F[i].kind) {
		case K_TS:
			bytes += 1 + varint_len(r->num[1]);
			break;
		case K_END:
			ret = col_varint(p, C_END, &r->num[2], err, errlen);
			r->num[2] = r->ts_ns + r->num[3] + (uint64_t)unzigzag(r->num[2]);
			bytes += 1 + varint_len(r->num[2]);
			break;
		case K_NUM:
			if (f != 3)
				ret = col_varint(p, F[i].col, &r->num[f], err, errlen);
			bytes += 1 + varint_len(r->num[f]);
			break;
		case K_STR:
		case K_TRACE: {
			int d = F[i].kind == K_STR ? F[i].col - C_COMM : TRACE_DICT;
			struct dref *ref;

			ret = col_varint(p, F[i].col, &v, err, errlen);
			if (ret)
				return ret;
			if (v < p->dn[d]) {
				ref = &p->dict[d][v];
			} else if (v == p->dn[d] && F[i].kind == K_STR) {
				ref = &p->dict[d][p->dn[d]++];
				ret = col_lenstr(p, F[i].col + NSTRDICT, &ref->p, &ref->len, err,
						 errlen);
				ref->hex = 0;
				ref->lenlen = (uint8_t)varint_len(ref->len);
			} else if (v == p->dn[d]) {
				ref = &p->dict[d][p->dn[d]++];
				ret = col_bytes(p, C_TRACE_BIN, 16, &ref->p, err, errlen);
				ref->len = 16;
				ref->hex = 1;
				ref->lenlen = 1; /* 32 */
			} else if (v == p->dn[d] + 1ull && F[i].kind == K_TRACE) {
				ref = &p->dict[d][p->dn[d]++];
				ret = col_lenstr(p, C_ODD, &ref->p, &ref->len, err, errlen);
				ref->hex = 0;
				ref->lenlen = (uint8_t)varint_len(ref->len);
			} else {
				return tv_errf(err, errlen, -EBADMSG,
					       "record %u of the page: field %u refers to string "
					       "%llu of %u", p->next, f, (unsigned long long)v,
					       p->dn[d]);
			}
			r->str[f] = ref->p;
			r->str_len[f] = ref->len;
			r->str_hex[f] = ref->hex;
			bytes += tag_len(f) + ref->lenlen + ((size_t)ref->len << ref->hex);
			break;
		}
		case K_SPAN:
			ret = col_varint(p, C_SPAN, &v, err, errlen);
			if (ret)
				return ret;
			if (v == 0) {
				ret = col_bytes(p, C_SPAN_BIN, 8, &r->str[f], err, errlen);
				r->str_len[f] = 8;
				r->str_hex[f] = 1;
				bytes += 1 + 1 + 16;
			} else if (v == 1) {
				ret = col_lenstr(p, C_ODD, &r->str[f], &r->str_len[f], err, errlen);
				r->str_hex[f] = 0;
				bytes += 1 + varint_len(r->str_len[f]) + r->str_len[f];
			} else {
				return tv_errf(err, errlen, -EBADMSG,
					       "record %u of the page: span tag %llu", p->next,
					       (unsigned long long)v);
			}
			break;
		}
		if (ret)
			return ret;
	}
	if (r->mask & MASK_REST) {
		ret = col_lenstr(p, C_REST, &r->rest, &r->rest_len, err, errlen);
		if (ret)
			return ret;
		bytes += r->rest_len;
	}
	if (bytes > TV_BLOCK_MAX_RECORD_BYTES)
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the page is %zu bytes, above the %u-byte record "
			       "limit", p->next, bytes, TV_BLOCK_MAX_RECORD_BYTES);
	r->bytes = bytes;
	p->next++;
	return 1;
}

/* The kept fields (C_REST) as tv_v3_record_write interleaves them with the columns' fields:
 * pos the next one's offset, num its number (UINT64_MAX past the last), total its length.
 * Each kept field is read once, however many column fields come before it. */
struct rest_cursor {
	size_t pos, total;
	uint64_t num;
};

/* Read the field at c->pos into c. 0, or -EBADMSG when it does not parse. */
static int rest_peek(const struct tv_v3_record *r, struct rest_cursor *c)
{
	unsigned wt;
	size_t kl, vo, vl;

	if (c->pos >= r->rest_len) {
		c->num = UINT64_MAX;
		return 0;
	}
	return field_span(r->rest + c->pos, r->rest_len - c->pos, &c->num, &wt, &c->total, &kl,
			  &vo, &vl);
}

/* memcpy for the short strings of a record (most under 32 bytes), without a call: whole
 * words that overlap instead of a byte loop, never reading or writing past n. */
static inline __attribute__((always_inline)) void copy_short(uint8_t *o, const uint8_t *s,
							     size_t n)
{
	if (n > 32) {
		memcpy(o, s, n);
	} else if (n >= 16) {
		uint8_t a[16], b[16];

		memcpy(a, s, 16);
		memcpy(b, s + n - 16, 16);
		memcpy(o, a, 16);
		memcpy(o + n - 16, b, 16);
	} else if (n >= 8) {
		uint64_t a, b;

		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(o, &a, 8);
		memcpy(o + n - 8, &b, 8);
	} else if (n >= 4) {
		uint32_t a, b;

		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		memcpy(o, &a, 4);
		memcpy(o + n - 4, &b, 4);
	} else if (n) {
		uint8_t a = s[0], m = s[n / 2], z = s[n - 1];

		o[0] = a;
		o[n / 2] = m;
		o[n - 1] = z;
	}
}

/* Copy the kept fields from c whose number is below field (all of them for UINT64_MAX). */
static int write_rest(const struct tv_v3_record *r, struct rest_cursor *c, uint64_t field,
		      uint8_t **o)
{
	while (c->num < field) {
		memcpy(*o, r->rest + c->pos, c->total);
		*o += c->total;
		c->pos += c->total;
		if (rest_peek(r, c))
			return -EBADMSG;
	}
	return 0;
}

bool tv_v3_record_whole(const struct tv_v3_record *r, const uint8_t **data)
{
	if (!(r->mask & MASK_RAW))
		return false;
	*data = r->rest;
	return true;
}

int tv_v3_record_write(const struct tv_v3_record *r, uint8_t *out, char *err, size_t errlen)
{
	/* "000102...ff": a byte's two lower-case hex digits at 2 * byte */
	static const char hex2[513] =
		"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
		"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
		"606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
		"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
		"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
		"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
		"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
	struct rest_cursor rc = { 0 };
	uint8_t *o = out;

	if (r->mask & MASK_RAW) {
		memcpy(out, r->rest, r->rest_len);
		return 0;
	}
	if (rest_peek(r, &rc))
		goto bad;
	/* the set bits of the mask only, in field order (F is sorted by field number) */
	for (uint32_t m = r->mask & ((1u << NF) - 1); m; m &= m - 1) {
		size_t i = (size_t)__builtin_ctz(m);
		uint8_t f = F[i].field;
		bool is_num = F[i].kind == K_TS || F[i].kind == K_END || F[i].kind == K_NUM;

		unsigned tag = (unsigned)f << 3 | (is_num ? 0 : 2); /* f <= 20: two bytes at most */

		if (rc.num < f && write_rest(r, &rc, f, &o))
			goto bad;
		if (tag < 0x80) {
			*o++ = (uint8_t)tag;
		} else {
			*o++ = (uint8_t)(tag | 0x80);
			*o++ = (uint8_t)(tag >> 7);
		}
		if (is_num) {
			o += tv_varint_put(o, r->num[f]);
		} else if (r->str_hex[f]) {
			o += tv_varint_put(o, r->str_len[f] * 2u);
			for (uint32_t k = 0; k < r->str_len[f]; k++, o += 2)
				memcpy(o, hex2 + 2 * r->str[f][k], 2);
		} else {
			o += tv_varint_put(o, r->str_len[f]);
			copy_short(o, r->str[f], r->str_len[f]);
			o += r->str_len[f];
		}
	}
	if (write_rest(r, &rc, UINT64_MAX, &o) || rc.pos != r->rest_len)
		goto bad;
	if ((size_t)(o - out) != r->bytes)
		goto bad;
	return 0;
bad:
	return tv_errf(err, errlen, -EBADMSG,
		       "record of ts_ns %llu: its kept fields do not parse as protobuf",
		       (unsigned long long)r->ts_ns);
}

/* ---- a few fields of each record ---- */

_Static_assert(NF < 32 && MAX_FIELD < 32, "field and mask bits fit a uint32_t");

int tv_v3_page_open_fields(struct tv_v3_page **out, void *work, const struct tv_v3_page_entry *e,
			   const uint8_t *src, ZSTD_DCtx *dctx, uint32_t fields, char *err,
			   size_t errlen)
{
	uint32_t want = 0;
	uint8_t fidx[NF], n = 0;
	int ret;

	for (size_t i = 0; i < NF; i++) {
		if (!(fields & TV_V3_FIELDS_READABLE & 1u << F[i].field))
			continue;
		fidx[n++] = (uint8_t)i;
		want |= COL_BIT(F[i].col);
		if (F[i].kind == K_STR)
			want |= COL_BIT(F[i].col + NSTRDICT);
	}
	ret = page_open(out, work, e, src, dctx, want, err, errlen);
	if (ret)
		return ret;
	memcpy((*out)->fidx, fidx, n);
	(*out)->nfidx = n;
	return 0;
}

uint32_t tv_v3_page_records(const struct tv_v3_page *p)
{
	return p->e.records;
}

int tv_v3_page_next_fields(struct tv_v3_page *p, struct tv_v3_fields *r, char *err,
			   size_t errlen)
{
	uint64_t v, mask;
	int ret;

	if (p->next == p->e.records) {
		for (int i = 0; i < NCOL; i++)
			if ((p->want & COL_BIT(i)) && p->c[i].pos != p->c[i].len)
				return tv_errf(err, errlen, -EBADMSG,
					       "page column %d holds bytes past its %u records", i,
					       p->e.records);
		return 0;
	}
	ret = col_varint(p, C_MASK, &mask, err, errlen);
	if (ret)
		return ret;
	if (mask >= MASK_RAW << 1 || ((mask & MASK_RAW) && mask != MASK_RAW))
		return tv_errf(err, errlen, -EBADMSG, "record %u of the page has a bad mask 0x%llx",
			       p->next, (unsigned long long)mask);
	r->raw = NULL;
	r->raw_len = 0;
	if (mask & MASK_RAW) { /* the column is there: page_open saw this record's mask */
		uint64_t ts;

		ret = col_lenstr(p, C_REST, &r->raw, &r->raw_len, err, errlen);
		if (ret)
			return ret;
		if (tv_block_record_ts(r->raw, r->raw_len, &ts) || ts != p->ts[p->next])
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u of the page is not a record of ts_ns %llu",
				       p->next, (unsigned long long)p->ts[p->next]);
		p->next++;
		return 1;
	}
	if (!(mask & 1u) && p->ts[p->next])
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u of the page has no ts_ns but its column says %llu",
			       p->next, (unsigned long long)p->ts[p->next]);
	for (uint8_t k = 0; k < p->nfidx; k++) {
		size_t i = p->fidx[k];
		uint8_t f = F[i].field;
		int d = F[i].col - C_COMM;
		struct dref *ref;

		if (!(mask & 1u << i)) { /* absent: as protobuf reads it, 0 or "" */
			r->num[f] = 0;
			r->str[f] = (const uint8_t *)"";
			r->str_len[f] = 0;
			r->str_id[f] = TV_V3_NO_ID;
			continue;
		}
		if (F[i].kind == K_NUM) {
			ret = col_varint(p, F[i].col, &r->num[f], err, errlen);
			if (ret)
				return ret;
			continue;
		}
		ret = col_varint(p, F[i].col, &v, err, errlen);
		if (ret)
			return ret;
		if (v < p->dn[d]) {
			ref = &p->dict[d][v];
		} else if (v == p->dn[d]) {
			ref = &p->dict[d][p->dn[d]++];
			ret = col_lenstr(p, F[i].col + NSTRDICT, &ref->p, &ref->len, err, errlen);
			if (ret)
				return ret;
			ref->hex = 0;
		} else {
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u of the page: field %u refers to string %llu of %u",
				       p->next, f, (unsigned long long)v, p->dn[d]);
		}
		r->str[f] = ref->p;
		r->str_len[f] = ref->len;
		r->str_id[f] = (uint32_t)v;
	}
	if ((mask & MASK_REST) && (p->want & COL_BIT(C_REST))) { /* pass over its kept fields */
		const uint8_t *rest;
		uint32_t n;

		ret = col_lenstr(p, C_REST, &rest, &n, err, errlen);
		if (ret)
			return ret;
	}
	p->next++;
	return 1;
}
