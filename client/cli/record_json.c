/* JSON Lines -> TraceRecord for `tracevault put`, and the field table the jsonl and csv writers
 * (record_out.c) share. Parsing uses jansson (strict: no unknown or duplicate keys, integer
 * types only). */
#include "cli/record_json.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/timespec.h"
#include "common/size.h"
#include "proto/otlp_span.h" /* the OTLP ingest limits a span record obeys */

#define FIELD(n, t, num)                                                                      \
	{#n, t, offsetof(Tracevault__V1__TraceRecord, n), num, ",\"" #n "\":",                  \
	 sizeof(",\"" #n "\":") - 1}
/* Proto field order; also the key order of the jsonl output. */
const struct tv_record_field tv_record_fields[TV_RECORD_N_FIELDS] = {
	FIELD(ts_ns, TV_FIELD_U64, TV_REC_TS_NS),
	FIELD(end_ns, TV_FIELD_U64, TV_REC_END_NS),
	FIELD(latency_ns, TV_FIELD_U64, TV_REC_LATENCY_NS),
	FIELD(pid, TV_FIELD_U32, TV_REC_PID),
	FIELD(comm, TV_FIELD_STR, TV_REC_COMM),
	FIELD(local, TV_FIELD_STR, TV_REC_LOCAL),
	FIELD(remote, TV_FIELD_STR, TV_REC_REMOTE),
	FIELD(method, TV_FIELD_STR, TV_REC_METHOD),
	FIELD(path, TV_FIELD_STR, TV_REC_PATH),
	FIELD(status, TV_FIELD_U32, TV_REC_STATUS),
	FIELD(req_body_bytes, TV_FIELD_U64, TV_REC_REQ_BODY_BYTES),
	FIELD(resp_body_bytes, TV_FIELD_U64, TV_REC_RESP_BODY_BYTES),
	FIELD(trace_id, TV_FIELD_STR, TV_REC_TRACE_ID),
	FIELD(span_id, TV_FIELD_STR, TV_REC_SPAN_ID),
	FIELD(flags, TV_FIELD_U32, TV_REC_FLAGS),
	FIELD(role, TV_FIELD_STR, TV_REC_ROLE),
	FIELD(host, TV_FIELD_STR, TV_REC_HOST),
	FIELD(http_version, TV_FIELD_STR, TV_REC_HTTP_VERSION),
};
#define MAX_KEY_SHOWN 64 /* bytes of an unknown key quoted back in an error */

/* Called for every key of every line: the first byte rules out all but one or two names
 * before any strcmp (a full strcmp against every name was ~6% of put's CPU). */
static const struct tv_record_field *find_field(const char *key)
{
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++)
		if (tv_record_fields[i].name[0] == key[0] &&
		    strcmp(tv_record_fields[i].name + 1, key + 1) == 0)
			return &tv_record_fields[i];
	return NULL;
}

/* A printable, bounded copy of an untrusted key for an error message. */
static void shown_key(char *dst, size_t dstlen, const char *key)
{
	size_t n = 0;

	for (; *key && n + 1 < dstlen && n < MAX_KEY_SHOWN; key++)
		dst[n++] = (*key >= 0x20 && *key < 0x7f) ? *key : '?';
	dst[n] = '\0';
}

/* jansson holds integers as int64 (json_int_t) and refuses a larger one with "too big
 * integer", so u64 values of 2^63 and above, which query prints, would not read back. A line
 * that jansson refuses for that is parsed again after quote_long_integers: each bare integer
 * of LONG_INT_DIGITS or more digits becomes the string "\u0000DIGITS" (parsed with
 * JSON_ALLOW_NUL), which the number fields read exactly (long_integer) and every other place
 * refuses as a string containing NUL. */
#define LONG_INT_DIGITS 19 /* INT64_MAX has 19 digits */
#define NUL_ESCAPE "\\u0000"

/* The rewritten line (malloc'd, caller frees, *out_len its length), or NULL: out of memory, or
 * a string of the line already contains \u0000 (the marker would be ambiguous; such a line is
 * refused anyway). */
static char *quote_long_integers(const char *line, size_t len, size_t *out_len)
{
	/* each quoted token of >= 19 bytes grows by 8: within 2x */
	char *out = malloc(2 * len + 16), *o = out;
	size_t i = 0;

	if (!out)
		return NULL;
	while (i < len) {
		char c = line[i];

		if (c == '"') { /* copy the string through its closing quote */
			*o++ = line[i++];
			while (i < len && line[i] != '"') {
				if (line[i] == '\\' && i + 1 < len) {
					if (len - i >= 6 && memcmp(line + i, NUL_ESCAPE, 6) == 0)
						goto refuse;
					*o++ = line[i++];
				}
				*o++ = line[i++];
			}
			if (i < len)
				*o++ = line[i++];
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t start = i, nd;
			int real = 0;

			if (c == '-')
				i++;
			while (i < len && line[i] >= '0' && line[i] <= '9')
				i++;
			nd = i - start - (c == '-');
			/* the rest of the number token: a fraction or exponent makes it a real,
			 * which jansson reads (and the fields then refuse as not an integer) */
			while (i < len && line[i] &&
			       (strchr(".eE+-", line[i]) || (line[i] >= '0' && line[i] <= '9'))) {
				real = 1;
				i++;
			}
			if (nd >= LONG_INT_DIGITS && !real) {
				memcpy(o, "\"" NUL_ESCAPE, 7);
				o += 7;
				memcpy(o, line + start, i - start);
				o += i - start;
				*o++ = '"';
			} else {
				memcpy(o, line + start, i - start);
				o += i - start;
			}
		} else {
			*o++ = line[i++];
		}
	}
	*out_len = (size_t)(o - out);
	return out;
refuse:
	free(out);
	return NULL;
}

/* A string that is not a long integer's marker and holds no NUL: a C string. */
static bool plain_string(const json_t *v)
{
	return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

/* v is a long integer quoted by quote_long_integers: 1 with *digits pointing at its text
 * ("-" and digits), else 0. */
static int long_integer(const json_t *v, const char **digits)
{
	if (!json_is_string(v) || json_string_length(v) < 2 || json_string_value(v)[0] != '\0')
		return 0;
	*digits = json_string_value(v) + 1;
	return 1;
}

/* ---- capture --body-bytes fields: written only when not empty ---- */

/* The content header strings, proto order (after the bodies). */
const struct tv_record_field tv_record_body_str_fields[TV_RECORD_N_BODY_STR_FIELDS] = {
	FIELD(req_content_type, TV_FIELD_STR, TV_REC_REQ_CONTENT_TYPE),
	FIELD(resp_content_type, TV_FIELD_STR, TV_REC_RESP_CONTENT_TYPE),
	FIELD(req_content_encoding, TV_FIELD_STR, TV_REC_REQ_CONTENT_ENCODING),
	FIELD(resp_content_encoding, TV_FIELD_STR, TV_REC_RESP_CONTENT_ENCODING),
};
/* A body as text or, when it is not valid UTF-8 or holds a NUL, as base64 (RFC 4648 §4). */
const char *const tv_record_body_keys[2] = { "req_body", "resp_body" };
const char *const tv_record_body_b64_keys[2] = { "req_body_base64", "resp_body_base64" };
const char tv_base64_alphabet[65] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
#define B64 tv_base64_alphabet

static ProtobufCBinaryData *body_of(Tracevault__V1__TraceRecord *r, int which)
{
	return which ? &r->resp_body : &r->req_body;
}

int tv_record_b64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len)
{
	size_t o = 0;

	if (n % 4)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		uint32_t v = 0;
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			const char *c = s[i + k] ? strchr(B64, s[i + k]) : NULL;

			if (s[i + k] == '=' && i + 4 == n && k >= 2 && (k == 3 || s[i + 3] == '=')) {
				pad++;
				v <<= 6;
				continue;
			}
			if (!c || pad)
				return -EINVAL;
			v = v << 6 | (uint32_t)(c - B64);
		}
		out[o++] = (uint8_t)(v >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(v >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)v;
	}
	*out_len = o;
	return 0;
}

