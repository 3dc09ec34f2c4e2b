/* tracevaultd's HTTP API on the --http-addr port (beside /metrics, common/metrics_http.h):
 * the Jaeger query API (server/jaeger_api.c: /api/services, /api/services/S/operations,
 * /api/operations, /api/traces, /api/traces/ID), the page's own routes (/api/tracevault/...)
 * and the page itself (GET /, web/index.html embedded in the binary). README "HTTP API"
 * documents every route and the exchange -> span mapping.
 *
 * Every answer comes from Query and Summary calls on this server over its private unix
 * socket (server/local_rpc.h). Bounds, each a tracevaultd option: the records one request
 * reads (--http-max-spans), its time (--http-timeout-ms, the calls' deadline), its answer's
 * size (--http-max-response-bytes), traces per search (--http-max-traces). A bad parameter
 * is 400 with a JSON error naming it; a path from the network is never a file name. */
#ifndef TV_SERVER_HTTP_API_H
#define TV_SERVER_HTTP_API_H

#include <stddef.h>
#include <stdint.h>

#include "common/limit.h"
#include "common/metrics_http.h"

#define TV_HTTP_DEFAULT_MAX_SPANS 100000
#define TV_HTTP_DEFAULT_TIMEOUT_MS 10000
#define TV_HTTP_DEFAULT_MAX_RESPONSE_BYTES (16u << 20)
#define TV_HTTP_DEFAULT_MAX_TRACES 1000
/* A search without start/end/lookback looks back this far (Jaeger UI's default is 1h). */
#define TV_HTTP_DEFAULT_LOOKBACK_NS (3600ull * 1000000000ull)
/* /api/services and operations look back this far (Jaeger's have no window). */
#define TV_HTTP_SERVICES_LOOKBACK_NS (7ull * 24 * 3600 * 1000000000ull)
/* Their lists: the exchanges' names come from Summary calls (exact); the span records' from
 * one Query reading at most this many times --http-max-spans span records, newest first (a
 * cut is said in the answer's errors); at most TV_HTTP_MAX_NAMES names per answer. */
#define TV_HTTP_NAMES_SCAN_FACTOR 10u
#define TV_HTTP_MAX_NAMES 10000u
/* The spans of a trace a search found are fetched from its window widened by this much
 * on each side (a trace's spans may start before or after the one that matched). */
#define TV_HTTP_TRACE_MARGIN_NS (3600ull * 1000000000ull)
/* The rates route's buckets per answer, at most. */
#define TV_HTTP_MAX_BUCKETS 500
/* A search's tags and tag arguments together, at most (both repeat, as in Jaeger). */
#define TV_HTTP_MAX_TAG_ARGS 64
/* --service-name entries at most. */
#define TV_HTTP_MAX_SERVICE_NAMES 64
extern const struct tv_limit tv_http_max_spans_limit, tv_http_timeout_ms_limit,
	tv_http_max_response_bytes_limit, tv_http_max_traces_limit;

struct tv_http_api_opts {
	const char *rpc_addr;       /* the server's local gRPC address (local_rpc.h) */
	size_t max_message_bytes;   /* the largest reply accepted from it */
	/* --service-name COMM=NAME: an exchange whose comm is COMM belongs to service NAME
	 * (default: its comm; "unknown_service" when it has none) */
	const char *const *service_names;
	size_t n_service_names;
	uint64_t max_spans;         /* 0: the defaults above */
	unsigned timeout_ms;
	size_t max_response_bytes;
	unsigned max_traces;
};

struct tv_http_api;

/* 0 if s is COMM=NAME (each non-empty, at most 255 bytes), else -EINVAL. */
int tv_http_check_service_name(const char *s);

/* The API with o (its strings must outlive it). 0 or -ENOMEM with a reason in err. */
int tv_http_api_new(struct tv_http_api **out, const struct tv_http_api_opts *o, char *err,
		    size_t errlen);
void tv_http_api_free(struct tv_http_api *a); /* NULL: nothing */

/* The tv_http_handler (common/metrics_http.h) that serves it; arg is the tv_http_api. */
int tv_http_api_handle(void *arg, const char *url, const struct tv_http_req *rq,
		       struct tv_http_reply *out);

#endif
