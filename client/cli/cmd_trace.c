/* tracevault trace TRACE_ID: one trace as a tree (issue 16). Every record of the trace id is
 * read with a trace-id Query (the servers' trace-id filters open only the blocks that may hold
 * it), then the span records (BLOCK.md "Record kinds") are printed parent before children,
 * indented, each with its duration, and each captured exchange under the span whose span_id it
 * carries (the traceparent a client sends names its client span). Spans whose parent is not
 * in the archive start trees of their own; exchanges whose span is not are listed last. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/out_buf.h"
#include "cli/timespec.h"
#include "cli/tls_args.h"
#include "common/addr.h"
#include "common/clock.h"
#include "rpc/query_client.h"

/* Records of one trace the command holds (a trace larger than this is printed in part, with a
 * warning): bounds its memory at about this many small records. */
#define TV_TRACE_MAX_RECORDS 100000
/* Deeper spans are printed at this indentation (and their subtrees flat after them). */
#define TV_TRACE_MAX_DEPTH 64

struct trace_args {
	const char *server, *from, *to;
	size_t max_message_bytes;
	struct tv_tls_args tls;
};

#define TA(field) offsetof(struct trace_args, field)

static const struct tv_cli_opt trace_options[] = {
	{"server", 's', TV_CLI_ARG_STRING, TA(server), NULL, NULL, NULL},
	{"from", 'f', TV_CLI_ARG_STRING, TA(from), NULL, NULL, NULL},
	{"to", 't', TV_CLI_ARG_STRING, TA(to), NULL, NULL, NULL},
	TV_CLI_READ_MESSAGE_OPTION(struct trace_args, max_message_bytes),
	TV_TLS_CLI_OPTIONS(struct trace_args, tls),
	{0},
};

static const char *const trace_usage[] = {
	"Usage: tracevault trace [--server HOST:PORT[,HOST:PORT...]] [--from T] [--to T]\n"
	"                        [--max-message-bytes N]\n"
	"                        " TV_TLS_CLI_SYNOPSIS " [--tls-server-name NAME] TRACE_ID\n"
	"\n"
	"Print one trace: its spans (received over OTLP) as a tree, parent before children,\n"
	"indented, with their durations, and each captured exchange under the span whose id\n"
	"its traceparent carried (the client span that sent it). TRACE_ID is 32 hex digits.\n"
	"Spans whose parent is not in the archive start trees of their own; exchanges without\n"
	"their span are listed last. At most 100000 records are read (a warning says so).\n"
	"Exit 0: printed; 1: the query failed or the trace has no record in the window (the\n"
	"message names the window [from, to) searched); 2: usage.\n"
	"\n"
	"  -s, --server LIST          tracevaultd(s) to read from (default: $" TV_SERVER_ENV ",\n"
	"                             else " TV_DEFAULT_SERVER ")\n"
	"  -f, --from T               only records from T (default: 0, the whole archive:\n"
	"                             the trace-id filters keep that cheap)\n"
	"  -t, --to T                 only records before T (default: now + 1h)\n"
	"      --max-message-bytes N  largest reply message (default 16M)\n",
	TV_TLS_CLI_HELP,
	"\n"
	"Example:\n"
	"  tracevault trace --server 127.0.0.1:7070 4bf92f3577b34da6a3ce929d0e0e4736\n",
	NULL,
};

/* One record of the trace, the fields the tree prints (strings owned). */
struct item {
	uint64_t ts_ns, end_ns, latency_ns;
	bool span;
	char *span_id, *parent, *name, *service; /* span: its fields; exchange: span_id */
	uint32_t kind, status_code;              /* span */
	char *role, *method, *host, *path, *comm; /* exchange */
	uint32_t status, pid, flags;
	bool printed;
	/* the tree: the span this item hangs under (SIZE_MAX: none in the archive), and its own
	 * items (child spans and exchanges) as a list in time order */
	size_t owner, first, last, next;
};

struct trace {
	struct item *items;
	size_t n, cap;
	bool truncated;
	int err; /* -ENOMEM while collecting */
};

static char *dup_str(struct tv_wire_str s, int *err)
{
	char *d = malloc(s.len + 1);

	if (!d) {
		*err = -ENOMEM;
		return NULL;
	}
	if (s.len)
		memcpy(d, s.p, s.len);
	d[s.len] = '\0';
	return d;
}

