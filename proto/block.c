/* Trace block encode/decode, shared by the client (which seals blocks) and the server (which
 * checks them on arrival and reads them back for queries). Format: proto/BLOCK.md. */
#include "proto/block.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "common/errf.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"
#include "proto/varint.h"

/* v2 header: the v1 fields at the same offsets, 4 reserved bytes at 60, five u64 loss counters
 * from 64, lost_requests as a u32 at 104, then the CRC as the last 4 bytes at 108 (BLOCK.md) */
#define V2_LOSS_OFFSET 64

struct rec_ref {
	uint64_t ts_ns;
	size_t off; /* into builder->buf */
	size_t len;
};

struct tv_block_builder {
	uint8_t *buf; /* packed records, back to back, unframed */
	size_t len, cap;
	struct rec_ref *refs;
	uint32_t count, refs_cap;
	uint64_t min_ts_ns, max_ts_ns;
	struct tv_block_loss loss; /* for the next seal */
	uint64_t loss_ts_ns;       /* time range of a seal without records */
	unsigned version;          /* 0: TV_BLOCK_VERSION */
	struct tv_v3_page_enc *enc; /* version 3, kept across seals */
	ZSTD_CCtx *cctx;
};

struct tv_block_reader {
	struct tv_block_header h;
	uint8_t *raw; /* decompressed payload (owned) */
	size_t raw_len, pos;
	uint32_t seen;
};

/* ---- little-endian field access: the header is defined byte by byte, not as a C struct ---- */

static void put16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

_Static_assert(sizeof(struct tv_block_loss) == TV_BLOCK_LOSS_COUNTERS * sizeof(uint64_t),
	       "a new loss counter: update tv_block_loss_any/add/add_since and the v2 header");

int tv_block_loss_any(const struct tv_block_loss *l)
{
	return (l->ring_full | l->map_full | l->parser | l->cache | l->failed | l->requests) != 0;
}

void tv_block_loss_add(struct tv_block_loss *to, const struct tv_block_loss *l)
{
	to->ring_full += l->ring_full;
	to->map_full += l->map_full;
	to->parser += l->parser;
	to->cache += l->cache;
	to->failed += l->failed;
	to->requests += l->requests;
}

static void add_increase(uint64_t *to, uint64_t total, uint64_t *seen)
{
	if (total > *seen)
		*to += total - *seen;
	*seen = total;
}

void tv_block_loss_add_since(struct tv_block_loss *to, const struct tv_block_loss *total,
			     struct tv_block_loss *seen)
{
	add_increase(&to->ring_full, total->ring_full, &seen->ring_full);
	add_increase(&to->map_full, total->map_full, &seen->map_full);
	add_increase(&to->parser, total->parser, &seen->parser);
	add_increase(&to->cache, total->cache, &seen->cache);
	add_increase(&to->failed, total->failed, &seen->failed);
	add_increase(&to->requests, total->requests, &seen->requests);
}

static void header_write(uint8_t *p, const struct tv_block_header *h)
{
	uint32_t crc_off = h->header_bytes - 4;

	memset(p, 0, h->header_bytes); /* reserved bytes are 0 */
	put32(p + 0, h->magic);
	put16(p + 4, h->version);
	put16(p + 6, h->codec);
	put64(p + 8, h->block_id);
	put64(p + 16, h->min_ts_ns);
	put64(p + 24, h->max_ts_ns);
	put32(p + 32, h->record_count);
	put32(p + 36, h->flags);
	put64(p + 40, h->raw_bytes);
	put64(p + 48, h->payload_bytes);
	put32(p + 56, h->payload_crc32c);
	if (h->version >= 2) {
		put32(p + V2_LOSS_OFFSET - 4, h->reserved);
		put64(p + V2_LOSS_OFFSET + 0, h->loss.ring_full);
		put64(p + V2_LOSS_OFFSET + 8, h->loss.map_full);
		put64(p + V2_LOSS_OFFSET + 16, h->loss.parser);
		put64(p + V2_LOSS_OFFSET + 24, h->loss.cache);
		put64(p + V2_LOSS_OFFSET + 32, h->loss.failed);
		put32(p + V2_LOSS_OFFSET + 40,
		      h->loss.requests > UINT32_MAX ? UINT32_MAX : (uint32_t)h->loss.requests);
	}
	if (h->version >= 3) {
		put32(p + 108, h->page_count);
		put32(p + 112, h->bloom_bytes);
		put32(p + 116, h->dir_crc32c);
		put32(p + 120, h->bloom_crc32c);
	}
	put32(p + crc_off, tv_crc32c(p, crc_off));
}

