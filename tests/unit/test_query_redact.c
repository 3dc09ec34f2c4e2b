/* Unit tests for client/capture/query_redact.c: which query values a record keeps (default
 * names, --redact-query-params replacing or extending them, --strip-query, --no-redact), and
 * the edges of a query: parameters without '=', repeated names, percent-encoded names, empty
 * values, fragments, URL userinfo, and the snprintf-like bound of the output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "capture/query_redact.h"

/* The target as rules r rewrite it (asserting the returned length matches). */
static const char *redact(const struct tv_query_rules *r, const char *t)
{
	static char out[1024];
	size_t len = tv_query_redact(r, t, strlen(t), out, sizeof(out));

	assert_true(len < sizeof(out));
	assert_int_equal(len, strlen(out));
	return out;
}

static void test_default_list_redacts_only_sensitive_values(void **state)
{
	struct tv_query_rules r;

	(void)state;
	tv_query_rules_default(&r);
	assert_string_equal(redact(&r, "/a?user=bob&token=s3cr3t&page=2"),
			    "/a?user=bob&token=REDACTED&page=2");
	/* OpenTelemetry's four, whatever their case */
	assert_string_equal(redact(&r, "/o?AWSAccessKeyId=AK&Signature=x&sig=y&X-Goog-Signature=z"),
			    "/o?AWSAccessKeyId=REDACTED&Signature=REDACTED&sig=REDACTED&"
			    "X-Goog-Signature=REDACTED");
	assert_string_equal(redact(&r, "/o?SIG=1&Access_Token=2&API_KEY=3"),
			    "/o?SIG=REDACTED&Access_Token=REDACTED&API_KEY=REDACTED");
	/* a name that only contains a listed one is not it */
	assert_string_equal(redact(&r, "/a?tokens=1&mytoken=2&token_type=bearer"),
			    "/a?tokens=1&mytoken=2&token_type=bearer");
	/* no query, an empty query, a lone '?' */
	assert_string_equal(redact(&r, "/plain/path"), "/plain/path");
	assert_string_equal(redact(&r, "/a?"), "/a?");
	assert_string_equal(redact(&r, "*"), "*");
}

static void test_query_edges(void **state)
{
	struct tv_query_rules r;

	(void)state;
	tv_query_rules_default(&r);
	/* a parameter without '=' has no value to hide; an empty value stays empty */
	assert_string_equal(redact(&r, "/a?token&x=1"), "/a?token&x=1");
	assert_string_equal(redact(&r, "/a?token=&x=1"), "/a?token=&x=1");
	/* every occurrence of a repeated name */
	assert_string_equal(redact(&r, "/a?key=1&key=2&k=3&key=4"),
			    "/a?key=REDACTED&key=REDACTED&k=3&key=REDACTED");
	/* names are percent-decoded ('+' is a space) before they are compared */
	assert_string_equal(redact(&r, "/a?%74oken=1&acc%65ss%5Ftoken=2&api%2Dkey=3"),
			    "/a?%74oken=REDACTED&acc%65ss%5Ftoken=REDACTED&api%2Dkey=REDACTED");
	assert_string_equal(redact(&r, "/a?%zzoken=1&%7=2&tok%=3"), "/a?%zzoken=1&%7=2&tok%=3");
	/* only the first '=' splits: the value may hold more */
	assert_string_equal(redact(&r, "/a?token=a=b=c&x=y=z"), "/a?token=REDACTED&x=y=z");
	/* empty parameters and '&' runs are kept as sent */
	assert_string_equal(redact(&r, "/a?&&token=1&&"), "/a?&&token=REDACTED&&");
	/* ';' is not a separator (WHATWG URLSearchParams): the value runs to the next '&' */
	assert_string_equal(redact(&r, "/a?token=1;x=2&y=3"), "/a?token=REDACTED&y=3");
	/* '?' inside the query belongs to it */
	assert_string_equal(redact(&r, "/a?x=?&token=?"), "/a?x=?&token=REDACTED");
	/* a fragment is never sent, but if a client does: dropped, whatever it holds */
	assert_string_equal(redact(&r, "/a?x=1#token=2"), "/a?x=1");
	assert_string_equal(redact(&r, "/a#frag?token=2"), "/a");
}

static void test_userinfo_redacted(void **state)
{
	struct tv_query_rules r;

	(void)state;
	tv_query_rules_default(&r);
	assert_string_equal(redact(&r, "http://bob:pw@example.com:8080/a?token=1&b=2"),
			    "http://REDACTED:REDACTED@example.com:8080/a?token=REDACTED&b=2");
	assert_string_equal(redact(&r, "http://bob@example.com/"), "http://REDACTED@example.com/");
	assert_string_equal(redact(&r, "http://example.com/a@b"), "http://example.com/a@b");
	assert_string_equal(redact(&r, "/path/with@sign"), "/path/with@sign");
	r.mode = TV_QUERY_STRIP;
	assert_string_equal(redact(&r, "http://bob:pw@h/a?x=1"), "http://REDACTED:REDACTED@h/a");
	/* --strip-query --no-redact: the query is dropped, the userinfo kept as --no-redact says */
	r.keep_userinfo = 1;
	assert_string_equal(redact(&r, "http://bob:pw@h/a?x=1"), "http://bob:pw@h/a");
	r.keep_userinfo = 0;
	r.mode = TV_QUERY_KEEP;
	assert_string_equal(redact(&r, "http://bob:pw@h/a?x=1"), "http://bob:pw@h/a?x=1");
	/* an empty userinfo hides nothing */
	r.mode = TV_QUERY_REDACT;
	assert_string_equal(redact(&r, "http://@h/a"), "http://@h/a");
}

