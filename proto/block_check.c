/* The complete check of a trace block, shared by every side that must not trust a block: the
 * header rules, then the payload decompressed as a stream into a bounded window and cut into
 * records, each checked as protobuf-c would parse it and against the header's range and count.
 * Rules and limits: proto/BLOCK.md ("What a writer promises"), block_check.h. */
#include "proto/block_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "common/errf.h"
#include "proto/block_v3.h"
#include "proto/crc32c.h"
#include "proto/varint.h"

/* protobuf wire types (protobuf-c reads these four; 3 and 4, groups, fail its unpack) */
enum { WT_VARINT = 0, WT_64BIT = 1, WT_LEN = 2, WT_32BIT = 5 };

/* Messages nest this deep at most (TraceRecord > Header); a deeper one is not ours. */
#define MAX_MESSAGE_DEPTH 4
/* protobuf-c reads a field key from at most 5 bytes and a length prefix from at most 5. */
#define MAX_KEY_BYTES 5
#define MAX_LENGTH_PREFIX_BYTES 5

struct tv_block_check {
	struct tv_block_header h;
	ZSTD_DCtx *dctx;   /* zstd blocks only; created on the first */
	uint8_t *out;      /* decompressed bytes, ZSTD_DStreamOutSize() of them at a time */
	size_t out_cap;
	int frame_done;    /* the zstd frame ended: any further payload byte is an error */
	uint64_t raw_seen; /* decompressed payload bytes so far */
	/* record framing across pieces: a length varint, then the record's bytes */
	uint8_t len_buf[TV_VARINT_MAX_BYTES];
	size_t len_have;   /* bytes of a length varint that a piece cut */
	int in_record;     /* the length is known, rec_len bytes follow */
	size_t rec_len, rec_have;
	uint8_t *rec;      /* a record that a piece cut, collected (grows to rec_len) */
	size_t rec_cap;
	uint32_t seen;     /* records checked */
	uint64_t last_ts_ns;
	int failed;
	/* zstd: the first record rule broken, kept (its errno and reason) until the frame is
	 * read whole, so that a frame that does not decompress is what the check answers
	 * whatever the pieces: ZSTD_decompressStream drops the output of a call that fails,
	 * so the record bytes before a damaged zstd block are walked or not depending on
	 * where the pieces were cut */
	int pending;
	char pending_why[192];
	/* version 3: the payload's parts (directory, filter, each page) are collected whole,
	 * each at most its bound (block_v3.h), then checked */
	uint32_t part;     /* 0 directory, 1 filter, 2 + i page i, 2 + page_count: done */
	size_t need, have; /* bytes of the current part */
	uint8_t *dir, *bloom, *page;
	size_t dir_cap, bloom_cap, page_cap;
	void *work;        /* the page decoder's */
	size_t work_cap;
};

/* ---- one record: protobuf-c's unpack decisions, from the wire format ---- */

/* A field key as protobuf-c 1.4 reads it: 1 to 5 bytes. Returns the bytes used, or 0. */
static size_t key_get(const uint8_t *p, size_t len, uint32_t *field, unsigned *wt)
{
	size_t max = len < MAX_KEY_BYTES ? len : MAX_KEY_BYTES;
	uint32_t f = (p[0] & 0x7f) >> 3;
	unsigned shift = 4;

	*wt = p[0] & 7;
	if (!(p[0] & 0x80)) {
		*field = f;
		return 1;
	}
	for (size_t i = 1; i < max; i++) {
		f |= (uint32_t)(p[i] & 0x7f) << shift;
		if (!(p[i] & 0x80)) {
			*field = f;
			return i + 1;
		}
		shift += 7;
	}
	return 0;
}

/* The wire type protobuf-c requires of a field of type t (a packed repeated scalar aside). */
static unsigned wire_type_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return WT_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return WT_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return WT_LEN;
	default: /* the varint types, bool and enum */
		return WT_VARINT;
	}
}

/* The field of desc numbered id, or NULL. Fields come in id order from every encoder, and
 * desc->fields is sorted by id: look a few entries ahead of the last one first. */
