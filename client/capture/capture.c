/* `tracevault capture`'s run loop: opens the event source of --mode (tracepoint.c or
 * sockfilter.c, both behind capture/source.h), feeds its events to the connection table, and
 * hands finished exchanges as TraceRecords to the record sink (write/sink.h), whose own thread
 * seals, caches and sends them: the poll never waits on the network. */
#include "capture/capture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "bpf/tv_event.h" /* enum tv_lost_reason */
#include "capture/conn_table.h"
#include "capture/limits.h"
#include "capture/privs.h"
#include "capture/sampler.h"
#include "capture/sockfilter.h"
#include "capture/source.h"
#include "capture/tracepoint.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "common/size.h"

/* The tracepoint source's ring wakes us only once its wake-up threshold is queued
 * (TV_CAPTURE_WAKEUP_BYTES, or a quarter of a smaller ring), so this interval is also the
 * longest an event waits there (the sockfilter ring's block retire timer matches it), and how
 * often loss totals reach the sink. */
#define POLL_TIMEOUT_MS 10

/* note_loss and finish read every reason: a new one must be mapped there (and given a block
 * loss counter in proto/block.h if it is a loss) */
_Static_assert(TV_LOST_NREASONS == 5, "a new enum tv_lost_reason: map it in note_loss/finish");
/* --role is handed to the sources as the kernel's role value */
_Static_assert((int)TV_CAPTURE_ROLE_SERVER == (int)TV_ROLE_SERVER &&
		       (int)TV_CAPTURE_ROLE_CLIENT == (int)TV_ROLE_CLIENT,
	       "enum tv_capture_role mirrors enum tv_event_role");

/* Everything one capture owns, from tv_capture_open to tv_capture_free. */
struct tv_capture {
	struct tv_capture_opts o_copy; /* o points here */
	const struct tv_capture_opts *o;
	const struct tv_record_sink *sink; /* tv_capture_run's */
	struct tv_capture_live *live;      /* tv_capture_run's, or NULL */
	struct tv_capture_result *res;     /* tv_capture_run's; until then c->res_open */
	struct tv_capture_result res_open;
	struct tv_caps_dropped dropped; /* o->drop_caps: what the drop left */
	struct tv_capture_source src; /* src.impl NULL until opened */
	struct tv_conn_table *conns;
	int64_t mono_to_real_ns; /* CLOCK_REALTIME - CLOCK_MONOTONIC, measured at start */
	struct tv_sampler sampler; /* --sample-ratio */
	struct tv_query_rules query; /* what paths keep of their query; conns points at it */
	uint64_t next_publish_ns;    /* o->live: the next publish (monotonic) */
	uint64_t ring_peak_bytes;    /* o->live: the most unread ring bytes since the last */
};

/* The kernel stamps events with CLOCK_MONOTONIC; records carry wall-clock ns. Bracketing the
 * realtime read between two monotonic reads bounds the error by their distance. */
static int64_t measure_mono_to_real(void)
{
	uint64_t m1 = tv_monotonic_ns();
	uint64_t r = tv_realtime_ns();
	uint64_t m2 = tv_monotonic_ns();

	return (int64_t)(r - (m1 + (m2 - m1) / 2));
}

/* libbpf's own messages (either source loads a program): warnings and errors only */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level != LIBBPF_WARN)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* Header messages over a "name\0value\0" buffer: *out (malloc'd: the Header structs and the
 * pointer array in one block, caller frees) points into hdrs, which must outlive it. Returns
 * the count; 0 (and *out NULL) for none or out of memory (the record goes without them). */
static size_t headers_view(const char *hdrs, size_t len, Tracevault__V1__Header ***out)
{
	size_t n = hdrs ? tv_http_header_count(hdrs, len) : 0, pos = 0;
	Tracevault__V1__Header **v, *h;

	*out = NULL;
	if (n == 0)
		return 0;
	v = malloc(n * (sizeof(*v) + sizeof(*h)));
	if (!v)
		return 0;
	h = (Tracevault__V1__Header *)(v + n);
	for (size_t i = 0; i < n; i++) {
		tracevault__v1__header__init(&h[i]);
		h[i].name = (char *)hdrs + pos;
		pos += strlen(hdrs + pos) + 1;
		h[i].value = (char *)hdrs + pos;
		pos += strlen(hdrs + pos) + 1;
		v[i] = &h[i];
	}
	*out = v;
	return n;
}

