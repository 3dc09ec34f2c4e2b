/* tracevault capture: options and --help of the capture command, then tv_capture_run until
 * Ctrl-C or --duration, and the summary of what was sent and lost. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

 /* capture's eBPF limits: comm, payload and ring sizes */
#include "capture/capture.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "write/pipeline.h"
#include "capture/sampler.h"
#include "capture/tracepoint.h"
#include "proto/wire.h"

/* Bounds of the size options (the pipeline checks the relations between them too). */
#define MIN_BLOCK_BYTES (1ull << 10)
#define MAX_BLOCK_BYTES (128ull << 20)
#define MAX_TIME_MS (24ll * 3600 * 1000)

/* The CLI's one global: set by SIGINT/SIGTERM, whose handler only capture installs (put and
 * query keep the default, die on Ctrl-C); tv_capture_run polls it through opts.stop. */
static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	(void)sig;
	exiting = 1;
}

enum {
	OPT_BLOCK_AGE_MS = TV_CLI_OPT_CMD_FIRST, OPT_READY_FD, OPT_NO_REDACT, OPT_BLOCK_AGE,
	OPT_CACHE_BYTES, OPT_BLOCK_BYTES, OPT_BACKPRESSURE_MS, OPT_SAMPLE_RATIO, OPT_HEADERS,
	/* kernel-side options (filters and eBPF sizes) */
	OPT_COMM, OPT_CGROUP, OPT_PAYLOAD_BYTES, OPT_RING_BYTES,
	/* event source */
	OPT_MODE, OPT_INTERFACE,
};

static const struct option capture_options[] = {
	{"server", required_argument, NULL, 's'},
	{"pid", required_argument, NULL, 'p'},
	{"port", required_argument, NULL, 'P'},
	{"comm", required_argument, NULL, OPT_COMM},
	{"cgroup", required_argument, NULL, OPT_CGROUP},
	{"payload-bytes", required_argument, NULL, OPT_PAYLOAD_BYTES},
	{"ring-bytes", required_argument, NULL, OPT_RING_BYTES},
	{"mode", required_argument, NULL, OPT_MODE},
	{"interface", required_argument, NULL, OPT_INTERFACE},
	{"duration", required_argument, NULL, 'd'},
	{"block-age", required_argument, NULL, OPT_BLOCK_AGE},
	{"block-age-ms", required_argument, NULL, OPT_BLOCK_AGE_MS},
	{"cache-bytes", required_argument, NULL, OPT_CACHE_BYTES},
	{"block-bytes", required_argument, NULL, OPT_BLOCK_BYTES},
	{"chunk-bytes", required_argument, NULL, TV_CLI_OPT_CHUNK_BYTES},
	{"window-bytes", required_argument, NULL, TV_CLI_OPT_WINDOW_BYTES},
	{"no-zerocopy", no_argument, NULL, TV_CLI_OPT_NO_ZEROCOPY},
	{"backpressure-ms", required_argument, NULL, OPT_BACKPRESSURE_MS},
	{"test-corrupt-chunk", required_argument, NULL, TV_CLI_OPT_TEST_CORRUPT_CHUNK},
	{"max-message-bytes", required_argument, NULL, TV_CLI_OPT_MAX_MESSAGE_BYTES},
	{"ready-fd", required_argument, NULL, OPT_READY_FD},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"headers", no_argument, NULL, OPT_HEADERS},
	{"sample-ratio", required_argument, NULL, OPT_SAMPLE_RATIO},
	{"help", no_argument, NULL, 'h'},
	{},
};