static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *desc,
						 uint32_t id, unsigned *next)
{
	for (unsigned i = *next; i < desc->n_fields && i < *next + 4; i++) {
		if (desc->fields[i].id == id) {
			*next = i + 1;
			return &desc->fields[i];
		}
		if (desc->fields[i].id > id)
			break;
	}
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, id);

	if (f)
		*next = (unsigned)(f - desc->fields) + 1;
	return f;
}

/* 0 when protobuf-c would unpack p[0, len) as a message of desc. ts_ns, when not NULL, gets
 * field 1 (a varint) as protobuf-c reads it: the last one wins. */
static int check_message(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
			 int depth, uint64_t *ts_ns, char *err, size_t errlen)
{
	size_t pos = 0;
	unsigned next = 0;

	if (depth > MAX_MESSAGE_DEPTH)
		return tv_errf(err, errlen, -EBADMSG, "%s nested too deep", desc->short_name);
	while (pos < len) {
		const ProtobufCFieldDescriptor *f;
		size_t used, elen, at;
		uint32_t field;
		unsigned wt;
		uint64_t v = 0;

		if (p[pos] < 0x80) { /* a one-byte key: every field below 16 */
			field = p[pos] >> 3;
			wt = p[pos] & 7;
			used = 1;
		} else {
			used = key_get(p + pos, len - pos, &field, &wt);
		}
		if (used == 0 || field == 0)
			return tv_errf(err, errlen, -EBADMSG, "%s: bad field key at byte %zu",
				       desc->short_name, pos);
		pos += used;
		at = pos;
		switch (wt) {
		case WT_VARINT:
			if (ts_ns && field == 1) { /* the one value we need */
				if (tv_varint_get(p + pos, len - pos, &v, &elen))
					elen = 0;
			} else { /* others are only skipped: find the last byte */
				size_t end = len - pos < TV_VARINT_MAX_BYTES ? len
									     : pos + TV_VARINT_MAX_BYTES;

				for (elen = 0; pos + elen < end && (p[pos + elen] & 0x80); elen++)
					;
				elen = pos + elen < end ? elen + 1 : 0;
			}
			if (elen == 0)
				return tv_errf(err, errlen, -EBADMSG,
					       "%s field %u: varint cut short or too long",
					       desc->short_name, field);
			break;
		case WT_64BIT:
		case WT_32BIT:
			elen = wt == WT_64BIT ? 8 : 4;
			if (len - pos < elen)
				return tv_errf(err, errlen, -EBADMSG, "%s field %u: cut short",
					       desc->short_name, field);
			break;
		case WT_LEN:
			/* pos == len: the key was the last byte, the prefix is missing (the
			 * varint read below refuses 0 bytes); p[len] is not ours to read */
			if (pos < len && p[pos] < 0x80 && p[pos] < len - pos) { /* below 128 */
				v = p[pos];
				at = pos + 1;
				elen = 1 + v;
				break;
			}
			if (tv_varint_get(p + pos, len - pos < MAX_LENGTH_PREFIX_BYTES
							 ? len - pos : MAX_LENGTH_PREFIX_BYTES,
					  &v, &used) || v > len - pos - used)
				return tv_errf(err, errlen, -EBADMSG,
					       "%s field %u: length prefix beyond the message",
					       desc->short_name, field);
			at = pos + used;
			elen = used + v;
			break;
		default:
			return tv_errf(err, errlen, -EBADMSG, "%s field %u: wire type %u",
				       desc->short_name, field, wt);
		}
		pos += elen;
		f = field_of(desc, field, &next);
		if (!f)
			continue; /* unknown fields are kept by protobuf-c, whatever they hold */
		if (f->label == PROTOBUF_C_LABEL_REPEATED && wt == WT_LEN &&
		    wire_type_of(f->type) != WT_LEN)
			return tv_errf(err, errlen, -EBADMSG, "%s.%s: packed form not read here",
				       desc->short_name, f->name);
		if (wt != wire_type_of(f->type))
			return tv_errf(err, errlen, -EBADMSG, "%s.%s: wire type %u, want %u",
				       desc->short_name, f->name, wt, wire_type_of(f->type));
		if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			int ret = check_message(f->descriptor, p + at, pos - at, depth + 1, NULL,
						err, errlen);
			if (ret)
				return ret;
		}
		if (ts_ns && field == 1)
			*ts_ns = v;
	}
	return 0;
}

