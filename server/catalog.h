/* The SQLite catalog of committed blocks (data_dir/catalog.db): which block files exist, their
 * segment and time range, and which segment ids were ever used. A block is visible to queries
 * exactly when its row is committed; a segment id is used once for the life of the archive.
 * It is an index of blocks/, not the data: every field of a blocks row is in the block file's
 * header or name, so recovery (server/recovery.c) can rebuild it from the block files. */
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
	/* the header's raw_bytes (payload after decompression); 0 in a row read before start-up
	 * filled it in (tv_catalog_raw_unknown) */
	uint64_t raw_bytes;
};

struct tv_catalog;

/* The catalog file's name in the data dir; SQLite keeps NAME-wal and NAME-shm beside it. */
#define TV_CATALOG_FILE "catalog.db"
/* PRAGMA application_id of a tracevault catalog ("TVCT"): a SQLite file with another non-zero
 * id belongs to another program. Catalogs made before it was set have 0 and get it on open. */
#define TV_CATALOG_APPLICATION_ID 0x54564354

/* Open (create) the catalog at path: WAL journal, synchronous=FULL. Before it changes anything
 * it checks that the file is one: a regular file (a symlink is not followed), a SQLite
 * database, ours (application id, or none and a blocks table), with the columns it reads, and
 * that PRAGMA quick_check finds no damage. A catalog made before the loss columns existed gets
 * them added (value 0). Returns 0, or a negative errno with a reason in err:
 *   -EUCLEAN  the file is not a usable catalog (not a regular file, not a database, another
 *             program's, a schema we do not read, damaged): the caller moves it aside and
 *             opens a new one (server/RECOVERY.md); nothing was written to it
 *   other     the file could not be read or written (-EIO, -EBUSY, -EROFS, -ENOSPC, -ENOMEM):
 *             it may be fine, so it is not moved */
int tv_catalog_open(struct tv_catalog **out, const char *path, char *err, size_t errlen);
void tv_catalog_close(struct tv_catalog *c);
/* 1 when tv_catalog_open created the blocks table (a new or empty file), else 0. */
int tv_catalog_is_new(const struct tv_catalog *c);

/*
 * Segment ids (PROTOCOL.md "Segment ids and who may delete"). Table segments:
 *   segment_id    INTEGER PRIMARY KEY   the id, as the u64 bit pattern
 *   state         TEXT   'committed' (its blocks are in blocks) or 'deleted' (a Delete with
 *                        its writer token removed it, or named it before it existed)
 *   writer_token  INTEGER the token of its OPEN_SEGMENT (or of the Delete); 0: unknown
 *   changed_ns    INTEGER CLOCK_REALTIME of the commit or the delete
 * Every segment_id of a blocks row has a row here: tv_catalog_open adds them as 'committed'
 * with token 0 to a catalog from before this table, tv_catalog_adopt to the segments of the
 * block files it adds (a rebuild). Token 0 matches no Delete, so
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

/* Insert the n blocks of segment_id (each blocks[i].segment_id equal to it) and its segments
 * row ('committed', writer_token) in one transaction: either every row is committed or none is.
 * Each block's committed_ns is set to now. Errors (nothing inserted, a reason in err): -EEXIST
 * when a block id or the segment id is already present, -ERANGE for a ts_ns above
 * TV_CATALOG_MAX_TS_NS, -EINVAL for segment id 0 (reserved: blocks of an unknown segment) or a
 * block of another segment, -ENOSPC when the disk is full, or the errno of another SQLite
 * failure (catalog.c's table). */
int tv_catalog_commit_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen);
/* Group commit (server/segment.c): the rows of several segments in ONE transaction, so one
 * WAL fsync makes them all durable. tv_catalog_group_begin opens it (BEGIN IMMEDIATE; -EIO,
 * -ENOSPC, ... with a reason in err). tv_catalog_group_add inserts one segment as
 * tv_catalog_commit_segment does, inside a savepoint: on its own failure (same errors) only
 * its rows are rolled back and the others stay in the transaction. tv_catalog_group_commit
 * commits every added segment at once, or on failure rolls them all back (a reason in err):
 * nothing of the group is then in the catalog. tv_catalog_group_rollback abandons the group. */
