/* tracevault capture: options and --help of the capture command, then tv_capture_open and
 * tv_capture_run until Ctrl-C or --duration, and the summary of what was sent and lost. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capture/capture.h"
#include "capture/limits.h" /* capture's bounds (payload, ring, names, duration), without bpf/ */
#include "capture/privs.h"
#include "capture/sampler.h"
#include "capture/tracepoint.h"
#include "cli/capture_metrics.h"
#include "cli/cli.h"
#include "common/addr.h"
#include "common/metrics_http.h"
#include "cli/commands.h"
#include "cli/tls_args.h"
#include "common/size.h"
#include "write/pipeline.h"

/* The CLI's one global: set by SIGINT/SIGTERM, whose handler only capture installs (put and
 * query keep the default, die on Ctrl-C); tv_capture_run polls it through opts.stop. */
static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	(void)sig;
	exiting = 1;
}

/* --help, in parts: ISO C promises string literals of up to 4095 bytes only */
static const char *const capture_usage[] = {
	"Usage: tracevault capture [--server HOST:PORT[,HOST:PORT...]] [--pid PID] [--port PORT]\n"
	"                          [--comm NAME] [--cgroup PATH] [--payload-bytes N]\n"
	"                          [--ring-bytes N] [--duration DURATION] [--block-age DURATION]\n"
	"                          [--cache-bytes N] [--block-bytes N] [--chunk-bytes N]\n"
	"                          [--window-bytes N] [--backpressure-ms MS] [--no-zerocopy]\n"
	"                          [--max-message-bytes N] [--ready-fd FD] [--no-redact]\n"
	"                          [--sample-ratio R] [--headers] [--body-bytes N]\n"
	"                          [--role server|client|both]\n"
	"                          [--redact-query-params LIST] [--strip-query]\n"
	"                          [--mode tracepoint|sockfilter] [--interface IF]\n"
	"                          [--metrics-addr HOST:PORT\n"
	"                           [--metrics-max-connections N]\n"
	"                           [--metrics-max-connections-per-ip N]\n"
	"                           [--metrics-request-timeout DURATION]\n"
	"                           [--metrics-idle-timeout DURATION]]\n"
	"                          [--test-corrupt-chunk N] [--print-capabilities]\n"
	"                          " TV_TLS_CLI_SYNOPSIS " [--tls-server-name NAME]\n"
	"\n"
	"Trace HTTP/1.x exchanges on local sockets (eBPF) and stream them to tracevaultd until\n"
	"Ctrl-C or the end of --duration. Needs root or these capabilities (checked first):\n"
	"tracepoint CAP_BPF CAP_PERFMON CAP_DAC_READ_SEARCH CAP_SYS_PTRACE, sockfilter CAP_BPF\n"
	"CAP_NET_RAW; all are dropped once the probes are attached, before any thread starts\n"
	"(README \"Capabilities\").\n"
	"Records are packed into blocks, kept in a bounded cache and written in segments (the\n"
	"blocks of one flush, committed atomically). A failed segment is not retried: it is\n"
	"deleted on the servers, and its loss is logged and counted in the summary.\n"
	"Sizes N take a K, M or G suffix (KiB, MiB, GiB); counts are plain digits.\n"
	"\n",
	"  -s, --server LIST          tracevaultd(s) to write to, comma-separated (default:\n"
	"                             $" TV_SERVER_ENV ", else " TV_DEFAULT_SERVER "); blocks are\n"
	"                             placed on them by a hash of the block id\n"
	"  -p, --pid PID              only connections this process accepts or connects (also\n"
	"                             where it hands them: forked children, passed fds),\n"
	"                             1 to 2147483647 (default: all)\n"
	"  -P, --port PORT            only connections with this local or remote port,\n"
	"                             1 to 65535 (default: all)\n"
	"      --comm NAME            only tasks whose command name (comm, 1 to 15 bytes) is NAME\n"
	"      --cgroup PATH          only tasks in this cgroup v2 directory or below it\n"
	"      --payload-bytes N      bytes copied per socket syscall, 1 to 32K (default 4K);\n"
	"                             byte counts stay exact, cut events are counted. A\n"
	"                             message head is parsed whole up to the larger of 8K\n"
	"                             and N (paths are kept whole within it); a head cut by\n"
	"                             that limit or by the copy gives a record with flag\n"
	"                             CUT (8), counted in the summary as heads cut\n"
	"      --ring-bytes N         kernel ring buffer size, a power of two, 4K to 1G (default\n"
	"                             16M); sockfilter: the packet ring, made of 1M blocks,\n"
	"                             a power of two, 1M to 1G (default 64M)\n"
	"      --mode MODE            where exchanges are seen: tracepoint (default: socket\n"
	"                             syscalls, with pid and comm) or sockfilter (TCP packets\n"
	"                             of --interface, reassembled; pid 0, no comm; needs\n"
	"                             CAP_NET_RAW + CAP_BPF; --pid, --comm and --cgroup\n"
	"                             do not apply). Connections open before the start\n"
	"                             are picked up at their next request (the --port\n"
	"                             side, else the request's receiver, is the server)\n"
	"      --interface IF         sockfilter: the interface to read, 1 to 15 bytes\n"
	"                             (default lo)\n",
	"  -d, --duration DURATION    stop after this long, 1ms to 365d: a number of seconds\n"
	"                             (30, 0.5) or 250ms, 2m, 1h, 1d (default: until Ctrl-C)\n"
	"      --block-age DURATION   end a segment at least this often, 1ms to 24h: 250ms,\n"
	"                             1.5s, 2m (default 1s; --block-age-ms MS is the same in\n"
	"                             ms, 1 to 86400000)\n"
	"      --cache-bytes N        bound on sealed blocks not yet written, 2K to 1024G and\n"
	"                             at least two blocks (default 256M)\n"
	"      --block-bytes N        seal a block at this many raw record bytes, 1K to 32M\n"
	"                             (default 4M)\n"
	"      --chunk-bytes N        payload bytes per gRPC message, 1 to 1073741760 and at\n"
	"                             most --max-message-bytes - 64 (default 1M)\n"
	"      --window-bytes N       unacknowledged bytes per stream, 1 to 1024G (default 8M)\n"
	"      --backpressure-ms MS   wait this long for cache room before dropping a block,\n"
	"                             1 to 86400000 (default 1000)\n"
	"      --no-zerocopy          copy chunks with protobuf-c (for comparison)\n"
	"      --max-message-bytes N  gRPC message size limit, 64K to 1G (default 16M)\n"
	"      --ready-fd FD          write \"ready\\n\" to FD once the probes are attached,\n"
	"                             0 to 2147483647\n"
	"      --headers              store request and response header lines in the records\n"
	"                             (as far as the payload copy holds the head); the values\n"
	"                             of Authorization, Proxy-Authorization, Cookie and\n"
	"                             Set-Cookie are stored as \"[redacted]\"\n",
	"      --body-bytes N         store the first N bytes of request and response bodies,\n"
	"                             0 to 32K and at most --payload-bytes (default 0: none),\n"
	"                             chunked coding decoded, not decompressed, with their\n"
	"                             Content-Type and Content-Encoding. PRIVACY: bodies may\n"
	"                             hold personal data and credentials; they are stored as\n"
	"                             seen, never redacted\n"
	"      --redact-query-params LIST\n"
	"                             query parameters whose values are stored as\n"
	"                             REDACTED, comma-separated, case-insensitive (names are\n"
	"                             percent-decoded first); LIST replaces the default list,\n"
	"                             +LIST adds to it, '' redacts none; 1 to 63 bytes a name,\n"
	"                             at most 64 names. Default: AWSAccessKeyId, Signature,\n"
	"                             sig, X-Goog-Signature (OpenTelemetry) and the usual\n"
	"                             credential names (token, access_token, api_key, key,\n"
	"                             password, secret, session, code, ...: README)\n"
	"      --strip-query          drop the ?query part of paths altogether\n"
	"      --no-redact            keep the ?query as sent (and URL userinfo) and credential\n"
	"                             header values (--headers)\n"
	"      --role ROLE            which end of a connection is recorded: server (accepted\n"
	"                             sockets, or a listened local port), client (connected\n"
	"                             ones) or both (default; a local client and server give\n"
	"                             two records per exchange). Filtered in the kernel in\n"
	"                             tracepoint mode; sockfilter: from the SYN, an end\n"
	"                             counting only when its address is this host's\n"
	"      --sample-ratio R       keep this share of exchanges, a decimal, 0 < R <= 1\n"
	"                             (default 1): by W3C trace id as OpenTelemetry's\n"
	"                             TraceIdRatioBased sampler decides, untraced ones by\n"
	"                             connection; counted as sampled out, not lost\n",
	"      --metrics-addr HOST:PORT\n"
	"                             serve Prometheus metrics (text format 0.0.4) at\n"
	"                             http://HOST:PORT/metrics while capturing: kernel events,\n"
	"                             losses by reason, ring fill, records sent, block cache\n"
	"                             bytes, segments failed. GET and HEAD, no TLS or auth\n"
	"                             (bind it to loopback; another HOST is logged as\n"
	"                             reachable from the network); port 0 picks a free one,\n"
	"                             named on stderr once it answers (after the capability\n"
	"                             drop): 'tracevault: metrics on http://HOST:PORT/metrics';\n"
	"                             it is bound before any probe loads: a port in use exits\n"
	"                             1 (default: none). Its connection bounds below go with\n"
	"                             --metrics-addr (the bounds of tracevaultd's\n"
	"                             --http-max-connections and the like):\n"
	"      --metrics-max-connections N\n"
	"                             connections at once, 4 to 1024 (default 64); more\n"
	"                             wait in a listen queue of 128\n"
	"      --metrics-max-connections-per-ip N\n"
	"                             of those, at most N from one client address, 0 to 1024\n"
	"                             (default 16; 0: no cap), only when HOST is not loopback\n"
	"      --metrics-request-timeout DURATION\n"
	"                             a request not received whole this long after its\n"
	"                             connection's accept (or the previous request's end) is\n"
	"                             cut, 1s to 1h (default 10s)\n"
	"      --metrics-idle-timeout DURATION\n"
	"                             close a connection on which nothing moves this long,\n"
	"                             1s to 1h, a multiple of 1s (default 10s)\n"
	"      --test-corrupt-chunk N test only: corrupt the Nth chunk sent (server sees a\n"
	"                             CRC mismatch, the segment fails),\n"
	"                             1 to 9223372036854775807\n",
	TV_TLS_CLI_HELP,
	"      --print-capabilities   print the capabilities --mode needs (as systemd's\n"
	"                             CapabilityBoundingSet= takes them) and exit\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault capture --server 127.0.0.1:7070                 # every process\n"
	"  tracevault capture --server 127.0.0.1:7070 --port 8080 --duration 30\n"
	"  tracevault capture --server 127.0.0.1:7070,127.0.0.1:7071 --block-age 250ms\n"
	"  tracevault capture --server 127.0.0.1:7070 --mode sockfilter --interface lo --port 80\n",
	NULL,
};

