/* JSON Lines <-> TraceRecord (client/cli/record_json.c, record_out.c): a full round trip through
 * the writer and the parser (exchanges and span records), string escaping (quotes, control
 * bytes, invalid UTF-8), the table form, and every rejection, tv_record_check's among them. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/record_json.h"
#include "cli/record_out.h"
#include "record_wire_of.h"

/* The text of b as a malloc'd C string (b is freed). */
static char *take_text(struct tv_out_buf *b)
{
	char *s;

	assert_false(b->failed);
	s = malloc(b->len + 1);
	assert_non_null(s);
	memcpy(s, b->p, b->len);
	s[b->len] = '\0';
	tv_out_free(b);
	return s;
}

/* Render r with tv_record_jsonl into a malloc'd string. */
static char *to_jsonl(const Tracevault__V1__TraceRecord *r)
{
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	uint8_t *bytes;

	record_wire_of(r, &w, &bytes);
	tv_record_jsonl(&b, &w);
	free(bytes);
	return take_text(&b);
}

static void fill(Tracevault__V1__TraceRecord *r)
{
	Tracevault__V1__TraceRecord init = TRACEVAULT__V1__TRACE_RECORD__INIT;

	*r = init;
	r->ts_ns = 1767225600123456789ull;
	r->end_ns = 1767225600223456789ull;
	r->latency_ns = 100000000;
	r->pid = 4242;
	r->comm = "nginx";
	r->local = "127.0.0.1:8080";
	r->remote = "[::1]:50000";
	r->method = "GET";
	r->path = "/a?b=c&d=\"e\"\\f";
	r->status = 200;
	r->req_body_bytes = 0;
	r->resp_body_bytes = 9223372036854775807ull;
	r->trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
	r->span_id = "00f067aa0ba902b7";
	r->flags = 3;
	r->role = "server";
	r->host = "example.com:8080";
	r->http_version = "1.1";
}

static void test_exact_jsonl_output(void **state)
{
	Tracevault__V1__TraceRecord r;
	char *s;

	(void)state;
	fill(&r);
	s = to_jsonl(&r);
	assert_string_equal(
		s, "{\"ts_ns\":1767225600123456789,\"end_ns\":1767225600223456789,"
		   "\"latency_ns\":100000000,\"pid\":4242,\"comm\":\"nginx\","
		   "\"local\":\"127.0.0.1:8080\",\"remote\":\"[::1]:50000\",\"method\":\"GET\","
		   "\"path\":\"/a?b=c&d=\\\"e\\\"\\\\f\",\"status\":200,\"req_body_bytes\":0,"
		   "\"resp_body_bytes\":9223372036854775807,"
		   "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
		   "\"span_id\":\"00f067aa0ba902b7\",\"flags\":3,\"role\":\"server\","
		   "\"host\":\"example.com:8080\",\"http_version\":\"1.1\"}\n");
	free(s);
}

static void test_round_trip_all_fields(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_record_json rj;
	char err[256], *s, *s2;

	(void)state;
	fill(&r);
	r.comm = "tab\there\nnl \x01 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	s = to_jsonl(&r);
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)), 0);
	assert_int_equal(rj.rec.ts_ns, r.ts_ns);
	assert_int_equal(rj.rec.end_ns, r.end_ns);
	assert_int_equal(rj.rec.latency_ns, r.latency_ns);
	assert_int_equal(rj.rec.pid, r.pid);
	assert_string_equal(rj.rec.comm, r.comm);
	assert_string_equal(rj.rec.local, r.local);
	assert_string_equal(rj.rec.remote, r.remote);
	assert_string_equal(rj.rec.method, r.method);
	assert_string_equal(rj.rec.path, r.path);
	assert_int_equal(rj.rec.status, r.status);
	assert_int_equal(rj.rec.req_body_bytes, r.req_body_bytes);
	assert_int_equal(rj.rec.resp_body_bytes, r.resp_body_bytes);
	assert_string_equal(rj.rec.trace_id, r.trace_id);
	assert_string_equal(rj.rec.span_id, r.span_id);
	assert_int_equal(rj.rec.flags, 3);
	s2 = to_jsonl(&rj.rec);
	assert_string_equal(s, s2);
	tv_record_json_release(&rj);
	free(s);
	free(s2);
}

/* Every u64 query prints reads back (rel-15): jansson's int64 stops at 2^63-1, the fields do
 * not; the long-integer path keeps strings, escapes and a literal "\\u0000" exact. */
