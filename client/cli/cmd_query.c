/* tracevault query: reads a time range back from the servers, merged by ts_ns, and prints it
 * as JSON Lines, a table, CSV or OTLP JSON (cli/record_out.h); --stats prints the block and loss
 * totals of the range instead. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/addr.h"
#include "common/clock.h"
#include "cli/commands.h"
#include "cli/filter_args.h"
#include "rpc/query_client.h"
#include "cli/record_out.h"
#include "cli/timespec.h"
#include "cli/tls_args.h"


/* What the options of query set. */
struct query_args {
	const char *server, *from, *to;
	int format; /* enum tv_out_format */
	uint64_t limit;
	int stats, reverse;
	size_t max_message_bytes;
	struct tv_filter_args filter;
	struct tv_tls_args tls;
};

static int parse_format(const char *arg, void *field, char *why, size_t whylen)
{
	static const struct {
		const char *name;
		enum tv_out_format fmt;
	} formats[] = {
		{"jsonl", TV_OUT_JSONL},
		{"table", TV_OUT_TABLE},
		{"csv", TV_OUT_CSV},
		{"otlp-json", TV_OUT_OTLP_JSON},
	};

	(void)why, (void)whylen;
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		if (strcmp(arg, formats[i].name) == 0) {
			*(int *)field = formats[i].fmt;
			return 0;
		}
	}
	return -EINVAL;
}

#define QA(field) offsetof(struct query_args, field)

static const struct tv_cli_opt query_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, QA(server), NULL, NULL, NULL},
	{"from", 'f', TV_CLI_ARG_STRING, QA(from), NULL, NULL, NULL},
	{"to", 't', TV_CLI_ARG_STRING, QA(to), NULL, NULL, NULL},
	{"format", 'F', TV_CLI_ARG_CUSTOM, QA(format), NULL, "jsonl, table, csv or otlp-json",
	 parse_format},
	{"limit", 'n', TV_CLI_ARG_U64, QA(limit), &tv_cli_count_limit, "0: all", NULL},
	{"stats", 0, TV_CLI_ARG_SET, QA(stats), NULL, NULL, NULL},
	{"reverse", 'r', TV_CLI_ARG_SET, QA(reverse), NULL, NULL, NULL},
	TV_FILTER_CLI_OPTIONS(struct query_args, filter),
	TV_CLI_READ_MESSAGE_OPTION(struct query_args, max_message_bytes),
	TV_TLS_CLI_OPTIONS(struct query_args, tls),
	{0},
};

