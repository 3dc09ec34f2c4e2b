/* cmocka tests for the SQLite block catalog (server/catalog.c): time-range overlap edges
 * ([from, to) against inclusive block ranges), ordering, u64 round trips, deletes and commit
 * atomicity; segment ids: used once, deleted only with their writer's token; recovery's
 * functions (adopt keeps committed_ns, get, set_segment, replace, count, a segment's blocks);
 * and what open refuses as not a usable catalog (-EUCLEAN), leaving the file as it was:
 * garbage, a directory, another program's database, a schema we do not read, a damaged file,
 * a -wal without its database. Retention's functions: segments oldest first by their newest
 * block (ties by id) from the age index, the totals row the triggers keep (commit, group
 * rollback, replace, delete, retire), and retire / retired / retiring. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "proto/block_v3.h"
#include "server/catalog.h"

#define MAX_SEEN 32

struct fixture {
	char dir[64];
	char path[128];
	struct tv_catalog *c;
};

struct seen {
	uint64_t ids[MAX_SEEN];
	size_t n;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/tv-catalog-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	tv_catalog_close(f->c);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static int collect(const struct tv_catalog_block *b, void *arg)
{
	struct seen *s = arg;

	assert_true(s->n < MAX_SEEN);
	s->ids[s->n++] = b->block_id;
	return 0;
}

static struct tv_catalog_block blk(uint64_t id, uint64_t seg, uint64_t min_ts, uint64_t max_ts)
{
	return (struct tv_catalog_block){ .block_id = id, .segment_id = seg, .min_ts_ns = min_ts,
					  .max_ts_ns = max_ts, .record_count = 1, .bytes = 100 };
}

/* Commit the n blocks as segment b[0].segment_id, written with writer_token. */
static void commit_as(struct tv_catalog *c, uint64_t writer_token, struct tv_catalog_block *b,
		      size_t n)
{
	char err[256] = "";

	if (tv_catalog_commit_segment(c, b[0].segment_id, writer_token, b, n, err, sizeof(err)))
		fail_msg("commit: %s", err);
}

static void commit(struct tv_catalog *c, struct tv_catalog_block *b, size_t n)
{
	commit_as(c, 0, b, n);
}

static void overlap(struct tv_catalog *c, uint64_t from, uint64_t to, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	assert_int_equal(tv_catalog_overlap(c, from, to, collect, s), 0);
}

static void assert_seen(const struct seen *s, const uint64_t *want, size_t n)
{
	assert_int_equal(s->n, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(s->ids[i], want[i]);
}

/* Query [200, 300) against blocks on every side of both edges. */
static void test_overlap_edges_inclusive_from_exclusive_to(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = {
		blk(1, 1, 50, 199),  /* ends just before from: out */
		blk(2, 1, 50, 200),  /* ends exactly at from: in (from is inclusive) */
		blk(3, 1, 250, 260), /* inside */
		blk(4, 1, 300, 400), /* starts exactly at to: out (to is exclusive) */
		blk(5, 1, 299, 299), /* single record just below to: in */
		blk(6, 1, 100, 500), /* straddles both edges: in */
		blk(7, 1, 150, 250), /* straddles from: in */
		blk(8, 1, 280, 350), /* straddles to: in */
		blk(9, 1, 50, 250),  /* same min_ts as 2: ordered after it by block id */
	};
	const uint64_t want[] = { 2, 9, 6, 7, 3, 8, 5 };
	struct seen s;

	commit(f->c, b, sizeof(b) / sizeof(b[0]));
	overlap(f->c, 200, 300, &s);
	assert_seen(&s, want, sizeof(want) / sizeof(want[0]));
}

static void test_empty_range_returns_nothing(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(1, 1, 100, 500) };
	struct seen s;

	commit(f->c, b, 1);
	overlap(f->c, 200, 200, &s); /* from == to: empty even inside a block */
	assert_int_equal(s.n, 0);
	overlap(f->c, 300, 200, &s); /* inverted: empty */
	assert_int_equal(s.n, 0);
	overlap(f->c, 500, 501, &s); /* the one-ns range at max_ts: the block */
	assert_int_equal(s.n, 1);
	overlap(f->c, 501, 600, &s);
	assert_int_equal(s.n, 0);
}

/* Bounds above 2^63-1 must not wrap when stored as int64. */
static void test_bounds_beyond_int64(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(1, 1, 10, 20), blk(2, 1, INT64_MAX - 5, INT64_MAX) };
	const uint64_t both[] = { 1, 2 }, last[] = { 2 };
	struct seen s;

	commit(f->c, b, 2);
	overlap(f->c, 0, UINT64_MAX, &s);
	assert_seen(&s, both, 2);
	overlap(f->c, INT64_MAX, UINT64_MAX, &s);
	assert_seen(&s, last, 1);
	overlap(f->c, (uint64_t)INT64_MAX + 1, UINT64_MAX, &s);
	assert_int_equal(s.n, 0);
}

