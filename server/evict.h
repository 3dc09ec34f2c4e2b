/* Local eviction of persisted segments and read-back of their blocks from the under-store
 * (tracevaultd --local-bytes; issue 14, server/under/UNDERSTORE.md "Eviction and read-back").
 *
 * Eviction: when the committed block files still in blocks/ add up to more than --local-bytes,
 * a pass evicts persisted segments (an under_persisted row, evicted 0: their manifest is in the
 * bucket) oldest first (by newest record, as retention) until they are at most the low-water
 * mark (TV_EVICT_LOW_WATER_DIV, as --retain-bytes). For each pass, in this order:
 *   E1  one catalog transaction marks the segments evicted (tv_catalog_mark_evicted): from
 *       here a query that does not find a block's file reads it from S3;
 *   E2  their block files are unlinked from blocks/ (not synced: a file a crash brings back
 *       is only disk used twice, its row still says evicted and a query reads the local file).
 * So a crash never leaves a row pointing at a missing file without the evicted flag.
 * Unpersisted segments are never evicted: with them alone above the limit nothing happens.
 * A query that opened a block keeps reading it (an open file outlives its unlink); one that
 * planned before E1 and opens after E2 reads the block from S3: no grace is needed.
 *
 * Read-back (tv_evict_open_block, for query.c and summary_scan.c): a block whose file is not
 * in blocks/ and whose segment is evicted is fetched whole into an anonymous temp file in
 * tmp/ (server/under/read.h) and read from there like its own file; on the server's thread.
 *
 * Runs on the server's one thread: after each commit group (cheap: the catalog's O(1) total
 * first) and once at start. */
#ifndef TV_SERVER_EVICT_H
#define TV_SERVER_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "server/catalog.h"
#include "server/store_uring.h"
#include "under/read.h"

/* --local-bytes SIZE: 1 to TV_EVICT_MAX_BYTES (2^50, as --retain-bytes); off by default. */
#define TV_EVICT_MAX_BYTES (1ull << 50)
extern const struct tv_limit tv_evict_local_bytes_limit; /* bytes */
/* A pass evicts down to the limit minus 1/TV_EVICT_LOW_WATER_DIV of it, as retention's
 * TV_RETENTION_LOW_WATER_DIV and for the same reason: a pass costs a catalog transaction and
 * the unlinks, so it should not follow every commit group once the limit is met. */
#define TV_EVICT_LOW_WATER_DIV 64
/* The most segments one pass evicts (one E1 transaction, their unlinks on the loop): bounds
 * the loop's time away from gRPC; the next commit group runs the next pass. */
#define TV_EVICT_PASS_MAX_SEGMENTS 256

/* What eviction and read-back count (tracevault_server_under_evicted_*_total and
 * tracevault_server_under_read*_total): main's, zero without --under. */
struct tv_evict_stats {
	uint64_t evicted_segments, evicted_bytes;
	/* picked, but not whole in the bucket (an object missing): kept local, no longer
	 * counted as persisted */
	uint64_t missing_segments;
	uint64_t recached_blocks, recached_segments; /* --recache */
	struct tv_under_read_stats read;
};

struct tv_evict_opts {
	uint64_t local_bytes;            /* 0: no eviction (read-back still works) */
	struct tv_under_reader *reader;  /* NULL without --under: an evicted block then fails */
	struct tv_evict_stats *stats;    /* the caller's, outlives the state */
	/* --recache: a block read back is linked into blocks/ (fdatasync'd first, blocks/
	 * fsynced after); once every block of its segment is local again, the segment's evicted
	 * flag is cleared (tv_catalog_mark_cached) and it counts as local bytes again (so the
	 * next pass above --local-bytes may evict it again: the pass goes by age, not by use) */
	bool recache;
};

struct tv_evict;

/* The eviction and read-back state of a server; c and s (and o->reader) must outlive it.
 * 0 or -ENOMEM (err set). Freed by tv_evict_free (NULL: no-op). */
int tv_evict_new(struct tv_evict **out, const struct tv_evict_opts *o, struct tv_catalog *c,
		 struct tv_store *s, char *err, size_t errlen);
void tv_evict_free(struct tv_evict *e);

/* A pass, when the local bytes are above --local-bytes (O(1) check of the catalog's total
 * first): E1 then E2 as above. Returns the segments evicted (0: nothing to do, or nothing
 * persisted to evict), or a negative errno (logged; nothing evicted when E1 failed). */
int tv_evict_pass(struct tv_evict *e);

/* Open block (segment_id, block_id) of bytes bytes for reading: its file in blocks/
 * (tv_store_open_block), or, when that is missing and its segment is evicted, its object read
 * back from S3 into a temp file. *fd (the caller closes it) and *size as tv_store_open_block
 * gives them. e may be NULL (only the local file). Returns 0; or a negative errno:
 * *remote 0: the local file's (tv_store_open_block's errors, the caller's usual handling);
 * *remote 1: the block is evicted and could not be read back: err (errlen bytes) says why,
 * naming the S3 request and what S3 said; the caller ends its call with it
 * (tv_status_from_errno: S3 unreachable or 5xx is UNAVAILABLE). With --recache the block
 * read back is then re-cached (see tv_evict_opts); a failure there is logged, the read goes
 * on from the temp file. */
int tv_evict_open_block(struct tv_evict *e, struct tv_store *s, uint64_t segment_id,
			uint64_t block_id, uint64_t bytes, int *fd, uint64_t *size, int *remote,
			char *err, size_t errlen);

#endif
