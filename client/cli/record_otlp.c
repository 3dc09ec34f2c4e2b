/* `query --format otlp-json` (record_otlp.h). The encoding follows opentelemetry-proto
 * docs/specification.md "JSON Protobuf Encoding": lowerCamelCase keys, trace and span ids as
 * hex strings, enums as integers, 64-bit integers as decimal strings. The span follows the
 * HTTP semantic conventions (semantic-conventions docs/http/http-spans.md): name = method
 * (never the raw path: no route is known), kind SERVER or CLIENT, status Error for 5xx and for
 * 4xx on a client span. SHA-256 (derived ids) is OpenSSL's libcrypto, which gRPC already
 * loads into the process. */
#include "cli/record_otlp.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture/conn_table.h" /* TV_RECORD_FLAG_* */
#include "cli/record_out.h" /* tv_out_json_double */
#include "proto/exchange_span.h"

_Static_assert(TV_RECORD_FLAG_NO_RESPONSE == TV_XSPAN_FLAG_NO_RESPONSE,
	       "proto/exchange_span.h reads the capture's NO_RESPONSE bit");

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* ---- JSON pieces ---- */

/* "key":"hex", after a comma unless first */
static void hex_id(struct tv_out_buf *b, bool first, const char *key, const uint8_t *id,
		   size_t n)
{
	static const char hex[] = "0123456789abcdef";

	if (!first)
		tv_out_char(b, ',');
	tv_out_char(b, '"');
	tv_out_str(b, key);
	tv_out_lit(b, "\":\"");
	if (tv_out_reserve(b, 2 * n + 1))
		return;
	for (size_t i = 0; i < n; i++) {
		b->p[b->len++] = hex[id[i] >> 4];
		b->p[b->len++] = hex[id[i] & 15];
	}
	b->p[b->len++] = '"';
}

/* Attributes (KeyValue list entries); *first tracks the comma. */
static void attr_key(struct tv_out_buf *b, bool *first, const char *key)
{
	if (!*first)
		tv_out_char(b, ',');
	*first = false;
	tv_out_lit(b, "{\"key\":\"");
	tv_out_str(b, key);
	tv_out_lit(b, "\",\"value\":{");
}

static void attr_strn(struct tv_out_buf *b, bool *first, const char *key, const char *s, size_t n)
{
	attr_key(b, first, key);
	tv_out_lit(b, "\"stringValue\":");
	tv_out_json_bytes(b, s, n);
	tv_out_lit(b, "}}");
}

static void attr_str(struct tv_out_buf *b, bool *first, const char *key, const char *s)
{
	attr_strn(b, first, key, s, strlen(s));
}

/* intValue is an int64: a decimal string in OTLP JSON. Values above INT64_MAX (a u64 count
 * could be) are clamped to it. */
static void attr_int(struct tv_out_buf *b, bool *first, const char *key, uint64_t v)
{
	attr_key(b, first, key);
	tv_out_lit(b, "\"intValue\":\"");
	tv_out_u64(b, v > INT64_MAX ? INT64_MAX : v);
	tv_out_lit(b, "\"}}");
}

static void attr_bool(struct tv_out_buf *b, bool *first, const char *key, bool v)
{
	attr_key(b, first, key);
	if (v)
		tv_out_lit(b, "\"boolValue\":true}}");
	else
		tv_out_lit(b, "\"boolValue\":false}}");
}