static void test_u64_ids_round_trip(void **state)
{
	struct fixture *f = *state;
	const uint64_t big = 0xfedcba9876543210ull;
	struct tv_catalog_block b[] = { blk(big, UINT64_MAX, 1, 2) };
	struct seen s = { 0 };

	commit(f->c, b, 1);
	assert_int_equal(tv_catalog_contains(f->c, big), 1);
	assert_int_equal(tv_catalog_contains(f->c, big - 1), 0);
	assert_int_equal(tv_catalog_list(f->c, collect, &s), 0);
	assert_seen(&s, &big, 1);
}

static void test_segment_blocks(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b1[] = { blk(12, 1, 30, 40), blk(11, 1, 10, 20) };
	struct tv_catalog_block b2[] = { blk(21, 2, 15, 35) };
	const uint64_t one[] = { 11, 12 }, two[] = { 21 };
	struct seen s = { 0 };

	commit(f->c, b1, 2);
	commit(f->c, b2, 1);
	assert_int_equal(tv_catalog_segment_blocks(f->c, 1, collect, &s), 0);
	assert_seen(&s, one, 2);
	memset(&s, 0, sizeof(s));
	assert_int_equal(tv_catalog_segment_blocks(f->c, 2, collect, &s), 0);
	assert_seen(&s, two, 1);
	memset(&s, 0, sizeof(s));
	assert_int_equal(tv_catalog_segment_blocks(f->c, 3, collect, &s), 0);
	assert_int_equal(s.n, 0);
}

static void test_delete_by_ids_reports_only_existing(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(1, 1, 10, 20), blk(2, 1, 30, 40) };
	const uint64_t del[] = { 2, 99 };
	uint64_t *ids = NULL;
	size_t n = 0;

	commit(f->c, b, 2);
	assert_int_equal(tv_catalog_delete_ids(f->c, del, 2, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 2);
	free(ids);
	assert_int_equal(tv_catalog_contains(f->c, 1), 1);
	assert_int_equal(tv_catalog_contains(f->c, 2), 0);
}

/* A commit that fails on its second row must leave its first row out too. */
static void test_failed_commit_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block first[] = { blk(10, 1, 10, 20) };
	struct tv_catalog_block dup[] = { blk(12, 2, 10, 20), blk(10, 2, 30, 40) };
	struct tv_catalog_block range[] = { blk(13, 3, 1, 2), blk(14, 3, 5, (uint64_t)INT64_MAX + 1) };
	const uint64_t only[] = { 10 };
	char err[256] = "";
	struct seen s = { 0 };

	commit(f->c, first, 1);
	assert_int_equal(tv_catalog_commit_segment(f->c, 2, 0, dup, 2, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "000000000000000a"));
	assert_int_equal(tv_catalog_contains(f->c, 12), 0);
	assert_int_equal(tv_catalog_commit_segment(f->c, 3, 0, range, 2, err, sizeof(err)), -ERANGE);
	assert_int_equal(tv_catalog_contains(f->c, 13), 0);
	/* neither failed commit used its segment id up */
	assert_int_equal(tv_catalog_segment_open(f->c, 2, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_segment_open(f->c, 3, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_list(f->c, collect, &s), 0);
	assert_seen(&s, only, 1);
}

static void test_rows_survive_reopen(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(5, 1, 10, 20) };
	char err[256];
	struct seen s;

	commit(f->c, b, 1);
	tv_catalog_close(f->c);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
	overlap(f->c, 20, 21, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.ids[0], 5);
}

static int take_first(const struct tv_catalog_block *b, void *arg)
{
	*(struct tv_catalog_block *)arg = *b;
	return 0;
}

static void test_loss_columns_round_trip(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b = blk(0xfeedull << 48, 1, 10, 20), got = {0};

	b.loss = (struct tv_block_loss){ .ring_full = 1, .map_full = 2, .parser = 3,
					 .cache = 4, .failed = UINT64_MAX };
	commit(f->c, &b, 1);
	assert_int_equal(tv_catalog_overlap(f->c, 0, 100, take_first, &got), 0);
	assert_memory_equal(&got.loss, &b.loss, sizeof(b.loss));
}

