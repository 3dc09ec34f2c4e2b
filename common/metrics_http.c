/* The --metrics-addr HTTP endpoint (common/metrics_http.h) over libmicrohttpd. We bind the
 * socket ourselves (so a port in use is reported as such, with the address) and hand it to
 * libmicrohttpd, which runs its own epoll thread: the caller's gRPC loop and capture loop never
 * wait on a scrape, and a scrape reads the counters through relaxed atomics only. A watchdog
 * thread of ours adds the request deadline libmicrohttpd lacks (metrics_http.h: slow clients).
 *
 * Why dlopen: the tracevault CLI is linked from static archives so that a short query starts
 * fast (CMakeLists.txt, bench/README.md). Debian's libmicrohttpd.a needs GnuTLS, whose p11-kit
 * and libunistring ship no archive, so linking it in would map ~10 shared objects into every
 * `tracevault query` (an empty main() linked with -lmicrohttpd: 12.5 ms task-clock against
 * 4.6 ms, perf stat -r 40, this VM). Loaded here, only a process given --metrics-addr pays. The
 * prototypes come from <microhttpd.h> through __typeof__, so the compiler checks every call. */
#define _GNU_SOURCE /* program_invocation_short_name */
#include "common/metrics_http.h"

#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/addr.h"

#ifndef TV_MHD_SONAME
#error "TV_MHD_SONAME: the build defines it from libmicrohttpd's SONAME (CMakeLists.txt)"
#endif

/* The libmicrohttpd functions used, resolved from the loaded library. */
struct mhd_api {
	__typeof__(MHD_start_daemon) *start_daemon;
	__typeof__(MHD_stop_daemon) *stop_daemon;
	__typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
	__typeof__(MHD_add_response_header) *add_response_header;
	__typeof__(MHD_queue_response) *queue_response;
	__typeof__(MHD_destroy_response) *destroy_response;
	__typeof__(MHD_lookup_connection_value) *lookup_connection_value;
	__typeof__(MHD_get_connection_values_n) *get_connection_values_n;
	__typeof__(MHD_get_connection_info) *get_connection_info;
	__typeof__(MHD_http_unescape) *http_unescape;
};

/* One connection as the request deadline sees it (limits.request_timeout_ms): an entry
 * of the endpoint's list from libmicrohttpd's STARTED notice to its CLOSED one, which comes
 * before libmicrohttpd closes fd, so fd is this connection's while it is listed. */
enum conn_step {
	CONN_RECEIVING, /* waiting on the client for a request, since since_ms */
	CONN_HANDLING,  /* in our access handler: the server's time, not the client's */
	CONN_ANSWERED,  /* a response is queued: the idle timeout bounds the rest */
};

#define NUL_TRACKED 4

struct conn {
	struct conn *prev, *next;
	int fd;
	enum conn_step step;
	uint64_t since_ms; /* CLOCK_MONOTONIC: the accept, or the previous request's end */
	bool cut;          /* shut down by the watchdog */
	/* the current request's strings whose %-decoding made a NUL byte (unescape): its path
	 * is refused when it is one of them; more than NUL_TRACKED: all of the request's */
	const char *nul_at[NUL_TRACKED];
	unsigned n_nul;
};

struct tv_metrics_http {
	void *lib; /* dlopen handle */
	struct mhd_api api;
	struct MHD_Daemon *daemon;
	const struct tv_metrics *m;
	tv_http_handler handler; /* other paths, or NULL: 404 */
	void *handler_arg;
	const char *post_path; /* the POST path (tv_metrics_http_set_post), or NULL */
	size_t post_max;
	tv_http_post_handler post_fn;
	void *post_arg;
	int fd;     /* the bound socket until the daemon takes it; -1 after */
	int family; /* its address family */
	char hostport[300]; /* as given, for the messages of serve */
	struct tv_metrics_http_limits limits; /* the connection bounds serve applies */
	/* the request deadline: the connections (lock), and the watchdog thread that shuts
	 * down those past it, woken early by stop (wake) */
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct conn *conns;
	bool stopping;
	bool watchdog_running;
	bool sync_ready; /* lock and wake made */
	pthread_t watchdog;
};

/* How often the watchdog looks at the connections: a slow one is cut at most this late
 * (common/metrics_http.h states it). */
#define DEADLINE_CHECK_MS 250

const struct tv_limit tv_metrics_max_connections_limit = {
	.min = TV_HTTP_THREADS, .max = TV_METRICS_MAX_CONNECTIONS_MAX };
