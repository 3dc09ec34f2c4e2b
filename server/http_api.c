/* The HTTP API (http_api.h): dispatch by path, the shared pieces of http_json.h, the page
 * (GET /) and its routes under /api/tracevault/:
 *   summary    Summary over a window and filters, grouped (top endpoints)
 *   rates      Summary per time bucket: requests, errors and latency quantiles over time
 *   exchanges  a page of the matching exchanges, newest first (Query with a limit)
 * README "HTTP API" documents their parameters and answers. */
#include "server/http_api.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/status_range.h"
#include "proto/wire.h"
#include "server/http_json.h"
#include "server/web_page.h"

const struct tv_limit tv_http_max_spans_limit = { .min = 1, .max = 10000000 };
const struct tv_limit tv_http_timeout_ms_limit = { .min = 100, .max = 600000 };
const struct tv_limit tv_http_max_response_bytes_limit = { .min = 4096, .max = 1ull << 30 };
const struct tv_limit tv_http_max_traces_limit = { .min = 1, .max = 100000 };

#define NAME_MAX_BYTES 255
/* exchanges per page of the exchanges route, at most */
#define MAX_PAGE 1000
#define NS_PER_US 1000ull

int tv_http_check_service_name(const char *s)
{
	const char *eq = strchr(s, '=');

	if (!eq || eq == s || !eq[1] || (size_t)(eq - s) > NAME_MAX_BYTES ||
	    strlen(eq + 1) > NAME_MAX_BYTES)
		return -EINVAL;
	return 0;
}

int tv_http_api_new(struct tv_http_api **out, const struct tv_http_api_opts *o, char *err,
		    size_t errlen)
{
	struct tv_http_api *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a)
		goto oom;
	a->o = *o;
	if (!a->o.max_spans)
		a->o.max_spans = TV_HTTP_DEFAULT_MAX_SPANS;
	if (!a->o.timeout_ms)
		a->o.timeout_ms = TV_HTTP_DEFAULT_TIMEOUT_MS;
	if (!a->o.max_response_bytes)
		a->o.max_response_bytes = TV_HTTP_DEFAULT_MAX_RESPONSE_BYTES;
	if (!a->o.max_traces)
		a->o.max_traces = TV_HTTP_DEFAULT_MAX_TRACES;
	for (size_t i = 0; i < o->n_service_names && i < TV_HTTP_MAX_SERVICE_NAMES; i++) {
		const char *s = o->service_names[i], *eq = strchr(s, '=');

		if (!eq)
			continue; /* checked by the caller (tv_http_check_service_name) */
		a->map_comm[a->n_map] = strndup(s, (size_t)(eq - s));
		a->map_name[a->n_map] = strdup(eq + 1);
		if (!a->map_comm[a->n_map] || !a->map_name[a->n_map]) {
			a->n_map++;
			goto oom;
		}
		a->n_map++;
	}
	if (tv_local_rpc_new(&a->rpc, o->rpc_addr, o->max_message_bytes))
		goto oom;
	*out = a;
	return 0;
oom:
	snprintf(err, errlen, "out of memory for the HTTP API");
	tv_http_api_free(a);
	return -ENOMEM;
}

void tv_http_api_free(struct tv_http_api *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n_map; i++) {
		free(a->map_comm[i]);
		free(a->map_name[i]);
	}
	tv_local_rpc_free(a->rpc);
	free(a);
}

/* ---- shared pieces (http_json.h) ---- */

int tv_http_json(struct hreq *h, unsigned status, json_t *j)
{
	char *s;
	size_t n;

	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	n = strlen(s);
	if (n > h->a->o.max_response_bytes) {
		free(s);
		return tv_http_error(h, 413, "the answer (%zu bytes) is above "
				     "--http-max-response-bytes (%zu): %s", n,
				     h->a->o.max_response_bytes, h->too_large_advice ?
				     h->too_large_advice : "narrow the window or lower the limit");
	}
	*h->out = (struct tv_http_reply){ .status = status, .body = s, .len = n,
					  .content_type = "application/json" };
	return 0;
}