/* Decode base64 s[0, n) into a malloc'd buffer. 0, -EINVAL when it is not base64, -ENOMEM. */
static int b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
	uint8_t *d = malloc(TV_RECORD_B64_DECODED_MAX(n));
	int ret;

	if (!d)
		return -ENOMEM;
	ret = tv_record_b64_decode(s, n, d, out_len);
	if (ret) {
		free(d);
		return ret;
	}
	*out = d;
	return 0;
}

/* Header fields, after the scalar ones (proto order). */
const char *const tv_record_header_keys[2] = { "req_headers", "resp_headers" };

/* Count the {"name", "value"} objects of both header arrays and check their shape. */
static int check_headers(json_t *arr, const char *key, size_t *n, char *err, size_t errlen)
{
	size_t i;
	json_t *h;

	if (!json_is_array(arr)) {
		snprintf(err, errlen, "field '%s' must be an array", key);
		return -EINVAL;
	}
	json_array_foreach(arr, i, h) {
		if (!json_is_object(h) || json_object_size(h) != 2 ||
		    !plain_string(json_object_get(h, "name")) ||
		    !plain_string(json_object_get(h, "value"))) {
			snprintf(err, errlen, "field '%s': element %zu must be "
				 "{\"name\": string, \"value\": string}", key, i);
			return -EINVAL;
		}
	}
	*n += json_array_size(arr);
	return 0;
}

