/* The Write streams of one segment, on the client: per server OPEN_SEGMENT, per block OPEN_BLOCK
 * and chunks under the ack window, FLUSH, then COMMIT once every stream flushed, all driven on
 * the writer's completion queue. grpc_writer.c owns the writer and the cleanup after a failure. */
#ifndef TV_WRITE_STREAM_H
#define TV_WRITE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "write/chunker.h"
#include "write/grpc_writer.h"

#define TV_WSTREAM_REASON_BYTES 512
#define TV_WSTREAM_CLEANUP_BYTES 1536

/* The writer's servers and settings, as its streams use them. Part of struct tv_writer, which
 * fills it in tv_writer_new and owns the strings and channels. */
struct tv_wstream_conf {
	char *server[TV_WRITER_MAX_SERVERS];
	grpc_channel *ch[TV_WRITER_MAX_SERVERS];
	unsigned nservers;
	size_t max_message_bytes, chunk_bytes, window_bytes;
	int timeout_ms;            /* deadline of one segment */
	enum tv_chunk_mode mode;
	uint64_t corrupt_chunk;    /* tv_writer_opts.test_corrupt_chunk */
	/* random, drawn once per writer: sent with every OPEN_SEGMENT and cleanup Delete, so a
	 * server deletes only segments this writer opened (PROTOCOL.md) */
	uint64_t writer_token;
	grpc_completion_queue *cq; /* every call of the writer; one thread at a time */
};

struct tv_wstream;

/* One segment in progress, shared by its streams. The caller (tv_writer_write_segment) fills
 * the fields up to base and owns the struct and base; streams are this module's. */
struct tv_wstream_seg {
	const struct tv_wstream_conf *conf;
	struct tv_writer_stats *st; /* chunks_sent and payload_bytes_copied are counted here */
	uint64_t segment_id;
	const struct tv_block_buf *blocks;
	size_t n;
	grpc_slice *base;           /* per block: the caller's ref on its slice */
	struct tv_wstream *streams; /* tv_wstream_plan allocates, tv_wstream_free frees */
	size_t nstreams, nflushed;
	/* Streaming (tv_wstream_run_streaming): blocks and base grow while the segment runs;
	 * feed adds the next block(s) with tv_wstream_add_block, or clears more_input, or
	 * fails the segment; it returns false when it added nothing (no room yet, or done). A
	 * block's base ref is dropped (release_acked) once its server acknowledged every
	 * byte: no retry ever needs it, so memory stays bounded by what is in flight. */
	bool more_input;            /* streaming: blocks may still come (FLUSH waits) */
	bool release_acked;
	bool (*feed)(struct tv_wstream_seg *sg);
	void *feed_arg;
	int stream_of[TV_WRITER_MAX_SERVERS]; /* 1 + index into streams, 0: none yet */
	bool failed;
	/* CLOCK_MONOTONIC ns: the first COMMIT sent, the last commit reply read (0 until then);
	 * their difference is the segment's commit latency (tv_writer_stats.last_commit_ns) */
	uint64_t commit_sent_ns, commit_acked_ns;
	char reason[TV_WSTREAM_REASON_BYTES];    /* the first failure */
	char cleanup[TV_WSTREAM_CLEANUP_BYTES];  /* cleanup errors, "; "-separated */
	unsigned cleanup_errors;
};

/* One stream per server the blocks are placed on (tv_place_block), each with its blocks in
 * segment order. 0 or -ENOMEM (tv_wstream_free releases what was allocated either way). */
int tv_wstream_plan(struct tv_wstream_seg *sg);

/* Drive every stream to its end: every started batch completes exactly once, so this returns
 * when none is outstanding. Bounded by the deadline (plus slack, then cancel). sg->base must
 * hold a ref on every block. */
void tv_wstream_run(struct tv_wstream_seg *sg, gpr_timespec deadline);

/* Streaming: allocate room for one stream per server (none started yet). 0 or -ENOMEM. */
int tv_wstream_begin(struct tv_wstream_seg *sg);

/* Streaming: block i (already in sg->blocks[i], with its ref in sg->base[i], i == sg->n - 1)
 * goes to its server's stream, started on first use. 0, or -ENOMEM (the segment is failed). */
int tv_wstream_add_block(struct tv_wstream_seg *sg, size_t i);

/* Streaming: alternate feed and the completion queue until every stream ended. The calls have
 * no deadline; instead the segment fails after timeout_ms without any completion while
 * something is outstanding (no progress). */
void tv_wstream_run_streaming(struct tv_wstream_seg *sg);

/* true when nothing failed and every stream got its commit reply and status OK. */
bool tv_wstream_committed(const struct tv_wstream_seg *sg);

/* Release the streams (their calls, metadata and block lists); not sg itself. */
void tv_wstream_free(struct tv_wstream_seg *sg);

/* Fail the segment: the first call sets sg->reason and cancels every started stream (a failed
 * cancel is a cleanup error); later calls do nothing. */
void tv_wstream_fail(struct tv_wstream_seg *sg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append one cleanup error to sg->cleanup (for the failure line) and count it. */
void tv_wstream_cleanup_error(struct tv_wstream_seg *sg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
