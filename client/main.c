/* tracevault: the client CLI. `capture` streams HTTP exchanges seen by eBPF to tracevaultd,
 * `put` imports JSON Lines as one atomic segment, `query` reads a time range back. */
#include <malloc.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block.h"
#include "bpf/capture.h" /* capture's eBPF limits: comm, payload and ring sizes */
#include "capture.h"
#include "sampler.h"
#include "grpc_writer.h"
#include "pipeline.h"
#include "query_client.h"
#include "record_json.h"
#include "timespec.h"
#include "wire.h"

/* malloc policy for block memory (see main): above the largest block, and the cache default. */
#define BLOCK_MMAP_THRESHOLD_BYTES (64 << 20)
#define BLOCK_TRIM_THRESHOLD_BYTES (512 << 20)

#define EXIT_USAGE 2
/* put seals a block at whichever comes first; the same limits capture uses for one block. */
#define PUT_BLOCK_RAW_BYTES (4u << 20)
#define PUT_BLOCK_RECORDS 65536
#define CONNECT_TIMEOUT_MS 10000
#define MIN_MESSAGE_BYTES (64u << 10)
#define MAX_MESSAGE_BYTES ((size_t)INT_MAX) /* gRPC channel args are ints */
#define STDOUT_BUFFER_BYTES (1u << 20)
#define ERR_LEN 1024

static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	(void)sig;
	exiting = 1;
}

enum {
	OPT_BLOCK_AGE_MS = 256, OPT_MAX_MESSAGE_BYTES, OPT_READY_FD, OPT_NO_REDACT, OPT_BLOCK_AGE,
	OPT_CACHE_BYTES, OPT_BLOCK_BYTES, OPT_CHUNK_BYTES, OPT_WINDOW_BYTES, OPT_NO_ZEROCOPY,
	OPT_BACKPRESSURE_MS, OPT_TEST_CORRUPT_CHUNK, OPT_SAMPLE_RATIO, OPT_HEADERS,
};
/* capture's kernel-side options (filters and eBPF sizes) */
enum { OPT_COMM = 512, OPT_CGROUP, OPT_PAYLOAD_BYTES, OPT_RING_BYTES };
/* query-only options */
enum { OPT_STATS = 768 };
/* Bounds of the size options (the pipeline checks the relations between them too). */
#define MIN_BLOCK_BYTES (1ull << 10)
#define MAX_BLOCK_BYTES (128ull << 20)
#define MAX_CACHE_BYTES (1ull << 40)
#define MAX_TIME_MS (24ll * 3600 * 1000)

static const struct option capture_options[] = {
	{"server", required_argument, NULL, 's'},
	{"pid", required_argument, NULL, 'p'},
	{"port", required_argument, NULL, 'P'},
	{"comm", required_argument, NULL, OPT_COMM},
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"payload-bytes", required_argument, NULL, OPT_PAYLOAD_BYTES},
	{"ring-bytes", required_argument, NULL, OPT_RING_BYTES},
	{"duration", required_argument, NULL, 'd'},
	{"block-age", required_argument, NULL, OPT_BLOCK_AGE},
	{"block-age-ms", required_argument, NULL, OPT_BLOCK_AGE_MS},
	{"cache-bytes", required_argument, NULL, OPT_CACHE_BYTES},
	{"block-bytes", required_argument, NULL, OPT_BLOCK_BYTES},
	{"chunk-bytes", required_argument, NULL, OPT_CHUNK_BYTES},
	{"window-bytes", required_argument, NULL, OPT_WINDOW_BYTES},
	{"no-zerocopy", no_argument, NULL, OPT_NO_ZEROCOPY},
	{"backpressure-ms", required_argument, NULL, OPT_BACKPRESSURE_MS},
	{"test-corrupt-chunk", required_argument, NULL, OPT_TEST_CORRUPT_CHUNK},
	{"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE_BYTES},
	{"ready-fd", required_argument, NULL, OPT_READY_FD},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"headers", no_argument, NULL, OPT_HEADERS},
	{"sample-ratio", required_argument, NULL, OPT_SAMPLE_RATIO},
	{"help", no_argument, NULL, 'h'},
	{},
};