int tv_catalog_group_begin(struct tv_catalog *c, char *err, size_t errlen);
int tv_catalog_group_add(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			 struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen);
int tv_catalog_group_commit(struct tv_catalog *c, char *err, size_t errlen);
void tv_catalog_group_rollback(struct tv_catalog *c);
/* Recovery's insert of block files the catalog did not list: like tv_catalog_commit_segment
 * (one transaction, same errors) but each row keeps the committed_ns it has, blocks may be of
 * several segments, and each segment without a segments row gets one (token 0). */
int tv_catalog_adopt(struct tv_catalog *c, const struct tv_catalog_block *blocks, size_t n,
		     char *err, size_t errlen);
/* 1 when block_id is committed, 0 when not, negative errno on error. */
int tv_catalog_contains(struct tv_catalog *c, uint64_t block_id);
/* Fill *b with block_id's row: 1 when found, 0 when not, negative errno on error. */
int tv_catalog_get(struct tv_catalog *c, uint64_t block_id, struct tv_catalog_block *b);
/* Repair a row from what the block file says: its segment_id from the file name (recovery), or
 * every header field (scrub). 0, -ENOENT when block_id has no row, or a negative errno. */
int tv_catalog_set_segment(struct tv_catalog *c, uint64_t block_id, uint64_t segment_id);
int tv_catalog_replace(struct tv_catalog *c, const struct tv_catalog_block *b);
/* Number of committed blocks. 0 or a negative errno. */
int tv_catalog_count(struct tv_catalog *c, uint64_t *n);

/* Call cb for every block overlapping [from_ns, to_ns), i.e. min_ts_ns < to_ns and
 * max_ts_ns >= from_ns, ordered by min_ts_ns then block_id. Bounds above TV_CATALOG_MAX_TS_NS
 * are clamped (a to_ns above it means "no upper bound"). Stops when cb returns non-zero and
 * returns that value. */
typedef int (*tv_catalog_block_cb)(const struct tv_catalog_block *b, void *arg);
int tv_catalog_overlap(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		       tv_catalog_block_cb cb, void *arg);
/* Rows whose raw_bytes is not known (made before the column existed), in block_id order, for
 * start-up to read from the block headers (server/raw_backfill.h). Stops like
 * tv_catalog_overlap. tv_catalog_set_raw_bytes sets them in one transaction (rows that no
 * longer exist are skipped): 0 or a negative errno (nothing set). */
int tv_catalog_raw_unknown(struct tv_catalog *c, tv_catalog_block_cb cb, void *arg);
struct tv_catalog_raw {
	uint64_t block_id, raw_bytes;
};
int tv_catalog_set_raw_bytes(struct tv_catalog *c, const struct tv_catalog_raw *v, size_t n);
/* Sums over the committed blocks overlapping [from_ns, to_ns) (tv_catalog_overlap's rule). */
struct tv_catalog_stats {
	uint64_t blocks, records;
	uint64_t bytes;            /* encoded block bytes as stored */
	uint64_t raw_bytes;        /* their headers' raw_bytes: the records' bytes uncompressed */
	struct tv_block_loss loss; /* the blocks' header loss counters, summed */
};
/* Fill *st from catalog rows only (no block is read): the Stats rpc. 0 or a negative errno. */
int tv_catalog_stats(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		     struct tv_catalog_stats *st);

/* Every committed block, in block_id order (as int64: the order matters to no caller). */
int tv_catalog_list(struct tv_catalog *c, tv_catalog_block_cb cb, void *arg);
/* The committed blocks of one segment, in block_id order. Stops like tv_catalog_overlap. */
int tv_catalog_segment_blocks(struct tv_catalog *c, uint64_t segment_id, tv_catalog_block_cb cb,
			      void *arg);

