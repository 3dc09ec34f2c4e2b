/* Retention (tracevaultd --retain-time, --retain-bytes) and the removal of whole segments it
 * shares with a Delete of a segment. The unit is the segment, never part of one: a pass
 * removes the oldest segments (by their newest record, then id) whose newest record is older
 * than --retain-time (wall clock: a put of old data is removed at its commit), and, when the
 * archive's bytes are above --retain-bytes, the oldest ones until they are at most the
 * low-water mark (TV_RETENTION_LOW_WATER_DIV). Passes run on the server's one thread, after a
 * commit group that crossed the byte limit or committed data past the age limit, and every
 * --retain-interval; never inside a commit group.
 *
 * A segment goes in three steps (server/RECOVERY.md "Retention and segment Delete"):
 *   T1  one catalog transaction: a retiring row, its blocks rows gone, its id 'deleted'
 *       (tv_catalog_retire). The commit point: no new query lists its blocks.
 *   U   its files unlinked from blocks/ (made durable by the next fsync of blocks/: a commit
 *       group's, or one of the periodic check's, see retention.c). Deferred until every
 *       query planned before T1 has ended (such a query may still open them), at most
 *       --retain-query-grace: a query that opened a block reads it to the end (an open file
 *       outlives its unlink), one that had not yet opened it finds it too.
 *   T2  the retiring rows dropped once the unlinks are durable: in the next pass's T1
 *       transaction, or at the next --retain-interval check, or at exit; a Delete fsyncs
 *       blocks/ and drops its row at once. So a pass costs one WAL fsync, not three.
 * A kill anywhere leaves either the whole segment (before T1) or a retiring row whose files
 * start-up unlinks (tv_retention_recover): never part of a segment. */
#ifndef TV_SERVER_RETENTION_H
#define TV_SERVER_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "server/catalog.h"
#include "server/query.h"
#include "server/store_uring.h"
#include "under/persist.h"

/* Bounds of the options (tracevaultd --help states them; main.c checks it):
 *   --retain-time DURATION      1s to 36500d; off by default
 *   --retain-bytes SIZE         1 to 1048576G (2^50); off by default. Counts the committed
 *                               block files (the catalog's bytes); files waiting for a query
 *                               (U above) are not counted, so the disk may hold them beyond
 *                               it for up to --retain-query-grace
 *   --retain-interval DURATION  how often the age limit is checked when nothing is
 *                               committed, 100ms to 1d (default 10s)
 *   --retain-query-grace DURATION  how long U waits for older queries, 0 to 1d (default
 *                               10m); past it, such a query that had not opened a block finds
 *                               it gone (skipped, DATA_LOSS, never quarantined) */
#define TV_RETENTION_MIN_TIME_NS (1000000000ull)
#define TV_RETENTION_MAX_TIME_NS (36500ull * 86400 * 1000000000ull)
#define TV_RETENTION_MAX_BYTES (1ull << 50)
#define TV_RETENTION_DEFAULT_INTERVAL_NS (10ull * 1000000000ull)
#define TV_RETENTION_MIN_INTERVAL_NS (100ull * 1000000ull)
#define TV_RETENTION_MAX_INTERVAL_NS (86400ull * 1000000000ull)
#define TV_RETENTION_DEFAULT_GRACE_NS (600ull * 1000000000ull)
#define TV_RETENTION_MAX_GRACE_NS (86400ull * 1000000000ull)
extern const struct tv_limit tv_retention_time_limit;     /* ns */
extern const struct tv_limit tv_retention_bytes_limit;    /* bytes */
extern const struct tv_limit tv_retention_interval_limit; /* ns */
extern const struct tv_limit tv_retention_grace_limit;    /* ns */
/* A pass over --retain-bytes removes down to the limit minus 1/TV_RETENTION_LOW_WATER_DIV of
 * it, not just below the limit: a pass costs two catalog transactions and a directory fsync,
 * as much as a commit group, and with the limit just met every commit group would run one.
 * Measured (bench/commit.sh, 64 KiB segments, --retain-bytes 8M, a pass after every commit):
 * 1 writer 87 -> 32 commits/s, p50 6.4 -> 12.1 ms. With 1/64, a pass follows every
 * limit/64 bytes committed. The limit met exactly keeps everything. */
#define TV_RETENTION_LOW_WATER_DIV 64
/* The most segments one pass retires (one T1 transaction): bounds the loop's time away from
 * gRPC; a pass that hit it is followed by another at the next loop turn. */
