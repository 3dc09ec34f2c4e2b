/* TraceRecord read in place (record_wire.h): one pass over the tags filling arrays indexed by
 * field number, under protobuf-c 1.4.1's acceptance rules, so the query client's output is
 * what it was when it unpacked every record. */
#include "proto/record_wire.h"

#include <string.h>

_Static_assert(TV_REC_MAX_FIELD < 32, "tv_record_wire.set holds a bit per field number");

/* What protobuf-c makes of each TraceRecord field number: the wire type it requires and where
 * the value goes. Numbers past TV_REC_MAX_FIELD (and 0) are unknown fields: any wire type. */
enum kind { K_UNKNOWN, K_U64, K_U32, K_STRING, K_BYTES, K_HEADER, K_SPAN };

static const uint8_t kinds[TV_REC_MAX_FIELD + 1] = {
	[TV_REC_TS_NS] = K_U64,		   [TV_REC_END_NS] = K_U64,
	[TV_REC_LATENCY_NS] = K_U64,	   [TV_REC_PID] = K_U32,
	[TV_REC_COMM] = K_STRING,	   [TV_REC_LOCAL] = K_STRING,
	[TV_REC_REMOTE] = K_STRING,	   [TV_REC_METHOD] = K_STRING,
	[TV_REC_PATH] = K_STRING,	   [TV_REC_STATUS] = K_U32,
	[TV_REC_REQ_BODY_BYTES] = K_U64,	   [TV_REC_RESP_BODY_BYTES] = K_U64,
	[TV_REC_TRACE_ID] = K_STRING,	   [TV_REC_SPAN_ID] = K_STRING,
	[TV_REC_FLAGS] = K_U32,		   [TV_REC_REQ_HEADERS] = K_HEADER,
	[TV_REC_RESP_HEADERS] = K_HEADER,   [TV_REC_ROLE] = K_STRING,
	[TV_REC_HOST] = K_STRING,	   [TV_REC_HTTP_VERSION] = K_STRING,
	[TV_REC_REQ_BODY] = K_BYTES,	   [TV_REC_RESP_BODY] = K_BYTES,
	[TV_REC_REQ_CONTENT_TYPE] = K_STRING, [TV_REC_RESP_CONTENT_TYPE] = K_STRING,
	[TV_REC_REQ_CONTENT_ENCODING] = K_STRING, [TV_REC_RESP_CONTENT_ENCODING] = K_STRING,
	[TV_REC_SPAN] = K_SPAN,
};

/* Span's fields as protobuf-c sees them: K_U32, K_STRING, or K_HEADER standing for the
 * attribute message. */
static const uint8_t span_kinds[TV_SPAN_MAX_FIELD + 1] = {
	[TV_SPAN_PARENT_SPAN_ID] = K_STRING, [TV_SPAN_NAME] = K_STRING,
	[TV_SPAN_KIND] = K_U32,		     [TV_SPAN_STATUS_CODE] = K_U32,
	[TV_SPAN_STATUS_MESSAGE] = K_STRING, [TV_SPAN_SERVICE] = K_STRING,
	[TV_SPAN_ATTRIBUTES] = K_HEADER,     [TV_SPAN_DROPPED_ATTRIBUTES] = K_U32,
	[TV_SPAN_DROPPED_EVENTS] = K_U32,    [TV_SPAN_DROPPED_LINKS] = K_U32,
	[TV_SPAN_TRACE_STATE] = K_STRING,    [TV_SPAN_FLAGS] = K_U32,
	[TV_SPAN_SCOPE_NAME] = K_STRING,     [TV_SPAN_SCOPE_VERSION] = K_STRING,
};

/* Up to this length a byte loop finds a NUL sooner than a call to memchr. */
#define SHORT_STRING_BYTES 16

/* A string field's C-string view: protobuf-c copies the bytes and adds a NUL, so every reader
 * of the unpacked char * stops at the first NUL inside. */
static struct tv_wire_str c_string(const struct tv_wire_field *f)
{
	const uint8_t *nul;
	size_t n = 0;