/* Delete the rows of block_ids in one transaction. *ids (malloc'd, caller frees, may be NULL
 * when *n == 0) gets the ids actually deleted (ids without a row are skipped). 0 or a negative
 * errno (nothing deleted). tv_catalog_delete_segment does the same and, in that transaction,
 * marks segment_id 'deleted' (writer_token kept; an unknown id gets the row, so it cannot be
 * opened later) unless writer_token is 0; the caller asked tv_catalog_segment_may_delete. */
int tv_catalog_delete_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      const uint64_t *block_ids, size_t count, uint64_t **ids, size_t *n);
int tv_catalog_delete_ids(struct tv_catalog *c, const uint64_t *block_ids, size_t count,
			  uint64_t **ids, size_t *n);

/*
 * Retiring segments: a retention pass (server/retention.h) or a Delete of a segment removes a
 * segment whole, never part of it, even when tracevaultd is killed in the middle
 * (server/RECOVERY.md "Retention and segment Delete"). Table retiring:
 *   segment_id  INTEGER PRIMARY KEY  a segment whose rows are gone and whose block files may
 *                                    still be in blocks/ (or tmp/)
 *   at_ns       INTEGER              CLOCK_REALTIME of the transaction that retired it
 * tv_catalog_retire is the commit point (T1): in one transaction the retiring row, the
 * removal of every blocks row of the segment, and its segments row marked 'deleted'. The
 * caller then unlinks the files (U) and calls tv_catalog_retired (T2); start-up finishes what
 * a crash left between T1 and T2 (recovery.c). An older tracevaultd ignores the table.
 */
/* A committed segment: its newest record time (MAX of its blocks' max_ts_ns: the segment's
 * age), its bytes (the sum of its block files' sizes) and its block count. */
struct tv_catalog_segment {
	uint64_t segment_id, newest_ts_ns, bytes, blocks;
};
typedef int (*tv_catalog_segment_cb)(const struct tv_catalog_segment *seg, void *arg);
/* Every committed segment, oldest first: by newest_ts_ns, then segment_id. Stops when cb
 * returns non-zero and returns that value; else 0 or a negative errno. Walks the index
 * blocks_by_age (max_ts_ns, segment_id, bytes) only as far as the segments it yields (plus
 * the older blocks of segments still incomplete there), with one lookup by the segment index
 * per segment: a retention pass that stops early reads little whatever the catalog's size. */
int tv_catalog_segments_by_age(struct tv_catalog *c, tv_catalog_segment_cb cb, void *arg);
/* The number of committed blocks and the sum of their bytes, from the totals row that
 * triggers keep with every change of the blocks table (O(1)). 0 or a negative errno. */
int tv_catalog_size(struct tv_catalog *c, uint64_t *blocks, uint64_t *bytes);
/* T1 for segment_ids[0..n) in ONE transaction: each gets a retiring row, loses all its blocks
 * rows (cb is called for each, with its block id, bytes and oldest record time: the files to
 * unlink, and the under-store's keys, server/under/persist.h), a segment in the bucket (an
 * under_persisted row, or a 'queued' one) gets a 'deleting' journal row and loses its
 * under_persisted row (the journal, below), and its segments row becomes 'deleted' (with
 * writer_token when it had none; a known token is kept).
 * The same transaction drops the retiring rows of done[0..ndone) (an earlier T2, folded in to
 * save its WAL fsync). A non-zero return of cb, or a SQLite failure, rolls everything back and
 * is returned (then nothing changed, whatever cb saw). 0 when committed. */
typedef int (*tv_catalog_retired_cb)(uint64_t segment_id, uint64_t block_id, uint64_t bytes,
				     uint64_t min_ts_ns, void *arg);
int tv_catalog_retire(struct tv_catalog *c, const uint64_t *segment_ids, size_t n,
		      uint64_t writer_token, const uint64_t *done, size_t ndone,
		      tv_catalog_retired_cb cb, void *arg);
/* T2: drop the retiring rows of segment_ids[0..n) (their files are unlinked and blocks/ is
 * synced), one transaction. 0 or a negative errno (the rows stay: start-up removes them). */
int tv_catalog_retired(struct tv_catalog *c, const uint64_t *segment_ids, size_t n);
/* The segment ids with a retiring row, ascending: *ids malloc'd (caller frees; NULL when
 * *n == 0). 0 or a negative errno. */