/* --cgroup: the directory must open as a cgroup v2 directory now, so a typo is a usage error
 * before anything starts; the reason is the module's own line. */
static int parse_cgroup(const char *arg, void *field, char *why, size_t whylen)
{
	int fd = tv_tracepoint_open_cgroup(arg, why, whylen);

	if (fd < 0)
		return -EINVAL;
	close(fd);
	*(const char **)field = arg;
	return 0;
}

static int parse_role(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	if (strcmp(arg, "both") == 0)
		*(int *)field = TV_CAPTURE_ROLE_BOTH;
	else if (strcmp(arg, "server") == 0)
		*(int *)field = TV_CAPTURE_ROLE_SERVER;
	else if (strcmp(arg, "client") == 0)
		*(int *)field = TV_CAPTURE_ROLE_CLIENT;
	else
		return -EINVAL;
	return 0;
}

static int parse_mode(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	if (strcmp(arg, "tracepoint") == 0)
		*(int *)field = TV_CAPTURE_MODE_TRACEPOINT;
	else if (strcmp(arg, "sockfilter") == 0)
		*(int *)field = TV_CAPTURE_MODE_SOCKFILTER;
	else
		return -EINVAL;
	return 0;
}

/* --sample-ratio: a plain decimal (tv_cli_plain_decimal: no sign, space, exponent or hex,
 * which strtod would take), then the sampler's own check of its bound. */