static const struct option put_options[] = {
	{"server", required_argument, NULL, 's'},
	{"chunk-bytes", required_argument, NULL, OPT_CHUNK_BYTES},
	{"window-bytes", required_argument, NULL, OPT_WINDOW_BYTES},
	{"no-zerocopy", no_argument, NULL, OPT_NO_ZEROCOPY},
	{"test-corrupt-chunk", required_argument, NULL, OPT_TEST_CORRUPT_CHUNK},
	{"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE_BYTES},
	{"help", no_argument, NULL, 'h'},
	{},
};

static const struct option query_options[] = {
	{"server", required_argument, NULL, 's'},
	{"from", required_argument, NULL, 'f'},
	{"to", required_argument, NULL, 't'},
	{"format", required_argument, NULL, 'F'},
	{"limit", required_argument, NULL, 'n'},
	{"stats", no_argument, NULL, OPT_STATS},
	{"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE_BYTES},
	{"help", no_argument, NULL, 'h'},
	{},
};

static const char main_usage[] =
	"Usage: tracevault <command> [options]\n"
	"\n"
	"Record HTTP exchanges with eBPF and store them in tracevaultd by time.\n"
	"\n"
	"Commands:\n"
	"  capture   trace HTTP/1.x on local sockets and stream records to the server\n"
	"  put       import JSON Lines records as one atomic segment\n"
	"  query     print the records of a time range, ordered by ts_ns\n"
	"\n"
	"Run 'tracevault <command> --help' for the options of a command.\n"
	"\n"
	"Examples:\n"
	"  tracevault capture --server 127.0.0.1:7070 --port 8080\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  tracevault query --server 127.0.0.1:7070 --from -15m --to now --format table\n";

static const char capture_usage[] =
	"Usage: tracevault capture --server HOST:PORT[,HOST:PORT...] [--pid PID] [--port PORT]\n"
	"                          [--comm NAME] [--cgroup PATH] [--payload-bytes N]\n"
	"                          [--ring-bytes N] [--duration SECONDS] [--block-age DURATION]\n"
	"                          [--cache-bytes N] [--block-bytes N] [--chunk-bytes N]\n"
	"                          [--window-bytes N] [--backpressure-ms MS] [--no-zerocopy]\n"
	"                          [--max-message-bytes N] [--ready-fd FD] [--no-redact]\n"
	"                          [--sample-ratio R] [--headers]\n"
	"\n"
	"Trace HTTP/1.x exchanges on local sockets (eBPF, needs CAP_BPF + CAP_PERFMON or root)\n"
	"and stream them to tracevaultd until Ctrl-C or the end of --duration.\n"
	"Records are packed into blocks, kept in a bounded cache and written in segments (the\n"
	"blocks of one flush, committed atomically). A failed segment is not retried: it is\n"
	"deleted on the servers, and its loss is logged and counted in the summary.\n"
	"Sizes N take a K, M or G suffix (KiB, MiB, GiB).\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to write to, comma-separated (required);\n"
	"                             blocks are placed on them by a hash of the block id\n"
	"  -p, --pid PID              only this process (default: all)\n"
	"  -P, --port PORT            only connections with this local or remote port\n"
	"      --comm NAME            only tasks whose command name (comm, <= 15 bytes) is NAME\n"
	"      --cgroup PATH          only tasks in this cgroup v2 directory or below it\n"
	"      --payload-bytes N      bytes copied per socket syscall (default 4K, max 32K);\n"
	"                             byte counts stay exact, cut events are counted\n"
	"      --ring-bytes N         kernel ring buffer size, a power of two (default 16M)\n"
	"  -d, --duration SECONDS     stop after this long (default: until Ctrl-C)\n"
	"      --block-age DURATION   end a segment at least this often: 250ms, 1s, 2m\n"
	"                             (default 1s; --block-age-ms MS is the same in ms)\n"
	"      --cache-bytes N        bound on sealed blocks not yet written (default 256M)\n"
	"      --block-bytes N        seal a block at this many raw record bytes (default 4M)\n"
	"      --chunk-bytes N        payload bytes per gRPC message (default 1M)\n"
	"      --window-bytes N       unacknowledged bytes per stream (default 8M)\n"
	"      --backpressure-ms MS   wait this long for cache room before dropping a block\n"
	"                             (default 1000)\n"
	"      --no-zerocopy          copy chunks with protobuf-c (for comparison)\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"      --ready-fd FD          write \"ready\\n\" to FD once the probes are attached\n"
	"      --headers              store request and response header lines in the records\n"
	"                             (as far as the payload copy holds the head); the values\n"
	"                             of Authorization, Proxy-Authorization, Cookie and\n"
	"                             Set-Cookie are stored as \"[redacted]\"\n"
	"      --no-redact            keep the ?query part of paths (default: dropped, tokens\n"
	"                             live there) and credential header values (--headers)\n"
	"      --sample-ratio R       keep this share of exchanges, 0 < R <= 1 (default 1):\n"
	"                             by W3C trace id as OpenTelemetry's TraceIdRatioBased\n"
	"                             sampler decides, untraced ones by connection; counted\n"
	"                             as sampled out, not lost\n"
	"      --test-corrupt-chunk N test only: corrupt the Nth chunk sent (server sees a\n"
	"                             CRC mismatch, the segment fails)\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault capture --server 127.0.0.1:7070                 # every process\n"
	"  tracevault capture --server 127.0.0.1:7070 --port 8080 --duration 30\n"
	"  tracevault capture --server 127.0.0.1:7070,127.0.0.1:7071 --block-age 250ms\n";

static const char put_usage[] =
	"Usage: tracevault put --server HOST:PORT[,HOST:PORT...] [--chunk-bytes N]\n"
	"                      [--window-bytes N] [--no-zerocopy] [--max-message-bytes N] FILE|-\n"
	"\n"
	"Import JSON Lines records (the fields `tracevault query --format jsonl` prints; ts_ns\n"
	"required, others default to 0 or \"\") as one segment: all lines are checked first, then\n"
	"written atomically (with several servers: two-phase, FLUSH on all, then COMMIT on all).\n"
	"A bad line aborts the import with its line number. Sizes N take a K, M or G suffix.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to write to, comma-separated (required)\n"
	"      --chunk-bytes N        payload bytes per gRPC message (default 1M)\n"
	"      --window-bytes N       unacknowledged bytes per stream (default 8M)\n"
	"      --no-zerocopy          copy chunks with protobuf-c (for comparison)\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"      --test-corrupt-chunk N test only: corrupt the Nth chunk sent\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  tracevault put --server 127.0.0.1:7070,127.0.0.1:7071 records.jsonl\n"
	"  gzip -dc old.jsonl.gz | tracevault put --server 127.0.0.1:7070 -\n";

static const char query_usage[] =
	"Usage: tracevault query --server HOST:PORT[,HOST:PORT...] --from T [--to T]\n"
	"                        [--format jsonl|table] [--limit N] [--stats]\n"
	"                        [--max-message-bytes N]\n"
	"\n"
	"Print the records with from <= ts_ns < to, ordered by ts_ns, on stdout.\n"
	"With --stats, print instead what the archive holds for the blocks overlapping the\n"
	"window (summed over the servers): blocks, records, bytes, and the records lost by\n"
	"reason as stored in the block headers (ring_full, map_full, parser, cache, failed).\n"
	"T is RFC 3339 (2026-03-01T12:00:00.5Z, 2026-03-01T14:00:00+02:00), unix nanoseconds,\n"
	"'now', or relative to now: -500ms, -30s, -15m, -2h, -1d.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to read from, comma-separated (required);\n"
	"                             several are queried at once and merged by ts_ns\n"
	"  -f, --from T               start of the window, inclusive (required)\n"
	"  -t, --to T                 end of the window, exclusive (default: now)\n"
	"  -F, --format FMT           jsonl (default: one JSON object per line) or table\n"
	"  -n, --limit N              at most N records (default: all)\n"
	"      --stats                block counts and loss totals instead of records\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault query --server 127.0.0.1:7070 --from -15m --format table\n"
	"  tracevault query --server 127.0.0.1:7070 --from -1h --stats --format table\n"
	"  tracevault query --server 127.0.0.1:7070 --from 2026-03-01T00:00:00Z \\\n"
	"                   --to 2026-03-02T00:00:00Z > day.jsonl\n";

/* One line "tracevault: <reason>" on stderr; returns exit_code for main to return. */
static int report(int exit_code, const char *fmt, va_list ap)
{
	fputs("tracevault: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return exit_code;
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	int code;

	va_start(ap, fmt);
	code = report(EXIT_USAGE, fmt, ap);
	va_end(ap);
	return code;
}

static int runtime_error(const char *fmt, ...)
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
		return usage_error("option '%s' requires an argument", arg);
	if (optopt && optopt != '?' && strncmp(arg, "--", 2) != 0)
		return usage_error("unknown option '-%c'", optopt);
	return usage_error("unknown option '%s'", arg);
}

/* Decimal integer in [min, max], the whole string. */
static bool parse_ll(const char *s, long long min, long long max, long long *out)
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

static bool parse_message_bytes(const char *s, size_t *out)
{
	long long v;

	if (!parse_ll(s, MIN_MESSAGE_BYTES, (long long)MAX_MESSAGE_BYTES, &v))
		return false;
	*out = (size_t)v;
	return true;
}

/* Byte size: decimal digits, optionally K, M or G (binary: KiB, MiB, GiB; a trailing "iB" is
 * accepted too), in [min, max]. */
static bool parse_size(const char *s, unsigned long long min, unsigned long long max,
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

/* Duration with a unit: 250ms, 1s, 2m, 1h, in (0, MAX_TIME_MS]. */
static bool parse_duration_ms(const char *s, int *out)
{
	long long v, mult;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s)
		return false;
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else
		return false;
	if (v <= 0 || v > MAX_TIME_MS / mult)
		return false;
	*out = (int)(v * mult);
	return true;
}

/* The options capture and put share: chunking and the write window. 1 if c was one of them,
 * 0 if not, or a usage error exit code (> 1) after printing it. */
static int writer_option(int c, size_t *chunk_bytes, size_t *window_bytes, int *no_zerocopy,
			 uint64_t *corrupt_chunk)
{
	long long v;

	switch (c) {
	case OPT_CHUNK_BYTES:
		if (!parse_size(optarg, 1, MAX_MESSAGE_BYTES - TV_CHUNK_PREFIX_MAX, chunk_bytes))
			return usage_error("invalid --chunk-bytes: '%s'", optarg);
		return 1;
	case OPT_WINDOW_BYTES:
		if (!parse_size(optarg, 1, MAX_CACHE_BYTES, window_bytes))
			return usage_error("invalid --window-bytes: '%s'", optarg);
		return 1;
	case OPT_NO_ZEROCOPY:
		*no_zerocopy = 1;
		return 1;
	case OPT_TEST_CORRUPT_CHUNK:
		if (!parse_ll(optarg, 1, LLONG_MAX, &v))
			return usage_error("invalid --test-corrupt-chunk: '%s'", optarg);
		*corrupt_chunk = (uint64_t)v;
		return 1;
	default:
		return 0;
	}
}

/* "A,B,C" with no empty entry. */
static bool valid_server_list(const char *s)
{
	size_t n = strlen(s);

	return n && s[0] != ',' && s[n - 1] != ',' && !strstr(s, ",,");
}

/* ---- capture ---- */

/* Relations between sizes, as usage errors before anything starts. */
static int check_sizes(const struct tv_pipeline_opts *po)
{
	size_t block = po->block_bytes ? po->block_bytes : TV_DEFAULT_BLOCK_BYTES;
	size_t cache = po->cache_bytes ? po->cache_bytes : TV_DEFAULT_CACHE_BYTES;
	size_t msg = po->max_message_bytes ? po->max_message_bytes : TV_DEFAULT_MAX_MESSAGE_BYTES;

	if (cache < 2 * block)
		return usage_error("--cache-bytes (%zu) must hold at least two blocks of "
				   "--block-bytes (%zu)", cache, block);
	if (po->chunk_bytes && po->chunk_bytes + TV_CHUNK_PREFIX_MAX > msg)
		return usage_error("--chunk-bytes (%zu) does not fit in --max-message-bytes (%zu)",
				   po->chunk_bytes, msg);
	return 0;
}

static int cmd_capture(int argc, char **argv)
{
	struct tv_capture_opts o = {.redact = 1, .ready_fd = -1, .stop = &exiting};
	struct tv_pipeline_opts *po = &o.pipeline;
	struct tv_capture_result res = {0};
	struct sigaction sa = {.sa_handler = sig_handler};
	char err[ERR_LEN] = "";
	long long v;
	size_t sz;
	char *end;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":hs:p:P:d:", capture_options, NULL)) != -1) {
		switch (c) {
		case 's':
			po->servers = optarg;
			break;
		case 'p':
			if (!parse_ll(optarg, 1, INT_MAX, &v))
				return usage_error("invalid --pid: '%s'", optarg);
			o.pid = (int)v;
			break;
		case 'P':
			if (!parse_ll(optarg, 1, 65535, &v))
				return usage_error("invalid --port: '%s'", optarg);
			o.port = (int)v;
			break;
		case OPT_COMM:
			if (!optarg[0] || strlen(optarg) >= TV_CAPTURE_COMM_BYTES)
				return usage_error("invalid --comm: '%s' (1 to %d bytes)", optarg,
						   TV_CAPTURE_COMM_BYTES - 1);
			o.comm = optarg;
			break;
		case OPT_CGROUP:
			ret = tv_capture_open_cgroup(optarg, err, sizeof(err));
			if (ret < 0)
				return usage_error("%s", err);
			close(ret);
			o.cgroup = optarg;
			break;
		case OPT_PAYLOAD_BYTES:
			if (!parse_size(optarg, 1, TV_CAPTURE_PAYLOAD_BYTES, &sz))
				return usage_error("invalid --payload-bytes: '%s' (1 to %u)", optarg,
						   TV_CAPTURE_PAYLOAD_BYTES);
			o.payload_bytes = (uint32_t)sz;
			break;
		case OPT_RING_BYTES:
			if (!parse_size(optarg, TV_CAPTURE_MIN_RING_BYTES, TV_CAPTURE_MAX_RING_BYTES,
					&sz) || (sz & (sz - 1)))
				return usage_error("invalid --ring-bytes: '%s' (a power of two, 4K to 1G)",
						   optarg);
			o.ring_bytes = (uint32_t)sz;
			break;
		case 'd':
			errno = 0;
			o.duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o.duration_s) ||
			    o.duration_s <= 0)
				return usage_error("invalid --duration: '%s'", optarg);
			break;
		case OPT_BLOCK_AGE_MS:
			if (!parse_ll(optarg, 1, MAX_TIME_MS, &v))
				return usage_error("invalid --block-age-ms: '%s'", optarg);
			po->block_age_ms = (int)v;
			break;
		case OPT_BLOCK_AGE:
			if (!parse_duration_ms(optarg, &po->block_age_ms))
				return usage_error("invalid --block-age: '%s' (e.g. 250ms, 1s, 2m)",
						   optarg);
			break;
		case OPT_CACHE_BYTES:
			if (!parse_size(optarg, 2 * MIN_BLOCK_BYTES, MAX_CACHE_BYTES, &po->cache_bytes))
				return usage_error("invalid --cache-bytes: '%s'", optarg);
			break;
		case OPT_BLOCK_BYTES:
			if (!parse_size(optarg, MIN_BLOCK_BYTES, MAX_BLOCK_BYTES, &po->block_bytes))
				return usage_error("invalid --block-bytes: '%s' (1K to 128M)", optarg);
			break;
		case OPT_BACKPRESSURE_MS:
			if (!parse_ll(optarg, 1, MAX_TIME_MS, &v))
				return usage_error("invalid --backpressure-ms: '%s'", optarg);
			po->backpressure_ms = (int)v;
			break;
		case OPT_MAX_MESSAGE_BYTES:
			if (!parse_message_bytes(optarg, &po->max_message_bytes))
				return usage_error("invalid --max-message-bytes: '%s'", optarg);
			break;
		case OPT_READY_FD:
			if (!parse_ll(optarg, 0, INT_MAX, &v))
				return usage_error("invalid --ready-fd: '%s'", optarg);
			o.ready_fd = (int)v;
			break;
		case OPT_HEADERS:
			o.headers = 1;
			break;
		case OPT_NO_REDACT:
			o.redact = 0;
			break;
		case OPT_SAMPLE_RATIO:
			if (tv_sampler_parse_ratio(optarg, &o.sample_ratio))
				return usage_error("invalid --sample-ratio: '%s' (0 < R <= 1)", optarg);
			break;
		case 'h':
			fputs(capture_usage, stdout);
			return EXIT_SUCCESS;
		default:
			ret = writer_option(c, &po->chunk_bytes, &po->window_bytes, &po->no_zerocopy,
					    &po->test_corrupt_chunk);
			if (ret > 1)
				return ret;
			if (ret == 0)
				return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("capture: unexpected argument '%s'", argv[optind]);
	if (!po->servers)
		return usage_error("capture: missing --server");
	if (!valid_server_list(po->servers))
		return usage_error("invalid --server: '%s'", po->servers);
	ret = check_sizes(po);
	if (ret)
		return ret;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ret = tv_capture_run(&o, &res, err, sizeof(err));
	/* the summary whenever capture ran at all, so losses are never silent */
	if (ret == 0 || res.events || res.records_sent || res.records_lost)
		fprintf(stderr, "captured %" PRIu64 " records, sent %" PRIu64 ", lost %" PRIu64
			" (kernel %" PRIu64 ", parser %" PRIu64 ", cache full %" PRIu64
			", failed segments %" PRIu64 "); kernel events %" PRIu64
			", lost: ring full %" PRIu64 ", map full %" PRIu64 ", truncated %" PRIu64
			"; segments committed %" PRIu64 ", failed %" PRIu64
			"; payload bytes copied %" PRIu64 "; cache peak %" PRIu64 " bytes\n",
			res.records_sent + res.records_lost, res.records_sent, res.records_lost,
			res.lost_kernel, res.lost_parser, res.lost_cache, res.lost_failed, res.events,
			res.lost_ring_full, res.lost_map_full, res.events_truncated,
			res.segments_committed, res.segments_failed, res.payload_bytes_copied,
			res.cache_bytes_peak);
	if (res.sampled_out || (o.sample_ratio > 0 && o.sample_ratio < 1))
		fprintf(stderr, "sampled out %" PRIu64 " records (--sample-ratio %g)\n",
			res.sampled_out, o.sample_ratio);
	if (ret)
		return runtime_error("%s", err[0] ? err : strerror(-ret));
	return EXIT_SUCCESS;
}

