/* The under-store's names (server/under/persist.h): --under's s3://BUCKET/PREFIX split and
 * refused, and the object keys of UNDERSTORE.md "Layout" (hour of the oldest record, UTC;
 * 16-hex-digit ids; the manifest beside the blocks), byte for byte. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "under/persist.h"

static void test_uri_split(void **state)
{
	char b[64], p[TV_PERSIST_PREFIX_MAX + 1], err[256];

	(void)state;
	assert_int_equal(tv_persist_parse_uri("s3://tracevault/a/b/", b, sizeof(b), p, sizeof(p),
					      err, sizeof(err)), 0);
	assert_string_equal(b, "tracevault");
	assert_string_equal(p, "a/b");
	assert_int_equal(tv_persist_parse_uri("s3://my.bucket-1", b, sizeof(b), p, sizeof(p), err,
					      sizeof(err)), 0);
	assert_string_equal(b, "my.bucket-1");
	assert_string_equal(p, "");
}

static void test_uri_refused(void **state)
{
	static const char *bad[] = { "gs://b/p", "s3://ab/p", "s3://Upper/p", "s3://bucket//p",
				     "s3://bucket/a//b", "s3://under_score/p", "s3:///p" };
	char b[64], p[TV_PERSIST_PREFIX_MAX + 1], err[256], big[TV_PERSIST_PREFIX_MAX + 32];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(tv_persist_parse_uri(bad[i], b, sizeof(b), p, sizeof(p), err,
						      sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "invalid --under"));
	}
	memcpy(big, "s3://bkt/", 9);
	memset(big + 9, 'x', TV_PERSIST_PREFIX_MAX + 1);
	big[9 + TV_PERSIST_PREFIX_MAX + 1] = '\0';
	assert_int_equal(tv_persist_parse_uri(big, b, sizeof(b), p, sizeof(p), err, sizeof(err)),
			 -EINVAL);
	big[9 + TV_PERSIST_PREFIX_MAX] = '\0'; /* exactly the bound: accepted */
	assert_int_equal(tv_persist_parse_uri(big, b, sizeof(b), p, sizeof(p), err, sizeof(err)),
			 0);
	assert_int_equal(strlen(p), TV_PERSIST_PREFIX_MAX);
}

static void test_keys(void **state)
{
	/* 2025-11-24T16:59:59.999999999Z: still hour 16 */
	const uint64_t t = 1764003599999999999ull;
	char k[TV_PERSIST_KEY_LEN];

	(void)state;
	tv_persist_key("pre/fix", 0xabcull, t, 0x1234ull, 0, 0, k, sizeof(k));
	assert_string_equal(k, "pre/fix/v1/2025/11/24/16/0000000000000abc/0000000000001234.blk");
	tv_persist_key("pre/fix", 0xabcull, t, 0, 1, 0, k, sizeof(k));
	assert_string_equal(k, "pre/fix/v1/2025/11/24/16/0000000000000abc/manifest.json");
	tv_persist_key("", 0xabcull, t + 1, 0, 0, 1, k, sizeof(k));
	assert_string_equal(k, "v1/2025/11/24/17/0000000000000abc/");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_uri_split),
		cmocka_unit_test(test_uri_refused),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