static int parse_ratio(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	if (!tv_cli_plain_decimal(arg))
		return -EINVAL;
	return tv_sampler_parse_ratio(arg, field) ? -EINVAL : 0;
}

/* What capture's options fill: the capture's own and the write pipeline's, which the command
 * makes and hands to the capture as its record sink. */
struct capture_cmd_opts {
	struct tv_capture_opts capture;
	struct tv_pipeline_opts pipeline;
	struct tv_tls_args tls;
	const char *metrics_addr; /* --metrics-addr, or NULL */
	/* its connection bounds (common/metrics_http.h); a field still METRICS_UNSET after
	 * parsing was not given and takes the default */
	struct tv_metrics_http_limits metrics_limits;
	int print_caps; /* --print-capabilities */
};
#define METRICS_UNSET (-1)

/* --metrics-addr: HOST:PORT as tracevaultd's (common/metrics_http.h) */
static int parse_metrics_addr(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	if (tv_metrics_http_check_addr(arg))
		return -EINVAL;
	*(const char **)field = arg;
	return 0;
}

#define CAP(field) offsetof(struct capture_cmd_opts, capture.field)
#define PIPE(field) offsetof(struct capture_cmd_opts, pipeline.field)
#define METRICS(field) offsetof(struct capture_cmd_opts, metrics_limits.field)