static void on_exchange(void *ctx, const struct tv_exchange *x)
{
	struct tv_capture *c = ctx;
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;

	/* sampled by trace id (OTel-consistent) or by connection; a choice, so not a loss */
	if (!tv_sampler_keep(&c->sampler, x->trace_id, x->conn_id, x->conn_gen)) {
		c->res->sampled_out++;
		return;
	}
	r.ts_ns = (uint64_t)((int64_t)x->ts_ns + c->mono_to_real_ns);
	r.end_ns = (uint64_t)((int64_t)x->end_ns + c->mono_to_real_ns);
	r.latency_ns = x->end_ns - x->ts_ns;
	r.pid = x->pid;
	/* protobuf-c takes non-const strings; it only reads them while packing */
	r.comm = (char *)x->comm;
	r.local = (char *)x->local;
	r.remote = (char *)x->remote;
	r.method = (char *)x->method;
	r.path = (char *)x->path;
	r.role = (char *)x->role;
	r.host = (char *)x->host;
	r.http_version = (char *)x->http_version;
	r.status = x->status;
	r.req_body_bytes = x->req_body_bytes;
	r.resp_body_bytes = x->resp_body_bytes;
	r.trace_id = (char *)x->trace_id;
	r.span_id = (char *)x->span_id;
	r.flags = x->flags;
	r.n_req_headers = headers_view(x->req_hdrs, x->req_hdrs_len, &r.req_headers);
	r.n_resp_headers = headers_view(x->resp_hdrs, x->resp_hdrs_len, &r.resp_headers);
	r.req_body.data = (uint8_t *)x->req_body;
	r.req_body.len = x->req_body_len;
	r.resp_body.data = (uint8_t *)x->resp_body;
	r.resp_body.len = x->resp_body_len;
	r.req_content_type = (char *)(x->req_content_type ? x->req_content_type : "");
	r.resp_content_type = (char *)(x->resp_content_type ? x->resp_content_type : "");
	r.req_content_encoding = (char *)(x->req_content_encoding ? x->req_content_encoding : "");
	r.resp_content_encoding = (char *)(x->resp_content_encoding ? x->resp_content_encoding
								      : "");
	/* copied by the sink; a drop (cache full past back-pressure) is counted there */
	c->sink->add(c->sink->ctx, &r);
	free(r.req_headers);
	free(r.resp_headers);
}

static int on_event(void *ctx, void *data, size_t len)
{
	struct tv_capture *c = ctx;

	c->res->events++;
	tv_conn_table_event(c->conns, data, len);
	return 0;
}

/* The source of --mode, opened with on_event as its handler, behind c->src. */
static int open_source(struct tv_capture *c, char *err, size_t errlen)
{
	const struct tv_capture_opts *o = c->o;
	int rc;

	libbpf_set_print(libbpf_print);
	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER) {
		struct tv_sockfilter_opts so = {
			.interface = o->interface,
			.port = o->port,
			.payload_bytes = o->payload_bytes,
			.ring_bytes = o->ring_bytes,
			.mono_to_real_ns = c->mono_to_real_ns,
			.role = o->role,
		};
		struct tv_sockfilter *sf;

		rc = tv_sockfilter_open(&sf, &so, on_event, c, err, errlen);
		if (!rc)
			tv_sockfilter_source(sf, &c->src);
	} else {
		struct tv_tracepoint_opts to = {
			.pid = o->pid,
			.port = o->port,
			.comm = o->comm,
			.cgroup = o->cgroup,
			.payload_bytes = o->payload_bytes,
			.ring_bytes = o->ring_bytes,
			.role = o->role,
		};
		struct tv_tracepoint *tp;

		rc = tv_tracepoint_open(&tp, &to, on_event, c, err, errlen);
		if (!rc)
			tv_tracepoint_source(tp, &c->src);
	}
	return rc;
}

/* Hand the kernel and parser loss totals to the sink, which stamps their increase into the
 * next block header (BLOCK.md v2), so the archive itself records the gaps. */
