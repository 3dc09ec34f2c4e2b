/* JSON Lines -> TraceRecord, the format `tracevault put` reads and `tracevault query` writes
 * (the writer is cli/record_out.h). */
#ifndef TV_RECORD_JSON_H
#define TV_RECORD_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/record_wire.h"
#include "tracevault.pb-c.h"

/* Room for a record's ids in lower-case hex, NUL included: trace_id 32 digits, span_id and a
 * span's parent_span_id 16 (W3C Trace Context's trace-id and parent-id). */
#define TV_RECORD_TRACE_ID_BYTES 33
#define TV_RECORD_SPAN_ID_BYTES 17
/* The ids tv_record_check gives a record: its own hex, lower-cased (what the capture and OTLP
 * ingest store). */
struct tv_record_ids {
	char trace_id[TV_RECORD_TRACE_ID_BYTES];
	char span_id[TV_RECORD_SPAN_ID_BYTES];
	char parent_span_id[TV_RECORD_SPAN_ID_BYTES];
};

/* One parsed line. rec's strings point into the parsed JSON document held in doc (its ids
 * into ids); they stay valid until tv_record_json_release (which must be called after every
 * successful parse). */
struct tv_record_json {
	Tracevault__V1__TraceRecord rec;
	void *doc; /* json_t *, owned */
	void *hdr_mem; /* req/resp Header arrays of rec (one malloc'd block), owned */
	void *body_mem[2]; /* req/resp body decoded from *_body_base64 (malloc'd), owned */
	void *span_mem; /* a span record's Span and its attribute arrays (one block), owned */
	struct tv_record_ids ids;
};

/* Parse one JSON object (len bytes, no NUL needed) with exactly the query output fields: ts_ns is
 * required, others default to 0 / "". req_headers / resp_headers, when present, are arrays of
 * {"name": string, "value": string} objects. A body is req_body / resp_body (its bytes as a
 * string: UTF-8 text) or req_body_base64 / resp_body_base64 (RFC 4648 base64), not both.
 * "span", when present, makes a span record (BLOCK.md "Record kinds"): an object of the
 * tv_span_fields (each optional: 0 / "") and "attributes", an array of {"key": string, V}
 * where V is one of "string_value": string, "bool_value": true|false, "int_value": an
 * integer (int64), "double_value": a number or "NaN", "Infinity", "-Infinity" (as
 * tv_out_json_double writes them). Rejects invalid JSON, a non-object, unknown or duplicate
 * keys, wrong types, negative or out-of-range numbers, and a record tv_record_check refuses,
 * with a one-line reason in err.
 * Every u64 field reads its whole range (0 to 2^64-1, beyond jansson's int64), so every line
 * tv_record_jsonl writes of a record tv_record_check accepts reads back to the same record.
 * Returns 0 or -EINVAL. On error nothing needs releasing. */
int tv_record_json_parse(struct tv_record_json *rj, const char *line, size_t len, char *err,
			 size_t errlen);
void tv_record_json_release(struct tv_record_json *rj);

/* Whether rec may be stored as `tracevault put` sends it: the one place the client mirrors
 * what the store and its producers hold a record to, so that a bad line is refused with its
 * FILE:LINE before anything is sent (a record tracevaultd refuses fails its whole segment).
 * Every record:
 *   - ts_ns at most 2^63-1 (TV_RECORD_MAX_TS_NS: tracevaultd refuses a block past it);
 *   - status 0 (no response) or 100 to 999: the three digits of a status-line (RFC 9112
 *     section 4), what the capture reads and so what query may print (RFC 9110 section 15
 *     calls 600-999 invalid, yet servers send them; --status selects 100-599);
 *   - trace_id "" or 32 hex digits, span_id "" or 16, neither all zeros (W3C Trace Context
 *     traceparent, as the capture takes it).
 * A span record (rec->span set), as OTLP ingest holds it (PROTOCOL.md "OTLP ingest", with its
 * limits at their largest, the server's options being unknown here):
 *   - trace_id and span_id present, parent_span_id "" or 16 hex digits;
 *   - ts_ns (start) not 0, end_ns not before it and at most 2^63-1, latency_ns their
 *     difference;
 *   - no exchange field (fields 4-12 and 15-26 absent: BLOCK.md "Record kinds");
 *   - at most 256 attributes (--otlp-max-attributes' largest), each with a value, and name,
 *     status_message, trace_state and every attribute key and string value at most 16384
 *     bytes (--otlp-max-attribute-bytes' largest).
 * Ids in upper case are accepted and stored lower-case: they are copied into ids (owned by the
 * caller, living as long as rec) and rec (and rec->span) point at the copies. Returns 0, or
 * -EINVAL with a one-line reason naming the field in err. */