uint32_t tv_block_header_bytes(const void *buf)
{
	const uint8_t *p = buf;

	if (get32(p) != TV_BLOCK_MAGIC)
		return 0;
	switch (get16(p + 4)) {
	case 1:
		return TV_BLOCK_V1_HEADER_BYTES;
	case 2:
		return TV_BLOCK_V2_HEADER_BYTES;
	case 3:
		return TV_BLOCK_V3_HEADER_BYTES;
	default:
		return 0;
	}
}

int tv_block_header_parse(const void *buf, size_t len, struct tv_block_header *h, char *err,
			  size_t errlen)
{
	const uint8_t *p = buf;
	uint32_t crc, hb, crc_off;

	memset(h, 0, sizeof(*h));
	if (len < TV_BLOCK_MIN_HEADER_BYTES) {
		tv_errf(err, errlen, 0, "block truncated: %zu bytes, header needs %d", len,
			TV_BLOCK_MIN_HEADER_BYTES);
		return -EINVAL;
	}
	h->magic = get32(p + 0);
	if (h->magic != TV_BLOCK_MAGIC) {
		tv_errf(err, errlen, 0, "bad block magic 0x%08x (want 0x%08x)", h->magic,
			TV_BLOCK_MAGIC);
		return -EBADMSG;
	}
	/* The version is read before the CRC because it says where the CRC is. An unknown
	 * version (or a corrupt one) cannot be checked further. */
	h->version = get16(p + 4);
	hb = tv_block_header_bytes(p);
	if (hb == 0) {
		tv_errf(err, errlen, 0, "unsupported block version %u (this build reads 1 to 3)",
			h->version);
		return -EPROTONOSUPPORT;
	}
	if (len < hb) {
		tv_errf(err, errlen, 0, "block truncated: %zu bytes, version %u header needs %u",
			len, h->version, hb);
		return -EINVAL;
	}
	crc_off = hb - 4;
	h->header_bytes = hb;
	h->header_crc32c = get32(p + crc_off);
	crc = tv_crc32c(p, crc_off);
	if (crc != h->header_crc32c) {
		tv_errf(err, errlen, 0,
			"block header checksum mismatch: stored 0x%08x, computed 0x%08x",
			h->header_crc32c, crc);
		return -EBADMSG;
	}
	h->codec = get16(p + 6);
	h->block_id = get64(p + 8);
	h->min_ts_ns = get64(p + 16);
	h->max_ts_ns = get64(p + 24);
	h->record_count = get32(p + 32);
	h->flags = get32(p + 36);
	h->raw_bytes = get64(p + 40);
	h->payload_bytes = get64(p + 48);
	h->payload_crc32c = get32(p + 56);
	if (h->version >= 2) {
		h->reserved = get32(p + V2_LOSS_OFFSET - 4);
		h->loss.ring_full = get64(p + V2_LOSS_OFFSET + 0);
		h->loss.map_full = get64(p + V2_LOSS_OFFSET + 8);
		h->loss.parser = get64(p + V2_LOSS_OFFSET + 16);
		h->loss.cache = get64(p + V2_LOSS_OFFSET + 24);
		h->loss.failed = get64(p + V2_LOSS_OFFSET + 32);
		h->loss.requests = get32(p + V2_LOSS_OFFSET + 40);
	}
	if (h->version >= 3)
		tv_v3_header_tail_get(p, &h->page_count, &h->bloom_bytes, &h->dir_crc32c,
				      &h->bloom_crc32c);
	if (h->codec != TV_CODEC_NONE && h->codec != TV_CODEC_ZSTD) {
		tv_errf(err, errlen, 0, "unsupported block codec %u", h->codec);
		return -EPROTONOSUPPORT;
	}
	if (h->raw_bytes > TV_BLOCK_MAX_RAW_BYTES || h->payload_bytes > TV_BLOCK_MAX_PAYLOAD_BYTES) {
		tv_errf(err, errlen, 0, "block sizes out of bounds: raw %llu, payload %llu",
			(unsigned long long)h->raw_bytes, (unsigned long long)h->payload_bytes);
		return -EBADMSG;
	}
	if (h->codec == TV_CODEC_NONE && h->raw_bytes != h->payload_bytes) {
		tv_errf(err, errlen, 0, "uncompressed block with raw %llu != payload %llu bytes",
			(unsigned long long)h->raw_bytes, (unsigned long long)h->payload_bytes);
		return -EBADMSG;
	}
	if (h->record_count > 0 && h->min_ts_ns > h->max_ts_ns) {
		tv_errf(err, errlen, 0, "block time range inverted: min %llu > max %llu",
			(unsigned long long)h->min_ts_ns, (unsigned long long)h->max_ts_ns);
		return -EBADMSG;
	}
	if (h->version >= 3 &&
	    (h->page_count > TV_BLOCK_V3_MAX_PAGES || h->page_count > h->record_count ||
	     (h->page_count == 0) != (h->record_count == 0) ||
	     h->bloom_bytes > TV_BLOCK_V3_MAX_BLOOM_BYTES ||
	     h->bloom_bytes % TV_BLOCK_V3_BLOOM_BLOCK_BYTES ||
	     (uint64_t)h->page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES + h->bloom_bytes >
		     h->payload_bytes)) {
		tv_errf(err, errlen, 0,
			"block page directory out of bounds: %u pages for %u records, %u filter "
			"bytes, payload %llu", h->page_count, h->record_count, h->bloom_bytes,
			(unsigned long long)h->payload_bytes);
		return -EBADMSG;
	}
	return 0;
}

