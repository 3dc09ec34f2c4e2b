/* OTLP ExportTraceServiceRequest -> span records (see otlp_span.h). protobuf-c unpacks the
 * request with the subset schema of proto/otlp_trace.proto, whose nested values (arrays,
 * kvlists, events, links) are opaque bytes, so the unpack never recurses past the fixed depth
 * of request > resource_spans > scope_spans > span > attribute > value. Each kept span becomes
 * one TraceRecord whose strings point into the unpacked request or into hex[] here. */
#include "proto/otlp_span.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/varint.h"

const struct tv_limit tv_otlp_max_attributes_limit = { .min = 0, .max = 256 };
const struct tv_limit tv_otlp_max_attribute_bytes_limit = { .min = 16, .max = 16u << 10 };
const struct tv_limit tv_otlp_max_message_bytes_limit = { .min = 1u << 10, .max = 64u << 20 };
const struct tv_limit tv_otlp_max_future_skew_limit = { .min = 1000000000ull,
							.max = 36500ull * 86400 * 1000000000ull };

#define HEX_STRIDE 33

/* The unpack's arena: blocks of ARENA_FIRST(len) bytes, then each twice the last up to
 * ARENA_MAX_BLOCK (an allocation larger than that gets a block of its own). 4 x the message
 * holds a typical request's unpacked structs and strings in one block. */
#define ARENA_FIRST(len) ((len) < (4u << 20) ? 4 * (len) + 4096 : (16u << 20))
#define ARENA_MAX_BLOCK (64u << 20)
#define ARENA_ALIGN 16

struct tv_otlp_arena_block {
	struct tv_otlp_arena_block *next;
	size_t used, cap;
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
	struct tv_otlp_spans *s; /* its arena list and count */
	size_t next_cap;
};

/* ProtobufCAllocator.alloc: a bump allocation from the newest block, or a new block. */
static void *arena_alloc(void *data, size_t size)
{
	struct arena *a = data;
	struct tv_otlp_arena_block *b = a->s->arena;
	size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	void *p;

	if (need < size)
		return NULL;
	if (!b || b->cap - b->used < need) {
		size_t cap = a->next_cap > need ? a->next_cap : need;

		b = malloc(sizeof(*b) + cap);
		if (!b)
			return NULL;
		b->used = 0;
		b->cap = cap;
		b->next = a->s->arena;
		a->s->arena = b;
		a->s->arena_blocks++;
		if (a->next_cap < ARENA_MAX_BLOCK / 2)
			a->next_cap *= 2;
	}
	p = b->data + b->used;
	b->used += need;
	return p;
}

/* ProtobufCAllocator.free: nothing; the whole arena goes in tv_otlp_spans_free. */
static void arena_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

/* Cut the NUL-terminated s (protobuf-c's copy, ours to change) to at most max bytes, at a
 * UTF-8 character boundary: never in the middle of a multi-byte sequence. */
static void cut_utf8(char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return;
	n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	s[n] = '\0';
}

/* The resource's service.name (a string value), or "". */
static const char *service_name(const Tracevault__Otlp__V1__Resource *r)
{
	if (!r)
		return "";
	for (size_t i = 0; i < r->n_attributes; i++) {
		const Tracevault__Otlp__V1__KeyValue *kv = r->attributes[i];

		if (kv->key && strcmp(kv->key, "service.name") == 0 && kv->value &&
		    kv->value->value_case == TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE)
			return kv->value->string_value;
	}
	return "";
}

static void reject(struct tv_otlp_spans *s, uint64_t index, const char *why)
{
	if (!s->rejected)
		snprintf(s->reject_msg, sizeof(s->reject_msg), "span %llu: %s; %s",
			 (unsigned long long)index, why, "spans like it were rejected");
	s->rejected++;
}

