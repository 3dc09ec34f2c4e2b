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

	assert_int_equal(tv_parse_time(s, NOW_NS, &v, NULL, 0), 0);
	return v;
}

/* s is refused, *out untouched, and the reason contains want (the part a user needs). */
static void assert_rejected(const char *s, const char *want)
{
	char why[TV_TIME_WHY_LEN] = "unset";
	uint64_t v = 42;

	assert_int_equal(tv_parse_time(s, NOW_NS, &v, why, sizeof(why)), -EINVAL);
	assert_int_equal(v, 42); /* untouched on error */
	if (!strstr(why, want))
		fail_msg("'%s': reason '%s' does not say '%s'", s, why, want);
	assert_true(strlen(why) < TV_TIME_WHY_LEN - 1); /* no reason is cut short */
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

/* Every rejection says why, so the usage line can (rel-17's six values among them). */
static void test_rejects(void **state)
{
	const char *forms = "expected RFC 3339";

	(void)state;
	assert_rejected("banana", forms);
	assert_rejected("", "empty");
	assert_rejected("2026-13-01T00:00:00Z", "month 13");
	assert_rejected("2026-02-29T00:00:00Z", "no such day: February 2026 has 28 days");
	assert_rejected("2024-02-30T00:00:00Z", "no such day: February 2024 has 29 days");
	assert_rejected("2026-04-31T00:00:00Z", "April 2026 has 30 days");
	assert_rejected("2026-01-00T00:00:00Z", "January 2026 has 31 days");
	assert_rejected("2026-01-01T24:00:00Z", "24:00 is not a time of day");
	assert_rejected("2026-01-01T00:60:00Z", "00:60 is not a time of day");
	assert_rejected("2016-12-31T23:59:60Z", "leap second");
	assert_rejected("2026-01-01T00:00:61Z", "second 61");
	assert_rejected("2026-01-01T00:00:00", "no UTC offset");
	assert_rejected("2026-01-01 00:00:00Z", forms);
	assert_rejected("2026-01-01T00:00:00.Z", "no digits after the '.'");
	assert_rejected("2026-01-01T00:00:00+2:00", "+HH:MM");
	assert_rejected("2026-01-01T00:00:00+24:00", "+HH:MM");
	assert_rejected("2026-01-01T00:00:00+02:00x", "unexpected 'x'");
	assert_rejected("1969-12-31T23:59:59Z", "before 1970");
	assert_rejected("1970-01-01T00:00:00+01:00", "before 1970");
	assert_rejected("1970-01-01T00:00:00+00:01", "before 1970");
	assert_rejected("2600-01-01T00:00:00Z", "after 2554-07-21T23:34:33.709551615Z");
	assert_rejected("9999-12-31T23:59:59Z", "after 2554-07-21");
	assert_rejected("2554-07-21T23:34:33.709551616Z", "after 2554-07-21"); /* 2^64 ns */
	assert_rejected("-15x", "unknown unit 'x'");
	assert_rejected("-1y", "unknown unit 'y'");
	assert_rejected("-15", "no unit");
	assert_rejected("-m", "-N followed by ms, s, m, h or d");
	assert_rejected("-", "-N followed by");
	assert_rejected("-1.5m", "fractions are not allowed");
	assert_rejected("-1.5h", "fractions are not allowed");
	assert_rejected("18446744073709551616", "past 2^64-1 ns"); /* 2^64 */
	assert_rejected("99999999999999999999999", "past 2^64-1 ns");
	assert_rejected("-99999999999999999999d", "does not fit in 64 bits");
	assert_rejected("-213503d", "before 1970"); /* N * unit fits, but reaches before 1970 */
	assert_rejected("-100000d", "before 1970");
	assert_rejected("NOW", forms);
	assert_rejected("12ab", forms);
}

/* The last representable time is accepted: the edge of "after 2554-07-21..." */
static void test_latest(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("2554-07-21T23:34:33.709551615Z"), UINT64_MAX);
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
		assert_int_equal(tv_parse_time(buf, NOW_NS, &back, NULL, 0), 0);
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
		cmocka_unit_test(test_latest),
		cmocka_unit_test(test_format_rfc3339),
		cmocka_unit_test(test_format_parse_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