static void test_round_trip_u64_extremes(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_record_json rj;
	char err[256], *s, *s2;

	(void)state;
	fill(&r);
	r.ts_ns = 9223372036854775807ull; /* still int64: the fast path's edge */
	r.end_ns = UINT64_MAX;
	r.latency_ns = 9223372036854775808ull; /* 2^63: the first beyond int64 */
	r.req_body_bytes = 1000000000000000000ull; /* 19 digits, within int64 */
	r.resp_body_bytes = 18446744073709551614ull;
	r.path = "/q?x=\\u0000&n=12345678901234567890"; /* a literal backslash-u0000, digits */
	s = to_jsonl(&r);
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)), 0);
	assert_int_equal(rj.rec.ts_ns, r.ts_ns);
	assert_true(rj.rec.end_ns == UINT64_MAX);
	assert_true(rj.rec.latency_ns == 9223372036854775808ull);
	assert_true(rj.rec.req_body_bytes == 1000000000000000000ull);
	assert_true(rj.rec.resp_body_bytes == 18446744073709551614ull);
	assert_string_equal(rj.rec.path, r.path);
	assert_string_equal(rj.rec.comm, "nginx");
	s2 = to_jsonl(&rj.rec);
	assert_string_equal(s, s2);
	tv_record_json_release(&rj);
	free(s);
	free(s2);
}

static void test_escaping(void **state)
{
	Tracevault__V1__TraceRecord r = TRACEVAULT__V1__TRACE_RECORD__INIT;
	char *s;

	(void)state;
	/* control bytes escaped, valid UTF-8 kept, invalid bytes and a truncated sequence become
	 * U+FFFD, DEL kept (legal in JSON) */
	r.path = "\"\\\b\f\n\r\t\x1f\x7f caf\xc3\xa9 \xff\xfe \xe2\x82";
	s = to_jsonl(&r);
	assert_non_null(strstr(s, "\"path\":\"\\\"\\\\\\u0008\\u000c\\n\\r\\t\\u001f\x7f caf\xc3\xa9 "
				  "\\ufffd\\ufffd \\ufffd\\ufffd\""));
	/* surrogate halves and overlong forms are not valid UTF-8 either */
	free(s);
	r.path = "\xed\xa0\x80\xc0\xaf";
	s = to_jsonl(&r);
	assert_non_null(strstr(s, "\"path\":\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\""));
	free(s);
}

static void test_defaults_and_minimal(void **state)
{
	struct tv_record_json rj;
	const char *line = "{\"ts_ns\": 5}";
	char err[256];

	(void)state;
	assert_int_equal(tv_record_json_parse(&rj, line, strlen(line), err, sizeof(err)), 0);
	assert_int_equal(rj.rec.ts_ns, 5);
	assert_int_equal(rj.rec.pid, 0);
	assert_int_equal(rj.rec.status, 0);
	assert_string_equal(rj.rec.path, "");
	assert_string_equal(rj.rec.trace_id, "");
	assert_int_equal(rj.rec.flags, 0);
	tv_record_json_release(&rj);
	/* the parser needs no NUL: only len bytes are read */
	assert_int_equal(tv_record_json_parse(&rj, "{\"ts_ns\":7}garbage", 11, err, sizeof(err)),
			 0);
	assert_int_equal(rj.rec.ts_ns, 7);
	tv_record_json_release(&rj);
}

static void assert_rejects(const char *line, const char *reason)
{
	struct tv_record_json rj;
	char err[256] = "";

	assert_int_equal(tv_record_json_parse(&rj, line, strlen(line), err, sizeof(err)), -EINVAL);
	if (!strstr(err, reason))
		fail_msg("line %s: reason '%s' lacks '%s'", line, err, reason);
}