/* Why span sp cannot be stored, or NULL; now_ns the server's clock (unix ns). */
static const char *invalid(const Tracevault__Otlp__V1__Span *sp, const struct tv_otlp_limits *lim,
			   uint64_t now_ns, char *buf, size_t len)
{
	if (sp->trace_id.len != 16) {
		snprintf(buf, len, "trace_id is %zu bytes, not 16", sp->trace_id.len);
		return buf;
	}
	if (all_zero(sp->trace_id.data, 16))
		return "trace_id is all zero";
	if (sp->span_id.len != 8) {
		snprintf(buf, len, "span_id is %zu bytes, not 8", sp->span_id.len);
		return buf;
	}
	if (all_zero(sp->span_id.data, 8))
		return "span_id is all zero";
	if (sp->parent_span_id.len != 0 && sp->parent_span_id.len != 8) {
		snprintf(buf, len, "parent_span_id is %zu bytes, not 0 or 8",
			 sp->parent_span_id.len);
		return buf;
	}
	if (sp->start_time_unix_nano == 0)
		return "start_time_unix_nano is 0";
	if (sp->end_time_unix_nano < sp->start_time_unix_nano)
		return "end_time_unix_nano is before start_time_unix_nano";
	/* the catalog refuses a block whose times pass 2^63-1: the whole Export would fail */
	if (sp->end_time_unix_nano > TV_OTLP_MAX_TIME_NS)
		return "a time beyond 2^63-1 ns (year 2262), the store's range";
	if (lim->max_future_skew_ns && sp->start_time_unix_nano > now_ns &&
	    sp->start_time_unix_nano - now_ns > lim->max_future_skew_ns) {
		snprintf(buf, len, "start_time_unix_nano is %llu s ahead of the server's clock, "
			 "more than --otlp-max-future-skew %llu s",
			 (unsigned long long)((sp->start_time_unix_nano - now_ns) / 1000000000ull),
			 (unsigned long long)(lim->max_future_skew_ns / 1000000000ull));
		return buf;
	}
	return NULL;
}

/* ---- NUL bytes: protobuf-c gives strings as char *, cut at their first NUL, so the raw
 * message is walked once more to find the spans whose kept strings hold one ---- */

/* The field at p[*pos, len): its number, wire type and, length-delimited, its bytes. Returns
 * 0, or -1 at a malformed field (protobuf-c unpacked the message, so only a defence). */
static int next_field(const uint8_t *p, size_t len, size_t *pos, uint32_t *num, unsigned *wt,
		      const uint8_t **val, size_t *vlen)
{
	uint64_t key, v;
	size_t used, n;

	if (tv_varint_get(p + *pos, len - *pos, &key, &used))
		return -1;
	*pos += used;
	*num = (uint32_t)(key >> 3);
	*wt = key & 7;
	switch (*wt) {
	case 0:
		if (tv_varint_get(p + *pos, len - *pos, &v, &used))
			return -1;
		*pos += used;
		return 0;
	case 1:
	case 5:
		n = *wt == 1 ? 8 : 4;
		if (len - *pos < n)
			return -1;
		*pos += n;
		return 0;
	case 2:
		if (tv_varint_get(p + *pos, len - *pos, &v, &used) || v > len - *pos - used)
			return -1;
		*val = p + *pos + used;
		*vlen = (size_t)v;
		*pos += used + (size_t)v;
		return 0;
	default:
		return -1;
	}
}

/* 1 when a string field of the message d at p[0, len), or of one nested in it, holds a NUL. */
static int has_nul(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len)
{
	size_t pos = 0, vlen = 0;
	const uint8_t *val = NULL;
	uint32_t num;
	unsigned wt;

	while (pos < len) {
		const ProtobufCFieldDescriptor *f;

		if (next_field(p, len, &pos, &num, &wt, &val, &vlen))
			return 0;
		if (wt != 2 || !(f = protobuf_c_message_descriptor_get_field(d, num)))
			continue;
		if (f->type == PROTOBUF_C_TYPE_STRING && memchr(val, 0, vlen))
			return 1;
		if (f->type == PROTOBUF_C_TYPE_MESSAGE && has_nul(f->descriptor, val, vlen))
			return 1;
	}
	return 0;
}

/* 1 when the Resource at p[0, len) has a service.name attribute (its key read up to a NUL,
 * as protobuf-c gives it) whose key or string value holds a NUL. */
static int service_has_nul(const uint8_t *p, size_t len)
{
	static const char SN[] = "service.name";
	const size_t sn = sizeof(SN) - 1;
	size_t pos = 0, vlen = 0, klen, kpos;
	const uint8_t *val = NULL, *kv;
	uint32_t num;
	unsigned wt;

	while (pos < len) {
		if (next_field(p, len, &pos, &num, &wt, &val, &vlen))
			return 0;
		if (num != 1 || wt != 2) /* Resource.attributes: a KeyValue */
			continue;
		kv = val;
		klen = vlen;
		for (kpos = 0; kpos < klen;) {
			if (next_field(kv, klen, &kpos, &num, &wt, &val, &vlen))
				break;
			if (num != 1 || wt != 2 || vlen < sn || memcmp(val, SN, sn) != 0 ||
			    (vlen > sn && val[sn] != 0))
				continue; /* not the key service.name */
			if (vlen > sn || has_nul(&tracevault__otlp__v1__key_value__descriptor, kv,
						  klen))
				return 1;
		}
	}
	return 0;
}

/* bad[i] = 1 for each span i (in the request's order: resource_spans, scope_spans, spans)
 * whose record would keep a string holding a NUL; at most total spans. */
