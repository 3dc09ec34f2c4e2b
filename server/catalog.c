/* SQLite catalog of committed blocks. One connection, used from the server's single rpc thread;
 * every change is one transaction so a segment becomes visible (or disappears) atomically. */
#include "server/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "common/clock.h"

/* Kept across restarts; the overlap index leads with min_ts_ns so the range scan stops at
 * to_ns and rows come out already ordered for the merge. */
static const char SCHEMA_SQL[] =
	"CREATE TABLE IF NOT EXISTS blocks ("
	" block_id INTEGER PRIMARY KEY,"
	" segment_id INTEGER NOT NULL,"
	" min_ts_ns INTEGER NOT NULL,"
	" max_ts_ns INTEGER NOT NULL,"
	" record_count INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL,"
	" committed_ns INTEGER NOT NULL,"
	" lost_ring_full INTEGER NOT NULL DEFAULT 0,"
	" lost_map_full INTEGER NOT NULL DEFAULT 0,"
	" lost_parser INTEGER NOT NULL DEFAULT 0,"
	" lost_cache INTEGER NOT NULL DEFAULT 0,"
	" lost_failed INTEGER NOT NULL DEFAULT 0,"
	" lost_requests INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS blocks_by_time ON blocks(min_ts_ns, max_ts_ns);"
	"CREATE INDEX IF NOT EXISTS blocks_by_segment ON blocks(segment_id);";

#define COLS "block_id, segment_id, min_ts_ns, max_ts_ns, record_count, bytes, committed_ns," \
	" lost_ring_full, lost_map_full, lost_parser, lost_cache, lost_failed, lost_requests"

/* Columns added after the first schema, with what an older catalog gets: ALTER TABLE ADD
 * COLUMN on open when missing (blocks committed before them recorded no loss). */
static const char *const ADDED_COLS[] = { "lost_ring_full", "lost_map_full", "lost_parser",
					  "lost_cache", "lost_failed", "lost_requests" };

struct tv_catalog {
	sqlite3 *db;
	sqlite3_stmt *insert, *contains, *overlap, *overlap_open, *list, *by_segment, *del_id;
};

static int exec(struct tv_catalog *c, const char *sql)
{
	return sqlite3_exec(c->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

/* Add each of ADDED_COLS that the blocks table lacks. */
static int migrate(struct tv_catalog *c)
{
	char sql[160];

	for (size_t i = 0; i < sizeof(ADDED_COLS) / sizeof(ADDED_COLS[0]); i++) {
		sqlite3_stmt *st;
		int rc, found = 0;

		snprintf(sql, sizeof(sql),
			 "SELECT 1 FROM pragma_table_info('blocks') WHERE name = '%s'",
			 ADDED_COLS[i]);
		if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
			return -EIO;
		rc = sqlite3_step(st);
		found = rc == SQLITE_ROW;
		sqlite3_finalize(st);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE)
			return -EIO;
		if (found)
			continue;
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE blocks ADD COLUMN %s INTEGER NOT NULL DEFAULT 0", ADDED_COLS[i]);
		if (exec(c, sql))
			return -EIO;
	}
	return 0;
}

static int prepare(struct tv_catalog *c, const char *sql, sqlite3_stmt **st)
{
	return sqlite3_prepare_v2(c->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : -EIO;
}

int tv_catalog_open(struct tv_catalog **out, const char *path, char *err, size_t errlen)
{
	struct tv_catalog *c;
	int ret = -EIO;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory opening catalog %s", path);
		return -ENOMEM;
	}
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "cannot open catalog %s: %s", path,
			 c->db ? sqlite3_errmsg(c->db) : "out of memory");
		goto fail;
	}
	/* WAL + FULL: a committed transaction survives power loss; readers never block the
	 * writer. A busy timeout covers a stray second process opening the file. */
	sqlite3_busy_timeout(c->db, 5000);
	if (exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;") ||
	    exec(c, SCHEMA_SQL) || migrate(c)) {
		snprintf(err, errlen, "cannot initialise catalog %s: %s", path,
			 sqlite3_errmsg(c->db));
		goto fail;
	}
	if (prepare(c, "INSERT INTO blocks (" COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
		       " ?8, ?9, ?10, ?11, ?12, ?13)",
		    &c->insert) ||
	    prepare(c, "SELECT 1 FROM blocks WHERE block_id = ?1", &c->contains) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE min_ts_ns < ?2 AND max_ts_ns >= ?1"
		       " ORDER BY min_ts_ns, block_id", &c->overlap) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE max_ts_ns >= ?1"
		       " ORDER BY min_ts_ns, block_id", &c->overlap_open) ||
	    prepare(c, "SELECT " COLS " FROM blocks ORDER BY block_id", &c->list) ||
	    prepare(c, "DELETE FROM blocks WHERE segment_id = ?1 RETURNING block_id",
		    &c->by_segment) ||
	    prepare(c, "DELETE FROM blocks WHERE block_id = ?1 RETURNING block_id", &c->del_id)) {
		snprintf(err, errlen, "cannot prepare catalog statements: %s",
			 sqlite3_errmsg(c->db));
		goto fail;
	}
	*out = c;
	return 0;