static int collect(const struct tv_record_wire *r, void *arg)
{
	struct trace *t = arg;
	struct item *it;

	if (t->n == TV_TRACE_MAX_RECORDS) {
		t->truncated = true;
		return 0;
	}
	if (t->n == t->cap) {
		size_t ncap = t->cap ? 2 * t->cap : 64;
		struct item *p = realloc(t->items, ncap * sizeof(*p));

		if (!p)
			return t->err = -ENOMEM;
		t->items = p;
		t->cap = ncap;
	}
	it = &t->items[t->n];
	memset(it, 0, sizeof(*it));
	it->ts_ns = r->num[TV_REC_TS_NS];
	it->end_ns = r->num[TV_REC_END_NS];
	it->latency_ns = r->num[TV_REC_LATENCY_NS];
	it->span_id = dup_str(r->str[TV_REC_SPAN_ID], &t->err);
	if (r->str[TV_REC_SPAN].p) {
		struct tv_span_wire sw;

		if (tv_span_wire_parse((const uint8_t *)r->str[TV_REC_SPAN].p,
				       r->str[TV_REC_SPAN].len, &sw))
			return 0; /* the record parsed: cannot happen */
		it->span = true;
		it->parent = dup_str(sw.str[TV_SPAN_PARENT_SPAN_ID], &t->err);
		it->name = dup_str(sw.str[TV_SPAN_NAME], &t->err);
		it->service = dup_str(sw.str[TV_SPAN_SERVICE], &t->err);
		it->kind = (uint32_t)sw.num[TV_SPAN_KIND];
		it->status_code = (uint32_t)sw.num[TV_SPAN_STATUS_CODE];
	} else {
		it->role = dup_str(r->str[TV_REC_ROLE], &t->err);
		it->method = dup_str(r->str[TV_REC_METHOD], &t->err);
		it->host = dup_str(r->str[TV_REC_HOST], &t->err);
		it->path = dup_str(r->str[TV_REC_PATH], &t->err);
		it->comm = dup_str(r->str[TV_REC_COMM], &t->err);
		it->status = (uint32_t)r->num[TV_REC_STATUS];
		it->pid = (uint32_t)r->num[TV_REC_PID];
		it->flags = (uint32_t)r->num[TV_REC_FLAGS];
	}
	t->n++;
	return t->err;
}

static void free_trace(struct trace *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct item *it = &t->items[i];

		free(it->span_id), free(it->parent), free(it->name), free(it->service);
		free(it->role), free(it->method), free(it->host), free(it->path), free(it->comm);
	}
	free(t->items);
}

static const char *const KIND_NAME[] = { "unspecified", "internal", "server", "client",
					 "producer", "consumer" };

static void print_ms(uint64_t ns)
{
	printf("%" PRIu64 ".%03" PRIu64 " ms", ns / 1000000, ns / 1000 % 1000);
}

/* s (a string from the archive: any OTLP sender's or capture's bytes) as a terminal may show
 * it: printable UTF-8 as is, control characters and invalid bytes each as '?' (tv_term_char,
 * as query --format table), so no escape sequence or newline reaches the terminal. */
static void put_safe(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), skip;

	for (size_t i = 0; i < n; i += skip) {
		size_t len = tv_term_char(u + i, n - i, &skip);

		if (len)
			fwrite(s + i, 1, len, stdout);
		else
			putchar('?');
	}
}

/* A record's end: end_ns, or ts_ns + latency_ns when end_ns is absent (an exchange put
 * without it), the duration its line prints. */
static uint64_t end_of(const struct item *it)
{
	if (it->end_ns)
		return it->end_ns;
	return it->latency_ns > UINT64_MAX - it->ts_ns ? UINT64_MAX : it->ts_ns + it->latency_ns;
}

static void indent(unsigned depth)
{
	for (unsigned i = 0; i <= depth; i++)
		fputs("  ", stdout);
}

static void print_exchange(const struct item *x, unsigned depth)
{
	indent(depth);
	put_safe(x->role[0] ? x->role : "exchange");
	putchar(' ');
	put_safe(x->method[0] ? x->method : "?");
	putchar(' ');
	put_safe(x->host);
	put_safe(x->path);
	printf(" -> %" PRIu32 " ", x->status);
	print_ms(x->latency_ns);
	printf(" (captured, pid %" PRIu32 " ", x->pid);
	put_safe(x->comm);
	printf(")%s\n", x->flags ? " [flagged]" : "");
}