void tv_otlp_span(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	struct tv_xspan x;
	bool first = true;

	if (tv_xspan_of(r, &x)) {
		b->failed = true;
		return;
	}
	tv_out_char(b, '{');
	hex_id(b, true, "traceId", x.ids.trace_id, sizeof(x.ids.trace_id));
	hex_id(b, false, "spanId", x.ids.span_id, sizeof(x.ids.span_id));
	if (x.ids.has_parent)
		hex_id(b, false, "parentSpanId", x.ids.parent_span_id,
		       sizeof(x.ids.parent_span_id));
	tv_out_lit(b, ",\"name\":");
	tv_out_json_str(b, x.name);
	tv_out_lit(b, ",\"kind\":");
	tv_out_u64(b, x.kind);
	tv_out_lit(b, ",\"startTimeUnixNano\":\"");
	tv_out_u64(b, r->ts_ns);
	tv_out_lit(b, "\",\"endTimeUnixNano\":\"");
	tv_out_u64(b, tv_xspan_end_ns(r->ts_ns, r->end_ns, r->latency_ns));
	tv_out_lit(b, "\",\"attributes\":[");
	for (size_t i = 0; i < x.n_attrs; i++) {
		const struct tv_xattr *a = &x.attrs[i];

		switch (a->type) {
		case TV_XATTR_STRING:
			attr_strn(b, &first, a->key, a->s, a->n);
			break;
		case TV_XATTR_INT:
			attr_int(b, &first, a->key, a->i);
			break;
		case TV_XATTR_BOOL:
			attr_bool(b, &first, a->key, a->b);
			break;
		}
	}
	tv_out_char(b, ']');
	if (x.error)
		tv_out_lit(b, ",\"status\":{\"code\":2}");
	tv_out_char(b, '}');
	tv_xspan_free(&x);
}

/* A span record (BLOCK.md "Record kinds") back as the OTLP span it was received as: its ids,
 * name, kind, times, the attributes kept with their types, the dropped counts, status, trace
 * state and flags. The resource (service.name) and scope are its batch's (tv_otlp_add). */
static void stored_span(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	const Tracevault__V1__Span *sp = r->span;
	char num[64];

	tv_out_lit(b, "{\"traceId\":");
	tv_out_json_str(b, r->trace_id);
	tv_out_lit(b, ",\"spanId\":");
	tv_out_json_str(b, r->span_id);
	if (sp->parent_span_id && sp->parent_span_id[0]) {
		tv_out_lit(b, ",\"parentSpanId\":");
		tv_out_json_str(b, sp->parent_span_id);
	}
	if (sp->trace_state && sp->trace_state[0]) {
		tv_out_lit(b, ",\"traceState\":");
		tv_out_json_str(b, sp->trace_state);
	}
	if (sp->flags) {
		tv_out_lit(b, ",\"flags\":");
		tv_out_u64(b, sp->flags);
	}
	tv_out_lit(b, ",\"name\":");
	tv_out_json_str(b, sp->name);
	tv_out_lit(b, ",\"kind\":");
	tv_out_u64(b, sp->kind);
	tv_out_lit(b, ",\"startTimeUnixNano\":\"");
	tv_out_u64(b, r->ts_ns);
	tv_out_lit(b, "\",\"endTimeUnixNano\":\"");
	tv_out_u64(b, r->end_ns);
	tv_out_lit(b, "\",\"attributes\":[");
	for (size_t i = 0; i < sp->n_attributes; i++) {
		const Tracevault__V1__SpanAttribute *a = sp->attributes[i];

		tv_out_str(b, i ? ",{\"key\":" : "{\"key\":");
		tv_out_json_str(b, a->key);
		tv_out_lit(b, ",\"value\":{");
		switch (a->value_case) {
		case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE:
			tv_out_lit(b, "\"stringValue\":");
			tv_out_json_str(b, a->string_value);
			break;
		case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE:
			tv_out_str(b, a->bool_value ? "\"boolValue\":true" : "\"boolValue\":false");
			break;
		case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE:
			snprintf(num, sizeof(num), "\"intValue\":\"%lld\"", (long long)a->int_value);
			tv_out_str(b, num);
			break;
		case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE:
			tv_out_lit(b, "\"doubleValue\":");
			tv_out_json_double(b, a->double_value);
			break;
		default:
			break;
		}
		tv_out_lit(b, "}}");
	}
	tv_out_char(b, ']');
	if (sp->dropped_attributes_count) {
		tv_out_lit(b, ",\"droppedAttributesCount\":");
		tv_out_u64(b, sp->dropped_attributes_count);
	}
	if (sp->dropped_events_count) {
		tv_out_lit(b, ",\"droppedEventsCount\":");
		tv_out_u64(b, sp->dropped_events_count);
	}
	if (sp->dropped_links_count) {
		tv_out_lit(b, ",\"droppedLinksCount\":");
		tv_out_u64(b, sp->dropped_links_count);
	}
	if (sp->status_code || (sp->status_message && sp->status_message[0])) {
		tv_out_lit(b, ",\"status\":{");
		if (sp->status_message && sp->status_message[0]) {
			tv_out_lit(b, "\"message\":");
			tv_out_json_str(b, sp->status_message);
			if (sp->status_code)
				tv_out_char(b, ',');
		}
		if (sp->status_code) {
			tv_out_lit(b, "\"code\":");
			tv_out_u64(b, sp->status_code);
		}
		tv_out_char(b, '}');
	}
	tv_out_char(b, '}');
}

