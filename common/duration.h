/* Durations as both binaries read them: a whole number with a unit (250ms, 30s, 15m, 12h,
 * 7d). The one table of units: the CLI's relative times (-15m, client/cli/timespec.h) and
 * durations (--min-latency), and tracevaultd's retention options (--retain-time 30d). */
#ifndef TV_COMMON_DURATION_H
#define TV_COMMON_DURATION_H

#include <stdint.h>

/* A unit of relative times and durations: its suffix and length. */
struct tv_time_unit {
	const char *suffix; /* "ms", "s", "m", "h", "d" */
	uint64_t ns;
};

/* The unit whose suffix is exactly suffix, or NULL. */
const struct tv_time_unit *tv_time_unit(const char *suffix);

/* Parse the whole of s, decimal digits then a unit of the table above (required: "30" alone
 * is refused, a bare number would be ambiguous), into *out_ns. No sign, space or fraction.
 * Returns 0, -EINVAL when s is not such a duration, or -ERANGE past 2^64-1 ns. The bound of
 * a particular option is its owner's struct tv_limit (common/limit.h), checked after this. */
int tv_duration_parse(const char *s, uint64_t *out_ns);

#endif