#define TV_RECORD_MAX_TS_NS ((uint64_t)INT64_MAX)
int tv_record_check(Tracevault__V1__TraceRecord *rec, struct tv_record_ids *ids, char *err,
		    size_t errlen);

/* The fields of a record's JSON form, shared by the parser and the jsonl / csv writers
 * (cli/record_out.h) so that the two directions cannot drift apart. */
enum tv_record_field_type { TV_FIELD_U64, TV_FIELD_U32, TV_FIELD_STR };
#define TV_RECORD_KEY_BYTES 32 /* room for a jsonl key's text, copied whole (record_out.c) */
struct tv_record_field {
	const char *name;
	enum tv_record_field_type type;
	size_t off;	 /* into Tracevault__V1__TraceRecord (the parser's output) */
	unsigned number; /* its field number, tv_record_wire's index (the writers' input) */
	/* ,"name": as jsonl writes it after another key, zero-padded, and its length */
	char key[TV_RECORD_KEY_BYTES];
	size_t key_len;
};
/* The scalar fields, proto order: ts_ns .. http_version (jsonl's first keys, csv's columns). */
#define TV_RECORD_N_FIELDS 18
extern const struct tv_record_field tv_record_fields[TV_RECORD_N_FIELDS];
/* A span record's span (jsonl's "span" object, BLOCK.md "Record kinds"): its scalar fields in
 * jsonl's order, shared by the parser and the writers like tv_record_fields. jsonl writes
 * "attributes" after the first TV_SPAN_N_COLUMNS, which are also csv's span_* columns. */
struct tv_span_json_field {
	const char *name;
	enum tv_record_field_type type; /* TV_FIELD_U32 or TV_FIELD_STR */
	size_t off;	 /* into Tracevault__V1__Span */
	unsigned number; /* TV_SPAN_*: its index in struct tv_span_wire's num[] or str[] */
};
#define TV_RECORD_SPAN_KEY "span" /* the record's key of the span object */
#define TV_SPAN_N_FIELDS 13
#define TV_SPAN_N_COLUMNS 6
extern const struct tv_span_json_field tv_span_fields[TV_SPAN_N_FIELDS];
/* capture --body-bytes' content type and encoding strings (jsonl: only when not empty). */
#define TV_RECORD_N_BODY_STR_FIELDS 4
extern const struct tv_record_field tv_record_body_str_fields[TV_RECORD_N_BODY_STR_FIELDS];
/* Keys of the header arrays and of the two forms of each body (request, response). */
extern const char *const tv_record_header_keys[2];
extern const char *const tv_record_body_keys[2];
extern const char *const tv_record_body_b64_keys[2];
/* RFC 4648 §4 base64 alphabet (bodies that are not text). */
extern const char tv_base64_alphabet[65];
/* Bytes tv_record_b64_decode may write for n bytes of base64. */
#define TV_RECORD_B64_DECODED_MAX(n) ((n) / 4 * 3 + 1)
/* Decode the body base64 of *_body_base64 (RFC 4648 section 4, padded, no whitespace, no NUL)
 * from s[0, n) into out (TV_RECORD_B64_DECODED_MAX(n) bytes); *out_len the decoded length.
 * 0, or -EINVAL when s is not such base64 (out then holds garbage). */
int tv_record_b64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len);


#endif
