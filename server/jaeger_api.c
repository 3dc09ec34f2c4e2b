/* The Jaeger query HTTP JSON API (jaegertracing/jaeger cmd/query/app/http_handler.go, the
 * model/json shapes) over the archive, as Jaeger UI and Grafana's Jaeger data source call it:
 *   GET /api/services                          {"data": [service...]}
 *   GET /api/services/{service}/operations     {"data": [operation...]}
 *   GET /api/operations?service=&spanKind=     {"data": [{"name","spanKind"}...]}
 *   GET /api/traces?service=&operation=&tags=&start=&end=&lookback=&minDuration=
 *                   &maxDuration=&limit=       {"data": [trace...]}
 *   GET /api/traces/{traceID}[?start=&end=]    {"data": [trace]} or 404
 * every answer in the envelope {"data","total","limit","offset","errors"}. Spans are the
 * span records received over OTLP as they were sent, and the captured exchanges through the
 * one exchange -> span mapping (proto/exchange_span.h): service = --service-name's name for
 * the comm, or the comm; operation = method and path (without the query); span.kind from
 * the role; the HTTP attributes as tags. README "Jaeger query API" has the table. */
#define _GNU_SOURCE /* asprintf */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/exchange_span.h"
#include "proto/wire.h"
#include "server/http_json.h"

#define NS_PER_US 1000ull
#define DEFAULT_LIMIT 20
/* trace ids one Query asks for (QueryFilter's repeated-field bound) */
#define IDS_PER_QUERY 64

/* A span as the search and the answer need it. */
struct jspan {
	char trace_id[33], span_id[17], parent[17];
	char *service, *op;
	uint64_t start_ns, dur_ns;
	const char *kind; /* "server", "client", ... or "" */
	uint32_t pid;
	bool exchange;
	json_t *tags;  /* Jaeger KeyValues */
	json_t *ptags; /* the process's */
};

struct spans {
	struct jspan *v;
	size_t n, cap;
};

static void spans_free(struct spans *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].service);
		free(s->v[i].op);
		json_decref(s->v[i].tags);
		json_decref(s->v[i].ptags);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* The stored names a service name of the lists stands for (svc_resolve): span records'
 * service.name values and exchanges' comms, at most SVC_ALIASES of each. */
#define SVC_ALIASES TV_FILTER_MAX_ENTRIES /* what one QueryFilter field takes */
struct svc_names {
	char *services[SVC_ALIASES]; /* malloc'd */
	size_t n_services;
	const char *comms[SVC_ALIASES]; /* into the API's map, the request, or kept by it */
	size_t n_comms;
	bool services_cut; /* more stored service names than SVC_ALIASES were shown as it */
};

static void svc_names_free(struct svc_names *sn)
{
	for (size_t i = 0; i < sn->n_services; i++)
		free(sn->services[i]);
	memset(sn, 0, sizeof(*sn));
}

static const char *KIND_NAMES[] = { "", "internal", "server", "client", "producer", "consumer" };

static const char *kind_name(uint32_t k)
{
	return k < sizeof(KIND_NAMES) / sizeof(KIND_NAMES[0]) ? KIND_NAMES[k] : "";
}

static void hex(char *out, const uint8_t *id, size_t n)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * n] = '\0';
}

/* A KeyValue {key, type, value} (value taken; key from a record: made UTF-8). */
static json_t *kv(const char *key, const char *type, json_t *value)
{
	json_t *k = tv_http_jstr(key, strlen(key));

	if (!k) {
		json_decref(value);
		return NULL;
	}
	return json_pack("{s:o,s:s,s:o}", "key", k, "type", type, "value", value);
}

static int add_tag(json_t *tags, const char *key, const char *type, json_t *value)
{
	json_t *t = value ? kv(key, type, value) : NULL;

	return t ? json_array_append_new(tags, t) : -ENOMEM;
}

