/* OTLP ingest load generator (issue 15/16): OTLP/gRPC TraceService/Export calls of --spans
 * spans each (default 512, the OpenTelemetry SDKs' batch) sent to a running tracevaultd with
 * --in-flight calls in flight (threads sharing one channel, as one exporter's connection),
 * --batches calls in all, bounded by --max-seconds too. Every request is built and packed
 * before the clock starts (unique trace and span ids, realistic HTTP spans: traces of a
 * server span, an internal db span, a client span and the callee's server span, 8 attributes
 * each, two services), so the client costs a few microseconds per call and is not the limit.
 * Every reply is checked: status OK and a partial_success rejecting 0 spans; failed calls and
 * rejected spans are counted and make the exit status 1. Prints "key value" lines: spans/s
 * (spans made durable: a reply means stored), Export latency p50/p99/max (us, send to reply),
 * the client's CPU. Used by bench/bench_otlp.py (bench/README.md "OTLP ingest"). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "bench_util.h"
#include "common/clock.h"
#include "otlp_trace.pb-c.h"
#include "proto/wire.h"
#include "rpc/rpc.h"

#define MAX_IN_FLIGHT 64
#define MAX_BATCHES 100000
#define MAX_SPANS 10000
#define MAX_REQUEST_TOTAL_BYTES (2ull << 30) /* all requests are held in memory */
#define CALL_TIMEOUT_MS 60000
#define PROBE_TIMEOUT_MS 5000
#define SPAN_ATTRS 8

static void usage(FILE *f)
{
	fprintf(f, "usage: otlp_load --server ADDR [--batches N (1-%d)] [--spans N (1-%d)] "
		   "[--in-flight N (1-%d)] [--max-seconds S] [--seed N]\n",
		MAX_BATCHES, MAX_SPANS, MAX_IN_FLIGHT);
}

/* xorshift64*: the ids and durations, reproducible from --seed */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* One packed ExportTraceServiceRequest of nspans spans for batch b: malloc'd into *out
 * (caller frees), its length in *len. Returns 0 or -ENOMEM. */