static const char capture_usage[] =
	"Usage: tracevault capture --server HOST:PORT[,HOST:PORT...] [--pid PID] [--port PORT]\n"
	"                          [--comm NAME] [--cgroup PATH] [--payload-bytes N]\n"
	"                          [--ring-bytes N] [--duration SECONDS] [--block-age DURATION]\n"
	"                          [--cache-bytes N] [--block-bytes N] [--chunk-bytes N]\n"
	"                          [--window-bytes N] [--backpressure-ms MS] [--no-zerocopy]\n"
	"                          [--max-message-bytes N] [--ready-fd FD] [--no-redact]\n"
	"                          [--sample-ratio R] [--headers]\n"
	"                          [--mode tracepoint|sockfilter] [--interface IF]\n"
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
	"      --ring-bytes N         kernel ring buffer size, a power of two (default 16M;\n"
	"                             sockfilter: the packet ring, in 1M blocks, default 64M)\n"
	"      --mode MODE            where exchanges are seen: tracepoint (default: socket\n"
	"                             syscalls, with pid and comm) or sockfilter (TCP packets\n"
	"                             of --interface, reassembled; pid 0, no comm; needs\n"
	"                             CAP_NET_RAW + CAP_BPF; --pid, --comm and --cgroup\n"
	"                             do not apply). With --port, connections\n"
	"                             open before the start are picked up at their next\n"
	"                             request; without it only those that start later\n"
	"      --interface IF         sockfilter: the interface to read (default lo)\n"
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
	"  tracevault capture --server 127.0.0.1:7070,127.0.0.1:7071 --block-age 250ms\n"
	"  tracevault capture --server 127.0.0.1:7070 --mode sockfilter --interface lo --port 80\n";

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

/* Options that only one --mode understands, as usage errors: packets carry no process. */
static int check_mode(const struct tv_capture_opts *o)
{
	const char *opt = NULL;

	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER) {
		if (o->pid)
			opt = "--pid";
		else if (o->comm)
			opt = "--comm";
		else if (o->cgroup)
			opt = "--cgroup";
		if (opt)
			return tv_cli_usage_error("%s does not apply to --mode sockfilter (packets "
						  "carry no process)", opt);
	} else if (o->interface) {
		return tv_cli_usage_error("--interface needs --mode sockfilter");
	}
	return 0;
}

/* Relations between sizes, as usage errors before anything starts. */
static int check_sizes(const struct tv_pipeline_opts *po)
{
	size_t block = po->block_bytes ? po->block_bytes : TV_DEFAULT_BLOCK_BYTES;
	size_t cache = po->cache_bytes ? po->cache_bytes : TV_DEFAULT_CACHE_BYTES;
	size_t msg = po->max_message_bytes ? po->max_message_bytes : TV_DEFAULT_MAX_MESSAGE_BYTES;

	if (cache < 2 * block)
		return tv_cli_usage_error("--cache-bytes (%zu) must hold at least two blocks of "
					  "--block-bytes (%zu)", cache, block);
	if (po->chunk_bytes && po->chunk_bytes + TV_CHUNK_PREFIX_MAX > msg)
		return tv_cli_usage_error(
			"--chunk-bytes (%zu) does not fit in --max-message-bytes (%zu)",
			po->chunk_bytes, msg);
	return 0;
}

/* Runs the capture into a new write pipeline and prints the one summary line (whenever the
 * capture ran at all, so a loss is never silent). The pipeline is made first: an unreachable
 * server fails before any probe is attached. Returns the exit code. */
