/* cmocka tests of the bounded block cache (client/write/block_cache.c): the byte bound, release by
 * the last slice ref (from another thread), the back-pressure timeout, and freeing. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "write/block_cache.h"

#define KIB 1024u

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Reserve and adopt one block of len bytes filled with fill. */
static grpc_slice add_block(struct tv_block_cache *c, size_t len, int fill)
{
	grpc_slice s;
	void *data;

	assert_int_equal(tv_block_cache_reserve(c, len, 0), 0);
	data = malloc(len);
	assert_non_null(data);
	memset(data, fill, len);
	assert_int_equal(tv_block_cache_adopt(c, data, len, &s), 0);
	assert_int_equal(GRPC_SLICE_LENGTH(s), len);
	assert_ptr_equal(GRPC_SLICE_START_PTR(s), data);
	return s;
}

static void test_cache_cannot_exceed_its_bound(void **state)
{
	struct tv_block_cache *c = tv_block_cache_new(10 * KIB);
	struct tv_block_cache_stats st;
	grpc_slice a, b;

	(void)state;
	assert_non_null(c);
	a = add_block(c, 6 * KIB, 1);
	/* 6 + 5 > 10: refused at once with a zero timeout, and nothing changes */
	assert_int_equal(tv_block_cache_reserve(c, 5 * KIB, 0), -ENOBUFS);
	b = add_block(c, 4 * KIB, 2); /* exactly full */
	assert_int_equal(tv_block_cache_reserve(c, 1, 0), -ENOBUFS);
	/* a block larger than the whole cache can never fit */
	assert_int_equal(tv_block_cache_reserve(c, 11 * KIB, 1000), -E2BIG);
	tv_block_cache_stats(c, &st);
	assert_int_equal(st.used_bytes, 10 * KIB);
	assert_int_equal(st.peak_bytes, 10 * KIB);
	assert_int_equal(st.blocks, 2);
	grpc_slice_unref(a);
	grpc_slice_unref(b);
	tv_block_cache_stats(c, &st);
	assert_int_equal(st.used_bytes, 0);
	assert_int_equal(st.blocks, 0);
	assert_int_equal(st.peak_bytes, 10 * KIB);
	tv_block_cache_free(c);
}

static void test_sub_slice_keeps_block_alive(void **state)
{
	struct tv_block_cache *c = tv_block_cache_new(8 * KIB);
	struct tv_block_cache_stats st;
	grpc_slice a = add_block(c, 8 * KIB, 0x5a), sub;

	(void)state;
	/* a chunk shares the block's refcount: dropping the cache's ref frees nothing yet */
	sub = grpc_slice_ref(grpc_slice_sub_no_ref(a, 100, 200));
	grpc_slice_unref(a);
	tv_block_cache_stats(c, &st);
	assert_int_equal(st.used_bytes, 8 * KIB);
	assert_int_equal(st.blocks, 1);
	assert_int_equal(GRPC_SLICE_START_PTR(sub)[0], 0x5a);
	grpc_slice_unref(sub);
	tv_block_cache_stats(c, &st);
	assert_int_equal(st.used_bytes, 0);
	assert_int_equal(st.blocks, 0);
	tv_block_cache_free(c);
}

struct waiter {
	struct tv_block_cache *c;
	int ret;
	uint64_t waited_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int started;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;
	uint64_t t0;

	pthread_mutex_lock(&w->mu);
	w->started = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	t0 = mono_ms();
	w->ret = tv_block_cache_reserve(w->c, 4 * KIB, 10000);
	w->waited_ms = mono_ms() - t0;
	return NULL;
}

static void test_last_unref_frees_bytes_and_wakes_a_waiter(void **state)
{
	struct waiter w = {.c = tv_block_cache_new(4 * KIB), .ret = 1};
	struct tv_block_cache_stats st;
	pthread_t thr;
	grpc_slice a;

	(void)state;
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	a = add_block(w.c, 4 * KIB, 3);
	assert_int_equal(pthread_create(&thr, NULL, waiter_main, &w), 0);
	pthread_mutex_lock(&w.mu);
	while (!w.started)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	/* whether or not the waiter is already asleep, the release must let it through well
	 * before its 10 s timeout */
	grpc_slice_unref(a);
	assert_int_equal(pthread_join(thr, NULL), 0);
	assert_int_equal(w.ret, 0);
	assert_true(w.waited_ms < 5000);
	tv_block_cache_stats(w.c, &st);
	assert_int_equal(st.used_bytes, 4 * KIB); /* the waiter's reservation */
	tv_block_cache_unreserve(w.c, 4 * KIB);
	tv_block_cache_stats(w.c, &st);
	assert_int_equal(st.used_bytes, 0);
	tv_block_cache_free(w.c);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

static void test_backpressure_times_out_not_earlier(void **state)
{
	struct tv_block_cache *c = tv_block_cache_new(4 * KIB);
	grpc_slice a = add_block(c, 3 * KIB, 4);
	uint64_t t0, dt;

	(void)state;
	t0 = mono_ms();
	assert_int_equal(tv_block_cache_reserve(c, 2 * KIB, 300), -ENOBUFS);
	dt = mono_ms() - t0;
	assert_true(dt >= 295);  /* ms rounding of the two clock reads */
	assert_true(dt < 3000);  /* ≈ the timeout, not stuck */
	grpc_slice_unref(a);
	tv_block_cache_free(c);
}

static void test_free_with_nothing_outstanding(void **state)
{
	struct tv_block_cache *c = tv_block_cache_new(4 * KIB);

	(void)state;
	tv_block_cache_free(c); /* ASan: no leak, no double free */
	tv_block_cache_free(NULL);
	assert_null(tv_block_cache_new(0));
}

static void test_block_outlives_the_cache_owner(void **state)
{
	struct tv_block_cache *c = tv_block_cache_new(4 * KIB);
	grpc_slice a = add_block(c, 1 * KIB, 6);

	(void)state;
	/* gRPC may drop a chunk's ref after the pipeline is gone: the accounting stays valid */
	tv_block_cache_free(c);
	assert_int_equal(GRPC_SLICE_START_PTR(a)[0], 6);
	grpc_slice_unref(a); /* frees the block and then the cache itself (ASan checks both) */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_cannot_exceed_its_bound),
		cmocka_unit_test(test_sub_slice_keeps_block_alive),
		cmocka_unit_test(test_last_unref_frees_bytes_and_wakes_a_waiter),
		cmocka_unit_test(test_backpressure_times_out_not_earlier),
		cmocka_unit_test(test_free_with_nothing_outstanding),
		cmocka_unit_test(test_block_outlives_the_cache_owner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