static void test_rejections(void **state)
{
	(void)state;
	assert_rejects("{\"ts_ns\": 1", "invalid JSON");
	assert_rejects("not json", "invalid JSON");
	assert_rejects("{\"ts_ns\": 1} {}", "invalid JSON");
	assert_rejects("[1, 2]", "expected a JSON object");
	assert_rejects("{}", "missing required field 'ts_ns'");
	assert_rejects("{\"pid\": 1}", "missing required field 'ts_ns'");
	assert_rejects("{\"ts_ns\": 1, \"bogus\": 2}", "unknown field 'bogus'");
	assert_rejects("{\"ts_ns\": 1, \"ts_ns\": 2}", "duplicate");
	assert_rejects("{\"ts_ns\": \"1\"}", "field 'ts_ns' must be an integer");
	assert_rejects("{\"ts_ns\": 1.5}", "field 'ts_ns' must be an integer");
	assert_rejects("{\"ts_ns\": 1, \"status\": true}", "field 'status' must be an integer");
	assert_rejects("{\"ts_ns\": 1, \"pid\": null}", "field 'pid' must be an integer");
	assert_rejects("{\"ts_ns\": -1}", "field 'ts_ns' must not be negative");
	assert_rejects("{\"ts_ns\": 1, \"latency_ns\": -5}", "field 'latency_ns' must not be negative");
	assert_rejects("{\"ts_ns\": 1, \"pid\": 4294967296}", "field 'pid' out of range");
	assert_rejects("{\"ts_ns\": 1, \"status\": 4294967296}", "field 'status' out of range");
	assert_rejects("{\"ts_ns\": 1, \"flags\": 4294967296}", "field 'flags' out of range");
	assert_rejects("{\"ts_ns\": 1, \"flags\": -1}", "field 'flags' must not be negative");
	assert_rejects("{\"ts_ns\": 1, \"flags\": \"1\"}", "field 'flags' must be an integer");
	assert_rejects("{\"ts_ns\": 1, \"path\": 5}", "field 'path' must be a string");
	assert_rejects("{\"ts_ns\": 1, \"comm\": [\"a\"]}", "field 'comm' must be a string");
	assert_rejects("{\"ts_ns\": 1, \"path\": \"a\\u0000b\"}", "invalid JSON");
	assert_rejects("{\"ts_ns\": 1, \"path\": \"\xff\"}", "invalid JSON");
	assert_rejects("{\"ts_ns\": 99999999999999999999}",
		       "field 'ts_ns' out of range: 99999999999999999999 (0 to 18446744073709551615)");
	assert_rejects("{\"ts_ns\": 18446744073709551616}", "field 'ts_ns' out of range");
	assert_rejects("{\"ts_ns\": -9223372036854775809}", "field 'ts_ns' must not be negative");
	assert_rejects("{\"ts_ns\": 1, \"pid\": 9223372036854775808}",
		       "field 'pid' out of range: 9223372036854775808 (0 to 4294967295)");
	assert_rejects("{\"ts_ns\": 1, \"path\": 9223372036854775808}", "field 'path' must be a string");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808.0}", "must be an integer");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 92233720368547758080e1}", "must be an integer");
	/* a real whose fraction or exponent has 19+ digits, beside a long integer: still a real */
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808, \"latency_ns\": "
		       "1.12345678901234567890123}", "field 'latency_ns' must be an integer");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808, \"latency_ns\": "
		       "1e-1234567890123456789}", "field 'latency_ns' must be an integer");
	/* a line with a value beyond int64 is rewritten before its first parse: a long run of
	 * digits with a leading zero, or a syntax error after it, is still invalid JSON */
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 09223372036854775808}", "invalid JSON");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808, }", "invalid JSON");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808, \"end_ns\": 2}",
		       "invalid JSON");
	/* a header value that is a long number is not a string */
	assert_rejects("{\"ts_ns\": 1, \"req_headers\": [{\"name\": \"a\", \"value\": "
		       "9223372036854775808}]}", "element 0 must be");
	/* the long-integer marker cannot be forged: \u0000 in a string is refused on both paths */
	assert_rejects("{\"ts_ns\": \"\\u00001\"}", "invalid JSON");
	assert_rejects("{\"ts_ns\": \"\\u00001\", \"end_ns\": 9223372036854775808}", "invalid JSON");
	assert_rejects("{\"ts_ns\": 1, \"end_ns\": 9223372036854775808, \"path\": \"a\\u0000\"}",
		       "invalid JSON");

	/* an unknown key is quoted back printable and bounded */
	assert_rejects("{\"ts_ns\": 1, \"a\\u001bb\": 2}", "unknown field 'a?b'");
}

/* ---- span records and tv_record_check ---- */

/* A span record with every Span field and each attribute type at its edges. */
struct span_store {
	Tracevault__V1__Span sp;
	Tracevault__V1__SpanAttribute a[9], *ap[9];
};