/* Span sp at depth, then its items (children and exchanges) in time order. */
static void print_span(struct trace *t, struct item *sp, unsigned depth)
{
	sp->printed = true;
	indent(depth);
	put_safe(sp->name[0] ? sp->name : "(no name)");
	fputs(" [", stdout);
	put_safe(sp->service[0] ? sp->service : "no service");
	printf(", %s] ", sp->kind < 6 ? KIND_NAME[sp->kind] : "kind?");
	print_ms(sp->latency_ns);
	fputs(" span ", stdout);
	put_safe(sp->span_id);
	printf("%s\n", sp->status_code == 2 ? " ERROR" : "");
	if (depth >= TV_TRACE_MAX_DEPTH)
		return; /* its children start trees of their own (print_trace's second pass) */
	for (size_t i = sp->first; i != SIZE_MAX; i = t->items[i].next) {
		struct item *c = &t->items[i];

		if (c->printed)
			continue;
		if (c->span) {
			print_span(t, c, depth + 1);
		} else {
			c->printed = true;
			print_exchange(c, depth + 1);
		}
	}
}

static int by_ts(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return x->ts_ns < y->ts_ns ? -1 : x->ts_ns > y->ts_ns;
}

/* The spans' indexes sorted by span id, for span_of. */
static const struct trace *sort_ctx;

static int by_span_id(const void *a, const void *b)
{
	return strcmp(sort_ctx->items[*(const size_t *)a].span_id,
		      sort_ctx->items[*(const size_t *)b].span_id);
}

/* The index of the span whose id is id (in the sorted index idx of n spans), or SIZE_MAX. */
static size_t span_of(const struct trace *t, const size_t *idx, size_t n, const char *id)
{
	size_t lo = 0, hi = n;

	while (id && id[0] && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->items[idx[mid]].span_id, id);

		if (c == 0)
			return idx[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

/* Link every item under its owner, in time order: O(n log n) for a trace of n records. */
static int link_tree(struct trace *t)
{
	size_t *idx = malloc((t->n ? t->n : 1) * sizeof(*idx)), n = 0;

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		t->items[i].first = t->items[i].last = t->items[i].next = SIZE_MAX;
		if (t->items[i].span)
			idx[n++] = i;
	}
	sort_ctx = t;
	qsort(idx, n, sizeof(*idx), by_span_id);
	for (size_t i = 0; i < t->n; i++) { /* items are in time order: lists come out so */
		struct item *it = &t->items[i];
		size_t o = span_of(t, idx, n, it->span ? it->parent : it->span_id);

		it->owner = o == i ? SIZE_MAX : o; /* a span naming itself as parent: a root */
		if (it->owner == SIZE_MAX)
			continue;
		if (t->items[o].last == SIZE_MAX)
			t->items[o].first = i;
		else
			t->items[t->items[o].last].next = i;
		t->items[o].last = i;
	}
	free(idx);
	return 0;
}

static int print_trace(struct trace *t, const char *id)
{
	size_t spans = 0, orphans = 0;
	uint64_t first = UINT64_MAX, last = 0;

	qsort(t->items, t->n, sizeof(*t->items), by_ts);
	if (link_tree(t))
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		spans += t->items[i].span;
		first = t->items[i].ts_ns < first ? t->items[i].ts_ns : first;
		last = end_of(&t->items[i]) > last ? end_of(&t->items[i]) : last;
	}
	printf("trace %s: %zu span%s, %zu exchange%s, ", id, spans, spans == 1 ? "" : "s",
	       t->n - spans, t->n - spans == 1 ? "" : "s");
	print_ms(last > first ? last - first : 0);
	printf("\n");
	/* roots: spans without their parent here; then spans not reached (a parent cycle, or
	 * below the depth limit) */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < t->n; i++) {
			struct item *s = &t->items[i];

			if (s->span && !s->printed && (pass || s->owner == SIZE_MAX))
				print_span(t, s, 0);
		}
	for (size_t i = 0; i < t->n; i++)
		orphans += !t->items[i].printed;
	if (orphans)
		printf("exchanges whose span is not in the archive:\n");
	for (size_t i = 0; i < t->n; i++)
		if (!t->items[i].printed)
			print_exchange(&t->items[i], 0);
	return 0;
}

/* ts_ns as RFC 3339 UTC with all nine digits of the fraction (a window's bound is exact). */
static void rfc3339_ns(uint64_t ts_ns, char *buf, size_t len)
{
	char ms[TV_RFC3339_MS_LEN];
	int n = tv_format_rfc3339(ts_ns, ms, sizeof(ms));

	/* its seconds ("....T..:..:.." without ".mmmZ"), then the nanoseconds */
	snprintf(buf, len, "%.*s.%09" PRIu64 "Z", n > 5 ? n - 5 : 0, ms, ts_ns % 1000000000u);
}