static void note_loss(struct tv_capture *c)
{
	struct tv_block_loss total = {0};

	total.ring_full = c->src.lost(c->src.impl, TV_LOST_RING_FULL);
	total.map_full = c->src.lost(c->src.impl, TV_LOST_MAP_FULL);
	total.parser = tv_conn_table_stats(c->conns)->exchanges_dropped +
		       tv_conn_table_stats(c->conns)->requests_unparsed +
		       tv_conn_table_stats(c->conns)->requests_unhooked;
	total.requests = c->src.lost(c->src.impl, TV_LOST_REQUESTS);
	c->sink->note_loss(c->sink->ctx, &total);
}

static void signal_ready(int fd)
{
	static const char msg[] = "ready\n";
	ssize_t n;

	if (fd < 0)
		return;
	do
		n = write(fd, msg, sizeof(msg) - 1);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(msg) - 1)
		fprintf(stderr, "tracevault: writing to --ready-fd %d: %s\n", fd,
			n < 0 ? strerror(errno) : "short write");
}

/* The source's and the connection table's counts into *res (all but flush_error; events is
 * counted as they come, in c->res). */
static void count(struct tv_capture *c, struct tv_capture_result *res)
{
	const struct tv_conn_stats *cs = tv_conn_table_stats(c->conns);

	res->events = c->res->events;
	res->lost_ring_full = c->src.lost(c->src.impl, TV_LOST_RING_FULL);
	res->lost_map_full = c->src.lost(c->src.impl, TV_LOST_MAP_FULL);
	res->events_truncated = c->src.lost(c->src.impl, TV_LOST_TRUNCATED);
	res->lost_requests = c->src.lost(c->src.impl, TV_LOST_REQUESTS);
	c->src.gaps(c->src.impl, &res->gaps, &res->gap_bytes);
	res->responses_lost = cs->responses_lost;
	res->parser_resyncs = cs->parse_errors; /* all closed now */
	res->lost_kernel = res->lost_ring_full + res->lost_map_full;
	res->heads_cut_limit = cs->heads_cut_limit;
	res->heads_cut_copy = cs->heads_cut_copy;
	res->requests_unparsed = cs->requests_unparsed;
	res->responses_unparsed = cs->responses_unparsed;
	res->unseen_bytes = c->src.lost(c->src.impl, TV_LOST_UNSEEN_BYTES);
	res->unseen_gaps = cs->unseen_gaps;
	res->requests_unhooked = cs->requests_unhooked;
	res->lost_parser = cs->exchanges_dropped + cs->requests_unparsed + cs->requests_unhooked;
	res->tunnels = cs->tunnels;
	res->tunnel_bytes = cs->tunnel_bytes;
	res->records_lost = res->lost_kernel + res->lost_parser;
}

/* The ring's unread bytes now, kept as the peak until the next publish. */
static void sample_ring(struct tv_capture *c)
{
	uint64_t used, size;

	if (!c->live)
		return;
	c->src.ring(c->src.impl, &used, &size);
	if (used > c->ring_peak_bytes)
		c->ring_peak_bytes = used;
}

/* Every TV_CAPTURE_LIVE_PUBLISH_MS (or now, when final): the counts into o->live. The counts
 * cost a few map lookups, hence not on every turn of the loop. */
static void publish(struct tv_capture *c, uint64_t now_ns, int final)
{
	struct tv_capture_live *l = c->live;
	struct tv_capture_result r = { 0 };
	uint64_t used, size;

	if (!l || (!final && now_ns < c->next_publish_ns))
		return;
	c->next_publish_ns = now_ns + TV_CAPTURE_LIVE_PUBLISH_MS * TV_NS_PER_MS;
	count(c, &r);
	c->src.ring(c->src.impl, &used, &size);
	tv_metric_set(&l->events, r.events);
	tv_metric_set(&l->lost_ring_full, r.lost_ring_full);
	tv_metric_set(&l->lost_map_full, r.lost_map_full);
	tv_metric_set(&l->lost_parser, r.lost_parser);
	tv_metric_set(&l->events_truncated, r.events_truncated);
	tv_metric_set(&l->lost_requests, r.lost_requests);
	tv_metric_set(&l->responses_lost, r.responses_lost);
	tv_metric_set(&l->parser_resyncs, r.parser_resyncs);
	tv_metric_set(&l->ring_used_bytes, c->ring_peak_bytes > used ? c->ring_peak_bytes : used);
	tv_metric_set(&l->ring_size_bytes, size);
	c->ring_peak_bytes = 0;
}