	if (f->len > SHORT_STRING_BYTES) {
		nul = memchr(f->p, '\0', f->len);
		return (struct tv_wire_str){ (const char *)f->p,
					     nul ? (size_t)(nul - f->p) : f->len };
	}
	while (n < f->len && f->p[n])
		n++;
	return (struct tv_wire_str){ (const char *)f->p, n };
}

/* Header {string name = 1; string value = 2;}: 0 with the last name and value, or -EBADMSG. */
static int header_parse(const uint8_t *m, size_t len, struct tv_wire_str *name,
			struct tv_wire_str *value)
{
	struct tv_wire_field f;
	size_t pos = 0;

	*name = *value = (struct tv_wire_str){ NULL, 0 };
	while (pos < len) {
		if (tv_wire_next_field(m, len, &pos, &f))
			return -EBADMSG;
		if (f.number != 1 && f.number != 2)
			continue;
		if (f.wire_type != 2)
			return -EBADMSG;
		*(f.number == 1 ? name : value) = c_string(&f);
	}
	return 0;
}

/* SpanAttribute {string key = 1; oneof {string 2; bool 3; int64 4; double 5}}: 0 with the
 * last key and the last value set, or -EBADMSG. */
static int attr_parse(const uint8_t *m, size_t len, struct tv_span_attr *a)
{
	struct tv_wire_field f;
	size_t pos = 0;

	*a = (struct tv_span_attr){ .type = TV_SPAN_ATTR_NONE };
	while (pos < len) {
		if (tv_wire_next_field(m, len, &pos, &f))
			return -EBADMSG;
		switch (f.number) {
		case 1:
		case TV_SPAN_ATTR_STRING:
			if (f.wire_type != 2)
				return -EBADMSG;
			if (f.number == 1) {
				a->key = c_string(&f);
			} else {
				a->type = TV_SPAN_ATTR_STRING;
				a->s = c_string(&f);
			}
			break;
		case TV_SPAN_ATTR_BOOL:
		case TV_SPAN_ATTR_INT:
			if (f.wire_type != 0)
				return -EBADMSG;
			a->type = (int)f.number;
			a->u = f.number == TV_SPAN_ATTR_BOOL ? f.v != 0 : f.v;
			break;
		case TV_SPAN_ATTR_DOUBLE:
			if (f.wire_type != 1)
				return -EBADMSG;
			a->type = TV_SPAN_ATTR_DOUBLE;
			a->u = 0;
			for (unsigned i = 0; i < 8; i++)
				a->u |= (uint64_t)f.p[i] << (8 * i);
			break;
		default:
			break;
		}
	}
	return 0;
}

int tv_span_wire_parse(const uint8_t *p, size_t len, struct tv_span_wire *s)
{
	struct tv_wire_field f;
	struct tv_span_attr a;
	size_t pos = 0;

	memset(s, 0, sizeof(*s));
	s->p = p;
	s->len = len;
	while (pos < len) {
		if (tv_wire_next_field(p, len, &pos, &f))
			return -EBADMSG;
		switch (f.number <= TV_SPAN_MAX_FIELD ? span_kinds[f.number] : K_UNKNOWN) {
		case K_U32:
			if (f.wire_type != 0)
				return -EBADMSG;
			s->num[f.number] = (uint32_t)f.v;
			break;
		case K_STRING:
			if (f.wire_type != 2)
				return -EBADMSG;
			s->str[f.number] = c_string(&f);
			break;
		case K_HEADER:
			if (f.wire_type != 2 || attr_parse(f.p, f.len, &a))
				return -EBADMSG;
			s->n_attributes++;
			break;
		default:
			break;
		}
	}
	return 0;
}

bool tv_span_wire_attribute(const struct tv_span_wire *s, size_t *pos, struct tv_span_attr *a)
{
	struct tv_wire_field f;

	while (*pos < s->len) {
		if (tv_wire_next_field(s->p, s->len, pos, &f))
			return false; /* not after a successful parse */
		if (f.number == TV_SPAN_ATTRIBUTES)
			return attr_parse(f.p, f.len, a) == 0;
	}
	return false;
}