int tv_block_set_id(void *buf, size_t len, uint64_t block_id)
{
	struct tv_block_header h;
	int err = tv_block_header_parse(buf, len, &h, NULL, 0);

	if (err)
		return err;
	h.block_id = block_id;
	header_write(buf, &h);
	return 0;
}

/* ---- builder ---- */

struct tv_block_builder *tv_block_builder_new(void)
{
	return calloc(1, sizeof(struct tv_block_builder));
}

void tv_block_builder_free(struct tv_block_builder *b)
{
	if (!b)
		return;
	free(b->buf);
	free(b->refs);
	tv_v3_page_enc_free(b->enc);
	ZSTD_freeCCtx(b->cctx);
	free(b);
}

uint32_t tv_block_builder_count(const struct tv_block_builder *b)
{
	return b->count;
}

void tv_block_builder_reset(struct tv_block_builder *b)
{
	b->len = 0;
	b->count = 0;
}

void tv_block_builder_set_loss(struct tv_block_builder *b, const struct tv_block_loss *loss,
			       uint64_t ts_ns)
{
	b->loss = *loss;
	b->loss_ts_ns = ts_ns;
}

int tv_block_builder_set_version(struct tv_block_builder *b, unsigned version)
{
	if (version != 2 && version != 3)
		return -EINVAL;
	b->version = version;
	return 0;
}

size_t tv_block_builder_raw_bytes(const struct tv_block_builder *b)
{
	/* each record also carries a varint length prefix of at most 3 bytes (< 1 MiB) */
	return b->len + (size_t)b->count * 3;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * elem);
	if (!np)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

int tv_block_builder_add(struct tv_block_builder *b, const Tracevault__V1__TraceRecord *r)
{
	size_t n = tracevault__v1__trace_record__get_packed_size(r);
	size_t refs_cap = b->refs_cap;
	int err;

	if (n > TV_BLOCK_MAX_RECORD_BYTES)
		return -E2BIG;
	if (b->count == UINT32_MAX)
		return -E2BIG;
	err = grow((void **)&b->buf, &b->cap, b->len + n, 1);
	if (err)
		return err;
	err = grow((void **)&b->refs, &refs_cap, (size_t)b->count + 1, sizeof(*b->refs));
	if (err)
		return err;
	b->refs_cap = (uint32_t)refs_cap;
	tracevault__v1__trace_record__pack(r, b->buf + b->len);
	b->refs[b->count] = (struct rec_ref){ .ts_ns = r->ts_ns, .off = b->len, .len = n };
	if (b->count == 0 || r->ts_ns < b->min_ts_ns)
		b->min_ts_ns = r->ts_ns;
	if (b->count == 0 || r->ts_ns > b->max_ts_ns)
		b->max_ts_ns = r->ts_ns;
	b->len += n;
	b->count++;
	return 0;
}

