/* tracevault summary: per group of a window (path, host, method, ...) the request count, rate,
 * 5xx and 4xx error rates and latency quantiles, computed by the servers (PROTOCOL.md
 * "Summary") and merged here exactly; printed as a table, JSON Lines or CSV. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/filter_args.h"
#include "cli/out_buf.h"
#include "cli/timespec.h"
#include "cli/tls_args.h"
#include "common/addr.h"
#include "common/clock.h"
#include "rpc/summary_client.h"

enum sum_format { SUM_TABLE, SUM_JSONL, SUM_CSV };

struct quantile_list {
	double v[TV_SUMMARY_MAX_QUANTILES];
	size_t n;
};

struct summary_args {
	const char *server, *from, *to;
	int format; /* enum sum_format */
	int by;     /* TRACEVAULT__V1__GROUP_BY__* */
	uint64_t top;
	struct quantile_list quantiles;
	size_t max_message_bytes;
	struct tv_filter_args filter;
	struct tv_tls_args tls;
};

static const char *const BY_NAME[] = { "none", "path", "host", "method", "status", "comm",
				       "remote", "role" };
#define N_BY (sizeof(BY_NAME) / sizeof(BY_NAME[0]))
_Static_assert(N_BY == TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE + 1, "a name per GroupBy");

static int parse_format(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	if (strcmp(arg, "table") == 0)
		*(int *)field = SUM_TABLE;
	else if (strcmp(arg, "jsonl") == 0)
		*(int *)field = SUM_JSONL;
	else if (strcmp(arg, "csv") == 0)
		*(int *)field = SUM_CSV;
	else
		return -EINVAL;
	return 0;
}

static int parse_by(const char *arg, void *field, char *why, size_t whylen)
{
	(void)why, (void)whylen;
	for (size_t i = 0; i < N_BY; i++) {
		if (strcmp(arg, BY_NAME[i]) == 0) {
			*(int *)field = (int)i;
			return 0;
		}
	}
	return -EINVAL;
}

/* "0.5,0.9,0.99" (or the option repeated): each a plain decimal in [0, 1]. */
static int parse_quantiles(const char *arg, void *field, char *why, size_t whylen)
{
	struct quantile_list *l = field;
	const char *p = arg;

	for (;;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char item[32];
		double q;

		if (n == 0 || n >= sizeof(item)) {
			snprintf(why, whylen, "invalid --quantiles: '%s': an empty or overlong item",
				 arg);
			return -EINVAL;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		q = strtod(item, NULL);
		if (!tv_cli_plain_decimal(item) || q > 1) {
			snprintf(why, whylen, "invalid --quantiles: '%s': '%s' is not a number from "
				 "0 to 1", arg, item);
			return -EINVAL;
		}
		if (l->n == TV_SUMMARY_MAX_QUANTILES) {
			snprintf(why, whylen, "invalid --quantiles: '%s': at most %d quantiles", arg,
				 TV_SUMMARY_MAX_QUANTILES);
			return -EINVAL;
		}
		l->v[l->n++] = q;
		if (!end)
			return 0;
		p = end + 1;
	}
}

#define SA(field) offsetof(struct summary_args, field)

static const struct tv_cli_opt summary_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, SA(server), NULL, NULL, NULL},
	{"from", 'f', TV_CLI_ARG_STRING, SA(from), NULL, NULL, NULL},
	{"to", 't', TV_CLI_ARG_STRING, SA(to), NULL, NULL, NULL},
	{"by", 'b', TV_CLI_ARG_CUSTOM, SA(by), NULL,
	 "none, path, host, method, status, comm, remote or role", parse_by},
	{"top", 'n', TV_CLI_ARG_U64, SA(top), &tv_summary_groups_limit, NULL, NULL},
	{"quantiles", 'q', TV_CLI_ARG_CUSTOM, SA(quantiles), NULL, NULL, parse_quantiles},
	{"format", 'F', TV_CLI_ARG_CUSTOM, SA(format), NULL, "table, jsonl or csv", parse_format},
	TV_FILTER_CLI_OPTIONS(struct summary_args, filter),
	TV_CLI_READ_MESSAGE_OPTION(struct summary_args, max_message_bytes),
	TV_TLS_CLI_OPTIONS(struct summary_args, tls),
	{0},
};