const struct tv_limit tv_metrics_max_connections_per_ip_limit = {
	.min = 0, .max = TV_METRICS_MAX_CONNECTIONS_MAX };
const struct tv_limit tv_metrics_request_timeout_ms_limit = {
	.min = TV_METRICS_MIN_TIMEOUT_MS, .max = TV_METRICS_MAX_TIMEOUT_MS };
/* libmicrohttpd's MHD_OPTION_CONNECTION_TIMEOUT is in seconds */
const struct tv_limit tv_metrics_idle_timeout_ms_limit = {
	.min = TV_METRICS_MIN_TIMEOUT_MS, .max = TV_METRICS_MAX_TIMEOUT_MS, .step = 1000 };

struct tv_metrics_http_limits tv_metrics_http_limits_default(void)
{
	return (struct tv_metrics_http_limits){
		.max_connections = TV_METRICS_DEFAULT_MAX_CONNECTIONS,
		.max_connections_per_ip = TV_METRICS_DEFAULT_MAX_CONNECTIONS_PER_IP,
		.request_timeout_ms = TV_METRICS_DEFAULT_REQUEST_TIMEOUT_MS,
		.idle_timeout_ms = TV_METRICS_DEFAULT_IDLE_TIMEOUT_MS,
	};
}

int tv_metrics_http_limits_check(const struct tv_metrics_http_limits *l, char *why,
				 size_t whylen)
{
	const struct {
		const char *name;
		int v;
		const struct tv_limit *limit;
	} f[] = {
		{ "max_connections", l->max_connections, &tv_metrics_max_connections_limit },
		{ "max_connections_per_ip", l->max_connections_per_ip,
		  &tv_metrics_max_connections_per_ip_limit },
		{ "request_timeout_ms", l->request_timeout_ms,
		  &tv_metrics_request_timeout_ms_limit },
		{ "idle_timeout_ms", l->idle_timeout_ms, &tv_metrics_idle_timeout_ms_limit },
	};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		char bound[64];

		if (f[i].v >= 0 && tv_limit_check(f[i].limit, (uint64_t)f[i].v) == 0)
			continue;
		tv_limit_format(f[i].limit, false, bound, sizeof(bound));
		snprintf(why, whylen, "%s %d: want %s", f[i].name, f[i].v, bound);
		return -ERANGE;
	}
	return 0;
}
/* the Allow header of a 405 */
#define METHODS_ALLOWED MHD_HTTP_METHOD_GET ", " MHD_HTTP_METHOD_HEAD

int tv_metrics_http_check_addr(const char *s)
{
	char host[NI_MAXHOST];
	unsigned port;

	return tv_hostport_parse(s, host, sizeof(host), &port) ? -EINVAL : 0;
}

int tv_metrics_http_exposed(const char *hostport)
{
	char host[NI_MAXHOST];
	unsigned port;

	return !tv_hostport_parse(hostport, host, sizeof(host), &port) &&
	       !tv_host_is_loopback(host);
}

/* ---- the request deadline (limits.request_timeout_ms) ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The list entry of conn, or NULL (its STARTED notice found no memory: it has no deadline,
 * the idle timeout still bounds it). */
static struct conn *conn_of(struct tv_metrics_http *h, struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		h->api.get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* Move c from step from (any step when from is -1) to step to; a request's end (to
 * CONN_RECEIVING from any step) restarts its clock. */
static void conn_step(struct tv_metrics_http *h, struct conn *c, int from, enum conn_step to)
{
	if (!c)
		return;
	pthread_mutex_lock(&h->lock);
	if (from < 0 || c->step == (enum conn_step)from) {
		if (from < 0)
			c->since_ms = now_ms();
		c->step = to;
	}
	pthread_mutex_unlock(&h->lock);
}

/* libmicrohttpd's notice of a connection's start (list it) and end (unlist it: the notice
 * comes before libmicrohttpd closes the socket, so the watchdog never touches a descriptor
 * number reused by another file). Runs on the pool's threads. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct tv_metrics_http *h = cls;
	struct conn *c = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			h->api.get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		c = ci ? calloc(1, sizeof(*c)) : NULL;
		if (!c)
			return; /* no deadline for this one (conn_of) */
		c->fd = ci->connect_fd;
		c->step = CONN_RECEIVING;
		c->since_ms = now_ms();
		pthread_mutex_lock(&h->lock);
		c->next = h->conns;
		if (h->conns)
			h->conns->prev = c;
		h->conns = c;
		pthread_mutex_unlock(&h->lock);
		*socket_context = c;
		return;
	}
	if (!c)
		return;
	pthread_mutex_lock(&h->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	pthread_mutex_unlock(&h->lock);
	free(c);
	*socket_context = NULL;
}

