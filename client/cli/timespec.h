/* Time arguments of the CLI (--from/--to): RFC 3339, unix nanoseconds, `now`, or relative to
 * now (`-15m`), all turned into unix nanoseconds; and the RFC 3339 form used in table output. */
#ifndef TV_TIMESPEC_H
#define TV_TIMESPEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/duration.h" /* struct tv_time_unit, tv_time_unit: the one table of units */

/* Longest string tv_format_rfc3339 writes, NUL included ("YYYY-MM-DDTHH:MM:SS.mmmZ"). */
#define TV_RFC3339_MS_LEN 32

/* Parse s into unix nanoseconds. Accepted forms:
 *   - RFC 3339: 2026-03-01T12:00:00Z, 2026-03-01T12:00:00.123456789+02:00 (T or t, Z or z,
 *     up to 9 fractional digits kept, more are truncated to nanoseconds);
 *   - unix nanoseconds: all digits;
 *   - "now": now_ns;
 *   - relative: "-" N unit with unit in ms, s, m, h, d: now_ns - N * unit.
 * Returns 0 with *out_ns set, or -EINVAL (malformed, out of range, before 1970 or past 2^64 ns)
 * with the reason in why (a sentence fragment without the value, "no such day: February 2024
 * has 29 days"; truncated to whylen, NUL-terminated; why may be NULL). *out_ns is untouched on
 * error. */
int tv_parse_time(const char *s, uint64_t now_ns, uint64_t *out_ns, char *why, size_t whylen);

/* Longest reason tv_parse_time writes, NUL included. */
#define TV_TIME_WHY_LEN 128


/* Write ts_ns as RFC 3339 UTC with milliseconds ("2026-03-01T12:00:00.123Z") into buf.
 * Returns the length written, or -ENOSPC when len is too small (buf then holds ""). */
int tv_format_rfc3339(uint64_t ts_ns, char *buf, size_t len);

#endif