static void fill_span(Tracevault__V1__TraceRecord *r, struct span_store *st)
{
	static const double doubles[] = { 0.1, -0.0, 100.0, 1.5e-300, -1.7976931348623157e308 };
	Tracevault__V1__TraceRecord init = TRACEVAULT__V1__TRACE_RECORD__INIT;
	size_t n = 0;

	*r = init;
	r->ts_ns = 1767225600123456789ull;
	r->end_ns = 1767225600123466789ull;
	r->latency_ns = 10000;
	r->trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
	r->span_id = "00f067aa0ba902b7";
	tracevault__v1__span__init(&st->sp);
	st->sp.parent_span_id = "0102030405060708";
	st->sp.name = "GET /a \"q\" caf\xc3\xa9";
	st->sp.kind = 2;
	st->sp.status_code = 2;
	st->sp.status_message = "boom\nline";
	st->sp.service = "svc-a";
	st->sp.dropped_attributes_count = 4294967295u;
	st->sp.dropped_events_count = 3;
	st->sp.dropped_links_count = 1;
	st->sp.trace_state = "k=v";
	st->sp.flags = 0x301;
	st->sp.scope_name = "scope";
	st->sp.scope_version = "1.2.3";
	for (size_t i = 0; i < 9; i++) {
		tracevault__v1__span_attribute__init(&st->a[i]);
		st->ap[i] = &st->a[i];
	}
	st->a[n].key = "s";
	st->a[n].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE;
	st->a[n++].string_value = "v\xc3\xa9\t\"";
	st->a[n].key = "b";
	st->a[n].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE;
	st->a[n++].bool_value = 1;
	st->a[n].key = "i";
	st->a[n].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE;
	st->a[n++].int_value = INT64_MIN;
	st->a[n].key = "i2";
	st->a[n].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE;
	st->a[n++].int_value = INT64_MAX;
	for (size_t i = 0; i < sizeof(doubles) / sizeof(doubles[0]); i++) {
		st->a[n].key = "d";
		st->a[n].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE;
		st->a[n++].double_value = doubles[i];
	}
	st->sp.attributes = st->ap;
	st->sp.n_attributes = n;
	r->span = &st->sp;
}

static uint8_t *packed_record(const Tracevault__V1__TraceRecord *r, size_t *len)
{
	uint8_t *buf;

	*len = tracevault__v1__trace_record__get_packed_size(r);
	buf = malloc(*len + 1);
	assert_non_null(buf);
	assert_int_equal(tracevault__v1__trace_record__pack(r, buf), *len);
	return buf;
}

/* s parses to a record that packs to the bytes of r and writes s again. */
static void assert_reads_back(const Tracevault__V1__TraceRecord *r, const char *s)
{
	struct tv_record_json rj;
	char err[256] = "", *s2;
	uint8_t *a, *b;
	size_t la, lb;

	if (tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)))
		fail_msg("line %s refused: %s", s, err);
	a = packed_record(r, &la);
	b = packed_record(&rj.rec, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	s2 = to_jsonl(&rj.rec);
	assert_string_equal(s, s2);
	free(a);
	free(b);
	free(s2);
	tv_record_json_release(&rj);
}

/* query's jsonl of a span record reads back to the same record (Bug 4: put refused "span"):
 * every Span field, int64's ends, doubles that print as integers, -0, the largest double,
 * and NaN / the infinities as protobuf's JSON strings. */
static void test_span_round_trip(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct span_store st;
	double special[] = { NAN, INFINITY, -INFINITY };
	char *s;

	(void)state;
	fill_span(&r, &st);
	s = to_jsonl(&r);
	assert_non_null(strstr(s, ",\"span\":{\"parent_span_id\":\"0102030405060708\","));
	assert_non_null(strstr(s, "{\"key\":\"i\",\"int_value\":-9223372036854775808}"));
	assert_non_null(strstr(s, "{\"key\":\"d\",\"double_value\":-0.0}"));
	assert_non_null(strstr(s, "{\"key\":\"d\",\"double_value\":100}"));
	assert_reads_back(&r, s);
	free(s);
	/* the store's last instant, 19 digits like int64's ends beside it */
	st.sp.n_attributes = 4;
	r.ts_ns = 9223372036854775802ull;
	r.end_ns = 9223372036854775807ull;
	r.latency_ns = 5;
	s = to_jsonl(&r);
	assert_reads_back(&r, s);
	free(s);
	for (size_t i = 0; i < 3; i++) {
		fill_span(&r, &st);
		st.a[0].value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE;
		st.a[0].double_value = special[i];
		st.sp.n_attributes = 1;
		s = to_jsonl(&r);
		assert_reads_back(&r, s);
		free(s);
	}
	/* a root span without attributes, all numbers 0 */
	fill_span(&r, &st);
	st.sp = (Tracevault__V1__Span)TRACEVAULT__V1__SPAN__INIT;
	s = to_jsonl(&r);
	assert_non_null(strstr(s, "\"attributes\":[]"));
	assert_reads_back(&r, s);
	free(s);
}

static void assert_accepts(const char *line)
{
	struct tv_record_json rj;
	char err[256] = "";

	if (tv_record_json_parse(&rj, line, strlen(line), err, sizeof(err)))
		fail_msg("line %.200s... refused: %s", line, err);
	tv_record_json_release(&rj);
}