static void mark_nul(const uint8_t *msg, size_t len, uint8_t *bad, size_t total)
{
	size_t pos = 0, i = 0, vlen = 0;
	const uint8_t *val = NULL;
	uint32_t num;
	unsigned wt;

	while (pos < len) {
		const uint8_t *rs;
		size_t rs_len, p2;
		int res_bad = 0;

		if (next_field(msg, len, &pos, &num, &wt, &val, &vlen))
			return;
		if (num != 1 || wt != 2) /* ExportTraceServiceRequest.resource_spans */
			continue;
		rs = val;
		rs_len = vlen;
		/* the resource may follow its scope_spans: read it first */
		for (p2 = 0; p2 < rs_len;) {
			if (next_field(rs, rs_len, &p2, &num, &wt, &val, &vlen))
				return;
			if (num == 1 && wt == 2 && service_has_nul(val, vlen))
				res_bad = 1;
		}
		for (p2 = 0; p2 < rs_len;) {
			const uint8_t *ss;
			size_t ss_len, p3;
			int scope_bad = res_bad;

			if (next_field(rs, rs_len, &p2, &num, &wt, &val, &vlen))
				return;
			if (num != 2 || wt != 2) /* ResourceSpans.scope_spans */
				continue;
			ss = val;
			ss_len = vlen;
			for (p3 = 0; p3 < ss_len;) { /* the scope: its name and version are kept */
				const uint8_t *sc;
				size_t sc_len, p4;

				if (next_field(ss, ss_len, &p3, &num, &wt, &val, &vlen))
					return;
				if (num != 1 || wt != 2)
					continue;
				sc = val;
				sc_len = vlen;
				for (p4 = 0; p4 < sc_len;) {
					if (next_field(sc, sc_len, &p4, &num, &wt, &val, &vlen))
						return;
					if ((num == 1 || num == 2) && wt == 2 && memchr(val, 0, vlen))
						scope_bad = 1;
				}
			}
			for (p3 = 0; p3 < ss_len;) {
				if (next_field(ss, ss_len, &p3, &num, &wt, &val, &vlen))
					return;
				if (num != 2 || wt != 2) /* ScopeSpans.spans */
					continue;
				if (i == total)
					return;
				bad[i++] = scope_bad ||
					   has_nul(&tracevault__otlp__v1__span__descriptor, val, vlen);
			}
		}
	}
}

/* Fill record i from sp (valid), its attributes from attrs[*na...]. */
static void fill(struct tv_otlp_spans *s, size_t i, Tracevault__Otlp__V1__Span *sp,
		 const char *service, const Tracevault__Otlp__V1__InstrumentationScope *scope,
		 const struct tv_otlp_limits *lim, size_t *na)
{
	Tracevault__V1__TraceRecord *r = &s->recs[i];
	Tracevault__V1__Span *x = &s->spans[i];
	char *hex = s->hex + 3 * HEX_STRIDE * i;
	uint32_t dropped = sp->dropped_attributes_count;

	tracevault__v1__trace_record__init(r);
	tracevault__v1__span__init(x);
	to_hex(sp->trace_id.data, 16, hex);
	to_hex(sp->span_id.data, 8, hex + HEX_STRIDE);
	if (sp->parent_span_id.len == 8)
		to_hex(sp->parent_span_id.data, 8, hex + 2 * HEX_STRIDE);
	else
		hex[2 * HEX_STRIDE] = '\0';
	r->ts_ns = sp->start_time_unix_nano;
	r->end_ns = sp->end_time_unix_nano;
	r->latency_ns = sp->end_time_unix_nano - sp->start_time_unix_nano;
	r->trace_id = hex;
	r->span_id = hex + HEX_STRIDE;
	r->span = x;
	x->parent_span_id = hex + 2 * HEX_STRIDE;
	cut_utf8(sp->name, lim->max_attribute_bytes);
	x->name = sp->name;
	x->kind = sp->kind;
	if (sp->status) {
		x->status_code = sp->status->code;
		cut_utf8(sp->status->message, lim->max_attribute_bytes);
		x->status_message = sp->status->message;
	}
	x->service = (char *)service;
	cut_utf8(sp->trace_state, lim->max_attribute_bytes);
	x->trace_state = sp->trace_state;
	x->flags = sp->flags;
	if (scope) {
		x->scope_name = scope->name;
		x->scope_version = scope->version;
	}
	x->attributes = s->attr_ptrs + *na;
	for (size_t k = 0; k < sp->n_attributes; k++) {
		Tracevault__Otlp__V1__KeyValue *kv = sp->attributes[k];
		Tracevault__V1__SpanAttribute *a = &s->attrs[*na];
		const Tracevault__Otlp__V1__AnyValue *v = kv->value;

		if (x->n_attributes >= lim->max_attributes || !v) {
			dropped++;
			continue;
		}
		tracevault__v1__span_attribute__init(a);
		switch (v->value_case) {
		case TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_STRING_VALUE:
			cut_utf8(v->string_value, lim->max_attribute_bytes);
			a->value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE;
			a->string_value = v->string_value;
			break;
		case TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_BOOL_VALUE:
			a->value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE;
			a->bool_value = v->bool_value;
			break;
		case TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_INT_VALUE:
			a->value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE;
			a->int_value = v->int_value;
			break;
		case TRACEVAULT__OTLP__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
			a->value_case = TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE;
			a->double_value = v->double_value;
			break;
		default: /* array, kvlist, bytes, or no value: not stored */
			dropped++;
			continue;
		}
		cut_utf8(kv->key, lim->max_attribute_bytes);
		a->key = kv->key;
		s->attr_ptrs[*na] = a;
		(*na)++;
		x->n_attributes++;
	}
	x->dropped_attributes_count = dropped;
	x->dropped_events_count = sp->dropped_events_count + (uint32_t)sp->n_events;
	x->dropped_links_count = sp->dropped_links_count + (uint32_t)sp->n_links;
}