int tv_block_check_record(const uint8_t *p, size_t len, uint64_t *ts_ns, char *err,
			  size_t errlen)
{
	*ts_ns = 0;
	return check_message(&tracevault__v1__trace_record__descriptor, p, len, 0, ts_ns, err,
			     errlen);
}

/* ---- the block ---- */

struct tv_block_check *tv_block_check_new(void)
{
	return calloc(1, sizeof(struct tv_block_check));
}

void tv_block_check_free(struct tv_block_check *c)
{
	if (!c)
		return;
	ZSTD_freeDCtx(c->dctx);
	free(c->out);
	free(c->rec);
	free(c->dir);
	free(c->bloom);
	free(c->page);
	free(c->work);
	free(c);
}

static int v3_begin(struct tv_block_check *c, char *err, size_t errlen);

int tv_block_check_begin(struct tv_block_check *c, const struct tv_block_header *h, char *err,
			 size_t errlen)
{
	c->h = *h;
	c->frame_done = 0;
	c->raw_seen = 0;
	c->len_have = 0;
	c->in_record = 0;
	c->rec_len = c->rec_have = 0;
	c->seen = 0;
	c->last_ts_ns = 0;
	c->pending = 0;
	c->failed = 1; /* until every header rule passed */
	if (h->block_id == 0)
		return tv_errf(err, errlen, -EBADMSG, "block id 0");
	if (h->flags != 0 || h->reserved != 0)
		return tv_errf(err, errlen, -EPROTONOSUPPORT,
			       "reserved header field set (flags 0x%08x, bytes 60-63 0x%08x): "
			       "this build reads none",
			       h->flags, h->reserved);
	if (h->min_ts_ns > h->max_ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "block time range inverted: min %llu > max %llu",
			       (unsigned long long)h->min_ts_ns, (unsigned long long)h->max_ts_ns);
	if (h->record_count == 0 && (h->min_ts_ns != h->max_ts_ns || h->raw_bytes != 0))
		return tv_errf(
			err, errlen, -EBADMSG,
			"block without records must have min_ts_ns == max_ts_ns and raw_bytes "
			"0: has [%llu, %llu], raw %llu",
			(unsigned long long)h->min_ts_ns, (unsigned long long)h->max_ts_ns,
			(unsigned long long)h->raw_bytes);
	if (h->record_count > h->raw_bytes) /* each record takes at least its length byte */
		return tv_errf(err, errlen, -EBADMSG,
			       "record_count %u cannot fit in raw_bytes %llu", h->record_count,
			       (unsigned long long)h->raw_bytes);
	if (h->version >= 3)
		return v3_begin(c, err, errlen);
	if (h->codec == TV_CODEC_ZSTD) {
		size_t r;

		/* each on its own: a version 3 block before this one made the decompressor
		 * without the output buffer (v3 pages decompress into their work area) */
		if (!c->dctx)
			c->dctx = ZSTD_createDCtx();
		if (!c->out) {
			c->out_cap = ZSTD_DStreamOutSize();
			c->out = malloc(c->out_cap);
		}
		if (!c->dctx || !c->out)
			return -ENOMEM;
		r = ZSTD_DCtx_reset(c->dctx, ZSTD_reset_session_and_parameters);
		if (!ZSTD_isError(r))
			r = ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax,
						   TV_BLOCK_MAX_WINDOW_LOG);
		if (ZSTD_isError(r))
			return tv_errf(err, errlen, -ENOMEM, "zstd: %s", ZSTD_getErrorName(r));
	}
	c->failed = 0;
	return 0;
}