/* The watchdog thread: every DEADLINE_CHECK_MS, shut down the connections that have waited on
 * their client for a request longer than limits.request_timeout_ms. libmicrohttpd 0.9.75
 * has no call to close a connection from outside its callbacks, and its callbacks run only
 * when bytes arrive; shutdown(2) makes the socket readable at its end, so libmicrohttpd's
 * next read sees it and closes the connection through its usual path (CLOSED notice, then
 * close). */
static void *watchdog_main(void *arg)
{
	struct tv_metrics_http *h = arg;
	const uint64_t deadline_ms = (uint64_t)h->limits.request_timeout_ms;

	pthread_mutex_lock(&h->lock);
	while (!h->stopping) {
		uint64_t now = now_ms();
		struct timespec ts;

		for (struct conn *c = h->conns; c; c = c->next)
			if (c->step == CONN_RECEIVING && !c->cut && now - c->since_ms >= deadline_ms) {
				/* ENOTCONN (the client left already) needs nothing more */
				(void)shutdown(c->fd, SHUT_RDWR);
				c->cut = true;
			}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += DEADLINE_CHECK_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&h->wake, &h->lock, &ts);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Answer with a copy of text (a short fixed body) or, when owned is set, with body itself,
 * which the response frees; allow is the Allow header of a 405 (NULL: GET, HEAD),
 * retry_after_s > 0 a Retry-After header. */
static enum MHD_Result respond_ex(struct tv_metrics_http *h, struct MHD_Connection *conn,
				  unsigned status, char *body, size_t len, int owned,
				  const char *content_type, const char *allow,
				  unsigned retry_after_s)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char retry[16];

	r = h->api.create_response_from_buffer(len, body, owned ? MHD_RESPMEM_MUST_FREE :
								  MHD_RESPMEM_MUST_COPY);
	if (!r) {
		if (owned)
			free(body);
		return MHD_NO; /* libmicrohttpd closes the connection */
	}
	snprintf(retry, sizeof(retry), "%u", retry_after_s);
	if (h->api.add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    (status == MHD_HTTP_METHOD_NOT_ALLOWED &&
	     h->api.add_response_header(r, MHD_HTTP_HEADER_ALLOW,
					allow ? allow : METHODS_ALLOWED) != MHD_YES) ||
	    (retry_after_s &&
	     h->api.add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry) != MHD_YES)) {
		h->api.destroy_response(r);
		return MHD_NO;
	}
	ret = h->api.queue_response(conn, status, r);
	h->api.destroy_response(r); /* the queue holds its own reference */
	if (ret == MHD_YES) /* the request was received whole: its deadline is over */
		conn_step(h, conn_of(h, conn), CONN_HANDLING, CONN_ANSWERED);
	return ret;
}

static enum MHD_Result respond(struct tv_metrics_http *h, struct MHD_Connection *conn,
			       unsigned status, char *body, size_t len, int owned,
			       const char *content_type)
{
	return respond_ex(h, conn, status, body, len, owned, content_type, NULL, 0);
}

/* Answer with a handler's reply (its body handed over unless static). */
static enum MHD_Result respond_reply(struct tv_metrics_http *h, struct MHD_Connection *conn,
				     const struct tv_http_reply *out, const char *allow)
{
	return respond_ex(h, conn, out->status, out->body, out->len, !out->body_static,
			  out->content_type, allow, out->retry_after_s);
}

struct tv_http_req {
	struct tv_metrics_http *h;
	struct MHD_Connection *conn;
};