/* Point rec's header arrays at the strings of the document (borrowed like the other strings);
 * the Header structs and pointer arrays are one block in rj->hdr_mem. */
static int fill_headers(struct tv_record_json *rj, json_t *arrs[2], size_t total)
{
	Tracevault__V1__Header **v, *h;
	size_t k = 0;

	if (total == 0)
		return 0;
	v = malloc(total * (sizeof(*v) + sizeof(*h)));
	if (!v)
		return -ENOMEM;
	h = (Tracevault__V1__Header *)(v + total);
	rj->hdr_mem = v;
	for (int a = 0; a < 2; a++) {
		size_t i;
		json_t *o;

		if (!arrs[a])
			continue;
		if (a == 0) {
			rj->rec.req_headers = v + k;
			rj->rec.n_req_headers = json_array_size(arrs[a]);
		} else {
			rj->rec.resp_headers = v + k;
			rj->rec.n_resp_headers = json_array_size(arrs[a]);
		}
		json_array_foreach(arrs[a], i, o) {
			tracevault__v1__header__init(&h[k]);
			h[k].name = (char *)json_string_value(json_object_get(o, "name"));
			h[k].value = (char *)json_string_value(json_object_get(o, "value"));
			v[k] = &h[k];
			k++;
		}
	}
	return 0;
}

/* The value of number field key: an integer in 0..max, from jansson's int64 or a long
 * integer's marker. 0, or -EINVAL with the reason (naming the field and its range) in err. */
static int number_value(const json_t *val, uint64_t max, const char *key, uint64_t *out,
			char *err, size_t errlen)
{
	const char *digits;

	if (long_integer(val, &digits)) {
		const char *p = digits;

		if (digits[0] == '-') {
			snprintf(err, errlen, "field '%s' must not be negative: %.40s", key, digits);
			return -EINVAL;
		}
		if (tv_parse_digits(&p, out) == 0 && *out <= max && *p == '\0')
			return 0;
		snprintf(err, errlen, "field '%s' out of range: %.40s (0 to %" PRIu64 ")", key,
			 digits, max);
		return -EINVAL;
	}
	if (!json_is_integer(val)) {
		snprintf(err, errlen, "field '%s' must be an integer", key);
		return -EINVAL;
	}
	if (json_integer_value(val) < 0) {
		snprintf(err, errlen, "field '%s' must not be negative: %lld", key,
			 (long long)json_integer_value(val));
		return -EINVAL;
	}
	if ((uint64_t)json_integer_value(val) > max) {
		snprintf(err, errlen, "field '%s' out of range: %lld (0 to %" PRIu64 ")", key,
			 (long long)json_integer_value(val), max);
		return -EINVAL;
	}
	*out = (uint64_t)json_integer_value(val);
	return 0;
}

/* number_value for record field f: 0..UINT32_MAX (TV_FIELD_U32) or 0..UINT64_MAX. */
static int number_field(const json_t *val, const struct tv_record_field *f, const char *key,
			uint64_t *out, char *err, size_t errlen)
{
	return number_value(val, f->type == TV_FIELD_U32 ? UINT32_MAX : UINT64_MAX, key, out, err,
			    errlen);
}

/* ---- a span record's "span" object (BLOCK.md "Record kinds") ---- */

#define SPAN_FIELD(n, t, num) {#n, t, offsetof(Tracevault__V1__Span, n), num}
/* jsonl's order (record_out.c writes "attributes" after the first TV_SPAN_N_COLUMNS). */
const struct tv_span_json_field tv_span_fields[TV_SPAN_N_FIELDS] = {
	SPAN_FIELD(parent_span_id, TV_FIELD_STR, TV_SPAN_PARENT_SPAN_ID),
	SPAN_FIELD(name, TV_FIELD_STR, TV_SPAN_NAME),
	SPAN_FIELD(kind, TV_FIELD_U32, TV_SPAN_KIND),
	SPAN_FIELD(status_code, TV_FIELD_U32, TV_SPAN_STATUS_CODE),
	SPAN_FIELD(status_message, TV_FIELD_STR, TV_SPAN_STATUS_MESSAGE),
	SPAN_FIELD(service, TV_FIELD_STR, TV_SPAN_SERVICE),
	SPAN_FIELD(dropped_attributes_count, TV_FIELD_U32, TV_SPAN_DROPPED_ATTRIBUTES),
	SPAN_FIELD(dropped_events_count, TV_FIELD_U32, TV_SPAN_DROPPED_EVENTS),
	SPAN_FIELD(dropped_links_count, TV_FIELD_U32, TV_SPAN_DROPPED_LINKS),
	SPAN_FIELD(trace_state, TV_FIELD_STR, TV_SPAN_TRACE_STATE),
	SPAN_FIELD(flags, TV_FIELD_U32, TV_SPAN_FLAGS),
	SPAN_FIELD(scope_name, TV_FIELD_STR, TV_SPAN_SCOPE_NAME),
	SPAN_FIELD(scope_version, TV_FIELD_STR, TV_SPAN_SCOPE_VERSION),
};
#define SPAN_ATTRIBUTES_KEY "attributes"
#define SPAN_KEY_BYTES 96 /* "span.attributes[N].double_value" and the like, NUL included */