#define TID "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""
#define SID "\"span_id\":\"00f067aa0ba902b7\""
/* a valid span record line with extra ("," then keys) before the span, span_extra in it */
#define SPAN_LINE(extra, span_extra)                                                           \
	"{\"ts_ns\":10,\"end_ns\":15,\"latency_ns\":5," TID "," SID extra                       \
	",\"span\":{\"name\":\"op\"" span_extra "}}"

/* Bug 5: what the store and its producers cannot hold is refused with the field named, on the
 * line, before put sends anything. */
static void test_check_exchange_fields(void **state)
{
	struct tv_record_json rj;
	char err[256];
	const char *up = "{\"ts_ns\":1,\"trace_id\":\"4BF92F3577B34DA6A3CE929D0E0E4736\","
			 "\"span_id\":\"00F067AA0BA902B7\"}";

	(void)state;
	/* ts_ns: 2^63-1 is the store's last instant */
	assert_accepts("{\"ts_ns\":9223372036854775807}");
	assert_rejects("{\"ts_ns\":9223372036854775808}",
			     "field 'ts_ns' 9223372036854775808 is beyond 2^63-1 ns");
	assert_rejects("{\"ts_ns\":18446744073709551615}", "beyond 2^63-1");
	/* end_ns of an exchange is not a time the store keys on: any u64 */
	assert_accepts("{\"ts_ns\":1,\"end_ns\":18446744073709551615}");
	/* status: 0 or three digits */
	assert_accepts("{\"ts_ns\":1,\"status\":0}");
	assert_accepts("{\"ts_ns\":1,\"status\":100}");
	assert_accepts("{\"ts_ns\":1,\"status\":599}");
	assert_accepts("{\"ts_ns\":1,\"status\":999}");
	assert_rejects("{\"ts_ns\":1,\"status\":70000}",
			     "field 'status' 70000 is not 0 (no response) or an HTTP status code "
			     "(100 to 999)");
	assert_rejects("{\"ts_ns\":1,\"status\":99}", "field 'status' 99");
	assert_rejects("{\"ts_ns\":1,\"status\":1000}", "field 'status' 1000");
	assert_rejects("{\"ts_ns\":1,\"status\":4294967295}", "field 'status' 4294967295");
	/* trace_id / span_id: "" or W3C hex */
	assert_accepts("{\"ts_ns\":1,\"trace_id\":\"\",\"span_id\":\"\"}");
	assert_accepts("{\"ts_ns\":1," TID "}");
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"xyz\"}",
			     "field 'trace_id' must be \"\" or 32 hex digits: 'xyz'");
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e473\"}",
			     "field 'trace_id' must be");
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e47361\"}",
			     "field 'trace_id' must be");
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e473g\"}",
			     "field 'trace_id' must be");
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"00000000000000000000000000000000\"}",
			     "field 'trace_id' is all zeros");
	assert_rejects("{\"ts_ns\":1,\"span_id\":\"00f067aa0ba902b\"}",
			     "field 'span_id' must be \"\" or 16 hex digits: '00f067aa0ba902b'");
	assert_rejects("{\"ts_ns\":1,\"span_id\":\"0000000000000000\"}",
			     "field 'span_id' is all zeros");
	/* a shown id is printable and bounded */
	assert_rejects("{\"ts_ns\":1,\"trace_id\":\"a\\u001bb\"}", "'a?b'");
	/* upper case is stored lower case, as the capture and OTLP ingest store ids */
	assert_int_equal(tv_record_json_parse(&rj, up, strlen(up), err, sizeof(err)), 0);
	assert_string_equal(rj.rec.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	assert_string_equal(rj.rec.span_id, "00f067aa0ba902b7");
	tv_record_json_release(&rj);
}