const char *tv_http_arg(const struct tv_http_req *rq, const char *name)
{
	return rq->h->api.lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct args_walk {
	const char *name;
	const char **values;
	size_t n, max, total;
};

static enum MHD_Result args_walk_cb(void *cls, enum MHD_ValueKind kind, const char *key,
				    size_t key_size, const char *value, size_t value_size)
{
	struct args_walk *w = cls;

	(void)kind;
	(void)key_size;
	(void)value_size;
	if (key && !strcmp(key, w->name)) {
		if (w->n < w->max)
			w->values[w->n++] = value ? value : "";
		w->total++;
	}
	return MHD_YES;
}

size_t tv_http_args(const struct tv_http_req *rq, const char *name, const char **values,
		    size_t max)
{
	struct args_walk w = { name, values, 0, max, 0 };

	rq->h->api.get_connection_values_n(rq->conn, MHD_GET_ARGUMENT_KIND, args_walk_cb, &w);
	return w.total;
}

/* The walk of tv_http_args_check: every single-valued name (up to TV_HTTP_MAX_ARGS), and the
 * first one holding a NUL byte. */
struct args_check {
	const char *const *multi;
	const char *names[TV_HTTP_MAX_ARGS];
	size_t n, total;
	const char *nul_in; /* the name whose name or value holds a NUL, or NULL */
};

static bool is_multi(const char *const *multi, const char *name)
{
	for (; multi && *multi; multi++)
		if (!strcmp(*multi, name))
			return true;
	return false;
}

static enum MHD_Result args_check_cb(void *cls, enum MHD_ValueKind kind, const char *key,
				     size_t key_size, const char *value, size_t value_size)
{
	struct args_check *c = cls;

	(void)kind;
	if (!key || key_size == 0)
		return MHD_YES; /* an empty piece, or "=x": no route reads a nameless argument */
	if (!c->nul_in && (strlen(key) != key_size || (value && strlen(value) != value_size)))
		c->nul_in = key;
	if (is_multi(c->multi, key))
		return MHD_YES;
	if (c->n < TV_HTTP_MAX_ARGS)
		c->names[c->n++] = key;
	c->total++;
	return MHD_YES;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int tv_http_args_check(const struct tv_http_req *rq, const char *const *multi, char *err,
		       size_t errlen)
{
	struct args_check *c = calloc(1, sizeof(*c));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->multi = multi;
	rq->h->api.get_connection_values_n(rq->conn, MHD_GET_ARGUMENT_KIND, args_check_cb, c);
	if (c->total > TV_HTTP_MAX_ARGS) {
		snprintf(err, errlen, "%zu query arguments: at most %d (TV_HTTP_MAX_ARGS)",
			 c->total, TV_HTTP_MAX_ARGS);
		ret = -EINVAL;
		goto out;
	}
	if (c->nul_in) {
		snprintf(err, errlen, "query argument '%.64s' holds a NUL byte (%%00)", c->nul_in);
		ret = -EINVAL;
		goto out;
	}
	qsort(c->names, c->n, sizeof(c->names[0]), cmp_names);
	for (size_t i = 1; i < c->n; i++) {
		if (strcmp(c->names[i - 1], c->names[i]))
			continue;
		snprintf(err, errlen, "query argument '%.64s' given more than once; it takes "
			 "one value", c->names[i]);
		ret = -EINVAL;
		goto out;
	}
out:
	free(c);
	return ret;
}

const char *tv_http_header(const struct tv_http_req *rq, const char *name)
{
	return rq->h->api.lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

void tv_metrics_http_set_post(struct tv_metrics_http *h, const char *path,
			      size_t max_body_bytes, tv_http_post_handler fn, void *arg)
{
	h->post_path = path;
	h->post_max = max_body_bytes;
	h->post_fn = fn;
	h->post_arg = arg;
}

void tv_metrics_http_set_handler(struct tv_metrics_http *h, tv_http_handler fn, void *arg)
{
	h->handler = fn;
	h->handler_arg = arg;
}

/* The one line a 500 leaves in the log (stderr): the program, the request and the errno the
 * handler failed with, so an internal failure is never silent. The URL is the client's: its
 * bytes outside printable ASCII are shown as '?' (no terminal escapes in the log), at most 200
 * of them. */
static void log_failure(const char *method, const char *url, int ret)
{
	char shown[201];
	size_t i;

	for (i = 0; url && url[i] && i < sizeof(shown) - 1; i++)
		shown[i] = url[i] >= 0x20 && url[i] < 0x7f ? url[i] : '?';
	shown[i] = '\0';
	fprintf(stderr, "%s: HTTP %s %s%s: answered 500: %s\n", program_invocation_short_name,
		method, shown, url && url[i] ? "..." : "", strerror(ret < 0 ? -ret : ret));
}

/* A path other than /metrics: the handler's answer, or 404. */
static enum MHD_Result on_other(struct tv_metrics_http *h, struct MHD_Connection *conn,
				const char *method, const char *url)
{
	static char not_found[] = "not found: try /metrics\n", failed[] = "internal error\n";
	struct tv_http_req rq = { h, conn };
	struct tv_http_reply out = { 0 };
	int ret;

	if (!h->handler)
		return respond(h, conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1, 0,
			       "text/plain");
	ret = h->handler(h->handler_arg, url, &rq, &out);
	if (ret == -ENOENT)
		return respond(h, conn, MHD_HTTP_NOT_FOUND, not_found, sizeof(not_found) - 1, 0,
			       "text/plain");
	if (ret) {
		log_failure(method, url, ret);
		return respond(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, failed,
			       sizeof(failed) - 1, 0, "text/plain");
	}
	/* a static body is copied: respond's owned flag is for malloc'd bodies */
	return respond_reply(h, conn, &out, NULL);
}

/* One POST request's state (libmicrohttpd's per-request pointer), freed when the request
 * ends (on_completed). */
struct post_req {
	uint8_t *buf; /* the body so far: len bytes of cap */
	size_t len, cap;
	size_t dropped;  /* bytes read and dropped past post_max */
	bool too_large;  /* past post_max: the body is not kept */
	bool answered;   /* a response is queued */
};

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode why)
{
	struct tv_metrics_http *h = cls;
	struct post_req *p = *req_cls;
	struct conn *c = conn_of(h, conn);

	(void)why;
	/* a keep-alive connection waits on its client for the next request from now */
	conn_step(h, c, -1, CONN_RECEIVING);
	if (c)
		c->n_nul = 0; /* the next request's strings are unescaped after this */
	if (p) {
		free(p->buf);
		free(p);
		*req_cls = NULL;
	}
}

/* Keep n more body bytes (the buffer doubles, up to post_max); past post_max drop them.
 * false: out of memory, or more than TV_HTTP_DISCARD_BYTES dropped (close the connection). */
static bool post_append(struct tv_metrics_http *h, struct post_req *p, const char *data,
			size_t n)
{
	if (!p->too_large && n > h->post_max - p->len) {
		p->too_large = true; /* the body is refused whole: no need to keep any of it */
		free(p->buf);
		p->buf = NULL;
		p->len = p->cap = 0;
	}
	if (p->too_large) {
		p->dropped += n;
		return p->dropped <= TV_HTTP_DISCARD_BYTES;
	}
	if (p->len + n > p->cap) {
		size_t cap = p->cap ? p->cap : 64u << 10;
		uint8_t *b;

		while (cap < p->len + n)
			cap *= 2;
		if (cap > h->post_max)
			cap = h->post_max;
		b = realloc(p->buf, cap);
		if (!b)
			return false;
		p->buf = b;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, n);
	p->len += n;
	return true;
}

/* The POST path: 405 for another method; otherwise the body read into a post_req and
 * handed to the post handler (common/metrics_http.h). */
static enum MHD_Result on_post(struct tv_metrics_http *h, struct MHD_Connection *conn,
			       const char *method, const char *upload_data,
			       size_t *upload_data_size, void **req_cls)
{
	static char not_allowed[] = "only POST\n", failed[] = "internal error\n";
	struct tv_http_req rq = { h, conn };
	struct tv_http_reply out = { 0 };
	struct post_req *p = *req_cls;
	enum tv_http_post_phase phase;
	const char *cl;
	int ret;

	if (strcmp(method, MHD_HTTP_METHOD_POST))
		return respond_ex(h, conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
				  sizeof(not_allowed) - 1, 0, "text/plain", MHD_HTTP_METHOD_POST,
				  0);
	if (!p) { /* the first call: headers only */
		unsigned long long n;
		char *end;

		p = calloc(1, sizeof(*p));
		if (!p)
			return MHD_NO;
		*req_cls = p;
		cl = h->api.lookup_connection_value(conn, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_CONTENT_LENGTH);
		phase = TV_HTTP_POST_HEADERS;
		if (cl && (n = strtoull(cl, &end, 10), !*end) && n > h->post_max)
			phase = TV_HTTP_POST_TOO_LARGE; /* refused before a byte is read */
	} else if (p->answered) {
		*upload_data_size = 0; /* answered already: drop what follows */
		return MHD_YES;
	} else if (*upload_data_size) {
		if (!post_append(h, p, upload_data, *upload_data_size))
			return MHD_NO; /* libmicrohttpd closes the connection */
		*upload_data_size = 0;
		return MHD_YES;
	} else {
		phase = p->too_large ? TV_HTTP_POST_TOO_LARGE : TV_HTTP_POST_BODY;
	}
	ret = h->post_fn(h->post_arg, &rq, phase, phase == TV_HTTP_POST_BODY ?
			 (p->buf ? (const void *)p->buf : "") : NULL, p->len, &out);
	if (ret) {
		log_failure("POST", h->post_path, ret);
		return respond(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, failed,
			       sizeof(failed) - 1, 0, "text/plain");
	}
	if (phase == TV_HTTP_POST_HEADERS && !out.status)
		return MHD_YES; /* read the body */
	p->answered = true;
	return respond_reply(h, conn, &out, NULL);
}

static enum MHD_Result route(struct tv_metrics_http *h, struct MHD_Connection *conn,
			    const char *url, const char *method, const char *upload_data,
			    size_t *upload_data_size, void **req_cls)
{
	static char not_allowed[] = "only GET and HEAD\n",
		    failed[] = "cannot render the metrics\n";
	char *body;
	size_t len;
	int ret;

	if (h->post_path && !strcmp(url, h->post_path))
		return on_post(h, conn, method, upload_data, upload_data_size, req_cls);
	/* answered on the first call, before any request body: libmicrohttpd then discards the
	 * body (or closes the connection). HEAD gets GET's answer: libmicrohttpd sends its
	 * headers (Content-Length included) without the body (RFC 9110 9.3.2). */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return respond(h, conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed,
			       sizeof(not_allowed) - 1, 0, "text/plain");
	if (strcmp(url, TV_METRICS_PATH))
		return on_other(h, conn, method, url);
	if ((ret = tv_metrics_render(h->m, &body, &len))) {
		log_failure(method, url, ret);
		return respond(h, conn, MHD_HTTP_INTERNAL_SERVER_ERROR, failed,
			       sizeof(failed) - 1, 0, "text/plain");
	}
	return respond(h, conn, MHD_HTTP_OK, body, len, 1, TV_METRICS_CONTENT_TYPE);
}

/* libmicrohttpd's access handler: route. A connection is never cut while we handle it (a
 * handler's gRPC calls, an Export): the deadline is on what the client sends. */
/* libmicrohttpd's unescaper for the path and every argument (MHD_OPTION_UNESCAPE_CALLBACK):
 * its own %HH decoding, noting each string where that made a NUL byte. An argument keeps
 * its length (tv_http_args_check refuses it by name); the path is handed over as a C
 * string, cut at the NUL ("/api/traces/ID%00junk" answered ID's trace), so route refuses
 * a request whose path is noted. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	struct tv_metrics_http *h = cls;
	size_t n = h->api.http_unescape(s);
	struct conn *c;

	if (memchr(s, '\0', n) && (c = conn_of(h, conn)) != NULL) {
		if (c->n_nul < NUL_TRACKED)
			c->nul_at[c->n_nul] = s;
		c->n_nul++;
	}
	return n;
}

/* Does the request's path hold a NUL byte (unescape)? */
static bool path_has_nul(struct tv_metrics_http *h, struct MHD_Connection *conn,
			 const char *url)
{
	struct conn *c = conn_of(h, conn);

	if (!c || !c->n_nul)
		return false;
	if (c->n_nul > NUL_TRACKED)
		return true; /* not told apart: refused all the same */
	for (unsigned i = 0; i < c->n_nul; i++)
		if (c->nul_at[i] == url)
			return true;
	return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size, void **req_cls)
{
	struct tv_metrics_http *h = cls;
	struct conn *c = conn_of(h, conn);
	enum MHD_Result ret;

	(void)version;
	conn_step(h, c, CONN_RECEIVING, CONN_HANDLING);
	if (!*req_cls && path_has_nul(h, conn, url)) {
		static char nul[] = "bad request: the path holds a NUL byte (%00)\n";

		/* answered before any body: libmicrohttpd discards it (or closes) */
		return respond(h, conn, MHD_HTTP_BAD_REQUEST, nul, sizeof(nul) - 1, 0,
			       "text/plain");
	}
	ret = route(h, conn, url, method, upload_data, upload_data_size, req_cls);
	/* not answered yet (a POST body to read): the client's time again */
	conn_step(h, c, CONN_HANDLING, CONN_RECEIVING);
	return ret;
}

static int load_api(struct tv_metrics_http *h, char *err, size_t errlen)
{
	static const char *const NAMES[] = {
		"MHD_start_daemon", "MHD_stop_daemon", "MHD_create_response_from_buffer",
		"MHD_add_response_header", "MHD_queue_response", "MHD_destroy_response",
		"MHD_lookup_connection_value", "MHD_get_connection_values_n",
		"MHD_get_connection_info", "MHD_http_unescape",
	};
	void **slot[] = {
		(void **)&h->api.start_daemon, (void **)&h->api.stop_daemon,
		(void **)&h->api.create_response_from_buffer,
		(void **)&h->api.add_response_header, (void **)&h->api.queue_response,
		(void **)&h->api.destroy_response, (void **)&h->api.lookup_connection_value,
		(void **)&h->api.get_connection_values_n, (void **)&h->api.get_connection_info,
		(void **)&h->api.http_unescape,
	};
	_Static_assert(sizeof(NAMES) / sizeof(NAMES[0]) == sizeof(slot) / sizeof(slot[0]),
		       "one name per function of struct mhd_api");

	h->lib = dlopen(TV_MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h->lib) {
		snprintf(err, errlen, "cannot load %s for --metrics-addr (Debian package "
			 "libmicrohttpd12): %s", TV_MHD_SONAME, dlerror());
		return -ENOENT;
	}
	for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++) {
		/* POSIX: a function pointer and void * convert through the object (dlsym) */
		*slot[i] = dlsym(h->lib, NAMES[i]);
		if (!*slot[i]) {
			snprintf(err, errlen, "%s lacks %s", TV_MHD_SONAME, NAMES[i]);
			return -ENOENT;
		}
	}
	return 0;
}

/* A listening TCP socket on hostport; *fd and the bound "HOST:PORT" in bound. */
static int bind_listen(const char *hostport, int *fd, int *family, char *bound,
		       size_t boundlen, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[NI_MAXHOST], port_s[8], bhost[NI_MAXHOST], bport[NI_MAXSERV];
	unsigned port;
	int s = -1, one = 1, ret, gai;

	if (tv_hostport_parse(hostport, host, sizeof(host), &port)) {
		snprintf(err, errlen, "invalid --metrics-addr: '%s'", hostport);
		return -EINVAL;
	}
	snprintf(port_s, sizeof(port_s), "%u", port);
	gai = getaddrinfo(host, port_s, &hints, &ai);
	if (gai) {
		snprintf(err, errlen, "--metrics-addr %s: cannot resolve %s: %s", hostport, host,
			 gai_strerror(gai));
		return -EINVAL;
	}
	s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		goto sys_fail;
	/* a restart binds again while the old connections sit in TIME_WAIT; a live listener
	 * still makes bind fail (Linux) */
	if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s, ai->ai_addr, ai->ai_addrlen) || listen(s, TV_METRICS_LISTEN_BACKLOG) ||
	    getsockname(s, (struct sockaddr *)&ss, &sslen))
		goto sys_fail;
	*family = ai->ai_family;
	freeaddrinfo(ai);
	if (getnameinfo((struct sockaddr *)&ss, sslen, bhost, sizeof(bhost), bport, sizeof(bport),
			NI_NUMERICHOST | NI_NUMERICSERV)) {
		snprintf(bhost, sizeof(bhost), "%s", host);
		snprintf(bport, sizeof(bport), "%u", port);
	}
	snprintf(bound, boundlen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", bhost, bport);
	*fd = s;
	return 0;
sys_fail:
	ret = -errno;
	/* one reason, once: strerror(EADDRINUSE) would say "in use" a second time */
	if (ret == -EADDRINUSE)
		snprintf(err, errlen, "--metrics-addr %s: the port is in use", hostport);
	else
		snprintf(err, errlen, "--metrics-addr %s: cannot %s: %s", hostport,
			 s < 0 ? "make a socket" : "bind or listen", strerror(-ret));
	if (s >= 0)
		close(s);
	freeaddrinfo(ai);
	return ret;
}

