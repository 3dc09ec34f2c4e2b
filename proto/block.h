/* The trace block: a checksummed header (64 bytes in version 1, 112 in version 2 with loss
 * counters, 128 in version 3), then in versions 1 and 2 a zstd-compressed run of
 * length-delimited TraceRecord protobufs, in version 3 a page directory, a trace-id filter and
 * columnar pages (proto/block_v3.h). Written by the client, stored as-is by the server. */
#ifndef TV_BLOCK_H
#define TV_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "tracevault.pb-c.h"

#define TV_BLOCK_MAGIC 0x4b425654u /* "TVBK" as little-endian bytes */
#define TV_BLOCK_VERSION 3	/* what the builder writes by default; readers take 1 to 3 */
#define TV_BLOCK_V1_HEADER_BYTES 64
#define TV_BLOCK_V2_HEADER_BYTES 112
#define TV_BLOCK_V3_HEADER_BYTES 128
/* Every block is at least this long; magic and version sit in its first 8 bytes. */
#define TV_BLOCK_MIN_HEADER_BYTES TV_BLOCK_V1_HEADER_BYTES
#define TV_BLOCK_MAX_HEADER_BYTES TV_BLOCK_V3_HEADER_BYTES
/* Bytes a reader needs to learn the header length (magic + version + codec). */
#define TV_BLOCK_PREFIX_BYTES 8
/* Upper bounds a reader enforces before it allocates anything: a corrupt size field must
 * not make it try to inflate gigabytes. Writers seal far below these. */
#define TV_BLOCK_MAX_RAW_BYTES (256u << 20)
#define TV_BLOCK_MAX_PAYLOAD_BYTES (256u << 20)
#define TV_BLOCK_MAX_RECORD_BYTES (1u << 20)
/* A zstd payload must decode with a window of at most 2^this bytes (8 MiB: what zstd levels up
 * to 19 use at any size; the reference writer at level 3 uses at most 2 MiB). It bounds what a
 * streaming reader holds, however large raw_bytes is (proto/block_stream.h). */
#define TV_BLOCK_MAX_WINDOW_LOG 23
#define TV_BLOCK_DEFAULT_ZSTD_LEVEL 3

enum tv_codec {
	TV_CODEC_NONE = 0,
	TV_CODEC_ZSTD = 1,
};

/* Records lost by reason since the previous block this writer sealed (version 2; all 0 when
 * read from a version 1 block). Sampled-out exchanges are a choice, not a loss: not here. */
struct tv_block_loss {
	uint64_t ring_full;  /* kernel events dropped: ring buffer full */
	uint64_t map_full;   /* kernel map inserts that failed (connections unseen) */
	uint64_t parser;     /* exchanges the client's connection table dropped */
	uint64_t cache;      /* records dropped: block cache full past back-pressure */
	uint64_t failed;     /* records of segments whose write failed */
	/* Not a further loss: of the ring_full events, those that began an HTTP request, so
	 * requests that have no record (at most one per event). Stored in 32 bits per block
	 * (saturating). */
	uint64_t requests;
};

/* The number of counters in struct tv_block_loss. A new loss reason touches the struct, this
 * number, the three helpers below and the v2 header layout (block.c checks the struct's size
 * against this number at compile time), and no other place sums loss counters by hand. */
#define TV_BLOCK_LOSS_COUNTERS 6

/* 1 if any counter of l is non-zero. */
int tv_block_loss_any(const struct tv_block_loss *l);
/* to += l, counter by counter. */
void tv_block_loss_add(struct tv_block_loss *to, const struct tv_block_loss *l);
/* Running totals in, increases out: to += (total - *seen) for each counter that grew (one that
 * went down, a counter that restarted, adds nothing), then *seen = *total. */
void tv_block_loss_add_since(struct tv_block_loss *to, const struct tv_block_loss *total,
			     struct tv_block_loss *seen);

struct tv_block_header {
	uint32_t magic;
	uint16_t version;
	uint16_t codec;
	uint64_t block_id;
	uint64_t min_ts_ns;
	uint64_t max_ts_ns;
	uint32_t record_count;
	uint32_t flags;          /* reserved, 0 (BLOCK.md) */
	uint64_t raw_bytes;      /* payload size after decompression */
	uint64_t payload_bytes;  /* payload size as stored */
	uint32_t payload_crc32c; /* CRC32C of the stored payload bytes */
	uint32_t reserved;       /* version 2 bytes [60, 64): 0 (BLOCK.md) */
	uint32_t header_crc32c;  /* CRC32C of header bytes [0, header_bytes - 4) */
	uint32_t header_bytes;   /* 64, 112 or 128 by version: derived, not stored */
	struct tv_block_loss loss; /* version 2 and 3 */
	/* version 3 only (proto/block_v3.h): pages in the directory, bytes of the trace-id
	 * filter, and the CRC32C of each */
	uint32_t page_count, bloom_bytes, dir_crc32c, bloom_crc32c;
};

/* Header length of the block whose first TV_BLOCK_PREFIX_BYTES bytes are at buf: 64, 112 or
 * 128, or 0 for a bad magic or an unknown version. */
uint32_t tv_block_header_bytes(const void *buf);