fail:
	tv_catalog_close(c);
	return ret;
}

void tv_catalog_close(struct tv_catalog *c)
{
	if (!c)
		return;
	sqlite3_finalize(c->insert);
	sqlite3_finalize(c->contains);
	sqlite3_finalize(c->overlap);
	sqlite3_finalize(c->overlap_open);
	sqlite3_finalize(c->list);
	sqlite3_finalize(c->by_segment);
	sqlite3_finalize(c->del_id);
	sqlite3_close(c->db);
	free(c);
}

int tv_catalog_commit_segment(struct tv_catalog *c, struct tv_catalog_block *blocks, size_t n,
			      char *err, size_t errlen)
{
	int64_t committed_ns = (int64_t)tv_realtime_ns();
	int ret = 0;

	if (exec(c, "BEGIN IMMEDIATE")) {
		snprintf(err, errlen, "catalog begin: %s", sqlite3_errmsg(c->db));
		return -EIO;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = c->insert;
		int rc;

		if (blocks[i].min_ts_ns > TV_CATALOG_MAX_TS_NS ||
		    blocks[i].max_ts_ns > TV_CATALOG_MAX_TS_NS) {
			snprintf(err, errlen, "block %016llx: ts_ns beyond 2^63-1",
				 (unsigned long long)blocks[i].block_id);
			ret = -ERANGE;
			goto rollback;
		}
		blocks[i].committed_ns = committed_ns;
		sqlite3_bind_int64(st, 1, (int64_t)blocks[i].block_id);
		sqlite3_bind_int64(st, 2, (int64_t)blocks[i].segment_id);
		sqlite3_bind_int64(st, 3, (int64_t)blocks[i].min_ts_ns);
		sqlite3_bind_int64(st, 4, (int64_t)blocks[i].max_ts_ns);
		sqlite3_bind_int64(st, 5, blocks[i].record_count);
		sqlite3_bind_int64(st, 6, (int64_t)blocks[i].bytes);
		sqlite3_bind_int64(st, 7, committed_ns);
		sqlite3_bind_int64(st, 8, (int64_t)blocks[i].loss.ring_full);
		sqlite3_bind_int64(st, 9, (int64_t)blocks[i].loss.map_full);
		sqlite3_bind_int64(st, 10, (int64_t)blocks[i].loss.parser);
		sqlite3_bind_int64(st, 11, (int64_t)blocks[i].loss.cache);
		sqlite3_bind_int64(st, 12, (int64_t)blocks[i].loss.failed);
		sqlite3_bind_int64(st, 13, (int64_t)blocks[i].loss.requests);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE) {
			ret = sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_PRIMARYKEY ?
				      -EEXIST : -EIO;
			snprintf(err, errlen, "catalog insert of block %016llx: %s",
				 (unsigned long long)blocks[i].block_id, sqlite3_errmsg(c->db));
			goto rollback;
		}
	}
	if (exec(c, "COMMIT")) {
		snprintf(err, errlen, "catalog commit: %s", sqlite3_errmsg(c->db));
		ret = -EIO;
		goto rollback;
	}
	return 0;
rollback:
	exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_contains(struct tv_catalog *c, uint64_t block_id)
{
	int rc;

	sqlite3_bind_int64(c->contains, 1, (int64_t)block_id);
	rc = sqlite3_step(c->contains);
	sqlite3_reset(c->contains);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -EIO;
}