/* The watchdog's lock and its condition variable (on CLOCK_MONOTONIC, as its waits). */
static int sync_init(struct tv_metrics_http *h, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	int ret;

	ret = pthread_mutex_init(&h->lock, NULL);
	if (ret)
		goto fail;
	ret = pthread_condattr_init(&ca);
	if (ret)
		goto fail_mutex;
	ret = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!ret)
		ret = pthread_cond_init(&h->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (ret)
		goto fail_mutex;
	h->sync_ready = true;
	return 0;
fail_mutex:
	pthread_mutex_destroy(&h->lock);
fail:
	snprintf(err, errlen, "--metrics-addr: cannot make a lock: %s", strerror(ret));
	return -ret;
}

int tv_metrics_http_bind(struct tv_metrics_http **out, const char *hostport,
			 const struct tv_metrics_http_limits *limits, char *bound, size_t boundlen,
			 char *err, size_t errlen)
{
	struct tv_metrics_http *h;
	char why[128];
	int ret;

	*out = NULL;
	if (limits && tv_metrics_http_limits_check(limits, why, sizeof(why))) {
		snprintf(err, errlen, "--metrics-addr %s: %s", hostport, why);
		return -ERANGE;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "--metrics-addr: out of memory");
		return -ENOMEM;
	}
	h->fd = -1;
	h->family = AF_INET;
	h->limits = limits ? *limits : tv_metrics_http_limits_default();
	snprintf(h->hostport, sizeof(h->hostport), "%s", hostport);
	ret = sync_init(h, err, errlen);
	if (!ret)
		ret = load_api(h, err, errlen);
	if (!ret)
		ret = bind_listen(hostport, &h->fd, &h->family, bound, boundlen, err, errlen);
	if (ret) {
		tv_metrics_http_stop(h);
		return ret;
	}
	*out = h;
	return 0;
}

