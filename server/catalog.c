/* SQLite catalog of committed blocks and used segment ids. One connection, used from the
 * server's single rpc thread; every change is one transaction so a segment becomes visible (or
 * disappears) atomically. Segments being written are reserved in memory (catalog.h). Opening
 * checks that the file is a catalog before anything is written to it, so that a damaged or
 * foreign file can be moved aside whole and the catalog rebuilt from the block files. */
#include "server/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "common/clock.h"
#include "proto/block_v3.h"

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
	" lost_requests INTEGER NOT NULL DEFAULT 0,"
	/* the header's raw_bytes; NULL: not known yet (a row from before the column, which
	 * start-up fills in from the block's header: server/raw_backfill.c) */
	" raw_bytes INTEGER);"
	"CREATE INDEX IF NOT EXISTS blocks_by_time ON blocks(min_ts_ns, max_ts_ns);"
	"CREATE INDEX IF NOT EXISTS blocks_by_segment ON blocks(segment_id);"
	/* retention walks blocks oldest first and stops at the first segment it keeps
	 * (tv_catalog_segments_by_age); bytes included so the walk never reads the table */
	"CREATE INDEX IF NOT EXISTS blocks_by_age ON blocks(max_ts_ns, segment_id, bytes);"
	/* every segment id ever committed or deleted: ids are used once (catalog.h) */
	"CREATE TABLE IF NOT EXISTS segments ("
	" segment_id INTEGER PRIMARY KEY,"
	" state TEXT NOT NULL CHECK (state IN ('committed', 'deleted')),"
	" writer_token INTEGER NOT NULL DEFAULT 0,"
	" changed_ns INTEGER NOT NULL);"
	/* segments whose rows a retention pass or a segment Delete removed and whose files may
	 * still be in blocks/ (server/retention.h): start-up unlinks them (RECOVERY.md) */
	"CREATE TABLE IF NOT EXISTS retiring ("
	" segment_id INTEGER PRIMARY KEY,"
	" at_ns INTEGER NOT NULL);"
	/* the count and bytes of the blocks rows, kept by triggers inside every transaction that
	 * changes them (so a rollback takes its change back too): retention reads the archive's
	 * size after each commit group in O(1), where a SUM over blocks cost 28 ms at 100,000
	 * blocks. REPLACE fires the delete trigger because recursive_triggers is on. */
	"CREATE TABLE IF NOT EXISTS totals ("
	" id INTEGER PRIMARY KEY CHECK (id = 1),"
	" blocks INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS totals_insert AFTER INSERT ON blocks BEGIN"
	" UPDATE totals SET blocks = blocks + 1, bytes = bytes + new.bytes WHERE id = 1; END;"
	"CREATE TRIGGER IF NOT EXISTS totals_delete AFTER DELETE ON blocks BEGIN"
	" UPDATE totals SET blocks = blocks - 1, bytes = bytes - old.bytes WHERE id = 1; END;"
	"CREATE TRIGGER IF NOT EXISTS totals_update AFTER UPDATE OF bytes ON blocks BEGIN"
	" UPDATE totals SET bytes = bytes - old.bytes + new.bytes WHERE id = 1; END;"
	/* copies of version 3 blocks' trace-id filters (catalog.h, "Trace-id filters"): a cache
	 * COMMIT fills (a query too, for a block without one) and a query reads; a row goes with
	 * its blocks row (deleted, retired,
	 * quarantined, replaced by a repair), and a missing one only means the block's file
	 * is read instead */
	"CREATE TABLE IF NOT EXISTS trace_filters ("
	" block_id INTEGER PRIMARY KEY,"
	" bloom BLOB NOT NULL);"
	"CREATE TRIGGER IF NOT EXISTS trace_filters_delete AFTER DELETE ON blocks BEGIN"
	" DELETE FROM trace_filters WHERE block_id = old.block_id; END;"
	/* The under-store (server/under/UNDERSTORE.md "Catalog state"). under_persisted: the
	 * segments whose manifest is in the bucket (a cache-through COMMIT inserts the row in its
	 * commit transaction, async-through once the manifest is written, --rebuild-catalog from
	 * the bucket with evicted 1); evicted 1: its block files are not in blocks/ and a query
	 * reads them from S3. oldest_ts_ns is the key's hour (tv_persist_key). The row goes with
	 * the segment's last blocks row. */
	"CREATE TABLE IF NOT EXISTS under_persisted ("
	" segment_id INTEGER PRIMARY KEY,"
	" oldest_ts_ns INTEGER NOT NULL,"
	" evicted INTEGER NOT NULL DEFAULT 0 CHECK (evicted IN (0, 1)),"
	" persisted_ns INTEGER NOT NULL);"
	/* under_pending: the journal of segments that may have objects in the bucket the catalog
	 * does not account for, each in its own small transaction before the S3 work starts:
	 * 'uploading' (cache-through, not committed: start-up deletes its objects), 'queued'
	 * (async-through, committed locally, not yet persisted: start-up queues it again),
	 * 'deleting' (removed locally, the S3 delete not yet confirmed: start-up deletes again).
	 * The row is deleted when the S3 side is settled. */
	"CREATE TABLE IF NOT EXISTS under_pending ("
	" segment_id INTEGER PRIMARY KEY,"
	" oldest_ts_ns INTEGER NOT NULL,"
	" state TEXT NOT NULL CHECK (state IN ('uploading', 'queued', 'deleting')),"
	" at_ns INTEGER NOT NULL);";

/* A segments row for every segment of the blocks table (catalog.h); deleted ones are kept. */
static const char SYNC_SEGMENTS_SQL[] =
	"INSERT OR IGNORE INTO segments (segment_id, state, writer_token, changed_ns)"
	" SELECT segment_id, 'committed', 0, MIN(committed_ns) FROM blocks GROUP BY segment_id";

#define COLS "block_id, segment_id, min_ts_ns, max_ts_ns, record_count, bytes, committed_ns," \
	" lost_ring_full, lost_map_full, lost_parser, lost_cache, lost_failed, lost_requests," \
	" raw_bytes"

/* Columns added after the first schema, with what an older catalog gets: ALTER TABLE ADD
 * COLUMN on open when missing (blocks committed before the loss columns recorded no loss; their
 * raw_bytes is NULL until start-up reads it from the headers). */
static const struct {
	const char *name, *decl;
} ADDED_COLS[] = {
	{ "lost_ring_full", "INTEGER NOT NULL DEFAULT 0" },
	{ "lost_map_full", "INTEGER NOT NULL DEFAULT 0" },
	{ "lost_parser", "INTEGER NOT NULL DEFAULT 0" },
	{ "lost_cache", "INTEGER NOT NULL DEFAULT 0" },
	{ "lost_failed", "INTEGER NOT NULL DEFAULT 0" },
	{ "lost_requests", "INTEGER NOT NULL DEFAULT 0" },
	{ "raw_bytes", "INTEGER" },
};

/* A segment id reserved by a Write stream in progress, with its OPEN_SEGMENT's token. */
struct open_segment {
	uint64_t segment_id, writer_token;
};

/* Columns every catalog has had since the first schema: one lacking any is not ours. */
static const char *const REQUIRED_COLS[] = { "block_id", "segment_id", "min_ts_ns", "max_ts_ns",
					     "record_count", "bytes", "committed_ns" };

/* How long a statement waits for a lock another process holds on catalog.db (someone's
 * sqlite3 shell) before it fails with -EBUSY. */
#define BUSY_TIMEOUT_MS 5000

struct tv_catalog {
	sqlite3 *db;
	int is_new;
	sqlite3_stmt *insert, *contains, *get, *overlap, *overlap_open, *list, *of_segment,
		*del_id, *set_segment, *replace, *count, *raw_unknown, *set_raw;
	sqlite3_stmt *filter_put, *filter_del;
	sqlite3_blob *filter_blob; /* open on some row of trace_filters, or NULL */
	sqlite3_stmt *seg_get, *seg_insert, *seg_deleted;
	sqlite3_stmt *by_age, *seg_size, *bytes, *retire_mark, *retire_rows, *retire_done, *retiring;
	struct open_segment *open; /* unordered; as many as Write streams, so a scan is cheap */
	size_t nopen, open_cap;
};

/* The negative errno that says why SQLite failed with result code rc (primary or extended):
 *   SQLITE_FULL (the disk is full: SQLite's "database or disk is full")   -ENOSPC
 *   SQLITE_IOERR_* whose system call failed with ENOSPC, EDQUOT or EFBIG  that errno
 *   SQLITE_NOMEM                                                         -ENOMEM
 *   SQLITE_BUSY, SQLITE_LOCKED (another process holds catalog.db)        -EBUSY
 *   SQLITE_READONLY (a read-only file or file system)                    -EROFS
 *   SQLITE_CORRUPT, SQLITE_NOTADB (the file is damaged or not a db)      -EUCLEAN
 *   SQLITE_CONSTRAINT_PRIMARYKEY (a block id already there)              -EEXIST
 *   anything else (SQLITE_IOERR with another errno included)             -EIO
 * sqlite3_system_errno is read only for IOERR: it is the errno of the call that failed there,
 * while after other codes it may be left from an earlier, handled failure. */