static int build_request(size_t b, size_t nspans, uint64_t t0_ns, uint64_t *seed,
			 uint8_t **out, size_t *len)
{
	static const char *const svc_names[2] = { "frontend", "backend" };
	Tracevault__Otlp__V1__ExportTraceServiceRequest req =
		TRACEVAULT__OTLP__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	Tracevault__Otlp__V1__ResourceSpans rs[2], *rsp[2];
	Tracevault__Otlp__V1__Resource res[2];
	Tracevault__Otlp__V1__KeyValue svc_kv[2], *svc_kvp[2];
	Tracevault__Otlp__V1__AnyValue svc_val[2];
	Tracevault__Otlp__V1__ScopeSpans ss[2], *ssp[2];
	Tracevault__Otlp__V1__InstrumentationScope scope[2];
	Tracevault__Otlp__V1__Span *spans = calloc(nspans, sizeof(*spans));
	Tracevault__Otlp__V1__Span **by_svc[2] = { calloc(nspans, sizeof(void *)),
						   calloc(nspans, sizeof(void *)) };
	Tracevault__Otlp__V1__KeyValue *kv = calloc(nspans * SPAN_ATTRS, sizeof(*kv));
	Tracevault__Otlp__V1__KeyValue **kvp = calloc(nspans * SPAN_ATTRS, sizeof(*kvp));
	Tracevault__Otlp__V1__AnyValue *av = calloc(nspans * SPAN_ATTRS, sizeof(*av));
	uint8_t (*ids)[32] = calloc(nspans, sizeof(*ids)); /* trace id 16, span id 8, parent 8 */
	char (*paths)[32] = calloc(nspans, sizeof(*paths));
	size_t n_by_svc[2] = { 0, 0 };
	int ret = -ENOMEM;

	*out = NULL;
	if (!spans || !by_svc[0] || !by_svc[1] || !kv || !kvp || !av || !ids || !paths)
		goto out;
	for (int s = 0; s < 2; s++) {
		tracevault__otlp__v1__resource_spans__init(&rs[s]);
		tracevault__otlp__v1__resource__init(&res[s]);
		tracevault__otlp__v1__key_value__init(&svc_kv[s]);
		tracevault__otlp__v1__any_value__init(&svc_val[s]);
		tracevault__otlp__v1__scope_spans__init(&ss[s]);
		tracevault__otlp__v1__instrumentation_scope__init(&scope[s]);
		svc_val[s].value_case = TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE;
		svc_val[s].string_value = (char *)svc_names[s];
		svc_kv[s].key = "service.name";
		svc_kv[s].value = &svc_val[s];
		svc_kvp[s] = &svc_kv[s];
		res[s].n_attributes = 1;
		res[s].attributes = &svc_kvp[s];
		scope[s].name = "@opentelemetry/instrumentation-http";
		scope[s].version = "0.301.0";
		ss[s].scope = &scope[s];
		ssp[s] = &ss[s];
		rs[s].resource = &res[s];
		rs[s].n_scope_spans = 1;
		rs[s].scope_spans = &ssp[s];
		rsp[s] = &rs[s];
	}
	for (size_t i = 0; i < nspans; i++) {
		Tracevault__Otlp__V1__Span *sp = &spans[i];
		static const uint32_t kinds[4] = { 2, 1, 3, 2 }; /* server, internal, client, server */
		uint64_t start = t0_ns + (b * nspans + i) * 1000, v;
		int svc = i % 4 == 3; /* the callee's server span is the backend's */

		tracevault__otlp__v1__span__init(sp);
		if (i % 4 == 0) { /* a new trace */
			v = rnd(seed);
			memcpy(ids[i], &v, 8);
			v = rnd(seed);
			memcpy(ids[i] + 8, &v, 8);
		} else {
			memcpy(ids[i], ids[i - 1], 16);
			memcpy(ids[i] + 24, ids[i - 1] + 16, 8); /* parent: the previous span */
			sp->parent_span_id.data = ids[i] + 24;
			sp->parent_span_id.len = 8;
		}
		v = rnd(seed);
		memcpy(ids[i] + 16, &v, 8);
		sp->trace_id.data = ids[i];
		sp->trace_id.len = 16;
		sp->span_id.data = ids[i] + 16;
		sp->span_id.len = 8;
		sp->name = i % 4 == 1 ? "db.query" : "GET /api/items/{id}";
		sp->kind = kinds[i % 4];
		sp->start_time_unix_nano = start;
		sp->end_time_unix_nano = start + 100000 + rnd(seed) % 100000000;
		sp->flags = 0x301;
		snprintf(paths[i], sizeof(paths[i]), "/api/items/%zu", i);
		for (size_t a = 0; a < SPAN_ATTRS; a++) {
			static const char *const keys[SPAN_ATTRS] = {
				"http.request.method", "url.path", "server.address",
				"network.peer.address", "user_agent.original",
				"http.response.status_code", "server.port", "network.peer.port" };
			Tracevault__Otlp__V1__KeyValue *k = &kv[i * SPAN_ATTRS + a];
			Tracevault__Otlp__V1__AnyValue *x = &av[i * SPAN_ATTRS + a];

			tracevault__otlp__v1__key_value__init(k);
			tracevault__otlp__v1__any_value__init(x);
			k->key = (char *)keys[a];
			k->value = x;
			kvp[i * SPAN_ATTRS + a] = k;
			if (a < 5) {
				static const char *const sv[5] = { "GET", NULL, "10.0.0.7",
								   "10.0.0.9", "load/1.0" };
				x->value_case = TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE;
				x->string_value = a == 1 ? paths[i] : (char *)sv[a];
			} else {
				x->value_case = TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_INT_VALUE;
				x->int_value = a == 5 ? 200 : a == 6 ? 8080 : 40000 + (int64_t)(i % 20000);
			}
		}
		sp->n_attributes = SPAN_ATTRS;
		sp->attributes = &kvp[i * SPAN_ATTRS];
		by_svc[svc][n_by_svc[svc]++] = sp;
	}
	for (int s = 0; s < 2; s++) {
		ss[s].n_spans = n_by_svc[s];
		ss[s].spans = by_svc[s];
	}
	req.n_resource_spans = 2;
	req.resource_spans = rsp;
	*len = tracevault__otlp__v1__export_trace_service_request__get_packed_size(&req);
	*out = malloc(*len);
	if (!*out)
		goto out;
	tracevault__otlp__v1__export_trace_service_request__pack(&req, *out);
	ret = 0;
out:
	free(spans);
	free(by_svc[0]);
	free(by_svc[1]);
	free(kv);
	free(kvp);
	free(av);
	free(ids);
	free(paths);
	return ret;
}