int tv_metrics_http_serve(struct tv_metrics_http *h, const struct tv_metrics *m, char *err,
			  size_t errlen)
{
	unsigned flags;
	int ret;

	if (h->daemon || h->fd < 0) {
		snprintf(err, errlen, "--metrics-addr %s: served already", h->hostport);
		return -EINVAL;
	}
	h->m = m;
	/* epoll, not select: the server raises RLIMIT_NOFILE and its descriptors pass 1024 */
	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
		(h->family == AF_INET6 ? MHD_USE_IPv6 : 0);
	ret = pthread_create(&h->watchdog, NULL, watchdog_main, h);
	if (ret) {
		snprintf(err, errlen, "--metrics-addr %s: cannot start a thread: %s", h->hostport,
			 strerror(ret));
		return -ret;
	}
	h->watchdog_running = true;
	/* the connection bounds of common/metrics_http.h; libmicrohttpd shares
	 * CONNECTION_LIMIT among the pool's threads, each polling the listen socket (hence at
	 * least one per thread: tv_metrics_max_connections_limit) */
	h->daemon = h->api.start_daemon(flags, 0, NULL, NULL, on_request, h,
					MHD_OPTION_LISTEN_SOCKET, h->fd,
					MHD_OPTION_CONNECTION_LIMIT,
					(unsigned)h->limits.max_connections,
					MHD_OPTION_PER_IP_CONNECTION_LIMIT,
					(unsigned)(tv_metrics_http_exposed(h->hostport) ?
						   h->limits.max_connections_per_ip : 0),
					MHD_OPTION_CONNECTION_TIMEOUT,
					(unsigned)(h->limits.idle_timeout_ms / 1000),
					MHD_OPTION_CONNECTION_MEMORY_LIMIT,
					(size_t)TV_HTTP_CONNECTION_MEMORY_BYTES,
					MHD_OPTION_UNESCAPE_CALLBACK, unescape, (void *)h,
					/* one thread while only metrics are served */
					MHD_OPTION_THREAD_POOL_SIZE,
					(unsigned)(h->handler ? TV_HTTP_THREADS : 1),
					MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)h,
					MHD_OPTION_NOTIFY_CONNECTION, on_connection, (void *)h,
					MHD_OPTION_END);
	if (!h->daemon) {
		snprintf(err, errlen, "--metrics-addr %s: libmicrohttpd did not start",
			 h->hostport);
		return -EIO; /* tv_metrics_http_stop ends the watchdog */
	}
	h->fd = -1; /* the daemon owns it now and closes it when stopped */
	return 0;
}

/* End the watchdog thread (before the daemon stops: no shutdown during its teardown). */
static void watchdog_stop(struct tv_metrics_http *h)
{
	if (!h->watchdog_running)
		return;
	pthread_mutex_lock(&h->lock);
	h->stopping = true;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->watchdog, NULL);
	h->watchdog_running = false;
}

void tv_metrics_http_stop(struct tv_metrics_http *h)
{
	if (!h)
		return;
	watchdog_stop(h);
	if (h->daemon)
		h->api.stop_daemon(h->daemon); /* its CLOSED notices empty the list */
	if (h->fd >= 0)
		close(h->fd);
	if (h->lib)
		dlclose(h->lib);
	if (h->sync_ready) {
		pthread_cond_destroy(&h->wake);
		pthread_mutex_destroy(&h->lock);
	}
	free(h);
}