/* ---- put ---- */

struct put_blocks {
	struct tv_block_buf *v;
	size_t n, cap;
	uint64_t records;
};

static void put_blocks_free(struct put_blocks *pb)
{
	for (size_t i = 0; i < pb->n; i++)
		free((void *)pb->v[i].data);
	free(pb->v);
}

static int seal_block(struct tv_block_builder *b, struct put_blocks *pb)
{
	uint32_t count = tv_block_builder_count(b);
	uint64_t block_id = tv_random_id();
	void *data;
	size_t len;
	int ret;

	if (count == 0)
		return 0;
	if (pb->n == pb->cap) {
		size_t cap = pb->cap ? pb->cap * 2 : 16;
		struct tv_block_buf *v = realloc(pb->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		pb->v = v;
		pb->cap = cap;
	}
	ret = tv_block_builder_seal(b, block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &data, &len);
	if (ret)
		return ret;
	pb->v[pb->n++] = (struct tv_block_buf){
		.block_id = block_id, .data = data, .len = len, .record_count = count};
	pb->records += count;
	return 0;
}

/* Every line parsed and sealed into blocks before anything is sent, so a bad line leaves
 * nothing on the server. Returns 0, or 1 after printing "FILE:LINE: reason" / a read error. */
static int read_records(FILE *in, const char *name, struct put_blocks *pb)
{
	struct tv_block_builder *b = tv_block_builder_new();
	struct tv_record_json rj;
	char err[ERR_LEN];
	char *line = NULL;
	size_t cap = 0;
	uint64_t line_no = 0;
	ssize_t n;
	int ret = 0;

	if (!b)
		return runtime_error("out of memory");
	while ((n = getline(&line, &cap, in)) >= 0) {
		size_t len = (size_t)n, i;

		line_no++;
		while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			len--;
		for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
			;
		if (i == len)
			continue; /* empty lines are allowed anywhere */
		if (tv_record_json_parse(&rj, line, len, err, sizeof(err))) {
			ret = runtime_error("%s:%" PRIu64 ": %s", name, line_no, err);
			goto out;
		}
		ret = tv_block_builder_add(b, &rj.rec);
		tv_record_json_release(&rj);
		if (ret) {
			ret = runtime_error("%s:%" PRIu64 ": %s", name, line_no,
					    ret == -E2BIG ? "record too large"
							  : strerror(-ret));
			goto out;
		}
		if (tv_block_builder_count(b) >= PUT_BLOCK_RECORDS ||
		    tv_block_builder_raw_bytes(b) >= PUT_BLOCK_RAW_BYTES) {
			ret = seal_block(b, pb);
			if (ret) {
				ret = runtime_error("seal block: %s", strerror(-ret));
				goto out;
			}
		}
	}
	if (ferror(in)) {
		ret = runtime_error("read %s: %s", name, strerror(errno));
		goto out;
	}
	ret = seal_block(b, pb);
	if (ret)
		ret = runtime_error("seal block: %s", strerror(-ret));
out:
	free(line);
	tv_block_builder_free(b);
	return ret;
}

static int cmd_put(int argc, char **argv)
{
	struct tv_writer_opts wo = {0};
	struct put_blocks pb = {0};
	struct tv_writer *w = NULL;
	const char *path, *name;
	char err[ERR_LEN];
	FILE *in;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":hs:", put_options, NULL)) != -1) {
		switch (c) {
		case 's':
			wo.server = optarg;
			break;
		case OPT_MAX_MESSAGE_BYTES:
			if (!parse_message_bytes(optarg, &wo.max_message_bytes))
				return usage_error("invalid --max-message-bytes: '%s'", optarg);
			break;
		case 'h':
			fputs(put_usage, stdout);
			return EXIT_SUCCESS;
		default:
			ret = writer_option(c, &wo.chunk_bytes, &wo.window_bytes, &wo.no_zerocopy,
					    &wo.test_corrupt_chunk);
			if (ret > 1)
				return ret;
			if (ret == 0)
				return bad_option(c, argv);
		}
	}
	if (!wo.server)
		return usage_error("put: missing --server");
	if (!valid_server_list(wo.server))
		return usage_error("invalid --server: '%s'", wo.server);
	if (wo.chunk_bytes && wo.chunk_bytes + TV_CHUNK_PREFIX_MAX >
				      (wo.max_message_bytes ? wo.max_message_bytes
							    : TV_DEFAULT_MAX_MESSAGE_BYTES))
		return usage_error("--chunk-bytes (%zu) does not fit in --max-message-bytes",
				   wo.chunk_bytes);
	if (optind == argc)
		return usage_error("put: missing FILE (or - for stdin)");
	if (optind + 1 < argc)
		return usage_error("put: unexpected argument '%s'", argv[optind + 1]);
	path = argv[optind];
	name = strcmp(path, "-") == 0 ? "<stdin>" : path;
	in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
	if (!in)
		return runtime_error("open %s: %s", path, strerror(errno));
	ret = read_records(in, name, &pb);
	if (in != stdin)
		fclose(in);
	if (ret)
		goto out;

	w = tv_writer_new(&wo);
	if (!w) {
		ret = runtime_error("cannot create gRPC channels to %s", wo.server);
		goto out;
	}
	if (tv_writer_probe(w, CONNECT_TIMEOUT_MS, err, sizeof(err)) ||
	    tv_writer_write_segment(w, tv_random_id(), pb.v, pb.n, err, sizeof(err))) {
		ret = runtime_error("%s", err);
		goto out;
	}
	fprintf(stderr, "put %" PRIu64 " records in %zu blocks\n", pb.records, pb.n);
	ret = EXIT_SUCCESS;