int tv_catalog_retiring(struct tv_catalog *c, uint64_t **ids, size_t *n);

/*
 * Trace-id filters. Table trace_filters (block_id INTEGER PRIMARY KEY, bloom BLOB NOT NULL)
 * holds copies of version 3 blocks' trace-id filters (proto/BLOCK.md), so that a query for
 * trace ids tests a block without opening its file. It is a cache, not a part of the archive:
 * COMMIT stores each version 3 block's copy in the transaction of its row (segment.c reads it
 * back from the checked file), and a query that reads a block's own filter (CRC checked: a
 * block committed before copies were taken at COMMIT) stores it here; a missing row only
 * means the file is read (so a lost, rebuilt or older catalog gives the same answers, only
 * slower); a row goes with its blocks row (a trigger); --scrub drops a copy that differs from
 * its block's filter (server/scrub.c). Versions 1 and 2 have no filter and no row.
 */

/* Whether block_id may hold a record with one of the n trace ids (32 bytes each, stride bytes
 * apart, ASCII case does not matter), from the catalog's copy of its filter: 1 maybe, 0
 * certainly not; -ENOENT when there is no copy, -EUCLEAN when the copy is not a filter, or
 * another negative errno (SQLite failed): the caller reads the block's own filter then. Reads
 * only the 32 bytes of each id's filter block. Keeps a read open on the catalog until
 * tv_catalog_trace_filter_release: call it before the server's thread does other work. */
int tv_catalog_trace_filter_test(struct tv_catalog *c, uint64_t block_id, const char *ids,
				 size_t n, size_t stride);
void tv_catalog_trace_filter_release(struct tv_catalog *c);
/* Store a copy of block_id's filter (bloom of bytes bytes, a multiple of 32 up to
 * TV_BLOCK_V3_MAX_BLOOM_BYTES; 0: no traced record) read and checked from its file. Nothing
 * is stored when block_id has no blocks row. Not synced (a copy lost to a crash is read
 * again). Returns 0, -EINVAL (bytes), -EBUSY (a transaction is open on the catalog: try
 * another time), or the SQLite failure's errno (catalog.c's table). */
int tv_catalog_trace_filter_put(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				size_t bytes);
/* COMMIT: store block_id's filter copy (as tv_catalog_trace_filter_put: bloom of bytes bytes,
 * read back from its checked file) inside the open group transaction (tv_catalog_group_begin),
 * after tv_catalog_group_add put block_id's row in, so that the copy is durable with the row
 * at the group's COMMIT and the first query after a put reads no block file's filter. Nothing
 * is stored when block_id has no blocks row. Returns 0, -EINVAL (bytes), -EIO (no group
 * transaction open), or the SQLite failure's errno: the commit goes on without the copy (the
 * first query reads the block's own filter and copies it), unless SQLite rolled the whole
 * transaction back, which tv_catalog_group_commit reports. */
int tv_catalog_group_add_filter(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				size_t bytes);
/* --scrub: compare block_id's copy with the filter read from its verified file (bloom of
 * bytes bytes): 0 when there is none or it is the same, 1 when it differed and was dropped
 * (the next query copies it again), or the SQLite failure's errno. */
int tv_catalog_trace_filter_check(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				  size_t bytes);
/* Drop block_id's copy (none: 0 too). 0 or the SQLite failure's errno. */
int tv_catalog_trace_filter_drop(struct tv_catalog *c, uint64_t block_id);

/*
 * Eviction and read-back of the under-store (server/under/UNDERSTORE.md "Catalog state",
 * "Eviction"): the rows of table under_persisted. One block, so that the helpers changing the
 * catalog at once merge easily.
 */
/* Read-back: 1 with *oldest_ts_ns and *evicted (0 or 1) when segment_id has an
 * under_persisted row, 0 when it has none (never persisted: its files are only local), or a
 * negative errno (SQLite failed). */
int tv_catalog_under_state(struct tv_catalog *c, uint64_t segment_id, uint64_t *oldest_ts_ns,
			   int *evicted);
