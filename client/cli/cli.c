/* tracevault CLI helpers the commands share: error reports that return the exit code, and
 * strict option parsers, so every command words and exits on bad input the same way. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/addr.h"
#include "proto/wire.h"

#define MIN_MESSAGE_BYTES (64u << 10)
#define MAX_MESSAGE_BYTES ((size_t)INT_MAX) /* gRPC channel args are ints */

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
int tv_cli_bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1];

	if (c == ':')
		return tv_cli_usage_error("option '%s' requires an argument", arg);
	if (optopt && optopt != '?' && strncmp(arg, "--", 2) != 0)
		return tv_cli_usage_error("unknown option '-%c'", optopt);
	return tv_cli_usage_error("unknown option '%s'", arg);
}

/* Decimal integer in [min, max], the whole string. */
bool tv_cli_parse_ll(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool tv_cli_parse_message_bytes(const char *s, size_t *out)
{
	long long v;

	if (!tv_cli_parse_ll(s, MIN_MESSAGE_BYTES, (long long)MAX_MESSAGE_BYTES, &v))
		return false;
	*out = (size_t)v;
	return true;
}

/* Byte size: decimal digits, optionally K, M or G (binary: KiB, MiB, GiB; a trailing "iB" is
 * accepted too), in [min, max]. */
bool tv_cli_parse_size(const char *s, unsigned long long min, unsigned long long max,
		       size_t *out)
{
	unsigned long long v, mult = 1;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'K': mult = 1ull << 10; end++; break;
	case 'M': mult = 1ull << 20; end++; break;
	case 'G': mult = 1ull << 30; end++; break;
	default: break;
	}
	if (mult > 1 && strcmp(end, "iB") == 0)
		end += 2;
	if (*end || v > max / mult || v * mult < min)
		return false;
	*out = (size_t)(v * mult);
	return true;
}


/* The options capture and put share: chunking and the write window. 1 if c was one of them,
 * 0 if not, or a usage error exit code (> 1) after printing it. */
int tv_cli_writer_option(int c, size_t *chunk_bytes, size_t *window_bytes, int *no_zerocopy,
			 uint64_t *corrupt_chunk)
{
	long long v;

	switch (c) {
	case TV_CLI_OPT_CHUNK_BYTES:
		if (!tv_cli_parse_size(optarg, 1, MAX_MESSAGE_BYTES - TV_CHUNK_PREFIX_MAX,
				       chunk_bytes))
			return tv_cli_usage_error("invalid --chunk-bytes: '%s'", optarg);
		return 1;
	case TV_CLI_OPT_WINDOW_BYTES:
		if (!tv_cli_parse_size(optarg, 1, TV_CLI_MAX_CACHE_BYTES, window_bytes))
			return tv_cli_usage_error("invalid --window-bytes: '%s'", optarg);
		return 1;
	case TV_CLI_OPT_NO_ZEROCOPY:
		*no_zerocopy = 1;
		return 1;
	case TV_CLI_OPT_TEST_CORRUPT_CHUNK:
		if (!tv_cli_parse_ll(optarg, 1, LLONG_MAX, &v))
			return tv_cli_usage_error("invalid --test-corrupt-chunk: '%s'", optarg);
		*corrupt_chunk = (uint64_t)v;
		return 1;
	default:
		return 0;
	}
}

/* "A,B,C" with no empty entry (common/addr.h's rule, the one the writer applies). */
bool tv_cli_valid_server_list(const char *s)
{
	return tv_server_list_check(s) == 0;
}
