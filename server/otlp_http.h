/* OTLP/HTTP ingest: POST /v1/traces on the --http-addr port (the OTLP specification's
 * "OTLP/HTTP" section; README "OTLP ingest"). The body, a binary protobuf
 * ExportTraceServiceRequest (Content-Type application/x-protobuf; JSON is answered 415),
 * optionally gzip-encoded (Content-Encoding: gzip), is read whole with a cap of
 * --otlp-max-message-bytes (raw and decompressed alike: 413 past it) and sent as is, as one
 * unary Export call, to this very server over its private unix socket (server/local_rpc.h):
 * the durability, limits, partial success, throttling and metrics are the gRPC path's, and
 * the 200 is sent only once the Export's reply says the spans are durable.
 *
 * Answers: 200 with the ExportTraceServiceResponse the Export gave (partial_success when
 * spans were refused); 400 (bad protobuf or gzip), 413, 415, 500 with a google.rpc.Status
 * protobuf body; a throttled Export (RESOURCE_EXHAUSTED with a google.rpc.RetryInfo) is 503
 * with "Retry-After: <seconds>" and that Status (its RetryInfo) as the body; the Export's
 * other retryable failures (UNAVAILABLE ...) 503, its deadline (--http-timeout-ms) 504. */
#ifndef TV_SERVER_OTLP_HTTP_H
#define TV_SERVER_OTLP_HTTP_H

#include <stddef.h>

#include "common/metrics_http.h"

#define TV_OTLP_HTTP_PATH "/v1/traces"
#define TV_OTLP_HTTP_CONTENT_TYPE "application/x-protobuf"

struct tv_otlp_http_opts {
	const char *rpc_addr;     /* the server's local gRPC address (local_rpc.h) */
	size_t max_message_bytes; /* --otlp-max-message-bytes: body cap, raw and decompressed */
	unsigned timeout_ms;      /* --http-timeout-ms: the Export call's deadline */
};

struct tv_otlp_http;

/* 0 or -ENOMEM with a reason in err. o's strings must outlive it. */
int tv_otlp_http_new(struct tv_otlp_http **out, const struct tv_otlp_http_opts *o, char *err,
		     size_t errlen);
void tv_otlp_http_free(struct tv_otlp_http *x); /* NULL: nothing */

/* Serve TV_OTLP_HTTP_PATH on h with x (before tv_metrics_http_serve). */
void tv_otlp_http_attach(struct tv_otlp_http *x, struct tv_metrics_http *h);

#endif