out:
	tv_writer_free(w);
	put_blocks_free(&pb);
	return ret;
}

/* ---- query ---- */

enum out_format { FORMAT_JSONL, FORMAT_TABLE };

#define STDOUT_FAILED 1 /* print_record's stop value */

struct query_out {
	enum out_format format;
	bool header_done;
};

static int print_record(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct query_out *qo = arg;

	/* positive on a stdout error, so it cannot be mistaken for an rpc errno */
	if (qo->format == FORMAT_JSONL)
		return tv_record_write_jsonl(stdout, r) ? STDOUT_FAILED : 0;
	if (!qo->header_done) {
		qo->header_done = true;
		if (tv_record_write_table_header(stdout))
			return STDOUT_FAILED;
	}
	return tv_record_write_table_row(stdout, r) ? STDOUT_FAILED : 0;
}

/* --stats output: one JSON object (jsonl) or a name/value table. */
static int print_stats(enum out_format format, uint64_t from_ns, uint64_t to_ns,
		       const Tracevault__V1__StatsResponse *r)
{
	const struct {
		const char *name;
		uint64_t v;
	} f[] = {
		{"from_ns", from_ns},
		{"to_ns", to_ns},
		{"blocks", r->blocks},
		{"records", r->records},
		{"bytes", r->bytes},
		{"lost_ring_full", r->lost_ring_full},
		{"lost_map_full", r->lost_map_full},
		{"lost_parser", r->lost_parser},
		{"lost_cache", r->lost_cache},
		{"lost_failed", r->lost_failed},
		{"lost_total", r->lost_ring_full + r->lost_map_full + r->lost_parser +
				       r->lost_cache + r->lost_failed},
	};
	size_t n = sizeof(f) / sizeof(f[0]);

	for (size_t i = 0; i < n; i++) {
		if (format == FORMAT_JSONL)
			printf("%s\"%s\":%" PRIu64 "%s", i ? "" : "{", f[i].name, f[i].v,
			       i + 1 < n ? "," : "}\n");
		else
			printf("%-16s %" PRIu64 "\n", f[i].name, f[i].v);
	}
	return fflush(stdout) ? -errno : 0;
}

