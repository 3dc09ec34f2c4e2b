/* cmocka tests for the Summary latency sketch (proto/latency_sketch.c): bucket indexes at
 * 2^k-1, 2^k and 2^k+1 for every k, each bucket's value within alpha of every latency it
 * holds, merge(a, b) equal bucket for bucket to the sketch of a's and b's latencies together,
 * quantiles within alpha*x of the exact item of rank floor(q(n-1)) on five distributions, and
 * the LatencySketch message (round trip, refused scales and offsets). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/latency_sketch.h"

/* ceil(64*log2(x)) - 1 in long double: the reference where x is far from 2^k (small x) */
static int ref_index(uint64_t x)
{
	return (int)ceill(64.0L * log2l((long double)x)) - 1;
}

static void test_index_at_powers_of_two(void **state)
{
	(void)state;
	assert_int_equal(tv_sketch_index(1), -1);
	assert_int_equal(tv_sketch_index(2), 63);
	assert_int_equal(tv_sketch_index(3), ref_index(3));
	for (int k = 1; k < 64; k++) {
		uint64_t p = 1ull << k;

		assert_int_equal(tv_sketch_index(p), 64 * k - 1);
		/* 2^k+1 is just above the edge 2^k; 2^k-1 just below it */
		if (k >= 7) {
			assert_int_equal(tv_sketch_index(p + 1), 64 * k);
			assert_int_equal(tv_sketch_index(p - 1), 64 * k - 1);
		} else {
			assert_int_equal(tv_sketch_index(p + 1), ref_index(p + 1));
			assert_int_equal(tv_sketch_index(p - 1), ref_index(p - 1));
		}
	}
	assert_int_equal(tv_sketch_index(UINT64_MAX), TV_SKETCH_MAX_INDEX);
	for (uint64_t x = 1; x < 100000; x++)
		assert_int_equal(tv_sketch_index(x), ref_index(x));
}

static uint64_t rnd64(void)
{
	return ((uint64_t)rand() << 42) ^ ((uint64_t)rand() << 21) ^ (uint64_t)rand();
}

static void test_bucket_value_within_alpha(void **state)
{
	(void)state;
	srand(1);
	for (int i = 0; i < 200000; i++) {
		uint64_t x = rnd64() >> (rand() % 64);
		double v;

		if (!x)
			continue;
		v = tv_sketch_bucket_value(tv_sketch_index(x));
		assert_true(fabs(v - (double)x) <= TV_SKETCH_ALPHA * (double)x * (1 + 1e-9));
	}
}

