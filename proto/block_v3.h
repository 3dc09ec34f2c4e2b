/* Block format version 3 (proto/BLOCK.md "Version 3"): the payload is a directory of pages
 * (the sparse ts index: first/last ts_ns, record count, sizes and a CRC32C per page), a Bloom
 * filter of the block's trace ids, then the pages, each its records split into columns
 * (delta-coded times, per-page dictionaries for repeated strings, binary trace/span ids), each
 * column its own zstd frame. A reader seeks to a time by the directory and decodes one page at a
 * time; a trace-id query tests the filter before it reads any page. The page codec here gives
 * back each record's exact protobuf bytes. Used by block.c (build, in-memory read),
 * block_check.c (the Write-time check) and block_stream.c (the server's reader). */
#ifndef TV_BLOCK_V3_H
#define TV_BLOCK_V3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "proto/block.h"

#define TV_BLOCK_V3_HEADER_BYTES 128
/* Directory entry: first_ts u64, last_ts u64, records u32, stored_len u32, raw_len u32, crc u32 */
#define TV_BLOCK_V3_PAGE_ENTRY_BYTES 32
/* What the builder puts in one page: at most this many records, and it closes a page once its
 * records' protobuf bytes reach TV_BLOCK_V3_PAGE_CUT_BYTES. 2048 records of a typical capture
 * are ~20 s of traffic at 100 req/s: a 1-minute window decodes 4-5 pages. */
#define TV_BLOCK_V3_PAGE_RECORDS 2048
#define TV_BLOCK_V3_PAGE_CUT_BYTES (1u << 20)
/* Reader bounds, checked before anything is allocated (a page of more is -EBADMSG): records per
 * page, a page's raw (column) bytes, pages per block (the directory, 256 KiB at most) and the
 * trace-id filter. The builder stays below each (a page holds < CUT + one record). */
#define TV_BLOCK_V3_MAX_PAGE_RECORDS 8192
#define TV_BLOCK_V3_MAX_PAGE_RAW_BYTES (3u << 20)
#define TV_BLOCK_V3_MAX_PAGES 8192
#define TV_BLOCK_V3_MAX_BLOOM_BYTES (256u << 10)
/* Filter size the builder gives each trace id (about 1% false positives, Parquet's SBBF). */
#define TV_BLOCK_V3_BLOOM_BITS_PER_ID 10
#define TV_BLOCK_V3_BLOOM_BLOCK_BYTES 32
/* Columns of a page, in the order they are stored (BLOCK.md lists them). */
#define TV_BLOCK_V3_COLUMNS 31

struct tv_v3_page_entry {
	uint64_t first_ts, last_ts; /* ts_ns of the page's first and last record */
	uint32_t records;           /* 1..TV_BLOCK_V3_MAX_PAGE_RECORDS */
	uint32_t stored_len;        /* bytes of the page in the payload */
	uint32_t raw_len;           /* the page with every column uncompressed */
	uint32_t crc32c;            /* CRC32C of the stored_len bytes */
};

void tv_v3_page_entry_get(const uint8_t *p, struct tv_v3_page_entry *e);
void tv_v3_page_entry_put(uint8_t *p, const struct tv_v3_page_entry *e);

/* The v3 header fields after the v2 ones (bytes 108..123); the CRC is at 124. */
void tv_v3_header_tail_get(const uint8_t *hdr, uint32_t *page_count, uint32_t *bloom_bytes,
			   uint32_t *dir_crc32c, uint32_t *bloom_crc32c);

/* Check a directory of h->page_count entries at dir against the header h: the page rules of
 * BLOCK.md (record counts sum to record_count, ts ranges ordered and inside, the first page
 * starts at min_ts_ns and the last ends at max_ts_ns, sizes within bounds and summing to the
 * header's raw/payload bytes). Returns 0 or -EBADMSG with a reason in err. */
int tv_v3_directory_check(const uint8_t *dir, const struct tv_block_header *h, char *err,
			  size_t errlen);

/* ---- the trace-id filter ---- */

/* The filter hash of a trace id of 32 bytes (ASCII letters folded to lower case, as
 * QueryFilter.trace_ids compares them): FNV-1a 64 then murmur3's fmix64. */