static void test_strip_and_keep(void **state)
{
	struct tv_query_rules r;

	(void)state;
	tv_query_rules_default(&r);
	r.mode = TV_QUERY_STRIP;
	assert_string_equal(redact(&r, "/a/b?user=bob&token=1"), "/a/b");
	assert_string_equal(redact(NULL, "/a/b?user=bob&token=1"), "/a/b"); /* the parser default */
	r.mode = TV_QUERY_KEEP;
	assert_string_equal(redact(&r, "/a/b?user=bob&token=1#f"), "/a/b?user=bob&token=1");
}

static void test_custom_list_replaces_or_extends(void **state)
{
	struct tv_query_rules r;
	char err[256];

	(void)state;
	tv_query_rules_default(&r);
	assert_int_equal(tv_query_rules_parse(&r, "Otp,sid", err, sizeof(err)), 0);
	assert_int_equal(r.n, 2);
	/* replaced: token is no longer listed, the new names are, in any case */
	assert_string_equal(redact(&r, "/a?token=1&OTP=2&Sid=3"),
			    "/a?token=1&OTP=REDACTED&Sid=REDACTED");

	tv_query_rules_default(&r);
	assert_int_equal(tv_query_rules_parse(&r, "+otp", err, sizeof(err)), 0);
	assert_string_equal(redact(&r, "/a?token=1&otp=2&x=3"),
			    "/a?token=REDACTED&otp=REDACTED&x=3");

	/* "": no name at all, the query kept */
	tv_query_rules_default(&r);
	assert_int_equal(tv_query_rules_parse(&r, "", err, sizeof(err)), 0);
	assert_int_equal(r.n, 0);
	assert_string_equal(redact(&r, "/a?token=1"), "/a?token=1");
}

static void test_custom_list_rejections(void **state)
{
	struct tv_query_rules r, before;
	char err[256], name[TV_QUERY_PARAM_NAME_BYTES + 1], list[TV_QUERY_MAX_PARAMS * 4 + 8];
	size_t n = 0;

	(void)state;
	tv_query_rules_default(&r);
	before = r;
	assert_int_equal(tv_query_rules_parse(&r, "a,,b", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "empty name"));
	assert_int_equal(tv_query_rules_parse(&r, "a,", err, sizeof(err)), -22);
	assert_int_equal(tv_query_rules_parse(&r, "+", err, sizeof(err)), -22);
	memset(name, 'x', TV_QUERY_PARAM_NAME_BYTES);
	name[TV_QUERY_PARAM_NAME_BYTES] = '\0';
	assert_int_equal(tv_query_rules_parse(&r, name, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "longer than 63 bytes"));
	name[TV_QUERY_PARAM_NAME_BYTES - 1] = '\0'; /* 63 bytes: fits */
	assert_int_equal(tv_query_rules_parse(&r, name, err, sizeof(err)), 0);
	tv_query_rules_default(&r);
	/* a refused list leaves the rules as they were */
	assert_int_equal(tv_query_rules_parse(&r, "a,,b", err, sizeof(err)), -22);
	assert_memory_equal(&r, &before, sizeof(r));
	/* TV_QUERY_MAX_PARAMS names fit, one more does not */
	for (int i = 0; i < TV_QUERY_MAX_PARAMS; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%sp%d", i ? "," : "", i);
	assert_int_equal(tv_query_rules_parse(&r, list, err, sizeof(err)), 0);
	snprintf(list + n, sizeof(list) - n, ",one_more");
	assert_int_equal(tv_query_rules_parse(&r, list, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "more than 64 names"));
	/* extending the defaults counts them too */
	tv_query_rules_default(&r);
	n = (size_t)snprintf(list, sizeof(list), "+");
	for (size_t i = r.n; i <= TV_QUERY_MAX_PARAMS; i++)
		n += (size_t)snprintf(list + n, sizeof(list) - n, "%sq%zu", n > 1 ? "," : "", i);
	assert_int_equal(tv_query_rules_parse(&r, list, err, sizeof(err)), -22);
}

/* Like snprintf: the full length comes back whatever the room, the output is cut and ends in
 * NUL; with cap 0 nothing is written. */
static void test_output_bound(void **state)
{
	struct tv_query_rules r;
	const char *t = "/a?token=1&b=2";
	char out[8];

	(void)state;
	tv_query_rules_default(&r);
	memset(out, 'Z', sizeof(out));
	assert_int_equal(tv_query_redact(&r, t, strlen(t), out, 0),
			 strlen("/a?token=REDACTED&b=2"));
	assert_int_equal(out[0], 'Z');
	assert_int_equal(tv_query_redact(&r, t, strlen(t), out, sizeof(out)),
			 strlen("/a?token=REDACTED&b=2"));
	assert_string_equal(out, "/a?toke");
	/* a target given by length: bytes past n are not read (a cut request line) */
	assert_int_equal(tv_query_redact(&r, "/a?token=1XYZ", 10, out, sizeof(out)),
			 strlen("/a?token=REDACTED"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_list_redacts_only_sensitive_values),
		cmocka_unit_test(test_query_edges),
		cmocka_unit_test(test_userinfo_redacted),
		cmocka_unit_test(test_strip_and_keep),
		cmocka_unit_test(test_custom_list_replaces_or_extends),
		cmocka_unit_test(test_custom_list_rejections),
		cmocka_unit_test(test_output_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
