/* tracevault CLI helpers the commands share: error reports that return the exit code, and the
 * table-driven option parser of cli.h, so every command words and exits on bad input the same
 * way, and states the bound of the module that owns each limit. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/timespec.h"
#include "common/addr.h"
#include "common/clock.h"
#include "common/size.h"
#include "common/usage.h"

/* Options of the largest table, plus --help and the terminator. */
#define MAX_OPTIONS 48
/* A long-only option's getopt value: its table index above every short option character. */
#define LONG_ONLY_BASE 256

const struct tv_limit tv_cli_positive_int_limit = {.min = 1, .max = INT_MAX};
const struct tv_limit tv_cli_read_message_bytes_limit = {
	.min = TV_CLI_READ_MIN_MESSAGE_BYTES,
	.max = TV_WIRE_MAX_MESSAGE_BYTES,
};
const struct tv_limit tv_cli_fd_limit = {.min = 0, .max = INT_MAX};
const struct tv_limit tv_cli_port_limit = {.min = 1, .max = TV_PORT_MAX};
const struct tv_limit tv_cli_count_limit = {.min = 0, .max = LLONG_MAX};
const struct tv_limit tv_cli_positive_count_limit = {.min = 1, .max = LLONG_MAX};

/* One line "tracevault: <reason>" on stderr; returns exit_code for main to return. */
static int report(int exit_code, const char *fmt, va_list ap)
{
	fputs("tracevault: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return exit_code;
}

int tv_cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	int code;

	va_start(ap, fmt);
	code = report(TV_CLI_EXIT_USAGE, fmt, ap);
	va_end(ap);
	return code;
}

int tv_cli_runtime_error(const char *fmt, ...)
{
	va_list ap;
	int code;

	va_start(ap, fmt);
	code = report(EXIT_FAILURE, fmt, ap);
	va_end(ap);
	return code;
}

/* The usage error for a getopt_long result of '?' or ':', in common/usage.h's words; before
 * is optind before that call. */
static int bad_option(int c, char **argv, int before)
{
	char why[TV_CLI_ERR_LEN];

	tv_usage_getopt_reason(c, tv_usage_getopt_arg(argv, before, optind), optopt, why,
			       sizeof(why));
	return tv_cli_usage_error("%s", why);
}

/* Decimal digits, the whole string, into *out (common/size.h's digit run, then the end).
 * 0, -EINVAL, or -ERANGE past 64 bits. */
static int parse_digits(const char *s, uint64_t *out)
{
	uint64_t v;
	int ret = tv_parse_digits(&s, &v);

	if (ret)
		return ret;
	if (*s)
		return -EINVAL;
	*out = v;
	return 0;
}

bool tv_cli_plain_decimal(const char *s)
{
	const char *dot = strchr(s, '.');
	size_t n = strlen(s), whole = dot ? (size_t)(dot - s) : n;

	if (whole == 0 || strspn(s, "0123456789") != whole)
		return false;
	return !dot || (dot[1] && strspn(dot + 1, "0123456789") == n - whole - 1);
}

#define MS_PER_DAY ((uint64_t)24 * 3600 * 1000)
/* Fraction digits a duration may have: past 9, frac * unit could pass 64 bits (10^9 * 1 d). */
#define DURATION_FRAC_DIGITS 9

/* A duration in ms: D[.D] followed by ms, s, m, h or d (250ms, 1.5s, 2m, 1d); when bare_ms
 * is not 0, a number without a unit counts in units of bare_ms ms (--duration 3: seconds).
 * Plain digits only (no sign, space, exponent or hex), and a fraction must come out at whole
 * ms. 0, -EINVAL, or -ERANGE past 64 bits. */