#define TV_RETENTION_PASS_MAX_SEGMENTS 256
/* U unlinks at most this many files per turn of the server's loop (the rest at the next
 * turns, the loop not blocking in gRPC meanwhile): an unlink took ~2 ms on this project's
 * busy VM, so a pass of 256 segments held the loop 0.6 s in one piece. */
#define TV_RETENTION_UNLINKS_PER_TURN 16
/* --test-retention-unlink-delay-ms (tests only: makes a kill -9 land inside U), at most: */
#define TV_RETENTION_MAX_TEST_DELAY_MS 10000
extern const struct tv_limit tv_retention_test_delay_limit; /* ms */

struct tv_retention_opts {
	uint64_t time_ns;       /* 0: no age limit */
	uint64_t bytes;         /* 0: no size limit */
	uint64_t interval_ns;   /* 0: TV_RETENTION_DEFAULT_INTERVAL_NS */
	uint64_t grace_ns;      /* used as given (0: U does not wait for queries) */
	uint64_t test_unlink_delay_ms; /* sleep before each unlink of U (tests only), 0: none */
};

struct tv_retention;

/* Create the retention state of a server (also when no limit is set: a Delete of a segment
 * uses it). c, s and pool must outlive it. Reads the catalog's size. 0 or a negative errno
 * with a reason in err. */
int tv_retention_new(struct tv_retention **out, const struct tv_retention_opts *o,
		     struct tv_catalog *c, struct tv_store *s, struct tv_query_pool *pool,
		     char *err, size_t errlen);
/* Unlink what still waits (the caller has ended every query) and free. NULL is a no-op. */
void tv_retention_free(struct tv_retention *r);
/* The under-store (NULL: none), which must outlive r: a segment removed by a pass or a Delete
 * is then deleted from S3 as well, after T1 (tv_persist_delete_segment). */
void tv_retention_set_under(struct tv_retention *r, struct tv_persist *under);
/* What retention passes removed so far (segments, blocks, block bytes; a Delete call's removal
 * is not counted here), for the metrics endpoint: valid until tv_retention_free, read with
 * tv_metric_get (common/metrics.h) from any thread. */
void tv_retention_counters(const struct tv_retention *r, const uint64_t **segments,
			   const uint64_t **blocks, const uint64_t **bytes);

/* After a commit group that committed segments: the oldest newest-record time among them.
 * O(1) (the catalog's totals row, and the oldest kept segment's age from the last pass)
 * unless a limit is now crossed: then a pass runs. */
void tv_retention_committed(struct tv_retention *r, uint64_t oldest_ts_ns);
/* The server's loop, every turn: runs a pass when one is due (--retain-interval, or another
 * after a pass that hit TV_RETENTION_PASS_MAX_SEGMENTS) and the U+T2 of retired segments
 * whose older queries have ended or whose grace is over. Cheap when nothing is due. */
void tv_retention_tick(struct tv_retention *r);
/* 1 when the last pass hit TV_RETENTION_PASS_MAX_SEGMENTS (the next one is due at once) or
 * U has files left (TV_RETENTION_UNLINKS_PER_TURN): the loop then does not block in gRPC
 * before its next tv_retention_tick. */
int tv_retention_due(const struct tv_retention *r);

/* Run a pass now (tests; the loop uses the calls above). Returns the segments retired, or a
 * negative errno (logged). */
int tv_retention_pass(struct tv_retention *r);

/* A Delete of a whole segment with its writer's token (server/delete_rpc.c): T1, then U and
 * T2 at once (not deferred: a Delete is answered when the files are gone). *blocks gets the
 * blocks rows removed. Returns 0; a negative errno of T1 (nothing changed; reason in msg);
 * or, after T1, the errno of an unlink that failed (rows gone, the files go at the next
 * start; reason in msg). */
int tv_retention_delete_segment(struct tv_retention *r, uint64_t segment_id,
				uint64_t writer_token, uint64_t *blocks, char *msg, size_t msglen);

/* Start-up (recovery.c, step 8a of RECOVERY.md): for every retiring row, unlink the files of
 * its segment in blocks/ and tmp/, drop any blocks row of it left, fsync both directories,
 * then drop the retiring rows. *segments and *files get the counts. 0 or a negative errno
 * (a reason in err; the caller refuses to start, nothing that was not retired is touched). */
int tv_retention_recover(struct tv_catalog *c, struct tv_store *s, uint64_t *segments,
			 uint64_t *files, char *err, size_t errlen);

#endif