/* A catalog.db of the first schema (no loss columns) gains them on open, rows intact. */
static void test_old_catalog_is_migrated(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b = blk(9, 2, 50, 60), got = {0};
	sqlite3 *db;
	char err[256] = "";

	tv_catalog_close(f->c);
	f->c = NULL;
	unlink(f->path);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "CREATE TABLE blocks (block_id INTEGER PRIMARY KEY,"
				      " segment_id INTEGER NOT NULL, min_ts_ns INTEGER NOT NULL,"
				      " max_ts_ns INTEGER NOT NULL, record_count INTEGER NOT NULL,"
				      " bytes INTEGER NOT NULL, committed_ns INTEGER NOT NULL);"
				      "INSERT INTO blocks VALUES (7, 1, 10, 20, 5, 100, 1);",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	if (tv_catalog_open(&f->c, f->path, err, sizeof(err)))
		fail_msg("open of an old catalog failed: %s", err);
	assert_int_equal(tv_catalog_overlap(f->c, 0, 30, take_first, &got), 0);
	assert_int_equal(got.block_id, 7);
	assert_int_equal(got.record_count, 5);
	assert_int_equal(got.loss.ring_full + got.loss.failed, 0);
	b.loss.parser = 42;
	commit(f->c, &b, 1);
	assert_int_equal(tv_catalog_overlap(f->c, 50, 51, take_first, &got), 0);
	assert_int_equal(got.loss.parser, 42);
	/* the old rows' segment is a used id with an unknown writer: never opened again, and
	 * removable by block ids only */
	assert_int_equal(tv_catalog_segment_open(f->c, 1, 5, err, sizeof(err)), -EEXIST);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 1, 0, err, sizeof(err)), -EPERM);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 1, 5, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "block ids"));
	/* and a second open finds the columns there */
	tv_catalog_close(f->c);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
}

/* OPEN_SEGMENT's rule: an id committed, deleted or open on another stream is taken, also after
 * a restart; an id whose stream ended without a commit (nothing kept) is free again. */
static void test_segment_ids_are_used_once(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(1, 0x51, 10, 20) };
	const uint64_t one[] = { 1 };
	uint64_t *ids = NULL;
	char err[256] = "";
	size_t n = 0;

	assert_int_equal(tv_catalog_segment_open(f->c, 0x51, 7, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x51, 8, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "segment 0000000000000051 is being written by another stream"));
	commit_as(f->c, 7, b, 1);
	tv_catalog_segment_close(f->c, 0x51);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x51, 7, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "segment 0000000000000051 was committed already"));
	/* a second commit of the id is refused whole, its blocks too */
	struct tv_catalog_block again[] = { blk(2, 0x51, 10, 20) };
	assert_int_equal(tv_catalog_commit_segment(f->c, 0x51, 7, again, 1, err, sizeof(err)),
			 -EEXIST);
	assert_int_equal(tv_catalog_contains(f->c, 2), 0);
	assert_int_equal(tv_catalog_delete_segment(f->c, 0x51, 7, one, 1, &ids, &n), 0);
	assert_int_equal(n, 1);
	free(ids);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x51, 7, err, sizeof(err)), -EEXIST);
	assert_non_null(strstr(err, "was deleted already"));
	/* abandoned: never committed, so free again */
	assert_int_equal(tv_catalog_segment_open(f->c, 0x52, 7, err, sizeof(err)), 0);
	tv_catalog_segment_close(f->c, 0x52);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x52, 9, err, sizeof(err)), 0);
	tv_catalog_segment_close(f->c, 0x52);
	/* committed and deleted ids stay taken across a restart */
	tv_catalog_close(f->c);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x51, 7, err, sizeof(err)), -EEXIST);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x52, 7, err, sizeof(err)), 0);
}

/* Delete's rule: only the token of the segment's OPEN_SEGMENT removes it, whether committed,
 * deleted or being written; an unknown id may be deleted (nothing there) and is then taken. */
static void test_delete_needs_the_writer_token(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[] = { blk(1, 0x61, 10, 20) };
	struct tv_catalog_block legacy[] = { blk(2, 0x62, 10, 20) };
	uint64_t *ids = NULL;
	char err[256] = "";
	size_t n = 0;

	commit_as(f->c, 0x7070, b, 1);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x61, 0, err, sizeof(err)), -EPERM);
	assert_non_null(strstr(err, "needs the writer_token of its OPEN_SEGMENT"));
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x61, 0x7071, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "segment 0000000000000061 is committed by another writer"));
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x61, 0x7070, err, sizeof(err)), 0);
	/* a segment committed without a token: no Delete{segment_id} can match it */
	commit_as(f->c, 0, legacy, 1);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x62, 0, err, sizeof(err)), -EPERM);
	/* being written: the stream's token decides */
	assert_int_equal(tv_catalog_segment_open(f->c, 0x63, 0x9090, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x63, 0x9091, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "is being written"));
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x63, 0x9090, err, sizeof(err)), 0);
	tv_catalog_segment_close(f->c, 0x63);
	/* unknown: nothing to protect; a Delete with a token then takes the id for good */
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x64, 0, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_delete_segment(f->c, 0x64, 0x1234, NULL, 0, &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	assert_int_equal(tv_catalog_segment_open(f->c, 0x64, 0x1234, err, sizeof(err)), -EEXIST);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x64, 0x1234, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 0x64, 0x4321, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "was deleted"));
}