static double lognormal(double mu, double sigma)
{
	double u1 = (rand() + 1.0) / (RAND_MAX + 2.0), u2 = (rand() + 1.0) / (RAND_MAX + 2.0);

	return exp(mu + sigma * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

enum dist { D_UNIFORM, D_LOGNORMAL, D_CONSTANT, D_BIMODAL_ZEROS, D_WIDE, D_COUNT };

static uint64_t draw(enum dist d)
{
	switch (d) {
	case D_UNIFORM:
		return 1 + (uint64_t)rand() % 1000000;
	case D_LOGNORMAL:
		return (uint64_t)lognormal(15, 2); /* median ~3 ms, heavy tail */
	case D_CONSTANT:
		return 1234567;
	case D_BIMODAL_ZEROS:
		return rand() % 4 == 0 ? 0 : rand() % 2 ? 1000u + (uint64_t)(rand() % 50) : 2000000000ull + (uint64_t)rand();
	default:
		return rnd64() >> (rand() % 64); /* every magnitude up to 2^64 */
	}
}

static void sketch_of(struct tv_sketch *s, const uint64_t *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		assert_int_equal(tv_sketch_add(s, x[i], 1, NULL), 0);
}

static void test_quantiles_within_bound(void **state)
{
	static const double qs[] = { 0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1 };
	enum { N = 20000 };
	uint64_t *x = malloc(N * sizeof(*x));

	(void)state;
	assert_non_null(x);
	srand(7);
	for (int d = 0; d < D_COUNT; d++) {
		for (size_t n = 1; n <= N; n *= 10) {
			struct tv_sketch s = { 0 };

			for (size_t i = 0; i < n; i++)
				x[i] = draw((enum dist)d);
			sketch_of(&s, x, n);
			qsort(x, n, sizeof(*x), cmp_u64);
			assert_int_equal(tv_sketch_count(&s), n);
			for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
				double want = (double)x[(size_t)floor(qs[k] * (double)(n - 1))];
				double got = tv_sketch_quantile(&s, qs[k], x[0], x[n - 1]);

				if (fabs(got - want) > TV_SKETCH_ALPHA * want * (1 + 1e-9))
					fail_msg("dist %d n %zu q %g: got %.3f want %.0f", d, n,
						 qs[k], got, want);
			}
			tv_sketch_free(&s);
		}
	}
	free(x);
}

static void assert_same(const struct tv_sketch *a, const struct tv_sketch *b)
{
	assert_int_equal(a->zero_count, b->zero_count);
	for (int i = TV_SKETCH_MIN_INDEX; i <= TV_SKETCH_MAX_INDEX; i++) {
		uint64_t ca = i >= a->offset && i < a->offset + (int)a->n ? a->counts[i - a->offset] : 0;
		uint64_t cb = i >= b->offset && i < b->offset + (int)b->n ? b->counts[i - b->offset] : 0;

		assert_int_equal(ca, cb);
	}
}

static void test_merge_equals_union(void **state)
{
	enum { N = 5000 };
	uint64_t *x = malloc(N * sizeof(*x));

	(void)state;
	assert_non_null(x);
	srand(11);
	for (int round = 0; round < 50; round++) {
		struct tv_sketch a = { 0 }, b = { 0 }, u = { 0 }, e = { 0 };
		size_t n = (size_t)rand() % N, cut = n ? (size_t)rand() % n : 0;
		enum dist d1 = (enum dist)(rand() % D_COUNT), d2 = (enum dist)(rand() % D_COUNT);

		for (size_t i = 0; i < n; i++)
			x[i] = draw(i < cut ? d1 : d2);
		sketch_of(&a, x, cut);
		sketch_of(&b, x + cut, n - cut);
		sketch_of(&u, x, n);
		assert_int_equal(tv_sketch_merge(&a, &b, NULL), 0);
		assert_same(&a, &u);
		/* and into an empty one, in the other order */
		assert_int_equal(tv_sketch_merge(&e, &b, NULL), 0);
		sketch_of(&e, x, cut);
		assert_same(&e, &u);
		tv_sketch_free(&a);
		tv_sketch_free(&b);
		tv_sketch_free(&u);
		tv_sketch_free(&e);
	}
	free(x);
}

static void test_message(void **state)
{
	Tracevault__V1__LatencySketch m = TRACEVAULT__V1__LATENCY_SKETCH__INIT;
	struct tv_sketch s = { 0 }, t = { 0 };
	uint64_t c[2] = { 1, 2 };
	size_t grown = 0;

	(void)state;
	assert_int_equal(tv_sketch_add(&s, 0, 3, NULL), 0);
	assert_int_equal(tv_sketch_growth_bytes(&s, 1000), 8);
	assert_int_equal(tv_sketch_add(&s, 1000, 1, &grown), 0);
	assert_int_equal(grown, 8);
	assert_int_equal(tv_sketch_growth_bytes(&s, 1000), 0);
	assert_int_equal(tv_sketch_growth_bytes(&s, 0), 0);
	/* growing upwards takes the slack above the new bucket too */
	assert_int_equal(tv_sketch_growth_bytes(&s, 1u << 30),
			 8 * (64 * 30 - 1 - tv_sketch_index(1000) + TV_SKETCH_GROW_SLACK));
	assert_int_equal(tv_sketch_add(&s, 1u << 30, 2, &grown), 0);
	assert_int_equal(grown, 8 * (64 * 30 - 1 - tv_sketch_index(1000) + TV_SKETCH_GROW_SLACK));
	assert_int_equal(tv_sketch_growth_bytes(&s, (1u << 30) + (1u << 26)), 0); /* in the slack */
	assert_int_equal(tv_sketch_growth_bytes(&s, UINT64_MAX) % 8, 0);
	tv_sketch_to_pb(&s, &m);
	assert_int_equal(m.scale, 6);
	/* only the counted run goes out, not the slack */
	assert_int_equal(m.offset, tv_sketch_index(1000));
	assert_int_equal(m.n_bucket_counts, 64 * 30 - 1 - tv_sketch_index(1000) + 1);
	assert_int_equal(tv_sketch_merge_pb(&t, &m), 0);
	assert_same(&s, &t);
	assert_int_equal(tv_sketch_count(&t), 6);
	assert_true(tv_sketch_quantile(&t, 0, 0, 1u << 30) == 0);
	assert_true(tv_sketch_quantile(&t, 1, 0, 1u << 30) == (double)(1u << 30));

	m = (Tracevault__V1__LatencySketch)TRACEVAULT__V1__LATENCY_SKETCH__INIT;
	m.bucket_counts = c;
	m.n_bucket_counts = 2;
	m.scale = 5;
	assert_int_equal(tv_sketch_merge_pb(&t, &m), -EINVAL);
	m.scale = 6;
	m.offset = -2;
	assert_int_equal(tv_sketch_merge_pb(&t, &m), -EINVAL);
	m.offset = TV_SKETCH_MAX_INDEX;
	assert_int_equal(tv_sketch_merge_pb(&t, &m), -EINVAL);
	m.offset = TV_SKETCH_MAX_INDEX - 1;
	assert_int_equal(tv_sketch_merge_pb(&t, &m), 0);
	assert_int_equal(tv_sketch_count(&t), 9);
	tv_sketch_free(&s);
	tv_sketch_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_at_powers_of_two),
		cmocka_unit_test(test_bucket_value_within_alpha),
		cmocka_unit_test(test_quantiles_within_bound),
		cmocka_unit_test(test_merge_equals_union),
		cmocka_unit_test(test_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