static int run_capture(const struct tv_capture_opts *o, const struct tv_pipeline_opts *po)
{
	struct tv_capture_result res = {0};
	struct tv_pipeline_stats ps = {0};
	struct tv_pipeline *pipe = NULL;
	struct tv_record_sink sink;
	char err[TV_CLI_ERR_LEN] = "";
	uint64_t lost;
	int ret;

	ret = tv_pipeline_new(&pipe, po, err, sizeof(err));
	if (ret)
		return tv_cli_runtime_error("%s", err[0] ? err : strerror(-ret));
	tv_pipeline_sink(pipe, &sink);
	ret = tv_capture_run(o, &sink, &res, err, sizeof(err));
	tv_pipeline_stats(pipe, &ps);
	tv_pipeline_free(pipe);
	lost = res.records_lost + ps.records_dropped_cache + ps.records_dropped_failed;
	if (ret == 0 || res.events || ps.records_committed || lost)
		fprintf(stderr, "captured %" PRIu64 " records, sent %" PRIu64 ", lost %" PRIu64
			" (kernel %" PRIu64 ", parser %" PRIu64 ", cache full %" PRIu64
			", failed segments %" PRIu64 "); kernel events %" PRIu64
			", lost: ring full %" PRIu64 ", map full %" PRIu64 ", truncated %" PRIu64
			"; requests in lost events %" PRIu64 ", responses lost %" PRIu64
			", parser resyncs %" PRIu64 "; segments committed %" PRIu64 ", failed %" PRIu64
			"; payload bytes copied %" PRIu64 "; cache peak %" PRIu64 " bytes\n",
			ps.records_committed + lost, ps.records_committed, lost, res.lost_kernel,
			res.lost_parser, ps.records_dropped_cache, ps.records_dropped_failed,
			res.events, res.lost_ring_full, res.lost_map_full, res.events_truncated,
			res.lost_requests, res.responses_lost, res.parser_resyncs,
			ps.segments_committed, ps.segments_failed, ps.payload_bytes_copied,
			ps.cache_bytes_peak);
	if (res.sampled_out || (o->sample_ratio > 0 && o->sample_ratio < 1))
		fprintf(stderr, "sampled out %" PRIu64 " records (--sample-ratio %g)\n",
			res.sampled_out, o->sample_ratio);
	/* ring full = packets the kernel dropped, map full = connections refused (see above) */
	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER && (ret == 0 || res.events))
		fprintf(stderr, "sockfilter: stream gaps %" PRIu64 " (%" PRIu64 " bytes)\n",
			res.gaps, res.gap_bytes);
	if (!ret && ps.segments_failed && ps.segments_committed == 0) {
		/* nothing reached the server: that is a failed capture, not a quiet one */
		snprintf(err, sizeof(err), "every segment write failed (%" PRIu64
			 " segments, see above)", ps.segments_failed);
		ret = -EIO;
	}
	if (ret)
		return tv_cli_runtime_error("%s", err[0] ? err : strerror(-ret));
	return EXIT_SUCCESS;
}

