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

#include "common/addr.h"
#include "common/size.h"

/* Options of the largest table, plus --help and the terminator. */
#define MAX_OPTIONS 48
/* A long-only option's getopt value: its table index above every short option character. */
#define LONG_ONLY_BASE 256

const struct tv_limit tv_cli_positive_int_limit = {.min = 1, .max = INT_MAX};
const struct tv_limit tv_cli_fd_limit = {.min = 0, .max = INT_MAX};
const struct tv_limit tv_cli_port_limit = {.min = 1, .max = TV_PORT_MAX};
const struct tv_limit tv_cli_count_limit = {.min = 0, .max = LLONG_MAX};
const struct tv_limit tv_cli_positive_count_limit = {.min = 1, .max = LLONG_MAX};
const struct tv_limit tv_cli_nonempty_limit = {.min = 1, .max = UINT64_MAX};

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

/* The usage error for a getopt_long result of '?' or ':'. */
static int bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		return tv_cli_usage_error("option '%s' requires an argument", arg);
	if (optopt && optopt != '?' && optopt < LONG_ONLY_BASE && strncmp(arg, "--", 2) != 0)
		return tv_cli_usage_error("unknown option '-%c'", optopt);
	return tv_cli_usage_error("unknown option '%s'", arg);
}

/* Decimal integer, the whole string, into *out. 0 or -EINVAL. */
static int parse_ll(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || end == s || *end ? -EINVAL : 0;
}

/* ms with a unit: 250ms, 1s, 2m, 1h. 0 or -EINVAL (-ERANGE past 64 bits). */
static int parse_duration_ms(const char *s, uint64_t *out_ms)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}};
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			if (v > UINT64_MAX / units[i].ms)
				return -ERANGE;
			*out_ms = v * units[i].ms;
			return 0;
		}
	}
	return -EINVAL;
}

/* ms in the largest unit that divides it: 1ms, 250ms, 1s, 2m, 24h. */
static void format_ms(uint64_t ms, char *buf, size_t len)
{
	if (ms && ms % (3600 * 1000) == 0)
		snprintf(buf, len, "%" PRIu64 "h", ms / (3600 * 1000));
	else if (ms && ms % (60 * 1000) == 0)
		snprintf(buf, len, "%" PRIu64 "m", ms / (60 * 1000));
	else if (ms && ms % 1000 == 0)
		snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
	else
		snprintf(buf, len, "%" PRIu64 "ms", ms);
}

/* The bound of o in the syntax of its argument: "1K to 32M", "1ms to 24h", "1 to 15 bytes". */
static void format_bound(const struct tv_cli_opt *o, char *buf, size_t len)
{
	char lo[32], hi[32];

	switch (o->arg) {
	case TV_CLI_ARG_SIZE:
	case TV_CLI_ARG_SIZE32:
		tv_limit_format(o->limit, true, buf, len);
		break;
	case TV_CLI_ARG_DURATION_MS:
		format_ms(o->limit->min, lo, sizeof(lo));
		format_ms(o->limit->max, hi, sizeof(hi));
		snprintf(buf, len, "%s to %s", lo, hi);
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

	if (o->limit && (o->flags & TV_CLI_SAY_BOUND))
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
	long long ll = 0;
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
		/* negative values are out of every bound here, and not wrapped around */
		ret = parse_ll(arg, &ll);
		if (!ret && ll < 0)
			ret = -ERANGE;
		v = (uint64_t)ll;
		break;
	case TV_CLI_ARG_SIZE:
	case TV_CLI_ARG_SIZE32:
		ret = tv_size_parse(arg, &v);
		break;
	case TV_CLI_ARG_DURATION_MS:
		ret = parse_duration_ms(arg, &v);
		break;
	case TV_CLI_ARG_CUSTOM:
		if (o->parse(arg, field, why, sizeof(why)) == 0)
			return 0;
		return why[0] ? tv_cli_usage_error("%s", why) : invalid(o, arg);
	}
	if (ret || (o->limit && tv_limit_check(o->limit, v)))
		return invalid(o, arg);
	switch (o->arg) {
	case TV_CLI_ARG_STRING: *(const char **)field = arg; break;
	case TV_CLI_ARG_INT:
	case TV_CLI_ARG_DURATION_MS: *(int *)field = (int)v; break;
	case TV_CLI_ARG_U64: *(uint64_t *)field = v; break;
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
	while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		const struct tv_cli_opt *o = NULL;
		int ret;

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
			return bad_option(c, argv);
		ret = store(o, optarg, (char *)opts + o->offset);
		if (ret)
			return ret;
	}
	return TV_CLI_PARSED;
}

/* "A,B,C" with no empty entry (common/addr.h's rule, the one the writer applies). */
bool tv_cli_valid_server_list(const char *s)
{
	return tv_server_list_check(s) == 0;
}

int tv_cli_check_chunk_fits(size_t chunk_bytes, size_t max_message_bytes)
{
	size_t msg = max_message_bytes ? max_message_bytes : TV_DEFAULT_MAX_MESSAGE_BYTES;

	if (chunk_bytes && tv_chunk_check_fits(chunk_bytes, msg))
		return tv_cli_usage_error("--chunk-bytes (%zu) does not fit in --max-message-bytes "
					  "(%zu)", chunk_bytes, msg);
	return 0;
}
