/* query's output formats (client/cli/record_out.c, record_otlp.c, out_buf.c) at their edges:
 * csv quoting and bytes that are not UTF-8, the otlp-json ids (client and server ends, invalid
 * traceparents, the SHA-256 derivation against a value computed with Python's hashlib),
 * batches of TV_OTLP_BATCH_SPANS grouped by resource, and the buffer's growth. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/out_buf.h"
#include "cli/record_otlp.h"
#include "cli/record_out.h"
#include "record_wire_of.h"

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
	r->path = "/";
	r->status = 200;
	r->role = "server";
}

/* b's text as a C string (b keeps owning it) */
static const char *text(struct tv_out_buf *b)
{
	assert_false(b->failed);
	tv_out_char(b, '\0');
	b->len--;
	return b->p;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_csv_quotes_and_invalid_utf8(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	const char *row;
	uint8_t *bytes;

	(void)state;
	fill(&r);
	r.path = "/a\"b,c\xff";      /* quote, comma, a byte that is not UTF-8 */
	r.comm = "x\xc3\xa9y";       /* valid UTF-8 stays */
	r.host = "plain";
	tv_record_csv_header(&b);
	record_wire_of(&r, &w, &bytes);
	tv_record_csv_row(&b, &w);
	free(bytes);
	row = strstr(text(&b), "\r\n") + 2;
	assert_true(starts_with(text(&b), "ts_ns,end_ns,latency_ns,pid,comm,local,remote,method,"
					  "path,status,"));
	assert_non_null(strstr(row, ",4242,x\xc3\xa9y,127.0.0.1:8080,[::1]:50000,GET,"
				    "\"/a\"\"b,c\xef\xbf\xbd\",200,"));
	assert_non_null(strstr(row, ",server,plain,,,,,,,\r\n")); /* no span columns */
	tv_out_free(&b);
}

/* table: printable UTF-8 kept (one column per character), controls and bytes that are not
 * UTF-8 one '?' each, so columns stay aligned and no escape reaches the terminal. */
static void test_table_utf8_and_controls(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	const char *t, *row;
	uint8_t *bytes;
	size_t skip;

	(void)state;
	fill(&r);
	r.comm = "caf\xc3\xa9";               /* 4 characters, 5 bytes */
	r.path = "/\x1b[2J\xff\xc2\x9b\xe2\x80\xaex\n"; /* ESC, invalid, C1, U+202E, LF */
	tv_record_table_header(&b);
	record_wire_of(&r, &w, &bytes);
	tv_record_table_row(&b, &w);
	free(bytes);
	t = text(&b);
	row = strchr(t, '\n') + 1;
	assert_non_null(strstr(row, " /?[2J???x? "));
	/* COMM is 16 columns: "café" then 12 spaces, as "nginx" gets 11 */
	assert_non_null(strstr(row, " caf\xc3\xa9            "));
	for (const char *c = row; *c && *c != '\n'; c++)
		assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c != 0x7f);
	tv_out_free(&b);
	assert_int_equal(tv_term_char((const unsigned char *)"\xe2\x81\xa6", 3, &skip), 0);
	assert_int_equal(skip, 3);
	assert_int_equal(tv_term_char((const unsigned char *)"\xc2\xa0", 2, &skip), 2);
	assert_int_equal(tv_term_char((const unsigned char *)"\xf0\x9f\x98\x80", 4, &skip), 4);
	assert_int_equal(tv_term_char((const unsigned char *)"\xe2\x82", 2, &skip), 0);
	assert_int_equal(skip, 1);
}

