/* query's jsonl, csv and table output of TraceRecords given as their wire bytes, as the
 * servers send them: hand-written edge cases (every field kind, u64/u32 extremes and varints
 * longer than needed, duplicate fields, unknown fields of each wire type, NUL and bytes that
 * are not UTF-8, headers and bodies) and a seeded random corpus, rendered and compared byte
 * for byte with output checked in under unit/data/ (the edge cases as text, the corpus as a
 * digest). The expected output was written by the protobuf-c unpack path the client used
 * before it rendered from the wire bytes, so this test holds the two paths to the same bytes.
 * `test_record_render --write-expected` rewrites the files: only for a deliberate change of
 * the output format, reviewed in the diff. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/out_buf.h"
#include "cli/record_out.h"
#include "proto/record_wire.h"
#include "proto/varint.h"

#ifndef TV_TEST_DATA_DIR
#error "TV_TEST_DATA_DIR names tests/unit/data (tests/CMakeLists.txt)"
#endif

#define CORPUS_SEED 0x7472616365ull /* the random corpus is the same in every run */
#define CORPUS_RECORDS 600
#define MAX_RECORD_BYTES 8192

enum { F_JSONL, F_CSV, F_TABLE, N_FORMATS };
static const char *const format_ext[N_FORMATS] = { "jsonl", "csv", "table" };

/* ---- a protobuf writer for the test records: any bytes, in any order ---- */

struct rec {
	uint8_t b[MAX_RECORD_BYTES];
	size_t n;
};

static void put_raw(struct rec *r, const void *p, size_t n)
{
	assert_true(r->n + n <= sizeof(r->b));
	memcpy(r->b + r->n, p, n);
	r->n += n;
}

static void put_varint(struct rec *r, uint64_t v)
{
	uint8_t tmp[TV_VARINT_MAX_BYTES];

	put_raw(r, tmp, tv_varint_put(tmp, v));
}

/* v in exactly n bytes (n >= its minimal length, <= 10): a varint padded with 0x80 groups */
static void put_varint_padded(struct rec *r, uint64_t v, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint8_t c = (uint8_t)((v & 0x7f) | 0x80);

		put_raw(r, &c, 1);
		v >>= 7;
	}
	assert_true(v < 0x80 || n == TV_VARINT_MAX_BYTES);
	uint8_t last = (uint8_t)(v & (n == TV_VARINT_MAX_BYTES ? 0x01 : 0x7f));
	put_raw(r, &last, 1);
}

static void put_tag(struct rec *r, uint64_t field, unsigned wt)
{
	put_varint(r, field << 3 | wt);
}

static void put_u(struct rec *r, uint64_t field, uint64_t v)
{
	put_tag(r, field, 0);
	put_varint(r, v);
}

static void put_bytes(struct rec *r, uint64_t field, const void *p, size_t n)
{
	put_tag(r, field, 2);
	put_varint(r, n);
	put_raw(r, p, n);
}

static void put_s(struct rec *r, uint64_t field, const char *s)
{
	put_bytes(r, field, s, strlen(s));
}

/* a Header message {name, value} as field 16 (request) or 17 (response) */
static void put_header(struct rec *r, uint64_t field, const char *name, const char *value)
{
	struct rec h = { .n = 0 };

	if (name)
		put_s(&h, 1, name);
	if (value)
		put_s(&h, 2, value);
	put_bytes(r, field, h.b, h.n);
}

/* The usual fields of a captured exchange. */
static void put_typical(struct rec *r)
{
	put_u(r, 1, 1767225600123456789ull);
	put_u(r, 2, 1767225600223456789ull);
	put_u(r, 3, 100000000);
	put_u(r, 4, 4242);
	put_s(r, 5, "nginx");
	put_s(r, 6, "127.0.0.1:8080");
	put_s(r, 7, "[::1]:50000");
	put_s(r, 8, "GET");
	put_s(r, 9, "/api/v1/items?id=7");
	put_u(r, 10, 200);
	put_u(r, 11, 0);
	put_u(r, 12, 1578);
	put_s(r, 13, "4bf92f3577b34da6a3ce929d0e0e4736");
	put_s(r, 14, "00f067aa0ba902b7");
	put_u(r, 15, 0);
	put_s(r, 18, "server");
	put_s(r, 19, "example.com:8080");
	put_s(r, 20, "1.1");
}

