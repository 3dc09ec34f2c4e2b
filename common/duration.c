/* Duration parsing and the one table of time units (see duration.h). */
#include "common/duration.h"

#include <errno.h>
#include <string.h>

#include "common/clock.h"
#include "common/size.h"

static const struct tv_time_unit UNITS[] = {
	{ "ms", TV_NS_PER_MS },
	{ "s", TV_NS_PER_S },
	{ "m", 60 * TV_NS_PER_S },
	{ "h", 3600 * TV_NS_PER_S },
	{ "d", 86400 * TV_NS_PER_S },
};

const struct tv_time_unit *tv_time_unit(const char *suffix)
{
	for (size_t i = 0; i < sizeof(UNITS) / sizeof(UNITS[0]); i++)
		if (strcmp(suffix, UNITS[i].suffix) == 0)
			return &UNITS[i];
	return NULL;
}

int tv_duration_parse(const char *s, uint64_t *out_ns)
{
	const struct tv_time_unit *u;
	const char *p = s;
	uint64_t n, ns;
	int ret = tv_parse_digits(&p, &n);

	if (ret)
		return ret;
	u = tv_time_unit(p);
	if (!u)
		return -EINVAL;
	if (__builtin_mul_overflow(n, u->ns, &ns))
		return -ERANGE;
	*out_ns = ns;
	return 0;
}
