/* Unit tests for client/capture/sampler.c: trace-id decisions equal OpenTelemetry's
 * TraceIdRatioBased (reference values computed independently from the Java algorithm), are stable,
 * and keep R. */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "capture/sampler.h"

/* xorshift64*: a fixed-seed generator so the test is reproducible */
static uint64_t next_rand(uint64_t *st)
{
	*st ^= *st >> 12;
	*st ^= *st << 25;
	*st ^= *st >> 27;
	return *st * 0x2545f4914f6cdd1dull;
}

static void test_ratio_quarter_keeps_a_quarter_of_distinct_trace_ids(void **state)
{
	struct tv_sampler s;
	uint64_t st = 0x1234567887654321ull;
	char id[33];
	int kept = 0, i, n = 20000;

	(void)state;
	assert_int_equal(tv_sampler_init(&s, 0.25), 0);
	for (i = 0; i < n; i++) {
		uint64_t hi = next_rand(&st), lo = next_rand(&st);

		snprintf(id, sizeof(id), "%016llx%016llx", (unsigned long long)hi,
			 (unsigned long long)lo);
		kept += tv_sampler_keep_trace(&s, id);
	}
	assert_in_range(kept, n * 23 / 100, n * 27 / 100);
}

static void test_decision_is_stable_for_a_trace_id(void **state)
{
	struct tv_sampler s, s2;
	uint64_t st = 42;
	char id[33];
	int i, j;

	(void)state;
	assert_int_equal(tv_sampler_init(&s, 0.3), 0);
	assert_int_equal(tv_sampler_init(&s2, 0.3), 0);
	for (i = 0; i < 1000; i++) {
		uint64_t hi = next_rand(&st), lo = next_rand(&st);
		bool d;

		snprintf(id, sizeof(id), "%016llx%016llx", (unsigned long long)hi,
			 (unsigned long long)lo);
		d = tv_sampler_keep_trace(&s, id);
		for (j = 0; j < 3; j++) {
			assert_int_equal(tv_sampler_keep_trace(&s, id), d);
			assert_int_equal(tv_sampler_keep_trace(&s2, id), d);
			/* only the lower 64 bits count, as in OTel */
			id[0] = id[0] == 'a' ? 'b' : 'a';
			assert_int_equal(tv_sampler_keep_trace(&s, id), d);
		}
	}
}

/* Expected values computed in Python from the Java algorithm: bound = int(r * float(2**63-1)),
 * lower = int(id[16:], 16) as a signed 64-bit value, keep <=> java_abs(lower) < bound. */
static void test_matches_otel_reference_values(void **state)
{
	static const struct {
		const char *id;
		bool keep_quarter, keep_half;
	} cases[] = {
		{"4bf92f3577b34da6a3ce929d0e0e4736", false, false},
		{"0102030405060708090a0b0c0d0e0f00", true, true},
		{"ff01020304050600ff0a0b0c0d0e0f00", true, true},  /* negative lower half */
		{"00000000000000001fffffffffffffff", true, true},  /* 2^61 - 1 */
		{"00000000000000002000000000000000", false, true}, /* 2^61 = the 0.25 bound */
		{"0000000000000000e000000000000001", true, true},  /* -(2^61 - 1) */
		{"0000000000000000e000000000000000", false, true}, /* -2^61 */
		{"00000000000000018000000000000000", true, true},  /* Math.abs(MIN) stays < 0 */
		{"00000000000000017fffffffffffffff", false, false},
	};
	struct tv_sampler q, h;
	size_t i;

	(void)state;
	assert_int_equal(tv_sampler_init(&q, 0.25), 0);
	assert_int_equal(tv_sampler_init(&h, 0.5), 0);
	assert_true(q.id_upper_bound == INT64_C(2305843009213693952));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(tv_sampler_keep_trace(&q, cases[i].id), cases[i].keep_quarter);
		assert_int_equal(tv_sampler_keep_trace(&h, cases[i].id), cases[i].keep_half);
	}
}

static void test_ratio_one_keeps_everything(void **state)
{
	struct tv_sampler s;
	uint64_t st = 7;
	char id[33];
	int i;

	(void)state;
	assert_int_equal(tv_sampler_init(&s, 1.0), 0);
	/* the ids Java's ratio-1 sampler would drop are kept: ratio 1 means sampling is off */
	assert_true(tv_sampler_keep_trace(&s, "00000000000000007fffffffffffffff"));
	assert_true(tv_sampler_keep_trace(&s, "00000000000000008000000000000001"));
	for (i = 0; i < 1000; i++) {
		uint64_t lo = next_rand(&st);

		snprintf(id, sizeof(id), "%016x%016llx", i + 1, (unsigned long long)lo);
		assert_true(tv_sampler_keep_trace(&s, id));
		assert_true(tv_sampler_keep_conn(&s, lo, (uint64_t)i));
	}
}

static void test_untraced_exchanges_sampled_per_connection(void **state)
{
	struct tv_sampler s;
	int kept = 0, i, n = 20000;

	(void)state;
	assert_int_equal(tv_sampler_init(&s, 0.25), 0);
	for (i = 0; i < n; i++) {
		uint64_t conn_id = (uint64_t)(1000 + i / 100) << 32 | (uint64_t)(i % 100 + 3);
		bool d = tv_sampler_keep(&s, "", conn_id, 1);

		/* same connection, same decision; the generation makes it another connection */
		assert_int_equal(tv_sampler_keep(&s, NULL, conn_id, 1), d);
		assert_int_equal(tv_sampler_keep_conn(&s, conn_id, 1), d);
		kept += d;
	}
	assert_in_range(kept, n * 23 / 100, n * 27 / 100);
	/* a traced exchange is decided by its trace id, whatever its connection */
	for (i = 0; i < 200; i++) {
		assert_false(tv_sampler_keep(&s, "4bf92f3577b34da6a3ce929d0e0e4736", (uint64_t)i, 1));
		assert_true(tv_sampler_keep(&s, "0102030405060708090a0b0c0d0e0f00", (uint64_t)i, 1));
	}
}

static void test_invalid_ratios_rejected(void **state)
{
	static const char *bad[] = { "0", "-0.5", "1.01", "nan", "inf", "", "0.5x", "abc", "1e9" };
	struct tv_sampler s;
	double r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(tv_sampler_parse_ratio(bad[i], &r), -EINVAL);
	assert_int_equal(tv_sampler_init(&s, 0.0), -EINVAL);
	assert_int_equal(tv_sampler_init(&s, 1.5), -EINVAL);
	assert_int_equal(tv_sampler_parse_ratio("0.25", &r), 0);
	assert_true(r == 0.25);
	assert_int_equal(tv_sampler_parse_ratio("1", &r), 0);
	assert_true(r == 1.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ratio_quarter_keeps_a_quarter_of_distinct_trace_ids),
		cmocka_unit_test(test_decision_is_stable_for_a_trace_id),
		cmocka_unit_test(test_matches_otel_reference_values),
		cmocka_unit_test(test_ratio_one_keeps_everything),
		cmocka_unit_test(test_untraced_exchanges_sampled_per_connection),
		cmocka_unit_test(test_invalid_ratios_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