static const char *const summary_usage[] = {
	"Usage: tracevault summary [--server HOST:PORT[,HOST:PORT...]] --from T [--to T]\n"
	"                          [--by none|path|host|method|status|comm|remote|role]\n"
	"                          [--top N] [--quantiles Q,..] [--format table|jsonl|csv]\n"
	"                          [filters as for query] [--max-message-bytes N]\n"
	"                          " TV_TLS_CLI_SYNOPSIS " [--tls-server-name NAME]\n"
	"\n"
	"Summarize the records with from <= ts_ns < to that pass the filters, per group: the\n"
	"request count, rate per second over the window, the share of 5xx and of 4xx answers,\n"
	"and latency quantiles and maximum. The servers compute it (no record crosses the\n"
	"network); several servers' answers are merged exactly. Latency figures cover the\n"
	"records with a response (status != 0). Quantiles come from a sketch: each is within\n"
	"0.55% of the exact value (the item of rank floor(q*(n-1)) of the group's sorted\n"
	"latencies; PROTOCOL.md \"Summary\"); max is exact.\n"
	"T is RFC 3339 (2026-03-01T12:00:00.5Z), unix nanoseconds, 'now', or relative to now:\n"
	"-500ms, -30s, -15m, -2h, -1d. A bare integer is ns: one below 10^12 (likely seconds)\n"
	"gets a warning line naming the forms meaning seconds.\n"
	"A block a server finds damaged is skipped: one warning line names it, its records are\n"
	"missing from the figures, and the exit status is 3. Exit 0: complete; 1: the summary\n"
	"failed (its line says why); 2: usage.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to read from, comma-separated (default:\n"
	"                             $" TV_SERVER_ENV ", else " TV_DEFAULT_SERVER ")\n"
	"  -f, --from T               start of the window, inclusive (required)\n"
	"  -t, --to T                 end of the window, exclusive (default: now)\n"
	"  -b, --by K                 group by path (before ?query), host (lowercased), method,\n"
	"                             status, comm, remote (address without port) or role;\n"
	"                             default none: one group of every record\n"
	"  -n, --top N                the N largest groups, the rest summed in one 'other'\n"
	"                             row, 1 to 100000 (default 1000)\n"
	"  -q, --quantiles Q,..       latency quantiles, each 0 to 1, at most 16 (default\n"
	"                             0.5,0.9,0.99)\n"
	"  -F, --format FMT           table (default), jsonl or csv (a header row, then the\n"
	"                             jsonl fields)\n"
	"\n"
	"Filters (as for query: options AND, the values of one option (a,b or the option\n"
	"repeated; --path only repeated) OR):\n",
	TV_FILTER_CLI_HELP,
	"      --max-message-bytes N  gRPC message size limit, 4M to 1G (default 16M): a\n"
	"                             batch of tracevaultd holds up to 1M of records plus\n"
	"                             one record of up to 1M\n",
	TV_TLS_CLI_HELP,
	"  -h, --help                 this text\n"
	"\n"
	"Examples:\n"
	"  tracevault summary --from -1h --by path --top 20\n"
	"  tracevault summary --from -15m --by status --path '/api/*'\n"
	"  tracevault summary --from -1d --by host --quantiles 0.5,0.999 --format jsonl\n",
	NULL,
};

/* ---- output ---- */

struct out {
	enum sum_format format;
	int by;
	const struct quantile_list *q;
	double window_s;
	struct tv_cli_skips skipped; /* blocks the servers skipped, by kind */
};

/* "p50", "p99.9" */
static void quantile_name(double q, char *buf, size_t len)
{
	snprintf(buf, len, "p%.10g", q * 100);
}

/* 850ns, 12.3us, 4.56ms, 1.20s */
static void format_latency(double ns, char *buf, size_t len)
{
	static const char *const unit[] = { "ns", "us", "ms", "s" };
	size_t u = 0;

	while (u < 3 && ns >= 1000) {
		ns /= 1000;
		u++;
	}
	snprintf(buf, len, ns < 10 && u ? "%.2f%s" : ns < 100 && u ? "%.1f%s" : "%.0f%s", ns,
		 unit[u]);
}

/* A rate per second in the table's RATE/S column (RATE_WIDTH characters): 1234.56 up to
 * RATE_PLAIN_MAX, then with an SI suffix (12.3M, 4.00G: a window of a few ns makes rates of
 * billions, which %.2f printed wider than the column, pushing the row out of line), past
 * the suffixes in e-notation. jsonl and csv carry the number itself. */