int tv_http_error(struct hreq *h, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	json_t *j;
	char *s;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	j = json_pack("{s:n,s:i,s:i,s:i,s:[{s:i,s:o}]}", "data", "total", 0, "limit", 0,
		      "offset", 0, "errors", "code", (int)status, "msg",
		      tv_http_jstr(msg, strlen(msg)));
	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	*h->out = (struct tv_http_reply){ .status = status, .body = s, .len = strlen(s),
					  .content_type = "application/json" };
	return 0;
}

const char *tv_http_keep(struct hreq *h, const char *s)
{
	json_t *v;

	if (!h->kept && !(h->kept = json_array()))
		return NULL;
	/* jansson keeps its own copy; the pointer lives while the array does */
	if (!(v = json_string_nocheck(s)) || json_array_append_new(h->kept, v))
		return NULL;
	return json_string_value(v);
}

int tv_http_rpc_error(struct hreq *h, int ret, const char *err)
{
	if (ret == -ENOMEM)
		return ret;
	return tv_http_error(h, ret == -EINVAL ? 400 : ret == -ETIMEDOUT ? 504 :
				ret == -ENOBUFS ? 503 : 502, "%s", err);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || cp == 0)
		return 0;
	return len;
}

void tv_http_utf8_fix(char *s, size_t n)
{
	unsigned char *u = (unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t l = u[i] ? utf8_len(u + i, n - i) : 0;

		if (!l)
			u[i++] = '?';
		else
			i += l;
	}
}

json_t *tv_http_jstr(const char *s, size_t n)
{
	char *copy;
	json_t *j;

	if (!s)
		return json_string("");
	j = json_stringn(s, n);
	if (j)
		return j;
	copy = malloc(n + 1);
	if (!copy)
		return NULL;
	memcpy(copy, s, n);
	tv_http_utf8_fix(copy, n);
	j = json_stringn(copy, n);
	free(copy);
	return j;
}

bool tv_http_utf8_valid(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), l;

	for (size_t i = 0; i < n; i += l)
		if (!(l = utf8_len(u + i, n - i)))
			return false;
	return true;
}

char *tv_http_utf8_dup(const char *s)
{
	char *copy = strdup(s ? s : "");

	if (copy)
		tv_http_utf8_fix(copy, strlen(copy));
	return copy;
}

int tv_http_param_u64(struct hreq *h, const char *name, uint64_t *v, bool *present, char *err,
		      size_t errlen)
{
	const char *s = tv_http_arg(h->rq, name);
	char *end;
	unsigned long long x;

	if (present)
		*present = false;
	if (!s || !s[0])
		return 0;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (*end || errno || s[0] == '-' || s[0] == '+' || s[0] == ' ') {
		snprintf(err, errlen, "invalid %s: '%.64s' (a non-negative integer)", name, s);
		return -EINVAL;
	}
	*v = x;
	if (present)
		*present = true;
	return 0;
}

int tv_http_param_duration(struct hreq *h, const char *name, uint64_t *ns, bool *present,
			   char *err, size_t errlen)
{
	static const struct { const char *unit; double ns; } UNITS[] = {
		{ "ns", 1 }, { "us", 1e3 }, { "µs", 1e3 }, { "ms", 1e6 }, { "s", 1e9 },
		{ "m", 60e9 }, { "h", 3600e9 }, { "d", 86400e9 }, { "", 1e3 },
	};
	const char *s = tv_http_arg(h->rq, name);
	char *end;
	double x;

	if (present)
		*present = false;
	if (!s || !s[0])
		return 0;
	errno = 0;
	x = strtod(s, &end);
	if (end == s || errno || !(x >= 0) || s[0] == ' ')
		goto bad;
	for (size_t i = 0; i < sizeof(UNITS) / sizeof(UNITS[0]); i++) {
		if (strcmp(end, UNITS[i].unit))
			continue;
		x *= UNITS[i].ns;
		if (x >= 1.8e19)
			goto bad;
		*ns = (uint64_t)llround(x);
		if (present)
			*present = true;
		return 0;
	}
bad:
	snprintf(err, errlen, "invalid %s: '%.64s' (a duration: 250us, 1.5ms, 2s, 5m, 1h, 1d; a "
		 "bare number is microseconds)", name, s);
	return -EINVAL;
}