/* The --metrics-* bounds as given, the defaults for the others. Returns 0, or the usage exit
 * code when one is given without --metrics-addr (as tracevaultd's --http-* need
 * --http-addr). */
static int settle_metrics_limits(struct capture_cmd_opts *opts)
{
	const struct tv_metrics_http_limits def = tv_metrics_http_limits_default();
	struct tv_metrics_http_limits *l = &opts->metrics_limits;
	int *field[] = { &l->max_connections, &l->max_connections_per_ip,
			 &l->request_timeout_ms, &l->idle_timeout_ms };
	const int dflt[] = { def.max_connections, def.max_connections_per_ip,
			     def.request_timeout_ms, def.idle_timeout_ms };

	for (size_t i = 0; i < sizeof(field) / sizeof(field[0]); i++) {
		if (*field[i] == METRICS_UNSET)
			*field[i] = dflt[i];
		else if (!opts->metrics_addr)
			return tv_cli_usage_error("--metrics-max-connections, "
						  "--metrics-max-connections-per-ip, "
						  "--metrics-request-timeout and "
						  "--metrics-idle-timeout need --metrics-addr");
	}
	return 0;
}

/* Every option of capture: where it goes and whose bound it has (capture's for the kernel
 * side, the filters and the run, the pipeline's for blocks, cache and times; the writer rows
 * for chunks and window). */