uint64_t tv_v3_trace_hash(const char *id32);
/* Filter bytes for n ids (a multiple of 32, 0 for none, at most the maximum). */
size_t tv_v3_bloom_bytes_for(size_t n);
void tv_v3_bloom_add(uint8_t *bloom, size_t bytes, uint64_t hash);
/* 0: the id is certainly not in the block; 1: it may be. bytes 0 holds no id. */
bool tv_v3_bloom_test(const uint8_t *bloom, size_t bytes, uint64_t hash);
/* The same test in two steps, for a reader that fetches only the 32 bytes it needs (a copy of
 * the filter kept elsewhere, server/catalog.h): the offset of hash's 32-byte block in a filter
 * of bytes bytes (bytes >= 32), then the test of that block. Equal to tv_v3_bloom_test. */
size_t tv_v3_bloom_block_offset(size_t bytes, uint64_t hash);
bool tv_v3_bloom_block_test(const uint8_t *block, uint64_t hash);

/* The trace id of the TraceRecord of len bytes at rec as protobuf reads it (the last field 13;
 * *id NULL, *id_len 0 when absent). Returns 0 or -EBADMSG (not protobuf fields). */
int tv_v3_record_trace(const uint8_t *rec, size_t len, const uint8_t **id, size_t *id_len);

/* ---- page encoder (the builder) ---- */

struct tv_v3_page_enc;

struct tv_v3_page_enc *tv_v3_page_enc_new(void);
void tv_v3_page_enc_free(struct tv_v3_page_enc *e);
/* Add the record of len bytes at rec (a TraceRecord; ts_ns its field 1, records in ts order).
 * A record the columns cannot give back byte for byte (fields out of number order, repeated,
 * non-minimal varints) is kept whole. *trace_hash gets tv_v3_trace_hash of its trace id and
 * *has_trace 1 when it has one of 32 bytes. Returns 0 or -ENOMEM. */
int tv_v3_page_enc_add(struct tv_v3_page_enc *e, const uint8_t *rec, size_t len, uint64_t ts_ns,
		       bool *has_trace, uint64_t *trace_hash);
uint32_t tv_v3_page_enc_records(const struct tv_v3_page_enc *e);
/* Forget the page's records (after a failed add or finish, whose page is given up). */
void tv_v3_page_enc_reset(struct tv_v3_page_enc *e);
/* Close the page: its stored bytes are appended to *out (realloc'd, *out_len and *out_cap grown)
 * and *entry filled (crc included). cctx NULL stores every column uncompressed. The encoder is
 * empty again. Returns 0, -E2BIG (page above TV_BLOCK_V3_MAX_PAGE_RAW_BYTES), -EIO (zstd),
 * -ENOMEM. */
int tv_v3_page_enc_finish(struct tv_v3_page_enc *e, ZSTD_CCtx *cctx, int level, uint8_t **out,
			  size_t *out_len, size_t *out_cap, struct tv_v3_page_entry *entry);

/* ---- page decoder (every reader) ---- */

/* One record of a page, decoded from the columns but not yet framed as protobuf. */
struct tv_v3_record {
	uint64_t ts_ns;
	uint32_t mask;
	uint64_t num[21];          /* varint fields by number (1..20 used) */
	const uint8_t *str[21];    /* string fields by number */
	uint32_t str_len[21];
	uint8_t str_hex[21];       /* 1: str is binary (16 or 8 bytes), write it as lower hex */
	const uint8_t *rest;       /* fields kept as protobuf, or the whole record (raw) */
	uint32_t rest_len;
	size_t bytes;              /* its protobuf size */
};

struct tv_v3_page;

/* Bytes tv_v3_page_open needs as its workspace for a page of entry e (its raw columns,
 * dictionaries and the decoder's state): ≤ ~6.2 MiB at the bounds above. */
size_t tv_v3_page_work_bytes(const struct tv_v3_page_entry *e);
/* Open the page stored in src (e->stored_len bytes, its CRC already checked by the caller)
 * into work (tv_v3_page_work_bytes(e) bytes, kept by the page until the next open; the page
 * struct lives in it). dctx decompresses (NULL when the page has no compressed column).
 * Returns 0 with *out, or -EBADMSG (a column table or frame that does not fit e) / -EMSGSIZE
 * with a reason in err. */
