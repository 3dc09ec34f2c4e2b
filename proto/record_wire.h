/* A TraceRecord read in place from its serialized bytes, with no unpack and no allocation: the
 * query client renders what the servers send straight from the response bytes (issue 12:
 * protobuf-c's unpack, a malloc per message and string, was most of the client's CPU). The
 * reader accepts exactly the bytes protobuf-c 1.4.1's unpack accepts (the library the rest of
 * the code uses) and gives the values it would, C-string view included: a string field ends
 * at its first NUL, as the unpacked char * does. tests/unit/test_record_wire.c holds the two
 * to that on edge cases and random bytes. */
#ifndef TV_RECORD_WIRE_H
#define TV_RECORD_WIRE_H

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TraceRecord's field numbers (proto/tracevault.proto), the index of tv_record_wire's arrays. */
enum tv_rec_field {
	TV_REC_TS_NS = 1,
	TV_REC_END_NS = 2,
	TV_REC_LATENCY_NS = 3,
	TV_REC_PID = 4,
	TV_REC_COMM = 5,
	TV_REC_LOCAL = 6,
	TV_REC_REMOTE = 7,
	TV_REC_METHOD = 8,
	TV_REC_PATH = 9,
	TV_REC_STATUS = 10,
	TV_REC_REQ_BODY_BYTES = 11,
	TV_REC_RESP_BODY_BYTES = 12,
	TV_REC_TRACE_ID = 13,
	TV_REC_SPAN_ID = 14,
	TV_REC_FLAGS = 15,
	TV_REC_REQ_HEADERS = 16,
	TV_REC_RESP_HEADERS = 17,
	TV_REC_ROLE = 18,
	TV_REC_HOST = 19,
	TV_REC_HTTP_VERSION = 20,
	TV_REC_REQ_BODY = 21,
	TV_REC_RESP_BODY = 22,
	TV_REC_REQ_CONTENT_TYPE = 23,
	TV_REC_RESP_CONTENT_TYPE = 24,
	TV_REC_REQ_CONTENT_ENCODING = 25,
	TV_REC_RESP_CONTENT_ENCODING = 26,
	TV_REC_SPAN = 27, /* a span record's Span (BLOCK.md "Record kinds"): str[] holds its bytes */
	TV_REC_MAX_FIELD = 27,
};

/* Bytes inside a record; p may be NULL when len is 0. Not NUL-terminated. */
struct tv_wire_str {
	const char *p;
	size_t len;
};

/* One TraceRecord as read by tv_record_wire_parse. Indexed by field number: num[] holds the
 * varint fields (uint32 ones cut to their low 32 bits, as protobuf-c does), str[] the string
 * fields up to their first NUL and the two bytes fields whole, span its message bytes (read
 * them with tv_span_wire_parse); an absent field is 0 / empty, a repeated one its last value
 * (protobuf-c merges repeated span messages; our writers never repeat it). Headers are read back from rec with tv_record_wire_header.
 * Every pointer points into rec: valid while those bytes are. */
struct tv_record_wire {
	const uint8_t *rec;
	size_t len;
	uint64_t num[TV_REC_MAX_FIELD + 1];
	struct tv_wire_str str[TV_REC_MAX_FIELD + 1];
	size_t n_headers[2]; /* req_headers, resp_headers */
	uint32_t set; /* bit n: field n was read by the last parse (see tv_record_wire_parse_next) */
};

/* Read the serialized TraceRecord rec[0, len) into w. 0, or -EBADMSG when protobuf-c would
 * refuse the bytes (a cut or overlong tag, varint or length, a length past INT_MAX, wire type
 * 3, 4, 6 or 7, a known field with the wrong wire type, a Header that does not parse). */
int tv_record_wire_parse(const uint8_t *rec, size_t len, struct tv_record_wire *w);
/* tv_record_wire_parse for one view read over and over (the query client reads every record
 * it prints into the same view): w must be zeroed or hold the last result of either function,
 * accepted or refused. Instead of clearing the whole view (680 bytes) it clears only the fields
 * the last record had and this one lacks (usually none: records share a shape). The same
 * verdict and, when accepted, the same view as tv_record_wire_parse. */
int tv_record_wire_parse_next(const uint8_t *rec, size_t len, struct tv_record_wire *w);
/* The same verdict without the view: 0 with *ts_ns (0 when absent), or -EBADMSG. For a
 * reader that checks a whole batch before it reads any record (the query client). */
int tv_record_wire_check(const uint8_t *rec, size_t len, uint64_t *ts_ns);

/* The next Header of w's req_headers (req true) or resp_headers, in the order they were sent:
 * start with *pos = 0; true with name and value (each up to its first NUL), false past the
 * last. Only for a w that tv_record_wire_parse accepted. */
bool tv_record_wire_header(const struct tv_record_wire *w, bool req, size_t *pos,
			   struct tv_wire_str *name, struct tv_wire_str *value);

/* Span's field numbers (proto/tracevault.proto message Span). */
enum tv_span_field {
	TV_SPAN_PARENT_SPAN_ID = 1,
	TV_SPAN_NAME = 2,
	TV_SPAN_KIND = 3,
	TV_SPAN_STATUS_CODE = 4,
	TV_SPAN_STATUS_MESSAGE = 5,
	TV_SPAN_SERVICE = 6,
	TV_SPAN_ATTRIBUTES = 7,
	TV_SPAN_DROPPED_ATTRIBUTES = 8,
	TV_SPAN_DROPPED_EVENTS = 9,
	TV_SPAN_DROPPED_LINKS = 10,
	TV_SPAN_TRACE_STATE = 11,
	TV_SPAN_FLAGS = 12,
	TV_SPAN_SCOPE_NAME = 13,
	TV_SPAN_SCOPE_VERSION = 14,
	TV_SPAN_MAX_FIELD = 14,
};

