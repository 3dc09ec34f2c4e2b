/* The under-store's persister (issue 14, server/under/UNDERSTORE.md): copies a segment's block
 * files and then its manifest into S3 on a worker thread of its own, so that the server's
 * one gRPC + io_uring thread never waits on the network, and hands each result back to that
 * thread through an eventfd the server watches in its io_uring (tv_persist_event_fd). It also
 * deletes segments from S3 (a failed or deleted segment), retrying only those deletes.
 *
 * Threads: every tv_persist_* call but the worker's own is made on the server's thread (the
 * "loop"); a job's done callback runs there too, from tv_persist_reap. The worker owns its
 * tv_s3 client (server/under/s3.h) and touches only the job it runs; the two meet in two
 * lists under one mutex. Counters (struct tv_persist_stats) are relaxed atomics.
 *
 * Object keys (UNDERSTORE.md "Layout"), for a segment S whose oldest record is at time T (UTC):
 *   PREFIX/v1/YYYY/MM/DD/HH/S/B.blk        one per block B (S, B: 16 lower-case hex digits)
 *   PREFIX/v1/YYYY/MM/DD/HH/S/manifest.json   written last: the segment is complete iff it
 *                                          exists and every block it lists has its size
 * so both the write path and a later Delete compute every key from (S, T, block ids). */
#ifndef TV_UNDER_PERSIST_H
#define TV_UNDER_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "common/metrics.h"
#include "under/s3.h"

/* The manifest's "format" and "version" (UNDERSTORE.md "Manifest"); a reader refuses others */
#define TV_PERSIST_MANIFEST_FORMAT "tracevault-segment-manifest"
#define TV_PERSIST_MANIFEST_VERSION 1
/* The layout's version, the first path element under PREFIX */
#define TV_PERSIST_LAYOUT "v1"
/* --under s3://BUCKET/PREFIX: PREFIX at most this many bytes (the longest key it makes is
 * PREFIX + 60 bytes, well within TV_S3_KEY_MAX) */
#define TV_PERSIST_PREFIX_MAX 512
/* --s3-region's default (the SigV4 signing region) */
#define TV_PERSIST_DEFAULT_REGION "us-east-1"
/* Room for any key this module makes, with its NUL */
#define TV_PERSIST_KEY_LEN (TV_PERSIST_PREFIX_MAX + 80)
/* A delete that failed (S3 down) is retried after this, doubling up to the max, for as long as
 * the server runs; deletes are idempotent, and retrying them is not retrying a client's write */
#define TV_PERSIST_CLEANUP_RETRY_MIN_MS 500
#define TV_PERSIST_CLEANUP_RETRY_MAX_MS 30000
/* Room for a job's error line */
#define TV_PERSIST_ERR_LEN 384
/* --s3-connections: the block PUTs of one segment run on up to this many connections at once
 * (one tv_s3 client each, the worker's own among them); the manifest follows once every block
 * is in. One connection makes each PUT wait for the one before it (measured in
 * bench/bench_under.py: UNDERSTORE.md "Measured"). */
#define TV_PERSIST_CONNECTIONS_DEFAULT 4
extern const struct tv_limit tv_persist_connections_limit; /* 1 to 16 */
/* async-through (UNDERSTORE.md "Write path: async-through"): an upload that failed on the S3
 * side is tried again after this, doubling up to the max, for as long as the server runs (the
 * segment is durable locally; retrying our own background copy is not retrying a client's
 * write); each retry counts in tracevault_server_under_persist_retries_total */
#define TV_PERSIST_ASYNC_RETRY_MIN_MS 250
#define TV_PERSIST_ASYNC_RETRY_MAX_MS 10000
/* async-through's queue of committed segments not yet in the bucket: at most this many
 * segments (--under-queue-segments) and bytes of their blocks (--under-queue-bytes); a COMMIT
 * that would pass either waits until uploads make room (never dropped). A lone segment larger
 * than the byte bound goes when the queue is empty. Checked with the limits below. */
#define TV_PERSIST_DEFAULT_QUEUE_SEGMENTS 1024
#define TV_PERSIST_MAX_QUEUE_SEGMENTS 1000000
#define TV_PERSIST_DEFAULT_QUEUE_BYTES (4ull << 30)
#define TV_PERSIST_MAX_QUEUE_BYTES (1ull << 40)
extern const struct tv_limit tv_persist_queue_segments_limit;
extern const struct tv_limit tv_persist_queue_bytes_limit;

/* Why a persist failed (the metric's reason label): from the S3 call's errno */
enum tv_persist_failure {
	TV_PERSIST_FAIL_AUTH,        /* -EACCES: credentials, permissions, quota */
	TV_PERSIST_FAIL_UNREACHABLE, /* -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -ENETUNREACH */
	TV_PERSIST_FAIL_TIMEOUT,     /* -ETIMEDOUT */
	TV_PERSIST_FAIL_SERVER,      /* -EIO: a 5xx, an error inside a 200 */
	TV_PERSIST_FAIL_LOCAL,       /* the temp file: gone (segment aborted), unreadable */
	TV_PERSIST_FAIL_CONFLICT,    /* -EEXIST: the segment id is another's in the bucket */
	TV_PERSIST_FAIL_OTHER,
	TV_PERSIST_FAIL_REASONS,
};