/* The pass under tv_record_wire_parse (w set) and tv_record_wire_check (w NULL: only the
 * checks and ts_ns), inlined into each so the check stores nothing it does not need. With w,
 * *seen collects a bit per num/str field it stored (for tv_record_wire_parse_next). */
static inline __attribute__((always_inline)) int walk(const uint8_t *rec, size_t len,
						     struct tv_record_wire *w, uint64_t *ts_ns,
						     uint32_t *seen)
{
	struct tv_wire_field f;
	struct tv_wire_str name, value;
	size_t pos = 0;

	while (pos < len) {
		if (tv_wire_next_field(rec, len, &pos, &f))
			return -EBADMSG;
		switch (f.number <= TV_REC_MAX_FIELD ? kinds[f.number] : K_UNKNOWN) {
		case K_UNKNOWN:
			break;
		case K_U64:
			if (f.wire_type != 0)
				return -EBADMSG;
			if (w) {
				w->num[f.number] = f.v;
				*seen |= 1u << f.number;
			}
			if (f.number == TV_REC_TS_NS)
				*ts_ns = f.v;
			break;
		case K_U32:
			if (f.wire_type != 0)
				return -EBADMSG;
			if (w) {
				w->num[f.number] = (uint32_t)f.v;
				*seen |= 1u << f.number;
			}
			break;
		case K_STRING:
			if (f.wire_type != 2)
				return -EBADMSG;
			if (w) {
				w->str[f.number] = c_string(&f);
				*seen |= 1u << f.number;
			}
			break;
		case K_BYTES:
			if (f.wire_type != 2)
				return -EBADMSG;
			if (w) {
				w->str[f.number] = (struct tv_wire_str){ (const char *)f.p, f.len };
				*seen |= 1u << f.number;
			}
			break;
		case K_HEADER:
			if (f.wire_type != 2 || header_parse(f.p, f.len, &name, &value))
				return -EBADMSG;
			if (w)
				w->n_headers[f.number - TV_REC_REQ_HEADERS]++;
			break;
		case K_SPAN: {
			struct tv_span_wire sw;

			if (f.wire_type != 2 || tv_span_wire_parse(f.p, f.len, &sw))
				return -EBADMSG;
			if (w) {
				w->str[f.number] = (struct tv_wire_str){ (const char *)f.p, f.len };
				*seen |= 1u << f.number;
			}
			break;
		}
		}
	}
	return 0;
}

int tv_record_wire_parse_next(const uint8_t *rec, size_t len, struct tv_record_wire *w)
{
	uint32_t seen = 0, stale;
	uint64_t ts_ns;
	int ret;

	w->rec = rec;
	w->len = len;
	w->n_headers[0] = w->n_headers[1] = 0;
	ret = walk(rec, len, w, &ts_ns, &seen);
	/* every field holding a value is in w->set (zeroed view: none): what this record did not
	 * overwrite goes back to absent */
	stale = w->set & ~seen;
	while (stale) {
		unsigned n = (unsigned)__builtin_ctz(stale);

		w->num[n] = 0;
		w->str[n] = (struct tv_wire_str){ NULL, 0 };
		stale &= stale - 1;
	}
	w->set = seen;
	return ret;
}

int tv_record_wire_parse(const uint8_t *rec, size_t len, struct tv_record_wire *w)
{
	memset(w, 0, sizeof(*w));
	return tv_record_wire_parse_next(rec, len, w);
}

int tv_record_wire_check(const uint8_t *rec, size_t len, uint64_t *ts_ns)
{
	*ts_ns = 0;
	return walk(rec, len, NULL, ts_ns, NULL);
}

bool tv_record_wire_header(const struct tv_record_wire *w, bool req, size_t *pos,
			   struct tv_wire_str *name, struct tv_wire_str *value)
{
	uint32_t want = req ? TV_REC_REQ_HEADERS : TV_REC_RESP_HEADERS;
	struct tv_wire_field f;

	while (*pos < w->len) {
		if (tv_wire_next_field(w->rec, w->len, pos, &f))
			return false; /* not after a successful parse */
		if (f.number == want)
			return header_parse(f.p, f.len, name, value) == 0;
	}
	return false;
}