/* An attribute's value keys, by the oneof case each sets (proto/tracevault.proto
 * SpanAttribute, written by record_out.c span_jsonl). */
static const struct {
	const char *name;
	Tracevault__V1__SpanAttribute__ValueCase value_case;
} SPAN_VALUE_KEYS[] = {
	{"string_value", TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE},
	{"bool_value", TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE},
	{"int_value", TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE},
	{"double_value", TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_DOUBLE_VALUE},
};
#define N_SPAN_VALUE_KEYS (sizeof(SPAN_VALUE_KEYS) / sizeof(SPAN_VALUE_KEYS[0]))

static const struct tv_span_json_field *find_span_field(const char *key)
{
	for (size_t i = 0; i < TV_SPAN_N_FIELDS; i++)
		if (strcmp(tv_span_fields[i].name, key) == 0)
			return &tv_span_fields[i];
	return NULL;
}

/* An int_value: a JSON integer in int64's range (a long one arrives as its marker). */
static int int64_value(const json_t *val, const char *key, int64_t *out, char *err,
		       size_t errlen)
{
	const char *digits;

	if (long_integer(val, &digits)) {
		char *end;
		long long v;

		errno = 0;
		v = strtoll(digits, &end, 10);
		if (errno || *end || end == digits) {
			snprintf(err, errlen, "field '%s' out of range: %.40s (%" PRId64 " to %" PRId64
				 ")", key, digits, INT64_MIN, INT64_MAX);
			return -EINVAL;
		}
		*out = v;
		return 0;
	}
	if (!json_is_integer(val)) {
		snprintf(err, errlen, "field '%s' must be an integer", key);
		return -EINVAL;
	}
	*out = json_integer_value(val);
	return 0;
}

/* A double_value as tv_out_json_double writes it: a number (an integral one is written without
 * a fraction, so jansson reads it as an integer: at most 17 digits, exact as a double), or the
 * string "NaN", "Infinity" or "-Infinity" (protobuf's JSON mapping). */
static int double_value(const json_t *val, const char *key, double *out, char *err,
			size_t errlen)
{
	const char *s = plain_string(val) ? json_string_value(val) : "";

	if (json_is_real(val))
		*out = json_real_value(val);
	else if (json_is_integer(val))
		*out = (double)json_integer_value(val);
	else if (strcmp(s, "NaN") == 0)
		*out = NAN;
	else if (strcmp(s, "Infinity") == 0)
		*out = INFINITY;
	else if (strcmp(s, "-Infinity") == 0)
		*out = -INFINITY;
	else {
		snprintf(err, errlen, "field '%s' must be a number, \"NaN\", \"Infinity\" or "
			 "\"-Infinity\"", key);
		return -EINVAL;
	}
	return 0;
}

/* Attribute i of the span, a {"key": string, VALUE_KEY: value} object, into a. */
static int span_attribute(const json_t *o, size_t i, Tracevault__V1__SpanAttribute *a,
			  char *err, size_t errlen)
{
	char key[SPAN_KEY_BYTES];
	const json_t *k = json_object_get(o, "key"), *v = NULL;
	size_t vk = 0;

	if (json_is_object(o) && json_object_size(o) == 2 && plain_string(k))
		for (vk = 0; vk < N_SPAN_VALUE_KEYS; vk++)
			if ((v = json_object_get(o, SPAN_VALUE_KEYS[vk].name)))
				break;
	if (!v) {
		snprintf(err, errlen, "field 'span.attributes': element %zu must be {\"key\": string, "
			 "and one of \"string_value\", \"bool_value\", \"int_value\", "
			 "\"double_value\"}", i);
		return -EINVAL;
	}
	tracevault__v1__span_attribute__init(a);
	a->key = (char *)json_string_value(k); /* borrowed from the document */
	a->value_case = SPAN_VALUE_KEYS[vk].value_case;
	snprintf(key, sizeof(key), "span.attributes[%zu].%s", i, SPAN_VALUE_KEYS[vk].name);
	switch (a->value_case) {
	case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE:
		if (!plain_string(v)) {
			snprintf(err, errlen, "field '%s' must be a string", key);
			return -EINVAL;
		}
		a->string_value = (char *)json_string_value(v);
		return 0;
	case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_BOOL_VALUE:
		if (!json_is_boolean(v)) {
			snprintf(err, errlen, "field '%s' must be true or false", key);
			return -EINVAL;
		}
		a->bool_value = json_is_true(v);
		return 0;
	case TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_INT_VALUE:
		return int64_value(v, key, &a->int_value, err, errlen);
	default:
		return double_value(v, key, &a->double_value, err, errlen);
	}
}

