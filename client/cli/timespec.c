/* Parsing and formatting of the CLI's time arguments. Pure functions over unix nanoseconds so
 * the query window edges are exact integers, tested in tests/unit/test_timespec.c. */
#include "cli/timespec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/errf.h"
#include "common/size.h"

#define S_PER_MIN 60ull
#define S_PER_HOUR 3600ull
#define S_PER_DAY 86400ull

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Exactly n decimal digits at *p; advances *p. */
static bool digits(const char **p, int n, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (unsigned)(c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool expect(const char **p, const char *any_of)
{
	if (**p == '\0' || !strchr(any_of, **p))
		return false;
	(*p)++;
	return true;
}

#define FORMS "expected RFC 3339 (2026-03-01T12:00:00Z), unix ns, now, or -N with ms, s, m, h, d"
/* 2^64-1 ns after the epoch, the largest time a uint64 of unix ns holds */
#define LATEST "2554-07-21T23:34:33.709551615Z"

static int parse_rfc3339(const char *s, uint64_t *out_ns, char *why, size_t whylen)
{
	static const char *const months[12] = {"January", "February", "March",	   "April",
					       "May",	  "June",     "July",	   "August",
					       "September", "October", "November", "December"};
	const char *p = s;
	unsigned year, mon, day, hour, min, sec, frac_ns = 0, off_h = 0, off_m = 0;
	int64_t days, secs, off_s = 0;
	uint64_t ns;

	if (!digits(&p, 4, &year) || !expect(&p, "-") || !digits(&p, 2, &mon) ||
	    !expect(&p, "-") || !digits(&p, 2, &day) || !expect(&p, "Tt") ||
	    !digits(&p, 2, &hour) || !expect(&p, ":") || !digits(&p, 2, &min) ||
	    !expect(&p, ":") || !digits(&p, 2, &sec))
		return tv_errf(why, whylen, -EINVAL, FORMS);
	if (mon < 1 || mon > 12)
		return tv_errf(why, whylen, -EINVAL, "month %02u: months are 01 to 12", mon);
	if (day < 1 || day > days_in_month(year, mon))
		return tv_errf(why, whylen, -EINVAL, "no such day: %s %04u has %u days",
			       months[mon - 1], year, days_in_month(year, mon));
	if (hour > 23 || min > 59)
		return tv_errf(why, whylen, -EINVAL,
			       "%02u:%02u is not a time of day (00:00 to 23:59)", hour, min);
	/* Unix time has no leap seconds, so :60 cannot be represented exactly: reject it. */
	if (sec == 60)
		return tv_errf(why, whylen, -EINVAL,
			       "second 60: a leap second has no unix time (use :59.999999999)");
	if (sec > 59)
		return tv_errf(why, whylen, -EINVAL, "second %02u: seconds are 00 to 59", sec);
	if (*p == '.') {
		unsigned scale = 100000000, n = 0;

		p++;
		for (; *p >= '0' && *p <= '9'; p++, n++) {
			frac_ns += (unsigned)(*p - '0') * scale; /* digits past ns: truncated */
			scale /= 10;
		}
		if (n == 0)
			return tv_errf(why, whylen, -EINVAL,
				       "no digits after the '.' of the seconds");
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;

		p++;
		if (!digits(&p, 2, &off_h) || !expect(&p, ":") || !digits(&p, 2, &off_m) ||
		    off_h > 23 || off_m > 59)
			return tv_errf(why, whylen, -EINVAL,
				       "the UTC offset must be +HH:MM or -HH:MM, "
				       "-23:59 to +23:59");
		off_s = sign * (int64_t)(off_h * S_PER_HOUR + off_m * S_PER_MIN);
	} else {
		return tv_errf(why, whylen, -EINVAL,
			       "no UTC offset: end the time with Z or +HH:MM/-HH:MM");
	}
	if (*p != '\0')
		return tv_errf(why, whylen, -EINVAL, "unexpected '%s' after the time", p);

	days = days_from_civil(year, mon, day);
	/* local time minus its offset from UTC gives UTC */
	secs = days * (int64_t)S_PER_DAY + hour * 3600 + min * 60 + sec - off_s;
	if (secs < 0)
		return tv_errf(why, whylen, -EINVAL, "before 1970-01-01T00:00:00Z, the unix epoch");
	if (__builtin_mul_overflow((uint64_t)secs, TV_NS_PER_S, &ns) ||
	    __builtin_add_overflow(ns, frac_ns, &ns))
		return tv_errf(why, whylen, -EINVAL,
			       "after " LATEST ", the latest time 64-bit unix ns hold");
	*out_ns = ns;
	return 0;
}

static int parse_relative(const char *s, uint64_t now_ns, uint64_t *out_ns, char *why,
			  size_t whylen)
{
	const char *p = s + 1; /* past '-' */
	const struct tv_time_unit *u;
	uint64_t n, delta_ns;
	int ret = tv_parse_digits(&p, &n);

	if (ret == -ERANGE)
		return tv_errf(why, whylen, -EINVAL, "the number does not fit in 64 bits");
	if (ret)
		return tv_errf(why, whylen, -EINVAL,
			       "a relative time is -N followed by ms, s, m, h or d "
			       "(-15m)");
	if (*p == '.' || *p == ',')
		return tv_errf(why, whylen, -EINVAL,
			       "fractions are not allowed in relative times: use a "
			       "smaller unit (-90m, not -1.5h)");
	u = tv_time_unit(p);
	if (!u)
		return tv_errf(why, whylen, -EINVAL,
			       *p ? "unknown unit '%s': units are ms, s, m, h, d"
				  : "no unit%s: add ms, s, m, h or d (-15m)",
			       p);
	if (__builtin_mul_overflow(n, u->ns, &delta_ns) || delta_ns > now_ns)
		return tv_errf(why, whylen, -EINVAL,
			       "reaches before 1970-01-01T00:00:00Z, the unix epoch");
	*out_ns = now_ns - delta_ns;
	return 0;
}

int tv_parse_time(const char *s, uint64_t now_ns, uint64_t *out_ns, char *why, size_t whylen)
{
	const char *p = s;
	uint64_t v;
	int ret;

	if (!s || !*s)
		return tv_errf(why, whylen, -EINVAL, "empty; " FORMS);
	if (strcmp(s, "now") == 0) {
		*out_ns = now_ns;
		return 0;
	}
	if (s[0] == '-')
		return parse_relative(s, now_ns, out_ns, why, whylen);
	/* all digits: unix ns; digits followed by '-' at position 4: a date */
	ret = tv_parse_digits(&p, &v);
	if (ret == -ERANGE && s[strspn(s, "0123456789")] == '\0')
		return tv_errf(why, whylen, -EINVAL,
			       "past 2^64-1 ns (" LATEST "), the largest unix ns");
	if (ret == 0 && *p == '\0') {
		*out_ns = v;
		return 0;
	}
	return parse_rfc3339(s, out_ns, why, whylen);
}

int tv_format_rfc3339(uint64_t ts_ns, char *buf, size_t len)
{
	uint64_t secs = ts_ns / TV_NS_PER_S, sod = secs % S_PER_DAY;
	unsigned ms = (unsigned)(ts_ns % TV_NS_PER_S / TV_NS_PER_MS), m, d;
	int64_t y;
	int n;

	civil_from_days((int64_t)(secs / S_PER_DAY), &y, &m, &d);
	n = snprintf(buf, len, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d,
		     (unsigned)(sod / 3600), (unsigned)(sod % 3600 / 60), (unsigned)(sod % 60), ms);
	if (n < 0 || (size_t)n >= len) {
		if (len)
			buf[0] = '\0';
		return -ENOSPC;
	}
	return n;
}
