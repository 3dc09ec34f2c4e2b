/* Read-back from the under-store (issue 14, server/under/UNDERSTORE.md "Eviction and
 * read-back"): the bytes of one persisted block object, fetched with range GETs of
 * TV_UNDER_READ_CHUNK_BYTES into an anonymous temp file (O_TMPFILE) that the caller reads like
 * the block's own file and closes (nothing is left on disk, whatever happens). Used when a
 * query or a summary needs a block of an evicted segment (server/evict.c decides that).
 *
 * Threads: the reader has its own tv_s3 client (server/under/s3.h: one per thread) and is used
 * on the server's one thread only; its calls BLOCK that thread for the GETs (UNDERSTORE.md
 * "Threading" says why that is the choice for now). Counters are relaxed atomics, read by the
 * metrics thread.
 *
 * Retries: reads only (the data is in the bucket, a GET changes nothing), a bounded number
 * (TV_UNDER_READ_ATTEMPTS) with a doubling pause, and only for what may pass (S3 unreachable,
 * reset, timed out, a 5xx); a 403, 404 or a bad range fails at once. Each retry is counted. */
#ifndef TV_UNDER_READ_H
#define TV_UNDER_READ_H

#include <stddef.h>
#include <stdint.h>

#include "under/persist.h"

/* One range GET asks at most this many bytes: the one buffer a read-back holds (malloc'd for
 * the call, at most this or the block's size), and what a retry fetches again. Blocks are at
 * most 64 MiB (proto/BLOCK.md), so a block is 1 to 8 GETs. */
#define TV_UNDER_READ_CHUNK_BYTES (8u << 20)
/* A GET that fails with a transient error is tried at most this many times in all ... */
#define TV_UNDER_READ_ATTEMPTS 3
/* ... pausing this long before the first retry, doubling before each next one (so a read of
 * an unreachable S3 fails after ~0.3 s of pauses plus the attempts themselves) */
#define TV_UNDER_READ_RETRY_MS 100
/* The reader's S3 calls block the server's thread, so they get tighter bounds than the
 * persister's (tv_s3_set_timeouts): connect within this, and a transfer below
 * TV_S3_LOW_SPEED_BYTES per second for TV_UNDER_READ_LOW_SPEED_TIME_S is abandoned
 * (-ETIMEDOUT, retried as the others). An S3 that accepts and never answers then holds the
 * thread at most TV_UNDER_READ_ATTEMPTS * 5 s plus the pauses per block, not 3 * 30 s. */
#define TV_UNDER_READ_CONNECT_TIMEOUT_MS 2000
#define TV_UNDER_READ_LOW_SPEED_TIME_S 5
/* Room for a read-back's error line */
#define TV_UNDER_READ_ERR_LEN 512

/* What read-back counts (tracevault_server_under_read*_total): blocks read back and their
 * bytes, GETs retried, block reads that failed after their retries. */
struct tv_under_read_stats {
	uint64_t reads, read_bytes, read_retries, read_failures;
};

struct tv_under_reader;

/* A reader of the bucket and prefix of o (its endpoint, region, credentials: copied; stats
 * and put_limits are not used). No request is made (tv_persist_open checked the bucket).
 * stats (the caller's, outlives the reader) gets the counts. 0, or -EINVAL / -ENOMEM with err
 * (never the secret). Freed by tv_under_reader_close (NULL: no-op). */
int tv_under_reader_open(struct tv_under_reader **out, const struct tv_persist_opts *o,
			 struct tv_under_read_stats *stats, char *err, size_t errlen);
void tv_under_reader_close(struct tv_under_reader *r);

/* Fetch block BLOCK_ID of segment SEGMENT_ID (oldest record at OLDEST_TS_NS: the key's hour,
 * tv_persist_key) of BYTES bytes into a new anonymous file created in directory DIR_FD
 * (O_TMPFILE, the store's tmp/: the same file system as blocks/), *FD (read-write, the
 * caller closes it; at offset 0). Returns 0, or a negative errno with err naming the S3
 * request and what S3 said ("under-store: GET s3://b/k (bytes 0-1048575): Connection refused
 * (3 attempts)"): the S3 call's errno (s3.h; a 5xx -EIO is returned as -EREMOTEIO, so that the
 * caller does not take it for a local disk's), or the temp file's (-ENOSPC, ...), -EINVAL
 * for BYTES 0. */
int tv_under_read_block(struct tv_under_reader *r, uint64_t segment_id, uint64_t oldest_ts_ns,
			uint64_t block_id, uint64_t bytes, int dir_fd, int *fd, char *err,
			size_t errlen);

/* One block the bucket must hold, for tv_under_check_segment. */
struct tv_under_object {
	uint64_t block_id, bytes;
};
/* Before eviction deletes a segment's only local copy: is the segment whole in the bucket?
 * One listing of its directory (tv_s3_list of the segment's key prefix): its manifest and
 * the N blocks' objects, each with its size. 0 when all are there; -ENOENT with err naming
 * the first missing or short object (a bucket lifecycle rule, or a delete behind the
 * server's back: the segment must not be evicted); or the listing's errno (S3 down: do not
 * evict now). On the caller's thread, like tv_under_read_block. */
int tv_under_check_segment(struct tv_under_reader *r, uint64_t segment_id,
			   uint64_t oldest_ts_ns, const struct tv_under_object *blocks, size_t n,
			   char *err, size_t errlen);

#endif
