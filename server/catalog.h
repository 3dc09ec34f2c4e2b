/* The SQLite catalog of committed blocks (data_dir/catalog.db): which block files exist, their
 * segment and time range, and which segment ids were ever used. A block is visible to queries
 * exactly when its row is committed; a segment id is used once for the life of the archive. */
#ifndef TV_CATALOG_H
#define TV_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/block.h"

/* Unsigned 64-bit values are stored as SQLite INTEGER (int64) with the same bit pattern.
 * Ids are only compared for equality, so any u64 round-trips. Timestamps are compared in SQL,
 * so the catalog accepts only ts_ns <= TV_CATALOG_MAX_TS_NS (2^63-1 ns is year 2262): the
 * writer rejects blocks beyond it and queries clamp their bounds to it. */
#define TV_CATALOG_MAX_TS_NS ((uint64_t)INT64_MAX)

struct tv_catalog_block {
	uint64_t block_id;
	uint64_t segment_id;
	uint64_t min_ts_ns;
	uint64_t max_ts_ns;
	uint32_t record_count;
	uint64_t bytes;        /* encoded block size = file size */
	int64_t committed_ns;  /* CLOCK_REALTIME at commit; filled in by commit_segment */
	struct tv_block_loss loss; /* from the block header (0 for version 1 blocks) */
};

struct tv_catalog;

/* Open (create) the catalog at path: WAL journal, synchronous=FULL. A catalog made before the
 * loss columns existed gets them added (value 0) on open. Returns 0 or a negative
 * errno with a reason in err. */
int tv_catalog_open(struct tv_catalog **out, const char *path, char *err, size_t errlen);
void tv_catalog_close(struct tv_catalog *c);

/*
 * Segment ids (PROTOCOL.md "Segment ids and who may delete"). Table segments:
 *   segment_id    INTEGER PRIMARY KEY   the id, as the u64 bit pattern
 *   state         TEXT   'committed' (its blocks are in blocks) or 'deleted' (a Delete with
 *                        its writer token removed it, or named it before it existed)
 *   writer_token  INTEGER the token of its OPEN_SEGMENT (or of the Delete); 0: unknown
 *   changed_ns    INTEGER CLOCK_REALTIME of the commit or the delete
 * Every segment_id of a blocks row has a row here: tv_catalog_open adds the missing ones as
 * 'committed' with token 0 (a catalog from before this table, or one rebuilt from block files
 * without it; tv_catalog_sync_segments does the same on demand). Token 0 matches no Delete, so
 * such a segment can be removed only by block ids. Segments being written are not in the
 * table but in memory (tv_catalog_segment_open), so an open costs no transaction.
 */

/* Reserve segment_id for one Write stream, with the writer_token of its OPEN_SEGMENT (0 when the
 * writer sent none). -EEXIST with the reason in err when the id was committed, deleted, or is
 * open on another stream; -EIO on SQLite errors; -ENOMEM. Released by tv_catalog_segment_close
 * (the stream ended) or passed on by tv_catalog_commit_segment. */
int tv_catalog_segment_open(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			    char *err, size_t errlen);
void tv_catalog_segment_close(struct tv_catalog *c, uint64_t segment_id);

/* May a Delete with writer_token remove segment_id? 0 when the id is unknown or its token (of
 * the row, or of the stream that has it open) equals writer_token != 0; -EPERM with the reason
 * in err when the segment belongs to another writer (or its token is unknown); -EIO. */
int tv_catalog_segment_may_delete(struct tv_catalog *c, uint64_t segment_id,
				  uint64_t writer_token, char *err, size_t errlen);

/* Add a 'committed' row with token 0 for every segment_id in blocks that segments lacks. */
int tv_catalog_sync_segments(struct tv_catalog *c);

/* Insert the n blocks of segment_id (each blocks[i].segment_id equal to it) and its segments
 * row ('committed', writer_token) in one transaction: either every row is committed or none is.
 * -EEXIST when a block id or the segment id is already present (nothing inserted), -ERANGE for
 * a ts_ns above TV_CATALOG_MAX_TS_NS, -EINVAL for a block of another segment, -EIO on SQLite
 * errors. */
int tv_catalog_commit_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen);
/* 1 when block_id is committed, 0 when not, negative errno on error. */
int tv_catalog_contains(struct tv_catalog *c, uint64_t block_id);

/* Call cb for every block overlapping [from_ns, to_ns), i.e. min_ts_ns < to_ns and
 * max_ts_ns >= from_ns, ordered by min_ts_ns then block_id. Bounds above TV_CATALOG_MAX_TS_NS
 * are clamped (a to_ns above it means "no upper bound"). Stops when cb returns non-zero and
 * returns that value. */
typedef int (*tv_catalog_block_cb)(const struct tv_catalog_block *b, void *arg);
int tv_catalog_overlap(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		       tv_catalog_block_cb cb, void *arg);
/* Sums over the committed blocks overlapping [from_ns, to_ns) (tv_catalog_overlap's rule). */
struct tv_catalog_stats {
	uint64_t blocks, records;
	uint64_t bytes;            /* encoded block bytes as stored */
	struct tv_block_loss loss; /* the blocks' header loss counters, summed */
};
/* Fill *st from catalog rows only (no block is read): the Stats rpc. 0 or a negative errno. */
int tv_catalog_stats(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		     struct tv_catalog_stats *st);

/* Every committed block, in block_id order (recovery). */
int tv_catalog_list(struct tv_catalog *c, tv_catalog_block_cb cb, void *arg);

/* Delete rows in one transaction. *ids (malloc'd, caller frees, may be NULL when *n == 0) gets
 * the ids actually deleted, so the caller can remove exactly those files. delete_segment also
 * marks the segment 'deleted' (writer_token kept; an unknown id gets the row, so it cannot be
 * opened later) unless writer_token is 0; the caller asked tv_catalog_segment_may_delete. */
int tv_catalog_delete_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      uint64_t **ids, size_t *n);
int tv_catalog_delete_ids(struct tv_catalog *c, const uint64_t *block_ids, size_t count,
			  uint64_t **ids, size_t *n);

#endif
