/* The --metrics-addr endpoint of both binaries: GET /metrics answers the Prometheus text
 * exposition of a struct tv_metrics (common/metrics.h), served by Debian's libmicrohttpd on its
 * own thread beside the caller's loop. HEAD /metrics answers GET's headers; any other method
 * is 405, any other path 404. */
#ifndef TV_COMMON_METRICS_HTTP_H
#define TV_COMMON_METRICS_HTTP_H

#include <stddef.h>

#include "common/limit.h"
#include "common/metrics.h"

/* The path served, and the Content-Type of the text format it answers with. */
#define TV_METRICS_PATH "/metrics"
#define TV_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* The port's connection bounds, so that slow or stuck clients cannot keep the others out
 * (tests/integration/test_http_slow_clients.py). Each is an option of both binaries, named
 * after the option that opens the port (tracevaultd --http-max-connections and so on beside
 * --http-addr; capture --metrics-max-connections and so on beside --metrics-addr), checked
 * against the tv_limit below, which the CLIs' messages and --help state:
 * - at most max_connections at once (TV_METRICS_DEFAULT_MAX_CONNECTIONS; at least one per
 *   thread of the pool, TV_HTTP_THREADS: libmicrohttpd 0.9.75 splits the limit among its
 *   threads, and a thread given none never ends, hanging tv_metrics_http_stop; at most
 *   TV_METRICS_MAX_CONNECTIONS_MAX); more wait in the listen queue
 *   (TV_METRICS_LISTEN_BACKLOG) until one ends. A connection costs a descriptor and
 *   libmicrohttpd's 32 KiB pool, nothing else (no thread: the pool's threads poll them all).
 * - at most max_connections_per_ip of them from one client address (0: no cap), more being
 *   closed at accept, when the port is reachable from the network (tv_metrics_http_exposed):
 *   a remote client then cannot take every slot from Prometheus or a browser. On a loopback
 *   port every client is 127.0.0.1 (or ::1): a cap per address would be a smaller pool for
 *   all of them, turning a wait into a refusal, so there is none, whatever the option says.
 * - every request is received whole (headers, and a POST's body) within request_timeout_ms
 *   of its connection's accept or of the previous request's end, else the connection is
 *   shut down: a client trickling bytes holds a slot that long, not as long as it keeps
 *   trickling (libmicrohttpd 0.9.75 has no such deadline of its own; OTLP exporters give up
 *   on a request after 10 s by default anyway). The watchdog looks every 250 ms, so a cut
 *   comes up to that much late.
 * - a connection on which nothing moves for idle_timeout_ms is closed (libmicrohttpd's idle
 *   timeout: also an answer the client does not read). libmicrohttpd counts it in whole
 *   seconds, so its bound has a step of 1000 ms. */
#define TV_METRICS_DEFAULT_MAX_CONNECTIONS 64
#define TV_METRICS_MAX_CONNECTIONS_MAX 1024
#define TV_METRICS_DEFAULT_MAX_CONNECTIONS_PER_IP 16
#define TV_METRICS_LISTEN_BACKLOG 128
#define TV_METRICS_DEFAULT_REQUEST_TIMEOUT_MS 10000
#define TV_METRICS_DEFAULT_IDLE_TIMEOUT_MS 10000
/* both timeouts: 1 s to 1 h */
#define TV_METRICS_MIN_TIMEOUT_MS 1000
#define TV_METRICS_MAX_TIMEOUT_MS (3600 * 1000)
/* max_connections TV_HTTP_THREADS to TV_METRICS_MAX_CONNECTIONS_MAX; max_connections_per_ip
 * 0 to TV_METRICS_MAX_CONNECTIONS_MAX (at or above max_connections it caps nothing more);
 * request_timeout_ms TV_METRICS_MIN_TIMEOUT_MS to TV_METRICS_MAX_TIMEOUT_MS; idle_timeout_ms
 * the same in whole seconds */
extern const struct tv_limit tv_metrics_max_connections_limit,
	tv_metrics_max_connections_per_ip_limit, tv_metrics_request_timeout_ms_limit,
	tv_metrics_idle_timeout_ms_limit;

/* The bounds one endpoint applies. int fields: the CLIs' option tables store counts and ms
 * durations as int (client/cli/cli.h). */
struct tv_metrics_http_limits {
	int max_connections;
	int max_connections_per_ip; /* 0: no cap; applied only when tv_metrics_http_exposed */
	int request_timeout_ms;
	int idle_timeout_ms;
};

/* The defaults above. */
struct tv_metrics_http_limits tv_metrics_http_limits_default(void);

/* 0 if every field of l is within its tv_limit, else -ERANGE with the first one out of bound
 * named in why ("max_connections 2: want 4 to 1024"): the CLIs check each option as they
 * parse it, this is the endpoint's own check of what it is handed. */
int tv_metrics_http_limits_check(const struct tv_metrics_http_limits *l, char *why,
				 size_t whylen);

/* Descriptors the endpoint may hold once serving with max_connections, beside its listen
 * socket: its connections, and an epoll and an eventfd for each thread of the pool and for
 * its master (tracevaultd's descriptor plan reserves them, server/fd_plan.h). */
#define TV_METRICS_MAX_FDS(max_connections) ((max_connections) + 2 * (TV_HTTP_THREADS + 1))

struct tv_metrics_http;

/* The line both CLIs log after "metrics on ..." when tv_metrics_http_exposed: one %s, the
 * bound HOST:PORT. */
#define TV_METRICS_EXPOSED_WARNING                                                        \
	"warning: metrics on http://%s" TV_METRICS_PATH " are reachable from the network "  \
	"(not loopback; no TLS, no authentication)"

/* 1 when hostport's host is not loopback (tv_host_is_loopback: 127.0.0.0/8, ::1, localhost;
 * a name is not resolved), so the endpoint is reachable from the network: the metrics hold no
 * secret but tell anyone who reaches them how the process runs. 0 for a loopback host or an
 * address that does not parse. */
int tv_metrics_http_exposed(const char *hostport);

/* 0 if s is HOST:PORT (common/addr.h, port 0 to 65535), else -EINVAL: the CLIs check
 * --metrics-addr with it as a usage error before anything starts. */
int tv_metrics_http_check_addr(const char *s);

/* The endpoint in two steps, so that both binaries check the port before anything else
 * starts and start the thread only when they are ready to be scraped: tracevaultd binds
 * before it touches the data dir and serves once gRPC is up; capture binds before any probe
 * loads and serves after its capability drop (no thread may exist before it).
 *
 * bind loads libmicrohttpd (dlopen of TV_MHD_SONAME: the statically linked CLI pays for it
 * and its GnuTLS only when it serves metrics) and binds and listens on hostport (resolved
 * with getaddrinfo, its first address; port 0 picks a free one); no thread. limits are the
 * connection bounds serve applies (copied; NULL: tv_metrics_http_limits_default()). bound
 * gets "HOST:PORT" with the bound port (boundlen bytes with the NUL). Returns 0 with *out
 * set, or a negative errno with a one-line reason in err naming the address: -EADDRINUSE
 * ("--metrics-addr H:P: the port is in use"), the resolver's or bind's failure, -ENOENT when
 * libmicrohttpd cannot be loaded, -ERANGE for limits out of bound
 * (tv_metrics_http_limits_check).
 *
 * serve starts libmicrohttpd's thread answering with m, which must outlive the endpoint (its
 * collect hook and value reads run on that thread). Returns 0, -EIO when libmicrohttpd does
 * not start, -EINVAL when already serving. Free with tv_metrics_http_stop either way. */
int tv_metrics_http_bind(struct tv_metrics_http **out, const char *hostport,
			 const struct tv_metrics_http_limits *limits, char *bound, size_t boundlen,
			 char *err, size_t errlen);
int tv_metrics_http_serve(struct tv_metrics_http *h, const struct tv_metrics *m, char *err,
			  size_t errlen);

/* ---- other paths: the HTTP API (server/http_api.h) ----
 * With a handler set (before serve), every GET or HEAD of a path other than /metrics goes to
 * it, on one of TV_HTTP_THREADS libmicrohttpd threads: a handler may block (it waits on
 * gRPC calls) without holding up the others or a scrape for longer than that. */
#define TV_HTTP_THREADS 4

/* One request as the handler sees it. */
struct tv_http_req;
/* The value of the query argument name (percent-decoded by libmicrohttpd), or NULL. Valid
 * during the handler's call. */
const char *tv_http_arg(const struct tv_http_req *rq, const char *name);

/* Every value of the repeatable query argument name ("?traceID=a&traceID=b"), in request
 * order: the first max into values (pointers valid during the handler's call). Returns how
 * many the request has (may be above max). */
size_t tv_http_args(const struct tv_http_req *rq, const char *name, const char **values,
		    size_t max);

/* libmicrohttpd's memory per connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT; its default is
 * 32 KiB): the request line and headers and the list of its arguments live in it, and a
 * request that does not fit is cut (414, or the connection closed without an answer when the
 * argument list overflows it: ~600 arguments at 32 KiB). 128 KiB holds a Jaeger lookup of
 * the default --http-max-traces (1000 traceID, ~90 bytes each). Touched only as used. */
#define TV_HTTP_CONNECTION_MEMORY_BYTES (128u << 10)

/* At most this many single-valued query arguments in one request (the names not in
 * tv_http_args_check's multi): it refuses more. No route reads more than a dozen; the bound
 * is the check's own array. A repeatable name is bounded by its route (traceID: by
 * --http-max-traces) and the URL by TV_HTTP_CONNECTION_MEMORY_BYTES. */
#define TV_HTTP_MAX_ARGS 256

/* Are the request's query arguments well formed for a handler that reads each name once
 * (tv_http_arg), except the names in multi (NULL-terminated; read with tv_http_args)? A
 * name or value holding a NUL byte ("status=404%00x": C strings would end at the NUL and
 * the rest be ignored), a single-valued name given twice ("status=5xx&status=404": which one
 * wins would be a guess) and more than TV_HTTP_MAX_ARGS single-valued arguments are refused.
 * Empty pieces ("a=1&&b=2": an argument without a name) are skipped, as Go's url.ParseQuery
 * (Jaeger's) skips them. 0, or -EINVAL with a one-line reason in err (errlen bytes). */
int tv_http_args_check(const struct tv_http_req *rq, const char *const *multi, char *err,
		       size_t errlen);

/* The value of the request header name (case-insensitive), or NULL. Valid during the
 * handler's call. */
const char *tv_http_header(const struct tv_http_req *rq, const char *name);

/* The handler's answer: status, body (malloc'd and handed over, freed by the endpoint; or a
 * static string with body_static set) of len bytes, content_type a static string;
 * retry_after_s > 0 adds "Retry-After: N" (seconds, RFC 9110 10.2.3). */
struct tv_http_reply {
	unsigned status;
	char *body;
	size_t len;
	int body_static;
	const char *content_type;
	unsigned retry_after_s;
};

/* Answer url (the path, percent-decoded, without the query). 0 with *out filled, -ENOENT
 * for a path it does not serve (404), or another negative errno (500). Called from several
 * threads at once. */
typedef int (*tv_http_handler)(void *arg, const char *url, const struct tv_http_req *rq,
			       struct tv_http_reply *out);
void tv_metrics_http_set_handler(struct tv_metrics_http *h, tv_http_handler fn, void *arg);

/* ---- one POST path with a body: OTLP/HTTP (server/otlp_http.h) ----
 * A request for path goes to the post handler, any other method on it is 405 with
 * "Allow: POST". The handler is called up to twice, on a libmicrohttpd thread:
 *   TV_HTTP_POST_HEADERS before the body is read (body NULL): it may answer at once (out's
 *     status set, e.g. 415 for a Content-Type it does not take) or leave status 0 to read on;
 *   TV_HTTP_POST_BODY with the whole body (len bytes, at most max_body_bytes; body is valid
 *     during the call, not NUL-terminated), or
 *   TV_HTTP_POST_TOO_LARGE (body NULL) when Content-Length or the bytes received pass
 *     max_body_bytes: the body is not kept (read on and dropped, up to TV_HTTP_DISCARD_BYTES
 *     more, then the connection is closed).
 * Returns as tv_http_handler (0 with *out filled, or a negative errno: 500). */
enum tv_http_post_phase { TV_HTTP_POST_HEADERS, TV_HTTP_POST_BODY, TV_HTTP_POST_TOO_LARGE };
#define TV_HTTP_DISCARD_BYTES (16u << 20)
typedef int (*tv_http_post_handler)(void *arg, const struct tv_http_req *rq,
				    enum tv_http_post_phase phase, const void *body, size_t len,
				    struct tv_http_reply *out);
/* Set before serve; path must outlive the endpoint. */
void tv_metrics_http_set_post(struct tv_metrics_http *h, const char *path,
			      size_t max_body_bytes, tv_http_post_handler fn, void *arg);

/* Stop serving (joins the thread, closes the socket) and free. Safe on NULL. */
void tv_metrics_http_stop(struct tv_metrics_http *h);

#endif