int tv_v3_page_open(struct tv_v3_page **out, void *work, const struct tv_v3_page_entry *e,
		    const uint8_t *src, ZSTD_DCtx *dctx, char *err, size_t errlen);
/* Whether the page stored in src (entry e, its CRC already checked) may hold a record whose
 * trace id is one of the n ids (32 bytes each, stride bytes apart, ASCII case does not
 * matter), from its mask, trace-id and odd-string columns alone (decompressed into work,
 * tv_v3_page_work_bytes(e) bytes; no record is built): 1 maybe (also when a record of it is
 * kept whole), 0 certainly not, or -EBADMSG with a reason in err. */
int tv_v3_page_may_hold_trace(const struct tv_v3_page_entry *e, const uint8_t *src,
			      void *work, ZSTD_DCtx *dctx, const char *ids, size_t n,
			      size_t stride, char *err, size_t errlen);
/* The page's records' ts_ns, decoded on open (entry.records of them, ascending). */
const uint64_t *tv_v3_page_ts(const struct tv_v3_page *p);
/* Next record into *r. Returns 1, 0 after the last (when every column was used exactly),
 * or -EBADMSG with a reason. The record's strings point into the page. */
int tv_v3_page_next(struct tv_v3_page *p, struct tv_v3_record *r, char *err, size_t errlen);
/* Write r's protobuf bytes (r->bytes of them) at out. Returns 0 or -EBADMSG (its kept fields
 * do not parse). */
int tv_v3_record_write(const struct tv_v3_record *r, uint8_t *out, char *err, size_t errlen);
/* Whether r is a record the page keeps whole: then *data points at its r->bytes protobuf bytes
 * in the page (what tv_v3_record_write would copy). */
bool tv_v3_record_whole(const struct tv_v3_record *r, const uint8_t **data);

/* ---- a few fields of each record (Summary): only their columns are decoded ---- */

/* The fields a field reader can give, as bits 1u << field number: latency_ns (3), pid (4),
 * status (10), flags (15), and the dictionary-coded strings comm (5), local (6), remote (7),
 * method (8), path (9), role (18), host (19), http_version (20). */
#define TV_V3_FIELDS_READABLE                                                                  \
	(1u << 3 | 1u << 4 | 1u << 5 | 1u << 6 | 1u << 7 | 1u << 8 | 1u << 9 | 1u << 10 |     \
	 1u << 15 | 1u << 18 | 1u << 19 | 1u << 20)
/* str_id of an absent string field */
#define TV_V3_NO_ID UINT32_MAX

/* One record's fields, by field number: only those asked for are set. */
struct tv_v3_fields {
	const uint8_t *raw;     /* not NULL: the record is kept whole, as these raw_len protobuf
				 * bytes (read its fields from them); nothing else is set */
	uint32_t raw_len;
	uint64_t num[21];       /* varint fields; 0 when absent, as protobuf reads it */
	const uint8_t *str[21]; /* string fields, pointing into the page; "" when absent */
	uint32_t str_len[21];
	/* the string's index in the page's dictionary of its field: within one page, equal
	 * ids are equal strings and equal strings have equal ids (TV_V3_NO_ID: absent) */
	uint32_t str_id[21];
};

/* Open a page like tv_v3_page_open, decompressing only the columns of the fields in `fields`
 * (bits 1u << field number, within TV_V3_FIELDS_READABLE; others are ignored), the mask and
 * ts columns, and the kept column when a record of the page is kept whole. Read it with
 * tv_v3_page_next_fields only. Same work buffer, returns and errors as tv_v3_page_open. */
int tv_v3_page_open_fields(struct tv_v3_page **out, void *work, const struct tv_v3_page_entry *e,
			   const uint8_t *src, ZSTD_DCtx *dctx, uint32_t fields, char *err,
			   size_t errlen);
/* The next record's fields into *r (its ts_ns is tv_v3_page_ts()[i] for the i-th call).
 * Returns 1, 0 after the last (when every decoded column was used exactly), or -EBADMSG with
 * a reason: the checks of tv_v3_page_next on the columns read. Strings point into the page. */
int tv_v3_page_next_fields(struct tv_v3_page *p, struct tv_v3_fields *r, char *err,
			   size_t errlen);
/* Records in the page (its directory entry's count). */
uint32_t tv_v3_page_records(const struct tv_v3_page *p);

#endif
