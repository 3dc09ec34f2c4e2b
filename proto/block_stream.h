/* Reading one stored trace block in bounded memory, for the server's queries: the block is
 * read through the caller's pread-like function in TV_BLOCK_STREAM_READ_BYTES pieces, its
 * header and payload CRC32C are checked before any record is handed out, and the payload is
 * decompressed as records are taken. What it holds is bounded by the zstd window
 * (2^TV_BLOCK_MAX_WINDOW_LOG at most) and the largest record, never by raw_bytes; every byte it
 * allocates (zstd's too) is reserved first from the caller's budget. A version 3 block is read
 * by its page directory instead: one page at a time, each checked against its own CRC32C when
 * it is read (no whole-payload pass), a window found by tv_block_stream_seek. Format:
 * proto/BLOCK.md. */
#ifndef TV_BLOCK_STREAM_H
#define TV_BLOCK_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/block.h"
#include "proto/varint.h"

/* Bytes asked of the read function at once (the CRC pass and the payload). */
#define TV_BLOCK_STREAM_READ_BYTES (64u << 10)
/* First size of the buffer records are decompressed into; it doubles when a record does not
 * fit, up to one record of TV_BLOCK_MAX_RECORD_BYTES with its length prefix. */
#define TV_BLOCK_STREAM_OUT_BYTES (64u << 10)
#define TV_BLOCK_STREAM_MAX_OUT_BYTES (TV_BLOCK_MAX_RECORD_BYTES + TV_VARINT_MAX_BYTES)
/* The most one stream ever reserves: zstd at the largest window (the window, two 128 KiB
 * blocks and its ~100 KiB of tables), the read buffer and the largest record buffer, with
 * room to spare (test_block_stream checks a block at both limits against it). A budget that
 * cannot give a stream this much may be unable to read a valid block. */
#define TV_BLOCK_STREAM_MAX_MEMORY_BYTES (12u << 20)

/* Reads up to len bytes at offset into buf: returns the count read (short or 0 only at the end
 * of the file) or a negative errno. */
typedef ssize_t (*tv_block_read_fn)(void *arg, uint64_t offset, void *buf, size_t len);

/* Where a stream's memory comes from. reserve is called before every allocation with its size:
 * 0 lets it happen; a negative errno (-ENOBUFS) refuses it, with a one-line reason written to
 * why. release is called with the same size after the memory is freed. */
struct tv_block_budget {
	int (*reserve)(void *arg, size_t bytes, char *why, size_t whylen);
	void (*release)(void *arg, size_t bytes);
	void *arg;
};

struct tv_block_stream;

/* Open the block of file_bytes bytes that read (with arg) returns: parse and check the header
 * (tv_block_header_parse), that the file is exactly header + payload_bytes long, and the payload
 * CRC32C (a full pass over the payload, TV_BLOCK_STREAM_READ_BYTES at a time), then set up
 * decompression. budget may be NULL (no limit); read, arg and budget must outlive the stream.
 * Returns 0 with *out set, or a negative errno with a one-line reason in err (always set):
 * the tv_block_header_parse errors (-EBADMSG, -EPROTONOSUPPORT, -EINVAL for a header cut
 * short), -EBADMSG (size, CRC: the block is damaged), -ENOBUFS (the budget refused, with its
 * reason), -ENOMEM, or the read function's errno. */
int tv_block_stream_open(struct tv_block_stream **out, tv_block_read_fn read, void *arg,
			 uint64_t file_bytes, const struct tv_block_budget *budget, char *err,
			 size_t errlen);
const struct tv_block_header *tv_block_stream_header(const struct tv_block_stream *s);

/* The next record: *data and *len point at its protobuf bytes inside the stream (valid until
 * the next call or tv_block_stream_free), *ts_ns is its field 1. Checks what BLOCK.md requires
 * of the records: each length fits and is at most TV_BLOCK_MAX_RECORD_BYTES, each parses as a
 * protobuf, ts_ns never goes down and stays inside [min_ts_ns, max_ts_ns], exactly
 * record_count records, the payload decompresses to exactly raw_bytes with a window of at most
 * 2^TV_BLOCK_MAX_WINDOW_LOG, and the payload read is still the one whose CRC32C open checked
 * (found at the end: a file changed in place meanwhile). Returns 1 with a record, 0 at the
 * end, or a negative errno with a reason in err: -EBADMSG (the block breaks one of those
 * rules), -ENOBUFS / -ENOMEM (memory), or the read function's errno. After an error only
 * tv_block_stream_free is valid. */
int tv_block_stream_next(struct tv_block_stream *s, const uint8_t **data, size_t *len,
			 uint64_t *ts_ns, char *err, size_t errlen);

/* tv_block_stream_next for a reader that copies each record somewhere (the server's batches):
 * a record of a version 3 block made of its columns alone is left unbuilt, *data NULL, and
 * tv_block_stream_write builds its *len bytes where the caller wants them, which spares
 * building it here and copying it there. Every other record comes as tv_block_stream_next
 * gives it (*data not NULL). Same checks, returns and errors. */