static int sqlite_errno(sqlite3 *db, int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_IOERR: {
		int e = sqlite3_system_errno(db);

		return e == ENOSPC || e == EDQUOT || e == EFBIG ? -e : -EIO;
	}
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_CONSTRAINT:
		return rc == SQLITE_CONSTRAINT_PRIMARYKEY ? -EEXIST : -EIO;
	default:
		return -EIO;
	}
}

static int last_errno_code(struct tv_catalog *c)
{
	return sqlite3_extended_errcode(c->db);
}

/* The errno of the last failure on c's connection (its extended code). */
static int last_errno(struct tv_catalog *c)
{
	return sqlite_errno(c->db, last_errno_code(c));
}

/* "<what>: <errno text> (SQLite: <its message>)" into err: the cause first, in the words the
 * log format promises (No space left on device), then SQLite's own. */
static void sqlite_reason(struct tv_catalog *c, int ret, const char *what, char *err,
			  size_t errlen)
{
	snprintf(err, errlen, "%s: %s (SQLite: %s)", what, strerror(-ret), sqlite3_errmsg(c->db));
}

static int exec(struct tv_catalog *c, const char *sql)
{
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sqlite_errno(c->db, sqlite3_extended_errcode(c->db));
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
			 ADDED_COLS[i].name);
		int ret;

		if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
			return last_errno(c);
		rc = sqlite3_step(st);
		found = rc == SQLITE_ROW;
		ret = found ? 0 : sqlite_errno(c->db, rc == SQLITE_DONE ? rc : last_errno_code(c));
		sqlite3_finalize(st);
		if (ret)
			return ret;
		if (found)
			continue;
		snprintf(sql, sizeof(sql),
			 "ALTER TABLE blocks ADD COLUMN %s %s", ADDED_COLS[i].name,
			 ADDED_COLS[i].decl);
		ret = exec(c, sql);
		if (ret)
			return ret;
	}
	return 0;
}

static int prepare(struct tv_catalog *c, const char *sql, sqlite3_stmt **st)
{
	return sqlite3_prepare_v2(c->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : last_errno(c);
}

/* One integer from sql (its first column of its first row; 0 when there is no row). */
static int query_int(struct tv_catalog *c, const char *sql, int64_t *v)
{
	sqlite3_stmt *st;
	int rc, ret;

	if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK)
		return last_errno(c);
	rc = sqlite3_step(st);
	*v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : last_errno(c);
	sqlite3_finalize(st);
	return ret;
}

/* -EUCLEAN with the reason when path or a companion of it is there but not a regular file, or
 * when a -wal or -shm is left without its database (SQLite would replay that WAL into the new
 * file it creates: pages of a lost catalog on an empty one). 0 when all is as it should be. */
static int check_files(const char *path, char *err, size_t errlen)
{
	static const char *const SUFFIXES[] = { "", "-wal", "-shm", "-journal" };
	char p[4096];
	struct stat st;
	const char *main_state = "missing"; /* then "empty", or NULL when it has content */

	for (size_t i = 0; i < sizeof(SUFFIXES) / sizeof(SUFFIXES[0]); i++) {
		snprintf(p, sizeof(p), "%s%s", path, SUFFIXES[i]);
		if (lstat(p, &st)) {
			if (errno == ENOENT)
				continue;
			snprintf(err, errlen, "cannot stat %s: %s", p, strerror(errno));
			return -errno;
		}
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, errlen, "%s is not a regular file (%s)", p,
				 S_ISDIR(st.st_mode) ? "a directory" :
				 S_ISLNK(st.st_mode) ? "a symlink" : "a special file");
			return -EUCLEAN;
		}
		if (i == 0) {
			main_state = st.st_size ? NULL : "empty";
		} else if (main_state && i < 3) {
			snprintf(err, errlen, "%s is left over without its database (%s is %s)", p,
				 path, main_state);
			return -EUCLEAN;
		}
	}
	return 0;
}

/* Is the open database a catalog we can use? Reads only. Sets c->is_new for a database with
 * no table at all (a new or empty file). */
static int check_usable(struct tv_catalog *c, const char *path, char *err, size_t errlen)
{
	int64_t app_id, tables, has_blocks, v;
	sqlite3_stmt *st;
	char sql[160];
	int ret, rc;

	ret = query_int(c, "PRAGMA application_id", &app_id);
	if (ret == -EUCLEAN) {
		snprintf(err, errlen, "%s is not a SQLite database (%s)", path,
			 sqlite3_errmsg(c->db));
		return ret;
	}
	if (!ret)
		ret = query_int(c, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				   " AND name NOT LIKE 'sqlite_%'", &tables);
	if (!ret)
		ret = query_int(c, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				   " AND name = 'blocks'", &has_blocks);
	if (ret) {
		snprintf(err, errlen, "cannot read catalog %s: %s (SQLite: %s)", path,
			 strerror(-ret), sqlite3_errmsg(c->db));
		return ret;
	}
	if (app_id != 0 && app_id != TV_CATALOG_APPLICATION_ID) {
		snprintf(err, errlen, "%s belongs to another program (SQLite application_id "
			 "0x%08llx, ours is 0x%08x)", path, (unsigned long long)app_id,
			 TV_CATALOG_APPLICATION_ID);
		return -EUCLEAN;
	}
	if (!has_blocks) {
		if (tables == 0) {
			c->is_new = 1;
			return 0;
		}
		snprintf(err, errlen, "%s is not a tracevault catalog: no blocks table, %lld "
			 "other tables", path, (long long)tables);
		return -EUCLEAN;
	}
	for (size_t i = 0; i < sizeof(REQUIRED_COLS) / sizeof(REQUIRED_COLS[0]); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM pragma_table_info('blocks')"
			 " WHERE name = '%s'", REQUIRED_COLS[i]);
		ret = query_int(c, sql, &v);
		if (ret)
			return ret;
		if (!v) {
			snprintf(err, errlen, "%s is not a catalog this tracevaultd reads: its blocks"
				 " table has no column %s", path, REQUIRED_COLS[i]);
			return -EUCLEAN;
		}
	}
	ret = query_int(c, "SELECT pk FROM pragma_table_info('blocks') WHERE name = 'block_id'",
			&v);
	if (!ret && v != 1) {
		snprintf(err, errlen, "%s is not a catalog this tracevaultd reads: block_id is not "
			 "the primary key of its blocks table", path);
		return -EUCLEAN;
	}
	/* quick_check reads every page (O(size), ~10 ms for 10,000 blocks): a damaged catalog is
	 * found here, where it can be rebuilt, not by a query later */
	if (sqlite3_prepare_v2(c->db, "PRAGMA quick_check(1)", -1, &st, NULL) != SQLITE_OK)
		return last_errno(c);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *res = (const char *)sqlite3_column_text(st, 0);

		ret = res && !strcmp(res, "ok") ? 0 : -EUCLEAN;
		if (ret)
			snprintf(err, errlen, "%s is damaged (SQLite quick_check: %s)", path,
				 res ? res : "?");
	} else {
		ret = last_errno(c);
		snprintf(err, errlen, "%s: quick_check failed: %s (SQLite: %s)", path,
			 strerror(-ret), sqlite3_errmsg(c->db));
	}
	sqlite3_finalize(st);
	return ret;
}

