/* TraceRecord <-> JSON Lines, the format `tracevault put` reads and `tracevault query` writes,
 * plus the human table format of `query --format table`. */
#ifndef TV_RECORD_JSON_H
#define TV_RECORD_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tracevault.pb-c.h"

/* One parsed line. rec's strings point into the parsed JSON document held in doc; they stay
 * valid until tv_record_json_release (which must be called after every successful parse). */
struct tv_record_json {
	Tracevault__V1__TraceRecord rec;
	void *doc; /* json_t *, owned */
	void *hdr_mem; /* req/resp Header arrays of rec (one malloc'd block), owned */
	void *body_mem[2]; /* req/resp body decoded from *_body_base64 (malloc'd), owned */
};

/* Parse one JSON object (len bytes, no NUL needed) with exactly the query output fields: ts_ns is
 * required, others default to 0 / "". req_headers / resp_headers, when present, are arrays of
 * {"name": string, "value": string} objects. A body is req_body / resp_body (its bytes as a
 * string: UTF-8 text) or req_body_base64 / resp_body_base64 (RFC 4648 base64), not both. Rejects invalid JSON, a non-object, unknown or
 * duplicate keys, wrong types, negative or out-of-range numbers, with a one-line reason in err.
 * Every u64 field reads its whole range (0 to 2^64-1, beyond jansson's int64), so every line
 * tv_record_write_jsonl writes reads back.
 * Returns 0 or -EINVAL. On error nothing needs releasing. */
int tv_record_json_parse(struct tv_record_json *rj, const char *line, size_t len, char *err,
			 size_t errlen);
void tv_record_json_release(struct tv_record_json *rj);

/* Bytes tv_record_b64_decode may write for n bytes of base64. */
#define TV_RECORD_B64_DECODED_MAX(n) ((n) / 4 * 3 + 1)
/* Decode the body base64 of *_body_base64 (RFC 4648 section 4, padded, no whitespace, no NUL)
 * from s[0, n) into out (TV_RECORD_B64_DECODED_MAX(n) bytes); *out_len the decoded length.
 * 0, or -EINVAL when s is not such base64 (out then holds garbage). */
int tv_record_b64_decode(const char *s, size_t n, uint8_t *out, size_t *out_len);

/* Write r as one JSON object and a newline, fields in proto order, integers as numbers;
 * req_headers / resp_headers (arrays of {"name", "value"}) only when r has any; the body
 * fields of capture --body-bytes only when not empty: the content type and encoding strings,
 * and each body as req_body / resp_body when it is valid UTF-8 without NUL (a JSON string of
 * those bytes), else as req_body_base64 / resp_body_base64 (the key is the encoding marker).
 * Returns 0 or -EIO (stream error). */
int tv_record_write_jsonl(FILE *f, const Tracevault__V1__TraceRecord *r);

/* Table output: a header line, then one aligned row per record (UTC time with ms, method,
 * path, status, latency ms, pid, comm, remote). Non-printable bytes in captured strings are
 * shown as '?' so a hostile path cannot drive the terminal. Returns 0 or -EIO. */
int tv_record_write_table_header(FILE *f);
int tv_record_write_table_row(FILE *f, const Tracevault__V1__TraceRecord *r);

#endif
