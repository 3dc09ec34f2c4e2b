/* The server's error reports under failed allocations (issue 10, rel-13's kind): every
 * function that takes an err buffer writes a readable reason into it whenever it fails, and
 * a failed allocation is -ENOMEM, never another errno the caller would map to a different
 * status. malloc, calloc and realloc fail on the Nth call here (--wrap in
 * tests/CMakeLists.txt); each case is run failing the 1st, 2nd, ... allocation until one
 * run needs no failure. */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/catalog.h"
#include "server/query.h"
#include "server/status.h"
#include "server/store_uring.h"

#define ERR_LEN 256
#define GARBAGE 0xAA
#define MAX_RUNS 200

#include "fail_alloc.h" /* fail_countdown, injected: the Nth allocation fails */

static void assert_reason(const char *err)
{
	size_t n = strnlen(err, ERR_LEN);

	if (n == 0 || n == ERR_LEN)
		fail_msg("err is %s", n ? "not terminated" : "empty");
	for (size_t i = 0; i < n; i++)
		if (err[i] < 32 || err[i] > 126)
			fail_msg("err has byte 0x%02x at %zu", (unsigned char)err[i], i);
}

struct fixture {
	char dir[64], db[96];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/tv-errors-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->db, sizeof(f->db), "%s/catalog.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Opening the store and the catalog: what tracevaultd prints when it cannot start. */
static void test_store_and_catalog_open_say_why(void **state)
{
	struct fixture *f = *state;
	unsigned k;

	for (k = 1; k < MAX_RUNS; k++) {
		struct tv_store *s = NULL;
		struct tv_catalog *c = NULL;
		char err[ERR_LEN];
		int ret;

		memset(err, GARBAGE, sizeof(err));
		injected = 0;
		fail_countdown = k;
		ret = tv_store_open(&s, f->dir, err, sizeof(err));
		if (!ret)
			ret = tv_catalog_open(&c, f->db, err, sizeof(err));
		fail_countdown = 0;
		tv_catalog_close(c);
		tv_store_close(s);
		if (!injected) {
			assert_int_equal(ret, 0);
			break;
		}
		assert_int_equal(ret, -ENOMEM);
		assert_reason(err);
	}
	assert_true(k > 2 && k < MAX_RUNS);
}

/* Planning and running a query over two blocks whose files are not there: each failed
 * allocation is -ENOMEM with a reason (the status is then RESOURCE_EXHAUSTED); with none,
 * both blocks are reported skipped and the query completes. Forward and reverse (which plans
 * an open order too). */
static void query_says_why(void **state, bool reverse)
{
	struct fixture *f = *state;
	struct tv_catalog_block rows[2] = {
		{ .block_id = 1, .segment_id = 9, .min_ts_ns = 10, .max_ts_ns = 20, .bytes = 100 },
		{ .block_id = 2, .segment_id = 9, .min_ts_ns = 15, .max_ts_ns = 30, .bytes = 100 },
	};
	const struct tv_query_params params = { .from_ns = 0, .to_ns = 100, .reverse = reverse };
	struct tv_query_pool pool;
	struct tv_catalog *c;
	struct tv_store *s;
	char err[ERR_LEN];
	unsigned k;

	assert_int_equal(tv_store_open(&s, f->dir, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_open(&c, f->db, err, sizeof(err)), 0);
	assert_int_equal(tv_catalog_commit_segment(c, 9, 0, rows, 2, err, sizeof(err)), 0);
	tv_query_pool_init(&pool, 0, 0);
	for (k = 1; k < MAX_RUNS; k++) {
		struct tv_query *q = NULL;
		grpc_byte_buffer *bb = NULL;
		int ret, batches = 0;

		memset(err, GARBAGE, sizeof(err));
		injected = 0;
		fail_countdown = k;
		ret = tv_query_new(&q, c, s, &pool, &params, NULL, err, sizeof(err));
		/* TV_QUERY_YIELD: a slice ended with nothing to send, call again */
		while (!ret && (ret = tv_query_next(q, &bb, err, sizeof(err))) >= 1) {
			if (ret == 1)
				grpc_byte_buffer_destroy(bb);
			batches += ret == 1;
			ret = 0;
		}
		fail_countdown = 0;
		if (!injected) {
			assert_int_equal(ret, 0);
			assert_int_equal(batches, 1);
			assert_int_equal(tv_query_skipped(q), 2); /* no files: both reported */
			assert_int_equal(tv_query_end_status(q, err, sizeof(err)),
					 GRPC_STATUS_DATA_LOSS);
			assert_reason(err);
			tv_query_free(q);
			break;
		}
		tv_query_free(q);
		assert_int_equal(ret, -ENOMEM);
		assert_int_equal(tv_status_from_errno(ret), GRPC_STATUS_RESOURCE_EXHAUSTED);
		assert_reason(err);
	}
	assert_true(k > 3 && k < MAX_RUNS);
	assert_int_equal(pool.used_bytes, 0); /* every query gave its memory back */
	assert_int_equal(pool.queries, 0);
	tv_catalog_close(c);
	tv_store_close(s);
}

static void test_query_says_why(void **state)
{
	query_says_why(state, false);
}

static void test_reverse_query_says_why(void **state)
{
	query_says_why(state, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_and_catalog_open_say_why, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_query_says_why, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reverse_query_says_why, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