static int ref_cmp(const void *a, const void *b)
{
	const struct rec_ref *x = a, *y = b;

	if (x->ts_ns != y->ts_ns)
		return x->ts_ns < y->ts_ns ? -1 : 1;
	/* offsets grow with insertion order: this keeps equal timestamps in arrival order */
	return x->off < y->off ? -1 : (x->off > y->off);
}

/* Version 3: pages of records cut by count and size, the directory, the trace-id filter. */
static int seal_v3(struct tv_block_builder *b, uint64_t block_id, enum tv_codec codec,
		   int zstd_level, void **out, size_t *out_len)
{
	struct tv_block_header h = { 0 };
	uint8_t *pages = NULL, *dir = NULL, *bloom = NULL, *blk = NULL;
	size_t pages_len = 0, pages_cap = 0, dir_cap = 0, page_bytes = 0, ntrace = 0;
	uint64_t *hashes = NULL, raw = 0;
	uint32_t npages = 0;
	int err = 0;

	if (codec != TV_CODEC_ZSTD && codec != TV_CODEC_NONE)
		return -EINVAL;
	if (!b->enc && !(b->enc = tv_v3_page_enc_new()))
		return -ENOMEM;
	if (codec == TV_CODEC_ZSTD && !b->cctx && !(b->cctx = ZSTD_createCCtx()))
		return -ENOMEM;
	tv_v3_page_enc_reset(b->enc);
	if (b->count && !(hashes = malloc(b->count * sizeof(*hashes))))
		return -ENOMEM;
	for (uint32_t i = 0; i <= b->count; i++) {
		uint32_t n = tv_v3_page_enc_records(b->enc);
		struct tv_v3_page_entry e;
		bool has_trace;

		if (n && (i == b->count || n == TV_BLOCK_V3_PAGE_RECORDS ||
			  page_bytes + b->refs[i].len > TV_BLOCK_V3_PAGE_CUT_BYTES)) {
			if (npages == TV_BLOCK_V3_MAX_PAGES) {
				err = -E2BIG;
				goto out;
			}
			if ((size_t)(npages + 1) * TV_BLOCK_V3_PAGE_ENTRY_BYTES > dir_cap) {
				size_t nc = dir_cap ? dir_cap * 2 : 16 * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
				uint8_t *nd = realloc(dir, nc);

				if (!nd) {
					err = -ENOMEM;
					goto out;
				}
				dir = nd;
				dir_cap = nc;
			}
			err = tv_v3_page_enc_finish(b->enc, codec == TV_CODEC_ZSTD ? b->cctx : NULL,
						    zstd_level, &pages, &pages_len, &pages_cap, &e);
			if (err)
				goto out;
			tv_v3_page_entry_put(dir + (size_t)npages * TV_BLOCK_V3_PAGE_ENTRY_BYTES, &e);
			npages++;
			raw += e.raw_len;
			page_bytes = 0;
		}
		if (i == b->count)
			break;
		err = tv_v3_page_enc_add(b->enc, b->buf + b->refs[i].off, b->refs[i].len,
					 b->refs[i].ts_ns, &has_trace, &hashes[ntrace]);
		if (err)
			goto out;
		ntrace += has_trace;
		page_bytes += b->refs[i].len;
	}
	h.page_count = npages;
	h.bloom_bytes = (uint32_t)tv_v3_bloom_bytes_for(ntrace);
	if (h.bloom_bytes) {
		bloom = calloc(1, h.bloom_bytes);
		if (!bloom) {
			err = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < ntrace; i++)
			tv_v3_bloom_add(bloom, h.bloom_bytes, hashes[i]);
	}
	h.payload_bytes = (uint64_t)npages * TV_BLOCK_V3_PAGE_ENTRY_BYTES + h.bloom_bytes +
			  pages_len;
	h.raw_bytes = (uint64_t)npages * TV_BLOCK_V3_PAGE_ENTRY_BYTES + h.bloom_bytes + raw;
	if (h.raw_bytes > TV_BLOCK_MAX_RAW_BYTES || h.payload_bytes > TV_BLOCK_MAX_PAYLOAD_BYTES) {
		err = -E2BIG;
		goto out;
	}
	blk = malloc(TV_BLOCK_V3_HEADER_BYTES + h.payload_bytes);
	if (!blk) {
		err = -ENOMEM;
		goto out;
	}
	{
		uint8_t *p = blk + TV_BLOCK_V3_HEADER_BYTES;
		size_t dl = (size_t)npages * TV_BLOCK_V3_PAGE_ENTRY_BYTES;

		if (dl)
			memcpy(p, dir, dl);
		if (h.bloom_bytes)
			memcpy(p + dl, bloom, h.bloom_bytes);
		if (pages_len)
			memcpy(p + dl + h.bloom_bytes, pages, pages_len);
		h.dir_crc32c = tv_crc32c(p, dl);
		h.bloom_crc32c = tv_crc32c(p + dl, h.bloom_bytes);
		h.payload_crc32c = tv_crc32c(p, h.payload_bytes);
	}
	h.magic = TV_BLOCK_MAGIC;
	h.version = 3;
	h.codec = (uint16_t)codec;
	h.block_id = block_id;
	h.header_bytes = TV_BLOCK_V3_HEADER_BYTES;
	h.min_ts_ns = b->count ? b->min_ts_ns : b->loss_ts_ns;
	h.max_ts_ns = b->count ? b->max_ts_ns : b->loss_ts_ns;
	h.record_count = b->count;
	h.loss = b->loss;
	header_write(blk, &h);
	*out = blk;
	*out_len = TV_BLOCK_V3_HEADER_BYTES + h.payload_bytes;
	blk = NULL;
	tv_block_builder_reset(b);
	memset(&b->loss, 0, sizeof(b->loss));
out:
	if (err)
		tv_v3_page_enc_reset(b->enc);
	free(blk);
	free(pages);
	free(dir);
	free(bloom);
	free(hashes);
	return err;
}