#define RATE_WIDTH 10
#define RATE_PLAIN_MAX 1e6 /* below it %.2f fits, rounding included: 999999.99 */
static void format_rate(double r, char *buf, size_t len)
{
	static const char SI[] = "kMGTPE";
	size_t u = 0;

	if (r < RATE_PLAIN_MAX) {
		snprintf(buf, len, "%.2f", r);
		return;
	}
	while (u < sizeof(SI) - 1 && r >= 999.5) { /* 999.7M prints as 1.00G, not 1000M */
		r /= 1000;
		u++;
	}
	if (r >= 999.5) { /* past E: 1e21/s and more */
		snprintf(buf, len, "%.2e", r * 1e18);
		return;
	}
	snprintf(buf, len, r < 10 ? "%.2f%c" : r < 100 ? "%.1f%c" : "%.0f%c", r, SI[u - 1]);
}

/* A key shown in a terminal as query's table shows strings (tv_term_char): printable UTF-8
 * as it is, control characters and bytes that are not UTF-8 each as '?'; padded to width
 * characters. */
static void put_safe(const char *s, int width)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), skip;
	int n = 0;

	for (size_t i = 0; i < len; i += skip, n++) {
		size_t k = tv_term_char(u + i, len - i, &skip);

		if (k)
			fwrite(s + i, 1, k, stdout);
		else
			putchar('?');
	}
	for (; n < width; n++)
		putchar(' ');
}

static const char *display_key(const struct out *o, const struct tv_summary_group *g,
			       bool other)
{
	if (other)
		return "(other)";
	if (o->by == TRACEVAULT__V1__GROUP_BY__GROUP_BY_NONE)
		return "(all)";
	return g->key && g->key[0] ? g->key : "-";
}

static void table_header(const struct out *o, int keyw)
{
	char name[32], up[16];

	for (size_t i = 0; BY_NAME[o->by][i] && i + 1 < sizeof(up); i++, up[i] = '\0')
		up[i] = (char)(BY_NAME[o->by][i] - 'a' + 'A');
	printf("%-*s %10s %*s %7s %7s", keyw, o->by ? up : "ALL", "COUNT", RATE_WIDTH, "RATE/S",
	       "5XX%", "4XX%");
	for (size_t i = 0; i < o->q->n; i++) {
		quantile_name(o->q->v[i], name, sizeof(name));
		for (char *c = name; *c; c++)
			*c = *c == 'p' ? 'P' : *c;
		printf(" %9s", name);
	}
	printf(" %9s\n", "MAX");
}

/* A JSON string on stdout, escaped as query's jsonl escapes its strings (cli/out_buf.h:
 * invalid UTF-8 replaced). A failed allocation prints "" and leaves stdout's error to the
 * caller's final check. */
static void json_string(const char *s)
{
	struct tv_out_buf b = { 0 };

	tv_out_json_str(&b, s);
	if (!b.failed)
		fwrite(b.p, 1, b.len, stdout);
	else
		fputs("\"\"", stdout);
	tv_out_free(&b);
}

/* One CSV field on stdout, written as query's csv writes its strings (cli/out_buf.h: invalid
 * UTF-8 replaced, quoted when needed). A failed allocation prints an empty field and leaves
 * stdout's error to the caller's final check. */
static void csv_string(const char *s)
{
	struct tv_out_buf b = { 0 };

	tv_out_csv_str(&b, s);
	if (!b.failed)
		fwrite(b.p, 1, b.len, stdout);
	tv_out_free(&b);
}

/* RFC 4180 §2.1, as query's csv */
#define CSV_EOL "\r\n"

static const char *const FIELDS[] = { "key", "other", "count", "rate_per_s", "error_rate_5xx",
				      "error_rate_4xx", "count_5xx", "count_4xx",
				      "count_no_response", "count_flagged", "latency_count",
				      "latency_min_ns", "latency_max_ns", "latency_mean_ns" };
#define N_FIELDS (sizeof(FIELDS) / sizeof(FIELDS[0]))

static void csv_header(const struct out *o)
{
	char name[40];

	for (size_t i = 0; i < N_FIELDS; i++)
		printf("%s%s", i ? "," : "", FIELDS[i]);
	for (size_t i = 0; i < o->q->n; i++) {
		quantile_name(o->q->v[i], name, sizeof(name));
		printf(",%s_ns", name);
	}
	fputs(CSV_EOL, stdout);
}

