/* The size syntax of common/size.h: what both binaries parse for a byte option and print for
 * a byte bound (common/limit.c formats bounds with tv_size_format). */
#include "common/size.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const struct {
	char suffix;
	unsigned shift;
} UNITS[] = {{'G', 30}, {'M', 20}, {'K', 10}}; /* largest first, for tv_size_format */

int tv_parse_digits(const char **p, uint64_t *out)
{
	const char *q = *p;
	uint64_t v = 0;

	if (*q < '0' || *q > '9')
		return -EINVAL;
	for (; *q >= '0' && *q <= '9'; q++) {
		if (v > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	*p = q;
	*out = v;
	return 0;
}

int tv_size_parse(const char *s, uint64_t *out_bytes)
{
	uint64_t v = 0;
	unsigned shift = 0;
	const char *p = s;
	int ret = tv_parse_digits(&p, &v);

	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(UNITS) / sizeof(UNITS[0]); i++) {
		if (*p == UNITS[i].suffix) {
			shift = UNITS[i].shift;
			p++;
			break;
		}
	}
	if (shift && strcmp(p, "iB") == 0)
		p += 2;
	if (*p)
		return -EINVAL;
	if (shift && v > UINT64_MAX >> shift)
		return -ERANGE;
	*out_bytes = v << shift;
	return 0;
}

int tv_size_format(uint64_t bytes, char *buf, size_t len)
{
	int n = -1;

	for (size_t i = 0; i < sizeof(UNITS) / sizeof(UNITS[0]) && n < 0; i++) {
		uint64_t unit = 1ull << UNITS[i].shift;

		if (bytes && bytes % unit == 0)
			n = snprintf(buf, len, "%" PRIu64 "%c", bytes / unit, UNITS[i].suffix);
	}
	if (n < 0)
		n = snprintf(buf, len, "%" PRIu64, bytes);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}
