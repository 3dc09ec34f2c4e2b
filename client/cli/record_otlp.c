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

#include <openssl/sha.h>

#include "capture/conn_table.h" /* TV_RECORD_FLAG_* */
#include "cli/record_out.h" /* tv_out_json_double */

/* OTLP trace.proto enum values, written as integers. */
enum { SPAN_KIND_UNSPECIFIED = 0, SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3 };
enum { STATUS_CODE_ERROR = 2 };

#define TRACE_ID_HEX 32
#define SPAN_ID_HEX 16
#define ID_DOMAIN "tv1" /* versions the derivation: a new rule gets a new prefix */

/* The HTTP methods semconv knows (RFC 9110 and PATCH); others are "_OTHER". */
static const char *const KNOWN_METHODS[] = {
	"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* s is exactly 2n hex digits, not all zero (W3C trace-context: an all-zero id is invalid):
 * true with the bytes in out. */
static bool parse_id(const char *s, uint8_t *out, size_t n)
{
	bool nonzero = false;

	if (!s || strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
		nonzero |= out[i] != 0;
	}
	return nonzero;
}

static void nonzero_id(uint8_t *id, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (id[i])
			return;
	id[n - 1] = 1;
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

/* The exchange identity's digest (record_otlp.h). */
static int identity_digest(const Tracevault__V1__TraceRecord *r, uint8_t md[SHA256_DIGEST_LENGTH])
{
	struct tv_out_buf b = { 0 };
	int ret = 0;

	tv_out_lit(&b, ID_DOMAIN "\0");
	tv_out_u64(&b, r->ts_ns);
	tv_out_char(&b, '\0');
	tv_out_u64(&b, r->pid);
	tv_out_char(&b, '\0');
	tv_out_str(&b, r->role);
	tv_out_char(&b, '\0');
	tv_out_str(&b, r->local);
	tv_out_char(&b, '\0');
	tv_out_str(&b, r->remote);
	if (b.failed)
		ret = -ENOMEM;
	else if (!SHA256((const unsigned char *)b.p, b.len, md))
		ret = -EIO;
	tv_out_free(&b);
	return ret;
}

int tv_otlp_span_ids(const Tracevault__V1__TraceRecord *r, struct tv_otlp_ids *ids)
{
	uint8_t md[SHA256_DIGEST_LENGTH], sent[8];
	bool client = r->role && strcmp(r->role, "client") == 0;
	bool has_span = parse_id(r->span_id, sent, sizeof(sent));
	int ret;

	memset(ids, 0, sizeof(*ids));
	if (!parse_id(r->trace_id, ids->trace_id, sizeof(ids->trace_id)))
		ids->derived_trace_id = true;
	/* a traceparent without a valid trace id is not one: its span id means nothing */
	if (ids->derived_trace_id)
		has_span = false;
	if (client && has_span) {
		memcpy(ids->span_id, sent, sizeof(sent));
		return 0;
	}
	ret = identity_digest(r, md);
	if (ret)
		return ret;
	if (ids->derived_trace_id) {
		memcpy(ids->trace_id, md, sizeof(ids->trace_id));
		nonzero_id(ids->trace_id, sizeof(ids->trace_id));
	}
	memcpy(ids->span_id, md + 16, sizeof(ids->span_id));
	nonzero_id(ids->span_id, sizeof(ids->span_id));
	if (!client && has_span) {
		memcpy(ids->parent_span_id, sent, sizeof(sent));
		ids->has_parent = true;
	}
	return 0;
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

/* "host:port", "[v6]:port", "host", "v6" (several colons, no brackets): the address (brackets
 * dropped) and the port, -1 when none or not a valid one. */
struct hostport {
	const char *addr;
	size_t addr_len;
	int port;
};

static struct hostport split_hostport(const char *s)
{
	struct hostport hp = { s, strlen(s), -1 };
	const char *colon, *p;
	long port = 0;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close)
			return hp;
		hp.addr = s + 1;
		hp.addr_len = (size_t)(close - s - 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(s, ':');
		if (colon && memchr(s, ':', (size_t)(colon - s)))
			return hp; /* a bare IPv6 address */
		if (colon)
			hp.addr_len = (size_t)(colon - s);
	}
	if (!colon || !colon[1])
		return hp;
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || port > 65535)
			return hp;
		port = port * 10 + (*p - '0');
	}
	if (port <= 65535)
		hp.port = (int)port;
	return hp;
}