/* What the caller threads share: the requests, the next one to send, the results. */
struct load {
	grpc_channel *ch;
	uint8_t **reqs;
	size_t *req_len, nreqs, nspans;
	uint64_t deadline_ns;         /* CLOCK_MONOTONIC: no new call after it */
	pthread_mutex_t mu;
	size_t next;                  /* under mu */
	size_t done, failed;          /* under mu */
	uint64_t rejected;            /* under mu: partial_success.rejected_spans summed */
	uint64_t *lat_ns;             /* under mu: done entries */
	char first_err[640];          /* under mu */
};

static void record_failure(struct load *L, const char *msg)
{
	pthread_mutex_lock(&L->mu);
	if (!L->failed && !L->first_err[0])
		snprintf(L->first_err, sizeof(L->first_err), "%s", msg);
	L->failed++;
	pthread_mutex_unlock(&L->mu);
}

/* One Export call of request i on cq; 0 with the latency in *ns and the rejected count, or a
 * negative errno with the reason in err. */
static int export_once(struct load *L, grpc_completion_queue *cq, size_t i, uint64_t *ns,
		       uint64_t *rejected, char *err, size_t errlen)
{
	grpc_slice s = grpc_slice_from_static_buffer(L->reqs[i], L->req_len[i]);
	grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1), *recv = NULL;
	gpr_timespec deadline = tv_rpc_deadline_ms(CALL_TIMEOUT_MS);
	grpc_metadata_array init_md, trail_md;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	Tracevault__Otlp__V1__ExportTraceServiceResponse *r = NULL;
	grpc_op ops[6];
	grpc_event ev;
	grpc_call *call;
	uint8_t *flat = NULL;
	size_t nops, flat_len;
	uint64_t t0;
	int tag = 1, ret;

	*rejected = 0;
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	call = grpc_channel_create_call(L->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(TV_METHOD_OTLP_EXPORT), NULL,
					deadline, NULL);
	if (!call || !send) {
		snprintf(err, errlen, "cannot create the Export call");
		ret = -ENOMEM;
		goto out;
	}
	nops = tv_rpc_request_ops(ops, send, &init_md);
	memset(&ops[nops], 0, sizeof(ops[nops]));
	ops[nops].op = GRPC_OP_RECV_MESSAGE;
	ops[nops++].data.recv_message.recv_message = &recv;
	tv_rpc_status_op(&ops[nops++], &trail_md, &status, &details);
	t0 = tv_monotonic_ns();
	if (grpc_call_start_batch(call, ops, nops, &tag, NULL) != GRPC_CALL_OK) {
		snprintf(err, errlen, "cannot start the Export call");
		ret = -EIO;
		goto out;
	}
	ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
	*ns = tv_monotonic_ns() - t0;
	if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
		snprintf(err, errlen, "Export call did not complete");
		ret = -EIO;
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		tv_rpc_status_text(status, &details, err, errlen);
		ret = tv_rpc_status_errno(status);
		goto out;
	}
	if (!recv) {
		snprintf(err, errlen, "Export: status OK without a reply");
		ret = -EBADMSG;
		goto out;
	}
	ret = tv_wire_flatten(recv, 1u << 20, &flat, &flat_len);
	if (ret) {
		snprintf(err, errlen, "Export reply: %s", strerror(-ret));
		goto out;
	}
	r = tracevault__otlp__v1__export_trace_service_response__unpack(NULL, flat_len, flat);
	if (!r) {
		snprintf(err, errlen, "Export reply does not parse");
		ret = -EBADMSG;
		goto out;
	}
	if (r->partial_success && r->partial_success->rejected_spans) {
		*rejected = (uint64_t)r->partial_success->rejected_spans;
		snprintf(err, errlen, "partial success: %lld spans rejected: %s",
			 (long long)r->partial_success->rejected_spans,
			 r->partial_success->error_message ? r->partial_success->error_message : "");
	}
	ret = 0;