/* A record as a jspan into s (appended). */
static int add_span(struct tv_http_api *a, struct spans *s, const Tracevault__V1__TraceRecord *r)
{
	struct jspan *j;
	int ret = 0;

	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		struct jspan *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	j = &s->v[s->n];
	memset(j, 0, sizeof(*j));
	j->tags = json_array();
	j->ptags = json_array();
	j->start_ns = r->ts_ns;
	j->dur_ns = r->end_ns > r->ts_ns ? r->end_ns - r->ts_ns : 0;
	if (!j->tags || !j->ptags)
		goto oom;
	s->n++; /* from here spans_free releases it */
	if (r->span) {
		const Tracevault__V1__Span *sp = r->span;

		snprintf(j->trace_id, sizeof(j->trace_id), "%s", r->trace_id);
		snprintf(j->span_id, sizeof(j->span_id), "%s", r->span_id);
		snprintf(j->parent, sizeof(j->parent), "%s", sp->parent_span_id);
		/* names are compared and answered as they are shown: valid UTF-8 */
		j->service = tv_http_utf8_dup(sp->service[0] ? sp->service :
					      TV_HTTP_UNKNOWN_SERVICE);
		j->op = tv_http_utf8_dup(sp->name);
		j->kind = kind_name(sp->kind);
		for (size_t i = 0; i < sp->n_attributes && !ret; i++) {
			const Tracevault__V1__SpanAttribute *at = sp->attributes[i];

			switch (at->value_case) {
			case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE:
				ret = add_tag(j->tags, at->key, "string",
					      tv_http_jstr(at->string_value,
							   strlen(at->string_value)));
				break;
			case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE:
				ret = add_tag(j->tags, at->key, "bool",
					      json_boolean(at->bool_value));
				break;
			case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE:
				ret = add_tag(j->tags, at->key, "int64",
					      json_integer(at->int_value));
				break;
			case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE:
				ret = add_tag(j->tags, at->key, "float64",
					      json_real(at->double_value));
				break;
			default:
				break;
			}
		}
		if (!ret && sp->status_code == 2)
			ret = add_tag(j->tags, "error", "bool", json_true());
		if (!ret && sp->status_code)
			ret = add_tag(j->tags, "otel.status_code", "string",
				      json_string(sp->status_code == 2 ? "ERROR" : "OK"));
		if (!ret && sp->status_message[0])
			ret = add_tag(j->tags, "otel.status_description", "string",
				      tv_http_jstr(sp->status_message,
						   strlen(sp->status_message)));
		if (!ret && sp->scope_name[0])
			ret = add_tag(j->tags, "otel.scope.name", "string",
				      tv_http_jstr(sp->scope_name, strlen(sp->scope_name)));
		if (!ret && sp->scope_version[0])
			ret = add_tag(j->tags, "otel.scope.version", "string",
				      tv_http_jstr(sp->scope_version,
						   strlen(sp->scope_version)));
	} else {
		struct tv_xspan x;
		const char *path = r->path ? r->path : "";
		size_t plen = tv_xspan_path_len(path), mlen = strlen(r->method);

		ret = tv_xspan_of(r, &x);
		if (ret)
			return ret;
		j->dur_ns = tv_xspan_end_ns(r->ts_ns, r->end_ns, r->latency_ns) - r->ts_ns;
		hex(j->trace_id, x.ids.trace_id, sizeof(x.ids.trace_id));
		hex(j->span_id, x.ids.span_id, sizeof(x.ids.span_id));
		if (x.ids.has_parent)
			hex(j->parent, x.ids.parent_span_id, sizeof(x.ids.parent_span_id));
		j->exchange = true;
		j->pid = r->pid;
		j->service = tv_http_utf8_dup(tv_http_service_of_comm(a, r->comm));
		/* operation = method + path without its query ("GET /api/users") */
		j->op = malloc(mlen + plen + 2);
		if (j->op) {
			snprintf(j->op, mlen + plen + 2, "%s%s%.*s", r->method,
				 mlen && plen ? " " : "", (int)plen, path);
			tv_http_utf8_fix(j->op, strlen(j->op));
		}
		j->kind = kind_name(x.kind);
		for (size_t i = 0; i < x.n_attrs && !ret; i++) {
			const struct tv_xattr *at = &x.attrs[i];

			ret = at->type == TV_XATTR_STRING ?
				add_tag(j->tags, at->key, "string", tv_http_jstr(at->s, at->n)) :
			      at->type == TV_XATTR_INT ?
				add_tag(j->tags, at->key, "int64", json_integer((json_int_t)at->i)) :
				add_tag(j->tags, at->key, "bool", json_boolean(at->b));
		}
		if (!ret && x.error)
			ret = add_tag(j->tags, "error", "bool", json_true());
		if (!ret && x.error)
			ret = add_tag(j->tags, "otel.status_code", "string", json_string("ERROR"));
		if (!ret)
			ret = add_tag(j->ptags, "process.pid", "int64", json_integer(r->pid));
		if (!ret && r->comm[0])
			ret = add_tag(j->ptags, "process.executable.name", "string",
				      tv_http_jstr(r->comm, strlen(r->comm)));
		tv_xspan_free(&x);
	}
	if (!ret && j->kind[0])
		ret = add_tag(j->tags, "span.kind", "string", json_string(j->kind));
	if (!ret && (!j->service || !j->op))
		ret = -ENOMEM;
	return ret;
oom:
	json_decref(j->tags);
	json_decref(j->ptags);
	return -ENOMEM;
}

/* ---- scans ---- */

struct collect {
	struct tv_http_api *a;
	struct spans *s;
};

static int collect_cb(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct collect *c = arg;

	return add_span(c->a, c->s, r);
}

/* The spans of the service sn names in [from, to), newest first: span records whose
 * span.service is one of its services, then exchanges of its comms, each at most
 * --http-max-spans. latency: a Range on the span's duration, or NULL. */
static int service_spans(struct hreq *h, struct svc_names *sn, uint64_t from, uint64_t to,
			 Tracevault__V1__Range *latency, struct spans *out, char *err,
			 size_t errlen)
{
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__StringMatch m[SVC_ALIASES], *mp[SVC_ALIASES];
	struct collect c = { h->a, out };
	int ret;

	f.latency_ns = latency;
	f.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN;
	f.n_services = sn->n_services;
	f.services = sn->services;
	ret = tv_http_scan(h->a, from, to, &f, true, 0, collect_cb, &c, NULL, err, errlen);
	if (ret)
		return ret;
	f.n_services = 0;
	f.services = NULL;
	f.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE;
	if (!sn->n_comms)
		return 0;
	f.n_comms = sn->n_comms;
	f.comms = tv_http_matches(m, mp, sn->comms, sn->n_comms,
				  TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT);
	return tv_http_scan(h->a, from, to, &f, true, 0, collect_cb, &c, NULL, err, errlen);
}

/* The envelope of an answer: data (taken), total, and errors (taken; NULL: null). */
static int envelope(struct hreq *h, json_t *data, json_t *errors)
{
	size_t n = json_is_array(data) ? json_array_size(data) : 0;

	return tv_http_json(h, 200, json_pack("{s:o,s:I,s:i,s:i,s:o}", "data", data, "total",
					      (json_int_t)n, "limit", 0, "offset", 0, "errors",
					      errors ? errors : json_null()));
}

/* ---- service and operation lists: exact over their window, bounded, cuts reported ---- */

/* Distinct names (services, or "operation\x1fspanKind" keys) as a jansson object used as a
 * hash set, at most TV_HTTP_MAX_NAMES; a name past that bound sets cut. */
struct nameset {
	json_t *set;
	bool cut;
	bool ops;            /* keys are span names and kinds, else services */
	const char *kind;    /* ops: only spans of this kind ("server", ...), or NULL */
	uint64_t seen;       /* records read by the scan */
};

/* key (from records) is made valid UTF-8 first: two names that differ only in bytes that
 * are not are one name in the answer, as a search by that name sees them (add_span). */
static int nameset_add(struct nameset *ns, const char *raw)
{
	char *key = tv_http_utf8_dup(raw);
	int ret = 0;

	if (!key)
		return -ENOMEM;
	if (json_object_get(ns->set, key))
		goto out;
	if (json_object_size(ns->set) >= TV_HTTP_MAX_NAMES) {
		ns->cut = true;
		goto out;
	}
	ret = json_object_set_new_nocheck(ns->set, key, json_null()) ? -ENOMEM : 0;
out:
	free(key);
	return ret;
}

