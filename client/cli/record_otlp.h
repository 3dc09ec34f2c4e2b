/* `query --format otlp-json`: records as OpenTelemetry spans in the OTLP JSON encoding, so OTLP
 * tools (the collector's otlpjsonfile receiver, anything that parses the published
 * opentelemetry-proto schema) load them. README "Output formats" documents the mapping. */
#ifndef TV_RECORD_OTLP_H
#define TV_RECORD_OTLP_H

#include <stdint.h>

#include "cli/out_buf.h"
#include "proto/exchange_span.h" /* the mapping: ids, name, kind, attributes */
#include "tracevault.pb-c.h"

/* Spans per output line: each line is one ExportTraceServiceRequest (opentelemetry-proto
 * collector/trace/v1) of at most this many spans, the collector's file exporter's shape. */
#define TV_OTLP_BATCH_SPANS 1000
/* Scope name of every span (InstrumentationScope.name); its version is TV_VERSION. */
#define TV_OTLP_SCOPE_NAME "tracevault"

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
