/* proto/record_wire.c against protobuf-c 1.4.1's unpack, the reader it replaces in the query
 * client: the same bytes accepted and refused (by tv_record_wire_parse, tv_record_wire_check,
 * and tv_record_wire_parse_next on one view reused for every input), and for accepted bytes
 * the same value of every field (strings up to their first NUL, bodies whole, headers in
 * order). Fed malformed encodings written by hand
 * (each rule of protobuf-c's scanner), well-formed records, and seeded random mutations and
 * random bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto/record_wire.h"
#include "proto/varint.h"
#include "tracevault.pb-c.h"

#define SEED 0x77697265ull
#define ROUNDS 200000
#define MAX_BYTES 512

/* ---- the comparison ---- */

static void same_str(const char *want, struct tv_wire_str got, unsigned field)
{
	size_t n = want ? strlen(want) : 0;

	if (got.len != n || (n && memcmp(got.p, want, n)))
		fail_msg("field %u: '%.*s' (%zu bytes), protobuf-c '%s'", field, (int)got.len,
			 got.p ? got.p : "", got.len, want ? want : "");
}

static void same_bytes(const ProtobufCBinaryData *want, struct tv_wire_str got, unsigned field)
{
	if (got.len != want->len || (want->len && memcmp(got.p, want->data, want->len)))
		fail_msg("field %u: %zu bytes, protobuf-c %zu", field, got.len, want->len);
}

/* The span of w equals the unpacked one (fields and attributes in order). */
static void same_span(const Tracevault__V1__Span *sp, struct tv_wire_str bytes)
{
	struct tv_span_wire sw;
	struct tv_span_attr a;
	size_t pos = 0, k = 0;

	assert_int_equal(tv_span_wire_parse((const uint8_t *)bytes.p, bytes.len, &sw), 0);
	same_str(sp->parent_span_id, sw.str[TV_SPAN_PARENT_SPAN_ID], 101);
	same_str(sp->name, sw.str[TV_SPAN_NAME], 102);
	same_str(sp->status_message, sw.str[TV_SPAN_STATUS_MESSAGE], 105);
	same_str(sp->service, sw.str[TV_SPAN_SERVICE], 106);
	same_str(sp->trace_state, sw.str[TV_SPAN_TRACE_STATE], 111);
	same_str(sp->scope_name, sw.str[TV_SPAN_SCOPE_NAME], 113);
	same_str(sp->scope_version, sw.str[TV_SPAN_SCOPE_VERSION], 114);
	assert_int_equal(sw.num[TV_SPAN_KIND], sp->kind);
	assert_int_equal(sw.num[TV_SPAN_STATUS_CODE], sp->status_code);
	assert_int_equal(sw.num[TV_SPAN_DROPPED_ATTRIBUTES], sp->dropped_attributes_count);
	assert_int_equal(sw.num[TV_SPAN_DROPPED_EVENTS], sp->dropped_events_count);
	assert_int_equal(sw.num[TV_SPAN_DROPPED_LINKS], sp->dropped_links_count);
	assert_int_equal(sw.num[TV_SPAN_FLAGS], sp->flags);
	assert_int_equal(sw.n_attributes, sp->n_attributes);
	while (tv_span_wire_attribute(&sw, &pos, &a)) {
		const Tracevault__V1__SpanAttribute *x = sp->attributes[k++];

		same_str(x->key, a.key, 201);
		assert_int_equal(a.type, (int)x->value_case);
		if (a.type == TV_SPAN_ATTR_STRING)
			same_str(x->string_value, a.s, 202);
		else if (a.type == TV_SPAN_ATTR_BOOL)
			assert_int_equal(a.u, x->bool_value);
		else if (a.type == TV_SPAN_ATTR_INT)
			assert_int_equal(a.u, (uint64_t)x->int_value);
		else if (a.type == TV_SPAN_ATTR_DOUBLE)
			assert_memory_equal(&a.u, &x->double_value, 8);
	}
	assert_int_equal(k, sp->n_attributes);
}

/* How many times field 27 (span) occurs in an accepted record: protobuf-c merges repeats,
 * record_wire keeps the last (record_wire.h), so only a single one is compared. */
static size_t span_occurrences(const uint8_t *m, size_t n)
{
	struct tv_wire_field f;
	size_t pos = 0, k = 0;

	while (pos < n && tv_wire_next_field(m, n, &pos, &f) == 0)
		k += f.number == TV_REC_SPAN;
	return k;
}

