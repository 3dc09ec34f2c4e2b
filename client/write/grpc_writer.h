/* Streams sealed trace blocks to one or more tracevaultd servers as segments over the Write rpc
 * (two-phase: FLUSH everywhere, then COMMIT everywhere), and carries out the write-failure
 * rule: cancel every stream of the segment, Delete it on every server it touched, never retry. */
#ifndef TV_GRPC_WRITER_H
#define TV_GRPC_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/slice.h>

#include "common/limit.h"
#include "rpc/rpc.h"

#define TV_DEFAULT_WRITE_TIMEOUT_MS 30000
#define TV_WRITER_DEFAULT_DELETE_TIMEOUT_MS 5000
/* Unacknowledged chunk payload per stream (--window-bytes): the default and the bound. Any
 * value works (a chunk always goes when nothing is unacked); 1T is where a value is a typo. */
#define TV_WRITER_DEFAULT_WINDOW_BYTES (8u << 20)
extern const struct tv_limit tv_writer_window_bytes_limit;
/* Servers one writer can spread segments over. */
#define TV_WRITER_MAX_SERVERS 64

struct tv_writer_opts {
	const char *server;        /* "HOST:PORT[,HOST:PORT...]" */
	const struct tv_rpc_tls *tls; /* NULL: plaintext; it and its strings outlive the writer */
	size_t max_message_bytes;  /* 0: TV_DEFAULT_MAX_MESSAGE_BYTES */
	size_t chunk_bytes;        /* 0: tv_chunk_default_bytes(max_message_bytes) */
	int timeout_ms;            /* deadline of one segment; 0: TV_DEFAULT_WRITE_TIMEOUT_MS */
	size_t window_bytes;       /* unacked chunk payload per stream; 0: default */
	int no_zerocopy;           /* pack chunks with protobuf-c (copies the payload) */
	int delete_timeout_ms;     /* deadline of each cleanup Delete; 0: default */
	/* Test only: flip one payload bit of the Nth chunk (1-based over the writer's life) after
	 * its CRC is computed. That chunk is sent from a private copy (counted as copied). */
	uint64_t test_corrupt_chunk;
};

/* One sealed block (tv_block_builder_seal output). Either slice points at a refcounted slice
 * over the block (the block cache's): chunks are sub-slices sharing its refcount and the writer
 * only takes refs; or slice is NULL and the writer borrows data for the call (it wraps it in
 * its own slice and waits, before returning, until gRPC dropped every reference to it). */
struct tv_block_buf {
	uint64_t block_id;
	const void *data;
	size_t len;
	uint32_t record_count;
	const grpc_slice *slice;   /* optional, see above */
};

struct tv_writer_stats {
	uint64_t segments_committed, segments_failed;
	uint64_t blocks_committed, blocks_dropped;
	uint64_t records_committed, records_dropped;
	uint64_t bytes_committed;
	uint64_t cleanup_errors;   /* failed cancel/Delete steps after a failed segment */
	uint64_t chunks_sent;
	/* Block payload bytes copied in user space on the write path: 0 in zero-copy mode (the
	 * payload goes to gRPC as sub-slices of the block); every chunk byte with no_zerocopy;
	 * plus the one chunk test_corrupt_chunk sends from a corrupted copy. */
	uint64_t payload_bytes_copied;
	/* The last committed segment's commit latency in ns (CLOCK_MONOTONIC): from its first
	 * COMMIT sent to its last commit reply, i.e. the server's commit plus one round trip.
	 * 0 before the first committed segment. */
	uint64_t last_commit_ns;
};

struct tv_writer;

/* Creates one channel per server (connects lazily). Returns NULL on allocation failure or
 * invalid options (an empty entry in the server list, more than TV_WRITER_MAX_SERVERS, a
 * message size, chunk or window outside its limit, a chunk that does not fit a message). The
 * opts strings are copied. */
struct tv_writer *tv_writer_new(const struct tv_writer_opts *o);
void tv_writer_free(struct tv_writer *w);

/* Check that every server answers (channel READY within timeout_ms). Returns 0, or
 * -ECONNREFUSED / -ETIMEDOUT with a one-line reason in err ("cannot reach server H:P: ..."). */
int tv_writer_probe(struct tv_writer *w, int timeout_ms, char *err, size_t errlen);

/* Server index in [0, nservers) of a block: Lamping & Veach's jump consistent hash of the block
 * id. Deterministic (same id and count, same server on every client), and growing the list
 * from n to n+1 servers moves only 1/(n+1) of the blocks. */
unsigned tv_place_block(uint64_t block_id, unsigned nservers);

/* Write blocks[0..n) as one segment: one Write stream per server that holds a block, driven
 * concurrently; per stream OPEN_SEGMENT, per block OPEN_BLOCK + chunks (at most window_bytes
 * unacknowledged), then FLUSH on every stream, then COMMIT on every stream. 0 once every
 * server confirmed its commit. On any failure: every stream is cancelled, every server the
 * segment touched is asked (Delete with this writer's token, bounded deadline) to remove it,
 * which removes it only where this writer opened it (PROTOCOL.md), nothing is retried, the
 * stats count the dropped blocks/records, and a negative errno returns with exactly one line
 * in err (without the "tracevault: " prefix):
 *   segment <16hex> failed: <reason>; dropped <B> blocks, <R> records, ts [<from_ns>, <to_ns>];
 *   cleanup: ok (segment deleted on <n> servers)    or    cleanup: <n> errors: <e1>; <e2>...
 * The caller keeps its own refs on blocks[i].slice and drops them afterwards either way. */
int tv_writer_write_segment(struct tv_writer *w, uint64_t segment_id,
			    const struct tv_block_buf *blocks, size_t n, char *err, size_t errlen);

/* The next block of a streamed segment: fills out->block_id, data (malloc'd; ownership moves
 * to the writer), len and record_count and returns 1; returns 0 at the end of the input, or
 * a negative errno with a one-line reason in err (errlen >= 1) to abandon the segment. */
typedef int (*tv_block_source_fn)(void *arg, struct tv_block_buf *out, char *err,
				  size_t errlen);

/* Like tv_writer_write_segment, but the blocks come from next() while the streams run, so
 * a segment of any size is sent with at most cache_bytes of sealed blocks in memory: a block
 * is taken once it fits the budget and its memory goes back once its server acknowledged it
 * (and gRPC dropped its references). Still one atomic segment: nothing is committed before
 * next() returned 0 and every server flushed. The calls have no deadline; the segment fails
 * after timeout_ms without progress. Returns 0 once committed; -EIO after a write failure
 * (err as tv_writer_write_segment's line); -E2BIG when a block is larger than cache_bytes;
 * or next()'s own negative errno with its reason in err, after the segment was cancelled
 * and deleted everywhere it was sent (a cleanup failure is appended: "; cleanup: ..."). */
int tv_writer_stream_segment(struct tv_writer *w, uint64_t segment_id, size_t cache_bytes,
			     tv_block_source_fn next, void *arg, char *err, size_t errlen);

const struct tv_writer_stats *tv_writer_stats(const struct tv_writer *w);

/* A random non-zero 64-bit id for segments and blocks (getrandom). */
uint64_t tv_random_id(void);

#endif