static int parse_duration_ms(const char *s, uint64_t bare_ms, uint64_t *out_ms)
{
	char num[64];
	size_t n = strspn(s, "0123456789."), frac_digits = 0;
	uint64_t unit = bare_ms, whole = 0, frac = 0, scale = 1;
	char *dot;
	int ret;

	if (n == 0 || n >= sizeof(num))
		return n ? -ERANGE : -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!tv_cli_plain_decimal(num))
		return -EINVAL;
	if (s[n]) {
		const struct tv_time_unit *u = tv_time_unit(s + n); /* relative times' units */

		unit = u ? u->ns / TV_NS_PER_MS : 0;
	}
	if (!unit)
		return -EINVAL;
	dot = strchr(num, '.');
	if (dot) {
		*dot = '\0';
		/* trailing zeros say nothing: 1.500s is 1.5s */
		for (size_t end = strlen(dot + 1); end && dot[end] == '0'; end--)
			dot[end] = '\0';
		frac_digits = strlen(dot + 1);
		if (frac_digits > DURATION_FRAC_DIGITS)
			return -EINVAL; /* finer than a ns: surely not a whole ms */
		if (frac_digits && parse_digits(dot + 1, &frac))
			return -EINVAL;
		for (size_t i = 0; i < frac_digits; i++)
			scale *= 10;
	}
	ret = parse_digits(num, &whole);
	if (ret)
		return ret;
	if (whole > UINT64_MAX / unit)
		return -ERANGE;
	if ((frac * unit) % scale)
		return -EINVAL; /* finer than a ms */
	if (whole * unit > UINT64_MAX - frac * unit / scale)
		return -ERANGE;
	*out_ms = whole * unit + frac * unit / scale;
	return 0;
}

/* ms in the largest unit that divides it: 1ms, 250ms, 1s, 2m, 24h, 365d. Whole days are said
 * in days only past one: "1ms to 24h" reads better than "1ms to 1d". */