/* Every field of w equals the unpacked r. */
static void same_record(const Tracevault__V1__TraceRecord *r, const struct tv_record_wire *w)
{
	const uint64_t nums[][2] = {
		{ TV_REC_TS_NS, r->ts_ns },	{ TV_REC_END_NS, r->end_ns },
		{ TV_REC_LATENCY_NS, r->latency_ns }, { TV_REC_PID, r->pid },
		{ TV_REC_STATUS, r->status },	{ TV_REC_REQ_BODY_BYTES, r->req_body_bytes },
		{ TV_REC_RESP_BODY_BYTES, r->resp_body_bytes }, { TV_REC_FLAGS, r->flags },
	};
	const struct {
		unsigned field;
		const char *s;
	} strs[] = {
		{ TV_REC_COMM, r->comm },	  { TV_REC_LOCAL, r->local },
		{ TV_REC_REMOTE, r->remote },	  { TV_REC_METHOD, r->method },
		{ TV_REC_PATH, r->path },	  { TV_REC_TRACE_ID, r->trace_id },
		{ TV_REC_SPAN_ID, r->span_id },	  { TV_REC_ROLE, r->role },
		{ TV_REC_HOST, r->host },	  { TV_REC_HTTP_VERSION, r->http_version },
		{ TV_REC_REQ_CONTENT_TYPE, r->req_content_type },
		{ TV_REC_RESP_CONTENT_TYPE, r->resp_content_type },
		{ TV_REC_REQ_CONTENT_ENCODING, r->req_content_encoding },
		{ TV_REC_RESP_CONTENT_ENCODING, r->resp_content_encoding },
	};

	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		if (w->num[nums[i][0]] != nums[i][1])
			fail_msg("field %u: %llu, protobuf-c %llu", (unsigned)nums[i][0],
				 (unsigned long long)w->num[nums[i][0]],
				 (unsigned long long)nums[i][1]);
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		same_str(strs[i].s, w->str[strs[i].field], strs[i].field);
	same_bytes(&r->req_body, w->str[TV_REC_REQ_BODY], TV_REC_REQ_BODY);
	same_bytes(&r->resp_body, w->str[TV_REC_RESP_BODY], TV_REC_RESP_BODY);
	for (int a = 0; a < 2; a++) {
		Tracevault__V1__Header **h = a ? r->resp_headers : r->req_headers;
		size_t n = a ? r->n_resp_headers : r->n_req_headers, pos = 0, k = 0;
		struct tv_wire_str name, value;

		assert_int_equal(w->n_headers[a], n);
		while (tv_record_wire_header(w, a == 0, &pos, &name, &value)) {
			assert_true(k < n);
			same_str(h[k]->name, name, 1);
			same_str(h[k]->value, value, 2);
			k++;
		}
		assert_int_equal(k, n);
	}
}

/* The view tv_record_wire_parse_next reads every record of the run into, as the query client
 * does: it holds whatever the records before left in it (accepted or refused). */
static struct tv_record_wire reused;

/* The reused view is the fresh one: every field, the header counts, the bytes it points at. */
static void same_view(const struct tv_record_wire *fresh, const struct tv_record_wire *r)
{
	assert_ptr_equal(r->rec, fresh->rec);
	assert_int_equal(r->len, fresh->len);
	for (unsigned f = 0; f <= TV_REC_MAX_FIELD; f++) {
		if (r->num[f] != fresh->num[f] || r->str[f].len != fresh->str[f].len ||
		    r->str[f].p != fresh->str[f].p)
			fail_msg("field %u: the reused view holds %" PRIu64 " / %zu bytes at %p, a "
				 "fresh one %" PRIu64 " / %zu bytes at %p", f, r->num[f], r->str[f].len,
				 (const void *)r->str[f].p, fresh->num[f], fresh->str[f].len,
				 (const void *)fresh->str[f].p);
	}
	assert_int_equal(r->n_headers[0], fresh->n_headers[0]);
	assert_int_equal(r->n_headers[1], fresh->n_headers[1]);
	assert_int_equal(r->set, fresh->set);
}

/* Both readers on m[0, n): the same verdict and, when accepted, the same fields. Returns
 * whether the bytes were accepted. */