/* The "span" object val into rj->rec.span: its Span and attribute arrays are one block in
 * rj->span_mem, its strings borrowed from the document. 0, -EINVAL with the reason, -ENOMEM. */
static int parse_span(struct tv_record_json *rj, json_t *val, char *err, size_t errlen)
{
	Tracevault__V1__Span *sp;
	Tracevault__V1__SpanAttribute *attrs, **ptrs;
	json_t *arr, *v;
	const char *key;
	char shown[MAX_KEY_SHOWN + 1], name[SPAN_KEY_BYTES];
	size_t n = 0, i;

	if (!json_is_object(val)) {
		snprintf(err, errlen, "field 'span' must be an object");
		return -EINVAL;
	}
	arr = json_object_get(val, SPAN_ATTRIBUTES_KEY);
	if (arr && !json_is_array(arr)) {
		snprintf(err, errlen, "field 'span.attributes' must be an array");
		return -EINVAL;
	}
	n = arr ? json_array_size(arr) : 0;
	/* the Span, then the attributes, then their pointers: each part aligned for the next */
	sp = malloc(sizeof(*sp) + n * (sizeof(*attrs) + sizeof(*ptrs)));
	if (!sp) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rj->span_mem = sp;
	tracevault__v1__span__init(sp);
	attrs = (Tracevault__V1__SpanAttribute *)(sp + 1);
	ptrs = (Tracevault__V1__SpanAttribute **)(attrs + n);
	json_object_foreach(val, key, v) {
		const struct tv_span_json_field *f = find_span_field(key);
		char *dst = (char *)sp + (f ? f->off : 0);

		shown_key(shown, sizeof(shown), key);
		if (!f && strcmp(key, SPAN_ATTRIBUTES_KEY) == 0)
			continue;
		if (!f) {
			snprintf(err, errlen, "field 'span': unknown field '%s'", shown);
			return -EINVAL;
		}
		snprintf(name, sizeof(name), "span.%s", f->name);
		if (f->type == TV_FIELD_STR) {
			const char *s;

			if (!plain_string(v)) {
				snprintf(err, errlen, "field '%s' must be a string", name);
				return -EINVAL;
			}
			s = json_string_value(v); /* borrowed from the document */
			memcpy(dst, &s, sizeof(s));
		} else {
			uint64_t x;
			uint32_t x32;

			if (number_value(v, UINT32_MAX, name, &x, err, errlen))
				return -EINVAL;
			x32 = (uint32_t)x;
			memcpy(dst, &x32, sizeof(x32));
		}
	}
	for (i = 0; i < n; i++) {
		if (span_attribute(json_array_get(arr, i), i, &attrs[i], err, errlen))
			return -EINVAL;
		ptrs[i] = &attrs[i];
	}
	sp->attributes = n ? ptrs : NULL;
	sp->n_attributes = n;
	rj->rec.span = sp;
	return 0;
}

/* ---- tv_record_check: what a stored record holds ---- */

#define HEX_DIGITS "0123456789abcdefABCDEF"

/* Id field name (*id its value, digits its length) checked and lower-cased into out
 * (digits + 1 bytes), *id then pointing at out; "" passes unless required. zeros_ok: an id of
 * all zeros passes (a span's parent_span_id: OTLP ingest stores what it is sent). */