static void format_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms > MS_PER_DAY && ms % MS_PER_DAY == 0)
		snprintf(buf, len, "%" PRIu64 "d", ms / MS_PER_DAY);
	else if (ms && ms % (3600 * 1000) == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / (3600 * 1000));
	else if (ms && ms % (60 * 1000) == 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / (60 * 1000));
	else if (ms && ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

/* The bound of o in the syntax of its argument: "1K to 32M", "1ms to 24h", "1s to 1h, a
 * multiple of 1s" (a step: tv_limit_format's wording), "1 to 15 bytes". */
static void format_bound(const struct tv_cli_opt *o, char *buf, size_t len)
{
	char lo[32], hi[32], step[32] = "";

	switch (o->arg) {
	case TV_CLI_ARG_SIZE:
	case TV_CLI_ARG_SIZE32:
		tv_limit_format(o->limit, true, buf, len);
		break;
	case TV_CLI_ARG_DURATION_MS:
	case TV_CLI_ARG_SECONDS:
		format_ms(o->limit->min, lo, sizeof(lo));
		format_ms(o->limit->max, hi, sizeof(hi));
		if (o->limit->step)
			format_ms(o->limit->step, step, sizeof(step));
		snprintf(buf, len, "%s to %s%s%s", lo, hi, step[0] ? ", a multiple of " : "", step);
		break;
	case TV_CLI_ARG_STRING:
		tv_limit_format(o->limit, false, buf, len);
		strncat(buf, " bytes", len - strlen(buf) - 1);
		break;
	default:
		tv_limit_format(o->limit, false, buf, len);
	}
}

/* "invalid --NAME: 'ARG'" with " (BOUND, HINT)" as far as o has them. */
static int invalid(const struct tv_cli_opt *o, const char *arg)
{
	char bound[96] = "";

	if (o->limit)
		format_bound(o, bound, sizeof(bound));
	if (bound[0] || o->hint)
		return tv_cli_usage_error("invalid --%s: '%s' (%s%s%s)", o->name, arg, bound,
					  bound[0] && o->hint ? ", " : "", o->hint ? o->hint : "");
	return tv_cli_usage_error("invalid --%s: '%s'", o->name, arg);
}

/* Parse arg as o says and store it into field. 0, or the usage exit code after its line. */
static int store(const struct tv_cli_opt *o, const char *arg, void *field)
{
	char why[TV_CLI_ERR_LEN] = "";
	uint64_t v = 0;
	int ret = 0;

	switch (o->arg) {
	case TV_CLI_ARG_SET:
	case TV_CLI_ARG_CLEAR:
		*(int *)field = o->arg == TV_CLI_ARG_SET;
		return 0;
	case TV_CLI_ARG_STRING:
		v = strlen(arg);
		break;
	case TV_CLI_ARG_INT:
	case TV_CLI_ARG_U64:
		/* a '-' is refused like any non-digit: no option here takes a negative value */
		ret = parse_digits(arg, &v);
		break;
	case TV_CLI_ARG_SIZE:
	case TV_CLI_ARG_SIZE32:
		ret = tv_size_parse(arg, &v);
		break;
	case TV_CLI_ARG_DURATION_MS:
		ret = parse_duration_ms(arg, 0, &v);
		break;
	case TV_CLI_ARG_SECONDS:
		ret = parse_duration_ms(arg, 1000, &v);
		break;
	case TV_CLI_ARG_CUSTOM:
		if (o->parse(arg, field, why, sizeof(why)) == 0)
			return 0;
		return why[0] ? tv_cli_usage_error("%s", why) : invalid(o, arg);
	}
	/* an int field's limit is at most INT_MAX; the test keeps a table slip from wrapping */
	if (!ret && (o->arg == TV_CLI_ARG_INT || o->arg == TV_CLI_ARG_DURATION_MS) && v > INT_MAX)
		ret = -ERANGE;
	if (ret || (o->limit && tv_limit_check(o->limit, v)))
		return invalid(o, arg);
	switch (o->arg) {
	case TV_CLI_ARG_STRING: *(const char **)field = arg; break;
	case TV_CLI_ARG_INT:
	case TV_CLI_ARG_DURATION_MS: *(int *)field = (int)v; break;
	case TV_CLI_ARG_U64:
	case TV_CLI_ARG_SECONDS: *(uint64_t *)field = v; break;
	case TV_CLI_ARG_SIZE: *(size_t *)field = (size_t)v; break;
	case TV_CLI_ARG_SIZE32: *(uint32_t *)field = (uint32_t)v; break;
	default: break;
	}
	return 0;
}

int tv_cli_parse(int argc, char **argv, const struct tv_cli_opt *table, const char *const *usage,
		 void *opts)
{
	struct option lo[MAX_OPTIONS + 2];
	char shorts[2 * MAX_OPTIONS + 4] = ":h";
	size_t n = 0, ns = strlen(shorts);
	int c;

	for (; table[n].name; n++) {
		const struct tv_cli_opt *o = &table[n];
		bool has_arg = o->arg != TV_CLI_ARG_SET && o->arg != TV_CLI_ARG_CLEAR;

		if (n == MAX_OPTIONS) /* a programming error: the table outgrew the parser */
			abort();
		lo[n] = (struct option){o->name, has_arg ? required_argument : no_argument, NULL,
					o->short_name ? o->short_name : LONG_ONLY_BASE + (int)n};
		if (o->short_name) {
			shorts[ns++] = o->short_name;
			if (has_arg)
				shorts[ns++] = ':';
		}
	}
	shorts[ns] = '\0';
	lo[n] = (struct option){"help", no_argument, NULL, 'h'};
	lo[n + 1] = (struct option){0};
	for (;;) {
		const struct tv_cli_opt *o = NULL;
		int before = optind, ret;

		c = getopt_long(argc, argv, shorts, lo, NULL);
		if (c == -1)
			break;
		if (c == 'h') {
			for (const char *const *part = usage; *part; part++)
				fputs(*part, stdout);
			return EXIT_SUCCESS;
		}
		if (c >= LONG_ONLY_BASE && (size_t)(c - LONG_ONLY_BASE) < n)
			o = &table[c - LONG_ONLY_BASE];
		for (size_t i = 0; !o && c != '?' && c != ':' && i < n; i++)
			if (table[i].short_name == c)
				o = &table[i];
		if (!o)
			return bad_option(c, argv, before);
		ret = store(o, optarg, (char *)opts + o->offset);
		if (ret)
			return ret;
	}
	return TV_CLI_PARSED;
}

/* A bare integer T is unix ns (README "time"), so 1767225600 typed as seconds is 1.77 s
 * after the epoch and the window silently holds nothing. Below this no record of a real
 * capture can lie (1970-01-01T00:16:40Z as ns): worth one warning line, not a refusal. */
#define TV_CLI_SUSPECT_NS_BELOW 1000000000000ull

/* The warning for opt's value arg read as v ns, naming the forms that mean seconds. */
static void warn_if_seconds(const char *opt, const char *arg, uint64_t v)
{
	char secs_rfc[TV_RFC3339_MS_LEN], *dot;
	uint64_t as_ns;

	if (!arg || arg[strspn(arg, "0123456789")] != '\0' || v == 0 ||
	    v >= TV_CLI_SUSPECT_NS_BELOW)
		return;
	fprintf(stderr, "tracevault: warning: %s %s is read as nanoseconds (1970-01-01T00:%02u:"
		"%02u.%09uZ)", opt, arg, (unsigned)(v / TV_NS_PER_S / 60),
		(unsigned)(v / TV_NS_PER_S % 60), (unsigned)(v % TV_NS_PER_S));
	/* the same number as unix seconds, in the two forms T takes that say it */
	if (!__builtin_mul_overflow(v, TV_NS_PER_S, &as_ns) &&
	    tv_format_rfc3339(as_ns, secs_rfc, sizeof(secs_rfc)) > 0) {
		if ((dot = strrchr(secs_rfc, '.')))
			strcpy(dot, "Z"); /* whole seconds: ".000Z" says nothing */
		fprintf(stderr, "; for unix seconds write %s or %" PRIu64, secs_rfc, as_ns);
	}
	fputc('\n', stderr);
}

int tv_cli_time_window(const char *cmd, const char *from, const char *to, uint64_t now_ns,
		       uint64_t *from_ns, uint64_t *to_ns)
{
	char why[TV_TIME_WHY_LEN];

	if (!from)
		return tv_cli_usage_error("%s: missing --from", cmd);
	if (tv_parse_time(from, now_ns, from_ns, why, sizeof(why)))
		return tv_cli_usage_error("invalid --from: '%s': %s", from, why);
	if (tv_parse_time(to, now_ns, to_ns, why, sizeof(why)))
		return tv_cli_usage_error("invalid --to: '%s': %s", to, why);
	if (*from_ns > *to_ns) /* a usage error is one line: no warning before it */
		return tv_cli_usage_error("--from (%s) is after --to (%s)", from, to);
	warn_if_seconds("--from", from, *from_ns);
	warn_if_seconds("--to", to, *to_ns);
	return 0;
}

/* Target prefixes gRPC C core 1.51 resolves itself (its resolver registry: dns, ipv4, ipv6,
 * unix, unix-abstract): an entry so written goes to grpc_channel_create unchecked, as before
 * (rpc.c explain_unreachable gives gRPC's word for those). */
static const char *const grpc_schemes[] = {"dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:"};

/* One --server entry: "" when it is a target, else why not (a static sentence fragment). */
static const char *server_entry_problem(const char *e)
{
	char host[256];
	unsigned port;

	for (size_t i = 0; i < sizeof(grpc_schemes) / sizeof(grpc_schemes[0]); i++)
		if (strncmp(e, grpc_schemes[i], strlen(grpc_schemes[i])) == 0)
			return e[strlen(grpc_schemes[i])] ? "" : "a gRPC URI without its address";
	if (strncmp(e, "http://", 7) == 0 || strncmp(e, "https://", 8) == 0)
		return "a URL, not HOST:PORT: drop the http:// or https:// (gRPC adds its own)";
	if (tv_hostport_parse(e, host, sizeof(host), &port) || port == 0)
		return "not HOST:PORT (port 1 to 65535; an IPv6 address in brackets: [::1]:7070)";
	return "";
}

int tv_cli_check_servers(const char **servers)
{
	const char *from = "--server", *why;
	struct tv_server_list l;
	int ret;

	if (!*servers) {
		const char *env = getenv(TV_SERVER_ENV);

		*servers = env && *env ? env : TV_DEFAULT_SERVER;
		from = env && *env ? TV_SERVER_ENV : "the default server";
	}
	ret = tv_server_list_parse(*servers, 0, &l);
	if (ret == -ENOMEM)
		return tv_cli_usage_error("%s: out of memory", from);
	if (ret)
		return tv_cli_usage_error("invalid %s: '%s' (HOST:PORT[,HOST:PORT...], no empty "
					  "entry)", from, *servers);
	/* gRPC would say only "transient failure" about a malformed entry, and a server listed
	 * twice would be read (or written) twice: both are usage errors here, before any call */
	ret = 0;
	for (size_t i = 0; i < l.n && !ret; i++) {
		why = server_entry_problem(l.v[i]);
		if (*why) {
			ret = tv_cli_usage_error("invalid %s: '%s' is %s", from, l.v[i], why);
			break;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(l.v[i], l.v[j]) == 0) {
				ret = tv_cli_usage_error("invalid %s: '%s' is listed twice (every "
							 "record would be read or written twice)",
							 from, l.v[i]);
				break;
			}
	}
	tv_server_list_free(&l);
	return ret;
}

int tv_cli_check_chunk_fits(size_t chunk_bytes, size_t max_message_bytes)
{
	size_t msg = max_message_bytes ? max_message_bytes : TV_DEFAULT_MAX_MESSAGE_BYTES;
	size_t max = tv_chunk_max_bytes(msg);
	char chunk_s[32], msg_s[32];

	if (!chunk_bytes || chunk_bytes <= max)
		return 0;
	/* in the size syntax the bounds use, with the arithmetic shown: 16M - 64 = 16777152 */
	tv_size_format(chunk_bytes, chunk_s, sizeof(chunk_s));
	tv_size_format(msg, msg_s, sizeof(msg_s));
	return tv_cli_usage_error("--chunk-bytes %s does not fit in %s--max-message-bytes %s (at "
				  "most %s - %zu = %zu)", chunk_s,
				  max_message_bytes ? "" : "the default ", msg_s, msg_s, msg - max,
				  max);
}

void tv_cli_skip_add(struct tv_cli_skips *s, const char *reason)
{
	static const char gone[] = "block file gone:", file[] = "block file ",
			  open_[] = "cannot open the block file";

	if (!reason)
		reason = "";
	if (strncmp(reason, gone, sizeof(gone) - 1) == 0)
		s->gone++;
	else if (strncmp(reason, file, sizeof(file) - 1) == 0 ||
		 strncmp(reason, open_, sizeof(open_) - 1) == 0)
		s->unreadable++;
	else
		s->damaged++;
}

uint64_t tv_cli_skip_total(const struct tv_cli_skips *s)
{
	return s->damaged + s->unreadable + s->gone;
}

void tv_cli_skip_summary(const char *cmd, const struct tv_cli_skips *s, const char *tail)
{
	const struct {
		uint64_t n;
		const char *what;
	} kinds[] = {
		{s->damaged, "damaged"},
		{s->unreadable, "unreadable"},
		{s->gone, "gone: removed while the query ran"},
	};
	uint64_t total = tv_cli_skip_total(s);
	const char *sep = "";

	fprintf(stderr, "tracevault: %s incomplete: %" PRIu64 " block%s skipped (", cmd, total,
		total == 1 ? "" : "s");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (!kinds[i].n)
			continue;
		fprintf(stderr, "%s%" PRIu64 " %s", sep, kinds[i].n, kinds[i].what);
		sep = ", ";
	}
	fprintf(stderr, "; warnings above)%s\n", tail);
}