static bool check(const uint8_t *m, size_t n)
{
	Tracevault__V1__TraceRecord *r = tracevault__v1__trace_record__unpack(NULL, n, m);
	struct tv_record_wire w;
	int ret = tv_record_wire_parse(m, n, &w);
	uint64_t ts_ns;

	/* the check without the view gives the same verdict and ts_ns */
	assert_int_equal(tv_record_wire_check(m, n, &ts_ns), ret);
	if (ret == 0)
		assert_int_equal(ts_ns, w.num[TV_REC_TS_NS]);
	/* the view read over and over gives the same verdict and, accepted, the same view */
	assert_int_equal(tv_record_wire_parse_next(m, n, &reused), ret);
	if (ret == 0)
		same_view(&w, &reused);

	if (!r) {
		if (ret != -EBADMSG) {
			char hex[3 * 64 + 1] = "";

			for (size_t i = 0; i < n && i < 64; i++)
				snprintf(hex + 3 * i, 4, "%02x ", m[i]);
			fail_msg("accepted %zu bytes protobuf-c refuses: %s", n, hex);
		}
		return false;
	}
	if (ret != 0)
		fail_msg("refused %zu bytes protobuf-c accepts (%d)", n, ret);
	same_record(r, &w);
	assert_int_equal(r->span != NULL, w.str[TV_REC_SPAN].p != NULL);
	if (r->span && span_occurrences(m, n) == 1)
		same_span(r->span, w.str[TV_REC_SPAN]);
	tracevault__v1__trace_record__free_unpacked(r, NULL);
	return true;
}

#define CHECK(verdict, ...)                                                                  \
	do {                                                                                 \
		static const uint8_t m_[] = { __VA_ARGS__ };                                 \
		assert_int_equal(check(m_, sizeof(m_)), (verdict));                          \
	} while (0)

/* ---- hand-written encodings, one rule of the scanner each ---- */