/* Poll until stopped or the duration ends. Sealing by size and age happens in the sink. */
static int poll_loop(struct tv_capture *c, char *err, size_t errlen)
{
	const struct tv_capture_opts *o = c->o;
	uint64_t end_ns = 0;
	int rc;

	if (o->duration_ms > 0)
		end_ns = tv_monotonic_ns() + o->duration_ms * TV_NS_PER_MS;
	while (!(o->stop && *o->stop)) {
		sample_ring(c);
		rc = c->src.poll(c->src.impl, POLL_TIMEOUT_MS, err, errlen);
		if (rc)
			return rc;
		tv_conn_table_reap(c->conns, tv_monotonic_ns());
		note_loss(c);
		publish(c, tv_monotonic_ns(), 0);
		if (end_ns && tv_monotonic_ns() >= end_ns)
			break;
	}
	return 0;
}

/* The end of a run: stop the source and drain what it already queued, so nothing seen is
 * dropped; end the connections still open; the last loss totals go into the sink's final
 * flush (its result in res->flush_error); then the counts. A segment the flush could not
 * store is counted and logged by the sink: whether that fails the run is the caller's call,
 * with the sink's counts at hand. */
static void finish(struct tv_capture *c)
{
	uint64_t now_ns = tv_monotonic_ns();

	c->src.finish(c->src.impl, now_ns);
	tv_conn_table_flush(c->conns, now_ns);
	note_loss(c);
	c->res->flush_error = c->sink->flush(c->sink->ctx);
	count(c, c->res);
	publish(c, now_ns, 1);
}

int tv_capture_check_mode(const struct tv_capture_opts *o, char *err, size_t errlen)
{
	const char *opt = NULL;
	char ring[32], bound[64];

	if (o->mode == TV_CAPTURE_MODE_SOCKFILTER) {
		if (o->ring_bytes &&
		    tv_limit_check(&tv_capture_sockfilter_ring_bytes_limit, o->ring_bytes)) {
			tv_size_format(o->ring_bytes, ring, sizeof(ring));
			tv_limit_format(&tv_capture_sockfilter_ring_bytes_limit, true, bound,
					sizeof(bound));
			snprintf(err, errlen, "--ring-bytes %s is outside the bound of --mode "
				 "sockfilter (%s)", ring, bound);
			return -EINVAL;
		}
		/* packets carry no process to filter by */
		if (o->pid)
			opt = "--pid";
		else if (o->comm)
			opt = "--comm";
		else if (o->cgroup)
			opt = "--cgroup";
		if (opt) {
			snprintf(err, errlen, "%s does not apply to --mode sockfilter (packets "
				 "carry no process)", opt);
			return -EINVAL;
		}
	} else if (o->mode != TV_CAPTURE_MODE_TRACEPOINT) {
		snprintf(err, errlen, "unknown capture mode %d", o->mode);
		return -EINVAL;
	} else if (o->interface) {
		snprintf(err, errlen, "--interface needs --mode sockfilter");
		return -EINVAL;
	}
	return 0;
}

int tv_capture_query_rules(const struct tv_capture_opts *o, struct tv_query_rules *out,
			   char *err, size_t errlen)
{
	tv_query_rules_default(out);
	if (o->redact_query_params && (o->strip_query || !o->redact)) {
		snprintf(err, errlen, "--redact-query-params does not apply with %s",
			 o->strip_query ? "--strip-query (the query is dropped)"
					: "--no-redact (nothing is redacted)");
		return -EINVAL;
	}
	if (o->redact_query_params &&
	    tv_query_rules_parse(out, o->redact_query_params, err, errlen))
		return -EINVAL;
	out->mode = o->strip_query ? TV_QUERY_STRIP : o->redact ? TV_QUERY_REDACT : TV_QUERY_KEEP;
	out->keep_userinfo = !o->redact; /* --strip-query --no-redact: the query goes, not that */
	return 0;
}

