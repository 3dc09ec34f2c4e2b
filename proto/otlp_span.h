/* OTLP trace export requests (proto/otlp_trace.proto) turned into span records: the
 * TraceRecords with a Span (proto/tracevault.proto, BLOCK.md "Record kinds") that tracevaultd
 * archives beside captured exchanges. Pure: no I/O, no server state, so the server's Export
 * handler, the fuzz harness and the unit test share it. Also the owner of the limits a span
 * record obeys (--otlp-max-attributes, --otlp-max-attribute-bytes, --otlp-max-message-bytes). */
#ifndef TV_PROTO_OTLP_SPAN_H
#define TV_PROTO_OTLP_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "otlp_trace.pb-c.h"
#include "tracevault.pb-c.h"

/* Attributes kept per span (scalar ones, in the order sent); the rest are counted in
 * span.dropped_attributes_count. tracevaultd --otlp-max-attributes. */
#define TV_OTLP_DEFAULT_MAX_ATTRIBUTES 32
extern const struct tv_limit tv_otlp_max_attributes_limit; /* 0 to 256 */
/* Bytes of one stored string value (an attribute's, the span name, the status message, the
 * trace state): a longer one is cut at a UTF-8 boundary at or below it.
 * tracevaultd --otlp-max-attribute-bytes. */
#define TV_OTLP_DEFAULT_MAX_ATTRIBUTE_BYTES 1024
extern const struct tv_limit tv_otlp_max_attribute_bytes_limit; /* 16 to 16K */
/* The largest Export request body accepted (gRPC message or OTLP/HTTP body): a larger one is
 * refused whole, RESOURCE_EXHAUSTED without a retry hint (the OTLP client must not resend it
 * as is). tracevaultd --otlp-max-message-bytes; gRPC's own limit is --max-message-bytes, so
 * the smaller of the two applies. */
#define TV_OTLP_DEFAULT_MAX_MESSAGE_BYTES (4u << 20)
extern const struct tv_limit tv_otlp_max_message_bytes_limit; /* 1K to 64M */
/* How far ahead of the server's clock a span may start (ns). A later one is refused alone:
 * a record holds its whole block (the Export's spans) until its own time passes
 * --retain-time, and `tracevault trace` (--to now+1h) would not show it. 1 h: synced hosts
 * are within milliseconds, an unsynced one drifts seconds to minutes; a local-time-as-UTC
 * bug (hours) is refused and said so. tracevaultd --otlp-max-future-skew. */
#define TV_OTLP_DEFAULT_MAX_FUTURE_SKEW_NS (3600ull * 1000000000ull)
extern const struct tv_limit tv_otlp_max_future_skew_limit; /* 1 s to 36500 d, in ns */
/* The latest time a span record may hold (its start and end): the catalog's range,
 * server/catalog.h TV_CATALOG_MAX_TS_NS (2^63-1 ns, year 2262). */
#define TV_OTLP_MAX_TIME_NS ((uint64_t)INT64_MAX)

struct tv_otlp_limits {
	unsigned max_attributes;
	size_t max_attribute_bytes;
	uint64_t max_future_skew_ns; /* 0: no future check (the fuzz harness, unit tests) */
};

/* The span records of one request. recs[0..n) point into the arrays and strings held here
 * (and into the unpacked request): valid until tv_otlp_spans_free. */
struct tv_otlp_spans {
	Tracevault__Otlp__V1__ExportTraceServiceRequest *req;
	Tracevault__V1__TraceRecord *recs;
	size_t n;
	uint64_t received;  /* spans in the request */
	uint64_t rejected;  /* spans refused (received - n) */
	char reject_msg[256]; /* the first refusal, "" when none: "span 3: trace_id is 15 bytes..." */
	/* storage the records point into */
	Tracevault__V1__Span *spans;
	Tracevault__V1__SpanAttribute *attrs;
	Tracevault__V1__SpanAttribute **attr_ptrs;
	char *hex; /* 3 x 33 bytes per record: trace_id, span_id, parent_span_id */
	/* The arena req is unpacked into: a few large blocks instead of one malloc per span,
	 * attribute, value and string (those mallocs and their frees were a fifth of the
	 * server's CPU per span, bench/README.md "OTLP ingest"). Freed whole. */
	struct tv_otlp_arena_block *arena;
	size_t arena_blocks; /* blocks malloc'd for the unpack (a 512-span request: 1 or 2) */
};

/* Decode the ExportTraceServiceRequest msg[0, len) into span records under lim, now_ns the
 * server's wall clock (unix ns). A span is refused (counted in rejected, the first reason in
 * reject_msg), never the request, when its trace_id is not 16 bytes or all zero, its span_id
 * not 8 bytes or all zero, its parent_span_id neither empty nor 8 bytes, its start time 0,
 * its end before its start, either time beyond TV_OTLP_MAX_TIME_NS, its start more than
 * lim->max_future_skew_ns after now_ns, or a string the record would keep (name, trace
 * state, status message, an attribute's key or string value, its scope's name or version,
 * its resource's service.name) holds a NUL byte: the record's strings end at a NUL, so it
 * is refused rather than stored cut. Returns 0 with *out filled (free with
 * tv_otlp_spans_free, also on error), -EBADMSG when msg is not such a protobuf message,
 * -ENOMEM. */
int tv_otlp_spans_decode(const uint8_t *msg, size_t len, const struct tv_otlp_limits *lim,
			 uint64_t now_ns, struct tv_otlp_spans *out);
void tv_otlp_spans_free(struct tv_otlp_spans *s);

#endif