/* One complete record of len bytes at p (inside a piece or collected in c->rec). */
static int record(struct tv_block_check *c, const uint8_t *p, size_t len, char *err,
		  size_t errlen)
{
	char why[128];
	uint64_t ts;

	if (tv_block_check_record(p, len, &ts, why, sizeof(why)))
		return tv_errf(err, errlen, -EBADMSG, "record %u is not a TraceRecord: %s", c->seen,
			       why);
	if (c->seen > 0 && ts < c->last_ts_ns)
		return tv_errf(
			err, errlen, -EBADMSG,
			"record %u: ts_ns %llu before the previous record's %llu (not sorted)",
			c->seen, (unsigned long long)ts, (unsigned long long)c->last_ts_ns);
	if (ts < c->h.min_ts_ns || ts > c->h.max_ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "record %u: ts_ns %llu outside the header's [%llu, %llu]", c->seen,
			       (unsigned long long)ts, (unsigned long long)c->h.min_ts_ns,
			       (unsigned long long)c->h.max_ts_ns);
	if (c->seen == 0 && ts != c->h.min_ts_ns)
		return tv_errf(err, errlen, -EBADMSG,
			       "first record's ts_ns %llu is not the header's min_ts_ns %llu",
			       (unsigned long long)ts, (unsigned long long)c->h.min_ts_ns);
	c->seen++;
	c->last_ts_ns = ts;
	return 0;
}

/* A record's length is known: check it against the limit and the count. */
static int record_len(struct tv_block_check *c, uint64_t n, char *err, size_t errlen)
{
	if (c->seen == c->h.record_count)
		return tv_errf(err, errlen, -EBADMSG, "more records than record_count %u",
			       c->h.record_count);
	if (n > TV_BLOCK_MAX_RECORD_BYTES)
		return tv_errf(err, errlen, -EMSGSIZE,
			       "record %u is %llu bytes, above the limit of %u bytes", c->seen,
			       (unsigned long long)n, TV_BLOCK_MAX_RECORD_BYTES);
	c->in_record = 1;
	c->rec_len = (size_t)n;
	c->rec_have = 0;
	return 0;
}

/* Decompressed payload bytes, in order: cut into records. A record inside the piece is checked
 * where it lies; only one that the piece cuts is copied (into c->rec, at most one record). */
static int walk(struct tv_block_check *c, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	int ret;

	if (n > c->h.raw_bytes - c->raw_seen)
		return tv_errf(err, errlen, -EBADMSG,
			       "payload decompresses to more than raw_bytes %llu",
			       (unsigned long long)c->h.raw_bytes);
	c->raw_seen += n;
	while (n > 0 || (c->in_record && c->rec_len == c->rec_have)) {
		if (!c->in_record) {
			uint64_t v = 0;
			size_t used;

			if (c->len_have == 0 && tv_varint_get(p, n, &v, &used) == 0) {
				p += used;
				n -= used;
			} else { /* cut by the piece: one byte at a time into len_buf */
				c->len_buf[c->len_have++] = *p++;
				n--;
				if (c->len_buf[c->len_have - 1] & 0x80) {
					if (c->len_have == TV_VARINT_MAX_BYTES)
						return tv_errf(err, errlen, -EBADMSG,
							       "record %u: length varint too long",
							       c->seen);
					continue;
				}
				tv_varint_get(c->len_buf, c->len_have, &v, &used);
				c->len_have = 0;
			}
			ret = record_len(c, v, err, errlen);
			if (ret)
				return ret;
			continue;
		}
		if (c->rec_have == 0 && n >= c->rec_len) {
			ret = record(c, p, c->rec_len, err, errlen);
			p += c->rec_len;
			n -= c->rec_len;
		} else {
			size_t take = c->rec_len - c->rec_have < n ? c->rec_len - c->rec_have : n;

			if (c->rec_cap < c->rec_len) {
				uint8_t *np = realloc(c->rec, c->rec_len);

				if (!np)
					return -ENOMEM;
				c->rec = np;
				c->rec_cap = c->rec_len;
			}
			memcpy(c->rec + c->rec_have, p, take);
			c->rec_have += take;
			p += take;
			n -= take;
			if (c->rec_have < c->rec_len)
				return 0;
			ret = record(c, c->rec, c->rec_len, err, errlen);
		}
		if (ret)
			return ret;
		c->in_record = 0;
	}
	return 0;
}