/* What the persister counts; the server embeds it in its metrics (server/metrics.h) so that
 * the series exist with or without --under. */
struct tv_persist_stats {
	uint64_t segments, objects, bytes;  /* persisted (manifest written) */
	uint64_t failures[TV_PERSIST_FAIL_REASONS];
	uint64_t deleted_segments;          /* segments whose objects are gone from S3 */
	uint64_t delete_failures;           /* delete attempts that failed (each retry counts) */
	uint64_t cleanup_pending;           /* gauge: segments whose delete waits for a retry */
	uint64_t queued;                    /* gauge: persists submitted and not yet done */
	/* async-through: gauges of the segments committed and not yet in the bucket (their
	 * blocks' bytes, and CLOCK_REALTIME of the oldest one's commit, 0: none), and the
	 * uploads tried again after a failure */
	uint64_t unpersisted_segments, unpersisted_bytes, oldest_unpersisted_ns;
	uint64_t retries;
	struct tv_histogram persist_seconds; /* a segment's blocks + manifest, submit to done */
};

/* Zero st and set up its histogram (common/metrics.h's latency buckets). */
void tv_persist_stats_init(struct tv_persist_stats *st);

/* --under s3://BUCKET/PREFIX split into BUCKET (bucket_len bytes) and PREFIX (prefix_len bytes,
 * no leading or trailing '/'; may be empty). 0, or -EINVAL with err naming what is wrong. */
int tv_persist_parse_uri(const char *uri, char *bucket, size_t bucket_len, char *prefix,
			 size_t prefix_len, char *err, size_t errlen);

struct tv_persist_opts {
	const char *endpoint, *region, *bucket, *prefix;
	const char *access_key, *secret_key; /* copied into the clients; the caller wipes its own */
	struct tv_s3_put_limits put_limits;
	unsigned connections;                /* tv_persist_connections_limit; 0: the default */
	struct tv_persist_stats *stats;      /* the server's; outlives the persister */
	/* --write-type async-through (0: cache-through), and its queue's bounds (0: the
	 * defaults; else within the limits above) */
	int async;
	uint64_t queue_segments, queue_bytes;
	int must_cache; /* --write-type must-cache with --under (tv_persist_is_must_cache) */
};

struct tv_persist;

/* Opens the persister: a client for the start-up check, which runs now (tv_s3_head_bucket:
 * bad credentials, missing bucket and unreachable endpoint fail here, with err naming the
 * cause), then the worker's client and thread. 0, or a negative errno and err (one line, never
 * the secret). */
int tv_persist_open(struct tv_persist **out, const struct tv_persist_opts *o, char *err,
		    size_t errlen);
/* Waits for the worker to finish every job queued (the loop has stopped submitting), tries the
 * pending deletes once more, logs any still left (their keys), stops the worker, frees. NULL
 * is a no-op. Done callbacks of jobs not reaped are not run. */
void tv_persist_close(struct tv_persist *p);

/* The descriptor that becomes readable when a job is done (an eventfd; tv_persist_reap reads
 * it). Owned by the persister. */
int tv_persist_event_fd(const struct tv_persist *p);
/* Jobs submitted whose done callback has not run yet (the loop watches the eventfd while
 * this is not 0). */
size_t tv_persist_outstanding(const struct tv_persist *p);
/* Runs the done callback of every finished job, on the caller's (the loop's) thread, and frees
 * the jobs. Returns how many. */
size_t tv_persist_reap(struct tv_persist *p);

/* One block of a segment to persist: its temp file (tmp_fd + name, opened by the worker when
 * it gets there, so that a segment of many blocks holds one descriptor at a time; a file
 * unlinked meanwhile fails the job with -ENOENT), and what the manifest says of it. */
struct tv_persist_block {
	uint64_t block_id, bytes, min_ts_ns, max_ts_ns, record_count;
	uint32_t header_bytes, payload_crc32c;
	char name[64];
};

/* done(arg, res, err): res 0 when every block and then the manifest are in S3; else a negative
 * errno, and err (one line) names the S3 call and what S3 said; the objects of the segment
 * that reached S3 have then been deleted (or, when S3 does not answer, wait for a retried
 * delete: err says so). */
typedef void (*tv_persist_done_fn)(void *arg, int res, const char *err);
struct tv_persist_job;

/* Queue the persist of segment SEGMENT_ID: its N blocks (copied), read from TMP_FD (the
 * store's tmp/, borrowed until done). oldest_ts_ns picks the key's hour. *JOB (for
 * tv_persist_detach) stays valid until done runs. 0, -ENOMEM, -EINVAL (n == 0). */
int tv_persist_put_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			   int tmp_fd, const struct tv_persist_block *blocks, size_t n,
			   tv_persist_done_fn done, void *arg, struct tv_persist_job **job);
