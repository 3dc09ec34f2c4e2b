/* cmocka tests for the catalog's merge of a segment from the under-store's bucket
 * (tv_catalog_rebuild_add_segment, server/catalog.h; UNDERSTORE.md "Rebuild from the bucket"):
 * a new segment gets its blocks rows, a segments row with token 0 and an under_persisted row
 * marked evicted; the same segment again is present (nothing changed); a segment committed
 * here gets only an under_persisted row (not evicted), its rows and token untouched; other
 * blocks under a committed id, a block id of another segment, and a deleted id change
 * nothing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "server/catalog.h"

#define NOW_NS 1764000123000000000ll

struct fixture {
	char dir[64];
	char path[128];
	struct tv_catalog *c;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/tv-catalog-rebuild-XXXXXX");
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

/* block i of segment sid, as the bucket's manifest and header say it */
static struct tv_catalog_block blk(uint64_t sid, uint64_t id, uint64_t ts)
{
	return (struct tv_catalog_block){ .block_id = id, .segment_id = sid, .min_ts_ns = ts,
					  .max_ts_ns = ts + 9, .record_count = 10,
					  .bytes = 1000 + id % 100, .loss = { .ring_full = 3 },
					  .raw_bytes = 4000 };
}

/* one integer from SQL on the catalog file (a second connection: what is committed) */
static int64_t q(struct fixture *f, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void test_new_segment_added_evicted(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[2] = { blk(0x51, 0xb2, 100), blk(0x51, 0xb1, 90) }, got;
	char err[256];

	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x51, 90, b, 2, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_ADDED);
	assert_int_equal(tv_catalog_get(f->c, 0xb1, &got), 1);
	assert_int_equal(got.segment_id, 0x51);
	assert_int_equal(got.committed_ns, NOW_NS);
	assert_int_equal(got.loss.ring_full, 3);
	assert_int_equal(got.raw_bytes, 4000);
	assert_int_equal(q(f, "SELECT count(*) FROM blocks WHERE segment_id = 81"), 2);
	assert_int_equal(q(f, "SELECT writer_token FROM segments WHERE segment_id = 81 AND "
			      "state = 'committed'"), 0);
	assert_int_equal(q(f, "SELECT evicted FROM under_persisted WHERE segment_id = 81 AND "
			      "oldest_ts_ns = 90"), 1);
	assert_int_equal(q(f, "SELECT bytes FROM totals"), 1000 + 0xb1 % 100 + 1000 + 0xb2 % 100);
	/* again: present, nothing changed */
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x51, 90, b, 2, NOW_NS + 1, err,
							sizeof(err)), TV_CATALOG_REBUILD_PRESENT);
	assert_int_equal(tv_catalog_get(f->c, 0xb1, &got), 1);
	assert_int_equal(got.committed_ns, NOW_NS);
	assert_int_equal(q(f, "SELECT evicted FROM under_persisted WHERE segment_id = 81"), 1);
}

static void test_local_segment_gets_persisted_row(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[1] = { blk(0x52, 0xc1, 200) }, same[1] = { blk(0x52, 0xc1, 200) };
	char err[256];

	assert_int_equal(tv_catalog_commit_segment(f->c, 0x52, 77, b, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x52, 200, same, 1, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_PRESENT);
	assert_int_equal(q(f, "SELECT evicted FROM under_persisted WHERE segment_id = 82"), 0);
	assert_int_equal(q(f, "SELECT writer_token FROM segments WHERE segment_id = 82"), 77);
	assert_int_equal(q(f, "SELECT committed_ns FROM blocks WHERE block_id = 193"),
			 b[0].committed_ns);
}

static void test_conflicts_change_nothing(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[1] = { blk(0x53, 0xd1, 300) };
	struct tv_catalog_block other[1] = { blk(0x53, 0xd2, 300) };
	struct tv_catalog_block steal[2] = { blk(0x54, 0xe1, 400), blk(0x54, 0xd1, 300) };
	struct tv_catalog_block longer[1] = { blk(0x53, 0xd1, 300) };
	char err[256];

	assert_int_equal(tv_catalog_commit_segment(f->c, 0x53, 9, b, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x53, 300, other, 1, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_CONFLICT);
	assert_non_null(strstr(err, "committed here with 1 blocks that are not the bucket's 1"));
	longer[0].bytes++;
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x53, 300, longer, 1, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_CONFLICT);
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x54, 300, steal, 2, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_CONFLICT);
	assert_non_null(strstr(err, "block 00000000000000d1 is segment 0000000000000053's here"));
	assert_int_equal(q(f, "SELECT count(*) FROM blocks"), 1);
	assert_int_equal(q(f, "SELECT count(*) FROM segments"), 1);
	assert_int_equal(q(f, "SELECT count(*) FROM under_persisted"), 0);
}

static void test_deleted_not_brought_back(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[1] = { blk(0x55, 0xf1, 500) }, again[1] = { blk(0x55, 0xf1, 500) };
	uint64_t id = 0xf1, *ids = NULL;
	size_t n = 0;
	char err[256];

	assert_int_equal(tv_catalog_commit_segment(f->c, 0x55, 5, b, 1, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_delete_segment(f->c, 0x55, 5, &id, 1, &ids, &n), 0);
	free(ids);
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x55, 500, again, 1, NOW_NS, err,
							sizeof(err)), TV_CATALOG_REBUILD_DELETED);
	assert_non_null(strstr(err, "was deleted here"));
	assert_int_equal(q(f, "SELECT count(*) FROM blocks"), 0);
	assert_int_equal(q(f, "SELECT count(*) FROM under_persisted"), 0);
}

static void test_refuses_bad_arguments(void **state)
{
	struct fixture *f = *state;
	struct tv_catalog_block b[1] = { blk(0x56, 0xa1, 600) };
	char err[256];

	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0, 600, b, 1, NOW_NS, err,
							sizeof(err)), -EINVAL);
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x56, 600, b, 0, NOW_NS, err,
							sizeof(err)), -EINVAL);
	b[0].max_ts_ns = TV_CATALOG_MAX_TS_NS + 1;
	assert_int_equal(tv_catalog_rebuild_add_segment(f->c, 0x56, 600, b, 1, NOW_NS, err,
							sizeof(err)), -ERANGE);
	assert_int_equal(q(f, "SELECT count(*) FROM segments"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_new_segment_added_evicted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_segment_gets_persisted_row, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_conflicts_change_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deleted_not_brought_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_bad_arguments, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
