/* put's fast JSON Lines reader (client/cli/record_reader.c) against the reference parser
 * (tv_record_json_parse, client/cli/record_json.c): on random records and random mutations of
 * them, and on a table of lines where yajl and jansson disagree, the reader accepts exactly the
 * lines the reference accepts, with byte-identical records, and refuses the others with the
 * reference's message; its fast path reads every unmutated line itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
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
#include "cli/record_reader.h"
#include "record_wire_of.h"

/* random records x mutations each; TV_READER_DIFF_RECORDS runs more, TV_READER_DIFF_SEED
 * another seed (12 by default) */
#define DEFAULT_RECORDS 1500
#define MUTATIONS_PER_RECORD 12

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* a u64 from the interesting places: small, int64's edge, u64's top */
static uint64_t rnd_u64(void)
{
	static const uint64_t edge[] = { 0, 1, 9, 10, 4294967295ull, 4294967296ull,
					 9223372036854775807ull, 9223372036854775808ull,
					 18446744073709551615ull, 1767225600123456789ull };

	switch (rnd_below(4)) {
	case 0:
		return edge[rnd_below(sizeof(edge) / sizeof(edge[0]))];
	case 1:
		return rnd();
	default:
		return rnd() >> rnd_below(64);
	}
}

/* strings with the bytes writers and parsers get wrong: quotes, backslashes, control bytes,
 * non-ASCII, invalid UTF-8 (the writer makes it U+FFFD), DEL */
static char *rnd_str(char *buf, size_t cap)
{
	static const char *const parts[] = {
		"/api/v1/users", "GET", "example.com:8080", "?a=1&b=2", "\"", "\\", "\t", "\n",
		"\x01", "\x1f", "\x7f", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff",
		"\xed\xa0\x80", "\\u0000", "\\ud800", "/", "x", "12345678901234567890", " ", "", "{}",
	};
	size_t n = 0, k = rnd_below(6);

	for (size_t i = 0; i < k; i++) {
		const char *p = parts[rnd_below(sizeof(parts) / sizeof(parts[0]))];
		size_t l = strlen(p);

		if (n + l + 1 > cap)
			break;
		memcpy(buf + n, p, l);
		n += l;
	}
	buf[n] = '\0';
	return buf;
}

/* "" (a third of the time) or an id of n hex digits (n + 1 bytes in buf), not all zeros,
 * upper case now and then (put lower-cases it on both paths) */
static char *rnd_id(char *buf, size_t n)
{
	static const char hex[] = "0123456789abcdef0123456789ABCDEF";

	buf[0] = '\0';
	if (rnd_below(3) == 0)
		return buf;
	for (size_t i = 0; i < n; i++)
		buf[i] = hex[rnd_below(rnd_below(8) ? 16 : 32)];
	buf[n] = '\0';
	if (strspn(buf, "0") == n)
		buf[n - 1] = '1';
	return buf;
}

/* a status tv_record_check takes: 0 or 100..999, its edges often */
static uint32_t rnd_status(void)
{
	static const uint32_t edge[] = { 0, 100, 101, 200, 404, 599, 600, 999 };

	return rnd_below(2) ? edge[rnd_below(sizeof(edge) / sizeof(edge[0]))]
			    : 100 + (uint32_t)rnd_below(900);
}

#define STR_CAP 96
struct rec_store {
	char s[32][STR_CAP];
	char trace_id[33], span_id[17];
	uint8_t body[2][64];
	Tracevault__V1__Header h[6], *hp[6];
};