static const char *const query_usage[] = {
	"Usage: tracevault query [--server HOST:PORT[,HOST:PORT...]] --from T [--to T]\n"
	"                        [--format jsonl|table|csv|otlp-json] [--limit N]\n"
	"                        [--reverse] [--stats]\n"
	"                        [--method M,..] [--status 5xx|404|500-599|none,..]\n"
	"                        [--path P] [--path-with-query] [--host H]\n"
	"                        [--role server|client] [--pid N,..] [--comm C]\n"
	"                        [--remote ADDR|CIDR,..] [--trace-id HEX32,..]\n"
	"                        [--min-latency D] [--max-latency D]\n"
	"                        [--flags LIST|all:LIST|clean]\n"
	"                        [--kind span|exchange] [--service NAME,..]\n"
	"                        [--max-message-bytes N]\n"
	"                        " TV_TLS_CLI_SYNOPSIS " [--tls-server-name NAME]\n"
	"\n"
	"Print the records with from <= ts_ns < to, ordered by ts_ns (newest first with\n"
	"--reverse), on stdout.\n"
	"With --stats, print instead what the archive holds for the blocks overlapping the\n"
	"window (summed over the servers): blocks, records, bytes (stored), the records lost\n"
	"by reason as stored in the block headers (ring_full, map_full, parser, cache,\n"
	"failed), lost_requests: how many of the ring_full events began a request (requests\n"
	"without a record; part of ring_full, so not added to lost_total), raw_bytes (the\n"
	"records' bytes before compression), compression_ratio = raw_bytes / bytes and\n"
	"bytes_per_record = bytes / records (each 0 when undefined).\n"
	"T is RFC 3339 (2026-03-01T12:00:00.5Z, 2026-03-01T14:00:00+02:00), unix nanoseconds,\n"
	"'now', or relative to now: -500ms, -30s, -15m, -2h, -1d. A bare integer is ns: one\n"
	"below 10^12 (likely seconds) gets a warning line naming the forms meaning seconds.\n"
	"A block a server finds damaged is skipped (and quarantined there): one warning line on\n"
	"stderr names it and its time range, every other record is printed, and the exit\n"
	"status is 3. Exit 0: complete; 1: the query failed (its line says why); 2: usage.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to read from, comma-separated (default:\n"
	"                             $" TV_SERVER_ENV ", else " TV_DEFAULT_SERVER "); several are\n"
	"                             queried at once and merged by ts_ns\n"
	"  -f, --from T               start of the window, inclusive (required)\n"
	"  -t, --to T                 end of the window, exclusive (default: now)\n"
	"  -F, --format FMT           jsonl (default: one JSON object per line), table,\n"
	"                             csv (RFC 4180, a header row, jsonl's scalar fields) or\n"
	"                             otlp-json (OpenTelemetry OTLP JSON: one span per record,\n"
	"                             ExportTraceServiceRequest lines of <= 1000 spans;\n"
	"                             README \"Query output formats\" has the mapping)\n"
	"  -n, --limit N              at most N records, 0 to 9223372036854775807 (default 0:\n"
	"                             all; with --stats, only 0)\n"
	"  -r, --reverse              newest first: the exact reverse of the default order, so\n"
	"                             with --limit N the last N records of the window\n"
	"      --stats                block counts, stored bytes, compression ratio and loss\n"
	"                             totals instead of records (jsonl, table or csv)\n"
	"\n",
	/* a second part: ISO C promises string literals of 4095 bytes only */
	"Filters, evaluated by the servers; --limit counts the records that pass. Options AND,\n"
	"the values of one option (a,b or the option repeated; --path only repeated) OR; at\n"
	"most 64 values per option, each at most 1024 bytes:\n"
	TV_FILTER_CLI_HELP
	"      --max-message-bytes N  gRPC message size limit, 4M to 1G (default 16M): a\n"
	"                             batch of tracevaultd holds up to 1M of records plus\n"
	"                             one record of up to 1M\n"
	"                             (sizes take a K, M or G suffix)\n",
	TV_TLS_CLI_HELP,
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault query --server 127.0.0.1:7070 --from -15m --format table\n"
	"  tracevault query --server 127.0.0.1:7070 --from -1h --stats --format table\n"
	"  tracevault query --from -1h --reverse --limit 20 --status 5xx\n"
	"  tracevault query --from -1h --status 5xx --path '/api/*' --min-latency 250ms\n"
	"  tracevault query --from -15m --format otlp-json > spans.jsonl\n"
	"  tracevault query --server 127.0.0.1:7070 --from 2026-03-01T00:00:00Z \\\n"
	"                   --to 2026-03-02T00:00:00Z > day.jsonl\n",
	NULL,
};

/* print_record's stop values: positive, so they cannot be mistaken for an rpc errno */
#define STDOUT_FAILED 1
#define OUT_OF_MEMORY 2

struct query_out {
	struct tv_record_out *out;
	bool unflushed;   /* records rendered since the last flush */
	int flush_stop;   /* writing failed (out_stop's value): the query stops at the next record */
	int flush_errno;  /* and why, taken when it failed (gRPC's teardown may change errno) */
	struct tv_cli_skips skipped; /* blocks the servers skipped, by kind */
};