static void test_scanner_rules(void **state)
{
	(void)state;
	assert_true(check((const uint8_t *)"", 0));             /* empty: every default */
	CHECK(true, 0x08, 0x05);                               /* ts_ns = 5 */
	CHECK(false, 0x00, 0x05);                              /* field 0 */
	CHECK(false, 0x07);                                    /* field 0, wire type 7 */
	CHECK(true, 0x80, 0x00, 0x00);                         /* a tag of 0 via a continuation:
								* protobuf-c checks the first byte
								* only, then an unknown varint */
	CHECK(false, 0x08);                                    /* varint cut */
	CHECK(false, 0x08, 0x80);                              /* varint cut */
	CHECK(true, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01);
	CHECK(false, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00);
	CHECK(true, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f);
	CHECK(true, 0x20, 0xff, 0xff, 0xff, 0xff, 0x7f);      /* pid past 32 bits */
	CHECK(true, 0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01);      /* 5-byte tag, unknown field */
	CHECK(false, 0xf8, 0xff, 0xff, 0xff, 0x8f, 0x01, 0x01); /* 6-byte tag */
	CHECK(false, 0xf8, 0xff);                              /* tag cut */
	CHECK(false, 0x09, 1, 2, 3, 4, 5, 6, 7, 8);            /* ts_ns as fixed64: wrong type */
	CHECK(true, 0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7, 8);      /* unknown fixed64 */
	CHECK(false, 0xf9, 0x01, 1, 2, 3, 4, 5, 6, 7);        /* cut */
	CHECK(true, 0xfd, 0x01, 1, 2, 3, 4);                   /* unknown fixed32 */
	CHECK(false, 0xfd, 0x01, 1, 2, 3);                     /* cut */
	CHECK(false, 0xfb, 0x01);                              /* start group */
	CHECK(false, 0xfc, 0x01);                              /* end group */
	CHECK(false, 0xfe, 0x01, 0x00);                        /* wire type 6 */
	CHECK(false, 0xff, 0x01, 0x00);                        /* wire type 7 */
	CHECK(true, 0x2a, 0x02, 'a', 'b');                     /* comm "ab" */
	CHECK(false, 0x2a, 0x03, 'a', 'b');                    /* past the end */
	CHECK(true, 0x2a, 0x82, 0x80, 0x80, 0x80, 0x00, 'a', 'b'); /* 5-byte length prefix */
	CHECK(false, 0x2a, 0x82, 0x80, 0x80, 0x80, 0x80, 0x00, 'a', 'b'); /* 6 bytes */
	CHECK(false, 0x2a, 0xff, 0xff, 0xff, 0xff, 0x07);      /* length 2^31-1 (INT_MAX): cut */
	CHECK(false, 0x2a, 0x80, 0x80, 0x80, 0x80, 0x08);      /* length 2^31 > INT_MAX */
	CHECK(true, 0x2a, 0x03, 'a', 0, 'b');                  /* NUL: the string ends there */
	CHECK(false, 0x28, 0x01);                              /* comm as a varint */
	CHECK(false, 0x0a, 0x00);                              /* ts_ns as bytes */
	CHECK(false, 0x2d, 1, 2, 3, 4);                        /* comm as fixed32 */
	CHECK(true, 0xaa, 0x01, 0x00);                         /* req_body present, empty */
	CHECK(true, 0xaa, 0x01, 0x03, 0, 1, 2);                /* req_body with NULs: whole */
	CHECK(true, 0x82, 0x01, 0x00);                         /* an empty Header */
	CHECK(true, 0x82, 0x01, 0x04, 0x0a, 0x02, 'h', 0);     /* Header name "h" */
	CHECK(false, 0x82, 0x01, 0x02, 0x08, 0x01);            /* Header name as a varint */
	CHECK(true, 0x82, 0x01, 0x02, 0x18, 0x01);             /* Header unknown field */
	CHECK(false, 0x82, 0x01, 0x02, 0x0a, 0x05);            /* Header string cut */
	CHECK(false, 0x80, 0x01, 0x00);                        /* req_headers as a varint */
	CHECK(true, 0x8a, 0x01, 0x02, 0x12, 0x00, 0x82, 0x01, 0x00); /* resp, then req */
	CHECK(true, 0xd2, 0x01, 0x00);                         /* field 26, a string */
	CHECK(false, 0xd0, 0x01, 0x00);                        /* field 26 as a varint */
	CHECK(false, 0xd8, 0x01, 0x00);                        /* span (27) as a varint */
	CHECK(true, 0xda, 0x01, 0x00);                         /* an empty span */
	CHECK(true, 0xda, 0x01, 0x04, 0x12, 0x02, 'g', 'o');   /* span name "go" */
	CHECK(false, 0xda, 0x01, 0x02, 0x12, 0x05);            /* span name cut */
	CHECK(false, 0xda, 0x01, 0x02, 0x10, 0x01);            /* span name as a varint */
	CHECK(false, 0xda, 0x01, 0x02, 0x1a, 0x00);            /* span kind as bytes */
	CHECK(true, 0xda, 0x01, 0x02, 0x78, 0x07);             /* span field 15: unknown */
	CHECK(true, 0xda, 0x01, 0x06, 0x3a, 0x04, 0x0a, 0x00, 0x18, 0x01); /* attr bool */
	CHECK(true, 0xda, 0x01, 0x0b, 0x3a, 0x09, 0x29, 1, 2, 3, 4, 5, 6, 7, 8); /* attr double */
	CHECK(false, 0xda, 0x01, 0x04, 0x3a, 0x02, 0x28, 0x01); /* attr double as a varint */
	CHECK(false, 0xda, 0x01, 0x04, 0x3a, 0x02, 0x18, 0x80); /* attr bool cut */
	CHECK(false, 0xda, 0x01, 0x02, 0x38, 0x01);            /* attributes as a varint */
	CHECK(true, 0xe0, 0x01, 0x00);                         /* field 28: unknown */
}

/* ---- random records, mutations and bytes ---- */

static uint64_t rng = SEED;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static size_t put_varint_at(uint8_t *m, size_t n, uint64_t v)
{
	return n + tv_varint_put(m + n, v);
}

/* A well-formed record of random fields (known ones with the right wire type, now and then a
 * wrong one or an unknown field), random order, repeats allowed. */