/* a random record, its strings in st */
static void rnd_record(Tracevault__V1__TraceRecord *r, struct rec_store *st)
{
	Tracevault__V1__TraceRecord init = TRACEVAULT__V1__TRACE_RECORD__INIT;
	char **strs[] = { &r->comm, &r->local, &r->remote, &r->method, &r->path, &r->role,
			  &r->host, &r->http_version,
			  &r->req_content_type, &r->resp_content_type, &r->req_content_encoding,
			  &r->resp_content_encoding };
	size_t k = 0;

	*r = init;
	r->ts_ns = rnd_u64() & INT64_MAX; /* the store's range (tv_record_check) */
	r->end_ns = rnd_u64();
	r->latency_ns = rnd_u64();
	r->req_body_bytes = rnd_u64();
	r->resp_body_bytes = rnd_u64();
	r->pid = (uint32_t)rnd_u64();
	r->status = rnd_status();
	r->flags = (uint32_t)rnd_u64();
	r->trace_id = rnd_id(st->trace_id, 32);
	r->span_id = rnd_id(st->span_id, 16);
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (rnd_below(3))
			*strs[i] = rnd_str(st->s[k++], STR_CAP);
	for (int side = 0; side < 2; side++) {
		size_t n = rnd_below(4);
		ProtobufCBinaryData *b = side ? &r->resp_body : &r->req_body;

		for (size_t i = 0; i < n; i++) {
			size_t j = side * 3 + i;

			tracevault__v1__header__init(&st->h[j]);
			st->h[j].name = rnd_str(st->s[k++], STR_CAP);
			st->h[j].value = rnd_str(st->s[k++], STR_CAP);
			st->hp[j] = &st->h[j];
		}
		if (side)
			r->resp_headers = st->hp + 3, r->n_resp_headers = n;
		else
			r->req_headers = st->hp, r->n_req_headers = n;
		if (rnd_below(3) == 0) { /* text or binary: the writer picks body or base64 */
			b->len = rnd_below(sizeof(st->body[side]));
			for (size_t i = 0; i < b->len; i++)
				st->body[side][i] = rnd_below(4) ? (uint8_t)('a' + rnd_below(26))
								 : (uint8_t)rnd();
			b->data = st->body[side];
		}
	}
}

/* r as query writes it (tv_record_jsonl), NUL-terminated, *len without the newline. */
static char *to_jsonl(const Tracevault__V1__TraceRecord *r, size_t *len)
{
	struct tv_out_buf b = { 0 };
	struct tv_record_wire w;
	uint8_t *bytes;
	char *buf;

	record_wire_of(r, &w, &bytes);
	tv_record_jsonl(&b, &w);
	free(bytes);
	assert_false(b.failed);
	assert_true(b.len > 0 && b.p[b.len - 1] == '\n');
	buf = malloc(b.len + 1);
	assert_non_null(buf);
	memcpy(buf, b.p, b.len);
	buf[b.len] = '\0';
	*len = b.len - 1;
	tv_out_free(&b);
	return buf;
}

/* Snippets a mutation inserts: each is where yajl, jansson or the schema could part ways. */
static const char *const SNIPPETS[] = {
	"\\u0000", "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\ud800", "\\udc00", "\\ud800\\u0041",
	"\\u00e9", "\\u20ac", "\\/", "\\b", "\\f", "\\x", "\\", "\"", "-0", "-1", "0", "01", "1.0",
	"1e5", "1E+2", "18446744073709551615", "18446744073709551616", "9223372036854775808",
	"4294967295", "4294967296", "99999999999999999999", "null", "true", "false", "[]", "{}",
	"[{}]", ",\"ts_ns\":1", ",\"pid\":1", ",\"path\":\"p\"", ",\"bogus\":1", ",\"\":1",
	",\"req_headers\":[{\"name\":\"a\",\"value\":\"b\"}]", ",\"resp_headers\":[]",
	",\"req_headers\":[{\"name\":\"a\"}]", ",\"req_headers\":[{\"name\":\"a\",\"value\":1}]",
	",\"req_headers\":[{\"value\":\"b\",\"name\":\"a\"}]",
	",\"resp_headers\":[{\"name\":\"a\",\"value\":\"b\",\"name\":\"c\"}]",
	",\"span\":{}", ",\"status\":70000", ",\"trace_id\":\"00000000000000000000000000000000\"",
	",\"req_body\":\"x\"", ",\"req_body_base64\":\"eA==\"", ",\"resp_body_base64\":\"eA=\"",
	",\"resp_body_base64\":\"\"", ",\"req_body\":\"\"", "\xc3\xa9", "\xc0\xaf", "\xed\xa0\x80",
	"\xf4\x90\x80\x80", "\xf0\x9f\x98\x80", "\xe2\x82", "\xff", " ", "\t", "\r", "\n", "\x0b",
	"\x0c", "\x01", "\x7f", ",", ":", "}", "]", "{", "[",
};
#define N_SNIPPETS (sizeof(SNIPPETS) / sizeof(SNIPPETS[0]))
/* bytes a mutation writes over one */
static const char FLIP_BYTES[] = "{}[]\",:\\0123456789-+.eEtfnu \x0b\x0c\x80\xff\xc3";