static int check_id(const char *name, char **id, char *out, size_t digits, bool required,
		    bool zeros_ok, char *err, size_t errlen)
{
	char shown[MAX_KEY_SHOWN + 1];
	size_t n = *id ? strlen(*id) : 0;

	if (n == 0) {
		if (!required)
			return 0;
		snprintf(err, errlen, "field '%s' is required in a span record (%zu hex digits)",
			 name, digits);
		return -EINVAL;
	}
	if (n != digits || strspn(*id, HEX_DIGITS) != n) {
		shown_key(shown, sizeof(shown), *id);
		snprintf(err, errlen, "field '%s' must be %s%zu hex digits: '%s'%s", name,
			 required ? "" : "\"\" or ", digits, shown, n > MAX_KEY_SHOWN ? "..." : "");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((*id)[i] >= 'A' && (*id)[i] <= 'F' ? (*id)[i] - 'A' + 'a'
								      : (*id)[i]);
	out[n] = '\0';
	if (!zeros_ok && strspn(out, "0") == n) {
		snprintf(err, errlen, "field '%s' is all zeros, an invalid id (W3C Trace Context)",
			 name);
		return -EINVAL;
	}
	*id = out;
	return 0;
}

/* A span string kept within OTLP ingest's cut (--otlp-max-attribute-bytes at its largest). */
static int check_span_str(const char *name, const char *s, char *err, size_t errlen)
{
	size_t n = s ? strlen(s) : 0, max = tv_otlp_max_attribute_bytes_limit.max;

	if (n <= max)
		return 0;
	snprintf(err, errlen, "field '%s' is %zu bytes, above %zu (OTLP ingest keeps at most "
		 "--otlp-max-attribute-bytes, at most %zu)", name, n, max, max);
	return -EINVAL;
}

/* The rules of a span record beyond the ids (tv_record_check). */
static int check_span(const Tracevault__V1__TraceRecord *r, char *err, size_t errlen)
{
	const Tracevault__V1__Span *sp = r->span;
	char name[SPAN_KEY_BYTES];

	if (r->ts_ns == 0) {
		snprintf(err, errlen, "field 'ts_ns' (a span's start) must not be 0");
		return -EINVAL;
	}
	if (r->end_ns < r->ts_ns) {
		snprintf(err, errlen, "field 'end_ns' %" PRIu64 " is before 'ts_ns' %" PRIu64
			 ": a span cannot end before it starts", r->end_ns, r->ts_ns);
		return -EINVAL;
	}
	if (r->end_ns > TV_OTLP_MAX_TIME_NS) {
		snprintf(err, errlen, "field 'end_ns' %" PRIu64 " is beyond 2^63-1 ns (year 2262), "
			 "the store's range", r->end_ns);
		return -EINVAL;
	}
	if (r->latency_ns != r->end_ns - r->ts_ns) {
		snprintf(err, errlen, "field 'latency_ns' %" PRIu64 " is not end_ns - ts_ns = %" PRIu64
			 " in a span record", r->latency_ns, r->end_ns - r->ts_ns);
		return -EINVAL;
	}
	/* fields 4-12 and 15-26 are an exchange's (BLOCK.md "Record kinds") */
	for (size_t i = 0; i < TV_RECORD_N_FIELDS; i++) {
		const struct tv_record_field *f = &tv_record_fields[i];
		const char *p = (const char *)r + f->off, *s;
		uint64_t v = 0;
		uint32_t v32;
		bool set;

		if (f->number < TV_REC_PID || f->number == TV_REC_TRACE_ID ||
		    f->number == TV_REC_SPAN_ID)
			continue;
		if (f->type == TV_FIELD_STR) {
			memcpy(&s, p, sizeof(s));
			set = s && *s;
		} else {
			if (f->type == TV_FIELD_U32) {
				memcpy(&v32, p, sizeof(v32));
				v = v32;
			} else {
				memcpy(&v, p, sizeof(v));
			}
			set = v != 0;
		}
		if (set) {
			snprintf(err, errlen, "field '%s' is an exchange's: a span record leaves it "
				 "out", f->name);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < TV_RECORD_N_BODY_STR_FIELDS; i++) {
		const char *s;

		memcpy(&s, (const char *)r + tv_record_body_str_fields[i].off, sizeof(s));
		if (s && *s) {
			snprintf(err, errlen, "field '%s' is an exchange's: a span record leaves it "
				 "out", tv_record_body_str_fields[i].name);
			return -EINVAL;
		}
	}
	if (r->n_req_headers || r->n_resp_headers || r->req_body.len || r->resp_body.len) {
		snprintf(err, errlen, "field '%s' is an exchange's: a span record leaves it out",
			 r->n_req_headers ? tv_record_header_keys[0]
			 : r->n_resp_headers ? tv_record_header_keys[1]
			 : r->req_body.len ? "req_body" : "resp_body");
		return -EINVAL;
	}
	if (sp->n_attributes > tv_otlp_max_attributes_limit.max) {
		snprintf(err, errlen, "field 'span.attributes' holds %zu attributes, above %llu "
			 "(OTLP ingest keeps at most --otlp-max-attributes, at most %llu)",
			 sp->n_attributes, (unsigned long long)tv_otlp_max_attributes_limit.max,
			 (unsigned long long)tv_otlp_max_attributes_limit.max);
		return -EINVAL;
	}
	if (check_span_str("span.name", sp->name, err, errlen) ||
	    check_span_str("span.status_message", sp->status_message, err, errlen) ||
	    check_span_str("span.trace_state", sp->trace_state, err, errlen))
		return -EINVAL;
	for (size_t i = 0; i < sp->n_attributes; i++) {
		const Tracevault__V1__SpanAttribute *a = sp->attributes[i];

		if (a->value_case == TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE__NOT_SET) {
			snprintf(err, errlen, "field 'span.attributes': element %zu has no value", i);
			return -EINVAL;
		}
		snprintf(name, sizeof(name), "span.attributes[%zu].key", i);
		if (check_span_str(name, a->key, err, errlen))
			return -EINVAL;
		snprintf(name, sizeof(name), "span.attributes[%zu].string_value", i);
		if (a->value_case == TRACEVAULT__V1__SPAN_ATTRIBUTE__VALUE_STRING_VALUE &&
		    check_span_str(name, a->string_value, err, errlen))
			return -EINVAL;
	}
	return 0;
}

int tv_record_check(Tracevault__V1__TraceRecord *rec, struct tv_record_ids *ids, char *err,
		    size_t errlen)
{
	bool span = rec->span != NULL;

	/* tracevaultd refuses a block (and so the whole segment) whose times pass it */
	if (rec->ts_ns > TV_RECORD_MAX_TS_NS) {
		snprintf(err, errlen, "field 'ts_ns' %" PRIu64 " is beyond 2^63-1 ns (year 2262), "
			 "the store's range", rec->ts_ns);
		return -EINVAL;
	}
	if (rec->status != 0 && (rec->status < 100 || rec->status > 999)) {
		snprintf(err, errlen, "field 'status' %" PRIu32 " is not 0 (no response) or an HTTP "
			 "status code (100 to 999)", rec->status);
		return -EINVAL;
	}
	if (check_id("trace_id", &rec->trace_id, ids->trace_id, 32, span, false, err, errlen) ||
	    check_id("span_id", &rec->span_id, ids->span_id, 16, span, false, err, errlen))
		return -EINVAL;
	if (!span)
		return 0;
	if (check_id("span.parent_span_id", &rec->span->parent_span_id, ids->parent_span_id, 16,
		     false, true, err, errlen))
		return -EINVAL;
	return check_span(rec, err, errlen);
}

/* true when the line has a bare positive integer above INT64_MAX (no leading zero, not the
 * start of a real): jansson would refuse it ("too big integer") only after parsing the line up
 * to it, and the line would then be rewritten and parsed again. Such values are common in put
 * input (u64 byte counts query prints), so they are rewritten before the first parse instead,
 * for the cost of one scan. Anything else takes the plain path, so every accepted line and
 * every message stays what the parse-then-rewrite order gives. */
static bool has_int_beyond_int64(const char *line, size_t len)
{
	static const char max[] = "9223372036854775807"; /* INT64_MAX, LONG_INT_DIGITS digits */
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = line[i];
		size_t start, nd;

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
			continue;
		}
		if (c < '1' || c > '9' || (i > 0 && (line[i - 1] == '-' ||
						    (line[i - 1] >= '0' && line[i - 1] <= '9'))))
			continue;
		for (start = i; i < len && line[i] >= '0' && line[i] <= '9'; i++)
			;
		nd = i - start;
		if (i < len && (line[i] == '.' || line[i] == 'e' || line[i] == 'E'))
			continue; /* a real: jansson reads it, the field refuses it */
		if (nd > LONG_INT_DIGITS ||
		    (nd == LONG_INT_DIGITS && memcmp(line + start, max, LONG_INT_DIGITS) > 0))
			return true;
		i--;
	}
	return false;
}