int tv_http_param_word(struct hreq *h, const char *name, const struct tv_http_word *words,
		       size_t n, const char *expect, int *v, char *err, size_t errlen)
{
	const char *s = tv_http_arg(h->rq, name);

	if (!s)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(s, words[i].word)) {
			*v = words[i].value;
			return 0;
		}
	}
	snprintf(err, errlen, "invalid %s: '%.32s' (%s)", name, s, expect);
	return -EINVAL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int tv_http_window(struct hreq *h, uint64_t default_ns, uint64_t *from_ns, uint64_t *to_ns,
		   char *err, size_t errlen)
{
	uint64_t start = 0, end = 0, lookback = default_ns;
	bool has_start, has_end, has_lookback;
	const char *lb = tv_http_arg(h->rq, "lookback");
	int ret;

	if ((ret = tv_http_param_u64(h, "start", &start, &has_start, err, errlen)) ||
	    (ret = tv_http_param_u64(h, "end", &end, &has_end, err, errlen)))
		return ret;
	/* Jaeger UI sends lookback=custom with start and end */
	if (lb && strcmp(lb, "custom") &&
	    (ret = tv_http_param_duration(h, "lookback", &lookback, &has_lookback, err, errlen)))
		return ret;
	if (start > UINT64_MAX / NS_PER_US || end > UINT64_MAX / NS_PER_US) {
		snprintf(err, errlen, "start/end: microseconds past 2^64 ns");
		return -EINVAL;
	}
	*to_ns = has_end ? end * NS_PER_US : now_ns();
	*from_ns = has_start ? start * NS_PER_US : (*to_ns > lookback ? *to_ns - lookback : 0);
	if (*from_ns > *to_ns) {
		snprintf(err, errlen, "start (%llu) is after end (%llu)",
			 (unsigned long long)start, (unsigned long long)end);
		return -EINVAL;
	}
	if (has_end && *to_ns < UINT64_MAX)
		(*to_ns)++; /* end is inclusive in Jaeger; the Query's to_ns is not */
	return 0;
}

const char *tv_http_service_of_comm(const struct tv_http_api *a, const char *comm)
{
	for (size_t i = 0; i < a->n_map; i++)
		if (!strcmp(a->map_comm[i], comm ? comm : ""))
			return a->map_name[i];
	return comm && comm[0] ? comm : TV_HTTP_UNKNOWN_SERVICE;
}

size_t tv_http_comms_of_service(const struct tv_http_api *a, const char *svc,
				const char **comms, size_t max)
{
	size_t n = 0;
	bool mapped_away = false;

	for (size_t i = 0; i < a->n_map; i++) {
		if (!strcmp(a->map_name[i], svc) && n < max)
			comms[n++] = a->map_comm[i];
		if (!strcmp(a->map_comm[i], svc))
			mapped_away = true; /* that comm is another service's */
	}
	/* unknown_service is the empty comm's name (--service-name cannot map an empty comm),
	 * and a comm may also be called so */
	if (!strcmp(svc, TV_HTTP_UNKNOWN_SERVICE) && n < max)
		comms[n++] = "";
	if (!mapped_away && n < max)
		comms[n++] = svc;
	return n;
}

Tracevault__V1__StringMatch **tv_http_matches(Tracevault__V1__StringMatch *m,
					      Tracevault__V1__StringMatch **mp,
					      const char *const *values, size_t n,
					      Tracevault__V1__MatchKind kind)
{
	for (size_t i = 0; i < n; i++) {
		Tracevault__V1__StringMatch init = TRACEVAULT__V1__STRING_MATCH__INIT;

		m[i] = init;
		m[i].kind = kind;
		m[i].value = (char *)values[i];
		mp[i] = &m[i];
	}
	return mp;
}

struct scan {
	tv_local_record_cb cb;
	void *arg;
	uint64_t seen;
};

static int scan_count(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct scan *s = arg;

	s->seen++;
	return s->cb(r, s->arg);
}