static void test_otlp_ids(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_otlp_ids ids;
	/* hashlib.sha256(b"\0".join([b"tv1", b"1767225600123456789", b"4242", b"server",
	 * b"127.0.0.1:8080", b"[::1]:50000"])) */
	static const uint8_t digest[32] = {
		0xae, 0xf5, 0xeb, 0x93, 0x76, 0x4e, 0xc5, 0xbb, 0x0b, 0xb3, 0xed, 0xf3, 0xb5, 0xb7,
		0xd6, 0xd6, 0x65, 0x93, 0xb8, 0x29, 0x77, 0xfe, 0xbd, 0x64, 0x2e, 0xbd, 0x72, 0x80,
		0x6f, 0xeb, 0x09, 0x0b,
	};
	static const uint8_t sent[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };

	(void)state;
	fill(&r);
	/* no traceparent: both derived */
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_true(ids.derived_trace_id);
	assert_false(ids.has_parent);
	assert_memory_equal(ids.trace_id, digest, 16);
	assert_memory_equal(ids.span_id, digest + 16, 8);
	/* server with a traceparent: the caller's span is the parent */
	r.trace_id = "4BF92F3577B34DA6A3CE929D0E0E4736"; /* any case */
	r.span_id = "00f067aa0ba902b7";
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_false(ids.derived_trace_id);
	assert_int_equal(ids.trace_id[0], 0x4b);
	assert_int_equal(ids.trace_id[15], 0x36);
	assert_true(ids.has_parent);
	assert_memory_equal(ids.parent_span_id, sent, 8);
	assert_memory_equal(ids.span_id, digest + 16, 8);
	/* client: the header it sent names its own span */
	r.role = "client";
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_false(ids.has_parent);
	assert_memory_equal(ids.span_id, sent, 8);
	/* an all-zero or malformed trace id is no traceparent: derived, and its span id unused */
	r.trace_id = "00000000000000000000000000000000";
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_true(ids.derived_trace_id);
	assert_memory_not_equal(ids.span_id, sent, 8);
	r.trace_id = "4bf92f3577b34da6a3ce929d0e0e473";  /* 31 digits */
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_true(ids.derived_trace_id);
	r.trace_id = "4bf92f3577b34da6a3ce929d0e0e473g";
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_true(ids.derived_trace_id);
	/* a client with a valid trace id but a zero span id: the span id is derived */
	r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
	r.span_id = "0000000000000000";
	assert_int_equal(tv_otlp_span_ids(&r, &ids), 0);
	assert_false(ids.derived_trace_id);
	assert_false(ids.has_parent);
	assert_memory_not_equal(ids.span_id, sent, 8);
}