/* --local-bytes: the bytes of the committed blocks whose files are in blocks/, i.e. the
 * catalog's total (tv_catalog_size, O(1)) less the blocks of evicted segments (*evicted_bytes:
 * a SUM over those blocks' rows, O(evicted blocks)). 0 or a negative errno. */
int tv_catalog_local_bytes(struct tv_catalog *c, uint64_t *local_bytes,
			   uint64_t *evicted_bytes);
/* A segment that may be evicted: persisted (an under_persisted row, evicted 0) and with
 * blocks rows; its key's time, its newest record (the age order), bytes and blocks. */
struct tv_catalog_evictable {
	uint64_t segment_id, oldest_ts_ns, newest_ts_ns, bytes, blocks;
};
typedef int (*tv_catalog_evictable_cb)(const struct tv_catalog_evictable *seg, void *arg);
/* Every evictable segment, oldest first (newest_ts_ns, then segment_id, as retention's
 * order); unpersisted segments never appear. Stops when cb returns non-zero and returns that
 * value; else 0 or a negative errno. One GROUP BY over the persisted, not evicted segments'
 * blocks rows (the local ones). */
int tv_catalog_evictable(struct tv_catalog *c, tv_catalog_evictable_cb cb, void *arg);
/* Mark segment_ids[0..n) evicted, in ONE transaction (durable when it returns 0: before any
 * of their files is unlinked, so a crash never leaves a row without its file and without
 * the flag). A segment without a row, or evicted already, is left as it is. 0 or a negative
 * errno (nothing marked). */
int tv_catalog_mark_evicted(struct tv_catalog *c, const uint64_t *segment_ids, size_t n);

/* --recache: every block of segment_id has its file in blocks/ again (each fdatasync'd,
 * blocks/ fsynced): clear its evicted flag (one transaction), so that it counts as local and
 * may be evicted again. A segment without a row is left as it is. 0 or a negative errno. */
int tv_catalog_mark_cached(struct tv_catalog *c, uint64_t segment_id);

/*
 * ---- --rebuild-catalog from the under-store's bucket (server/bucket_rebuild.c,
 * server/under/rebuild.h; UNDERSTORE.md "Rebuild from the bucket") ----
 */
/* What tv_catalog_rebuild_add_segment did with one complete segment of the bucket. */
enum tv_catalog_rebuild_result {
	TV_CATALOG_REBUILD_ADDED,    /* its blocks rows, segments row ('committed', writer token
				      * 0) and under_persisted row (evicted 1) are in */
	TV_CATALOG_REBUILD_PRESENT,  /* the catalog had it with the same blocks (ids, sizes,
				      * times, counts): only an under_persisted row (evicted 0)
				      * was added where it had none */
	TV_CATALOG_REBUILD_DELETED,  /* its segments row is 'deleted': not brought back */
	TV_CATALOG_REBUILD_CONFLICT, /* its id is committed here with other blocks, or one of
				      * its block ids is another segment's: nothing changed */
};
/* Merge one segment of the bucket (SEGMENT_ID, the hour of OLDEST_TS_NS, its N BLOCKS with
 * every column but committed_ns filled in from the manifest and the headers) into the
 * catalog, in one transaction: never replaces or removes a row. Sets each block's
 * committed_ns to NOW_NS (the rebuild's time: the bucket does not keep the original commit's)
 * and may reorder BLOCKS. Returns an enum tv_catalog_rebuild_result (err says why for DELETED
 * and CONFLICT), or a negative errno with err: -EINVAL for segment id 0, no block or an
 * oldest_ts_ns beyond TV_CATALOG_MAX_TS_NS, -ERANGE for a block's ts_ns beyond it, else
 * SQLite's failure (catalog.c's table). */
int tv_catalog_rebuild_add_segment(struct tv_catalog *c, uint64_t segment_id,
				   uint64_t oldest_ts_ns, struct tv_catalog_block *blocks,
				   size_t n, int64_t now_ns, char *err, size_t errlen);