static void test_recovery_functions(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block a[] = { blk(31, 7, 10, 20), blk(32, 7, 30, 40) }, got, dup;
	char err[256] = "";
	uint64_t n = 0;

	assert_int_equal(tv_catalog_is_new(f->c), 1);
	a[0].committed_ns = 1234;
	a[1].committed_ns = 5678;
	assert_int_equal(tv_catalog_adopt(f->c, a, 2, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_count(f->c, &n), 0);
	assert_int_equal(n, 2);
	/* an adopted block's segment id is taken like a committed one, and has no writer token */
	assert_int_equal(tv_catalog_segment_open(f->c, 7, 1, err, sizeof(err)), -EEXIST);
	assert_int_equal(tv_catalog_segment_may_delete(f->c, 7, 1, err, sizeof(err)), -EPERM);
	assert_int_equal(tv_catalog_get(f->c, 31, &got), 1);
	assert_int_equal(got.committed_ns, 1234); /* adopt keeps it; commit sets it to now */
	assert_int_equal(got.segment_id, 7);
	assert_int_equal(tv_catalog_get(f->c, 33, &got), 0);
	assert_int_equal(tv_catalog_set_segment(f->c, 31, 9), 0);
	assert_int_equal(tv_catalog_get(f->c, 31, &got), 1);
	assert_int_equal(got.segment_id, 9);
	assert_int_equal(tv_catalog_set_segment(f->c, 33, 9), -ENOENT);
	got.max_ts_ns = 25;
	got.record_count = 3;
	assert_int_equal(tv_catalog_replace(f->c, &got), 0);
	assert_int_equal(tv_catalog_get(f->c, 31, &dup), 1);
	assert_true(dup.block_id == 31 && dup.segment_id == 9 && dup.min_ts_ns == 10 &&
		    dup.max_ts_ns == 25 && dup.record_count == 3 && dup.committed_ns == 1234);
	dup = blk(32, 8, 1, 2);
	assert_int_equal(tv_catalog_adopt(f->c, &dup, 1, err, sizeof(err)), -EEXIST);
	/* a reopened catalog with rows is not new */
	tv_catalog_close(f->c);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_is_new(f->c), 0);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static void read_bytes(const char *path, char *buf, size_t len)
{
	FILE *fp = fopen(path, "r");

	assert_non_null(fp);
	buf[fread(buf, 1, len - 1, fp)] = '\0';
	fclose(fp);
}

/* open must answer -EUCLEAN and leave path as it was. */
static void expect_unusable(const char *path, const char *why)
{
	struct tv_catalog *c = NULL;
	char err[512] = "";

	assert_int_equal(tv_catalog_open(&c, path, err, sizeof(err)), -EUCLEAN);
	assert_null(c);
	if (!strstr(err, why))
		fail_msg("open of %s: %s; want '%s' in it", path, err, why);
}

static void sql(const char *path, const char *text)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, text, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_unusable_files_are_euclean(void **state)
{
	struct fixture *f = *state;
	static const char garbage[] = "this is not a database, it is a note of 4096 bytes...";
	char path[192], buf[128];

	tv_catalog_close(f->c);
	f->c = NULL;
	unlink(f->path);
	write_bytes(f->path, garbage, sizeof(garbage));
	expect_unusable(f->path, "is not a SQLite database");
	read_bytes(f->path, buf, sizeof(buf));
	assert_string_equal(buf, garbage); /* untouched */
	unlink(f->path);
	assert_int_equal(mkdir(f->path, 0700), 0);
	expect_unusable(f->path, "is not a regular file (a directory)");
	rmdir(f->path);
	assert_int_equal(symlink("/etc/hostname", f->path), 0);
	expect_unusable(f->path, "(a symlink)");
	unlink(f->path);
	sql(f->path, "PRAGMA application_id = 1234; CREATE TABLE blocks (block_id INTEGER "
		     "PRIMARY KEY, segment_id, min_ts_ns, max_ts_ns, record_count, bytes, "
		     "committed_ns)");
	expect_unusable(f->path, "belongs to another program (SQLite application_id 0x000004d2");
	unlink(f->path);
	sql(f->path, "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)");
	expect_unusable(f->path, "no blocks table, 1 other tables");
	unlink(f->path);
	sql(f->path, "CREATE TABLE blocks (block_id INTEGER PRIMARY KEY, size INTEGER)");
	expect_unusable(f->path, "its blocks table has no column segment_id");
	unlink(f->path);
	sql(f->path, "CREATE TABLE blocks (block_id INTEGER, segment_id, min_ts_ns, max_ts_ns, "
		     "record_count, bytes, committed_ns)");
	expect_unusable(f->path, "block_id is not the primary key");
	unlink(f->path);
	/* a WAL left without its database would be replayed into a new one */
	snprintf(path, sizeof(path), "%s-wal", f->path);
	write_bytes(path, garbage, sizeof(garbage));
	expect_unusable(f->path, "catalog.db-wal is left over without its database (");
	write_bytes(f->path, "", 0);
	expect_unusable(f->path, "is empty)");
	unlink(path);
	/* an empty file alone is a new catalog */
	assert_int_equal(tv_catalog_open(&f->c, f->path, buf, sizeof(buf)), 0);
	assert_int_equal(tv_catalog_is_new(f->c), 1);
}

/* A page of the blocks table overwritten: quick_check finds it at open. */
static void test_damaged_catalog_is_euclean(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[64];
	char err[256] = "";
	FILE *fp;
	long size;

	for (size_t i = 0; i < 64; i++)
		b[i] = blk(100 + i, 1, 10 * i, 10 * i + 5);
	commit(f->c, b, 64);
	tv_catalog_close(f->c); /* the last close checkpoints the WAL into catalog.db */
	f->c = NULL;
	fp = fopen(f->path, "r+");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	assert_true(size >= 3 * 4096);
	fseek(fp, 2 * 4096 + 8, SEEK_SET); /* inside a b-tree page, past its header */
	for (int i = 0; i < 512; i++)
		fputc(0xA5, fp);
	fclose(fp);
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), -EUCLEAN);
	assert_null(f->c);
	if (!strstr(err, "is damaged (SQLite quick_check: "))
		fail_msg("want quick_check's finding, got: %s", err);
}

