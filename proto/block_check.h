/* The complete check of a trace block (BLOCK.md "What a writer promises"): header fields, the
 * payload decompressed and every record walked, in bounded memory and fed in pieces as the
 * bytes arrive. The server runs it on every block before it can be committed, so that no
 * acknowledged block can fail a reader; tv_block_validate runs it on a block in one buffer. */
#ifndef TV_BLOCK_CHECK_H
#define TV_BLOCK_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "proto/block.h"

/* The check holds at most one zstd window (TV_BLOCK_MAX_WINDOW_LOG, proto/block.h: frames
 * that ask for more, zstd levels 20-22 with --ultra, are refused as above a limit, -EMSGSIZE,
 * rather than given that memory) plus ZSTD_DStreamOutSize() (128 KiB) of decompressed bytes
 * plus one record (TV_BLOCK_MAX_RECORD_BYTES), whatever raw_bytes says. */

struct tv_block_check;

/* A check context, reusable for one block after another (tv_block_check_begin starts each);
 * freed with tv_block_check_free (safe on NULL). NULL when out of memory. Its decompression
 * buffers are allocated on the first compressed block and kept until the free. */
struct tv_block_check *tv_block_check_new(void);
void tv_block_check_free(struct tv_block_check *c);

/*
 * Three steps per block, every one returning 0 or a negative errno with a one-line reason in
 * err (when err != NULL); after an error only tv_block_check_begin (another block) or the free
 * may follow. Errors, by what the caller should answer (PROTOCOL.md's status table):
 *   -EBADMSG          the block contradicts itself or BLOCK.md (DATA_LOSS): a payload that
 *                     does not decompress to exactly raw_bytes or is not one zstd frame, a
 *                     record cut short or not a TraceRecord, records not sorted by ts_ns,
 *                     a ts_ns outside [min_ts_ns, max_ts_ns], min/max not the first/last
 *                     record's ts_ns, not exactly record_count records, an empty block that
 *                     is not one instant, block_id 0;
 *   -EPROTONOSUPPORT  a reserved header field (flags, v2 bytes 60-63) is not 0: a feature this
 *                     build does not read (INVALID_ARGUMENT, like an unknown codec);
 *   -EMSGSIZE         a record above TV_BLOCK_MAX_RECORD_BYTES or a zstd window above
 *                     TV_BLOCK_MAX_WINDOW_LOG (RESOURCE_EXHAUSTED: a limit);
 *   -ENOMEM.
 */
/* Start a block whose header h passed tv_block_header_parse (h is copied): the header-only
 * rules, so a block that cannot be valid fails before its payload is read. */
int tv_block_check_begin(struct tv_block_check *c, const struct tv_block_header *h, char *err,
			 size_t errlen);
/* The next len bytes of the stored payload (the bytes after the header, as sent: compressed
 * for zstd), in order, in pieces of any size (0 included). Fails as soon as the bytes so far
 * break a rule, except a record rule in a zstd payload: that one is answered by
 * tv_block_check_end once the frame was read whole, so that a frame that does not decompress
 * is the answer (-EBADMSG) however the payload was cut into pieces. */
int tv_block_check_feed(struct tv_block_check *c, const void *payload, size_t len, char *err,
			size_t errlen);
/* After the last payload byte: the rules about the whole (the frame ended, raw_bytes and
 * record_count reached exactly, the last record at max_ts_ns). */
int tv_block_check_end(struct tv_block_check *c, char *err, size_t errlen);

/* Every check of BLOCK.md on one encoded block in buf (len bytes): tv_block_header_parse, the
 * total size, the payload CRC32C, then the three steps above. Returns 0, a
 * tv_block_header_parse error, or an error above (a size or CRC mismatch is -EBADMSG). */
int tv_block_validate(const void *buf, size_t len, char *err, size_t errlen);

/* 0 when protobuf-c (the readers' parser) would unpack the len bytes at p as a TraceRecord,
 * decided from the wire format alone, without allocating; -EBADMSG (with a reason) otherwise.
 * *ts_ns gets its field 1 (0 when absent, the last one when repeated, as protobuf reads it).
 * Stricter than protobuf-c in three corners no encoder produces: field number 0, a length
 * prefix above 2^32, and a packed repeated scalar (TraceRecord has none). */
int tv_block_check_record(const uint8_t *p, size_t len, uint64_t *ts_ns, char *err,
			  size_t errlen);

#endif