/* Parse and check a header from the first len bytes of buf: magic, version, codec, header CRC and
 * size bounds. Returns 0, or -EBADMSG (corrupt) / -EPROTONOSUPPORT (version, codec) / -EINVAL (len
 * shorter than the header of its version), with a one-line reason in err when err != NULL. */
int tv_block_header_parse(const void *buf, size_t len, struct tv_block_header *h, char *err,
			  size_t errlen);

/* Total encoded size of a block whose header is h. */
static inline uint64_t tv_block_total_bytes(const struct tv_block_header *h)
{
	return h->header_bytes + h->payload_bytes;
}

/* ---- building ---- */

struct tv_block_builder;

/* An empty builder, freed with tv_block_builder_free (safe on NULL). NULL when out of memory. */
struct tv_block_builder *tv_block_builder_new(void);
void tv_block_builder_free(struct tv_block_builder *b);
/* Packs r into the builder (r is not kept). Returns 0 or -ENOMEM / -E2BIG (record too big). */
int tv_block_builder_add(struct tv_block_builder *b, const Tracevault__V1__TraceRecord *r);
uint32_t tv_block_builder_count(const struct tv_block_builder *b);
/* Forget every added record (memory is kept for reuse; the loss set for the next seal stays).
 * A failed seal leaves the records in the builder; a caller that gives them up calls this. */
void tv_block_builder_reset(struct tv_block_builder *b);
/* Loss counters for the next sealed block (copied; kept until that seal). ts_ns gives the time
 * range of a block sealed with no record, which tv_block_builder_seal allows when a loss
 * counter is non-zero: the loss is stored even when nothing was kept. */
void tv_block_builder_set_loss(struct tv_block_builder *b, const struct tv_block_loss *loss,
			       uint64_t ts_ns);
/* The format version the next seals write: 2 (one zstd frame of records, for a reader that
 * predates version 3) or 3 (the default). Returns 0 or -EINVAL for another version. */
int tv_block_builder_set_version(struct tv_block_builder *b, unsigned version);
/* Bytes the records would take uncompressed, a proxy for the sealed size. */
size_t tv_block_builder_raw_bytes(const struct tv_block_builder *b);
/* Seal the added records, sorted by ts_ns (stable), into one encoded block. On success (0) *out
 * is a malloc'd buffer of *out_len bytes owned by the caller, and the builder is empty again.
 * codec is TV_CODEC_ZSTD or TV_CODEC_NONE. Writes the version of tv_block_builder_set_version
 * (3 by default) with the loss set by tv_block_builder_set_loss (cleared on success). Errors
 * leave records and loss in the builder: -ENODATA when it has no record and no loss, -E2BIG
 * when the framed records pass TV_BLOCK_MAX_RAW_BYTES (or, version 3, TV_BLOCK_V3_MAX_PAGES
 * pages), -EIO when zstd fails, -EINVAL for another codec, -ENOMEM. */
int tv_block_builder_seal(struct tv_block_builder *b, uint64_t block_id, enum tv_codec codec,
			  int zstd_level, void **out, size_t *out_len);

/* Give an encoded block a new block_id in place (and fix its header CRC), so one sealed block
 * can be stored again under another id: used by the benchmark to reuse warm block memory.
 * Returns 0, or the tv_block_header_parse error for a buffer that is not a block. */
int tv_block_set_id(void *buf, size_t len, uint64_t block_id);

/* ---- reading ---- */

struct tv_block_reader;

/* Check a whole encoded block (header, sizes, payload CRC) and decompress its payload into
 * the reader (*out, freed with tv_block_reader_free); a version 3 block's pages are decoded
 * (directory, page CRCs) into the same run of records. buf must stay valid only for this call.
 * It holds raw_bytes at once: the server reads stored blocks with proto/block_stream.h.
 * Returns 0, or a tv_block_header_parse error, -EBADMSG (size, payload CRC or decompression)
 * or -ENOMEM, each with a reason in err when err != NULL. */
int tv_block_reader_open(struct tv_block_reader **out, const void *buf, size_t len, char *err,
			 size_t errlen);
const struct tv_block_header *tv_block_reader_header(const struct tv_block_reader *r);
/* Field 1 (ts_ns) of the packed TraceRecord of len bytes at p, 0 when absent (proto3), after
 * walking every field's framing. Returns 0, or -EBADMSG when the bytes are not a protobuf
 * message. */
int tv_block_record_ts(const uint8_t *p, size_t len, uint64_t *ts_ns);
/* Next record in block order (ts_ns ascending as the builder writes it; not checked here).
 * Returns 1 with *rec set (free it with tracevault__v1__trace_record__free_unpacked(rec,
 * NULL)), 0 at the end, or -EBADMSG (a bad length or record, or not record_count records). */
int tv_block_reader_next(struct tv_block_reader *r, Tracevault__V1__TraceRecord **rec);
/* The same walk without unpacking: *data and *len point at the record's protobuf bytes inside the
 * reader (valid until tv_block_reader_free), *ts_ns is its field 1. Lets a server forward
 * records without a decode/encode round trip. Returns 1, 0 at the end, or -EBADMSG. */
int tv_block_reader_next_raw(struct tv_block_reader *r, const uint8_t **data, size_t *len,
			     uint64_t *ts_ns);
void tv_block_reader_free(struct tv_block_reader *r);

#endif