int tv_capture_check_body_bytes(const struct tv_capture_opts *o, char *err, size_t errlen)
{
	uint32_t payload = o->payload_bytes ? o->payload_bytes : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
	char body_s[32], payload_s[32];

	if (o->body_bytes <= payload)
		return 0;
	tv_size_format(o->body_bytes, body_s, sizeof(body_s));
	tv_size_format(payload, payload_s, sizeof(payload_s));
	snprintf(err, errlen, "--body-bytes %s is above --payload-bytes %s%s: body bytes the copy "
		 "does not carry cannot be stored", body_s, payload_s,
		 o->payload_bytes ? "" : " (the default)");
	return -EINVAL;
}

int tv_capture_open(struct tv_capture **out, const struct tv_capture_opts *o, char *err,
		    size_t errlen)
{
	struct tv_capture *c;
	int rc;

	*out = NULL;
	rc = tv_capture_check_mode(o, err, errlen);
	if (!rc)
		rc = tv_capture_check_body_bytes(o, err, errlen);
	if (rc)
		return rc;
	if (o->role < TV_CAPTURE_ROLE_BOTH || o->role > TV_CAPTURE_ROLE_CLIENT) {
		snprintf(err, errlen, "unknown capture role %d", o->role);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory setting up capture");
		return -ENOMEM;
	}
	c->o_copy = *o;
	c->o = &c->o_copy;
	c->res = &c->res_open; /* events read before the run are none: the loop reads them */
	rc = tv_capture_query_rules(o, &c->query, err, errlen);
	if (rc)
		goto fail;
	rc = tv_sampler_init(&c->sampler, o->sample_ratio > 0 ? o->sample_ratio : 1.0);
	if (rc) {
		snprintf(err, errlen, "invalid sample ratio %g: must be in (0, 1]", o->sample_ratio);
		goto fail;
	}
	c->mono_to_real_ns = measure_mono_to_real();
	c->conns = tv_conn_table_new(on_exchange, c);
	if (!c->conns) {
		snprintf(err, errlen, "out of memory setting up capture");
		rc = -ENOMEM;
		goto fail;
	}
	tv_conn_table_set_query_rules(c->conns, &c->query);
	/* a head copied whole in one syscall is parsed whole */
	tv_conn_table_set_head_limit(c->conns, tv_http_head_limit(
		o->payload_bytes ? o->payload_bytes : TV_CAPTURE_DEFAULT_PAYLOAD_BYTES));
	tv_conn_table_set_headers(c->conns, o->headers, !o->redact);
	tv_conn_table_set_body_bytes(c->conns, o->body_bytes);
	rc = open_source(c, err, errlen);
	if (!rc && o->drop_caps)
		rc = tv_capture_drop_caps(o->mode, &c->src, &c->dropped, err, errlen);
	if (rc)
		goto fail;
	*out = c;
	return 0;
fail:
	tv_capture_free(c);
	return rc;
}

int tv_capture_run(struct tv_capture *c, const struct tv_record_sink *sink,
		   struct tv_capture_live *live, struct tv_capture_result *res, char *err,
		   size_t errlen)
{
	unsigned nthreads;
	int rc;

	memset(res, 0, sizeof(*res));
	if (c->sink) {
		snprintf(err, errlen, "a capture runs once");
		return -EINVAL;
	}
	/* the threads the caller started since the drop (gRPC's, the pipeline's, the metrics
	 * endpoint's) copied the dropped sets: the kernel's word for it, before any untrusted
	 * byte is parsed */
	if (c->o->drop_caps) {
		rc = tv_capture_check_threads(&c->dropped, &nthreads, err, errlen);
		if (rc)
			return rc;
	}
	c->sink = sink;
	c->live = live;
	c->res = res;
	signal_ready(c->o->ready_fd);
	rc = poll_loop(c, err, errlen);
	finish(c);
	return rc;
}

void tv_capture_free(struct tv_capture *c)
{
	if (!c)
		return;
	if (c->src.impl)
		c->src.free(c->src.impl);
	tv_conn_table_free(c->conns);
	free(c);
}