/* a mutated copy of line (malloc'd, *len in and out) */
static char *mutate(const char *line, size_t *len)
{
	size_t n = *len, cap = n + 256, rounds = 1 + rnd_below(3);
	char *m = malloc(cap);

	assert_non_null(m);
	memcpy(m, line, n);
	for (size_t r = 0; r < rounds; r++) {
		size_t at = rnd_below(n + 1), k;

		switch (rnd_below(4)) {
		case 0: /* overwrite one byte */
			if (at < n)
				m[at] = rnd_below(8) ? FLIP_BYTES[rnd_below(sizeof(FLIP_BYTES) - 1)]
						     : (char)rnd();
			break;
		case 1: /* delete 1-4 bytes */
			k = 1 + rnd_below(4);
			if (at + k <= n) {
				memmove(m + at, m + at + k, n - at - k);
				n -= k;
			}
			break;
		default: { /* insert a snippet, at a structural byte half the time */
			const char *s = SNIPPETS[rnd_below(N_SNIPPETS)];
			size_t l = strlen(s);

			if (rnd_below(2)) {
				while (at < n && !strchr(",:{}[\"", m[at]))
					at++;
			}
			if (n + l > cap)
				break;
			memmove(m + at + l, m + at, n - at);
			memcpy(m + at, s, l);
			n += l;
			break;
		}
		}
	}
	*len = n;
	return m;
}

static uint8_t *packed(const Tracevault__V1__TraceRecord *r, size_t *len)
{
	uint8_t *buf;

	*len = tracevault__v1__trace_record__get_packed_size(r);
	buf = malloc(*len + 1);
	assert_non_null(buf);
	assert_int_equal(tracevault__v1__trace_record__pack(r, buf), *len);
	return buf;
}

struct diff_counts {
	uint64_t lines, ref_ok, fast_ok;
};

/* The line through the reference and the reader: the same outcome, the same message, the same
 * record. Returns 1 when the fast path read it. */
static int check_line(struct tv_record_reader *rd, const char *line, size_t len,
		      struct diff_counts *c)
{
	struct tv_record_json rj;
	const Tracevault__V1__TraceRecord *rec = NULL;
	char ref_err[256] = "", rd_err[256] = "";
	uint64_t fb = tv_record_reader_fallbacks(rd);
	int ref_ret, rd_ret, fast;

	ref_ret = tv_record_json_parse(&rj, line, len, ref_err, sizeof(ref_err));
	rd_ret = tv_record_reader_parse(rd, line, len, &rec, rd_err, sizeof(rd_err));
	fast = tv_record_reader_fallbacks(rd) == fb;
	c->lines++;
	c->ref_ok += ref_ret == 0;
	c->fast_ok += fast;
	if (ref_ret != rd_ret || strcmp(ref_err, rd_err) != 0)
		fail_msg("line '%.*s': reference %d '%s', reader %d '%s' (fast path: %s)",
			 (int)len, line, ref_ret, ref_err, rd_ret, rd_err, fast ? "yes" : "no");
	if (ref_ret == 0) {
		size_t la, lb;
		uint8_t *a = packed(&rj.rec, &la), *b = packed(rec, &lb);

		if (la != lb || memcmp(a, b, la) != 0)
			fail_msg("line '%.*s': records differ (fast path: %s)", (int)len, line,
				 fast ? "yes" : "no");
		free(a);
		free(b);
		tv_record_json_release(&rj);
	}
	return fast;
}

static void test_random_and_mutated_lines_match_reference(void **state)
{
	struct tv_record_reader *rd = tv_record_reader_new();
	struct diff_counts plain = {0}, mutated = {0};
	const char *env = getenv("TV_READER_DIFF_RECORDS"), *env_seed = getenv("TV_READER_DIFF_SEED");
	size_t records = env ? strtoull(env, NULL, 10) : DEFAULT_RECORDS;
	uint64_t seed = env_seed ? strtoull(env_seed, NULL, 10) : 12;

	(void)state;
	assert_non_null(rd);
	rng_state = seed;
	for (size_t i = 0; i < records; i++) {
		Tracevault__V1__TraceRecord r;
		struct rec_store st;
		size_t len;
		char *line;

		rnd_record(&r, &st);
		line = to_jsonl(&r, &len);
		/* what query writes always takes the fast path (it writes UTF-8 as bytes,
		 * never a surrogate escape or \u0000) */
		if (!check_line(rd, line, len, &plain))
			fail_msg("fast path declined a line the writer made: %s", line);
		for (int m = 0; m < MUTATIONS_PER_RECORD; m++) {
			size_t mlen = len;
			char *ml = mutate(line, &mlen);

			check_line(rd, ml, mlen, &mutated);
			free(ml);
		}
		free(line);
	}
	print_message("seed %" PRIu64 ": %" PRIu64 " written lines (fast %" PRIu64 "), %" PRIu64
		      " mutated (reference accepted %" PRIu64 ", fast path read %" PRIu64 ")\n",
		      seed, plain.lines, plain.fast_ok, mutated.lines, mutated.ref_ok,
		      mutated.fast_ok);
	assert_int_equal(plain.ref_ok, plain.lines);
	/* the mutations must reach both sides of the fast path's decision */
	assert_true(mutated.fast_ok > mutated.lines / 20);
	assert_true(mutated.ref_ok < mutated.lines);
	tv_record_reader_free(rd);
}