int tv_record_json_parse(struct tv_record_json *rj, const char *line, size_t len, char *err,
			 size_t errlen)
{
	json_t *hdr_arrs[2] = { NULL, NULL };
	size_t n_hdrs = 0;
	Tracevault__V1__TraceRecord init = TRACEVAULT__V1__TRACE_RECORD__INIT;
	char key_buf[MAX_KEY_SHOWN + 1];
	json_error_t jerr;
	const char *key;
	bool have_ts = false;
	json_t *root, *val;

	rj->body_mem[0] = rj->body_mem[1] = NULL; /* freed on every failure */
	rj->span_mem = NULL;
	rj->hdr_mem = NULL;
	/* No JSON_ALLOW_NUL: a string with \u0000 is rejected, so every string is a C string. */
	root = NULL;
	if (has_int_beyond_int64(line, len)) {
		size_t qlen;
		char *q = quote_long_integers(line, len, &qlen);

		if (q) {
			root = json_loadb(q, qlen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
			free(q);
		}
		/* a failure: the plain path below gives the message it always gave */
	}
	if (!root)
		root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root && json_error_code(&jerr) == json_error_numeric_overflow) {
		size_t qlen;
		char *q = quote_long_integers(line, len, &qlen);

		if (q) {
			/* strings are copied into the document: q can go at once */
			root = json_loadb(q, qlen, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
			free(q);
		}
		if (!root) { /* columns of a rewritten line are not the input's */
			snprintf(err, errlen, "invalid JSON: %s", jerr.text);
			return -EINVAL;
		}
	}
	if (!root) {
		snprintf(err, errlen, "invalid JSON: %s (column %d)", jerr.text, jerr.column);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "expected a JSON object");
		goto fail;
	}
	rj->rec = init;
	json_object_foreach(root, key, val) {
		const struct tv_record_field *f = find_field(key);
		char *dst;

		shown_key(key_buf, sizeof(key_buf), key);
		if (!f && strcmp(key, TV_RECORD_SPAN_KEY) == 0) {
			if (parse_span(rj, val, err, errlen))
				goto fail;
			continue;
		}
		if (!f && (strcmp(key, tv_record_header_keys[0]) == 0 || strcmp(key, tv_record_header_keys[1]) == 0)) {
			if (check_headers(val, key, &n_hdrs, err, errlen))
				goto fail;
			hdr_arrs[strcmp(key, tv_record_header_keys[0]) == 0 ? 0 : 1] = val;
			continue;
		}
		for (int b = 0; !f && b < 2; b++) {
			ProtobufCBinaryData *bd = body_of(&rj->rec, b);
			int b64 = strcmp(key, tv_record_body_b64_keys[b]) == 0;

			if (!b64 && strcmp(key, tv_record_body_keys[b]) != 0)
				continue;
			if (!plain_string(val)) {
				snprintf(err, errlen, "field '%s' must be a string without \\u0000",
					 key_buf);
				goto fail;
			}
			if (bd->data) {
				snprintf(err, errlen, "field '%s': the body is given twice (%s and %s)",
					 key_buf, tv_record_body_keys[b], tv_record_body_b64_keys[b]);
				goto fail;
			}
			if (!b64) { /* borrowed from the document like the other strings */
				bd->data = (uint8_t *)json_string_value(val);
				bd->len = json_string_length(val);
			} else if (b64_decode(json_string_value(val), json_string_length(val),
					      &bd->data, &bd->len)) {
				snprintf(err, errlen, "field '%s' is not base64", key_buf);
				goto fail;
			} else {
				rj->body_mem[b] = bd->data;
			}
			goto next_key;
		}
		for (size_t b = 0; !f && b < TV_RECORD_N_BODY_STR_FIELDS; b++)
			if (strcmp(key, tv_record_body_str_fields[b].name) == 0)
				f = &tv_record_body_str_fields[b];
		if (!f) {
			snprintf(err, errlen, "unknown field '%s'", key_buf);
			goto fail;
		}
		dst = (char *)&rj->rec + f->off;
		if (f->type == TV_FIELD_STR) {
			const char *s, *digits;

			if (!plain_string(val)) {
				snprintf(err, errlen, "field '%s' must be a string%s", key_buf,
					 json_is_string(val) && !long_integer(val, &digits)
						 ? " without \\u0000" : "");
				goto fail;
			}
			/* Borrowed from the document: protobuf-c only reads it when packing. */
			s = json_string_value(val);
			memcpy(dst, &s, sizeof(s));
		} else {
			uint64_t v;

			if (number_field(val, f, key_buf, &v, err, errlen))
				goto fail;
			if (f->type == TV_FIELD_U32) {
				uint32_t v32 = (uint32_t)v;

				memcpy(dst, &v32, sizeof(v32));
			} else {
				memcpy(dst, &v, sizeof(v));
			}
			if (f->off == offsetof(Tracevault__V1__TraceRecord, ts_ns))
				have_ts = true;
		}
next_key:;
	}
	if (!have_ts) {
		snprintf(err, errlen, "missing required field 'ts_ns'");
		goto fail;
	}
	if (fill_headers(rj, hdr_arrs, n_hdrs)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (tv_record_check(&rj->rec, &rj->ids, err, errlen))
		goto fail;
	rj->doc = root;
	return 0;
fail:
	free(rj->body_mem[0]);
	free(rj->body_mem[1]);
	rj->body_mem[0] = rj->body_mem[1] = NULL;
	free(rj->hdr_mem);
	rj->hdr_mem = NULL;
	free(rj->span_mem);
	rj->span_mem = NULL;
	json_decref(root);
	return -EINVAL;
}

void tv_record_json_release(struct tv_record_json *rj)
{
	json_decref(rj->doc);
	rj->doc = NULL;
	free(rj->hdr_mem);
	rj->hdr_mem = NULL;
	free(rj->body_mem[0]);
	free(rj->body_mem[1]);
	rj->body_mem[0] = rj->body_mem[1] = NULL;
	free(rj->span_mem);
	rj->span_mem = NULL;
}
