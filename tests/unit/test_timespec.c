/* tv_parse_time / tv_format_rfc3339 (client/cli/timespec.c): every accepted form of --from/--to
 * and the rejections, with expected values computed independently (date(1) / Python) and written
 * out here. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/timespec.h"

#define NOW_NS 1767225600123456789ull /* 2026-01-01T00:00:00.123456789Z */
#define S 1000000000ull

static uint64_t parse_ok(const char *s)
{
	uint64_t v = 0;

	assert_int_equal(tv_parse_time(s, NOW_NS, &v), 0);
	return v;
}

static void assert_rejected(const char *s)
{
	uint64_t v = 42;

	assert_int_equal(tv_parse_time(s, NOW_NS, &v), -EINVAL);
	assert_int_equal(v, 42); /* untouched on error */
}

static void test_rfc3339_utc(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(parse_ok("2026-01-01T00:00:00Z"), 1767225600ull * S);
	assert_int_equal(parse_ok("2026-01-01t00:00:00z"), 1767225600ull * S);
	/* leap day: date -u -d 2024-02-29T12:34:56Z +%s = 1709210096 */
	assert_int_equal(parse_ok("2024-02-29T12:34:56Z"), 1709210096ull * S);
	assert_int_equal(parse_ok("2000-02-29T00:00:00Z"), 951782400ull * S);
}

static void test_rfc3339_fraction(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("2026-01-01T00:00:00.5Z"), 1767225600ull * S + 500000000);
	assert_int_equal(parse_ok("2026-01-01T00:00:00.123Z"), 1767225600ull * S + 123000000);
	assert_int_equal(parse_ok("2026-01-01T00:00:00.123456789Z"),
			 1767225600ull * S + 123456789);
	/* digits past nanoseconds are truncated, not rounded */
	assert_int_equal(parse_ok("2026-01-01T00:00:00.1234567899Z"),
			 1767225600ull * S + 123456789);
}

static void test_rfc3339_offsets(void **state)
{
	(void)state;
	/* 14:00 at +02:00 is 12:00 UTC; 07:30 at -04:30 is 12:00 UTC */
	assert_int_equal(parse_ok("2026-03-01T14:00:00+02:00"), parse_ok("2026-03-01T12:00:00Z"));
	assert_int_equal(parse_ok("2026-03-01T07:30:00-04:30"), parse_ok("2026-03-01T12:00:00Z"));
	assert_int_equal(parse_ok("2026-03-01T12:00:00.25+00:00"),
			 parse_ok("2026-03-01T12:00:00.25Z"));
	/* an offset that crosses midnight and the year */
	assert_int_equal(parse_ok("2026-01-01T01:00:00+02:00"), parse_ok("2025-12-31T23:00:00Z"));
}

static void test_unix_ns_and_now(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("0"), 0);
	assert_int_equal(parse_ok("1767225600123456789"), 1767225600123456789ull);
	assert_int_equal(parse_ok("18446744073709551615"), UINT64_MAX);
	assert_int_equal(parse_ok("now"), NOW_NS);
}

static void test_relative_units(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("-500ms"), NOW_NS - 500000000ull);
	assert_int_equal(parse_ok("-30s"), NOW_NS - 30 * S);
	assert_int_equal(parse_ok("-15m"), NOW_NS - 15 * 60 * S);
	assert_int_equal(parse_ok("-2h"), NOW_NS - 2 * 3600 * S);
	assert_int_equal(parse_ok("-1d"), NOW_NS - 86400 * S);
	assert_int_equal(parse_ok("-0s"), NOW_NS);
}

static void test_rejects(void **state)
{
	(void)state;
	assert_rejected("banana");
	assert_rejected("");
	assert_rejected("2026-13-01T00:00:00Z");	/* month 13 */
	assert_rejected("2026-02-29T00:00:00Z");	/* not a leap year */
	assert_rejected("2026-04-31T00:00:00Z");
	assert_rejected("2026-01-01T24:00:00Z");
	assert_rejected("2026-01-01T00:60:00Z");
	assert_rejected("2026-01-01T00:00:60Z");	/* leap second: no unix time for it */
	assert_rejected("2026-01-01T00:00:00");	/* offset is mandatory */
	assert_rejected("2026-01-01 00:00:00Z");
	assert_rejected("2026-01-01T00:00:00.Z");	/* empty fraction */
	assert_rejected("2026-01-01T00:00:00+2:00");
	assert_rejected("2026-01-01T00:00:00+02:00x");
	assert_rejected("1969-12-31T23:59:59Z");	/* before the epoch */
	assert_rejected("1970-01-01T00:00:00+00:01");
	assert_rejected("2600-01-01T00:00:00Z");	/* past 2^64 ns */
	assert_rejected("-15x");
	assert_rejected("-15");
	assert_rejected("-m");
	assert_rejected("-");
	assert_rejected("-1.5m");
	assert_rejected("18446744073709551616");	/* 2^64 */
	assert_rejected("99999999999999999999999");
	assert_rejected("-99999999999999999999d");	/* overflow of N * unit */
	assert_rejected("-100000d");			/* before the epoch */
	assert_rejected("NOW");
	assert_rejected("12ab");
}

static void test_format_rfc3339(void **state)
{
	char buf[TV_RFC3339_MS_LEN];

	(void)state;
	assert_int_equal(tv_format_rfc3339(NOW_NS, buf, sizeof(buf)), 24);
	assert_string_equal(buf, "2026-01-01T00:00:00.123Z");
	tv_format_rfc3339(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
	tv_format_rfc3339(1709210096999999999ull, buf, sizeof(buf));
	assert_string_equal(buf, "2024-02-29T12:34:56.999Z");
	assert_int_equal(tv_format_rfc3339(NOW_NS, buf, 10), -ENOSPC);
	assert_string_equal(buf, "");
}

static void test_format_parse_round_trip(void **state)
{
	char buf[TV_RFC3339_MS_LEN];
	uint64_t ts = 951782400ull * S; /* 2000-02-29 */

	(void)state;
	/* one step of a bit more than a day, over ~30 years: crosses leap years and centuries */
	for (int i = 0; i < 10000; i++, ts += 90061ull * S + 7000000) {
		uint64_t back;

		tv_format_rfc3339(ts, buf, sizeof(buf));
		assert_int_equal(tv_parse_time(buf, NOW_NS, &back), 0);
		assert_int_equal(back, ts / 1000000 * 1000000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3339_utc),
		cmocka_unit_test(test_rfc3339_fraction),
		cmocka_unit_test(test_rfc3339_offsets),
		cmocka_unit_test(test_unix_ns_and_now),
		cmocka_unit_test(test_relative_units),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_format_rfc3339),
		cmocka_unit_test(test_format_parse_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