static void row_to_block(sqlite3_stmt *st, struct tv_catalog_block *b)
{
	b->block_id = (uint64_t)sqlite3_column_int64(st, 0);
	b->segment_id = (uint64_t)sqlite3_column_int64(st, 1);
	b->min_ts_ns = (uint64_t)sqlite3_column_int64(st, 2);
	b->max_ts_ns = (uint64_t)sqlite3_column_int64(st, 3);
	b->record_count = (uint32_t)sqlite3_column_int64(st, 4);
	b->bytes = (uint64_t)sqlite3_column_int64(st, 5);
	b->committed_ns = sqlite3_column_int64(st, 6);
	b->loss.ring_full = (uint64_t)sqlite3_column_int64(st, 7);
	b->loss.map_full = (uint64_t)sqlite3_column_int64(st, 8);
	b->loss.parser = (uint64_t)sqlite3_column_int64(st, 9);
	b->loss.cache = (uint64_t)sqlite3_column_int64(st, 10);
	b->loss.failed = (uint64_t)sqlite3_column_int64(st, 11);
	b->loss.requests = (uint64_t)sqlite3_column_int64(st, 12);
}

/* Step st to the end, calling cb per row; resets st whatever happens. */
static int walk(struct tv_catalog *c, sqlite3_stmt *st, tv_catalog_block_cb cb, void *arg)
{
	struct tv_catalog_block b;
	int rc, ret = 0;

	(void)c;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_to_block(st, &b);
		ret = cb(&b, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = -EIO;
	sqlite3_reset(st);
	return ret;
}

int tv_catalog_overlap(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		       tv_catalog_block_cb cb, void *arg)
{
	sqlite3_stmt *st;

	if (from_ns >= to_ns)
		return 0;
	if (from_ns > TV_CATALOG_MAX_TS_NS)
		return 0; /* no stored timestamp can be that large */
	if (to_ns > TV_CATALOG_MAX_TS_NS) {
		/* min_ts_ns < 2^63 holds for every row: the upper bound drops out */
		st = c->overlap_open;
	} else {
		st = c->overlap;
		sqlite3_bind_int64(st, 2, (int64_t)to_ns);
	}
	sqlite3_bind_int64(st, 1, (int64_t)from_ns);
	return walk(c, st, cb, arg);
}

int tv_catalog_list(struct tv_catalog *c, tv_catalog_block_cb cb, void *arg)
{
	return walk(c, c->list, cb, arg);
}

static int push_id(uint64_t **ids, size_t *n, size_t *cap, uint64_t id)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		uint64_t *p = realloc(*ids, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*ids = p;
		*cap = ncap;
	}
	(*ids)[(*n)++] = id;
	return 0;
}

/* Run the DELETE ... RETURNING st once per key inside one transaction. */
static int delete_keys(struct tv_catalog *c, sqlite3_stmt *st, const uint64_t *keys,
		       size_t count, uint64_t **ids, size_t *n)
{
	size_t cap = 0;
	int ret = 0, rc;

	*ids = NULL;
	*n = 0;
	if (exec(c, "BEGIN IMMEDIATE"))
		return -EIO;
	for (size_t i = 0; i < count && !ret; i++) {
		sqlite3_bind_int64(st, 1, (int64_t)keys[i]);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			ret = push_id(ids, n, &cap, (uint64_t)sqlite3_column_int64(st, 0));
			if (ret)
				break;
		}
		if (!ret && rc != SQLITE_DONE)
			ret = -EIO;
		sqlite3_reset(st);
	}
	if (!ret && exec(c, "COMMIT"))
		ret = -EIO;
	if (ret) {
		exec(c, "ROLLBACK");
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return ret;
}

int tv_catalog_delete_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t **ids,
			      size_t *n)
{
	return delete_keys(c, c->by_segment, &segment_id, 1, ids, n);
}

int tv_catalog_delete_ids(struct tv_catalog *c, const uint64_t *block_ids, size_t count,
			  uint64_t **ids, size_t *n)
{
	return delete_keys(c, c->del_id, block_ids, count, ids, n);
}

static int add_stats(const struct tv_catalog_block *b, void *arg)
{
	struct tv_catalog_stats *st = arg;

	st->blocks++;
	st->records += b->record_count;
	st->bytes += b->bytes;
	tv_block_loss_add(&st->loss, &b->loss);
	return 0;
}

int tv_catalog_stats(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		     struct tv_catalog_stats *st)
{
	*st = (struct tv_catalog_stats){ 0 };
	return tv_catalog_overlap(c, from_ns, to_ns, add_stats, st);
}
