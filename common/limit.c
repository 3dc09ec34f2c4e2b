/* common/limit.h: checking a value against its owner's struct tv_limit and stating the bound
 * in words for a usage message (byte bounds in the size syntax of common/size.h). */
#include "common/limit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "common/size.h"

int tv_limit_check(const struct tv_limit *l, uint64_t v)
{
	if (v < l->min || v > l->max || (l->pow2 && (v & (v - 1))) || (l->step && v % l->step))
		return -ERANGE;
	return 0;
}

int tv_limit_format(const struct tv_limit *l, bool bytes, char *buf, size_t len)
{
	char lo[32], hi[32], step[48] = "";
	int n;

	if (bytes) {
		tv_size_format(l->min, lo, sizeof(lo));
		tv_size_format(l->max, hi, sizeof(hi));
	} else {
		snprintf(lo, sizeof(lo), "%" PRIu64, l->min);
		snprintf(hi, sizeof(hi), "%" PRIu64, l->max);
	}
	if (l->step) {
		char s[32];

		if (bytes)
			tv_size_format(l->step, s, sizeof(s));
		else
			snprintf(s, sizeof(s), "%" PRIu64, l->step);
		snprintf(step, sizeof(step), ", a multiple of %s", s);
	}
	n = snprintf(buf, len, "%s%s to %s%s", l->pow2 ? "a power of two, " : "", lo, hi, step);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}