out:
	if (r)
		tracevault__otlp__v1__export_trace_service_response__free_unpacked(r, NULL);
	free(flat);
	if (recv)
		grpc_byte_buffer_destroy(recv);
	if (send)
		grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	if (call)
		grpc_call_unref(call);
	return ret;
}

/* One call slot: takes the next request until none is left or the deadline passed. */
static void *caller(void *arg)
{
	struct load *L = arg;
	grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
	char err[640];

	if (!cq) {
		record_failure(L, "cannot create a completion queue");
		return NULL;
	}
	for (;;) {
		uint64_t ns = 0, rej = 0;
		size_t i;
		int ret;

		pthread_mutex_lock(&L->mu);
		i = L->next < L->nreqs && tv_monotonic_ns() < L->deadline_ns ? L->next++ : SIZE_MAX;
		pthread_mutex_unlock(&L->mu);
		if (i == SIZE_MAX)
			break;
		err[0] = 0;
		ret = export_once(L, cq, i, &ns, &rej, err, sizeof(err));
		if (ret) {
			record_failure(L, err);
			continue;
		}
		pthread_mutex_lock(&L->mu);
		L->lat_ns[L->done++] = ns;
		L->rejected += rej;
		if (rej && !L->first_err[0])
			snprintf(L->first_err, sizeof(L->first_err), "%s", err);
		pthread_mutex_unlock(&L->mu);
	}
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },
		{ "batches", required_argument, NULL, 'b' },
		{ "spans", required_argument, NULL, 'n' },
		{ "in-flight", required_argument, NULL, 'c' },
		{ "max-seconds", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct load L = { .nspans = 512 };
	const char *server = NULL;
	size_t batches = 200, in_flight = 1, max_s = 120, seed_arg = 1, total_bytes = 0;
	pthread_t th[MAX_IN_FLIGHT];
	size_t started = 0;
	grpc_completion_queue *probe_cq = NULL;
	uint64_t seed, t0_ns, t_start, t_end;
	double c0, c1, dt;
	char err[640];
	int c, ret = 1;
	const struct tv_bench_num nums[] = {
		{ 'b', 1, MAX_BATCHES, &batches },
		{ 'n', 1, MAX_SPANS, &L.nspans },
		{ 'c', 1, MAX_IN_FLIGHT, &in_flight },
		{ 't', 1, 3600, &max_s },
		{ 'r', 1, SIZE_MAX, &seed_arg },
	};

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int num = tv_bench_num_opt("otlp_load", opts, nums, sizeof(nums) / sizeof(nums[0]),
					   c, optarg);

		if (num < 0)
			return 2;
		if (num)
			continue;
		switch (c) {
		case 's': server = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!server || optind != argc) {
		fprintf(stderr, "otlp_load: %s\n", server ? "unexpected argument" : "--server is required");
		return 2;
	}
	seed = seed_arg * 0x9E3779B97F4A7C15ull;
	L.nreqs = batches;
	L.reqs = calloc(batches, sizeof(*L.reqs));
	L.req_len = calloc(batches, sizeof(*L.req_len));
	L.lat_ns = calloc(batches, sizeof(*L.lat_ns));
	if (!L.reqs || !L.req_len || !L.lat_ns) {
		fprintf(stderr, "otlp_load: out of memory\n");
		goto out;
	}
	t0_ns = tv_realtime_ns();
	for (size_t b = 0; b < batches; b++) {
		if (build_request(b, L.nspans, t0_ns, &seed, &L.reqs[b], &L.req_len[b])) {
			fprintf(stderr, "otlp_load: out of memory building request %zu\n", b);
			goto out;
		}
		total_bytes += L.req_len[b];
		if (total_bytes > MAX_REQUEST_TOTAL_BYTES) {
			fprintf(stderr, "otlp_load: requests pass %llu bytes: fewer --batches or --spans\n",
				MAX_REQUEST_TOTAL_BYTES);
			goto out;
		}
	}
	grpc_init();
	L.ch = tv_rpc_channel_new(server, NULL, 64u << 20);
	probe_cq = grpc_completion_queue_create_for_next(NULL);
	if (!L.ch || !probe_cq) {
		fprintf(stderr, "otlp_load: cannot create a channel to %s\n", server);
		goto shutdown;
	}
	if (tv_rpc_probe(L.ch, probe_cq, server, NULL, PROBE_TIMEOUT_MS, err, sizeof(err))) {
		fprintf(stderr, "otlp_load: %s\n", err);
		goto shutdown;
	}
	pthread_mutex_init(&L.mu, NULL);
	c0 = tv_bench_cpu_s();
	t_start = tv_monotonic_ns();
	L.deadline_ns = t_start + (uint64_t)max_s * 1000000000ull;
	for (; started < in_flight; started++)
		if (pthread_create(&th[started], NULL, caller, &L)) {
			fprintf(stderr, "otlp_load: cannot start caller thread %zu\n", started);
			break;
		}
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	t_end = tv_monotonic_ns();
	c1 = tv_bench_cpu_s();
	pthread_mutex_destroy(&L.mu);
	if (started < in_flight)
		goto shutdown;
	dt = (t_end - t_start) / 1e9;
	printf("in_flight %zu\n", in_flight);
	printf("spans_per_batch %zu\n", L.nspans);
	printf("request_bytes_mean %zu\n", total_bytes / batches);
	printf("batches_ok %zu\n", L.done);
	printf("batches_failed %zu\n", L.failed);
	printf("spans_rejected %llu\n", (unsigned long long)L.rejected);
	printf("spans_stored %llu\n", (unsigned long long)(L.done * L.nspans - L.rejected));
	printf("seconds %.3f\n", dt);
	printf("spans_per_s %.0f\n", (L.done * L.nspans - L.rejected) / dt);
	if (L.done)
		tv_bench_print_latency("export", L.lat_ns, L.done);
	printf("client_cpu_s %.3f\n", c1 - c0);
	if (L.failed || L.rejected) {
		fprintf(stderr, "otlp_load: %zu Export calls failed, %llu spans rejected; first: %s\n",
			L.failed, (unsigned long long)L.rejected, L.first_err);
		goto shutdown;
	}
	if (L.done < batches) {
		fprintf(stderr, "otlp_load: --max-seconds %zu passed after %zu of %zu calls\n",
			max_s, L.done, batches);
		goto shutdown;
	}
	ret = 0;
shutdown:
	if (probe_cq) {
		grpc_completion_queue_shutdown(probe_cq);
		while (grpc_completion_queue_next(probe_cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
						  NULL).type != GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(probe_cq);
	}
	if (L.ch)
		grpc_channel_destroy(L.ch);
	grpc_shutdown();
out:
	for (size_t b = 0; L.reqs && b < batches; b++)
		free(L.reqs[b]);
	free(L.reqs);
	free(L.req_len);
	free(L.lat_ns);
	return ret;
}