/* ---- the edge cases ---- */

#define NASTY "q\"b\\s,c\r\nt\t\x01\x1f\x7f" "end"
#define BAD_UTF8 "\xff|\xc0\x80|\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80|\xc3\xa9|\xf0\x9f\x98\x80|\x80"

static void case_typical(struct rec *r) { put_typical(r); }

static void case_empty(struct rec *r) { (void)r; }

static void case_extremes(struct rec *r)
{
	put_u(r, 1, UINT64_MAX);
	put_u(r, 2, 0);
	put_u(r, 3, 9223372036854775808ull);
	put_u(r, 4, UINT32_MAX);
	put_tag(r, 10, 0);
	put_varint(r, 0x1234567890ull); /* a u32 field past 32 bits: its low 32 bits */
	put_tag(r, 15, 0);
	put_varint_padded(r, 5, 10); /* 5 in a 10-byte varint */
	put_tag(r, 11, 0);
	put_varint_padded(r, 1ull << 63 | 1, 10); /* 10th byte 0x01: bit 63 */
	put_tag(r, 12, 0);                         /* a 10th byte of 0x7f: only its bit 0 */
	put_raw(r, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 10);
}

static void case_padded_varints(struct rec *r)
{
	put_tag(r, 1, 0);
	put_varint_padded(r, 1767225600000000000ull, 10);
	put_tag(r, 4, 0);
	put_varint_padded(r, 7, 6); /* u32 in 6 bytes */
	put_tag(r, 10, 0);
	put_varint_padded(r, 404, 9);
	put_s(r, 8, "POST");
}

static void case_strings_nasty(struct rec *r)
{
	put_typical(r);
	put_s(r, 9, "/p?" NASTY);
	put_s(r, 5, "comm" NASTY);
	put_s(r, 19, "host,\"x\"");
	put_s(r, 8, "M\r\nX");
}

static void case_nul_inside(struct rec *r)
{
	static const char path[] = "/before\0after";
	static const char host[] = "\0starts-with-nul";

	put_typical(r);
	put_bytes(r, 9, path, sizeof(path) - 1);
	put_bytes(r, 19, host, sizeof(host) - 1);
	put_bytes(r, 5, "x\0", 2);
}

static void case_bad_utf8(struct rec *r)
{
	put_typical(r);
	put_s(r, 9, "/u/" BAD_UTF8);
	put_s(r, 5, BAD_UTF8);
	put_s(r, 7, "\xe2\x82\xac\xe2\x82");
	put_s(r, 14, "\xc3");
}

static void case_duplicates(struct rec *r)
{
	put_typical(r);
	put_u(r, 1, 5);           /* the last value of a field is the one */
	put_s(r, 9, "/second");
	put_s(r, 8, "");
	put_u(r, 10, 503);
	put_u(r, 10, 500);
}