/* A span record as OTLP ingest would hold it (PROTOCOL.md "OTLP ingest"), else refused. */
static void test_check_span_records(void **state)
{
	char line[40000];
	size_t n;

	(void)state;
	assert_accepts(SPAN_LINE("", ""));
	assert_accepts(SPAN_LINE("", ",\"parent_span_id\":\"0000000000000000\""));
	assert_accepts(SPAN_LINE(",\"pid\":0,\"comm\":\"\",\"status\":0", ",\"attributes\":[]"));
	/* ids */
	assert_rejects("{\"ts_ns\":10,\"end_ns\":10," SID ",\"span\":{}}",
			     "field 'trace_id' is required in a span record");
	assert_rejects("{\"ts_ns\":10,\"end_ns\":10," TID ",\"span\":{}}",
			     "field 'span_id' is required in a span record");
	assert_rejects(SPAN_LINE("", ",\"parent_span_id\":\"0102\""),
			     "field 'span.parent_span_id' must be \"\" or 16 hex digits: '0102'");
	/* times */
	assert_rejects("{\"ts_ns\":10,\"end_ns\":9,\"latency_ns\":0," TID "," SID
			     ",\"span\":{}}",
			     "field 'end_ns' 9 is before 'ts_ns' 10: a span cannot end before it "
			     "starts");
	assert_rejects("{\"ts_ns\":0," TID "," SID ",\"span\":{}}",
			     "field 'ts_ns' (a span's start) must not be 0");
	assert_rejects("{\"ts_ns\":10,\"end_ns\":9223372036854775808,\"latency_ns\":"
			     "9223372036854775798," TID "," SID ",\"span\":{}}",
			     "field 'end_ns' 9223372036854775808 is beyond 2^63-1");
	assert_rejects("{\"ts_ns\":10,\"end_ns\":15,\"latency_ns\":4," TID "," SID
			     ",\"span\":{}}",
			     "field 'latency_ns' 4 is not end_ns - ts_ns = 5");
	/* exchange fields */
	assert_rejects(SPAN_LINE(",\"pid\":7", ""), "field 'pid' is an exchange's");
	assert_rejects(SPAN_LINE(",\"method\":\"GET\"", ""), "field 'method' is an exchange's");
	assert_rejects(SPAN_LINE(",\"status\":200", ""), "field 'status' is an exchange's");
	assert_rejects(SPAN_LINE(",\"flags\":1", ""), "field 'flags' is an exchange's");
	assert_rejects(SPAN_LINE(",\"http_version\":\"1.1\"", ""),
			     "field 'http_version' is an exchange's");
	assert_rejects(SPAN_LINE(",\"req_headers\":[{\"name\":\"a\",\"value\":\"b\"}]", ""),
			     "field 'req_headers' is an exchange's");
	assert_rejects(SPAN_LINE(",\"resp_body\":\"x\"", ""),
			     "field 'resp_body' is an exchange's");
	assert_rejects(SPAN_LINE(",\"resp_content_type\":\"text/plain\"", ""),
			     "field 'resp_content_type' is an exchange's");
	/* the span object's shape */
	assert_rejects("{\"ts_ns\":10," TID "," SID ",\"span\":[]}",
			     "field 'span' must be an object");
	assert_rejects(SPAN_LINE("", ",\"events\":[]"), "field 'span': unknown field 'events'");
	assert_rejects(SPAN_LINE("", ",\"kind\":\"server\""),
			     "field 'span.kind' must be an integer");
	assert_rejects(SPAN_LINE("", ",\"kind\":4294967296"), "field 'span.kind' out of range");
	assert_rejects(SPAN_LINE("", ",\"flags\":-1"), "field 'span.flags' must not be negative");
	assert_rejects(SPAN_LINE("", ",\"service\":5"), "field 'span.service' must be a string");
	assert_rejects(SPAN_LINE("", ",\"name\":\"x\""), "invalid JSON"); /* duplicate */
	assert_rejects(SPAN_LINE("", ",\"attributes\":{}"),
			     "field 'span.attributes' must be an array");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\"}]"),
			     "field 'span.attributes': element 0 must be");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"int_value\":1},"
				       "{\"key\":\"k\",\"bytes_value\":\"\"}]"),
			     "field 'span.attributes': element 1 must be");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":1,\"int_value\":1}]"),
			     "element 0 must be");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"int_value\":1,"
				       "\"bool_value\":true}]"), "element 0 must be");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"int_value\":1.5}]"),
			     "field 'span.attributes[0].int_value' must be an integer");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"int_value\":"
				       "9223372036854775808}]"),
			     "field 'span.attributes[0].int_value' out of range");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"int_value\":"
				       "-9223372036854775809}]"),
			     "field 'span.attributes[0].int_value' out of range");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"bool_value\":1}]"),
			     "field 'span.attributes[0].bool_value' must be true or false");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"double_value\":"
				       "\"nan\"}]"),
			     "field 'span.attributes[0].double_value' must be a number");
	assert_rejects(SPAN_LINE("", ",\"attributes\":[{\"key\":\"k\",\"string_value\":1}]"),
			     "field 'span.attributes[0].string_value' must be a string");
	/* OTLP ingest's limits at their largest: 256 attributes, 16 KiB strings */
	n = (size_t)snprintf(line, sizeof(line), SPAN_LINE("", ",\"attributes\":[%s"), "");
	line[n - 2] = '\0'; /* drop "}}" to go on with the array */
	n -= 2;
	for (int i = 0; i < 257; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s{\"key\":\"k\",\"int_value\":%d}",
				      i ? "," : "", i);
	memcpy(line + n, "]}}", 4);
	assert_rejects(line, "field 'span.attributes' holds 257 attributes, above 256");
	while (memcmp(line + n, ",{", 2) != 0) /* back to the start of the last attribute */
		n--;
	memcpy(line + n, "]}}", 4); /* 256 */
	assert_accepts(line);
	n = (size_t)snprintf(line, sizeof(line), "{\"ts_ns\":10,\"end_ns\":15,\"latency_ns\":5,"
			     TID "," SID ",\"span\":{\"name\":\"");
	memset(line + n, 'n', 16385);
	memcpy(line + n + 16385, "\"}}", 4);
	assert_rejects(line, "field 'span.name' is 16385 bytes, above 16384");
	memcpy(line + n + 16384, "\"}}", 4);
	assert_accepts(line);
	n = (size_t)snprintf(line, sizeof(line), "{\"ts_ns\":10,\"end_ns\":15,\"latency_ns\":5,"
			     TID "," SID ",\"span\":{\"attributes\":[{\"key\":\"k\","
			     "\"string_value\":\"");
	memset(line + n, 'v', 16385);
	memcpy(line + n + 16385, "\"}]}}", 6);
	assert_rejects(line, "field 'span.attributes[0].string_value' is 16385 bytes");
}