/* Lines where yajl alone would part from jansson, or the schema decides: the reader still
 * gives the reference's answer; where marked, the fast path itself reads the line. */
static void test_edges_match_reference(void **state)
{
	static const struct {
		const char *line;
		int fast; /* 1: the fast path must read it */
	} cases[] = {
		{"{\"ts_ns\":1}", 1},
		{" {\"ts_ns\" : 1 } \t", 1},
		{"{\"ts_ns\":9223372036854775807,\"end_ns\":18446744073709551615,"
		 "\"pid\":4294967295}", 1},
		/* upper-case ids: lower-cased by tv_record_check on both paths */
		{"{\"ts_ns\":1,\"trace_id\":\"4BF92F3577B34DA6A3CE929D0E0E4736\","
		 "\"span_id\":\"00F067AA0BA902B7\"}", 1},
		{"{\"ts_ns\":1,\"path\":\"caf\xc3\xa9 \\u00e9 \\\" \\\\ \\/ \\b\\f\\n\\r\\t\"}", 1},
		{"{\"ts_ns\":1,\"req_headers\":[],\"resp_headers\":[{\"value\":\"v\",\"name\":\"n\"}]}",
		 1},
		{"{\"ts_ns\":1,\"req_body_base64\":\"AAEC\",\"resp_body\":\"\"}", 1},
		{"{\"ts_ns\":1,\"req_body_base64\":\"\"}", 1},
		{"{\"ts_n\\u0073\":1}", 1}, /* an escaped key is the same key */
		/* the fast path declines, the reference decides */
		{"{\"ts_ns\":1,\"path\":\"\\ud83d\\ude00\"}", 0},      /* a pair: accepted */
		{"{\"ts_ns\":1,\"path\":\"\\ud800\"}", 0},             /* lone high: refused */
		{"{\"ts_ns\":1,\"path\":\"\\ud800x\"}", 0},
		{"{\"ts_ns\":1,\"path\":\"\\udc00\"}", 0},             /* lone low */
		{"{\"ts_ns\":1,\"path\":\"\\ud800\\u0041\"}", 0},      /* high + not low */
		{"{\"ts_ns\":1,\"path\":\"a\\u0000\"}", 0},
		{"{\"ts_ns\":1,\"a\\u0000\":1}", 0},
		{"{\"ts_ns\":1,\"path\":\"\xc0\xaf\"}", 0},            /* overlong */
		{"{\"ts_ns\":1,\"path\":\"\xed\xa0\x80\"}", 0},        /* surrogate in UTF-8 */
		{"{\"ts_ns\":1,\"path\":\"\xf4\x90\x80\x80\"}", 0},    /* past U+10FFFF */
		{"{\"ts_ns\":1,\"path\":\"\xf8\x88\x80\x80\x80\"}", 0},
		{"{\"ts_ns\":1,\x0c\"pid\":2}", 0},                    /* \f: yajl whitespace */
		{"{\"ts_ns\":1,\x0b\"pid\":2}", 0},                    /* \v */
		{"{\"ts_ns\":1,\"path\":\"\x7f\"}", 1},                /* DEL is legal */
		{"{\"ts_ns\":-0}", 0},                                 /* jansson reads 0 */
		{"{\"ts_ns\":1.0}", 0},
		{"{\"ts_ns\":1e3}", 0},
		{"{\"ts_ns\":18446744073709551616}", 0},
		/* read by the fast path, refused by tv_record_check: declined */
		{"{\"ts_ns\":9223372036854775808}", 0},
		{"{\"ts_ns\":1,\"status\":70000}", 0},
		{"{\"ts_ns\":1,\"trace_id\":\"xyz\"}", 0},
		{"{\"ts_ns\":1,\"span_id\":\"0000000000000000\"}", 0},
		/* a span record: the reference reads it */
		{"{\"ts_ns\":1,\"end_ns\":1,\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
		 "\"span_id\":\"00f067aa0ba902b7\",\"span\":{\"name\":\"a\"}}", 0},
		{"{\"ts_ns\":1,\"span\":{}}", 0},
		{"{\"ts_ns\":1,\"pid\":4294967296}", 0},
		{"{\"ts_ns\":01}", 0},
		{"{\"ts_ns\":1,\"ts_ns\":1}", 0},
		{"{\"ts_ns\":1,\"req_body\":\"a\",\"req_body_base64\":\"YQ==\"}", 0},
		{"{\"ts_ns\":1,\"req_body_base64\":\"YQ=\"}", 0},
		{"{\"ts_ns\":1,\"req_headers\":[{\"name\":\"a\",\"value\":\"b\",\"x\":1}]}", 0},
		{"{\"ts_ns\":1,\"req_headers\":[{\"name\":\"a\",\"name\":\"b\"}]}", 0},
		{"{\"ts_ns\":1,\"req_headers\":{}}", 0},
		{"{\"ts_ns\":1,\"path\":null}", 0},
		{"{\"ts_ns\":1} {}", 0},
		{"{\"ts_ns\":1}x", 0},
		{"{\"ts_ns\":1}\"", 0}, /* yajl 2.1 takes a cut token at the end for ok */
		{"{\"ts_ns\":1}\"}", 0},
		{"{\"ts_ns\":1} tru", 0},
		{"{\"ts_ns\":1}-", 0},
		{"{\"ts_ns\":1} 1", 0},
		{"{\"ts_ns\":1} \r\n", 1},
		{"{\"ts_ns\":1", 0},
		{"[{\"ts_ns\":1}]", 0},
		{"\"x\"", 0},
		{"{}", 0},
		{"{\"ts_ns\":1,}", 0},
		{"{\"ts_ns\":1 /* c */}", 0},
		{"\xef\xbb\xbf{\"ts_ns\":1}", 0},                      /* a BOM */
	};
	struct tv_record_reader *rd = tv_record_reader_new();
	struct diff_counts c = {0};

	(void)state;
	assert_non_null(rd);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fast = check_line(rd, cases[i].line, strlen(cases[i].line), &c);

		if (fast != cases[i].fast)
			fail_msg("line '%s': fast path %s", cases[i].line,
				 fast ? "read it" : "declined it");
	}
	tv_record_reader_free(rd);
}