int tv_http_scan(struct tv_http_api *a, uint64_t from_ns, uint64_t to_ns,
		 const Tracevault__V1__QueryFilter *f, bool reverse, uint64_t limit,
		 tv_local_record_cb cb, void *arg, bool *truncated, char *err, size_t errlen)
{
	Tracevault__V1__QueryRequest req = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	struct scan s = { cb, arg, 0 };
	uint64_t skipped;
	int ret;

	req.from_ns = from_ns;
	req.to_ns = to_ns;
	req.limit = limit && limit < a->o.max_spans ? limit : a->o.max_spans;
	req.filter = (Tracevault__V1__QueryFilter *)f;
	req.reverse = reverse;
	ret = tv_local_query(a->rpc, &req, a->o.timeout_ms, scan_count, &s, &skipped, err, errlen);
	if (truncated)
		*truncated = !ret && s.seen == a->o.max_spans && req.limit == a->o.max_spans;
	return ret;
}

/* ---- the page's filters: service, method, status, path, host, role, trace_id ---- */

#define MAX_COMMS TV_FILTER_MAX_ENTRIES /* what one QueryFilter field takes */

/* A QueryFilter and the storage its pointers point into. */
struct fbuf {
	Tracevault__V1__QueryFilter f;
	char *methods[1], *trace_ids[1];
	Tracevault__V1__Range status[TV_FILTER_MAX_ENTRIES], *status_p[TV_FILTER_MAX_ENTRIES];
	Tracevault__V1__StringMatch path, *path_p[1], host, *host_p[1];
	Tracevault__V1__StringMatch comm[MAX_COMMS], *comm_p[MAX_COMMS];
	bool none; /* the service has no comm: nothing can match */
};

/* status: a comma-separated list of what --status takes (common/status_range.h: "5xx",
 * "404", "400-499", "none"), at most TV_FILTER_MAX_ENTRIES items, into b's ranges. -EINVAL
 * with the reason in err for anything else: the page must not widen or wrap a value the
 * CLI refuses. */
static int parse_status(const char *s, struct fbuf *b, char *err, size_t errlen)
{
	const char *p = s;

	for (;;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		Tracevault__V1__Range *r = &b->status[b->f.n_status];
		unsigned lo, hi;

		if (b->f.n_status == TV_FILTER_MAX_ENTRIES) {
			snprintf(err, errlen, "invalid status: more than %d values",
				 TV_FILTER_MAX_ENTRIES);
			return -EINVAL;
		}
		if (tv_status_range_parse(p, n, &lo, &hi)) {
			snprintf(err, errlen, "invalid status: '%.*s' is not "
				 TV_STATUS_RANGE_FORMS, (int)(n < 32 ? n : 32), p);
			return -EINVAL;
		}
		*r = (Tracevault__V1__Range)TRACEVAULT__V1__RANGE__INIT;
		r->lo = lo;
		r->hi = hi;
		b->status_p[b->f.n_status++] = r;
		if (!c)
			return 0;
		p = c + 1;
	}
}

/* A parameter's value v, unless absent or empty, as the one string of a repeated field
 * (*n, *field); slot holds it (borrowed, not copied). */
static void one_string(char **slot, const char *v, size_t *n, char ***field)
{
	if (!v || !v[0])
		return;
	slot[0] = (char *)v;
	*n = 1;
	*field = slot;
}

/* A parameter's value v, unless absent or empty, as the one StringMatch of kind of a repeated
 * field (*n, *field); m and slot hold it (v borrowed, not copied). */
static void one_match(Tracevault__V1__StringMatch *m, Tracevault__V1__StringMatch **slot,
		      const char *v, Tracevault__V1__MatchKind kind, size_t *n,
		      Tracevault__V1__StringMatch ***field)
{
	if (!v || !v[0])
		return;
	*field = tv_http_matches(m, slot, &v, 1, kind);
	*n = 1;
}

/* The exchanges of [from, to) the page's parameters select (kind exchange always). A service
 * with a '?' also selects the comms shown as it (tv_http_comms_shown_as: the page lists
 * /api/services?kind=exchange, where a byte that is not UTF-8 is shown as '?'). */