/* One Span read in place, as struct tv_record_wire reads a record: num[] the uint32 fields,
 * str[] the strings (to their first NUL), n_attributes the attributes (read them with
 * tv_span_wire_attribute). Pointers into the span bytes. */
struct tv_span_wire {
	const uint8_t *p;
	size_t len;
	uint64_t num[TV_SPAN_MAX_FIELD + 1];
	struct tv_wire_str str[TV_SPAN_MAX_FIELD + 1];
	size_t n_attributes;
};

/* A SpanAttribute: key, and its value by type (TV_SPAN_ATTR_*: the oneof's field number,
 * 0 when it has none). */
enum { TV_SPAN_ATTR_NONE = 0, TV_SPAN_ATTR_STRING = 2, TV_SPAN_ATTR_BOOL = 3,
       TV_SPAN_ATTR_INT = 4, TV_SPAN_ATTR_DOUBLE = 5 };
struct tv_span_attr {
	struct tv_wire_str key;
	int type;
	struct tv_wire_str s;
	uint64_t u; /* bool, int (two's complement) or the double's bits */
};

/* Read the Span message p[0, len) (a record's str[TV_REC_SPAN]): 0 or -EBADMSG where
 * protobuf-c's unpack would refuse it. */
int tv_span_wire_parse(const uint8_t *p, size_t len, struct tv_span_wire *s);
/* The next attribute of s in the order sent: start with *pos = 0; false past the last. */
bool tv_span_wire_attribute(const struct tv_span_wire *s, size_t *pos, struct tv_span_attr *a);

/* ---- the scanner under both, for any message ---- */

/* One field as protobuf-c 1.4.1's scanner reads it (protobuf-c.c, parse_tag_and_wiretype,
 * scan_length_prefixed_data): number (32 bits), wire type 0, 1, 2 or 5; v the varint's value
 * (wire type 0, else 0), p/len the value's bytes (all wire types; for 2 without the length prefix). */
struct tv_wire_field {
	uint32_t number;
	unsigned wire_type;
	uint64_t v;
	const uint8_t *p;
	size_t len;
};

#define TV_WIRE_TAG_MAX_BYTES 5     /* protobuf-c reads a tag of at most 5 bytes */
#define TV_WIRE_VARINT_MAX_BYTES 10
#define TV_WIRE_LENGTH_MAX_BYTES 5  /* ... and a length prefix of at most 5 */

/* Read the field at m[*pos] (*pos < len) of a message of len bytes and move *pos past it.
 * 0, or -EBADMSG where protobuf-c's unpack fails the message. */
static inline __attribute__((always_inline)) int tv_wire_next_field(const uint8_t *m, size_t len, size_t *pos,
				     struct tv_wire_field *f)
{
	const uint8_t *p = m + *pos;
	size_t rem = len - *pos, n, max;
	uint32_t tag;
	uint64_t v;

	/* the tag: its first byte must carry number bits or a continuation ("0 is not a valid
	 * tag value", which protobuf-c checks on that byte alone) */
	if ((p[0] & 0xf8) == 0)
		return -EBADMSG;
	f->wire_type = p[0] & 7;
	tag = (p[0] & 0x7f) >> 3;
	n = 1;
	if (p[0] & 0x80) {
		unsigned shift = 4;

		max = rem < TV_WIRE_TAG_MAX_BYTES ? rem : TV_WIRE_TAG_MAX_BYTES;
		for (;;) {
			if (n == max)
				return -EBADMSG;
			tag |= (uint32_t)(p[n] & 0x7f) << shift;
			shift += 7;
			if (!(p[n++] & 0x80))
				break;
		}
	}
	f->number = tag;
	f->v = 0;
	p += n;
	rem -= n;
	switch (f->wire_type) {
	case 0:
		max = rem < TV_WIRE_VARINT_MAX_BYTES ? rem : TV_WIRE_VARINT_MAX_BYTES;
		v = 0;
		for (n = 0;; n++) {
			if (n == max)
				return -EBADMSG;
			v |= (uint64_t)(p[n] & 0x7f) << (7 * n);
			if (!(p[n] & 0x80))
				break;
		}
		f->v = v;
		f->p = p;
		f->len = n + 1;
		n++;
		break;
	case 1:
	case 5:
		n = f->wire_type == 1 ? 8 : 4;
		if (rem < n)
			return -EBADMSG;
		f->p = p;
		f->len = n;
		break;
	case 2: {
		size_t plen = 0;

		max = rem < TV_WIRE_LENGTH_MAX_BYTES ? rem : TV_WIRE_LENGTH_MAX_BYTES;
		v = 0;
		for (;; plen++) {
			if (plen == max)
				return -EBADMSG;
			v |= (uint64_t)(p[plen] & 0x7f) << (7 * plen);
			if (!(p[plen] & 0x80))
				break;
		}
		plen++;
		if (v > INT_MAX || v > rem - plen)
			return -EBADMSG;
		f->p = p + plen;
		f->len = (size_t)v;
		n = plen + (size_t)v;
		break;
	}
	default: /* 3, 4 (groups), 6, 7 */
		return -EBADMSG;
	}
	*pos += (size_t)(p - (m + *pos)) + n;
	return 0;
}

#endif
