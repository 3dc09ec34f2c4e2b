/* `query --format otlp-json`: records as OpenTelemetry spans in the OTLP JSON encoding, so OTLP
 * tools (the collector's otlpjsonfile receiver, anything that parses the published
 * opentelemetry-proto schema) load them. README "Output formats" documents the mapping. */
#ifndef TV_RECORD_OTLP_H
#define TV_RECORD_OTLP_H

#include <stdint.h>

#include "cli/out_buf.h"
#include "tracevault.pb-c.h"

/* Spans per output line: each line is one ExportTraceServiceRequest (opentelemetry-proto
 * collector/trace/v1) of at most this many spans, the collector's file exporter's shape. */
#define TV_OTLP_BATCH_SPANS 1000
/* Scope name of every span (InstrumentationScope.name); its version is TV_VERSION. */
#define TV_OTLP_SCOPE_NAME "tracevault"

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
 * the same record gives the same ids in every run. 0, or -EIO when the digest failed. */
int tv_otlp_span_ids(const Tracevault__V1__TraceRecord *r, struct tv_otlp_ids *ids);

/* One span as an OTLP JSON Span object (kind, name, times, status, HTTP semantic-convention
 * attributes; README has the table). */
void tv_otlp_span(struct tv_out_buf *b, const Tracevault__V1__TraceRecord *r);

/* A batcher of spans into ExportTraceServiceRequest lines, grouped by resource (comm, pid:
 * service.name, process.pid) in order of first appearance within the line. */
struct tv_otlp;
int tv_otlp_new(struct tv_otlp **out);                 /* 0 or -ENOMEM */
/* Add r; a full batch is written to out as one line. Failures show as out->failed. */
void tv_otlp_add(struct tv_otlp *o, struct tv_out_buf *out, const Tracevault__V1__TraceRecord *r);
/* Write the last, partial batch (nothing when it is empty). */
void tv_otlp_finish(struct tv_otlp *o, struct tv_out_buf *out);
void tv_otlp_free(struct tv_otlp *o);                  /* NULL: nothing */

#endif