int tv_otlp_spans_decode(const uint8_t *msg, size_t len, const struct tv_otlp_limits *lim,
			 uint64_t now_ns, struct tv_otlp_spans *out)
{
	Tracevault__Otlp__V1__ExportTraceServiceRequest *req;
	size_t total = 0, nattrs = 0, n = 0, na = 0, idx = 0;
	uint8_t *nul = NULL;
	char why[160];
	struct arena a = { .s = out, .next_cap = ARENA_FIRST(len) };
	ProtobufCAllocator alloc = { .alloc = arena_alloc, .free = arena_free,
				     .allocator_data = &a };

	memset(out, 0, sizeof(*out));
	req = tracevault__otlp__v1__export_trace_service_request__unpack(&alloc, len, msg);
	if (!req)
		return -EBADMSG;
	out->req = req;
	for (size_t r = 0; r < req->n_resource_spans; r++)
		for (size_t c = 0; c < req->resource_spans[r]->n_scope_spans; c++) {
			const Tracevault__Otlp__V1__ScopeSpans *ss =
				req->resource_spans[r]->scope_spans[c];

			total += ss->n_spans;
			for (size_t k = 0; k < ss->n_spans; k++)
				nattrs += ss->spans[k]->n_attributes;
		}
	out->received = total;
	if (total) {
		out->recs = calloc(total, sizeof(*out->recs));
		out->spans = calloc(total, sizeof(*out->spans));
		out->hex = malloc(total * 3 * HEX_STRIDE);
		out->attrs = calloc(nattrs ? nattrs : 1, sizeof(*out->attrs));
		out->attr_ptrs = calloc(nattrs ? nattrs : 1, sizeof(*out->attr_ptrs));
		nul = calloc(total, 1);
		if (!out->recs || !out->spans || !out->hex || !out->attrs || !out->attr_ptrs ||
		    !nul) {
			free(nul);
			return -ENOMEM;
		}
		mark_nul(msg, len, nul, total);
	}
	for (size_t r = 0; r < req->n_resource_spans; r++) {
		const Tracevault__Otlp__V1__ResourceSpans *rs = req->resource_spans[r];
		const char *service = service_name(rs->resource);

		for (size_t c = 0; c < rs->n_scope_spans; c++) {
			const Tracevault__Otlp__V1__ScopeSpans *ss = rs->scope_spans[c];

			for (size_t k = 0; k < ss->n_spans; k++) {
				const char *bad = invalid(ss->spans[k], lim, now_ns, why,
							  sizeof(why));

				if (!bad && nul[idx])
					bad = "a string (name, trace state, status message, "
					      "attribute, scope, service.name) holds a NUL byte, "
					      "which the store cannot keep";
				idx++;

				if (bad) {
					reject(out, n + out->rejected, bad);
					continue;
				}
				fill(out, n, ss->spans[k], service, ss->scope, lim, &na);
				n++;
			}
		}
	}
	out->n = n;
	free(nul);
	return 0;
}

void tv_otlp_spans_free(struct tv_otlp_spans *s)
{
	if (!s)
		return;
	/* s->req lives in the arena: no free_unpacked */
	while (s->arena) {
		struct tv_otlp_arena_block *b = s->arena;

		s->arena = b->next;
		free(b);
	}
	free(s->recs);
	free(s->spans);
	free(s->hex);
	free(s->attrs);
	free(s->attr_ptrs);
	memset(s, 0, sizeof(*s));
}