int tv_block_builder_seal(struct tv_block_builder *b, uint64_t block_id, enum tv_codec codec,
			  int zstd_level, void **out, size_t *out_len)
{
	struct tv_block_header h = { 0 };
	uint8_t *raw = NULL, *blk = NULL;
	size_t raw_len = 0, bound, payload_len;
	int err = 0;

	if (b->count == 0 && !tv_block_loss_any(&b->loss))
		return -ENODATA;
	raw = malloc(b->len + (size_t)b->count * 10 + 1);
	if (!raw)
		return -ENOMEM;
	if (b->count) /* refs may be NULL for a loss-only block */
		qsort(b->refs, b->count, sizeof(*b->refs), ref_cmp);
	if (b->version != 2) {
		free(raw);
		return seal_v3(b, block_id, codec, zstd_level, out, out_len);
	}
	for (uint32_t i = 0; i < b->count; i++) {
		raw_len += tv_varint_put(raw + raw_len, b->refs[i].len);
		memcpy(raw + raw_len, b->buf + b->refs[i].off, b->refs[i].len);
		raw_len += b->refs[i].len;
	}
	if (raw_len > TV_BLOCK_MAX_RAW_BYTES) {
		err = -E2BIG;
		goto out;
	}

	bound = codec == TV_CODEC_ZSTD ? ZSTD_compressBound(raw_len) : raw_len;
	blk = malloc(TV_BLOCK_V2_HEADER_BYTES + bound);
	if (!blk) {
		err = -ENOMEM;
		goto out;
	}
	if (codec == TV_CODEC_ZSTD) {
		size_t z = ZSTD_compress(blk + TV_BLOCK_V2_HEADER_BYTES, bound, raw, raw_len,
					 zstd_level);
		if (ZSTD_isError(z)) {
			err = -EIO;
			goto out;
		}
		payload_len = z;
	} else if (codec == TV_CODEC_NONE) {
		memcpy(blk + TV_BLOCK_V2_HEADER_BYTES, raw, raw_len);
		payload_len = raw_len;
	} else {
		err = -EINVAL;
		goto out;
	}

	h.magic = TV_BLOCK_MAGIC;
	h.version = 2;
	h.codec = (uint16_t)codec;
	h.block_id = block_id;
	h.header_bytes = TV_BLOCK_V2_HEADER_BYTES;
	/* a loss-only block (no record) takes the time the loss was noted as its range */
	h.min_ts_ns = b->count ? b->min_ts_ns : b->loss_ts_ns;
	h.max_ts_ns = b->count ? b->max_ts_ns : b->loss_ts_ns;
	h.record_count = b->count;
	h.raw_bytes = raw_len;
	h.payload_bytes = payload_len;
	h.payload_crc32c = tv_crc32c(blk + TV_BLOCK_V2_HEADER_BYTES, payload_len);
	h.loss = b->loss;
	header_write(blk, &h);

	*out = blk;
	*out_len = TV_BLOCK_V2_HEADER_BYTES + payload_len;
	blk = NULL;
	tv_block_builder_reset(b);
	memset(&b->loss, 0, sizeof(b->loss));
out:
	free(blk);
	free(raw);
	return err;
}