static int page_filter(struct hreq *h, uint64_t from, uint64_t to, struct fbuf *b, char *err,
		       size_t errlen)
{
	static const struct tv_http_word ROLES[] = {
		{ "", TRACEVAULT__V1__ROLE__ROLE_ANY },
		{ "server", TRACEVAULT__V1__ROLE__ROLE_SERVER },
		{ "client", TRACEVAULT__V1__ROLE__ROLE_CLIENT },
	};
	const char *svc = tv_http_arg(h->rq, "service"), *status = tv_http_arg(h->rq, "status");
	const char *path = tv_http_arg(h->rq, "path");
	Tracevault__V1__QueryFilter init = TRACEVAULT__V1__QUERY_FILTER__INIT;
	int role = TRACEVAULT__V1__ROLE__ROLE_ANY, ret;

	memset(b, 0, sizeof(*b));
	b->f = init;
	b->f.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE;
	if (svc && svc[0] && !tv_http_utf8_valid(svc)) {
		/* as the Jaeger routes: the lists show no such name (bytes not UTF-8 as '?') */
		snprintf(err, errlen, "invalid service: not UTF-8 (every service name the lists "
			 "show is)");
		return -EINVAL;
	}
	if (svc && svc[0]) {
		const char *comms[MAX_COMMS];
		size_t n = tv_http_comms_of_service(h->a, svc, comms, MAX_COMMS);

		if (strchr(svc, '?') &&
		    (ret = tv_http_comms_shown_as(h, svc, from, to, comms, &n, MAX_COMMS, NULL,
						  err, errlen)))
			return ret;
		b->f.comms = tv_http_matches(b->comm, b->comm_p, comms, n,
					     TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT);
		b->f.n_comms = n;
		b->none = n == 0;
	}
	if (status && status[0]) {
		if ((ret = parse_status(status, b, err, errlen)))
			return ret;
		b->f.status = b->status_p;
	}
	if ((ret = tv_http_param_word(h, "role", ROLES, sizeof(ROLES) / sizeof(ROLES[0]),
				      "server or client", &role, err, errlen)))
		return ret;
	b->f.role = (Tracevault__V1__Role)role;
	one_string(b->methods, tv_http_arg(h->rq, "method"), &b->f.n_methods, &b->f.methods);
	/* a path pattern with a wildcard is a glob, else a prefix */
	one_match(&b->path, b->path_p, path, path && strpbrk(path, "*?[") ?
		  TRACEVAULT__V1__MATCH_KIND__MATCH_GLOB : TRACEVAULT__V1__MATCH_KIND__MATCH_PREFIX,
		  &b->f.n_paths, &b->f.paths);
	one_match(&b->host, b->host_p, tv_http_arg(h->rq, "host"),
		  TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT, &b->f.n_hosts, &b->f.hosts);
	one_string(b->trace_ids, tv_http_arg(h->rq, "trace_id"), &b->f.n_trace_ids,
		   &b->f.trace_ids);
	return 0;
}

/* ---- /api/tracevault/summary and rates ---- */

static const struct tv_http_word GROUP_BY[] = {
	{ "none", TRACEVAULT__V1__GROUP_BY__GROUP_BY_NONE },
	{ "path", TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH },
	{ "host", TRACEVAULT__V1__GROUP_BY__GROUP_BY_HOST },
	{ "method", TRACEVAULT__V1__GROUP_BY__GROUP_BY_METHOD },
	{ "status", TRACEVAULT__V1__GROUP_BY__GROUP_BY_STATUS },
	{ "comm", TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM },
	{ "remote", TRACEVAULT__V1__GROUP_BY__GROUP_BY_REMOTE },
	{ "role", TRACEVAULT__V1__GROUP_BY__GROUP_BY_ROLE },
};

static double QUANTILES[] = { 0.5, 0.9, 0.99 };

/* A SummaryGroup as JSON: counts, errors (5xx, no response, and 4xx), latency in us. */
static json_t *group_json(const Tracevault__V1__SummaryGroup *g)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	json_object_set_new(j, "key", tv_http_jstr(g->key, strlen(g->key)));
	json_object_set_new(j, "count", json_integer((json_int_t)g->count));
	json_object_set_new(j, "count_4xx", json_integer((json_int_t)g->count_4xx));
	json_object_set_new(j, "count_5xx", json_integer((json_int_t)g->count_5xx));
	json_object_set_new(j, "count_no_response",
			    json_integer((json_int_t)g->count_no_response));
	json_object_set_new(j, "errors", json_integer((json_int_t)(g->count_5xx +
								   g->count_no_response)));
	json_object_set_new(j, "latency_count", json_integer((json_int_t)g->latency_count));
	json_object_set_new(j, "mean_us", json_real(g->latency_count ?
		(double)g->latency_sum_ns / (double)g->latency_count / 1e3 : 0));
	json_object_set_new(j, "max_us", json_real((double)g->latency_max_ns / 1e3));
	json_object_set_new(j, "p50_us", json_real(g->n_quantile_ns > 0 ?
						   g->quantile_ns[0] / 1e3 : 0));
	json_object_set_new(j, "p90_us", json_real(g->n_quantile_ns > 1 ?
						   g->quantile_ns[1] / 1e3 : 0));
	json_object_set_new(j, "p99_us", json_real(g->n_quantile_ns > 2 ?
						   g->quantile_ns[2] / 1e3 : 0));
	return j;
}