static void attr_addr(struct tv_out_buf *b, bool *first, const char *addr_key,
		      const char *port_key, struct hostport hp)
{
	if (hp.addr_len)
		attr_strn(b, first, addr_key, hp.addr, hp.addr_len);
	if (hp.port >= 0)
		attr_int(b, first, port_key, (uint64_t)hp.port);
}

static bool known_method(const char *m)
{
	for (size_t i = 0; i < sizeof(KNOWN_METHODS) / sizeof(KNOWN_METHODS[0]); i++)
		if (strcmp(m, KNOWN_METHODS[i]) == 0)
			return true;
	return false;
}

void tv_otlp_span(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r)
{
	const char *role = nz(r->role), *method = nz(r->method), *path = nz(r->path);
	const char *host = nz(r->host), *q = strchr(path, '?');
	bool server = strcmp(role, "server") == 0, client = strcmp(role, "client") == 0;
	bool known = known_method(method), first = true;
	struct hostport local = split_hostport(nz(r->local));
	struct hostport remote = split_hostport(nz(r->remote));
	struct hostport authority = host[0] ? split_hostport(host) : (client ? remote : local);
	struct tv_otlp_ids ids;
	char code[16];
	const char *error = NULL;

	if (tv_otlp_span_ids(r, &ids)) {
		b->failed = true;
		return;
	}
	if (r->status >= 500 || (client && r->status >= 400)) {
		snprintf(code, sizeof(code), "%u", (unsigned)r->status);
		error = code;
	} else if (r->status == 0 && (r->flags & TV_RECORD_FLAG_NO_RESPONSE)) {
		error = "tracevault.no_response";
	}
	tv_out_char(b, '{');
	hex_id(b, true, "traceId", ids.trace_id, sizeof(ids.trace_id));
	hex_id(b, false, "spanId", ids.span_id, sizeof(ids.span_id));
	if (ids.has_parent)
		hex_id(b, false, "parentSpanId", ids.parent_span_id, sizeof(ids.parent_span_id));
	tv_out_lit(b, ",\"name\":");
	tv_out_json_str(b, known ? method : "HTTP");
	tv_out_lit(b, ",\"kind\":");
	tv_out_u64(b, server ? SPAN_KIND_SERVER : client ? SPAN_KIND_CLIENT : SPAN_KIND_UNSPECIFIED);
	tv_out_lit(b, ",\"startTimeUnixNano\":\"");
	tv_out_u64(b, r->ts_ns);
	tv_out_lit(b, "\",\"endTimeUnixNano\":\"");
	tv_out_u64(b, r->end_ns >= r->ts_ns ? r->end_ns : r->ts_ns);
	tv_out_lit(b, "\",\"attributes\":[");

	if (method[0]) {
		attr_str(b, &first, "http.request.method", known ? method : "_OTHER");
		if (!known)
			attr_str(b, &first, "http.request.method_original", method);
	}
	if (path[0] == '/') {
		attr_strn(b, &first, "url.path", path, q ? (size_t)(q - path) : strlen(path));
		if (q)
			attr_str(b, &first, "url.query", q + 1);
	}
	attr_str(b, &first, "url.scheme", "http");
	if (client && authority.addr_len) {
		struct tv_out_buf full = { 0 };

		tv_out_lit(&full, "http://");
		tv_out_str(&full, host[0] ? host : nz(r->remote));
		if (path[0] == '/')
			tv_out_str(&full, path);
		if (!full.failed)
			attr_strn(b, &first, "url.full", full.p, full.len);
		tv_out_free(&full);
	}
	if (r->status)
		attr_int(b, &first, "http.response.status_code", r->status);
	attr_addr(b, &first, "server.address", "server.port", authority);
	if (server)
		attr_addr(b, &first, "client.address", "client.port", remote);
	attr_addr(b, &first, "network.peer.address", "network.peer.port", remote);
	attr_addr(b, &first, "network.local.address", "network.local.port", local);
	attr_str(b, &first, "network.protocol.name", "http");
	if (r->http_version && r->http_version[0])
		attr_str(b, &first, "network.protocol.version", r->http_version);
	attr_int(b, &first, "http.request.body.size", r->req_body_bytes);
	if (r->status)
		attr_int(b, &first, "http.response.body.size", r->resp_body_bytes);
	if (error)
		attr_str(b, &first, "error.type", error);
	if (r->flags)
		attr_int(b, &first, "tracevault.flags", r->flags);
	if (ids.derived_trace_id)
		attr_bool(b, &first, "tracevault.trace_id_derived", true);
	tv_out_char(b, ']');
	if (error)
		tv_out_lit(b, ",\"status\":{\"code\":2}");
	tv_out_char(b, '}');
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