/* The record stays valid until the next line, and a refused line after a good one leaves no
 * trace of the good one's fields in the next record. */
static void test_record_lifetime_and_reset(void **state)
{
	struct tv_record_reader *rd = tv_record_reader_new();
	const Tracevault__V1__TraceRecord *rec;
	char err[256];
	const char *a = "{\"ts_ns\":1,\"path\":\"/a\",\"req_headers\":[{\"name\":\"h\",\"value\":\"v\"}]}";
	const char *bad = "{\"ts_ns\":1,\"path\":5}";
	const char *b = "{\"ts_ns\":2}";

	(void)state;
	assert_non_null(rd);
	assert_int_equal(tv_record_reader_parse(rd, a, strlen(a), &rec, err, sizeof(err)), 0);
	assert_string_equal(rec->path, "/a");
	assert_int_equal(rec->n_req_headers, 1);
	assert_string_equal(rec->req_headers[0]->value, "v");
	assert_int_equal(tv_record_reader_parse(rd, bad, strlen(bad), &rec, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "field 'path' must be a string");
	assert_int_equal(tv_record_reader_parse(rd, b, strlen(b), &rec, err, sizeof(err)), 0);
	assert_int_equal(rec->ts_ns, 2);
	assert_string_equal(rec->path, "");
	assert_int_equal(rec->n_req_headers, 0);
	assert_int_equal(tv_record_reader_fallbacks(rd), 1);
	tv_record_reader_free(rd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges_match_reference),
		cmocka_unit_test(test_record_lifetime_and_reset),
		cmocka_unit_test(test_random_and_mutated_lines_match_reference),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