static int summary_call(struct hreq *h, uint64_t from_ns, uint64_t to_ns, struct fbuf *fb,
			Tracevault__V1__GroupBy by, uint32_t max_groups,
			Tracevault__V1__SummaryResponse **resp, char *err, size_t errlen)
{
	Tracevault__V1__SummaryRequest req = TRACEVAULT__V1__SUMMARY_REQUEST__INIT;

	req.from_ns = from_ns;
	req.to_ns = to_ns;
	req.filter = &fb->f;
	req.by = by;
	req.max_groups = max_groups;
	req.n_quantiles = sizeof(QUANTILES) / sizeof(QUANTILES[0]);
	req.quantiles = QUANTILES;
	return tv_local_summary(h->a->rpc, &req, h->a->o.timeout_ms, resp, err, errlen);
}

static int route_summary(struct hreq *h)
{
	int by = TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH, ret;
	Tracevault__V1__SummaryResponse *resp = NULL;
	uint64_t from, to, limit = 20;
	struct fbuf fb;
	char err[512];
	json_t *j, *groups;

	if ((ret = tv_http_param_word(h, "by", GROUP_BY, sizeof(GROUP_BY) / sizeof(GROUP_BY[0]),
				      "none, path, host, method, status, comm, remote, role", &by,
				      err, sizeof(err))) ||
	    (ret = tv_http_window(h, TV_HTTP_DEFAULT_LOOKBACK_NS, &from, &to, err, sizeof(err))) ||
	    (ret = tv_http_param_u64(h, "limit", &limit, NULL, err, sizeof(err))) ||
	    (ret = page_filter(h, from, to, &fb, err, sizeof(err))))
		return tv_http_rpc_error(h, ret, err); /* -EINVAL: 400 naming the parameter */
	if (limit < 1 || limit > 1000)
		return tv_http_error(h, 400, "invalid limit: %llu (1 to 1000)",
				     (unsigned long long)limit);
	j = json_object();
	groups = json_array();
	if (!j || !groups) {
		json_decref(j);
		json_decref(groups);
		return -ENOMEM;
	}
	json_object_set_new(j, "groups", groups);
	if (!fb.none) {
		ret = summary_call(h, from, to, &fb, (Tracevault__V1__GroupBy)by, (uint32_t)limit,
				   &resp, err, sizeof(err));
		if (ret) {
			json_decref(j);
			return tv_http_rpc_error(h, ret, err);
		}
		for (size_t i = 0; i < resp->n_groups; i++)
			json_array_append_new(groups, group_json(resp->groups[i]));
		json_object_set_new(j, "records", json_integer((json_int_t)resp->records));
		json_object_set_new(j, "groups_total",
				    json_integer((json_int_t)resp->groups_total));
		if (resp->other)
			json_object_set_new(j, "other", group_json(resp->other));
		tracevault__v1__summary_response__free_unpacked(resp, NULL);
	} else {
		json_object_set_new(j, "records", json_integer(0));
		json_object_set_new(j, "groups_total", json_integer(0));
	}
	json_object_set_new(j, "start", json_integer((json_int_t)(from / NS_PER_US)));
	json_object_set_new(j, "end", json_integer((json_int_t)(to / NS_PER_US)));
	return tv_http_json(h, 200, j);
}