/* ---- reader ---- */

/* A version 3 payload (CRC already checked) decoded into r->raw as version 2's run of
 * length-prefixed records. */
static int reader_v3(struct tv_block_reader *r, const uint8_t *payload, char *err, size_t errlen)
{
	const struct tv_block_header *h = &r->h;
	size_t dl = (size_t)h->page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES, off, cap = 0, len = 0;
	ZSTD_DCtx *dctx = NULL;
	uint8_t *buf = NULL;
	void *work = NULL;
	int ret;

	if (tv_crc32c(payload, dl) != h->dir_crc32c)
		return tv_errf(err, errlen, -EBADMSG, "block page directory checksum mismatch");
	ret = tv_v3_directory_check(payload, h, err, errlen);
	if (ret)
		return ret;
	if (tv_crc32c(payload + dl, h->bloom_bytes) != h->bloom_crc32c)
		return tv_errf(err, errlen, -EBADMSG, "block trace-id filter checksum mismatch");
	off = dl + h->bloom_bytes;
	if (h->page_count && !(dctx = ZSTD_createDCtx()))
		return tv_errf(err, errlen, -ENOMEM, "out of memory for a zstd context");
	for (uint32_t i = 0; i < h->page_count; i++) {
		struct tv_v3_page_entry e;
		struct tv_v3_page *pg;
		struct tv_v3_record rec;

		tv_v3_page_entry_get(payload + (size_t)i * TV_BLOCK_V3_PAGE_ENTRY_BYTES, &e);
		if (tv_crc32c(payload + off, e.stored_len) != e.crc32c) {
			ret = tv_errf(err, errlen, -EBADMSG, "block page %u checksum mismatch", i);
			goto out;
		}
		free(work);
		work = malloc(tv_v3_page_work_bytes(&e));
		if (!work) {
			ret = tv_errf(err, errlen, -ENOMEM, "out of memory decoding a page");
			goto out;
		}
		ret = tv_v3_page_open(&pg, work, &e, payload + off, dctx, err, errlen);
		if (ret)
			goto out;
		while ((ret = tv_v3_page_next(pg, &rec, err, errlen)) == 1) {
			if (cap - len < rec.bytes + TV_VARINT_MAX_BYTES) {
				size_t nc = cap ? cap : 64 * 1024;
				uint8_t *nb;

				while (nc - len < rec.bytes + TV_VARINT_MAX_BYTES)
					nc *= 2;
				nb = realloc(buf, nc);
				if (!nb) {
					ret = tv_errf(err, errlen, -ENOMEM,
						      "out of memory decoding a page");
					goto out;
				}
				buf = nb;
				cap = nc;
			}
			len += tv_varint_put(buf + len, rec.bytes);
			ret = tv_v3_record_write(&rec, buf + len, err, errlen);
			if (ret)
				goto out;
			len += rec.bytes;
		}
		if (ret)
			goto out;
		off += e.stored_len;
	}
	free(r->raw);
	r->raw = buf;
	r->raw_len = len;
	buf = NULL;
out:
	free(buf);
	free(work);
	ZSTD_freeDCtx(dctx);
	return ret;
}