/* ---- version 3 ---- */

/* Room for n bytes at *p (*cap grown, contents dropped). */
static int room(uint8_t **p, size_t *cap, size_t n)
{
	uint8_t *np;

	if (n <= *cap)
		return 0;
	np = malloc(n);
	if (!np)
		return -ENOMEM;
	free(*p);
	*p = np;
	*cap = n;
	return 0;
}

static void v3_page_entry(const struct tv_block_check *c, uint32_t i, struct tv_v3_page_entry *e)
{
	tv_v3_page_entry_get(c->dir + (size_t)i * TV_BLOCK_V3_PAGE_ENTRY_BYTES, e);
}

/* Move to the next part that has bytes, sizing its buffer. */
static int v3_next_part(struct tv_block_check *c)
{
	for (;;) {
		c->have = 0;
		if (c->part == 0)
			c->need = (size_t)c->h.page_count * TV_BLOCK_V3_PAGE_ENTRY_BYTES;
		else if (c->part == 1)
			c->need = c->h.bloom_bytes;
		else if (c->part < 2 + c->h.page_count) {
			struct tv_v3_page_entry e;

			v3_page_entry(c, c->part - 2, &e);
			c->need = e.stored_len; /* the directory check bounded it */
			return room(&c->page, &c->page_cap, c->need);
		} else
			return 0;
		if (c->need)
			return c->part == 0 ? room(&c->dir, &c->dir_cap, c->need) :
					      room(&c->bloom, &c->bloom_cap, c->need);
		c->part++;
	}
}

static int v3_begin(struct tv_block_check *c, char *err, size_t errlen)
{
	int ret;

	if (c->h.page_count && !c->dctx && !(c->dctx = ZSTD_createDCtx()))
		return tv_errf(err, errlen, -ENOMEM, "out of memory for a zstd context");
	c->part = 0;
	ret = v3_next_part(c);
	if (ret)
		return tv_errf(err, errlen, ret, "out of memory for the page directory");
	c->failed = 0;
	return 0;
}

/* Page i, collected whole: its CRC, its columns, each record rebuilt and checked as in
 * version 2, its ts_ns the index's and its trace id in the filter. */
static int v3_page(struct tv_block_check *c, uint32_t i, char *err, size_t errlen)
{
	struct tv_v3_page_entry e;
	struct tv_v3_page *pg;
	struct tv_v3_record r;
	char why[160];
	size_t need;
	int ret;

	v3_page_entry(c, i, &e);
	if (tv_crc32c(c->page, e.stored_len) != e.crc32c)
		return tv_errf(err, errlen, -EBADMSG, "page %u checksum mismatch", i);
	need = tv_v3_page_work_bytes(&e);
	if (need > c->work_cap) {
		free(c->work);
		c->work_cap = 0;
		if (!(c->work = malloc(need)))
			return -ENOMEM;
		c->work_cap = need;
	}
	ret = tv_v3_page_open(&pg, c->work, &e, c->page, c->dctx, why, sizeof(why));
	if (ret)
		return tv_errf(err, errlen, ret, "page %u: %s", i, why);
	while ((ret = tv_v3_page_next(pg, &r, why, sizeof(why))) == 1) {
		const uint8_t *id;
		size_t id_len;
		uint64_t ts;

		if (room(&c->rec, &c->rec_cap, r.bytes ? r.bytes : 1))
			return -ENOMEM;
		ret = tv_v3_record_write(&r, c->rec, why, sizeof(why));
		if (ret)
			return tv_errf(err, errlen, ret, "page %u: %s", i, why);
		ret = record(c, c->rec, r.bytes, err, errlen);
		if (ret)
			return ret;
		ts = c->last_ts_ns; /* the record's field 1, as record() read it */
		if (ts != r.ts_ns)
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u: ts_ns %llu, its page's ts_ns column says %llu",
				       c->seen - 1, (unsigned long long)ts,
				       (unsigned long long)r.ts_ns);
		tv_v3_record_trace(c->rec, r.bytes, &id, &id_len);
		/* a false negative would drop the record from trace-id queries silently */
		if (id_len == 32 && !tv_v3_bloom_test(c->bloom, c->h.bloom_bytes,
						      tv_v3_trace_hash((const char *)id)))
			return tv_errf(err, errlen, -EBADMSG,
				       "record %u: its trace id is not in the block's trace-id "
				       "filter", c->seen - 1);
	}
	if (ret)
		return tv_errf(err, errlen, ret, "page %u: %s", i, why);
	return 0;
}