/* A span record's service, or its "name\x1fkind" key, into the set (exchanges skipped). */
static int nameset_cb(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct nameset *ns = arg;
	const Tracevault__V1__Span *sp = r->span;
	const char *kind;
	char *k;
	int ret;

	ns->seen++;
	if (!sp)
		return 0;
	if (!ns->ops)
		return nameset_add(ns, sp->service[0] ? sp->service : TV_HTTP_UNKNOWN_SERVICE);
	kind = kind_name(sp->kind);
	if (ns->kind && ns->kind[0] && strcmp(ns->kind, kind))
		return 0;
	if (asprintf(&k, "%s\x1f%s", sp->name, kind) < 0)
		return -ENOMEM;
	ret = nameset_add(ns, k);
	free(k);
	return ret;
}

/* Add a warning {"code":206,"msg":...} to *errors (a JSON array made on first use). */
static int warn(json_t **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int warn(json_t **errors, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!*errors && !(*errors = json_array()))
		return -ENOMEM;
	return json_array_append_new(*errors, json_pack("{s:i,s:s}", "code", 206, "msg", msg)) ?
		       -ENOMEM : 0;
}

/* The span records of [from, to) (of services[0..n), or all when n is 0) into ns: one
 * Query reading at most TV_HTTP_NAMES_SCAN_FACTOR x --http-max-spans span records, newest
 * first; a cut is reported in *errors. */
static int span_names(struct hreq *h, char **services, size_t n, uint64_t from, uint64_t to,
		      struct nameset *ns, json_t **errors, char *err, size_t errlen)
{
	Tracevault__V1__QueryRequest req = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	uint64_t skipped = 0, bound = h->a->o.max_spans * TV_HTTP_NAMES_SCAN_FACTOR;
	int ret;

	f.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN;
	f.n_services = n;
	f.services = services;
	req.from_ns = from;
	req.to_ns = to;
	req.limit = bound;
	req.filter = &f;
	req.reverse = true;
	ns->seen = 0;
	ret = tv_local_query(h->a->rpc, &req, h->a->o.timeout_ms, nameset_cb, ns, &skipped, err,
			     errlen);
	if (ret)
		return ret;
	if (ns->seen >= bound)
		ret = warn(errors, "only the newest %llu span records of the window were read "
			   "(%u x --http-max-spans): names seen only in older spans are missing; "
			   "narrow the window (lookback, start, end)", (unsigned long long)bound,
			   TV_HTTP_NAMES_SCAN_FACTOR);
	if (!ret && skipped)
		ret = warn(errors, "%llu damaged blocks were skipped: their names are missing",
			   (unsigned long long)skipped);
	return ret;
}

/* One Summary of the exchanges of [from, to) passing f grouped by, at most
 * TV_SUMMARY_MAX_GROUPS groups; a cut is reported in *errors. */
static int xsummary(struct hreq *h, uint64_t from, uint64_t to, Tracevault__V1__QueryFilter *f,
		    Tracevault__V1__GroupBy by, Tracevault__V1__SummaryResponse **resp,
		    json_t **errors, char *err, size_t errlen)
{
	Tracevault__V1__SummaryRequest req = TRACEVAULT__V1__SUMMARY_REQUEST__INIT;
	double q[1] = { 0.5 };
	int ret;

	f->kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_EXCHANGE;
	req.from_ns = from;
	req.to_ns = to;
	req.filter = f;
	req.by = by;
	req.max_groups = TV_SUMMARY_MAX_GROUPS;
	req.n_quantiles = 1; /* the fewest the call takes: only the keys are used */
	req.quantiles = q;
	ret = tv_local_summary(h->a->rpc, &req, h->a->o.timeout_ms, resp, err, errlen);
	if (!ret && (*resp)->groups_total > (*resp)->n_groups)
		ret = warn(errors, "%llu of %llu exchange groups were cut (Summary's bound of "
			   "%u groups or its message size)",
			   (unsigned long long)((*resp)->groups_total - (*resp)->n_groups),
			   (unsigned long long)(*resp)->groups_total, TV_SUMMARY_MAX_GROUPS);
	if (ret && *resp) {
		tracevault__v1__summary_response__free_unpacked(*resp, NULL);
		*resp = NULL;
	}
	return ret;
}

/* ---- a listed service name back to the stored names ---- */

/* 1 when the stored name raw is shown as svc (tv_http_utf8_dup) without being svc itself, 0
 * when not, -ENOMEM. */
static int shown_as(const char *raw, const char *svc)
{
	char *shown;
	int ret;

	if (!strcmp(raw, svc) || strlen(raw) != strlen(svc))
		return 0;
	if (!(shown = tv_http_utf8_dup(raw)))
		return -ENOMEM;
	ret = !strcmp(shown, svc);
	free(shown);
	return ret;
}

/* Add a malloc'd copy of name to v[0..*n) (at most SVC_ALIASES; *cut set past that), unless
 * there. */
