/* The SQLite catalog of committed blocks (data_dir/catalog.db): which block files exist, their
 * segment and time range. A block is visible to queries exactly when its row is committed. */
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

/* Insert all n blocks in one transaction: either every row is committed or none is.
 * -EEXIST when a block id is already present (nothing inserted), -EIO on SQLite errors. */
int tv_catalog_commit_segment(struct tv_catalog *c, struct tv_catalog_block *blocks, size_t n,
			      char *err, size_t errlen);
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
 * the ids actually deleted, so the caller can remove exactly those files. */
int tv_catalog_delete_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t **ids,
			      size_t *n);
int tv_catalog_delete_ids(struct tv_catalog *c, const uint64_t *block_ids, size_t count,
			  uint64_t **ids, size_t *n);

#endif