int tv_block_reader_open(struct tv_block_reader **out, const void *buf, size_t len, char *err,
			 size_t errlen)
{
	struct tv_block_reader *r;
	const uint8_t *payload;
	uint32_t crc;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r) {
		tv_errf(err, errlen, 0, "out of memory for a block reader");
		return -ENOMEM;
	}
	ret = tv_block_header_parse(buf, len, &r->h, err, errlen);
	if (ret)
		goto fail;
	payload = (const uint8_t *)buf + r->h.header_bytes;
	if (len != tv_block_total_bytes(&r->h)) {
		tv_errf(err, errlen, 0, "block size mismatch: have %zu bytes, header says %llu",
			len, (unsigned long long)tv_block_total_bytes(&r->h));
		ret = -EBADMSG;
		goto fail;
	}
	crc = tv_crc32c(payload, r->h.payload_bytes);
	if (crc != r->h.payload_crc32c) {
		tv_errf(err, errlen, 0,
			"block payload checksum mismatch: stored 0x%08x, computed 0x%08x",
			r->h.payload_crc32c, crc);
		ret = -EBADMSG;
		goto fail;
	}
	if (r->h.version >= 3) {
		ret = reader_v3(r, payload, err, errlen);
		if (ret)
			goto fail;
		*out = r;
		return 0;
	}
	r->raw = malloc(r->h.raw_bytes ? r->h.raw_bytes : 1);
	if (!r->raw) {
		tv_errf(err, errlen, 0, "out of memory decompressing %llu bytes",
			(unsigned long long)r->h.raw_bytes);
		ret = -ENOMEM;
		goto fail;
	}
	if (r->h.codec == TV_CODEC_ZSTD) {
		size_t z = ZSTD_decompress(r->raw, r->h.raw_bytes, payload, r->h.payload_bytes);

		if (ZSTD_isError(z) || z != r->h.raw_bytes) {
			tv_errf(err, errlen, 0,
				"block payload does not decompress to %llu bytes: %s",
				(unsigned long long)r->h.raw_bytes,
				ZSTD_isError(z) ? ZSTD_getErrorName(z) : "short");
			ret = -EBADMSG;
			goto fail;
		}
	} else {
		memcpy(r->raw, payload, r->h.raw_bytes);
	}
	r->raw_len = r->h.raw_bytes;
	*out = r;
	return 0;
fail:
	tv_block_reader_free(r);
	return ret;
}

const struct tv_block_header *tv_block_reader_header(const struct tv_block_reader *r)
{
	return &r->h;
}

int tv_block_record_ts(const uint8_t *p, size_t len, uint64_t *ts_ns)
{
	size_t pos = 0, used;
	uint64_t key, v;

	*ts_ns = 0;
	while (pos < len) {
		if (tv_varint_get(p + pos, len - pos, &key, &used))
			return -EBADMSG;
		pos += used;
		switch (key & 7) {
		case 0:
			if (tv_varint_get(p + pos, len - pos, &v, &used))
				return -EBADMSG;
			pos += used;
			if ((key >> 3) == 1)
				*ts_ns = v;
			break;
		case 1:
			pos += 8;
			break;
		case 2:
			if (tv_varint_get(p + pos, len - pos, &v, &used) || v > len)
				return -EBADMSG;
			pos += used + v;
			break;
		case 5:
			pos += 4;
			break;
		default:
			return -EBADMSG;
		}
	}
	return pos == len ? 0 : -EBADMSG;
}

int tv_block_reader_next_raw(struct tv_block_reader *r, const uint8_t **data, size_t *len,
			     uint64_t *ts_ns)
{
	uint64_t n;
	size_t used;

	if (r->pos == r->raw_len)
		return r->seen == r->h.record_count ? 0 : -EBADMSG;
	if (tv_varint_get(r->raw + r->pos, r->raw_len - r->pos, &n, &used))
		return -EBADMSG;
	if (n > r->raw_len - r->pos - used || r->seen == r->h.record_count)
		return -EBADMSG;
	*data = r->raw + r->pos + used;
	*len = n;
	if (tv_block_record_ts(*data, n, ts_ns))
		return -EBADMSG;
	r->pos += used + n;
	r->seen++;
	return 1;
}

int tv_block_reader_next(struct tv_block_reader *r, Tracevault__V1__TraceRecord **rec)
{
	const uint8_t *data;
	size_t len;
	uint64_t ts;
	int ret = tv_block_reader_next_raw(r, &data, &len, &ts);

	if (ret <= 0)
		return ret;
	*rec = tracevault__v1__trace_record__unpack(NULL, len, data);
	return *rec ? 1 : -EBADMSG;
}

void tv_block_reader_free(struct tv_block_reader *r)
{
	if (!r)
		return;
	free(r->raw);
	free(r);
}