static int add_alias(char **v, size_t *n, const char *name, bool *cut)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(v[i], name))
			return 0;
	if (*n == SVC_ALIASES) {
		*cut = true;
		return 0;
	}
	if (!(v[*n] = strdup(name)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

struct alias_scan {
	const char *svc;
	struct svc_names *sn;
};

static int alias_cb(const Tracevault__V1__TraceRecord *r, void *arg)
{
	struct alias_scan *as = arg;
	int ret;

	if (!r->span)
		return 0;
	ret = shown_as(r->span->service, as->svc);
	return ret > 0 ? add_alias(as->sn->services, &as->sn->n_services, r->span->service,
				   &as->sn->services_cut) : ret;
}

/* The stored names behind the service name svc in [from, to) into sn (freed with
 * svc_names_free, also on error). The lists show a byte that is not UTF-8 as '?', so a
 * name with a '?' also stands for the stored names shown as it: found among the services of
 * the window's span records (one Query of at most TV_HTTP_NAMES_SCAN_FACTOR x
 * --http-max-spans of them, as the list reads) and the comms of its exchanges (one Summary
 * by comm; its cut is reported in *errors), at most SVC_ALIASES of each. Without a '?' it
 * is svc and the comms --service-name maps to it, no call made. */
static int svc_resolve(struct hreq *h, const char *svc, uint64_t from, uint64_t to,
		       struct svc_names *sn, json_t **errors, char *err, size_t errlen)
{
	Tracevault__V1__QueryRequest req = TRACEVAULT__V1__QUERY_REQUEST__INIT;
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	struct alias_scan as = { svc, sn };
	uint64_t skipped = 0;
	int ret;

	memset(sn, 0, sizeof(*sn));
	if ((ret = add_alias(sn->services, &sn->n_services, svc, &sn->services_cut)))
		return ret;
	sn->n_comms = tv_http_comms_of_service(h->a, svc, sn->comms, SVC_ALIASES);
	if (!strchr(svc, '?'))
		return 0;
	f.kind = TRACEVAULT__V1__RECORD_KIND__RECORD_KIND_SPAN;
	req.from_ns = from;
	req.to_ns = to;
	req.limit = h->a->o.max_spans * TV_HTTP_NAMES_SCAN_FACTOR;
	req.filter = &f;
	req.reverse = true;
	ret = tv_local_query(h->a->rpc, &req, h->a->o.timeout_ms, alias_cb, &as, &skipped, err,
			     errlen);
	if (ret)
		return ret;
	if (sn->services_cut &&
	    (ret = warn(errors, "more stored service names are shown as '%s' than one filter "
			"takes (%d with the name itself): some are not selected", svc,
			SVC_ALIASES)))
		return ret;
	return tv_http_comms_shown_as(h, svc, from, to, sn->comms, &sn->n_comms, SVC_ALIASES,
				      errors, err, errlen);
}

int tv_http_comms_shown_as(struct hreq *h, const char *svc, uint64_t from, uint64_t to,
			   const char **comms, size_t *n, size_t max, json_t **errors, char *err,
			   size_t errlen)
{
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__SummaryResponse *resp = NULL;
	json_t *dropped = NULL; /* the warnings of a caller without errors */
	bool cut = false;
	int ret;

	if (!errors)
		errors = &dropped;
	ret = xsummary(h, from, to, &f, TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM, &resp, errors,
		       err, errlen);
	for (size_t i = 0; !ret && i < resp->n_groups; i++) {
		/* a Summary's keys are distinct: no comm is added twice */
		const char *comm = resp->groups[i]->key, *copy;

		ret = shown_as(tv_http_service_of_comm(h->a, comm), svc);
		if (ret <= 0)
			continue;
		ret = 0;
		if (*n == max) {
			cut = true;
			continue;
		}
		if (!(copy = tv_http_keep(h, comm))) {
			ret = -ENOMEM;
			break;
		}
		comms[(*n)++] = copy;
	}
	if (resp)
		tracevault__v1__summary_response__free_unpacked(resp, NULL);
	if (!ret && cut)
		ret = warn(errors, "more comms are shown as service '%s' than one filter takes "
			   "(%zu with the name itself and --service-name's): some are not selected",
			   svc, max);
	json_decref(dropped);
	return ret;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* The set's keys, sorted, into a new array of strings (ops: "name\x1fkind" keys, as plain
 * names or {"name","spanKind"} objects when with_kind). */
static json_t *sorted_names(struct nameset *ns, bool with_kind)
{
	size_t n = json_object_size(ns->set), i = 0;
	const char **keys = malloc((n + 1) * sizeof(*keys)), *k;
	json_t *v, *arr = json_array();

	if (!keys || !arr) {
		free(keys);
		json_decref(arr);
		return NULL;
	}
	json_object_foreach(ns->set, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(*keys), cmp_str);
	for (i = 0; i < n; i++) {
		const char *sep = ns->ops ? strchr(keys[i], '\x1f') : NULL;
		size_t len = sep ? (size_t)(sep - keys[i]) : strlen(keys[i]);

		/* without kinds, "op\x1fserver" and "op\x1fclient" are one name */
		if (ns->ops && !with_kind && i && !strncmp(keys[i - 1], keys[i], len + 1))
			continue;
		if (ns->ops && with_kind)
			json_array_append_new(arr, json_pack("{s:o,s:s}", "name",
							     tv_http_jstr(keys[i], len),
							     "spanKind", sep + 1));
		else
			json_array_append_new(arr, tv_http_jstr(keys[i], len));
	}
	free(keys);
	return arr;
}

/* /api/services: the services of the window's span records and exchanges, every one (a
 * Summary of the exchanges by comm is exact; the span records are read by one bounded
 * Query). kind=exchange: the exchanges' services only (the page's filters select
 * exchanges); kind=span: the span records' only. */
static int route_services(struct hreq *h)
{
	enum { ALL, EXCHANGES, SPANS };
	static const struct tv_http_word KINDS[] = {
		{ "", ALL }, { "exchange", EXCHANGES }, { "span", SPANS },
	};
	struct nameset ns = { .set = json_object() };
	Tracevault__V1__SummaryResponse *resp = NULL;
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	json_t *errors = NULL, *data;
	uint64_t from, to;
	char err[512];
	int kind = ALL, ret;

	if (!ns.set)
		return -ENOMEM;
	if ((ret = tv_http_param_word(h, "kind", KINDS, sizeof(KINDS) / sizeof(KINDS[0]),
				      "exchange or span", &kind, err, sizeof(err))) ||
	    (ret = tv_http_window(h, TV_HTTP_SERVICES_LOOKBACK_NS, &from, &to, err,
				  sizeof(err)))) {
		json_decref(ns.set);
		return tv_http_error(h, 400, "%s", err);
	}
	if (kind != EXCHANGES) {
		ret = span_names(h, NULL, 0, from, to, &ns, &errors, err, sizeof(err));
		if (ret)
			goto fail;
	}
	if (kind != SPANS) {
		ret = xsummary(h, from, to, &f, TRACEVAULT__V1__GROUP_BY__GROUP_BY_COMM, &resp,
			       &errors, err, sizeof(err));
		if (ret)
			goto fail;
		for (size_t i = 0; i < resp->n_groups && !ret; i++)
			ret = nameset_add(&ns, tv_http_service_of_comm(h->a, resp->groups[i]->key));
		tracevault__v1__summary_response__free_unpacked(resp, NULL);
		if (ret)
			goto fail;
	}
	if (ns.cut && (ret = warn(&errors, "more than %u services: the list is cut",
				  TV_HTTP_MAX_NAMES)))
		goto fail;
	data = sorted_names(&ns, false);
	json_decref(ns.set);
	return data ? envelope(h, data, errors) : (json_decref(errors), -ENOMEM);
fail:
	json_decref(ns.set);
	json_decref(errors);
	return ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
}

/* Add "METHOD path\x1fkind" (as the exchange -> span mapping names the operation) to ns,
 * unless ns asks for another kind. */
static int add_op(struct nameset *ns, const char *method, const char *path, const char *kind)
{
	size_t ml = strlen(method), pl = strlen(path);
	char *key;
	int ret;

	if (ns->kind && ns->kind[0] && strcmp(ns->kind, kind))
		return 0;
	if (asprintf(&key, "%s%s%s\x1f%s", method, ml && pl ? " " : "", path, kind) < 0)
		return -ENOMEM;
	ret = nameset_add(ns, key);
	free(key);
	return ret;
}

/* The operations of the exchanges of comms[0..n) in [from, to) into ns: a Summary by method,
 * then for each method one by path (with kinds: one per role, server and client, then one
 * of any role whose count past those two is the exchanges without a role, kind ""). */
static int exchange_ops(struct hreq *h, const char **comms, size_t n, uint64_t from,
			uint64_t to, struct nameset *ns, bool with_kind, json_t **errors,
			char *err, size_t errlen)
{
	static const struct { Tracevault__V1__Role role; const char *kind; } ROLES[] = {
		{ TRACEVAULT__V1__ROLE__ROLE_SERVER, "server" },
		{ TRACEVAULT__V1__ROLE__ROLE_CLIENT, "client" },
		{ TRACEVAULT__V1__ROLE__ROLE_ANY, "" },
	};
	Tracevault__V1__StringMatch m[64], *mp[64];
	Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;
	Tracevault__V1__SummaryResponse *methods = NULL;
	int ret;

	f.n_comms = n < 64 ? n : 64;
	f.comms = tv_http_matches(m, mp, comms, f.n_comms, TRACEVAULT__V1__MATCH_KIND__MATCH_EXACT);
	ret = xsummary(h, from, to, &f, TRACEVAULT__V1__GROUP_BY__GROUP_BY_METHOD, &methods,
		       errors, err, errlen);
	for (size_t i = 0; !ret && i < methods->n_groups; i++) {
		char *method[1] = { methods->groups[i]->key };
		json_t *counted = json_object(); /* path -> exchanges with a role */

		if (!counted) {
			ret = -ENOMEM;
			break;
		}
		f.n_methods = 1;
		f.methods = method;
		for (size_t r = with_kind ? 0 : 2; !ret && r < 3; r++) {
			Tracevault__V1__SummaryResponse *paths = NULL;

			f.role = ROLES[r].role;
			ret = xsummary(h, from, to, &f, TRACEVAULT__V1__GROUP_BY__GROUP_BY_PATH,
				       &paths, errors, err, errlen);
			for (size_t k = 0; !ret && k < paths->n_groups; k++) {
				const Tracevault__V1__SummaryGroup *g = paths->groups[k];
				json_t *c = json_object_get(counted, g->key);
				uint64_t with_role = c ? (uint64_t)json_integer_value(c) : 0;

				if (r < 2)
					ret = json_object_set_new_nocheck(counted, g->key,
						json_integer((json_int_t)(with_role + g->count)));
				else if (with_kind && g->count <= with_role)
					continue; /* every one has a role: no kind "" */
				if (!ret)
					ret = add_op(ns, method[0], g->key, ROLES[r].kind) ;
			}
			if (paths)
				tracevault__v1__summary_response__free_unpacked(paths, NULL);
		}
		json_decref(counted);
	}
	if (methods)
		tracevault__v1__summary_response__free_unpacked(methods, NULL);
	return ret ? (ret < 0 ? ret : -ENOMEM) : 0;
}

/* /api/services/{svc}/operations (plain names) or /api/operations (name and spanKind): the
 * operations of the service's span records (one bounded Query) and of its exchanges
 * (Summaries: exact). */
static int route_operations(struct hreq *h, const char *svc, bool with_kind)
{
	struct nameset ns = { .ops = true };
	struct svc_names sn;
	json_t *errors = NULL, *data;
	uint64_t from, to;
	char err[512];
	int ret;

	if (!svc || !svc[0])
		return tv_http_error(h, 400, "service is required");
	if (!tv_http_utf8_valid(svc))
		return tv_http_error(h, 400, "invalid service: not UTF-8 (every service name "
				     "this API lists is)");
	if ((ret = tv_http_window(h, TV_HTTP_SERVICES_LOOKBACK_NS, &from, &to, err, sizeof(err))))
		return tv_http_error(h, 400, "%s", err);
	if (with_kind) {
		/* Jaeger's span kinds (model.SpanKind; "" is any): another is a mistake, not a
		 * kind without operations */
		static const struct tv_http_word KINDS[] = {
			{ "", 0 }, { "internal", 1 }, { "server", 2 }, { "client", 3 },
			{ "producer", 4 }, { "consumer", 5 },
		};
		int k = 0;

		if ((ret = tv_http_param_word(h, "spanKind", KINDS,
					      sizeof(KINDS) / sizeof(KINDS[0]),
					      "server, client, producer, consumer, internal or "
					      "empty", &k, err, sizeof(err))))
			return tv_http_error(h, 400, "%s", err);
		ns.kind = kind_name((uint32_t)k);
	}
	ns.set = json_object();
	if (!ns.set)
		return -ENOMEM;
	ret = svc_resolve(h, svc, from, to, &sn, &errors, err, sizeof(err));
	if (!ret)
		ret = span_names(h, sn.services, sn.n_services, from, to, &ns, &errors, err,
				 sizeof(err));
	if (!ret && sn.n_comms)
		ret = exchange_ops(h, sn.comms, sn.n_comms, from, to, &ns, with_kind, &errors,
				   err, sizeof(err));
	svc_names_free(&sn);
	if (!ret && ns.cut)
		ret = warn(&errors, "more than %u operations: the list is cut",
			   TV_HTTP_MAX_NAMES);
	if (ret) {
		json_decref(ns.set);
		json_decref(errors);
		return ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
	}
	data = sorted_names(&ns, with_kind);
	json_decref(ns.set);
	return data ? envelope(h, data, errors) : (json_decref(errors), -ENOMEM);
}

/* ---- traces ---- */

static int cmp_start(const void *x, const void *y)
{
	const struct jspan *a = x, *b = y;

	return a->start_ns < b->start_ns ? -1 : a->start_ns > b->start_ns;
}

/* The trace of the spans s->v[idx[0..n)] in Jaeger's shape. cut_at: 0, or the
 * --http-max-spans bound the read of these spans stopped at (the trace may lack spans past
 * it: its "warnings" say so, never a silent cut). */
static json_t *trace_json(struct spans *s, const size_t *idx, size_t n, uint64_t cut_at)
{
	json_t *t = json_object(), *spans = json_array(), *procs = json_object();
	char key[32];
	size_t np = 0;

	if (!t || !spans || !procs)
		goto oom;
	/* every piece is checked: a span must never name a process the answer lacks */
	for (size_t k = 0; k < n; k++) {
		struct jspan *j = &s->v[idx[k]];
		const char *pid = NULL, *pk;
		json_t *p, *sp, *refs = json_array();

		if (!refs)
			goto oom;
		/* one process per service (and pid, for exchanges) */
		json_object_foreach(procs, pk, p) {
			if (!strcmp(json_string_value(json_object_get(p, "serviceName")),
				    j->service) && json_equal(json_object_get(p, "tags"), j->ptags)) {
				pid = pk;
				break;
			}
		}
		if (!pid) {
			snprintf(key, sizeof(key), "p%zu", ++np);
			if (json_object_set_new(procs, key,
						json_pack("{s:s,s:O}", "serviceName", j->service,
							  "tags", j->ptags))) {
				json_decref(refs);
				goto oom;
			}
			pid = key;
		}
		if (j->parent[0] &&
		    json_array_append_new(refs, json_pack("{s:s,s:s,s:s}", "refType", "CHILD_OF",
							  "traceID", j->trace_id, "spanID",
							  j->parent))) {
			json_decref(refs);
			goto oom;
		}
		sp = json_pack("{s:s,s:s,s:i,s:s,s:o,s:I,s:I,s:O,s:[],s:s,s:n}",
			       "traceID", j->trace_id, "spanID", j->span_id, "flags", 1,
			       "operationName", j->op, "references", refs,
			       "startTime", (json_int_t)(j->start_ns / NS_PER_US),
			       "duration", (json_int_t)(j->dur_ns / NS_PER_US), "tags", j->tags,
			       "logs", "processID", pid, "warnings");
		if (!sp || json_array_append_new(spans, sp))
			goto oom;
	}
	if (json_object_set_new(t, "traceID", json_string(n ? s->v[idx[0]].trace_id : "")) ||
	    json_object_set(t, "spans", spans) || json_object_set(t, "processes", procs))
		goto oom;
	json_decref(spans);
	json_decref(procs);
	spans = procs = NULL;
	if (cut_at) {
		char msg[192];

		snprintf(msg, sizeof(msg), "tracevault: the read of this trace stopped at "
			 "--http-max-spans (%llu records): it may lack spans",
			 (unsigned long long)cut_at);
		if (json_object_set_new(t, "warnings", json_pack("[s]", msg)))
			goto oom;
	} else if (json_object_set_new(t, "warnings", json_null())) {
		goto oom;
	}
	return t;
oom:
	json_decref(t);
	json_decref(spans);
	json_decref(procs);
	return NULL;
}

/* The traces of ids[0..n) (in that order) from [from, to): data array; an id with no span
 * gives no trace. A derived trace id (an exchange without traceparent) is in no record, so
 * no Query filter finds it: such a trace is its one span, taken from known (the search's
 * spans; NULL: none). */
static int fetch_traces(struct hreq *h, char **ids, size_t n, uint64_t from, uint64_t to,
			struct spans *known, json_t **data, char *err, size_t errlen)
{
	struct spans s = { 0 };
	struct collect c = { h->a, &s };
	size_t *idx = NULL;
	bool cut = false;
	int ret = 0;

	*data = json_array();
	if (!*data)
		return -ENOMEM;
	for (size_t i = 0; i < n && !ret; i += IDS_PER_QUERY) {
		Tracevault__V1__QueryFilter f = TRACEVAULT__V1__QUERY_FILTER__INIT;

		f.trace_ids = ids + i;
		f.n_trace_ids = n - i < IDS_PER_QUERY ? n - i : IDS_PER_QUERY;
		bool t = false;

		ret = tv_http_scan(h->a, from, to, &f, false, 0, collect_cb, &c, &t, err, errlen);
		cut |= t;
	}
	if (ret)
		goto out;
	if (s.n) /* qsort of NULL is undefined, even for 0 elements */
		qsort(s.v, s.n, sizeof(*s.v), cmp_start);
	idx = malloc((s.n + (known ? known->n : 0) + 1) * sizeof(*idx));
	if (!idx) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct spans *from_s = &s;
		size_t m = 0;
		json_t *t;

		for (size_t k = 0; k < s.n; k++)
			if (!strcasecmp(s.v[k].trace_id, ids[i]))
				idx[m++] = k;
		if (!m && known) {
			from_s = known;
			for (size_t k = 0; k < known->n; k++)
				if (!strcmp(known->v[k].trace_id, ids[i]))
					idx[m++] = k;
		}
		if (!m)
			continue;
		t = trace_json(from_s, idx, m, cut && from_s == &s ? h->a->o.max_spans : 0);
		if (!t || json_array_append_new(*data, t)) {
			ret = -ENOMEM;
			goto out;
		}
	}
out:
	free(idx);
	spans_free(&s);
	if (ret) {
		json_decref(*data);
		*data = NULL;
	}
	return ret;
}

static bool is_hex_id(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	return true;
}

/* A Jaeger trace id (up to 32 hex digits, any case, maybe without leading zeros) as ours
 * in out: 32 lower-case digits. -EINVAL when it is not one. */
static int pad_id(const char *id, char out[33])
{
	size_t n = strlen(id);

	if (!is_hex_id(id))
		return -EINVAL;
	memset(out, '0', 32 - n);
	memcpy(out + 32 - n, id, n + 1);
	for (char *p = out; *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
	return 0;
}

static int route_trace(struct hreq *h, const char *id)
{
	char padded[33], err[512], *ids[1] = { padded };
	uint64_t from = 0, to = UINT64_MAX;
	json_t *data;
	int ret;

	if (pad_id(id, padded))
		return tv_http_error(h, 400, "invalid trace id: '%.40s' (up to 32 hex digits)", id);
	if (tv_http_arg(h->rq, "start") || tv_http_arg(h->rq, "end")) {
		if ((ret = tv_http_window(h, UINT64_MAX, &from, &to, err, sizeof(err))))
			return tv_http_error(h, 400, "%s", err);
	}
	ret = fetch_traces(h, ids, 1, from, to, NULL, &data, err, sizeof(err));
	if (ret)
		return ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
	h->too_large_advice = "the trace is larger than one answer may be: raise "
			      "--http-max-response-bytes, or print it with `tracevault trace ID`";
	if (json_array_size(data) == 0) {
		json_decref(data);
		return tv_http_error(h, 404, "trace not found");
	}
	return envelope(h, data, NULL);
}

/* /api/traces?traceID=ID[&traceID=ID...]: exactly those traces, as Jaeger's search answers
 * it (cmd/query/app/http_handler.go: with trace ids the other search parameters are not
 * applied and service is not required): each trace whole, from the whole archive, in the
 * order asked; an id with no span is not an error of the call but an entry of errors
 * {"msg": "trace not found", "traceID": ID}. At most --http-max-traces ids. */
static int search_by_ids(struct hreq *h, size_t n)
{
	const char **v = calloc(n, sizeof(*v));
	char (*padded)[33] = calloc(n, sizeof(*padded)), **ids = calloc(n, sizeof(*ids)), err[512];
	json_t *data = NULL, *errors = NULL;
	size_t m = 0;
	int ret;

	if (!v || !padded || !ids) {
		ret = -ENOMEM;
		goto out;
	}
	tv_http_args(h->rq, "traceID", v, n);
	for (size_t i = 0; i < n; i++) {
		bool dup = false;

		if (pad_id(v[i], padded[m])) {
			ret = tv_http_error(h, 400, "invalid traceID: '%.40s' (up to 32 hex digits)",
					    v[i]);
			goto out;
		}
		for (size_t k = 0; k < m && !dup; k++)
			dup = !strcmp(ids[k], padded[m]);
		if (!dup) {
			ids[m] = padded[m];
			m++;
		}
	}
	ret = fetch_traces(h, ids, m, 0, UINT64_MAX, NULL, &data, err, sizeof(err));
	if (ret) {
		ret = ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
		goto out;
	}
	/* fetch_traces keeps the order asked: the ids it has no trace for are the gaps */
	for (size_t i = 0, k = 0; i < m; i++) {
		json_t *t = json_array_get(data, k);

		if (t && !strcasecmp(json_string_value(json_object_get(t, "traceID")), ids[i])) {
			k++;
			continue;
		}
		if (!errors && !(errors = json_array())) {
			ret = -ENOMEM;
			goto out;
		}
		json_array_append_new(errors, json_pack("{s:s,s:s}", "msg", "trace not found",
							"traceID", ids[i]));
	}
	h->too_large_advice = "ask for fewer traceID at once, or raise --http-max-response-bytes";
	ret = envelope(h, data, errors);
	data = errors = NULL;
out:
	json_decref(data);
	json_decref(errors);
	free(v);
	free(padded);
	free(ids);
	return ret;
}

/* One tags={"k":"v",...} merged into want (a key given again takes the later value). */
static int search_tags_json(const char *tags, json_t *want, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *t = json_loads(tags, 0, &jerr), *v;
	const char *k;

	if (!json_is_object(t)) {
		json_decref(t);
		snprintf(err, errlen, "invalid tags: a JSON object of strings, as "
			 "{\"http.response.status_code\":\"500\"}");
		return -EINVAL;
	}
	json_object_foreach(t, k, v) {
		if (!json_is_string(v)) {
			json_decref(t);
			snprintf(err, errlen, "invalid tags: the value of '%.64s' is not a string", k);
			return -EINVAL;
		}
		if (json_object_set(want, k, v)) {
			json_decref(t);
			return -ENOMEM;
		}
	}
	json_decref(t);
	return 0;
}

/* The tags a search asks for: every tag=k:v, then every tags={"k":"v",...} (the Jaeger UI
 * sends one), merged as Jaeger's query parser merges them (cmd/query/app/query_parser.go
 * parseTags: both repeatable, in that order, a key given again takes the later value). */
static int search_tags(struct hreq *h, json_t **want, char *err, size_t errlen)
{
	const char *v_tags[TV_HTTP_MAX_TAG_ARGS], *v_tag[TV_HTTP_MAX_TAG_ARGS];
	size_t n_tags = tv_http_args(h->rq, "tags", v_tags, TV_HTTP_MAX_TAG_ARGS);
	size_t n_tag = tv_http_args(h->rq, "tag", v_tag, TV_HTTP_MAX_TAG_ARGS);

	if (n_tags + n_tag > TV_HTTP_MAX_TAG_ARGS) {
		snprintf(err, errlen, "%zu tags and tag arguments: at most %d", n_tags + n_tag,
			 TV_HTTP_MAX_TAG_ARGS);
		return -EINVAL;
	}
	*want = json_object();
	if (!*want)
		return -ENOMEM;
	for (size_t i = 0; i < n_tag; i++) {
		const char *tag = v_tag[i], *colon = strchr(tag, ':');
		char key[256];
		json_t *val;

		if (!tag[0])
			continue;
		if (!colon || colon == tag || (size_t)(colon - tag) >= sizeof(key)) {
			snprintf(err, errlen, "invalid tag: '%.64s' (key:value)", tag);
			return -EINVAL;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(colon - tag), tag);
		if (!(val = json_string(colon + 1))) {
			snprintf(err, errlen, "invalid tag: '%.64s' is not UTF-8", tag);
			return -EINVAL;
		}
		if (json_object_set_new(*want, key, val)) {
			snprintf(err, errlen, "invalid tag: '%.64s' (the key is not UTF-8)", tag);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < n_tags; i++) {
		const char *tags = v_tags[i];
		int ret = 0;

		if (tags[0])
			ret = search_tags_json(tags, *want, err, errlen);
		if (ret)
			return ret;
	}
	return 0;
}

/* A tag's value as the text a search compares with: strings as they are, numbers and bools
 * as Jaeger prints them. */
static bool tag_matches(const json_t *tags, const char *key, const char *want)
{
	size_t i;
	json_t *t;
	char buf[64];

	json_array_foreach(tags, i, t) {
		json_t *v = json_object_get(t, "value");
		const char *s = buf;

		if (strcmp(json_string_value(json_object_get(t, "key")), key))
			continue;
		if (json_is_string(v))
			s = json_string_value(v);
		else if (json_is_integer(v))
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			s = json_is_true(v) ? "true" : "false";
		else if (json_is_real(v))
			snprintf(buf, sizeof(buf), "%g", json_real_value(v));
		if (!strcmp(s, want))
			return true;
	}
	return false;
}

static int route_search(struct hreq *h)
{
	const char *svc = tv_http_arg(h->rq, "service"), *op = tv_http_arg(h->rq, "operation");
	uint64_t from, to, limit = 0, min_ns = 0, max_ns = UINT64_MAX;
	bool has_min, has_max;
	Tracevault__V1__Range lat = TRACEVAULT__V1__RANGE__INIT;
	struct spans s = { 0 };
	struct svc_names sn;
	json_t *want = NULL, *data = NULL, *errors = NULL;
	char err[512], **ids = NULL;
	size_t n_ids = 0;
	int ret;

	if ((ret = tv_http_window(h, TV_HTTP_DEFAULT_LOOKBACK_NS, &from, &to, err, sizeof(err))) ||
	    (ret = tv_http_param_u64(h, "limit", &limit, NULL, err, sizeof(err))) ||
	    (ret = tv_http_param_duration(h, "minDuration", &min_ns, &has_min, err, sizeof(err))) ||
	    (ret = tv_http_param_duration(h, "maxDuration", &max_ns, &has_max, err, sizeof(err))) ||
	    (ret = search_tags(h, &want, err, sizeof(err)))) {
		json_decref(want);
		return ret == -ENOMEM ? ret : tv_http_error(h, 400, "%s", err);
	}
	if (min_ns > max_ns) {
		json_decref(want);
		return tv_http_error(h, 400, "minDuration is above maxDuration");
	}
	n_ids = tv_http_args(h->rq, "traceID", NULL, 0);
	if (n_ids) {
		json_decref(want);
		if (n_ids > h->a->o.max_traces)
			return tv_http_error(h, 400, "%zu traceID parameters: at most "
					     "--http-max-traces (%u)", n_ids, h->a->o.max_traces);
		return search_by_ids(h, n_ids);
	}
	if (!svc || !svc[0]) {
		json_decref(want);
		return tv_http_error(h, 400, "service is required (or traceID)");
	}
	if (!tv_http_utf8_valid(svc)) {
		json_decref(want);
		return tv_http_error(h, 400, "invalid service: not UTF-8 (every service name this "
				     "API lists is)");
	}
	if (limit == 0) /* absent or 0: Jaeger's default, within our bound */
		limit = DEFAULT_LIMIT < h->a->o.max_traces ? DEFAULT_LIMIT : h->a->o.max_traces;
	if (limit > h->a->o.max_traces) {
		json_decref(want);
		return tv_http_error(h, 400, "invalid limit: %llu is above --http-max-traces (%u)",
				     (unsigned long long)limit, h->a->o.max_traces);
	}
	lat.lo = min_ns;
	lat.hi = max_ns;
	ret = svc_resolve(h, svc, from, to, &sn, &errors, err, sizeof(err));
	if (!ret)
		ret = service_spans(h, &sn, from, to, has_min || has_max ? &lat : NULL, &s, err,
				    sizeof(err));
	svc_names_free(&sn);
	if (ret)
		goto rpc_fail;
	ids = calloc(limit, sizeof(*ids));
	if (!ids) {
		ret = -ENOMEM;
		goto out;
	}
	/* newest first across both scans: the traces of the most recent matching spans */
	if (s.n) /* qsort of NULL is undefined, even for 0 elements */
		qsort(s.v, s.n, sizeof(*s.v), cmp_start);
	for (size_t i = s.n; i-- > 0 && n_ids < limit;) {
		struct jspan *j = &s.v[i];
		const char *k;
		json_t *v;
		bool ok = !(op && op[0] && strcmp(op, j->op));

		json_object_foreach(want, k, v) {
			if (ok && !tag_matches(j->tags, k, json_string_value(v)))
				ok = false;
		}
		for (size_t k2 = 0; ok && k2 < n_ids; k2++)
			if (!strcmp(ids[k2], j->trace_id))
				ok = false;
		if (ok)
			ids[n_ids++] = j->trace_id;
	}
	ret = fetch_traces(h, ids, n_ids, from > TV_HTTP_TRACE_MARGIN_NS ?
			   from - TV_HTTP_TRACE_MARGIN_NS : 0,
			   to < UINT64_MAX - TV_HTTP_TRACE_MARGIN_NS ?
			   to + TV_HTTP_TRACE_MARGIN_NS : UINT64_MAX, &s, &data, err,
			   sizeof(err));
	if (ret)
		goto rpc_fail;
	ret = envelope(h, data, errors);
	errors = NULL;
	goto out;
rpc_fail:
	ret = ret == -ENOMEM ? ret : tv_http_rpc_error(h, ret, err);
out:
	free(ids);
	spans_free(&s);
	json_decref(want);
	json_decref(errors);
	return ret;
}

int tv_jaeger_route(struct hreq *h, const char *url)
{
	static const char SERVICES[] = "/api/services", TRACES[] = "/api/traces";
	static const char OPS_SUFFIX[] = "/operations";

	if (!strcmp(url, SERVICES))
		return route_services(h);
	if (!strncmp(url, SERVICES, sizeof(SERVICES) - 1) && url[sizeof(SERVICES) - 1] == '/') {
		const char *svc = url + sizeof(SERVICES);
		size_t n = strlen(svc), sl = sizeof(OPS_SUFFIX) - 1;
		char *name;
		int ret;

		if (n <= sl || strcmp(svc + n - sl, OPS_SUFFIX))
			return -ENOENT;
		/* any length the lists show (a service.name is up to --otlp-max-attribute-bytes):
		 * the URL's own bound is libmicrohttpd's */
		if (!(name = strndup(svc, n - sl)))
			return -ENOMEM;
		ret = route_operations(h, name, false);
		free(name);
		return ret;
	}
	if (!strcmp(url, "/api/dependencies")) {
		/* Jaeger UI's System Architecture tab: no dependency links are derived here, so
		 * the answer Jaeger gives when it has none */
		json_t *none = json_array();

		return none ? envelope(h, none, NULL) : -ENOMEM;
	}
	if (!strcmp(url, "/api/operations"))
		return route_operations(h, tv_http_arg(h->rq, "service"), true);
	if (!strcmp(url, TRACES))
		return route_search(h);
	if (!strncmp(url, TRACES, sizeof(TRACES) - 1) && url[sizeof(TRACES) - 1] == '/')
		return route_trace(h, url + sizeof(TRACES));
	return -ENOENT;
}