static int route_rates(struct hreq *h)
{
	uint64_t from, to, step_ns = 0, n;
	struct fbuf fb;
	char err[512];
	bool has_step;
	json_t *j, *buckets;
	int ret;

	if ((ret = tv_http_window(h, TV_HTTP_DEFAULT_LOOKBACK_NS, &from, &to, err, sizeof(err))) ||
	    (ret = tv_http_param_duration(h, "step", &step_ns, &has_step, err, sizeof(err))) ||
	    (ret = page_filter(h, from, to, &fb, err, sizeof(err))))
		return tv_http_rpc_error(h, ret, err); /* -EINVAL: 400 naming the parameter */
	if (!has_step)
		step_ns = (to - from) / 60 + 1;
	if (step_ns == 0)
		return tv_http_error(h, 400, "invalid step: 0");
	n = (to - from + step_ns - 1) / step_ns;
	if (n > TV_HTTP_MAX_BUCKETS)
		return tv_http_error(h, 400, "%llu buckets: at most %u (a larger step)",
				     (unsigned long long)n, TV_HTTP_MAX_BUCKETS);
	j = json_object();
	buckets = json_array();
	if (!j || !buckets) {
		json_decref(j);
		json_decref(buckets);
		return -ENOMEM;
	}
	json_object_set_new(j, "start", json_integer((json_int_t)(from / NS_PER_US)));
	json_object_set_new(j, "step_us", json_integer((json_int_t)(step_ns / NS_PER_US)));
	json_object_set_new(j, "buckets", buckets);
	/* one Summary per bucket: each exact in its counts, its quantiles the sketch's */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t b0 = from + i * step_ns, b1 = b0 + step_ns < to ? b0 + step_ns : to;
		Tracevault__V1__SummaryResponse *resp = NULL;
		Tracevault__V1__SummaryGroup empty = TRACEVAULT__V1__SUMMARY_GROUP__INIT;
		json_t *g;

		if (!fb.none) {
			ret = summary_call(h, b0, b1, &fb, TRACEVAULT__V1__GROUP_BY__GROUP_BY_NONE,
					   1, &resp, err, sizeof(err));
			if (ret) {
				json_decref(j);
				return tv_http_rpc_error(h, ret, err);
			}
		}
		empty.key = "";
		g = group_json(resp && resp->n_groups ? resp->groups[0] : &empty);
		if (g) {
			json_object_del(g, "key");
			json_object_set_new(g, "start", json_integer((json_int_t)(b0 / NS_PER_US)));
		}
		json_array_append_new(buckets, g);
		if (resp)
			tracevault__v1__summary_response__free_unpacked(resp, NULL);
	}
	return tv_http_json(h, 200, j);
}

/* ---- /api/tracevault/exchanges ---- */

struct page {
	struct tv_http_api *a;
	json_t *rows;
	uint64_t skip; /* records of earlier pages still to pass */
};

static json_t *exchange_json(struct tv_http_api *a, const Tracevault__V1__TraceRecord *r)
{
	json_t *j = json_object();
	const char *service = tv_http_service_of_comm(a, r->comm);

	if (!j)
		return NULL;
	json_object_set_new(j, "ts_us", json_integer((json_int_t)(r->ts_ns / NS_PER_US)));
	json_object_set_new(j, "ts_ns", json_integer((json_int_t)r->ts_ns));
	json_object_set_new(j, "latency_us", json_real((double)r->latency_ns / 1e3));
	json_object_set_new(j, "service", tv_http_jstr(service, strlen(service)));
	json_object_set_new(j, "comm", tv_http_jstr(r->comm, strlen(r->comm)));
	json_object_set_new(j, "pid", json_integer(r->pid));
	json_object_set_new(j, "method", tv_http_jstr(r->method, strlen(r->method)));
	json_object_set_new(j, "path", tv_http_jstr(r->path, strlen(r->path)));
	json_object_set_new(j, "host", tv_http_jstr(r->host, strlen(r->host)));
	json_object_set_new(j, "status", json_integer(r->status));
	json_object_set_new(j, "role", tv_http_jstr(r->role, strlen(r->role)));
	json_object_set_new(j, "local", tv_http_jstr(r->local, strlen(r->local)));
	json_object_set_new(j, "remote", tv_http_jstr(r->remote, strlen(r->remote)));
	json_object_set_new(j, "trace_id", tv_http_jstr(r->trace_id, strlen(r->trace_id)));
	json_object_set_new(j, "span_id", tv_http_jstr(r->span_id, strlen(r->span_id)));
	json_object_set_new(j, "flags", json_integer(r->flags));
	json_object_set_new(j, "req_body_bytes", json_integer((json_int_t)r->req_body_bytes));
	json_object_set_new(j, "resp_body_bytes", json_integer((json_int_t)r->resp_body_bytes));
	return j;
}