struct ages {
	struct tv_catalog_segment s[MAX_SEEN];
	size_t n, stop_after;
};

static int collect_age(const struct tv_catalog_segment *seg, void *arg)
{
	struct ages *a = arg;

	assert_true(a->n < MAX_SEEN);
	a->s[a->n++] = *seg;
	return a->stop_after && a->n == a->stop_after;
}

static void assert_totals(struct tv_catalog *c, uint64_t blocks, uint64_t bytes)
{
	uint64_t nb, nbytes;

	assert_int_equal(tv_catalog_size(c, &nb, &nbytes), 0);
	assert_int_equal(nb, blocks);
	assert_int_equal(nbytes, bytes);
}

static int count_retired(uint64_t segment_id, uint64_t block_id, uint64_t bytes,
			 uint64_t min_ts_ns, void *arg)
{
	uint64_t *n = arg;

	(void)segment_id;
	(void)block_id;
	(void)min_ts_ns;
	n[0]++;
	n[1] += bytes;
	return 0;
}

static int refuse_retired(uint64_t segment_id, uint64_t block_id, uint64_t bytes,
			  uint64_t min_ts_ns, void *arg)
{
	(void)min_ts_ns;
	(void)segment_id;
	(void)block_id;
	(void)bytes;
	(void)arg;
	return -ECANCELED;
}