/* TIME, ROLE, METHOD, HOST, PATH, HTTP columns (24, 6, 7, 24, 40, 4 wide, a space after
 * each), then STATUS (6 wide) */
#define STATUS_COL_END (24 + 1 + 6 + 1 + 7 + 1 + 24 + 1 + 40 + 1 + 4 + 1 + 6)

static void test_table(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	char *buf, *row;
	uint8_t *bytes;

	(void)state;
	fill(&r);
	r.path = "/evil\x1b[31m/and/a/very/long/path/that/does/not/fit/in/the/column";
	tv_record_table_header(&b);
	record_wire_of(&r, &w, &bytes);
	tv_record_table_row(&b, &w);
	free(bytes);
	buf = take_text(&b);
	assert_non_null(strstr(buf, "TIME"));
	assert_non_null(strstr(buf, "LATENCY_MS"));
	row = strchr(buf, '\n') + 1;
	assert_non_null(strstr(row, "2026-01-01T00:00:00.123Z server GET     example.com:8080 "
				    "        /evil?[31m/"));
	assert_non_null(strstr(row, "... 1.1  "));
	assert_non_null(strstr(row, "... "));
	assert_non_null(strstr(row, " 200 "));
	assert_non_null(strstr(row, "100.000"));
	assert_non_null(strstr(row, "4242"));
	assert_non_null(strstr(row, "[::1]:50000\n"));
	assert_null(strchr(buf, '\x1b'));
	/* columns line up: header and row put STATUS right-aligned at the same place */
	assert_memory_equal(buf + STATUS_COL_END - 6, "STATUS", 6);
	assert_memory_equal(row + STATUS_COL_END - 6, "   200", 6);
	free(buf);
}

static void test_headers_round_trip(void **state)
{
	Tracevault__V1__TraceRecord r;
	Tracevault__V1__Header h[3] = { TRACEVAULT__V1__HEADER__INIT, TRACEVAULT__V1__HEADER__INIT,
					TRACEVAULT__V1__HEADER__INIT };
	Tracevault__V1__Header *req[2] = { &h[0], &h[1] }, *resp[1] = { &h[2] };
	struct tv_record_json rj;
	char err[256], *s, *s2;

	(void)state;
	fill(&r);
	h[0].name = "Host";
	h[0].value = "a\"b";
	h[1].name = "Cookie";
	h[1].value = "[redacted]";
	h[2].name = "Content-Length";
	h[2].value = "9";
	r.req_headers = req;
	r.n_req_headers = 2;
	r.resp_headers = resp;
	r.n_resp_headers = 1;
	s = to_jsonl(&r);
	assert_non_null(strstr(s, ",\"http_version\":\"1.1\",\"req_headers\":[{\"name\":\"Host\","
				  "\"value\":\"a\\\"b\"},{\"name\":\"Cookie\",\"value\":"
				  "\"[redacted]\"}],\"resp_headers\":[{\"name\":"
				  "\"Content-Length\",\"value\":\"9\"}]}\n"));
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)), 0);
	assert_int_equal(rj.rec.n_req_headers, 2);
	assert_int_equal(rj.rec.n_resp_headers, 1);
	assert_string_equal(rj.rec.req_headers[1]->value, "[redacted]");
	s2 = to_jsonl(&rj.rec);
	assert_string_equal(s, s2);
	tv_record_json_release(&rj);
	free(s);
	free(s2);
	/* shapes that are refused */
	s = "{\"ts_ns\":1,\"req_headers\":{}}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "must be an array"));
	s = "{\"ts_ns\":1,\"resp_headers\":[{\"name\":\"a\",\"value\":1}]}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	s = "{\"ts_ns\":1,\"resp_headers\":[{\"name\":\"a\",\"value\":\"b\",\"x\":\"c\"}]}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	/* no headers: no keys in the output (the pre-headers form is unchanged) */
	fill(&r);
	s = to_jsonl(&r);
	assert_null(strstr(s, "headers"));
	free(s);
}