int tv_catalog_open(struct tv_catalog **out, const char *path, char *err, size_t errlen)
{
	struct tv_catalog *c;
	int64_t app_id, had_segments = 0, has_totals = 0;
	int ret;

	*out = NULL;
	ret = check_files(path, err, errlen);
	if (ret)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory opening catalog %s", path);
		return -ENOMEM;
	}
	if (sqlite3_open_v2(path, &c->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
			    NULL) != SQLITE_OK) {
		ret = c->db ? last_errno(c) : -ENOMEM;
		snprintf(err, errlen, "cannot open catalog %s: %s", path,
			 c->db ? sqlite3_errmsg(c->db) : "out of memory");
		goto fail;
	}
	/* A busy timeout covers a stray second process opening the file. */
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	ret = check_usable(c, path, err, errlen);
	if (ret)
		goto fail;
	/* WAL + FULL: a committed transaction survives power loss; readers never block the
	 * writer. */
	ret = exec(c, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
		      " PRAGMA recursive_triggers=ON;");
	if (!ret)
		ret = query_int(c, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
				   " name = 'segments'", &had_segments);
	if (!ret)
		ret = exec(c, SCHEMA_SQL);
	if (!ret)
		ret = migrate(c);
	/* a catalog from before the segments table: every segment of its blocks gets its row
	 * (a scan of all blocks, so only then; commits and adopt keep the table whole after) */
	if (!ret && !had_segments)
		ret = exec(c, SYNC_SEGMENTS_SQL);
	/* a catalog from before the totals table: its row from one scan, once */
	if (!ret)
		ret = query_int(c, "SELECT count(*) FROM totals", &has_totals);
	if (!ret && !has_totals)
		ret = exec(c, "INSERT INTO totals (id, blocks, bytes) SELECT 1, count(*),"
			      " coalesce(SUM(bytes), 0) FROM blocks");
	if (!ret)
		ret = query_int(c, "PRAGMA application_id", &app_id);
	if (!ret && app_id != TV_CATALOG_APPLICATION_ID) {
		char sql[64];

		snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", TV_CATALOG_APPLICATION_ID);
		ret = exec(c, sql);
	}
	if (ret) {
		snprintf(err, errlen, "cannot initialise catalog %s: %s (SQLite: %s)", path,
			 strerror(-ret), sqlite3_errmsg(c->db));
		goto fail;
	}
	if (prepare(c, "INSERT INTO blocks (" COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
		       " ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
		    &c->insert) ||
	    prepare(c, "SELECT 1 FROM blocks WHERE block_id = ?1", &c->contains) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE block_id = ?1", &c->get) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE min_ts_ns < ?2 AND max_ts_ns >= ?1"
		       " ORDER BY min_ts_ns, block_id", &c->overlap) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE max_ts_ns >= ?1"
		       " ORDER BY min_ts_ns, block_id", &c->overlap_open) ||
	    prepare(c, "SELECT " COLS " FROM blocks ORDER BY block_id", &c->list) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE segment_id = ?1 ORDER BY block_id",
		    &c->of_segment) ||
	    prepare(c, "DELETE FROM blocks WHERE block_id = ?1 RETURNING block_id", &c->del_id) ||
	    prepare(c, "UPDATE blocks SET segment_id = ?2 WHERE block_id = ?1", &c->set_segment) ||
	    prepare(c, "INSERT OR REPLACE INTO blocks (" COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
		       " ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)", &c->replace) ||
	    prepare(c, "SELECT " COLS " FROM blocks WHERE raw_bytes IS NULL ORDER BY block_id",
		    &c->raw_unknown) ||
	    prepare(c, "UPDATE blocks SET raw_bytes = ?2 WHERE block_id = ?1", &c->set_raw) ||
	    prepare(c, "INSERT OR REPLACE INTO trace_filters (block_id, bloom) SELECT ?1, ?2"
		       " WHERE EXISTS (SELECT 1 FROM blocks WHERE block_id = ?1)", &c->filter_put) ||
	    prepare(c, "DELETE FROM trace_filters WHERE block_id = ?1", &c->filter_del) ||
	    prepare(c, "SELECT count(*) FROM blocks", &c->count) ||
	    prepare(c, "SELECT state, writer_token FROM segments WHERE segment_id = ?1",
		    &c->seg_get) ||
	    prepare(c, "INSERT INTO segments (segment_id, state, writer_token, changed_ns)"
		       " VALUES (?1, 'committed', ?2, ?3)", &c->seg_insert) ||
	    prepare(c, "INSERT INTO segments (segment_id, state, writer_token, changed_ns)"
		       " VALUES (?1, 'deleted', ?2, ?3) ON CONFLICT (segment_id) DO UPDATE"
		       " SET state = 'deleted', changed_ns = excluded.changed_ns", &c->seg_deleted) ||
	    /* a segment's age is its newest record: MAX(max_ts_ns) (catalog.h) */
	    prepare(c, "SELECT segment_id, max_ts_ns FROM blocks INDEXED BY blocks_by_age"
		       " ORDER BY max_ts_ns, segment_id", &c->by_age) ||
	    prepare(c, "SELECT count(*), coalesce(SUM(bytes), 0) FROM blocks WHERE segment_id = ?1",
		    &c->seg_size) ||
	    prepare(c, "SELECT blocks, bytes FROM totals WHERE id = 1", &c->bytes) ||
	    prepare(c, "INSERT OR REPLACE INTO retiring (segment_id, at_ns) VALUES (?1, ?2)",
		    &c->retire_mark) ||
	    prepare(c, "DELETE FROM blocks WHERE segment_id = ?1 RETURNING block_id, bytes, min_ts_ns",
		    &c->retire_rows) ||
	    prepare(c, "DELETE FROM retiring WHERE segment_id = ?1", &c->retire_done) ||
	    prepare(c, "SELECT segment_id FROM retiring ORDER BY segment_id", &c->retiring)) {
		ret = last_errno(c);
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

int tv_catalog_is_new(const struct tv_catalog *c)
{
	return c->is_new;
}

void tv_catalog_close(struct tv_catalog *c)
{
	if (!c)
		return;
	sqlite3_finalize(c->insert);
	sqlite3_finalize(c->contains);
	sqlite3_finalize(c->get);
	sqlite3_finalize(c->overlap);
	sqlite3_finalize(c->overlap_open);
	sqlite3_finalize(c->list);
	sqlite3_finalize(c->of_segment);
	sqlite3_finalize(c->del_id);
	sqlite3_finalize(c->set_segment);
	sqlite3_finalize(c->replace);
	sqlite3_finalize(c->count);
	sqlite3_finalize(c->raw_unknown);
	sqlite3_finalize(c->set_raw);
	sqlite3_finalize(c->filter_put);
	sqlite3_finalize(c->filter_del);
	sqlite3_blob_close(c->filter_blob);
	sqlite3_finalize(c->seg_get);
	sqlite3_finalize(c->seg_insert);
	sqlite3_finalize(c->seg_deleted);
	sqlite3_finalize(c->by_age);
	sqlite3_finalize(c->seg_size);
	sqlite3_finalize(c->bytes);
	sqlite3_finalize(c->retire_mark);
	sqlite3_finalize(c->retire_rows);
	sqlite3_finalize(c->retire_done);
	sqlite3_finalize(c->retiring);
	sqlite3_close(c->db);
	free(c->open);
	free(c);
}

static struct open_segment *find_open(struct tv_catalog *c, uint64_t segment_id)
{
	for (size_t i = 0; i < c->nopen; i++)
		if (c->open[i].segment_id == segment_id)
			return &c->open[i];
	return NULL;
}

/* The segments row of segment_id: 1 with *deleted and *writer_token set, 0 when there is
 * none, or the errno of a SQLite failure. */
static int segment_row(struct tv_catalog *c, uint64_t segment_id, int *deleted,
		       uint64_t *writer_token)
{
	int rc, ret;

	sqlite3_bind_int64(c->seg_get, 1, (int64_t)segment_id);
	rc = sqlite3_step(c->seg_get);
	if (rc == SQLITE_ROW) {
		const unsigned char *state = sqlite3_column_text(c->seg_get, 0);

		*deleted = state && strcmp((const char *)state, "deleted") == 0;
		*writer_token = (uint64_t)sqlite3_column_int64(c->seg_get, 1);
	}
	ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : last_errno(c);
	sqlite3_reset(c->seg_get);
	return ret;
}

int tv_catalog_segment_open(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			    char *err, size_t errlen)
{
	uint64_t token;
	int deleted, ret;

	if (find_open(c, segment_id)) {
		snprintf(err, errlen, "segment %016llx is being written by another stream",
			 (unsigned long long)segment_id);
		return -EEXIST;
	}
	ret = segment_row(c, segment_id, &deleted, &token);
	if (ret < 0) {
		snprintf(err, errlen, "segment %016llx: catalog lookup failed: %s",
			 (unsigned long long)segment_id, sqlite3_errmsg(c->db));
		return ret;
	}
	if (ret > 0) {
		snprintf(err, errlen, "segment %016llx was %s already: a segment id is used once",
			 (unsigned long long)segment_id, deleted ? "deleted" : "committed");
		return -EEXIST;
	}
	if (c->nopen == c->open_cap) {
		size_t ncap = c->open_cap ? 2 * c->open_cap : 16;
		struct open_segment *p = realloc(c->open, ncap * sizeof(*p));

		if (!p) {
			snprintf(err, errlen, "segment %016llx: out of memory",
				 (unsigned long long)segment_id);
			return -ENOMEM;
		}
		c->open = p;
		c->open_cap = ncap;
	}
	c->open[c->nopen++] = (struct open_segment){ segment_id, writer_token };
	return 0;
}

void tv_catalog_segment_close(struct tv_catalog *c, uint64_t segment_id)
{
	struct open_segment *o = find_open(c, segment_id);

	if (o)
		*o = c->open[--c->nopen];
}

int tv_catalog_segment_may_delete(struct tv_catalog *c, uint64_t segment_id,
				  uint64_t writer_token, char *err, size_t errlen)
{
	const struct open_segment *o = find_open(c, segment_id);
	const char *state;
	uint64_t token;
	int deleted = 0, ret = 1;

	if (o)
		token = o->writer_token;
	else
		ret = segment_row(c, segment_id, &deleted, &token);
	if (ret < 0) {
		snprintf(err, errlen, "segment %016llx: catalog lookup failed: %s",
			 (unsigned long long)segment_id, sqlite3_errmsg(c->db));
		return ret;
	}
	if (ret == 0 || (writer_token != 0 && token == writer_token))
		return 0;
	state = o ? "is being written" : deleted ? "was deleted" : "is committed";
	if (token == 0)
		snprintf(err, errlen, "segment %016llx %s and its writer is unknown (no "
			 "writer_token): only a Delete of its block ids removes it; nothing deleted",
			 (unsigned long long)segment_id, state);
	else if (writer_token == 0)
		snprintf(err, errlen, "segment %016llx %s: a Delete of a segment needs the "
			 "writer_token of its OPEN_SEGMENT; nothing deleted",
			 (unsigned long long)segment_id, state);
	else
		snprintf(err, errlen, "segment %016llx %s by another writer (writer_token "
			 "differs); nothing deleted", (unsigned long long)segment_id, state);
	return -EPERM;
}

/* Bind the 14 columns of b (COLS order) to st; committed_ns as given. */
static void bind_row(sqlite3_stmt *st, const struct tv_catalog_block *b)
{
	sqlite3_bind_int64(st, 1, (int64_t)b->block_id);
	sqlite3_bind_int64(st, 2, (int64_t)b->segment_id);
	sqlite3_bind_int64(st, 3, (int64_t)b->min_ts_ns);
	sqlite3_bind_int64(st, 4, (int64_t)b->max_ts_ns);
	sqlite3_bind_int64(st, 5, b->record_count);
	sqlite3_bind_int64(st, 6, (int64_t)b->bytes);
	sqlite3_bind_int64(st, 7, b->committed_ns);
	sqlite3_bind_int64(st, 8, (int64_t)b->loss.ring_full);
	sqlite3_bind_int64(st, 9, (int64_t)b->loss.map_full);
	sqlite3_bind_int64(st, 10, (int64_t)b->loss.parser);
	sqlite3_bind_int64(st, 11, (int64_t)b->loss.cache);
	sqlite3_bind_int64(st, 12, (int64_t)b->loss.failed);
	sqlite3_bind_int64(st, 13, (int64_t)b->loss.requests);
	sqlite3_bind_int64(st, 14, (int64_t)b->raw_bytes);
}

/* Run st (bound) once to completion; 0 or the errno of its failure. Resets st. */
static int step_done(struct tv_catalog *c, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st), ret;

	ret = rc == SQLITE_DONE ? 0 : last_errno(c);
	sqlite3_reset(st);
	return ret;
}