static size_t count(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void test_otlp_batches_and_resources(void **state)
{
	Tracevault__V1__TraceRecord r;
	struct tv_out_buf b = { 0 };
	struct tv_otlp *o;
	const char *s, *nl;

	(void)state;
	assert_int_equal(tv_otlp_new(&o), 0);
	fill(&r);
	for (int i = 0; i < TV_OTLP_BATCH_SPANS + 3; i++) {
		r.ts_ns++;
		r.comm = i % 2 ? "b" : "a";
		tv_otlp_add(o, &b, &r);
		if (i == TV_OTLP_BATCH_SPANS - 2)
			assert_int_equal(b.len, 0); /* nothing before a batch is full */
	}
	tv_otlp_finish(o, &b);
	tv_otlp_free(o);
	s = text(&b);
	nl = strchr(s, '\n');
	assert_non_null(nl);
	assert_int_equal(count(s, "\n"), 2);
	/* first line: two resources, a then b, 1000 spans */
	assert_int_equal(count(s, "\"resource\":") - count(nl, "\"resource\":"), 2);
	assert_true(strstr(s, "\"stringValue\":\"a\"") < strstr(s, "\"stringValue\":\"b\""));
	assert_int_equal(count(s, "\"traceId\"") - count(nl, "\"traceId\""), TV_OTLP_BATCH_SPANS);
	assert_int_equal(count(nl, "\"traceId\""), 3);
	assert_true(starts_with(s, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{"));
	tv_out_free(&b);
}

static void test_out_buf_growth_and_json(void **state)
{
	struct tv_out_buf b = { 0 };
	char big[10000];

	(void)state;
	memset(big, 'x', sizeof(big));
	big[5] = '"';
	big[6] = '\x01';
	big[7] = '\xc0'; /* overlong lead byte */
	tv_out_json_bytes(&b, big, sizeof(big));
	assert_int_equal(b.len, sizeof(big) - 3 + 2 + 2 + 6 + 6);
	assert_memory_equal(b.p, "\"xxxxx\\\"\\u0001\\ufffdxx", 22);
	b.len = 0;
	tv_out_u64(&b, UINT64_MAX);
	tv_out_char(&b, ' ');
	tv_out_u64(&b, 0);
	assert_string_equal(text(&b), "18446744073709551615 0");
	tv_out_free(&b);
}

/* The JSON escaper takes 16 plain bytes at a time (SSE2), then 8, then one: every byte value
 * at every place of a 40-byte string (two 16-byte blocks, an 8-byte word, a byte tail)
 * escapes as it does alone (a string of one byte takes the byte-at-a-time path). */
static void test_json_words_escape_like_single_bytes(void **state)
{
	(void)state;
	for (unsigned c = 0; c < 256; c++) {
		struct tv_out_buf one = { 0 };
		unsigned char byte = (unsigned char)c;

		tv_out_json_bytes(&one, &byte, 1);
		assert_false(one.failed);
		for (size_t at = 0; at < 40; at++) {
			struct tv_out_buf got = { 0 }, want = { 0 };
			char s[40];

			memset(s, 'a', sizeof(s));
			s[at] = (char)byte;
			tv_out_json_bytes(&got, s, sizeof(s));
			tv_out_char(&want, '"');
			tv_out_repeat(&want, 'a', at);
			tv_out_mem(&want, one.p + 1, one.len - 2); /* without its quotes */
			tv_out_repeat(&want, 'a', sizeof(s) - at - 1);
			tv_out_char(&want, '"');
			assert_false(got.failed || want.failed);
			if (got.len != want.len || memcmp(got.p, want.p, got.len))
				fail_msg("byte 0x%02x at %zu: '%.*s', alone it gives '%.*s'", c, at,
					 (int)got.len, got.p, (int)one.len, one.p);
			tv_out_free(&got);
			tv_out_free(&want);
		}
		tv_out_free(&one);
	}
}

/* A UTF-8 sequence of 2, 3 and 4 bytes at every place of a 40-byte string, also across the
 * 16- and 8-byte blocks the escaper tests at once, passes as itself; cut short at the string's
 * end, each of its bytes becomes one \ufffd. */
static void test_json_utf8_across_blocks(void **state)
{
	static const char *const seqs[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };

	(void)state;
	for (size_t k = 0; k < 3; k++) {
		size_t len = strlen(seqs[k]);

		for (size_t at = 0; at + len <= 40; at++) {
			struct tv_out_buf got = { 0 };
			char s[40], want[64];

			memset(s, 'a', sizeof(s));
			memcpy(s + at, seqs[k], len);
			tv_out_json_bytes(&got, s, sizeof(s));
			want[0] = '"';
			memcpy(want + 1, s, sizeof(s));
			want[1 + sizeof(s)] = '"';
			assert_false(got.failed);
			if (got.len != sizeof(s) + 2 || memcmp(got.p, want, got.len))
				fail_msg("%zu-byte sequence at %zu: '%.*s'", len, at, (int)got.len,
					 got.p);
			got.len = 0;
			tv_out_json_bytes(&got, s, at + len - 1); /* its last byte cut off */
			assert_int_equal(got.len, at + 2 + 6 * (len - 1));
			for (size_t i = 0; i + 1 < len; i++)
				assert_memory_equal(got.p + 1 + at + 6 * i, "\\ufffd", 6);
			tv_out_free(&got);
		}
	}
}

/* tv_put_u64 against printf's %llu: at every power of ten and its neighbours, and at random
 * values of every length. */
static void test_u64_like_printf(void **state)
{
	char got[TV_U64_MAX_DIGITS + 1], want[32];
	uint64_t x = 0x9e3779b97f4a7c15ull, p = 1;

	(void)state;
	for (int k = 0; k < 20; k++, p *= 10) {
		uint64_t vs[3] = { p - 1, p, p + 1 };

		for (int i = 0; i < 3; i++) {
			*tv_put_u64(got, vs[i]) = '\0';
			snprintf(want, sizeof(want), "%llu", (unsigned long long)vs[i]);
			assert_string_equal(got, want);
		}
	}
	for (int i = 0; i < 200000; i++) {
		uint64_t v;

		x ^= x << 13; /* xorshift64 */
		x ^= x >> 7;
		x ^= x << 17;
		v = x >> (i % 64); /* every length */
		*tv_put_u64(got, v) = '\0';
		snprintf(want, sizeof(want), "%llu", (unsigned long long)v);
		assert_string_equal(got, want);
	}
	*tv_put_u64(got, UINT64_MAX) = '\0';
	assert_string_equal(got, "18446744073709551615");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_quotes_and_invalid_utf8),
		cmocka_unit_test(test_table_utf8_and_controls),
		cmocka_unit_test(test_otlp_ids),
		cmocka_unit_test(test_otlp_batches_and_resources),
		cmocka_unit_test(test_out_buf_growth_and_json),
		cmocka_unit_test(test_json_words_escape_like_single_bytes),
		cmocka_unit_test(test_json_utf8_across_blocks),
		cmocka_unit_test(test_u64_like_printf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
