/* The write path of capture: records -> blocks sealed by size or age -> bounded block cache ->
 * segments streamed to one or more servers, with the no-retry failure rule. Thread-safe add. */
#ifndef TV_PIPELINE_H
#define TV_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "proto/block.h"
#include "rpc/rpc.h"
#include "write/sink.h"
#include "tracevault.pb-c.h"

/* The pipeline's options, their defaults and their bounds; the CLI checks option values with
 * tv_limit_check against these same objects and prints their bounds. The chunk, window and
 * message sizes it passes on belong to the chunker, the writer and proto/wire.h. */
#define TV_DEFAULT_CACHE_BYTES (256u << 20)
#define TV_DEFAULT_BLOCK_BYTES (4u << 20)
#define TV_DEFAULT_BLOCK_AGE_MS 1000
#define TV_DEFAULT_BACKPRESSURE_MS 1000
/* block_bytes: 1K to half the server's block limit (TV_WIRE_MAX_BLOCK_BYTES), since a sealed
 * block may exceed block_bytes by one record plus the header, and zstd can grow
 * incompressible data slightly. */
extern const struct tv_limit tv_pipeline_block_bytes_limit;
/* cache_bytes: at least two of the smallest blocks, at most 1T (beyond, a typo); the cache
 * must also hold two blocks of the chosen block_bytes (tv_pipeline_check_cache). */
extern const struct tv_limit tv_pipeline_cache_bytes_limit;
/* block_age_ms, backpressure_ms (and the write and delete deadlines): 1 ms to 24 h. */
extern const struct tv_limit tv_pipeline_time_ms_limit;

/* The smallest cache, in bytes, for blocks of block_bytes: two blocks (one being filled while
 * one waits for the writer). The CLI states it when --cache-bytes is too small. */
size_t tv_pipeline_min_cache_bytes(size_t block_bytes);

/* 0 when cache_bytes is at least tv_pipeline_min_cache_bytes(block_bytes), else -EINVAL. */
int tv_pipeline_check_cache(size_t cache_bytes, size_t block_bytes);

struct tv_pipeline_opts {
	const char *servers;      /* "HOST:PORT[,HOST:PORT...]": blocks placed by hash of block id */
	const struct tv_rpc_tls *tls; /* NULL: plaintext; it and its strings outlive the pipeline */
	size_t cache_bytes;       /* bound on sealed-but-not-released block bytes (0: default) */
	size_t block_bytes;       /* seal a block once its records reach this raw size (0: default) */
	int block_age_ms;         /* ... or once its oldest record is this old; each such flush
				   * ends a segment (0: default) */
	int backpressure_ms;      /* how long add waits for cache room before dropping (0: default) */
	size_t chunk_bytes;       /* payload bytes per Chunk message (0: tv_chunk_default_bytes) */
	size_t window_bytes;      /* unacknowledged bytes allowed per stream (0: the writer's
				   * TV_WRITER_DEFAULT_WINDOW_BYTES) */
	size_t max_message_bytes; /* gRPC message limit (0: TV_DEFAULT_MAX_MESSAGE_BYTES) */
	int no_zerocopy;          /* pack chunks with protobuf-c (copies) instead of slices */
	int write_timeout_ms;     /* deadline of one segment (0: TV_DEFAULT_WRITE_TIMEOUT_MS) */
	int delete_timeout_ms;    /* deadline of the cleanup Delete (0: the writer's
				   * TV_WRITER_DEFAULT_DELETE_TIMEOUT_MS) */
	/* Test only: flip one bit of the Nth chunk's payload after its CRC is computed (1-based,
	 * counted over the pipeline's life), so the server sees a CRC mismatch. 0: off. */
	uint64_t test_corrupt_chunk;
};

struct tv_pipeline_stats {
	uint64_t records_in;              /* handed to tv_pipeline_add */
	uint64_t records_committed;       /* confirmed durable by the server(s) */
	uint64_t records_dropped_cache;   /* back-pressure timed out: never sealed */
	uint64_t records_dropped_failed;  /* in a segment whose write failed */
	uint64_t blocks_committed, blocks_dropped;
	uint64_t segments_committed, segments_failed;
	uint64_t bytes_committed;
	uint64_t cleanup_errors;          /* cancel/Delete steps that failed (each also logged) */
	uint64_t payload_bytes_copied;    /* user-space copies of block payload on the write path */
	uint64_t cache_bytes_used, cache_bytes_peak;
};

struct tv_pipeline;

/* Validates options and probes every server as tv_pipeline_new does, from a child process
 * (fork), so that the caller stays single-threaded: gRPC starts threads at its first use, and
 * capture must drop its capabilities before any thread exists (capture/privs.h) yet wants an
 * unreachable or refusing server to fail before it loads anything. The servers can change
 * before tv_pipeline_new, which probes again. Returns 0, or tv_pipeline_new's negative errno and
 * reason (err: "cannot reach server H:P: ...", a TLS refusal), or -EIO when the child gave no
 * answer. */
int tv_pipeline_probe_servers(const struct tv_pipeline_opts *o, char *err, size_t errlen);

/* Validates options and probes every server (err: "cannot reach server H:P: ..."). Starts the
 * writer thread. Returns 0 or a negative errno with a one-line reason in err. */
int tv_pipeline_new(struct tv_pipeline **out, const struct tv_pipeline_opts *o, char *err,
		    size_t errlen);

/* Add one record (copied). May block up to backpressure_ms while the cache is full; then the
 * record is dropped, counted, and -ENOBUFS returned. Callable from any one thread at a time. */
int tv_pipeline_add(struct tv_pipeline *p, const Tracevault__V1__TraceRecord *r);

/* End the current segment now (seal the open block), and wait until every segment so far is
 * committed or failed. Returns 0 if all of them committed, else -EIO. */
int tv_pipeline_flush(struct tv_pipeline *p);

void tv_pipeline_stats(struct tv_pipeline *p, struct tv_pipeline_stats *st);

/* Loss stored in the archive: every sealed block's header carries the records lost since the
 * previous seal (BLOCK.md v2). The pipeline counts its own (cache, failed); the caller reports
 * the others here as running totals (ring_full, map_full, parser, requests of total; its cache and
 * failed are ignored), and their increase since the last call goes into the next block. Losses
 * of a block that is dropped or whose segment fails go into the next block sealed; a loss
 * noted when no record follows is stored by the next flush in a block without records. */
void tv_pipeline_note_loss(struct tv_pipeline *p, const struct tv_block_loss *total);

/* The struct tv_record_sink (write/sink.h) over p: add, note_loss and flush above. p must
 * outlive the sink's use. */
void tv_pipeline_sink(struct tv_pipeline *p, struct tv_record_sink *sink);

/* Flush, stop the writer thread, release everything. Safe on NULL. */
void tv_pipeline_free(struct tv_pipeline *p);

#endif