static int v3_feed(struct tv_block_check *c, const uint8_t *p, size_t len, char *err,
		   size_t errlen)
{
	int ret;

	while (len) {
		size_t take;
		uint8_t *dst;

		if (c->part >= 2 + c->h.page_count)
			return tv_errf(err, errlen, -EBADMSG,
				       "payload holds bytes after its last page");
		take = c->need - c->have < len ? c->need - c->have : len;
		dst = c->part == 0 ? c->dir : c->part == 1 ? c->bloom : c->page;
		memcpy(dst + c->have, p, take);
		c->have += take;
		p += take;
		len -= take;
		if (c->have < c->need)
			return 0;
		if (c->part == 0) {
			if (tv_crc32c(c->dir, c->need) != c->h.dir_crc32c)
				return tv_errf(err, errlen, -EBADMSG,
					       "page directory checksum mismatch");
			ret = tv_v3_directory_check(c->dir, &c->h, err, errlen);
		} else if (c->part == 1) {
			ret = tv_crc32c(c->bloom, c->need) == c->h.bloom_crc32c ? 0 :
				tv_errf(err, errlen, -EBADMSG, "trace-id filter checksum mismatch");
		} else {
			ret = v3_page(c, c->part - 2, err, errlen);
		}
		if (ret)
			return ret;
		c->part++;
		ret = v3_next_part(c);
		if (ret)
			return ret;
	}
	return 0;
}

/* Decompress a piece of a zstd payload through the bounded output buffer. */
static int inflate(struct tv_block_check *c, const uint8_t *p, size_t len, char *err,
		   size_t errlen)
{
	ZSTD_inBuffer in = { p, len, 0 };

	if (c->frame_done && len)
		return tv_errf(err, errlen, -EBADMSG, "payload holds bytes after its zstd frame");
	while (!c->frame_done) {
		ZSTD_outBuffer out = { c->out, c->out_cap, 0 };
		size_t r = ZSTD_decompressStream(c->dctx, &out, &in);
		int ret;

		if (ZSTD_isError(r)) {
			if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
				return tv_errf(
					err, errlen, -EMSGSIZE,
					"zstd payload needs a window above the limit of 2^%d "
					"bytes",
					TV_BLOCK_MAX_WINDOW_LOG);
			return tv_errf(err, errlen, -EBADMSG,
				       "block payload does not decompress: %s",
				       ZSTD_getErrorName(r));
		}
		/* decompressing past raw_bytes is the frame's fault, and bounds the work done
		 * while a record rule is pending */
		if (out.pos > c->h.raw_bytes - c->raw_seen)
			return tv_errf(err, errlen, -EBADMSG,
				       "payload decompresses to more than raw_bytes %llu",
				       (unsigned long long)c->h.raw_bytes);
		if (c->pending) {
			c->raw_seen += out.pos;
		} else if ((ret = walk(c, c->out, out.pos, err, errlen))) {
			c->pending = ret;
			snprintf(c->pending_why, sizeof(c->pending_why), "%s", err);
		}
		if (r == 0)
			c->frame_done = 1;
		/* a full output buffer may leave more to flush without new input */
		if (in.pos == in.size && out.pos < out.size)
			break;
	}
	if (in.pos < in.size)
		return tv_errf(err, errlen, -EBADMSG, "payload holds bytes after its zstd frame");
	return 0;
}