int tv_block_stream_next_unbuilt(struct tv_block_stream *s, const uint8_t **data, size_t *len,
				 uint64_t *ts_ns, char *err, size_t errlen);
/* Build the record the last tv_block_stream_next_unbuilt left unbuilt: its len bytes at out
 * (room for len), byte for byte what tv_block_stream_next hands out. Valid until the next call
 * of a tv_block_stream_next* or tv_block_stream_free. Returns 0, -EINVAL when the last call
 * left no record unbuilt, or -EBADMSG with a reason in err (a record that does not parse:
 * cannot happen, tv_block_stream_next_unbuilt builds every record with kept fields). */
int tv_block_stream_write(struct tv_block_stream *s, uint8_t *out, char *err, size_t errlen);

/* For a reader that stops before the end: read the rest of the payload (no decompression) to
 * complete the second pass's CRC32C, so that a file changed in place after open is reported
 * although its records were taken. Returns 0 when the payload is the one checked at open,
 * -EBADMSG when it changed, or the read function's errno, with a reason in err. After it,
 * only tv_block_stream_free is valid. */
int tv_block_stream_finish(struct tv_block_stream *s, char *err, size_t errlen);

/* Version 3 (a no-op returning 0 for 1 and 2, or once a record was taken): start at the first
 * page whose last record is at or after ts_ns (the directory, no page read) and pass over the
 * rows before ts_ns without building them, so a window decodes only the pages it needs.
 * Returns 1 when it seeked. */
int tv_block_stream_seek(struct tv_block_stream *s, uint64_t ts_ns);

/* Version 3, for a reader of a few fields (Summary): the next page, read, CRC-checked and
 * opened with tv_v3_page_open_fields (fields: bits 1u << field number), into *page (valid
 * until the next call or tv_block_stream_free; read it with tv_v3_page_next_fields, its rows'
 * ts_ns with tv_v3_page_ts). It starts where tv_block_stream_seek put the stream, so the
 * first page may hold rows before the seek's ts_ns: the caller passes over them. Do not mix
 * with tv_block_stream_next. Returns 1 with a page, 0 after the last page or at the first
 * page that starts at or after to_ns (not read), -EINVAL for a version 1 or 2 block, or
 * tv_block_stream_next's errors with a reason in err. */
struct tv_v3_page;
int tv_block_stream_next_page(struct tv_block_stream *s, uint32_t fields, uint64_t to_ns,
			      struct tv_v3_page **page, char *err, size_t errlen);

/* Whether a record with one of the n trace ids (32 bytes each, stride bytes apart; ASCII case
 * does not matter) may be in the block: 1 maybe (always for versions 1 and 2), 0 certainly
 * not (version 3: its trace-id filter, read and checked here, then freed), or a negative errno
 * with a reason in err: -EBADMSG (the filter's CRC), -ENOBUFS / -ENOMEM, the read's errno. */
int tv_block_stream_may_hold_trace(struct tv_block_stream *s, const char *ids, size_t n,
				   size_t stride, char *err, size_t errlen);

/* Version 3: read the block's trace-id filter, check its CRC32C and hand it to fn: bloom of
 * bytes bytes (a multiple of 32; NULL and 0 when no record of the block has a 32-byte trace
 * id, so none is there), valid only during the call, for tv_v3_bloom_test. fn returns 0 or
 * a negative errno with a reason in err, which ends the call. Returns 1 after fn, 0 for
 * versions 1 and 2 (no filter: fn is not called), or a negative errno with a reason in err:
 * -EBADMSG (the filter's CRC), -ENOBUFS / -ENOMEM, the read's errno, fn's. */
typedef int (*tv_block_filter_fn)(void *arg, const uint8_t *bloom, size_t bytes, char *err,
				  size_t errlen);
int tv_block_stream_trace_filter(struct tv_block_stream *s, tv_block_filter_fn fn, void *arg,
				char *err, size_t errlen);

/* Version 3 (no effect on 1 and 2): hand out only records of pages that may hold a record
 * with one of the n trace ids (32 bytes each, stride bytes apart; ids must outlive the
 * stream): a page whose trace-id columns hold none of them is read and checked but no record
 * of it is built (tv_v3_page_may_hold_trace). The caller still filters the records handed out;
 * only pages without any match are passed. n 0: every page again. */
void tv_block_stream_trace_pages(struct tv_block_stream *s, const char *ids, size_t n,
				 size_t stride);

/* Rows decoded so far: version 3 counts the rows of the pages read, built or passed over;
 * versions 1 and 2 every record handed out (each was decompressed). */
uint64_t tv_block_stream_rows_decoded(const struct tv_block_stream *s);

/* Records handed out so far. */
uint32_t tv_block_stream_records(const struct tv_block_stream *s);
/* Bytes the stream holds reserved from its budget now (also without a budget). */
size_t tv_block_stream_held_bytes(const struct tv_block_stream *s);

/* Free the stream and release its memory to the budget. NULL is a no-op. */
void tv_block_stream_free(struct tv_block_stream *s);

#endif