static void print_group(const struct out *o, const struct tv_summary_group *g, bool other,
			int keyw)
{
	double rate = o->window_s > 0 ? (double)g->count / o->window_s : 0;
	double e5 = g->count ? (double)g->count_5xx / (double)g->count : 0;
	double e4 = g->count ? (double)g->count_4xx / (double)g->count : 0;
	bool lat = g->latency_count > 0;
	double qv[TV_SUMMARY_MAX_QUANTILES];
	char buf[32], name[40], rate_s[32];

	for (size_t i = 0; i < o->q->n; i++)
		qv[i] = tv_sketch_quantile(&g->latency, o->q->v[i], g->latency_min_ns,
					   g->latency_max_ns);
	if (o->format == SUM_TABLE) {
		put_safe(display_key(o, g, other), keyw);
		format_rate(rate, rate_s, sizeof(rate_s));
		printf(" %10" PRIu64 " %*s %6.2f%% %6.2f%%", g->count, RATE_WIDTH, rate_s, e5 * 100,
		       e4 * 100);
		for (size_t i = 0; i <= o->q->n; i++) {
			if (lat)
				format_latency(i < o->q->n ? qv[i] : (double)g->latency_max_ns, buf,
					       sizeof(buf));
			printf(" %9s", lat ? buf : "-");
		}
		putchar('\n');
		return;
	}
	if (o->format == SUM_JSONL) {
		fputs("{\"key\":", stdout);
		json_string(g->key);
		printf(",\"other\":%s,\"count\":%" PRIu64 ",\"rate_per_s\":%.9g,"
		       "\"error_rate_5xx\":%.9g,\"error_rate_4xx\":%.9g,\"count_5xx\":%" PRIu64
		       ",\"count_4xx\":%" PRIu64 ",\"count_no_response\":%" PRIu64
		       ",\"count_flagged\":%" PRIu64 ",\"latency_count\":%" PRIu64, other ? "true" :
		       "false", g->count, rate, e5, e4, g->count_5xx, g->count_4xx,
		       g->count_no_response, g->count_flagged, g->latency_count);
		if (lat)
			printf(",\"latency_min_ns\":%" PRIu64 ",\"latency_max_ns\":%" PRIu64
			       ",\"latency_mean_ns\":%.3f", g->latency_min_ns, g->latency_max_ns,
			       (double)g->latency_sum_ns / (double)g->latency_count);
		else
			fputs(",\"latency_min_ns\":null,\"latency_max_ns\":null,"
			      "\"latency_mean_ns\":null", stdout);
		for (size_t i = 0; i < o->q->n; i++) {
			quantile_name(o->q->v[i], name, sizeof(name));
			if (lat)
				printf(",\"%s_ns\":%.3f", name, qv[i]);
			else
				printf(",\"%s_ns\":null", name);
		}
		fputs("}\n", stdout);
		return;
	}
	csv_string(g->key ? g->key : ""); /* other has none */
	printf(",%s,%" PRIu64 ",%.9g,%.9g,%.9g,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
	       ",%" PRIu64, other ? "true" : "false", g->count, rate, e5, e4, g->count_5xx,
	       g->count_4xx, g->count_no_response, g->count_flagged, g->latency_count);
	if (lat)
		printf(",%" PRIu64 ",%" PRIu64 ",%.3f", g->latency_min_ns, g->latency_max_ns,
		       (double)g->latency_sum_ns / (double)g->latency_count);
	else
		fputs(",,,", stdout);
	for (size_t i = 0; i < o->q->n; i++)
		if (lat)
			printf(",%.3f", qv[i]);
		else
			putchar(',');
	fputs(CSV_EOL, stdout);
}

static void print_skip(const char *server, const Tracevault__V1__SkippedBlock *b, void *arg)
{
	struct out *o = arg;

	tv_cli_skip_add(&o->skipped, b->reason);
	fprintf(stderr, "tracevault: warning: server %s skipped block %016" PRIx64 " (segment %016"
		PRIx64 ", ts_ns %" PRIu64 " to %" PRIu64 "): %s; its records are not in the "
		"summary%s\n", server, b->block_id, b->segment_id, b->min_ts_ns, b->max_ts_ns,
		b->reason ? b->reason : "", b->quarantined ? " (the server quarantined it)" : "");
}