static int out_stop(int ret)
{
	return ret == -ENOMEM ? OUT_OF_MEMORY : ret ? STDOUT_FAILED : 0;
}

static int print_record(const struct tv_record_wire *r, void *arg)
{
	struct query_out *qo = arg;

	if (qo->flush_stop) {
		errno = qo->flush_errno;
		return qo->flush_stop;
	}
	qo->unflushed = true;
	qo->flush_stop = out_stop(tv_record_out_add(qo->out, r));
	if (qo->flush_stop)
		qo->flush_errno = errno ? errno : EIO;
	return qo->flush_stop;
}

/* The client waits on the servers: what is printed goes out now (records stream as they
 * come, while whole batches still share one write). */
static void flush_output(void *arg)
{
	struct query_out *qo = arg;

	if (!qo->unflushed || qo->flush_stop)
		return;
	qo->unflushed = false;
	qo->flush_stop = out_stop(tv_record_out_flush(qo->out));
	if (qo->flush_stop)
		qo->flush_errno = errno ? errno : EIO;
}

/* One warning line per skipped block: which, its time range, why, and what is missing. */
static void print_skip(const char *server, const Tracevault__V1__SkippedBlock *b, void *arg)
{
	struct query_out *qo = arg;

	tv_cli_skip_add(&qo->skipped, b->reason);
	fprintf(stderr, "tracevault: warning: server %s skipped block %016" PRIx64 " (segment %016"
		PRIx64 ", ts_ns %" PRIu64 " to %" PRIu64 "): DATA_LOSS: %s; its records", server,
		b->block_id, b->segment_id, b->min_ts_ns, b->max_ts_ns,
		b->reason ? b->reason : "");
	if (b->records_served)
		fprintf(stderr, " after the first %" PRIu32, b->records_served);
	fprintf(stderr, " are missing from the output%s\n",
		b->quarantined ? " (the server quarantined it)" : "");
}

/* --stats output: one JSON object (jsonl), a name/value table, or a header row and one row
 * (csv): the counters, then the two derived ratios (decimals). */
static int print_stats(enum tv_out_format format, uint64_t from_ns, uint64_t to_ns,
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
		/* a subset of lost_ring_full (requests those events began), not in the total */
		{"lost_requests", r->lost_requests},
		{"raw_bytes", r->raw_bytes},
	};
	/* 0 when undefined: no bytes, or a server too old to send raw_bytes */
	const struct {
		const char *name, *fmt;
		double v;
	} d[] = {
		{"compression_ratio", "%.2f",
		 r->bytes && r->raw_bytes ? (double)r->raw_bytes / (double)r->bytes : 0},
		{"bytes_per_record", "%.1f", r->records ? (double)r->bytes / (double)r->records : 0},
	};
	size_t n = sizeof(f) / sizeof(f[0]), nd = sizeof(d) / sizeof(d[0]);

	for (size_t i = 0; format == TV_OUT_CSV && i < n + nd; i++)
		printf("%s%s", i < n ? f[i].name : d[i - n].name, i + 1 < n + nd ? "," : "\r\n");
	for (size_t i = 0; i < n + nd; i++) {
		const char *sep = i + 1 < n + nd ? "," : format == TV_OUT_CSV ? "\r\n" : "}\n";

		if (format == TV_OUT_JSONL)
			printf("%s\"%s\":", i ? "" : "{", i < n ? f[i].name : d[i - n].name);
		else if (format == TV_OUT_TABLE)
			printf("%-17s ", i < n ? f[i].name : d[i - n].name);
		if (i < n)
			printf("%" PRIu64, f[i].v);
		else
			printf(d[i - n].fmt, d[i - n].v);
		fputs(format == TV_OUT_TABLE ? "\n" : sep, stdout);
	}
	return fflush(stdout) ? -errno : 0;
}