int tv_cmd_capture(int argc, char **argv)
{
	struct tv_capture_opts o = {.redact = 1, .ready_fd = -1, .stop = &exiting};
	struct tv_pipeline_opts pipeline_opts = {0}, *po = &pipeline_opts;
	struct sigaction sa = {.sa_handler = sig_handler};
	char err[TV_CLI_ERR_LEN] = "";
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
			if (!tv_cli_parse_ll(optarg, 1, INT_MAX, &v))
				return tv_cli_usage_error("invalid --pid: '%s'", optarg);
			o.pid = (int)v;
			break;
		case 'P':
			if (!tv_cli_parse_ll(optarg, 1, 65535, &v))
				return tv_cli_usage_error("invalid --port: '%s'", optarg);
			o.port = (int)v;
			break;
		case OPT_COMM:
			if (!optarg[0] || strlen(optarg) >= TV_CAPTURE_COMM_BYTES)
				return tv_cli_usage_error("invalid --comm: '%s' (1 to %d bytes)",
							  optarg, TV_CAPTURE_COMM_BYTES - 1);
			o.comm = optarg;
			break;
		case OPT_CGROUP:
			ret = tv_tracepoint_open_cgroup(optarg, err, sizeof(err));
			if (ret < 0)
				return tv_cli_usage_error("%s", err);
			close(ret);
			o.cgroup = optarg;
			break;
		case OPT_PAYLOAD_BYTES:
			if (!tv_cli_parse_size(optarg, 1, TV_CAPTURE_PAYLOAD_BYTES, &sz))
				return tv_cli_usage_error("invalid --payload-bytes: '%s' (1 to %u)",
							  optarg, TV_CAPTURE_PAYLOAD_BYTES);
			o.payload_bytes = (uint32_t)sz;
			break;
		case OPT_RING_BYTES:
			if (!tv_cli_parse_size(optarg, TV_CAPTURE_MIN_RING_BYTES,
					       TV_CAPTURE_MAX_RING_BYTES, &sz) ||
			    (sz & (sz - 1)))
				return tv_cli_usage_error(
					"invalid --ring-bytes: '%s' (a power of two, 4K to 1G)",
					optarg);
			o.ring_bytes = (uint32_t)sz;
			break;
		case OPT_MODE:
			if (strcmp(optarg, "tracepoint") == 0)
				o.mode = TV_CAPTURE_MODE_TRACEPOINT;
			else if (strcmp(optarg, "sockfilter") == 0)
				o.mode = TV_CAPTURE_MODE_SOCKFILTER;
			else
				return tv_cli_usage_error(
					"invalid --mode: '%s' (tracepoint or sockfilter)", optarg);
			break;
		case OPT_INTERFACE:
			if (!optarg[0])
				return tv_cli_usage_error("invalid --interface: ''");
			o.interface = optarg;
			break;
		case 'd':
			errno = 0;
			o.duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o.duration_s) ||
			    o.duration_s <= 0)
				return tv_cli_usage_error("invalid --duration: '%s'", optarg);
			break;
		case OPT_BLOCK_AGE_MS:
			if (!tv_cli_parse_ll(optarg, 1, MAX_TIME_MS, &v))
				return tv_cli_usage_error("invalid --block-age-ms: '%s'", optarg);
			po->block_age_ms = (int)v;
			break;
		case OPT_BLOCK_AGE:
			if (!parse_duration_ms(optarg, &po->block_age_ms))
				return tv_cli_usage_error(
					"invalid --block-age: '%s' (e.g. 250ms, 1s, 2m)", optarg);
			break;
		case OPT_CACHE_BYTES:
			if (!tv_cli_parse_size(optarg, 2 * MIN_BLOCK_BYTES, TV_CLI_MAX_CACHE_BYTES,
					       &po->cache_bytes))
				return tv_cli_usage_error("invalid --cache-bytes: '%s'", optarg);
			break;
		case OPT_BLOCK_BYTES:
			if (!tv_cli_parse_size(optarg, MIN_BLOCK_BYTES, MAX_BLOCK_BYTES,
					       &po->block_bytes))
				return tv_cli_usage_error(
					"invalid --block-bytes: '%s' (1K to 128M)", optarg);
			break;
		case OPT_BACKPRESSURE_MS:
			if (!tv_cli_parse_ll(optarg, 1, MAX_TIME_MS, &v))
				return tv_cli_usage_error("invalid --backpressure-ms: '%s'",
							  optarg);
			po->backpressure_ms = (int)v;
			break;
		case TV_CLI_OPT_MAX_MESSAGE_BYTES:
			if (!tv_cli_parse_message_bytes(optarg, &po->max_message_bytes))
				return tv_cli_usage_error("invalid --max-message-bytes: '%s'",
							  optarg);
			break;
		case OPT_READY_FD:
			if (!tv_cli_parse_ll(optarg, 0, INT_MAX, &v))
				return tv_cli_usage_error("invalid --ready-fd: '%s'", optarg);
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
				return tv_cli_usage_error(
					"invalid --sample-ratio: '%s' (0 < R <= 1)", optarg);
			break;
		case 'h':
			fputs(capture_usage, stdout);
			return EXIT_SUCCESS;
		default:
			ret = tv_cli_writer_option(c, &po->chunk_bytes, &po->window_bytes,
						   &po->no_zerocopy, &po->test_corrupt_chunk);
			if (ret > 1)
				return ret;
			if (ret == 0)
				return tv_cli_bad_option(c, argv);
		}
	}
	if (optind < argc)
		return tv_cli_usage_error("capture: unexpected argument '%s'", argv[optind]);
	if (!po->servers)
		return tv_cli_usage_error("capture: missing --server");
	if (!tv_cli_valid_server_list(po->servers))
		return tv_cli_usage_error("invalid --server: '%s'", po->servers);
	ret = check_mode(&o);
	if (ret)
		return ret;
	ret = check_sizes(po);
	if (ret)
		return ret;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	return run_capture(&o, po);
}