static void test_segments_by_age_and_totals(void **state)
{
	struct fixture *f = *state;
	/* segment 0xA spans old and new blocks: its newest (500) places it after 0xB (300), and
	 * before 0xC (newest 500 too: the smaller id first), whose oldest block is older */
	struct tv_catalog_block a[] = { blk(1, 0xA, 0, 10), blk(2, 0xA, 490, 500) };
	struct tv_catalog_block b[] = { blk(3, 0xB, 200, 300) };
	struct tv_catalog_block cc[] = { blk(4, 0xC, 400, 500), blk(5, 0xC, 450, 460),
					 blk(6, 0xC, 100, 120) };
	struct tv_catalog_block dup[] = { blk(3, 0xD, 0, 1) }; /* block 3 exists: fails */
	struct tv_catalog_block rep = blk(3, 0xB, 200, 300);
	struct ages ag = { .n = 0 };
	uint64_t segs[] = { 0xB, 0xA }, got[2] = { 0, 0 }, *ids = NULL;
	size_t n = 0;
	char err[256];

	assert_totals(f->c, 0, 0);
	commit(f->c, a, 2);
	commit(f->c, b, 1);
	commit(f->c, cc, 3);
	assert_totals(f->c, 6, 600);
	assert_int_equal(tv_catalog_segments_by_age(f->c, collect_age, &ag), 0);
	assert_int_equal(ag.n, 3);
	assert_int_equal(ag.s[0].segment_id, 0xB);
	assert_int_equal(ag.s[0].newest_ts_ns, 300);
	assert_int_equal(ag.s[1].segment_id, 0xA);
	assert_int_equal(ag.s[1].newest_ts_ns, 500);
	assert_int_equal(ag.s[1].blocks, 2);
	assert_int_equal(ag.s[1].bytes, 200);
	assert_int_equal(ag.s[2].segment_id, 0xC);
	assert_int_equal(ag.s[2].blocks, 3);
	/* stops when the callback says so, and returns what it said */
	ag = (struct ages){ .stop_after = 1 };
	assert_int_equal(tv_catalog_segments_by_age(f->c, collect_age, &ag), 1);
	assert_int_equal(ag.n, 1);

	/* a failed group member and a failed commit take their totals back with their rows */
	assert_int_equal(tv_catalog_group_begin(f->c, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add(f->c, 0xD, 0, dup, 1, err, sizeof(err)), -EEXIST);
	assert_int_equal(tv_catalog_group_commit(f->c, err, sizeof(err)), 0);
	assert_totals(f->c, 6, 600);
	/* a replace (scrub) counts the new row only */
	rep.bytes = 150;
	assert_int_equal(tv_catalog_replace(f->c, &rep), 0);
	assert_totals(f->c, 6, 650);
	assert_int_equal(tv_catalog_delete_ids(f->c, (uint64_t[]){ 6 }, 1, &ids, &n), 0);
	free(ids);
	assert_totals(f->c, 5, 550);

	/* retire: a refusal of the callback rolls everything back */
	assert_int_equal(tv_catalog_retire(f->c, segs, 2, 0, NULL, 0, refuse_retired, NULL), -ECANCELED);
	assert_totals(f->c, 5, 550);
	assert_int_equal(tv_catalog_retiring(f->c, &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	assert_int_equal(tv_catalog_retire(f->c, segs, 2, 0, NULL, 0, count_retired, got), 0);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], 350);
	assert_totals(f->c, 2, 200);
	assert_int_equal(tv_catalog_retiring(f->c, &ids, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ids[0], 0xA);
	assert_int_equal(ids[1], 0xB);
	free(ids);
	/* their ids are used up */
	assert_int_equal(tv_catalog_segment_open(f->c, 0xA, 0, err, sizeof(err)), -EEXIST);
	/* a later T1 (of nothing here) takes an earlier T2 along: 0xA's retiring row goes */
	assert_int_equal(tv_catalog_retire(f->c, NULL, 0, 0, (uint64_t[]){ 0xA }, 1, count_retired,
					   got), 0);
	assert_int_equal(tv_catalog_retiring(f->c, &ids, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(ids[0], 0xB);
	free(ids);
	assert_int_equal(tv_catalog_retired(f->c, segs, 2), 0);
	assert_int_equal(tv_catalog_retiring(f->c, &ids, &n), 0);
	assert_int_equal(n, 0);
	free(ids);
	ag = (struct ages){ .n = 0 };
	assert_int_equal(tv_catalog_segments_by_age(f->c, collect_age, &ag), 0);
	assert_int_equal(ag.n, 1);
	assert_int_equal(ag.s[0].segment_id, 0xC);

	/* the totals survive a reopen, and a catalog without them gets them from its rows */
	tv_catalog_close(f->c);
	sql(f->path, "DROP TABLE totals");
	assert_int_equal(tv_catalog_open(&f->c, f->path, err, sizeof(err)), 0);
	assert_totals(f->c, 2, 200);
}

/* The copies of trace-id filters (catalog.h, "Trace-id filters"): absent -> -ENOENT, a copy
 * answers as the filter does (same bits read 32 bytes at a time), an empty copy holds no id,
 * none is stored for a block without a row, --scrub's check drops one that differs, and a
 * copy goes with its blocks row (a delete, a replace). */
static void test_trace_filter_copies(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[2] = { blk(0x71, 0x70, 10, 20), blk(0x72, 0x70, 30, 40) };
	size_t bytes = tv_v3_bloom_bytes_for(300);
	uint8_t *bloom = calloc(1, bytes);
	char ids[300][33], other[33];
	size_t yes = 0;
	uint64_t *gone = NULL;
	size_t ngone = 0;

	assert_non_null(bloom);
	commit(f->c, b, 2);
	for (int i = 0; i < 300; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%032x", i * 104729 + 5);
		tv_v3_bloom_add(bloom, bytes, tv_v3_trace_hash(ids[i]));
	}
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[0], 1, 33), -ENOENT);
	assert_int_equal(tv_catalog_trace_filter_put(f->c, 0x71, bloom, bytes), 0);
	assert_int_equal(tv_catalog_trace_filter_put(f->c, 0x72, NULL, 0), 0);
	assert_int_equal(tv_catalog_trace_filter_put(f->c, 0x99, bloom, bytes), 0); /* no row */
	assert_int_equal(tv_catalog_trace_filter_put(f->c, 0x71, bloom, 33), -EINVAL);
	for (int i = 0; i < 300; i++) /* every id of it, in upper case too */
		assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[i], 1, 33), 1);
	memcpy(other, ids[7], sizeof(other));
	other[3] = 'A';
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, other, 1, 33),
			 tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(other)));
	for (int i = 0; i < 2000; i++) { /* the copy says what the filter says */
		char id[33];

		snprintf(id, sizeof(id), "%032x", 900000001 + i);
		yes += (size_t)tv_catalog_trace_filter_test(f->c, 0x71, id, 1, 33);
		assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, id, 1, 33),
				 tv_v3_bloom_test(bloom, bytes, tv_v3_trace_hash(id)));
	}
	assert_true(yes < 100);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[0], 300, 33), 1);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x72, ids[0], 300, 33), 0);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x99, ids[0], 1, 33), -ENOENT);
	tv_catalog_trace_filter_release(f->c);
	/* --scrub's check: the same copy stays, a different one is dropped */
	assert_int_equal(tv_catalog_trace_filter_check(f->c, 0x71, bloom, bytes), 0);
	assert_int_equal(tv_catalog_trace_filter_check(f->c, 0x99, bloom, bytes), 0);
	bloom[bytes - 1] ^= 1;
	assert_int_equal(tv_catalog_trace_filter_check(f->c, 0x71, bloom, bytes), 1);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[0], 1, 33), -ENOENT);
	assert_int_equal(tv_catalog_trace_filter_check(f->c, 0x72, bloom, bytes), 1);
	/* a copy goes with its row */
	assert_int_equal(tv_catalog_trace_filter_put(f->c, 0x71, bloom, bytes), 0);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[0], 1, 33), 1);
	assert_int_equal(tv_catalog_delete_ids(f->c, (uint64_t[]){ 0x71 }, 1, &gone, &ngone), 0);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x71, ids[0], 1, 33), -ENOENT);
	tv_catalog_trace_filter_release(f->c);
	free(gone);
	free(bloom);
}

