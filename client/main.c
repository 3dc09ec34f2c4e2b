/* tracevault: the client CLI. `capture` streams HTTP exchanges seen by eBPF to tracevaultd,
 * `put` imports JSON Lines as one atomic segment, `query` reads a time range back. */
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

#include "block.h"
#include "capture.h"
#include "grpc_writer.h"
#include "query_client.h"
#include "record_json.h"
#include "timespec.h"
#include "wire.h"

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

enum { OPT_BLOCK_AGE_MS = 256, OPT_MAX_MESSAGE_BYTES, OPT_READY_FD, OPT_NO_REDACT };

static const struct option capture_options[] = {
	{"server", required_argument, NULL, 's'},
	{"pid", required_argument, NULL, 'p'},
	{"port", required_argument, NULL, 'P'},
	{"duration", required_argument, NULL, 'd'},
	{"block-age-ms", required_argument, NULL, OPT_BLOCK_AGE_MS},
	{"max-message-bytes", required_argument, NULL, OPT_MAX_MESSAGE_BYTES},
	{"ready-fd", required_argument, NULL, OPT_READY_FD},
	{"no-redact", no_argument, NULL, OPT_NO_REDACT},
	{"help", no_argument, NULL, 'h'},
	{},
};

static const struct option put_options[] = {
	{"server", required_argument, NULL, 's'},
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
	"Usage: tracevault capture --server HOST:PORT [--pid PID] [--port PORT]\n"
	"                          [--duration SECONDS] [--block-age-ms MS]\n"
	"                          [--max-message-bytes N] [--ready-fd FD] [--no-redact]\n"
	"\n"
	"Trace HTTP/1.x exchanges on local sockets (eBPF, needs CAP_BPF + CAP_PERFMON or root)\n"
	"and stream them to tracevaultd until Ctrl-C or the end of --duration.\n"
	"\n"
	"  -s, --server HOST:PORT     tracevaultd to write to (required)\n"
	"  -p, --pid PID              only this process (default: all)\n"
	"  -P, --port PORT            only connections with this local or remote port\n"
	"  -d, --duration SECONDS     stop after this long (default: until Ctrl-C)\n"
	"      --block-age-ms MS      seal and send a block at least this often (default 1000)\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"      --ready-fd FD          write \"ready\\n\" to FD once the probes are attached\n"
	"      --no-redact            keep the ?query part of paths (default: dropped, tokens\n"
	"                             live there); header values are never stored\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault capture --server 127.0.0.1:7070                 # every process\n"
	"  tracevault capture --server 127.0.0.1:7070 --port 8080 --duration 30\n"
	"  tracevault capture --server 127.0.0.1:7070 --pid 4242\n";

static const char put_usage[] =
	"Usage: tracevault put --server HOST:PORT [--max-message-bytes N] FILE|-\n"
	"\n"
	"Import JSON Lines records (the fields `tracevault query --format jsonl` prints; ts_ns\n"
	"required, others default to 0 or \"\") as one segment: all lines are checked first, then\n"
	"written atomically. A bad line aborts the import with its line number.\n"
	"\n"
	"  -s, --server HOST:PORT     tracevaultd to write to (required)\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault put --server 127.0.0.1:7070 records.jsonl\n"
	"  gzip -dc old.jsonl.gz | tracevault put --server 127.0.0.1:7070 -\n";

static const char query_usage[] =
	"Usage: tracevault query --server HOST:PORT --from T [--to T] [--format jsonl|table]\n"
	"                        [--limit N] [--max-message-bytes N]\n"
	"\n"
	"Print the records with from <= ts_ns < to, ordered by ts_ns, on stdout.\n"
	"T is RFC 3339 (2026-03-01T12:00:00.5Z, 2026-03-01T14:00:00+02:00), unix nanoseconds,\n"
	"'now', or relative to now: -500ms, -30s, -15m, -2h, -1d.\n"
	"\n"
	"  -s, --server HOST:PORT     tracevaultd to read from (required)\n"
	"  -f, --from T               start of the window, inclusive (required)\n"
	"  -t, --to T                 end of the window, exclusive (default: now)\n"
	"  -F, --format FMT           jsonl (default: one JSON object per line) or table\n"
	"  -n, --limit N              at most N records (default: all)\n"
	"      --max-message-bytes N  gRPC message size limit (default 16 MiB)\n"
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault query --server 127.0.0.1:7070 --from -15m --format table\n"
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

/* ---- capture ---- */

static int cmd_capture(int argc, char **argv)
{
	struct tv_capture_opts o = {.redact = 1, .ready_fd = -1, .stop = &exiting,
				    .block_age_ms = TV_DEFAULT_BLOCK_AGE_MS};
	struct tv_capture_result res = {0};
	struct sigaction sa = {.sa_handler = sig_handler};
	char err[ERR_LEN] = "";
	long long v;
	char *end;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":hs:p:P:d:", capture_options, NULL)) != -1) {
		switch (c) {
		case 's':
			o.server = optarg;
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
		case 'd':
			errno = 0;
			o.duration_s = strtod(optarg, &end);
			if (errno || end == optarg || *end || !isfinite(o.duration_s) ||
			    o.duration_s <= 0)
				return usage_error("invalid --duration: '%s'", optarg);
			break;
		case OPT_BLOCK_AGE_MS:
			if (!parse_ll(optarg, 1, INT_MAX, &v))
				return usage_error("invalid --block-age-ms: '%s'", optarg);
			o.block_age_ms = (int)v;
			break;
		case OPT_MAX_MESSAGE_BYTES:
			if (!parse_message_bytes(optarg, &o.max_message_bytes))
				return usage_error("invalid --max-message-bytes: '%s'", optarg);
			break;
		case OPT_READY_FD:
			if (!parse_ll(optarg, 0, INT_MAX, &v))
				return usage_error("invalid --ready-fd: '%s'", optarg);
			o.ready_fd = (int)v;
			break;
		case OPT_NO_REDACT:
			o.redact = 0;
			break;
		case 'h':
			fputs(capture_usage, stdout);
			return EXIT_SUCCESS;
		default:
			return bad_option(c, argv);
		}
	}
	if (optind < argc)
		return usage_error("capture: unexpected argument '%s'", argv[optind]);
	if (!o.server)
		return usage_error("capture: missing --server");

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	ret = tv_capture_run(&o, &res, err, sizeof(err));
	/* the summary whenever capture ran at all, so losses are never silent */
	if (ret == 0 || res.events || res.records_sent || res.records_lost)
		fprintf(stderr, "captured %" PRIu64 " records, sent %" PRIu64 ", lost %" PRIu64
			" (kernel events %" PRIu64 ", lost in kernel %" PRIu64 ")\n",
			res.records_sent + res.records_lost, res.records_sent, res.records_lost,
			res.events, res.events_lost);
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
			return bad_option(c, argv);
		}
	}
	if (!wo.server)
		return usage_error("put: missing --server");
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
		ret = runtime_error("cannot create a gRPC channel to %s", wo.server);
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

static int cmd_query(int argc, char **argv)
{
	const char *server = NULL, *from = NULL, *to = "now";
	uint64_t now_ns = tv_now_ns(), from_ns, to_ns, limit = 0;
	struct query_out qo = {.format = FORMAT_JSONL};
	size_t max_message_bytes = 0;
	char err[ERR_LEN];
	long long v;
	int c, ret;

	while ((c = getopt_long(argc, argv, ":hs:f:t:F:n:", query_options, NULL)) != -1) {
		switch (c) {
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