int tv_block_check_feed(struct tv_block_check *c, const void *payload, size_t len, char *err,
			size_t errlen)
{
	int ret;

	if (c->failed)
		return tv_errf(err, errlen, -EINVAL, "block check used after a failure");
	if (c->h.version >= 3)
		ret = v3_feed(c, payload, len, err, errlen);
	else
		ret = c->h.codec == TV_CODEC_ZSTD ? inflate(c, payload, len, err, errlen)
						  : walk(c, payload, len, err, errlen);
	c->failed = ret != 0;
	return ret;
}

int tv_block_check_end(struct tv_block_check *c, char *err, size_t errlen)
{
	int ret = 0;

	if (c->failed)
		return tv_errf(err, errlen, -EINVAL, "block check used after a failure");
	c->failed = 1;
	if (c->h.version >= 3 && c->part != 2 + c->h.page_count)
		ret = tv_errf(err, errlen, -EBADMSG, "payload ends inside its %s",
			      c->part == 0 ? "page directory" :
			      c->part == 1 ? "trace-id filter" : "pages");
	else if (c->h.version >= 3)
		ret = 0; /* every page was checked whole as it completed */
	else if (c->h.codec == TV_CODEC_ZSTD && !c->frame_done)
		ret = tv_errf(err, errlen, -EBADMSG, "payload ends inside its zstd frame");
	else if (c->pending)
		ret = tv_errf(err, errlen, c->pending, "%s", c->pending_why);
	else if (c->raw_seen != c->h.raw_bytes)
		ret = tv_errf(
			err, errlen, -EBADMSG,
			"block payload decompresses to %llu bytes, header says raw_bytes %llu",
			(unsigned long long)c->raw_seen, (unsigned long long)c->h.raw_bytes);
	else if (c->in_record || c->len_have)
		ret = tv_errf(err, errlen, -EBADMSG, "record %u cut short by the payload's end",
			      c->seen);
	else if (c->seen != c->h.record_count)
		ret = tv_errf(err, errlen, -EBADMSG, "%u records, header says record_count %u",
			      c->seen, c->h.record_count);
	else if (c->seen > 0 && c->last_ts_ns != c->h.max_ts_ns)
		ret = tv_errf(err, errlen, -EBADMSG,
			      "last record's ts_ns %llu is not the header's max_ts_ns %llu",
			      (unsigned long long)c->last_ts_ns,
			      (unsigned long long)c->h.max_ts_ns);
	return ret;
}

int tv_block_validate(const void *buf, size_t len, char *err, size_t errlen)
{
	struct tv_block_check *c = NULL;
	struct tv_block_header h;
	const uint8_t *payload;
	uint32_t crc;
	int ret;

	ret = tv_block_header_parse(buf, len, &h, err, errlen);
	if (ret)
		return ret;
	if (len != tv_block_total_bytes(&h))
		return tv_errf(err, errlen, -EBADMSG,
			       "block size mismatch: have %zu bytes, header "
			       "says %llu",
			       len, (unsigned long long)tv_block_total_bytes(&h));
	payload = (const uint8_t *)buf + h.header_bytes;
	crc = tv_crc32c(payload, h.payload_bytes);
	if (crc != h.payload_crc32c)
		return tv_errf(err, errlen, -EBADMSG,
			       "block payload checksum mismatch: stored 0x%08x, "
			       "computed 0x%08x",
			       h.payload_crc32c, crc);
	c = tv_block_check_new();
	if (!c)
		return -ENOMEM;
	ret = tv_block_check_begin(c, &h, err, errlen);
	if (!ret)
		ret = tv_block_check_feed(c, payload, h.payload_bytes, err, errlen);
	if (!ret)
		ret = tv_block_check_end(c, err, errlen);
	tv_block_check_free(c);
	return ret;
}