static void case_unknown_fields(struct rec *r)
{
	static const uint8_t f64[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, f32[4] = { 9, 9, 9, 9 };

	put_u(r, 28, 77);
	put_typical(r);
	put_u(r, 1000, 1);
	put_tag(r, 999, 1);
	put_raw(r, f64, sizeof(f64));
	put_tag(r, 536870911, 5); /* the largest field number */
	put_raw(r, f32, sizeof(f32));
	put_s(r, 100, "unknown string field");
	put_tag(r, 4, 0);
	put_varint(r, 31337);
	put_tag(r, 0x7fffffffull, 0); /* a tag past the field number range, 5 bytes */
	put_varint(r, 3);
}

static void case_long_columns(struct rec *r)
{
	put_typical(r);
	put_s(r, 19, "a-very-long-host-name-that-does-not-fit.example.com:443");
	put_s(r, 9, "/evil\x1b[31m/and/a/very/long/path/that/does/not/fit/in/the/column");
	put_s(r, 5, "a-command-name-longer-than-16");
	put_s(r, 8, "PROPFIND-LONG");
	put_s(r, 18, "client-ish");
	put_s(r, 20, "HTTP/1.1");
	put_s(r, 7, "[2001:db8:1234:5678:9abc:def0:1234:5678]:65535");
	put_u(r, 3, 1499999);        /* table: 1.500 (%.3f rounds) */
	put_u(r, 10, 999999);
	put_u(r, 4, 123456789);
}

static void case_exact_width(struct rec *r)
{
	put_typical(r);
	put_s(r, 19, "exactly-twenty-four-byte"); /* 24 bytes: fits */
	put_s(r, 5, "sixteen-bytes-ab");         /* 16 */
	put_s(r, 9, "/path-that-is-exactly-forty-bytes-long-X"); /* 40 */
	put_u(r, 3, 5);
	put_u(r, 1, 0);
}

static void case_latencies(struct rec *r)
{
	put_typical(r);
	put_u(r, 3, 999999999999ull);
	put_u(r, 1, 86400ull * 1000000000 * 365 * 80);
}

static void case_headers(struct rec *r)
{
	put_typical(r);
	put_header(r, 16, "Host", "example.com");
	put_header(r, 17, "Content-Type", "text/plain; charset=\"utf-8\"");
	put_header(r, 16, "", "");
	put_header(r, 16, "X-Bad", BAD_UTF8);
	put_header(r, 17, NULL, NULL);       /* an empty Header message */
	put_header(r, 17, "only-name", NULL);
	put_s(r, 9, "/after-headers");
}

static void case_header_oddities(struct rec *r)
{
	struct rec h = { .n = 0 };
	static const char nulv[] = "v\0hidden";

	put_s(&h, 1, "first");
	put_u(&h, 5, 1);               /* unknown inside a Header */
	put_s(&h, 1, "second-name");   /* last wins */
	put_bytes(&h, 2, nulv, sizeof(nulv) - 1);
	put_typical(r);
	put_bytes(r, 16, h.b, h.n);
	put_header(r, 16, NASTY, "x\r\ny");
}

static void case_bodies(struct rec *r)
{
	static const uint8_t bin[] = { 0x00, 0xff, 0x10 };

	put_typical(r);
	put_s(r, 21, "{\"a\":\"b\\c\"}\n");
	put_bytes(r, 22, bin, 1);
	put_bytes(r, 22, bin, 2); /* last wins: 2 bytes */
	put_s(r, 23, "application/json");
	put_s(r, 24, "application/octet-stream");
	put_s(r, 25, "");
	put_s(r, 26, "gzip");
}

static void case_body_padding(struct rec *r)
{
	static const uint8_t bin[] = { 0xfb, 0xef, 0xbe, 0x00 };

	put_typical(r);
	put_bytes(r, 21, bin, 3);
	put_bytes(r, 22, bin, 4);
}

static void case_body_text_edges(struct rec *r)
{
	static const char with_nul[] = "text\0more";

	put_typical(r);
	put_bytes(r, 21, with_nul, sizeof(with_nul) - 1); /* NUL: base64 */
	put_s(r, 22, "caf\xc3\xa9 \xf0\x9f\x98\x80 \x7f\x01\t"); /* valid UTF-8: text */
	put_s(r, 26, BAD_UTF8);
}

static void case_empty_body_given(struct rec *r)
{
	put_typical(r);
	put_bytes(r, 21, "", 0);
	put_bytes(r, 22, "x", 1);
	put_bytes(r, 22, "", 0); /* an empty last value: no body */
	put_s(r, 23, "text/html");
	put_s(r, 23, "");
}

static void case_out_of_order(struct rec *r)
{
	put_s(r, 20, "1.0");
	put_s(r, 18, "client");
	put_u(r, 15, 1 | 4 | 32);
	put_s(r, 13, "");
	put_u(r, 10, 0);
	put_s(r, 9, "/");
	put_s(r, 6, "10.0.0.1:1");
	put_u(r, 1, 42);
}

static void (*const cases[])(struct rec *) = {
	case_typical, case_empty, case_extremes, case_padded_varints, case_strings_nasty,
	case_nul_inside, case_bad_utf8, case_duplicates, case_unknown_fields, case_long_columns,
	case_exact_width, case_latencies, case_headers, case_header_oddities, case_bodies,
	case_body_padding, case_body_text_edges, case_empty_body_given, case_out_of_order,
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* ---- the seeded random corpus ---- */

static uint64_t rng_state;

static uint64_t rnd(void) /* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

/* Bytes drawn mostly from printable ASCII, with what the formats escape or replace. */
static size_t rnd_text(char *s, size_t max)
{
	static const char *const pieces[] = {
		"\"", "\\", ",", "\r", "\n", "\t", "\x01", "\x7f", "\xc3\xa9", "\xe2\x82\xac",
		"\xf0\x9f\x98\x80", "\xff", "\xc0\xaf", "\xed\xb0\x80", "\xe2\x82", "\x80", "\0",
		" ", "/", "?", "=", "&", "%", "\x1b[2J",
	};
	size_t n = 0, want = rnd_below(max + 1);

	while (n < want) {
		if (rnd_below(4)) {
			s[n++] = (char)(0x20 + rnd_below(0x5f));
			continue;
		}
		const char *p = pieces[rnd_below(sizeof(pieces) / sizeof(pieces[0]))];
		size_t len = *p ? strlen(p) : 1;

		if (n + len > max)
			break;
		memcpy(s + n, p, len);
		n += len;
	}
	return n;
}

static uint64_t rnd_number(void)
{
	switch (rnd_below(5)) {
	case 0: return 0;
	case 1: return rnd_below(1000);
	case 2: return rnd_below(1ull << 32);
	case 3: return rnd();
	default: return 1767225600000000000ull + rnd_below(86400ull * 1000000000);
	}
}

static void rnd_record(struct rec *r)
{
	static const unsigned strings[] = { 5, 6, 7, 8, 9, 13, 14, 18, 19, 20, 23, 24, 25, 26 };
	static const unsigned numbers[] = { 1, 2, 3, 4, 10, 11, 12, 15 };
	size_t fields = rnd_below(30);
	char s[200];

	r->n = 0;
	for (size_t i = 0; i < fields; i++) {
		unsigned kind = (unsigned)rnd_below(10);

		if (kind < 4) {
			put_u(r, numbers[rnd_below(8)], rnd_number());
		} else if (kind < 8) {
			size_t n = rnd_text(s, rnd_below(3) ? 24 : sizeof(s));

			put_bytes(r, strings[rnd_below(14)], s, n);
		} else if (kind == 8) {
			size_t n1 = rnd_text(s, 40), n2;
			struct rec h = { .n = 0 };

			if (rnd_below(4))
				put_bytes(&h, 1, s, n1);
			n2 = rnd_text(s, 60);
			if (rnd_below(4))
				put_bytes(&h, 2, s, n2);
			if (!rnd_below(8))
				put_u(&h, 3 + rnd_below(100), rnd());
			put_bytes(r, 16 + rnd_below(2), h.b, h.n);
		} else if (rnd_below(2)) {
			uint8_t body[64];
			size_t n = rnd_below(sizeof(body) + 1);

			if (rnd_below(2)) { /* text, maybe with a stray byte */
				n = rnd_text((char *)body, sizeof(body));
			} else {
				for (size_t k = 0; k < n; k++)
					body[k] = (uint8_t)rnd();
			}
			put_bytes(r, 21 + rnd_below(2), body, n);
		} else { /* an unknown field, each wire type */
			uint64_t field = 28 + rnd_below(5000); /* 27: span */
			uint8_t raw[8];

			for (size_t k = 0; k < 8; k++)
				raw[k] = (uint8_t)rnd();
			switch (rnd_below(4)) {
			case 0: put_u(r, field, rnd()); break;
			case 1: put_tag(r, field, 1); put_raw(r, raw, 8); break;
			case 2: put_tag(r, field, 5); put_raw(r, raw, 4); break;
			default: put_bytes(r, field, raw, rnd_below(9)); break;
			}
		}
	}
}

/* ---- rendering (the path under test) ---- */

/* Append the rendering of the TraceRecord wire bytes rec[0, n) in format fmt to b, as query
 * does: read in place, rendered from the view. */
static void render(struct tv_out_buf *b, int fmt, const uint8_t *rec, size_t n)
{
	struct tv_record_wire w;

	assert_int_equal(tv_record_wire_parse(rec, n, &w), 0);
	if (fmt == F_JSONL)
		tv_record_jsonl(b, &w);
	else if (fmt == F_CSV)
		tv_record_csv_row(b, &w);
	else
		tv_record_table_row(b, &w);
	assert_false(b->failed);
}

static void header_of(struct tv_out_buf *b, int fmt)
{
	if (fmt == F_CSV)
		tv_record_csv_header(b);
	else if (fmt == F_TABLE)
		tv_record_table_header(b);
}

/* ---- expected output ---- */

static bool write_expected; /* --write-expected: rewrite unit/data/ instead of comparing */

static char *data_path(const char *name)
{
	char *p;

	assert_true(asprintf(&p, "%s/%s", TV_TEST_DATA_DIR, name) > 0);
	return p;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (!f)
		fail_msg("open %s: %s (run test_record_render --write-expected once)", path,
			 strerror(errno));
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void spill(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Compare b with the file name (or write it with --write-expected). On a difference the
 * rendering is left in the working directory as name.actual for a diff. */
static void check_file(const char *name, const struct tv_out_buf *b)
{
	char *path = data_path(name), *want;
	size_t want_len, at = 0;

	if (write_expected) {
		spill(path, b->p, b->len);
		free(path);
		return;
	}
	want = slurp(path, &want_len);
	while (at < want_len && at < b->len && want[at] == b->p[at])
		at++;
	if (at != want_len || at != b->len) {
		char actual[256];

		snprintf(actual, sizeof(actual), "%s.actual", name);
		spill(actual, b->p, b->len);
		fail_msg("%s differs from the expected output at byte %zu (of %zu; %zu rendered): "
			 "see %s", path, at, want_len, b->len, actual);
	}
	free(want);
	free(path);
}

static uint64_t fnv1a(const void *p, size_t n)
{
	const uint8_t *s = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ s[i]) * 0x100000001b3ull;
	return h;
}

/* ---- tests ---- */

static void test_edge_cases_match_expected(void **state)
{
	(void)state;
	for (int fmt = 0; fmt < N_FORMATS; fmt++) {
		struct tv_out_buf b = { 0 };
		char name[64];

		header_of(&b, fmt);
		for (size_t i = 0; i < N_CASES; i++) {
			struct rec r = { .n = 0 };

			cases[i](&r);
			render(&b, fmt, r.b, r.n);
		}
		snprintf(name, sizeof(name), "render_cases.%s", format_ext[fmt]);
		check_file(name, &b);
		tv_out_free(&b);
	}
}

/* The random corpus' output is large: its length and FNV-1a digest per format are checked in
 * (one line each in render_corpus.digest). */
static void test_random_corpus_matches_expected(void **state)
{
	struct tv_out_buf b[N_FORMATS] = { { 0 } }, digest = { 0 };
	static struct rec r;

	(void)state;
	rng_state = CORPUS_SEED;
	for (size_t i = 0; i < CORPUS_RECORDS; i++) {
		rnd_record(&r);
		for (int fmt = 0; fmt < N_FORMATS; fmt++)
			render(&b[fmt], fmt, r.b, r.n);
	}
	for (int fmt = 0; fmt < N_FORMATS; fmt++) {
		char line[128];
		int n = snprintf(line, sizeof(line), "%s %zu %016" PRIx64 "\n", format_ext[fmt],
				 b[fmt].len, fnv1a(b[fmt].p, b[fmt].len));

		tv_out_mem(&digest, line, (size_t)n);
	}
	check_file("render_corpus.digest", &digest);
	for (int fmt = 0; fmt < N_FORMATS; fmt++)
		tv_out_free(&b[fmt]);
	tv_out_free(&digest);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edge_cases_match_expected),
		cmocka_unit_test(test_random_corpus_matches_expected),
	};

	write_expected = argc > 1 && strcmp(argv[1], "--write-expected") == 0;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