/* Insert n rows in one transaction (see tv_catalog_commit_segment and tv_catalog_adopt): with
 * segment_id != 0, its segments row ('committed', writer_token) and blocks of that segment only;
 * with 0 (adopt), blocks of any segments, whose missing segments rows are added (token 0). */
static int insert_body(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
		       const struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen)
{
	char what[64];
	int ret = 0;

	if (segment_id) {
		sqlite3_bind_int64(c->seg_insert, 1, (int64_t)segment_id);
		sqlite3_bind_int64(c->seg_insert, 2, (int64_t)writer_token);
		sqlite3_bind_int64(c->seg_insert, 3, n ? blocks[0].committed_ns
						       : (int64_t)tv_realtime_ns());
		ret = step_done(c, c->seg_insert);
		if (ret) {
			snprintf(what, sizeof(what), "catalog insert of segment %016llx",
				 (unsigned long long)segment_id);
			sqlite_reason(c, ret, what, err, errlen);
			goto rollback;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (segment_id && blocks[i].segment_id != segment_id) {
			snprintf(err, errlen, "block %016llx belongs to segment %016llx, not %016llx",
				 (unsigned long long)blocks[i].block_id,
				 (unsigned long long)blocks[i].segment_id,
				 (unsigned long long)segment_id);
			ret = -EINVAL;
			goto rollback;
		}
		if (blocks[i].min_ts_ns > TV_CATALOG_MAX_TS_NS ||
		    blocks[i].max_ts_ns > TV_CATALOG_MAX_TS_NS) {
			snprintf(err, errlen, "block %016llx: ts_ns beyond 2^63-1",
				 (unsigned long long)blocks[i].block_id);
			ret = -ERANGE;
			goto rollback;
		}
		bind_row(c->insert, &blocks[i]);
		ret = sqlite3_step(c->insert) == SQLITE_DONE ? 0 : last_errno(c);
		if (ret) {
			snprintf(what, sizeof(what), "catalog insert of block %016llx",
				 (unsigned long long)blocks[i].block_id);
			sqlite_reason(c, ret, what, err, errlen);
		}
		sqlite3_reset(c->insert);
		if (ret)
			goto rollback;
	}
	if (!segment_id) {
		ret = exec(c, SYNC_SEGMENTS_SQL);
		if (ret) {
			sqlite_reason(c, ret, "catalog insert of adopted segments", err, errlen);
			goto rollback;
		}
	}
rollback:
	return ret;
}

/* The rows of insert_body in one transaction of their own. */
static int insert_rows(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
		       const struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen)
{
	int ret;

	ret = exec(c, "BEGIN IMMEDIATE");
	if (ret) {
		sqlite_reason(c, ret, "catalog begin", err, errlen);
		return ret;
	}
	ret = insert_body(c, segment_id, writer_token, blocks, n, err, errlen);
	if (ret)
		goto rollback;
	ret = exec(c, "COMMIT");
	if (ret) {
		sqlite_reason(c, ret, "catalog commit", err, errlen);
		goto rollback;
	}
	return 0;
rollback:
	/* after SQLITE_FULL or an I/O error SQLite may have rolled back already; either way
	 * nothing of these rows is kept */
	if (!sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_commit_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen)
{
	int64_t committed_ns = (int64_t)tv_realtime_ns();

	if (!segment_id) {
		snprintf(err, errlen, "segment id 0 is reserved (blocks of unknown segment)");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		blocks[i].committed_ns = committed_ns;
	return insert_rows(c, segment_id, writer_token, blocks, n, err, errlen);
}

int tv_catalog_group_begin(struct tv_catalog *c, char *err, size_t errlen)
{
	int ret = exec(c, "BEGIN IMMEDIATE");

	if (ret)
		sqlite_reason(c, ret, "catalog begin", err, errlen);
	return ret;
}

int tv_catalog_group_add(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			 struct tv_catalog_block *blocks, size_t n, char *err, size_t errlen)
{
	int64_t committed_ns = (int64_t)tv_realtime_ns();
	int ret;

	if (!segment_id) {
		snprintf(err, errlen, "segment id 0 is reserved (blocks of unknown segment)");
		return -EINVAL;
	}
	if (sqlite3_get_autocommit(c->db)) {
		snprintf(err, errlen, "catalog: no group transaction open");
		return -EIO;
	}
	for (size_t i = 0; i < n; i++)
		blocks[i].committed_ns = committed_ns;
	ret = exec(c, "SAVEPOINT member");
	if (ret) {
		sqlite_reason(c, ret, "catalog savepoint", err, errlen);
		return ret;
	}
	ret = insert_body(c, segment_id, writer_token, blocks, n, err, errlen);
	/* ROLLBACK TO keeps the savepoint open: RELEASE it either way. If SQLite already rolled
	 * the whole transaction back (SQLITE_FULL, an I/O error), both fail and the group's
	 * COMMIT reports it. */
	if (ret && !sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK TO member");
	if (!sqlite3_get_autocommit(c->db))
		exec(c, "RELEASE member");
	return ret;
}

int tv_catalog_group_commit(struct tv_catalog *c, char *err, size_t errlen)
{
	int ret;

	if (sqlite3_get_autocommit(c->db)) {
		snprintf(err, errlen, "catalog: the group transaction was rolled back");
		return -EIO;
	}
	ret = exec(c, "COMMIT");
	if (ret) {
		sqlite_reason(c, ret, "catalog commit", err, errlen);
		if (!sqlite3_get_autocommit(c->db))
			exec(c, "ROLLBACK");
	}
	return ret;
}

void tv_catalog_group_rollback(struct tv_catalog *c)
{
	if (!sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
}

int tv_catalog_adopt(struct tv_catalog *c, const struct tv_catalog_block *blocks, size_t n,
		     char *err, size_t errlen)
{
	return insert_rows(c, 0, 0, blocks, n, err, errlen);
}

int tv_catalog_contains(struct tv_catalog *c, uint64_t block_id)
{
	int rc, ret;

	sqlite3_bind_int64(c->contains, 1, (int64_t)block_id);
	rc = sqlite3_step(c->contains);
	ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : last_errno(c);
	sqlite3_reset(c->contains);
	return ret;
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
	b->raw_bytes = (uint64_t)sqlite3_column_int64(st, 13); /* NULL (not known yet): 0 */
}

/* Step st to the end, calling cb per row; resets st whatever happens. */
static int walk(struct tv_catalog *c, sqlite3_stmt *st, tv_catalog_block_cb cb, void *arg)
{
	struct tv_catalog_block b;
	int rc, ret = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		row_to_block(st, &b);
		ret = cb(&b, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
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

int tv_catalog_segment_blocks(struct tv_catalog *c, uint64_t segment_id, tv_catalog_block_cb cb,
			      void *arg)
{
	sqlite3_bind_int64(c->of_segment, 1, (int64_t)segment_id);
	return walk(c, c->of_segment, cb, arg);
}

int tv_catalog_get(struct tv_catalog *c, uint64_t block_id, struct tv_catalog_block *b)
{
	int rc, ret;

	sqlite3_bind_int64(c->get, 1, (int64_t)block_id);
	rc = sqlite3_step(c->get);
	if (rc == SQLITE_ROW)
		row_to_block(c->get, b);
	ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : last_errno(c);
	sqlite3_reset(c->get);
	return ret;
}

int tv_catalog_set_segment(struct tv_catalog *c, uint64_t block_id, uint64_t segment_id)
{
	int ret;

	sqlite3_bind_int64(c->set_segment, 1, (int64_t)block_id);
	sqlite3_bind_int64(c->set_segment, 2, (int64_t)segment_id);
	ret = step_done(c, c->set_segment);
	return ret ? ret : sqlite3_changes(c->db) ? 0 : -ENOENT;
}

int tv_catalog_replace(struct tv_catalog *c, const struct tv_catalog_block *b)
{
	if (b->min_ts_ns > TV_CATALOG_MAX_TS_NS || b->max_ts_ns > TV_CATALOG_MAX_TS_NS)
		return -ERANGE;
	bind_row(c->replace, b);
	return step_done(c, c->replace);
}

int tv_catalog_raw_unknown(struct tv_catalog *c, tv_catalog_block_cb cb, void *arg)
{
	return walk(c, c->raw_unknown, cb, arg);
}

int tv_catalog_set_raw_bytes(struct tv_catalog *c, const struct tv_catalog_raw *v, size_t n)
{
	int ret = exec(c, "BEGIN IMMEDIATE");

	for (size_t i = 0; !ret && i < n; i++) {
		sqlite3_bind_int64(c->set_raw, 1, (int64_t)v[i].block_id);
		sqlite3_bind_int64(c->set_raw, 2, (int64_t)v[i].raw_bytes);
		ret = step_done(c, c->set_raw);
	}
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret)
		exec(c, "ROLLBACK");
	return ret;
}

/* ---- copies of trace-id filters ---- */

int tv_catalog_trace_filter_test(struct tv_catalog *c, uint64_t block_id, const char *ids,
				 size_t n, size_t stride)
{
	uint8_t blk[TV_BLOCK_V3_BLOOM_BLOCK_BYTES];
	int rc, bytes;

	/* one handle moved from row to row (an open compiles a statement, a reopen only seeks),
	 * until tv_catalog_trace_filter_release ends the read it holds */
	if (c->filter_blob)
		rc = sqlite3_blob_reopen(c->filter_blob, (sqlite3_int64)block_id);
	else
		rc = sqlite3_blob_open(c->db, "main", "trace_filters", "bloom",
				       (sqlite3_int64)block_id, 0, &c->filter_blob);
	if (rc != SQLITE_OK) {
		/* no row ("no such rowid"), or a failure: either way the block's own filter is
		 * read; a handle that failed cannot be moved again */
		sqlite3_blob_close(c->filter_blob);
		c->filter_blob = NULL;
		return rc == SQLITE_ERROR ? -ENOENT : sqlite_errno(c->db, rc);
	}
	bytes = sqlite3_blob_bytes(c->filter_blob);
	if (bytes < 0 || bytes % TV_BLOCK_V3_BLOOM_BLOCK_BYTES ||
	    (unsigned)bytes > TV_BLOCK_V3_MAX_BLOOM_BYTES)
		return -EUCLEAN; /* not a filter tv_catalog_trace_filter_put stored */
	for (size_t i = 0; bytes && i < n; i++) {
		uint64_t h = tv_v3_trace_hash(ids + i * stride);

		rc = sqlite3_blob_read(c->filter_blob, blk, sizeof(blk),
				       (int)tv_v3_bloom_block_offset((size_t)bytes, h));
		if (rc != SQLITE_OK) {
			sqlite3_blob_close(c->filter_blob);
			c->filter_blob = NULL;
			return sqlite_errno(c->db, rc);
		}
		if (tv_v3_bloom_block_test(blk, h))
			return 1;
	}
	return 0;
}

int tv_catalog_trace_filter_put(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				size_t bytes)
{
	int ret;

	if (bytes % TV_BLOCK_V3_BLOOM_BLOCK_BYTES || bytes > TV_BLOCK_V3_MAX_BLOOM_BYTES)
		return -EINVAL;
	if (!sqlite3_get_autocommit(c->db))
		return -EBUSY; /* inside another's transaction: it would share its fate */
	tv_catalog_trace_filter_release(c);
	/* a copy lost to a crash is read again from the block: no fsync for it (WAL with
	 * synchronous=NORMAL still never leaves the file damaged) */
	ret = exec(c, "PRAGMA synchronous=NORMAL");
	if (ret)
		return ret;
	sqlite3_bind_int64(c->filter_put, 1, (int64_t)block_id);
	sqlite3_bind_blob(c->filter_put, 2, bytes ? (const void *)bloom : "", (int)bytes,
			  SQLITE_STATIC);
	ret = step_done(c, c->filter_put);
	sqlite3_clear_bindings(c->filter_put);
	/* every other transaction stays durable at commit */
	if (exec(c, "PRAGMA synchronous=FULL") && !ret)
		ret = -EIO;
	return ret;
}

int tv_catalog_group_add_filter(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				size_t bytes)
{
	int ret;

	if (bytes % TV_BLOCK_V3_BLOOM_BLOCK_BYTES || bytes > TV_BLOCK_V3_MAX_BLOOM_BYTES)
		return -EINVAL;
	if (sqlite3_get_autocommit(c->db))
		return -EIO; /* no group transaction: a copy alone would not share the rows' fate */
	tv_catalog_trace_filter_release(c);
	sqlite3_bind_int64(c->filter_put, 1, (int64_t)block_id);
	sqlite3_bind_blob(c->filter_put, 2, bytes ? (const void *)bloom : "", (int)bytes,
			  SQLITE_STATIC);
	ret = step_done(c, c->filter_put);
	sqlite3_clear_bindings(c->filter_put);
	return ret;
}

void tv_catalog_trace_filter_release(struct tv_catalog *c)
{
	sqlite3_blob_close(c->filter_blob);
	c->filter_blob = NULL;
}

int tv_catalog_trace_filter_check(struct tv_catalog *c, uint64_t block_id, const uint8_t *bloom,
				  size_t bytes)
{
	uint8_t chunk[4096];
	sqlite3_blob *b = NULL;
	int rc, same, ret;

	tv_catalog_trace_filter_release(c);
	rc = sqlite3_blob_open(c->db, "main", "trace_filters", "bloom", (sqlite3_int64)block_id, 0,
			       &b);
	if (rc != SQLITE_OK) {
		sqlite3_blob_close(b);
		return rc == SQLITE_ERROR ? 0 : sqlite_errno(c->db, rc); /* no copy */
	}
	same = (size_t)sqlite3_blob_bytes(b) == bytes;
	for (size_t off = 0; same && off < bytes; off += sizeof(chunk)) {
		size_t n = bytes - off < sizeof(chunk) ? bytes - off : sizeof(chunk);

		rc = sqlite3_blob_read(b, chunk, (int)n, (int)off);
		if (rc != SQLITE_OK) {
			sqlite3_blob_close(b);
			return sqlite_errno(c->db, rc);
		}
		same = !memcmp(chunk, bloom + off, n);
	}
	sqlite3_blob_close(b);
	if (same)
		return 0;
	ret = tv_catalog_trace_filter_drop(c, block_id);
	return ret ? ret : 1;
}

int tv_catalog_trace_filter_drop(struct tv_catalog *c, uint64_t block_id)
{
	sqlite3_bind_int64(c->filter_del, 1, (int64_t)block_id);
	return step_done(c, c->filter_del);
}

int tv_catalog_count(struct tv_catalog *c, uint64_t *n)
{
	int rc = sqlite3_step(c->count), ret;

	*n = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->count, 0) : 0;
	ret = rc == SQLITE_ROW ? 0 : last_errno(c);
	sqlite3_reset(c->count);
	return ret;
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

/* Run the DELETE ... RETURNING st once per key inside one transaction; then, for a segment
 * (deleted_segment != 0), its segments row becomes 'deleted' with writer_token. */
static int delete_keys(struct tv_catalog *c, sqlite3_stmt *st, const uint64_t *keys,
		       size_t count, uint64_t deleted_segment, uint64_t writer_token,
		       uint64_t **ids, size_t *n)
{
	size_t cap = 0;
	int ret = 0, rc;

	*ids = NULL;
	*n = 0;
	ret = exec(c, "BEGIN IMMEDIATE");
	if (ret)
		return ret;
	for (size_t i = 0; i < count && !ret; i++) {
		sqlite3_bind_int64(st, 1, (int64_t)keys[i]);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			ret = push_id(ids, n, &cap, (uint64_t)sqlite3_column_int64(st, 0));
			if (ret)
				break;
		}
		if (!ret && rc != SQLITE_DONE)
			ret = last_errno(c);
		sqlite3_reset(st);
	}
	if (!ret && deleted_segment) {
		sqlite3_bind_int64(c->seg_deleted, 1, (int64_t)deleted_segment);
		sqlite3_bind_int64(c->seg_deleted, 2, (int64_t)writer_token);
		sqlite3_bind_int64(c->seg_deleted, 3, (int64_t)tv_realtime_ns());
		ret = step_done(c, c->seg_deleted);
	}
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret) {
		if (!sqlite3_get_autocommit(c->db))
			exec(c, "ROLLBACK");
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return ret;
}

int tv_catalog_delete_segment(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
			      const uint64_t *block_ids, size_t count, uint64_t **ids, size_t *n)
{
	return delete_keys(c, c->del_id, block_ids, count, writer_token ? segment_id : 0,
			   writer_token, ids, n);
}

int tv_catalog_delete_ids(struct tv_catalog *c, const uint64_t *block_ids, size_t count,
			  uint64_t **ids, size_t *n)
{
	return delete_keys(c, c->del_id, block_ids, count, 0, 0, ids, n);
}

static int add_stats(const struct tv_catalog_block *b, void *arg)
{
	struct tv_catalog_stats *st = arg;

	st->blocks++;
	st->records += b->record_count;
	st->bytes += b->bytes;
	st->raw_bytes += b->raw_bytes;
	tv_block_loss_add(&st->loss, &b->loss);
	return 0;
}

int tv_catalog_stats(struct tv_catalog *c, uint64_t from_ns, uint64_t to_ns,
		     struct tv_catalog_stats *st)
{
	*st = (struct tv_catalog_stats){ 0 };
	return tv_catalog_overlap(c, from_ns, to_ns, add_stats, st);
}

/* ---- retention and segment deletion (catalog.h "Retiring segments") ---- */

/* A segment met in the walk of tv_catalog_segments_by_age before its newest block. */
struct partial {
	uint64_t segment_id, left; /* its blocks not walked yet */
};

int tv_catalog_segments_by_age(struct tv_catalog *c, tv_catalog_segment_cb cb, void *arg)
{
	struct partial *part = NULL;
	size_t npart = 0, cap = 0;
	struct tv_catalog_segment seg;
	int rc, ret = 0;

	/* Blocks come oldest first by (max_ts_ns, segment_id); a segment's place in the age
	 * order is the walk's position of its newest block, i.e. where its last block is met.
	 * So the walk reads the blocks up to the first segment kept, plus older blocks of
	 * segments not yet complete, never the whole table (a GROUP BY over every block cost
	 * 27 ms at 10,000 blocks and 1.3 s at 100,000 here, on every pass). */
	while ((rc = sqlite3_step(c->by_age)) == SQLITE_ROW) {
		uint64_t sid = (uint64_t)sqlite3_column_int64(c->by_age, 0);
		size_t k;

		for (k = 0; k < npart && part[k].segment_id != sid; k++)
			;
		if (k == npart) { /* first block of sid: its size, by the segment index */
			sqlite3_bind_int64(c->seg_size, 1, (int64_t)sid);
			if (sqlite3_step(c->seg_size) != SQLITE_ROW) {
				ret = last_errno(c);
				sqlite3_reset(c->seg_size);
				break;
			}
			if (npart == cap) {
				size_t ncap = cap ? cap * 2 : 16;
				struct partial *p = realloc(part, ncap * sizeof(*p));

				if (!p) {
					sqlite3_reset(c->seg_size);
					ret = -ENOMEM;
					break;
				}
				part = p;
				cap = ncap;
			}
			part[npart++] = (struct partial){
				sid, (uint64_t)sqlite3_column_int64(c->seg_size, 0) };
			sqlite3_reset(c->seg_size);
		}
		if (part[k].left > 1) {
			part[k].left--;
			continue;
		}
		/* its newest block: the segment is complete here */
		sqlite3_bind_int64(c->seg_size, 1, (int64_t)sid);
		rc = sqlite3_step(c->seg_size);
		seg.segment_id = sid;
		seg.newest_ts_ns = (uint64_t)sqlite3_column_int64(c->by_age, 1);
		seg.blocks = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->seg_size, 0) : 0;
		seg.bytes = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->seg_size, 1) : 0;
		ret = rc == SQLITE_ROW ? 0 : last_errno(c);
		sqlite3_reset(c->seg_size);
		part[k] = part[--npart];
		if (!ret)
			ret = cb(&seg, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
	sqlite3_reset(c->by_age);
	free(part);
	return ret;
}

int tv_catalog_size(struct tv_catalog *c, uint64_t *blocks, uint64_t *bytes)
{
	int rc = sqlite3_step(c->bytes), ret;

	*blocks = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->bytes, 0) : 0;
	*bytes = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(c->bytes, 1) : 0;
	ret = rc == SQLITE_ROW ? 0 : last_errno(c);
	sqlite3_reset(c->bytes);
	return ret;
}

static int under_retire(struct tv_catalog *c, uint64_t segment_id, int64_t now_ns);

/* One segment's part of tv_catalog_retire, inside its transaction. */
static int retire_one(struct tv_catalog *c, uint64_t segment_id, uint64_t writer_token,
		      int64_t now_ns, tv_catalog_retired_cb cb, void *arg)
{
	int rc, ret;

	sqlite3_bind_int64(c->retire_mark, 1, (int64_t)segment_id);
	sqlite3_bind_int64(c->retire_mark, 2, now_ns);
	ret = step_done(c, c->retire_mark);
	if (!ret) /* the under-store's journal: a 'deleting' row when it is in the bucket */
		ret = under_retire(c, segment_id, now_ns);
	if (ret)
		return ret;
	sqlite3_bind_int64(c->retire_rows, 1, (int64_t)segment_id);
	while ((rc = sqlite3_step(c->retire_rows)) == SQLITE_ROW) {
		ret = cb(segment_id, (uint64_t)sqlite3_column_int64(c->retire_rows, 0),
			 (uint64_t)sqlite3_column_int64(c->retire_rows, 1),
			 (uint64_t)sqlite3_column_int64(c->retire_rows, 2), arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
	sqlite3_reset(c->retire_rows);
	if (ret)
		return ret;
	/* the id is never used again; a known writer_token is kept (ON CONFLICT keeps it) */
	sqlite3_bind_int64(c->seg_deleted, 1, (int64_t)segment_id);
	sqlite3_bind_int64(c->seg_deleted, 2, (int64_t)writer_token);
	sqlite3_bind_int64(c->seg_deleted, 3, now_ns);
	return step_done(c, c->seg_deleted);
}

int tv_catalog_retire(struct tv_catalog *c, const uint64_t *segment_ids, size_t n,
		      uint64_t writer_token, const uint64_t *done, size_t ndone,
		      tv_catalog_retired_cb cb, void *arg)
{
	int64_t now_ns = (int64_t)tv_realtime_ns();
	int ret = exec(c, "BEGIN IMMEDIATE");

	if (ret)
		return ret;
	for (size_t i = 0; i < ndone && !ret; i++) {
		sqlite3_bind_int64(c->retire_done, 1, (int64_t)done[i]);
		ret = step_done(c, c->retire_done);
	}
	for (size_t i = 0; i < n && !ret; i++)
		ret = retire_one(c, segment_ids[i], writer_token, now_ns, cb, arg);
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret && !sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_retired(struct tv_catalog *c, const uint64_t *segment_ids, size_t n)
{
	int ret = exec(c, "BEGIN IMMEDIATE");

	if (ret)
		return ret;
	for (size_t i = 0; i < n && !ret; i++) {
		sqlite3_bind_int64(c->retire_done, 1, (int64_t)segment_ids[i]);
		ret = step_done(c, c->retire_done);
	}
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret && !sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_retiring(struct tv_catalog *c, uint64_t **ids, size_t *n)
{
	size_t cap = 0;
	int rc, ret = 0;

	*ids = NULL;
	*n = 0;
	while ((rc = sqlite3_step(c->retiring)) == SQLITE_ROW) {
		ret = push_id(ids, n, &cap, (uint64_t)sqlite3_column_int64(c->retiring, 0));
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
	sqlite3_reset(c->retiring);
	if (ret) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return ret;
}

/* ---- eviction and read-back of the under-store (catalog.h, one block) ---- */

int tv_catalog_under_state(struct tv_catalog *c, uint64_t segment_id, uint64_t *oldest_ts_ns,
			   int *evicted)
{
	sqlite3_stmt *st;
	int rc, ret;

	ret = prepare(c, "SELECT oldest_ts_ns, evicted FROM under_persisted WHERE segment_id = ?1",
		      &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, (int64_t)segment_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*oldest_ts_ns = (uint64_t)sqlite3_column_int64(st, 0);
		*evicted = sqlite3_column_int(st, 1) != 0;
		ret = 1;
	} else {
		ret = rc == SQLITE_DONE ? 0 : last_errno(c);
	}
	sqlite3_finalize(st);
	return ret;
}

int tv_catalog_local_bytes(struct tv_catalog *c, uint64_t *local_bytes,
			   uint64_t *evicted_bytes)
{
	uint64_t blocks, total;
	int64_t ev = 0;
	int ret;

	*local_bytes = *evicted_bytes = 0;
	ret = tv_catalog_size(c, &blocks, &total);
	if (!ret)
		ret = query_int(c, "SELECT COALESCE(SUM(b.bytes), 0) FROM under_persisted p JOIN "
				   "blocks b ON b.segment_id = p.segment_id WHERE p.evicted = 1", &ev);
	if (ret)
		return ret;
	*evicted_bytes = (uint64_t)ev;
	*local_bytes = total > (uint64_t)ev ? total - (uint64_t)ev : 0;
	return 0;
}

int tv_catalog_evictable(struct tv_catalog *c, tv_catalog_evictable_cb cb, void *arg)
{
	struct tv_catalog_evictable seg;
	sqlite3_stmt *st;
	int rc, ret;

	ret = prepare(c, "SELECT p.segment_id, p.oldest_ts_ns, MAX(b.max_ts_ns) AS newest, "
			 "SUM(b.bytes), COUNT(*) FROM under_persisted p JOIN blocks b ON "
			 "b.segment_id = p.segment_id WHERE p.evicted = 0 GROUP BY p.segment_id "
			 "ORDER BY newest, p.segment_id", &st);
	if (ret)
		return ret;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		seg.segment_id = (uint64_t)sqlite3_column_int64(st, 0);
		seg.oldest_ts_ns = (uint64_t)sqlite3_column_int64(st, 1);
		seg.newest_ts_ns = (uint64_t)sqlite3_column_int64(st, 2);
		seg.bytes = (uint64_t)sqlite3_column_int64(st, 3);
		seg.blocks = (uint64_t)sqlite3_column_int64(st, 4);
		ret = cb(&seg, arg);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
	sqlite3_finalize(st);
	return ret;
}

int tv_catalog_mark_evicted(struct tv_catalog *c, const uint64_t *segment_ids, size_t n)
{
	sqlite3_stmt *st = NULL;
	int ret;

	tv_catalog_trace_filter_release(c);
	ret = exec(c, "BEGIN IMMEDIATE");
	if (ret)
		return ret;
	ret = prepare(c, "UPDATE under_persisted SET evicted = 1 WHERE segment_id = ?1", &st);
	for (size_t i = 0; i < n && !ret; i++) {
		sqlite3_bind_int64(st, 1, (int64_t)segment_ids[i]);
		ret = step_done(c, st);
	}
	sqlite3_finalize(st);
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret && !sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_mark_cached(struct tv_catalog *c, uint64_t segment_id)
{
	sqlite3_stmt *st;
	int ret;

	tv_catalog_trace_filter_release(c);
	ret = prepare(c, "UPDATE under_persisted SET evicted = 0 WHERE segment_id = ?1", &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, (int64_t)segment_id);
	ret = step_done(c, st); /* autocommit: its own transaction */
	sqlite3_finalize(st);
	return ret;
}

/*
 * ---- --rebuild-catalog from the under-store's bucket (server/bucket_rebuild.c,
 * server/under/rebuild.h; UNDERSTORE.md "Rebuild from the bucket") ----
 */

/* a segment's local blocks rows, gathered by tv_catalog_segment_blocks */
struct rebuild_rows {
	struct tv_catalog_block *b;
	size_t n, cap;
};

static int rebuild_gather(const struct tv_catalog_block *b, void *arg)
{
	struct rebuild_rows *r = arg;

	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 16;
		struct tv_catalog_block *p = realloc(r->b, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		r->b = p;
		r->cap = cap;
	}
	r->b[r->n++] = *b;
	return 0;
}

static int rebuild_cmp(const void *a, const void *b)
{
	const struct tv_catalog_block *x = a, *y = b;

	return x->block_id < y->block_id ? -1 : x->block_id > y->block_id;
}

/* Do the local rows of the segment (r, any order) hold what the bucket's (blocks) say? The
 * fields both have: ids, sizes, times, counts. Sorts both. */
static int rebuild_same(struct rebuild_rows *r, struct tv_catalog_block *blocks, size_t n)
{
	if (r->n != n)
		return 0;
	qsort(r->b, r->n, sizeof(*r->b), rebuild_cmp);
	qsort(blocks, n, sizeof(*blocks), rebuild_cmp);
	for (size_t i = 0; i < n; i++)
		if (r->b[i].block_id != blocks[i].block_id || r->b[i].bytes != blocks[i].bytes ||
		    r->b[i].min_ts_ns != blocks[i].min_ts_ns ||
		    r->b[i].max_ts_ns != blocks[i].max_ts_ns ||
		    r->b[i].record_count != blocks[i].record_count)
			return 0;
	return 1;
}

/* INSERT OR IGNORE of the segment's under_persisted row */
static int rebuild_persisted_row(struct tv_catalog *c, uint64_t segment_id,
				 uint64_t oldest_ts_ns, int evicted, int64_t now_ns)
{
	sqlite3_stmt *st;
	int ret;

	ret = prepare(c, "INSERT OR IGNORE INTO under_persisted (segment_id, oldest_ts_ns, evicted,"
			 " persisted_ns) VALUES (?1, ?2, ?3, ?4)", &st);
	if (ret)
		return ret;
	sqlite3_bind_int64(st, 1, (int64_t)segment_id);
	sqlite3_bind_int64(st, 2, (int64_t)oldest_ts_ns);
	sqlite3_bind_int(st, 3, evicted);
	sqlite3_bind_int64(st, 4, now_ns);
	ret = step_done(c, st);
	sqlite3_finalize(st);
	return ret;
}

int tv_catalog_rebuild_add_segment(struct tv_catalog *c, uint64_t segment_id,
				   uint64_t oldest_ts_ns, struct tv_catalog_block *blocks,
				   size_t n, int64_t now_ns, char *err, size_t errlen)
{
	struct rebuild_rows local = { 0 };
	struct tv_catalog_block other;
	uint64_t token;
	int deleted = 0, ret, result = TV_CATALOG_REBUILD_ADDED;

	if (!segment_id || !n || oldest_ts_ns > TV_CATALOG_MAX_TS_NS) {
		snprintf(err, errlen, "segment %016llx: id 0, no block, or oldest_ts_ns beyond "
			 "2^63-1", (unsigned long long)segment_id);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		blocks[i].committed_ns = now_ns;
	ret = exec(c, "BEGIN IMMEDIATE");
	if (ret) {
		sqlite_reason(c, ret, "catalog begin", err, errlen);
		return ret;
	}
	ret = segment_row(c, segment_id, &deleted, &token);
	if (ret < 0) {
		sqlite_reason(c, ret, "catalog lookup of a segment", err, errlen);
		goto rollback;
	}
	if (ret > 0 && deleted) {
		snprintf(err, errlen, "segment %016llx was deleted here (a Delete, or retention): "
			 "not brought back", (unsigned long long)segment_id);
		result = TV_CATALOG_REBUILD_DELETED;
		goto rollback;
	}
	if (ret > 0) {
		ret = tv_catalog_segment_blocks(c, segment_id, rebuild_gather, &local);
		if (ret) { /* -ENOMEM from rebuild_gather, or SQLite's */
			sqlite_reason(c, ret, "catalog read of a segment's blocks", err, errlen);
			goto rollback;
		}
		if (!rebuild_same(&local, blocks, n)) {
			snprintf(err, errlen, "segment %016llx is committed here with %zu blocks that "
				 "are not the bucket's %zu", (unsigned long long)segment_id,
				 local.n, n);
			result = TV_CATALOG_REBUILD_CONFLICT;
			goto rollback;
		}
		/* the same segment, here with its files: persisted, not evicted */
		ret = rebuild_persisted_row(c, segment_id, oldest_ts_ns, 0, now_ns);
		if (ret) {
			sqlite_reason(c, ret, "catalog insert into under_persisted", err, errlen);
			goto rollback;
		}
		result = TV_CATALOG_REBUILD_PRESENT;
		goto commit;
	}
	for (size_t i = 0; i < n; i++) {
		ret = tv_catalog_get(c, blocks[i].block_id, &other);
		if (ret < 0) {
			sqlite_reason(c, ret, "catalog lookup of a block", err, errlen);
			goto rollback;
		}
		if (ret > 0) {
			snprintf(err, errlen, "block %016llx is segment %016llx's here",
				 (unsigned long long)blocks[i].block_id,
				 (unsigned long long)other.segment_id);
			result = TV_CATALOG_REBUILD_CONFLICT;
			goto rollback;
		}
	}
	/* the segments row ('committed', writer token 0: unknown, so only a Delete of its block
	 * ids removes it, PROTOCOL.md) and the blocks rows, as recovery's adopt makes them */
	ret = insert_body(c, segment_id, 0, blocks, n, err, errlen);
	if (ret)
		goto rollback;
	ret = rebuild_persisted_row(c, segment_id, oldest_ts_ns, 1, now_ns);
	if (ret) {
		sqlite_reason(c, ret, "catalog insert into under_persisted", err, errlen);
		goto rollback;
	}
commit:
	ret = exec(c, "COMMIT");
	if (ret) {
		sqlite_reason(c, ret, "catalog commit", err, errlen);
		goto rollback;
	}
	free(local.b);
	return result;
rollback:
	if (!sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	free(local.b);
	return ret < 0 ? ret : result;
}

/*
 * ---- The under-store's journal (catalog.h; server/under/UNDERSTORE.md "Catalog state") ----
 * Tables under_pending and under_persisted. Statements are prepared per call: each runs once
 * per segment next to a WAL fsync, so keeping them prepared would save nothing measurable.
 */

static const char *const UNDER_STATE[] = {
	[TV_UNDER_UPLOADING] = "uploading",
	[TV_UNDER_QUEUED] = "queued",
	[TV_UNDER_DELETING] = "deleting",
};

/* Prepare sql, bind vals[0..n) as ?1..?n and text (when not NULL) as ?n+1, run it to
 * completion; *changes (may be NULL) gets sqlite3_changes. 0 or the errno. */
static int under_exec(struct tv_catalog *c, const char *sql, const int64_t *vals, int n,
		      const char *text, int *changes)
{
	sqlite3_stmt *st;
	int ret = prepare(c, sql, &st);

	if (ret)
		return ret;
	for (int i = 0; i < n; i++)
		sqlite3_bind_int64(st, i + 1, vals[i]);
	if (text)
		sqlite3_bind_text(st, n + 1, text, -1, SQLITE_STATIC);
	ret = sqlite3_step(st) == SQLITE_DONE ? 0 : last_errno(c);
	if (!ret && changes)
		*changes = sqlite3_changes(c->db);
	sqlite3_finalize(st);
	return ret;
}

/* BEGIN IMMEDIATE, unless a transaction is open (then the caller's it is): *own 1 when begun. */
static int under_begin(struct tv_catalog *c, int *own)
{
	*own = sqlite3_get_autocommit(c->db);
	return *own ? exec(c, "BEGIN IMMEDIATE") : 0;
}

static int under_end(struct tv_catalog *c, int own, int ret)
{
	if (!own)
		return ret;
	if (!ret)
		ret = exec(c, "COMMIT");
	if (ret && !sqlite3_get_autocommit(c->db))
		exec(c, "ROLLBACK");
	return ret;
}

int tv_catalog_under_pending_put(struct tv_catalog *c, uint64_t segment_id,
				 uint64_t oldest_ts_ns, enum tv_under_pending state)
{
	const int64_t v[] = { (int64_t)segment_id, (int64_t)oldest_ts_ns,
			      (int64_t)tv_realtime_ns() };

	return under_exec(c, "INSERT OR REPLACE INTO under_pending (segment_id, oldest_ts_ns, "
			  "at_ns, state) VALUES (?1, ?2, ?3, ?4)", v, 3, UNDER_STATE[state], NULL);
}

int tv_catalog_under_settled(struct tv_catalog *c, uint64_t segment_id, int64_t since_ns)
{
	const int64_t v[] = { (int64_t)segment_id, since_ns };

	return under_exec(c, "DELETE FROM under_pending WHERE segment_id = ?1 AND "
			  "state IN ('uploading', 'deleting') AND at_ns <= ?2", v, 2, NULL, NULL);
}

int tv_catalog_under_pending_drop(struct tv_catalog *c, uint64_t segment_id)
{
	const int64_t v[] = { (int64_t)segment_id };

	return under_exec(c, "DELETE FROM under_pending WHERE segment_id = ?1", v, 1, NULL, NULL);
}

int tv_catalog_under_unpersist(struct tv_catalog *c, uint64_t segment_id)
{
	const int64_t v[] = { (int64_t)segment_id };

	return under_exec(c, "DELETE FROM under_persisted WHERE segment_id = ?1 AND evicted = 0",
			  v, 1, NULL, NULL);
}

int tv_catalog_group_add_under(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns,
			       int queued, char *err, size_t errlen)
{
	const int64_t v[] = { (int64_t)segment_id, (int64_t)oldest_ts_ns,
			      (int64_t)tv_realtime_ns() };
	int ret;

	if (sqlite3_get_autocommit(c->db)) {
		snprintf(err, errlen, "catalog: no group transaction open");
		return -EIO;
	}
	ret = under_exec(c, "DELETE FROM under_pending WHERE segment_id = ?1", v, 1, NULL, NULL);
	if (!ret && queued)
		ret = under_exec(c, "INSERT OR REPLACE INTO under_pending (segment_id, "
				 "oldest_ts_ns, at_ns, state) VALUES (?1, ?2, ?3, 'queued')", v, 3,
				 NULL, NULL);
	else if (!ret)
		ret = under_exec(c, "INSERT OR REPLACE INTO under_persisted (segment_id, "
				 "oldest_ts_ns, evicted, persisted_ns) VALUES (?1, ?2, 0, ?3)",
				 v, 3, NULL, NULL);
	if (ret)
		sqlite_reason(c, ret, "catalog: the under-store's journal", err, errlen);
	return ret;
}

int tv_catalog_under_persisted(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns)
{
	const int64_t v[] = { (int64_t)segment_id, (int64_t)oldest_ts_ns,
			      (int64_t)tv_realtime_ns() };
	int own, changes = 0, ret = under_begin(c, &own);

	if (ret)
		return ret;
	ret = under_exec(c, "DELETE FROM under_pending WHERE segment_id = ?1 AND "
			 "state = 'queued'", v, 1, NULL, &changes);
	if (!ret && changes)
		ret = under_exec(c, "INSERT OR REPLACE INTO under_persisted (segment_id, "
				 "oldest_ts_ns, evicted, persisted_ns) VALUES (?1, ?2, 0, ?3)",
				 v, 3, NULL, NULL);
	ret = under_end(c, own, ret);
	return ret ? ret : changes ? 1 : 0;
}

int tv_catalog_under_deleting(struct tv_catalog *c, uint64_t segment_id, uint64_t oldest_ts_ns)
{
	const int64_t v[] = { (int64_t)segment_id };
	int own, ret = under_begin(c, &own);

	if (ret)
		return ret;
	ret = tv_catalog_under_pending_put(c, segment_id, oldest_ts_ns, TV_UNDER_DELETING);
	if (!ret)
		ret = under_exec(c, "DELETE FROM under_persisted WHERE segment_id = ?1", v, 1, NULL,
				 NULL);
	return under_end(c, own, ret);
}

/* T1's part (retire_one, inside its transaction): a retired segment that is in the bucket
 * (an under_persisted row) or queued for it gets a 'deleting' row, and loses its
 * under_persisted row; the caller deletes it from S3 after T1 (server/retention.c). */
static int under_retire(struct tv_catalog *c, uint64_t segment_id, int64_t now_ns)
{
	const int64_t v[] = { (int64_t)segment_id, now_ns };
	int ret;

	ret = under_exec(c, "INSERT OR REPLACE INTO under_pending (segment_id, oldest_ts_ns, "
			 "state, at_ns) SELECT segment_id, oldest_ts_ns, 'deleting', ?2 FROM "
			 "under_persisted WHERE segment_id = ?1 UNION ALL SELECT segment_id, "
			 "oldest_ts_ns, 'deleting', ?2 FROM under_pending WHERE segment_id = ?1 "
			 "AND state = 'queued'", v, 2, NULL, NULL);
	if (!ret)
		ret = under_exec(c, "DELETE FROM under_persisted WHERE segment_id = ?1", v, 1, NULL,
				 NULL);
	return ret;
}

struct pending_row {
	uint64_t segment_id, oldest_ts_ns;
	enum tv_under_pending state;
	int64_t at_ns;
};

int tv_catalog_under_pending_list(struct tv_catalog *c, tv_catalog_pending_cb cb, void *arg)
{
	struct pending_row *rows = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *st;
	int rc, ret = prepare(c, "SELECT segment_id, oldest_ts_ns, state, at_ns FROM "
			      "under_pending ORDER BY segment_id", &st);

	if (ret)
		return ret;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 2);

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct pending_row *p = realloc(rows, ncap * sizeof(*p));

			if (!p) {
				ret = -ENOMEM;
				break;
			}
			rows = p;
			cap = ncap;
		}
		rows[n] = (struct pending_row){
			.segment_id = (uint64_t)sqlite3_column_int64(st, 0),
			.oldest_ts_ns = (uint64_t)sqlite3_column_int64(st, 1),
			.state = s && !strcmp(s, "queued") ? TV_UNDER_QUEUED :
				 s && !strcmp(s, "uploading") ? TV_UNDER_UPLOADING :
								TV_UNDER_DELETING,
			.at_ns = sqlite3_column_int64(st, 3),
		};
		n++;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = last_errno(c);
	sqlite3_finalize(st);
	for (size_t i = 0; i < n && !ret; i++)
		ret = cb(rows[i].segment_id, rows[i].oldest_ts_ns, rows[i].state, rows[i].at_ns,
			 arg);
	free(rows);
	return ret;
}

int tv_catalog_under_counts(struct tv_catalog *c, uint64_t *pending, uint64_t *persisted)
{
	int64_t a = 0, b = 0;
	int ret = query_int(c, "SELECT COUNT(*) FROM under_pending", &a);

	if (!ret)
		ret = query_int(c, "SELECT COUNT(*) FROM under_persisted", &b);
	*pending = (uint64_t)a;
	*persisted = (uint64_t)b;
	return ret;
}