/* The error for a trace without a record in the window searched: with the default window the
 * archive up to now + 1h; with --from or --to the window [from, to) as searched and as given,
 * since the trace may have records outside it. Returns tv_cli_runtime_error's exit code. */
static int no_record(const char *id, const char *from_arg, const char *to_arg, uint64_t from_ns,
		     uint64_t to_ns)
{
	char from[TV_RFC3339_MS_LEN + 8], to[TV_RFC3339_MS_LEN + 8];

	rfc3339_ns(from_ns, from, sizeof(from));
	rfc3339_ns(to_ns, to, sizeof(to));
	if (!from_arg && !to_arg)
		return tv_cli_runtime_error("trace %s: no record in the archive up to now + 1h "
					    "(%s, the default --to)", id, to);
	return tv_cli_runtime_error("trace %s: no record in the window [%s, %s) (--from %s, "
				    "--to %s); records outside it were not searched", id, from, to,
				    from_arg ? from_arg : "0 (the default)",
				    to_arg ? to_arg : "now + 1h (the default)");
}

int tv_cmd_trace(int argc, char **argv)
{
	static struct trace_args a;
	Tracevault__V1__QueryFilter filter = TRACEVAULT__V1__QUERY_FILTER__INIT;
	char *ids[1];
	const struct tv_rpc_tls *tls;
	uint64_t now_ns = tv_realtime_ns(), from_ns, to_ns;
	struct trace t = { 0 };
	char err[TV_CLI_ERR_LEN], to_default[32], id[33];
	const char *arg, *from_arg, *to_arg;
	int ret;

	a = (struct trace_args){ 0 };
	ret = tv_cli_parse(argc, argv, trace_options, trace_usage, &a);
	if (ret != TV_CLI_PARSED)
		return ret;
	from_arg = a.from; /* NULL: the default, said so when the trace is not found */
	to_arg = a.to;
	if (!a.from)
		a.from = "0";
	if (optind >= argc)
		return tv_cli_usage_error("trace: missing TRACE_ID (32 hex digits)");
	if (optind + 1 < argc)
		return tv_cli_usage_error("trace: unexpected argument '%s'", argv[optind + 1]);
	arg = argv[optind];
	if (strlen(arg) != 32 || strspn(arg, "0123456789abcdefABCDEF") != 32)
		return tv_cli_usage_error("trace: '%s' is not 32 hex digits", arg);
	for (int i = 0; i < 32; i++)
		id[i] = (char)(arg[i] >= 'A' && arg[i] <= 'F' ? arg[i] - 'A' + 'a' : arg[i]);
	id[32] = '\0';
	snprintf(to_default, sizeof(to_default), "%" PRIu64, now_ns + (uint64_t)3600 * 1000000000u);
	if (!a.to)
		a.to = to_default;
	ret = tv_cli_check_servers(&a.server);
	if (ret)
		return ret;
	ret = tv_cli_time_window("trace", a.from, a.to, now_ns, &from_ns, &to_ns);
	if (ret)
		return ret;
	ret = tv_tls_args_load(&a.tls, &tls);
	if (ret)
		return ret;
	ids[0] = id;
	filter.n_trace_ids = 1;
	filter.trace_ids = ids;
	ret = tv_query(a.server, tls, from_ns, to_ns, 0, false, &filter, a.max_message_bytes,
		       collect, NULL, NULL, &t, err, sizeof(err));
	tv_tls_args_free(&a.tls);
	if (t.err == -ENOMEM) {
		free_trace(&t);
		return tv_cli_runtime_error("trace: out of memory holding the trace's records");
	}
	if (ret) {
		free_trace(&t);
		return tv_cli_runtime_error("%s", err);
	}
	if (t.n == 0) {
		free_trace(&t);
		return no_record(id, from_arg, to_arg, from_ns, to_ns);
	}
	if (t.truncated)
		fprintf(stderr, "tracevault: warning: trace %s has more than %d records: the tree "
			"shows the first %d\n", id, TV_TRACE_MAX_RECORDS, TV_TRACE_MAX_RECORDS);
	ret = print_trace(&t, id);
	free_trace(&t);
	if (ret)
		return tv_cli_runtime_error("trace: out of memory building the tree");
	return fflush(stdout) ? tv_cli_runtime_error("write stdout: %s", strerror(errno)) :
				EXIT_SUCCESS;
}