/* COMMIT's copies (tv_catalog_group_add_filter): stored only inside a group transaction, after
 * the block's row, durable with it (the group's COMMIT), gone with it when the group rolls
 * back; none for a block without a row. */
static void test_trace_filter_copies_at_commit(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[2] = { blk(0x81, 0x80, 10, 20), blk(0x82, 0x80, 30, 40) };
	struct tv_catalog_block r = blk(0x91, 0x90, 50, 60);
	size_t bytes = tv_v3_bloom_bytes_for(50);
	uint8_t *bloom = calloc(1, bytes);
	const char *id = "0123456789abcdef0123456789abcdef";
	char err[200];

	assert_non_null(bloom);
	tv_v3_bloom_add(bloom, bytes, tv_v3_trace_hash(id));
	/* outside a group it would not share the rows' fate */
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x81, bloom, bytes), -EIO);
	assert_int_equal(tv_catalog_group_begin(f->c, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add(f->c, 0x80, 0, b, 2, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x81, bloom, bytes), 0);
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x82, NULL, 0), 0);
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x83, bloom, bytes), 0); /* no row */
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x81, bloom, 31), -EINVAL);
	assert_int_equal(tv_catalog_group_commit(f->c, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x81, id, 1, 33), 1);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x82, id, 1, 33), 0);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x83, id, 1, 33), -ENOENT);
	/* a group rolled back takes its copies with its rows */
	assert_int_equal(tv_catalog_group_begin(f->c, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add(f->c, 0x90, 0, &r, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add_filter(f->c, 0x91, bloom, bytes), 0);
	tv_catalog_group_rollback(f->c);
	assert_int_equal(tv_catalog_trace_filter_test(f->c, 0x91, id, 1, 33), -ENOENT);
	tv_catalog_trace_filter_release(f->c);
	free(bloom);
}

/* ---- the under-store's journal (catalog.h, server/under/UNDERSTORE.md "Catalog state") ---- */

struct pending_seen {
	uint64_t ids[MAX_SEEN], oldest[MAX_SEEN];
	enum tv_under_pending states[MAX_SEEN];
	size_t n;
};

static int collect_pending(uint64_t segment_id, uint64_t oldest_ts_ns,
			   enum tv_under_pending state, int64_t at_ns, void *arg)
{
	struct pending_seen *s = arg;

	assert_true(s->n < MAX_SEEN);
	assert_true(at_ns > 0);
	s->ids[s->n] = segment_id;
	s->oldest[s->n] = oldest_ts_ns;
	s->states[s->n++] = state;
	return 0;
}

static int retired_ok(uint64_t segment_id, uint64_t block_id, uint64_t bytes, uint64_t min_ts_ns,
		      void *arg)
{
	(void)segment_id;
	(void)block_id;
	(void)bytes;
	(void)min_ts_ns;
	(void)arg;
	return 0;
}

/* The journal's rows, by segment id: exactly n of them, with these ids and states. */
static void assert_pending(struct tv_catalog *c, const uint64_t *ids,
			   const enum tv_under_pending *states, size_t n)
{
	struct pending_seen s = { .n = 0 };

	assert_int_equal(tv_catalog_under_pending_list(c, collect_pending, &s), 0);
	assert_int_equal(s.n, n);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(s.ids[i], ids[i]);
		assert_int_equal(s.states[i], states[i]);
	}
}

static void assert_under_counts(struct tv_catalog *c, uint64_t pending, uint64_t persisted)
{
	uint64_t p, q;

	assert_int_equal(tv_catalog_under_counts(c, &p, &q), 0);
	assert_int_equal(p, pending);
	assert_int_equal(q, persisted);
}