static const struct tv_cli_opt capture_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, PIPE(servers), NULL, NULL, NULL},
	{"pid", 'p', TV_CLI_ARG_INT, CAP(pid), &tv_cli_positive_int_limit, NULL, NULL},
	{"port", 'P', TV_CLI_ARG_INT, CAP(port), &tv_cli_port_limit, NULL, NULL},
	{"comm", 0, TV_CLI_ARG_STRING, CAP(comm), &tv_capture_comm_bytes_limit, NULL, NULL},
	{"cgroup", 0, TV_CLI_ARG_CUSTOM, CAP(cgroup), NULL, NULL, parse_cgroup},
	{"payload-bytes", 0, TV_CLI_ARG_SIZE32, CAP(payload_bytes), &tv_capture_payload_bytes_limit,
	 NULL, NULL},
	{"ring-bytes", 0, TV_CLI_ARG_SIZE32, CAP(ring_bytes), &tv_capture_ring_bytes_limit, NULL,
	 NULL},
	{"mode", 0, TV_CLI_ARG_CUSTOM, CAP(mode), NULL, "tracepoint or sockfilter", parse_mode},
	{"interface", 0, TV_CLI_ARG_STRING, CAP(interface), &tv_capture_interface_bytes_limit, NULL,
	 NULL},
	{"duration", 'd', TV_CLI_ARG_SECONDS, CAP(duration_ms), &tv_capture_duration_ms_limit,
	 "e.g. 30 or 0.5 (seconds), 250ms, 2m, 1d", NULL},
	{"block-age", 0, TV_CLI_ARG_DURATION_MS, PIPE(block_age_ms), &tv_pipeline_time_ms_limit,
	 "e.g. 250ms, 1s, 2m", NULL},
	{"block-age-ms", 0, TV_CLI_ARG_INT, PIPE(block_age_ms), &tv_pipeline_time_ms_limit, NULL,
	 NULL},
	{"cache-bytes", 0, TV_CLI_ARG_SIZE, PIPE(cache_bytes), &tv_pipeline_cache_bytes_limit, NULL,
	 NULL},
	{"block-bytes", 0, TV_CLI_ARG_SIZE, PIPE(block_bytes), &tv_pipeline_block_bytes_limit, NULL,
	 NULL},
	{"backpressure-ms", 0, TV_CLI_ARG_INT, PIPE(backpressure_ms), &tv_pipeline_time_ms_limit,
	 NULL, NULL},
	{"ready-fd", 0, TV_CLI_ARG_INT, CAP(ready_fd), &tv_cli_fd_limit, NULL, NULL},
	{"no-redact", 0, TV_CLI_ARG_CLEAR, CAP(redact), NULL, NULL, NULL},
	{"strip-query", 0, TV_CLI_ARG_SET, CAP(strip_query), NULL, NULL, NULL},
	{"redact-query-params", 0, TV_CLI_ARG_STRING, CAP(redact_query_params), NULL, NULL, NULL},
	{"role", 0, TV_CLI_ARG_CUSTOM, CAP(role), NULL, "server, client or both", parse_role},
	{"headers", 0, TV_CLI_ARG_SET, CAP(headers), NULL, NULL, NULL},
	{"body-bytes", 0, TV_CLI_ARG_SIZE32, CAP(body_bytes), &tv_capture_body_bytes_limit, NULL,
	 NULL},
	{"sample-ratio", 0, TV_CLI_ARG_CUSTOM, CAP(sample_ratio), NULL,
	 "a decimal, 0 < R <= 1", parse_ratio},
	{"metrics-addr", 0, TV_CLI_ARG_CUSTOM, offsetof(struct capture_cmd_opts, metrics_addr),
	 NULL, "HOST:PORT or [IPv6]:PORT, port 0 to 65535", parse_metrics_addr},
	{"metrics-max-connections", 0, TV_CLI_ARG_INT, METRICS(max_connections),
	 &tv_metrics_max_connections_limit, NULL, NULL},
	{"metrics-max-connections-per-ip", 0, TV_CLI_ARG_INT, METRICS(max_connections_per_ip),
	 &tv_metrics_max_connections_per_ip_limit, NULL, NULL},
	{"metrics-request-timeout", 0, TV_CLI_ARG_DURATION_MS, METRICS(request_timeout_ms),
	 &tv_metrics_request_timeout_ms_limit, NULL, NULL},
	{"metrics-idle-timeout", 0, TV_CLI_ARG_DURATION_MS, METRICS(idle_timeout_ms),
	 &tv_metrics_idle_timeout_ms_limit, NULL, NULL},
	{"print-capabilities", 0, TV_CLI_ARG_SET, offsetof(struct capture_cmd_opts, print_caps),
	 NULL, NULL, NULL},
	TV_CLI_WRITER_OPTIONS(struct capture_cmd_opts, pipeline.),
	TV_TLS_CLI_OPTIONS(struct capture_cmd_opts, tls),
	{0},
};

/* Relations between sizes, as usage errors before anything starts: each value is within
 * its own bound already (the table), these are the owners' checks between two of them. */
static int check_sizes(const struct tv_pipeline_opts *po)
{
	size_t block = po->block_bytes ? po->block_bytes : TV_DEFAULT_BLOCK_BYTES;
	size_t cache = po->cache_bytes ? po->cache_bytes : TV_DEFAULT_CACHE_BYTES;
	char cache_s[32], block_s[32], min_s[32];

	if (tv_pipeline_check_cache(cache, block)) {
		/* in the size syntax the bounds use, with the minimum the pipeline asks for */
		tv_size_format(cache, cache_s, sizeof(cache_s));
		tv_size_format(block, block_s, sizeof(block_s));
		tv_size_format(tv_pipeline_min_cache_bytes(block), min_s, sizeof(min_s));
		return tv_cli_usage_error("--cache-bytes %s%s must hold at least two blocks of "
					  "%s--block-bytes %s (at least %s)", cache_s,
					  po->cache_bytes ? "" : " (the default)",
					  po->block_bytes ? "" : "the default ", block_s, min_s);
	}
	return tv_cli_check_chunk_fits(po->chunk_bytes, po->max_message_bytes);
}