/*
 * The under-store's journal (server/under/UNDERSTORE.md "Catalog state"): the tables
 * under_pending (segments that may have objects in the bucket the catalog does not account
 * for) and under_persisted (segments whose manifest is in the bucket). The journal is written
 * before any S3 work starts and its row deleted once the S3 side is settled, so a start-up
 * after a crash knows every segment whose objects it must delete or upload again.
 */
/* A journal row's state (under_pending.state). */
enum tv_under_pending {
	TV_UNDER_UPLOADING, /* cache-through, not committed: start-up deletes its objects */
	TV_UNDER_QUEUED,    /* async-through, committed locally, not yet in the bucket: start-up
			     * queues it again */
	TV_UNDER_DELETING,  /* removed locally (or never acknowledged), the S3 delete not yet
			     * confirmed: start-up deletes its objects */
};
/* Put segment_id's journal row (oldest_ts_ns: the keys' hour, tv_persist_key), replacing
 * one it has, at CLOCK_REALTIME now: its own transaction (one WAL fsync), or part of the
 * open one. 0 or the SQLite failure's errno. */
int tv_catalog_under_pending_put(struct tv_catalog *c, uint64_t segment_id,
				 uint64_t oldest_ts_ns, enum tv_under_pending state);
/* The S3 delete of segment_id is confirmed: drop its row if it is 'uploading' or 'deleting'
 * and was written at or before since_ns (CLOCK_REALTIME; a later row is a later attempt of the
 * same segment id, which that delete did not cover); a 'queued' row stays (it is settled by
 * tv_catalog_under_persisted). 0 or the errno. */
int tv_catalog_under_settled(struct tv_catalog *c, uint64_t segment_id, int64_t since_ns);
/* Drop segment_id's journal row whatever its state (a 'queued' row whose segment has no
 * blocks rows left). 0 or the errno. */
int tv_catalog_under_pending_drop(struct tv_catalog *c, uint64_t segment_id);
/* segment_id is not (or no longer) whole in the bucket (eviction's check found an object
 * missing): drop its under_persisted row unless it is evicted, so that it is never evicted
 * and stays local only. 0 or the errno. */
int tv_catalog_under_unpersist(struct tv_catalog *c, uint64_t segment_id);
/* In the open group transaction (tv_catalog_group_begin), after segment_id's rows: its
 * journal row goes, and with queued 0 (cache-through: the manifest is in the bucket) its
 * under_persisted row (evicted 0) comes in, with queued 1 (async-through) its 'queued' row.
 * 0, -EIO (no group transaction open), or the SQLite failure's errno (with err): the caller
 * rolls the group back. */
int tv_catalog_group_add_under(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns,
			       int queued, char *err, size_t errlen);
/* async-through: segment_id's manifest is in the bucket. One transaction: its 'queued' row
 * goes and its under_persisted row (evicted 0) comes in. Returns 1 when done, 0 when it had
 * no 'queued' row (deleted meanwhile: its row is 'deleting', or it is gone; nothing
 * changed), or the SQLite failure's errno. */
int tv_catalog_under_persisted(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns);
/* segment_id's objects are to be deleted from the bucket (a cache-through segment given up
 * after its manifest was written): one transaction, its row becomes 'deleting' and its
 * under_persisted row goes. 0 or the errno. */
int tv_catalog_under_deleting(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns);
/* Every journal row, by segment_id: cb(segment_id, oldest_ts_ns, state, at_ns, arg); stops
 * when cb returns non-zero and returns it; else 0 or the errno. The rows are read into
 * memory first, so cb may change the tables. */
typedef int (*tv_catalog_pending_cb)(uint64_t segment_id, uint64_t oldest_ts_ns,
				     enum tv_under_pending state, int64_t at_ns, void *arg);
int tv_catalog_under_pending_list(struct tv_catalog *c, tv_catalog_pending_cb cb, void *arg);
/* The number of under_pending and under_persisted rows (the tests, and logs). 0 or errno. */
int tv_catalog_under_counts(struct tv_catalog *c, uint64_t *pending, uint64_t *persisted);

#endif