static size_t rnd_record(uint8_t *m, size_t cap)
{
	size_t n = 0, fields = rnd() % 24;

	for (size_t i = 0; i < fields && n + 80 < cap; i++) {
		uint64_t field = rnd() % 8 ? 1 + rnd() % TV_REC_MAX_FIELD : rnd() % 3000;
		unsigned wt;

		if (field == TV_REC_PID || field == TV_REC_STATUS || field == TV_REC_FLAGS ||
		    field <= TV_REC_LATENCY_NS || field == TV_REC_REQ_BODY_BYTES ||
		    field == TV_REC_RESP_BODY_BYTES)
			wt = 0;
		else
			wt = 2;
		if (!(rnd() % 16))
			wt = (unsigned[]){ 0, 1, 2, 5 }[rnd() % 4];
		n = put_varint_at(m, n, field << 3 | wt);
		switch (wt) {
		case 0:
			n = put_varint_at(m, n, rnd() >> (rnd() % 64));
			break;
		case 1:
		case 5:
			for (unsigned k = 0; k < (wt == 1 ? 8u : 4u); k++)
				m[n++] = (uint8_t)rnd();
			break;
		default: {
			size_t len = rnd() % 40;

			if (field == TV_REC_SPAN) { /* a span of random fields, their own types */
				uint8_t h[48];
				size_t hn = 0;

				while (hn + 16 < sizeof(h) && rnd() % 3) {
					unsigned sf = 1 + rnd() % 15; /* 15: unknown */

					if (sf == 3 || sf == 4 || (sf >= 8 && sf <= 10) || sf == 12) {
						hn = put_varint_at(h, hn, sf << 3);
						hn = put_varint_at(h, hn, rnd() >> (rnd() % 64));
					} else if (sf == 7) { /* an attribute: key, one value */
						unsigned vt = 2 + rnd() % 4;

						hn = put_varint_at(h, hn, 7 << 3 | 2);
						h[hn++] = vt == 5 ? 12 : 5;
						h[hn++] = 0x0a;
						h[hn++] = 1;
						h[hn++] = 'k';
						h[hn++] = (uint8_t)(vt << 3 | (vt == 5 ? 1 : vt == 2 ? 2 : 0));
						if (vt == 5) {
							for (int q = 0; q < 8; q++)
								h[hn++] = (uint8_t)rnd();
						} else if (vt == 2) {
							h[hn++] = 0;
						} else {
							h[hn++] = (uint8_t)(rnd() & 0x7f);
						}
					} else {
						size_t sl = rnd() % 6;

						hn = put_varint_at(h, hn, sf << 3 | 2);
						h[hn++] = (uint8_t)sl;
						for (size_t k = 0; k < sl; k++)
							h[hn++] = (uint8_t)(rnd() % 4 ? 'a' + rnd() % 26 : 0);
					}
				}
				n = put_varint_at(m, n, hn);
				memcpy(m + n, h, hn);
				n += hn;
				break;
			}
			if (field == TV_REC_REQ_HEADERS || field == TV_REC_RESP_HEADERS) {
				uint8_t h[40];
				size_t hn = 0;

				while (hn + 12 < sizeof(h) && rnd() % 3) {
					size_t sl = rnd() % 6;

					hn = put_varint_at(h, hn, (1 + rnd() % 3) << 3 | 2);
					h[hn++] = (uint8_t)sl;
					for (size_t k = 0; k < sl; k++)
						h[hn++] = (uint8_t)(rnd() % 4 ? 'a' + rnd() % 26 : 0);
				}
				n = put_varint_at(m, n, hn);
				memcpy(m + n, h, hn);
				n += hn;
				break;
			}
			n = put_varint_at(m, n, len);
			for (size_t k = 0; k < len; k++)
				m[n++] = (uint8_t)(rnd() % 8 ? 0x20 + rnd() % 0x5f : rnd());
			break;
		}
		}
	}
	return n;
}

static void test_random_records_and_mutations(void **state)
{
	uint8_t m[MAX_BYTES];
	size_t accepted = 0, refused = 0;

	(void)state;
	for (size_t round = 0; round < ROUNDS; round++) {
		size_t n;

		switch (round % 4) {
		case 0: /* well-formed */
			n = rnd_record(m, sizeof(m));
			break;
		case 1: /* a few bytes changed */
			n = rnd_record(m, sizeof(m));
			for (size_t k = 0, flips = 1 + rnd() % 3; n && k < flips; k++)
				m[rnd() % n] = (uint8_t)rnd();
			break;
		case 2: /* cut short */
			n = rnd_record(m, sizeof(m));
			n = n ? rnd() % n : 0;
			break;
		default: /* random bytes */
			n = rnd() % 64;
			for (size_t k = 0; k < n; k++)
				m[k] = (uint8_t)rnd();
			break;
		}
		if (check(m, n))
			accepted++;
		else
			refused++;
	}
	/* both verdicts were exercised often */
	assert_true(accepted > ROUNDS / 4);
	assert_true(refused > ROUNDS / 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scanner_rules),
		cmocka_unit_test(test_random_records_and_mutations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
