/* cmocka tests for the OTLP Export decoder's memory pattern (proto/otlp_span.c): a 512-span
 * request (the SDKs' batch, 8 attributes a span) is unpacked into a couple of arena blocks,
 * not one malloc per span, attribute, value and string, and decodes to the same records the
 * plain protobuf-c unpack gives; a damaged request is refused (-EBADMSG) and frees cleanly
 * (the sanitizer build checks for leaks). The decoder's other properties are the fuzz
 * harness's (tests/fuzz/fuzz_otlp_span.c) and the integration tests'. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/otlp_span.h"

#define NSPANS 512
#define NATTRS 8

/* A packed request of NSPANS spans in one resource (service.name "svc") and scope, each with
 * NATTRS string attributes "k0".."k7" = "value-<span>-<attr>"; malloc'd, caller frees. */
static uint8_t *build(size_t *len)
{
	static Tracevault__Otlp__V1__Span spans[NSPANS], *span_ptrs[NSPANS];
	static Tracevault__Otlp__V1__KeyValue kv[NSPANS][NATTRS], *kv_ptrs[NSPANS][NATTRS];
	static Tracevault__Otlp__V1__AnyValue av[NSPANS][NATTRS];
	static char keys[NATTRS][4], vals[NSPANS][NATTRS][24];
	static uint8_t ids[NSPANS][24];
	Tracevault__Otlp__V1__ExportTraceServiceRequest req =
		TRACEVAULT__OTLP__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
	Tracevault__Otlp__V1__ResourceSpans rs = TRACEVAULT__OTLP__V1__RESOURCE_SPANS__INIT, *rsp = &rs;
	Tracevault__Otlp__V1__Resource res = TRACEVAULT__OTLP__V1__RESOURCE__INIT;
	Tracevault__Otlp__V1__KeyValue svc = TRACEVAULT__OTLP__V1__KEY_VALUE__INIT, *svcp = &svc;
	Tracevault__Otlp__V1__AnyValue svc_v = TRACEVAULT__OTLP__V1__ANY_VALUE__INIT;
	Tracevault__Otlp__V1__ScopeSpans ss = TRACEVAULT__OTLP__V1__SCOPE_SPANS__INIT, *ssp = &ss;
	uint8_t *out;

	svc_v.value_case = TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE;
	svc_v.string_value = "svc";
	svc.key = "service.name";
	svc.value = &svc_v;
	res.n_attributes = 1;
	res.attributes = &svcp;
	for (size_t i = 0; i < NSPANS; i++) {
		Tracevault__Otlp__V1__Span *sp = &spans[i];

		tracevault__otlp__v1__span__init(sp);
		for (size_t b = 0; b < 24; b++)
			ids[i][b] = (uint8_t)(i * 7 + b + 1);
		sp->trace_id.data = ids[i];
		sp->trace_id.len = 16;
		sp->span_id.data = ids[i] + 16;
		sp->span_id.len = 8;
		sp->name = "GET /api/items/{id}";
		sp->kind = 2;
		sp->start_time_unix_nano = 1000000 + i;
		sp->end_time_unix_nano = 2000000 + i;
		for (size_t a = 0; a < NATTRS; a++) {
			tracevault__otlp__v1__key_value__init(&kv[i][a]);
			tracevault__otlp__v1__any_value__init(&av[i][a]);
			snprintf(keys[a], sizeof(keys[a]), "k%zu", a);
			snprintf(vals[i][a], sizeof(vals[i][a]), "value-%zu-%zu", i, a);
			av[i][a].value_case = TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE;
			av[i][a].string_value = vals[i][a];
			kv[i][a].key = keys[a];
			kv[i][a].value = &av[i][a];
			kv_ptrs[i][a] = &kv[i][a];
		}
		sp->n_attributes = NATTRS;
		sp->attributes = kv_ptrs[i];
		span_ptrs[i] = sp;
	}
	ss.n_spans = NSPANS;
	ss.spans = span_ptrs;
	rs.resource = &res;
	rs.n_scope_spans = 1;
	rs.scope_spans = &ssp;
	req.n_resource_spans = 1;
	req.resource_spans = &rsp;
	*len = tracevault__otlp__v1__export_trace_service_request__get_packed_size(&req);
	out = malloc(*len);
	assert_non_null(out);
	tracevault__otlp__v1__export_trace_service_request__pack(&req, out);
	return out;
}

static const struct tv_otlp_limits lim = { .max_attributes = 32, .max_attribute_bytes = 1024 };

/* Every span decoded, with its attributes, from an unpack that took at most 2 blocks (one
 * malloc per element would be ~17 per span, 8,700 for the request). */
static void test_batch_decodes_from_a_few_blocks(void **state)
{
	struct tv_otlp_spans s;
	size_t len;
	uint8_t *msg = build(&len);
	char want[24];

	(void)state;
	assert_int_equal(tv_otlp_spans_decode(msg, len, &lim, 0, &s), 0);
	assert_int_equal(s.received, NSPANS);
	assert_int_equal(s.n, NSPANS);
	assert_int_equal(s.rejected, 0);
	assert_true(s.arena_blocks >= 1 && s.arena_blocks <= 2);
	for (size_t i = 0; i < NSPANS; i += 97) {
		const Tracevault__V1__TraceRecord *r = &s.recs[i];

		assert_non_null(r->span);
		assert_string_equal(r->span->service, "svc");
		assert_string_equal(r->span->name, "GET /api/items/{id}");
		assert_int_equal(r->span->n_attributes, NATTRS);
		snprintf(want, sizeof(want), "value-%zu-%d", i, NATTRS - 1);
		assert_string_equal(r->span->attributes[NATTRS - 1]->key, "k7");
		assert_string_equal(r->span->attributes[NATTRS - 1]->string_value, want);
		assert_int_equal(strlen(r->trace_id), 32);
	}
	tv_otlp_spans_free(&s);
	assert_null(s.arena);
	free(msg);
}

/* A request cut short is refused as protobuf-c refuses it, and what the failed unpack took
 * from the arena is freed by tv_otlp_spans_free (ASan's leak check). */
static void test_damaged_request_refused_and_freed(void **state)
{
	struct tv_otlp_spans s;
	size_t len;
	uint8_t *msg = build(&len);

	(void)state;
	assert_int_equal(tv_otlp_spans_decode(msg, len - 3, &lim, 0, &s), -EBADMSG);
	tv_otlp_spans_free(&s);
	assert_null(s.arena);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_decodes_from_a_few_blocks),
		cmocka_unit_test(test_damaged_request_refused_and_freed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
