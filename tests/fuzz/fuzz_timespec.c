/* libFuzzer harness: the CLI's time arguments (client/cli/timespec.c, --from/--to) and the
 * duration and size syntax both binaries read (common/duration.c, common/size.c).
 * Input: 8 bytes of now_ns, then the argument text (cut at its first NUL).
 * Properties beyond "no crash": every parser returns 0 or its documented errno, a refusal
 * gives a reason, what parses as RFC 3339 output parses back to the same millisecond, and a
 * size or duration prints and reads back to the same value. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "cli/timespec.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/size.h"

#include "fuzz_check.h"

static void check_time(const char *s, uint64_t now_ns)
{
	char why[TV_TIME_WHY_LEN], out[TV_RFC3339_MS_LEN];
	uint64_t t = 0x5a5a5a5a, back, d;
	int ret;

	memset(why, 'x', sizeof(why));
	ret = tv_parse_time(s, now_ns, &t, why, sizeof(why));
	FUZZ_CHECK(ret == 0 || ret == -EINVAL);
	if (ret) {
		FUZZ_CHECK(t == 0x5a5a5a5a); /* untouched on error */
		FUZZ_CHECK(memchr(why, '\0', sizeof(why)) && why[0]);
	}
	/* a relative time is now minus the duration after its '-' */
	if (s[0] == '-' && tv_duration_parse(s + 1, &d) == 0)
		FUZZ_CHECK(d > now_ns ? ret == -EINVAL : (ret == 0 && t == now_ns - d));
	if (ret)
		return;
	/* every time prints as RFC 3339 and reads back to its millisecond */
	FUZZ_CHECK(tv_format_rfc3339(t, out, sizeof(out)) > 0);
	FUZZ_CHECK(tv_parse_time(out, now_ns, &back, NULL, 0) == 0);
	FUZZ_CHECK(back == t - t % TV_NS_PER_MS);
}

static void check_size(const char *s)
{
	char out[32];
	uint64_t v, back;
	int ret = tv_size_parse(s, &v);

	FUZZ_CHECK(ret == 0 || ret == -EINVAL || ret == -ERANGE);
	if (ret)
		return;
	FUZZ_CHECK(tv_size_format(v, out, sizeof(out)) > 0);
	FUZZ_CHECK(tv_size_parse(out, &back) == 0 && back == v);
}

static void check_duration(const char *s)
{
	const struct tv_time_unit *u;
	const char *p = s;
	uint64_t ns, n;
	int ret = tv_duration_parse(s, &ns);

	FUZZ_CHECK(ret == 0 || ret == -EINVAL || ret == -ERANGE);
	if (ret)
		return;
	/* digits then exactly one unit of the table, the value their product */
	FUZZ_CHECK(tv_parse_digits(&p, &n) == 0);
	u = tv_time_unit(p);
	FUZZ_CHECK(u && n * u->ns == ns && (u->ns == 0 || ns / u->ns == n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	uint64_t now_ns = fuzz_uint(&in, 8);
	char *s = malloc(in.n + 1);

	if (!s)
		return 0;
	memcpy(s, in.p, in.n);
	s[in.n] = '\0';
	check_time(s, now_ns);
	check_size(s);
	check_duration(s);
	free(s);
	return 0;
}
