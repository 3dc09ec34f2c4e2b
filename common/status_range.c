/* The HTTP status selector of --status and status= (common/status_range.h). */
#include "common/status_range.h"

#include <errno.h>
#include <string.h>

/* A status code 100..999 of exactly three digits at s. */
static int code3(const char *s, unsigned *v)
{
	if (s[0] < '1' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
		return -EINVAL;
	*v = (unsigned)((s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0'));
	return 0;
}

int tv_status_range_parse(const char *s, size_t n, unsigned *lo, unsigned *hi)
{
	unsigned a, b;

	if (n == 4 && strncmp(s, "none", 4) == 0) {
		a = b = 0;
	} else if (n == 3 && s[0] >= '1' && s[0] <= '9' && s[1] == 'x' && s[2] == 'x') {
		a = (unsigned)(s[0] - '0') * 100;
		b = a + 99;
	} else if (n == 3 && code3(s, &a) == 0) {
		b = a;
	} else if (n == 7 && s[3] == '-' && code3(s, &a) == 0 && code3(s + 4, &b) == 0 &&
		   a <= b) {
		;
	} else {
		return -EINVAL;
	}
	*lo = a;
	*hi = b;
	return 0;
}