int tv_cmd_query(int argc, char **argv)
{
	static struct query_args a; /* the filter's arrays are large for the stack */
	const Tracevault__V1__QueryFilter *filter;
	const struct tv_rpc_tls *tls;
	uint64_t now_ns = tv_realtime_ns(), from_ns, to_ns;
	struct query_out qo;
	char err[TV_CLI_ERR_LEN], why[TV_TIME_WHY_LEN];
	int ret, saved_errno;

	a = (struct query_args){.to = "now", .format = TV_OUT_JSONL};
	ret = tv_cli_parse(argc, argv, query_options, query_usage, &a);
	if (ret != TV_CLI_PARSED)
		return ret;
	qo = (struct query_out){ 0 };
	if (optind < argc)
		return tv_cli_usage_error("query: unexpected argument '%s'", argv[optind]);
	ret = tv_cli_check_servers(&a.server);
	if (ret)
		return ret;
	ret = tv_cli_time_window("query", a.from, a.to, now_ns, &from_ns, &to_ns);
	if (ret)
		return ret;

	if (tv_filter_args_finish(&a.filter, &filter, why, sizeof(why)))
		return tv_cli_usage_error("query: %s", why);
	if (a.stats) {
		Tracevault__V1__StatsResponse *r = NULL;

		if (filter)
			return tv_cli_usage_error("filters do not apply to --stats (it reads the "
						  "catalog only)");

		if (a.limit)
			return tv_cli_usage_error("--limit does not apply to --stats");
		if (a.reverse)
			return tv_cli_usage_error("--reverse does not apply to --stats");
		if (a.format == TV_OUT_OTLP_JSON)
			return tv_cli_usage_error("--format otlp-json does not apply to --stats "
						  "(jsonl, table or csv)");
		ret = tv_tls_args_load(&a.tls, &tls);
		if (ret)
			return ret;
		ret = tv_query_stats(a.server, tls, from_ns, to_ns, a.max_message_bytes, &r, err,
				     sizeof(err));
		tv_tls_args_free(&a.tls);
		if (ret)
			return tv_cli_runtime_error("%s", err);
		ret = print_stats((enum tv_out_format)a.format, from_ns, to_ns, r);
		free(r);
		if (ret)
			return tv_cli_runtime_error("write stdout: %s", strerror(-ret));
		return EXIT_SUCCESS;
	}
	ret = tv_tls_args_load(&a.tls, &tls);
	if (ret)
		return ret;
	if (tv_record_out_new(STDOUT_FILENO, (enum tv_out_format)a.format, &qo.out)) {
		tv_tls_args_free(&a.tls);
		return tv_cli_runtime_error("query: out of memory");
	}
	ret = tv_query(a.server, tls, from_ns, to_ns, a.limit, a.reverse, filter,
		       a.max_message_bytes, print_record, print_skip, flush_output, &qo, err,
		       sizeof(err));
	tv_tls_args_free(&a.tls);
	if (ret == 0 && qo.flush_stop) /* a flush after the last record failed */
		ret = qo.flush_stop;
	saved_errno = qo.flush_errno;
	/* what arrived before an rpc failure is printed, as it arrived */
	if (ret != STDOUT_FAILED && ret != OUT_OF_MEMORY) {
		int fin = out_stop(tv_record_out_finish(qo.out));

		if (fin && ret >= 0) {
			ret = fin;
			saved_errno = errno ? errno : EIO;
		}
	}
	tv_record_out_free(qo.out);
	if (ret == STDOUT_FAILED)
		return tv_cli_runtime_error("write stdout: %s", strerror(saved_errno));
	if (ret == OUT_OF_MEMORY)
		return tv_cli_runtime_error("query: out of memory rendering the output");
	if (ret)
		return tv_cli_runtime_error("%s", err);
	if (tv_cli_skip_total(&qo.skipped)) {
		tv_cli_skip_summary("query", &qo.skipped, "; every other record was printed");
		return TV_CLI_EXIT_INCOMPLETE;
	}
	return EXIT_SUCCESS;
}
