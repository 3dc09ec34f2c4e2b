/* A captured exchange as a span: the one mapping both `tracevault query --format otlp-json`
 * (client/cli/record_otlp.c) and tracevaultd's Jaeger query API (server/http_api.c) use, so
 * the two never disagree on an id, a name, a kind or an attribute. It follows the HTTP
 * semantic conventions (semantic-conventions docs/http/http-spans.md); README "Exchanges as
 * spans" has the table. */
#ifndef TV_PROTO_EXCHANGE_SPAN_H
#define TV_PROTO_EXCHANGE_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tracevault.pb-c.h"

/* TraceRecord.flags bit 1 (tracevault.proto): closed before a response; the capture's
 * TV_RECORD_FLAG_NO_RESPONSE (client/cli/record_otlp.c asserts they are equal). */
#define TV_XSPAN_FLAG_NO_RESPONSE 1u

/* OTLP trace.proto SpanKind values. */
enum tv_span_kind {
	TV_SPAN_KIND_UNSPECIFIED = 0,
	TV_SPAN_KIND_INTERNAL = 1,
	TV_SPAN_KIND_SERVER = 2,
	TV_SPAN_KIND_CLIENT = 3,
	TV_SPAN_KIND_PRODUCER = 4,
	TV_SPAN_KIND_CONSUMER = 5,
};

/* Ids of a record's span (OTLP Span.trace_id / span_id / parent_span_id). */
struct tv_otlp_ids {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	bool has_parent;
	bool derived_trace_id; /* no valid traceparent: the trace id is derived */
};

/* The span ids of r (the record's trace_id / span_id are the W3C traceparent's trace-id and
 * parent-id, 32 and 16 hex digits):
 *   - role client: the traceparent the client sent names its own span: span id = span_id,
 *     no parent;
 *   - role server (or none): the span_id is the caller's span: parent = span_id, span id
 *     derived.
 * Derived values come from SHA-256 of the exchange's identity, "tv1\0" ts_ns "\0" pid "\0"
 * role "\0" local "\0" remote (numbers in decimal): trace id = bytes 0-15 when the record has
 * no valid trace_id (32 hex digits, not all zero), span id = bytes 16-23 when needed; an
 * all-zero derived id (invalid in W3C and OTLP) gets its last byte set to 1. Deterministic:
 * the same record gives the same ids in every run. 0, -ENOMEM, or -EIO when the digest
 * failed. */
int tv_otlp_span_ids(const Tracevault__V1__TraceRecord *r, struct tv_otlp_ids *ids);

enum tv_xattr_type { TV_XATTR_STRING, TV_XATTR_INT, TV_XATTR_BOOL };

/* One attribute: key a static string; a string value is s[0..n) (not NUL-terminated: it may
 * point into the record's path or address), an int (non-negative here) i, a bool b. */
struct tv_xattr {
	const char *key;
	enum tv_xattr_type type;
	const char *s;
	size_t n;
	uint64_t i;
	bool b;
};

/* The most attributes an exchange gives (the list in exchange_span.c). */
#define TV_XSPAN_MAX_ATTRS 24

/* An exchange's span. Strings point into the record (valid while it is) or into the span
 * itself (code, url_full), so the span must not be copied by value while they are used. */
struct tv_xspan {
	struct tv_otlp_ids ids;
	const char *name;  /* the method when semconv knows it, else "HTTP" */
	enum tv_span_kind kind; /* SERVER / CLIENT from the role, else UNSPECIFIED */
	const char *error; /* error.type: the status code, "tracevault.no_response", or NULL */
	struct tv_xattr attrs[TV_XSPAN_MAX_ATTRS];
	size_t n_attrs;
	char code[16];   /* the error's status code text */
	char *url_full;  /* malloc'd "http://host/path" of a client span, or NULL */
};

/* Map r (an exchange: r->span NULL) into *x. Returns 0, or -ENOMEM / -EIO (the digest) with
 * nothing to free. On success release with tv_xspan_free. */
int tv_xspan_of(const Tracevault__V1__TraceRecord *r, struct tv_xspan *x);
void tv_xspan_free(struct tv_xspan *x);

/* The end of an exchange's span, unix ns: end_ns when the record has one past ts_ns, else
 * ts_ns + latency_ns (an exchange put without end_ns: the latency the Query's latency_ns
 * filter, Summary and Jaeger's minDuration/maxDuration use), else ts_ns. Saturates at
 * 2^64-1. The Jaeger API and the CLI's otlp-json output take a span's duration from it. */
uint64_t tv_xspan_end_ns(uint64_t ts_ns, uint64_t end_ns, uint64_t latency_ns);

/* The path of a record's target without its query ("/a/b?x=1" -> "/a/b"): its length. */
size_t tv_xspan_path_len(const char *path);

#endif