static int print_summary(struct out *o, const struct tv_summary_result *r)
{
	int keyw = r->other.count ? (int)strlen("(other)") : 5;

	if (o->format == SUM_TABLE) {
		for (size_t i = 0; i < r->ngroups; i++) {
			int n = (int)strlen(display_key(o, &r->groups[i], false));

			keyw = n > keyw ? n : keyw;
		}
		if (keyw > 60) /* a longer key only pushes its own row's columns */
			keyw = 60;
		table_header(o, keyw);
	} else if (o->format == SUM_CSV) {
		csv_header(o);
	}
	for (size_t i = 0; i < r->ngroups; i++)
		print_group(o, &r->groups[i], false, keyw);
	if (r->other.count)
		print_group(o, &r->other, true, keyw);
	return fflush(stdout) ? -errno : 0;
}

int tv_cmd_summary(int argc, char **argv)
{
	static struct summary_args a; /* the filter's arrays are large for the stack */
	Tracevault__V1__SummaryRequest req = TRACEVAULT__V1__SUMMARY_REQUEST__INIT;
	const Tracevault__V1__QueryFilter *filter;
	const struct tv_rpc_tls *tls;
	static const double dflt[] = { 0.5, 0.9, 0.99 };
	uint64_t now_ns = tv_realtime_ns(), from_ns, to_ns;
	struct tv_summary_result r;
	char err[TV_CLI_ERR_LEN], why[TV_TIME_WHY_LEN];
	struct out o;
	int ret;

	a = (struct summary_args){ .to = "now", .format = SUM_TABLE };
	ret = tv_cli_parse(argc, argv, summary_options, summary_usage, &a);
	if (ret != TV_CLI_PARSED)
		return ret;
	if (optind < argc)
		return tv_cli_usage_error("summary: unexpected argument '%s'", argv[optind]);
	ret = tv_cli_check_servers(&a.server);
	if (ret)
		return ret;
	ret = tv_cli_time_window("summary", a.from, a.to, now_ns, &from_ns, &to_ns);
	if (ret)
		return ret;
	if (tv_filter_args_finish(&a.filter, &filter, why, sizeof(why)))
		return tv_cli_usage_error("summary: %s", why);
	if (!a.quantiles.n) {
		memcpy(a.quantiles.v, dflt, sizeof(dflt));
		a.quantiles.n = sizeof(dflt) / sizeof(dflt[0]);
	}
	req.from_ns = from_ns;
	req.to_ns = to_ns;
	req.filter = (Tracevault__V1__QueryFilter *)filter;
	req.by = (Tracevault__V1__GroupBy)a.by;
	req.max_groups = (uint32_t)a.top;
	req.n_quantiles = a.quantiles.n;
	req.quantiles = a.quantiles.v;
	o = (struct out){ .format = (enum sum_format)a.format, .by = a.by, .q = &a.quantiles,
			  .window_s = (double)(to_ns - from_ns) / 1e9 };
	ret = tv_tls_args_load(&a.tls, &tls);
	if (ret)
		return ret;
	ret = tv_summary_fetch(a.server, tls, &req, a.max_message_bytes, print_skip, &o, &r, err,
			       sizeof(err));
	tv_tls_args_free(&a.tls);
	if (ret)
		return tv_cli_runtime_error("%s", err);
	if (r.servers_cut)
		fprintf(stderr, "tracevault: warning: %zu server%s found more groups than fit one "
			"reply (--max-message-bytes); their smallest groups are counted in the "
			"'other' row\n", r.servers_cut, r.servers_cut == 1 ? "" : "s");
	if (r.overflowed)
		fprintf(stderr, "tracevault: warning: a server's group table reached its memory "
			"limit (--query-memory-bytes); keys first seen after that are counted in "
			"the 'other' row\n");
	ret = print_summary(&o, &r);
	tv_summary_result_free(&r);
	if (ret)
		return tv_cli_runtime_error("write stdout: %s", strerror(-ret));
	if (tv_cli_skip_total(&o.skipped)) {
		tv_cli_skip_summary("summary", &o.skipped, "");
		return TV_CLI_EXIT_INCOMPLETE;
	}
	return EXIT_SUCCESS;
}