/* ---- batches ---- */

struct span_ref {
	size_t off, len; /* in spans */
	size_t next;     /* the next span of the same resource, or SIZE_MAX */
};

struct resource {
	size_t comm_off, comm_len; /* in spans' text (after the span texts' region) */
	uint32_t pid;
	/* span records' resources: comm is the service, scope the scope's name and version
	 * (each NUL-terminated, in spans' text) */
	bool span;
	size_t scope_off, scope_len, version_off, version_len;
	size_t first, last; /* span_ref indexes */
};

struct tv_otlp {
	struct tv_out_buf spans; /* the batch's span texts and resource names */
	struct span_ref refs[TV_OTLP_BATCH_SPANS];
	struct resource res[TV_OTLP_BATCH_SPANS];
	size_t n_refs, n_res, last_res;
};

int tv_otlp_new(struct tv_otlp **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void tv_otlp_free(struct tv_otlp *o)
{
	if (!o)
		return;
	tv_out_free(&o->spans);
	free(o);
}

static bool same_resource(const struct tv_otlp *o, const struct resource *res, const char *comm,
			  size_t comm_len, uint32_t pid)
{
	return !res->span && res->pid == pid && res->comm_len == comm_len &&
	       memcmp(o->spans.p + res->comm_off, comm, comm_len) == 0;
}

static bool same_text(const struct tv_otlp *o, size_t off, size_t len, const char *s)
{
	return strlen(s) == len && memcmp(o->spans.p + off, s, len) == 0;
}

/* The resource (service) and scope of a span record in this batch, added when new. */
static size_t span_resource_of(struct tv_otlp *o, const Tracevault__V1__Span *sp)
{
	const char *svc = nz(sp->service), *scope = nz(sp->scope_name);
	const char *ver = nz(sp->scope_version);
	struct resource *res;

	for (size_t i = 0; i < o->n_res; i++) {
		res = &o->res[i];
		if (res->span && same_text(o, res->comm_off, res->comm_len, svc) &&
		    same_text(o, res->scope_off, res->scope_len, scope) &&
		    same_text(o, res->version_off, res->version_len, ver))
			return o->last_res = i;
	}
	res = &o->res[o->n_res];
	*res = (struct resource){ .comm_off = o->spans.len, .comm_len = strlen(svc), .span = true,
				  .first = SIZE_MAX, .last = SIZE_MAX };
	tv_out_mem(&o->spans, svc, res->comm_len);
	res->scope_off = o->spans.len;
	res->scope_len = strlen(scope);
	tv_out_mem(&o->spans, scope, res->scope_len);
	res->version_off = o->spans.len;
	res->version_len = strlen(ver);
	tv_out_mem(&o->spans, ver, res->version_len);
	return o->last_res = o->n_res++;
}

/* The index of (comm, pid)'s resource in this batch, added when new. The previous record's is
 * tried first: consecutive records mostly share one. */
static size_t resource_of(struct tv_otlp *o, const char *comm, uint32_t pid)
{
	size_t n = strlen(comm);

	if (o->n_res && same_resource(o, &o->res[o->last_res], comm, n, pid))
		return o->last_res;
	for (size_t i = 0; i < o->n_res; i++)
		if (same_resource(o, &o->res[i], comm, n, pid))
			return o->last_res = i;
	o->res[o->n_res] = (struct resource){ .comm_off = o->spans.len, .comm_len = n, .pid = pid,
					      .first = SIZE_MAX, .last = SIZE_MAX };
	tv_out_mem(&o->spans, comm, n);
	return o->last_res = o->n_res++;
}

static void write_batch(struct tv_otlp *o, struct tv_out_buf *out)
{
	if (o->n_refs == 0)
		return;
	if (o->spans.failed) {
		out->failed = true;
		return;
	}
	tv_out_lit(out, "{\"resourceSpans\":[");
	for (size_t i = 0; i < o->n_res; i++) {
		const struct resource *res = &o->res[i];
		bool first = true;
		const char *comm = o->spans.p + res->comm_off;

		if (i)
			tv_out_char(out, ',');
		tv_out_lit(out, "{\"resource\":{\"attributes\":[");
		if (res->span) { /* a span record's: service and scope as received */
			if (res->comm_len)
				attr_strn(out, &first, "service.name", comm, res->comm_len);
			tv_out_lit(out, "]},\"scopeSpans\":[{\"scope\":{\"name\":");
			tv_out_json_bytes(out, o->spans.p + res->scope_off, res->scope_len);
			tv_out_lit(out, ",\"version\":");
			tv_out_json_bytes(out, o->spans.p + res->version_off, res->version_len);
			tv_out_lit(out, "},\"spans\":[");
		} else if (res->comm_len)
			attr_strn(out, &first, "service.name", comm, res->comm_len);
		else
			attr_str(out, &first, "service.name", "unknown_service");
		if (!res->span) {
			attr_int(out, &first, "process.pid", res->pid);
			if (res->comm_len)
				attr_strn(out, &first, "process.executable.name", comm,
					  res->comm_len);
			tv_out_lit(out, "]},\"scopeSpans\":[{\"scope\":{\"name\":\""
					TV_OTLP_SCOPE_NAME "\",\"version\":\"" TV_VERSION
					"\"},\"spans\":[");
		}
		for (size_t s = res->first; s != SIZE_MAX; s = o->refs[s].next) {
			if (s != res->first)
				tv_out_char(out, ',');
			tv_out_mem(out, o->spans.p + o->refs[s].off, o->refs[s].len);
		}
		tv_out_lit(out, "]}]}");
	}
	tv_out_lit(out, "]}\n");
	o->spans.len = 0;
	o->n_refs = o->n_res = o->last_res = 0;
}

void tv_otlp_add(struct tv_otlp *o, struct tv_out_buf *out, const Tracevault__V1__TraceRecord *r)
{
	size_t ri = r->span ? span_resource_of(o, r->span) : resource_of(o, nz(r->comm), r->pid);
	size_t off = o->spans.len;
	struct resource *res = &o->res[ri];
	struct span_ref *ref = &o->refs[o->n_refs];

	if (r->span)
		stored_span(&o->spans, r);
	else
		tv_otlp_span(&o->spans, r);
	*ref = (struct span_ref){ off, o->spans.len - off, SIZE_MAX };
	if (res->last == SIZE_MAX)
		res->first = o->n_refs;
	else
		o->refs[res->last].next = o->n_refs;
	res->last = o->n_refs++;
	if (o->n_refs == TV_OTLP_BATCH_SPANS)
		write_batch(o, out);
}

void tv_otlp_finish(struct tv_otlp *o, struct tv_out_buf *out)
{
	write_batch(o, out);
}