static int page_add(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct page *p = arg;

	if (p->skip) {
		p->skip--;
		return 0;
	}
	return json_array_append_new(p->rows, exchange_json(p->a, r)) ? -ENOMEM : 0;
}

static int route_exchanges(struct hreq *h)
{
	uint64_t from, to, limit = 50, offset = 0;
	struct fbuf fb;
	char err[512];
	struct page p = { h->a, NULL, 0 };
	json_t *j;
	int ret;

	if ((ret = tv_http_window(h, TV_HTTP_DEFAULT_LOOKBACK_NS, &from, &to, err, sizeof(err))) ||
	    (ret = tv_http_param_u64(h, "limit", &limit, NULL, err, sizeof(err))) ||
	    (ret = tv_http_param_u64(h, "offset", &offset, NULL, err, sizeof(err))) ||
	    (ret = page_filter(h, from, to, &fb, err, sizeof(err))))
		return tv_http_rpc_error(h, ret, err); /* -EINVAL: 400 naming the parameter */
	if (limit < 1 || limit > MAX_PAGE)
		return tv_http_error(h, 400, "invalid limit: %llu (1 to %u)",
				     (unsigned long long)limit, MAX_PAGE);
	if (offset + limit > h->a->o.max_spans)
		return tv_http_error(h, 400, "offset + limit (%llu) is above --http-max-spans "
				     "(%llu)", (unsigned long long)(offset + limit),
				     (unsigned long long)h->a->o.max_spans);
	p.rows = json_array();
	p.skip = offset;
	if (!p.rows)
		return -ENOMEM;
	if (!fb.none) {
		ret = tv_http_scan(h->a, from, to, &fb.f, true, offset + limit, page_add, &p, NULL,
				   err, sizeof(err));
		if (ret) {
			json_decref(p.rows);
			return ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
		}
	}
	j = json_pack("{s:o,s:I,s:I}", "data", p.rows, "limit", (json_int_t)limit, "offset",
		      (json_int_t)offset);
	return tv_http_json(h, 200, j);
}

/* ---- dispatch ---- */

int tv_http_api_handle(void *arg, const char *url, const struct tv_http_req *rq,
		       struct tv_http_reply *out)
{
	/* Jaeger's repeatable arguments: traceID (a lookup of several traces), tag and tags
	 * (cmd/query/app/query_parser.go reads each as a list) */
	static const char *const MULTI_ARGS[] = { "traceID", "tag", "tags", NULL };
	struct hreq h = { arg, rq, out, NULL, NULL };
	char err[160];
	int ret;

	if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
		*out = (struct tv_http_reply){ .status = 200, .body = (char *)tv_web_index_html,
					       .len = tv_web_index_html_len, .body_static = 1,
					       .content_type = "text/html; charset=utf-8" };
		return 0;
	}
	if (!strcmp(url, "/favicon.ico")) {
		/* browsers ask for it on every page load: no icon, and no 404 in their console
		 * (the page itself names an empty one) */
		*out = (struct tv_http_reply){ .status = 204, .body = (char *)"", .len = 0,
					       .body_static = 1, .content_type = "image/x-icon" };
		return 0;
	}
	if (strncmp(url, "/api/", 5))
		return -ENOENT;
	/* every route reads each argument once, except MULTI_ARGS */
	if ((ret = tv_http_args_check(rq, MULTI_ARGS, err, sizeof(err))))
		return ret == -EINVAL ? tv_http_error(&h, 400, "%s", err) : ret;
	if (!strcmp(url, "/api/tracevault/summary"))
		ret = route_summary(&h);
	else if (!strcmp(url, "/api/tracevault/rates"))
		ret = route_rates(&h);
	else if (!strcmp(url, "/api/tracevault/exchanges"))
		ret = route_exchanges(&h);
	else
		ret = tv_jaeger_route(&h, url);
	json_decref(h.kept); /* the answer is rendered: nothing borrows them any more */
	return ret;
}