/* --body-bytes fields: a text body as a JSON string, a binary one (invalid UTF-8, or a NUL) as
 * base64 under its own key; both read back to the same bytes; content strings only when set. */
static void test_bodies_round_trip(void **state)
{
	static const uint8_t bin[] = { 0x1f, 0x8b, 0x08, 0x00, 0xff, 'a' };
	Tracevault__V1__TraceRecord r;
	struct tv_record_json rj;
	char err[256], *s, *s2;

	(void)state;
	fill(&r);
	r.req_body.data = (uint8_t *)"name=\"\xc3\xa9t\xc3\xa9\"\n";
	r.req_body.len = strlen((const char *)r.req_body.data);
	r.resp_body.data = (uint8_t *)bin;
	r.resp_body.len = sizeof(bin);
	r.resp_content_type = "application/json";
	r.resp_content_encoding = "gzip";
	s = to_jsonl(&r);
	assert_non_null(strstr(s, ",\"flags\":3,\"role\":\"server\",\"host\":\"example.com:8080\","
				  "\"http_version\":\"1.1\",\"req_body\":\"name=\\\"\xc3\xa9t\xc3\xa9\\\"\\n\","
				  "\"resp_body_base64\":\"H4sIAP9h\",\"resp_content_type\":"
				  "\"application/json\",\"resp_content_encoding\":\"gzip\"}\n"));
	assert_null(strstr(s, "req_content_type"));
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)), 0);
	assert_int_equal(rj.rec.resp_body.len, sizeof(bin));
	assert_memory_equal(rj.rec.resp_body.data, bin, sizeof(bin));
	assert_int_equal(rj.rec.req_body.len, r.req_body.len);
	assert_string_equal(rj.rec.resp_content_encoding, "gzip");
	s2 = to_jsonl(&rj.rec);
	assert_string_equal(s, s2);
	tv_record_json_release(&rj);
	free(s);
	free(s2);
	/* every padding length, and a NUL makes text base64 */
	for (size_t n = 1; n <= 5; n++) {
		static const uint8_t nul[] = { 'a', 0, 'b', 'c', 'd' };

		fill(&r);
		r.req_body.data = (uint8_t *)nul;
		r.req_body.len = n;
		s = to_jsonl(&r);
		assert_non_null(strstr(s, n == 1 ? "\"req_body\":\"a\"" : "\"req_body_base64\":"));
		assert_int_equal(tv_record_json_parse(&rj, s, strlen(s) - 1, err, sizeof(err)), 0);
		assert_int_equal(rj.rec.req_body.len, n);
		assert_memory_equal(rj.rec.req_body.data, nul, n);
		tv_record_json_release(&rj);
		free(s);
	}
	s = "{\"ts_ns\":1,\"resp_body\":\"a\",\"resp_body_base64\":\"YQ==\"}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "twice"));
	s = "{\"ts_ns\":1,\"resp_body_base64\":\"YQ=\"}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	s = "{\"ts_ns\":1,\"resp_body_base64\":\"Y=Q=\"}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	s = "{\"ts_ns\":1,\"req_body\":5}";
	assert_int_equal(tv_record_json_parse(&rj, s, strlen(s), err, sizeof(err)), -EINVAL);
	/* none set: no key (the form without bodies is unchanged) */
	fill(&r);
	s = to_jsonl(&r);
	assert_null(strstr(s, "body\""));
	assert_null(strstr(s, "content"));
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_round_trip),
		cmocka_unit_test(test_bodies_round_trip),
		cmocka_unit_test(test_exact_jsonl_output),
		cmocka_unit_test(test_round_trip_all_fields),
		cmocka_unit_test(test_round_trip_u64_extremes),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_defaults_and_minimal),
		cmocka_unit_test(test_rejections),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_span_round_trip),
		cmocka_unit_test(test_check_exchange_fields),
		cmocka_unit_test(test_check_span_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