/* The segment behind JOB is gone (aborted, stream freed): its done will not run, and what the
 * job put into S3 is deleted (a put that succeeds is undone): by the worker as soon as the put
 * ends, before its next job, or, when it has ended already, by a delete queued now; either
 * way before a later attempt of the same segment id, which the loop submits after this. */
void tv_persist_detach(struct tv_persist_job *job);
/* Delete segment SEGMENT_ID's objects (the keys of oldest_ts_ns): the manifest first, so that a
 * half-deleted segment is never read, then everything under its directory (blocks the caller
 * may not know of), and the multipart uploads in progress there. Asynchronous, retried until
 * it succeeds (TV_PERSIST_CLEANUP_RETRY_*), logged; settled() reports it. An async-through
 * upload of the segment still queued is given up first (-ECANCELED); one running ends before
 * the delete runs. 0 or -ENOMEM. */
int tv_persist_delete_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns);

/* ---- the journal and async-through (UNDERSTORE.md "Catalog state") ----
 * The persister knows no catalog: the server attaches what its loop does with the results. */

/* What the server's loop does with results, all called on the loop's thread (tv_persist_reap,
 * tv_persist_settle):
 *   settled(arg, S, since_ns)  a delete of segment S from S3 is confirmed: its journal row may
 *        go if it was written at or before since_ns (CLOCK_REALTIME of the delete's submit,
 *        or of the failed put it undid); a later row belongs to a later attempt of the same
 *        segment id, which that delete does not cover
 *   async_done(arg, S, T, res, err)  an async-through upload ended: res 0 when its manifest
 *        is written, -ECANCELED when it was given up (a Delete of the segment, or the server
 *        stops: the segment stays queued in the journal), else a local failure that is not
 *        retried (its block file is gone or not the block; err says which)
 * blocks_fd: the store's blocks/ directory, which async-through reads by name; owned by the
 * persister from tv_persist_attach on (closed by tv_persist_close). */
struct tv_persist_local {
	int blocks_fd;
	void (*settled)(void *arg, uint64_t segment_id, int64_t since_ns);
	void (*async_done)(void *arg, uint64_t segment_id, uint64_t oldest_ts_ns, int res,
			   const char *err);
	void *arg;
};
void tv_persist_attach(struct tv_persist *p, const struct tv_persist_local *l);
/* 1 for --write-type async-through. */
int tv_persist_is_async(const struct tv_persist *p);
/* 1 for --write-type must-cache with --under: new segments stay local (no upload, no
 * journal row); what is in the bucket is still read (evicted, rebuilt), and deleted with its
 * segment. */
int tv_persist_is_must_cache(const struct tv_persist *p);
/* Start-up (before serving, nothing submitted yet): delete segment SEGMENT_ID's objects now,
 * on the caller's thread, with the client of the start-up check, as a delete job does
 * (manifest first). 0, or the S3 error (err names it). */
int tv_persist_delete_now(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			  char *err, size_t errlen);
/* Run settled() for the deletes confirmed since the last call. Returns how many. Cheap when
 * there are none (an atomic load): the loop calls it every turn. */
size_t tv_persist_settle(struct tv_persist *p);
/* Would NSEGMENTS more segments of BYTES bytes in all fit in async-through's queue? 1 or 0. */
int tv_persist_queue_fits(const struct tv_persist *p, size_t nsegments, uint64_t bytes);
/* async-through: queue the upload of committed segment SEGMENT_ID (its N blocks, copied; each
 * name relative to blocks_fd), committed at QUEUED_NS (CLOCK_REALTIME: the age gauge). It is
 * uploaded in queue order, retried with backoff while S3 fails, and reported to async_done.
 * Queued whether it fits or not (the caller checked tv_persist_queue_fits; start-up queues
 * every 'queued' row, also under cache-through after a switch from async-through).
 * 0, -ENOMEM, -EINVAL (n == 0, or before tv_persist_attach). */
int tv_persist_queue_segment(struct tv_persist *p, uint64_t segment_id, uint64_t oldest_ts_ns,
			     int64_t queued_ns, const struct tv_persist_block *blocks, size_t n);
/* async-through's uploads queued or running whose result the loop has not reaped (among
 * tv_persist_outstanding). */
size_t tv_persist_unpersisted(const struct tv_persist *p);
/* Shutdown: give up every async-through upload not running (async_done gets -ECANCELED; the
 * segments stay 'queued' in the journal for the next start), and the running one when it
 * ends, without a retry; so the loop has only bounded work left to wait for. */
void tv_persist_stop_async(struct tv_persist *p);

/* The key of block BLOCK_ID of the segment, or (block_id ignored, manifest 1) of its manifest,
 * or (dir 1) of its directory with the trailing '/'; into key (TV_PERSIST_KEY_LEN bytes). */
void tv_persist_key(const char *prefix, uint64_t segment_id, uint64_t oldest_ts_ns,
		    uint64_t block_id, int manifest, int dir, char *key, size_t len);

#endif
