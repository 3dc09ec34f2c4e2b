/* One Write stream's segment: the protocol state machine (OPEN_SEGMENT, OPEN_BLOCK + chunks,
 * FLUSH, COMMIT, CANCEL) over the store and catalog, independent of the gRPC transport.
 * Chunks are written asynchronously straight from the received slices; what the transport
 * must do (ack, reply, end the call, receive again) comes back through a sink of callbacks. */
#ifndef TV_SEGMENT_H
#define TV_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/status.h>

#include "server/catalog.h"
#include "server/metrics.h"
#include "server/store_uring.h"
#include "under/persist.h"

/* More blocks than this in one segment is RESOURCE_EXHAUSTED: bounds per-stream state. */
#define TV_SERVER_MAX_SEGMENT_BLOCKS TV_WIRE_MAX_SEGMENT_BLOCKS
/* Per stream, the server stops receiving while this many chunk writes (or bytes) are in
 * flight: bounds the memory pinned by received slices and pushes back on the client through
 * HTTP/2 flow control. 8 x 1 MiB chunks keep the disk busy while the next chunks arrive. */
#define TV_SEGMENT_MAX_INFLIGHT_CHUNKS 8
#define TV_SEGMENT_MAX_INFLIGHT_BYTES (32u << 20)
/* Per stream, block files holding a descriptor: the block being written and the complete ones
 * whose fdatasync is in flight (a synced block's descriptor is closed; it waits for COMMIT by
 * name). Between blocks the stream stops receiving at this many, until a sync completes, so a
 * segment of any number of blocks holds at most this many descriptors. Measured with
 * bench_ingest (4 KiB and 64 KiB blocks, where syncs dominate): 2 halved the throughput of the
 * sync-all-at-COMMIT code this replaced, 8 matched it, 32 gained nothing more (the in-flight
 * bound above caps a stream's syncs too). With 4 MiB blocks all three matched it. */
#define TV_SEGMENT_MAX_OPEN_FILES 8

/* How the segment talks back to the transport. Every callback may run from
 * tv_segment_on_message / tv_segment_on_end or from tv_store_reap (tv_segment_abort and
 * tv_segment_free call none). */
struct tv_segment_sink {
	/* offset bytes of block_id are written (coalescable: a newer ack replaces an older one) */
	void (*ack)(void *arg, uint64_t block_id, uint64_t offset);
	/* a FLUSH or COMMIT reply to send in order; the callee owns bb */
	void (*reply)(void *arg, grpc_byte_buffer *bb);
	/* end the call with this status once tv_segment_busy is 0 (after the queued replies) */
	void (*finish)(void *arg, grpc_status_code code, const char *msg);
	/* I/O completed: tv_segment_can_receive or tv_segment_busy may have changed */
	void (*wake)(void *arg);
};

/* Counters shared by every segment of a server (one thread: no locking). */
struct tv_segment_stats {
	uint64_t zero_copy_chunks;
	uint64_t fallback_chunks;       /* chunks that went through flatten + protobuf-c unpack */
	uint64_t payload_bytes_copied;  /* user-space copies of chunk payload bytes on receive */
	/* the server's exported counters (server/metrics.h): commits, aborts, commit latency */
	struct tv_server_metrics *metrics;
	/* the under-store (--under: server/under/UNDERSTORE.md), or NULL (local only). With it
	 * and cache-through, a COMMIT waits for the segment's blocks and manifest to be in S3
	 * before it joins the commit queue. */
	struct tv_persist *under;
	/* --write-type async-through (tv_persist_is_async): a COMMIT joins the commit queue at
	 * once, its group's transaction journals it 'queued', and it is queued for upload
	 * after its reply; the group takes no more segments than the upload queue has room
	 * for (tv_persist_queue_fits) */
	int under_async;
	/* --write-type must-cache with --under (tv_persist_is_must_cache): a COMMIT is local
	 * only, as without --under; under is kept for deletes and evicted segments */
	int under_must_cache;
};

struct tv_segment;

/* Group commit: segments whose COMMIT is ready (every block written and fdatasynced) wait
 * here, one queue per server, until the server's loop finds no gRPC event ready and calls
 * tv_segment_commit_group. A group shares one catalog transaction (one WAL fsync) and one
 * fsync of blocks/ and tmp/; nothing waits on purpose (no delay knob): segments that get ready
 * while a group's syncs run form the next group. */
struct tv_commit_queue {
	struct tv_segment *head, *tail;
	size_t n;
	uint64_t groups, segments, largest; /* logged at exit */
	/* What the groups since the server last took these committed (server/retention.h): how
	 * many segments, and the oldest newest-record time among them (UINT64_MAX: none). The
	 * server resets them after each group. */
	uint64_t new_segments, new_oldest_ts_ns;
	/* async-through: the head waits for room in the upload queue (back-pressure: its COMMIT
	 * is not answered); the server clears it when uploads end (tv_persist_reap) */
	int blocked;
};

/* The most segments one group takes; the rest wait for the next group. Bounds the loop's
 * time away from gRPC per group, and the in-group duplicate scan of the catalog. */
#define TV_COMMIT_GROUP_MAX_SEGMENTS 256

/* Commit up to TV_COMMIT_GROUP_MAX_SEGMENTS queued segments as one group (server/RECOVERY.md
 * "Group commit"): one catalog transaction with a savepoint per segment, then the renames,
 * then one fsync of blocks/ and of tmp/, then each member's commit reply. A member's own
 * failure (a block id already committed, its rows, its rename) fails that member only; a
 * failure of a shared step (the transaction's COMMIT, a directory fsync) fails every member,
 * takes their rows back out and moves their files back, and acknowledges none (the fsync is
 * never retried). No-op on an empty queue. */
void tv_segment_commit_group(struct tv_commit_queue *q);

/* c, s, sink, stats, q must outlive the segment; arg is passed to the sink. NULL on ENOMEM. */
struct tv_segment *tv_segment_new(struct tv_catalog *c, struct tv_store *s,
				  size_t max_message_bytes, const struct tv_segment_sink *sink,
				  void *arg, struct tv_segment_stats *stats,
				  struct tv_commit_queue *q);
/* Aborts (deletes temp files of) a segment that was not committed, then frees it. Writes
 * still in flight finish on their own (their slices and file are released then). */
void tv_segment_free(struct tv_segment *seg);

/* Handle one received WriteRequest message. bb stays owned by the caller; the segment takes
 * its own refs on the slices it writes from. */
void tv_segment_on_message(struct tv_segment *seg, grpc_byte_buffer *bb);
/* The client half-closed: abort unless committed. */
void tv_segment_on_end(struct tv_segment *seg);
/* 1 when the transport should receive the next request now (open, no FLUSH/COMMIT waiting
 * for I/O, in-flight writes below the bounds). */
int tv_segment_can_receive(const struct tv_segment *seg);
/* Operations of this segment still in flight (a final status waits for 0, so that a failed
 * segment's space is free before the client hears about it). */
size_t tv_segment_busy(const struct tv_segment *seg);

/* 0 until OPEN_SEGMENT arrived. */
uint64_t tv_segment_id(const struct tv_segment *seg);
/* 1 while the segment can still be committed (not committed, cancelled or failed). */
int tv_segment_is_open(const struct tv_segment *seg);
/* Abandon an open segment (client cancel, a Delete rpc, shutdown): deletes its temp files,
 * logs `segment <id> aborted: <why>; removed N temp files` and returns N. Does not end the
 * call: the caller decides the status. */
size_t tv_segment_abort(struct tv_segment *seg, const char *why);

#endif