/* Commit segment b[0].segment_id in a group with its journal change (queued: async-through). */
static void commit_under(struct tv_catalog *c, struct tv_catalog_block *b, size_t n, int queued)
{
	char err[256] = "";

	assert_int_equal(tv_catalog_group_begin(c, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add(c, b[0].segment_id, 0, b, n, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_add_under(c, b[0].segment_id, b[0].min_ts_ns, queued,
						    err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_group_commit(c, err, sizeof(err)), 0);
}

static void test_under_journal_states(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block a[] = { blk(1, 0xA, 100, 110) };
	struct tv_catalog_block b[] = { blk(2, 0xB, 200, 210), blk(3, 0xB, 150, 160) };
	struct tv_catalog_block cc[] = { blk(4, 0xC, 300, 310) };
	struct tv_catalog_block local[] = { blk(5, 0xF, 400, 410) };
	struct pending_seen s = { .n = 0 };
	char err[256];

	/* cache-through: 'uploading' before the first PUT; the COMMIT swaps it for persisted */
	assert_int_equal(tv_catalog_under_pending_put(f->c, 0xA, 100, TV_UNDER_UPLOADING), 0);
	assert_pending(f->c, (uint64_t[]){ 0xA }, (enum tv_under_pending[]){ TV_UNDER_UPLOADING },
		       1);
	assert_int_equal(tv_catalog_under_pending_list(f->c, collect_pending, &s), 0);
	assert_int_equal(s.oldest[0], 100);
	commit_under(f->c, a, 1, 0);
	assert_under_counts(f->c, 0, 1);

	/* async-through: 'queued' at COMMIT, persisted once uploaded, and only once */
	commit_under(f->c, b, 2, 1);
	commit_under(f->c, cc, 1, 1);
	assert_pending(f->c, (uint64_t[]){ 0xB, 0xC },
		       (enum tv_under_pending[]){ TV_UNDER_QUEUED, TV_UNDER_QUEUED }, 2);
	assert_int_equal(tv_catalog_under_persisted(f->c, 0xB, 150), 1);
	assert_int_equal(tv_catalog_under_persisted(f->c, 0xB, 150), 0);
	assert_under_counts(f->c, 1, 2);
	/* a confirmed delete does not settle a 'queued' row */
	assert_int_equal(tv_catalog_under_settled(f->c, 0xC, INT64_MAX), 0);
	assert_under_counts(f->c, 1, 2);

	/* T1: a segment in the bucket (0xA, 0xB) or queued (0xC) gets 'deleting' and loses its
	 * persisted row; one never in the bucket (0xF) gets nothing */
	commit(f->c, local, 1);
	assert_int_equal(tv_catalog_retire(f->c, (uint64_t[]){ 0xA, 0xC, 0xF }, 3, 0, NULL, 0,
					   retired_ok, NULL), 0);
	assert_pending(f->c, (uint64_t[]){ 0xA, 0xC },
		       (enum tv_under_pending[]){ TV_UNDER_DELETING, TV_UNDER_DELETING }, 2);
	assert_under_counts(f->c, 2, 1);
	/* an upload that ends after the Delete inserts nothing */
	assert_int_equal(tv_catalog_under_persisted(f->c, 0xC, 300), 0);
	assert_under_counts(f->c, 2, 1);
	/* the deletes confirmed: the rows go */
	/* a delete submitted before the row was written does not cover it (a later attempt) */
	assert_int_equal(tv_catalog_under_settled(f->c, 0xA, 1), 0);
	assert_under_counts(f->c, 2, 1);
	assert_int_equal(tv_catalog_under_settled(f->c, 0xA, INT64_MAX), 0);
	assert_int_equal(tv_catalog_under_settled(f->c, 0xC, INT64_MAX), 0);
	assert_under_counts(f->c, 0, 1);

	/* a cache-through segment given up after its manifest: 'deleting', persisted row gone */
	assert_int_equal(tv_catalog_under_deleting(f->c, 0xB, 150), 0);
	assert_pending(f->c, (uint64_t[]){ 0xB }, (enum tv_under_pending[]){ TV_UNDER_DELETING },
		       1);
	assert_under_counts(f->c, 1, 0);
	assert_int_equal(tv_catalog_under_pending_drop(f->c, 0xB), 0);
	assert_under_counts(f->c, 0, 0);
	/* outside a group the group's journal call refuses */
	assert_int_equal(tv_catalog_group_add_under(f->c, 0xB, 150, 0, err, sizeof(err)), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_overlap_edges_inclusive_from_exclusive_to, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_empty_range_returns_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds_beyond_int64, setup, teardown),
		cmocka_unit_test_setup_teardown(test_u64_ids_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recovery_functions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segments_by_age_and_totals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unusable_files_are_euclean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_catalog_is_euclean, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_by_ids_reports_only_existing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rows_survive_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trace_filter_copies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_trace_filter_copies_at_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loss_columns_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_old_catalog_is_migrated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_ids_are_used_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_needs_the_writer_token, setup, teardown),
		cmocka_unit_test_setup_teardown(test_under_journal_states, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