/* Opens the capture, then runs it into a new write pipeline and prints the one summary line
 * (whenever the capture ran at all, so a loss is never silent). The order keeps the process
 * single-threaded until the capability drop (capture/privs.h): the servers are probed from a
 * child process and the metrics port bound, so an unreachable server or a port in use fails
 * before any probe is loaded; then the capture opens and drops; only then start the threads:
 * the pipeline's (and gRPC's) and the metrics endpoint's. Returns the exit code. */
static int run_capture(const struct tv_capture_opts *o, const struct tv_pipeline_opts *po,
		       const char *metrics_addr, const struct tv_metrics_http_limits *limits)
{
	struct tv_capture_result res = {0};
	struct tv_pipeline_stats ps = {0};
	struct tv_pipeline *pipe = NULL;
	struct tv_record_sink sink;
	struct tv_capture *cap = NULL;
	struct tv_capture_metrics *metrics = NULL;
	struct tv_metrics_http *http = NULL;
	char err[TV_CLI_ERR_LEN] = "", bound[300];
	uint64_t lost;
	int ret;

	ret = tv_pipeline_probe_servers(po, err, sizeof(err));
	if (!ret && metrics_addr)
		ret = tv_metrics_http_bind(&http, metrics_addr, limits, bound, sizeof(bound), err,
					   sizeof(err));
	if (!ret)
		ret = tv_capture_open(&cap, o, err, sizeof(err));
	if (!ret)
		ret = tv_pipeline_new(&pipe, po, err, sizeof(err));
	if (!ret && http) {
		metrics = malloc(sizeof(*metrics));
		if (!metrics) {
			snprintf(err, sizeof(err), "--metrics-addr: out of memory");
			ret = -ENOMEM;
		}
	}
	if (!ret && http) {
		tv_capture_metrics_init(metrics, pipe);
		ret = tv_metrics_http_serve(http, &metrics->reg, err, sizeof(err));
		if (!ret)
			fprintf(stderr, "tracevault: metrics on http://%s" TV_METRICS_PATH "\n",
				bound);
		if (!ret && tv_metrics_http_exposed(metrics_addr))
			fprintf(stderr, "tracevault: " TV_METRICS_EXPOSED_WARNING "\n", bound);
	}
	if (ret) {
		tv_metrics_http_stop(http);
		free(metrics);
		tv_pipeline_free(pipe);
		tv_capture_free(cap);
		return tv_cli_runtime_error("%s", err[0] ? err : strerror(-ret));
	}
	tv_pipeline_sink(pipe, &sink);
	ret = tv_capture_run(cap, &sink, metrics ? &metrics->live : NULL, &res, err, sizeof(err));
	tv_metrics_http_stop(http); /* before the pipeline its scrapes read */
	free(metrics);
	tv_pipeline_stats(pipe, &ps);
	tv_pipeline_free(pipe);
	tv_capture_free(cap);
	lost = res.records_lost + ps.records_dropped_cache + ps.records_dropped_failed;
	if (ret == 0 || res.events || ps.records_committed || lost)
		fprintf(stderr, "captured %" PRIu64 " records, sent %" PRIu64 ", lost %" PRIu64
			" (kernel %" PRIu64 ", parser %" PRIu64 ", cache full %" PRIu64
			", failed segments %" PRIu64 "); kernel events %" PRIu64
			", lost: ring full %" PRIu64 ", map full %" PRIu64 ", truncated %" PRIu64
			"; requests in lost events %" PRIu64 ", responses lost %" PRIu64
			", parser resyncs %" PRIu64 "; heads cut: limit %" PRIu64 ", copy %" PRIu64
			"; unparsed heads: requests %" PRIu64 ", responses %" PRIu64
			"; segments committed %" PRIu64 ", failed %" PRIu64
			"; payload bytes copied %" PRIu64 "; cache peak %" PRIu64 " bytes\n",
			ps.records_committed + lost, ps.records_committed, lost, res.lost_kernel,
			res.lost_parser, ps.records_dropped_cache, ps.records_dropped_failed,
			res.events, res.lost_ring_full, res.lost_map_full, res.events_truncated,
			res.lost_requests, res.responses_lost, res.parser_resyncs,
			res.heads_cut_limit, res.heads_cut_copy, res.requests_unparsed,
			res.responses_unparsed,
			ps.segments_committed, ps.segments_failed, ps.payload_bytes_copied,
			ps.cache_bytes_peak);
	if (o->mode == TV_CAPTURE_MODE_TRACEPOINT && (ret == 0 || res.events))
		fprintf(stderr, "unhooked: %" PRIu64 " bytes in %" PRIu64 " gaps, requests %" PRIu64
			"\n", res.unseen_bytes, res.unseen_gaps, res.requests_unhooked);
	if (res.sampled_out || (o->sample_ratio > 0 && o->sample_ratio < 1))
		fprintf(stderr, "sampled out %" PRIu64 " records (--sample-ratio %g)\n",
			res.sampled_out, o->sample_ratio);
	/* ring full = packets the kernel dropped, map full = connections refused (see above) */
	/* not HTTP/1.x after a switch: neither records nor loss, but not silent either */
	if (ret == 0 || res.events)
		fprintf(stderr, "tunnels (left HTTP/1.x: 101, CONNECT, HTTP/2 preface) %" PRIu64
			" (%" PRIu64 " bytes after the switch)\n", res.tunnels, res.tunnel_bytes);
	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER && (ret == 0 || res.events))
		fprintf(stderr, "sockfilter: stream gaps %" PRIu64 " (%" PRIu64 " bytes)\n",
			res.gaps, res.gap_bytes);
	if (!ret && res.flush_error && ps.segments_committed == 0) {
		/* nothing reached the server: that is a failed capture, not a quiet one (a part
		 * that failed is counted above and was logged when it failed) */
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
	struct capture_cmd_opts opts = {
		.capture = {.redact = 1, .ready_fd = -1, .stop = &exiting, .drop_caps = 1},
		.metrics_limits = {METRICS_UNSET, METRICS_UNSET, METRICS_UNSET, METRICS_UNSET},
	};
	struct tv_capture_opts *o = &opts.capture;
	struct tv_pipeline_opts *po = &opts.pipeline;
	struct sigaction sa = {.sa_handler = sig_handler};
	struct tv_query_rules rules; /* checked here, made again by the run */
	char err[TV_CLI_ERR_LEN];
	int ret;

	ret = tv_cli_parse(argc, argv, capture_options, capture_usage, &opts);
	if (ret != TV_CLI_PARSED)
		return ret;
	if (optind < argc)
		return tv_cli_usage_error("capture: unexpected argument '%s'", argv[optind]);
	ret = settle_metrics_limits(&opts);
	if (ret)
		return ret;
	ret = tv_cli_check_servers(&po->servers);
	if (ret)
		return ret;
	/* after parsing: --mode may come after the options it governs */
	if (tv_capture_check_mode(o, err, sizeof(err)) ||
	    tv_capture_check_body_bytes(o, err, sizeof(err)))
		return tv_cli_usage_error("%s", err);
	if (tv_capture_query_rules(o, &rules, err, sizeof(err)))
		return tv_cli_usage_error("%s", err);
	if (opts.print_caps) { /* the one list the check, the unit and its test share */
		if (tv_capture_caps_names(o->mode, err, sizeof(err)))
			return tv_cli_runtime_error("unknown capture mode %d", o->mode);
		printf("%s\n", err);
		return EXIT_SUCCESS;
	}
	ret = check_sizes(po);
	if (ret)
		return ret;
	ret = tv_tls_args_load(&opts.tls, &po->tls);
	if (ret)
		return ret;
	/* before the pipeline connects and anything is loaded: one line naming what is missing */
	if (tv_capture_check_caps(o->mode, err, sizeof(err))) {
		tv_tls_args_free(&opts.tls);
		return tv_cli_runtime_error("%s", err);
	}

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ret = run_capture(o, po, opts.metrics_addr, &opts.metrics_limits);
	tv_tls_args_free(&opts.tls);
	return ret;
}