static int cmd_query(int argc, char **argv)
{
	const char *server = NULL, *from = NULL, *to = "now";
	uint64_t now_ns = tv_now_ns(), from_ns, to_ns, limit = 0;
	struct query_out qo = {.format = FORMAT_JSONL};
	size_t max_message_bytes = 0;
	bool stats = false;
	char err[ERR_LEN];
	long long v;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":hs:f:t:F:n:", query_options, NULL)) != -1) {
		switch (c) {
		case OPT_STATS:
			stats = true;
			break;
		case 's':
			server = optarg;
			break;
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'F':
			if (strcmp(optarg, "jsonl") == 0)
				qo.format = FORMAT_JSONL;
			else if (strcmp(optarg, "table") == 0)
				qo.format = FORMAT_TABLE;
			else
				return usage_error("invalid --format: '%s' (jsonl or table)",
						   optarg);
			break;
		case 'n':
			if (!parse_ll(optarg, 0, LLONG_MAX, &v))
				return usage_error("invalid --limit: '%s'", optarg);
			limit = (uint64_t)v;
			break;
		case OPT_MAX_MESSAGE_BYTES:
			if (!parse_message_bytes(optarg, &max_message_bytes))
				return usage_error("invalid --max-message-bytes: '%s'", optarg);
			break;
		case 'h':
			fputs(query_usage, stdout);
			return EXIT_SUCCESS;
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("query: unexpected argument '%s'", argv[optind]);
	if (!server)
		return usage_error("query: missing --server");
	if (!from)
		return usage_error("query: missing --from");
	if (tv_parse_time(from, now_ns, &from_ns))
		return usage_error("invalid --from: '%s'", from);
	if (tv_parse_time(to, now_ns, &to_ns))
		return usage_error("invalid --to: '%s'", to);
	if (from_ns > to_ns)
		return usage_error("--from (%s) is after --to (%s)", from, to);

	if (stats) {
		Tracevault__V1__StatsResponse *r = NULL;

		if (limit)
			return usage_error("--limit does not apply to --stats");
		ret = tv_query_stats(server, from_ns, to_ns, max_message_bytes, &r, err,
				     sizeof(err));
		if (ret)
			return runtime_error("%s", err);
		ret = print_stats(qo.format, from_ns, to_ns, r);
		free(r);
		if (ret)
			return runtime_error("write stdout: %s", strerror(-ret));
		return EXIT_SUCCESS;
	}
	setvbuf(stdout, NULL, _IOFBF, STDOUT_BUFFER_BYTES);
	ret = tv_query(server, from_ns, to_ns, limit, max_message_bytes, print_record, &qo, err,
		       sizeof(err));
	if (ret == STDOUT_FAILED)
		return runtime_error("write stdout: %s", strerror(errno));
	if (ret)
		return runtime_error("%s", err);
	if (qo.format == FORMAT_TABLE && !qo.header_done && tv_record_write_table_header(stdout))
		return runtime_error("write stdout: %s", strerror(errno));
	if (fflush(stdout))
		return runtime_error("write stdout: %s", strerror(errno));
	return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
	const char *cmd;

	/* Sealed blocks (MiBs each) are malloc'd and freed at the cache's pace. By default glibc
	 * serves them with fresh mmaps, so every block's pages are faulted in anew and the kernel's
	 * first copy out of them at send time is slow: measured with bench/run.sh, that made the
	 * zero-copy send cost ~0.3 CPU s/GB more than copying into reused buffers. Reuse the
	 * memory instead (as tracevaultd does); --cache-bytes still bounds how much is held. */
	mallopt(M_MMAP_THRESHOLD, BLOCK_MMAP_THRESHOLD_BYTES);
	mallopt(M_TRIM_THRESHOLD, BLOCK_TRIM_THRESHOLD_BYTES);
	opterr = 0; /* we print exactly one line per usage error ourselves */
	if (argc < 2)
		return usage_error("missing command (capture, put or query; see --help)");
	cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		fputs(main_usage, stdout);
		return EXIT_SUCCESS;
	}
	/* the subcommand is argv[0] of its own getopt run */
	if (strcmp(cmd, "capture") == 0)
		return cmd_capture(argc - 1, argv + 1);
	if (strcmp(cmd, "put") == 0)
		return cmd_put(argc - 1, argv + 1);
	if (strcmp(cmd, "query") == 0)
		return cmd_query(argc - 1, argv + 1);
	if (cmd[0] == '-')
		return usage_error("unknown option '%s' (expected a command first)", cmd);
	return usage_error("unknown command '%s'", cmd);
}
